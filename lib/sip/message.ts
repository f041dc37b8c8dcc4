/**
 * SIP messages (RFC 3261 sections 7, 20, 25): the data model shared by every
 * layer, the parser and the formatter.
 *
 * Parsing is fast and strict where it matters: the start line and the headers
 * the stack needs (top Via, From, To, Call-ID, CSeq, Content-Length,
 * Max-Forwards) are checked when the message is parsed; every other header is
 * kept raw and parsed on first use by the typed getters.
 *
 * @example
 * ```ts
 * import { parseMessage } from "./message.ts";
 * const msg = parseMessage(
 *   "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
 *     "Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n" +
 *     "Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n" +
 *     "From: <sip:alice@example.com>;tag=1928301774\r\n" +
 *     "Call-ID: a84b4c76e66710\r\nCSeq: 63104 OPTIONS\r\nContent-Length: 0\r\n\r\n",
 * );
 * msg.kind; // "request"
 * msg.from.params.tag; // "1928301774"
 * ```
 *
 * @module
 */

import { SipSyntaxError } from "./errors.ts";
import { col, fail, parseDigits, refuseCrLf, rethrow, scan, sliceLws, splitList } from "./_scan.ts";
import {
  canonicalName,
  H_CALL_ID,
  H_CONTENT_LENGTH,
  H_CSEQ,
  H_FROM,
  H_MAX_FORWARDS,
  H_TO,
  H_VIA,
  type HeaderField,
  type HeadersInit,
  readFieldName,
  readFieldNameBytes,
  SipHeaders,
} from "./headers.ts";
import {
  _parseNameAddr,
  _parseUri,
  formatNameAddr,
  formatUri,
  isToken,
  type NameAddr,
  type Params,
  parseNameAddr,
  parseUri,
  type Uri,
} from "./uri.ts";
import { reasonPhrase } from "./status.ts";
import {
  _parseCSeq,
  _parseMediaType,
  _parseSipDate,
  _parseTokenParams,
  _parseVia,
  badCallIdAt,
  badCallIdAtBytes,
  type CSeq,
  formatVia,
  type MediaType,
  METHODS,
  parseCSeq,
  parseMediaType,
  parseSipDate,
  parseVia,
  readMethod,
  readToken,
  type TokenParams,
  type Via,
} from "./header_values.ts";

export type { HeaderField, HeadersInit, NameAddr, Params, Uri };
export { canonicalName, formatNameAddr, formatUri, isToken, parseNameAddr, parseUri, SipHeaders };
import { COMPACT_FORMS } from "./headers.ts";
export { COMPACT_FORMS };
export { isListHeader } from "./headers.ts";
export { SipSyntaxError };
export type { CSeq, MediaType, TokenParams, Via };
export { formatVia, parseCSeq, parseMediaType, parseSipDate, parseVia };

/**
 * A message that could not be accepted, with the response a UAS should send
 * (`status`, `reason`) and, once the start line and the header lines could
 * be read, the message as far as it was parsed in `partial` (so that a UAS
 * can answer it with {@linkcode createResponse}, which copies the raw Via,
 * From, To, Call-ID and CSeq lines; typed getters of `partial` may throw for
 * the header that failed). Thrown by {@linkcode parseMessage}.
 *
 * @example
 * ```ts
 * import { createResponse, parseMessage, SipMessageError, type SipRequest } from "./message.ts";
 * try {
 *   parseMessage("OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" +
 *     "From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: 1\r\n" +
 *     "CSeq: 1 OPTIONS\r\nMax-Forwards: lots\r\n\r\n");
 * } catch (e) {
 *   if (e instanceof SipMessageError && e.partial?.kind === "request") {
 *     const answer = createResponse(e.partial as SipRequest, e.status); // 400 Bad Request
 *   }
 * }
 * ```
 */
export class SipMessageError extends SipSyntaxError {
  /** The status a UAS should answer with (400, 505...). */
  readonly status: number;
  /** The reason phrase to answer with. */
  readonly reason: string;
  /**
   * The message as far as it was read; undefined when a header line is
   * unreadable or a Status-Line is malformed. For a malformed Request-Line it
   * is a request with the method and an empty placeholder URI (scheme "").
   */
  readonly partial?: SipMessage;

  /** Creates the error. */
  constructor(
    message: string,
    options: {
      status?: number;
      reason?: string;
      partial?: SipMessage;
      line?: number;
      header?: string;
      offset?: number;
      cause?: unknown;
    } = {},
  ) {
    super(message, options);
    this.name = "SipMessageError";
    this.status = options.status ?? 400;
    this.reason = options.reason ?? reasonPhrase(this.status);
    this.partial = options.partial;
  }
}

/**
 * A message whose SIP-Version is not SIP/2.0 (a UAS answers 505, RFC 3261
 * section 8.2.2... and RFC 4475 section 3.3.13).
 */
export class SipVersionError extends SipMessageError {
  /** The version found, e.g. "SIP/7.0". */
  readonly version: string;
  /** Creates the error. */
  constructor(
    message: string,
    version: string,
    options: { partial?: SipMessage; line?: number } = {},
  ) {
    super(message, { ...options, status: 505, reason: "Version Not Supported" });
    this.name = "SipVersionError";
    this.version = version;
  }
}

// ---------------------------------------------------------------- messages

/** The body of messages without one (shared; it has no bytes to change). */
const EMPTY = new Uint8Array(0);

/** Typed header values, parsed on first use; undefined: not parsed yet, null: absent. */
interface Cache {
  via: Via[] | undefined;
  topVia: Via | undefined;
  from: NameAddr | undefined;
  to: NameAddr | undefined;
  callId: string | undefined;
  cseq: CSeq | undefined;
  contact: NameAddr[] | undefined;
  mediaType: MediaType | null | undefined;
  maxForwards: number | null | undefined;
  expires: number | null | undefined;
  contentLength: number | null | undefined;
  recordRoute: NameAddr[] | undefined;
  route: NameAddr[] | undefined;
  date: Date | null | undefined;
  event: TokenParams | null | undefined;
  subscriptionState: TokenParams | null | undefined;
  minExpires: number | null | undefined;
}

/** An empty cache (an object literal: one allocation of a known shape). */
function newCache(): Cache {
  return {
    via: undefined,
    topVia: undefined,
    from: undefined,
    to: undefined,
    callId: undefined,
    cseq: undefined,
    contact: undefined,
    mediaType: undefined,
    maxForwards: undefined,
    expires: undefined,
    contentLength: undefined,
    recordRoute: undefined,
    route: undefined,
    date: undefined,
    event: undefined,
    subscriptionState: undefined,
    minExpires: undefined,
  };
}

/** The 1-based line of field `i` in the parsed message, while the headers are unchanged. */
function lineAt(h: SipHeaders, i: number): number | undefined {
  if (h.version !== 0 || i < 0) return undefined;
  if (h._lines === undefined) {
    if (h._head === undefined) return undefined;
    h._lines = fieldLines(h._head, h._headEnd);
  }
  return h._lines[i];
}

/** The 1-based line where each header field starts, counted again from the header block. */
function fieldLines(head: string, end: number): number[] {
  const out: number[] = [];
  let line = 1;
  let pos = head.indexOf("\n") + 1;
  while (pos > 0 && pos < end) {
    line++;
    const c = head.charCodeAt(pos);
    if (c !== 32 && c !== 9) out.push(line);
    pos = head.indexOf("\n", pos) + 1;
  }
  return out;
}

