/**
 * Audio through sox child processes (`Deno.Command`, needs `--allow-run`):
 * capture from and play to an ALSA device by name, read any file sox reads
 * (WAV, FLAC, MP3, raw...), write any file sox writes. sox converts to and
 * from 8 kHz mono 16-bit PCM, the media session's format.
 *
 * Pacing: the media session's clock paces the stream, never sox. A file
 * source reads ahead only up to a high-water mark and then stops reading (the
 * pipe pushes back on sox), so a file is not raced through. A capture first
 * watches how fast the device delivers: one that delivers faster than real
 * time (ALSA `null` and `file` PCMs) is then read like a file; a real sound
 * card is read continuously, and when more than `maxLatencyMs` stayed
 * buffered for a whole second (audio captured before the call was answered,
 * or a card clock running a little fast) the surplus is dropped, so delay
 * does not build up. A playback sink queues at most `maxLatencyMs` and drops
 * the oldest beyond.
 *
 * ALSA devices are opened at 8000 Hz, mono, S16_LE. A private ALSA
 * configuration (`ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:my.conf`) can be
 * passed in `env`.
 *
 * @module
 */

import type { AudioSink, AudioSource } from "./audio.ts";

/** Options common to sox sources and sinks. */
export interface SoxOptions {
  /** The sox binary (default `sox` from PATH). */
  sox?: string;
  /** Extra environment for the child (e.g. `ALSA_CONFIG_PATH`). */
  env?: Record<string, string>;
  /** Most audio held between sox and the session for live devices, ms (default 100). */
  maxLatencyMs?: number;
}

/** How a sox child ended. */
export interface SoxExit {
  /** Exit code (null when killed by a signal). */
  code: number | null;
  /** The end of what sox wrote on stderr. */
  stderr: string;
}

const PCM = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"];
const RAW_PCM = ["-t", "raw", ...PCM, "-L"];

/** The error when sox cannot be started. */
export class SoxError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "SoxError";
  }
}

function spawn(
  args: string[],
  options: SoxOptions,
  io: { stdin: "piped" | "null"; stdout: "piped" | "null" },
): Deno.ChildProcess {
  const binary = options.sox ?? "sox";
  try {
    return new Deno.Command(binary, {
      args,
      stdin: io.stdin,
      stdout: io.stdout,
      stderr: "piped",
      env: options.env,
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SoxError(`Cannot start ${binary}: sox is not installed (Debian package sox)`);
    }
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw new SoxError(`Cannot start ${binary}: audio needs --allow-run`);
    }
    throw error;
  }
}

/** Collects the last 4 kB of a child's stderr. */
async function tail(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of stream) {
      text = (text + decoder.decode(chunk, { stream: true })).slice(-4096);
    }
  } catch {
    // closed
  }
  return text.trim();
}

/**
 * An audio source read from a sox child's standard output.
 *
 * @example
 * ```ts ignore
 * import { SoxSource } from "./audio_sox.ts";
 * const mic = SoxSource.capture("default");      // ALSA device by name
 * const prompt = SoxSource.file("prompt.wav");   // any file sox reads
 * ```
 */
export class SoxSource implements AudioSource {
  #child: Deno.ChildProcess;
  #chunks: Int16Array[] = [];
  #buffered = 0;
  #offset = 0; // samples already taken from #chunks[0]
  #highWater: number;
  #live: boolean;
  #mode: "probe" | "paced" | "unpaced";
  #started = performance.now();
  #received = 0;
  #bound: number;
  #minLevel = Infinity;
  #reads = 0;
  #dropped = 0;
  #eof = false;
  #closed = false;
  #wake: (() => void) | undefined;
  #carry: number | undefined; // odd byte between chunks
  /** Resolves when sox exits. */
  readonly exited: Promise<SoxExit>;

