/**
 * Values of single SIP headers: Via (RFC 3261 section 20.42, RFC 3581),
 * CSeq (20.16), Content-Type media types (20.15), Date (20.17), Call-ID
 * (20.8) and token-with-parameters headers such as Event and
 * Subscription-State (RFC 6665). Each comes as a parse function (and format
 * where the stack writes it); {@linkcode ./message.ts} re-exports them.
 *
 * @module
 */

import {
  C_TOKEN,
  C_WORD,
  CHARS,
  col,
  fail,
  formatHeaderParams,
  NameTrie,
  type Params,
  parseDigits,
  parseHeaderParams,
  refuseCrLf,
  rethrow,
  scan,
  skipWs,
} from "./_scan.ts";
import { formatHost, isToken, readHost } from "./uri.ts";

/** One Via value (RFC 3261 section 20.42). */
export interface Via {
  /** Protocol name and version, e.g. "SIP/2.0". */
  protocol: string;
  /** Uppercase transport: "UDP", "TCP", "TLS", "SCTP"... */
  transport: string;
  /** sent-by host (IPv6 without brackets). */
  host: string;
  /** sent-by port. */
  port?: number;
  /** Parameters: branch, received, rport (null when sent empty), maddr, ttl... */
  params: Params;
}

/** The CSeq header (RFC 3261 section 20.16). */
export interface CSeq {
  /** Sequence number, 0 to 2**31-1. */
  seq: number;
  /** Method, case-sensitive. */
  method: string;
}

/** The methods of RFC 3261 and its extensions that sipkit knows. @internal */
export const METHODS: readonly string[] = [
  "ACK",
  "BYE",
  "CANCEL",
  "INFO",
  "INVITE",
  "MESSAGE",
  "NOTIFY",
  "OPTIONS",
  "PRACK",
  "PUBLISH",
  "REFER",
  "REGISTER",
  "SUBSCRIBE",
  "UPDATE",
];
const METHOD_NAMES = new NameTrie(METHODS, { caseSensitive: true });

/**
 * Reads a Method (section 25.1: a token, case-sensitive) at `s[i..end)`:
 * returns it, a shared string when it is a known method ("" when there is
 * no token); `scan.end` is the index after it. @internal
 */
export function readMethod(s: string, i: number, end: number): string {
  const e = METHOD_NAMES.readToken(s, i, end);
  scan.end = e;
  return scan.known === -1 ? s.slice(i, e) : METHODS[scan.known];
}

/** Index after the token starting at `i` (== i when none). @internal */
export function readToken(s: string, i: number, end: number = s.length): number {
  let c;
  while (i < end && (c = s.charCodeAt(i)) < 128 && (CHARS[c] & C_TOKEN) !== 0) i++;
  return i;
}

/** The transports of RFC 3261 and RFC 7118 (WebSocket), uppercase, as Via writes them. */
const TRANSPORTS = ["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"];
const TRANSPORT_NAMES = new NameTrie(TRANSPORTS.map((t) => t.toLowerCase()));

/**
 * Internal: parses the Via value `s[start..end)` in place, without the error
 * prefix. With `list`, `s[start..end)` may hold more values: parses the first
 * one (up to a comma).
 */
export function _parseVia(s: string, start = 0, end: number = s.length, list = false): Via {
  const n = end;
  // via-parm = sent-protocol LWS sent-by *( SEMI via-params )
  // sent-protocol = protocol-name SLASH protocol-version SLASH transport
  let protocol: string;
  let i: number;
  let e: number;
  if (n - start > 8 && s.startsWith("SIP/2.0/", start)) {
    protocol = "SIP/2.0";
    i = start + 8;
  } else {
    i = skipWs(s, start, n);
    e = readToken(s, i, n);
    if (e === i) throw fail("missing protocol name");
    const name = s.slice(i, e);
    i = skipWs(s, e, n);
    if (i >= n || s.charCodeAt(i) !== 47) throw fail('expected "/" after the protocol name');
    i = skipWs(s, i + 1, n);
    e = readToken(s, i, n);
    if (e === i) throw fail("missing protocol version");
    const version = s.slice(i, e);
    i = skipWs(s, e, n);
    if (i >= n || s.charCodeAt(i) !== 47) {
      throw fail('expected "/" after the protocol version');
    }
    i = skipWs(s, i + 1, n);
    protocol = name.toUpperCase() + "/" + version;
  }
  // transport = "UDP" / "TCP" / "TLS" / "SCTP" / other-transport (any case)
  e = TRANSPORT_NAMES.readToken(s, i, n);
  if (e === i) throw fail("missing transport");
  const transport = scan.known === -1 ? s.slice(i, e).toUpperCase() : TRANSPORTS[scan.known];
  i = skipWs(s, e, n);
  if (i === e) throw fail("expected whitespace before sent-by");
  const host = readHost(s, i, n);
  i = skipWs(s, scan.end, n);
  let port: number | undefined;
  if (i < n && s.charCodeAt(i) === 58) {
    i = skipWs(s, i + 1, n);
    const ps = i;
    let v = 0;
    let d;
    while (i < n && (d = s.charCodeAt(i) - 48) >= 0 && d <= 9) {
      v = v * 10 + d;
      i++;
    }
    if (i === ps || i - ps > 5 || v > 65535) throw fail(`invalid port "${s.slice(ps, i + 1)}"`);
    port = v;
  }
  const params: Params = {};
  // Checks ttl, maddr, received, branch and rport (RFC 3581) on the way.
  parseHeaderParams(s, i, params, true, n, list);
  return port === undefined
    ? { protocol, transport, host, params }
    : { protocol, transport, host, port, params };
}

