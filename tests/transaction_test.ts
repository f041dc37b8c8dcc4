import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import {
  createRequest,
  createResponse,
  parseMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import type { Transport, TransportProtocol } from "../lib/sip/transport.ts";
import { TransportLayer } from "../lib/sip/transport_layer.ts";
import { type LoopFaults, LoopNetwork } from "../lib/sip/transport_loop.ts";
import {
  type AnyServerTransaction,
  ClientInviteTransaction,
  ClientNonInviteTransaction,
  generateBranch,
  type InboundInfo,
  loadServerTransactions,
  MAGIC_COOKIE,
  ServerInviteTransaction,
  ServerNonInviteTransaction,
  type Target,
  TransactionLayer,
  type TransactionTransport,
} from "../lib/sip/transaction/mod.ts";

// The layers below handle requests synchronously from the first one; a
// layer whose server side is not loaded yet is tested in its own process
// (see "a layer without its server side").
await loadServerTransactions();

// ------------------------------------------------------------------ fakes

interface Sent {
  at: number;
  msg: SipMessage;
  target?: Target;
  info?: InboundInfo;
}

/** A transport layer that records every send with the clock time. */
class FakeTransport implements TransactionTransport {
  sent: Sent[] = [];
  /** When set, sends reject with this error. */
  failWith?: Error;
  /** When set, sendRequest resolves with this target (e.g. TCP for a large request). */
  resolveAs?: Target;
  #onRequest?: (req: SipRequest, info: InboundInfo) => void;
  #onResponse?: (res: SipResponse, info: InboundInfo) => void;
  #onRefused?: (target: Target, error: Error) => boolean;
  constructor(readonly clock: ManualClock) {}

  sendRequest(req: SipRequest, target: Target): Promise<Target> {
    this.sent.push({ at: this.clock.now(), msg: req, target });
    if (this.failWith) return Promise.reject(this.failWith);
    return Promise.resolve(this.resolveAs ?? target);
  }
  sendResponse(res: SipResponse, info?: InboundInfo): Promise<void> {
    this.sent.push({ at: this.clock.now(), msg: res, info });
    if (this.failWith) return Promise.reject(this.failWith);
    return Promise.resolve();
  }
  onRequest(h: (req: SipRequest, info: InboundInfo) => void): void {
    this.#onRequest = h;
  }
  onResponse(h: (res: SipResponse, info: InboundInfo) => void): void {
    this.#onResponse = h;
  }
  onRefused(h: (target: Target, error: Error) => boolean): void {
    this.#onRefused = h;
  }
  /** Reports an ICMP refusal from `target` as the transport layer would; true when taken. */
  refuse(target: Target): boolean {
    return this.#onRefused!(target, new Error(`${target.host}:${target.port} refused`));
  }
  /** Delivers an inbound request as the transport layer would. */
  inject(msg: SipMessage, info: InboundInfo = UDP_INFO): void {
    if (msg.kind === "request") this.#onRequest!(msg, info);
    else this.#onResponse!(msg, info);
  }
  /** Send times (ms) of messages matching a predicate. */
  times(pred: (m: SipMessage) => boolean): number[] {
    return this.sent.filter((s) => pred(s.msg)).map((s) => s.at);
  }
}

const UDP: Target = { protocol: "udp", host: "192.0.2.10", port: 5060 };
const TCP: Target = { protocol: "tcp", host: "192.0.2.10", port: 5060 };
/** A socket that is never used: the fake transport layer does the sending. */
function socket(protocol: TransportProtocol): Transport {
  return {
    protocol,
    reliable: protocol !== "udp",
    local: { host: "192.0.2.1", port: 5060 },
    send: () => Promise.reject(new Error("not used")),
    onMessage: () => {},
    close: () => Promise.resolve(),
  };
}
const UDP_INFO: InboundInfo = {
  protocol: "udp",
  transport: socket("udp"),
  remote: { host: "192.0.2.20", port: 5060 },
  local: { host: "192.0.2.1", port: 5060 },
};
const TCP_INFO: InboundInfo = { ...UDP_INFO, protocol: "tcp", transport: socket("tcp") };

function setup(timers = {}) {
  const clock = new ManualClock();
  const transport = new FakeTransport(clock);
  const logs: string[] = [];
  const tl = new TransactionLayer({ transport, clock, timers, log: (m) => logs.push(m) });
  return { clock, transport, tl, logs };
}

/** Lets promise callbacks (send results) run. */
function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function outgoing(method: string, extra: Record<string, string> = {}): SipRequest {
  return createRequest(method, "sip:bob@example.test", {
    headers: {
      "Max-Forwards": "70",
      From: "Alice <sip:alice@example.test>;tag=a1",
      To: "Bob <sip:bob@example.test>",
      "Call-ID": "call-1@example.test",
      CSeq: `1 ${method}`,
      Contact: "<sip:alice@192.0.2.1:5060>",
      ...extra,
    },
  });
}

/** A response to a request as a peer would send it back (same Via, same branch). */
function reply(req: SipRequest, status: number, toTag = "b1"): SipResponse {
  return parseMessage(formatForReply(createResponse(req, status, { toTag }))) as SipResponse;
}

function formatForReply(res: SipResponse): string {
  let s = `SIP/2.0 ${res.status} ${res.reason}\r\n`;
  for (const f of res.headers.fields) s += `${f.name}: ${f.value}\r\n`;
  return s + "Content-Length: 0\r\n\r\n";
}

function incoming(
  method: string,
  options: { branch?: string; sentBy?: string; cseq?: number; toTag?: string; fromTag?: string } =
    {},
): SipRequest {
  const branch = options.branch ?? "z9hG4bKabc123";
  const sentBy = options.sentBy ?? "192.0.2.20:5060";
  const to = "Bob <sip:bob@example.test>" + (options.toTag ? `;tag=${options.toTag}` : "");
  const cseqMethod = method === "ACK" || method === "CANCEL" ? method : method;
  const text = `${method} sip:bob@192.0.2.1 SIP/2.0\r\n` +
    `Via: SIP/2.0/UDP ${sentBy};branch=${branch}\r\n` +
    `Max-Forwards: 70\r\n` +
    `From: Alice <sip:alice@example.test>;tag=${options.fromTag ?? "a1"}\r\n` +
    `To: ${to}\r\n` +
    `Call-ID: in-1@example.test\r\n` +
    `CSeq: ${options.cseq ?? 1} ${cseqMethod}\r\n` +
    `Contact: <sip:alice@192.0.2.20>\r\n` +
    `Content-Length: 0\r\n\r\n`;
  return parseMessage(text) as SipRequest;
}

const isReq = (method: string) => (m: SipMessage) => m.kind === "request" && m.method === method;
const isRes = (status: number) => (m: SipMessage) => m.kind === "response" && m.status === status;

// ------------------------------------------------------------ client INVITE

Deno.test("client INVITE over UDP retransmits at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s and times out at 32 s (timer B)", async () => {
  const { clock, transport, tl } = setup();
  const events: string[] = [];
  const tx = tl.request(outgoing("INVITE"), UDP, {
    onTimeout: () => events.push(`timeout@${clock.now()}`),
    onTerminated: () => events.push(`terminated@${clock.now()}`),
  });
  assert.ok(tx instanceof ClientInviteTransaction);
  assert.equal(tx.state, "calling");
  await flush();
  clock.advance(31_999);
  assert.deepEqual(events, []);
  clock.advance(1);
  assert.deepEqual(transport.times(isReq("INVITE")), [0, 500, 1500, 3500, 7500, 15500, 31500]);
  assert.deepEqual(events, ["timeout@32000", "terminated@32000"]);
  assert.equal(tx.state, "terminated");
  assert.equal(tl.clientCount, 0);
  await assert.rejects(tx.response, (e) => e instanceof SipRequestError && e.status === 408);
  clock.runAll();
  assert.equal(transport.sent.length, 7);
});

Deno.test("client INVITE puts a top Via with a magic-cookie branch and matches responses by it", () => {
  const { transport, tl } = setup();
  const req = outgoing("INVITE", { Via: "SIP/2.0/UDP old.example;branch=z9hG4bKold" });
  const tx = tl.request(req, UDP);
  assert.equal(req.via.length, 1, "old Via replaced");
  assert.ok(tx.branch.startsWith(MAGIC_COOKIE));
  assert.notEqual(tx.branch, "z9hG4bKold");
  assert.equal(req.topVia.params.branch, tx.branch);
  assert.equal(transport.sent.length, 1);
});

Deno.test("addTopVia() caches the Via it writes as parsing that text gives it", async () => {
  const { addTopVia } = await import("../lib/sip/transaction/build.ts");
  for (const protocol of ["udp", "tcp", "tls"] as const) {
    for (const options of [{}, { host: "192.0.2.1", port: 5070 }, { host: "2001:db8::1" }]) {
      const req = createRequest("MESSAGE", "sip:bob@example.test");
      const branch = addTopVia(req, { protocol, ...options });
      const primed = req.topVia;
      assert.equal(primed.params.branch, branch);
      // The same text parsed afresh (what the cache stands for).
      const fresh = createRequest("MESSAGE", "sip:bob@example.test", {
        headers: [["Via", req.headers.get("Via")!]],
      });
      assert.deepEqual(primed, fresh.topVia, `${protocol} ${JSON.stringify(options)}`);
      assert.deepEqual(req.via, [fresh.topVia]);
    }
  }
});

Deno.test("client INVITE stops retransmitting on a provisional response and timer B no longer applies", async () => {
  const { clock, transport, tl } = setup();
  const provisional: number[] = [];
  let timedOut = false;
  const req = outgoing("INVITE");
  const tx = tl.request(req, UDP, {
    onProvisional: (r) => provisional.push(r.status),
    onTimeout: () => timedOut = true,
  });
  await flush();
  clock.advance(600);
  transport.inject(reply(req, 100));
  assert.equal(tx.state, "proceeding");
  transport.inject(reply(req, 180));
  clock.advance(120_000);
  assert.deepEqual(transport.times(isReq("INVITE")), [0, 500]);
  assert.deepEqual(provisional, [100, 180]);
  assert.equal(timedOut, false);
  assert.equal(tx.state, "proceeding");
});

Deno.test("client INVITE over TCP sends once and still times out at 64*T1", async () => {
  const { clock, transport, tl } = setup();
  let timeoutAt = -1;
  tl.request(outgoing("INVITE"), TCP, { onTimeout: () => timeoutAt = clock.now() });
  await flush();
  clock.advance(40_000);
  assert.deepEqual(transport.times(isReq("INVITE")), [0]);
  assert.equal(timeoutAt, 32_000);
});

Deno.test("client INVITE stops timer A when the transport layer sent over TCP after all (18.1.1)", async () => {
  const { clock, transport, tl } = setup();
  transport.resolveAs = TCP;
  const tx = tl.request(outgoing("INVITE"), UDP);
  await flush();
  assert.equal(tx.reliable, true);
  assert.deepEqual(tx.target, TCP);
  clock.advance(10_000);
  assert.deepEqual(transport.times(isReq("INVITE")), [0]);
});

Deno.test("client INVITE acknowledges a non-2xx final itself (17.1.1.3) and re-ACKs its retransmissions", async () => {
  const { clock, transport, tl } = setup();
  const finals: number[] = [];
  const req = outgoing("INVITE", {
    Route: "<sip:p1.example.test;lr>, <sip:p2.example.test;lr>",
  });
  const tx = tl.request(req, UDP, { onFinal: (r) => finals.push(r.status) });
  await flush();
  clock.advance(100);
  transport.inject(reply(req, 180, "tagB"));
  const busy = reply(req, 486, "tagB");
  transport.inject(busy);
  assert.equal(tx.state, "completed");
  assert.deepEqual(finals, [486]);
  assert.equal((await tx.response).status, 486);

  const acks = transport.sent.filter((s) => isReq("ACK")(s.msg));
  assert.equal(acks.length, 1);
  const ack = acks[0].msg as SipRequest;
  assert.deepEqual(acks[0].target, UDP);
  assert.equal(ack.method, "ACK");
  assert.deepEqual(ack.uri, req.uri);
  assert.equal(ack.via.length, 1);
  assert.equal(ack.topVia.params.branch, tx.branch);
  assert.equal(ack.callId, req.callId);
  assert.equal(ack.headers.get("From"), req.headers.get("From"));
  assert.equal(ack.toTag, "tagB");
  assert.deepEqual(ack.cseq, { seq: 1, method: "ACK" });
  assert.deepEqual(ack.route.map((r) => r.uri.host), ["p1.example.test", "p2.example.test"]);
  assert.equal(ack.maxForwards, 70);

  clock.advance(1000);
  transport.inject(reply(req, 486, "tagB"));
  transport.inject(reply(req, 486, "tagB"));
  assert.equal(transport.times(isReq("ACK")).length, 3);
  assert.deepEqual(finals, [486], "retransmissions are not passed up");
  assert.deepEqual(transport.times(isReq("INVITE")), [0], "no INVITE retransmission after 180");
});

Deno.test("client INVITE Completed lasts timer D: 32 s on UDP, 0 on TCP", async () => {
  const { clock, transport, tl } = setup();
  const req = outgoing("INVITE");
  const tx = tl.request(req, UDP);
  await flush();
  clock.advance(250);
  transport.inject(reply(req, 603));
  assert.equal(tx.state, "completed");
  clock.advance(31_999);
  assert.equal(tx.state, "completed");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
  assert.deepEqual(transport.times(isReq("INVITE")), [0], "retransmission stops on a final");

  const s2 = setup();
  const req2 = outgoing("INVITE");
  const tx2 = s2.tl.request(req2, TCP);
  await flush();
  s2.transport.inject(reply(req2, 603));
  assert.equal(tx2.state, "terminated");
  assert.equal(s2.transport.times(isReq("ACK")).length, 1);
  assert.equal(s2.tl.clientCount, 0);
});

Deno.test("client INVITE enters Accepted on 2xx, passes every 2xx up until timer M (RFC 6026)", async () => {
  const { clock, transport, tl } = setup();
  const finals: string[] = [];
  const strays: number[] = [];
  tl.onStrayResponse = (r) => strays.push(r.status);
  const req = outgoing("INVITE");
  const tx = tl.request(req, UDP, { onFinal: (r) => finals.push(`${r.status}/${r.toTag}`) });
  await flush();
  clock.advance(300);
  transport.inject(reply(req, 200, "fork1"));
  assert.equal(tx.state, "accepted");
  assert.equal(transport.times(isReq("ACK")).length, 0, "the 2xx ACK is the TU's job");
  clock.advance(500);
  transport.inject(reply(req, 200, "fork1"));
  transport.inject(reply(req, 200, "fork2"));
  transport.inject(reply(req, 486, "fork3"));
  assert.deepEqual(finals, ["200/fork1", "200/fork1", "200/fork2"]);
  assert.deepEqual(transport.times(isReq("INVITE")), [0]);
  clock.advance(64 * 500 - 501); // t = 32299: timer M started at 300
  assert.equal(tx.state, "accepted");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
  transport.inject(reply(req, 200, "fork1"));
  assert.deepEqual(strays, [200]);
  assert.equal((await tx.response).toTag, "fork1");
});

// -------------------------------------------------------- client non-INVITE

/**
 * The send times of a request retransmitted over UDP by timer E (or of a 2xx retransmitted until
 * its ACK, RFC 3261 13.3.1.4) with the default T1 (500 ms) and T2 (4 s), until 64*T1: intervals
 * doubling from T1 up to T2, then every T2.
 */
const RETRANSMITTED_TO_64_T1 = [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];

Deno.test("client non-INVITE over UDP doubles timer E up to T2 and times out at 64*T1 (timer F)", async () => {
  const { clock, transport, tl } = setup();
  let timeoutAt = -1;
  const tx = tl.request(outgoing("MESSAGE"), UDP, { onTimeout: () => timeoutAt = clock.now() });
  assert.ok(tx instanceof ClientNonInviteTransaction);
  assert.equal(tx.state, "trying");
  await flush();
  clock.advance(40_000);
  assert.deepEqual(transport.times(isReq("MESSAGE")), RETRANSMITTED_TO_64_T1);
  assert.equal(timeoutAt, 32_000);
  assert.equal(tx.state, "terminated");
  await assert.rejects(tx.response, (e) => e instanceof SipRequestError && e.status === 408);
});

Deno.test("client non-INVITE honours configured T1 and T2", async () => {
  const { clock, transport, tl } = setup({ t1: 100, t2: 300 });
  let timeoutAt = -1;
  tl.request(outgoing("OPTIONS"), UDP, { onTimeout: () => timeoutAt = clock.now() });
  await flush();
  clock.advance(10_000);
  assert.deepEqual(
    transport.times(isReq("OPTIONS")),
    [
      0,
      100,
      300,
      600,
      900,
      1200,
      1500,
      1800,
      2100,
      2400,
      2700,
      3000,
      3300,
      3600,
      3900,
      4200,
      4500,
      4800,
      5100,
      5400,
      5700,
      6000,
      6300,
    ],
  );
  assert.equal(timeoutAt, 6400);
});

Deno.test("client non-INVITE keeps retransmitting every T2 in Proceeding, then waits timer K (T4)", async () => {
  const { clock, transport, tl } = setup();
  const seen: number[] = [];
  const req = outgoing("SUBSCRIBE");
  const tx = tl.request(req, UDP, {
    onProvisional: (r) => seen.push(r.status),
    onFinal: (r) => seen.push(r.status),
  });
  await flush();
  clock.advance(600);
  transport.inject(reply(req, 100));
  assert.equal(tx.state, "proceeding");
  clock.advance(14_400); // t = 15000
  assert.deepEqual(transport.times(isReq("SUBSCRIBE")), [0, 500, 1500, 5500, 9500, 13500]);
  transport.inject(reply(req, 200));
  assert.equal(tx.state, "completed");
  transport.inject(reply(req, 200));
  assert.deepEqual(seen, [100, 200], "the retransmitted final is absorbed");
  clock.advance(4999);
  assert.equal(tx.state, "completed");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
  assert.equal(transport.times(isReq("SUBSCRIBE")).length, 6);
});

Deno.test("client non-INVITE over TCP sends once and terminates on the final (K = 0)", async () => {
  const { clock, transport, tl } = setup();
  const req = outgoing("REGISTER");
  const tx = tl.request(req, TCP);
  await flush();
  clock.advance(10_000);
  assert.deepEqual(transport.times(isReq("REGISTER")), [0]);
  transport.inject(reply(req, 200));
  assert.equal(tx.state, "terminated");
  assert.equal((await tx.response).status, 200);
  assert.equal(tl.clientCount, 0);
});

Deno.test("a send that fails terminates the client transaction and tells the TU (17.1.4)", async () => {
  const { clock, transport, tl } = setup();
  transport.failWith = new Error("connection refused");
  const events: string[] = [];
  const tx = tl.request(outgoing("MESSAGE"), TCP, {
    onTransportError: (e) => events.push(`error:${e.message}`),
    onTimeout: () => events.push("timeout"),
    onTerminated: () => events.push("terminated"),
  });
  await flush();
  assert.deepEqual(events, ["error:connection refused", "terminated"]);
  assert.equal(tx.state, "terminated");
  await assert.rejects(
    tx.response,
    (e) => e instanceof SipRequestError && e.status === 503 && e.local,
  );
  clock.advance(64_000);
  assert.equal(transport.sent.length, 1);
  assert.equal(clock.pending, 0);
});

Deno.test("a failing retransmission terminates the client INVITE transaction", async () => {
  const { clock, transport, tl } = setup();
  let error = "";
  const tx = tl.request(outgoing("INVITE"), UDP, { onTransportError: (e) => error = e.message });
  await flush();
  transport.failWith = new Error("network unreachable");
  clock.advance(500);
  await flush();
  assert.equal(error, "network unreachable");
  assert.equal(tx.state, "terminated");
});

Deno.test("an ICMP refusal from the target ends UDP client transactions that have no response yet (18.4, 17.1.4)", async () => {
  const { clock, transport, tl } = setup();
  const events: string[] = [];
  const user = (name: string) => ({
    onTransportError: (e: Error) => events.push(`${name} error:${e.message}`),
    onTimeout: () => events.push(`${name} timeout`),
  });
  const message = tl.request(outgoing("MESSAGE"), UDP, user("message"));
  const invite = tl.request(outgoing("INVITE"), UDP, user("invite"));
  const answered = tl.request(outgoing("OPTIONS"), UDP, user("options"));
  const elsewhere = tl.request(outgoing("MESSAGE"), { ...UDP, port: 5070 }, user("elsewhere"));
  const overTcp = tl.request(outgoing("MESSAGE"), TCP, user("tcp"));
  await flush();
  transport.inject(reply(answered.request, 100));
  assert.equal(answered.state, "proceeding");
  clock.advance(100); // before the first retransmission
  assert.equal(transport.refuse({ ...UDP, host: "192.0.2.99" }), false, "no transaction there");
  assert.equal(transport.refuse(UDP), true);
  assert.deepEqual(events, [
    "message error:192.0.2.10:5060 refused",
    "invite error:192.0.2.10:5060 refused",
  ]);
  assert.equal(message.state, "terminated");
  assert.equal(invite.state, "terminated");
  await assert.rejects(
    message.response,
    (e) =>
      e instanceof SipRequestError && e.status === 503 && e.local &&
      /refused/.test(e.reason),
  );
  // Once the target has answered, the refusal is about something else.
  assert.equal(answered.state, "proceeding");
  assert.equal(elsewhere.state, "trying");
  assert.equal(overTcp.state, "trying");
  assert.equal(transport.refuse(UDP), false, "nothing left to fail");
  clock.advance(1_000);
  assert.deepEqual(transport.times(isReq("INVITE")), [0], "no retransmission after the refusal");
});

Deno.test("responses match by branch and CSeq method; others are stray (17.1.3)", async () => {
  const { transport, tl } = setup();
  const strays: string[] = [];
  tl.onStrayResponse = (r) => strays.push(`${r.status} ${r.cseq.method}`);
  const finals: number[] = [];
  const req = outgoing("MESSAGE");
  tl.request(req, UDP, { onFinal: (r) => finals.push(r.status) });
  await flush();
  const wrongMethod = reply(req, 200);
  wrongMethod.headers.set("CSeq", "1 INFO");
  transport.inject(wrongMethod);
  const wrongBranch = reply(req, 202);
  wrongBranch.headers.set("Via", `SIP/2.0/UDP 192.0.2.1;branch=${generateBranch()}`);
  transport.inject(wrongBranch);
  assert.deepEqual(strays, ["200 INFO", "202 MESSAGE"]);
  assert.deepEqual(finals, []);
  transport.inject(reply(req, 200));
  assert.deepEqual(finals, [200]);
});

Deno.test("request() refuses ACK; generateBranch() gives distinct cookie branches", () => {
  const { tl } = setup();
  assert.throws(() => tl.request(outgoing("ACK"), UDP), TypeError);
  const branches = new Set(Array.from({ length: 100 }, () => generateBranch()));
  assert.equal(branches.size, 100);
  for (const b of branches) assert.match(b, /^z9hG4bK[A-Za-z0-9_-]{10}$/);
});

Deno.test("sendAck() sends a 2xx ACK outside any transaction with a new branch", async () => {
  const { transport, tl } = setup();
  const ack = outgoing("ACK");
  const used = await tl.sendAck(ack, UDP);
  assert.deepEqual(used, UDP);
  assert.ok(ack.topVia.params.branch?.startsWith(MAGIC_COOKIE));
  assert.equal(transport.sent.length, 1);
  assert.equal(tl.clientCount, 0);
});

// ------------------------------------------------------------------ CANCEL

Deno.test("cancel() waits for a provisional, then sends CANCEL per 9.1 in its own transaction", async () => {
  const { clock, transport, tl } = setup();
  const req = outgoing("INVITE", { Route: "<sip:proxy.example.test;lr>" });
  const invite = tl.request(req, UDP);
  await flush();
  let cancelFinal = 0;
  tl.cancel(invite, { user: { onFinal: (r) => cancelFinal = r.status } });
  tl.cancel(invite); // a second call does nothing
  assert.equal(transport.times(isReq("CANCEL")).length, 0, "no CANCEL before a provisional");
  clock.advance(700);
  transport.inject(reply(req, 180));
  const sends = transport.sent.filter((s) => isReq("CANCEL")(s.msg));
  assert.equal(sends.length, 1);
  assert.deepEqual(sends[0].target, UDP);
  const cancel = sends[0].msg as SipRequest;
  assert.deepEqual(cancel.uri, req.uri);
  assert.equal(cancel.via.length, 1);
  assert.equal(cancel.headers.get("Via"), req.headers.get("Via"));
  assert.equal(cancel.callId, req.callId);
  assert.equal(cancel.headers.get("From"), req.headers.get("From"));
  assert.equal(cancel.headers.get("To"), req.headers.get("To"));
  assert.deepEqual(cancel.cseq, { seq: 1, method: "CANCEL" });
  assert.deepEqual(cancel.route.map((r) => r.uri.host), ["proxy.example.test"]);
  assert.equal(tl.clientCount, 2);
  // the CANCEL's 200 goes to the CANCEL transaction, the 487 to the INVITE one
  transport.inject(reply(cancel, 200));
  assert.equal(cancelFinal, 200);
  transport.inject(reply(req, 487));
  assert.equal(invite.state, "completed");
  // the CANCEL retransmits on its own (timer E) until its final: here it had one
  assert.deepEqual(transport.times(isReq("CANCEL")), [700]);
});

Deno.test("cancel() drops the CANCEL when a final response comes before any provisional", async () => {
  const { clock, transport, tl } = setup();
  const req = outgoing("INVITE");
  const invite = tl.request(req, UDP);
  await flush();
  tl.cancel(invite);
  transport.inject(reply(req, 200));
  clock.advance(1000);
  transport.inject(reply(req, 180));
  assert.equal(transport.times(isReq("CANCEL")).length, 0);
  assert.throws(() => tl.cancel(tl.request(outgoing("BYE"), UDP)), TypeError);
});

// ------------------------------------------------------- server non-INVITE

Deno.test("server non-INVITE absorbs retransmissions, resends the last response, ends after timer J", () => {
  const { clock, transport, tl } = setup();
  const got: { req: SipRequest; tx?: AnyServerTransaction }[] = [];
  tl.onRequest = (req, tx) => got.push({ req, tx });
  const req = incoming("MESSAGE");
  transport.inject(req);
  assert.equal(got.length, 1);
  const tx = got[0].tx!;
  assert.ok(tx instanceof ServerNonInviteTransaction);
  assert.equal(tx.state, "trying");
  transport.inject(incoming("MESSAGE"));
  assert.equal(got.length, 1, "retransmission not passed up");
  assert.equal(transport.sent.length, 0, "nothing to resend in Trying");
  clock.advance(200);
  tx.respond(createResponse(req, 180, { toTag: "t" }));
  assert.equal(tx.state, "proceeding");
  transport.inject(incoming("MESSAGE"));
  assert.deepEqual(transport.times(isRes(180)), [200, 200]);
  clock.advance(100);
  tx.respond(createResponse(req, 200, { toTag: "t" }));
  assert.equal(tx.state, "completed");
  tx.respond(createResponse(req, 500, { toTag: "t" }));
  assert.equal(transport.times(isRes(500)).length, 0, "a second final is discarded");
  clock.advance(1000);
  transport.inject(incoming("MESSAGE"));
  assert.deepEqual(transport.times(isRes(200)), [300, 1300]);
  assert.deepEqual(transport.sent.at(-1)!.info, UDP_INFO);
  clock.advance(64 * 500 - 1001);
  assert.equal(tx.state, "completed");
  clock.advance(1);
  assert.equal(tx.state, "terminated");
  assert.equal(tl.serverCount, 0);
  transport.inject(incoming("MESSAGE"));
  assert.equal(got.length, 2, "after timer J the same request is new");
});

Deno.test("server non-INVITE over TCP terminates at the final response (J = 0)", () => {
  const { transport, tl } = setup();
  let tx: AnyServerTransaction | undefined;
  tl.onRequest = (_req, t) => tx = t;
  const req = incoming("OPTIONS");
  transport.inject(req, TCP_INFO);
  tx!.respond(createResponse(req, 200, { toTag: "x" }));
  assert.equal(tx!.state, "terminated");
  assert.deepEqual(transport.sent[0].info, TCP_INFO);
});

Deno.test("server transactions are keyed by branch, sent-by and method (17.2.3)", () => {
  const { transport, tl } = setup();
  const got: string[] = [];
  tl.onRequest = (req, tx) => got.push(`${req.method}:${tx ? tx.constructor.name : "none"}`);
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKsame" }));
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKsame", sentBy: "192.0.2.99:5060" }));
  transport.inject(incoming("INFO", { branch: "z9hG4bKsame" }));
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKother" }));
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKsame" }));
  assert.equal(got.length, 4);
  assert.equal(tl.serverCount, 4);
});

Deno.test("a server transaction whose response fails to send terminates and tells the TU (17.2.4)", async () => {
  const { transport, tl } = setup();
  let tx: AnyServerTransaction | undefined;
  tl.onRequest = (_req, t) => tx = t;
  const req = incoming("MESSAGE");
  transport.inject(req);
  const events: string[] = [];
  tx!.user = {
    onTransportError: (e) => events.push(e.message),
    onTerminated: () => events.push("terminated"),
  };
  transport.failWith = new Error("broken pipe");
  tx!.respond(createResponse(req, 200, { toTag: "x" }));
  await flush();
  assert.deepEqual(events, ["broken pipe", "terminated"]);
  assert.equal(tl.serverCount, 0);
});

Deno.test("the layer answers 500 when the TU throws on a request", () => {
  const { transport, tl, logs } = setup();
  tl.onRequest = () => {
    throw new Error("bug");
  };
  transport.inject(incoming("MESSAGE"));
  assert.equal(transport.times(isRes(500)).length, 1);
  assert.ok(logs.some((l) => l.includes("bug")));
});

// ----------------------------------------------------------- server INVITE

Deno.test("server INVITE sends 100 Trying after 200 ms when the TU is silent, copying no tag", () => {
  const { clock, transport, tl } = setup();
  let tx: AnyServerTransaction | undefined;
  tl.onRequest = (_req, t) => tx = t;
  transport.inject(incoming("INVITE"));
  assert.ok(tx instanceof ServerInviteTransaction);
  assert.equal(tx.state, "proceeding");
  clock.advance(199);
  assert.equal(transport.sent.length, 0);
  clock.advance(1);
  assert.deepEqual(transport.times(isRes(100)), [200]);
  assert.equal((transport.sent[0].msg as SipResponse).toTag, undefined);
  clock.advance(300);
  transport.inject(incoming("INVITE"));
  assert.deepEqual(transport.times(isRes(100)), [200, 500], "retransmission gets the 100 again");
});

Deno.test("server INVITE sends no 100 when the TU answers within 200 ms, and resends its last provisional", () => {
  const { clock, transport, tl } = setup();
  tl.onRequest = (req, tx) => {
    clock.setTimeout(() => tx!.respond(createResponse(req, 180, { toTag: "b" })), 50);
  };
  transport.inject(incoming("INVITE"));
  clock.advance(1000);
  transport.inject(incoming("INVITE"));
  assert.deepEqual(transport.times(isRes(100)), []);
  assert.deepEqual(transport.times(isRes(180)), [50, 1000]);
});

Deno.test("server INVITE retransmits a non-2xx final with timer G up to T2 and gives up at timer H", () => {
  const { clock, transport, tl } = setup();
  let tx: AnyServerTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    req = r;
    tx = t;
  };
  transport.inject(incoming("INVITE"));
  const events: string[] = [];
  tx!.user = {
    onAckTimeout: () => events.push(`no-ack@${clock.now()}`),
    onTerminated: () => events.push(`terminated@${clock.now()}`),
  };
  tx!.respond(createResponse(req!, 486, { toTag: "b" }));
  assert.equal(tx!.state, "completed");
  clock.advance(2000);
  transport.inject(incoming("INVITE")); // a retransmitted INVITE gets the final again
  clock.advance(40_000);
  assert.deepEqual(transport.times(isRes(486)), [
    0,
    500,
    1500,
    2000,
    3500,
    7500,
    11500,
    15500,
    19500,
    23500,
    27500,
    31500,
  ]);
  assert.deepEqual(events, ["no-ack@32000", "terminated@32000"]);
  assert.equal(tl.serverCount, 0);
});

