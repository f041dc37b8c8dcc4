import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { Dialog } from "../lib/sip/dialog.ts";
import { createResponse, formatUri } from "../lib/sip/message.ts";
import { generateTag } from "../lib/sip/transaction/mod.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { PresenceAgent } from "../lib/presence/agent.ts";
import {
  type PresenceEvent,
  PresenceWatcher,
  type PresenceWatcherEvent,
  type SubscriptionEvent,
} from "../lib/presence/watcher.ts";
import { buildListNotify } from "../lib/presence/rlmi.ts";
import { statusToPidf, USER_STATUSES } from "../lib/presence/status.ts";
import { advance, LoopProxy, loopUa, requestsOf, responsesTo, until } from "./_presence_util.ts";
import { Registration } from "../lib/sip/registration.ts";

const ALICE = "sip:alice@192.0.2.1";
const BOB = "sip:bob@192.0.2.2";
const CAROL = "sip:carol@192.0.2.4";

async function net3() {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  return { clock, net, alice, bob, close: () => Promise.all([alice.close(), bob.close()]) };
}

function recorder() {
  const events: PresenceWatcherEvent[] = [];
  return {
    events,
    onEvent: (e: PresenceWatcherEvent) => events.push(e),
    presence: (uri?: string) =>
      events.filter((e): e is PresenceEvent =>
        e.type === "presence" && (uri === undefined || e.uri === uri)
      ),
    subs: (uri?: string) =>
      events.filter((e): e is SubscriptionEvent =>
        e.type === "subscription" && (uri === undefined || e.uri === uri)
      ),
  };
}

/** While the user is "offline", its address answers SUBSCRIBE with 404 (as the thesis' proxy did). */
function offline(ua: UserAgent): void {
  ua.handle("SUBSCRIBE", (incoming) => incoming.respond(404));
}

Deno.test("PresenceWatcher reports presence on change only, with status, note and contacts", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const agent = new PresenceAgent(bob, {
    unknown: "accept",
    note: "at my desk",
    contact: "sip:bob@192.0.2.2",
  });
  const r = recorder();
  const watcher = new PresenceWatcher(alice, { buddies: ["bob@192.0.2.2"], onEvent: r.onEvent });
  await watcher.start();
  await until(net, () => r.presence().length === 1);
  const [first] = r.presence();
  assert.equal(first.uri, BOB);
  assert.equal(first.status, "online");
  assert.equal(first.basic, "open");
  assert.equal(first.note, "at my desk");
  assert.deepEqual(first.contacts, [{ uri: "sip:bob@192.0.2.2" }]);
  assert.ok(first.raw.includes("<basic>open</basic>"));
  assert.deepEqual(r.subs().map((e) => e.state), ["active"]);
  // A refresh with the entity-tag of the state we have (RFC 5839) gets 204 and no NOTIFY.
  await watcher.subscription(BOB)!.refresh();
  await advance(clock, net, 2000);
  const refresh = requestsOf(net, "SUBSCRIBE")[1];
  assert.equal(
    refresh.headers.get("Suppress-If-Match"),
    requestsOf(net, "NOTIFY")[0].headers.get("SIP-ETag"),
  );
  assert.equal(responsesTo(net, "SUBSCRIBE")[1].status, 204);
  assert.equal(requestsOf(net, "NOTIFY").length, 1);
  assert.equal(r.presence().length, 1);
  agent.setStatus("away", { note: null });
  await advance(clock, net, 1000);
  assert.equal(r.presence().length, 2);
  assert.equal(r.presence()[1].status, "away");
  assert.equal(r.presence()[1].note, undefined);
  assert.deepEqual(watcher.presence(BOB), r.presence()[1]);
  await watcher.close();
  assert.equal(requestsOf(net, "SUBSCRIBE").at(-1)!.headers.get("Expires"), "0");
  await close();
});