/**
 * Parses one Via value (RFC 3261 section 20.42, RFC 3581 rport).
 *
 * @example
 * ```ts
 * import { parseVia } from "./message.ts";
 * const via = parseVia("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;rport=5061;received=192.0.2.9");
 * via.transport; // "UDP"
 * via.params.rport; // "5061"
 * ```
 */
export function parseVia(text: string): Via {
  try {
    scan.base = 0;
    return _parseVia(text);
  } catch (e) {
    rethrow(e, "Via header", { header: "Via" });
  }
}

/**
 * Formats one Via value. Throws TypeError on CR/LF or an invalid host.
 *
 * @example
 * ```ts
 * import { formatVia } from "./message.ts";
 * formatVia({ protocol: "SIP/2.0", transport: "TCP", host: "::1", port: 5060, params: { branch: "z9hG4bK1", rport: null } });
 * // "SIP/2.0/TCP [::1]:5060;branch=z9hG4bK1;rport"
 * ```
 */
export function formatVia(via: Via): string {
  refuseCrLf(via.protocol, "Via header");
  if (!isToken(via.transport)) throw new TypeError(`Cannot format Via header: bad transport`);
  let out = via.protocol + "/" + via.transport + " " + formatHost(via.host, "Via header");
  if (via.port !== undefined) out += ":" + via.port;
  return out + formatHeaderParams(via.params, "Via header");
}

/** Internal: parse a CSeq value without the error prefix. */
export function _parseCSeq(s: string, start = 0, end: number = s.length): CSeq {
  // CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
  let i = start;
  const n = end;
  let seq = 0;
  let c;
  while (i < n && (c = s.charCodeAt(i) - 48) >= 0 && c <= 9) {
    seq = seq * 10 + c;
    i++;
  }
  if (i === start) throw fail("missing sequence number");
  // Section 8.1.1.5: "The sequence number MUST be expressible as a 32-bit
  // unsigned integer and MUST be less than 2**31."
  if (i - start > 10 || seq >= 2 ** 31) {
    throw fail(`sequence number ${s.slice(start, i)} is too large`);
  }
  const ws = i;
  i = skipWs(s, i, n);
  if (i === ws) throw fail("expected whitespace after the sequence number");
  const method = readMethod(s, i, n);
  if (method === "" || skipWs(s, scan.end, n) !== n) {
    throw fail(`invalid method "${s.slice(i, n)}"`);
  }
  return { seq, method };
}

/** Parses a CSeq value ("4711 INVITE"). */
export function parseCSeq(text: string): CSeq {
  try {
    scan.base = 0;
    return _parseCSeq(text);
  } catch (e) {
    rethrow(e, "CSeq header", { header: "CSeq" });
  }
}

/** A media type: lowercase type/subtype and parameters (RFC 3261 section 20.15). */
export interface MediaType {
  /** "type/subtype", lowercase. */
  type: string;
  /** Parameters (charset, boundary...), lowercase names. */
  params: Params;
}

