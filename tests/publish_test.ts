import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import type { SipRequest } from "../lib/sip/message.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { Publication, type PublicationEvent } from "../lib/presence/publish.ts";
import { statusToPidf } from "../lib/presence/status.ts";
import { advance, loopUa, requestsOf } from "./_presence_util.ts";

const dec = new TextDecoder();
const ENTITY = "sip:alice@192.0.2.1";
const SERVER = "sip:alice@192.0.2.2";

/**
 * A tiny event state compositor (RFC 3903 section 6): entity-tags per
 * publication, 412 for unknown ones, 423 below minExpires.
 */
function esc(ua: UserAgent, options: { minExpires?: number; failWith?: number } = {}) {
  const state = { docs: new Map<string, string>(), next: 1, seen: [] as SipRequest[] };
  ua.handle("PUBLISH", async (incoming) => {
    const req = incoming.request;
    state.seen.push(req);
    if (options.failWith) return await incoming.respond(options.failWith);
    const expires = req.expires ?? 3600;
    if (options.minExpires && expires > 0 && expires < options.minExpires) {
      return await incoming.respond(423, {
        headers: [["Min-Expires", String(options.minExpires)]],
      });
    }
    const ifMatch = req.headers.get("SIP-If-Match");
    let doc: string | undefined;
    if (ifMatch !== undefined) {
      doc = state.docs.get(ifMatch);
      if (doc === undefined) return await incoming.respond(412);
      state.docs.delete(ifMatch);
    } else if (req.body.length === 0) {
      return await incoming.respond(400);
    }
    if (expires === 0) return await incoming.respond(200, { headers: [["Expires", "0"]] });
    if (req.body.length > 0) doc = dec.decode(req.body);
    const tag = `e${state.next++}`;
    state.docs.set(tag, doc!);
    await incoming.respond(200, { headers: [["SIP-ETag", tag], ["Expires", String(expires)]] });
  });
  return state;
}

async function setup(options: { minExpires?: number; failWith?: number } = {}) {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const server = await loopUa(net, "pa", "192.0.2.2", { clock });
  const state = esc(server, options);
  const events: PublicationEvent[] = [];
  return {
    clock,
    net,
    alice,
    state,
    events,
    onEvent: (e: PublicationEvent) => events.push(e),
    close: () => Promise.all([alice.close(), server.close()]),
  };
}

const online = statusToPidf("online", { entity: ENTITY });
const busy = statusToPidf("busy", { entity: ENTITY, note: "call" });

Deno.test("Publication creates with a body and keeps the SIP-ETag", async () => {
  const { net, alice, state, events, onEvent, close } = await setup();
  const pub = new Publication(alice, { target: SERVER, onEvent });
  const result = await pub.publish(online);
  assert.deepEqual(result, { etag: "e1", expires: 3600 });
  assert.equal(pub.etag, "e1");
  const [req] = requestsOf(net, "PUBLISH");
  assert.equal(req.headers.get("Event"), "presence");
  assert.equal(req.headers.get("Expires"), "3600");
  assert.equal(req.headers.get("Content-Type"), "application/pidf+xml");
  assert.equal(req.headers.has("SIP-If-Match"), false);
  assert.equal(dec.decode(req.body), online);
  assert.deepEqual(events, [{ type: "published", action: "create", etag: "e1", expires: 3600 }]);
  assert.equal(state.docs.get("e1"), online);
  pub.close();
  await close();
});

Deno.test("Publication refreshes before expiry with SIP-If-Match and no body", async () => {
  const { clock, net, alice, state, events, onEvent, close } = await setup();
  const pub = new Publication(alice, { target: SERVER, expires: 600, onEvent });
  await pub.publish(online);
  await advance(clock, net, 539_000, 10_000);
  assert.equal(requestsOf(net, "PUBLISH").length, 1);
  await advance(clock, net, 2000); // 600 - 60 = 540 s
  const reqs = requestsOf(net, "PUBLISH");
  assert.equal(reqs.length, 2);
  assert.equal(reqs[1].headers.get("SIP-If-Match"), "e1");
  assert.equal(reqs[1].body.length, 0);
  assert.equal(reqs[1].headers.has("Content-Type"), false);
  assert.equal(reqs[1].callId, reqs[0].callId);
  assert.equal(reqs[1].cseq.seq, reqs[0].cseq.seq + 1);
  assert.equal(pub.etag, "e2");
  assert.equal(state.docs.get("e2"), online, "the refresh keeps the document");
  const last = events.at(-1)!;
  assert.equal(last.type === "published" ? last.action : last.type, "refresh");
  pub.close();
  await close();
});

Deno.test("Publication modifies with SIP-If-Match and the new body", async () => {
  const { net, alice, state, close } = await setup();
  const pub = new Publication(alice, { target: SERVER, autoRefresh: false });
  await pub.publish(online);
  await pub.publish(busy);
  const reqs = requestsOf(net, "PUBLISH");
  assert.equal(reqs[1].headers.get("SIP-If-Match"), "e1");
  assert.equal(dec.decode(reqs[1].body), busy);
  assert.equal(pub.etag, "e2");
  assert.deepEqual([...state.docs.keys()], ["e2"]);
  await close();
});

