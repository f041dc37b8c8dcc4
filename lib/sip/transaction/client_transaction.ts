/**
 * What the INVITE and non-INVITE client transactions share (RFC 3261
 * section 17.1): the request, its target, the TU callbacks, a promise of the
 * final response, sending with transport error handling.
 *
 * @module
 */

import { SipRequestError } from "../errors.ts";
import type { SipRequest, SipResponse } from "../message.ts";
import { callUser, TimerSet, toError, type TransactionContext } from "./_context.ts";
import type { ClientTransactionUser, Target, TransactionState } from "./types.ts";

/** Base class of the client transactions. */
export abstract class ClientTransaction {
  /** The request, with the top Via holding {@linkcode ClientTransaction.branch}. */
  readonly request: SipRequest;
  /** The branch of the top Via. */
  readonly branch: string;
  /** The matching key (branch and method, 17.1.3). */
  readonly key: string;
  /** The target; once the first send resolves, the one the transport layer actually used. */
  target: Target;
  /** The transaction user's callbacks. */
  user: ClientTransactionUser;
  /**
   * The first final response. Rejects with a local {@linkcode SipRequestError}
   * 408 on timeout and 503 on a transport error (section 8.1.3.1). A non-2xx
   * final resolves: the caller looks at the status.
   */
  readonly response: Promise<SipResponse>;

  /**
   * The layer's services, for the state machines built on this class.
   * @ignore
   */
  protected readonly ctx: TransactionContext;
  /**
   * This transaction's timers.
   * @ignore
   */
  protected readonly timers: TimerSet;
  #state: TransactionState;
  #reliable: boolean;
  #settled = false;
  #resolve!: (res: SipResponse) => void;
  #reject!: (e: SipRequestError) => void;

  /** Creates the transaction in its initial state; {@linkcode start} sends. */
  constructor(
    ctx: TransactionContext,
    request: SipRequest,
    target: Target,
    user: ClientTransactionUser,
    initial: TransactionState,
  ) {
    this.ctx = ctx;
    this.request = request;
    this.target = target;
    this.user = user;
    this.#state = initial;
    this.#reliable = target.protocol !== "udp";
    this.timers = new TimerSet(ctx.clock);
    this.branch = request.topVia.params.branch ?? "";
    this.key = `${this.branch}|${request.method}`;
    this.response = new Promise<SipResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // Nobody has to await it: a TU using callbacks only must not get an unhandled rejection.
    this.response.catch(() => {});
  }

  /** The current state. */
  get state(): TransactionState {
    return this.#state;
  }

  /** True when the transport is reliable (no retransmissions, zero wait timers). */
  get reliable(): boolean {
    return this.#reliable;
  }

  /** True once Terminated. */
  get terminated(): boolean {
    return this.#state === "terminated";
  }

  /** Sends the request and starts the timers of the initial state. */
  abstract start(): void;

  /** A response matched to this transaction by the layer. */
  abstract receiveResponse(res: SipResponse): void;

  /** Ends the transaction now: stops timers, forgets it, tells the TU. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.timers.stopAll();
    this.ctx.remove(this.key, this);
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(new SipRequestError(408, "Request Timeout", { local: true }));
    }
    callUser(this.ctx.log, "onTerminated", () => this.user.onTerminated?.());
  }

  /**
   * The target refused a datagram (an ICMP port unreachable heard after the
   * send, RFC 3261 18.4): over UDP, in Trying or Calling (no response yet),
   * the transaction ends with a transport error (17.1.4), as when a send
   * rejects; true when it did. Once the target has answered, the refusal
   * concerns something else and is left alone.
   */
  refused(error: Error): boolean {
    if (this.#reliable || (this.#state !== "trying" && this.#state !== "calling")) return false;
    this.transportError(error);
    return true;
  }

  /** Moves to another state. */
  protected setState(state: TransactionState): void {
    this.#state = state;
  }

  /**
   * Sends the request for the first time. When the transport layer chose a
   * reliable transport after all (e.g. TCP for a request over 1300 bytes,
   * 18.1.1), `onReliable` stops the retransmission timer.
   */
  protected sendFirst(onReliable: () => void): void {
    this.ctx.transport.sendRequest(this.request, this.target).then((used) => {
      if (this.terminated) return;
      this.target = used;
      const reliable = used.protocol !== "udp";
      if (reliable && !this.#reliable) {
        this.#reliable = true;
        onReliable();
      }
    }, (e) => this.transportError(e));
  }

  /** Sends a message (retransmission, ACK) to the current target. */
  protected sendAgain(msg: SipRequest): void {
    this.ctx.transport.sendRequest(msg, this.target).catch((e) => this.transportError(e));
  }

  /** Passes a provisional response to the TU. */
  protected deliverProvisional(res: SipResponse): void {
    callUser(this.ctx.log, "onProvisional", () => this.user.onProvisional?.(res));
  }

  /** Passes a final response to the TU and settles {@linkcode response}. */
  protected deliverFinal(res: SipResponse): void {
    if (!this.#settled) {
      this.#settled = true;
      this.#resolve(res);
    }
    callUser(this.ctx.log, "onFinal", () => this.user.onFinal?.(res));
  }

  /** Timer B or F fired in Calling/Trying/Proceeding. */
  protected timeout(): void {
    if (this.terminated) return;
    this.ctx.log(`transaction ${this.key} timed out`);
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(new SipRequestError(408, "Request Timeout", { local: true }));
    }
    callUser(this.ctx.log, "onTimeout", () => this.user.onTimeout?.());
    this.terminate();
  }

  /**
   * 17.1.4: "the client transaction SHOULD inform the TU that a transport
   * failure has occurred, and the client transaction SHOULD transition
   * directly to the 'Terminated' state."
   */
  protected transportError(e: unknown): void {
    if (this.terminated) return;
    const error = toError(e);
    this.ctx.log(`transaction ${this.key}: transport error: ${error.message}`);
    if (!this.#settled) {
      this.#settled = true;
      this.#reject(
        // The reason names the failure (e.g. an ICMP port unreachable), on one line.
        new SipRequestError(503, `Transport error: ${error.message.replace(/\s+/g, " ")}`, {
          local: true,
          cause: error,
        }),
      );
    }
    callUser(this.ctx.log, "onTransportError", () => this.user.onTransportError?.(error));
    this.terminate();
  }
}
