import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { cloneMessage, parseMessage, type Uri } from "../lib/sip/message.ts";
import { LoopNetwork, type LoopNetworkOptions } from "../lib/sip/transport_loop.ts";
import type { Target } from "../lib/sip/transport_layer.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import type { TransportProtocol } from "../lib/sip/transport.ts";
import {
  asText,
  type BatchResult,
  MessageBatch,
  MessageListener,
  type MessageListenerOptions,
  MessageSender,
  MessageSendError,
  type ReceivedMessage,
} from "../lib/im/message.ts";
import { DEFAULT_CONVERSATION, messageDemo } from "../cli/_demo_im.ts";

const ALICE = "192.0.2.1";
const BOB = "192.0.2.2";
const BOB_URI = `sip:bob@${BOB}`;

function loopResolve(uri: Uri): Promise<Target[]> {
  const protocol = (uri.params.transport as TransportProtocol | undefined) ?? "udp";
  return Promise.resolve([{ protocol, host: uri.host, port: uri.port ?? 5060 }]);
}

interface Rig {
  net: LoopNetwork;
  clock: ManualClock;
  alice: UserAgent;
  bob: UserAgent;
  close(): Promise<void>;
}

async function rig(
  options: LoopNetworkOptions & { tcp?: boolean; aliceTcp?: boolean; t1?: number } = {},
): Promise<Rig> {
  const clock = new ManualClock();
  const net = new LoopNetwork({ ...options, clock: options.delay ? clock : undefined });
  const transports = (host: string, tcp: boolean) => {
    const list = [net.transport({ host })];
    if (tcp) list.push(net.transport({ host, protocol: "tcp" }));
    return list;
  };
  const timers = { t1: options.t1 ?? 500 };
  const alice = await UserAgent.create({
    aor: "alice@example.test",
    transports: transports(ALICE, options.aliceTcp ?? options.tcp ?? false),
    clock,
    timers,
    resolve: loopResolve,
  });
  const bob = await UserAgent.create({
    aor: "bob@example.test",
    transports: transports(BOB, options.tcp ?? false),
    clock,
    timers,
    resolve: loopResolve,
  });
  return {
    net,
    clock,
    alice,
    bob,
    close: async () => {
      clock.runAll();
      await alice.close();
      await bob.close();
    },
  };
}

/** Lets deliveries and handlers run, advancing the clock by `step` until `done` is true. */
async function drive(r: Rig, done: () => boolean, step = 100, limitMs = 120_000): Promise<void> {
  const end = r.clock.now() + limitMs;
  for (;;) {
    await r.net.settled();
    if (done()) return;
    if (r.clock.now() >= end) throw new Error("drive(): condition not met in time");
    r.clock.advance(step);
  }
}

/** Runs `p` to completion while driving the clock. */
async function settle<T>(r: Rig, p: Promise<T>, step = 100): Promise<T> {
  let finished = false;
  p.then(() => finished = true, () => finished = true);
  await drive(r, () => finished, step);
  return await p;
}

function listen(
  bob: UserAgent,
  options: Partial<MessageListenerOptions> = {},
): { listener: MessageListener; got: ReceivedMessage[] } {
  const got: ReceivedMessage[] = [];
  const listener = new MessageListener(bob, {
    onMessage: (m) => void got.push(m),
    ...options,
  });
  return { listener, got };
}

