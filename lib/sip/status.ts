/**
 * SIP status codes and their reason phrases (RFC 3261 section 21 and the
 * RFCs that added codes), with derived types and type guards.
 *
 * @example
 * ```ts
 * import { STATUS_CODE, STATUS_TEXT, isFinalStatus } from "./status.ts";
 * STATUS_TEXT[STATUS_CODE.NotFound]; // "Not Found"
 * isFinalStatus(180); // false
 * ```
 *
 * @module
 */

/** Status codes by name. */
export const STATUS_CODE = {
  // 1xx Provisional (RFC 3261 section 21.1)
  /** RFC 3261 section 21.1.1 */
  Trying: 100,
  /** RFC 3261 section 21.1.2 */
  Ringing: 180,
  /** RFC 3261 section 21.1.3 */
  CallIsBeingForwarded: 181,
  /** RFC 3261 section 21.1.4 */
  Queued: 182,
  /** RFC 3261 section 21.1.5 */
  SessionProgress: 183,
  /** RFC 6228 */
  EarlyDialogTerminated: 199,

  // 2xx Successful (RFC 3261 section 21.2)
  /** RFC 3261 section 21.2.1 */
  OK: 200,
  /** RFC 3265 section 3.1.6.1 (deprecated by RFC 6665) */
  Accepted: 202,
  /** RFC 5839 section 8.3.1 */
  NoNotification: 204,

  // 3xx Redirection (RFC 3261 section 21.3)
  /** RFC 3261 section 21.3.1 */
  MultipleChoices: 300,
  /** RFC 3261 section 21.3.2 */
  MovedPermanently: 301,
  /** RFC 3261 section 21.3.3 */
  MovedTemporarily: 302,
  /** RFC 3261 section 21.3.4 */
  UseProxy: 305,
  /** RFC 3261 section 21.3.5 */
  AlternativeService: 380,

  // 4xx Request Failure (RFC 3261 section 21.4)
  /** RFC 3261 section 21.4.1 */
  BadRequest: 400,
  /** RFC 3261 section 21.4.2 */
  Unauthorized: 401,
  /** RFC 3261 section 21.4.3 */
  PaymentRequired: 402,
  /** RFC 3261 section 21.4.4 */
  Forbidden: 403,
  /** RFC 3261 section 21.4.5 */
  NotFound: 404,
  /** RFC 3261 section 21.4.6 */
  MethodNotAllowed: 405,
  /** RFC 3261 section 21.4.7 */
  NotAcceptable: 406,
  /** RFC 3261 section 21.4.8 */
  ProxyAuthenticationRequired: 407,
  /** RFC 3261 section 21.4.9 */
  RequestTimeout: 408,
  /** RFC 3261 section 21.4.10 */
  Gone: 410,
  /** RFC 3903 section 11.2.1 */
  ConditionalRequestFailed: 412,
  /** RFC 3261 section 21.4.11 */
  RequestEntityTooLarge: 413,
  /** RFC 3261 section 21.4.12 */
  RequestUriTooLong: 414,
  /** RFC 3261 section 21.4.13 */
  UnsupportedMediaType: 415,
  /** RFC 3261 section 21.4.14 */
  UnsupportedUriScheme: 416,
  /** RFC 4412 section 12.4 */
  UnknownResourcePriority: 417,
  /** RFC 3261 section 21.4.15 */
  BadExtension: 420,
  /** RFC 3261 section 21.4.16 */
  ExtensionRequired: 421,
  /** RFC 4028 section 6 */
  SessionIntervalTooSmall: 422,
  /** RFC 3261 section 21.4.17 */
  IntervalTooBrief: 423,
  /** RFC 6442 section 4.3 */
  BadLocationInformation: 424,
  /** RFC 5079 section 5 */
  UseIdentityHeader: 428,
  /** RFC 3892 section 5 */
  ProvideReferrerIdentity: 429,
  /** RFC 5626 section 11 */
  FlowFailed: 430,
  /** RFC 5360 section 10.9.1 */
  AnonymityDisallowed: 433,
  /** RFC 4474 section 14.2 */
  BadIdentityInfo: 436,
  /** RFC 4474 section 14.3 */
  UnsupportedCertificate: 437,
  /** RFC 4474 section 14.4 */
  InvalidIdentityHeader: 438,
  /** RFC 5626 section 11 */
  FirstHopLacksOutboundSupport: 439,
  /** RFC 6086 section 6.1 */
  BadInfoPackage: 469,
  /** RFC 5360 section 10.9.2 */
  ConsentNeeded: 470,
  /** RFC 3261 section 21.4.18 */
  TemporarilyUnavailable: 480,
  /** RFC 3261 section 21.4.19 */
  CallOrTransactionDoesNotExist: 481,
  /** RFC 3261 section 21.4.20 */
  LoopDetected: 482,
  /** RFC 3261 section 21.4.21 */
  TooManyHops: 483,
  /** RFC 3261 section 21.4.22 */
  AddressIncomplete: 484,
  /** RFC 3261 section 21.4.23 */
  Ambiguous: 485,
  /** RFC 3261 section 21.4.24 */
  BusyHere: 486,
  /** RFC 3261 section 21.4.25 */
  RequestTerminated: 487,
  /** RFC 3261 section 21.4.26 */
  NotAcceptableHere: 488,
  /** RFC 6665 section 8.3.2 */
  BadEvent: 489,
  /** RFC 3261 section 21.4.27 */
  RequestPending: 491,
  /** RFC 3261 section 21.4.28 */
  Undecipherable: 493,
  /** RFC 3329 section 6.4 */
  SecurityAgreementRequired: 494,

  // 5xx Server Failure (RFC 3261 section 21.5)
  /** RFC 3261 section 21.5.1 */
  ServerInternalError: 500,
  /** RFC 3261 section 21.5.2 */
  NotImplemented: 501,
  /** RFC 3261 section 21.5.3 */
  BadGateway: 502,
  /** RFC 3261 section 21.5.4 */
  ServiceUnavailable: 503,
  /** RFC 3261 section 21.5.5 */
  ServerTimeout: 504,
  /** RFC 3261 section 21.5.6 */
  VersionNotSupported: 505,
  /** RFC 3261 section 21.5.7 */
  MessageTooLarge: 513,
  /** RFC 3312 section 8 */
  PreconditionFailure: 580,

  // 6xx Global Failures (RFC 3261 section 21.6)
  /** RFC 3261 section 21.6.1 */
  BusyEverywhere: 600,
  /** RFC 3261 section 21.6.2 */
  Decline: 603,
  /** RFC 3261 section 21.6.3 */
  DoesNotExistAnywhere: 604,
  /** RFC 3261 section 21.6.4 */
  NotAcceptableAnywhere: 606,
  /** RFC 8197 section 4 */
  Unwanted: 607,
} as const;

