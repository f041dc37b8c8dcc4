import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { Dialog } from "../lib/sip/dialog.ts";
import { createResponse, formatUri, type SipRequest } from "../lib/sip/message.ts";
import { generateTag } from "../lib/sip/transaction/mod.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import type { IncomingRequest, RespondOptions, UserAgent } from "../lib/sip/ua.ts";
import {
  formatEvent,
  formatSubscriptionState,
  parseEvent,
  parseSubscriptionState,
  resubscribeDelay,
  sameEvent,
} from "../lib/sip/events/headers.ts";
import { Notifier, type NotifierEvent } from "../lib/sip/events/notifier.ts";
import {
  Subscription,
  type SubscriptionNotify,
  type SubscriptionStateChange,
} from "../lib/sip/events/subscriber.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import { advance, loopUa, requestsOf, responsesTo, until } from "./_presence_util.ts";

const dec = new TextDecoder();
const BOB = "sip:bob@192.0.2.2";

async function pair(clock = new ManualClock()) {
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  return { net, clock, alice, bob, close: () => Promise.all([alice.close(), bob.close()]) };
}

/** A notifier for the "test" package whose state is a text. */
function testNotifier(ua: UserAgent, options: { minInterval?: number; maxExpires?: number } = {}) {
  const events: NotifierEvent[] = [];
  const model = { text: "s1" };
  const notifier = new Notifier(ua, { onEvent: (e) => events.push(e) });
  notifier.addPackage({
    event: "test",
    contentTypes: ["text/plain"],
    minInterval: options.minInterval,
    maxExpires: options.maxExpires,
    content: () => ({ body: model.text, contentType: "text/plain" }),
  });
  return { notifier, events, model };
}

function subscriber(ua: UserAgent, options: { expires?: number; random?: () => number } = {}) {
  const notes: SubscriptionNotify[] = [];
  const states: SubscriptionStateChange[] = [];
  const sub = new Subscription(ua, BOB, {
    event: "test",
    accept: ["text/plain"],
    expires: options.expires,
    random: options.random ?? (() => 1),
    onNotify: (n) => notes.push(n),
    onState: (s) => states.push(s),
  });
  return { sub, notes, states };
}

/** Answers a SUBSCRIBE by hand: a UAS dialog with a fresh tag, and its 2xx options. */
async function manualDialog(
  ua: UserAgent,
  incoming: IncomingRequest,
  toTag = generateTag(),
  expires = 3600,
) {
  const req = incoming.request;
  const contact = `<${
    formatUri(
      await ua.contactFor({
        protocol: "udp",
        host: incoming.info.remote.host,
        port: incoming.info.remote.port,
      }),
    )
  }>`;
  const dialog = Dialog.createUas(
    req,
    createResponse(req, 200, { toTag, headers: [["Contact", contact]] }),
  );
  const answer: RespondOptions = {
    toTag,
    headers: [["Contact", contact], ["Expires", String(expires)]],
  };
  return { dialog, answer };
}

function notifyIn(dialog: Dialog, state: string, body?: string, event = "test"): SipRequest {
  return dialog.createRequest("NOTIFY", {
    headers: [["Event", event], ["Subscription-State", state]],
    body,
    contentType: body === undefined ? undefined : "text/plain",
  });
}

// ------------------------------------------------------------------ headers

Deno.test("parseEvent() lower-cases the package and splits off id", () => {
  const e = parseEvent("Presence;id=7;foo");
  assert.equal(e.package, "presence");
  assert.equal(e.id, "7");
  assert.deepEqual(e.params, { foo: null });
  assert.equal(formatEvent(e), "presence;id=7;foo");
  assert.ok(sameEvent(e, parseEvent("presence;id=7")));
  assert.ok(!sameEvent(e, parseEvent("presence")));
  assert.throws(() => parseEvent("pres ence"), SyntaxError);
});

Deno.test("parseSubscriptionState() reads expires, reason and retry-after", () => {
  const s = parseSubscriptionState("Terminated;reason=Probation;retry-after=30");
  assert.equal(s.state, "terminated");
  assert.equal(s.reason, "probation");
  assert.equal(s.retryAfter, 30);
  assert.equal(parseSubscriptionState("active;expires=3599").expires, 3599);
  assert.throws(() => parseSubscriptionState("active;expires=soon"), SyntaxError);
  assert.equal(
    formatSubscriptionState({ state: "terminated", reason: "giveup", retryAfter: 5 }),
    "terminated;reason=giveup;retry-after=5",
  );
});