Deno.test("MessageSender.send() reports a 200 as delivered and the listener gets the text", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    const result = await settle(r, new MessageSender(r.alice).send(BOB_URI, { body: "Hello" }));
    assert.equal(result.status, 200);
    assert.equal(result.delivered, true);
    assert.equal(result.to, BOB_URI);
    assert.equal(got.length, 1);
    assert.equal(got[0].text, "Hello");
    assert.equal(got[0].from, "sip:alice@example.test");
    assert.equal(got[0].to, BOB_URI);
    assert.equal(got[0].contentType, "text/plain;charset=UTF-8");
    assert.equal(got[0].callId, result.callId);
    const req = r.net.packets.map((p) => parseMessage(p.data)).find((m) => m.kind === "request")!;
    assert.equal(req.kind === "request" && req.method, "MESSAGE");
    // RFC 3428 section 4: no Contact, MESSAGE creates no dialog.
    assert.equal(req.headers.has("Contact"), false);
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender.sendRequest() sends the request buildRequest() made, and only it", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    const sender = new MessageSender(r.alice);
    const built = sender.buildRequest(BOB_URI, { body: "once", subject: "s" });
    const result = await settle(r, sender.sendRequest(built));
    assert.equal(result.status, 200);
    assert.equal(result.delivered, true);
    assert.equal(result.to, BOB_URI);
    assert.equal(result.callId, built.callId);
    assert.deepEqual(got.map((m) => [m.text, m.callId]), [["once", built.callId]]);
    const sent = r.net.packets.map((p) => parseMessage(p.data)).filter((m) => m.kind === "request");
    assert.equal(sent.length, 1);
    assert.equal(sent[0].headers.get("Subject"), "s");
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender.send() reports a 202 as accepted, not delivered", async () => {
  const r = await rig();
  try {
    r.bob.handle("MESSAGE", (i) => i.respond(202));
    const result = await settle(r, new MessageSender(r.alice).send(BOB_URI, { body: "later" }));
    assert.equal(result.status, 202);
    assert.equal(result.delivered, false);
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender.send() rejects a 404 as a rejected MessageSendError", async () => {
  const r = await rig();
  try {
    r.bob.handle("MESSAGE", (i) => i.respond(404));
    const p = new MessageSender(r.alice).send(BOB_URI, { body: "x" });
    await assert.rejects(settle(r, p), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "rejected");
      assert.equal(e.status, 404);
      assert.equal(e.reason, "Not Found");
      assert.equal(e.response?.status, 404);
      return true;
    });
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender.send() times out when nobody answers (Timer F)", async () => {
  const r = await rig({ dropRate: 1 });
  try {
    const p = new MessageSender(r.alice).send(BOB_URI, { body: "x" });
    await assert.rejects(settle(r, p, 1000), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "timeout");
      assert.equal(e.status, 408);
      return true;
    });
    // 64*T1 = 32 s, not before.
    assert.ok(r.clock.now() >= 32_000);
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender timeout option gives up earlier", async () => {
  const r = await rig({ dropRate: 1 });
  try {
    const p = new MessageSender(r.alice, { timeout: 2000 }).send(BOB_URI, { body: "x" });
    await assert.rejects(settle(r, p, 100), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "timeout");
      assert.match(e.message, /within 2 s/);
      return true;
    });
    assert.ok(r.clock.now() < 3000, `clock at ${r.clock.now()}`);
  } finally {
    await r.close();
  }
});

Deno.test("cpim: the sender wraps, the listener unwraps headers and content", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    const sender = new MessageSender(r.alice, { now: () => new Date("2026-11-27T10:00:00Z") });
    await settle(
      r,
      sender.send(BOB_URI, { body: "Hi ✓", cpim: true, subject: "greeting" }),
    );
    const req = r.net.packets.map((p) => parseMessage(p.data))[0];
    assert.equal(req.headers.get("Content-Type"), "message/cpim");
    assert.equal(got.length, 1);
    const m = got[0];
    assert.equal(m.text, "Hi ✓");
    assert.equal(m.contentType, "text/plain;charset=UTF-8");
    assert.equal(m.cpim?.from?.uri, "sip:alice@example.test");
    assert.equal(m.cpim?.to[0].uri, BOB_URI);
    assert.equal(m.cpim?.subject[0].text, "greeting");
    assert.equal(m.cpim?.dateTime, "2026-11-27T10:00:00.000Z");
  } finally {
    await r.close();
  }
});

Deno.test("a subject without cpim goes into the SIP Subject header", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    await settle(r, new MessageSender(r.alice).send(BOB_URI, { body: "b", subject: "s1" }));
    assert.equal(got[0].subject, "s1");
    assert.equal(got[0].cpim, undefined);
  } finally {
    await r.close();
  }
});

Deno.test("a binary body keeps its bytes and has no text", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    const bytes = new Uint8Array([0, 255, 1, 254, 10, 13]);
    await settle(
      r,
      new MessageSender(r.alice).send(BOB_URI, {
        body: bytes,
        contentType: "application/octet-stream",
      }),
    );
    assert.deepEqual(got[0].body, bytes);
    assert.equal(got[0].text, undefined);
    assert.equal(got[0].contentType, "application/octet-stream");
  } finally {
    await r.close();
  }
});

