import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { formatUri, parseMessage, type SipRequest } from "../lib/sip/message.ts";
import { moveUserAgent, registrationMover, subscriptionsMover } from "../lib/sip/move.ts";
import { Registration } from "../lib/sip/registration.ts";
import { Notifier } from "../lib/sip/events/notifier.ts";
import { Subscription } from "../lib/sip/events/subscriber.ts";
import { addTopVia, createCancel } from "../lib/sip/transaction/mod.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { TcpTransport } from "../lib/sip/transport_tcp.ts";
import { UdpTransport } from "../lib/sip/transport_udp.ts";
import { type IncomingRequest, UserAgent } from "../lib/sip/ua.ts";
import { DigestServer } from "../lib/sip/digest.ts";
import { advance, loopUa, until } from "./_presence_util.ts";

const dec = new TextDecoder();

/** Requests of a method on the network, with the address they left from. */
function sent(net: LoopNetwork, method: string): { req: SipRequest; from: string }[] {
  return net.packets.flatMap((p) => {
    const m = parseMessage(p.data);
    if (m.kind !== "request" || m.method !== method) return [];
    return [{ req: m, from: `${p.from.host}:${p.from.port}` }];
  });
}

/** A registrar that keeps bindings, optionally challenging (RFC 3261 10.3). */
function registrar(ua: UserAgent, auth?: () => DigestServer) {
  const bindings = new Set<string>();
  ua.handle("REGISTER", (i: IncomingRequest) => {
    const req = i.request;
    if (auth) {
      const server = auth();
      const v = server.verifyRequest(req, (u) => u === "alice" ? { password: "pw" } : undefined);
      if (!v.ok) return i.respond(401, { headers: server.challengeFields({ stale: v.stale }) });
    }
    for (const c of req.contact) {
      const expires = c.params.expires != null ? Number(c.params.expires) : req.expires ?? 3600;
      if (expires === 0) bindings.delete(formatUri(c.uri));
      else bindings.add(formatUri(c.uri));
    }
    return i.respond(200, {
      headers: [...bindings].map((b) => ["Contact", `<${b}>;expires=600`] as [string, string]),
    });
  });
  return bindings;
}

Deno.test("moveUserAgent() on the loop network: the registration moves, Via and Contact follow, the old binding goes", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock, aor: "alice@example.test" });
  const server = await loopUa(net, "reg", "192.0.2.5", { clock });
  const bindings = registrar(server);
  const reg = new Registration(alice, { registrar: "sip:192.0.2.5", expires: 600 });
  try {
    reg.keepAlive();
    await advance(clock, net, 0);
    await until(net, () => bindings.size === 1);
    assert.deepEqual([...bindings], ["sip:alice@192.0.2.1"]);

    const result = await moveUserAgent(alice, "198.51.100.7", [registrationMover(reg)]);
    assert.deepEqual([result.old, result.new, result.redone, result.rebound], [
      "192.0.2.1",
      "198.51.100.7",
      ["registration"],
      1,
    ]);
    assert.deepEqual([...bindings], ["sip:alice@198.51.100.7"], "only the new binding");
    const last = sent(net, "REGISTER").at(-1)!;
    assert.equal(last.from, "198.51.100.7:5060", "sent from the moved socket");
    assert.equal(last.req.topVia.host, "198.51.100.7", "Via sent-by follows");
    assert.deepEqual(last.req.headers.getAll("Contact"), [
      "sip:alice@198.51.100.7",
      "<sip:alice@192.0.2.1>;expires=0",
    ]);
    // The refresh later still uses the new address.
    await advance(clock, net, 600_000, 10_000);
    assert.equal(sent(net, "REGISTER").at(-1)!.req.topVia.host, "198.51.100.7");
  } finally {
    reg.stop();
    await alice.close();
    await server.close();
  }
});

