/**
 * An adaptive jitter buffer: packets go in as they arrive (out of order,
 * late, duplicated, lost), frames of PCM come out at the playout clock's pace.
 *
 * How it adapts (the libre `jbuf` / pjmedia idea, on samples):
 * - playout starts with the first packet; when the next samples have not
 *   arrived and nothing newer has either (an underrun), it plays silence and
 *   waits, which adds delay exactly as much as the network needs;
 * - when samples are missing but newer ones are there, they are lost: the gap
 *   is concealed with silence and playout moves on;
 * - over each window (1 s by default), the least audio held ahead of the
 *   playout point is measured; when even that minimum exceeds one frame plus
 *   a margin of twice the interarrival jitter, the surplus is dropped (at most
 *   one frame at a time), which takes the delay back down;
 * - a packet that arrives after its samples were played is late: counted and
 *   dropped. Many late packets in a row, or a jump ahead past the maximum
 *   delay, resynchronize playout (a restarted or resumed stream).
 *
 * Timestamps are RTP timestamps at 8 kHz (one unit per sample), 32-bit with
 * wrap-around.
 *
 * @module
 */

/** A decoded packet handed to the buffer. */
export interface JitterFrame {
  /** RTP timestamp of the first sample. */
  timestamp: number;
  /** RTP sequence number (for duplicates). */
  sequenceNumber: number;
  /** Decoded PCM. */
  samples: Int16Array;
}

/** Options of {@linkcode JitterBuffer}. */
export interface JitterBufferOptions {
  /** Samples per second (default 8000). */
  sampleRate?: number;
  /** Most audio held ahead of playout, ms (default 300). */
  maxDelayMs?: number;
  /** Adaptation window, in pops (default 50: 1 s of 20 ms frames). */
  window?: number;
  /** Least audio held ahead of playout once playing, ms (default 0: as little as the network allows). */
  targetDelayMs?: number;
}

/** Counters of a {@linkcode JitterBuffer}. */
export interface JitterBufferStats {
  /** Packets accepted. */
  queued: number;
  /** Packets that came after their samples were played. */
  late: number;
  /** Packets received twice. */
  duplicates: number;
  /** Samples concealed because their packet never came in time. */
  concealedSamples: number;
  /** Pops that found nothing to play (playout waited). */
  underruns: number;
  /** Samples dropped to reduce delay or on overflow. */
  droppedSamples: number;
  /** Silence samples played to build the level up to the target delay. */
  stretchedSamples: number;
  /** Times playout jumped to resynchronize. */
  resyncs: number;
}

interface Held {
  ts: number; // extended timestamp
  seq: number;
  samples: Int16Array;
  arrival: number;
  played: boolean;
}

/** The result of one {@linkcode JitterBuffer.pop}. */
export interface JitterPop {
  /** The PCM to play (always the asked length). */
  samples: Int16Array;
  /** "audio" (some samples came from packets), "gap" (all concealed) or "idle" (nothing yet, or waiting). */
  status: "audio" | "gap" | "idle";
}

/**
 * The jitter buffer. Call {@linkcode JitterBuffer.push} on arrival and
 * {@linkcode JitterBuffer.pop} on every playout tick.
 *
 * @example
 * ```ts
 * import { JitterBuffer } from "./jitter_buffer.ts";
 * import assert from "node:assert/strict";
 * const jb = new JitterBuffer();
 * const frame = (n: number) => ({ timestamp: n * 160, sequenceNumber: n, samples: new Int16Array(160).fill(n + 1) });
 * jb.push(frame(1), 20);   // reordered
 * jb.push(frame(0), 21);
 * assert.equal(jb.pop(160, 22).samples[0], 1);
 * assert.equal(jb.pop(160, 42).samples[0], 2);
 * ```
 */