Deno.test("asText() takes textual UTF-8 only", async (t) => {
  const enc = new TextEncoder();
  const cases: [string, Uint8Array, string | undefined][] = [
    ["text/plain", enc.encode("é"), "é"],
    ["application/json", enc.encode("{}"), "{}"],
    ["application/pidf+xml", enc.encode("<a/>"), "<a/>"],
    ["text/plain;charset=ISO-8859-1", enc.encode("a"), undefined],
    ["text/plain", new Uint8Array([0xff]), undefined],
    ["image/png", enc.encode("png"), undefined],
    ["not a type", enc.encode("x"), undefined],
  ];
  for (const [type, body, want] of cases) {
    await t.step(type, () => assert.equal(asText(type, body), want));
  }
});

Deno.test("--accept: other types get 415 with an Accept header", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob, { accept: ["text/plain", "message/cpim"] });
    const sender = new MessageSender(r.alice);
    await assert.rejects(
      settle(r, sender.send(BOB_URI, { body: "{}", contentType: "application/json" })),
      (e: unknown) => {
        assert.ok(e instanceof MessageSendError);
        assert.equal(e.status, 415);
        assert.equal(e.response?.headers.get("Accept"), "text/plain, message/cpim");
        return true;
      },
    );
    // A CPIM wrapper is checked on its content too.
    await assert.rejects(
      settle(r, sender.send(BOB_URI, { body: "<a/>", contentType: "text/html", cpim: true })),
      (e: unknown) => e instanceof MessageSendError && e.status === 415,
    );
    await settle(r, sender.send(BOB_URI, { body: "ok", cpim: true }));
    assert.equal(got.length, 1);
    assert.equal(got[0].text, "ok");
  } finally {
    await r.close();
  }
});

Deno.test("MessageListener rejects a malformed accept list", async () => {
  const r = await rig();
  try {
    assert.throws(
      () => new MessageListener(r.bob, { onMessage: () => {}, accept: ["text"] }),
      TypeError,
    );
  } finally {
    await r.close();
  }
});

Deno.test("a malformed CPIM body gets 400", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob);
    const p = new MessageSender(r.alice).send(BOB_URI, {
      body: "no blank line",
      contentType: "message/cpim",
    });
    await assert.rejects(
      settle(r, p),
      (e: unknown) => e instanceof MessageSendError && e.status === 400,
    );
    assert.equal(got.length, 0);
  } finally {
    await r.close();
  }
});

Deno.test("the 200 is sent only after onMessage has resolved", async () => {
  const r = await rig();
  try {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => release = resolve);
    let called = 0;
    new MessageListener(r.bob, {
      onMessage: () => {
        called++;
        return gate;
      },
    });
    let result: number | undefined;
    const p = new MessageSender(r.alice).send(BOB_URI, { body: "x" }).then((res) =>
      result = res.status
    );
    // Retransmissions come (UDP) but produce no second event and no answer.
    for (let i = 0; i < 10; i++) {
      await r.net.settled();
      r.clock.advance(400);
    }
    await r.net.settled();
    assert.equal(called, 1);
    assert.equal(result, undefined);
    const fromBob = r.net.packets.filter((p) => p.from.host === BOB);
    assert.equal(fromBob.length, 0);
    release();
    await settle(r, p);
    assert.equal(result, 200);
  } finally {
    await r.close();
  }
});

Deno.test("a failing onMessage answers 500 and the retry is taken as new", async () => {
  const r = await rig();
  try {
    let calls = 0;
    new MessageListener(r.bob, {
      onMessage: () => {
        calls++;
        if (calls === 1) throw new Error("disk full");
      },
    });
    const sender = new MessageSender(r.alice);
    const req = sender.buildRequest(BOB_URI, { body: "x" });
    const first = await settle(r, r.alice.send(req));
    assert.equal(first.response.status, 500);
    const again = cloneMessage(req);
    const second = await settle(r, r.alice.send(again));
    assert.equal(second.response.status, 200);
    assert.equal(calls, 2);
  } finally {
    await r.close();
  }
});

