/**
 * Leaner presence on the wire (issue 8 section 4), between sipkit peers that
 * negotiate it, and the fallback for peers that do not: deflate bodies
 * (Accept-Encoding / Content-Encoding, RFC 3261 sections 20.2 and 20.12).
 */

import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import {
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
} from "../lib/sip/message.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { Subscription, type SubscriptionNotify } from "../lib/sip/events/subscriber.ts";
import {
  acceptedCodings,
  chooseCoding,
  contentCodingsLoaded,
  decodeBody,
  encodeBody,
  loadContentCodings,
} from "../lib/sip/events/encoding.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { PresenceAgent } from "../lib/presence/agent.ts";
import { PresenceWatcher, type PresenceWatcherEvent } from "../lib/presence/watcher.ts";
import { presenceToStatus, statusToPidf } from "../lib/presence/status.ts";
import {
  advance,
  loopUa,
  presenceSubscription,
  requestsOf,
  responsesTo,
  until,
} from "./_presence_util.ts";

const BOB = "sip:bob@192.0.2.2";

Deno.test("Accept-Encoding: codings by q-value, '*', q=0 refused", () => {
  assert.deepEqual(acceptedCodings(["gzip;q=0.5, deflate", "br;q=0"]), ["deflate", "gzip"]);
  assert.equal(chooseCoding(["gzip, deflate;q=0.1"], ["deflate"]), "deflate");
  assert.equal(chooseCoding(["*"], ["deflate"]), "deflate");
  assert.equal(chooseCoding(["identity", "br"], ["deflate"]), undefined);
  assert.equal(chooseCoding([], ["deflate"]), undefined);
});

/** The platform's zlib (CompressionStream): an independent implementation to check against. */
async function platform(data: Uint8Array, dir: "compress" | "expand"): Promise<Uint8Array> {
  const stream = dir === "compress"
    ? new CompressionStream("deflate")
    : new DecompressionStream("deflate");
  const out = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

Deno.test("deflate (node:zlib): loaded on demand; reads the platform's zlib and back; bad data throws", async () => {
  const enc = new TextEncoder();
  // Nothing in this file has loaded the coder yet: coding a body needs it.
  assert.equal(contentCodingsLoaded(), false);
  assert.throws(() => encodeBody(enc.encode("a"), "deflate"), /loadContentCodings/);
  await loadContentCodings();
  assert.equal(contentCodingsLoaded(), true);
  const rnd = new Uint8Array(3000);
  for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 7919 + (i >> 3) * 31) & 0xff;
  const samples = [
    new Uint8Array(0),
    enc.encode("a"),
    enc.encode(statusToPidf("on-the-phone", { entity: BOB, note: "back at 3" })),
    enc.encode("<presence>" + "x".repeat(1000) + "</presence>"),
    rnd,
    crypto.getRandomValues(new Uint8Array(500)), // incompressible: stored block
  ];
  for (const s of samples) {
    const ours = encodeBody(s, "deflate");
    assert.deepEqual(await platform(ours, "expand"), s, `platform reads ours (${s.length})`);
    assert.deepEqual(decodeBody(ours, "deflate"), s);
    const theirs = await platform(s, "compress");
    assert.deepEqual(decodeBody(theirs, "Deflate"), s, `we read the platform's (${s.length})`);
  }
  const pidf = enc.encode(statusToPidf("busy", { entity: "sip:user@192.0.2.1" }));
  const ours = encodeBody(pidf, "deflate").length;
  const theirs = (await platform(pidf, "compress")).length;
  assert.ok(ours <= theirs, `ours ${ours} <= platform ${theirs}`);
  assert.deepEqual(decodeBody(pidf, "identity"), pidf);
  assert.throws(() => decodeBody(pidf, "gzip"), TypeError);
  assert.throws(() => decodeBody(pidf, "deflate"), TypeError);
  const broken = encodeBody(pidf, "deflate");
  broken[broken.length - 1] ^= 1;
  assert.throws(() => decodeBody(broken, "deflate"), /incorrect data check/); // Adler-32
  for (let i = 0; i < 300; i++) {
    const m = encodeBody(pidf, "deflate");
    m[2 + (i % (m.length - 2))] ^= 1 << (i % 8);
    try {
      decodeBody(m, "deflate");
    } catch (e) {
      assert.ok(e instanceof TypeError, String(e));
    }
  }
  // A bomb: 4 MiB of zeros from a few kilobytes.
  const bomb = await platform(new Uint8Array(4 << 20), "compress");
  assert.throws(() => decodeBody(bomb, "deflate"), /expands too much/);
});

