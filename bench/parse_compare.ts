/**
 * Side-by-side parse throughput: sipkit against the npm parsers `sip`,
 * `drachtio-sip` and `jssip`, and a bare split of the bytes into lines and
 * header pairs, in the same process, on the corpus of bench/corpus.ts.
 *
 * Two workloads: (1) parse only; (2) parse, then read what a stack needs
 * (method or status, Call-ID, CSeq, From/To tags, top Via branch, body).
 * Throughput is messages per CPU second of this process, so that other load
 * on a shared machine does not count. Rounds are interleaved (the order of
 * the parsers rotates every round) and each figure is the median over the
 * rounds; the ratio to the fastest npm parser is the median of the ratios
 * taken within each round.
 *
 * Usage: deno run --allow-all bench/parse_compare.ts [--rounds N] [--ms M]
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { CORPUS } from "./corpus.ts";
import { bareSplit, type Contender, type Extract, PEERS, sipkit } from "./_parsers.ts";

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(name);
  return i === -1 ? fallback : Number(Deno.args[i + 1]);
}

const ROUNDS = option("--rounds", 11);
const SLICE_MS = option("--ms", 150);
const INPUTS = CORPUS.map((c) => Buffer.from(c.bytes));

let sink = 0;

/** CPU time of this process in milliseconds (user and system). */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Runs `fn` over the corpus for about SLICE_MS of CPU time; returns messages
 * per CPU second. CPU time rather than wall time: on a shared machine the
 * time this process waits for a core is not the parser's.
 */
function measure(fn: (input: Buffer) => unknown): number {
  let count = 0;
  const start = cpuMs();
  let now = start;
  do {
    for (let k = 0; k < 16; k++) {
      for (let i = 0; i < INPUTS.length; i++) {
        if (fn(INPUTS[i]) !== undefined) sink++;
      }
    }
    count += 16 * INPUTS.length;
    now = cpuMs();
  } while (now - start < SLICE_MS);
  return count / ((now - start) / 1000);
}

function readFields(c: Contender): (input: Buffer) => unknown {
  return (input) => {
    const x: Extract = c.read(input);
    sink += x.bodyLength + x.callId.length + x.branch.length;
    return x;
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Checks that every parser reads the expected values from every message. */
function verify(): void {
  for (const c of CORPUS) {
    for (const p of [sipkit, ...PEERS]) {
      const x = p.read(Buffer.from(c.bytes));
      const e = c.expect;
      const same = (x.method ?? undefined) === (e.method ?? undefined) &&
        (x.status ?? undefined) === (e.status ?? undefined) && x.callId === e.callId &&
        Number(x.cseq) === e.cseq && x.fromTag === e.fromTag &&
        (x.toTag ?? undefined) === (e.toTag ?? undefined) && x.branch === e.branch &&
        x.bodyLength === e.bodyLength;
      if (!same) {
        throw new Error(`${p.name} misreads "${c.name}": ${JSON.stringify(x)}`);
      }
    }
  }
}

interface Row {
  name: string;
  fn: (input: Buffer) => unknown;
  samples: number[];
}

function run(rows: Row[]): void {
  // Warm-up: one slice each, not recorded.
  for (const r of rows) measure(r.fn);
  for (let round = 0; round < ROUNDS; round++) {
    for (let j = 0; j < rows.length; j++) {
      const r = rows[(j + round) % rows.length];
      r.samples.push(measure(r.fn));
    }
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/**
 * sipkit's speed over the fastest npm parser, taken round by round (each
 * round measures every parser once, one right after the other, so a load
 * change on a shared machine hits both sides of a ratio alike): the median
 * of the per-round ratios.
 */
function pairedRatio(rows: Row[]): number {
  const ours = rows.find((r) => r.name === "sipkit")!;
  const peers = rows.filter((r) => PEERS.some((p) => p.name === r.name));
  const ratios = ours.samples.map((s, i) => s / Math.max(...peers.map((r) => r.samples[i])));
  return median(ratios);
}

function table(title: string, rows: Row[]): number {
  const med = new Map(rows.map((r) => [r.name, median(r.samples)]));
  const ours = med.get("sipkit")!;
  console.log(`\n${title}`);
  console.log(
    "  parser".padEnd(16) + "msgs/CPU-s (med)".padStart(17) + "min".padStart(12) +
      "max".padStart(12) + "  sipkit is",
  );
  for (const r of rows) {
    const m = med.get(r.name)!;
    const ratio = ours / m;
    const note = r.name === "sipkit"
      ? ""
      : ratio >= 1
      ? `${ratio.toFixed(2)}x faster`
      : `${(1 / ratio).toFixed(2)}x slower`;
    console.log(
      `  ${r.name}`.padEnd(16) + fmt(m).padStart(17) + fmt(Math.min(...r.samples)).padStart(12) +
        fmt(Math.max(...r.samples)).padStart(12) + `  ${note}`,
    );
  }
  const ratio = pairedRatio(rows);
  console.log(`  sipkit / fastest npm parser (median of per-round ratios): ${ratio.toFixed(2)}x`);
  return ratio;
}

verify();
console.log(
  `sipkit parse benchmark: ${CORPUS.length} messages (${
    INPUTS.reduce((a, b) => a + b.length, 0)
  } bytes), ${ROUNDS} interleaved rounds of ${SLICE_MS} ms of CPU time per parser, Deno ${Deno.version.deno}`,
);
console.log("Every parser starts from the received bytes; decoding is part of its time.");

const parseRows: Row[] = [sipkit, ...PEERS, bareSplit].map((c) => ({
  name: c.name,
  fn: c.parse,
  samples: [],
}));
run(parseRows);
table("Workload 1: parse only", parseRows);

const readRows: Row[] = [sipkit, ...PEERS].map((c) => ({
  name: c.name,
  fn: readFields(c),
  samples: [],
}));
run(readRows);
const ratio = table(
  "Workload 2: parse + read method/status, Call-ID, CSeq, tags, top Via branch, body",
  readRows,
);
console.log(
  `\nTarget (issue 8): >= 3x the fastest npm parser on workload 2: ${
    ratio >= 3 ? "met" : "NOT met"
  } (${ratio.toFixed(2)}x)`,
);
if (sink === -1) console.log(sink);