Deno.test("a duplicate (same Call-ID, CSeq, From tag; new branch) gives one event and the same answer", async () => {
  const r = await rig();
  try {
    const { got, listener } = listen(r.bob);
    const req = new MessageSender(r.alice).buildRequest(BOB_URI, { body: "once" });
    const a = await settle(r, r.alice.send(cloneMessage(req)));
    const b = await settle(r, r.alice.send(cloneMessage(req)));
    assert.equal(a.response.status, 200);
    assert.equal(b.response.status, 200);
    assert.notEqual(a.request.topVia.params.branch, b.request.topVia.params.branch);
    assert.equal(got.length, 1);
    assert.equal(listener.stats.duplicates, 1);
  } finally {
    await r.close();
  }
});

Deno.test("the duplicate memory is bounded (oldest keys forgotten)", async () => {
  const r = await rig();
  try {
    const { got } = listen(r.bob, { remember: 2 });
    const sender = new MessageSender(r.alice);
    const reqs = ["1", "2", "3"].map((b) => sender.buildRequest(BOB_URI, { body: b }));
    for (const req of reqs) await settle(r, r.alice.send(cloneMessage(req)));
    await settle(r, r.alice.send(cloneMessage(reqs[2]))); // remembered
    assert.equal(got.length, 3);
    await settle(r, r.alice.send(cloneMessage(reqs[0]))); // forgotten: new again
    assert.equal(got.length, 4);
  } finally {
    await r.close();
  }
});

Deno.test("the duplicate memory: a duplicate of a message still being taken gets its answer; a 500 is forgotten; 1,500 keys through its ring's growth", async () => {
  const r = await rig();
  try {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => open = resolve);
    const bodies: string[] = [];
    const listener = new MessageListener(r.bob, {
      remember: 1500,
      onMessage: async (m) => {
        bodies.push(m.text!);
        if (m.text === "slow") await gate;
        if (m.text === "fail") throw new Error("disk full");
      },
    });
    const sender = new MessageSender(r.alice);
    const slow = sender.buildRequest(BOB_URI, { body: "slow" });
    const first = r.alice.send(cloneMessage(slow));
    await drive(r, () => bodies.length === 1);
    const second = r.alice.send(cloneMessage(slow)); // new branch: not a retransmission
    await drive(r, () => listener.stats.duplicates === 1);
    open();
    assert.equal((await settle(r, first)).response.status, 200);
    assert.equal((await settle(r, second)).response.status, 200);
    assert.deepEqual(bodies, ["slow"]);
    const fail = sender.buildRequest(BOB_URI, { body: "fail" });
    assert.equal((await settle(r, r.alice.send(cloneMessage(fail)))).response.status, 500);
    assert.equal((await settle(r, r.alice.send(cloneMessage(fail)))).response.status, 500);
    assert.deepEqual(
      bodies,
      ["slow", "fail", "fail"],
      "a message not taken is new when sent again",
    );
    const reqs = Array.from(
      { length: 1500 },
      (_, i) => sender.buildRequest(BOB_URI, { body: `m${i}` }),
    );
    for (const req of reqs) await settle(r, r.alice.send(cloneMessage(req)));
    assert.equal(bodies.length, 1503);
    // The last 1,500 keys are remembered ("slow" and "fail" were pushed out).
    for (const i of [0, 700, 1499]) await settle(r, r.alice.send(cloneMessage(reqs[i])));
    assert.equal(bodies.length, 1503);
    assert.equal(listener.stats.duplicates, 4);
    await settle(r, r.alice.send(cloneMessage(slow)));
    assert.equal(bodies.length, 1504, "forgotten: new again");
  } finally {
    await r.close();
  }
});

Deno.test("a 10 KB body goes over TCP (RFC 3428 section 8) and arrives whole", async () => {
  const r = await rig({ tcp: true });
  try {
    const { got } = listen(r.bob);
    const body = "0123456789".repeat(1024);
    const result = await settle(r, new MessageSender(r.alice).send(BOB_URI, { body }));
    assert.equal(result.status, 200);
    assert.equal(got[0].text, body);
    const sent = r.net.packets.filter((p) => p.from.host === ALICE);
    assert.ok(sent.length > 0);
    assert.ok(sent.every((p) => p.protocol === "tcp"));
    assert.equal(got[0].source.protocol, "tcp");
  } finally {
    await r.close();
  }
});

