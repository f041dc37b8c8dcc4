import assert from "node:assert/strict";
import { UdpTransport } from "../lib/sip/transport_udp.ts";
import { defaultBindHost, openTransports } from "../lib/sip/sockets.ts";
import { TcpTransport, TlsTransport } from "../lib/sip/transport_tcp.ts";
import type { HostPort, Inbound, Transport } from "../lib/sip/transport.ts";
import { ManualClock } from "../lib/sip/clock.ts";
import { ConnectError } from "../lib/sip/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const tlsDir = new URL("./fixtures/tls/", import.meta.url);
const caPem = Deno.readTextFileSync(new URL("ca.pem", tlsDir));
const otherCaPem = Deno.readTextFileSync(new URL("other_ca.pem", tlsDir));
const serverCert = Deno.readTextFileSync(new URL("server.pem", tlsDir));
const serverKey = Deno.readTextFileSync(new URL("server.key", tlsDir));

function options(body = "", extra = "") {
  return "OPTIONS sip:bob@example.test SIP/2.0\r\n" +
    "Via: SIP/2.0/TCP client.example.test;branch=z9hG4bK" + crypto.randomUUID() + "\r\n" +
    extra + `Content-Length: ${enc.encode(body).length}\r\n\r\n` + body;
}

/** Collects inbound messages and lets a test wait for the n-th one. */
function inbox(transport: Transport) {
  const got: Inbound[] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  transport.onMessage((m) => {
    got.push(m);
    waiters = waiters.filter((w) => {
      if (got.length >= w.n) w.resolve();
      return got.length < w.n;
    });
  });
  return {
    got,
    texts: () => got.map((m) => dec.decode(m.data)),
    wait: (n: number) =>
      got.length >= n ? Promise.resolve() : new Promise<void>((resolve) => {
        waiters.push({ n, resolve });
      }),
  };
}

function closedEvents() {
  const events: { remote: HostPort; reason: string }[] = [];
  let notify: (() => void) | undefined;
  return {
    events,
    onConnectionClosed: (remote: HostPort, reason: string) => {
      events.push({ remote, reason });
      notify?.();
    },
    next: () => new Promise<void>((resolve) => notify = resolve),
  };
}

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`UdpTransport exchanges datagrams on ${host}`, async () => {
    const a = await UdpTransport.open({ host });
    const b = await UdpTransport.open({ host });
    try {
      assert.notEqual(a.local.port, 0);
      assert.equal(a.local.host, host);
      const boxA = inbox(a);
      const boxB = inbox(b);
      const msg = options("hello");
      await a.send(enc.encode(msg), b.local);
      await boxB.wait(1);
      assert.equal(boxB.texts()[0], msg);
      assert.deepEqual(boxB.got[0].remote, a.local);
      assert.deepEqual(boxB.got[0].local, b.local);
      assert.equal(boxB.got[0].transport, b);
      await b.send(enc.encode("SIP/2.0 200 OK\r\n\r\n"), boxB.got[0].remote);
      await boxA.wait(1);
      assert.equal(boxA.texts()[0], "SIP/2.0 200 OK\r\n\r\n");
    } finally {
      await a.close();
      await b.close();
    }
  });
}

