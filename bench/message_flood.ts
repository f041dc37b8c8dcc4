/**
 * Benchmark: `sipkit message --listen` under a MESSAGE flood from sipp
 * (Debian `sip-tester`) on 127.0.0.1, side by side with sipp's own UAS
 * (tests/sipp/message_uas.xml) in the same run.
 *
 * Closed loop, `--rounds` times (sipkit and sipp's UAS in turn): sipp sends
 * `--count` MESSAGEs (tests/sipp/message_uac.xml, UDP, at most `--limit`
 * unanswered at once); the rate is sipp's cumulative call rate (MESSAGEs
 * started per second; with a bound on those in flight it follows the answer
 * rate). The ratio sipp/sipkit is taken per round, and the median reported.
 * Before the rounds, each target first takes `--warmup` MESSAGEs (default
 * 20,000, the same closed loop; `--warmup 0` skips it): a listener is a
 * long-running process, and the rounds measure it once V8 has compiled its
 * hot code, as a steady state. The warm-up is printed as its own "cold
 * start" rows with its own ratio, not counted in the median, and sipkit's
 * events in it are checked like any round's.
 *
 * Open loop, a ladder: sipp offers each rate of `--ladder` (MESSAGEs per
 * second, `-r`) for `--step-seconds`, to each target in turn; a step is
 * clean when every MESSAGE got its 200 with no retransmission (sipp's
 * retransmission count shows any datagram dropped or answered later than
 * T1). A target's result is its highest clean step below its first two
 * unclean ones in a row.
 *
 * For sipkit "no loss" is checked end to end throughout: every MESSAGE sipp
 * counted as answered must appear exactly once as a `message` event on the
 * listener's stdout (the 200 goes out only after the line is written).
 * Exits 1 when sipkit lost or duplicated a message. The listener's stdout
 * is a file that this process reads every 20 ms (see `startSipkit`); its own
 * CPU per MESSAGE is printed for both targets' rounds.
 *
 *     deno run -A --config bench/deno.json bench/message_flood.ts [--count 20000] [--limit 64]
 *       [--rounds 5] [--warmup 20000] [--ladder 2000,4000,6000,8000,10000,12000,14000] [--step-seconds 3]
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

function listArg(name: string, fallback: number[]): number[] {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const list = String(Deno.args[i + 1]).split(",").map(Number);
  if (list.some((n) => !Number.isInteger(n) || n <= 0)) {
    console.error(
      `message_flood: --${name} must be positive integers separated by commas`,
    );
    Deno.exit(2);
  }
  return list;
}

const COUNT = arg("count", 20_000);
const LIMIT = arg("limit", 64);
const RATE = arg("rate", 50_000);
const ROUNDS = arg("rounds", 5);
/** MESSAGEs each target takes before the measured rounds (`--warmup 0`: none). */
const WARMUP = Deno.args[Deno.args.indexOf("--warmup") + 1] === "0" &&
    Deno.args.includes("--warmup")
  ? 0
  : arg("warmup", 20_000);
const LADDER = listArg("ladder", [
  2000,
  4000,
  6000,
  8000,
  10_000,
  12_000,
  14_000,
]);
const STEP_S = arg("step-seconds", 3);
const TIMEOUT_S = Math.max(30, Math.ceil(Math.max(COUNT, WARMUP) / 1000) + 20);

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
  offered?: number;
  lost?: boolean;
  /** CPU time of the answering process per MESSAGE sent, in microseconds. */
  cpu?: number;
  /** Datagrams the kernel dropped at the answering socket (its receive buffer was full). */
  drops?: number;
  /**
   * Datagrams dropped meanwhile at other sockets of the machine, in practice
   * sipp's client socket (the 200s it did not take in time).
   */
  otherDrops?: number;
}

/**
 * Datagrams dropped so far at the UDP socket(s) bound to `port` in this
 * network namespace (the last column of /proc/net/udp): what a full
 * receive buffer cost the answering side. A retransmission beyond these
 * was a 200 dropped at sipp's own socket, or an answer later than T1.
 */
