/**
 * Fuzz-style robustness test: a real `sipkit register` process listening on
 * 127.0.0.1 gets thousands of mutated SIP messages over UDP and TCP (bit
 * flips, truncations, repeated headers, huge values, random bytes, broken
 * framing, the RFC 4475 torture messages), then must still answer OPTIONS
 * with 200 on both transports, and end cleanly on SIGTERM.
 *
 * Bounded in count and in time, loopback only: every message comes from
 * 127.0.0.1, the process is bound to 127.0.0.1, and `maddr`/`received`
 * (which could steer a response elsewhere) are defused in every input.
 */

import assert from "node:assert/strict";
import { UserAgent } from "../lib/sip/ua.ts";
import { spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";

const UDP_COUNT = 3000;
const TCP_COUNT = 1200;
const DEADLINE_MS = 90_000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes <-> text one to one (latin1), so mutations can work on either. */
function toText(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, i + 8192));
  }
  return s;
}
function toBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}

function seedMessages(): Uint8Array[] {
  const crlf = (lines: string[], body = "") =>
    toBytes(lines.join("\r\n") + `\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const via = (n: number) => `Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKfuzz${n};rport`;
  const common = (method: string, n: number) => [
    via(n),
    "Max-Forwards: 70",
    'From: "Fuzz" <sip:fuzz@example.test>;tag=f' + n,
    "To: <sip:alice@example.test>",
    `Call-ID: fuzz-${n}@127.0.0.1`,
    `CSeq: ${n} ${method}`,
  ];
  const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n" +
    "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
  const seeds = [
    crlf([
      "OPTIONS sip:alice@127.0.0.1 SIP/2.0",
      ...common("OPTIONS", 1),
      "Accept: application/sdp",
    ]),
    crlf(
      [
        "INVITE sip:alice@127.0.0.1 SIP/2.0",
        ...common("INVITE", 2),
        "Contact: <sip:fuzz@127.0.0.1:5999>",
        "Content-Type: application/sdp",
      ],
      sdp,
    ),
    crlf([
      "REGISTER sip:127.0.0.1 SIP/2.0",
      ...common("REGISTER", 3),
      "Contact: <sip:fuzz@127.0.0.1:5999>;expires=60, *",
      'Authorization: Digest username="fuzz", realm="x", nonce="n", uri="sip:127.0.0.1", response="0"',
    ]),
    crlf(
      [
        "MESSAGE sip:alice@127.0.0.1 SIP/2.0",
        ...common("MESSAGE", 4),
        "Content-Type: text/plain;charset=utf-8",
      ],
      "hello, world",
    ),
    crlf(
      [
        "NOTIFY sip:alice@127.0.0.1 SIP/2.0",
        ...common("NOTIFY", 5).map((l) => l.startsWith("To:") ? l + ";tag=zz" : l),
        "Event: presence",
        "Subscription-State: active;expires=600",
        "Content-Type: application/pidf+xml",
      ],
      '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:f@x"/>',
    ),
    crlf([
      "SIP/2.0 200 OK",
      ...common("OPTIONS", 6).map((l) => l.startsWith("To:") ? l + ";tag=a" : l),
    ]),
    crlf([
      "SUBSCRIBE sip:alice@127.0.0.1 SIP/2.0",
      ...common("SUBSCRIBE", 7),
      "Event: presence",
      "Expires: 600",
      "Contact: <sip:fuzz@127.0.0.1:5999>",
    ]),
    crlf(["CANCEL sip:alice@127.0.0.1 SIP/2.0", ...common("CANCEL", 8)]),
    crlf(["ACK sip:alice@127.0.0.1 SIP/2.0", ...common("ACK", 9)]),
    // Compact forms and folding.
    toBytes(
      "OPTIONS sip:alice@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKc\r\n" +
        "f: <sip:fuzz@example.test>;tag=c\r\nt: <sip:alice@example.test>\r\ni: c@x\r\n" +
        "CSeq: 1\r\n OPTIONS\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n",
    ),
  ];
  const dir = new URL("./fixtures/rfc4475/", import.meta.url);
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isFile && entry.name.endsWith(".dat")) {
      seeds.push(Deno.readFileSync(new URL(entry.name, dir)));
    }
  }
  return seeds;
}

type Mutator = (b: Uint8Array, r: () => number) => Uint8Array;

const int = (r: () => number, n: number) => Math.floor(r() * n);

const MUTATORS: Mutator[] = [
  // Bit flips.
  (b, r) => {
    const out = b.slice();
    const n = 1 + int(r, 8);
    for (let i = 0; i < n && out.length > 0; i++) out[int(r, out.length)] ^= 1 << int(r, 8);
    return out;
  },
  // Truncation.
  (b, r) => b.slice(0, int(r, b.length)),
  // A header line repeated many times.
  (b, r) => {
    const lines = toText(b).split("\r\n");
    const i = 1 + int(r, Math.max(1, lines.length - 2));
    const copies = Array(1 + int(r, 60)).fill(lines[i] ?? "Via: x");
    lines.splice(i, 0, ...copies);
    return toBytes(lines.join("\r\n"));
  },
  // A huge value.
  (b, r) => {
    const lines = toText(b).split("\r\n");
    const i = 1 + int(r, Math.max(1, lines.length - 2));
    const filler = ["A", ",", ";x=1", "<", '"', "%", " "][int(r, 7)];
    lines[i] = (lines[i] ?? "X-Big:") + filler.repeat(200 + int(r, 12_000));
    return toBytes(lines.join("\r\n"));
  },
  // Random bytes.
  (_b, r) => {
    const out = new Uint8Array(1 + int(r, 1500));
    for (let i = 0; i < out.length; i++) out[i] = int(r, 256);
    return out;
  },
  // Random bytes inserted.
  (b, r) => {
    const at = int(r, b.length + 1);
    const junk = new Uint8Array(1 + int(r, 40));
    for (let i = 0; i < junk.length; i++) junk[i] = int(r, 256);
    const out = new Uint8Array(b.length + junk.length);
    out.set(b.subarray(0, at));
    out.set(junk, at);
    out.set(b.subarray(at), at + junk.length);
    return out;
  },
  // A line removed, or two swapped.
  (b, r) => {
    const lines = toText(b).split("\r\n");
    const i = int(r, lines.length);
    const j = int(r, lines.length);
    if (r() < 0.5) lines.splice(i, 1);
    else [lines[i], lines[j]] = [lines[j], lines[i]];
    return toBytes(lines.join("\r\n"));
  },
  // A wrong Content-Length.
  (b, r) => {
    const values = ["-1", "99999999999999999999", String(int(r, 5000)), "", "1e3", "0x10"];
    return toBytes(
      toText(b).replace(/(Content-Length|l):[^\r\n]*/i, `Content-Length: ${values[int(r, 6)]}`),
    );
  },
  // Line ends changed.
  (b, r) => toBytes(toText(b).replaceAll("\r\n", ["\n", "\r", "\r\n\r\n", "\r\r\n"][int(r, 4)])),
  // Characters that open structures: quotes, brackets, escapes, NUL.
  (b, r) => {
    const s = toText(b);
    const at = int(r, s.length + 1);
    const c = ['"', "<", ">", "\\", "%", "%00", "\0", ";", ",", "=", "@", ":", "["][int(r, 13)];
    return toBytes(s.slice(0, at) + c.repeat(1 + int(r, 5)) + s.slice(at));
  },
  // Two messages spliced.
  (b, r) => {
    const s = toText(b);
    const at = int(r, s.length + 1);
    return toBytes(s.slice(0, at) + s.slice(int(r, s.length + 1)));
  },
];

/** Never lets a response be steered away from loopback. */
function defuse(b: Uint8Array): Uint8Array {
  return toBytes(toText(b).replace(/maddr/gi, "xaddr").replace(/received/gi, "xeceived"));
}

function mutate(seeds: Uint8Array[], r: () => number, maxSize: number): Uint8Array {
  let b = seeds[int(r, seeds.length)];
  const rounds = 1 + int(r, 3);
  for (let i = 0; i < rounds; i++) b = MUTATORS[int(r, MUTATORS.length)](b, r);
  b = defuse(b);
  return b.length > maxSize ? b.slice(0, maxSize) : b;
}

function optionsProbe(port: number, transport: "UDP" | "TCP", n: number): Uint8Array {
  return toBytes(
    [
      "OPTIONS sip:alice@127.0.0.1 SIP/2.0",
      `Via: SIP/2.0/${transport} 127.0.0.1:${port};branch=z9hG4bKprobe${n};rport`,
      "Max-Forwards: 70",
      "From: <sip:probe@example.test>;tag=probe",
      "To: <sip:alice@example.test>",
      `Call-ID: probe-${n}`,
      "CSeq: 1 OPTIONS",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
  );
}

/** Resolves with the first value of `p`, or rejects after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An OPTIONS over UDP from a fresh socket, retransmitted every 500 ms like a
 * UAC's (RFC 3261 17.1.2.2: a burst may overflow the receive buffer);
 * resolves with the status line of the answer.
 */
async function probeUdp(port: number, n: number): Promise<string> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const local = (sock.addr as Deno.NetAddr).port;
  const probe = optionsProbe(local, "UDP", n);
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  let retransmit: ReturnType<typeof setInterval> | undefined;
  try {
    await sock.send(probe, to);
    retransmit = setInterval(() => void sock.send(probe, to).catch(() => {}), 500);
    return await within(
      (async () => {
        for (;;) {
          const [data] = await sock.receive();
          const text = new TextDecoder().decode(data);
          if (text.includes(`Call-ID: probe-${n}`)) return text.split("\r\n")[0];
        }
      })(),
      15_000,
      "UDP answer to OPTIONS",
    );
  } finally {
    clearInterval(retransmit);
    sock.close();
  }
}

/** An OPTIONS over a new TCP connection; resolves with the status line. */
async function probeTcp(port: number, n: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const local = (conn.localAddr as Deno.NetAddr).port;
    await conn.write(optionsProbe(local, "TCP", n));
    return await within(
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        for (;;) {
          const k = await conn.read(buf);
          if (k === null) throw new Error("connection closed before the answer");
          text += new TextDecoder().decode(buf.subarray(0, k));
          if (text.includes("\r\n\r\n")) return text.split("\r\n")[0];
        }
      })(),
      10_000,
      "TCP answer to OPTIONS",
    );
  } finally {
    conn.close();
  }
}

Deno.test("fuzz: a running sipkit survives thousands of mutated messages and still answers OPTIONS", async () => {
  const started = Date.now();
  const dirs = await tempSipkitDirs();
  // A registrar for the process to register at (answers 200, no auth).
  const registrar = await UserAgent.create({ bind: "127.0.0.1:0", listen: ["udp"] });
  registrar.handle("REGISTER", (i) =>
    i.respond(200, {
      headers: i.request.headers.getAll("Contact").map((c) => ["Contact", c] as [string, string]),
    }));
  const registrarPort = registrar.transports[0].local.port;
  const p = spawnSipkit([
    "register",
    "-u",
    "alice@example.test",
    "--registrar",
    `sip:127.0.0.1:${registrarPort}`,
    "--bind",
    "127.0.0.1:0", // its port is in the contact it registers
    "--expires",
    "3600",
  ], { env: dirs.env, stdin: false, name: "sipkit register (fuzz target)" });
  const fuzz = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  let answers = 0;
  const drain = (async () => {
    try {
      for (;;) {
        await fuzz.receive();
        answers++;
      }
    } catch {
      // closed
    }
  })();
  try {
    const registered = await p.waitEvent((e) => e.type === "registered", { message: "registered" });
    const port = Number(String(registered.contact).split(":").at(-1));
    assert.ok(port > 0, String(registered.contact));
    assert.equal(await probeUdp(port, 0), "SIP/2.0 200 OK");

    const seeds = seedMessages();
    const r = mulberry32(4475);
    let sent = 0;
    for (let i = 0; i < UDP_COUNT && Date.now() - started < DEADLINE_MS; i++) {
      await fuzz.send(mutate(seeds, r, 60_000), {
        transport: "udp",
        hostname: "127.0.0.1",
        port,
      });
      sent++;
      // Pace and check as we go: the process must keep answering, and as it
      // answers in order, the burst before each probe has been read.
      if (i % 50 === 49) assert.equal(await probeUdp(port, i), "SIP/2.0 200 OK");
    }
    assert.equal(sent, UDP_COUNT, "all UDP messages sent within the time limit");

    let tcpSent = 0;
    let connections = 0;
    while (tcpSent < TCP_COUNT && Date.now() - started < DEADLINE_MS) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      connections++;
      const reader = (async () => {
        const buf = new Uint8Array(65536);
        try {
          while ((await conn.read(buf)) !== null) {
            // answers or nothing; the server may close on broken framing
          }
        } catch {
          // reset
        }
      })();
      try {
        // Several messages per connection, so that framing errors hit live streams.
        for (let j = 0; j < 40 && tcpSent < TCP_COUNT; j++) {
          await conn.write(mutate(seeds, r, 200_000));
          tcpSent++;
        }
      } catch {
        // the server closed this connection: open another
      } finally {
        try {
          conn.close();
        } catch {
          // already closed
        }
        await reader;
      }
    }
    assert.equal(tcpSent, TCP_COUNT, "all TCP messages sent within the time limit");
    assert.ok(connections >= TCP_COUNT / 40);

    // Still alive and answering, on both transports.
    assert.equal(await probeUdp(port, 100_001), "SIP/2.0 200 OK");
    assert.equal(await probeTcp(port, 100_002), "SIP/2.0 200 OK");
    assert.ok(answers > 0, "some fuzz messages were answered (400, 405, 481...)");
    assert.deepEqual(p.badLines, [], "stdout stayed NDJSON");
    // An exception escaping a layer is logged at error level ("error handling
    // a message"): none may happen, whatever came in.
    assert.deepEqual(p.logs().split("\n").filter((l) => l.startsWith("sipkit: error:")), []);
    assert.match(p.logs(), /answering 400 to an unparsable/, "malformed requests were answered");

    // And it ends cleanly: binding removed, exit 0.
    assert.equal(await p.stop(), 0, p.logs());
    assert.ok(p.events.some((e) => e.type === "unregistered"), p.logs());
    assert.ok(!/Uncaught|panicked/.test(p.logs()), p.logs());
  } catch (e) {
    console.error(p.logs().slice(-5000));
    throw e;
  } finally {
    fuzz.close();
    await drain;
    await p.stop();
    await registrar.close();
    await dirs.cleanup();
  }
});