Deno.test("UdpTransport ignores keep-alives and survives a throwing handler", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1" });
  const b = await UdpTransport.open({ host: "127.0.0.1" });
  const logs: string[] = [];
  const c = await UdpTransport.open({ host: "127.0.0.1", logger: (_l, m) => logs.push(m) });
  try {
    const seen: string[] = [];
    let release: () => void;
    const second = new Promise<void>((r) => release = r);
    c.onMessage((m) => {
      seen.push(dec.decode(m.data));
      if (seen.length === 1) throw new Error("boom");
      release();
    });
    await a.send(enc.encode("\r\n\r\n"), c.local);
    await a.send(new Uint8Array(0), c.local);
    await a.send(enc.encode("first"), c.local);
    await b.send(enc.encode("second"), c.local);
    await second;
    assert.deepEqual(seen, ["first", "second"]);
    assert.ok(logs.some((l) => /handler threw: Error: boom/.test(l)));
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

Deno.test("UdpTransport takes a burst in arrival order, with a receive buffer of 1 MiB granted", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1" });
  const b = await UdpTransport.open({ host: "127.0.0.1" });
  const small = await UdpTransport.open({ host: "127.0.0.1", receiveBuffer: 0 });
  try {
    // With --allow-ffi on Linux the kernel reports twice what it granted:
    // 1 MiB, or net.core.rmem_max when the process may not exceed it.
    const rmemMax = Number(Deno.readTextFileSync("/proc/sys/net/core/rmem_max"));
    const root = Deno.uid() === 0;
    assert.ok(
      b.receiveBufferSize! >= 2 * (root ? 1 << 20 : Math.min(1 << 20, rmemMax)),
      `receive buffer ${b.receiveBufferSize}`,
    );
    assert.equal(small.receiveBufferSize, undefined, "receiveBuffer 0 leaves the default");
    const n = 2000;
    const seen: number[] = [];
    let done: () => void;
    const all = new Promise<void>((r) => done = r);
    b.onMessage((m) => {
      seen.push(Number(dec.decode(m.data)));
      assert.equal(m.transport, b);
      if (seen.length === n) done();
    });
    // Sent without waiting for the receiver: several receives complete in
    // one turn, and must still come out in the order sent.
    for (let i = 0; i < n; i++) await a.send(enc.encode(String(i)), b.local);
    await all;
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
  } finally {
    await Promise.all([a.close(), b.close(), small.close()]);
  }
});

Deno.test("UdpTransport rejects sends after close and reports the bound port", async () => {
  const a = await UdpTransport.open({ host: "127.0.0.1", port: 0 });
  const port = a.local.port;
  await a.close();
  await assert.rejects(a.send(enc.encode("x"), { host: "127.0.0.1", port }), /closed/);
  // The port is free again.
  const again = await UdpTransport.open({ host: "127.0.0.1", port });
  assert.equal(again.local.port, port);
  await again.close();
});

/** A UDP port on `host` where nobody listens (bound once, then closed). */
function closedUdpPort(host: string): HostPort {
  const s = Deno.listenDatagram({ transport: "udp", hostname: host, port: 0 });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return { host, port };
}

/** Sends to `to` until a send rejects (the ICMP answer has been heard); returns that error. */
async function sendUntilRefused(t: Transport, to: HostPort): Promise<unknown> {
  for (let i = 0; i < 100; i++) {
    try {
      await t.send(enc.encode("OPTIONS sip:x SIP/2.0\r\n\r\n"), to);
    } catch (e) {
      return e;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no ICMP refusal from ${to.host}:${to.port} after 100 sends`);
}

for (const [bind, target] of [["127.0.0.1", "127.0.0.1"], ["::1", "::1"], ["::", "127.0.0.1"]]) {
  Deno.test(`UdpTransport on ${bind} hears ICMP port unreachable from ${target} (RFC 3261 18.4)`, async () => {
    const t = await UdpTransport.open({ host: bind });
    const live = await UdpTransport.open({ host: target });
    try {
      assert.equal(t.hearsIcmp, true, "Linux with --allow-ffi");
      const dead = closedUdpPort(target);
      const error = await sendUntilRefused(t, dead);
      assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
      assert.match((error as Error).message, /ICMP port unreachable/);
      // Reported once, like a connected socket: the next send goes out again.
      await t.send(enc.encode("again"), dead);
      // A refusal pending on the socket does not fail a send to someone else,
      // and is still reported to its own destination afterwards.
      const box = inbox(live);
      let refusedAfterOtherSend = false;
      for (let i = 1; i <= 100 && !refusedAfterOtherSend; i++) {
        await t.send(enc.encode(`hello ${i}`), live.local); // never rejects
        await box.wait(i);
        refusedAfterOtherSend = await t.send(enc.encode("x"), dead).then(() => false, (e) => {
          assert.ok(e instanceof Deno.errors.ConnectionRefused, String(e));
          return true;
        });
      }
      assert.ok(refusedAfterOtherSend);
      // Receiving goes on after a refusal.
      const back = inbox(t);
      await t.send(enc.encode("x"), dead);
      await live.send(enc.encode("reply"), await t.localFor(live.local));
      await back.wait(1);
      assert.equal(back.texts()[0], "reply");
    } finally {
      await t.close();
      await live.close();
    }
  });
}

Deno.test("UdpTransport with icmpAfter: hears ICMP errors only that long after its first send, then tells onRefused at once", async () => {
  const logs: string[] = [];
  const t = await UdpTransport.open({
    host: "127.0.0.1",
    icmpAfter: 100,
    logger: (_level, msg) => logs.push(msg),
  });
  const taken: HostPort[] = [];
  let take = true;
  t.onRefused((to, error) => {
    assert.ok(error instanceof Deno.errors.ConnectionRefused, String(error));
    assert.match(error.message, /ICMP port unreachable/);
    taken.push(to);
    return take;
  });
  try {
    const dead = closedUdpPort("127.0.0.1");
    assert.equal(t.hearsIcmp, false, "nothing set up at bind");
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(t.hearsIcmp, false, "the delay runs from the first send, not from bind");
    // The first datagram goes out before the set-up: its refusal is not heard.
    await t.send(enc.encode("one"), dead);
    assert.equal(t.hearsIcmp, false);
    const start = performance.now();
    while (!t.hearsIcmp && performance.now() - start < 5_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(t.hearsIcmp, true, "set up after icmpAfter");
    assert.ok(logs.some((l) => /ICMP errors heard/.test(l)), logs.join("\n"));
    assert.deepEqual(taken, []);
    // A datagram sent now is refused, and the handler hears it without a
    // further send (the error queue is read on a timer).
    await t.send(enc.encode("two"), dead);
    const sent = performance.now();
    while (taken.length === 0 && performance.now() - sent < 5_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(taken, [dead]);
    // Taken by the handler: the next send to it goes out.
    await t.send(enc.encode("three"), dead);
    // Not taken: the refusal waits for the next send there, which rejects.
    take = false;
    while (taken.length < 2 && performance.now() - sent < 10_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(taken.length, 2);
    await assert.rejects(t.send(enc.encode("four"), dead), Deno.errors.ConnectionRefused);
  } finally {
    await t.close();
  }
});

Deno.test("UdpTransport with icmpAfter sets ICMP errors up on its own socket when another shares its port", async () => {
  // While a move re-binds, two sockets may share a port on different
  // addresses; the deferred set-up must find this socket by address and
  // port, not by port alone (which could pick the newer one).
  const t = await UdpTransport.open({ host: "127.0.0.1", icmpAfter: 50, receivers: 1 });
  let other: UdpTransport;
  try {
    other = await UdpTransport.open({
      host: "127.0.0.2",
      port: t.local.port,
      icmpAfter: 60_000,
      receivers: 1,
    });
  } catch (e) {
    await t.close();
    throw e;
  }
  const taken: HostPort[] = [];
  t.onRefused((to) => {
    taken.push(to);
    return true;
  });
  try {
    const dead = closedUdpPort("127.0.0.1");
    await t.send(enc.encode("one"), dead);
    const start = performance.now();
    while (!t.hearsIcmp && performance.now() - start < 5_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(t.hearsIcmp, true);
    await t.send(enc.encode("two"), dead);
    while (taken.length === 0 && performance.now() - start < 10_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(taken, [dead], "the refusal reached the socket that sent");
    assert.equal(other.hearsIcmp, false);
  } finally {
    await Promise.all([t.close(), other.close()]);
  }
});

Deno.test("UdpTransport with icmpAfter closed before the delay never sets ICMP errors up", async () => {
  const logs: string[] = [];
  const t = await UdpTransport.open({
    host: "127.0.0.1",
    icmpAfter: 50,
    logger: (_level, msg) => logs.push(msg),
  });
  const peer = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    await t.send(enc.encode("hi"), peer.local);
  } finally {
    await t.close();
  }
  await new Promise((r) => setTimeout(r, 120));
  await peer.close();
  assert.equal(t.hearsIcmp, false);
  assert.ok(!logs.some((l) => /ICMP errors/.test(l)), logs.join("\n"));
});

Deno.test("defaultBindHost() is :: exactly where an IPv6 socket also takes IPv4 (what two binds show)", () => {
  // The probe itself: bind ::, then 0.0.0.0 on the same port.
  let dual = false;
  try {
    const v6 = Deno.listenDatagram({ transport: "udp", hostname: "::", port: 0 });
    try {
      const port = (v6.addr as Deno.NetAddr).port;
      Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port }).close();
    } catch (e) {
      dual = e instanceof Deno.errors.AddrInUse;
    } finally {
      v6.close();
    }
  } catch { /* no IPv6 */ }
  assert.equal(defaultBindHost(), dual ? "::" : "0.0.0.0");
});

Deno.test("defaultBindHost() without read permission and no terminal: the same answer, no prompt", async () => {
  const script = new URL("../lib/sip/sockets.ts", import.meta.url).href;
  const main = await Deno.makeTempFile({ prefix: `sipkit_bindhost_${Deno.pid}_`, suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      main,
      `import { defaultBindHost } from "${script}";\n` +
        `console.log(defaultBindHost(), (await Deno.permissions.query({ name: "read" })).state);\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-net", "--allow-net", main],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    const [host, read] = new TextDecoder().decode(out.stdout).trim().split(" ");
    assert.notEqual(read, "granted"); // the read was refused: the two binds decided
    assert.equal(host, defaultBindHost());
    assert.doesNotMatch(err, /Requires read access|prompt/i);
  } finally {
    await Deno.remove(main);
  }
});

Deno.test("UdpTransport bound to 0.0.0.0 reports a loopback sent-by for a loopback target", async () => {
  const a = await UdpTransport.open();
  try {
    assert.equal(a.local.host, "0.0.0.0");
    assert.deepEqual(await a.localFor({ host: "127.0.0.1", port: 5060 }), {
      host: "127.0.0.1",
      port: a.local.port,
    });
  } finally {
    await a.close();
  }
});

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`TcpTransport frames messages and reuses the connection both ways on ${host}`, async () => {
    const server = new TcpTransport({ host });
    const client = new TcpTransport({ host, listen: false });
    try {
      const boxS = inbox(server);
      const boxC = inbox(client);
      const m1 = options("one");
      const m2 = options("", "Subject: two\r\n");
      await client.send(enc.encode(m1), server.local);
      await client.send(enc.encode(m2), server.local);
      await boxS.wait(2);
      assert.deepEqual(boxS.texts(), [m1, m2]);
      assert.equal(client.connections, 1, "second request reused the connection");
      const from = boxS.got[0].remote;
      assert.equal(from.host, host);
      assert.deepEqual(boxS.got[1].remote, from);
      // The response goes back over the inbound connection (RFC 3261 18.2.2).
      const res = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
      await server.send(enc.encode(res), from);
      await boxC.wait(1);
      assert.deepEqual(boxC.texts(), [res]);
      assert.equal(server.connections, 1);
      assert.deepEqual(boxC.got[0].remote, server.local);
      const sentBy = await client.localFor(server.local);
      assert.deepEqual(sentBy, boxS.got[0].remote, "a non-listening client shows its own port");
    } finally {
      await client.close();
      await server.close();
    }
  });
}

