/**
 * A TCP flood against `sipkit message --listen`, scaled down: many
 * connections that each send part of a header and then nothing. The limits
 * (--tcp-max-connections, --tcp-max-buffered, --tcp-message-timeout) close
 * what is over them, the rest goes at the incomplete-message timeout, UDP
 * OPTIONS are answered throughout, and an honest long-lived connection
 * (including one that sends a message in two pieces) is served before,
 * during and after. Loopback only; every socket is closed at the end. The
 * full-size measurement (5,000 connections of 60 kB, resident memory) is
 * bench/tcp_flood.ts.
 */

import assert from "node:assert/strict";
import { spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function options(branch: string, transport: "UDP" | "TCP", local: Deno.NetAddr): string {
  return [
    "OPTIONS sip:bob@127.0.0.1 SIP/2.0",
    `Via: SIP/2.0/${transport} 127.0.0.1:${local.port};branch=z9hG4bK${branch};rport`,
    "Max-Forwards: 70",
    `From: <sip:probe@127.0.0.1>;tag=${branch}`,
    "To: <sip:bob@127.0.0.1>",
    `Call-ID: ${branch}@127.0.0.1`,
    "CSeq: 1 OPTIONS",
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** Reads from a TCP connection until a whole response head has arrived; its status line. */
async function readStatus(conn: Deno.TcpConn, ms = 5000): Promise<string> {
  const buf = new Uint8Array(8192);
  let text = "";
  const deadline = Date.now() + ms;
  while (!text.includes("\r\n\r\n")) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no response within ${ms} ms: ${JSON.stringify(text)}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
    ]).finally(() => clearTimeout(timer));
    if (n === "timeout") continue;
    if (n === null) throw new Error(`connection closed: ${JSON.stringify(text)}`);
    text += dec.decode(buf.subarray(0, n));
  }
  return text.slice(0, text.indexOf("\r\n"));
}

async function udpOptions(udp: Deno.DatagramConn, port: number, branch: string): Promise<string> {
  const local = udp.addr as Deno.NetAddr;
  await udp.send(enc.encode(options(branch, "UDP", local)), {
    transport: "udp",
    hostname: "127.0.0.1",
    port,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const got = await Promise.race([
    udp.receive(),
    new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), 5000)),
  ]).finally(() => clearTimeout(timer));
  if (got === "timeout") throw new Error("no UDP answer to OPTIONS within 5 s");
  const text = dec.decode(got[0]);
  return text.slice(0, text.indexOf("\r\n"));
}

Deno.test("a TCP flood of incomplete messages meets the connection, buffer and timeout limits; UDP and honest TCP peers are served", async () => {
  const dirs = await tempSipkitDirs();
  const MAX_CONNECTIONS = 40;
  const MAX_BUFFERED = 131_072;
  const ATTACKERS = 100;
  const CHUNK = 6000;
  const proc = spawnSipkit([
    "message",
    "--listen",
    "--bind",
    "127.0.0.1:0",
    "-u",
    "bob@example.test",
    "--tcp-max-connections",
    String(MAX_CONNECTIONS),
    "--tcp-max-buffered",
    String(MAX_BUFFERED),
    "--tcp-message-timeout",
    "1",
  ], { name: "listener", env: dirs.env, stdin: false });
  const sockets: { close(): void }[] = [];
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const listening = await proc.waitEvent((e) => e.type === "listening");
    const port = Number(String(listening.address).split(":")[1]);

    // An honest peer with a long-lived connection, before the flood.
    const honest = await Deno.connect({ hostname: "127.0.0.1", port });
    sockets.push(honest);
    await honest.write(enc.encode(options("honest1", "TCP", honest.localAddr)));
    assert.match(await readStatus(honest), /^SIP\/2\.0 200 /);

    // The flood: each connection sends 6 kB of a header that never ends.
    const start = performance.now();
    const pad = `MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nX-Pad: ${"a".repeat(CHUNK)}`.slice(0, CHUNK);
    const closedAt: number[] = [];
    const attackers = await Promise.all(
      Array.from({ length: ATTACKERS }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    sockets.push(...attackers);
    const ends = attackers.map(async (conn, i) => {
      try {
        await conn.write(enc.encode(pad));
      } catch { /* closed already: refused */ }
      const buf = new Uint8Array(1024);
      try {
        while (await conn.read(buf) !== null) { /* nothing is expected */ }
      } catch { /* reset: closed as well */ }
      closedAt[i] = performance.now() - start;
    });

    // While it lasts: UDP OPTIONS are answered, and the honest connection
    // gets a message through that arrives in two pieces.
    await new Promise((r) => setTimeout(r, 300));
    assert.match(await udpOptions(udp, port, "udp1"), /^SIP\/2\.0 200 /);
    const whole = enc.encode(options("honest2", "TCP", honest.localAddr));
    await honest.write(whole.subarray(0, 100));
    await new Promise((r) => setTimeout(r, 300));
    await honest.write(whole.subarray(100));
    assert.match(await readStatus(honest), /^SIP\/2\.0 200 /);

    // Every attacker is gone soon: the limits closed most, the timeout the rest.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const all = await Promise.race([
      Promise.all(ends).then(() => true),
      new Promise<false>((r) => timer = setTimeout(() => r(false), 15_000)),
    ]).finally(() => clearTimeout(timer));
    assert.ok(all, `only ${closedAt.filter((t) => t !== undefined).length} attackers were closed`);

    // After it: the honest connection and a new one are served, UDP too.
    await honest.write(enc.encode(options("honest3", "TCP", honest.localAddr)));
    assert.match(await readStatus(honest), /^SIP\/2\.0 200 /);
    const fresh = await Deno.connect({ hostname: "127.0.0.1", port });
    sockets.push(fresh);
    await fresh.write(enc.encode(options("fresh1", "TCP", fresh.localAddr)));
    assert.match(await readStatus(fresh), /^SIP\/2\.0 200 /);
    assert.match(await udpOptions(udp, port, "udp2"), /^SIP\/2\.0 200 /);

    // What closed each attacker, from the listener's log (complete once it exited).
    await proc.stop();
    const logs = proc.logs();
    const count = (re: RegExp) => (logs.match(re) ?? []).length;
    assert.match(logs, /connections open \(the limit\); closing new ones/);
    const byBuffer = count(/incomplete messages of all connections would hold more than/g);
    const byTimeout = count(/a message still incomplete after 1000 ms/g);
    // Under the connection limit (the honest peer holds a slot) and with room
    // for MAX_BUFFERED / CHUNK incomplete headers, only those wait for the
    // timeout; the others were closed by the limits.
    const room = MAX_CONNECTIONS - 1;
    const held = Math.ceil(MAX_BUFFERED / CHUNK);
    assert.ok(byTimeout >= 1 && byTimeout <= held, `${byTimeout} closed by the timeout`);
    assert.ok(byBuffer >= 1 && byBuffer <= room, `${byBuffer} closed by the buffer limit`);
    assert.ok(
      ATTACKERS - byTimeout - byBuffer >= ATTACKERS - room,
      `${ATTACKERS - byTimeout - byBuffer} refused over the connection limit`,
    );
    // The timeout never closes a connection before its time.
    const late = closedAt.filter((t) => t >= 950).length;
    assert.ok(late >= byTimeout, `${byTimeout} timeouts but only ${late} closed after 950 ms`);
  } catch (error) {
    console.error(proc.logs());
    throw error;
  } finally {
    for (const s of sockets) {
      try {
        s.close();
      } catch { /* already closed */ }
    }
    udp.close();
    await proc.stop();
    await dirs.cleanup();
  }
});
