/**
 * Error classes shared by the SIP layers.
 *
 * @module
 */

/** Where in the input a syntax error was found. */
export interface SipSyntaxErrorOptions {
  /** Byte or character offset into the message, when known. */
  offset?: number;
  /** 1-based line of the message, when known. */
  line?: number;
  /** Name of the header being parsed, when the error is inside one. */
  header?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * Input that cannot be parsed as SIP. Carries where and (in the message)
 * why, e.g. `Cannot parse Via header: missing branch parameter`.
 *
 * @example
 * ```ts
 * import { SipSyntaxError } from "./errors.ts";
 * const e = new SipSyntaxError("Cannot parse CSeq header: bad number", { header: "CSeq", line: 4 });
 * e instanceof SyntaxError; // true
 * ```
 */
export class SipSyntaxError extends SyntaxError {
  /** Offset into the input, when known. */
  readonly offset?: number;
  /** 1-based line, when known. */
  readonly line?: number;
  /** Header name, when the error is inside a header. */
  readonly header?: string;

  /** Creates the error with a message and location. */
  constructor(message: string, options: SipSyntaxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SipSyntaxError";
    this.offset = options.offset;
    this.line = options.line;
    this.header = options.header;
  }
}

/**
 * A request that ended with a final non-2xx response, or never got one.
 * `status` is the SIP status (408 for a local timeout, 503 for a transport
 * failure, as RFC 3261 section 8.1.3.1 and 17.1.4 say to treat them).
 */
export class SipRequestError extends Error {
  /** The final status code. */
  readonly status: number;
  /** The reason phrase. */
  readonly reason: string;
  /** True when no response arrived (timeout or transport error). */
  readonly local: boolean;

  /** Creates the error. */
  constructor(status: number, reason: string, options: { local?: boolean; cause?: unknown } = {}) {
    super(
      `${status} ${reason}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = "SipRequestError";
    this.status = status;
    this.reason = reason;
    this.local = options.local ?? false;
  }
}

/** Why a {@linkcode DigestAuthError} was raised. */
export type DigestAuthFailure =
  /** A second non-stale challenge for a realm already answered: wrong credentials. */
  | "rejected"
  /** More 401/407 responses than `maxChallenges` for one request. */
  | "too-many-challenges"
  /** No challenge the client can answer (scheme, algorithm, qop or realm). */
  | "unsupported";

/**
 * Authentication failed: the UA reports it as "auth failed". The message
 * names the realm and user, never the password.
 */
export class DigestAuthError extends Error {
  /** Why. */
  readonly reason: DigestAuthFailure;
  /** The 401 or 407 status that ended the attempt. */
  readonly status: number;
  /** The realm concerned, when one. */
  readonly realm?: string;

  /** Creates the error. */
  constructor(
    reason: DigestAuthFailure,
    message: string,
    options: { status: number; realm?: string; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DigestAuthError";
    this.reason = reason;
    this.status = options.status;
    this.realm = options.realm;
  }
}

/** Why a TCP or TLS connection could not be opened ({@linkcode ConnectError}). */
export type ConnectFailure =
  /** The peer refused (a TCP reset): nothing listens there. */
  | "refused"
  /** No answer within the connect timeout (the TLS handshake included). */
  | "timeout"
  /** No route to the network or host. */
  | "unreachable"
  /** Anything else (a failed TLS handshake, a bad certificate, ...). */
  | "other";

/**
 * A stream (TCP or TLS) connection could not be opened. `kind` says why, so
 * that callers decide by kind rather than by message text (RFC 3261 section
 * 18.1.1 retries a request over UDP when the TCP attempt is reset).
 *
 * @example
 * ```ts
 * import { ConnectError } from "./errors.ts";
 * const e = new ConnectError("refused", "Cannot connect over tcp to 192.0.2.1:5060: refused");
 * e.kind; // "refused"
 * ```
 */
export class ConnectError extends Error {
  /** Why. */
  readonly kind: ConnectFailure;

  /** Creates the error. */
  constructor(kind: ConnectFailure, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ConnectError";
    this.kind = kind;
  }
}

/**
 * The {@linkcode ConnectFailure} an error of `Deno.connect`, `Deno.connectTls`
 * or node:tls stands for: by its class or its errno code, never its text.
 */
export function connectFailure(error: unknown): ConnectFailure {
  const code = (error as { code?: unknown } | null)?.code;
  if (
    error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset ||
    code === "ECONNREFUSED" || code === "ECONNRESET"
  ) return "refused";
  if (error instanceof Deno.errors.TimedOut || code === "ETIMEDOUT") return "timeout";
  if (
    error instanceof Deno.errors.NetworkUnreachable || code === "ENETUNREACH" ||
    code === "EHOSTUNREACH"
  ) return "unreachable";
  return "other";
}