/** Internal: parse a media type without the error prefix. */
export function _parseMediaType(s: string): MediaType {
  let i = skipWs(s, 0);
  let e = readToken(s, i);
  if (e === i) throw fail("missing media type");
  const type = s.slice(i, e);
  i = skipWs(s, e);
  if (s.charCodeAt(i) !== 47) throw fail('expected "/" in media type');
  i = skipWs(s, i + 1);
  e = readToken(s, i);
  if (e === i) throw fail("missing media subtype");
  const params: Params = {};
  parseHeaderParams(s, e, params);
  return { type: (type + "/" + s.slice(i, e)).toLowerCase(), params };
}

/** Parses a Content-Type value ("application/sdp;charset=utf-8"). */
export function parseMediaType(text: string): MediaType {
  try {
    scan.base = 0;
    return _parseMediaType(text);
  } catch (e) {
    rethrow(e, "media type");
  }
}

const WKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Internal: parse a SIP-date without the error prefix. */
export function _parseSipDate(s: string): Date {
  // SIP-date = rfc1123-date = wkday "," SP date1 SP time SP "GMT"
  // date1 = 2DIGIT SP month SP 4DIGIT; time = 2DIGIT ":" 2DIGIT ":" 2DIGIT
  // (section 20.17: "the time zone MUST be GMT").
  const two = (i: number) => parseDigits(s.slice(i, i + 2), 99);
  if (s.length !== 29 || s[3] !== "," || s[4] !== " " || s[7] !== " " || s[11] !== " ") {
    throw fail(`"${s}" is not an RFC 1123 date`);
  }
  if (s[16] !== " " || s[19] !== ":" || s[22] !== ":" || s[25] !== " ") {
    throw fail(`"${s}" is not an RFC 1123 date`);
  }
  if (s.slice(26) !== "GMT") throw fail(`time zone "${s.slice(26)}" is not GMT`);
  const wkday = WKDAYS.indexOf(s.slice(0, 3));
  const month = MONTHS.indexOf(s.slice(8, 11));
  const day = two(5);
  const year = parseDigits(s.slice(12, 16), 9999);
  const h = two(17);
  const m = two(20);
  const sec = two(23);
  if (wkday < 0 || month < 0 || day < 1 || day > 31 || year < 0 || h > 23 || m > 59 || sec > 60) {
    throw fail(`"${s}" is not an RFC 1123 date`);
  }
  if (h < 0 || m < 0 || sec < 0) throw fail(`"${s}" is not an RFC 1123 date`);
  return new Date(Date.UTC(year, month, day, h, m, sec));
}

/** Parses a SIP Date value ("Sat, 13 Nov 2010 23:29:00 GMT", section 20.17). */
export function parseSipDate(text: string): Date {
  try {
    scan.base = 0;
    return _parseSipDate(text);
  } catch (e) {
    rethrow(e, "Date header", { header: "Date" });
  }
}

/** A token with parameters: Event, Subscription-State (RFC 6665 section 8.4). */
export interface TokenParams {
  /** The token, lowercase ("presence", "active"...). */
  value: string;
  /** Parameters (id, expires, reason, retry-after...). */
  params: Params;
}

/** Internal: parse `token *(SEMI generic-param)` without the error prefix. */
export function _parseTokenParams(s: string): TokenParams {
  const i = skipWs(s, 0);
  const e = readToken(s, i);
  if (e === i) throw fail(s.length === 0 ? "empty value" : `invalid token at column ${col(i)}`);
  const params: Params = {};
  parseHeaderParams(s, e, params);
  return { value: s.slice(i, e).toLowerCase(), params };
}

/** {@linkcode badCallIdAt} on the ASCII bytes `b[start..end)` (a cheaper loop than charCodeAt). @internal */
export function badCallIdAtBytes(b: Uint8Array, start: number, end: number): number {
  if (end === start) return start;
  let at = -1;
  for (let i = start; i < end; i++) {
    const ch = b[i];
    if (ch < 128 && (CHARS[ch] & C_WORD) !== 0) continue;
    if (ch !== 64 || at !== -1 || i === start || i === end - 1) return i;
    at = i;
  }
  return -1;
}

/** Index of the first character not allowed in a Call-ID, or -1 (callid = word ["@" word]). @internal */
export function badCallIdAt(v: string, start = 0, end: number = v.length): number {
  if (end === start) return start;
  let at = -1;
  for (let i = start; i < end; i++) {
    const ch = v.charCodeAt(i);
    if (ch < 128 && (CHARS[ch] & C_WORD) !== 0) continue;
    // One "@" between two words.
    if (ch !== 64 || at !== -1 || i === start || i === end - 1) return i;
    at = i;
  }
  return -1;
}
