/**
 * Runs `sipkit` commands as real processes for integration tests
 * (`deno run -A cli/main.ts ...`, or the bundle: {@linkcode SIPKIT_MAIN}), collects their NDJSON events, lets a test
 * write NDJSON lines to their stdin, and waits for events.
 *
 * @module
 */

import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";

/**
 * The entry that runs sipkit in these tests: `cli/main.ts`, or the file that
 * `SIPKIT_MAIN` names (the bundle's `main.js`: tests/bundle_test.ts runs the
 * command tests against it).
 */
export const SIPKIT_MAIN = Deno.env.get("SIPKIT_MAIN") ||
  new URL("../cli/main.ts", import.meta.url).pathname;
const MAIN = SIPKIT_MAIN;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** One event a sipkit process wrote on stdout. */
export interface SipkitEvent {
  /** The event type. */
  type: string;
  /** ISO time. */
  time: string;
  /** Other fields. */
  [field: string]: unknown;
}

/**
 * How long {@linkcode SipkitProcess.waitExit} waits by default: generous
 * (a loaded CI machine can be slow), yet finite.
 */
export const EXIT_TIMEOUT_MS = 60_000;

/** Options of {@linkcode spawnSipkit}. */
export interface SpawnSipkitOptions {
  /** Label for log dumps (default: the command name). */
  name?: string;
  /** Extra environment variables (SIPKIT_CONFIG_DIR and SIPKIT_STATE_DIR should be private). */
  env?: Record<string, string>;
  /** Keep stdin open for {@linkcode SipkitProcess.send} (default true). */
  stdin?: boolean;
  /** Run inside this network namespace (`ip netns exec <netns>`; see tests/peers/netns.ts). */
  netns?: string;
  /** Run this script (a test helper printing NDJSON events) instead of `cli/main.ts`. */
  script?: string;
}

/** Options of {@linkcode SipkitProcess.waitEvent}. */
export interface WaitEventOptions {
  /** Milliseconds (default 10000). */
  timeout?: number;
  /** What is awaited, for the error message. */
  message?: string;
}

