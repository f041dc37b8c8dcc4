// `deno bench` version of bench/parse_compare.ts: each iteration parses the
// whole corpus (bench/corpus.ts) once. Groups: "parse" (workload 1) and
// "parse+read" (workload 2); sipkit is the baseline of each group, so the
// summary prints how much faster or slower each other parser is.

import { Buffer } from "node:buffer";
import { CORPUS } from "./corpus.ts";
import { bareSplit, type Contender, PEERS, sipkit } from "./_parsers.ts";

const INPUTS = CORPUS.map((c) => Buffer.from(c.bytes));
// Written by every run so that no parse result can be optimized away.
let sink = 0;

function parseAll(c: Contender): () => void {
  return () => {
    for (let i = 0; i < INPUTS.length; i++) if (c.parse(INPUTS[i]) !== undefined) sink++;
  };
}

function readAll(c: Contender): () => void {
  return () => {
    for (let i = 0; i < INPUTS.length; i++) {
      const x = c.read(INPUTS[i]);
      sink += x.bodyLength + x.callId.length + x.branch.length;
    }
  };
}

for (const c of [sipkit, ...PEERS, bareSplit]) {
  Deno.bench({
    name: `${c.name}: parse ${CORPUS.length} messages`,
    group: "parse",
    baseline: c === sipkit,
    fn: parseAll(c),
  });
}

for (const c of [sipkit, ...PEERS]) {
  Deno.bench({
    name: `${c.name}: parse + read ${CORPUS.length} messages`,
    group: "parse+read",
    baseline: c === sipkit,
    fn: readAll(c),
  });
}
