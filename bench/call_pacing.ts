/**
 * Benchmark: a call's RTP sender and CPU, `sipkit call` side by side with
 * baresip (Debian `baresip`) in the same run, on 127.0.0.1.
 *
 * Each caller calls its own sipp UAS (tests/sipp/call_uas_sink.xml), whose
 * SDP answer sends the caller's RTP to a UDP sink of this benchmark; both
 * play the same 8 kHz tone WAV (sipkit `--play`, baresip `aufile`) in PCMU
 * for `--seconds`. The sink measures the pacing (the intervals between
 * packets against 20 ms: p50/p99/max deviation, and the drift of the wall
 * clock against the RTP timestamps), and /proc gives the CPU time each
 * process tree used during the call (after a one-second warm-up).
 *
 * Receive path: the benchmark sends sipkit a paced PCMU stream (silence,
 * then a 1 kHz tone) from its own socket, and `sipkit call --answer --record`
 * writes into a named pipe that the benchmark reads: the time from sending
 * the tone's first packet to reading its first samples is the latency added
 * by sipkit's receive path (jitter buffer, decoding, output); target 40 ms.
 *
 *     deno run -A --config bench/deno.json bench/call_pacing.ts [--seconds 10] [--latency-runs 5]
 *
 * Prints a table and the ratios sipkit/baresip.
 *
 * @module
 */

import { startSipp } from "../tests/peers/sipp.ts";
import { startBaresip } from "../tests/peers/baresip.ts";
import { spawnSipkit, tempSipkitDirs } from "../tests/_sipkit_process.ts";
import { makeToneWav } from "../tests/_audio.ts";
import { analysePacing, type PacingReport, processTreeCpuMs, RtpSink } from "./_rtp_sink.ts";
import { measureReceiveLatency } from "./_rtp_latency.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`call_pacing: --${name} must be a positive number`);
    Deno.exit(2);
  }
  return n;
}

const SECONDS = arg("seconds", 10);
const LATENCY_RUNS = Math.round(arg("latency-runs", 5));
const WARMUP_MS = 1000;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Side {
  name: string;
  pacing: PacingReport;
  cpuMsPerSecond: number;
}

async function main(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-callbench-" });
  const dirs = await tempSipkitDirs();
  const sinks = { sipkit: RtpSink.open(), baresip: RtpSink.open() };
  const uas = {
    sipkit: await startSipp({
      scenario: "call_uas_sink.xml",
      calls: 1,
      timeout: SECONDS + 60,
      keys: { sink_host: "127.0.0.1", sink_port: sinks.sipkit.port },
    }),
    baresip: await startSipp({
      scenario: "call_uas_sink.xml",
      calls: 1,
      timeout: SECONDS + 60,
      keys: { sink_host: "127.0.0.1", sink_port: sinks.baresip.port },
    }),
  };
  const wav = `${dir}/tone.wav`;
  await makeToneWav(wav, 440, { seconds: SECONDS + 10 });
  const baresip = await startBaresip({
    user: "bench",
    audioSource: `aufile,${wav}`,
    audioCodecs: ["PCMU"],
  });
  const results: Side[] = [];
  try {
    // Both calls start together and run at the same time.
    const sipkit = spawnSipkit([
      "call",
      `sip:sink@${uas.sipkit.address}`,
      "--play",
      wav,
      "--codec",
      "PCMU",
      "--duration",
      String(SECONDS + 1),
    ], { env: dirs.env, name: "sipkit call (bench)" });
    await baresip.dial(`sip:sink@${uas.baresip.address}`);
    const measureCpu = async (pid: number, answered: Promise<unknown>) => {
      await answered;
      await delay(WARMUP_MS);
      const t0 = performance.now();
      const c0 = processTreeCpuMs(pid);
      await delay((SECONDS - 1) * 1000);
      return (processTreeCpuMs(pid) - c0) / ((performance.now() - t0) / 1000);
    };
    const [cpuSipkit, cpuBaresip] = await Promise.all([
      measureCpu(
        sipkit.pid,
        sipkit.waitEvent((e) => e.type === "answered", { timeout: 20_000 }),
      ),
      measureCpu(
        baresip.pid,
        baresip.waitEvent((e) => e.type === "CALL_ESTABLISHED", { timeout: 20_000 }),
      ),
    ]);
    await baresip.hangup();
    const code = await sipkit.exited;
    if (code !== 0) throw new Error(`sipkit call exited ${code}:\n${sipkit.logs()}`);
    await Promise.all([uas.sipkit.stop(), uas.baresip.stop()]);
    results.push({
      name: "sipkit",
      pacing: analysePacing(sinks.sipkit.arrivals, { warmupMs: WARMUP_MS }),
      cpuMsPerSecond: cpuSipkit,
    });
    results.push({
      name: "baresip",
      pacing: analysePacing(sinks.baresip.arrivals, { warmupMs: WARMUP_MS }),
      cpuMsPerSecond: cpuBaresip,
    });
  } finally {
    await baresip.stop();
    await uas.sipkit.stop();
    await uas.baresip.stop();
    await sinks.sipkit.close();
    await sinks.baresip.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  const f = (n: number, d = 2) => Number.isFinite(n) ? n.toFixed(d) : "-";
  console.log(`\nRTP send pacing over ${SECONDS} s (PCMU, ptime 20), same run, 127.0.0.1`);
  console.log(
    "sender   packets  lost  p50 dev ms  p99 dev ms  max dev ms  mean ms  drift ms  CPU ms/s",
  );
  for (const r of results) {
    const p = r.pacing;
    console.log(
      `${r.name.padEnd(8)} ${String(p.packets).padStart(7)} ${String(p.lost).padStart(5)} ${
        f(p.p50).padStart(11)
      } ${f(p.p99).padStart(11)} ${f(p.max).padStart(11)} ${f(p.meanInterval).padStart(8)} ${
        f(p.drift, 1).padStart(9)
      } ${f(r.cpuMsPerSecond, 1).padStart(9)}`,
    );
  }
  const [s, b] = results;
  console.log(
    `ratios sipkit/baresip: p99 deviation ${f(s.pacing.p99 / b.pacing.p99)}, max deviation ${
      f(s.pacing.max / b.pacing.max)
    }, CPU ${f(s.cpuMsPerSecond / b.cpuMsPerSecond)}`,
  );

  const latencies = await measureReceiveLatency({ runs: LATENCY_RUNS, env: dirs.env });
  const sorted = [...latencies].sort((x, y) => x - y);
  console.log(
    `\nReceive path (jitter buffer + decode + output), sipkit, 0 % loss, ${latencies.length} runs:` +
      ` median ${f(sorted[Math.floor(sorted.length / 2)], 1)} ms, max ${
        f(sorted[sorted.length - 1], 1)
      } ms (target 40 ms)`,
  );
  await dirs.cleanup();
}

if (import.meta.main) await main();