Deno.test("moveUserAgent(): digest credentials are kept, and a new challenge is answered", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await UserAgent.create({
    aor: "alice@example.test",
    transports: [net.transport({ host: "192.0.2.1" })],
    clock,
    password: () => Promise.resolve("pw"),
  });
  const server = await loopUa(net, "reg", "192.0.2.5", { clock });
  let auth = new DigestServer({ realm: "example.test" });
  const bindings = registrar(server, () => auth);
  const reg = new Registration(alice, { registrar: "sip:192.0.2.5", expires: 600 });
  try {
    await reg.register();
    const before = sent(net, "REGISTER").length;
    await moveUserAgent(alice, "198.51.100.7", [registrationMover(reg)]);
    assert.deepEqual([...bindings], ["sip:alice@198.51.100.7"]);
    const after = sent(net, "REGISTER").slice(before);
    assert.equal(after.length, 1, "the cached credentials went with the first REGISTER");
    assert.ok(after[0].req.headers.has("Authorization"));
    // A server that forgot its nonces (or ties them to the address) challenges again.
    auth = new DigestServer({ realm: "example.test" });
    const start = sent(net, "REGISTER").length;
    await moveUserAgent(alice, "198.51.100.8", [registrationMover(reg)]);
    assert.equal(sent(net, "REGISTER").length - start, 2, "challenged, then answered");
    assert.deepEqual([...bindings], ["sip:alice@198.51.100.8"]);
  } finally {
    await alice.close();
    await server.close();
  }
});

Deno.test("after a move, retransmissions and CANCEL keep the Via first sent (RFC 3261 17.1.1.2, 9.1, 17.2.3)", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = net.transport({ host: "192.0.2.2" }); // silent: never answers
  const seen: SipRequest[] = [];
  bob.onMessage((m) => seen.push(parseMessage(m.data) as SipRequest));
  try {
    const invite = alice.createRequest("INVITE", "sip:bob@192.0.2.2");
    addTopVia(invite);
    const tx = alice.transactions.request(invite, {
      protocol: "udp",
      host: "192.0.2.2",
      port: 5060,
    });
    tx.response.catch(() => {});
    await net.settled();
    const first = seen[0].headers.values("Via")[0];
    assert.match(first, /192\.0\.2\.1[:;]/);

    await moveUserAgent(alice, "198.51.100.7");
    await advance(clock, net, 500, 500); // timer A: a retransmission
    assert.equal(seen.length, 2);
    assert.equal(seen[1].headers.values("Via")[0], first, "the retransmission keeps its Via");
    assert.equal(net.packets.at(-1)!.from.host, "198.51.100.7", "sent from the new address");

    const cancel = createCancel(invite);
    alice.transactions.request(cancel, { protocol: "udp", host: "192.0.2.2", port: 5060 }, {}, {
      keepVia: true,
    })
      .response.catch(() => {});
    await net.settled();
    const got = seen.find((r) => r.method === "CANCEL")!;
    assert.equal(got.headers.values("Via")[0], first, "CANCEL matches the INVITE's Via");

    // A new request takes the new address.
    const options = alice.createRequest("OPTIONS", "sip:bob@192.0.2.2");
    addTopVia(options);
    alice.transactions.request(options, { protocol: "udp", host: "192.0.2.2", port: 5060 })
      .response.catch(() => {});
    await net.settled();
    assert.equal(seen.find((r) => r.method === "OPTIONS")!.topVia.host, "198.51.100.7");
  } finally {
    await alice.close();
    await bob.close();
  }
});

/** A "test" event package notifier, and a subscriber to it. */
async function subscriptionPair() {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  const model = { text: "s1" };
  const notifier = new Notifier(bob);
  notifier.addPackage({
    event: "test",
    contentTypes: ["text/plain"],
    content: () => ({ body: model.text, contentType: "text/plain" }),
  });
  const bodies: string[] = [];
  const sub = new Subscription(alice, "sip:bob@192.0.2.2", {
    event: "test",
    accept: ["text/plain"],
    expires: 600,
    onNotify: (n) => bodies.push(dec.decode(n.request.body)),
  });
  await sub.start();
  await until(net, () => bodies.length === 1, "the first NOTIFY");
  return { clock, net, alice, bob, model, notifier, sub, bodies };
}

