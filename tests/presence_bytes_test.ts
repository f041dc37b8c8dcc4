/**
 * The presence traffic budget of issue 3, checked on every test run with the
 * benchmark's own simulation (bench/presence_bytes.ts: real library objects on
 * the loop network and a simulated clock; a run takes well under a second).
 */

import assert from "node:assert/strict";
import { EDGE_TARGET, edgeMode, MSN_BYTES, serverMode } from "../bench/presence_bytes.ts";

Deno.test("edge presence stays within 75,000 bytes per steady hour with the CLI defaults", async () => {
  const edge = await edgeMode({ compact: true });
  assert.ok(edge.steady <= EDGE_TARGET, `edge steady hour: ${edge.steady} bytes`);
  // 6 changes to 10 watchers (NOTIFY + 200 each) and 20 refreshes of 3600 s
  // subscriptions (SUBSCRIBE + 204, no NOTIFY when nothing changed), 4 hours averaged.
  assert.ok(edge.steadyMessages <= 170, `${edge.steadyMessages} messages per steady hour`);
});

Deno.test("server mode (PUBLISH + one list subscription) stays under MSN's 30,950 bytes per hour", async () => {
  const server = await serverMode({ buddyChanges: false });
  assert.ok(server.hour1 < MSN_BYTES, `server hour 1: ${server.hour1} bytes`);
  assert.ok(server.steady < MSN_BYTES, `server steady hour: ${server.steady} bytes`);
});
