/**
 * NDJSON events on stdout, logs on stderr, NDJSON commands from stdin.
 *
 * @module
 */

/** Fields of an event besides `type` and `time`; `undefined` fields are left out. */
export type EventFields = Record<string, unknown>;

/** Something events can be written to. */
export interface EventSink {
  /** Writes one event line; resolves once the line has been written out. */
  emit(type: string, fields?: EventFields): Promise<void>;
}

/** Where a writer puts its bytes (Deno.stdout, or a buffer in tests). */
export interface ByteWriter {
  /** Writes some of `p`, returning how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
  /**
   * Writes some of `p` at once, returning how many bytes were written.
   * Optional; when present (Deno.stdout), batches are written with it.
   */
  writeSync?(p: Uint8Array): number;
}

/** Options of {@linkcode NdjsonWriter}. */
export interface NdjsonWriterOptions {
  /** Human-friendly lines instead of JSON (`--pretty`). Default false. */
  pretty?: boolean;
  /**
   * Called once when stdout can no longer be written: without argument when
   * its reader has gone away (EPIPE), with the error for any other failure.
   */
  onClosed?: (error?: unknown) => void;
  /** Source of the `time` field. Default: the system clock (`Date.now()`). */
  now?: () => Date;
}

/**
 * Writes one JSON object per line, `type` and `time` first. Lines emitted
 * in the same turn of the event loop (and while an asynchronous write is
 * under way) are written together (one system call for many events under
 * load, at once when idle); each `emit` resolves once its own line has been
 * written out. A broken pipe (or another write error) stops output quietly
 * and calls `onClosed`; emits never reject.
 *
 * When the output has `writeSync` (Deno.stdout does), a batch is written
 * with it: Deno runs an asynchronous write to stdout on a helper thread,
 * which costs about 40 µs of the main thread per write, against some 5 µs
 * for the system call itself. A reader that does not keep up then holds the
 * process in the write (back-pressure, as for any filter in a pipeline),
 * instead of the lines piling up in memory. An output that refuses to block
 * (`WouldBlock`) is written asynchronously from then on.
 *
 * @example
 * ```ts
 * import { NdjsonWriter } from "./_io.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new NdjsonWriter({ write: (p) => (chunks.push(p), Promise.resolve(p.length)) });
 * await w.emit("registered", { aor: "sip:alice@example.test", expires: 600 });
 * ```
 */
export class NdjsonWriter implements EventSink {
  #out: ByteWriter;
  #pretty: boolean;
  #onClosed?: (error?: unknown) => void;
  #now?: () => Date;
  /** Lines waiting for the next write. */
  #queue: string[] = [];
  /** Resolves when the queued lines have been written. */
  #next?: { promise: Promise<void>; resolve: () => void };
  /** The write under way, if any. */
  #current?: Promise<void>;
  #closed = false;
  /** Write batches with `writeSync` (until the output says it would block). */
  #sync: boolean;
  #enc = new TextEncoder();
  /** The buffer batches are encoded into for `writeSync` (see `#encodeKept`). */
  #kept = new Uint8Array(0);
  /** Batches in a row that needed at most a quarter of `#kept`, and the most one of them needed. */
  #smallRun = 0;
  #smallNeed = 0;
  #timeMs = NaN;
  #time = "";
  /** The last event type written, and its JSON. */
  #typeOf = "";
  #typeJson = '""';

  /** Creates a writer over `out` (default: stdout). */
  constructor(out: ByteWriter = Deno.stdout, options: NdjsonWriterOptions = {}) {
    this.#out = out;
    this.#pretty = options.pretty ?? false;
    this.#onClosed = options.onClosed;
    this.#now = options.now;
    this.#sync = typeof out.writeSync === "function";
  }

  /** True once stdout is gone. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Bytes of the buffer kept for encoding batches (0 before the first
   * `writeSync` batch). For diagnostics and tests.
   */
  get keptBufferSize(): number {
    return this.#kept.length;
  }