function headerError(e: unknown, name: string, h?: SipHeaders, i = -1): never {
  rethrow(e, `${name} header`, { header: name, line: h === undefined ? undefined : lineAt(h, i) });
}

function required(h: SipHeaders, name: string): number {
  const i = h._index(name);
  if (i === -1) {
    throw new SipSyntaxError(`Cannot parse message: missing ${name} header`, { header: name });
  }
  return i;
}

function parseRequired<T>(h: SipHeaders, name: string, parse: (s: string) => T): T {
  const i = required(h, name);
  scan.base = 0;
  try {
    return parse(h.fields[i].value);
  } catch (e) {
    headerError(e, name, h, i);
  }
}

function parseCallId(v: string): string {
  const bad = badCallIdAt(v);
  if (bad !== -1) throw fail(`invalid character "${v[bad]}" at column ${bad + 1}`);
  return v;
}

function parseOptional<T>(h: SipHeaders, name: string, parse: (s: string) => T): T | null {
  const i = h._index(name);
  if (i === -1) return null;
  scan.base = 0;
  try {
    return parse(h.fields[i].value);
  } catch (e) {
    headerError(e, name, h, i);
  }
}

function parseTopVia(line: string): Via {
  return _parseVia(line, 0, line.length, true);
}

function parseList(h: SipHeaders, name: string): NameAddr[] {
  const out: NameAddr[] = [];
  let i = h._index(name);
  scan.base = 0;
  try {
    for (; i !== -1; i = h._index(name, i + 1)) {
      for (const v of splitList(h.fields[i].value)) {
        if (v.length === 0) throw fail("empty value in list");
        out.push(v === "*" ? parseNameAddr(v) : _parseNameAddr(v));
      }
    }
  } catch (e) {
    headerError(e, name, h, i);
  }
  return out;
}

function optionalNumber(h: SipHeaders, name: string, max: number): number | null {
  const i = h._index(name);
  if (i === -1) return null;
  const v = parseDigits(h.fields[i].value, max);
  if (v < 0) {
    throw new SipSyntaxError(
      `Cannot parse ${name} header: "${h.fields[i].value}" is not a number from 0 to ${max}`,
      { header: name, line: lineAt(h, i) },
    );
  }
  return v;
}

/** What requests and responses share. Typed getters parse on first use and cache. */
export abstract class SipMessageBase {
  /** Header fields. */
  readonly headers: SipHeaders;
  /** The body as bytes (empty when none). */
  body: Uint8Array;
  /** SIP-Version of the start line; always "SIP/2.0" for parsed messages. */
  version = "SIP/2.0";
  #c = newCache();
  #v = 0;

  /** Creates a message from headers and body. */
  constructor(headers: SipHeaders, body: Uint8Array = EMPTY) {
    this.headers = headers;
    this.body = body;
    this.#v = headers.version;
  }

  #cache(): Cache {
    if (this.#v !== this.headers.version) {
      this.#c = newCache();
      this.#v = this.headers.version;
    }
    return this.#c;
  }

  /** All Via values, top first. Throws SipSyntaxError when malformed. */
  get via(): Via[] {
    const c = this.#cache();
    if (c.via !== undefined) return c.via;
    const h = this.headers;
    const out: Via[] = [];
    let i = h._index("Via");
    scan.base = 0;
    try {
      for (; i !== -1; i = h._index("Via", i + 1)) {
        for (const v of splitList(h.fields[i].value)) {
          if (v.length === 0) throw fail("empty value in list");
          out.push(out.length === 0 && c.topVia !== undefined ? c.topVia : _parseVia(v));
        }
      }
    } catch (e) {
      headerError(e, "Via", h, i);
    }
    if (out.length === 0) required(h, "Via");
    c.topVia = out[0];
    return c.via = out;
  }
  /** The top Via value (the one a UAC added). Throws when absent or malformed. */
  get topVia(): Via {
    const c = this.#cache();
    return c.topVia ??= parseRequired(this.headers, "Via", parseTopVia);
  }
  /** From header. */
  get from(): NameAddr {
    const c = this.#cache();
    return c.from ??= parseRequired(this.headers, "From", _parseNameAddr);
  }
  /** To header. */
  get to(): NameAddr {
    const c = this.#cache();
    return c.to ??= parseRequired(this.headers, "To", _parseNameAddr);
  }
  /** The From tag, or undefined. */
  get fromTag(): string | undefined {
    return this.from.params.tag ?? undefined;
  }
  /** The To tag, or undefined. */
  get toTag(): string | undefined {
    return this.to.params.tag ?? undefined;
  }
  /** Call-ID. */
  get callId(): string {
    const c = this.#cache();
    return c.callId ??= parseRequired(this.headers, "Call-ID", parseCallId);
  }
  /** CSeq. */
  get cseq(): CSeq {
    const c = this.#cache();
    return c.cseq ??= parseRequired(this.headers, "CSeq", _parseCSeq);
  }
  /** Contact values (empty when none; `*` yields one entry with uri.scheme "*"). */
  get contact(): NameAddr[] {
    const c = this.#cache();
    return c.contact ??= parseList(this.headers, "Contact");
  }
  /** Record-Route values, in order. */
  get recordRoute(): NameAddr[] {
    const c = this.#cache();
    return c.recordRoute ??= parseList(this.headers, "Record-Route");
  }
  /** Route values, in order. */
  get route(): NameAddr[] {
    const c = this.#cache();
    return c.route ??= parseList(this.headers, "Route");
  }
  /** Content-Type with parameters, or undefined. */
  get mediaType(): MediaType | undefined {
    const c = this.#cache();
    if (c.mediaType === undefined) {
      const i = this.headers._index("Content-Type");
      try {
        scan.base = 0;
        c.mediaType = i === -1 ? null : _parseMediaType(this.headers.fields[i].value);
      } catch (e) {
        headerError(e, "Content-Type", this.headers, i);
      }
    }
    return c.mediaType ?? undefined;
  }
  /** Content-Type value without parameters, lowercase, or undefined. */
  get contentType(): string | undefined {
    return this.mediaType?.type;
  }
  /** Event header (RFC 6665 section 8.2.1: event type and id), or undefined. */
  get event(): TokenParams | undefined {
    const c = this.#cache();
    if (c.event === undefined) c.event = parseOptional(this.headers, "Event", _parseTokenParams);
    return c.event ?? undefined;
  }
  /** Subscription-State header (RFC 6665 section 8.2.3), or undefined. */
  get subscriptionState(): TokenParams | undefined {
    const c = this.#cache();
    if (c.subscriptionState === undefined) {
      c.subscriptionState = parseOptional(this.headers, "Subscription-State", _parseTokenParams);
    }
    return c.subscriptionState ?? undefined;
  }
  /** Min-Expires (section 20.23), or undefined. */
  get minExpires(): number | undefined {
    const c = this.#cache();
    if (c.minExpires === undefined) {
      c.minExpires = optionalNumber(this.headers, "Min-Expires", 2 ** 32 - 1);
    }
    return c.minExpires ?? undefined;
  }
  /** Option tags of Supported (empty when absent). Not cached. */
  get supported(): string[] {
    return this.headers.values("Supported");
  }
  /** Option tags of Require (empty when absent). Not cached. */
  get require(): string[] {
    return this.headers.values("Require");
  }
  /** Methods of Allow (empty when absent). Not cached. */
  get allow(): string[] {
    return this.headers.values("Allow");
  }
  /** Max-Forwards (0 to 255), or undefined. */
  get maxForwards(): number | undefined {
    const c = this.#cache();
    if (c.maxForwards === undefined) {
      c.maxForwards = optionalNumber(this.headers, "Max-Forwards", 255);
    }
    return c.maxForwards ?? undefined;
  }
  /** Expires header in seconds, or undefined. */
  get expires(): number | undefined {
    const c = this.#cache();
    if (c.expires === undefined) c.expires = optionalNumber(this.headers, "Expires", 2 ** 32 - 1);
    return c.expires ?? undefined;
  }
  /** Content-Length header, or undefined. */
  get contentLength(): number | undefined {
    const c = this.#cache();
    if (c.contentLength === undefined) {
      c.contentLength = optionalNumber(this.headers, "Content-Length", 2 ** 32 - 1);
    }
    return c.contentLength ?? undefined;
  }
  /**
   * Date header, or undefined. Throws SipSyntaxError when it is not an RFC 1123
   * date in GMT (RFC 4475 3.1.2.12: only reject when the Date matters).
   */
  get date(): Date | undefined {
    const c = this.#cache();
    if (c.date === undefined) {
      const i = this.headers._index("Date");
      try {
        scan.base = 0;
        c.date = i === -1 ? null : _parseSipDate(this.headers.fields[i].value);
      } catch (e) {
        headerError(e, "Date", this.headers, i);
      }
    }
    return c.date ?? undefined;
  }
  /** The body decoded as UTF-8 text. */
  get text(): string {
    return new TextDecoder().decode(this.body);
  }
  /** Stores the values parseMessage() already checked. @internal */
  _prime(
    topVia: Via,
    from: NameAddr,
    to: NameAddr,
    callId: string,
    cseq: CSeq,
    maxForwards: number | null,
    contentLength: number | null,
  ): void {
    const c = this.#cache();
    c.topVia = topVia;
    c.from = from;
    c.to = to;
    c.callId = callId;
    c.cseq = cseq;
    c.maxForwards = maxForwards;
    c.contentLength = contentLength;
  }
  /** The parsed top Via if it is cached (nothing is parsed). @internal */
  _cachedTopVia(): Via | undefined {
    return this.#cache().topVia;
  }
  /** Caches `via` as the parsed value of the top Via, whose text it is. @internal */
  _primeTopVia(via: Via): void {
    this.#cache().topVia = via;
  }
  /**
   * After the first Via value was replaced in `headers.fields` directly with
   * the text of `via`: like {@linkcode invalidate}, but the typed values of
   * the other fields stay cached (their text did not change), so a request
   * marked with `received`/`rport` on arrival is not parsed again. @internal
   */
  _topViaReplaced(via: Via): void {
    const c = this.#cache();
    this.#dropLineNumbers();
    c.via = undefined;
    c.topVia = via;
  }
  /** Forget cached typed values after editing `headers.fields` directly (the methods of SipHeaders do it). */
  invalidate(): void {
    this.#dropLineNumbers();
    this.#c = newCache();
    this.#v = this.headers.version;
  }
  /**
   * After a direct edit of `headers.fields`: the line numbers kept for error
   * messages no longer match the fields (which are read from the header
   * block first, if they have not been yet).
   */
  #dropLineNumbers(): void {
    void this.headers.fields;
    this.headers._lines = undefined;
    this.headers._head = undefined;
    this.headers._headEnd = 0;
  }
}

