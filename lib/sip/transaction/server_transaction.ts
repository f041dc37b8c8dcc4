/**
 * What the INVITE and non-INVITE server transactions share (RFC 3261
 * section 17.2): the request, where it came from, the last response, sending
 * responses with transport error handling.
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";
import { callUser, TimerSet, toError, type TransactionContext } from "./_context.ts";
import type { InboundInfo, ServerTransactionUser, TransactionState } from "./types.ts";

/** Base class of the server transactions. */
export abstract class ServerTransaction {
  /** The request that created the transaction. */
  readonly request: SipRequest;
  /** Where it came from: responses go back on the same path. */
  readonly info: InboundInfo;
  /** The matching key (17.2.3). */
  readonly key: string;
  /** The transaction user's callbacks; set them when taking the request. */
  user: ServerTransactionUser = {};

  /**
   * The layer's services, for the state machines built on this class.
   * @ignore
   */
  protected readonly ctx: TransactionContext;
  #timers?: TimerSet;
  #state: TransactionState;
  #last?: SipResponse;
  /** When a Completed state left to the layer (timer J over UDP) ends, on the clock. */
  #expires?: number;

  /** Creates the transaction in its initial state. */
  constructor(
    ctx: TransactionContext,
    request: SipRequest,
    info: InboundInfo,
    key: string,
    initial: TransactionState,
  ) {
    this.ctx = ctx;
    this.request = request;
    this.info = info;
    this.key = key;
    this.#state = initial;
  }

  /**
   * This transaction's timers (made on first use: most transactions never need one).
   * @ignore
   */
  protected get timers(): TimerSet {
    return this.#timers ??= new TimerSet(this.ctx.clock);
  }

  /** The current state. */
  get state(): TransactionState {
    // Timer J ran out in the layer, which forgot this transaction.
    if (this.#expires !== undefined && this.ctx.clock.now() >= this.#expires) return "terminated";
    return this.#state;
  }

  /** True when the request came over a reliable transport. */
  get reliable(): boolean {
    return this.info.protocol !== "udp";
  }

  /** True once Terminated. */
  get terminated(): boolean {
    return this.state === "terminated";
  }

  /** The last response sent (provisional or final). */
  get lastResponse(): SipResponse | undefined {
    return this.#last;
  }

  /**
   * Sends a response from the TU through this transaction. Responses that
   * the state does not allow (a second final, anything after Terminated)
   * are dropped and logged; transport failures reach `user.onTransportError`.
   */
  abstract respond(res: SipResponse): void;

  /**
   * A request matched to this transaction (a retransmission, or an ACK for an
   * INVITE). Returns true when the request must go up to the TU instead (an
   * ACK in RFC 6026's Accepted state).
   */
  abstract receiveRequest(req: SipRequest): boolean;

  /** Ends the transaction now: stops timers, forgets it, tells the TU. */
  terminate(): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.#expires = undefined;
    this.#timers?.stopAll();
    this.ctx.remove(this.key, this);
    callUser(this.ctx.log, "onTerminated", () => this.user.onTerminated?.());
  }

  /** Moves to another state. */
  protected setState(state: TransactionState): void {
    this.#state = state;
  }

  /** Sends a response and remembers it as the last one. */
  protected send(res: SipResponse): void {
    this.#last = res;
    this.resend(res);
  }

  /**
   * Completed over UDP with the final `res`: the layer sends it and keeps
   * only what retransmissions need for `ms` (timer J); this object then reads
   * as Terminated once that time has passed.
   */
  protected completeInLayer(res: SipResponse, ms: number): void {
    this.#last = res;
    this.#expires = this.ctx.clock.now() + ms;
    this.ctx.complete(this, res, (e) => this.transportError(e));
  }

  /** Sends a response again (retransmission). */
  protected resend(res: SipResponse): void {
    this.ctx.transport.sendResponse(res, this.info).catch((e) => this.transportError(e));
  }

  /** Logs a response the state does not accept. */
  protected refuse(res: SipResponse): void {
    this.ctx.log(`transaction ${this.key}: ${res.status} not sent in state ${this.state}`);
  }

  /**
   * 17.2.4: "the server transaction ... MUST inform the TU of a transport
   * failure" and terminates (the diagrams: "Transport Err. Inform TU").
   */
  protected transportError(e: unknown): void {
    if (this.terminated) return;
    const error = toError(e);
    this.ctx.log(`transaction ${this.key}: transport error: ${error.message}`);
    callUser(this.ctx.log, "onTransportError", () => this.user.onTransportError?.(error));
    this.terminate();
  }
}