Deno.test("Publication publishes afresh after 412", async (t) => {
  await t.step("on modify", async () => {
    const { net, alice, state, close } = await setup();
    const pub = new Publication(alice, { target: SERVER, autoRefresh: false });
    await pub.publish(online);
    state.docs.clear(); // the server restarted
    const result = await pub.publish(busy);
    const reqs = requestsOf(net, "PUBLISH");
    assert.equal(reqs.length, 3);
    assert.equal(reqs[1].headers.get("SIP-If-Match"), "e1");
    assert.equal(reqs[2].headers.has("SIP-If-Match"), false);
    assert.equal(dec.decode(reqs[2].body), busy);
    assert.equal(result.etag, "e2");
    assert.equal(state.docs.get("e2"), busy);
    await close();
  });
  await t.step("on refresh, with the last body", async () => {
    const { net, alice, state, close } = await setup();
    const pub = new Publication(alice, { target: SERVER, autoRefresh: false });
    await pub.publish(busy);
    state.docs.clear();
    await pub.refresh();
    const reqs = requestsOf(net, "PUBLISH");
    assert.equal(reqs.length, 3);
    assert.equal(reqs[1].body.length, 0);
    assert.equal(dec.decode(reqs[2].body), busy);
    assert.equal(state.docs.get(pub.etag!), busy);
    await close();
  });
  await t.step("on refresh with a stored tag and no body: rejects 412", async () => {
    const { alice, close } = await setup();
    const pub = new Publication(alice, { target: SERVER, etag: "stale", autoRefresh: false });
    await assert.rejects(pub.refresh(), (e) => e instanceof SipRequestError && e.status === 412);
    assert.equal(pub.etag, undefined);
    await close();
  });
});

Deno.test("Publication with a stored entity-tag modifies that publication first", async () => {
  const { net, alice, state, close } = await setup();
  state.docs.set("kept", online);
  const pub = new Publication(alice, { target: SERVER, etag: "kept", autoRefresh: false });
  await pub.publish(busy);
  const [req] = requestsOf(net, "PUBLISH");
  assert.equal(req.headers.get("SIP-If-Match"), "kept");
  assert.equal(state.docs.size, 1, "no second publication was created");
  await close();
});

Deno.test("Publication.remove() sends Expires: 0 with SIP-If-Match", async () => {
  const { clock, net, alice, state, events, onEvent, close } = await setup();
  const pub = new Publication(alice, { target: SERVER, onEvent });
  await pub.publish(online);
  await pub.remove();
  const reqs = requestsOf(net, "PUBLISH");
  assert.equal(reqs[1].headers.get("Expires"), "0");
  assert.equal(reqs[1].headers.get("SIP-If-Match"), "e1");
  assert.equal(reqs[1].body.length, 0);
  assert.equal(pub.etag, undefined);
  assert.equal(state.docs.size, 0);
  assert.deepEqual(events.at(-1), { type: "removed", etag: "e1" });
  await advance(clock, net, 7_200_000, 600_000);
  assert.equal(requestsOf(net, "PUBLISH").length, 2, "no refresh after removal");
  await close();
});

Deno.test("Publication retries with the Min-Expires of a 423", async () => {
  const { net, alice, close } = await setup({ minExpires: 1800 });
  const pub = new Publication(alice, { target: SERVER, expires: 60, autoRefresh: false });
  const result = await pub.publish(online);
  assert.deepEqual(requestsOf(net, "PUBLISH").map((r) => r.headers.get("Expires")), [
    "60",
    "1800",
  ]);
  assert.equal(result.expires, 1800);
  await close();
});

Deno.test("Publication.publish() rejects on failure; a failed timed refresh backs off", async () => {
  const control: { failWith?: number } = {};
  const { clock, net, alice, events, onEvent, close } = await setup(control);
  const pub = new Publication(alice, { target: SERVER, expires: 600, random: () => 1, onEvent });
  await pub.publish(online);
  control.failWith = 500;
  await assert.rejects(pub.publish(busy), (e) => e instanceof SipRequestError && e.status === 500);
  await advance(clock, net, 541_000, 10_000);
  const failed = events.filter((e) => e.type === "failed");
  assert.deepEqual(failed, [{
    type: "failed",
    status: 500,
    reason: "Server Internal Error",
    retryIn: 30,
  }]);
  control.failWith = undefined;
  await advance(clock, net, 30_000, 5000);
  assert.equal(events.at(-1)!.type, "published");
  pub.close();
  await close();
});

Deno.test("Publication serializes concurrent calls: the second modifies what the first created", async () => {
  const { net, alice, state, close } = await setup();
  const pub = new Publication(alice, { target: SERVER, autoRefresh: false });
  const [a, b] = await Promise.all([pub.publish(online), pub.publish(busy)]);
  assert.deepEqual([a.etag, b.etag], ["e1", "e2"]);
  const reqs = requestsOf(net, "PUBLISH");
  assert.equal(reqs[0].headers.has("SIP-If-Match"), false);
  assert.equal(reqs[1].headers.get("SIP-If-Match"), "e1");
  assert.deepEqual([...state.docs.values()], [busy]);
  await close();
});
