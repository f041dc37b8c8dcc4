import assert from "node:assert/strict";
import { type InboundInfo, type Target, TransportLayer } from "../lib/sip/transport_layer.ts";
import { UdpTransport } from "../lib/sip/transport_udp.ts";
import { TcpTransport, TlsTransport } from "../lib/sip/transport_tcp.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import {
  createRequest,
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import type { Inbound, Transport } from "../lib/sip/transport.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const tlsDir = new URL("./fixtures/tls/", import.meta.url);
const caPem = Deno.readTextFileSync(new URL("ca.pem", tlsDir));
const serverCert = Deno.readTextFileSync(new URL("server.pem", tlsDir));
const serverKey = Deno.readTextFileSync(new URL("server.key", tlsDir));

function request(method = "OPTIONS", body = ""): SipRequest {
  return createRequest(method, "sip:bob@example.test", {
    headers: {
      Via: `SIP/2.0/UDP placeholder.invalid;branch=z9hG4bK${crypto.randomUUID()}`,
      From: "<sip:alice@example.test>;tag=a1",
      To: "<sip:bob@example.test>",
      "Call-ID": crypto.randomUUID(),
      CSeq: `1 ${method}`,
      "Max-Forwards": "70",
    },
    body,
    contentType: body ? "text/plain" : undefined,
  });
}

/** A queue of events that a test awaits one at a time. */
function queue<T>() {
  const items: T[] = [];
  const waiters: ((v: T) => void)[] = [];
  return {
    items,
    push(item: T) {
      const w = waiters.shift();
      if (w) w(item);
      else items.push(item);
    },
    next(): Promise<T> {
      const item = items.shift();
      return item !== undefined ? Promise.resolve(item) : new Promise((r) => waiters.push(r));
    },
  };
}

function listen(layer: TransportLayer) {
  const requests = queue<{ req: SipRequest; info: InboundInfo }>();
  const responses = queue<{ res: SipResponse; info: InboundInfo }>();
  layer.onRequest((req, info) => requests.push({ req, info }));
  layer.onResponse((res, info) => responses.push({ res, info }));
  return { requests, responses };
}

/** A bare transport used as a hand-driven peer. */
function rawPeer(transport: Transport) {
  const got = queue<Inbound>();
  transport.onMessage((m) => got.push(m));
  return got;
}

async function udpAndTcpOnOnePort(host: string): Promise<[UdpTransport, TcpTransport]> {
  for (let attempt = 0;; attempt++) {
    const udp = new UdpTransport({ host });
    try {
      return [udp, new TcpTransport({ host, port: udp.local.port })];
    } catch (error) {
      await udp.close();
      if (attempt >= 5) throw error;
    }
  }
}

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`TransportLayer: two stacks exchange a request and its response over UDP on ${host}`, async () => {
    const traces: string[] = [];
    const a = new TransportLayer({
      transports: [new UdpTransport({ host })],
      trace: (dir, data, peer) =>
        traces.push(`${dir} ${peer.protocol} ${dec.decode(data).split("\r\n")[0]}`),
    });
    const b = new TransportLayer({ transports: [new UdpTransport({ host })] });
    try {
      const A = listen(a);
      const B = listen(b);
      const aLocal = a.transport("udp")!.local;
      const bLocal = b.transport("udp")!.local;
      const req = request("MESSAGE", "hello");
      const used = await a.sendRequest(req, { protocol: "udp", ...bLocal });
      assert.deepEqual(used, { protocol: "udp", ...bLocal });
      const { req: got, info } = await B.requests.next();
      assert.equal(got.text, "hello");
      const via = got.topVia;
      assert.equal(via.transport, "UDP");
      assert.equal(via.host, host);
      assert.equal(via.port, aLocal.port);
      assert.equal(via.params.rport, String(aLocal.port), "rport filled in (RFC 3581)");
      assert.equal(via.params.received, host, "received set whenever rport was asked for");
      assert.deepEqual(info.remote, aLocal);
      assert.equal(info.protocol, "udp");
      await b.sendResponse(createResponse(got, 200, { toTag: "b1" }), info);
      const { res } = await A.responses.next();
      assert.equal(res.status, 200);
      assert.equal(res.callId, req.callId);
      assert.deepEqual(traces, [
        "send udp MESSAGE sip:bob@example.test SIP/2.0",
        "recv udp SIP/2.0 200 OK",
      ]);
    } finally {
      await a.close();
      await b.close();
    }
  });
}