/** A SIP request. */
export class SipRequest extends SipMessageBase {
  /** Discriminator. */
  readonly kind = "request" as const;
  /** Method, case-sensitive (e.g. "INVITE"). */
  method: string;
  /** Request-URI. */
  uri: Uri;
  /**
   * The To tag this UA answers the request with, once chosen (the
   * transaction layer's `localTagFor`). A field rather than a WeakMap entry:
   * an ephemeron per request outlived V8's scavenges under a flood.
   * @ignore
   */
  localTag: string | undefined = undefined;

  /** Creates a request. */
  constructor(method: string, uri: Uri, headers: SipHeaders, body?: Uint8Array) {
    super(headers, body);
    this.method = method;
    this.uri = uri;
  }
}

/** A SIP response. */
export class SipResponse extends SipMessageBase {
  /** Discriminator. */
  readonly kind = "response" as const;
  /** Status code 100 to 699. */
  status: number;
  /** Reason phrase. */
  reason: string;

  /** Creates a response. */
  constructor(status: number, reason: string, headers: SipHeaders, body?: Uint8Array) {
    super(headers, body);
    this.status = status;
    this.reason = reason;
  }
}

/** A request or a response. */
export type SipMessage = SipRequest | SipResponse;

// ---------------------------------------------------------------- parsing

const utf8Fatal = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function decodeHead(data: Uint8Array, start: number, end: number): string {
  // The non-fatal decoder has the fast path; a U+FFFD in the result is
  // either in the input or a decoding error, which the fatal decoder tells.
  const sub = data.subarray(start, end);
  const text = utf8.decode(sub);
  if (text.indexOf("\uFFFD") !== -1) {
    try {
      utf8Fatal.decode(sub);
    } catch (e) {
      throw new SipMessageError("Cannot parse message: header fields are not valid UTF-8", {
        offset: start,
        cause: e,
      });
    }
  }
  return text;
}

