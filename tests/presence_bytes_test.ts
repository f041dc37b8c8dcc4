/**
 * The presence traffic budget (issues 3 and 8), checked on every test run with the
 * benchmark's own simulation (bench/presence_bytes.ts: real library objects on
 * the loop network and a simulated clock; a run takes well under a second).
 */

import assert from "node:assert/strict";
import { edgeMode, MSN_BYTES, serverMode } from "../bench/presence_bytes.ts";

/**
 * Issue 8's targets, which sipkit meets with its defaults (49,748 and 74,554
 * bytes; see README, Benchmarks): at most 50,000 bytes per steady hour and
 * 75,000 in hour 1. Before issue 8: 73,622 and 102,872.
 */
const EDGE_STEADY_BUDGET = 50_000;
const EDGE_HOUR1_BUDGET = 75_000;

Deno.test("edge presence stays within its byte budget per hour with the CLI defaults", async () => {
  const edge = await edgeMode({ compact: true });
  assert.ok(edge.steady <= EDGE_STEADY_BUDGET, `edge steady hour: ${edge.steady} bytes`);
  assert.ok(edge.hour1 <= EDGE_HOUR1_BUDGET, `edge hour 1: ${edge.hour1} bytes`);
  // 6 changes to 10 watchers (NOTIFY + 200 each) and 20 refreshes of 3600 s
  // subscriptions (SUBSCRIBE + 204, no NOTIFY when nothing changed, not even
  // when the refresh crosses a NOTIFY), 4 hours averaged.
  assert.ok(edge.steadyMessages <= 160, `${edge.steadyMessages} messages per steady hour`);
});

Deno.test("server mode (PUBLISH + one list subscription) stays under MSN's 30,950 bytes per hour", async () => {
  const server = await serverMode({ buddyChanges: false });
  assert.ok(server.hour1 < MSN_BYTES, `server hour 1: ${server.hour1} bytes`);
  assert.ok(server.steady < MSN_BYTES, `server steady hour: ${server.steady} bytes`);
});
