/**
 * Building the messages the transaction layer and its users need: a new top
 * Via, the ACK for a non-2xx final (17.1.1.3) and CANCEL (9.1); random tags
 * and Call-IDs. Responses come from `createResponse` in message.ts.
 *
 * @module
 */

import { cloneUri } from "../uri.ts";
import { type HeaderField, SipHeaders, SipRequest, type SipResponse } from "../message.ts";
import type { TransportProtocol } from "../transport.ts";
import { generateBranch } from "./branch.ts";
import { randomChars, randomTag } from "../_random.ts";

/**
 * A fresh From/To tag (section 19.3: at least 32 random bits; 36 here).
 *
 * @example
 * ```ts
 * import { generateTag } from "./build.ts";
 * generateTag().length; // 6
 * ```
 */
export function generateTag(): string {
  return randomTag();
}

/**
 * The To tag this UA answers a request with: made once per request, so that
 * every response of its transaction carries the same tag (the 1xx, the final,
 * the 487 after a CANCEL, 9.2), and the 200 to a CANCEL takes the tag of the
 * INVITE it cancels. A request whose To has a tag already (in-dialog) keeps
 * it: createResponse adds none then.
 *
 * @example
 * ```ts
 * import { localTagFor } from "./build.ts";
 * import { createRequest } from "../message.ts";
 * import assert from "node:assert/strict";
 * const req = createRequest("INVITE", "sip:bob@example.test");
 * assert.equal(localTagFor(req), localTagFor(req));
 * ```
 */
export function localTagFor(req: SipRequest): string {
  return req.localTag ??= generateTag();
}

/**
 * Binds a request to the To tag already chosen for it (the tag of an early
 * dialog, or of the INVITE a CANCEL refers to): {@linkcode localTagFor}
 * returns it from then on.
 */
export function useLocalTag(req: SipRequest, tag: string): void {
  req.localTag = tag;
}

/**
 * The To tag the responses of a server transaction use: the one its first
 * tagged response carried, else {@linkcode localTagFor} of the request.
 */
export function transactionTag(req: SipRequest, lastResponse?: SipResponse): string {
  return lastResponse?.to.params.tag ?? localTagFor(req);
}

/**
 * A fresh Call-ID (section 8.1.1.4): 60 random bits in 10 characters,
 * `@host` when given (a dialog is told apart by it and two tags of 36 bits
 * each: 132 random bits).
 *
 * @example
 * ```ts
 * import { generateCallId } from "./build.ts";
 * generateCallId("example.test").endsWith("@example.test"); // true
 * ```
 */
export function generateCallId(host?: string): string {
  const id = randomChars(10);
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
 * ```ts
 * import { addTopVia } from "./build.ts";
 * import { createRequest } from "../message.ts";
 * import assert from "node:assert/strict";
 * const req = createRequest("OPTIONS", "sip:bob@example.test");
 * const branch = addTopVia(req, { protocol: "tcp" });
 * assert.equal(req.topVia.params.branch, branch);
 * assert.equal(req.topVia.transport, "TCP");
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
  // What parsing that value gives (the transaction reads the branch at once).
  const params = { branch };
  req._primeTopVia(
    options.port === undefined
      ? { protocol: "SIP/2.0", transport: proto, host, params }
      : { protocol: "SIP/2.0", transport: proto, host, port: options.port, params },
  );
  return branch;
}

function copyFields(req: SipRequest, names: string[]): HeaderField[] {
  const out: HeaderField[] = [];
  for (const name of names) {
    for (const value of req.headers.getAll(name)) out.push({ name, value });
  }
  return out;
}

/**
 * The ACK a client INVITE transaction sends for a 300-699 final (17.1.1.3):
 * same Request-URI, Call-ID, From, CSeq number (method ACK), the top Via of
 * the INVITE only, To from the response (with its tag), and the INVITE's
 * Route headers.
 *
 * @example
 * ```ts
 * import { createNon2xxAck } from "./build.ts";
 * import { createResponse, parseMessage, type SipRequest } from "../message.ts";
 * import assert from "node:assert/strict";
 * const invite = parseMessage(
 *   "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
 *     "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
 *     "Call-ID: c\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
 * ) as SipRequest;
 * const ack = createNon2xxAck(invite, createResponse(invite, 486, { toTag: "b" }));
 * assert.deepEqual(ack.cseq, { seq: 7, method: "ACK" });
 * assert.equal(ack.toTag, "b");
 * assert.equal(ack.topVia.params.branch, "z9hG4bK1");
 * ```
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
 *
 * @example
 * ```ts
 * import { createCancel } from "./build.ts";
 * import { parseMessage, type SipRequest } from "../message.ts";
 * import assert from "node:assert/strict";
 * const invite = parseMessage(
 *   "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
 *     "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
 *     "Call-ID: c\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
 * ) as SipRequest;
 * const cancel = createCancel(invite);
 * assert.deepEqual(cancel.cseq, { seq: 7, method: "CANCEL" });
 * assert.equal(cancel.topVia.params.branch, "z9hG4bK1");
 * ```
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
