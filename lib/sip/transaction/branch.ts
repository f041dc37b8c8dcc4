/**
 * Branch parameters and transaction matching keys (RFC 3261 sections 8.1.1.7,
 * 17.1.3 and 17.2.3).
 *
 * @module
 */

import { formatUri, formatVia, type SipRequest, type SipResponse } from "../message.ts";
import { randomChars } from "../_random.ts";

/** The magic cookie that starts every RFC 3261 branch (section 8.1.1.7). */
export const MAGIC_COOKIE = "z9hG4bK";

/** Random token of `bytes` random bytes as lowercase hex. */
export function randomToken(bytes = 8): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes));
  let out = "";
  for (const b of buf) out += b.toString(16).padStart(2, "0");
  return out;
}

/**
 * A fresh branch: the magic cookie and 60 random bits (10 characters; 8.1.1.7
 * asks for uniqueness over space and time, which 2^60 gives a UA).
 *
 * @example
 * ```ts
 * import { generateBranch } from "./branch.ts";
 * generateBranch().startsWith("z9hG4bK"); // true
 * ```
 */
export function generateBranch(): string {
  return MAGIC_COOKIE + randomChars(10);
}

/** True when a branch was made by an RFC 3261 element (starts with the magic cookie). */
export function isRfc3261Branch(branch: string | null | undefined): branch is string {
  return typeof branch === "string" && branch.startsWith(MAGIC_COOKIE);
}

/**
 * The key a response is matched to a client transaction with (17.1.3): the
 * branch of the top Via and the CSeq method. Undefined without a branch.
 */
export function clientTransactionKey(msg: SipRequest | SipResponse): string | undefined {
  const branch = msg.topVia.params.branch;
  if (!branch) return undefined;
  return `${branch}|${msg.cseq.method}`;
}

/**
 * The key a request is matched to a server transaction with (17.2.3).
 *
 * With a magic-cookie branch: branch, sent-by and method, where ACK counts as
 * INVITE ("the method of the request matches the one that created the
 * transaction, except for ACK, where the method of the request that created
 * the transaction is INVITE"). `methodOverride` looks up another method's
 * transaction with the same identifiers (a CANCEL looks for its INVITE, 9.2).
 *
 * Without the cookie (RFC 2543): Request-URI, From tag, Call-ID, CSeq number,
 * method and top Via; the To tag is compared by the caller, because the ACK's
 * To tag must match the response's, not the request's.
 */
export function serverTransactionKey(req: SipRequest, methodOverride?: string): string {
  const via = req.topVia;
  const method = methodOverride ?? (req.method === "ACK" ? "INVITE" : req.method);
  if (via && isRfc3261Branch(via.params.branch)) {
    return `${via.params.branch}|${via.host.toLowerCase()}:${via.port ?? ""}|${method}`;
  }
  return [
    "2543",
    formatUri(req.uri),
    req.from.params.tag ?? "",
    req.callId,
    req.cseq.seq,
    method,
    via ? formatVia(via) : "",
  ].join("|");
}
