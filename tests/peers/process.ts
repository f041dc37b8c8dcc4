/**
 * Starting and stopping peer processes (kamailio, baresip, sipp) for tests:
 * stdin closed, stdout and stderr captured into one bounded buffer that tests
 * print when they fail, and a stop() that always reaps the process.
 *
 * @module
 */

import { assertPeer } from "./require.ts";

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
  const child = new Deno.Command(path, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
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
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) append(decoder.decode(chunk, { stream: true }));
    append(decoder.decode());
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const stdinWriter = options.stdin === "piped" ? child.stdin.getWriter() : undefined;
  let exitedFlag = false;
  const exited = (async () => {
    const status = await child.status;
    await drained;
    await stdinWriter?.close().catch(() => {});
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
        if (exitedFlag) return await exited;
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        const killed = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            try {
              child.kill("SIGKILL");
            } catch {
              // already gone
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