/** A status code known to {@linkcode STATUS_CODE}. */
export type StatusCode = typeof STATUS_CODE[keyof typeof STATUS_CODE];

/**
 * Reason phrases by status code (the RFCs' recommended text). The keys are
 * number literals, not `[STATUS_CODE.Trying]` and so on: computed keys made
 * this table cost about 0.7 ms of every start-up. `satisfies` still checks
 * it against {@linkcode STATUS_CODE}: one entry per code, no other.
 */
export const STATUS_TEXT = {
  100: "Trying",
  180: "Ringing",
  181: "Call Is Being Forwarded",
  182: "Queued",
  183: "Session Progress",
  199: "Early Dialog Terminated",
  200: "OK",
  202: "Accepted",
  204: "No Notification",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Moved Temporarily",
  305: "Use Proxy",
  380: "Alternative Service",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  410: "Gone",
  412: "Conditional Request Failed",
  413: "Request Entity Too Large",
  414: "Request-URI Too Long",
  415: "Unsupported Media Type",
  416: "Unsupported URI Scheme",
  417: "Unknown Resource-Priority",
  420: "Bad Extension",
  421: "Extension Required",
  422: "Session Interval Too Small",
  423: "Interval Too Brief",
  424: "Bad Location Information",
  428: "Use Identity Header",
  429: "Provide Referrer Identity",
  430: "Flow Failed",
  433: "Anonymity Disallowed",
  436: "Bad Identity-Info",
  437: "Unsupported Certificate",
  438: "Invalid Identity Header",
  439: "First Hop Lacks Outbound Support",
  469: "Bad Info Package",
  470: "Consent Needed",
  480: "Temporarily Unavailable",
  481: "Call/Transaction Does Not Exist",
  482: "Loop Detected",
  483: "Too Many Hops",
  484: "Address Incomplete",
  485: "Ambiguous",
  486: "Busy Here",
  487: "Request Terminated",
  488: "Not Acceptable Here",
  489: "Bad Event",
  491: "Request Pending",
  493: "Undecipherable",
  494: "Security Agreement Required",
  500: "Server Internal Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Server Time-out",
  505: "Version Not Supported",
  513: "Message Too Large",
  580: "Precondition Failure",
  600: "Busy Everywhere",
  603: "Decline",
  604: "Does Not Exist Anywhere",
  606: "Not Acceptable",
  607: "Unwanted",
} as const satisfies Record<StatusCode, string>;