  /** Resolves once every line emitted so far has been written (or dropped). */
  flush(): Promise<void> {
    return this.#next?.promise ?? this.#current ?? Promise.resolve();
  }

  /** Writes one event. Resolves after the line is written (or dropped because stdout closed). */
  emit(type: string, fields: EventFields = {}): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const ms = this.#now ? this.#now().getTime() : Date.now();
    // Many events share a millisecond under load: format its time once.
    if (ms !== this.#timeMs) {
      this.#timeMs = ms;
      this.#time = isoTime(ms);
    }
    const time = this.#time;
    let line: string;
    if (this.#pretty || "type" in fields || "time" in fields || "toJSON" in fields) {
      const event = { type, time, ...fields };
      // `type` and `time` belong to the frame: a field of the same name cannot replace them.
      event.type = type;
      event.time = time;
      line = this.#pretty ? prettyLine(event) : JSON.stringify(event);
    } else {
      // The same line without copying the fields into a new object: the
      // frame's two members, then the fields' own members in their order.
      const rest = JSON.stringify(fields);
      if (type !== this.#typeOf) {
        this.#typeOf = type;
        this.#typeJson = JSON.stringify(type);
      }
      line = `{"type":${this.#typeJson},"time":"${time}"${
        rest === "{}" ? "}" : "," + rest.slice(1)
      }`;
    }
    this.#queue.push(line);
    if (!this.#next) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      this.#next = { promise, resolve };
      if (!this.#current) this.#current = this.#pump();
    }
    return this.#next.promise;
  }

  /** Writes batches until the queue is empty. */
  async #pump(): Promise<void> {
    // Lines emitted in the same turn join the first write.
    await Promise.resolve();
    while (this.#next) {
      const { resolve } = this.#next;
      const text = this.#queue.length === 1 ? this.#queue[0] : this.#queue.join("\n");
      this.#queue = [];
      this.#next = undefined;
      let bytes: Uint8Array;
      let off = 0;
      if (this.#sync) {
        // Encoded into a buffer kept from batch to batch (a write that
        // returns has taken the bytes); only a rest left for an
        // asynchronous write gets its own copy.
        bytes = this.#encodeKept(text);
        off = this.#writeSync(bytes);
        if (off < bytes.length) bytes = bytes.slice(off), off = 0;
      } else bytes = this.#enc.encode(text + "\n");
      if (off < bytes.length) await this.#writeAll(bytes, off);
      resolve();
    }
    this.#current = undefined;
  }

  /**
   * `text` and a newline in UTF-8, in the kept buffer. The buffer grows to
   * fit a batch (a power of two, 4 KiB at least) and is reused from batch to
   * batch. So that one large batch (a big `body_base64`) is not kept for
   * good, it shrinks again after {@linkcode KEPT_SHRINK_AFTER} batches in a
   * row that each needed at most a quarter of it, to the size the largest of
   * them needed: one allocation then, none per batch while batches keep a
   * steady size.
   */
  #encodeKept(text: string): Uint8Array {
    const need = text.length * 3 + 1;
    const kept = this.#kept.length;
    if (kept < need) {
      this.#kept = new Uint8Array(keptSize(need));
      this.#smallRun = 0;
    } else if (kept > KEPT_MIN && need <= kept >> 2) {
      if (this.#smallRun === 0 || need > this.#smallNeed) this.#smallNeed = need;
      if (++this.#smallRun >= KEPT_SHRINK_AFTER) {
        this.#kept = new Uint8Array(keptSize(this.#smallNeed));
        this.#smallRun = 0;
      }
    } else this.#smallRun = 0;
    const { written } = this.#enc.encodeInto(text, this.#kept);
    this.#kept[written] = 10;
    return this.#kept.subarray(0, written + 1);
  }

  /** Writes what it can at once; returns how far it got (all, or up to a `WouldBlock`). */
  #writeSync(bytes: Uint8Array): number {
    if (this.#closed) return bytes.length;
    let off = 0;
    try {
      while (off < bytes.length) off += this.#out.writeSync!(bytes.subarray(off));
    } catch (e) {
      if (e instanceof Deno.errors.WouldBlock) {
        // A non-blocking output: the rest, and every later batch, asynchronously.
        this.#sync = false;
        return off;
      }
      this.#fail(e);
      return bytes.length;
    }
    return off;
  }

  async #writeAll(bytes: Uint8Array, from = 0): Promise<void> {
    if (this.#closed) return;
    try {
      let off = from;
      while (off < bytes.length) off += await this.#out.write(bytes.subarray(off));
    } catch (e) {
      this.#fail(e);
    }
  }

  #fail(e: unknown): void {
    // The reader went away (EPIPE), or stdout failed otherwise: either way
    // nothing more can be written, and a rejected chain would turn every
    // later emit into an unhandled rejection.
    this.#closed = true;
    const gone = e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset;
    this.#onClosed?.(gone ? undefined : e);
  }
}