Deno.test("resubscribeDelay() follows the termination reason (RFC 6665 4.1.3)", async (t) => {
  const opts = { random: () => 1, backoffBase: 30 };
  await t.step("deactivated and timeout: at once", () => {
    assert.equal(resubscribeDelay("deactivated", opts), 0);
    assert.equal(resubscribeDelay("timeout", opts), 0);
  });
  await t.step("repeated immediate terminations back off", () => {
    assert.equal(resubscribeDelay("deactivated", { ...opts, failures: 1 }), 30);
    assert.equal(resubscribeDelay("deactivated", { ...opts, failures: 2 }), 60);
  });
  await t.step("probation and giveup: retry-after, else back-off", () => {
    assert.equal(resubscribeDelay("probation", { ...opts, retryAfter: 90 }), 90);
    assert.equal(resubscribeDelay("giveup", opts), 30);
  });
  await t.step("rejected, noresource, invariant: never", () => {
    for (const r of ["rejected", "noresource", "invariant"]) {
      assert.equal(resubscribeDelay(r, { ...opts, retryAfter: 5 }), undefined);
    }
  });
  await t.step("unknown reason: like deactivated, retry-after honoured", () => {
    assert.equal(resubscribeDelay("moved-away", opts), 0);
    assert.equal(resubscribeDelay("moved-away", { ...opts, retryAfter: 12 }), 12);
  });
});

// ---------------------------------------------------------------- lifecycle

Deno.test("Subscription gets 200 and a NOTIFY at once, later NOTIFYs, and unsubscribes", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier, events, model } = testNotifier(bob);
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1, "first NOTIFY");
  assert.equal(dec.decode(notes[0].body), "s1");
  assert.equal(notes[0].contentType, "text/plain");
  assert.equal(notes[0].state.state, "active");
  assert.equal(sub.state, "active");
  assert.deepEqual(states.map((s) => s.state), ["active"]);
  const [subscribe] = requestsOf(net, "SUBSCRIBE");
  assert.equal(subscribe.headers.get("Event"), "test");
  assert.equal(subscribe.headers.get("Expires"), "3600");
  assert.equal(subscribe.headers.get("Accept"), "text/plain");
  const [ok] = responsesTo(net, "SUBSCRIBE");
  assert.equal(ok.kind === "response" && ok.status, 200);
  assert.equal(ok.headers.get("Expires"), "3600");
  assert.deepEqual(events.map((e) => e.type), ["added"]);
  assert.equal(events[0].subscription.subscriberUri, "sip:alice@192.0.2.1");

  model.text = "s2";
  notifier.notifyAll("test");
  await until(net, () => notes.length === 2, "second NOTIFY");
  assert.equal(dec.decode(notes[1].body), "s2");

  await sub.unsubscribe();
  assert.equal(sub.state, "terminated");
  assert.equal(notes.at(-1)!.state.state, "terminated");
  assert.equal(notes.at(-1)!.state.reason, "timeout");
  assert.equal(requestsOf(net, "SUBSCRIBE").at(-1)!.headers.get("Expires"), "0");
  await until(net, () => events.at(-1)!.type === "removed", "removed event");
  assert.equal(notifier.subscriptions().length, 0);
  assert.equal(states.at(-1)!.state, "terminated");
  assert.equal(states.at(-1)!.retryIn, undefined);
  await close();
});

Deno.test("Notifier answers 489 with Allow-Events to an unknown package; the subscriber gives up", async () => {
  const { net, alice, bob, close } = await pair();
  testNotifier(bob);
  const states: SubscriptionStateChange[] = [];
  const sub = new Subscription(alice, BOB, { event: "dialog", onState: (s) => states.push(s) });
  await sub.start();
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 489);
  assert.equal(res.headers.get("Allow-Events"), "test");
  assert.deepEqual(states, [{ state: "failed", status: 489, reason: "Bad Event" }]);
  assert.equal(sub.state, "terminated");
  await close();
});