/** Parses `SIP/x.y` at s[i..end); returns the version or "" when not one. */
function readVersion(s: string, i: number, end: number): string {
  // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
  if (end - i === 7 && s.startsWith("SIP/2.0", i)) return "SIP/2.0";
  if (end - i < 7 || (s.charCodeAt(i) | 32) !== 115 || (s.charCodeAt(i + 1) | 32) !== 105) {
    return "";
  }
  if ((s.charCodeAt(i + 2) | 32) !== 112 || s.charCodeAt(i + 3) !== 47) return "";
  let j = i + 4;
  let digits = 0;
  while (j < end && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++, digits++;
  if (digits === 0 || s.charCodeAt(j) !== 46) return "";
  j++;
  digits = 0;
  while (j < end && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++, digits++;
  if (digits === 0 || j !== end) return "";
  return "SIP" + s.slice(i + 3, end);
}

function parseStartLine(s: string, end: number, headers: SipHeaders): SipMessage {
  // Status-Line = SIP-Version SP ..., and "SIP" matches in any case.
  if (
    (s.charCodeAt(0) | 32) === 115 && (s.charCodeAt(1) | 32) === 105 &&
    (s.charCodeAt(2) | 32) === 112 && s.charCodeAt(3) === 47
  ) return parseStatusLine(s, end, headers);
  return parseRequestLine(s, end, headers);
}

/** Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF, at `s[0..end)`. */
function parseStatusLine(s: string, end: number, headers: SipHeaders): SipResponse {
  // Fast path: "SIP/2.0 NNN " (where the SP searches would find the two SPs).
  let sp = 7;
  let codeEnd = 11;
  let version = "SIP/2.0";
  let status = end > 11 && s.charCodeAt(7) === 32 && s.charCodeAt(11) === 32 &&
      s.startsWith("SIP/2.0", 0)
    ? parseDigits(s, 699, 8, 11)
    : -1;
  if (status < 100) {
    sp = s.indexOf(" ");
    if (sp === -1 || sp > end) throw startError("missing status code");
    version = readVersion(s, 0, sp);
    if (version === "") throw startError(`invalid SIP-Version "${s.slice(0, sp)}"`);
    codeEnd = s.indexOf(" ", sp + 1);
    if (codeEnd === -1 || codeEnd > end) codeEnd = end;
    status = codeEnd - sp === 4 ? parseDigits(s, 699, sp + 1, codeEnd) : -1;
    if (status < 100) throw startError(`invalid status code "${s.slice(sp + 1, codeEnd)}"`);
  }
  for (let i = codeEnd + 1; i < end; i++) {
    const c = s.charCodeAt(i);
    if ((c < 32 && c !== 9) || c === 127) throw startError("control character in reason phrase");
  }
  const res = new SipResponse(status, codeEnd === end ? "" : s.slice(codeEnd + 1, end), headers);
  res.version = version;
  return res;
}

/** Request-Line = Method SP Request-URI SP SIP-Version CRLF, at `s[0..end)`. */
function parseRequestLine(s: string, end: number, headers: SipHeaders): SipRequest {
  // Request-Line = Method SP Request-URI SP SIP-Version CRLF (exactly one SP
  // between elements; RFC 4475 sections 3.1.2.8 to 3.1.2.10).
  const method = readMethod(s, 0, end);
  const me = scan.end;
  if (me === 0) throw startError(`invalid method "${s.slice(0, Math.min(end, 20))}"`);
  if (s.charCodeAt(me) !== 32) {
    throw startError(`invalid character "${s[me]}" in method at column ${me + 1}`);
  }
  if (s.charCodeAt(end - 1) === 32 || s.charCodeAt(end - 1) === 9) {
    throw startError("whitespace at the end of the Request-Line");
  }
  // Fast path: the line ends in " SIP/2.0", so its last SP is the one before it.
  const fast = end - me > 9 && s.charCodeAt(end - 8) === 32 && s.startsWith("SIP/2.0", end - 7);
  const sp2 = fast ? end - 8 : s.lastIndexOf(" ", end - 1);
  if (sp2 <= me) throw startError("missing SIP-Version");
  const version = fast ? "SIP/2.0" : readVersion(s, sp2 + 1, end);
  if (version === "") throw startError(`invalid SIP-Version "${s.slice(sp2 + 1, end)}"`);
  if (sp2 === me + 1 || s.charCodeAt(me + 1) === 32) {
    throw startError("more than one space after the method");
  }
  if (s.charCodeAt(sp2 - 1) === 32) throw startError("more than one space before the SIP-Version");
  let uri: Uri;
  try {
    scan.base = me + 1;
    uri = _parseUri(s, me + 1, sp2);
  } catch (e) {
    refuseRequestUri(s, me + 1, sp2, e);
  }
  const req = new SipRequest(method, uri, headers);
  req.version = version;
  return req;
}

/**
 * Throws the error for the Request-URI `s[start..end)` that did not parse:
 * whitespace inside it (RFC 4475 3.1.2.7, 3.1.2.10) or angle brackets around
 * it (3.1.2.8) are named as such.
 */
function refuseRequestUri(s: string, start: number, end: number, e: unknown): never {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 32 || c === 9) {
      throw startError(`whitespace inside the Request-URI "${s.slice(start, end)}"`);
    }
  }
  if (s.charCodeAt(start) === 60) throw startError("the Request-URI must not be enclosed in <>");
  rethrow(e, `Request-URI "${s.slice(start, end)}"`, { line: 1 });
}

function startError(why: string): SipMessageError {
  return new SipMessageError(`Cannot parse start line: ${why}`, { line: 1 });
}

/** Options of {@linkcode parseMessage}. */
export interface ParseOptions {
  /**
   * The message came from a stream transport (already framed): Content-Length
   * is required (RFC 3261 section 18.3) and must match the body exactly.
   * Default false (a datagram).
   */
  stream?: boolean;
}

/**
 * Parses one message from bytes. Eagerly checks what the stack needs (start
 * line, top Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, a
 * single From/To/Call-ID/CSeq/Max-Forwards, the CSeq method of requests);
 * throws a {@linkcode SipMessageError} (a {@linkcode SipSyntaxError}, so a
 * `SyntaxError`) when malformed, carrying the status to answer, the line and
 * header where it failed and, when possible, the partial message; a
 * {@linkcode SipVersionError} for a version other than SIP/2.0. Other headers
 * are kept raw and parsed by the typed getters on first use.
 *
 * On datagrams the body is the rest of the packet cut to Content-Length
 * (a shorter body is an error; without Content-Length, the rest of the
 * packet). With `stream: true` the framer has already cut it and
 * Content-Length is required. Header fields are decoded as UTF-8 (CRLF or
 * bare LF line ends; folded lines unfolded); the body is kept as bytes.
 *
 * @example
 * ```ts
 * import { parseMessage } from "./message.ts";
 * const res = parseMessage(new TextEncoder().encode(
 *   "SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b.com>;tag=1\r\n" +
 *     "t: <sip:c@d.com>;tag=2\r\ni: x\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
 * ));
 * res.kind === "response" && res.status; // 180
 * res.toTag; // "2"
 * ```
 */
export function parseMessage(data: Uint8Array | string, options?: ParseOptions): SipMessage {
  const stream = options?.stream === true;
  const msg = parseFramed(data, stream);
  if (stream && msg.contentLength === undefined) {
    throw new SipMessageError(
      "Cannot parse message: missing Content-Length header (required on streams)",
      { header: "Content-Length", partial: msg },
    );
  }
  return msg;
}

function parseFramed(data: Uint8Array | string, stream: boolean): SipMessage {
  const msg = typeof data === "string" ? parseText(data, stream) : parseBytes(data, stream);
  if (msg === undefined) throw new SipMessageError("Cannot parse message: empty header line");
  return msg;
}

/** Parses a message given as text (the body is encoded as UTF-8). */
function parseText(data: string, stream: boolean): SipMessage | undefined {
  let s = 0;
  while (s < data.length && (data.charCodeAt(s) === 13 || data.charCodeAt(s) === 10)) s++;
  const head = s === 0 ? data : data.slice(s);
  let end = head.indexOf("\r\n\r\n");
  let skip = 4;
  const lf = head.indexOf("\n\n");
  if (lf !== -1 && (end === -1 || lf < end)) {
    end = lf;
    skip = 2;
  }
  if (end === -1) return parseRest(head, head.length, undefined, -1, stream, false);
  const body = encoder.encode(head.slice(end + skip));
  return parseRest(head, end, body, 0, stream, false);
}

/**
 * Parses a message from bytes. Fast path: decode everything once and let the
 * header scan find the empty line in the text. ASCII bytes decode one to one,
 * so when the bytes at the text offset are CRLFCRLF too, every byte before
 * decoded to one character and the offsets agree (otherwise, or when the
 * text holds U+FFFD, a stand-in for bytes that are not UTF-8: the byte scan
 * of parseBytesSlow).
 */
function parseBytes(data: Uint8Array, stream: boolean): SipMessage | undefined {
  // RFC 3261 section 7.5: ignore CRLFs before the start line.
  let s = 0;
  while (s < data.length && (data[s] === 13 || data[s] === 10)) s++;
  const text = utf8.decode(s === 0 ? data : data.subarray(s));
  if (text.indexOf("\uFFFD") === -1) {
    const msg = parseRest(text, text.length, data, s, stream, true);
    if (msg !== undefined) return msg;
  }
  return parseBytesSlow(data, s, stream);
}

