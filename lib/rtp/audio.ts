/**
 * Audio sources and sinks: what a media session sends and where it puts what
 * it receives. All audio is 8 kHz mono 16-bit linear PCM, pulled and pushed
 * in frames (160 samples for 20 ms). Sources never block: a source that has
 * nothing ready yet gives silence, so the sender's clock, not the source,
 * paces the stream. The sox-backed ones are in `audio_sox.ts`.
 *
 * @module
 */

import { generateTone } from "./tone.ts";
import { wavHeader } from "./wav.ts";

/** Something a sender pulls PCM frames from. */
export interface AudioSource {
  /**
   * The next `samples` samples (8 kHz mono). Returns silence when nothing is
   * ready (live capture not caught up), and `null` once the source ended.
   */
  read(samples: number): Int16Array | null;
  /** Releases what the source holds (child processes, files). */
  close?(): Promise<void>;
}

/** Something a receiver pushes decoded PCM frames to. */
export interface AudioSink {
  /** Takes the next frame of samples (8 kHz mono). Must not block. */
  write(samples: Int16Array): void;
  /** Flushes and releases (child processes, files). */
  close?(): Promise<void>;
}

/**
 * Silence, forever.
 *
 * @example
 * ```ts
 * import { SilenceSource } from "./audio.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...new SilenceSource().read(3)!], [0, 0, 0]);
 * ```
 */
export class SilenceSource implements AudioSource {
  /** A frame of zeros. */
  read(samples: number): Int16Array {
    return new Int16Array(samples);
  }
}

/** Options of {@linkcode ToneSource}. */
export interface ToneSourceOptions {
  /** Peak amplitude, fraction of full scale (default 0.5). */
  amplitude?: number;
  /** Stop after this many samples (default: never). */
  maxSamples?: number;
}

/**
 * A continuous sine tone (no phase jump between frames).
 *
 * @example
 * ```ts
 * import { ToneSource } from "./audio.ts";
 * import { dominantFrequency } from "./tone.ts";
 * import assert from "node:assert/strict";
 * const src = new ToneSource(600);
 * const frames = [src.read(160)!, src.read(160)!];
 * const all = new Int16Array(320);
 * all.set(frames[0]);
 * all.set(frames[1], 160);
 * assert.ok(Math.abs(dominantFrequency(all) - 600) <= 15);
 * ```
 */
export class ToneSource implements AudioSource {
  #position = 0;
  readonly #frequency: number;
  readonly #options: ToneSourceOptions;

  /** A tone of `frequency` Hz. */
  constructor(frequency: number, options: ToneSourceOptions = {}) {
    this.#frequency = frequency;
    this.#options = options;
  }

  /** The next samples of the tone, or null after `maxSamples`. */
  read(samples: number): Int16Array | null {
    const max = this.#options.maxSamples;
    if (max !== undefined && this.#position >= max) return null;
    const out = generateTone(this.#frequency, samples, {
      amplitude: this.#options.amplitude,
      offset: this.#position,
    });
    this.#position += samples;
    return out;
  }
}

/**
 * Plays PCM samples held in memory (e.g. a decoded WAV file), once or looped.
 *
 * @example
 * ```ts
 * import { BufferSource } from "./audio.ts";
 * import assert from "node:assert/strict";
 * const src = new BufferSource(new Int16Array([1, 2, 3]));
 * assert.deepEqual([...src.read(2)!], [1, 2]);
 * assert.deepEqual([...src.read(2)!], [3, 0]);
 * assert.equal(src.read(2), null);
 * ```
 */
export class BufferSource implements AudioSource {
  #position = 0;

  /** Plays `samples`; with `loop`, starts again at the end. */
  constructor(readonly samples: Int16Array, readonly loop = false) {}

  /** The next samples, zero-padded at the end; null once played (unless looped). */
  read(count: number): Int16Array | null {
    if (this.samples.length === 0) return null;
    if (this.#position >= this.samples.length) {
      if (!this.loop) return null;
      this.#position = 0;
    }
    const out = new Int16Array(count);
    let filled = 0;
    while (filled < count) {
      const chunk = this.samples.subarray(this.#position, this.#position + count - filled);
      out.set(chunk, filled);
      filled += chunk.length;
      this.#position += chunk.length;
      if (this.#position >= this.samples.length) {
        if (!this.loop) break;
        this.#position = 0;
      }
    }
    return out;
  }
}

/**
 * Keeps everything written, for tests and analysis.
 *
 * @example
 * ```ts
 * import { BufferSink } from "./audio.ts";
 * import assert from "node:assert/strict";
 * const sink = new BufferSink();
 * sink.write(new Int16Array([1, 2]));
 * sink.write(new Int16Array([3]));
 * assert.deepEqual([...sink.samples()], [1, 2, 3]);
 * ```
 */
export class BufferSink implements AudioSink {
  #chunks: Int16Array[] = [];
  #length = 0;

  /** Appends a copy of `samples`. */
  write(samples: Int16Array): void {
    this.#chunks.push(samples.slice());
    this.#length += samples.length;
  }

  /** How many samples were written. */
  get length(): number {
    return this.#length;
  }

  /** Everything written so far, or the last `last` samples. */
  samples(last?: number): Int16Array {
    const all = new Int16Array(this.#length);
    let offset = 0;
    for (const chunk of this.#chunks) {
      all.set(chunk, offset);
      offset += chunk.length;
    }
    return last === undefined ? all : all.subarray(Math.max(0, all.length - last));
  }
}

/** Throws away what it gets. */
export class NullSink implements AudioSink {
  /** Ignores `samples`. */
  write(_samples: Int16Array): void {}
}

/**
 * Writes a 16-bit 8 kHz mono WAV file as frames arrive; the header's sizes
 * are fixed at {@linkcode WavFileSink.close}. Needs `--allow-write`.
 */
export class WavFileSink implements AudioSink {
  #file: Deno.FsFile;
  #bytes = 0;
  #closed = false;
  #pending: Promise<unknown> = Promise.resolve();

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Creates (or truncates) `path` and writes a provisional header. */
  static async create(path: string, sampleRate = 8000): Promise<WavFileSink> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    await file.write(wavHeader(0, sampleRate));
    const sink = new WavFileSink(file);
    sink.#sampleRate = sampleRate;
    return sink;
  }

  #sampleRate = 8000;

  /** Appends `samples` (queued; writes stay in order). */
  write(samples: Int16Array): void {
    if (this.#closed) return;
    const bytes = new Uint8Array(samples.length * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i], true);
    this.#bytes += bytes.length;
    this.#pending = this.#pending.then(() => writeAll(this.#file, bytes));
  }

  /** Writes the final header and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pending;
    await this.#file.seek(0, Deno.SeekMode.Start);
    await writeAll(this.#file, wavHeader(this.#bytes, this.#sampleRate));
    this.#file.close();
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}