Deno.test("PresenceWatcher: the six statuses round-trip from a PresenceAgent", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const agent = new PresenceAgent(bob, { unknown: "accept", status: "offline" });
  const r = recorder();
  const watcher = new PresenceWatcher(alice, { buddies: [BOB], onEvent: r.onEvent });
  await watcher.start();
  await until(net, () => r.presence().length === 1);
  for (const s of USER_STATUSES) {
    agent.setStatus(s, { note: `now ${s}` });
    await advance(clock, net, 1000);
  }
  const got = r.presence().map((e) => [e.status, e.note, e.basic]);
  assert.deepEqual(got, [
    ["offline", undefined, "closed"],
    ...USER_STATUSES.map((s) => [s, `now ${s}`, s === "offline" ? "closed" : "open"]),
  ]);
  watcher.close({ unsubscribe: false });
  await close();
});

Deno.test("A.3: two in-process agents watch each other", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const aliceAgent = new PresenceAgent(alice, { allow: [BOB], status: "busy" });
  const bobAgent = new PresenceAgent(bob, { allow: [ALICE], status: "away" });
  const ra = recorder();
  const rb = recorder();
  const aliceWatch = new PresenceWatcher(alice, {
    buddies: [BOB],
    agent: aliceAgent,
    onEvent: ra.onEvent,
  });
  const bobWatch = new PresenceWatcher(bob, {
    buddies: [ALICE],
    agent: bobAgent,
    onEvent: rb.onEvent,
  });
  await Promise.all([aliceWatch.start(), bobWatch.start()]);
  await until(net, () => ra.presence().length === 1 && rb.presence().length === 1);
  assert.equal(ra.presence(BOB)[0].status, "away");
  assert.equal(rb.presence(ALICE)[0].status, "busy");
  aliceAgent.setStatus("lunch");
  bobAgent.setStatus("on-the-phone");
  await advance(clock, net, 1000);
  assert.equal(ra.presence(BOB).at(-1)!.status, "on-the-phone");
  assert.equal(rb.presence(ALICE).at(-1)!.status, "lunch");
  // Alice leaves: Bob sees her offline; his subscription ends with probation, so he keeps it
  // and tries again later (a plain watcher sees her again after she restarts).
  await aliceAgent.close();
  await net.settled();
  assert.equal(rb.presence(ALICE).at(-1)!.status, "offline");
  const ended = rb.subs(ALICE).at(-1)!;
  assert.deepEqual([ended.state, ended.reason], ["terminated", "probation"]);
  assert.ok(Number(ended.retryIn) > 0, `a retry is planned: ${JSON.stringify(ended)}`);
  const seen = rb.subs(ALICE).length;
  await advance(clock, net, (Number(ended.retryIn) + 1) * 1000, 5000);
  const retried = rb.subs(ALICE).slice(seen);
  assert.ok(retried.length > 0, "bob subscribed again after retry_in");
  // Alice's agent is closed and refuses (480): kept, with the back-off.
  assert.deepEqual([retried[0].state, retried[0].status], ["failed", 480]);
  assert.ok(Number(retried[0].retryIn) > 0);
  await Promise.all([aliceWatch.close(), bobWatch.close()]);
  await close();
});

for (const first of ["alice", "bob"] as const) {
  Deno.test(`A.1/A.2: mutual subscription after 404 (${first} tries first)`, async () => {
    // The early one subscribes while the other is offline (404); when the
    // other comes online and subscribes back, the early one re-subscribes
    // at once (thesis 7.3.3) instead of waiting for its back-off.
    const { net, alice, bob, close } = await net3();
    const [earlyUa, lateUa] = first === "alice" ? [alice, bob] : [bob, alice];
    const [earlyUri, lateUri] = first === "alice" ? [ALICE, BOB] : [BOB, ALICE];
    offline(lateUa);
    const earlyAgent = new PresenceAgent(earlyUa, { allow: [lateUri] });
    const re = recorder();
    const earlyWatch = new PresenceWatcher(earlyUa, {
      buddies: [lateUri],
      agent: earlyAgent,
      onEvent: re.onEvent,
      random: () => 1,
    });
    await earlyWatch.start();
    assert.deepEqual(re.subs(lateUri), [{
      type: "subscription",
      uri: lateUri,
      state: "failed",
      status: 404,
      reason: "Not Found",
      retryIn: 30,
    }]);
    // The late one comes online: its agent replaces the 404 answer, its watcher subscribes.
    const lateAgent = new PresenceAgent(lateUa, { allow: [earlyUri], status: "busy" });
    const rl = recorder();
    const lateWatch = new PresenceWatcher(lateUa, {
      buddies: [earlyUri],
      agent: lateAgent,
      onEvent: rl.onEvent,
    });
    await lateWatch.start();
    // No clock movement at all: the re-SUBSCRIBE was triggered by the incoming one.
    await until(net, () => re.presence(lateUri).length === 1, "early sees late");
    await until(net, () => rl.presence(earlyUri).length === 1, "late sees early");
    assert.equal(re.presence(lateUri)[0].status, "busy");
    assert.equal(rl.presence(earlyUri)[0].status, "online");
    assert.equal(re.subs(lateUri).at(-1)!.state, "active");
    await Promise.all([earlyWatch.close(), lateWatch.close()]);
    await close();
  });
}

