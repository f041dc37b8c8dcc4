/**
 * The INVITE server transaction (RFC 3261 section 17.2.1, with the Accepted
 * state of RFC 6026 section 7.1).
 *
 * ```
 * Proceeding --2xx from TU--> Accepted --Timer L--> Terminated
 *      \--300-699 from TU--> Completed --ACK--> Confirmed --Timer I--> Terminated
 *                               \--Timer H (no ACK)--> Terminated
 * ```
 *
 * @module
 */

import { createResponse, type SipRequest, type SipResponse } from "../message.ts";
import { callUser, type TransactionContext } from "./_context.ts";
import { transactionTag } from "./build.ts";
import { ServerTransaction } from "./server_transaction.ts";
import type { InboundInfo } from "./types.ts";

/** An INVITE server transaction. */
export class ServerInviteTransaction extends ServerTransaction {
  #retransmitting2xx = false;
  #acked = false;

  /** Creates the transaction in Proceeding; {@linkcode start} arms the 100 Trying. */
  constructor(ctx: TransactionContext, request: SipRequest, info: InboundInfo, key: string) {
    super(ctx, request, info, key, "proceeding");
  }

  /**
   * 17.2.1: "The server transaction MUST generate a 100 (Trying) response
   * unless it knows that the TU will generate a provisional or final response
   * within 200 ms". Sent when the TU has not answered after `timers.trying`.
   */
  start(): void {
    this.timers.start("Trying", this.ctx.timers.trying, () => {
      if (this.state === "proceeding" && !this.lastResponse) {
        // "the insertion of tags in the To header field of the response ... is
        // downgraded from MAY to SHOULD NOT": createResponse adds none to a 100.
        this.send(createResponse(this.request, 100));
      }
    });
    // A TU that never answers must not keep the transaction forever. 13.3.1.1:
    // "If the request expires before the UAS has generated a final response,
    // a 487 (Request Terminated) response SHOULD be generated."
    const expires = Number(this.request.headers.get("Expires") ?? NaN);
    const byExpires = Number.isInteger(expires) && expires >= 0 &&
      expires * 1000 < this.ctx.timers.answer;
    this.timers.start("Answer", byExpires ? expires * 1000 : this.ctx.timers.answer, () => {
      if (this.state !== "proceeding") return;
      const status = byExpires ? 487 : 500;
      this.ctx.log(`transaction ${this.key}: no final response from the TU; answering ${status}`);
      this.respond(
        createResponse(this.request, status, {
          toTag: transactionTag(this.request, this.lastResponse),
          ...(byExpires ? {} : { reason: "No Final Response" }),
        }),
      );
      callUser(this.ctx.log, "onExpired", () => this.user.onExpired?.(status));
    });
  }

  /** Sends a response from the TU. */
  respond(res: SipResponse): void {
    this.timers.stop("Trying");
    if (res.status >= 200) this.timers.stop("Answer");
    const status = res.status;
    if (this.state === "proceeding") {
      if (status < 200) {
        // "So long as the server transaction is in the 'Proceeding' state,
        // each of these MUST be passed to the transport layer for transmission."
        this.send(res);
      } else if (status < 300) {
        // RFC 6026 7.1: "If, while in the 'Proceeding' state, the TU passes a
        // 2xx response to the server transaction, the server transaction MUST
        // pass this response to the transport layer for transmission ... and
        // MUST enter the 'Accepted' state" with Timer L = 64*T1.
        this.setState("accepted");
        this.send(res);
        this.timers.start("L", 64 * this.ctx.timers.t1, () => {
          if (this.#retransmitting2xx && !this.#acked) {
            // 13.3.1.4: "If the server retransmits the 2xx response for 64*T1
            // seconds without receiving an ACK, the dialog is confirmed, but
            // the session SHOULD be terminated" (the TU sends BYE).
            this.ctx.log(`transaction ${this.key}: no ACK for the 2xx`);
            callUser(this.ctx.log, "onAckTimeout", () => this.user.onAckTimeout?.());
          }
          this.terminate();
        });
      } else {
        // "While in the 'Proceeding' state, if the TU passes a response with
        // status code from 300 to 699 to the server transaction, the response
        // MUST be passed to the transport layer for transmission, and the state
        // machine MUST enter the 'Completed' state. For unreliable transports,
        // timer G is set to fire in T1 seconds ... timer H MUST be set to fire
        // in 64*T1 seconds for all transports."
        this.setState("completed");
        this.send(res);
        if (!this.reliable) this.#timerG(this.ctx.timers.t1);
        this.timers.start("H", 64 * this.ctx.timers.t1, () => {
          if (this.state !== "completed") return;
          // "If timer H fires while in the 'Completed' state, it implies that
          // the ACK was never received. In this case, the server transaction
          // MUST transition to the 'Terminated' state, and MUST indicate to the
          // TU that a transaction failure has occurred."
          this.ctx.log(`transaction ${this.key}: no ACK (timer H)`);
          callUser(this.ctx.log, "onAckTimeout", () => this.user.onAckTimeout?.());
          this.terminate();
        });
      }
    } else if (this.state === "accepted" && status >= 200 && status < 300) {
      // RFC 6026 7.1: "Any retransmission of the 2xx response passed from the
      // TU to the transaction while in the 'Accepted' state MUST be passed to
      // the transport layer for transmission."
      this.send(res);
    } else {
      this.refuse(res);
    }
  }