export class JitterBuffer {
  #frames: Held[] = [];
  #playTs: number | undefined;
  #lastExt: number | undefined;
  #rate: number;
  #maxDelay: number;
  #window: number;
  #windowCount = 0;
  #windowMin = Infinity;
  #consecutiveLate = 0;
  #transit: number | undefined;
  #jitter = 0;
  #latencySum = 0;
  #latencyCount = 0;
  #lastLatency = 0;
  #stats: JitterBufferStats = {
    queued: 0,
    late: 0,
    duplicates: 0,
    concealedSamples: 0,
    underruns: 0,
    droppedSamples: 0,
    stretchedSamples: 0,
    resyncs: 0,
  };
  #target: number;
  /** Playout waits (silence) until the level reaches the target. */
  #filling = true;

  /** An empty buffer. */
  constructor(options: JitterBufferOptions = {}) {
    this.#rate = options.sampleRate ?? 8000;
    this.#maxDelay = Math.round((options.maxDelayMs ?? 300) * this.#rate / 1000);
    this.#window = options.window ?? 50;
    this.#target = 0;
    this.setTargetDelay(options.targetDelayMs ?? 0);
  }

  /** The target (least) delay, ms. */
  get targetDelayMs(): number {
    return this.#target * 1000 / this.#rate;
  }

  /**
   * Sets the target delay (0 up to the maximum delay less one 20 ms frame).
   * Raised, playout holds back until that much audio is buffered; lowered,
   * the surplus is dropped a frame per window. Returns the target in force.
   */
  setTargetDelay(ms: number): number {
    const most = Math.max(0, this.#maxDelay - Math.round(this.#rate / 50));
    const target = Math.min(most, Math.max(0, Math.round((ms || 0) * this.#rate / 1000)));
    if (target > this.#target && this.#playTs !== undefined) this.#filling = true;
    this.#target = target;
    return this.targetDelayMs;
  }

  /** The counters. */
  get stats(): Readonly<JitterBufferStats> {
    return this.#stats;
  }

  /** Audio held ahead of the playout point, in ms. */
  get bufferedMs(): number {
    return this.#level() * 1000 / this.#rate;
  }

  /** Interarrival jitter seen by the buffer, ms. */
  get jitterMs(): number {
    return this.#jitter * 1000 / this.#rate;
  }

  /** Mean time from a packet's arrival to the playout of its first sample, ms. */
  get meanLatencyMs(): number {
    return this.#latencyCount === 0 ? 0 : this.#latencySum / this.#latencyCount;
  }

  /** The latency of the last packet played, ms. */
  get lastLatencyMs(): number {
    return this.#lastLatency;
  }

  /** Forgets everything (new source); the counters stay. */
  reset(): void {
    this.#frames = [];
    this.#playTs = undefined;
    this.#lastExt = undefined;
    this.#transit = undefined;
    this.#windowCount = 0;
    this.#windowMin = Infinity;
    this.#consecutiveLate = 0;
    this.#filling = true;
  }

  /** Takes a packet that arrived at `arrivalMs`. */
  push(frame: JitterFrame, arrivalMs: number): "queued" | "late" | "duplicate" {
    let ts = this.#extend(frame.timestamp);
    const transit = arrivalMs * this.#rate / 1000 - ts;
    if (this.#transit !== undefined) {
      this.#jitter += (Math.abs(transit - this.#transit) - this.#jitter) / 16;
    }
    this.#transit = transit;
    if (this.#playTs !== undefined && ts + frame.samples.length <= this.#playTs) {
      this.#stats.late++;
      this.#consecutiveLate++;
      if (this.#consecutiveLate < 10 && this.#playTs - ts < 8 * this.#maxDelay) return "late";
      // The stream went back in time (restart): start over from this packet.
      this.reset();
      this.#stats.resyncs++;
      ts = this.#extend(frame.timestamp);
    }
    this.#consecutiveLate = 0;
    let i = this.#frames.length;
    while (i > 0 && this.#frames[i - 1].ts > ts) i--;
    if (i > 0 && this.#frames[i - 1].ts === ts) {
      this.#stats.duplicates++;
      return "duplicate";
    }
    this.#frames.splice(i, 0, {
      ts,
      seq: frame.sequenceNumber,
      samples: frame.samples,
      arrival: arrivalMs,
      played: false,
    });
    this.#stats.queued++;
    // Overflow: keep at most the maximum delay.
    if (this.#playTs !== undefined) {
      this.#resyncIfJumped();
      const excess = this.#level() - this.#maxDelay;
      if (excess > 0) this.#advance(excess);
    }
    return "queued";
  }

  /** The next `count` samples of playout, at time `nowMs`. */
  pop(count: number, nowMs: number): JitterPop {
    const out = new Int16Array(count);
    if (this.#frames.length === 0 && this.#playTs === undefined) {
      return { samples: out, status: "idle" };
    }
    if (this.#playTs === undefined) this.#playTs = this.#frames[0].ts;
    this.#resyncIfJumped();
    const level = this.#level();
    if (level <= 0) {
      this.#stats.underruns++;
      this.#windowMin = 0;
      this.#filling = this.#target > 0;
      this.#countWindow(count);
      return { samples: out, status: "idle" };
    }
    if (this.#filling) {
      if (level < this.#target) {
        // Building up to the target: silence, and the playout point waits.
        this.#stats.stretchedSamples += count;
        return { samples: out, status: "idle" };
      }
      this.#filling = false;
    }
    this.#windowMin = Math.min(this.#windowMin, level);
    this.#countWindow(count);

    const start = this.#playTs;
    const end = start + count;
    let covered = 0;
    for (const f of this.#frames) {
      if (f.ts >= end) break;
      const fEnd = f.ts + f.samples.length;
      if (fEnd <= start) continue;
      const from = Math.max(start, f.ts);
      const to = Math.min(end, fEnd);
      out.set(f.samples.subarray(from - f.ts, to - f.ts), from - start);
      covered += to - from;
      if (!f.played) {
        f.played = true;
        const latency = nowMs - f.arrival + (f.ts - start) * 1000 / this.#rate;
        this.#lastLatency = latency;
        this.#latencySum += latency;
        this.#latencyCount++;
      }
    }
    const missing = count - covered;
    if (missing > 0) this.#stats.concealedSamples += Math.min(missing, level);
    this.#playTs = end;
    this.#dropPlayed();
    return { samples: out, status: covered > 0 ? "audio" : "gap" };
  }

  /** A jump ahead past the maximum delay (the sender paused): resynchronize there. */
  #resyncIfJumped(): void {
    if (this.#frames.length === 0 || this.#playTs === undefined) return;
    if (this.#frames[0].ts - this.#playTs <= this.#maxDelay) return;
    this.#playTs = this.#frames[0].ts;
    this.#stats.resyncs++;
    this.#windowMin = Infinity;
    this.#windowCount = 0;
  }

  #countWindow(count: number): void {
    if (++this.#windowCount < this.#window) return;
    const margin = Math.round(2 * this.#jitter);
    const surplus = this.#windowMin - Math.max(count + margin, this.#target);
    if (this.#windowMin !== Infinity && surplus > count / 2) {
      this.#advance(Math.min(count, surplus));
    }
    this.#windowCount = 0;
    this.#windowMin = Infinity;
  }

  #advance(samples: number): void {
    if (this.#playTs === undefined) return;
    this.#playTs += samples;
    this.#stats.droppedSamples += samples;
    this.#dropPlayed();
  }

  #dropPlayed(): void {
    const playTs = this.#playTs!;
    while (this.#frames.length > 0) {
      const f = this.#frames[0];
      if (f.ts + f.samples.length > playTs) break;
      this.#frames.shift();
    }
  }

  #level(): number {
    if (this.#frames.length === 0 || this.#playTs === undefined) return 0;
    const last = this.#frames[this.#frames.length - 1];
    return last.ts + last.samples.length - this.#playTs;
  }

  /** Extends a 32-bit timestamp to a number near the last one (wrap-around). */
  #extend(timestamp: number): number {
    const ts = timestamp >>> 0;
    if (this.#lastExt === undefined) {
      this.#lastExt = ts;
      return ts;
    }
    const delta = (ts - (this.#lastExt >>> 0)) | 0;
    const ext = this.#lastExt + delta;
    if (delta > 0) this.#lastExt = ext;
    return ext;
  }
}