Deno.test("Notifier answers 400 to a SUBSCRIBE without an Event header or with a bad one", async () => {
  const { alice, bob, close } = await pair();
  testNotifier(bob);
  for (const event of [undefined, ";id=1"]) {
    const req = alice.createRequest("SUBSCRIBE", BOB, {
      headers: event === undefined ? [] : [["Event", event]],
    });
    const { response } = await alice.send(req);
    assert.equal(response.status, 400);
    assert.equal(response.reason, "Missing or bad Event header");
  }
  await close();
});

Deno.test("Notifier answers 406 when Accept allows none of the package's types", async () => {
  const { net, alice, bob, close } = await pair();
  testNotifier(bob);
  const sub = new Subscription(alice, BOB, { event: "test", accept: ["application/xml"] });
  await sub.start();
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 406);
  sub.close();
  await close();
});

Deno.test("Subscription retries with the Min-Expires of a 423", async () => {
  const { net, alice, bob, close } = await pair();
  const n = new Notifier(bob);
  n.addPackage({ event: "test", minExpires: 600, content: () => undefined });
  const { sub, states } = subscriber(alice, { expires: 60 });
  await sub.start();
  const subs = requestsOf(net, "SUBSCRIBE");
  assert.deepEqual(subs.map((s) => s.headers.get("Expires")), ["60", "600"]);
  await until(net, () => states.length > 0);
  assert.equal(states[0].state, "active");
  sub.close();
  await close();
});

Deno.test("Subscription fetch (Expires: 0) resolves with the terminated NOTIFY", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier, events } = testNotifier(bob);
  const n = await Subscription.fetch(alice, BOB, { event: "test", accept: ["text/plain"] });
  assert.equal(dec.decode(n.body), "s1");
  assert.equal(n.state.state, "terminated");
  assert.equal(requestsOf(net, "SUBSCRIBE")[0].headers.get("Expires"), "0");
  await until(net, () => events.some((e) => e.type === "removed"));
  assert.equal(notifier.subscriptions().length, 0);
  await close();
});

Deno.test("Subscription fetch rejects with the failure status", async () => {
  const { alice, bob, close } = await pair();
  testNotifier(bob);
  await assert.rejects(
    Subscription.fetch(alice, BOB, { event: "nope" }),
    (e) => e instanceof SipRequestError && e.status === 489,
  );
  await close();
});

// ------------------------------------------------------- NOTIFY before 2xx

Deno.test("a NOTIFY that arrives before the 2xx creates the dialog; the 2xx joins it", async () => {
  const { alice, bob, close } = await pair();
  bob.handle("SUBSCRIBE", async (incoming) => {
    const { dialog, answer } = await manualDialog(bob, incoming);
    // Out of order: the NOTIFY goes first, and is answered, before the 200.
    const { response } = await bob.send(notifyIn(dialog, "active;expires=3600", "early"), {
      dialog,
    });
    assert.equal(response.status, 200);
    await incoming.respond(200, answer);
  });
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  assert.equal(notes.length, 1);
  assert.equal(dec.decode(notes[0].body), "early");
  assert.equal(sub.dialogs.length, 1);
  assert.equal(states[0].state, "active");
  assert.equal(sub.state, "active");
  sub.close();
  await close();
});

Deno.test("a NOTIFY for another event package gets 489", async () => {
  const { net, alice, bob, close } = await pair();
  let status = 0;
  bob.handle("SUBSCRIBE", async (incoming) => {
    const { dialog, answer } = await manualDialog(bob, incoming);
    await incoming.respond(200, answer);
    status = (await bob.send(notifyIn(dialog, "active", "x", "other"), { dialog })).response
      .status;
  });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => status !== 0);
  assert.equal(status, 489);
  assert.equal(notes.length, 0);
  sub.close();
  await close();
});

