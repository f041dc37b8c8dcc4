/**
 * Starting and stopping peer processes (kamailio, baresip, sipp) for tests:
 * stdin closed, stdout and stderr captured into one bounded buffer that tests
 * print when they fail, and a stop() that always reaps the process.
 *
 * @module
 */

import { assertPeer, findBinary } from "./require.ts";

/** Options of {@linkcode spawnPeer}. */
export interface SpawnPeerOptions {
  /** Label used in log dumps (default: the binary name). */
  name?: string;
  /** Debian package providing the binary, for the missing-peer error. */
  debianPackage?: string;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Keep at most this many characters of output (default 2,000,000; oldest dropped). */
  maxLogChars?: number;
  /** Called with each chunk of output as it arrives. */
  onOutput?: (text: string) => void;
  /**
   * `null` (default) closes stdin; `piped` keeps an open pipe that is never
   * written to (for programs that read a terminal and would spin on EOF).
   */
  stdin?: "null" | "piped";
}

/** A running peer process. */
export interface PeerProcess {
  /** Label of the process. */
  readonly name: string;
  /** Process id. */
  readonly pid: number;
  /** Resolves when the process has exited (and its output is drained). */
  readonly exited: Promise<Deno.CommandStatus>;
  /** True once the process has exited. */
  readonly hasExited: boolean;
  /** stdout and stderr so far, interleaved in arrival order. */
  logs(): string;
  /**
   * Sends `signal` (default SIGTERM), waits up to `graceMs` (default 3000)
   * and then SIGKILLs; resolves once the process is reaped. Safe to call
   * more than once and after the process exited by itself.
   */
  stop(signal?: Deno.Signal, graceMs?: number): Promise<Deno.CommandStatus>;
}

/**
 * Spawns `binary` with `args`, stdin closed, output captured.
 * Throws {@linkcode MissingPeerError} (from require.ts) when the binary is not installed.
 */
export function spawnPeer(
  binary: string,
  args: string[],
  options: SpawnPeerOptions = {},
): PeerProcess {
  const path = assertPeer(binary, options.debianPackage ?? binary);
  const name = options.name ?? binary;
  const maxChars = options.maxLogChars ?? 2_000_000;
  // setsid (util-linux) gives the peer its own process group, so stop() can
  // kill every process it forked, even those left behind by a main process
  // that died (Kamailio children can hang in shutdown on a lock). setsid
  // execs directly here (a child of Deno is not a group leader): same pid.
  const setsid = findBinary("setsid");
  const child = new Deno.Command(setsid ?? path, {
    args: setsid ? [path, ...args] : args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const ownGroup = setsid !== undefined;
  // Watchdog: a shell that waits for EOF on a pipe from this Deno process and
  // then kills the peer's group. stop() closes the pipe after the peer is
  // gone; if Deno itself is killed, the kernel closes it and the peer dies
  // with it instead of living on as an orphan.
  const watchdog = ownGroup
    ? new Deno.Command("sh", {
      args: ["-c", `read _ ; kill -KILL -${child.pid} 2>/dev/null; exit 0`],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn()
    : undefined;
  const watchdogWriter = watchdog?.stdin.getWriter();
  let buffer = "";
  let dropped = false;
  const append = (text: string) => {
    buffer += text;
    if (buffer.length > maxChars) {
      buffer = buffer.slice(buffer.length - maxChars);
      dropped = true;
    }
    options.onOutput?.(text);
  };
  const readers = [child.stdout.getReader(), child.stderr.getReader()];
  const drain = async (reader: ReadableStreamDefaultReader<Uint8Array>) => {
    const decoder = new TextDecoder();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        append(decoder.decode(value, { stream: true }));
      }
    } catch {
      // cancelled
    }
    append(decoder.decode());
  };
  const drained = Promise.all(readers.map(drain));
  const stdinWriter = options.stdin === "piped" ? child.stdin.getWriter() : undefined;
  const killGroup = () => {
    if (!ownGroup) return;
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // group already empty
    }
  };
  let exitedFlag = false;
  const exited = (async () => {
    const status = await child.status;
    // Output pipes stay open while a leftover child holds them: kill the
    // group, and stop reading after a while in any case.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        killGroup();
        for (const reader of readers) reader.cancel().catch(() => {});
        resolve();
      }, 2000);
    });
    await Promise.race([drained, late]);
    clearTimeout(timer);
    await drained;
    await stdinWriter?.close().catch(() => {});
    await watchdogWriter?.close().catch(() => {});
    await watchdog?.status;
    exitedFlag = true;
    return status;
  })();
  let stopping: Promise<Deno.CommandStatus> | undefined;
  return {
    name,
    pid: child.pid,
    exited,
    get hasExited() {
      return exitedFlag;
    },
    logs: () => (dropped ? "[... earlier output dropped ...]\n" : "") + buffer,
    stop(signal: Deno.Signal = "SIGTERM", graceMs = 3000) {
      stopping ??= (async () => {
        if (!exitedFlag) {
          try {
            child.kill(signal);
          } catch {
            // already gone
          }
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        });
        try {
          await Promise.race([exited, grace]);
        } finally {
          clearTimeout(timer);
        }
        if (!exitedFlag) {
          try {
            child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }
        // Whatever the main process left behind in its group goes too.
        killGroup();
        return await exited;
      })();
      return stopping;
    },
  };
}

/** Anything with a name and logs, for {@linkcode withLogsOnFailure}. */
export interface HasLogs {
  /** Label. */
  readonly name: string;
  /** Captured output. */
  logs(): string;
}

/**
 * Runs `fn`; if it throws, prints the logs of `peers` (the ones started so
 * far: pass a getter or an array that the test fills) to stderr and rethrows.
 *
 * @example
 * ```ts ignore
 * const peers: HasLogs[] = [];
 * await withLogsOnFailure(peers, async () => {
 *   const k = await startKamailio({ mode: "registrar" });
 *   peers.push(k);
 * });
 * ```
 */
export async function withLogsOnFailure<T>(
  peers: HasLogs[] | (() => HasLogs[]),
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    const list = typeof peers === "function" ? peers() : peers;
    for (const peer of list) {
      console.error(`----- logs of ${peer.name} -----\n${tail(peer.logs(), 20_000)}`);
    }
    throw error;
  }
}

/** The last `max` characters of `text`. */
export function tail(text: string, max: number): string {
  return text.length <= max ? text : "[...]\n" + text.slice(text.length - max);
}

/** True when an error carries a peer's output saying it could not bind its port. */
export function isBindFailure(error: unknown): boolean {
  const text = error instanceof Error ? error.message : String(error);
  return /Address already in use|bind\(\) failed|failed to bind|cannot bind|Cannot assign/i
    .test(text);
}