/**
 * bob has no presence agent (his UA answers SUBSCRIBE with 404), and alice starts watching him
 * with a recorder (no jitter in the back-off): her first SUBSCRIBE fails.
 */
async function aliceWatchesOfflineBob(alice: UserAgent, bob: UserAgent) {
  offline(bob);
  const r = recorder();
  const watcher = new PresenceWatcher(alice, {
    buddies: [BOB],
    onEvent: r.onEvent,
    random: () => 1,
  });
  await watcher.start();
  return { r, watcher };
}

Deno.test("without mutual subscription a failed buddy is retried with back-off", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const { r, watcher } = await aliceWatchesOfflineBob(alice, bob);
  assert.equal(r.subs(BOB)[0].retryIn, 30);
  await advance(clock, net, 30_000, 5000);
  assert.equal(r.subs(BOB)[1].retryIn, 60);
  new PresenceAgent(bob, { unknown: "accept" }); // bob comes online
  await advance(clock, net, 60_000, 5000);
  assert.equal(r.presence(BOB).length, 1);
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 3);
  // buddySubscribedToUs does nothing for a live subscription.
  assert.equal(watcher.buddySubscribedToUs(BOB), false);
  await watcher.close();
  await close();
});

Deno.test("a mutual re-send that fails again is followed by quick re-sends (2 s, 5 s), not the back-off", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const { r, watcher } = await aliceWatchesOfflineBob(alice, bob);
  assert.equal(r.subs(BOB)[0].retryIn, 30);
  // bob's watcher subscribed to us, but his agent is not up yet: the re-send fails again.
  assert.equal(watcher.buddySubscribedToUs(BOB), true);
  await until(net, () => r.subs(BOB).length === 2, "the failed re-send");
  assert.deepEqual([r.subs(BOB)[1].state, r.subs(BOB)[1].status], ["failed", 404]);
  assert.equal(r.subs(BOB)[1].retryIn, 2, "a quick re-send instead of the 60 s back-off");
  await advance(clock, net, 2000);
  assert.equal(r.subs(BOB)[2].retryIn, 5, "then one more");
  new PresenceAgent(bob, { unknown: "accept" }); // bob's agent is up now
  await advance(clock, net, 5000);
  assert.equal(r.presence(BOB).length, 1);
  assert.equal(r.subs(BOB).at(-1)!.state, "active");
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 4);
  await watcher.close();
  await close();
});

Deno.test("quick re-sends stop after two; then the normal back-off applies", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const { r, watcher } = await aliceWatchesOfflineBob(alice, bob);
  watcher.buddySubscribedToUs(BOB);
  await until(net, () => r.subs(BOB).length === 2, "the failed re-send");
  await advance(clock, net, 7000);
  assert.deepEqual(r.subs(BOB).map((e) => e.retryIn), [30, 2, 5, 240]);
  // Another mutual re-send that fails: a quick one is planned, then the watcher closes.
  watcher.buddySubscribedToUs(BOB);
  await until(net, () => r.subs(BOB).length === 5, "the second failed re-send");
  assert.equal(r.subs(BOB)[4].retryIn, 2);
  await watcher.close({ unsubscribe: false });
  const sent = requestsOf(net, "SUBSCRIBE").length;
  await advance(clock, net, 10_000);
  assert.equal(requestsOf(net, "SUBSCRIBE").length, sent, "the quick re-send was cancelled");
  await close();
});