Deno.test("server INVITE: the ACK confirms, stops timer G, is absorbed, and timer I (T4) ends it", () => {
  const { clock, transport, tl } = setup();
  const got: string[] = [];
  let tx: AnyServerTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    got.push(r.method);
    req = r;
    tx ??= t;
  };
  transport.inject(incoming("INVITE"));
  tx!.respond(createResponse(req!, 404, { toTag: "b" }));
  clock.advance(600);
  transport.inject(incoming("ACK", { toTag: "b" }));
  assert.equal(tx!.state, "confirmed");
  transport.inject(incoming("ACK", { toTag: "b" }));
  transport.inject(incoming("INVITE"));
  assert.deepEqual(got, ["INVITE"], "ACKs and the INVITE retransmission are absorbed");
  clock.advance(4999);
  assert.equal(tx!.state, "confirmed");
  clock.advance(1);
  assert.equal(tx!.state, "terminated");
  assert.deepEqual(transport.times(isRes(404)), [0, 500]);
});

Deno.test("server INVITE over TCP: no timer G, and the ACK ends it at once (I = 0)", () => {
  const { clock, transport, tl } = setup();
  let tx: AnyServerTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    req = r;
    tx ??= t;
  };
  transport.inject(incoming("INVITE"), TCP_INFO);
  tx!.respond(createResponse(req!, 486, { toTag: "b" }));
  clock.advance(10_000);
  assert.deepEqual(transport.times(isRes(486)), [0]);
  transport.inject(incoming("ACK", { toTag: "b" }), TCP_INFO);
  assert.equal(tx!.state, "terminated");
});