/** Frames on the bytes (CRLF or bare LF line ends), then decodes the header block strictly. */
function parseBytesSlow(data: Uint8Array, s: number, stream: boolean): SipMessage | undefined {
  let end = -1;
  let i = data.indexOf(10, s);
  while (i !== -1) {
    const n1 = data[i + 1];
    if (n1 === 10) {
      end = i + 2;
      break;
    }
    if (n1 === 13 && data[i + 2] === 10) {
      end = i + 3;
      break;
    }
    i = data.indexOf(10, i + 1);
  }
  if (end === -1) {
    const head = decodeHead(data, s, data.length);
    return parseRest(head, head.length, undefined, -1, stream, false);
  }
  // header block without the empty line's CRLF and without the last line's CRLF
  let he = i;
  if (he > s && data[he - 1] === 13) he--;
  const head = decodeHead(data, s, he);
  return parseRest(head, head.length, data, end, stream, false);
}

/**
 * Where the body starts in `bytes` when the header block of `text` (decoded
 * from `bytes` at `base`) ends at the empty line at `e` with CRLF CRLF at the
 * same offsets in both; -1 otherwise.
 */
function bodyAfter(text: string, e: number, bytes: Uint8Array, base: number): number {
  const b = base + e;
  if (
    e < 2 || text.charCodeAt(e - 2) !== 13 || text.charCodeAt(e - 1) !== 10 ||
    text.charCodeAt(e) !== 13 || text.charCodeAt(e + 1) !== 10
  ) return -1;
  if (bytes[b - 2] !== 13 || bytes[b - 1] !== 10 || bytes[b] !== 13 || bytes[b + 1] !== 10) {
    return -1;
  }
  return b + 2;
}

/**
 * What the scan of the header block found out about the headers that every
 * layer reads, by tracking code (H_VIA to H_CONTENT_LENGTH). Parsing is
 * synchronous, so one instance serves every call.
 */
const found = {
  /** Index in `fields` of the header's first line, -1 when absent. */
  first: new Int32Array(8),
  /** Where that line's value starts in the text; -1 once folded (see `value`). */
  start: new Int32Array(8),
  /** Where that line's value ends in the text. */
  end: new Int32Array(8),
  /** The unfolded value of a first line that has continuation lines. */
  value: new Array<string>(8).fill(""),
  /** The first repeated From, To, Call-ID, CSeq or Max-Forwards line, or -1. */
  dup: -1,
  /** How many Content-Length lines there are. */
  contentLengths: 0,
  /** Where the value found by locate() starts. */
  from: 0,
  /** Where the value found by locate() ends. */
  to: 0,
};

/** Names of the tracked headers, by code. */
const TRACKED_NAMES = [
  "",
  "Via",
  "From",
  "To",
  "Call-ID",
  "CSeq",
  "Max-Forwards",
  "Content-Length",
];

/**
 * Parses the start line and header block of `head[0..n)` (the whole decoded
 * message may follow: headers are read in place, since parsing a flat string
 * is faster than parsing slices of it). With `find` false, the caller framed
 * the message: the body is `bytes[offset..]` (none when `bytes` is undefined)
 * and an empty line inside the block returns undefined. With `find` true,
 * `head` is `bytes` decoded from byte `offset`, the block ends at the first
 * empty line and the body follows it (undefined when the offsets of text and
 * bytes disagree there: the caller frames on the bytes).
 */
function parseRest(
  head: string,
  n: number,
  bytes: Uint8Array | undefined,
  offset: number,
  stream: boolean,
  find: boolean,
): SipMessage | undefined {
  let nl = head.indexOf("\n");
  if (nl === -1 || nl > n) nl = n;
  let lineOneEnd = nl;
  if (lineOneEnd > 0 && head.charCodeAt(lineOneEnd - 1) === 13) lineOneEnd--;
  if (lineOneEnd === 0) throw startError("empty message");
  const headers = SipHeaders._parsed(head, nl + 1, n);
  // All-ASCII input (every byte decoded to one character; the caller has
  // ruled out U+FFFD): names, hosts, parameter values and the Call-ID are
  // scanned on the bytes, at `offset` more.
  const ascii = find && head.length === bytes!.length - offset ? bytes : undefined;
  if (ascii !== undefined) {
    scan.text = head;
    scan.bytes = ascii;
    scan.offset = offset;
  }
  try {
    return parseHead(head, n, bytes, offset, stream, find, headers, nl, lineOneEnd, ascii);
  } finally {
    // Never kept past this call: the caller may reuse the buffer.
    scan.text = "";
    scan.bytes = undefined;
  }
}

function parseHead(
  head: string,
  n: number,
  bytes: Uint8Array | undefined,
  offset: number,
  stream: boolean,
  find: boolean,
  headers: SipHeaders,
  nl: number,
  lineOneEnd: number,
  ascii: Uint8Array | undefined,
): SipMessage | undefined {
  let msg: SipMessage;
  let startFailure: SipSyntaxError | undefined;
  try {
    msg = parseStartLine(head, lineOneEnd, headers);
  } catch (e) {
    msg = placeholderRequest(head, e, headers);
    startFailure = e as SipSyntaxError;
  }
  const end = scanFields(head, nl + 1, n, ascii, offset);
  let bodyStart = offset;
  if (find) {
    bodyStart = bodyAfter(head, end, bytes!, offset);
    if (bodyStart === -1) return undefined;
  } else if (end < n) return undefined;
  headers._headEnd = end;
  if (startFailure !== undefined) {
    throw new SipMessageError(startFailure.message, {
      line: 1,
      partial: msg,
      cause: startFailure.cause ?? startFailure,
    });
  }
  const cl = readContentLength(msg, head);
  cutBody(msg, cl, bytes, bodyStart, stream);
  primeTracked(msg, head, cl, ascii, offset);
  checkRepeated(msg);
  if (msg.version !== "SIP/2.0") {
    // Section 8.2.2 / RFC 4475 3.1.2.16: answer 505 Version Not Supported.
    throw new SipVersionError(
      `Cannot parse start line: unsupported SIP-Version "${msg.version}"`,
      msg.version,
      { partial: msg, line: 1 },
    );
  }
  if (msg.kind === "request") checkRequest(msg);
  return msg;
}

/**
 * A request whose Request-Line is malformed can still be answered with 400
 * (RFC 4475 3.1.2.7 to 3.1.2.10) when its header lines are readable: they are
 * read into a request with an empty placeholder Request-URI. Other start-line
 * errors are rethrown.
 */
function placeholderRequest(head: string, e: unknown, headers: SipHeaders): SipRequest {
  const me = readToken(head, 0);
  if (
    !(e instanceof SipSyntaxError) || me === 0 || head.charCodeAt(me) !== 32 ||
    head.startsWith("SIP/")
  ) throw e;
  return new SipRequest(
    head.slice(0, me),
    { scheme: "", host: "", params: {}, headers: {} },
    headers,
  );
}

/**
 * Checks the header lines of `s[pos..n)` (section 7.3.1: name HCOLON value,
 * or a continuation line) and notes in `found` where the tracked headers are;
 * the fields themselves are read on first use (SipHeaders.fields). Returns
 * where an empty line starts, else `n`. Throws on a line that is not a header
 * field.
 */