Deno.test("PresenceWatcher.fetch() tells a failure without any response (local) from a refusal", async () => {
  const { clock, net, alice, bob, close } = await net3();
  offline(bob);
  const fetching = PresenceWatcher.fetch(alice, [BOB, "sip:nobody@192.0.2.99"]);
  await advance(clock, net, 40_000, 4000);
  const [refused, lost] = await fetching;
  assert.deepEqual(refused.error, { status: 404, reason: "Not Found" });
  assert.equal(lost.error?.status, 408);
  assert.equal(lost.error?.local, true);
  await close();
});

Deno.test("PresenceWatcher adds and removes buddies at run time", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const carol = await loopUa(net, "carol", "192.0.2.4", { clock });
  new PresenceAgent(bob, { unknown: "accept" });
  new PresenceAgent(carol, { unknown: "accept", status: "lunch" });
  const r = recorder();
  const watcher = new PresenceWatcher(alice, { buddies: [BOB], onEvent: r.onEvent });
  await watcher.start();
  await watcher.add("carol@192.0.2.4");
  await watcher.add(CAROL); // already watched
  await until(net, () => r.presence().length === 2);
  assert.deepEqual(watcher.buddies, [BOB, CAROL]);
  assert.equal(r.presence(CAROL)[0].status, "lunch");
  await watcher.remove(BOB);
  assert.deepEqual(watcher.buddies, [CAROL]);
  const last = requestsOf(net, "SUBSCRIBE").at(-1)!;
  assert.equal(last.uri.user, "bob");
  assert.equal(last.headers.get("Expires"), "0");
  await watcher.close();
  await Promise.all([close(), carol.close()]);
});

Deno.test("PresenceWatcher.fetch() fetches each buddy once (Expires: 0)", async () => {
  const { clock, net, alice, bob, close } = await net3();
  const carol = await loopUa(net, "carol", "192.0.2.4", { clock });
  offline(carol);
  new PresenceAgent(bob, { unknown: "accept", status: "busy", note: "do not disturb" });
  const results = await PresenceWatcher.fetch(alice, [BOB, CAROL]);
  assert.equal(results[0].uri, BOB);
  assert.equal(results[0].presence?.status, "busy");
  assert.equal(results[0].presence?.note, "do not disturb");
  assert.deepEqual(results[1], { uri: CAROL, error: { status: 404, reason: "Not Found" } });
  assert.ok(requestsOf(net, "SUBSCRIBE").every((s) => s.headers.get("Expires") === "0"));
  await Promise.all([close(), carol.close()]);
});