Deno.test("server INVITE Accepted (RFC 6026): absorbs INVITE retransmissions, passes TU 2xx and ACKs, ends at timer L", () => {
  const { clock, transport, tl } = setup();
  const got: string[] = [];
  let tx: AnyServerTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    got.push(`${r.method}:${t ? "tx" : "none"}`);
    if (r.method === "INVITE") {
      req = r;
      tx = t;
    }
  };
  transport.inject(incoming("INVITE"));
  const ok = createResponse(req!, 200, { toTag: "b" });
  tx!.respond(ok);
  assert.equal(tx!.state, "accepted");
  clock.advance(500);
  transport.inject(incoming("INVITE"));
  assert.deepEqual(transport.times(isRes(200)), [0], "the transaction does not resend 2xx itself");
  tx!.respond(ok); // the TU's 2xx retransmission (13.3.1.4)
  assert.deepEqual(transport.times(isRes(200)), [0, 500]);
  tx!.respond(createResponse(req!, 486, { toTag: "b" }));
  assert.equal(transport.times(isRes(486)).length, 0);
  transport.inject(incoming("ACK", { branch: "z9hG4bKack2xx", toTag: "b" }));
  transport.inject(incoming("ACK", { toTag: "b" })); // same branch as the INVITE
  assert.deepEqual(got, ["INVITE:tx", "ACK:none", "ACK:none"]);
  clock.advance(64 * 500 - 501);
  assert.equal(tx!.state, "accepted");
  clock.advance(1);
  assert.equal(tx!.state, "terminated");
});

