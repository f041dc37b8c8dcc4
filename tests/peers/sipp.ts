/**
 * Runs sipp (Debian package `sip-tester`) for tests: built-in scenarios
 * (`uac`, `uas`, ...) or the scenario files in tests/sipp/, always bound to
 * 127.0.0.1, without a terminal (`-nostdin`, stdin closed), with statistics
 * (`-trace_stat`) and errors (`-trace_err`) written to a private temp
 * directory and parsed into the result.
 *
 * sipp exit codes: 0 every call succeeded, 1 at least one failed, 97 exit on
 * an internal command, 99 normal exit without any call processed, 255 fatal.
 *
 * @module
 */

import { assertPeer, freePort, isPortBoundBy } from "./require.ts";
import { isBindFailure, type PeerProcess, spawnPeer } from "./process.ts";

/** sipp's transport modes: UDP or TCP, one socket (`1`) or one per call (`n`). */
export type SippTransport = "u1" | "un" | "t1" | "tn";

/** Options of {@linkcode runSipp} and {@linkcode startSipp}. */
export interface SippOptions {
  /**
   * A built-in scenario name (`uac`, `uas`, `regexp`, `branchc`, `branchs`,
   * `3pcc-*`...), a file name in tests/sipp/ (`message_uac.xml`), or a path.
   */
  scenario: string;
  /** Remote `host:port` (a UAC's target). Omit for a UAS. */
  remote?: string;
  /** Local port on 127.0.0.1 (default: a free port). */
  localPort?: number;
  /** Transport (default `u1`). */
  transport?: SippTransport;
  /** Calls per second (`-r`). */
  rate?: number;
  /** Rate period in ms (`-rp`, default 1000). */
  ratePeriod?: number;
  /** Stop after this many calls (`-m`). */
  calls?: number;
  /** At most this many calls at once (`-l`). */
  limit?: number;
  /** Global timeout in seconds (`-timeout`, default 30); sipp then exits. */
  timeout?: number;
  /** Request-URI user part (`-s`). */
  service?: string;
  /** Digest credentials (`-au`, `-ap`) for `[authentication]`. */
  auth?: { username: string; password: string };
  /**
   * Scenario keys (`-key name value`). For scenario files the key `domain`
   * defaults to `remote`.
   */
  keys?: Record<string, string | number>;
  /** Also write every message to `messages` in the result (`-trace_msg`). */
  traceMessages?: boolean;
  /** Statistics dump period in seconds (`-fd`, default 1). */
  statsPeriod?: number;
  /** Extra arguments appended as they are. */
  extraArgs?: string[];
}

/** What a finished sipp run left behind. */
export interface SippResult {
  /** Exit code (see the module doc). */
  code: number;
  /** Everything sipp wrote on stdout and stderr. */
  output: string;
  /** Last line of the `-trace_stat` CSV as a map (cumulative `(C)` columns included). */
  stats: Record<string, string>;
  /** Cumulative successful calls (`SuccessfulCall(C)`). */
  successful: number;
  /** Cumulative failed calls (`FailedCall(C)`). */
  failed: number;
  /** Calls created (`TotalCallCreated`). */
  created: number;
  /** Contents of the `-trace_err` file (unexpected messages and their reasons). */
  errors: string;
  /** Contents of the `-trace_msg` file when `traceMessages` was set. */
  messages: string;
  /**
   * Seconds from sipp's start to its last statistics dump (microsecond
   * precision, from the StartTime and CurrentTime columns).
   */
  elapsed: number;
  /** Successful calls per second over `elapsed` (0 when unknown). */
  rate: number;
}

/** A sipp running in the background (typically a UAS). */
export interface SippProcess {
  /** The local port it listens on. */
  readonly port: number;
  /** Its process id (e.g. to read its CPU time from /proc). */
  readonly pid: number;
  /** `127.0.0.1:<port>`. */
  readonly address: string;
  /** Label for log dumps. */
  readonly name: string;
  /** Output so far. */
  logs(): string;
  /** Resolves with the result when sipp exits by itself. */
  readonly done: Promise<SippResult>;
  /** Stops sipp (SIGUSR1 asks it to end gracefully, then SIGTERM/SIGKILL) and returns its result. */
  stop(): Promise<SippResult>;
}

const SCENARIO_DIR = new URL("../sipp/", import.meta.url);
const BUILTIN = /^(uac|uas|regexp|branchc|branchs|uac_pcap|3pcc-[a-z-]+|ooc_default)$/;

/** Resolves a scenario option to sipp arguments (`-sn name` or `-sf path`). */
export function scenarioArgs(scenario: string): string[] {
  if (BUILTIN.test(scenario)) return ["-sn", scenario];
  if (scenario.includes("/")) return ["-sf", scenario];
  return ["-sf", new URL(scenario, SCENARIO_DIR).pathname];
}

/**
 * Starts sipp in the background and returns once it has bound its port
 * (its first output). Use for a UAS; `stop()` it in a finally block.
 */
export async function startSipp(options: SippOptions): Promise<SippProcess> {
  // A free port can be taken between picking and binding: retry with another.
  for (let attempt = 1;; attempt++) {
    try {
      return await startSippOnce(options);
    } catch (error) {
      if (options.localPort !== undefined || attempt >= 3 || !isBindFailure(error)) throw error;
    }
  }
}

