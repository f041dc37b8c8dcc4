/**
 * SIP messages (RFC 3261 sections 7, 20, 25): the data model shared by every
 * layer. SKELETON: the parser and formatter are being implemented; the types
 * and signatures below are the contract the other layers code against.
 *
 * @module
 */

import { SipSyntaxError } from "./errors.ts";

/** Parameters of a URI, Via or name-addr: lowercase names, unescaped values, `null` for a flag. */
export type Params = Record<string, string | null>;

/**
 * A URI. For `sip`/`sips`: user, password, host (IPv6 without brackets), port,
 * params, headers. For `tel`: `user` is the number, `host` is "". Other schemes
 * (absoluteURI) keep everything after the colon in `opaque`.
 */
export interface Uri {
  /** Lowercase scheme: "sip", "sips", "tel" or another. */
  scheme: string;
  /** Unescaped user part (or the tel number). */
  user?: string;
  /** Unescaped password (discouraged, but parsed). */
  password?: string;
  /** Host, lowercase for names, IPv6 without brackets. */
  host: string;
  /** Explicit port. */
  port?: number;
  /** URI parameters. */
  params: Params;
  /** URI headers (`?name=value&...`), unescaped. */
  headers: Record<string, string>;
  /** For schemes other than sip, sips and tel: the text after `scheme:`. */
  opaque?: string;
}

/** A name-addr or addr-spec with header parameters (From, To, Contact, Route...). */
export interface NameAddr {
  /** Display name, unquoted and unescaped. */
  displayName?: string;
  /** The URI. */
  uri: Uri;
  /** Header parameters after the URI (tag, expires, q...). */
  params: Params;
}

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

/** One header line as received or added: canonical name and raw value. */
export interface HeaderField {
  /** Canonical name (compact forms expanded, e.g. "Via", "Call-ID", "WWW-Authenticate"). */
  name: string;
  /** Raw value, folding collapsed to single spaces, trimmed. */
  value: string;
}

/**
 * The ordered header fields of a message. Lookups are case-insensitive and
 * accept compact forms ("v" finds "Via"). Values are kept raw; typed access
 * goes through the getters of {@linkcode SipMessageBase}.
 */
export class SipHeaders {
  /** The fields in message order. */
  readonly fields: HeaderField[];

  /** Creates a header list from fields (canonical names expected). */
  constructor(fields: HeaderField[] = []) {
    this.fields = fields;
  }

  /** First raw value of a header, or undefined. */
  get(name: string): string | undefined {
    throw new Error("not implemented yet");
  }

  /** Every raw line of a header, in order (a line may hold several comma-separated values). */
  getAll(name: string): string[] {
    throw new Error("not implemented yet");
  }

  /** Every value of a header, comma-separated lines split (quotes and <> respected). */
  values(name: string): string[] {
    throw new Error("not implemented yet");
  }

  /** True when the header is present. */
  has(name: string): boolean {
    throw new Error("not implemented yet");
  }

  /** Replaces every line of a header by one value (added at the end when absent). */
  set(name: string, value: string): void {
    throw new Error("not implemented yet");
  }

  /** Adds a line at the end. */
  append(name: string, value: string): void {
    throw new Error("not implemented yet");
  }

  /** Adds a line before the first line of the same header (e.g. a new top Via). */
  prepend(name: string, value: string): void {
    throw new Error("not implemented yet");
  }

  /** Removes every line of a header. */
  delete(name: string): void {
    throw new Error("not implemented yet");
  }
}

/** What requests and responses share. Typed getters parse on first use and cache. */
export abstract class SipMessageBase {
  /** Header fields. */
  readonly headers: SipHeaders;
  /** The body as bytes (empty when none). */
  body: Uint8Array;

  /** Creates a message from headers and body. */
  constructor(headers: SipHeaders, body: Uint8Array = new Uint8Array()) {
    this.headers = headers;
    this.body = body;
  }

  /** All Via values, top first. Throws SipSyntaxError when malformed. */
  get via(): Via[] {
    throw new SipSyntaxError("not implemented yet");
  }
  /** From header. */
  get from(): NameAddr {
    throw new SipSyntaxError("not implemented yet");
  }
  /** To header. */
  get to(): NameAddr {
    throw new SipSyntaxError("not implemented yet");
  }
  /** Call-ID. */
  get callId(): string {
    throw new SipSyntaxError("not implemented yet");
  }
  /** CSeq. */
  get cseq(): CSeq {
    throw new SipSyntaxError("not implemented yet");
  }
  /** Contact values (empty when none; `*` yields one entry with uri.scheme "*"). */
  get contact(): NameAddr[] {
    throw new SipSyntaxError("not implemented yet");
  }
  /** Content-Type value without parameters, lowercase, or undefined. */
  get contentType(): string | undefined {
    throw new SipSyntaxError("not implemented yet");
  }
  /** The body decoded as UTF-8 text. */
  get text(): string {
    return new TextDecoder().decode(this.body);
  }
  /** Forget cached typed values after editing headers. */
  invalidate(): void {
    throw new Error("not implemented yet");
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

/**
 * Parses one message from bytes. Eagerly checks what the stack needs (start
 * line, Via, From, To, Call-ID, CSeq, Max-Forwards for requests,
 * Content-Length); throws {@linkcode SipSyntaxError} when malformed.
 * On datagrams the body is the rest of the packet cut to Content-Length
 * (a shorter body is an error); on streams the framer has already cut it.
 */
export function parseMessage(data: Uint8Array | string): SipMessage {
  throw new SipSyntaxError("not implemented yet");
}

/** Serializes a message, setting Content-Length from the body. Refuses CR/LF in values. */
export function formatMessage(msg: SipMessage): Uint8Array {
  throw new Error("not implemented yet");
}

/** Parses a URI (sip, sips, tel, or other absoluteURI). */
export function parseUri(text: string): Uri {
  throw new SipSyntaxError("not implemented yet");
}

/** Formats a URI, escaping what must be escaped. */
export function formatUri(uri: Uri): string {
  throw new Error("not implemented yet");
}

/** Parses a name-addr or addr-spec with parameters. */
export function parseNameAddr(text: string): NameAddr {
  throw new SipSyntaxError("not implemented yet");
}

/** Formats a name-addr (always with <>). */
export function formatNameAddr(value: NameAddr): string {
  throw new Error("not implemented yet");
}

/** Parses one Via value. */
export function parseVia(text: string): Via {
  throw new SipSyntaxError("not implemented yet");
}

/** Formats one Via value. */
export function formatVia(via: Via): string {
  throw new Error("not implemented yet");
}
