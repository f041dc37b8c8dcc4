/**
 * Helpers for `sipkit call` tests: start an answering sipkit, check a
 * recording's tone by frequency (lib/rtp's Goertzel detector, and sox's own
 * analysis as an independent second opinion), wait for events.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type SipkitProcess, spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";
import { readWav, rms, soxStat } from "./_audio.ts";
import { dominantFrequency } from "../lib/rtp/tone.ts";
import { type SippProcess, startSipp } from "./peers/sipp.ts";

/** Private config/state directories plus a scratch directory for audio files. */
export interface CallDirs {
  /** Environment for the sipkit processes. */
  env: Record<string, string>;
  /** A scratch directory (removed by cleanup). */
  dir: string;
  /** Removes everything. */
  cleanup(): Promise<void>;
}

/** Creates {@linkcode CallDirs}. */
export async function callDirs(): Promise<CallDirs> {
  const dirs = await tempSipkitDirs();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-call-test-" });
  return {
    env: dirs.env,
    dir,
    cleanup: async () => {
      await dirs.cleanup();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Runs `fn` with fresh {@linkcode CallDirs}, removed afterwards. */
export async function withCallDirs(fn: (dirs: CallDirs) => Promise<void>): Promise<void> {
  const dirs = await callDirs();
  try {
    await fn(dirs);
  } finally {
    await dirs.cleanup();
  }
}

/**
 * How long call tests wait for an event by default: generous, because a
 * loaded CI machine can take seconds to start a Deno process.
 */
export const EVENT_TIMEOUT_MS = 30_000;

/** `proc` with {@linkcode EVENT_TIMEOUT_MS} as its default wait. */
function patient(proc: SipkitProcess): SipkitProcess {
  const wait = proc.waitEvent.bind(proc);
  proc.waitEvent = (predicate, options = {}) =>
    wait(predicate, { timeout: EVENT_TIMEOUT_MS, ...options });
  return proc;
}

/** A predicate for `waitEvent`: the event of type `type`. */
export const of = (type: string) => (e: { type: string }): boolean => e.type === type;

/** Runs `tasks` with at most `limit` at once (processes started together load the machine). */
export async function runLimited(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  const queue = [...tasks];
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(limit, queue.length) }, async () => {
      for (let task = queue.shift(); task; task = queue.shift()) {
        await task().catch((e) => errors.push(e));
      }
    }),
  );
  if (errors.length) throw errors[0];
}

/**
 * Starts `sipkit call --answer --bind 127.0.0.1:0 <extra>` and waits for its
 * `listening` event; returns the process and the contact to call.
 */