function scanFields(
  s: string,
  pos: number,
  n: number,
  ascii: Uint8Array | undefined,
  base: number,
): number {
  for (let code = 0; code < found.first.length; code++) found.first[code] = -1;
  found.dup = -1;
  found.contentLengths = 0;
  let line = 1;
  let fields = 0;
  // The tracked header whose first line is the last field read, else 0.
  let code = 0;
  let cr = -1;
  while (pos < n) {
    line++;
    let nl = s.indexOf("\n", pos);
    if (nl === -1 || nl > n) nl = n;
    let end = nl;
    if (end > pos && s.charCodeAt(end - 1) === 13) end--;
    if (end === pos) return pos;
    const c0 = s.charCodeAt(pos);
    if (c0 !== 32 && c0 !== 9) {
      const nameEnd = ascii === undefined
        ? readFieldName(s, pos, end)
        : readFieldNameBytes(ascii, base + pos, base + end) - base;
      code = checkField(s, pos, nameEnd, end, line, fields++);
    } else if (fields === 0) {
      throw new SipMessageError("Cannot parse message: continuation line before any header", {
        line,
      });
    } else if (code !== 0) {
      foldTracked(s, pos, end, code);
    }
    // CR and LF only end lines (section 7.3.1); a stray one would be copied
    // into responses (and is the stuff of header injection). The first
    // From, To, Call-ID, CSeq, Max-Forwards and Content-Length lines need
    // no search: their parsers read the whole value and refuse a CR.
    if (code <= H_VIA) {
      if (cr < pos) {
        cr = s.indexOf("\r", pos);
        if (cr === -1 || cr > n) cr = n;
      }
      if (cr < end) {
        throw new SipMessageError(`Cannot parse header line ${line}: CR inside the line`, {
          line,
        });
      }
    }
    pos = nl + 1;
  }
  return n;
}

/**
 * Checks the header line `s[pos..end)` (name HCOLON value). Returns the
 * tracking code when it is the first line of a tracked header, else 0.
 */
function checkField(
  s: string,
  pos: number,
  nameEnd: number,
  end: number,
  line: number,
  index: number,
): number {
  // field-name = token (read by the caller: `nameEnd`, `scan.known`), then
  // HCOLON = *( SP / HTAB ) ":" SWS
  const code = scan.known;
  let i = nameEnd;
  let c = s.charCodeAt(i);
  while (i < end && (c === 32 || c === 9)) c = s.charCodeAt(++i);
  if (i === end || c !== 58 || nameEnd === pos) throw badFieldLine(s, pos, end, line);
  if (code === 0) return 0;
  let vs = i + 1;
  while (vs < end && ((c = s.charCodeAt(vs)) === 32 || c === 9)) vs++;
  let ve = end;
  while (ve > vs && ((c = s.charCodeAt(ve - 1)) === 32 || c === 9)) ve--;
  return track(code, index, vs, ve);
}

/** The error for a header line without a valid name and a colon. */
function badFieldLine(s: string, pos: number, end: number, line: number): SipMessageError {
  const text = s.slice(pos, end);
  const why = text.indexOf(":") === -1 ? 'missing ":"' : "invalid header name";
  return new SipMessageError(
    `Cannot parse header line ${line}: ${why} in "${text.slice(0, 40)}"`,
    { line },
  );
}

/** Notes a line of a tracked header; returns `code` when it is the header's first line. */
function track(code: number, index: number, vs: number, ve: number): number {
  if (found.first[code] === -1) {
    found.first[code] = index;
    found.start[code] = vs;
    found.end[code] = ve;
    if (code === H_CONTENT_LENGTH) found.contentLengths = 1;
    return code;
  }
  if (code === H_CONTENT_LENGTH) found.contentLengths++;
  else if (code !== H_VIA && found.dup === -1) found.dup = index;
  return 0;
}

/**
 * Folds the continuation line `s[pos..end)` into the first line of a tracked
 * header, as SipHeaders.fields does: "a header field value can be extended
 * over multiple lines by preceding each extra line with at least one SP or
 * horizontal tab" (section 7.3.1).
 */
function foldTracked(s: string, pos: number, end: number, code: number): void {
  let v = found.start[code] === -1
    ? found.value[code]
    : s.slice(found.start[code], found.end[code]);
  const more = sliceLws(s, pos, end);
  if (more.length > 0) v = v.length > 0 ? v + " " + more : more;
  found.value[code] = v;
  found.start[code] = -1;
}

/** The (unfolded) first value of a tracked header, which is present. */
function trackedValue(code: number, head: string): string {
  const start = found.start[code];
  return start === -1 ? found.value[code] : head.slice(start, found.end[code]);
}

/** The (unfolded) first value of a tracked header read as digits up to `max`, else -1. */
function trackedNumber(code: number, head: string, max: number): number {
  const start = found.start[code];
  return start === -1
    ? parseDigits(found.value[code], max)
    : parseDigits(head, max, start, found.end[code]);
}

/**
 * The Content-Length (sections 18.3 and 20.14), -1 when absent. Throws on a
 * value that is not a number, or several different values.
 */
function readContentLength(msg: SipMessage, head: string): number {
  const at = found.first[H_CONTENT_LENGTH];
  if (at === -1) return -1;
  const headers = msg.headers;
  const cl = trackedNumber(H_CONTENT_LENGTH, head, 2 ** 32 - 1);
  if (cl < 0) {
    // RFC 4475 3.1.2.3: a negative (or otherwise bad) Content-Length is a
    // framing error; over UDP the rest of the datagram is discarded.
    const v = trackedValue(H_CONTENT_LENGTH, head);
    throw new SipMessageError(
      `Cannot parse Content-Length header: "${v}" is not a number from 0 to 2^32-1`,
      { header: "Content-Length", line: lineAt(headers, at), partial: msg },
    );
  }
  if (found.contentLengths > 1) {
    const fields = headers.fields;
    for (let i = headers._index("Content-Length", at + 1); i !== -1;) {
      // RFC 4475 3.3.8: conflicting Content-Length values are a framing error.
      if (parseDigits(fields[i].value, 2 ** 32 - 1) !== cl) {
        throw new SipMessageError(
          "Cannot parse Content-Length header: several different values",
          { header: "Content-Length", line: lineAt(headers, i), partial: msg },
        );
      }
      i = headers._index("Content-Length", i + 1);
    }
  }
  return cl;
}

/**
 * Sets the body from `bytes[bodyStart..]` (undefined: the input had no
 * empty line) cut to Content-Length `cl` (-1 when absent).
 */
function cutBody(
  msg: SipMessage,
  cl: number,
  bytes: Uint8Array | undefined,
  bodyStart: number,
  stream: boolean,
): void {
  if (bytes === undefined) {
    if (cl > 0) throw framingError(msg, `Content-Length is ${cl} but there is no body`);
    return;
  }
  const avail = bytes.length - bodyStart;
  if (cl === -1) {
    // Section 18.3: without Content-Length, a datagram's body runs to its end.
    if (avail > 0) msg.body = bytes.slice(bodyStart);
  } else if (cl > avail) {
    // RFC 4475 3.1.2.2: over UDP a body shorter than Content-Length gets 400.
    throw framingError(msg, `Content-Length is ${cl} but the body has ${avail} bytes`);
  } else if (stream && cl < avail) {
    throw framingError(msg, `${avail - cl} bytes after the ${cl}-byte body of a framed message`);
  } else if (cl > 0) {
    // Section 18.3: octets after Content-Length are discarded (RFC 4475 3.1.1.8).
    msg.body = bytes.slice(bodyStart, bodyStart + cl);
  }
}

