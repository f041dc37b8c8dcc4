/**
 * The non-INVITE server transaction (RFC 3261 section 17.2.2).
 *
 * ```
 * Trying --1xx from TU--> Proceeding --200-699 from TU--> Completed --Timer J--> Terminated
 *    \______________________200-699 from TU______________/
 * ```
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";
import { ServerTransaction } from "./server_transaction.ts";
import type { TransactionContext } from "./_context.ts";
import type { InboundInfo } from "./types.ts";

/** A non-INVITE server transaction. */
export class ServerNonInviteTransaction extends ServerTransaction {
  /** Creates the transaction in Trying. */
  constructor(ctx: TransactionContext, request: SipRequest, info: InboundInfo, key: string) {
    super(ctx, request, info, key, "trying");
  }

  /** Sends a response from the TU. */
  respond(res: SipResponse): void {
    if (this.state !== "trying" && this.state !== "proceeding") {
      // Completed: "Any other final responses passed by the TU to the server
      // transaction MUST be discarded while in the 'Completed' state."
      this.refuse(res);
      return;
    }
    if (res.status < 200) {
      this.setState("proceeding");
      this.send(res);
      return;
    }
    // "If the TU passes a final response (status codes 200-699) to the server
    // while in the 'Proceeding' [or 'Trying'] state, the transaction MUST enter
    // the 'Completed' state, and the response MUST be passed to the transport
    // layer for transmission. ... Timer J ... 64*T1 seconds for unreliable
    // transports, and zero seconds for reliable transports."
    this.setState("completed");
    if (this.reliable) {
      this.send(res);
      this.terminate();
      return;
    }
    // Timer J: the layer absorbs retransmissions with the response bytes
    // alone; the request and this object can go.
    this.completeInLayer(res, 64 * this.ctx.timers.t1);
  }

  /** A retransmission of the request. */
  receiveRequest(_req: SipRequest): boolean {
    // Trying: "any further request retransmissions are discarded";
    // Proceeding: "the most recently sent provisional response MUST be passed
    // to the transport layer for retransmission"; Completed: "the server
    // transaction MUST pass the final response to the transport layer".
    const last = this.lastResponse;
    if (last && (this.state === "proceeding" || this.state === "completed")) this.resend(last);
    return false;
  }
}