export async function startAnswerer(
  dirs: CallDirs,
  extra: string[],
  name = "answerer",
): Promise<{ proc: SipkitProcess; contact: string }> {
  const proc = patient(spawnSipkit(["call", "--answer", "--bind", "127.0.0.1:0", ...extra], {
    name,
    env: dirs.env,
  }));
  try {
    const e = await proc.waitEvent((e) => e.type === "listening", { message: "listening" });
    return { proc, contact: String(e.contact) };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

/** Starts `sipkit call <args>` (the caller). */
export function startCaller(dirs: CallDirs, args: string[], name = "caller"): SipkitProcess {
  return patient(spawnSipkit(["call", ...args], { name, env: dirs.env }));
}

/**
 * Asserts that the second half of the WAV file at `path` (after any start-up
 * silence) holds a tone of `hz` at a real level: within 2 % by lib/rtp's
 * dominantFrequency and within 5 % by sox's rough estimate. Returns the
 * file's length in seconds.
 */
export async function assertTone(path: string, hz: number, label = path): Promise<number> {
  const wav = await readWav(path);
  const seconds = wav.samples.length / wav.sampleRate;
  assert.ok(seconds > 0.5, `${label}: only ${seconds} s recorded`);
  // The second half: after any start-up silence of the jitter buffer.
  const half = wav.samples.subarray(Math.floor(wav.samples.length / 2));
  const pcm = Int16Array.from(half, (s) => Math.round(s * 32767));
  const found = dominantFrequency(pcm, { sampleRate: wav.sampleRate });
  assert.ok(Math.abs(found - hz) <= hz * 0.02, `${label}: dominant ${found} Hz, expected ${hz}`);
  assert.ok(rms(half) > 0.1, `${label}: level ${rms(half)} is too low`);
  const stat = await soxStat(path, seconds / 2);
  assert.ok(
    Math.abs(stat.roughFrequency - hz) <= hz * 0.05,
    `${label}: sox says ${stat.roughFrequency} Hz, expected ${hz}`,
  );
  return seconds;
}

/** The To tag of the first message in a sipp `-trace_msg` log whose start line matches. */
export function toTagOf(messages: string, startLine: RegExp): string | undefined {
  for (const block of messages.split(/^-{20,}.*$/m)) {
    const lines = block.split("\n").map((l) => l.trim()).filter((l) => l !== "");
    const start = lines.findIndex((l) => startLine.test(l));
    if (start < 0) continue;
    const to = lines.slice(start).find((l) => /^(To|t):/i.test(l));
    return /;\s*tag=([^;\s>]+)/i.exec(to ?? "")?.[1];
  }
  return undefined;
}

/** Sends SIGINT (Ctrl-C) to a sipkit process. */
export function interrupt(proc: SipkitProcess): void {
  Deno.kill(proc.pid, "SIGINT");
}

/**
 * Runs `fn` with fresh {@linkcode CallDirs} and a list for the sipkit processes it starts: their
 * logs are printed if `fn` fails, they are stopped afterwards ({@linkcode withProcLogs}), then the
 * directories are removed.
 */
export async function withCallProcs(
  fn: (dirs: CallDirs, procs: SipkitProcess[]) => Promise<void>,
): Promise<void> {
  await withCallDirs(async (dirs) => {
    const procs: SipkitProcess[] = [];
    await withProcLogs(() => procs, () => fn(dirs, procs));
  });
}

/** Dumps the logs of `procs` when `fn` fails. */
export async function withProcLogs(
  procs: () => SipkitProcess[],
  fn: () => Promise<void>,
): Promise<void> {
  try {
    await fn();
  } catch (e) {
    for (const p of procs()) console.error(`----- ${p.name} -----\n${p.logs().slice(-6000)}`);
    throw e;
  } finally {
    await Promise.all(procs().map((p) => p.stop()));
  }
}

/** A sipp UAS whose media address is a UDP socket of the test: {@linkcode sippWithMediaSocket}. */
export interface SippMediaPeer {
  /** The sipp UAS. */
  uas: SippProcess;
  /** The test's socket on 127.0.0.1 that sipp's SDP names for RTP; the test may send from it. */
  socket: Deno.DatagramConn;
  /** Closes the socket, waits for its reader to end and stops sipp. */
  close(): Promise<void>;
}

/**
 * Opens a UDP socket on 127.0.0.1 and starts a sipp UAS playing `scenario` (one call, 30 s at
 * most) with that socket as its SDP's media address (the keys `rtp_host` and `rtp_port`);
 * `onPacket` is given every datagram sipkit sends there, in order. The socket is closed again if
 * sipp does not start.
 */
export async function sippWithMediaSocket(
  scenario: string,
  onPacket: (p: Uint8Array) => void,
): Promise<SippMediaPeer> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const rtpPort = (socket.addr as Deno.NetAddr).port;
  const receiving = (async () => {
    try {
      for (;;) onPacket((await socket.receive())[0]);
    } catch {
      // closed
    }
  })();
  const closeSocket = async () => {
    socket.close();
    await receiving;
  };
  try {
    const uas = await startSipp({
      scenario,
      calls: 1,
      timeout: 30,
      keys: { rtp_host: "127.0.0.1", rtp_port: rtpPort },
    });
    return {
      uas,
      socket,
      close: async () => {
        await closeSocket();
        await uas.stop();
      },
    };
  } catch (e) {
    await closeSocket();
    throw e;
  }
}