  /**
   * Starts sox with `input` arguments (what comes before the output spec) and
   * `effects` (after it).
   */
  constructor(
    input: string[],
    options: SoxOptions & { live?: boolean; buffer?: number; effects?: string[] } = {},
  ) {
    this.#live = options.live ?? false;
    this.#mode = this.#live ? "probe" : "unpaced";
    this.#bound = Math.round((options.maxLatencyMs ?? 100) * 8);
    // Read ahead one second (files, unpaced devices); paced devices: at most 2 s kept.
    this.#highWater = 8000;
    const global = ["-q", "--buffer", String(options.buffer ?? (this.#live ? 320 : 8192))];
    this.#child = spawn(
      [...global, ...input, ...RAW_PCM, "-", ...(options.effects ?? [])],
      options,
      {
        stdin: "null",
        stdout: "piped",
      },
    );
    const stderr = tail(this.#child.stderr);
    const pumped = this.#pump(this.#child.stdout);
    this.exited = Promise.all([this.#child.status, stderr, pumped]).then(([status, text]) => ({
      code: status.signal ? null : status.code,
      stderr: text,
    }));
  }

  /** Captures from the ALSA device `device` (e.g. `default`, `hw:1,0`, `plughw:0`). */
  static capture(device: string, options: SoxOptions = {}): SoxSource {
    return new SoxSource([...PCM, "-t", "alsa", device], { ...options, live: true, buffer: 320 });
  }

  /** Reads `path`, any format sox knows (converted to 8 kHz mono). */
  static file(path: string, options: SoxOptions & { loop?: boolean } = {}): SoxSource {
    // `repeat -` repeats forever (sox 14.4 effect syntax).
    return new SoxSource([path], { ...options, effects: options.loop ? ["repeat", "-"] : [] });
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.getReader();
    try {
      while (!this.#closed) {
        while (this.#mode === "unpaced" && this.#buffered >= this.#highWater && !this.#closed) {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
        if (this.#closed) break;
        const { value, done } = await reader.read();
        if (done) break;
        this.#append(value);
        this.#received += value.length / 2;
        if (this.#mode === "probe") {
          const elapsed = (performance.now() - this.#started) / 1000;
          if (this.#received > 1.5 * 8000 * elapsed + 4096) this.#mode = "unpaced";
          else if (elapsed > 2) this.#mode = "paced";
        }
        if (this.#mode !== "unpaced" && this.#buffered > 16000) {
          this.#skip(this.#buffered - 16000); // nobody reads: keep the last 2 s
        }
      }
    } catch {
      // the child went away
    } finally {
      this.#eof = true;
      reader.releaseLock();
      if (this.#closed) await stream.cancel().catch(() => {});
    }
  }

  #append(bytes: Uint8Array): void {
    let data = bytes;
    if (this.#carry !== undefined) {
      const joined = new Uint8Array(bytes.length + 1);
      joined[0] = this.#carry;
      joined.set(bytes, 1);
      data = joined;
      this.#carry = undefined;
    }
    if (data.length % 2 === 1) {
      this.#carry = data[data.length - 1];
      data = data.subarray(0, data.length - 1);
    }
    if (data.length === 0) return;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const samples = new Int16Array(data.length / 2);
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
    this.#chunks.push(samples);
    this.#buffered += samples.length;
  }

  /** Samples buffered and not yet read. */
  get buffered(): number {
    return this.#buffered;
  }

  /** True once sox ended and every sample was read. */
  get ended(): boolean {
    return this.#eof && this.#buffered === 0;
  }

  /** Samples a live capture dropped to keep its latency bound. */
  get droppedSamples(): number {
    return this.#dropped;
  }

  /**
   * The next `count` samples; silence while sox has not delivered enough,
   * null once sox ended and everything was read.
   */
  read(count: number): Int16Array | null {
    if (this.#mode !== "unpaced") {
      // A paced device: drop what stayed over the latency bound for a whole second.
      this.#minLevel = Math.min(this.#minLevel, this.#buffered);
      if (++this.#reads >= 50) {
        if (this.#minLevel > this.#bound + count) {
          const surplus = this.#minLevel - Math.round(this.#bound / 2);
          this.#skip(surplus);
          this.#dropped += surplus;
        }
        this.#reads = 0;
        this.#minLevel = Infinity;
      }
    }
    if (this.#buffered < count) {
      if (this.#eof && this.#buffered === 0) return null;
      if (!this.#eof) {
        this.#wake?.();
        return new Int16Array(count);
      }
    }
    const out = new Int16Array(count);
    let filled = 0;
    while (filled < count && this.#chunks.length > 0) {
      const head = this.#chunks[0];
      const take = Math.min(count - filled, head.length - this.#offset);
      out.set(head.subarray(this.#offset, this.#offset + take), filled);
      filled += take;
      this.#offset += take;
      if (this.#offset >= head.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
    this.#buffered -= filled;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    return out;
  }

  #skip(samples: number): void {
    let left = samples;
    while (left > 0 && this.#chunks.length > 0) {
      const head = this.#chunks[0];
      const take = Math.min(left, head.length - this.#offset);
      left -= take;
      this.#offset += take;
      this.#buffered -= take;
      if (this.#offset >= head.length) {
        this.#chunks.shift();
        this.#offset = 0;
      }
    }
  }

  /** Ends sox and waits for it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await this.exited.catch(() => {});
  }
}

/**
 * An audio sink written to a sox child's standard input.
 *
 * @example
 * ```ts ignore
 * import { SoxSink } from "./audio_sox.ts";
 * const speaker = SoxSink.playback("default");   // ALSA device by name
 * const record = SoxSink.file("reply.wav");      // any format sox writes
 * ```
 */
export class SoxSink implements AudioSink {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #maxBytes: number;
  #live: boolean;
  #writing: Promise<void> | undefined;
  #closed = false;
  #failed = false;
  #dropped = 0;
  /** Resolves when sox exits. */
  readonly exited: Promise<SoxExit>;

  /** Starts sox with `output` arguments (what comes after the raw input spec). */
  constructor(output: string[], options: SoxOptions & { live?: boolean; buffer?: number } = {}) {
    this.#live = options.live ?? false;
    this.#maxBytes = Math.round((options.maxLatencyMs ?? 100) * 16) + 640;
    const global = ["-q", "--buffer", String(options.buffer ?? (this.#live ? 320 : 8192))];
    this.#child = spawn([...global, ...RAW_PCM, "-", ...output], options, {
      stdin: "piped",
      stdout: "null",
    });
    this.#writer = this.#child.stdin.getWriter();
    const stderr = tail(this.#child.stderr);
    this.exited = Promise.all([this.#child.status, stderr]).then(([status, text]) => {
      this.#failed = true;
      return { code: status.signal ? null : status.code, stderr: text };
    });
  }

  /** Plays to the ALSA device `device`. */
  static playback(device: string, options: SoxOptions = {}): SoxSink {
    return new SoxSink([...PCM, "-t", "alsa", device], { ...options, live: true, buffer: 320 });
  }

  /** Writes `path`; the format comes from its extension (`.wav`: 16-bit PCM). */
  static file(path: string, options: SoxOptions = {}): SoxSink {
    return new SoxSink([path], options);
  }

  /** Samples dropped because the device could not keep up. */
  get droppedSamples(): number {
    return this.#dropped / 2;
  }

  /** Queues `samples` for sox. */
  write(samples: Int16Array): void {
    if (this.#closed || this.#failed) return;
    const bytes = new Uint8Array(samples.length * 2);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < samples.length; i++) view.setInt16(i * 2, samples[i], true);
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    while (this.#live && this.#queuedBytes > this.#maxBytes && this.#queue.length > 1) {
      const old = this.#queue.shift()!;
      this.#queuedBytes -= old.length;
      this.#dropped += old.length;
    }
    this.#writing ??= this.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        const chunk = this.#queue.shift()!;
        this.#queuedBytes -= chunk.length;
        await this.#writer.write(chunk);
      }
    } catch {
      this.#failed = true;
    } finally {
      this.#writing = undefined;
    }
  }

  /** Flushes what is queued, closes sox's input and waits for sox to finish the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#writing) await this.#writing;
    if (this.#queue.length > 0) await this.#drain();
    await this.#writer.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGTERM");
      } catch {
        // gone
      }
    }, 5000);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
