/**
 * Clocks: every timer in the stack (transaction timers A to K, refreshes,
 * back-off) is scheduled through a {@linkcode Clock}, so that tests can drive
 * a whole transaction life with a {@linkcode ManualClock} without sleeping.
 *
 * @module
 */

/** An opaque handle for a scheduled timer. */
export type TimerId = number;

/** A source of time and timers. */
export interface Clock {
  /** Milliseconds since an arbitrary, fixed origin. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): TimerId;
  /** Cancels a timer; unknown or fired ids are ignored. */
  clearTimeout(id: TimerId): void;
}

/**
 * The real clock, backed by `setTimeout` and `performance.now()`.
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const id = systemClock.setTimeout(() => {}, 10);
 * systemClock.clearTimeout(id);
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  // Cast: with node:* imports in the graph, @types/node types setTimeout as returning Timeout.
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, ms)) as unknown as TimerId,
  clearTimeout: (id) => clearTimeout(id),
};

interface ManualTimer {
  id: TimerId;
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * A clock that only moves when told to. Timers fire in order of due time
 * (then of scheduling) while {@linkcode ManualClock.advance} runs.
 *
 * @example
 * ```ts
 * import { ManualClock } from "./clock.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * let fired = 0;
 * clock.setTimeout(() => fired++, 500);
 * clock.advance(499);
 * assert.equal(fired, 0);
 * clock.advance(1);
 * assert.equal(fired, 1);
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #next = 1;
  #seq = 0;
  #timers = new Map<TimerId, ManualTimer>();

  /** Creates a clock that starts at `start` milliseconds. */
  constructor(start = 0) {
    this.#now = start;
  }

  /** The current manual time in milliseconds. */
  now(): number {
    return this.#now;
  }

  /** Schedules `fn` at `now() + ms`. */
  setTimeout(fn: () => void, ms: number): TimerId {
    const id = this.#next++;
    this.#timers.set(id, { id, at: this.#now + Math.max(0, ms), seq: this.#seq++, fn });
    return id;
  }

  /** Cancels a pending timer. */
  clearTimeout(id: TimerId): void {
    this.#timers.delete(id);
  }

  /** How many timers are pending. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, including
   * timers scheduled by the callbacks themselves.
   */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const next = this.#earliest();
      if (!next || next.at > end) break;
      this.#timers.delete(next.id);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = end;
  }

  /** Fires timers until none is pending or `limitMs` of time has passed. */
  runAll(limitMs = 24 * 3600_000): void {
    const end = this.#now + limitMs;
    for (;;) {
      const next = this.#earliest();
      if (!next || next.at > end) break;
      this.advance(next.at - this.#now);
    }
  }

  #earliest(): ManualTimer | undefined {
    let best: ManualTimer | undefined;
    for (const t of this.#timers.values()) {
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