/** A running sipkit command. */
export interface SipkitProcess {
  /** Label. */
  readonly name: string;
  /** Process id (of the Deno process running sipkit). */
  readonly pid: number;
  /** Every event received so far, in order. */
  readonly events: SipkitEvent[];
  /**
   * Resolves with the exit code once the process exited and its output is
   * drained. Tests should await {@linkcode SipkitProcess.waitExit} instead,
   * which cannot hang.
   */
  readonly exited: Promise<number>;
  /**
   * Resolves with the exit code like `exited`, but when the process is still
   * running after `timeoutMs` (default {@linkcode EXIT_TIMEOUT_MS}), kills it
   * (SIGKILL) and rejects with the tail of its stderr and events: a hanging
   * process fails the test instead of stalling the run.
   */
  waitExit(timeoutMs?: number): Promise<number>;
  /** Lines on stdout that were not JSON objects (must stay empty: stdout is NDJSON only). */
  readonly badLines: string[];
  /** stderr so far, then the events, for failure dumps. */
  logs(): string;
  /** Calls `listener` with every later event; returns a function that removes it. */
  onEvent(listener: (e: SipkitEvent) => void): () => void;
  /** Writes one NDJSON line (an object) to stdin. */
  send(event: Record<string, unknown>): Promise<void>;
  /** Closes stdin (end of input). */
  closeStdin(): Promise<void>;
  /** Waits for an event (already received or future) matching `predicate`, returns it. */
  waitEvent(
    predicate: (e: SipkitEvent) => boolean,
    options?: WaitEventOptions,
  ): Promise<SipkitEvent>;
  /** Sends SIGTERM (SIGKILL after `graceMs`, default 5000) and resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

/**
 * Spawns `sipkit <args>`.
 *
 * @example
 * ```ts ignore
 * const p = spawnSipkit(["watch", "--once", "sip:bob@127.0.0.1:5070"]);
 * const e = await p.waitEvent((e) => e.type === "presence");
 * assert.equal(await p.waitExit(), 0);
 * ```
 */
export function spawnSipkit(args: string[], options: SpawnSipkitOptions = {}): SipkitProcess {
  const name = options.name ?? `sipkit ${args[0] ?? ""}`;
  const argv = options.script
    ? [Deno.execPath(), "run", "-A", "--config", CONFIG, options.script, ...args]
    : sipkitArgv(args);
  // `ip netns exec` execs the command: the pid (and signals) stay the same.
  if (options.netns) argv.unshift("ip", "netns", "exec", options.netns);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin === false ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const events: SipkitEvent[] = [];
  const badLines: string[] = [];
  let stderr = "";
  const waiters: Array<
    { predicate: (e: SipkitEvent) => boolean; resolve: (e: SipkitEvent) => void }
  > = [];
  const listeners = new Set<(e: SipkitEvent) => void>();
  const onEvent = (e: SipkitEvent) => {
    events.push(e);
    for (const l of listeners) l(e);
    for (const w of [...waiters]) {
      if (w.predicate(e)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  };
  const readStdout = (async () => {
    let buf = "";
    const dec = new TextDecoder();
    const handle = (line: string) => {
      if (line.trim() === "") return;
      try {
        const v = JSON.parse(line);
        if (typeof v === "object" && v !== null && typeof v.type === "string") onEvent(v);
        else badLines.push(line);
      } catch {
        badLines.push(line);
      }
    };
    for await (const chunk of child.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        handle(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    handle(buf + dec.decode());
  })();
  const readStderr = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) stderr += dec.decode(chunk, { stream: true });
  })();
  const writer = options.stdin === false ? undefined : child.stdin.getWriter();
  let stdinClosed = false;
  const closeStdin = async () => {
    if (!writer || stdinClosed) return;
    stdinClosed = true;
    await writer.close().catch(() => {});
  };
  let done = false;
  const exited = (async () => {
    const status = await child.status;
    await Promise.all([readStdout, readStderr]);
    await closeStdin();
    done = true;
    return status.code;
  })();
  const tail = () =>
    `${stderr}\n-- events --\n${events.map((e) => JSON.stringify(e)).join("\n")}`.slice(-8000);
  const waitExit = async (timeoutMs = EXIT_TIMEOUT_MS): Promise<number> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => {
      timer = setTimeout(() => resolve("late"), timeoutMs);
    });
    try {
      const first = await Promise.race([exited, late]);
      if (first !== "late") return first;
    } finally {
      clearTimeout(timer);
    }
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    await exited;
    throw new Error(
      `${name}: still running after ${timeoutMs} ms; killed\n----- ${name} -----\n${tail()}`,
    );
  };
  const enc = new TextEncoder();
  let stopping: Promise<number> | undefined;
  return {
    name,
    pid: child.pid,
    events,
    badLines,
    exited,
    waitExit,
    logs: () =>
      `${stderr}\n-- events --\n${events.map((e) => JSON.stringify(e)).join("\n")}` +
      (badLines.length ? `\n-- non-JSON stdout --\n${badLines.join("\n")}` : ""),
    async send(event) {
      if (!writer || stdinClosed) throw new Error(`${name}: stdin is closed`);
      await writer.write(enc.encode(JSON.stringify(event) + "\n"));
    },
    closeStdin,
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    waitEvent(predicate, opts = {}) {
      const found = events.find(predicate);
      if (found) return Promise.resolve(found);
      const timeout = opts.timeout ?? 10_000;
      return new Promise<SipkitEvent>((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (e: SipkitEvent) => {
            clearTimeout(timer);
            resolve(e);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(
            new Error(
              `${name}: timed out after ${timeout} ms waiting for ${opts.message ?? "an event"}` +
                `\n----- ${name} -----\n${
                  `${stderr}\n${events.map((e) => JSON.stringify(e)).join("\n")}`.slice(-8000)
                }`,
            ),
          );
        }, timeout);
        waiters.push(waiter);
      });
    },
    stop(graceMs = 5000) {
      stopping ??= (async () => {
        if (done) return await exited;
        try {
          child.kill("SIGTERM");
        } catch {
          // gone
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch {
              // gone
            }
            resolve();
          }, graceMs);
        });
        try {
          await Promise.race([exited, killed]);
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      })();
      return stopping;
    },
  };
}