/** A body that does not match Content-Length. */
function framingError(msg: SipMessage, why: string): SipMessageError {
  return new SipMessageError(`Cannot parse message: ${why}`, {
    header: "Content-Length",
    line: lineAt(msg.headers, found.first[H_CONTENT_LENGTH]),
    partial: msg,
  });
}

/**
 * Parses what every layer reads (top Via, From, To, Call-ID, CSeq,
 * Max-Forwards) and stores it in the message's cache. Section 8.1.1: To,
 * From, CSeq, Call-ID and Via are mandatory; RFC 4475 3.3.1 wants a 400 when
 * one is missing.
 */
function primeTracked(
  msg: SipMessage,
  head: string,
  cl: number,
  ascii: Uint8Array | undefined,
  base: number,
): void {
  let code = H_VIA;
  try {
    let s = locate(H_VIA, head);
    const topVia = _parseVia(s, found.from, found.to, true);
    code = H_FROM;
    s = locate(H_FROM, head);
    const from = _parseNameAddr(s, found.from, found.to);
    code = H_TO;
    s = locate(H_TO, head);
    const to = _parseNameAddr(s, found.from, found.to);
    code = H_CALL_ID;
    s = locate(H_CALL_ID, head);
    // In the message text (not folded) of all-ASCII input: checked on the bytes.
    let bad: number;
    if (ascii !== undefined && found.start[H_CALL_ID] !== -1) {
      bad = badCallIdAtBytes(ascii, base + found.from, base + found.to);
      if (bad !== -1) bad -= base;
    } else bad = badCallIdAt(s, found.from, found.to);
    if (bad !== -1) throw fail(`invalid character "${s[bad]}" at column ${col(bad)}`);
    const callId = found.from === 0 && found.to === s.length ? s : s.slice(found.from, found.to);
    code = H_CSEQ;
    s = locate(H_CSEQ, head);
    const cseq = _parseCSeq(s, found.from, found.to);
    code = H_MAX_FORWARDS;
    const maxForwards = readMaxForwards(head);
    msg._prime(topVia, from, to, callId, cseq, maxForwards, cl === -1 ? null : cl);
  } catch (e) {
    const which = TRACKED_NAMES[code];
    const at = found.first[code];
    const err = e as SipSyntaxError;
    throw new SipMessageError(
      at === -1 ? err.message : `Cannot parse ${which} header: ${err.message}`,
      {
        header: which,
        line: at === -1 ? undefined : lineAt(msg.headers, at),
        cause: e,
        partial: msg,
      },
    );
  }
}

/** Index of the first line of a tracked header; throws when it is missing. */
function need(code: number): number {
  const i = found.first[code];
  if (i === -1) throw fail(`Cannot parse message: missing ${TRACKED_NAMES[code]} header`);
  return i;
}

/**
 * The text that holds the first value of a tracked header, which is then at
 * `found.from` to `found.to`: the message text when the line is not folded,
 * else the field value. Sets `scan.base` for column numbers in errors.
 */
function locate(code: number, head: string): string {
  need(code);
  const start = found.start[code];
  if (start === -1) {
    const v = found.value[code];
    found.from = scan.base = 0;
    found.to = v.length;
    return v;
  }
  found.from = scan.base = start;
  found.to = found.end[code];
  return head;
}

/** Max-Forwards (0 to 255), null when absent. */
function readMaxForwards(head: string): number | null {
  if (found.first[H_MAX_FORWARDS] === -1) return null;
  const maxForwards = trackedNumber(H_MAX_FORWARDS, head, 255);
  if (maxForwards < 0) {
    throw fail(`"${trackedValue(H_MAX_FORWARDS, head)}" is not a number from 0 to 255`);
  }
  return maxForwards;
}

/** RFC 4475 3.3.8: a repeated From, To, Call-ID, CSeq or Max-Forwards gets 400. */
function checkRepeated(msg: SipMessage): void {
  if (found.dup === -1) return;
  const name = msg.headers.fields[found.dup].name;
  throw new SipMessageError(`Cannot parse ${name} header: more than one ${name} header`, {
    header: name,
    line: lineAt(msg.headers, found.dup),
    partial: msg,
  });
}

/** What only requests must pass: the CSeq method, no headers in the Request-URI. */
function checkRequest(msg: SipRequest): void {
  const cseqMethod = msg.cseq.method;
  if (cseqMethod !== msg.method) {
    // RFC 4475 3.1.2.17: a method mismatch gets 400; 3.1.2.18: with an
    // unknown method, 501 Not Implemented is preferred.
    const known = KNOWN_METHODS.has(msg.method);
    throw new SipMessageError(
      `Cannot parse CSeq header: method "${cseqMethod}" does not match the Request-Line method "${msg.method}"`,
      {
        header: "CSeq",
        line: lineAt(msg.headers, found.first[H_CSEQ]),
        partial: msg,
        status: known ? 400 : 501,
      },
    );
  }
  if (hasKeys(msg.uri.headers)) {
    // Section 19.1.1 (table 1): headers are not allowed in a Request-URI
    // (RFC 4475 3.1.2.11 accepts a 400 here).
    throw new SipMessageError(
      "Cannot parse start line: the Request-URI must not contain headers",
      { line: 1, partial: msg },
    );
  }
}

/** True when the object has an own enumerable property. */
function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/** The methods of RFC 3261 and its extensions that sipkit knows. */
export const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);

// ---------------------------------------------------------------- formatting

/** Options of {@linkcode formatMessage}. */
export interface FormatOptions {
  /**
   * Write the compact form of header names that have one (RFC 3261 section
   * 7.3.3: "v" for Via, "f" for From, "i" for Call-ID...). Every SIP
   * implementation must accept them; they save bytes on every message.
   * Default false.
   */
  compact?: boolean;
  /**
   * Write Content-Length. Default true. Over UDP it may be left out: section
   * 18.3 has the body run to the end of the datagram then (20.14: "SHOULD",
   * and "MUST" only on streams).
   */
  contentLength?: boolean;
}

/** Canonical name -> compact form, for the RFC 3261/3265 forms every peer knows. */
const SHORT_NAMES = new Map<string, string>(
  ["c", "e", "f", "i", "k", "l", "m", "o", "s", "t", "u", "v"].map((c) => [
    COMPACT_FORMS[c as keyof typeof COMPACT_FORMS],
    c,
  ]),
);

/**
 * Serializes a message, setting Content-Length from the body (in place of an
 * existing Content-Length line, else at the end). Throws TypeError on CR or
 * LF inside any header value, display name, URI part or reason phrase (the
 * header-injection guard), or an invalid method, status or header name.
 *
 * @example
 * ```ts
 * import { createRequest, formatMessage } from "./message.ts";
 * const req = createRequest("MESSAGE", "sip:bob@example.com", { body: "hi", contentType: "text/plain" });
 * new TextDecoder().decode(formatMessage(req)).startsWith("MESSAGE sip:bob@example.com SIP/2.0\r\n"); // true
 * ```
 */