Deno.test("a list subscription (RFC 4662) is unpacked into per-buddy events", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock, tcp: true });
  const rls = await loopUa(net, "rls", "192.0.2.3", { clock, tcp: true });
  const LIST = "sip:friends@192.0.2.3";
  let dialog: Dialog | undefined;
  rls.handle("SUBSCRIBE", async (incoming) => {
    const req = incoming.request;
    const toTag = generateTag();
    const contact = `<${
      formatUri(await rls.contactFor({ protocol: "udp", ...incoming.info.remote }))
    }>`;
    dialog = Dialog.createUas(
      req,
      createResponse(req, 200, { toTag, headers: { Contact: contact } }),
    );
    await incoming.respond(200, {
      toTag,
      headers: [["Contact", contact], ["Expires", "3600"], ["Require", "eventlist"]],
    });
  });
  const r = recorder();
  const watcher = new PresenceWatcher(alice, { list: LIST, onEvent: r.onEvent });
  await watcher.start();
  const [sub] = requestsOf(net, "SUBSCRIBE");
  assert.equal(sub.headers.get("Supported"), "eventlist");
  assert.equal(
    sub.headers.get("Accept"),
    "application/pidf+xml, application/rlmi+xml, multipart/related",
  );
  const sendList = async (version: number, fullState: boolean, bobStatus: "busy" | "away") => {
    const { contentType, body } = buildListNotify(
      {
        uri: LIST,
        version,
        fullState,
        names: [],
        resources: [
          {
            uri: BOB,
            names: [{ text: "Bob" }],
            instances: [{ id: "b1", state: "active", cid: "bob@rls" }],
          },
          ...(fullState
            ? [{
              uri: CAROL,
              names: [],
              instances: [{ id: "c1", state: "pending" as const }],
            }]
            : []),
        ],
      },
      {
        "bob@rls": {
          contentType: "application/pidf+xml",
          body: statusToPidf(bobStatus, { entity: BOB }),
        },
      },
    );
    const notify = dialog!.createRequest("NOTIFY", {
      headers: [["Event", "presence"], ["Subscription-State", "active;expires=3600"], [
        "Require",
        "eventlist",
      ]],
      body,
      contentType,
    });
    return (await rls.send(notify, { dialog })).response.status;
  };
  assert.equal(await sendList(0, true, "busy"), 200);
  await net.settled();
  assert.deepEqual(
    r.subs().map((e) => [e.uri, e.state, e.list]),
    [[LIST, "active", undefined], [BOB, "active", LIST], [CAROL, "pending", LIST]],
  );
  assert.deepEqual(r.presence().map((e) => [e.uri, e.status, e.list, e.name]), [[
    BOB,
    "busy",
    LIST,
    "Bob",
  ]]);
  // A partial update with the same state of Bob reports nothing; a change does.
  assert.equal(await sendList(1, false, "busy"), 200);
  assert.equal(await sendList(2, false, "away"), 200);
  await net.settled();
  assert.deepEqual(r.presence().map((e) => e.status), ["busy", "away"]);
  assert.equal(r.subs().length, 3);
  await watcher.close({ unsubscribe: false });
  await Promise.all([alice.close(), rls.close()]);
});

Deno.test("PresenceWatcher.close({ unsubscribe: false }) cuts short an unsubscribe that waits", async () => {
  const { net, alice, bob, close } = await net3();
  // Bob answers every SUBSCRIBE, sends one NOTIFY, and never the final one.
  bob.handle("SUBSCRIBE", async (incoming) => {
    const req = incoming.request;
    const toTag = generateTag();
    const contact = `<${
      formatUri(await bob.contactFor({ protocol: "udp", ...incoming.info.remote }))
    }>`;
    const dialog = Dialog.createUas(
      req,
      createResponse(req, 200, { toTag, headers: { Contact: contact } }),
    );
    bob.addDialog(dialog.id, (i) => i.respond(200, { headers: [["Expires", "0"]] }));
    await incoming.respond(200, { toTag, headers: [["Contact", contact], ["Expires", "3600"]] });
    const notify = dialog.createRequest("NOTIFY", {
      headers: [["Event", "presence"], ["Subscription-State", "active;expires=3600"]],
      body: statusToPidf("online", { entity: BOB }),
      contentType: "application/pidf+xml",
    });
    await bob.send(notify, { dialog });
  });
  const r = recorder();
  const watcher = new PresenceWatcher(alice, { buddies: [BOB], onEvent: r.onEvent });
  await watcher.start();
  await until(net, () => r.presence().length === 1);
  let done = false;
  const unsubscribing = watcher.close().then(() => done = true);
  await net.settled();
  assert.equal(responsesTo(net, "SUBSCRIBE").at(-1)!.status, 200);
  assert.equal(done, false, "still waiting for a final NOTIFY");
  await watcher.close({ unsubscribe: false });
  await unsubscribing;
  assert.equal(watcher.subscription(BOB)!.state, "terminated");
  await close();
});