/** The command line that runs `sipkit <args>` (`deno run -A --config ... <SIPKIT_MAIN> <args>`). */
export function sipkitArgv(args: string[] = []): string[] {
  return [Deno.execPath(), "run", "-A", "--config", CONFIG, MAIN, ...args];
}

/** `words` quoted for `sh -c`. */
export function shellWords(words: string[]): string {
  return words.map((w) => `'${w.replaceAll("'", `'\\''`)}'`).join(" ");
}

/** The shell words that run sipkit (`deno run -A --config ... cli/main.ts`), for `sh -c` pipelines. */
export function sipkitShellCommand(): string {
  return shellWords(sipkitArgv());
}

/** The NDJSON events among mixed output lines (stderr lines are skipped). */
export function eventsIn(output: string): SipkitEvent[] {
  const out: SipkitEvent[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const v = JSON.parse(line);
      if (typeof v?.type === "string") out.push(v);
    } catch {
      // a partial line
    }
  }
  return out;
}

/** A private config and state directory for one test; `cleanup()` removes it. */
export async function tempSipkitDirs(): Promise<{
  env: Record<string, string>;
  configDir: string;
  stateDir: string;
  cleanup(): Promise<void>;
}> {
  const root = await Deno.makeTempDir({ prefix: "sipkit-test-" });
  const configDir = `${root}/config`;
  const stateDir = `${root}/state`;
  return {
    env: { SIPKIT_CONFIG_DIR: configDir, SIPKIT_STATE_DIR: stateDir },
    configDir,
    stateDir,
    cleanup: () => Deno.remove(root, { recursive: true }).catch(() => {}),
  };
}

/** A test's private sipkit directories, as {@linkcode tempSipkitDirs} makes them. */
export type SipkitDirs = Awaited<ReturnType<typeof tempSipkitDirs>>;

/** Runs `fn` with fresh {@linkcode SipkitDirs}, removed afterwards whatever happens. */
export async function withSipkitDirs(fn: (dirs: SipkitDirs) => Promise<void>): Promise<void> {
  const dirs = await tempSipkitDirs();
  try {
    await fn(dirs);
  } finally {
    await dirs.cleanup();
  }
}

/** A process or peer that a test starts: it has logs and is stopped. */
export type Started = HasLogs & { stop(): Promise<unknown> };

/** A test's private sipkit directories, and what it started: see {@linkcode withSipkitBed}. */
export interface SipkitBed {
  /** Environment for the sipkit processes (private config and state directories). */
  env: Record<string, string>;
  /** The state directory in `env`. */
  stateDir: string;
  /** Prints the logs of `p` if the test fails, stops `p` at the end whatever happens; gives `p`. */
  keep<T extends Started>(p: T): T;
}

/**
 * Runs `fn` with fresh sipkit directories; what it hands to `keep` has its logs printed if `fn`
 * fails and is stopped afterwards in any case (also what has already stopped: stopping twice is
 * harmless); the directories are removed at the end.
 */
export async function withSipkitBed(fn: (bed: SipkitBed) => Promise<void>): Promise<void> {
  await withSipkitDirs(async (dirs) => {
    const kept: Started[] = [];
    const keep = <T extends Started>(p: T): T => (kept.push(p), p);
    try {
      await withLogsOnFailure(kept, () => fn({ env: dirs.env, stateDir: dirs.stateDir, keep }));
    } finally {
      await Promise.allSettled(kept.map((p) => p.stop()));
    }
  });
}