/** A reason phrase known to {@linkcode STATUS_TEXT}. */
export type StatusText = typeof STATUS_TEXT[keyof typeof STATUS_TEXT];

/** 1xx codes. */
export type ProvisionalStatus = Extract<StatusCode, 100 | 180 | 181 | 182 | 183 | 199>;
/** 2xx codes. */
export type SuccessfulStatus = Extract<StatusCode, 200 | 202 | 204>;
/** 3xx codes. */
export type RedirectStatus = Extract<StatusCode, 300 | 301 | 302 | 305 | 380>;
/** 4xx codes (request failures, section 21.4). */
export type RequestFailureStatus = Exclude<
  StatusCode,
  ProvisionalStatus | SuccessfulStatus | RedirectStatus | ServerFailureStatus | GlobalFailureStatus
>;
/** 5xx codes (server failures, section 21.5). */
export type ServerFailureStatus = Extract<
  StatusCode,
  500 | 501 | 502 | 503 | 504 | 505 | 513 | 580
>;
/** 6xx codes (global failures, section 21.6). */
export type GlobalFailureStatus = Extract<StatusCode, 600 | 603 | 604 | 606 | 607>;

/** True when `status` is a code of {@linkcode STATUS_CODE}. */
export function isStatus(status: number): status is StatusCode {
  return Object.hasOwn(STATUS_TEXT, status);
}

/** True for a valid SIP status code (100 to 699, section 7.2). */
export function isValidStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 100 && status <= 699;
}

/** True for 1xx (provisional). */
export function isProvisionalStatus(status: number): boolean {
  return status >= 100 && status < 200;
}

/** True for 2xx (success). */
export function isSuccessfulStatus(status: number): boolean {
  return status >= 200 && status < 300;
}

/** True for 3xx (redirection). */
export function isRedirectStatus(status: number): boolean {
  return status >= 300 && status < 400;
}

/** True for 4xx (request failure, section 21.4). */
export function isRequestFailureStatus(status: number): boolean {
  return status >= 400 && status < 500;
}

/** True for 5xx (server failure, section 21.5). */
export function isServerFailureStatus(status: number): boolean {
  return status >= 500 && status < 600;
}

/** True for 6xx (global failure, section 21.6). */
export function isGlobalFailureStatus(status: number): boolean {
  return status >= 600 && status < 700;
}

/** True for 4xx, 5xx and 6xx (failures). */
export function isErrorStatus(status: number): boolean {
  return status >= 400 && status < 700;
}

/** True for final responses (200 to 699). */
export function isFinalStatus(status: number): boolean {
  return status >= 200 && status < 700;
}

/**
 * The reason phrase for a code: the known text, else the class default
 * (section 21: an unknown code is treated as the x00 of its class).
 *
 * @example
 * ```ts
 * import { reasonPhrase } from "./status.ts";
 * reasonPhrase(486); // "Busy Here"
 * reasonPhrase(499); // "Bad Request"
 * ```
 */
export function reasonPhrase(status: number): string {
  if (isStatus(status)) return STATUS_TEXT[status];
  const base = Math.floor(status / 100) * 100;
  const classDefault: Record<number, string> = {
    100: "Trying",
    200: "OK",
    300: "Multiple Choices",
    400: "Bad Request",
    500: "Server Internal Error",
    600: "Busy Everywhere",
  };
  return classDefault[base] ?? "Unknown";
}

/** Longest reason phrase {@linkcode sanitizeReason} makes, in characters. */
const REASON_MAX = 120;

/**
 * A reason phrase for a response from an error text (a 400 that says what
 * could not be parsed): control characters (CR and LF among them, which
 * would split the status line) become spaces, runs of white space one space,
 * at most 120 characters; UTF-8 text stays (RFC 3261 section 25.1 allows it
 * in Reason-Phrase). An empty result gives "Bad Request".
 *
 * @example
 * ```ts
 * import { sanitizeReason } from "./status.ts";
 * sanitizeReason("Cannot parse Via header:\r\n missing branch"); // "Cannot parse Via header: missing branch"
 * sanitizeReason("\x00"); // "Bad Request"
 * ```
 */
export function sanitizeReason(text: string): string {
  // deno-lint-ignore no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f]+/g, " ").replace(/\s+/g, " ").trim();
  if (clean === "") return "Bad Request";
  return clean.length > REASON_MAX ? clean.slice(0, REASON_MAX - 3) + "..." : clean;
}