Deno.test("forked NOTIFYs: each fork is its own dialog and ends on its own", async () => {
  const { net, alice, bob, close } = await pair();
  const forks: Dialog[] = [];
  bob.handle("SUBSCRIBE", async (incoming) => {
    const a = await manualDialog(bob, incoming);
    const b = await manualDialog(bob, incoming); // the second device behind a forking proxy
    forks.push(a.dialog, b.dialog);
    await incoming.respond(200, a.answer);
    await bob.send(notifyIn(a.dialog, "active;expires=3600", "desk"), { dialog: a.dialog });
    await bob.send(notifyIn(b.dialog, "pending;expires=3600", "mobile"), { dialog: b.dialog });
  });
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 2, "two NOTIFYs");
  assert.equal(sub.dialogs.length, 2);
  assert.notEqual(notes[0].dialog.remoteTag, notes[1].dialog.remoteTag);
  assert.equal(sub.state, "active");
  // One fork ends: the subscription lives on through the other.
  const end = await bob.send(notifyIn(forks[0], "terminated;reason=noresource"), {
    dialog: forks[0],
  });
  assert.equal(end.response.status, 200);
  await net.settled();
  assert.equal(sub.dialogs.length, 1);
  assert.equal(sub.state, "pending");
  assert.ok(!states.some((s) => s.state === "terminated"));
  // The fork that ended is gone: a NOTIFY in it gets 481.
  forks[0] = new Dialog({
    id: forks[0].id,
    state: "confirmed",
    local: forks[0].local,
    remote: forks[0].remote,
    remoteTarget: forks[0].remoteTarget,
    routeSet: [],
    secure: false,
    localSeq: 100,
  });
  const late = await bob.send(notifyIn(forks[0], "active", "late"), { dialog: forks[0] });
  assert.equal(late.response.status, 481);
  await bob.send(notifyIn(forks[1], "terminated;reason=rejected"), { dialog: forks[1] });
  await net.settled();
  assert.equal(sub.dialogs.length, 0);
  assert.equal(sub.state, "terminated");
  assert.deepEqual(states.at(-1), { state: "terminated", reason: "rejected" });
  await close();
});

Deno.test("no NOTIFY within 64*T1 of the 2xx: the subscription failed and is retried", async () => {
  const { net, clock, alice, bob, close } = await pair();
  bob.handle("SUBSCRIBE", async (incoming) => {
    const { answer } = await manualDialog(bob, incoming);
    await incoming.respond(200, answer);
  });
  const { sub, states } = subscriber(alice);
  await sub.start();
  assert.equal(states.length, 0);
  await advance(clock, net, 32_000);
  assert.equal(states[0].state, "failed");
  assert.equal(states[0].status, 408);
  assert.equal(states[0].retryIn, 30);
  sub.close();
  await close();
});

// ------------------------------------------------------ refresh and expiry

Deno.test("Subscription refreshes before expiry within the dialog; the notifier NOTIFYs on refresh", async () => {
  const { net, clock, alice, bob, close } = await pair();
  const { events } = testNotifier(bob, { maxExpires: 120 });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  assert.equal(sub.expires, 120);
  await advance(clock, net, 107_000);
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 1);
  await advance(clock, net, 2000); // 120 - 12 = 108 s: the refresh
  const subs = requestsOf(net, "SUBSCRIBE");
  assert.equal(subs.length, 2);
  assert.equal(subs[1].callId, subs[0].callId);
  assert.equal(subs[1].cseq.seq, subs[0].cseq.seq + 1);
  assert.ok(subs[1].to.params.tag);
  assert.equal(events.map((e) => e.type).join(), "added,refreshed");
  assert.equal(notes.length, 2);
  // Refreshes keep it alive well past the first expiry.
  await advance(clock, net, 300_000, 2000);
  assert.equal(sub.state, "active");
  assert.ok(requestsOf(net, "SUBSCRIBE").length >= 4);
  sub.close();
  await close();
});

Deno.test("Notifier ends an expired subscription with reason=timeout", async () => {
  const { net, clock, alice, bob, close } = await pair();
  const { notifier, events } = testNotifier(bob, { maxExpires: 120 });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  // The subscriber vanishes without unsubscribing: no refresh comes.
  sub.close();
  await advance(clock, net, 121_000, 5000);
  const last = requestsOf(net, "NOTIFY").at(-1)!;
  assert.equal(last.headers.get("Subscription-State"), "terminated;reason=timeout");
  assert.equal(notifier.subscriptions().length, 0);
  assert.equal(events.at(-1)!.type, "removed");
  await close();
});

