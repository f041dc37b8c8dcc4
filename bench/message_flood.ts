/**
 * Benchmark: `sipkit message --listen` under a MESSAGE flood from sipp
 * (Debian `sip-tester`) on 127.0.0.1, side by side with sipp's own UAS
 * (tests/sipp/message_uas.xml) in the same run.
 *
 * For each target: sipp sends `--count` MESSAGEs (tests/sipp/message_uac.xml,
 * UDP, at most `--limit` unanswered at once, at up to `--rate` per second);
 * the rate is sipp's cumulative call rate (MESSAGEs started per second; with
 * a bound on those in flight it follows the answer rate). For sipkit
 * "no loss" is checked end to end: every MESSAGE sipp counted as answered
 * must appear exactly once as a `message` event on the listener's stdout.
 * A second, open-loop flood sends `--steady` MESSAGEs per second for
 * `--steady-seconds` to each target: at the target rate, nothing may be lost
 * (sipp's retransmission count shows any UDP datagram that was dropped).
 * Prints a table and the ratio sipp/sipkit; exits 1 when sipkit lost or
 * duplicated a message.
 *
 *     deno run -A bench/message_flood.ts [--count 20000] [--limit 64] [--rate 50000]
 *       [--steady 5000] [--steady-seconds 3]
 *
 * @module
 */

import { runSipp, type SippResult, startSipp } from "../tests/peers/sipp.ts";
import { findBinary, freePort } from "../tests/peers/require.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`message_flood: --${name} must be a positive integer`);
    Deno.exit(2);
  }
  return n;
}

const COUNT = arg("count", 20_000);
const LIMIT = arg("limit", 64);
const RATE = arg("rate", 50_000);
const STEADY = arg("steady", 5000);
const STEADY_S = arg("steady-seconds", 3);
const TIMEOUT_S = Math.max(30, Math.ceil(COUNT / 1000) + 20);

interface Row {
  target: string;
  sent: number;
  ok: number;
  failed: number;
  retrans: number;
  elapsed: number;
  rate: number;
  received?: number;
  distinct?: number;
}

function row(target: string, r: SippResult, wall: number): Row {
  const retrans = Number(r.stats["Retransmissions(C)"] ?? "0") || 0;
  // sipp's cumulative call rate: MESSAGEs started per second over the run;
  // with at most --limit unanswered, it is bounded by how fast answers come.
  const sippRate = Number(r.stats["CallRate(C)"] ?? "0") || 0;
  return {
    target,
    sent: r.created,
    ok: r.successful,
    failed: r.failed,
    retrans,
    elapsed: wall,
    rate: sippRate,
  };
}

/** A flood: closed loop (at most LIMIT unanswered, as fast as answers come) or steady (open loop at STEADY/s). */
async function flood(target: string, remote: string, steady = false): Promise<Row> {
  const start = performance.now();
  const result = await runSipp({
    scenario: "message_uac.xml",
    remote,
    service: "bob",
    rate: steady ? STEADY : RATE,
    calls: steady ? STEADY * STEADY_S : COUNT,
    limit: steady ? STEADY : LIMIT,
    timeout: TIMEOUT_S,
    statsPeriod: 1,
  });
  return row(
    steady ? `${target}, steady ${fmt(STEADY)}/s` : target,
    result,
    (performance.now() - start) / 1000,
  );
}

/** Waits until the listener printed what sipp saw answered, then checks: each once, none missing. */
async function checkEvents(
  sipkit: Awaited<ReturnType<typeof startSipkit>>,
  r: Row,
  before: { events: number; distinct: number },
): Promise<boolean> {
  // The 200 goes out only after the event line is written: answered means printed.
  const deadline = Date.now() + 5000;
  while (sipkit.events() - before.events < r.ok && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  r.received = sipkit.events() - before.events;
  r.distinct = sipkit.callIds.size - before.distinct;
  return r.failed === 0 && r.ok === r.sent && r.received === r.distinct && r.distinct >= r.ok;
}

/** Starts the sipkit listener and counts its `message` events. */
async function startSipkit(port: number) {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-bench-" });
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
    env: { SIPKIT_CONFIG_DIR: `${dir}/c`, SIPKIT_STATE_DIR: `${dir}/s`, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const callIds = new Map<string, number>();
  let events = 0;
  let ready!: () => void;
  const listening = new Promise<void>((resolve) => ready = resolve);
  const reading = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of child.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        // Cheap scanning (this process shares the CPUs with sipp and sipkit).
        if (line.startsWith('{"type":"listening"')) ready();
        if (line.startsWith('{"type":"message"')) {
          events++;
          const at = line.indexOf('"call_id":"') + 11;
          const callId = line.slice(at, line.indexOf('"', at));
          callIds.set(callId, (callIds.get(callId) ?? 0) + 1);
        }
      }
    }
  })();
  await listening;
  return {
    events: () => events,
    callIds,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reading;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

async function main(): Promise<number> {
  if (!findBinary("sipp")) {
    console.error("message_flood: skipped: install Debian package sip-tester (sipp not found)");
    return 0;
  }
  console.log(
    `MESSAGE flood: ${fmt(COUNT)} MESSAGEs over UDP on 127.0.0.1, at most ${LIMIT} in flight, ` +
      `rate cap ${fmt(RATE)}/s`,
  );
  const rows: Row[] = [];

  // sipkit first.
  const port = freePort();
  const sipkit = await startSipkit(port);
  let lossFree = true;
  try {
    for (const steady of [false, true]) {
      const before = { events: sipkit.events(), distinct: sipkit.callIds.size };
      const r = await flood("sipkit message --listen", `127.0.0.1:${port}`, steady);
      if (!await checkEvents(sipkit, r, before)) lossFree = false;
      rows.push(r);
    }
  } finally {
    await sipkit.stop();
  }

  // sipp's own UAS, same flood.
  const uas = await startSipp({ scenario: "message_uas.xml", timeout: TIMEOUT_S + 10 });
  try {
    rows.push(await flood("sipp UAS (message_uas.xml)", uas.address));
    rows.push(await flood("sipp UAS (message_uas.xml)", uas.address, true));
  } finally {
    await uas.stop();
  }

  console.log(
    "| target | sent | answered | failed | retransmissions | events (distinct) | wall s (sipp run) | MESSAGE/s (sipp CallRate) |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    const events = r.received === undefined ? "-" : `${fmt(r.received)} (${fmt(r.distinct!)})`;
    console.log(
      `| ${r.target} | ${fmt(r.sent)} | ${fmt(r.ok)} | ${fmt(r.failed)} | ${fmt(r.retrans)} | ` +
        `${events} | ${fmt(r.elapsed, 2)} | ${fmt(r.rate)} |`,
    );
  }
  const [ours, oursSteady, theirs] = rows;
  const ratio = ours.rate > 0 ? theirs.rate / ours.rate : Infinity;
  console.log(
    `\nsipkit: ${fmt(ours.rate)} MESSAGE/s, ${lossFree ? "nothing lost or duplicated" : "LOSS"}; ` +
      `sipp UAS: ${fmt(theirs.rate)} MESSAGE/s; ratio sipp/sipkit ${fmt(ratio, 2)}x ` +
      `(target: >= 5,000/s and <= 3x); steady ${fmt(STEADY)}/s: ${fmt(oursSteady.ok)} of ` +
      `${fmt(oursSteady.sent)} answered, ${fmt(oursSteady.retrans)} retransmissions`,
  );
  return lossFree ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
