/**
 * Building the messages the transaction layer and its users need: responses
 * from a request (8.2.6), a new top Via, the ACK for a non-2xx final
 * (17.1.1.3) and CANCEL (9.1); random tags and Call-IDs.
 *
 * @module
 */

import { type HeaderField, SipHeaders, SipRequest, SipResponse, type Uri } from "../message.ts";
import type { TransportProtocol } from "../transport.ts";
import { generateBranch, randomToken } from "./branch.ts";

/**
 * A fresh From/To tag (section 19.3: at least 32 random bits; 64 here).
 *
 * @example
 * ```ts
 * import { generateTag } from "./build.ts";
 * generateTag().length; // 16
 * ```
 */
export function generateTag(): string {
  return randomToken(8);
}

/**
 * A fresh Call-ID (section 8.1.1.4): 128 random bits, `@host` when given.
 *
 * @example
 * ```ts
 * import { generateCallId } from "./build.ts";
 * generateCallId("example.test").endsWith("@example.test"); // true
 * ```
 */
export function generateCallId(host?: string): string {
  const id = randomToken(16);
  return host ? `${id}@${host}` : id;
}

const REASONS: Record<number, string> = {
  100: "Trying",
  180: "Ringing",
  181: "Call Is Being Forwarded",
  182: "Queued",
  183: "Session Progress",
  200: "OK",
  202: "Accepted",
  301: "Moved Permanently",
  302: "Moved Temporarily",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  415: "Unsupported Media Type",
  420: "Bad Extension",
  423: "Interval Too Brief",
  480: "Temporarily Unavailable",
  481: "Call/Transaction Does Not Exist",
  482: "Loop Detected",
  486: "Busy Here",
  487: "Request Terminated",
  488: "Not Acceptable Here",
  489: "Bad Event",
  491: "Request Pending",
  500: "Server Internal Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Server Time-out",
  600: "Busy Everywhere",
  603: "Decline",
};

/** The usual reason phrase of a status code. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? REASONS[Math.floor(status / 100) * 100] ??
    (status < 200 ? "Provisional" : "Unknown");
}

/** Methods whose 2xx (or 1xx with tag) creates a dialog; their responses copy Record-Route. */
const DIALOG_CREATING = new Set(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"]);

/** Options of {@linkcode createResponse}. */
export interface CreateResponseOptions {
  /** Reason phrase; default the usual one for the status. */
  reason?: string;
  /**
   * Tag to add to To when the request's To has none (8.2.6.2); default a
   * fresh one. Never added to a 100 Trying (17.2.1: SHOULD NOT). Pass the
   * same tag for every response to one INVITE.
   */
  toTag?: string;
  /**
   * Copy Record-Route from the request (12.1.1). Default: for 101-299
   * responses to INVITE, SUBSCRIBE, REFER and NOTIFY.
   */
  recordRoute?: boolean;
  /** More header fields, appended in order. */
  headers?: HeaderField[];
  /** Body; give `contentType` with it. */
  body?: Uint8Array | string;
  /** Content-Type of the body. */
  contentType?: string;
}

/**
 * Builds a response to a request (8.2.6): copies every Via (in order), From,
 * To (adding a tag when it has none), Call-ID and CSeq; a 100 Trying copies
 * Timestamp (8.2.6.1).
 *
 * @example
 * ```ts ignore
 * import { createResponse } from "./build.ts";
 * const res = createResponse(req, 180, { toTag: "abc" });
 * ```
 */
export function createResponse(
  req: SipRequest,
  status: number,
  options: CreateResponseOptions = {},
): SipResponse {
  const fields: HeaderField[] = [];
  for (const v of req.headers.getAll("Via")) fields.push({ name: "Via", value: v });
  const copyRr = options.recordRoute ??
    (status > 100 && status < 300 && DIALOG_CREATING.has(req.method));
  if (copyRr) {
    for (const v of req.headers.getAll("Record-Route")) {
      fields.push({ name: "Record-Route", value: v });
    }
  }
  fields.push({ name: "From", value: req.headers.get("From") ?? "" });
  let to = req.headers.get("To") ?? "";
  if (req.to.params.tag === undefined && status > 100) {
    // 8.2.6.2: "if the To header field in the request did not contain a tag,
    // ... the UAS MUST add a tag to the To header field in the response (with
    // the exception of the 100 (Trying) response, in which a tag MAY be present)."
    to += `;tag=${options.toTag ?? generateTag()}`;
  }
  fields.push({ name: "To", value: to });
  fields.push({ name: "Call-ID", value: req.headers.get("Call-ID") ?? "" });
  fields.push({ name: "CSeq", value: req.headers.get("CSeq") ?? "" });
  if (status === 100) {
    // 8.2.6.1: "if a Timestamp header field is present in the request, it MUST
    // be copied into this 100 (Trying) response."
    const ts = req.headers.get("Timestamp");
    if (ts !== undefined) fields.push({ name: "Timestamp", value: ts });
  }
  let body: Uint8Array | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? new TextEncoder().encode(options.body) : options.body;
    if (options.contentType) fields.push({ name: "Content-Type", value: options.contentType });
  }
  if (options.headers) fields.push(...options.headers);
  return new SipResponse(
    status,
    options.reason ?? reasonPhrase(status),
    new SipHeaders(fields),
    body,
  );
}

