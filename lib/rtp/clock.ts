/**
 * The clock media timing runs on, and a pacer that ticks on it.
 *
 * {@linkcode MediaClock} has the same shape as the SIP stack's `Clock`, so a
 * `ManualClock` drives the sender, the playout and RTCP in tests without
 * sleeping; lib/rtp does not import it.
 *
 * @module
 */

/** A monotonic millisecond clock with timers. */
export interface MediaClock {
  /** Milliseconds since an arbitrary fixed origin (monotonic). */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds; returns a handle. */
  setTimeout(fn: () => void, ms: number): number;
  /** Cancels a timer. */
  clearTimeout(id: number): void;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const monotonicClock: MediaClock = {
  now: () => performance.now(),
  // Whole milliseconds, rounded up: a fractional delay would fire a little early.
  setTimeout: (fn, ms) => setTimeout(fn, Math.max(0, Math.ceil(ms))) as unknown as number,
  clearTimeout: (id) => clearTimeout(id),
};

/** Options of {@linkcode Pacer}. */
export interface PacerOptions {
  /**
   * At most this many ticks run back to back when the timer woke up late
   * (default 10); older ticks are skipped, but their indexes still pass, so
   * tick `n` always belongs to time `start + n * interval`.
   */
  maxBurst?: number;
  /**
   * Run a tick up to this many ms before its time (default 0). Real timers
   * fire about a millisecond late, and a timer that fires a hair early would
   * otherwise cost a second wake-up; a small lead keeps packets on time.
   */
  leadMs?: number;
}

/**
 * Runs `onTick(n)` for n = 0, 1, 2, ... at `start + n * intervalMs` on its
 * clock. Each wake-up runs every tick that fell due, so a late timer is caught
 * up and the schedule never drifts: the ticks follow the clock, not the sum
 * of the timer delays.
 *
 * @example
 * ```ts
 * import { Pacer } from "./clock.ts";
 * import { ManualClock } from "../sip/clock.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * const ticks: number[] = [];
 * const pacer = new Pacer(clock, 20, (n) => ticks.push(n));
 * pacer.start();
 * clock.advance(65);
 * pacer.stop();
 * assert.deepEqual(ticks, [0, 1, 2, 3]);
 * ```
 */
export class Pacer {
  #clock: MediaClock;
  #interval: number;
  #onTick: (index: number) => void;
  #maxBurst: number;
  #lead: number;
  #start = 0;
  #index = 0;
  #timer: number | undefined;
  #running = false;
  #skipped = 0;

  /** A pacer calling `onTick` every `intervalMs` on `clock`. */
  constructor(
    clock: MediaClock,
    intervalMs: number,
    onTick: (index: number) => void,
    options: PacerOptions = {},
  ) {
    this.#clock = clock;
    this.#interval = intervalMs;
    this.#onTick = onTick;
    this.#maxBurst = options.maxBurst ?? 10;
    this.#lead = options.leadMs ?? 0;
  }

  /**
   * Starts ticking: tick 0 at `atMs` on the clock (default now: it runs at
   * once). A later `atMs` continues a schedule without a gap or an overlap,
   * e.g. a new interval that begins where the last tick of the old one ends.
   */
  start(atMs?: number): void {
    if (this.#running) return;
    this.#running = true;
    this.#start = atMs ?? this.#clock.now();
    this.#index = 0;
    this.#run();
  }

  /** Stops; a later start() begins a new schedule at tick 0. */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return this.#running;
  }

  /** The index of the next tick. */
  get index(): number {
    return this.#index;
  }

  /** Ticks skipped because the timer woke up more than `maxBurst` ticks late. */
  get skipped(): number {
    return this.#skipped;
  }

  /** The interval between ticks, ms. */
  get intervalMs(): number {
    return this.#interval;
  }

  /** The clock time tick `n` belongs to. */
  timeOf(n: number): number {
    return this.#start + n * this.#interval;
  }

  #run(): void {
    this.#timer = undefined;
    if (!this.#running) return;
    const now = this.#clock.now();
    const due = Math.max(0, Math.floor((now + this.#lead - this.#start) / this.#interval) + 1);
    if (due - this.#index > this.#maxBurst) {
      this.#skipped += due - this.#maxBurst - this.#index;
      this.#index = due - this.#maxBurst;
    }
    while (this.#index < due && this.#running) {
      const n = this.#index++;
      try {
        this.#onTick(n);
      } catch (error) {
        console.error(`sipkit: media tick failed: ${(error as Error).message}`);
      }
    }
    if (!this.#running) return;
    const next = this.#start + this.#index * this.#interval;
    this.#timer = this.#clock.setTimeout(() => this.#run(), next - this.#lead - this.#clock.now());
  }
}