Deno.test("retransmit2xxUntilAck() resends the 2xx at T1 doubling to T2 until the ACK (13.3.1.4)", () => {
  const { clock, transport, tl } = setup();
  const got: string[] = [];
  let tx: ServerInviteTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    got.push(r.method);
    if (r.method === "INVITE") {
      req = r;
      tx = t as ServerInviteTransaction;
    }
  };
  transport.inject(incoming("INVITE"));
  let noAck = false;
  tx!.user = { onAckTimeout: () => noAck = true };
  tx!.respond(createResponse(req!, 200, { toTag: "b" }));
  tx!.retransmit2xxUntilAck();
  clock.advance(5000);
  transport.inject(incoming("ACK", { branch: "z9hG4bKother", toTag: "wrong" }));
  assert.equal(tx!.acked, false, "an ACK with another To tag is not ours");
  clock.advance(3000); // t = 8000
  transport.inject(incoming("ACK", { branch: "z9hG4bKack", toTag: "b" }));
  assert.equal(tx!.acked, true);
  clock.advance(40_000);
  assert.deepEqual(transport.times(isRes(200)), [0, 500, 1500, 3500, 7500]);
  assert.deepEqual(got, ["INVITE", "ACK", "ACK"], "ACKs still go to the TU");
  assert.equal(noAck, false);
  assert.equal(tx!.state, "terminated");
});