Deno.test("a large body without any TCP transport fails with a clear too_large error", async () => {
  const r = await rig({ tcp: true, aliceTcp: false });
  try {
    const p = new MessageSender(r.alice).send(BOB_URI, { body: "x".repeat(2000) });
    await assert.rejects(settle(r, p), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "too_large");
      assert.match(e.message, /need TCP or TLS \(RFC 3428 section 8\)/);
      return true;
    });
    assert.equal(r.net.packets.length, 0);
  } finally {
    await r.close();
  }
});

Deno.test("a batch of 1,000 over lossy UDP: each message delivered once, every result reported", async () => {
  const r = await rig({ dropRate: 0.15, duplicateRate: 0.05, seed: 7 });
  try {
    const got = new Map<string, number>();
    new MessageListener(r.bob, {
      onMessage: async (m) => {
        await Promise.resolve();
        got.set(m.text!, (got.get(m.text!) ?? 0) + 1);
      },
    });
    const results: BatchResult[] = [];
    const batch = new MessageBatch(new MessageSender(r.alice), {
      concurrency: 25,
      onResult: (res) => void results.push(res),
    });
    let added = 0;
    const feeding = (async () => {
      for (let i = 0; i < 1000; i++) {
        await batch.add({ to: BOB_URI, message: { body: `m${i}` }, ref: i });
        added++;
      }
      await batch.drain();
    })();
    await settle(r, feeding, 50);
    assert.equal(added, 1000);
    assert.equal(results.length, 1000);
    const refs = new Set(results.map((x) => x.item.ref));
    assert.equal(refs.size, 1000);
    const failed = results.filter((x) => !x.ok);
    assert.deepEqual(failed.map((x) => !x.ok && x.error.message), []);
    assert.equal(got.size, 1000);
    assert.ok([...got.values()].every((n) => n === 1));
    // Loss really happened, in both directions.
    const dropped = r.net.packets.filter((p) => p.fate === "dropped");
    assert.ok(dropped.some((p) => p.from.host === ALICE));
    assert.ok(dropped.some((p) => p.from.host === BOB));
  } finally {
    await r.close();
  }
});

Deno.test("MessageBatch keeps at most `concurrency` in flight and reports failures", async () => {
  const r = await rig();
  try {
    let inHandler = 0;
    let maxSeen = 0;
    const gates: (() => void)[] = [];
    r.bob.handle("MESSAGE", async (i) => {
      inHandler++;
      maxSeen = Math.max(maxSeen, inHandler);
      await new Promise<void>((resolve) => gates.push(resolve));
      inHandler--;
      await i.respond(i.request.text === "bad" ? 403 : 200);
    });
    const results: BatchResult[] = [];
    const batch = new MessageBatch(new MessageSender(r.alice), {
      concurrency: 3,
      onResult: (res) => void results.push(res),
    });
    const feeding = (async () => {
      for (const body of ["a", "bad", "c", "d", "e", "f", "g"]) {
        await batch.add({ to: BOB_URI, message: { body } });
      }
      await batch.drain();
    })();
    let done = false;
    feeding.then(() => done = true);
    await drive(r, () => {
      while (gates.length) gates.shift()!();
      return done;
    }, 10);
    assert.equal(maxSeen, 3);
    assert.equal(results.length, 7);
    const bad = results.filter((x) => !x.ok);
    assert.equal(bad.length, 1);
    assert.ok(
      !bad[0].ok && bad[0].error instanceof MessageSendError && bad[0].error.status === 403,
    );
  } finally {
    await r.close();
  }
});

Deno.test("messageDemo() plays the conversation between alice and bob on loopback", async () => {
  const events: [string, Record<string, unknown>][] = [];
  const result = await messageDemo({ onEvent: (type, fields) => void events.push([type, fields]) });
  assert.equal(result.sent, DEFAULT_CONVERSATION.length);
  assert.equal(result.received, DEFAULT_CONVERSATION.length);
  const messages = events.filter(([t]) => t === "message").map(([, f]) => f);
  assert.deepEqual(
    messages.map((m) => m.body),
    DEFAULT_CONVERSATION.map((l) => l.message.body),
  );
  assert.equal(messages[2].subject, "lunch");
  // The long menu does not fit in 1300 bytes: it went over TCP.
  assert.equal(messages[3].transport, "tcp");
  assert.ok(events.filter(([t]) => t === "sent").every(([, f]) => f.delivered === true));
});

