import assert from "node:assert/strict";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { ManualClock } from "../lib/sip/clock.ts";
import type { Inbound } from "../lib/sip/transport.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function texts(list: Inbound[]) {
  return list.map((m) => dec.decode(m.data));
}

async function sendAll(net: LoopNetwork, count: number, faults = {}) {
  net.setFaults(faults);
  const a = net.transport({ host: "192.0.2.1", port: 5060 });
  const b = net.transport({ host: "192.0.2.2", port: 5062 });
  const got: Inbound[] = [];
  b.onMessage((m) => got.push(m));
  for (let i = 1; i <= count; i++) await a.send(enc.encode(`m${i}`), b.local);
  await net.settled();
  await a.close();
  await b.close();
  return texts(got);
}

Deno.test("LoopNetwork delivers asynchronously with sender and receiver addresses", async () => {
  const net = new LoopNetwork();
  const a = net.transport({ host: "alice.test", port: 5070 });
  const b = net.transport({ host: "[2001:DB8::2]" });
  const got: Inbound[] = [];
  b.onMessage((m) => got.push(m));
  const sent = a.send(enc.encode("hello"), { host: "2001:db8::2", port: 5060 });
  assert.equal(got.length, 0, "not delivered synchronously");
  assert.equal(net.pending, 1);
  await sent;
  await net.settled();
  assert.deepEqual(texts(got), ["hello"]);
  assert.deepEqual(got[0].remote, { host: "alice.test", port: 5070 });
  assert.deepEqual(got[0].local, { host: "2001:db8::2", port: 5060 });
  assert.equal(got[0].transport, b);
  assert.equal(net.packets[0].fate, "delivered");
  assert.equal(dec.decode(net.packets[0].data), "hello");
});

Deno.test("LoopNetwork drops every Nth unreliable packet", async () => {
  const got = await sendAll(new LoopNetwork(), 7, { dropEvery: 3 });
  assert.deepEqual(got, ["m1", "m2", "m4", "m5", "m7"]);
});

Deno.test("LoopNetwork drops with a seeded probability, the same way for the same seed", async () => {
  const first = await sendAll(new LoopNetwork(), 200, { dropRate: 0.3, seed: 42 });
  const second = await sendAll(new LoopNetwork(), 200, { dropRate: 0.3, seed: 42 });
  const other = await sendAll(new LoopNetwork(), 200, { dropRate: 0.3, seed: 7 });
  assert.deepEqual(first, second);
  assert.notDeepEqual(first, other);
  assert.ok(first.length > 110 && first.length < 170, `kept ${first.length} of 200`);
});

Deno.test("LoopNetwork duplicates and reorders as asked", async () => {
  assert.deepEqual(await sendAll(new LoopNetwork(), 4, { duplicateEvery: 2 }), [
    "m1",
    "m2",
    "m2",
    "m3",
    "m4",
    "m4",
  ]);
  const net = new LoopNetwork();
  assert.deepEqual(await sendAll(net, 5, { reorderEvery: 2 }), ["m1", "m3", "m2", "m5", "m4"]);
  assert.deepEqual(net.packets.map((p) => p.fate), [
    "delivered",
    "reordered",
    "delivered",
    "reordered",
    "delivered",
  ]);
});

Deno.test("LoopNetwork never loses packets of reliable transports", async () => {
  const net = new LoopNetwork({ dropEvery: 1 });
  const a = net.transport({ host: "192.0.2.1", protocol: "tcp" });
  const b = net.transport({ host: "192.0.2.2", protocol: "tcp" });
  const udp = net.transport({ host: "192.0.2.2" });
  const got: Inbound[] = [];
  const gotUdp: Inbound[] = [];
  b.onMessage((m) => got.push(m));
  udp.onMessage((m) => gotUdp.push(m));
  assert.equal(a.reliable, true);
  await a.send(enc.encode("x"), b.local);
  await net.settled();
  assert.deepEqual(texts(got), ["x"]);
  assert.deepEqual(gotUdp, [], "a TCP packet does not reach the UDP transport on that address");
  await assert.rejects(
    a.send(enc.encode("y"), { host: "192.0.2.9", port: 5060 }),
    /connection refused/,
  );
});

Deno.test("LoopNetwork loses unreliable packets to unbound addresses and closed transports", async () => {
  const net = new LoopNetwork();
  const a = net.transport({ host: "192.0.2.1" });
  const b = net.transport({ host: "192.0.2.2" });
  await a.send(enc.encode("nobody"), { host: "192.0.2.9", port: 5060 });
  await b.close();
  await a.send(enc.encode("closed"), b.local);
  await net.settled();
  assert.deepEqual(net.packets.map((p) => p.fate), ["unreachable", "unreachable"]);
  await assert.rejects(b.send(enc.encode("z"), a.local), /closed/);
  assert.throws(() => net.transport({ host: "192.0.2.1" }), /in use/);
});

Deno.test("LoopNetwork with icmp refuses the next unreliable send to an unbound address, once", async () => {
  const net = new LoopNetwork({ icmp: true });
  const a = net.transport({ host: "192.0.2.1" });
  const b = net.transport({ host: "192.0.2.2" });
  const nobody = { host: "192.0.2.9", port: 5060 };
  await a.send(enc.encode("one"), nobody); // goes out; ICMP comes back
  await a.send(enc.encode("other"), b.local); // other destinations are not affected
  await assert.rejects(a.send(enc.encode("two"), nobody), Deno.errors.ConnectionRefused);
  await a.send(enc.encode("three"), nobody); // reported once, like a connected socket
  await b.send(enc.encode("four"), nobody); // the refusal is the sender's own
  assert.deepEqual(net.packets.map((p) => p.fate), [
    "unreachable",
    "delivered",
    "unreachable",
    "unreachable",
  ]);
  await net.settled();
});

Deno.test("LoopNetwork with a delay delivers when the clock advances", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork({ clock, delay: 50 });
  const a = net.transport({ host: "192.0.2.1" });
  const b = net.transport({ host: "192.0.2.2" });
  const got: Inbound[] = [];
  b.onMessage((m) => {
    got.push(m);
    b.send(enc.encode("pong"), m.remote);
  });
  const back: Inbound[] = [];
  a.onMessage((m) => back.push(m));
  await a.send(enc.encode("ping"), b.local);
  clock.advance(49);
  assert.equal(got.length, 0);
  clock.advance(1);
  assert.deepEqual(texts(got), ["ping"]);
  clock.advance(50);
  assert.deepEqual(texts(back), ["pong"]);
  assert.equal(net.pending, 0);
});

Deno.test("LoopNetwork.settled waits for replies sent by handlers", async () => {
  const net = new LoopNetwork();
  const a = net.transport({ host: "192.0.2.1" });
  const b = net.transport({ host: "192.0.2.2" });
  b.onMessage(async (m) => {
    await Promise.resolve();
    await b.send(enc.encode("reply"), m.remote);
  });
  const back: Inbound[] = [];
  a.onMessage((m) => back.push(m));
  await a.send(enc.encode("request"), b.local);
  await net.settled();
  assert.deepEqual(texts(back), ["reply"]);
});
