/**
 * The INVITE client transaction (RFC 3261 section 17.1.1, with the Accepted
 * state of RFC 6026 section 7.2).
 *
 * ```
 * Calling --1xx--> Proceeding --2xx--> Accepted --Timer M--> Terminated
 *    |  \______________|______300-699: send ACK--> Completed --Timer D--> Terminated
 *    +--Timer B / transport error--> Terminated
 * ```
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";
import { createNon2xxAck } from "./build.ts";
import { ClientTransaction } from "./client_transaction.ts";
import type { TransactionContext } from "./_context.ts";
import type { ClientTransactionUser, Target } from "./types.ts";

/** An INVITE client transaction. */
export class ClientInviteTransaction extends ClientTransaction {
  #ack?: SipRequest;
  #cancelPending?: () => void;

  /** Creates the transaction in Calling; {@linkcode start} sends the INVITE. */
  constructor(
    ctx: TransactionContext,
    request: SipRequest,
    target: Target,
    user: ClientTransactionUser = {},
  ) {
    super(ctx, request, target, user, "calling");
  }

  /** The ACK sent for a non-2xx final, once there is one. */
  get ack(): SipRequest | undefined {
    return this.#ack;
  }

  /**
   * Sends the INVITE. 17.1.1.2: "If an unreliable transport is being used,
   * the client transaction MUST start timer A with a value of T1 ... For any
   * transport, the client transaction MUST start timer B with a value of 64*T1."
   */
  start(): void {
    const { t1 } = this.ctx.timers;
    if (!this.reliable) this.#timerA(t1);
    this.timers.start("B", 64 * t1, () => {
      // "If the client transaction is still in the 'Calling' state when timer
      // B fires, the client transaction SHOULD inform the TU that a timeout has occurred."
      if (this.state === "calling") this.timeout();
    });
    this.sendFirst(() => this.timers.stop("A"));
  }

  #timerA(interval: number): void {
    this.timers.start("A", interval, () => {
      if (this.state !== "calling") return;
      // "When timer A fires, the client transaction MUST retransmit the request
      // ... and MUST reset the timer with a value of 2*T1" (doubling each time).
      this.sendAgain(this.request);
      this.#timerA(interval * 2);
    });
  }

  /** Runs `fn` (the CANCEL) once a provisional response arrived (9.1); dropped on a final. */
  whenProceeding(fn: () => void): void {
    if (this.state === "proceeding") fn();
    else if (this.state === "calling") this.#cancelPending = fn;
  }

  /**
   * Starts the limit of a cancelled INVITE (9.1): when no final response
   * came within `ms`, the transaction ends as a timeout (the TU sees a 408).
   */
  cancelDeadline(ms: number): void {
    if (this.state !== "calling" && this.state !== "proceeding") return;
    this.timers.start("Cancel", ms, () => {
      if (this.state === "calling" || this.state === "proceeding") {
        this.ctx.log(`transaction ${this.key}: no final response 64*T1 after CANCEL`);
        this.timeout();
      }
    });
  }

  /** A response matched to this transaction. */
  receiveResponse(res: SipResponse): void {
    const status = res.status;
    switch (this.state) {
      case "calling":
      case "proceeding":
        if (status < 200) {
          if (this.state === "calling") {
            // "In the 'Proceeding' state, the client transaction SHOULD NOT
            // retransmit the request any longer."
            this.setState("proceeding");
            this.timers.stop("A");
            this.timers.stop("B");
            const pending = this.#cancelPending;
            this.#cancelPending = undefined;
            pending?.();
          }
          this.deliverProvisional(res);
        } else if (status < 300) {
          // RFC 6026 7.2: "a 2xx response ... MUST cause the client transaction
          // to enter the 'Accepted' state ... Timer M ... 64*T1".
          this.#leaveCalling();
          this.setState("accepted");
          this.timers.start("M", 64 * this.ctx.timers.t1, () => this.terminate());
          this.deliverFinal(res);
        } else {
          // 17.1.1.2: "When in either the 'Calling' or 'Proceeding' states,
          // reception of a response with status code from 300-699 MUST cause the
          // client transaction to transition to 'Completed'. The client
          // transaction MUST pass the received response up to the TU, and the
          // client transaction MUST generate an ACK request".
          this.#leaveCalling();
          this.setState("completed");
          this.#ack = createNon2xxAck(this.request, res);
          this.sendAgain(this.#ack);
          // "set timer D ... at least 32 seconds for unreliable transports, and
          // ... zero seconds for reliable transports."
          if (this.reliable) {
            this.deliverFinal(res);
            this.terminate();
            return;
          }
          this.timers.start("D", this.ctx.timers.d, () => this.terminate());
          this.deliverFinal(res);
        }
        break;
      case "accepted":
        // RFC 6026 7.2: "Any 2xx responses that match this client transaction
        // and that are received while in the 'Accepted' state MUST be passed up to the TU."
        if (status >= 200 && status < 300) this.deliverFinal(res);
        break;
      case "completed":
        // 17.1.1.2: "Any retransmissions of the final response that are received
        // while in the 'Completed' state MUST cause the ACK to be re-passed to the
        // transport layer for retransmission, but the newly received response
        // MUST NOT be passed up to the TU."
        if (status >= 300 && this.#ack) this.sendAgain(this.#ack);
        break;
      default:
        break;
    }
  }

  #leaveCalling(): void {
    this.timers.stop("A");
    this.timers.stop("B");
    this.timers.stop("Cancel");
    this.#cancelPending = undefined;
  }
}