Deno.test("a NOTIFY answered 481 removes the subscription at the notifier", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier, events, model } = testNotifier(bob);
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  sub.close(); // the subscriber forgets the dialog
  model.text = "s2";
  notifier.notifyAll("test");
  await until(net, () => events.some((e) => e.type === "removed"), "removed");
  assert.equal(
    responsesTo(net, "NOTIFY").at(-1)!.kind === "response" &&
      (responsesTo(net, "NOTIFY").at(-1) as { status: number }).status,
    481,
  );
  assert.equal(events.at(-1)!.reason, "481");
  assert.equal(notifier.subscriptions().length, 0);
  await close();
});

Deno.test("a refresh answered 481 ends the subscription; a new one is sent at once", async () => {
  const { net, clock, alice, bob, close } = await pair();
  const { notifier } = testNotifier(bob, { maxExpires: 120 });
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  // The notifier loses its state (a restart): its dialog handler is gone.
  const [old] = notifier.subscriptions();
  bob.removeDialog(old.dialog.id);
  await advance(clock, net, 109_000, 3000);
  const subs = requestsOf(net, "SUBSCRIBE");
  assert.equal(subs.length, 3); // initial, refresh (481), new initial
  assert.ok(subs[2].callId !== subs[0].callId);
  assert.equal(subs[2].to.params.tag, undefined);
  const terminated = states.find((s) => s.state === "terminated")!;
  assert.equal(terminated.status, 481);
  assert.equal(terminated.retryIn, 0);
  assert.equal(sub.state, "active");
  sub.close();
  await close();
});

// --------------------------------------------------- termination reasons

Deno.test("termination reasons decide the re-subscribe (RFC 6665 4.1.3)", async (t) => {
  for (
    const [reason, retryAfter, expected] of [
      ["deactivated", undefined, 0],
      ["timeout", undefined, 0],
      ["probation", 120, 120],
      ["giveup", undefined, 30],
      ["rejected", undefined, undefined],
      ["noresource", undefined, undefined],
      ["invariant", undefined, undefined],
    ] as const
  ) {
    await t.step(`${reason}: ${expected ?? "never"}`, async () => {
      const { net, clock, alice, bob, close } = await pair();
      const { notifier } = testNotifier(bob);
      const { sub, notes, states } = subscriber(alice);
      await sub.start();
      await until(net, () => notes.length === 1);
      await notifier.subscriptions()[0].terminate(reason, { retryAfter });
      await net.settled();
      const change = states.find((s) => s.state === "terminated")!;
      assert.equal(change.reason, reason);
      assert.equal(change.retryIn, expected);
      if (expected === undefined) {
        assert.equal(sub.state, "terminated");
        await advance(clock, net, 3_600_000, 600_000);
        assert.equal(requestsOf(net, "SUBSCRIBE").length, 1);
      } else {
        assert.equal(sub.state, expected === 0 ? "active" : "waiting");
        await advance(clock, net, expected * 1000 + 1000, 5000);
        assert.equal(requestsOf(net, "SUBSCRIBE").length, 2);
        assert.equal(sub.state, "active");
      }
      sub.close();
      await close();
    });
  }
});

Deno.test("a terminated subscription can be revived with retryNow()", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier } = testNotifier(bob);
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await notifier.subscriptions()[0].terminate("noresource");
  await net.settled();
  assert.equal(sub.state, "terminated");
  assert.equal(sub.retryNow(), true);
  await until(net, () => sub.state === "active");
  assert.equal(sub.retryNow(), false);
  sub.close();
  await close();
});

Deno.test("failures back off: 480, then double the delay, Retry-After wins", async () => {
  const { net, clock, alice, bob, close } = await pair();
  let answers = 0;
  bob.handle("SUBSCRIBE", async (incoming) => {
    answers++;
    if (answers === 3) {
      await incoming.respond(503, { headers: [["Retry-After", "300"]] });
    } else await incoming.respond(480);
  });
  const { sub, states } = subscriber(alice);
  await sub.start();
  assert.deepEqual(states[0], {
    state: "failed",
    status: 480,
    reason: "Temporarily Unavailable",
    retryIn: 30,
  });
  await advance(clock, net, 30_000, 5000);
  assert.equal(answers, 2);
  assert.equal(states[1].retryIn, 60);
  await advance(clock, net, 60_000, 5000);
  assert.equal(answers, 3);
  assert.equal(states[2].status, 503);
  assert.equal(states[2].retryIn, 300);
  assert.equal(sub.state, "waiting");
  sub.close();
  await close();
});