export function formatMessage(msg: SipMessage, options: FormatOptions = {}): Uint8Array {
  const out = formatHead(msg, options);
  const body = msg.body;
  // One exact-size buffer for a message without a body (most answers);
  // otherwise the head encoded into a buffer sized for the worst case.
  if (body.length === 0) return encoder.encode(out);
  const buf = new Uint8Array(out.length * 3 + body.length);
  const { written } = encoder.encodeInto(out, buf);
  buf.set(body, written);
  return buf.slice(0, written + body.length);
}

/**
 * The start line and header fields of a message as {@linkcode formatMessage}
 * writes them, up to and with the empty line (its bytes are this text in
 * UTF-8, then the body): for a message without a body, all of it, which a
 * transport can encode straight into its own buffer. Throws as
 * `formatMessage` does.
 *
 * @example
 * ```ts
 * import { createRequest, formatHead } from "./message.ts";
 * const req = createRequest("OPTIONS", "sip:bob@example.com");
 * formatHead(req).endsWith("Content-Length: 0\r\n\r\n"); // true
 * ```
 */
export function formatHead(msg: SipMessage, options: FormatOptions = {}): string {
  const short = options.compact ? SHORT_NAMES : undefined;
  let out: string;
  if (msg.kind === "request") {
    if (!isToken(msg.method)) {
      throw new TypeError(`Cannot format request: invalid method "${msg.method}"`);
    }
    out = msg.method + " " + formatUri(msg.uri) + " SIP/2.0\r\n";
  } else {
    if (!Number.isInteger(msg.status) || msg.status < 100 || msg.status > 699) {
      throw new TypeError(`Cannot format response: invalid status ${msg.status}`);
    }
    refuseCrLf(msg.reason, "reason phrase");
    out = "SIP/2.0 " + msg.status + " " + msg.reason + "\r\n";
  }
  let clDone = options.contentLength === false;
  const fields = msg.headers.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.name === "Content-Length") {
      if (!clDone) out += (short ? "l: " : "Content-Length: ") + msg.body.length + "\r\n";
      clDone = true;
      continue;
    }
    if (!isToken(f.name)) throw new TypeError(`Cannot format header: invalid name "${f.name}"`);
    refuseCrLf(f.value, `${f.name} header`);
    out += (short?.get(f.name) ?? f.name) + ": " + f.value + "\r\n";
  }
  if (!clDone) out += (short ? "l: " : "Content-Length: ") + msg.body.length + "\r\n";
  return out + "\r\n";
}

// ---------------------------------------------------------------- builders

/** Options for {@linkcode createRequest} and {@linkcode createResponse}. */
export interface MessageOptions {
  /** Header fields, in order (Content-Length is computed; do not pass it). */
  headers?: HeadersInit;
  /** Body as bytes, or text encoded as UTF-8. Default: empty. */
  body?: Uint8Array | string;
  /** Sets Content-Type when given. */
  contentType?: string;
}

function applyOptions(headers: SipHeaders, options: MessageOptions): Uint8Array {
  if (options.contentType !== undefined) headers.set("Content-Type", options.contentType);
  const b = options.body;
  return b === undefined ? EMPTY : typeof b === "string" ? encoder.encode(b) : b;
}

/**
 * Builds a request from parts. Headers are copied in order; nothing is added
 * but Content-Type (when `contentType` is given).
 *
 * @example
 * ```ts
 * import { createRequest } from "./message.ts";
 * const req = createRequest("OPTIONS", "sip:bob@example.com", { headers: { "Max-Forwards": "70" } });
 * req.maxForwards; // 70
 * ```
 */
export function createRequest(
  method: string,
  uri: Uri | string,
  options: MessageOptions = {},
): SipRequest {
  const headers = SipHeaders.from(options.headers ?? []);
  const body = applyOptions(headers, options);
  return new SipRequest(method, typeof uri === "string" ? parseUri(uri) : uri, headers, body);
}

/** Options for {@linkcode createResponse}. */
export interface ResponseOptions extends MessageOptions {
  /** Reason phrase. Default: the standard text for the status. */
  reason?: string;
  /** To tag to add when the request's To has none (section 8.2.6.2). */
  toTag?: string;
}

/**
 * Builds a response to a request (RFC 3261 section 8.2.6.2): copies Via (all,
 * in order), From, To (adding `toTag` when the request had none), Call-ID,
 * CSeq; Timestamp for 100 (section 8.2.6.1); Record-Route for 101-299
 * responses (section 12.1.1). `headers` are appended after those. Works on
 * the `partial` message of a {@linkcode SipMessageError} too (raw lines are
 * copied; an unreadable To gets no tag).
 *
 * @example
 * ```ts
 * import { createResponse, parseMessage, type SipRequest } from "./message.ts";
 * const req = parseMessage(
 *   "BYE sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnashds10\r\n" +
 *     "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n" +
 *     "Call-ID: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
 * ) as SipRequest;
 * const res = createResponse(req, 200);
 * res.reason; // "OK"
 * res.cseq.method; // "BYE"
 * ```
 */
export function createResponse(
  request: SipRequest,
  status: number,
  options: ResponseOptions = {},
): SipResponse {
  const copy: HeaderField[] = [];
  const fields = request.headers.fields;
  const withRR = status > 100 && status < 300;
  for (const f of fields) {
    const n = f.name;
    if (
      n === "Via" || n === "From" || n === "Call-ID" || n === "CSeq" ||
      (n === "Record-Route" && withRR) || (n === "Timestamp" && status === 100)
    ) {
      copy.push({ name: n, value: f.value });
    } else if (n === "To") {
      let value = f.value;
      if (options.toTag !== undefined && !hasToTag(request)) value += ";tag=" + options.toTag;
      copy.push({ name: n, value });
    }
  }
  const headers = new SipHeaders(copy);
  if (options.headers !== undefined) {
    for (const f of SipHeaders.from(options.headers).fields) headers.fields.push(f);
  }
  const body = applyOptions(headers, options);
  const res = new SipResponse(status, options.reason ?? reasonPhrase(status), headers, body);
  // Its top Via is the request's, text for text: parsed already (the
  // transport layer reads it to route the response).
  const top = request._cachedTopVia();
  if (top !== undefined) res._primeTopVia(top);
  return res;
}

/** True when the To header has a tag, or cannot be read (then it is left alone). */
function hasToTag(request: SipRequest): boolean {
  try {
    return request.to.params.tag != null;
  } catch {
    return true;
  }
}

/**
 * A deep copy of a message (headers, URI, body); typed caches start empty.
 *
 * @example
 * ```ts
 * import { cloneMessage, createRequest } from "./message.ts";
 * const a = createRequest("OPTIONS", "sip:bob@example.com");
 * const b = cloneMessage(a);
 * b.headers.set("Max-Forwards", "69");
 * a.headers.has("Max-Forwards"); // false
 * ```
 */
export function cloneMessage<T extends SipMessage>(msg: T): T {
  const headers = msg.headers.clone();
  const body = msg.body.slice();
  let copy: SipMessage;
  if (msg.kind === "request") {
    copy = new SipRequest(msg.method, structuredClone(msg.uri), headers, body);
  } else {
    copy = new SipResponse(msg.status, msg.reason, headers, body);
  }
  copy.version = msg.version;
  return copy as T;
}
