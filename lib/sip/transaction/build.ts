/**
 * Building the messages the transaction layer and its users need: a new top
 * Via, the ACK for a non-2xx final (17.1.1.3) and CANCEL (9.1); random tags
 * and Call-IDs. Responses come from `createResponse` in message.ts.
 *
 * @module
 */

import {
  type HeaderField,
  SipHeaders,
  SipRequest,
  type SipResponse,
  type Uri,
} from "../message.ts";
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