// ---------------------------------------------- pending and rate control

Deno.test("a pending subscription gets 202 and pending NOTIFY; activate() makes it active", async () => {
  const { net, alice, bob, close } = await pair();
  const n = new Notifier(bob);
  n.addPackage({
    event: "test",
    authorize: () => "pending",
    content: (s) => ({ body: s.state, contentType: "text/plain" }),
  });
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  const [res] = responsesTo(net, "SUBSCRIBE");
  assert.equal(res.kind === "response" && res.status, 202);
  assert.match(notes[0].request.headers.get("Subscription-State")!, /^pending;expires=\d+$/);
  assert.equal(sub.state, "pending");
  n.subscriptions()[0].activate();
  await until(net, () => notes.length === 2);
  assert.equal(dec.decode(notes[1].body), "active");
  assert.deepEqual(states.map((s) => s.state), ["pending", "active"]);
  sub.close();
  await close();
});

Deno.test("minInterval merges changes: one NOTIFY per interval, the last state gets through", async () => {
  const { net, clock, alice, bob, close } = await pair();
  const { notifier, model } = testNotifier(bob, { minInterval: 1000 });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  for (const text of ["a", "b", "c"]) {
    model.text = text;
    notifier.notifyAll("test");
    await net.settled();
  }
  assert.equal(notes.length, 1, "held back within the interval");
  await advance(clock, net, 1000, 250);
  assert.deepEqual(notes.map((n) => dec.decode(n.body)), ["s1", "c"]);
  await advance(clock, net, 5000);
  assert.equal(notes.length, 2, "nothing redundant afterwards");
  sub.close();
  await close();
});

Deno.test("NOTIFYs go one at a time and in order", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier, model } = testNotifier(bob);
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  for (const text of ["t1", "t2", "t3", "t4"]) {
    model.text = text;
    notifier.notifyAll("test");
  }
  await until(net, () => dec.decode(notes.at(-1)!.body) === "t4");
  const seen = notes.map((n) => dec.decode(n.body));
  assert.deepEqual(seen, [...seen].sort(), "never an older state after a newer one");
  const cseqs = notes.map((n) => n.request.cseq.seq);
  assert.deepEqual(cseqs, [...cseqs].sort((a, b) => a - b));
  sub.close();
  await close();
});

Deno.test("Notifier.close() ends every subscription with noresource", async () => {
  const { net, alice, bob, close } = await pair();
  const { notifier } = testNotifier(bob);
  const { sub, notes, states } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await notifier.close();
  await net.settled();
  assert.equal(states.at(-1)!.reason, "noresource");
  assert.equal(sub.state, "terminated");
  await close();
});

Deno.test("unsubscribe() while waiting to retry cancels the retry and sends nothing", async () => {
  const { net, clock, alice, bob, close } = await pair();
  bob.handle("SUBSCRIBE", (incoming) => incoming.respond(480));
  const { sub, states } = subscriber(alice);
  await sub.start();
  assert.equal(sub.state, "waiting");
  await sub.unsubscribe();
  assert.deepEqual(states.at(-1), { state: "terminated" });
  await advance(clock, net, 3_600_000, 600_000);
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 1);
  assert.equal(sub.retryNow(), false);
  await assert.rejects(sub.start(), TypeError);
  await close();
});

Deno.test("start() on a live subscription sends nothing more", async () => {
  const { net, alice, bob, close } = await pair();
  testNotifier(bob);
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  await sub.start();
  assert.equal(sub.retryNow(), false);
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 1);
  sub.close();
  await close();
});

Deno.test("a NOTIFY with an old CSeq is refused with 500", async () => {
  const { net, alice, bob, close } = await pair();
  let dialog: Dialog | undefined;
  bob.handle("SUBSCRIBE", async (incoming) => {
    const made = await manualDialog(bob, incoming);
    dialog = made.dialog;
    await incoming.respond(200, made.answer);
  });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  const first = await bob.send(notifyIn(dialog!, "active", "new"), { dialog });
  assert.equal(first.response.status, 200);
  const stale = notifyIn(dialog!, "active", "old");
  stale.headers.set("CSeq", `${first.request.cseq.seq - 1} NOTIFY`);
  const second = await bob.send(stale, { dialog });
  assert.equal(second.response.status, 500);
  await net.settled();
  assert.deepEqual(notes.map((n) => dec.decode(n.body)), ["new"]);
  sub.close();
  await close();
});

