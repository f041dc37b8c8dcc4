/**
 * When to modify a call's media because of what RTCP says (RFC 3550 6.4).
 * Two tracks, each with hysteresis and its own minimum interval between
 * changes:
 *
 * - **the session** (what a re-INVITE or UPDATE changes), from the peer's
 *   reports about our stream: sustained loss or jitter over a threshold asks
 *   for a step up, which is the next codec of the preference list not tried
 *   yet and the next coarser ptime (fewer, larger packets: less header
 *   overhead on a narrow or congested link); reports calm again (under half
 *   the thresholds) for longer step the ptime back down, one rung at a time;
 * - **the jitter buffer** (local, no signalling), from the interarrival
 *   jitter we measure on the peer's stream: sustained jitter over the
 *   threshold raises the buffer's target delay by a step, calm lowers it
 *   again.
 *
 * With the G.711 pair the codec switch shows the mechanism; a codec added
 * behind the `AudioCodec` interface (a low-rate one) makes it pay off.
 *
 * @module
 */

/** Options of {@linkcode AdaptPolicy}. */
export interface AdaptOptions {
  /** Reported loss fraction (0-1) that counts as bad. Default 0.05. */
  lossThreshold?: number;
  /** Jitter (ms) that counts as bad. Default 40. */
  jitterThresholdMs?: number;
  /** Consecutive bad reports before acting ("sustained"). Default 2. */
  sustain?: number;
  /** Consecutive calm reports (under half the thresholds) before stepping back. Default 4. */
  calm?: number;
  /** Least time between two changes of one track, ms. Default 15000. */
  cooldownMs?: number;
  /** The ptime rungs, ms, finest first; the first is where a call starts. Default 20, 40, 60. */
  ptimes?: number[];
  /** How much one step raises or lowers the jitter buffer's target, ms. Default 40. */
  jitterBufferStepMs?: number;
  /** The highest target delay asked of the jitter buffer, ms. Default 160. */
  maxJitterBufferMs?: number;
}

/** What one side said about a stream in one report; null when unknown. */
export interface AdaptReport {
  /** Fraction lost since the last report (0-1). */
  lossFraction: number | null;
  /** Interarrival jitter, ms. */
  jitterMs: number | null;
}

/** What is in force now (the policy keeps no copy of it). */
export interface AdaptState {
  /** The codec we send with. */
  codec: string;
  /** The ptime of our offers (what we asked for), ms. */
  ptime: number;
  /** The jitter buffer's target delay, ms. */
  jitterBufferMs: number;
  /** The peer's a=maxptime, when it wrote one: no rung above it is asked for. */
  maxPtime?: number;
}

/** One observation: the peer's report on our stream and our view of its stream. */
export interface AdaptObservation {
  /** What the peer reports about the stream we send (its RTCP report block). */
  remote: AdaptReport;
  /** What we measure on the stream we receive (jitter drives the jitter buffer). */
  local: AdaptReport;
}

/** A change to make; only the fields that change are present. */
export interface AdaptDecision {
  /**
   * Why: "loss" or "jitter" (over its threshold; loss wins when both are)
   * for a step up, "recovered" for a step back after calm reports.
   */
  reason: "loss" | "jitter" | "recovered";
  /** The codec to put first in the next offer. */
  codec?: string;
  /** The ptime to offer, ms. */
  ptime?: number;
  /** The jitter buffer's new target delay, ms. */
  jitterBufferMs?: number;
}

/** Bad, calm and change bookkeeping of one track. */
class Track {
  bad = 0;
  calm = 0;
  lastChange = -Infinity;

  /** Counts a report; "bad" or "calm" once sustained and out of the cool-down. */
  count(bad: boolean, calm: boolean, sustain: number, calmNeeded: number, ready: boolean) {
    this.bad = bad ? this.bad + 1 : 0;
    this.calm = calm ? this.calm + 1 : 0;
    if (!ready) return undefined;
    if (this.bad >= sustain) return "bad" as const;
    if (this.calm >= calmNeeded) return "calm" as const;
    return undefined;
  }

  changed(now: number): void {
    this.bad = 0;
    this.calm = 0;
    this.lastChange = now;
  }
}

/**
 * Decides, report after report, when to change codec, ptime and the jitter
 * buffer's target delay.
 *
 * @example
 * ```ts
 * import { AdaptPolicy } from "./adapt.ts";
 * import assert from "node:assert/strict";
 * const policy = new AdaptPolicy(["PCMU", "PCMA"], { sustain: 2 });
 * const lossy = { remote: { lossFraction: 0.2, jitterMs: 5 }, local: { lossFraction: 0, jitterMs: 2 } };
 * const state = { codec: "PCMU", ptime: 20, jitterBufferMs: 0 };
 * assert.equal(policy.observe(lossy, state, 0), undefined);
 * assert.deepEqual(policy.observe(lossy, state, 5000), { reason: "loss", codec: "PCMA", ptime: 40 });
 * ```
 */