/** Two UAs as the CLI makes them (compact headers), bob with a presence agent. */
async function pair() {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const ua = (user: string, host: string) =>
    UserAgent.create({
      aor: `${user}@${host}`,
      transports: [net.transport({ host })],
      clock,
      timers: { t1: 500 },
      compactHeaders: true,
    });
  const alice = await ua("alice", "192.0.2.1");
  const bob = await ua("bob", "192.0.2.2");
  const agent = new PresenceAgent(bob, { unknown: "accept", status: "busy", minInterval: 0 });
  return { clock, net, alice, bob, agent, close: () => Promise.all([alice.close(), bob.close()]) };
}

Deno.test("sipkit watcher and agent: PIDF goes deflated, and the watcher reads it", async () => {
  const { clock, net, alice, agent, close } = await pair();
  const seen: PresenceWatcherEvent[] = [];
  const watcher = new PresenceWatcher(alice, { buddies: [BOB], onEvent: (e) => seen.push(e) });
  await watcher.start();
  const statuses = () => seen.flatMap((e) => e.type === "presence" ? [e.status] : []);
  await until(net, () => statuses().length === 1);
  agent.setStatus("away");
  await until(net, () => statuses().length === 2);
  assert.deepEqual(statuses(), ["busy", "away"]);
  const subscribe = requestsOf(net, "SUBSCRIBE")[0];
  assert.equal(subscribe.headers.get("Accept-Encoding"), "deflate");
  assert.equal(subscribe.headers.get("Accept"), "application/pidf+xml");
  const notifies = requestsOf(net, "NOTIFY");
  assert.equal(notifies.length, 2);
  for (const n of notifies) {
    assert.equal(n.headers.get("Content-Encoding"), "deflate");
    assert.equal(n.headers.get("Content-Type"), "application/pidf+xml");
    const plain = new TextDecoder().decode(decodeBody(n.body, "deflate"));
    assert.ok(n.body.length < plain.length, `${n.body.length} < ${plain.length}`);
    // The lean form for a watcher that takes deflate: namespaces declared
    // where used, no final newline.
    assert.match(plain, /<activities xmlns="urn:ietf:params:xml:ns:pidf:rpid">/);
    assert.doesNotMatch(plain, /rpid:|\n$/);
  }
  // Over UDP with compact headers, no Content-Length (RFC 3261 18.3).
  const wire = new TextDecoder().decode(
    net.packets.find((p) => new TextDecoder().decode(p.data).startsWith("NOTIFY "))!.data,
  );
  assert.doesNotMatch(wire, /\r\n(l|Content-Length):/i);
  // A refresh leaves Accept out (RFC 3856 6.5: application/pidf+xml is the
  // default) and Accept-Encoding too (the notifier keeps what the initial
  // SUBSCRIBE said); the NOTIFYs after it are still deflated.
  await advance(clock, net, 3600_000, 10_000);
  const refresh = requestsOf(net, "SUBSCRIBE")[1];
  assert.ok(refresh, "refreshed");
  assert.equal(refresh.headers.get("Accept-Encoding"), undefined);
  assert.equal(refresh.headers.get("Accept"), undefined);
  assert.equal(responsesTo(net, "SUBSCRIBE").at(-1)?.status, 204);
  agent.setStatus("lunch");
  await until(net, () => statuses().length === 3);
  assert.equal(statuses()[2], "lunch");
  assert.equal(requestsOf(net, "NOTIFY").at(-1)?.headers.get("Content-Encoding"), "deflate");
  await watcher.close({ unsubscribe: false });
  await agent.close({ notify: false });
  await close();
});