for (const first of ["alice", "bob"] as const) {
  Deno.test(`A.1/A.2 through a proxy: 404 while offline, then mutual subscription (${first} first)`, async () => {
    const clock = new ManualClock();
    const net = new LoopNetwork();
    const proxy = new LoopProxy(net, "192.0.2.100", "example.test");
    const PROXY = "sip:192.0.2.100";
    const users = {
      alice: await loopUa(net, "alice", "192.0.2.1", {
        clock,
        aor: "alice@example.test",
        proxy: PROXY,
      }),
      bob: await loopUa(net, "bob", "192.0.2.2", { clock, aor: "bob@example.test", proxy: PROXY }),
    };
    const uriOf = { alice: "sip:alice@example.test", bob: "sip:bob@example.test" };
    const late = first === "alice" ? "bob" : "alice";
    const online = async (who: "alice" | "bob") => {
      const ua = users[who];
      const other = who === "alice" ? "bob" : "alice";
      const reg = new Registration(ua, { registrar: PROXY });
      await reg.register();
      const agent = new PresenceAgent(ua, { allow: [uriOf[other]] });
      const r = recorder();
      const watcher = new PresenceWatcher(ua, {
        buddies: [uriOf[other]],
        agent,
        onEvent: r.onEvent,
        random: () => 1,
      });
      await watcher.start();
      return { reg, agent, r, watcher };
    };
    const early = await online(first);
    // The proxy has no contact for the other one: 404, kept with a back-off.
    assert.deepEqual(early.r.subs(uriOf[late]).map((e) => [e.state, e.status, e.retryIn]), [
      ["failed", 404, 30],
    ]);
    const lateOne = await online(late);
    // Without the clock moving: the early one re-subscribed when the late one's SUBSCRIBE came.
    await until(net, () => early.r.presence(uriOf[late]).length === 1, "early sees late");
    await until(net, () => lateOne.r.presence(uriOf[first]).length === 1, "late sees early");
    assert.equal(early.r.presence(uriOf[late])[0].status, "online");
    const subscribes = requestsOf(net, "SUBSCRIBE").filter((s) => s.uri.user === late);
    assert.equal(subscribes.length, 3, "the 404ed one at the caller and at the proxy, then again");
    lateOne.agent.setStatus("busy");
    await advance(clock, net, 1000);
    assert.equal(early.r.presence(uriOf[late]).at(-1)!.status, "busy");
    for (const one of [early, lateOne]) {
      await one.watcher.close({ unsubscribe: false });
      await one.agent.close({ notify: false });
      one.reg.stop();
    }
    await Promise.all([users.alice.close(), users.bob.close(), proxy.close()]);
  });
}

Deno.test("A.4 across two domains, each with its own proxy", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const proxyA = new LoopProxy(net, "192.0.2.100", "a.test", { "b.test": "192.0.2.200" });
  const proxyB = new LoopProxy(net, "192.0.2.200", "b.test", { "a.test": "192.0.2.100" });
  const alice = await loopUa(net, "alice", "192.0.2.1", {
    clock,
    aor: "alice@a.test",
    proxy: "sip:192.0.2.100",
  });
  const bob = await loopUa(net, "bob", "192.0.2.2", {
    clock,
    aor: "bob@b.test",
    proxy: "sip:192.0.2.200",
  });
  await new Registration(alice, { registrar: "sip:192.0.2.100" }).register();
  await new Registration(bob, { registrar: "sip:192.0.2.200" }).register();
  const agents = [
    new PresenceAgent(alice, { allow: ["sip:bob@b.test"], status: "away" }),
    new PresenceAgent(bob, { allow: ["sip:alice@a.test"], status: "lunch" }),
  ];
  const ra = recorder();
  const rb = recorder();
  const wa = new PresenceWatcher(alice, { buddies: ["sip:bob@b.test"], onEvent: ra.onEvent });
  const wb = new PresenceWatcher(bob, { buddies: ["sip:alice@a.test"], onEvent: rb.onEvent });
  await Promise.all([wa.start(), wb.start()]);
  await until(net, () => ra.presence().length === 1 && rb.presence().length === 1);
  assert.equal(ra.presence("sip:bob@b.test")[0].status, "lunch");
  assert.equal(rb.presence("sip:alice@a.test")[0].status, "away");
  // The SUBSCRIBE crossed both proxies: two Vias of theirs on arrival.
  const atBob = requestsOf(net, "SUBSCRIBE").find((s) => s.uri.host === "192.0.2.2")!;
  assert.equal(atBob.via.length, 3);
  await Promise.all([wa.close({ unsubscribe: false }), wb.close({ unsubscribe: false })]);
  await Promise.all(agents.map((a) => a.close({ notify: false })));
  await Promise.all([alice.close(), bob.close(), proxyA.close(), proxyB.close()]);
});