function socketDrops(port: number): number {
  let drops = 0;
  const hex = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of Deno.readTextFileSync("/proc/net/udp").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 13 && fields[1].endsWith(hex)) drops += Number(fields[12]) || 0;
  }
  return drops;
}

/** The kernel's count of UDP datagrams dropped for a full receive buffer, all sockets (/proc/net/snmp). */
function rcvbufErrors(): number {
  const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n");
  const at = lines.findIndex((l) => l.startsWith("Udp: ") && !/^Udp: \d/.test(l));
  if (at < 0) return 0;
  const names = lines[at].split(/\s+/);
  const values = lines[at + 1].split(/\s+/);
  return Number(values[names.indexOf("RcvbufErrors")]) || 0;
}

/**
 * sipp's socket buffers (`-buff_size`, default 64 KiB): 1 MiB, as sipkit's
 * listener asks for its receive buffer, for sipp's client and sipp's UAS
 * alike (the kernel caps it at net.core.rmem_max). With the default, sipp's
 * client dropped 200s at its own socket in some steps of the ladder, which
 * counted as retransmissions against whichever target it was measuring.
 */
const SIPP_BUFFER = ["-buff_size", String(1 << 20)];

/** The port of a `host:port` address. */
function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** User + system CPU time of a process, in microseconds (Linux /proc). */
function cpuTime(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 (utime, stime) in clock ticks, 100 per second on Linux.
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/**
 * Runs `fn` and charges the CPU time `pid` spent meanwhile to the row, per
 * MESSAGE, and the datagrams dropped meanwhile at its socket on `port`.
 */
async function measured(pid: number, port: number, fn: () => Promise<Row>): Promise<Row> {
  const t0 = cpuTime(pid);
  const d0 = socketDrops(port);
  const all0 = rcvbufErrors();
  const r = await fn();
  r.cpu = r.sent > 0 ? (cpuTime(pid) - t0) / r.sent : undefined;
  r.drops = socketDrops(port) - d0;
  r.otherDrops = Math.max(0, rcvbufErrors() - all0 - r.drops);
  return r;
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

/** Closed loop: at most LIMIT unanswered, as fast as answers come. */
async function closedLoop(target: string, remote: string, count = COUNT): Promise<Row> {
  const start = performance.now();
  const result = await runSipp({
    scenario: "message_uac.xml",
    remote,
    service: "bob",
    rate: RATE,
    calls: count,
    limit: LIMIT,
    timeout: TIMEOUT_S,
    statsPeriod: 1,
    extraArgs: SIPP_BUFFER,
  });
  return row(target, result, (performance.now() - start) / 1000);
}

/** One open-loop step: `rate` MESSAGEs per second for STEP_S seconds. */
async function openLoop(
  target: string,
  remote: string,
  rate: number,
): Promise<Row> {
  const start = performance.now();
  const result = await runSipp({
    scenario: "message_uac.xml",
    remote,
    service: "bob",
    rate,
    calls: rate * STEP_S,
    limit: rate * STEP_S,
    // Long enough for the last retransmissions (timer E to T2, then F at 32 s) to settle.
    timeout: STEP_S + 40,
    statsPeriod: 1,
    extraArgs: SIPP_BUFFER,
  });
  const r = row(
    `${target} @ ${fmt(rate)}/s`,
    result,
    (performance.now() - start) / 1000,
  );
  r.offered = rate;
  return r;
}

function clean(r: Row): boolean {
  return r.failed === 0 && r.retrans === 0 && r.ok === r.sent && r.sent > 0;
}

/** Verifies a step against what the listener printed (taken before the step, checked after). */
interface StepCheck {
  before(): Snapshot;
  verify(r: Row, before: Snapshot): Promise<boolean>;
}

/** The ladder against one target; `check` verifies each step (sipkit's events). */
async function ladder(
  target: string,
  remote: string,
  pid: number,
  check?: StepCheck,
): Promise<{ rows: Row[]; best: number }> {
  const rows: Row[] = [];
  let best = 0;
  let unclean = 0;
  for (const rate of LADDER) {
    const before = check?.before();
    const r = await measured(pid, portOf(remote), () => openLoop(target, remote, rate));
    if (check && !await check.verify(r, before!)) r.lost = true;
    rows.push(r);
    if (clean(r) && unclean === 0) best = rate;
    unclean = clean(r) ? 0 : unclean + 1;
    if (unclean >= 2) break;
    // Let what is left of an overloaded step drain before the next one.
    await new Promise((resolve) => setTimeout(resolve, clean(r) ? 500 : 3000));
  }
  return { rows, best };
}

/** Counts of the listener's events at some moment. */
interface Snapshot {
  events: number;
  distinct: number;
}

/**
 * Waits until the listener printed what sipp saw answered, then checks: each
 * once, none missing; with `strict`, also every MESSAGE answered.
 */
async function checkEvents(
  sipkit: Awaited<ReturnType<typeof startSipkit>>,
  r: Row,
  before: Snapshot,
  strict = true,
): Promise<boolean> {
  // The 200 goes out only after the event line is written: answered means printed.
  const deadline = Date.now() + 5000;
  while (sipkit.events() - before.events < r.ok && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  r.received = sipkit.events() - before.events;
  r.distinct = sipkit.callIds.size - before.distinct;
  const exact = r.received === r.distinct && r.distinct >= r.ok;
  return strict ? exact && r.failed === 0 && r.ok === r.sent : exact;
}

/** Starts the sipkit listener and counts its `message` events. */
async function startSipkit(port: number) {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-bench-" });
  const out = `${dir}/events.ndjson`;
  // stdout goes to a file, as with `sipkit message --listen > events.ndjson`,
  // and this process reads what was added every 20 ms: a checker reading a
  // pipe as the lines come cost 18-26 µs of CPU per MESSAGE (some 100 µs a
  // read, whatever it held), taken from the 2 CPUs that sipp and sipkit
  // share, in sipkit's rounds only. `exec` keeps the listener's pid.
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'out="$1"; shift; exec "$@" > "$out"',
      "sh",
      out,
      Deno.execPath(),
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
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // Bytes rather than strings: each line's type by its prefix, and its
  // Call-ID as a 53-bit hash (a duplicate line always repeats a hash; two
  // Call-IDs sharing one, about 1 in 10^11 per pair, would read as a
  // duplicate: a false alarm, never a miss).
  const callIds = new Set<number>();
  let events = 0;
  let ready!: () => void;
  const listening = new Promise<void>((resolve) => ready = resolve);
  let exited = false;
  child.status.then(() => exited = true);
  const reading = (async () => {
    while (!exited) {
      try {
        return await Deno.open(out, { read: true });
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  })().then(async (file) => {
    if (!file) return;
    const buffer = new Uint8Array(1 << 20);
    let rest = new Uint8Array(0);
    for (let last = false; !last;) {
      last = exited; // one more pass after the listener is gone
      for (;;) {
        const n = file.readSync(buffer);
        if (n === null || n === 0) break;
        let data = buffer.subarray(0, n);
        if (rest.length > 0) {
          data = new Uint8Array(rest.length + n);
          data.set(rest);
          data.set(buffer.subarray(0, n), rest.length);
        }
        let start = 0;
        let nl: number;
        while ((nl = data.indexOf(10, start)) >= 0) {
          if (startsWith(data, start, MESSAGE_LINE)) {
            events++;
            callIds.add(callIdHash(data, start, nl));
          } else if (startsWith(data, start, LISTENING_LINE)) ready();
          start = nl + 1;
        }
        rest = data.slice(start);
      }
      if (!last) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    file.close();
  });
  child.status.then((status) => {
    if (!status.success) ready(); // started and gone: the rounds fail visibly
  });
  await listening;
  return {
    pid: child.pid,
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

const utf8 = new TextEncoder();
const MESSAGE_LINE = utf8.encode('{"type":"message"');
const LISTENING_LINE = utf8.encode('{"type":"listening"');
const CALL_ID = utf8.encode('"call_id":"');

function startsWith(data: Uint8Array, at: number, prefix: Uint8Array): boolean {
  if (at + prefix.length > data.length) return false;
  for (let i = 0; i < prefix.length; i++) if (data[at + i] !== prefix[i]) return false;
  return true;
}

/**
 * A 53-bit hash (two FNV-1a) of the Call-ID of the event line
 * data[start, end), found from the end (it comes after the body); -1 when
 * the line has none.
 */
function callIdHash(data: Uint8Array, start: number, end: number): number {
  for (let at = end - CALL_ID.length; at >= start; at--) {
    if (data[at] !== 34 || !startsWith(data, at, CALL_ID)) continue;
    let h1 = 0x811c9dc5, h2 = 0x01000193;
    for (let i = at + CALL_ID.length; i < end && data[i] !== 34; i++) {
      h1 = Math.imul(h1 ^ data[i], 0x01000193);
      h2 = Math.imul(h2 ^ data[i], 0x5bd1e995);
    }
    return (h1 >>> 0) * 0x200000 + (h2 >>> 11);
  }
  return -1;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function printRows(rows: Row[]): void {
  console.log(
    "| target | sent | answered | failed | retransmissions | dropped at its socket | dropped elsewhere (sipp) | events (distinct) | wall s (sipp run) | MESSAGE/s (sipp CallRate) | CPU µs/MESSAGE |",
  );
  console.log(
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const r of rows) {
    const events = r.received === undefined
      ? "-"
      : `${fmt(r.received)} (${fmt(r.distinct!)})${r.lost ? " LOSS" : ""}`;
    console.log(
      `| ${r.target} | ${fmt(r.sent)} | ${fmt(r.ok)} | ${fmt(r.failed)} | ${fmt(r.retrans)} | ` +
        `${r.drops === undefined ? "-" : fmt(r.drops)} | ` +
        `${r.otherDrops === undefined ? "-" : fmt(r.otherDrops)} | ` +
        `${events} | ${fmt(r.elapsed, 2)} | ${fmt(r.rate)} | ${
          r.cpu === undefined ? "-" : fmt(r.cpu)
        } |`,
    );
  }
}

async function main(): Promise<number> {
  if (!findBinary("sipp")) {
    console.error(
      "message_flood: skipped: install Debian package sip-tester (sipp not found)",
    );
    return 0;
  }
  console.log(
    `MESSAGE flood over UDP on 127.0.0.1. Closed loop: ${fmt(COUNT)} MESSAGEs, at most ${LIMIT} ` +
      `in flight, ${ROUNDS} rounds. Open loop: ${LADDER.map((r) => fmt(r)).join(", ")}/s, ` +
      `${STEP_S} s a step.`,
  );
  const SIPKIT = "sipkit message --listen";
  const SIPP = "sipp UAS (message_uas.xml)";
  const port = freePort();
  const sipkit = await startSipkit(port);
  const uas = await startSipp({
    scenario: "message_uas.xml",
    timeout: 3600,
    extraArgs: SIPP_BUFFER,
  });
  const remote = `127.0.0.1:${port}`;
  let lossFree = true;
  const checked = async (r: Row, before: Snapshot) => {
    if (!await checkEvents(sipkit, r, before)) {
      r.lost = true;
      lossFree = false;
    }
    return !r.lost;
  };
  const closed: Row[] = [];
  const ratios: number[] = [];
  /** This process's CPU per MESSAGE in sipkit's rounds (reading its events). */
  const checkerCpu: number[] = [];
  /** The same in sipp's rounds (driving sipp only). */
  const benchCpuSipp: number[] = [];
  let ladders: {
    sipkit: Awaited<ReturnType<typeof ladder>>;
    sipp: Awaited<ReturnType<typeof ladder>>;
  };
  const cold: Row[] = [];
  try {
    if (WARMUP > 0) {
      const before = { events: sipkit.events(), distinct: sipkit.callIds.size };
      const ours = await measured(
        sipkit.pid,
        port,
        () => closedLoop(`${SIPKIT} (cold start)`, remote, WARMUP),
      );
      await checked(ours, before);
      const theirs = await measured(
        uas.pid,
        portOf(uas.address),
        () => closedLoop(`${SIPP} (cold start)`, uas.address, WARMUP),
      );
      cold.push(ours, theirs);
    }
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate who goes first, so that neither always meets the quieter machine.
      const order = round % 2 === 0 ? ["sipkit", "sipp"] : ["sipp", "sipkit"];
      const got: Record<string, Row> = {};
      for (const who of order) {
        if (who === "sipkit") {
          const before = {
            events: sipkit.events(),
            distinct: sipkit.callIds.size,
          };
          const checker = cpuTime(Deno.pid);
          got.sipkit = await measured(
            sipkit.pid,
            port,
            () => closedLoop(`${SIPKIT} (round ${round + 1})`, remote),
          );
          checkerCpu.push((cpuTime(Deno.pid) - checker) / Math.max(1, got.sipkit.sent));
          await checked(got.sipkit, before);
        } else {
          const own = cpuTime(Deno.pid);
          got.sipp = await measured(
            uas.pid,
            portOf(uas.address),
            () => closedLoop(`${SIPP} (round ${round + 1})`, uas.address),
          );
          benchCpuSipp.push((cpuTime(Deno.pid) - own) / Math.max(1, got.sipp.sent));
        }
      }
      closed.push(got.sipkit, got.sipp);
      ratios.push(
        got.sipkit.rate > 0 ? got.sipp.rate / got.sipkit.rate : Infinity,
      );
    }
    // An overloaded step may fail MESSAGEs (sipp gives up on them), but
    // what was answered must have been printed, once.
    const sipkitLadder = await ladder(SIPKIT, remote, sipkit.pid, {
      before: () => ({
        events: sipkit.events(),
        distinct: sipkit.callIds.size,
      }),
      verify: async (r, before) => {
        const ok = await checkEvents(sipkit, r, before, false);
        if (!ok) lossFree = false;
        return ok;
      },
    });
    ladders = {
      sipkit: sipkitLadder,
      sipp: await ladder(SIPP, uas.address, uas.pid),
    };
  } finally {
    await sipkit.stop();
    await uas.stop();
  }

  if (cold.length > 0) {
    printRows(cold);
    console.log("");
  }
  printRows(closed);
  console.log("");
  printRows([...ladders.sipkit.rows, ...ladders.sipp.rows]);
  const ours = median(closed.filter((_, i) => i % 2 === 0).map((r) => r.rate));
  const theirs = median(
    closed.filter((_, i) => i % 2 === 1).map((r) => r.rate),
  );
  const share = ladders.sipp.best > 0 ? ladders.sipkit.best / ladders.sipp.best : 0;
  if (cold.length > 0) {
    console.log(
      `\ncold start (first ${fmt(WARMUP)} MESSAGEs to each fresh listener, not in the median): ` +
        `sipkit ${fmt(cold[0].rate)} MESSAGE/s, sipp UAS ${fmt(cold[1].rate)}; ratio ` +
        `${fmt(cold[0].rate > 0 ? cold[1].rate / cold[0].rate : Infinity, 2)}x`,
    );
  }
  console.log(
    `${cold.length > 0 ? "" : "\n"}closed loop${
      cold.length > 0 ? " after the warm-up" : ""
    }: sipkit median ${fmt(ours)} MESSAGE/s, sipp UAS median ${fmt(theirs)}; ` +
      `ratio sipp/sipkit per round ${ratios.map((r) => fmt(r, 2)).join(", ")}, median ` +
      `${fmt(median(ratios), 2)}x (target <= 1.25x)\nchecker (this process, reading sipkit's ` +
      `events) CPU per MESSAGE per round: ${checkerCpu.map((c) => fmt(c, 1)).join(", ")} µs ` +
      `(in sipp's rounds: ${benchCpuSipp.map((c) => fmt(c, 1)).join(", ")} µs)` +
      `\nopen loop: highest clean step sipkit ` +
      `${fmt(ladders.sipkit.best)}/s, sipp UAS ${fmt(ladders.sipp.best)}/s (${
        fmt(share * 100)
      } %, ` +
      `target >= 80 %)\nsipkit: ${lossFree ? "nothing lost or duplicated" : "LOSS"}`,
  );
  return lossFree ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