Deno.test("retransmit2xxUntilAck() without an ACK retransmits until 64*T1 and reports it", () => {
  const { clock, transport, tl } = setup();
  let tx: ServerInviteTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    req = r;
    tx = t as ServerInviteTransaction;
  };
  transport.inject(incoming("INVITE"));
  let noAckAt = -1;
  tx!.user = { onAckTimeout: () => noAckAt = clock.now() };
  tx!.respond(createResponse(req!, 200, { toTag: "b" }));
  tx!.retransmit2xxUntilAck();
  clock.advance(40_000);
  assert.deepEqual(transport.times(isRes(200)), RETRANSMITTED_TO_64_T1);
  assert.equal(noAckAt, 32_000);

  const s2 = setup();
  let tcpTx: ServerInviteTransaction | undefined;
  let tcpReq: SipRequest | undefined;
  s2.tl.onRequest = (r, t) => {
    tcpReq = r;
    tcpTx = t as ServerInviteTransaction;
  };
  s2.transport.inject(incoming("INVITE"), TCP_INFO);
  tcpTx!.respond(createResponse(tcpReq!, 200, { toTag: "b" }));
  tcpTx!.retransmit2xxUntilAck();
  s2.clock.advance(40_000);
  assert.deepEqual(s2.transport.times(isRes(200)), [0], "no retransmission over TCP");
});