Deno.test("MessageSender reports an authentication failure as kind auth", async () => {
  const r = await rig();
  try {
    r.bob.handle("MESSAGE", (i) =>
      i.respond(401, {
        headers: [["WWW-Authenticate", 'Digest realm="example.test", nonce="abc", algorithm=MD5']],
      }));
    const p = new MessageSender(r.alice).send(BOB_URI, { body: "x" });
    await assert.rejects(settle(r, p), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "auth");
      assert.equal(e.status, 401);
      return true;
    });
  } finally {
    await r.close();
  }
});

Deno.test("MessageSender follows a 302 to the new Contact", async () => {
  const r = await rig();
  const carol = await UserAgent.create({
    aor: "carol@example.test",
    transports: [r.net.transport({ host: "192.0.2.3" })],
    clock: r.clock,
    resolve: loopResolve,
  });
  try {
    r.bob.handle(
      "MESSAGE",
      (i) => i.respond(302, { headers: [["Contact", "<sip:carol@192.0.2.3>"]] }),
    );
    const { got } = listen(carol);
    const result = await settle(r, new MessageSender(r.alice).send(BOB_URI, { body: "moved?" }));
    assert.equal(result.status, 200);
    assert.equal(got[0].text, "moved?");
  } finally {
    await carol.close();
    await r.close();
  }
});

Deno.test("MessageSender reports an unreachable stream target as kind network", async () => {
  const r = await rig({ tcp: true });
  try {
    const p = new MessageSender(r.alice).send("sip:nobody@192.0.2.9;transport=tcp", { body: "x" });
    await assert.rejects(settle(r, p), (e: unknown) => {
      assert.ok(e instanceof MessageSendError);
      assert.equal(e.kind, "network");
      assert.equal(e.status, 503);
      assert.match(e.message, /Cannot connect/);
      return true;
    });
  } finally {
    await r.close();
  }
});

Deno.test("MessageListener.accepts() ignores parameters and case, and takes type/* and */*", async () => {
  const r = await rig();
  try {
    const a = new MessageListener(r.bob, {
      onMessage: () => {},
      accept: [" Text/Plain;charset=UTF-8", "image/*"],
    });
    assert.equal(a.accepts("text/plain"), true);
    assert.equal(a.accepts("image/png"), true);
    assert.equal(a.accepts("text/html"), false);
    const all = new MessageListener(r.bob, { onMessage: () => {}, accept: ["*/*"] });
    assert.equal(all.accepts("application/x-anything"), true);
  } finally {
    await r.close();
  }
});

Deno.test("MessageListener.settled() waits for every message being taken, then resolves at once", async () => {
  const r = await rig({ tcp: true, aliceTcp: true });
  const gates: (() => void)[] = [];
  const listener = new MessageListener(r.bob, {
    onMessage: () => new Promise<void>((resolve) => gates.push(resolve)),
  });
  await listener.settled(); // nothing in flight
  const sender = new MessageSender(r.alice);
  const sends = [1, 2].map((n) => sender.send(`sip:bob@${BOB};transport=tcp`, { body: `m${n}` }));
  await drive(r, () => gates.length === 2);
  let settled = false;
  const waiting = listener.settled().then(() => settled = true);
  gates[0]();
  await r.net.settled();
  assert.equal(settled, false, "one message is still being taken");
  gates[1]();
  await waiting;
  assert.equal(settled, true);
  const results = await Promise.all(sends);
  assert.deepEqual(results.map((x) => x.status), [200, 200]);
  assert.equal(listener.stats.received, 2);
  await listener.settled();
  await r.close();
});

Deno.test("asText reads short and long bodies, ASCII or not, as UTF-8, and refuses invalid UTF-8", () => {
  const enc = new TextEncoder();
  for (
    const text of ["", "hi", "x".repeat(64), "y".repeat(65), "é", "a".repeat(63) + "é", "😀 ok"]
  ) {
    assert.equal(asText("text/plain", enc.encode(text)), text);
  }
  assert.equal(asText("text/plain", new Uint8Array([104, 0xff, 105])), undefined);
  assert.equal(
    asText("text/plain", new Uint8Array([...enc.encode("z".repeat(70)), 0xc3])),
    undefined,
  );
  assert.equal(asText("text/plain", new Uint8Array([0, 9, 10, 13, 127])), "\u0000\t\n\r\u007f");
});
