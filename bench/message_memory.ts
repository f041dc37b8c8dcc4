/**
 * Benchmark: resident memory of `sipkit message --listen` under a sustained
 * MESSAGE flood over UDP on 127.0.0.1: sipp (`sip-tester`,
 * tests/sipp/message_uac.xml) offers `--rate` MESSAGEs per second (default
 * 5,000) for `--seconds` (default 60), open loop. Every answered MESSAGE
 * stays in the listener for timer J (32 s) to absorb retransmissions, so at
 * 5,000/s some 160,000 are held at once. The listener's VmRSS is sampled
 * every second; the table shows it over time with the `message` events
 * printed so far and the answered transactions the listener holds for timer
 * J at that moment (those answered in the last 32 s: the 200 goes out only
 * after the event line is written). It reports the peak (VmHWM), what sipp
 * saw (answered, failed, retransmissions: none means the listener kept up),
 * and what one held transaction costs in resident memory: (RSS - RSS before
 * the flood) / transactions held, at the second when most were held (an
 * upper bound: it includes the headroom V8 keeps above its live heap).
 * Loopback only; stops by itself.
 *
 *     deno run -A --config bench/deno.json bench/message_memory.ts [--rate 5000] [--seconds 60]
 *
 * @module
 */

import { runSipp } from "../tests/peers/sipp.ts";
import { findBinary, freePort } from "../tests/peers/require.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`message_memory: --${name} must be a positive integer`);
    Deno.exit(2);
  }
  return n;
}

const RATE = arg("rate", 5000);
const SECONDS = arg("seconds", 60);
const MIB = 1024 * 1024;
/** Timer J over UDP (64*T1, RFC 3261 17.2.2): how long an answered MESSAGE is held. */
const TIMER_J_S = 32;

function memory(pid: number): { rss: number; hwm: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}

async function main(): Promise<number> {
  if (!findBinary("sipp")) {
    console.error(
      "message_memory: skipped: install Debian package sip-tester (sipp not found)",
    );
    return 0;
  }
  const port = freePort();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-memory-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      CONFIG,
      MAIN,
      "message",
      "--listen",
      "--quiet",
      "--bind",
      `127.0.0.1:${port}`,
      "-u",
      "bob@example.test",
    ],
    env: {
      SIPKIT_CONFIG_DIR: `${dir}/c`,
      SIPKIT_STATE_DIR: `${dir}/s`,
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let events = 0;
  let ready!: () => void;
  const listening = new Promise<void>((resolve) => ready = resolve);
  const reading = (async () => {
    const dec = new TextDecoder();
    let tail = "";
    for await (const chunk of child.stdout) {
      const text = tail + dec.decode(chunk, { stream: true });
      const lines = text.split("\n");
      tail = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('{"type":"message"')) events++;
        else if (line.startsWith('{"type":"listening"')) ready();
      }
    }
  })();
  await listening;
  const samples: { t: number; rss: number; events: number }[] = [];
  const start = performance.now();
  const sampler = setInterval(() => {
    samples.push({
      t: (performance.now() - start) / 1000,
      rss: memory(child.pid).rss,
      events,
    });
  }, 1000);
  const before = memory(child.pid).rss;
  let peak = 0;
  try {
    const result = await runSipp({
      scenario: "message_uac.xml",
      remote: `127.0.0.1:${port}`,
      service: "bob",
      rate: RATE,
      calls: RATE * SECONDS,
      limit: RATE * SECONDS,
      timeout: SECONDS + 45,
      statsPeriod: 1,
    });
    peak = memory(child.pid).hwm;
    clearInterval(sampler);
    console.log(
      `MESSAGE flood: ${RATE.toLocaleString("en-US")}/s for ${SECONDS} s (open loop) on ` +
        `127.0.0.1 against sipkit message --listen`,
    );
    // Transactions held at each sample: events of the last TIMER_J_S seconds.
    const held = samples.map((s) => {
      const old = samples.findLast((o) => o.t <= s.t - TIMER_J_S);
      return s.events - (old?.events ?? 0);
    });
    console.log("| second | RSS MiB | message events | transactions held (timer J) |");
    console.log("| ---: | ---: | ---: | ---: |");
    samples.forEach((s, i) => {
      if (i % 5 !== 4 && i !== samples.length - 1) return;
      console.log(
        `| ${s.t.toFixed(0)} | ${(s.rss / MIB).toFixed(0)} | ${s.events} | ${held[i]} |`,
      );
    });
    const most = held.indexOf(Math.max(...held));
    const perTx = most >= 0 && held[most] > 0 ? (samples[most].rss - before) / held[most] : NaN;
    const retrans = Number(result.stats["Retransmissions(C)"] ?? "0");
    console.log(
      `\nRSS before ${(before / MIB).toFixed(0)} MiB, peak ${(peak / MIB).toFixed(0)} MiB ` +
        `(target < 200); sipp: ${result.created} sent, ${result.successful} answered, ` +
        `${result.failed} failed, ${retrans} retransmissions, ` +
        `${Number(result.stats["CallRate(C)"] ?? 0).toFixed(0)}/s\n` +
        `most transactions held: ${held[most]} at second ${samples[most]?.t.toFixed(0)}, RSS then ${
          (samples[most]?.rss / MIB).toFixed(0)
        } MiB: ` +
        `${perTx.toFixed(0)} bytes of RSS per held transaction (upper bound)` +
        (retrans > 0 ? "\nNOTE: retransmissions: the listener did not keep up with the rate" : ""),
    );
  } finally {
    clearInterval(sampler);
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  if (peak >= 200 * MIB) console.log("TARGET MISSED: peak at or over 200 MiB");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
