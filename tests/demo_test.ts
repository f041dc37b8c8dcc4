/**
 * `deno task demo`: two agents on loopback, bob's status changes reach alice.
 */

import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task demo ends by itself with exit 0 and alice sees bob online, busy, away, then they chat", async () => {
  const started = Date.now();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "demo"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.ok(Date.now() - started < 30_000, "the demo takes seconds");

  const lines = stdout.split("\n").filter((l) => l !== "");
  const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const e of events) {
    assert.ok(e.agent === "alice" || e.agent === "bob", `labelled by agent: ${JSON.stringify(e)}`);
    assert.equal(typeof e.type, "string");
    assert.match(String(e.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  const seen = events.filter((e) => e.agent === "alice" && e.type === "presence");
  assert.deepEqual(seen.map((e) => e.status), ["online", "busy", "away"]);
  assert.equal(seen[1].note, "in a meeting");
  assert.ok(
    events.some((e) => e.agent === "bob" && e.type === "watcher" && e.state === "active"),
    "bob reports alice as his watcher",
  );
  assert.ok(
    events.some((e) =>
      e.agent === "alice" && e.type === "subscription" && e.state === "terminated"
    ),
    "alice's subscription ends when the demo stops",
  );
  const messages = events.filter((e) => e.type === "message");
  assert.ok(messages.length >= 2, "the instant-message part ran");
  assert.ok(messages.some((e) => e.agent === "bob" && e.from === "sip:alice@example.test"));
  assert.ok(messages.some((e) => e.agent === "alice" && e.from === "sip:bob@example.test"));
  assert.match(stderr, /demo: done/);
});