Deno.test("an ACK matching no transaction goes to the TU without one", () => {
  const { transport, tl } = setup();
  const got: string[] = [];
  tl.onRequest = (r, t) => got.push(`${r.method}:${t === undefined}`);
  transport.inject(incoming("ACK", { toTag: "x" }));
  assert.deepEqual(got, ["ACK:true"]);
  assert.equal(tl.serverCount, 0);
});

Deno.test("a CANCEL gets its own server transaction and finds the INVITE it cancels (9.2)", () => {
  const { transport, tl } = setup();
  const txs: AnyServerTransaction[] = [];
  tl.onRequest = (_r, t) => txs.push(t!);
  transport.inject(incoming("INVITE", { branch: "z9hG4bKinv" }));
  const cancel = incoming("CANCEL", { branch: "z9hG4bKinv" });
  transport.inject(cancel);
  assert.equal(txs.length, 2);
  assert.ok(txs[1] instanceof ServerNonInviteTransaction);
  assert.equal(tl.findInviteServerTransaction(cancel), txs[0]);
  assert.equal(
    tl.findInviteServerTransaction(incoming("CANCEL", { branch: "z9hG4bKnone" })),
    undefined,
  );
});

Deno.test("RFC 2543 requests (no magic cookie) match on Request-URI, tags, Call-ID, CSeq and Via", () => {
  const { clock, transport, tl } = setup();
  const got: string[] = [];
  let tx: AnyServerTransaction | undefined;
  let req: SipRequest | undefined;
  tl.onRequest = (r, t) => {
    got.push(r.method);
    if (r.method === "INVITE" && !tx) {
      req = r;
      tx = t;
    }
  };
  transport.inject(incoming("INVITE", { branch: "old1" }));
  transport.inject(incoming("INVITE", { branch: "old1" }));
  assert.deepEqual(got, ["INVITE"], "retransmission matched");
  transport.inject(incoming("INVITE", { branch: "old1", fromTag: "other" }));
  assert.deepEqual(got, ["INVITE", "INVITE"], "another From tag is another transaction");
  tx!.respond(createResponse(req!, 486, { toTag: "resp" }));
  transport.inject(incoming("ACK", { branch: "old1", toTag: "wrong" }));
  assert.equal(tx!.state, "completed", "the ACK's To tag must be the response's");
  transport.inject(incoming("ACK", { branch: "old1", toTag: "resp" }));
  assert.equal(tx!.state, "confirmed");
  assert.deepEqual(got, ["INVITE", "INVITE", "ACK"]);
  clock.runAll();
});

Deno.test("close() terminates every transaction and leaves no timer", async () => {
  const { clock, transport, tl } = setup();
  tl.onRequest = () => {};
  tl.request(outgoing("INVITE"), UDP);
  tl.request(outgoing("MESSAGE"), UDP);
  transport.inject(incoming("INVITE"));
  await flush();
  assert.ok(clock.pending > 0);
  tl.close();
  assert.equal(clock.pending, 0);
  assert.equal(tl.clientCount + tl.serverCount, 0);
});

// ------------------------------------- two stacks over the real transport layer

async function loopPair(faults: LoopFaults = {}) {
  const clock = new ManualClock();
  const net = new LoopNetwork(faults);
  const aliceSocket = net.transport({ host: "192.0.2.1", port: 5060 });
  const bobSocket = net.transport({ host: "192.0.2.2", port: 5060 });
  const alice = new TransactionLayer({
    transport: new TransportLayer({ transports: [aliceSocket] }),
    clock,
  });
  const bob = new TransactionLayer({
    transport: new TransportLayer({ transports: [bobSocket] }),
    clock,
  });
  const toBob: Target = { protocol: "udp", host: "192.0.2.2", port: 5060 };
  const close = async () => {
    alice.close();
    bob.close();
    await aliceSocket.close();
    await bobSocket.close();
  };
  await Promise.resolve();
  return { clock, net, alice, bob, toBob, close };
}

Deno.test("over a lossy loop network a MESSAGE is retransmitted until it gets through, once to the TU", async () => {
  const { clock, net, alice, bob, toBob, close } = await loopPair({ dropEvery: 1 });
  const received: string[] = [];
  bob.onRequest = (req, tx) => {
    received.push(req.text);
    tx!.respond(createResponse(req, 200, { toTag: "b" }));
  };
  const req = outgoing("MESSAGE");
  req.body = new TextEncoder().encode("hello");
  const tx = alice.request(req, toBob);
  await net.settled();
  clock.advance(500); // first retransmission, also lost
  await net.settled();
  net.setFaults({});
  clock.advance(1000); // second retransmission at 1.5 s gets through
  await net.settled();
  assert.equal((await tx.response).status, 200);
  assert.deepEqual(received, ["hello"]);
  assert.equal(tx.state, "completed");
  assert.equal(net.packets.filter((p) => p.fate === "dropped").length, 2);
  assert.equal(tx.request.topVia.host, "192.0.2.1", "the transport layer filled sent-by");
  clock.advance(5000);
  assert.equal(alice.clientCount, 0);
  await close();
});

Deno.test("over the loop network a rejected INVITE is ACKed by the client transaction and confirms the server one", async () => {
  const { clock, net, alice, bob, toBob, close } = await loopPair();
  let serverTx: AnyServerTransaction | undefined;
  const bobSaw: string[] = [];
  bob.onRequest = (req, tx) => {
    bobSaw.push(req.method);
    serverTx ??= tx;
    if (req.method === "INVITE") tx!.respond(createResponse(req, 486, { toTag: "busy" }));
  };
  const tx = alice.request(outgoing("INVITE"), toBob);
  await net.settled();
  assert.equal((await tx.response).status, 486);
  assert.equal(tx.state, "completed");
  assert.equal(serverTx!.state, "confirmed");
  assert.deepEqual(bobSaw, ["INVITE"], "the ACK stays in the transaction layer");
  const methods = net.packets.map((p) => new TextDecoder().decode(p.data).split(" ")[0]);
  assert.deepEqual(methods, ["INVITE", "SIP/2.0", "ACK"]);
  clock.advance(32_000);
  assert.equal(alice.clientCount + bob.serverCount, 0);
  await close();
});

Deno.test("a non-INVITE server transaction over UDP keeps only its response bytes for timer J", async () => {
  const { clock, net, alice, bob, toBob, close } = await loopPair();
  let served: AnyServerTransaction | undefined;
  let calls = 0;
  bob.onRequest = (req, tx) => {
    calls++;
    served = tx;
    tx!.respond(createResponse(req, 200, { toTag: "b" }));
  };
  const req = outgoing("MESSAGE");
  const tx = alice.request(req, toBob);
  await net.settled();
  const request = net.packets[0].data;
  const first = net.packets.find((p) => p.from.host === "192.0.2.2")!;
  assert.equal(served!.state, "completed");
  assert.equal(bob.serverCount, 1);
  served = undefined; // the TU let go of the transaction: the layer does not need it
  // Two retransmissions of the request (as if the 200 had been lost) get
  // the response again from what the layer kept, byte for byte.
  const raw = net.transport({ host: "192.0.2.1", port: 5999 });
  clock.advance(500);
  await raw.send(request, { host: "192.0.2.2", port: 5060 });
  await net.settled();
  clock.advance(1000);
  await raw.send(request, { host: "192.0.2.2", port: 5060 });
  await net.settled();
  await raw.close();
  const answers = net.packets.filter((p) => p.from.host === "192.0.2.2");
  assert.equal(answers.length, 3);
  for (const a of answers) assert.deepEqual(a.data, first.data);
  assert.equal(calls, 1, "retransmissions are not passed up");
  assert.equal(bob.serverCount, 1);
  clock.advance(64 * 500 - 1500); // timer J
  assert.equal(bob.serverCount, 0);
  tx.terminate();
  await close();
});