Deno.test("conditional refresh (RFC 5839): 204 without NOTIFY when the state is unchanged", async () => {
  const { net, alice, bob, close } = await pair();
  const n = new Notifier(bob);
  const model = { text: "s1" };
  n.addPackage({
    event: "test",
    entityTags: true,
    minInterval: 60_000,
    content: () => ({ body: model.text, contentType: "text/plain" }),
  });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await until(net, () => notes.length === 1);
  const etag = notes[0].request.headers.get("SIP-ETag");
  assert.ok(etag);
  await sub.refresh();
  await net.settled();
  assert.equal(requestsOf(net, "SUBSCRIBE")[1].headers.get("Suppress-If-Match"), etag);
  assert.equal(responsesTo(net, "SUBSCRIBE")[1].status, 204);
  assert.equal(notes.length, 1, "no NOTIFY for a state the subscriber has");
  // A change held back by the rate limit: the refresh must not be suppressed.
  model.text = "s2";
  n.notifyAll("test");
  await sub.refresh();
  await until(net, () => notes.length === 2);
  assert.equal(responsesTo(net, "SUBSCRIBE")[2].status, 200);
  assert.equal(dec.decode(notes[1].body), "s2");
  assert.notEqual(notes[1].request.headers.get("SIP-ETag"), etag);
  sub.close();
  await close();
});

Deno.test("a NOTIFY with a shorter expires brings the refresh forward", async () => {
  const { net, clock, alice, bob, close } = await pair();
  let dialog: Dialog | undefined;
  bob.handle("SUBSCRIBE", async (incoming) => {
    const made = await manualDialog(bob, incoming);
    dialog = made.dialog;
    bob.addDialog(made.dialog.id, (i) => i.respond(200, { headers: [["Expires", "100"]] }));
    await incoming.respond(200, made.answer); // Expires: 3600
  });
  const { sub, notes } = subscriber(alice);
  await sub.start();
  await bob.send(notifyIn(dialog!, "active;expires=100", "x"), { dialog });
  await net.settled();
  assert.equal(notes.length, 1);
  assert.equal(sub.expires, 100);
  await advance(clock, net, 95_000, 5000); // refresh at 100 - 10 = 90 s
  assert.equal(requestsOf(net, "SUBSCRIBE").length, 2);
  sub.close();
  await close();
});

Deno.test("a refresh answered 500 keeps the subscription until it expires, retrying meanwhile", async () => {
  const { net, clock, alice, bob, close } = await pair();
  let dialog: Dialog | undefined;
  let refreshes = 0;
  bob.handle("SUBSCRIBE", async (incoming) => {
    const made = await manualDialog(bob, incoming, generateTag(), 200);
    dialog = made.dialog;
    bob.addDialog(made.dialog.id, (i) => {
      refreshes++;
      return i.respond(500);
    });
    await incoming.respond(200, made.answer);
  });
  const { sub, notes, states } = subscriber(alice, { expires: 200 });
  await sub.start();
  await bob.send(notifyIn(dialog!, "active;expires=200", "x"), { dialog });
  await net.settled();
  assert.equal(notes.length, 1);
  await advance(clock, net, 181_000, 1000); // refresh at 200 - 20 = 180 s
  assert.equal(refreshes, 1);
  assert.equal(sub.state, "active", "a failed refresh does not end it (RFC 6665 4.1.2.2)");
  await advance(clock, net, 10_000, 1000); // another try at half the time left
  assert.equal(refreshes, 2);
  await advance(clock, net, 10_000, 1000); // expired: terminated with timeout, subscribed again
  const ended = states.find((s) => s.state === "terminated")!;
  assert.equal(ended.reason, "timeout");
  assert.equal(ended.retryIn, 0);
  const initial = requestsOf(net, "SUBSCRIBE").filter((s) => s.to.params.tag === undefined);
  assert.equal(initial.length, 2);
  sub.close();
  await close();
});