/** The smallest buffer an {@linkcode NdjsonWriter} keeps for encoding batches (bytes). */
const KEPT_MIN = 4096;
/** Batches in a row, each needing at most a quarter of the kept buffer, before it shrinks. */
const KEPT_SHRINK_AFTER = 16;

/** The kept buffer's size for a batch of `need` bytes: a power of two, `KEPT_MIN` at least. */
function keptSize(need: number): number {
  let size = KEPT_MIN;
  while (size < need) size *= 2;
  return size;
}

/**
 * `new Date(ms).toISOString()` (UTC, milliseconds), computed without a Date
 * object: a process's first Date costs about a millisecond (its time zone
 * and formatting set-up), which a one-shot command would pay for its one
 * event. Days become a civil date as in H. Hinnant's `civil_from_days`.
 * Years outside 0..9999 go through Date (its expanded-year form).
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000);
  const z = days + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097; // [0, 146096]
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  ); // [0, 399]
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)); // [0, 365]
  const mp = Math.floor((5 * doy + 2) / 153); // [0, 11], from March
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  if (!(year >= 0 && year <= 9999)) return new Date(ms).toISOString();
  let t = ms - days * 86_400_000; // ms of the day
  const milli = t % 1000;
  t = (t - milli) / 1000;
  const sec = t % 60;
  t = (t - sec) / 60;
  const min = t % 60;
  const hour = (t - min) / 60;
  const two = (n: number) => (n < 10 ? "0" : "") + n;
  return `${String(year).padStart(4, "0")}-${two(month)}-${two(day)}T${two(hour)}:${two(min)}:${
    two(sec)
  }.${String(milli).padStart(3, "0")}Z`;
}

function prettyLine(event: Record<string, unknown>): string {
  const { type, time, ...rest } = event;
  const parts = Object.entries(rest).filter(([, v]) => v !== undefined).map(([k, v]) =>
    `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`
  );
  return `${String(time).slice(11, 23)} ${type} ${parts.join(" ")}`.trimEnd();
}

/** Log levels, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** A logger that writes to stderr. */
export interface Logger {
  /** Logs a message at a level. */
  log(level: LogLevel, message: string): void;
  /** Writes a raw block (for --trace). */
  raw(text: string): void;
}

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level shown. Default "info". */
  level?: LogLevel;
  /** Strings that must never appear in output (passwords); replaced by `***`. */
  secrets?: () => string[];
  /** Where to write. Default stderr. */
  write?: (text: string) => void;
}