export class AdaptPolicy {
  readonly #codecs: string[];
  readonly #loss: number;
  readonly #jitter: number;
  readonly #sustain: number;
  readonly #calm: number;
  readonly #cooldown: number;
  readonly #ptimes: number[];
  readonly #jbStep: number;
  readonly #jbMax: number;
  readonly #tried = new Set<string>();
  readonly #session = new Track();
  readonly #buffer = new Track();

  /** Creates the policy for a call offering `codecs` in this order. */
  constructor(codecs: readonly string[], options: AdaptOptions = {}) {
    this.#codecs = codecs.map((c) => c.toUpperCase());
    this.#loss = options.lossThreshold ?? 0.05;
    this.#jitter = options.jitterThresholdMs ?? 40;
    this.#sustain = Math.max(1, options.sustain ?? 2);
    this.#calm = Math.max(this.#sustain + 1, options.calm ?? 4);
    this.#cooldown = options.cooldownMs ?? 15_000;
    this.#ptimes = [...(options.ptimes ?? [20, 40, 60])].sort((a, b) => a - b);
    if (this.#ptimes.length === 0) throw new RangeError("AdaptPolicy needs at least one ptime");
    this.#jbStep = options.jitterBufferStepMs ?? 40;
    this.#jbMax = options.maxJitterBufferMs ?? 160;
  }

  /** The ptime rungs, finest first. */
  get ptimes(): readonly number[] {
    return this.#ptimes;
  }

  /**
   * Takes one observation (at `nowMs`, any monotonic clock) while `state` is
   * in force; returns the changes to make, or undefined. The caller applies
   * them (a session change by re-INVITE or UPDATE) and passes the state in
   * force at the next call. Each codec is tried once.
   */
  observe(obs: AdaptObservation, state: AdaptState, nowMs: number): AdaptDecision | undefined {
    const session = this.#sessionStep(obs.remote, state, nowMs);
    const buffer = this.#bufferStep(obs.local, state, nowMs);
    if (!session && !buffer) return undefined;
    return {
      reason: session?.reason ?? buffer!.reason,
      ...session?.changes,
      ...buffer?.changes,
    };
  }

  #sessionStep(r: AdaptReport, state: AdaptState, now: number) {
    const lossy = r.lossFraction !== null && r.lossFraction > this.#loss;
    const jittery = r.jitterMs !== null && r.jitterMs > this.#jitter;
    const calm = r.lossFraction !== null && r.lossFraction <= this.#loss / 2 &&
      (r.jitterMs === null || r.jitterMs <= this.#jitter / 2);
    const track = this.#session;
    const ready = now - track.lastChange >= this.#cooldown;
    const verdict = track.count(lossy || jittery, calm, this.#sustain, this.#calm, ready);
    if (!verdict) return undefined;
    const changes: { codec?: string; ptime?: number } = {};
    const rung = this.#rungOf(state.ptime);
    if (verdict === "bad") {
      this.#tried.add(state.codec.toUpperCase());
      const codec = this.#codecs.find((c) => !this.#tried.has(c));
      if (codec) {
        this.#tried.add(codec);
        changes.codec = codec;
      }
      const up = this.#ptimes[rung + 1];
      if (up !== undefined && (state.maxPtime === undefined || up <= state.maxPtime)) {
        changes.ptime = up;
      }
      if (!changes.codec && !changes.ptime) return undefined;
      track.changed(now);
      return { reason: lossy ? "loss" as const : "jitter" as const, changes };
    }
    // Calm: one rung finer, toward where the call started.
    if (rung <= 0 || state.ptime <= this.#ptimes[0]) return undefined;
    changes.ptime = this.#ptimes[rung - 1];
    track.changed(now);
    return { reason: "recovered" as const, changes };
  }

  #bufferStep(r: AdaptReport, state: AdaptState, now: number) {
    const jittery = r.jitterMs !== null && r.jitterMs > this.#jitter;
    const calm = r.jitterMs !== null && r.jitterMs <= this.#jitter / 2;
    const track = this.#buffer;
    const ready = now - track.lastChange >= this.#cooldown;
    const verdict = track.count(jittery, calm, this.#sustain, this.#calm, ready);
    if (verdict === "bad" && state.jitterBufferMs < this.#jbMax) {
      track.changed(now);
      const jitterBufferMs = Math.min(this.#jbMax, state.jitterBufferMs + this.#jbStep);
      return { reason: "jitter" as const, changes: { jitterBufferMs } };
    }
    if (verdict === "calm" && state.jitterBufferMs > 0) {
      track.changed(now);
      const jitterBufferMs = Math.max(0, state.jitterBufferMs - this.#jbStep);
      return { reason: "recovered" as const, changes: { jitterBufferMs } };
    }
    return undefined;
  }

  /** The rung of `ptime`: the highest rung not above it (-1 below the first). */
  #rungOf(ptime: number): number {
    let rung = -1;
    this.#ptimes.forEach((p, i) => {
      if (p <= ptime) rung = i;
    });
    return rung;
  }
}
