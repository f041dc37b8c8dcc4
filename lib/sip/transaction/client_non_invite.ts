/**
 * The non-INVITE client transaction (RFC 3261 section 17.1.2).
 *
 * ```
 * Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
 *    \________________________/
 *    Timer F / transport error --> Terminated
 * ```
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";
import { ClientTransaction } from "./client_transaction.ts";
import type { TransactionContext } from "./_context.ts";
import type { ClientTransactionUser, Target } from "./types.ts";

/** A non-INVITE client transaction (REGISTER, SUBSCRIBE, MESSAGE, BYE, CANCEL...). */
export class ClientNonInviteTransaction extends ClientTransaction {
  /** Creates the transaction in Trying; {@linkcode start} sends the request. */
  constructor(
    ctx: TransactionContext,
    request: SipRequest,
    target: Target,
    user: ClientTransactionUser = {},
  ) {
    super(ctx, request, target, user, "trying");
  }

  /**
   * Sends the request. 17.1.2.2: "If an unreliable transport is in use, the
   * client transaction MUST set timer E to fire in T1 seconds ... timer F
   * to fire in 64*T1 seconds."
   */
  start(): void {
    const { t1 } = this.ctx.timers;
    if (!this.reliable) this.#timerE(t1);
    this.timers.start("F", 64 * t1, () => {
      // "If Timer F fires while in the 'Trying' [or 'Proceeding'] state, the
      // client transaction SHOULD inform the TU about the timeout".
      if (this.state === "trying" || this.state === "proceeding") this.timeout();
    });
    this.sendFirst(() => this.timers.stop("E"));
  }

  #timerE(interval: number): void {
    this.timers.start("E", interval, () => {
      if (this.state !== "trying" && this.state !== "proceeding") return;
      this.sendAgain(this.request);
      // "If timer E fires while still in this state, the timer is reset, but
      // this time with a value of MIN(2*T1, T2)"; in Proceeding "the timer is
      // reset with a value of T2 seconds."
      const { t2 } = this.ctx.timers;
      this.#timerE(this.state === "proceeding" ? t2 : Math.min(2 * interval, t2));
    });
  }

  /** A response matched to this transaction. */
  receiveResponse(res: SipResponse): void {
    if (this.state !== "trying" && this.state !== "proceeding") {
      // Completed: "any retransmissions of the final response ... are buffered";
      // nothing reaches the TU again.
      return;
    }
    if (res.status < 200) {
      this.setState("proceeding");
      this.deliverProvisional(res);
      return;
    }
    // "If a final response (status codes 200-699) is received while in the
    // 'Trying' [or 'Proceeding'] state, the response MUST be passed to the TU,
    // and the client transaction MUST transition to the 'Completed' state."
    this.timers.stop("E");
    this.timers.stop("F");
    this.setState("completed");
    this.deliverFinal(res);
    if (this.terminated) return;
    // "Timer K ... T4 seconds for unreliable transports, and zero seconds for
    // reliable transports."
    if (this.reliable) this.terminate();
    else this.timers.start("K", this.ctx.timers.t4, () => this.terminate());
  }
}