Deno.test("timer J of a completed UDP transaction: state, onTerminated, and a fresh request after it", () => {
  const { clock, transport, tl } = setup();
  const got: AnyServerTransaction[] = [];
  tl.onRequest = (_req, tx) => got.push(tx!);
  const events: string[] = [];
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKone" }));
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKtwo" }));
  got[0].user = { onTerminated: () => events.push(`one@${clock.now()}`) };
  got[0].respond(createResponse(got[0].request, 200, { toTag: "x" }));
  clock.advance(100);
  got[1].respond(createResponse(got[1].request, 404, { toTag: "y" }));
  assert.equal(tl.serverCount, 2);
  clock.advance(32_000 - 100);
  assert.deepEqual(events, ["one@32000"]);
  assert.equal(got[0].state, "terminated");
  assert.equal(got[1].state, "completed");
  assert.equal(tl.serverCount, 1);
  clock.advance(100);
  assert.equal(got[1].state, "terminated");
  assert.equal(tl.serverCount, 0);
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKtwo" }));
  assert.equal(got.length, 3, "after timer J the same request is new");
});

Deno.test("completed UDP transactions in the timer J ring: growth, lookup after many, expiry in order, wrap-around", () => {
  const { clock, transport, tl } = setup();
  const got: string[] = [];
  tl.onRequest = (req, tx) => {
    const branch = req.topVia.params.branch!;
    got.push(branch);
    tx!.respond(createResponse(req, 200, { toTag: `t-${branch}` }));
  };
  const lastTag = () => {
    const res = transport.sent.at(-1)!.msg as SipResponse;
    return res.to.params.tag;
  };
  /** A retransmission of `branch`: absorbed (answered with its own tag) or new. */
  const again = (branch: string): "absorbed" | "new" => {
    const before = got.length;
    const sent = transport.sent.length;
    transport.inject(incoming("MESSAGE", { branch }));
    if (got.length > before) return "new";
    assert.equal(transport.sent.length, sent + 1, `${branch}: one response resent`);
    assert.equal(lastTag(), `t-${branch}`, `${branch}: its own response`);
    return "absorbed";
  };
  const start = tl.completedCapacity;
  assert.equal(start, 1024);
  // 3,000 transactions, one every 10 ms (30 s): the ring doubles twice.
  for (let i = 0; i < 3000; i++) {
    transport.inject(incoming("MESSAGE", { branch: `z9hG4bKa${i}` }));
    clock.advance(10);
  }
  assert.equal(tl.completedCapacity, 4096);
  assert.equal(tl.serverCount, 3000);
  // Every one of them is still found after the growth, with its own response.
  for (let i = 0; i < 3000; i++) assert.equal(again(`z9hG4bKa${i}`), "absorbed");
  assert.equal(got.length, 3000);
  // At 32,000 + 10 * 499 the first 500 have expired, in the order they came.
  clock.advance(32_000 + 10 * 499 - clock.now());
  assert.equal(tl.serverCount, 2500);
  assert.equal(again("z9hG4bKa499"), "new");
  assert.equal(again("z9hG4bKa500"), "absorbed");
  assert.equal(again("z9hG4bKa2999"), "absorbed");
  // Keep adding while older ones expire: the head and tail wrap around the
  // 4,096 slots several times and the ring does not grow again.
  for (let i = 0; i < 20_000; i++) {
    transport.inject(incoming("MESSAGE", { branch: `z9hG4bKb${i}` }));
    clock.advance(10);
    if (i % 997 === 0) {
      assert.equal(again(`z9hG4bKb${i}`), "absorbed");
      if (i >= 3200) assert.equal(again(`z9hG4bKb${i - 3200}`), "new", `b${i - 3200} expired`);
    }
  }
  assert.equal(tl.completedCapacity, 4096);
  // 3,200 entries (32 s at one per 10 ms) plus the re-created ones at most.
  assert.ok(tl.serverCount >= 3200 && tl.serverCount <= 3230, String(tl.serverCount));
  for (let i = 20_000 - 3100; i < 20_000; i++) assert.equal(again(`z9hG4bKb${i}`), "absorbed");
  // A burst grows the ring again while its oldest entry sits mid-ring:
  // every entry keeps its place in the map.
  for (let i = 0; i < 5000; i++) {
    transport.inject(incoming("MESSAGE", { branch: `z9hG4bKc${i}` }));
    if (i % 10 === 0) clock.advance(1);
  }
  assert.equal(tl.completedCapacity, 8192);
  for (let i = 20_000 - 3000; i < 20_000; i++) assert.equal(again(`z9hG4bKb${i}`), "absorbed");
  for (let i = 0; i < 5000; i++) assert.equal(again(`z9hG4bKc${i}`), "absorbed");
  clock.advance(32_000);
  assert.equal(tl.serverCount, 0);
  assert.equal(tl.completedCapacity, 1024, "the ring shrinks back once the entries expired");
  assert.equal(again("z9hG4bKb19999"), "new");
  assert.equal(again("z9hG4bKb19999"), "absorbed");
});

/**
 * Sends `data` from `raw` to bob (192.0.2.2:5060) on the loop network and
 * returns the one packet bob sent meanwhile (asserting there is exactly one).
 */
async function onlyAnswer(net: LoopNetwork, raw: Transport, data: Uint8Array, label: string) {
  const before = net.packets.length;
  await raw.send(data, { host: "192.0.2.2", port: 5060 });
  await net.settled();
  const answers = net.packets.slice(before).filter((p) => p.from.host === "192.0.2.2");
  assert.equal(answers.length, 1, label);
  return answers[0];
}

Deno.test("the timer J ring keeps prepared responses in columns: retransmissions get the same bytes through growth and wrap-around", async () => {
  const { clock, net, bob, close } = await loopPair();
  let calls = 0;
  bob.onRequest = (req, tx) => {
    calls++;
    const n = Number(req.callId.split("-")[0]);
    // Most tags fit the ring's fixed-width bytes; every seventh is too long.
    const toTag = n % 7 === 0 ? `long-tag-${n}-abcdefghij` : `t${n}`;
    // Every fifth answer has a body: no recipe rebuilds it, its bytes are kept.
    const body = n % 5 === 0 ? { body: `answer ${n}`, contentType: "text/plain" } : {};
    tx!.respond(createResponse(req, 200, { toTag, headers: { Server: "ring-test" }, ...body }));
  };
  const raw = net.transport({ host: "192.0.2.1", port: 5999 });
  const enc = new TextEncoder();
  const request = (n: number) =>
    enc.encode(
      "MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n" +
        // Odd ones name another port without rport: the response goes there,
        // not back to the source, and the entry keeps its object.
        (n % 2 === 0
          ? `Via: SIP/2.0/UDP 192.0.2.1:5999;branch=z9hG4bKring${n};rport\r\n`
          : `Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKring${n}\r\n`) +
        "Max-Forwards: 70\r\n" +
        `From: <sip:alice@example.test>;tag=f${n}\r\n` +
        "To: <sip:bob@example.test>\r\n" +
        `Call-ID: ${n}-ring@example.test\r\n` +
        "CSeq: 1 MESSAGE\r\n" +
        "Content-Length: 0\r\n\r\n",
    );
  const first = new Map<number, Uint8Array>();
  const send = async (n: number) => {
    const answer = await onlyAnswer(net, raw, request(n), `one answer to ${n}`);
    assert.equal(answer.to.port, n % 2 === 0 ? 5999 : 5070);
    return answer.data;
  };
  for (let n = 0; n < 500; n++) first.set(n, await send(n));
  clock.advance(20_000);
  for (let n = 500; n < 1000; n++) first.set(n, await send(n));
  assert.equal(bob.completedCapacity, 1024);
  clock.advance(12_000); // the first 500 expire: the oldest entry is mid-ring
  assert.equal(bob.serverCount, 500);
  for (let n = 1000; n < 2000; n++) first.set(n, await send(n)); // grows mid-ring
  assert.equal(bob.completedCapacity, 2048);
  assert.equal(calls, 2000);
  for (let n = 500; n < 2000; n++) {
    assert.deepEqual(await send(n), first.get(n), `retransmission of ${n}: same bytes`);
  }
  assert.equal(calls, 2000, "retransmissions are absorbed");
  assert.ok(
    new TextDecoder().decode(first.get(1602)).includes("To: <sip:bob@example.test>;tag=t1602\r\n"),
  );
  assert.ok(new TextDecoder().decode(first.get(1605)).endsWith("\r\n\r\nanswer 1605"));
  await send(5);
  assert.equal(calls, 2001, "an expired one is new");
  clock.advance(32_000);
  assert.equal(bob.serverCount, 0);
  await raw.close();
  await close();
});