  /** True once the ACK for the 2xx arrived (seen by the layer while Accepted). */
  get acked(): boolean {
    return this.#acked;
  }

  /**
   * Does the UAS core's 2xx retransmission on behalf of the TU (13.3.1.4; RFC
   * 6026 leaves it to the TU): "The 2xx response is passed to the transport
   * with an interval that starts at T1 seconds and doubles for each
   * retransmission until it reaches T2 seconds", until the ACK arrives (the
   * layer matches it by Call-ID, tags and CSeq number) or 64*T1 passes, which
   * calls `user.onAckTimeout`. Retransmits only on unreliable transports; on
   * reliable ones it only watches for the ACK. Call it after responding 2xx.
   */
  retransmit2xxUntilAck(): void {
    if (this.state !== "accepted" || this.#retransmitting2xx) return;
    this.#retransmitting2xx = true;
    if (!this.reliable && !this.#acked) this.#timer2xx(this.ctx.timers.t1);
  }

  #timer2xx(interval: number): void {
    this.timers.start("2xx", interval, () => {
      if (this.state !== "accepted" || this.#acked) return;
      const last = this.lastResponse;
      if (last) this.resend(last);
      this.#timer2xx(Math.min(2 * interval, this.ctx.timers.t2));
    });
  }

  /**
   * True when `ack` acknowledges this transaction's 2xx: same Call-ID, From
   * tag, CSeq number, and the To tag of the 2xx (13.2.2.4, 13.3.1.4).
   */
  matches2xxAck(ack: SipRequest): boolean {
    const last = this.lastResponse;
    if (this.state !== "accepted" || !last || last.status >= 300) return false;
    return ack.callId === this.request.callId &&
      ack.cseq.seq === this.request.cseq.seq &&
      (ack.from.params.tag ?? "") === (this.request.from.params.tag ?? "") &&
      (ack.to.params.tag ?? "") === (last.to.params.tag ?? "");
  }

  /** Records the ACK for the 2xx: stops the 2xx retransmissions. */
  ackReceived(): void {
    this.#acked = true;
    this.timers.stop("2xx");
  }

  #timerG(interval: number): void {
    this.timers.start("G", interval, () => {
      if (this.state !== "completed") return;
      // "If timer G fires, the response is passed to the transport layer once
      // more for retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds."
      const last = this.lastResponse;
      if (last) this.resend(last);
      this.#timerG(Math.min(2 * interval, this.ctx.timers.t2));
    });
  }

  /** An INVITE retransmission or an ACK matched to this transaction. */
  receiveRequest(req: SipRequest): boolean {
    if (req.method === "ACK") {
      if (this.state === "completed") {
        // "If an ACK is received while the server transaction is in the
        // 'Completed' state, the server transaction MUST transition to the
        // 'Confirmed' state ... timer I is set to fire in T4 seconds for
        // unreliable transports, and zero seconds for reliable transports."
        this.timers.stop("G");
        this.timers.stop("H");
        this.setState("confirmed");
        if (this.reliable) this.terminate();
        else this.timers.start("I", this.ctx.timers.t4, () => this.terminate());
        return false;
      }
      // RFC 6026 7.1: in 'Accepted', an ACK is passed up to the TU ("ACK / pass
      // ACK to TU" in figure 5); in 'Confirmed' ACKs are absorbed.
      if (this.state !== "accepted") return false;
      if (this.matches2xxAck(req)) this.ackReceived();
      return true;
    }
    // INVITE retransmission. Proceeding: "the most recent provisional response
    // that was received from the TU MUST be passed to the transport layer";
    // Completed: "the server MUST pass the final response to the transport
    // layer". Accepted (RFC 6026): "MUST be absorbed" (the TU retransmits 2xx).
    const last = this.lastResponse;
    if (last && (this.state === "proceeding" || this.state === "completed")) this.resend(last);
    else if (!last && this.state === "proceeding") {
      // The TU is slow and the client retransmits already: quench it now.
      this.timers.stop("Trying");
      this.send(createResponse(this.request, 100));
    }
    return false;
  }
}