Deno.test("a subscriber that does not ask for deflate (baresip, Kamailio) gets plain PIDF", async () => {
  const { net, alice, agent, close } = await pair();
  const notes: SubscriptionNotify[] = [];
  const sub = new Subscription(alice, BOB, {
    event: "presence",
    accept: ["application/pidf+xml"],
    onNotify: (n) => notes.push(n),
  });
  await sub.start();
  await until(net, () => notes.length === 1);
  agent.setStatus("lunch");
  await until(net, () => notes.length === 2);
  for (const n of requestsOf(net, "NOTIFY")) {
    assert.equal(n.headers.get("Content-Encoding"), undefined);
    assert.equal(presenceToStatus(n.body).entity, BOB);
    // The full PIDF with the prefixes simple peers look for.
    assert.match(new TextDecoder().decode(n.body), /<rpid:activities>/);
  }
  assert.equal(presenceToStatus(notes[1].body).status, "lunch");
  sub.close();
  await agent.close({ notify: false });
  await close();
});

Deno.test("a NOTIFY body in a coding the subscriber does not know gets 415 with Accept-Encoding", async () => {
  const { bob, notifier, notes, close } = await presenceSubscription();
  const s = notifier.subscriptions()[0];
  // A notifier that compresses with a coding nobody asked for.
  const req = s.dialog.createRequest("NOTIFY", {
    headers: [["Event", "presence"], ["Subscription-State", "active;expires=600"], [
      "Content-Encoding",
      "br",
    ]],
    body: "xyz",
    contentType: "application/pidf+xml",
  });
  const { response } = await bob.send(req, { dialog: s.dialog });
  assert.equal(response.status, 415);
  assert.equal(response.headers.get("Accept-Encoding"), "deflate");
  assert.equal(notes.length, 1);
  await close();
});

Deno.test("rport only until a peer's answer shows it sees our sent-by; a NATed answer keeps it", async () => {
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1");
  // bob answers by hand, as a server behind which alice looks NATed when asked.
  const bob = net.transport({ host: "192.0.2.2" });
  let nat = false;
  const vias: string[] = [];
  bob.onMessage((m) => {
    const req = parseMessage(m.data) as SipRequest;
    vias.push(req.headers.values("Via")[0]);
    const res = createResponse(req, 200, { toTag: "b" });
    const via = res.headers.values("Via")[0];
    // RFC 3581 4 as the server would fill it in: the source seen, or a NAT's.
    const filled = via.replace(/;rport(?=;|$)/, nat ? ";rport=40000" : ";rport=5060") +
      ";received=192.0.2.1";
    res.headers.set("Via", via.includes(";rport") ? filled : via);
    bob.send(formatMessage(res), m.remote);
  });
  const options = () => alice.send(alice.createRequest("OPTIONS", "sip:bob@192.0.2.2"));
  await options();
  await options();
  assert.match(vias[0], /^SIP\/2\.0\/UDP 192\.0\.2\.1;branch=z9hG4bK[^;]+;rport$/);
  assert.doesNotMatch(vias[1], /rport/, "the first answer showed no NAT");
  // Another destination is not known yet.
  nat = true;
  const carol = net.transport({ host: "192.0.2.3" });
  carol.onMessage((m) => {
    const req = parseMessage(m.data) as SipRequest;
    vias.push(req.headers.values("Via")[0]);
    const res = createResponse(req, 200, { toTag: "c" });
    const via = res.headers.values("Via")[0];
    res.headers.set("Via", via.replace(/;rport(?=;|$)/, ";rport=40000;received=198.51.100.1"));
    carol.send(formatMessage(res), m.remote);
  });
  const toCarol = () => alice.send(alice.createRequest("OPTIONS", "sip:carol@192.0.2.3"));
  await toCarol();
  await toCarol();
  assert.match(vias[2], /;rport$/);
  assert.match(vias[3], /;rport$/, "behind a NAT for carol: rport stays");
  await alice.close();
});