Deno.test("completed UDP transactions are found in the ring's own table: RFC 2543 keys and To tags, a TU that ends one early, a failed retransmission, close()", async () => {
  const { clock, transport, tl } = setup();
  const got: { req: SipRequest; tx: AnyServerTransaction }[] = [];
  tl.onRequest = (req, tx) => got.push({ req, tx: tx! });
  const answer = (i: number, tag: string) =>
    got[i].tx.respond(createResponse(got[i].req, 200, { toTag: tag }));
  const oks = () => transport.sent.filter((s) => isRes(200)(s.msg)).length;
  // RFC 2543 (no magic cookie): the request's To tag is part of the match.
  transport.inject(incoming("MESSAGE", { branch: "old2" }));
  answer(0, "r0");
  transport.inject(incoming("MESSAGE", { branch: "old2" }));
  assert.equal(got.length, 1, "a retransmission with the same To tag is absorbed");
  assert.equal(oks(), 2);
  transport.inject(incoming("MESSAGE", { branch: "old2", toTag: "zz" }));
  assert.equal(got.length, 2, "another To tag: a new transaction with the same key");
  assert.equal(tl.serverCount, 1, "which takes the completed one's place");
  answer(1, "r1");
  transport.inject(incoming("MESSAGE", { branch: "old2", toTag: "zz" }));
  assert.equal(got.length, 2);
  assert.equal((transport.sent.at(-1)!.msg as SipResponse).to.params.tag, "zz");
  // A TU that waits for onTerminated and ends its transaction before timer J.
  const ended: string[] = [];
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKkept" }));
  got[2].tx.user = { onTerminated: () => ended.push("kept") };
  answer(2, "k");
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKkept" }));
  assert.equal(got.length, 3);
  got[2].tx.terminate();
  assert.deepEqual(ended, ["kept"]);
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKkept" }));
  assert.equal(got.length, 4, "once terminated, the same request is new");
  answer(3, "k2");
  // A retransmission whose answer fails to send ends that transaction (17.2.4).
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKfail" }));
  answer(4, "f");
  transport.failWith = new Error("unreachable");
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKfail" }));
  await flush();
  transport.failWith = undefined;
  const count = tl.serverCount;
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKfail" }));
  assert.equal(got.length, 6, "after the failure the same request is new");
  assert.equal(tl.serverCount, count + 1);
  // close() tells a TU that waits, for a completed transaction too.
  transport.inject(incoming("MESSAGE", { branch: "z9hG4bKlast" }));
  got[6].tx.user = { onTerminated: () => ended.push("last") };
  answer(6, "l");
  clock.advance(1000);
  tl.close();
  assert.deepEqual(ended, ["kept", "last"]);
  assert.equal(tl.serverCount, 0);
  assert.equal(clock.pending, 0);
});

Deno.test("the timer J ring halves as its entries expire, and the ones left keep their responses byte for byte", async () => {
  const { clock, net, bob, close } = await loopPair();
  let created = 0;
  bob.onRequest = (req, tx) => {
    created++;
    tx!.respond(createResponse(req, 200, { toTag: `t${req.callId.split("-")[0]}` }));
  };
  const raw = net.transport({ host: "192.0.2.1", port: 5999 });
  const enc = new TextEncoder();
  const request = (n: number) =>
    enc.encode(
      "MESSAGE sip:bob@192.0.2.2 SIP/2.0\r\n" +
        `Via: SIP/2.0/UDP 192.0.2.1:5999;branch=z9hG4bKhalf${n};rport\r\n` +
        `From: <sip:alice@example.test>;tag=f${n}\r\nTo: <sip:bob@example.test>\r\n` +
        `Call-ID: ${n}-half@example.test\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n`,
    );
  const send = async (n: number) =>
    (await onlyAnswer(net, raw, request(n), `one answer to ${n}`)).data;
  const first = new Map<number, Uint8Array>();
  for (let n = 0; n < 3000; n++) {
    first.set(n, await send(n));
    clock.advance(10);
  }
  assert.equal(bob.completedCapacity, 4096);
  // Entry n expires at 10 * n + 32,000: leave the last 200.
  clock.advance(10 * 2800 + 32_000 - 1 - clock.now());
  assert.equal(bob.serverCount, 200);
  assert.equal(bob.completedCapacity, 1024);
  for (let n = 2800; n < 3000; n++) assert.deepEqual(await send(n), first.get(n), `${n}`);
  assert.equal(created, 3000, "absorbed, not new");
  await send(2799);
  assert.equal(created, 3001, "an expired one is new");
  await raw.close();
  await close();
});

Deno.test("a layer without its server side loaded (a one-shot UA's) handles the requests that come meanwhile in order once it is, absorbing a retransmission", async () => {
  const url = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
  const script = `
    import { loadServerTransactions, TransactionLayer } from ${
    url("../lib/sip/transaction/layer.ts")
  };
    import { createResponse, parseMessage } from ${url("../lib/sip/message.ts")};
    import { ManualClock } from ${url("../lib/sip/clock.ts")};
    let deliver;
    const sent = [];
    const transport = {
      sendRequest: (_r, t) => Promise.resolve(t),
      sendResponse: (res) => (sent.push(res.status + " " + res.cseq.method), Promise.resolve()),
      onRequest: (h) => (deliver = h),
      onResponse: () => {},
    };
    const tl = new TransactionLayer({ transport, clock: new ManualClock() });
    const got = [];
    tl.onRequest = (req, tx) => {
      got.push(req.method);
      tx.respond(createResponse(req, 200, { toTag: "t" }));
    };
    const request = (method, cseq, branch) => parseMessage(
      method + " sip:bob@192.0.2.1 SIP/2.0\\r\\n" +
        "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK" + branch + "\\r\\n" +
        "From: <sip:alice@example.test>;tag=a1\\r\\nTo: <sip:bob@example.test>\\r\\n" +
        "Call-ID: c1\\r\\nCSeq: " + cseq + " " + method + "\\r\\nContent-Length: 0\\r\\n\\r\\n",
    );
    const info = {
      protocol: "udp",
      remote: { host: "192.0.2.20", port: 5060 },
      local: { host: "192.0.2.1", port: 5060 },
    };
    deliver(request("MESSAGE", 1, "m1"), info);
    deliver(request("OPTIONS", 2, "o2"), info);
    const early = got.length;
    await loadServerTransactions();
    await new Promise((r) => setTimeout(r, 0));
    // A retransmission of the MESSAGE, now answered from timer J's table.
    deliver(request("MESSAGE", 1, "m1"), info);
    console.log(JSON.stringify({ early, got, sent, servers: tl.serverCount }));
    tl.close();
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
    early: 0,
    got: ["MESSAGE", "OPTIONS"],
    sent: ["200 MESSAGE", "200 OPTIONS", "200 MESSAGE"],
    servers: 2,
  });
});
