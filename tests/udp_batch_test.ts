// UDP bursts through libc (lib/sip/_udp_fast.ts): a listener's socket takes
// the datagrams that wait after each wake-up with recvfrom and sends the
// answers of one turn with one sendmmsg. Checked here over real sockets on
// loopback: order, nothing lost, IPv6 and dual-stack addresses, datagrams
// too big for a batch slot, ICMP refusals inside a batch, close with sends
// queued, and the same behaviour without --allow-ffi (Deno's ops only).

import assert from "node:assert/strict";
import { UdpTransport } from "../lib/sip/transport_udp.ts";
import { openFastUdp, parseIPv6, sockaddr } from "../lib/sip/_udp_fast.ts";
import type { HostPort, Inbound } from "../lib/sip/transport.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Collects what `t` receives; `wait(n)` resolves once n datagrams came. */
function collect(t: UdpTransport) {
  const got: Inbound[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  t.onMessage((m) => {
    got.push(m);
    if (waiter && got.length >= waiter.n) waiter.resolve();
  });
  return {
    got,
    wait(n: number, ms = 5000): Promise<void> {
      if (got.length >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${got.length} of ${n} datagrams after ${ms} ms`)),
          ms,
        );
        waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        };
      });
    },
  };
}

Deno.test("parseIPv6 and sockaddr read IP literals as the kernel wants them", () => {
  assert.deepEqual(parseIPv6("::1"), [0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(parseIPv6("::"), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(parseIPv6("2001:db8::8:800:200c:417a"), [
    0x2001,
    0xdb8,
    0,
    0,
    8,
    0x800,
    0x200c,
    0x417a,
  ]);
  assert.deepEqual(parseIPv6("fe80::"), [0xfe80, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(parseIPv6("1:2:3:4:5:6:7:8"), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(parseIPv6("::ffff:10.0.0.1"), [0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]);
  for (const bad of ["1:2:3", "1::2::3", "12345::", "fe80::1%eth0", "g::1", "1:2:3:4:5:6:7:8:9"]) {
    assert.equal(parseIPv6(bad), null, bad);
  }
  assert.deepEqual(
    [...sockaddr("10.1.2.3", false)!],
    [2, 0, 0, 0, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0],
  );
  // IPv4 through an IPv6 socket: mapped (::ffff:10.1.2.3).
  const mapped = sockaddr("10.1.2.3", true)!;
  assert.equal(mapped.length, 28);
  assert.deepEqual([...mapped.subarray(0, 2)], [10, 0]);
  assert.deepEqual([...mapped.subarray(8, 24)], [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    255,
    255,
    10,
    1,
    2,
    3,
  ]);
  assert.deepEqual([...sockaddr("::1", true)!.subarray(8, 24)], [
    ...new Array(15).fill(0),
    1,
  ]);
  // Left to Deno: names, IPv6 on an IPv4 socket, bad literals.
  assert.equal(sockaddr("example.test", true), null);
  assert.equal(sockaddr("::1", false), null);
  assert.equal(sockaddr("300.1.1.1", false), null);
});

for (const [bind, peerHost] of [["127.0.0.1", "127.0.0.1"], ["::1", "::1"], ["::", "127.0.0.1"]]) {
  Deno.test(`UdpTransport on ${bind}: a burst and its answers in one turn, to and from ${peerHost}, in order`, async () => {
    const listener = await UdpTransport.open({ host: bind });
    const peer = await UdpTransport.open({ host: peerHost });
    try {
      assert.equal(listener.batching, true, "Linux with --allow-ffi");
      const target: HostPort = { host: peerHost, port: listener.local.port };
      const n = 500;
      // The listener answers each datagram at once; its answers of one
      // turn leave together. One answer in 50 is bigger than a batch slot
      // (2 KiB) and leaves on its own, still in order.
      listener.onMessage((m) => {
        const i = Number(dec.decode(m.data));
        const big = i % 50 === 7 ? "x".repeat(5000) : "";
        listener.send(enc.encode(`${i} ${big}`), m.remote).catch((e) => {
          throw new Error(`answer ${i} failed: ${e}`);
        });
      });
      const answers = collect(peer);
      // The whole burst in one turn: the listener finds many waiting.
      await Promise.all(
        Array.from({ length: n }, (_, i) => peer.send(enc.encode(String(i)), target)),
      );
      await answers.wait(n);
      const seen = answers.got.map((m) => Number(dec.decode(m.data).split(" ")[0]));
      assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
      assert.equal(dec.decode(answers.got[7].data).length, 5002);
      for (const m of answers.got) {
        assert.deepEqual(m.remote, { host: peerHost, port: listener.local.port });
      }
    } finally {
      await listener.close();
      await peer.close();
    }
  });
}

Deno.test("UdpTransport: sends queued for the batch go out before close, and later sends reject", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1" });
  const b = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    assert.equal(a.batching, true);
    const box = collect(b);
    const sends = Array.from({ length: 10 }, (_, i) => a.send(enc.encode(`m${i}`), b.local));
    const closing = a.close();
    await Promise.all(sends);
    await closing;
    await box.wait(10);
    assert.deepEqual(box.got.map((m) => dec.decode(m.data)), sends.map((_, i) => `m${i}`));
    await assert.rejects(a.send(enc.encode("late"), b.local), /closed/);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("UdpTransport: a send to a name goes through Deno's send, after the batch", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1" });
  const b = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    const box = collect(b);
    await Promise.all([
      a.send(enc.encode("first"), b.local),
      a.send(enc.encode("by name"), { host: "localhost", port: b.local.port }),
    ]);
    await box.wait(2);
    assert.deepEqual(box.got.map((m) => dec.decode(m.data)), ["first", "by name"]);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("UdpTransport: an ICMP refusal pending when a batch goes out fails only the send to the dead port", async () => {
  const t = await UdpTransport.open({ host: "127.0.0.1" });
  const live = await UdpTransport.open({ host: "127.0.0.1" });
  const probe = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const dead: HostPort = { host: "127.0.0.1", port: (probe.addr as Deno.NetAddr).port };
  probe.close();
  try {
    assert.equal(t.batching, true);
    assert.equal(t.hearsIcmp, true);
    const box = collect(live);
    let refusals = 0;
    let delivered = 0;
    for (let round = 0; round < 20 && refusals === 0; round++) {
      // The datagram to the dead port draws an ICMP port unreachable.
      await t.send(enc.encode("ping"), dead).catch(() => {});
      await new Promise((r) => setTimeout(r, 20));
      const results = await Promise.allSettled([
        t.send(enc.encode(`a${round}`), live.local),
        t.send(enc.encode("x"), dead),
        t.send(enc.encode(`b${round}`), live.local),
      ]);
      assert.equal(results[0].status, "fulfilled");
      assert.equal(results[2].status, "fulfilled");
      delivered += 2;
      if (results[1].status === "rejected") {
        assert.ok(
          results[1].reason instanceof Deno.errors.ConnectionRefused,
          String(results[1].reason),
        );
        refusals++;
      }
    }
    assert.equal(refusals, 1, "the refusal is reported to the send to the dead port");
    await box.wait(delivered);
    const texts = box.got.map((m) => dec.decode(m.data));
    assert.deepEqual(texts.slice(-2), [`a${delivered / 2 - 1}`, `b${delivered / 2 - 1}`]);
  } finally {
    await t.close();
    await live.close();
  }
});

Deno.test("without --allow-ffi, UdpTransport uses Deno's ops and still takes bursts in order", async () => {
  const script = `
    import { UdpTransport } from ${
    JSON.stringify(new URL("../lib/sip/transport_udp.ts", import.meta.url).href)
  };
    const a = await UdpTransport.open({ host: "127.0.0.1" });
    const b = await UdpTransport.open({ host: "127.0.0.1" });
    const seen = [];
    const n = 300;
    const all = new Promise((resolve) => b.onMessage((m) => {
      seen.push(Number(new TextDecoder().decode(m.data)));
      if (seen.length === n) resolve();
    }));
    // One at a time (Deno's sends are not ordered among themselves), with a
    // pause now and then: without FFI the socket keeps the system's receive
    // buffer, which some 250 datagrams fill.
    for (let i = 0; i < n; i++) {
      await a.send(new TextEncoder().encode(String(i)), b.local);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
    }
    await all;
    console.log(JSON.stringify({ batching: b.batching, icmp: b.hearsIcmp, ordered: seen.every((v, i) => v === i) }));
    await a.close();
    await b.close();
  `;
  const out = await runWithStdin(script);
  assert.deepEqual(JSON.parse(out), { batching: false, icmp: false, ordered: true });
});

async function runWithStdin(
  script: string,
  permissions = ["--allow-net", "--allow-read"],
): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", ...permissions, "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(enc.encode(script));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  assert.equal(code, 0, dec.decode(stderr));
  return dec.decode(stdout).trim();
}

Deno.test("UdpTransport: two sockets on one port (127.0.0.1 and 127.0.0.2) each read and send on their own", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1" });
  let b: UdpTransport;
  try {
    b = await UdpTransport.open({ host: "127.0.0.2", port: a.local.port });
  } catch (e) {
    await a.close();
    throw e;
  }
  const peer = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    assert.equal(a.batching, true);
    assert.equal(b.batching, true);
    const boxA = collect(a);
    const boxB = collect(b);
    const replies = collect(peer);
    b.onMessage((m) => {
      boxB.got.push(m);
      b.send(enc.encode(`from b ${dec.decode(m.data)}`), m.remote);
    });
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => peer.send(enc.encode(String(i)), b.local)),
    );
    await replies.wait(50);
    assert.equal(boxA.got.length, 0, "nothing for the other socket");
    assert.equal(boxB.got.length, 50);
    for (const m of boxB.got) assert.deepEqual(m.local, b.local);
    // The answers left from 127.0.0.2, the address they were sent to.
    for (const m of replies.got) assert.deepEqual(m.remote, b.local);
    // Looked up now that both exist, the older socket is still found by its
    // address, not only its port.
    const fastA = openFastUdp(a.local)!;
    assert.equal(fastA.send(enc.encode("via a"), peer.local), 0);
    await replies.wait(51);
    assert.deepEqual(replies.got[50].remote, a.local);
  } finally {
    await Promise.all([a.close(), b.close(), peer.close()]);
  }
});

Deno.test("UdpTransport made with new, the first of its process: set up once the libc code is loaded (ready), then takes bursts", async () => {
  // A fresh process, where no socket has loaded the libc code yet (a
  // one-shot sender's socket never does): `new` returns at once, sends and
  // datagrams wait for nothing, and the listener's burst I/O, receive buffer
  // and ICMP errors are on once `ready` resolves.
  const script = `
    import { UdpTransport } from ${
    JSON.stringify(new URL("../lib/sip/transport_udp.ts", import.meta.url).href)
  };
    const oneShot = new UdpTransport({ host: "127.0.0.1", receivers: 1, receiveBuffer: 0, icmpAfter: 200 });
    const b = new UdpTransport({ host: "127.0.0.1" });
    const early = { batching: b.batching, icmp: b.hearsIcmp };
    const seen = [];
    const n = 200;
    const all = new Promise((resolve) => b.onMessage((m) => {
      seen.push(Number(new TextDecoder().decode(m.data)));
      if (seen.length === n) resolve();
    }));
    const sends = [];
    for (let i = 0; i < n; i++) sends.push(oneShot.send(new TextEncoder().encode(String(i)), b.local));
    await b.ready;
    await Promise.all(sends);
    await all;
    console.log(JSON.stringify({
      early,
      batching: b.batching,
      icmp: b.hearsIcmp,
      buffer: (b.receiveBufferSize ?? 0) > 0,
      oneShot: { batching: oneShot.batching, icmp: oneShot.hearsIcmp, buffer: oneShot.receiveBufferSize },
      ordered: seen.length === n,
    }));
    await oneShot.close();
    await b.close();
  `;
  const out = await runWithStdin(script, ["--allow-all"]);
  assert.deepEqual(JSON.parse(out), {
    early: { batching: false, icmp: false },
    batching: true,
    icmp: true,
    buffer: true,
    oneShot: { batching: false, icmp: false },
    ordered: true,
  });
});

Deno.test("UdpTransport: a handler that copies gets views of the receive buffer; by default each datagram is its own copy; the transport layer's requests keep their bodies", async () => {
  const { TransportLayer } = await import("../lib/sip/transport_layer.ts");
  const listener = await UdpTransport.open({ host: "127.0.0.1" });
  const plain = await UdpTransport.open({ host: "127.0.0.1" });
  const peer = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    // Default: the handler may keep data.
    const kept = collect(plain);
    const n = 50;
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          peer.send(enc.encode(`datagram ${i}`), { host: "127.0.0.1", port: plain.local.port }),
      ),
    );
    await kept.wait(n);
    assert.deepEqual(
      kept.got.map((m) => dec.decode(m.data)),
      Array.from({ length: n }, (_, i) => `datagram ${i}`),
    );
    for (const m of kept.got) assert.equal(m.data.buffer.byteLength, m.data.length);
    // With copies: views of the socket's buffer (what the handler saw while it ran).
    const seen: string[] = [];
    let views = 0;
    listener.onMessage((m) => {
      seen.push(dec.decode(m.data));
      if (m.data.buffer.byteLength > m.data.length) views++;
    }, { copies: true });
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          peer.send(enc.encode(`view ${i}`), { host: "127.0.0.1", port: listener.local.port }),
      ),
    );
    for (let t = 0; t < 500 && seen.length < n; t++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => `view ${i}`));
    assert.equal(views, n);
    // The transport layer takes views: a burst of MESSAGEs, each request
    // still holding its own body after later datagrams reused the buffer.
    const layer = new TransportLayer({ transports: [listener] });
    const requests: { body: () => string }[] = [];
    layer.onRequest((req) => requests.push({ body: () => dec.decode(req.body) }));
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        peer.send(
          enc.encode(
            `MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n` +
              `Via: SIP/2.0/UDP 127.0.0.1:${peer.local.port};branch=z9hG4bKlend${i}\r\n` +
              `From: <sip:a@127.0.0.1>;tag=${i}\r\nTo: <sip:bob@127.0.0.1>\r\n` +
              `Call-ID: lend-${i}\r\nCSeq: 1 MESSAGE\r\n` +
              `Content-Length: ${`body number ${i}`.length}\r\n\r\nbody number ${i}`,
          ),
          { host: "127.0.0.1", port: listener.local.port },
        )),
    );
    for (let t = 0; t < 500 && requests.length < n; t++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(
      requests.map((r) => r.body()),
      Array.from({ length: n }, (_, i) => `body number ${i}`),
    );
    await layer.close();
  } finally {
    await listener.close().catch(() => {});
    await plain.close();
    await peer.close();
  }
});

Deno.test("UdpTransport.sendText: text goes out as its UTF-8 bytes, in order with bytes, in a batch or on its own (too big for a slot, non-ASCII)", async () => {
  {
    const listener = await UdpTransport.open({ host: "127.0.0.1" });
    const peer = await UdpTransport.open({ host: "127.0.0.1", receivers: 1 });
    try {
      assert.equal(listener.batching, true, "Linux with --allow-ffi");
      const got = collect(peer);
      const to: HostPort = { host: "127.0.0.1", port: peer.local.port };
      const texts = [
        "plain ascii",
        "é and 中文 and 😀",
        "x".repeat(700), // over a third of a slot: encoded, then checked
        "é".repeat(1500), // 3,000 bytes: not in a 2 KiB slot
        "y".repeat(2048),
        "y".repeat(2049),
      ];
      const sends: Promise<void>[] = [];
      for (const t of texts) {
        sends.push(listener.sendText(t, to));
        sends.push(listener.send(enc.encode(`bytes after ${t.length}`), to));
      }
      await Promise.all(sends);
      await got.wait(texts.length * 2);
      const want = texts.flatMap((t) => [t, `bytes after ${t.length}`]);
      assert.deepEqual(got.got.map((m) => dec.decode(m.data)), want);
      assert.deepEqual(got.got.map((m) => m.data.length).slice(0, 4), [11, 14, 22, 14]);
    } finally {
      await listener.close();
      await peer.close();
    }
  }
});

Deno.test("TransportLayer over UDP: a prepared 200 sent as text has the bytes formatMessage gives", async () => {
  const { TransportLayer } = await import("../lib/sip/transport_layer.ts");
  const { createResponse, formatMessage } = await import("../lib/sip/message.ts");
  const listener = await UdpTransport.open({ host: "127.0.0.1" });
  const peer = await UdpTransport.open({ host: "127.0.0.1", receivers: 1 });
  const layer = new TransportLayer({ transports: [listener] });
  try {
    const answers = collect(peer);
    const sent: Uint8Array[] = [];
    layer.onRequest((req, info) => {
      const res = createResponse(req, 200, { toTag: "tAg1", headers: [["Server", "sipkit ü"]] });
      const packet = layer.prepareResponse(res, info, req)!;
      sent.push(formatMessage(res));
      layer.sendPrepared(packet);
    });
    const wire = "MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\n" +
      `Via: SIP/2.0/UDP 127.0.0.1:${peer.local.port};branch=z9hG4bKtext;rport\r\n` +
      "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\n" +
      "Call-ID: text-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    await peer.send(enc.encode(wire), { host: "127.0.0.1", port: listener.local.port });
    await answers.wait(1);
    assert.deepEqual(answers.got[0].data, sent[0]);
    assert.match(dec.decode(answers.got[0].data), /\r\nServer: sipkit ü\r\n/);
  } finally {
    await layer.close();
    await peer.close();
  }
});

Deno.test("FastUdp.receiveMany takes what waits with one call, in order, with each sender; a short batch means none is left", async () => {
  const { NONE } = await import("../lib/sip/_udp_fast.ts");
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const local = conn.addr as Deno.NetAddr;
  const senders = [0, 1].map(() =>
    Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 })
  );
  try {
    const fast = openFastUdp({ host: "127.0.0.1", port: local.port })!;
    assert.ok(fast, "Linux with --allow-ffi");
    assert.equal(fast.receiveMany(8), NONE);
    const sizes = [1, 700, 9000, 3, 65_000, 20, 5, 6, 7, 8, 9];
    for (const [i, size] of sizes.entries()) {
      const data = new Uint8Array(size).fill(65 + i);
      await senders[i % 2].send(data, local);
    }
    const got: { data: number[]; port: number }[] = [];
    let calls = 0;
    for (;;) {
      const n = fast.receiveMany(8);
      if (n === NONE) break;
      calls++;
      for (let i = 0; i < n; i++) {
        const d = fast.received(i);
        got.push({ data: [d.length, d[0], d[d.length - 1]], port: fast.sender(i).port });
        assert.equal(fast.sender(i).host, "127.0.0.1");
      }
      if (n < 8) break;
    }
    assert.equal(calls, 2, "8, then the 3 left");
    assert.deepEqual(
      got,
      sizes.map((size, i) => ({
        data: [size, 65 + i, 65 + i],
        port: (senders[i % 2].addr as Deno.NetAddr).port,
      })),
    );
    assert.equal(fast.receiveMany(4), NONE);
  } finally {
    conn.close();
    for (const s of senders) s.close();
  }
});