Deno.test("after the subscriber moves, a refresh carries the new Contact and NOTIFYs reach the new address", async () => {
  const { net, alice, bob, model, notifier, sub, bodies } = await subscriptionPair();
  try {
    const result = await moveUserAgent(alice, "198.51.100.7", [
      subscriptionsMover(alice, () => ({ held: [sub] })),
    ]);
    assert.deepEqual(result.redone, ["subscriptions"]);
    const refresh = sent(net, "SUBSCRIBE").at(-1)!;
    assert.equal(refresh.req.contact[0].uri.host, "198.51.100.7");
    assert.equal(refresh.req.topVia.host, "198.51.100.7");
    await until(net, () => bodies.length >= 2, "the NOTIFY after the refresh");
    model.text = "s2";
    notifier.notifyAll("test");
    await until(net, () => bodies.includes("s2"), "a status change after the move");
    const notify = net.packets.filter((p) => dec.decode(p.data).startsWith("NOTIFY")).at(-1)!;
    assert.equal(notify.to.host, "198.51.100.7");
    assert.equal(notify.fate, "delivered");
  } finally {
    sub.close();
    await alice.close();
    await bob.close();
  }
});

Deno.test("after the notifier moves, its NOTIFY carries the new Contact and refreshes reach it", async () => {
  const { clock, net, alice, bob, sub, bodies, notifier } = await subscriptionPair();
  try {
    const result = await moveUserAgent(bob, "198.51.100.9", [
      subscriptionsMover(bob, () => ({ served: notifier.subscriptions() })),
    ]);
    assert.deepEqual(result.redone, ["subscriptions"]);
    const notify = sent(net, "NOTIFY").at(-1)!;
    assert.equal(notify.req.contact[0].uri.host, "198.51.100.9");
    await until(net, () => bodies.length >= 2);
    await advance(clock, net, 600_000, 10_000); // the subscriber refreshes
    const refresh = net.packets.filter((p) => dec.decode(p.data).startsWith("SUBSCRIBE")).at(-1)!;
    assert.equal(refresh.to.host, "198.51.100.9");
    assert.equal(refresh.fate, "delivered");
    assert.equal(sub.state, "active");
  } finally {
    sub.close();
    await alice.close();
    await bob.close();
  }
});

Deno.test("LoopNetwork.move(): packets to the old address are unreachable, the new one receives", async () => {
  const net = new LoopNetwork();
  const a = net.transport({ host: "192.0.2.1" });
  const b = net.transport({ host: "192.0.2.2" });
  const got: string[] = [];
  b.onMessage((m) => got.push(`${m.local.host} ${dec.decode(m.data)}`));
  net.move(b, "192.0.2.9");
  await a.send(new TextEncoder().encode("one"), { host: "192.0.2.2", port: 5060 });
  await a.send(new TextEncoder().encode("two"), { host: "192.0.2.9", port: 5060 });
  await net.settled();
  assert.deepEqual(got, ["192.0.2.9 two"]);
  assert.deepEqual(net.packets.map((p) => p.fate), ["unreachable", "delivered"]);
  assert.throws(() => net.move(b, "192.0.2.1"), /in use/);
  assert.equal(b.local.host, "192.0.2.9", "a failed move leaves it where it was");
  await a.close();
  await b.close();
});

Deno.test("moveUserAgent() with real sockets: a UDP socket bound to one address is re-bound, TCP connections from the old address close", async () => {
  const udp = new UdpTransport({ host: "127.0.0.1" });
  const tcp = new TcpTransport({ host: "0.0.0.0", port: udp.local.port });
  const server = new TcpTransport({ host: "127.0.0.3" });
  const peer = new UdpTransport({ host: "127.0.0.3" });
  const ua = await UserAgent.create({ transports: [udp, tcp] });
  const got: string[] = [];
  peer.onMessage((m) => got.push(`${m.remote.host}:${m.remote.port}`));
  server.onMessage(() => {});
  try {
    await tcp.send(new TextEncoder().encode("\r\n\r\n"), server.local);
    assert.equal(tcp.connections, 1);
    const result = await moveUserAgent(ua, "127.0.0.2", [], { retireAfterMs: 50 });
    assert.equal(result.closedConnections, 1, "the connection from 127.0.0.1 is closed");
    assert.equal(tcp.connections, 0);
    const moved = ua.transports.find((t) => t.protocol === "udp")!;
    assert.notEqual(moved, udp);
    assert.deepEqual(moved.local, { host: "127.0.0.2", port: udp.local.port }, "same port");
    await moved.send(new TextEncoder().encode("x"), peer.local);
    while (got.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(got, [`127.0.0.2:${udp.local.port}`]);
    const contact = await ua.contactFor({ protocol: "udp", host: "127.0.0.3", port: 5060 });
    assert.equal(contact.host, "127.0.0.2");
  } finally {
    await ua.close();
    await server.close();
    await peer.close();
  }
});
