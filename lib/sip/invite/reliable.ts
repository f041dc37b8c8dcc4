/**
 * Reliable provisional responses sent by a callee (RFC 3262 section 3): the
 * RSeq numbering, one unacknowledged reliable 1xx at a time (the next waits
 * its turn), retransmission with exponential back-off from T1 until the
 * PRACK that matches its RAck, and giving up after 64*T1. The session sends
 * the 1xx, answers the PRACK and rejects the INVITE; this module keeps the
 * order and the time.
 *
 * @module
 */

import type { SipResponse } from "../message.ts";

/** A 1xx sent reliably, waiting for its PRACK. */
export interface ReliablePending {
  /** Its RSeq. */
  rseq: number;
  /** It carries SDP (an offer or an answer). */
  hasSdp: boolean;
  /** Resolves the sender's wait: the PRACK came. */
  done: () => void;
  /** Rejects the sender's wait: no PRACK, or the call ended. */
  failed: (e: Error) => void;
}

/** What {@linkcode ReliableProvisionals} needs from its session. */
export interface ReliableHost {
  /** Runs `fn` after `ms` on the session's clock (cleared when the session ends). */
  after(ms: number, fn: () => void): void;
  /** T1 of the transaction layer, ms. */
  t1(): number;
  /** False once the call ended or has its final response: retransmissions stop. */
  open(): boolean;
  /** Sends the 1xx again. */
  resend(res: SipResponse): void;
  /** 64*T1 went by without a PRACK: the session rejects the INVITE (5xx). */
  gaveUp(): void;
}

/**
 * The callee's reliable provisional responses of one INVITE.
 *
 * @example
 * ```ts
 * import { ReliableProvisionals } from "./reliable.ts";
 * import assert from "node:assert/strict";
 * const reliable = new ReliableProvisionals({
 *   after: () => {}, t1: () => 500, open: () => true, resend: () => {}, gaveUp: () => {},
 * });
 * const rseq = reliable.nextRseq();
 * assert.ok(rseq >= 1 && rseq < 0x8000);
 * assert.equal(reliable.nextRseq(), rseq + 1);
 * ```
 */
export class ReliableProvisionals {
  readonly #host: ReliableHost;
  #rseq = 0;
  #pending?: ReliablePending;
  #queue: (() => void)[] = [];

  /** Reliable 1xx bookkeeping, timed by `host`. */
  constructor(host: ReliableHost) {
    this.#host = host;
  }

  /** The reliable 1xx waiting for its PRACK, if any. */
  get pending(): ReliablePending | undefined {
    return this.#pending;
  }

  /**
   * Resolves when a new reliable 1xx may go: "The UAS MUST NOT send a second
   * reliable provisional response until the first is acknowledged."
   */
  turn(): Promise<void> {
    if (!this.#pending) return Promise.resolve();
    return new Promise((resolve) => this.#queue.push(resolve));
  }

  /** The RSeq of the next reliable 1xx: random (1 to 2**15 - 1) at first, then one more each time. */
  nextRseq(): number {
    this.#rseq = this.#rseq === 0
      ? 1 + (crypto.getRandomValues(new Uint32Array(1))[0] % 0x7fff)
      : this.#rseq + 1;
    return this.#rseq;
  }

  /**
   * Waits for the PRACK of `res` (sent already, with RSeq `rseq`), resending
   * it meanwhile: RFC 3262 3, "the UAS MUST retransmit [it] ... with an
   * exponential backoff ... starting at T1 and doubling ... If a reliable
   * provisional response is retransmitted for 64*T1 seconds without
   * reception of a corresponding PRACK, the UAS SHOULD reject the original
   * request with a 5xx response." Rejects then, or when the call ends.
   */
  awaitPrack(res: SipResponse, rseq: number, hasSdp: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const pending: ReliablePending = { rseq, hasSdp, done: resolve, failed: reject };
      this.#pending = pending;
      this.#retransmit(res, pending, this.#host.t1(), 0);
    });
  }

  /**
   * The pending 1xx a PRACK's RAck header (`rseq cseq method`) acknowledges,
   * or undefined (RFC 3262 3: such a PRACK gets 481).
   */
  match(
    rack: string | null | undefined,
    inviteSeq: number | undefined,
  ): ReliablePending | undefined {
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)/.exec(rack ?? "");
    const pending = this.#pending;
    if (
      !m || !pending || Number(m[1]) !== pending.rseq || Number(m[2]) !== inviteSeq ||
      m[3] !== "INVITE"
    ) {
      return undefined;
    }
    return pending;
  }

  /** The pending 1xx is done with (its PRACK came, or it failed): the next one may go. */
  settled(): void {
    this.#pending = undefined;
    this.#queue.shift()?.();
  }

  /** The call ended: whoever waits for a PRACK or for their turn learns it. */
  abort(error: Error): void {
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.failed(error);
    for (const next of this.#queue.splice(0)) next();
  }

  #retransmit(res: SipResponse, pending: ReliablePending, interval: number, spent: number): void {
    // The last wait ends at 64*T1 exactly, not at the next doubling past it.
    const limit = 64 * this.#host.t1();
    const wait = Math.min(interval, limit - spent);
    this.#host.after(wait, () => {
      if (this.#pending !== pending || !this.#host.open()) return;
      spent += wait;
      if (spent >= limit) {
        this.settled();
        pending.failed(new Error("No PRACK for a reliable provisional response"));
        this.#host.gaveUp();
        return;
      }
      this.#host.resend(res);
      this.#retransmit(res, pending, interval * 2, spent);
    });
  }
}
