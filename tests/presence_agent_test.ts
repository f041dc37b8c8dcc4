import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { Subscription, type SubscriptionNotify } from "../lib/sip/events/subscriber.ts";
import {
  PresenceAgent,
  type PresenceAgentEvent,
  type PresenceAgentOptions,
} from "../lib/presence/agent.ts";
import { presenceToStatus } from "../lib/presence/status.ts";
import { parseWatcherInfo } from "../lib/presence/watcherinfo.ts";
import { advance, loopUa, requestsOf, responsesTo, until } from "./_presence_util.ts";

const BOB = "sip:bob@192.0.2.2";
const ALICE = "sip:alice@192.0.2.1";

async function setup(options: PresenceAgentOptions = {}) {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  const events: PresenceAgentEvent[] = [];
  const agent = new PresenceAgent(bob, { onEvent: (e) => events.push(e), ...options });
  return {
    clock,
    net,
    alice,
    bob,
    agent,
    events,
    close: () => Promise.all([alice.close(), bob.close()]),
  };
}

function watch(ua: UserAgent, expires?: number) {
  const notes: SubscriptionNotify[] = [];
  const sub = new Subscription(ua, BOB, {
    event: "presence",
    accept: ["application/pidf+xml"],
    expires,
    onNotify: (n) => notes.push(n),
  });
  const statuses = () => notes.map((n) => presenceToStatus(n.body).status);
  return { sub, notes, statuses };
}

Deno.test("PresenceAgent sends the PIDF document at once to an allowed watcher", async () => {
  const { net, alice, agent, events, close } = await setup({
    allow: ["alice@192.0.2.1"],
    note: "hello",
  });
  const { sub, notes } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  assert.equal(notes[0].contentType, "application/pidf+xml");
  assert.equal(notes[0].state.state, "active");
  const summary = presenceToStatus(notes[0].body);
  assert.equal(summary.entity, BOB);
  assert.equal(summary.status, "online");
  assert.equal(summary.basic, "open");
  assert.equal(summary.note, "hello");
  assert.ok(!new TextDecoder().decode(notes[0].body).startsWith("<?xml"), "lean: no declaration");
  assert.deepEqual(events, [{
    type: "watcher",
    change: "added",
    uri: ALICE,
    state: "active",
    expires: 3600,
  }]);
  assert.deepEqual(agent.watchers(), [{ uri: ALICE, state: "active", expires: 3600 }]);
  sub.close();
  await close();
});

Deno.test("PresenceAgent: status changes arrive in order, each one once", async () => {
  const { clock, net, alice, agent, close } = await setup({ unknown: "accept" });
  const { sub, notes, statuses } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  for (const s of ["busy", "away", "lunch", "on-the-phone", "offline", "online"] as const) {
    await advance(clock, net, 1000);
    agent.setStatus(s);
    await net.settled();
  }
  await advance(clock, net, 1000);
  assert.deepEqual(statuses(), [
    "online",
    "busy",
    "away",
    "lunch",
    "on-the-phone",
    "offline",
    "online",
  ]);
  // The same status again sends nothing.
  agent.setStatus("online");
  await advance(clock, net, 2000);
  assert.equal(notes.length, 7);
  // A new note is a change.
  agent.setStatus("online", { note: "back" });
  await advance(clock, net, 1000);
  assert.equal(presenceToStatus(notes.at(-1)!.body).note, "back");
  sub.close();
  await close();
});

Deno.test("PresenceAgent rate control: one NOTIFY per minInterval, the last state gets through", async () => {
  const { clock, net, alice, agent, close } = await setup({ unknown: "accept" });
  const { sub, notes, statuses } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  agent.setStatus("busy");
  agent.setStatus("away");
  agent.setStatus("lunch", { note: "pizza" });
  await net.settled();
  assert.equal(notes.length, 1, "held within the second after the first NOTIFY");
  await advance(clock, net, 1000, 100);
  assert.deepEqual(statuses(), ["online", "lunch"]);
  assert.equal(presenceToStatus(notes[1].body).note, "pizza");
  await advance(clock, net, 10_000);
  assert.equal(notes.length, 2);
  sub.close();
  await close();
});

Deno.test("PresenceAgent holds unknown watchers pending (202, closed document) until allowed", async () => {
  const { clock, net, alice, agent, events, close } = await setup({ note: "secret" });
  const { sub, notes, statuses } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 202);
  assert.equal(notes[0].state.state, "pending");
  const neutral = presenceToStatus(notes[0].body);
  assert.equal(neutral.basic, "closed");
  assert.equal(neutral.note, undefined, "nothing leaks to a pending watcher");
  assert.equal(events[0].state, "pending");
  // A status change is not sent to a pending watcher.
  agent.setStatus("busy");
  await advance(clock, net, 2000);
  assert.equal(notes.length, 1);
  agent.allow("sip:alice@192.0.2.1");
  await advance(clock, net, 1000);
  assert.equal(notes.length, 2);
  assert.equal(notes[1].state.state, "active");
  assert.deepEqual(statuses(), ["offline", "busy"]);
  assert.equal(presenceToStatus(notes[1].body).note, "secret");
  assert.deepEqual(events.map((e) => `${e.change}:${e.state}`), [
    "added:pending",
    "allowed:active",
  ]);
  sub.close();
  await close();
});