Deno.test("TcpTransport localFor shows the listening port", async () => {
  const server = new TcpTransport({ host: "127.0.0.1" });
  const client = new TcpTransport({ host: "127.0.0.1" });
  try {
    assert.deepEqual(await client.localFor(server.local), client.local);
    assert.equal(client.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("TcpTransport answers a double-CRLF ping with a CRLF pong", async () => {
  const server = new TcpTransport({ host: "127.0.0.1" });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.local.port });
  try {
    await conn.write(enc.encode("\r\n\r\n"));
    const buf = new Uint8Array(16);
    const n = await conn.read(buf);
    assert.deepEqual(buf.subarray(0, n!), enc.encode("\r\n"));
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("TcpTransport closes a connection with a missing Content-Length", async () => {
  const closed = closedEvents();
  const server = new TcpTransport({
    host: "127.0.0.1",
    onConnectionClosed: closed.onConnectionClosed,
  });
  const box = inbox(server);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.local.port });
  try {
    const gone = closed.next();
    await conn.write(enc.encode("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"));
    await gone;
    assert.match(closed.events[0].reason, /framing error: .*missing Content-Length/);
    assert.equal(await conn.read(new Uint8Array(8)), null, "peer sees the close");
    assert.equal(box.got.length, 0);
    assert.equal(server.connections, 0);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("TcpTransport closes idle connections after the configured time", async () => {
  const clock = new ManualClock();
  const closed = closedEvents();
  const server = new TcpTransport({ host: "127.0.0.1", idleTimeout: 60_000, clock });
  const client = new TcpTransport({
    host: "127.0.0.1",
    listen: false,
    idleTimeout: 30_000,
    clock,
    onConnectionClosed: closed.onConnectionClosed,
  });
  try {
    const box = inbox(server);
    await client.send(enc.encode(options()), server.local);
    await box.wait(1);
    clock.advance(29_999);
    assert.equal(client.connections, 1);
    await client.send(enc.encode(options()), server.local);
    await box.wait(2);
    clock.advance(29_999);
    assert.equal(client.connections, 1, "traffic restarted the idle timer");
    clock.advance(1);
    assert.equal(client.connections, 0);
    assert.equal(closed.events[0].reason, "idle");
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("TcpTransport rejects a send to a closed port with a ConnectError of kind refused", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const client = new TcpTransport({ host: "127.0.0.1", listen: false });
  try {
    await assert.rejects(
      client.send(enc.encode(options()), { host: "127.0.0.1", port }),
      (e: unknown) => {
        assert.ok(e instanceof ConnectError, String(e));
        assert.equal(e.kind, "refused");
        assert.match(e.message, new RegExp(`Cannot connect over tcp to 127\\.0\\.0\\.1:${port}`));
        return true;
      },
    );
  } finally {
    await client.close();
  }
});

Deno.test("TcpTransport opens one connection for concurrent sends", async () => {
  const server = new TcpTransport({ host: "127.0.0.1" });
  const client = new TcpTransport({ host: "127.0.0.1", listen: false });
  try {
    const box = inbox(server);
    const msgs = Array.from({ length: 20 }, (_, i) => options("x".repeat(i * 500)));
    await Promise.all(msgs.map((m) => client.send(enc.encode(m), server.local)));
    await box.wait(20);
    assert.deepEqual(new Set(box.texts()), new Set(msgs));
    assert.equal(server.connections, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`TlsTransport verifies the server against the test CA on ${host}`, async () => {
    const server = new TlsTransport({ host, cert: serverCert, key: serverKey });
    const client = new TlsTransport({ caCerts: [caPem], listen: false });
    try {
      assert.equal(server.listening, true);
      const boxS = inbox(server);
      const boxC = inbox(client);
      const msg = options("secure");
      await client.send(enc.encode(msg), server.local);
      await boxS.wait(1);
      assert.deepEqual(boxS.texts(), [msg]);
      await server.send(enc.encode("SIP/2.0 200 OK\r\nl: 0\r\n\r\n"), boxS.got[0].remote);
      await boxC.wait(1);
      assert.equal(boxC.texts()[0], "SIP/2.0 200 OK\r\nl: 0\r\n\r\n");
      assert.equal(boxC.got[0].transport.protocol, "tls");
    } finally {
      await client.close();
      await server.close();
    }
  });
}

Deno.test("TlsTransport checks the server name given in SendOptions", async () => {
  const server = new TlsTransport({ host: "127.0.0.1", cert: serverCert, key: serverKey });
  const client = new TlsTransport({ caCerts: [caPem], listen: false });
  try {
    const box = inbox(server);
    await client.send(enc.encode(options()), server.local, { serverName: "localhost" });
    await box.wait(1);
    const other = { host: "127.0.0.1", port: server.local.port };
    const fresh = new TlsTransport({ caCerts: [caPem], listen: false });
    try {
      await assert.rejects(
        fresh.send(enc.encode(options()), other, { serverName: "wrong.example" }),
        /not valid for name "wrong.example"/,
      );
    } finally {
      await fresh.close();
    }
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("TlsTransport refuses a server signed by an untrusted CA", async () => {
  const server = new TlsTransport({ host: "127.0.0.1", cert: serverCert, key: serverKey });
  const wrongCa = new TlsTransport({ caCerts: [otherCaPem], listen: false });
  const noCa = new TlsTransport({ listen: false });
  try {
    const box = inbox(server);
    await assert.rejects(wrongCa.send(enc.encode(options()), server.local), /UnknownIssuer/);
    await assert.rejects(noCa.send(enc.encode(options()), server.local), /UnknownIssuer/);
    assert.equal(box.got.length, 0);
    assert.equal(wrongCa.connections, 0);
  } finally {
    await wrongCa.close();
    await noCa.close();
    await server.close();
  }
});

Deno.test("TlsTransport can skip only the name check, still verifying the chain", async () => {
  const server = new TlsTransport({ host: "127.0.0.1", cert: serverCert, key: serverKey });
  const rightCa = new TlsTransport({
    caCerts: [caPem],
    listen: false,
    unsafelyDisableHostnameVerification: true,
  });
  const wrongCa = new TlsTransport({
    caCerts: [otherCaPem],
    listen: false,
    unsafelyDisableHostnameVerification: true,
  });
  try {
    const box = inbox(server);
    await rightCa.send(enc.encode(options()), server.local, { serverName: "wrong.example" });
    await box.wait(1);
    await assert.rejects(
      wrongCa.send(enc.encode(options()), server.local, { serverName: "wrong.example" }),
      /UnknownIssuer/,
    );
  } finally {
    await rightCa.close();
    await wrongCa.close();
    await server.close();
  }
});

Deno.test("TlsTransport with insecure skips verification", async () => {
  const server = new TlsTransport({ host: "127.0.0.1", cert: serverCert, key: serverKey });
  const client = new TlsTransport({ insecure: true, listen: false });
  try {
    const boxS = inbox(server);
    const boxC = inbox(client);
    const msg = options("no checks");
    await client.send(enc.encode(msg), server.local, { serverName: "wrong.example" });
    await boxS.wait(1);
    assert.deepEqual(boxS.texts(), [msg]);
    const res = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    await server.send(enc.encode(res), boxS.got[0].remote);
    await boxC.wait(1);
    assert.deepEqual(boxC.texts(), [res]);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("TlsTransport cannot listen without a certificate", () => {
  assert.throws(() => new TlsTransport({ listen: true }), /cert and key are required/);
  const t = new TlsTransport();
  assert.equal(t.listening, false);
  assert.equal(t.local.port, 0);
  return t.close();
});

Deno.test("UdpTransport bound to :: receives IPv4 datagrams with an unmapped source address", async () => {
  const dual = await UdpTransport.open({ host: "::" });
  const v4 = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    const box = inbox(dual);
    await v4.send(enc.encode("x"), { host: "127.0.0.1", port: dual.local.port });
    await box.wait(1);
    assert.deepEqual(box.got[0].remote, v4.local);
    assert.deepEqual(await dual.localFor({ host: "::1", port: 5060 }), {
      host: "::1",
      port: dual.local.port,
    });
  } finally {
    await dual.close();
    await v4.close();
  }
});

Deno.test("TcpTransport carries a message larger than one read and enforces maxMessageSize", async () => {
  const closed = closedEvents();
  const server = new TcpTransport({
    host: "127.0.0.1",
    maxMessageSize: 200_000,
    onConnectionClosed: closed.onConnectionClosed,
  });
  const client = new TcpTransport({ host: "127.0.0.1", listen: false });
  try {
    const box = inbox(server);
    const big = options("b".repeat(150_000));
    await client.send(enc.encode(big), server.local);
    await box.wait(1);
    assert.equal(box.texts()[0], big);
    const gone = closed.next();
    // The server may close before the client has written everything: ignore the client's fate.
    const sending = client.send(enc.encode(options("c".repeat(250_000))), server.local)
      .catch(() => {});
    await gone;
    await sending;
    assert.match(closed.events[0].reason, /exceed the limit of 200000/);
    assert.equal(box.got.length, 1);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("TlsTransport gives up on a server that never completes the handshake", async () => {
  const clock = new ManualClock();
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (silent.addr as Deno.NetAddr).port;
  const accepted = silent.accept();
  const client = new TlsTransport({ caCerts: [caPem], listen: false, clock, connectTimeout: 5000 });
  try {
    const sending = client.send(enc.encode(options()), { host: "127.0.0.1", port });
    const conn = await accepted;
    clock.advance(5000);
    await assert.rejects(
      sending,
      (e: unknown) => {
        assert.ok(e instanceof ConnectError && e.kind === "timeout", String(e));
        assert.match(
          e.message,
          /Cannot connect over tls to 127\.0\.0\.1:\d+: timed out after 5000 ms/,
        );
        return true;
      },
    );
    assert.equal(client.connections, 0);
    conn.close();
  } finally {
    silent.close();
    await client.close();
  }
});

Deno.test("address helpers normalize hosts and match subnets", async (t) => {
  const { normalizeHost, inSubnet, hostPortKey, routeLocalAddress, isIPv4 } = await import(
    "../lib/sip/_net.ts"
  );
  await t.step("isIPv4", () => {
    for (const host of ["192.0.2.1", "0.0.0.0", "999.1.1.1", "01.002.3.4"]) {
      assert.equal(isIPv4(host), true, host);
    }
    for (
      const host of ["1.2.3", "1.2.3.4.5", "1.2.3.", "1234.1.1.1", "1..2.3", "::1", "a.b.c.d", ""]
    ) {
      assert.equal(isIPv4(host), false, host);
    }
  });
  await t.step("normalizeHost", () => {
    assert.equal(normalizeHost("[2001:DB8::1]"), "2001:db8::1");
    assert.equal(normalizeHost("::ffff:192.0.2.7"), "192.0.2.7");
    assert.equal(normalizeHost("[::FFFF:10.0.0.1]"), "10.0.0.1");
    assert.equal(normalizeHost("::ffff:192.0.2"), "::ffff:192.0.2");
    assert.equal(normalizeHost("::ffff:192.0.2.7.1"), "::ffff:192.0.2.7.1");
    assert.equal(normalizeHost("::ffff:192.0.2."), "::ffff:192.0.2.");
    assert.equal(normalizeHost("::ffff:c000:207"), "::ffff:c000:207");
    assert.equal(normalizeHost("Example.TEST"), "example.test");
    assert.equal(
      hostPortKey({ host: "[::1]", port: 5060 }),
      hostPortKey({ host: "::1", port: 5060 }),
    );
  });
  await t.step("inSubnet", () => {
    assert.equal(inSubnet("192.0.2.77", "192.0.2.0/24"), true);
    assert.equal(inSubnet("192.0.3.1", "192.0.2.0/24"), false);
    assert.equal(inSubnet("10.1.2.3", "0.0.0.0/0"), true);
    assert.equal(inSubnet("2001:db8:0:1::5", "2001:db8::/32"), true);
    assert.equal(inSubnet("2001:db9::5", "2001:db8::/32"), false);
    assert.equal(inSubnet("fe80::1%eth0", "fe80::/64"), true);
    assert.equal(inSubnet("::ffff:10.0.0.1", "::ffff:10.0.0.0/104"), true);
    assert.equal(inSubnet("192.0.2.1", "2001:db8::/32"), false);
  });
  await t.step("routeLocalAddress", () => {
    assert.equal(routeLocalAddress("192.0.2.5", "198.51.100.1"), "192.0.2.5");
    assert.equal(routeLocalAddress("0.0.0.0", "127.0.0.1"), "127.0.0.1");
    assert.equal(routeLocalAddress("::", "::1"), "::1");
    assert.equal(routeLocalAddress("::", "127.0.0.1"), "127.0.0.1");
    // A name on the dual-stack default socket: IPv4 first (as with 0.0.0.0), not IPv6.
    const v4 = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    );
    if (v4) {
      assert.equal(routeLocalAddress("::", "sip.example.test"), v4.address);
      assert.equal(routeLocalAddress("::", "sip.example.test"), routeLocalAddress("0.0.0.0", "x"));
    }
  });
});

Deno.test("TcpTransport.ping gets a pong over the open connection", async () => {
  const server = new TcpTransport({ host: "127.0.0.1" });
  let pong: (remote: HostPort) => void = () => {};
  const ponged = new Promise<HostPort>((resolve) => pong = resolve);
  const client = new TcpTransport({ host: "127.0.0.1", listen: false, onPong: (r) => pong(r) });
  try {
    await assert.rejects(client.ping(server.local), /no open tcp connection/);
    const box = inbox(server);
    await client.send(enc.encode(options()), server.local);
    await box.wait(1);
    await client.ping(server.local);
    assert.deepEqual(await ponged, server.local);
    assert.equal(box.got.length, 1, "the ping is not a message");
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("openTransports for a one-shot sender opens TCP and TLS only when a message first goes over them", async () => {
  const [udp, tcp, tls] = await openTransports({ bind: "127.0.0.1:0", oneShot: true });
  const server = new TcpTransport({ host: "127.0.0.1" });
  try {
    assert.deepEqual([udp.protocol, tcp.protocol, tls.protocol], ["udp", "tcp", "tls"]);
    assert.deepEqual(tcp.local, udp.local, "TCP will listen on the UDP port");
    // Nothing listens there yet.
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: tcp.local.port }),
      Deno.errors.ConnectionRefused,
    );
    const back = inbox(tcp);
    const box = inbox(server);
    const first = options("first");
    await tcp.send(enc.encode(first), server.local);
    await box.wait(1);
    assert.equal(box.texts()[0], first);
    // Open now: listening on that port, and answers come back to the handler set before.
    (await Deno.connect({ hostname: "127.0.0.1", port: tcp.local.port })).close();
    await server.send(enc.encode("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), box.got[0].remote);
    await back.wait(1);
    assert.match(back.texts()[0], /^SIP\/2.0 200 OK/);
    assert.deepEqual(await tcp.localFor!(server.local), tcp.local);
  } finally {
    await Promise.all([udp.close(), tcp.close(), tls.close(), server.close()]);
  }
  // Closed before any use: nothing is opened.
  const [u2, t2, s2] = await openTransports({ bind: "127.0.0.1:0", oneShot: true });
  await Promise.all([u2.close(), t2.close(), s2.close()]);
  await assert.rejects(t2.send(enc.encode("x"), { host: "127.0.0.1", port: 9 }), /closed/);
});

Deno.test("openTransports for a one-shot sender: the system's receive buffer and one receive still take every datagram in order", async () => {
  const [udp, ...rest] = await openTransports({
    bind: "127.0.0.1:0",
    listen: ["udp"],
    udp: { receiveBuffer: 0, receivers: 1 },
  });
  const peer = await UdpTransport.open({ host: "127.0.0.1" });
  try {
    assert.equal((udp as UdpTransport).receiveBufferSize, undefined);
    const n = 200;
    const seen: number[] = [];
    let done: () => void;
    const all = new Promise<void>((r) => done = r);
    udp.onMessage((m) => {
      seen.push(Number(dec.decode(m.data)));
      if (seen.length === n) done();
    });
    for (let i = 0; i < n; i++) await peer.send(enc.encode(String(i)), udp.local);
    await all;
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i));
  } finally {
    await Promise.all([udp.close(), peer.close(), ...rest.map((t) => t.close())]);
  }
});