Deno.test("TransportLayer: two stacks exchange requests and responses over one TCP connection", async () => {
  const a = new TransportLayer({ transports: [new TcpTransport({ host: "127.0.0.1" })] });
  const b = new TransportLayer({ transports: [new TcpTransport({ host: "127.0.0.1" })] });
  try {
    const A = listen(a);
    const B = listen(b);
    const aTcp = a.transport("tcp") as TcpTransport;
    const bTcp = b.transport("tcp") as TcpTransport;
    const target: Target = { protocol: "tcp", ...bTcp.local };
    for (let i = 0; i < 3; i++) {
      await a.sendRequest(request(), target);
      const { req, info } = await B.requests.next();
      assert.equal(req.topVia.transport, "TCP");
      assert.equal(req.topVia.port, aTcp.local.port, "sent-by shows the listening port");
      await b.sendResponse(createResponse(req, 200, { toTag: "x" }), info);
      const { res, info: resInfo } = await A.responses.next();
      assert.equal(res.status, 200);
      assert.deepEqual(resInfo.remote, bTcp.local);
    }
    assert.equal(aTcp.connections, 1);
    assert.equal(bTcp.connections, 1, "responses went back over the inbound connection");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("TransportLayer: two stacks exchange a request and its response over TLS", async () => {
  const a = new TransportLayer({ transports: [new TlsTransport({ caCerts: [caPem] })] });
  const b = new TransportLayer({
    transports: [new TlsTransport({ host: "127.0.0.1", cert: serverCert, key: serverKey })],
  });
  try {
    const A = listen(a);
    const B = listen(b);
    const bLocal = b.transport("tls")!.local;
    await a.sendRequest(request(), { protocol: "tls", ...bLocal, serverName: "localhost" });
    const { req, info } = await B.requests.next();
    assert.equal(req.topVia.transport, "TLS");
    await b.sendResponse(createResponse(req, 202), info);
    assert.equal((await A.responses.next()).res.status, 202);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("TransportLayer adds received when sent-by differs and answers to received:port", async () => {
  const peer = new UdpTransport({ host: "127.0.0.1" });
  const b = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  try {
    const fromPeer = rawPeer(peer);
    const B = listen(b);
    const branch = "z9hG4bK" + crypto.randomUUID();
    const raw = "OPTIONS sip:bob@example.test SIP/2.0\r\n" +
      `Via: SIP/2.0/UDP 127.0.0.2:${peer.local.port};branch=${branch}\r\n` +
      "From: <sip:carol@example.test>;tag=c\r\nTo: <sip:bob@example.test>\r\n" +
      "Call-ID: r1\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    await peer.send(enc.encode(raw), b.transport("udp")!.local);
    const { req } = await B.requests.next();
    assert.equal(req.topVia.params.received, "127.0.0.1");
    assert.equal(req.topVia.params.rport, undefined);
    // Without InboundInfo the response goes to received, at the sent-by port (18.2.2).
    await b.sendResponse(createResponse(req, 200));
    const back = parseMessage((await fromPeer.next()).data) as SipResponse;
    assert.equal(back.status, 200);
    assert.equal(back.topVia.params.received, "127.0.0.1");
    assert.equal(back.topVia.params.branch, branch);
  } finally {
    await peer.close();
    await b.close();
  }
});

Deno.test("TransportLayer sends the response to received:rport (RFC 3581)", async () => {
  const peer = new UdpTransport({ host: "127.0.0.1" });
  const b = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  try {
    const fromPeer = rawPeer(peer);
    const B = listen(b);
    // The sent-by port 9 (discard, on another loopback address) is not where the peer listens.
    const raw = "OPTIONS sip:bob@example.test SIP/2.0\r\n" +
      "Via: SIP/2.0/UDP 127.0.0.2:9;rport;branch=z9hG4bKnat1\r\n" +
      "From: <sip:carol@example.test>;tag=c\r\nTo: <sip:bob@example.test>\r\n" +
      "Call-ID: r2\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    await peer.send(enc.encode(raw), b.transport("udp")!.local);
    const { req } = await B.requests.next();
    assert.equal(req.topVia.params.rport, String(peer.local.port));
    assert.equal(req.topVia.params.received, "127.0.0.1");
    await b.sendResponse(createResponse(req, 200));
    const back = parseMessage((await fromPeer.next()).data) as SipResponse;
    assert.equal(back.status, 200);
    assert.equal(back.topVia.params.rport, String(peer.local.port));
  } finally {
    await peer.close();
    await b.close();
  }
});

Deno.test("TransportLayer answers a malformed request with 400 and the parse error", async () => {
  const peer = new UdpTransport({ host: "127.0.0.1" });
  const logs: string[] = [];
  const b = new TransportLayer({
    transports: [new UdpTransport({ host: "127.0.0.1" })],
    logger: (level, msg) => logs.push(`${level} ${msg}`),
  });
  try {
    const fromPeer = rawPeer(peer);
    const B = listen(b);
    const bLocal = b.transport("udp")!.local;
    const via = `Via: SIP/2.0/UDP 127.0.0.1:${peer.local.port};rport;branch=z9hG4bKbad`;
    const common = "From: <sip:carol@example.test>;tag=c\r\nt: <sip:bob@example.test>\r\n" +
      "i: bad1\r\nContent-Length: 0\r\n";
    // A broken Max-Forwards: answered with 400 and the reason.
    await peer.send(
      enc.encode(
        `INVITE sip:bob@example.test SIP/2.0\r\n${via}\r\n${common}CSeq: 5 INVITE\r\n` +
          "Max-Forwards: lots\r\n\r\n",
      ),
      bLocal,
    );
    // A broken CSeq: answered too, the CSeq copied as it came.
    await peer.send(
      enc.encode(
        `MESSAGE sip:bob@example.test SIP/2.0\r\n${via}\r\n${common}CSeq: x MESSAGE\r\n\r\n`,
      ),
      bLocal,
    );
    // A broken Via: cannot be answered; dropped.
    await peer.send(
      enc.encode(
        `OPTIONS sip:bob@example.test SIP/2.0\r\nVia: garbage\r\n${common}CSeq: 1 OPTIONS\r\n\r\n`,
      ),
      bLocal,
    );
    // A malformed ACK is never answered.
    await peer.send(
      enc.encode(`ACK sip:bob@example.test SIP/2.0\r\n${via}\r\n${common}CSeq: x ACK\r\n\r\n`),
      bLocal,
    );
    // Noise that is not SIP at all.
    await peer.send(enc.encode("\x00\x01 hello there"), bLocal);
    // A good request last: its answer proves the others were handled.
    await peer.send(
      enc.encode(
        `OPTIONS sip:bob@example.test SIP/2.0\r\n${via}\r\n${common}CSeq: 2 OPTIONS\r\n\r\n`,
      ),
      bLocal,
    );
    const answer = parseMessage((await fromPeer.next()).data) as SipResponse;
    assert.equal(answer.status, 400);
    assert.match(answer.reason, /^Cannot parse Max-Forwards header/);
    assert.deepEqual(answer.cseq, { seq: 5, method: "INVITE" });
    assert.equal(answer.topVia.params.rport, String(peer.local.port));
    assert.equal(answer.topVia.params.received, "127.0.0.1");
    assert.equal(answer.callId, "bad1");
    assert.ok(answer.toTag, "a To tag was added");
    const second = dec.decode((await fromPeer.next()).data);
    assert.match(second, /^SIP\/2\.0 400 Cannot parse CSeq header[^\r\n]*\r\n/);
    assert.match(second, /\r\nCSeq: x MESSAGE\r\n/);
    const { req, info } = await B.requests.next();
    assert.equal(req.cseq.seq, 2);
    await b.sendResponse(createResponse(req, 200), info);
    const ok = parseMessage((await fromPeer.next()).data) as SipResponse;
    assert.equal(ok.status, 200, "nothing was sent for the Via-less request or the ACK");
    assert.equal(B.requests.items.length, 0);
    assert.ok(logs.some((l) => /dropped an unparsable request .*Via/.test(l)), logs.join("\n"));
  } finally {
    await peer.close();
    await b.close();
  }
});

Deno.test("TransportLayer drops a response whose Via sent-by is not its own (18.1.2)", async () => {
  const peer = new UdpTransport({ host: "127.0.0.1" });
  const logs: string[] = [];
  const a = new TransportLayer({
    transports: [new UdpTransport({ host: "127.0.0.1" })],
    logger: (level, msg) => logs.push(`${level} ${msg}`),
  });
  try {
    const A = listen(a);
    const aLocal = a.transport("udp")!.local;
    const response = (sentBy: string, callId: string) =>
      enc.encode(
        `SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ${sentBy};branch=z9hG4bKr\r\n` +
          "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>;tag=b\r\n" +
          `Call-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`,
      );
    await peer.send(response("127.0.0.3:5060", "foreign"), aLocal);
    await peer.send(response(`127.0.0.1:${aLocal.port}`, "ours"), aLocal);
    const { res } = await A.responses.next();
    assert.equal(res.callId, "ours");
    assert.equal(A.responses.items.length, 0);
    assert.ok(logs.some((l) => /dropped 200 response .* is not ours/.test(l)));
  } finally {
    await peer.close();
    await a.close();
  }
});

Deno.test("TransportLayer sends a request over 1300 bytes over TCP (RFC 3261 18.1.1)", async () => {
  const [bUdp, bTcp] = await udpAndTcpOnOnePort("127.0.0.1");
  const a = new TransportLayer({
    transports: [new UdpTransport({ host: "127.0.0.1" }), new TcpTransport({ host: "127.0.0.1" })],
  });
  const b = new TransportLayer({ transports: [bUdp, bTcp] });
  try {
    const B = listen(b);
    const target: Target = { protocol: "udp", host: "127.0.0.1", port: bUdp.local.port };
    const small = await a.sendRequest(request("MESSAGE", "x".repeat(100)), target);
    assert.equal(small.protocol, "udp");
    assert.equal((await B.requests.next()).info.protocol, "udp");
    const big = request("MESSAGE", "x".repeat(1300));
    const used = await a.sendRequest(big, target);
    assert.deepEqual(used, { ...target, protocol: "tcp" });
    const { req, info } = await B.requests.next();
    assert.equal(info.protocol, "tcp");
    assert.equal(req.topVia.transport, "TCP");
    assert.equal(req.body.length, 1300);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("TransportLayer refuses a request over 1300 bytes without a TCP transport", async () => {
  const a = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  try {
    await assert.rejects(
      a.sendRequest(request("MESSAGE", "x".repeat(1400)), {
        protocol: "udp",
        host: "127.0.0.1",
        port: 9,
      }),
      /exceed 1300 \(RFC 3261 18\.1\.1\) and no TCP transport is configured/,
    );
  } finally {
    await a.close();
  }
});

Deno.test("TransportLayer retries a large request over UDP when TCP is refused", async () => {
  const a = new TransportLayer({
    transports: [new UdpTransport({ host: "127.0.0.1" }), new TcpTransport({ host: "127.0.0.1" })],
    mtu: 500,
  });
  const b = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  try {
    const B = listen(b);
    const target: Target = { protocol: "udp", ...b.transport("udp")!.local };
    const used = await a.sendRequest(request("NOTIFY", "y".repeat(600)), target);
    assert.deepEqual(used, target);
    const { req, info } = await B.requests.next();
    assert.equal(info.protocol, "udp");
    assert.equal(req.topVia.transport, "UDP");
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("TransportLayer never sends a large MESSAGE over UDP when TCP is refused (RFC 3428 section 8)", async () => {
  const a = new TransportLayer({
    transports: [new UdpTransport({ host: "127.0.0.1" }), new TcpTransport({ host: "127.0.0.1" })],
    mtu: 500,
  });
  const b = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  const B = listen(b);
  try {
    const target: Target = { protocol: "udp", ...b.transport("udp")!.local };
    await assert.rejects(
      a.sendRequest(request("MESSAGE", "y".repeat(600)), target),
      /Cannot send MESSAGE over UDP: \d+ bytes exceed 500 \(RFC 3261 18\.1\.1\) and TCP failed/,
    );
    // A small one still goes over UDP, and is the first thing B receives.
    await a.sendRequest(request("MESSAGE", "small"), target);
    assert.equal((await B.requests.next()).req.body.length, 5);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("TransportLayer works over the loop network and keeps going after a handler throws", async () => {
  const net = new LoopNetwork();
  const logs: string[] = [];
  const a = new TransportLayer({ transports: [net.transport({ host: "192.0.2.1", port: 5070 })] });
  const b = new TransportLayer({
    transports: [net.transport({ host: "192.0.2.2" })],
    logger: (level, msg) => logs.push(`${level} ${msg}`),
  });
  const seen: SipRequest[] = [];
  b.onRequest((req, info) => {
    seen.push(req);
    if (seen.length === 1) throw new Error("handler bug");
    b.sendResponse(createResponse(req, 200), info);
  });
  const A = listen(a);
  const target: Target = { protocol: "udp", host: "192.0.2.2", port: 5060 };
  await a.sendRequest(request(), target);
  await a.sendRequest(request(), target);
  await net.settled();
  assert.equal(seen.length, 2);
  assert.equal(seen[0].topVia.host, "192.0.2.1");
  assert.equal(seen[0].topVia.port, 5070);
  assert.equal((await A.responses.next()).res.status, 200);
  assert.ok(logs.some((l) => /error handling a message .*handler bug/.test(l)));
  await a.close();
  await b.close();
});

Deno.test("TransportLayer picks the transport of the target's address family", async () => {
  const v4 = new UdpTransport({ host: "127.0.0.1" });
  const v6 = new UdpTransport({ host: "::1" });
  const any = new UdpTransport({ host: "0.0.0.0" });
  const a = new TransportLayer({ transports: [v4, v6] });
  const c = new TransportLayer({ transports: [any] });
  const b4 = new TransportLayer({ transports: [new UdpTransport({ host: "127.0.0.1" })] });
  const b6 = new TransportLayer({ transports: [new UdpTransport({ host: "::1" })] });
  try {
    const B4 = listen(b4);
    const B6 = listen(b6);
    await a.sendRequest(request(), { protocol: "udp", ...b6.transport("udp")!.local });
    const got6 = await B6.requests.next();
    assert.equal(got6.req.topVia.host, "::1");
    assert.deepEqual(got6.info.remote, v6.local);
    await a.sendRequest(request(), { protocol: "udp", ...b4.transport("udp")!.local });
    assert.deepEqual((await B4.requests.next()).info.remote, v4.local);
    // A socket on 0.0.0.0 shows the loopback address to a loopback target.
    await c.sendRequest(request(), { protocol: "udp", ...b4.transport("udp")!.local });
    const viaAny = (await B4.requests.next()).req.topVia;
    assert.equal(viaAny.host, "127.0.0.1");
    assert.equal(viaAny.port, any.local.port);
    assert.deepEqual(await c.localAddress({ protocol: "udp", host: "127.0.0.1", port: 5060 }), {
      host: "127.0.0.1",
      port: any.local.port,
    });
  } finally {
    await Promise.all([a.close(), b4.close(), b6.close(), c.close()]);
  }
});

Deno.test("TransportLayer survives thousands of mutated messages and still answers", async () => {
  const net = new LoopNetwork();
  const errors: string[] = [];
  const b = new TransportLayer({
    transports: [net.transport({ host: "192.0.2.2" })],
    logger: (level, msg) => {
      if (level === "error") errors.push(msg);
    },
  });
  const fuzzer = net.transport({ host: "192.0.2.66" });
  const answered: string[] = [];
  fuzzer.onMessage((m) => answered.push(dec.decode(m.data).split("\r\n")[0]));
  let delivered = 0;
  b.onRequest((req, info) => {
    delivered++;
    b.sendResponse(createResponse(req, 200, { toTag: "t" }), info).catch(() => {});
  });
  const seeds = [
    "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.66:5060;rport;branch=z9hG4bK1\r\n" +
    'From: "A" <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: f1\r\n' +
    "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:alice@192.0.2.66>\r\n" +
    "Content-Type: application/sdp\r\nContent-Length: 20\r\n\r\nv=0\r\ns=-\r\nt=0 0\r\n\r\n",
    "REGISTER sip:example.test SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.66;branch=z9hG4bK2\r\n" +
    "f: <sip:alice@example.test>;tag=2\r\nt: <sip:alice@example.test>\r\ni: f2\r\n" +
    "CSeq: 2 REGISTER\r\nExpires: 60\r\nl: 0\r\n\r\n",
    "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK3\r\n" +
    "From: <sip:bob@example.test>;tag=3\r\nTo: <sip:carol@example.test>;tag=4\r\n" +
    "Call-ID: f3\r\nCSeq: 3 INVITE\r\nContent-Length: 0\r\n\r\n",
  ].map((s) => enc.encode(s));
  let state = 12345;
  const rand = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % n;
  };
  const specials = enc.encode(':;,<>"\\ \t\r\n@=%[]\x00\xff0');
  for (let i = 0; i < 3000; i++) {
    const base = seeds[rand(seeds.length)];
    let m = Array.from(base);
    for (let k = 1 + rand(4); k > 0; k--) {
      const at = rand(m.length + 1);
      switch (rand(5)) {
        case 0:
          m[at] = specials[rand(specials.length)];
          break;
        case 1:
          m.splice(at, 1 + rand(10));
          break;
        case 2:
          m.splice(at, 0, ...m.slice(rand(m.length), rand(m.length)));
          break;
        case 3:
          m = m.slice(0, at);
          break;
        default:
          m[at] = rand(256);
      }
    }
    await fuzzer.send(new Uint8Array(m.filter((x) => x !== undefined)), {
      host: "192.0.2.2",
      port: 5060,
    });
  }
  await net.settled();
  assert.deepEqual(errors, []);
  const before = delivered;
  answered.length = 0;
  await fuzzer.send(seeds[1], { host: "192.0.2.2", port: 5060 });
  await net.settled();
  assert.equal(delivered, before + 1);
  assert.deepEqual(answered, ["SIP/2.0 200 OK"]);
  await fuzzer.close();
  await b.close();
});

Deno.test("a prepared response derived from its request is kept without bytes and rebuilt byte for byte from a retransmission", async () => {
  const net = new LoopNetwork();
  const bob = new TransportLayer({ transports: [net.transport({ host: "192.0.2.2" })] });
  const { requests } = listen(bob);
  const alice = net.transport({ host: "192.0.2.1", port: 5060 });
  const elsewhere = net.transport({ host: "192.0.2.1", port: 5999 });
  const got = rawPeer(alice);
  const other = rawPeer(elsewhere);
  const wire = "MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n" +
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKretrans;rport\r\n" +
    "From: <sip:alice@example.test>;tag=a1\r\nTo: <sip:bob@example.test>\r\n" +
    "Call-ID: retrans-1\r\nCSeq: 7 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 2\r\n\r\nhi";
  await alice.send(enc.encode(wire), { host: "192.0.2.2", port: 5060 });
  const first = await requests.next();
  const res = createResponse(first.req, 200, {
    toTag: "t0Ag",
    headers: [["Server", "test"]],
  });
  const packet = bob.prepareResponse(res, first.info, first.req)!;
  assert.equal(packet.wire, undefined, "nothing but the tag and the source is kept");
  await bob.sendPrepared(packet);
  const original = dec.decode((await got.next()).data);
  assert.match(original, /;rport=5060;received=192\.0\.2\.1\r\n/);
  assert.match(original, /\r\nTo: <sip:bob@example\.test>;tag=t0Ag\r\n/);
  await assert.rejects(bob.sendPrepared(packet), /without the retransmission/);
  // The same request again, from the first source and from another port:
  // the same bytes each time, to the first source (17.2.2, 18.2.2).
  for (const from of [alice, elsewhere]) {
    await from.send(enc.encode(wire), { host: "192.0.2.2", port: 5060 });
    const again = await requests.next();
    await bob.sendPrepared(packet, { request: again.req, info: again.info });
    assert.equal(dec.decode((await got.next()).data), original);
  }
  assert.equal(other.items.length, 0);
  // A response with a body, or one the request does not make, keeps its bytes.
  const withBody = createResponse(first.req, 200, { toTag: "x", body: "b" });
  assert.notEqual(bob.prepareResponse(withBody, first.info, first.req)!.wire, undefined);
  const changed = createResponse(first.req, 200, { toTag: "x" });
  changed.headers.set("From", "<sip:mallory@example.test>;tag=m");
  assert.notEqual(bob.prepareResponse(changed, first.info, first.req)!.wire, undefined);
  await bob.close();
  await Promise.all([alice.close(), elsewhere.close()]);
});

Deno.test("a request marked with received/rport on arrival keeps its parsed From, To, Call-ID and CSeq, and its Via values read as the new text", async () => {
  const net = new LoopNetwork();
  const bob = new TransportLayer({ transports: [net.transport({ host: "192.0.2.2" })] });
  const { requests } = listen(bob);
  const alice = net.transport({ host: "192.0.2.1", port: 5070 });
  const wire = "MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n" +
    "Via: SIP/2.0/UDP host.example.test:5070;branch=z9hG4bKmark;rport, " +
    "SIP/2.0/TCP proxy.example.test;branch=z9hG4bKp1\r\n" +
    "Via: SIP/2.0/UDP far.example.test;branch=z9hG4bKp2\r\n" +
    'From: "A" <sip:alice@example.test>;tag=a1\r\nTo: <sip:bob@example.test>\r\n' +
    "Call-ID: mark-1\r\nCSeq: 7 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
  await alice.send(enc.encode(wire), { host: "192.0.2.2", port: 5060 });
  const { req } = await requests.next();
  // What the typed getters give is what a fresh parse of the edited message gives.
  const fresh = parseMessage(formatMessage(req)) as SipRequest;
  assert.match(req.headers.get("Via")!, /;rport=5070;received=192\.0\.2\.1, SIP\/2\.0\/TCP/);
  assert.deepEqual(req.topVia, fresh.topVia);
  assert.deepEqual(req.via, fresh.via);
  assert.equal(req.via.length, 3);
  assert.equal(req.topVia.params.received, "192.0.2.1");
  assert.deepEqual(req.from, fresh.from);
  assert.deepEqual(req.to, fresh.to);
  assert.equal(req.callId, "mark-1");
  assert.deepEqual(req.cseq, { seq: 7, method: "MESSAGE" });
  // An edit through the methods still drops every cached value.
  req.headers.set("From", "<sip:carol@example.test>;tag=c1");
  assert.equal(req.fromTag, "c1");
  await bob.close();
  await alice.close();
});

Deno.test("prepared responses of different shapes in a row each rebuild their own bytes", async () => {
  const net = new LoopNetwork();
  const bob = new TransportLayer({ transports: [net.transport({ host: "192.0.2.2" })] });
  const { requests } = listen(bob);
  const alice = net.transport({ host: "192.0.2.1", port: 5060 });
  const got = rawPeer(alice);
  const wire = (n: number) =>
    "MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n" +
    `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKshape${n}\r\n` +
    `From: <sip:alice@example.test>;tag=a${n}\r\nTo: <sip:bob@example.test>\r\n` +
    `Call-ID: shape-${n}\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n`;
  const shapes: [number, [string, string][]][] = [
    [200, [["Server", "a"]]],
    [200, [["Server", "a"]]],
    [200, [["Server", "b"]]],
    [200, [["Server", "b"], ["Accept", "text/plain"]]],
    [486, [["Server", "b"]]],
    [200, []],
    [200, [["Server", "a"]]],
  ];
  const kept = [];
  for (const [n, [status, headers]] of shapes.entries()) {
    await alice.send(enc.encode(wire(n)), { host: "192.0.2.2", port: 5060 });
    const first = await requests.next();
    const res = createResponse(first.req, status, { toTag: `t${n}`, headers });
    const packet = bob.prepareResponse(res, first.info, first.req)!;
    assert.equal(packet.wire, undefined);
    await bob.sendPrepared(packet);
    kept.push({ packet, original: dec.decode((await got.next()).data) });
  }
  for (const [n, { packet, original }] of kept.entries()) {
    await alice.send(enc.encode(wire(n)), { host: "192.0.2.2", port: 5060 });
    const again = await requests.next();
    await bob.sendPrepared(packet, { request: again.req, info: again.info });
    const rebuilt = dec.decode((await got.next()).data);
    assert.equal(rebuilt, original);
    assert.match(rebuilt, new RegExp(`^SIP/2\\.0 ${shapes[n][0]} `));
  }
  await bob.close();
  await alice.close();
});
