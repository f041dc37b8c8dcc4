/**
 * When to modify a call's session because of what the peer reports about
 * our stream (RTCP receiver reports, RFC 3550 6.4): sustained loss or jitter
 * over a threshold asks for the next codec in the preference list. With the
 * G.711 pair the change shows the mechanism; a codec added behind the
 * `AudioCodec` interface (a low-rate one) makes it useful on narrow links.
 *
 * @module
 */

/** Options of {@linkcode AdaptPolicy}. */
export interface AdaptOptions {
  /** Reported loss fraction (0-1) that counts as bad. Default 0.05. */
  lossThreshold?: number;
  /** Reported interarrival jitter (ms) that counts as bad. Default 40. */
  jitterThresholdMs?: number;
  /** Consecutive bad reports before acting ("sustained"). Default 2. */
  sustain?: number;
  /** No new change until this long after the last one, ms. Default 15000. */
  cooldownMs?: number;
}

/** What the peer said about our stream in one report. */
export interface AdaptReport {
  /** Fraction lost since its last report (0-1), null when unknown. */
  lossFraction: number | null;
  /** Interarrival jitter in ms, null when unknown. */
  jitterMs: number | null;
}

/** A change to make. */
export interface AdaptDecision {
  /** What was over its threshold (loss wins when both are). */
  reason: "loss" | "jitter";
  /** The codec to put first in the next offer. */
  codec: string;
}

/**
 * Decides, report after report, when to change codec.
 *
 * @example
 * ```ts
 * import { AdaptPolicy } from "./adapt.ts";
 * import assert from "node:assert/strict";
 * const policy = new AdaptPolicy(["PCMU", "PCMA"], { sustain: 2 });
 * const bad = { lossFraction: 0.2, jitterMs: 5 };
 * assert.equal(policy.observe(bad, { codec: "PCMU" }, 0), undefined);
 * assert.deepEqual(policy.observe(bad, { codec: "PCMU" }, 5000), { reason: "loss", codec: "PCMA" });
 * ```
 */
export class AdaptPolicy {
  readonly #codecs: string[];
  readonly #loss: number;
  readonly #jitter: number;
  readonly #sustain: number;
  readonly #cooldown: number;
  #bad = 0;
  #lastChange = -Infinity;
  readonly #tried = new Set<string>();

  /** Creates the policy for a call offering `codecs` in this order. */
  constructor(codecs: readonly string[], options: AdaptOptions = {}) {
    this.#codecs = codecs.map((c) => c.toUpperCase());
    this.#loss = options.lossThreshold ?? 0.05;
    this.#jitter = options.jitterThresholdMs ?? 40;
    this.#sustain = Math.max(1, options.sustain ?? 2);
    this.#cooldown = options.cooldownMs ?? 15_000;
  }

  /**
   * Takes one report (at `nowMs`, any monotonic clock) while `current` is in
   * use; returns a change to make, or undefined. Each codec is tried once:
   * when every other codec was tried, nothing more is asked.
   */
  observe(
    report: AdaptReport,
    current: { codec: string },
    nowMs: number,
  ): AdaptDecision | undefined {
    const lossy = report.lossFraction !== null && report.lossFraction > this.#loss;
    const jittery = report.jitterMs !== null && report.jitterMs > this.#jitter;
    if (!lossy && !jittery) {
      this.#bad = 0;
      return undefined;
    }
    this.#bad++;
    if (this.#bad < this.#sustain || nowMs - this.#lastChange < this.#cooldown) return undefined;
    const now = current.codec.toUpperCase();
    this.#tried.add(now);
    const next = this.#codecs.find((c) => !this.#tried.has(c));
    if (!next) return undefined;
    this.#tried.add(next);
    this.#bad = 0;
    this.#lastChange = nowMs;
    return { reason: lossy ? "loss" : "jitter", codec: next };
  }
}