Deno.test("PresenceAgent with unknown=reject answers 403", async () => {
  const { net, alice, events, close } = await setup({ unknown: "reject" });
  const { sub } = watch(alice);
  await sub.start();
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 403);
  assert.equal(sub.state, "terminated");
  assert.equal(events.length, 0);
  await close();
});

Deno.test("PresenceAgent reports refreshed and removed watchers", async () => {
  const { clock, net, alice, events, agent, close } = await setup({
    unknown: "accept",
    maxExpires: 300,
  });
  const { sub, notes } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await advance(clock, net, 280_000, 5000); // refreshed at 300 - 30 = 270 s
  assert.deepEqual(events.map((e) => e.change), ["added", "refreshed"]);
  assert.equal(events[1].expires, 300);
  await sub.unsubscribe();
  await until(net, () => events.length === 3);
  assert.deepEqual(events[2], {
    type: "watcher",
    change: "removed",
    uri: ALICE,
    state: "terminated",
    expires: 0,
    reason: "timeout",
  });
  assert.deepEqual(agent.watchers(), []);
  await close();
});

Deno.test("PresenceAgent.close() ends subscriptions with a closed document and probation (retry later)", async () => {
  const { net, alice, agent, close } = await setup({ unknown: "accept", status: "busy" });
  const { sub, notes, statuses } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await agent.close();
  await net.settled();
  assert.deepEqual(statuses(), ["busy", "offline"]);
  assert.equal(notes[1].state.state, "terminated");
  assert.equal(notes[1].state.reason, "probation");
  assert.equal(sub.state, "waiting", "the subscriber keeps it and retries later");
  sub.close();
  assert.equal(requestsOf(net, "NOTIFY").length, 2);
  await close();
});

Deno.test("PresenceAgent.deny() ends the watcher's subscription with rejected", async () => {
  const { net, alice, agent, close } = await setup({ allow: [ALICE] });
  const { sub, notes } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await agent.deny(ALICE);
  await net.settled();
  assert.equal(notes.at(-1)!.state.reason, "rejected");
  assert.equal(sub.state, "terminated");
  await close();
});

Deno.test("PresenceAgent answers 489 to other event packages", async () => {
  const { net, alice, close } = await setup();
  const sub = new Subscription(alice, BOB, { event: "message-summary" });
  await sub.start();
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 489);
  assert.equal(res.headers.get("Allow-Events"), "presence");
  await close();
});

Deno.test("PresenceAgent.close({ notify: false }) drops watchers silently and stops their timers", async () => {
  const { clock, net, alice, agent, events, close } = await setup({ unknown: "accept" });
  const { sub, notes } = watch(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await agent.close({ notify: false });
  assert.deepEqual(agent.watchers(), []);
  assert.equal(events.at(-1)!.change, "removed");
  assert.equal(events.at(-1)!.reason, "dropped");
  sub.close();
  await advance(clock, net, 7_200_000, 600_000);
  assert.equal(requestsOf(net, "NOTIFY").length, 1, "no final NOTIFY, no expiry NOTIFY");
  await close();
});

Deno.test("PresenceAgent with winfo serves presence.winfo to the user's own client", async () => {
  const { clock, net, alice, agent, close } = await setup({ winfo: true });
  // Bob's second client (same AOR, another address) watches his watchers.
  const bob2 = await loopUa(net, "bob", "192.0.2.9", { clock, aor: BOB });
  const infos: SubscriptionNotify[] = [];
  const winfo = new Subscription(bob2, BOB, {
    event: "presence.winfo",
    accept: ["application/watcherinfo+xml"],
    onNotify: (n) => infos.push(n),
  });
  await winfo.start();
  await until(net, () => infos.length === 1);
  assert.equal(parseWatcherInfo(infos[0].body).lists[0].watchers.length, 0);
  const { sub } = watch(alice);
  await sub.start();
  await advance(clock, net, 1000);
  const doc = parseWatcherInfo(infos.at(-1)!.body);
  assert.equal(doc.lists[0].resource, BOB);
  assert.deepEqual(
    doc.lists[0].watchers.map((w) => [w.uri, w.status, w.event]),
    [[ALICE, "pending", "subscribe"]],
  );
  agent.allow(ALICE);
  await advance(clock, net, 1000);
  const after = parseWatcherInfo(infos.at(-1)!.body);
  assert.deepEqual(after.lists[0].watchers.map((w) => w.status), ["active"]);
  assert.ok(after.version > doc.version);
  // Someone else may not see the watchers.
  const nosy = new Subscription(alice, BOB, { event: "presence.winfo" });
  await nosy.start();
  assert.equal(responsesTo(net, "SUBSCRIBE").at(-1)!.status, 403);
  sub.close();
  winfo.close();
  await Promise.all([close(), bob2.close()]);
});