async function startSippOnce(options: SippOptions): Promise<SippProcess> {
  assertPeer("sipp", "sip-tester");
  const port = options.localPort ?? freePort();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-sipp-" });
  const args = buildArgs(options, port, dir);
  const name = `sipp ${options.scenario} 127.0.0.1:${port}`;
  const proc = spawnPeer("sipp", args, { name, debianPackage: "sip-tester", cwd: dir });
  const done = proc.exited.then((status) => collect(status.code, proc, dir, options));
  // sipp prints its screen (or an error) as soon as it runs; a bind failure exits at once.
  await waitForBind(proc, options.transport?.startsWith("t") ? "tcp" : "udp", port);
  let stopping: Promise<SippResult> | undefined;
  return {
    port,
    pid: proc.pid,
    address: `127.0.0.1:${port}`,
    name,
    logs: () => proc.logs(),
    done,
    stop() {
      stopping ??= (async () => {
        if (!proc.hasExited) {
          // SIGUSR1: sipp stops creating calls and exits, writing its statistics.
          await proc.stop("SIGUSR1", 2000);
        }
        return await done;
      })();
      return stopping;
    },
  };
}

/** Runs sipp to completion and returns its result (never throws on a non-zero exit). */
export async function runSipp(options: SippOptions): Promise<SippResult> {
  assertPeer("sipp", "sip-tester");
  const port = options.localPort ?? freePort();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-sipp-" });
  const args = buildArgs(options, port, dir);
  const proc = spawnPeer("sipp", args, {
    name: `sipp ${options.scenario}`,
    debianPackage: "sip-tester",
    cwd: dir,
  });
  // Safety net beyond sipp's own -timeout.
  const limitMs = ((options.timeout ?? 30) + 10) * 1000;
  const guard = setTimeout(() => void proc.stop("SIGKILL"), limitMs);
  try {
    const status = await proc.exited;
    return await collect(status.code, proc, dir, options);
  } finally {
    clearTimeout(guard);
    await proc.stop();
  }
}

function buildArgs(options: SippOptions, port: number, dir: string): string[] {
  const args = [...scenarioArgs(options.scenario)];
  if (options.remote) args.push(options.remote);
  args.push("-i", "127.0.0.1", "-p", String(port), "-t", options.transport ?? "u1");
  args.push("-nostdin", "-timeout", `${options.timeout ?? 30}s`, "-timeout_error");
  args.push("-trace_stat", "-stf", `${dir}/stat.csv`, "-fd", String(options.statsPeriod ?? 1));
  args.push("-trace_err", "-error_file", `${dir}/errors.log`);
  if (options.traceMessages) args.push("-trace_msg", "-message_file", `${dir}/messages.log`);
  if (options.rate !== undefined) args.push("-r", String(options.rate));
  if (options.ratePeriod !== undefined) args.push("-rp", String(options.ratePeriod));
  if (options.calls !== undefined) args.push("-m", String(options.calls));
  if (options.limit !== undefined) args.push("-l", String(options.limit));
  if (options.service !== undefined) args.push("-s", options.service);
  if (options.auth) args.push("-au", options.auth.username, "-ap", options.auth.password);
  const keys: Record<string, string | number> = {};
  if (!BUILTIN.test(options.scenario)) {
    if (options.remote) keys.domain = options.remote;
    // No default behaviours: an aborted SUBSCRIBE or MESSAGE "call" must not
    // be followed by a BYE.
    if (!options.extraArgs?.includes("-nd")) args.push("-nd");
  }
  Object.assign(keys, options.keys ?? {});
  for (const [key, value] of Object.entries(keys)) args.push("-key", key, String(value));
  args.push(...(options.extraArgs ?? []));
  return args;
}

async function waitForBind(
  proc: PeerProcess,
  protocol: "udp" | "tcp",
  port: number,
): Promise<void> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (proc.hasExited) {
      throw new Error(`sipp exited at start-up:\n${proc.logs()}`);
    }
    if (isPortBoundBy(proc.pid, protocol, port)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await proc.stop("SIGKILL");
  throw new Error(`sipp did not bind 127.0.0.1:${port}:\n${proc.logs()}`);
}

async function collect(
  code: number,
  proc: PeerProcess,
  dir: string,
  options: SippOptions,
): Promise<SippResult> {
  const read = (file: string) => Deno.readTextFile(`${dir}/${file}`).catch(() => "");
  const csv = await read("stat.csv");
  const errors = await read("errors.log");
  const messages = options.traceMessages ? await read("messages.log") : "";
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const stats = parseStatCsv(csv);
  const num = (key: string) => Number(stats[key] ?? "0") || 0;
  const epoch = (key: string) => Number((stats[key] ?? "").split("\t")[2] ?? NaN);
  const precise = epoch("CurrentTime") - epoch("StartTime");
  const elapsed = Number.isFinite(precise) && precise >= 0
    ? precise
    : parseElapsed(stats["ElapsedTime(C)"]);
  return {
    code,
    output: proc.logs(),
    stats,
    successful: num("SuccessfulCall(C)"),
    failed: num("FailedCall(C)"),
    created: num("TotalCallCreated"),
    errors,
    messages,
    elapsed,
    rate: elapsed > 0 ? num("SuccessfulCall(C)") / elapsed : 0,
  };
}

/** Parses sipp's `-trace_stat` CSV (`;`-separated) into a map of its last line. */
export function parseStatCsv(csv: string): Record<string, string> {
  const lines = csv.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  if (lines.length < 2) return {};
  const header = lines[0].split(";");
  const values = lines[lines.length - 1].split(";");
  const stats: Record<string, string> = {};
  header.forEach((name, i) => {
    if (name !== "") stats[name] = values[i] ?? "";
  });
  return stats;
}

/** Parses sipp's `HH:MM:SS` (or `HH:MM:SS:uuuuuu`) elapsed time into seconds. */
export function parseElapsed(value: string | undefined): number {
  if (!value) return 0;
  const parts = value.split(":").map(Number);
  if (parts.length < 3 || parts.length > 4 || parts.some(Number.isNaN)) return 0;
  return parts[0] * 3600 + parts[1] * 60 + parts[2] + (parts[3] ?? 0) / 1e6;
}