/** Options of {@linkcode addTopVia}. */
export interface AddViaOptions {
  /** Branch; default a fresh one. */
  branch?: string;
  /** Transport for the Via; the transport layer corrects it. Default "udp". */
  protocol?: TransportProtocol;
  /** sent-by host placeholder; the transport layer fills the real one. Default "0.0.0.0". */
  host?: string;
  /** sent-by port. */
  port?: number;
}

/**
 * Puts a new top Via with a branch on a request and returns the branch. The
 * transport layer fills in transport, sent-by and rport when it sends.
 *
 * @example
 * ```ts ignore
 * import { addTopVia } from "./build.ts";
 * const branch = addTopVia(req); // "z9hG4bK..."
 * ```
 */
export function addTopVia(req: SipRequest, options: AddViaOptions = {}): string {
  const branch = options.branch ?? generateBranch();
  const proto = (options.protocol ?? "udp").toUpperCase();
  const host = options.host ?? "0.0.0.0";
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const port = options.port === undefined ? "" : `:${options.port}`;
  req.headers.prepend("Via", `SIP/2.0/${proto} ${hostPart}${port};branch=${branch}`);
  req.invalidate();
  return branch;
}

function copyFields(req: SipRequest, names: string[]): HeaderField[] {
  const out: HeaderField[] = [];
  for (const name of names) {
    for (const value of req.headers.getAll(name)) out.push({ name, value });
  }
  return out;
}

function cloneUri(uri: Uri): Uri {
  return { ...uri, params: { ...uri.params }, headers: { ...uri.headers } };
}

/**
 * The ACK a client INVITE transaction sends for a 300-699 final (17.1.1.3):
 * same Request-URI, Call-ID, From, CSeq number (method ACK), the top Via of
 * the INVITE only, To from the response (with its tag), and the INVITE's
 * Route headers.
 */
export function createNon2xxAck(invite: SipRequest, res: SipResponse): SipRequest {
  const fields: HeaderField[] = [
    { name: "Via", value: invite.headers.values("Via")[0] ?? "" },
    ...copyFields(invite, ["Route"]),
    { name: "Max-Forwards", value: "70" },
    { name: "From", value: invite.headers.get("From") ?? "" },
    { name: "To", value: res.headers.get("To") ?? "" },
    { name: "Call-ID", value: invite.headers.get("Call-ID") ?? "" },
    { name: "CSeq", value: `${invite.cseq.seq} ACK` },
  ];
  return new SipRequest("ACK", cloneUri(invite.uri), new SipHeaders(fields));
}

/**
 * Builds the CANCEL for a request (9.1): Request-URI, Call-ID, To, From and
 * CSeq number of the request, method CANCEL; a single Via equal to the
 * request's top Via; the request's Route headers. A `reason` becomes a
 * Reason header (RFC 3326), e.g. `SIP;cause=200;text="Call completed elsewhere"`.
 */
export function createCancel(req: SipRequest, options: { reason?: string } = {}): SipRequest {
  const fields: HeaderField[] = [
    { name: "Via", value: req.headers.values("Via")[0] ?? "" },
    ...copyFields(req, ["Route"]),
    { name: "Max-Forwards", value: "70" },
    { name: "From", value: req.headers.get("From") ?? "" },
    { name: "To", value: req.headers.get("To") ?? "" },
    { name: "Call-ID", value: req.headers.get("Call-ID") ?? "" },
    { name: "CSeq", value: `${req.cseq.seq} CANCEL` },
  ];
  if (options.reason) fields.push({ name: "Reason", value: options.reason });
  return new SipRequest("CANCEL", cloneUri(req.uri), new SipHeaders(fields));
}