/**
 * Creates a stderr logger: `sipkit: warn: message`. Any registered secret is
 * masked before writing.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVELS[options.level ?? "info"];
  const enc = new TextEncoder();
  const write = options.write ?? ((text: string) => {
    const bytes = enc.encode(text);
    let off = 0;
    while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
  });
  const mask = (text: string) => {
    for (const s of options.secrets?.() ?? []) if (s) text = text.split(s).join("***");
    return text;
  };
  return {
    log(level, message) {
      if (LEVELS[level] < min) return;
      write(mask(`sipkit: ${level === "info" ? "" : level + ": "}${message}\n`));
    },
    raw(text) {
      write(mask(text.endsWith("\n") ? text : text + "\n"));
    },
  };
}

/** An event read from stdin: an object with a string `type`. */
export interface InputEvent {
  /** The event type. */
  type: string;
  /** Other fields. */
  [field: string]: unknown;
}

/** Options of {@linkcode readNdjson}. */
export interface ReadNdjsonOptions {
  /** Reports a bad line (the CLI logs it and emits an `error` event). */
  onInvalid: (line: number, message: string) => void | Promise<void>;
  /** Stops reading when aborted. */
  signal?: AbortSignal;
}

/** Options of {@linkcode readLines}. */
export interface ReadLinesOptions {
  /**
   * Stops reading when aborted: the input is cancelled and `readLines` resolves
   * (a read error after the abort is swallowed).
   */
  signal?: AbortSignal;
}

/**
 * Reads a byte stream as UTF-8 text and calls `onLine` for each line, blank
 * ones included, without its "\n" (nor a "\r" before it), and for a last line
 * without "\n" at the end of input. What `onLine` returns is awaited before the
 * next line, so lines are handled strictly in order; a callback that returns
 * nothing is called for all the lines of a chunk at once. Resolves at end of
 * input or when `signal` aborts: no line is handed over once it has (not
 * the rest of a chunk already read, nor a last unfinished line), and nothing
 * is read when it already had. A read error or a throw from `onLine` rejects,
 * unless `signal` has aborted.
 */
export async function readLines(
  input: ReadableStream<Uint8Array>,
  onLine: (line: string) => void | Promise<void>,
  options: ReadLinesOptions = {},
): Promise<void> {
  const { signal } = options;
  if (signal?.aborted) {
    await input.cancel().catch(() => {});
    return;
  }
  const reader = input.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  // The start of a line not yet ended, as the pieces it came in: joined once,
  // when its "\n" comes, so a long line costs no copy per chunk.
  let head: string[] = [];
  const deliver = (line: string) => onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
  try {
    for (;;) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      // One scan of the chunk: a slice per line, none of the rest of the chunk.
      let start = 0;
      let nl: number;
      while ((nl = chunk.indexOf("\n", start)) >= 0) {
        if (signal?.aborted) return;
        let line = chunk.slice(start, nl);
        if (head.length > 0) {
          head.push(line);
          line = head.join("");
          head = [];
        }
        start = nl + 1;
        const handled = deliver(line);
        if (handled !== undefined) await handled;
      }
      if (start < chunk.length) head.push(start === 0 ? chunk : chunk.slice(start));
    }
    if (head.length > 0 && !signal?.aborted) await deliver(head.join(""));
  } catch (e) {
    if (!signal?.aborted) throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/**
 * Reads NDJSON lines from a byte stream and calls `handler` for each object
 * with a string `type`, in order; bad lines are reported and skipped. Resolves
 * at end of input.
 */
export function readNdjson(
  input: ReadableStream<Uint8Array>,
  handler: (event: InputEvent, line: number) => void | Promise<void>,
  options: ReadNdjsonOptions,
): Promise<void> {
  let lineNo = 0;
  return readLines(input, async (line) => {
    lineNo++;
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      await options.onInvalid(lineNo, `not JSON: ${(e as Error).message}`);
      return;
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      await options.onInvalid(lineNo, "not a JSON object");
      return;
    }
    if (typeof (value as { type?: unknown }).type !== "string") {
      await options.onInvalid(lineNo, 'missing string field "type"');
      return;
    }
    await handler(value as InputEvent, lineNo);
  }, { signal: options.signal });
}
