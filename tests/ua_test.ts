import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { DigestAuthError, DigestServer } from "../lib/sip/digest.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import { SipHeaders } from "../lib/sip/headers.ts";
import {
  createRequest,
  formatMessage,
  formatUri,
  parseMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "../lib/sip/message.ts";
import { type ResolveOptions, resolveSipUri, staticDnsLookup } from "../lib/sip/resolver.ts";
import type { Target } from "../lib/sip/transaction/mod.ts";
import {
  LoopNetwork,
  type LoopNetworkOptions,
  type LoopTransport,
} from "../lib/sip/transport_loop.ts";
import { type IncomingRequest, parseHostPort, toSipUri, UserAgent } from "../lib/sip/ua.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Loop-network test bed: UAs share a network and a manual clock. */
class Bed {
  readonly clock = new ManualClock();
  readonly net: LoopNetwork;
  readonly uas: UserAgent[] = [];
  readonly raws: LoopTransport[] = [];
  /** Name -> targets, for URIs whose host is not an address. */
  readonly dns = new Map<string, Target[]>();

  constructor(netOptions: LoopNetworkOptions = {}) {
    this.net = new LoopNetwork(netOptions);
  }

  async ua(
    host: string,
    options: Parameters<typeof UserAgent.create>[0] = {},
    protocol: "udp" | "tcp" = "udp",
  ): Promise<UserAgent> {
    const ua = await UserAgent.create({
      transports: [this.net.transport({ host, protocol })],
      clock: this.clock,
      resolve: (uri) => Promise.resolve(this.resolve(uri, protocol)),
      ...options,
    });
    this.uas.push(ua);
    return ua;
  }

  resolve(uri: Uri, protocol: "udp" | "tcp"): Target[] {
    const named = this.dns.get(uri.host);
    if (named) return named;
    const p = (uri.params.transport as "udp" | "tcp" | undefined) ?? protocol;
    return [{ protocol: p, host: uri.host, port: uri.port ?? 5060 }];
  }

  /** A bare transport that records every message it gets. */
  raw(host: string): { t: LoopTransport; got: Reply[] } {
    const t = this.net.transport({ host });
    const got: Reply[] = [];
    t.onMessage((m) => got.push(reply(m.data)));
    this.raws.push(t);
    return { t, got };
  }

  /** Lets the network and the stack run, advancing the clock until `p` settles. */
  async run<T>(p: Promise<T>, stepMs = 500, limitMs = 300_000): Promise<T> {
    let done = false;
    p.then(() => (done = true), () => (done = true));
    for (let t = 0; t <= limitMs; t += stepMs) {
      await this.net.settled();
      if (done) break;
      this.clock.advance(stepMs);
    }
    return await p;
  }

  async close(): Promise<void> {
    for (const ua of this.uas) await ua.close();
    for (const t of this.raws) await t.close();
  }
}

async function withBed(
  fn: (bed: Bed) => Promise<void>,
  netOptions: LoopNetworkOptions = {},
): Promise<void> {
  const bed = new Bed(netOptions);
  try {
    await fn(bed);
  } finally {
    await bed.close();
  }
}

function rawRequest(lines: string[], body = ""): Uint8Array {
  return enc.encode(
    lines.join("\r\n") + `\r\nContent-Length: ${enc.encode(body).length}\r\n\r\n${body}`,
  );
}

function options(to: string, from = "192.0.2.99", extra: string[] = []): Uint8Array {
  return rawRequest([
    `OPTIONS ${to} SIP/2.0`,
    `Via: SIP/2.0/UDP ${from}:5060;branch=z9hG4bK-${crypto.randomUUID()}`,
    "Max-Forwards: 70",
    "From: <sip:probe@example.test>;tag=p1",
    "To: <sip:bob@example.test>",
    `Call-ID: ${crypto.randomUUID()}`,
    "CSeq: 1 OPTIONS",
    ...extra,
  ]);
}

const BOB = { host: "192.0.2.2", port: 5060 };

/** What a raw peer got: the status and CSeq method read from the text (a 400 may echo bad headers). */
interface Reply {
  status: number;
  method: string;
  text: string;
  msg?: SipMessage;
}

function reply(data: Uint8Array): Reply {
  const text = dec.decode(data);
  let msg: SipMessage | undefined;
  try {
    msg = parseMessage(data);
  } catch {
    // kept as text
  }
  return {
    status: Number(/^SIP\/2\.0 (\d+)/.exec(text)?.[1] ?? 0),
    method: /\r\nCSeq:\s*\S+\s+(\S+)/i.exec(text)?.[1] ?? "",
    text,
    msg,
  };
}

Deno.test("SipHeaders.prepend() puts a header that is absent on the first line", () => {
  const h = SipHeaders.from([["Max-Forwards", "70"], ["To", "<sip:b@x>"]]);
  h.prepend("Via", "SIP/2.0/UDP top;branch=z9hG4bK1");
  assert.equal(h.fields[0].name, "Via");
  h.prepend("Via", "SIP/2.0/UDP newer;branch=z9hG4bK2");
  assert.deepEqual(h.getAll("Via"), [
    "SIP/2.0/UDP newer;branch=z9hG4bK2",
    "SIP/2.0/UDP top;branch=z9hG4bK1",
  ]);
  assert.equal(h.fields[2].name, "Max-Forwards");
});

Deno.test("toSipUri() and parseHostPort() read user input", () => {
  assert.equal(formatUri(toSipUri("alice@example.test")), "sip:alice@example.test");
  assert.equal(formatUri(toSipUri(" sips:bob@example.test ")), "sips:bob@example.test");
  assert.equal(toSipUri("SIP:carol@example.test").user, "carol");
  assert.equal(toSipUri("Sips:carol@example.test").scheme, "sips");
  assert.equal(toSipUri("TEL:+15551234").scheme, "tel");
  // Anything else is a user part (sipx is not a scheme we know).
  assert.equal(toSipUri("sipx@example.test").user, "sipx");
  assert.deepEqual(parseHostPort("127.0.0.1:5070"), { host: "127.0.0.1", port: 5070 });
  assert.deepEqual(parseHostPort("[::1]:5080"), { host: "::1", port: 5080 });
  assert.deepEqual(parseHostPort("::1"), { host: "::1", port: 0 });
  assert.deepEqual(parseHostPort(":5090"), { host: "0.0.0.0", port: 5090 });
  assert.throws(() => parseHostPort("host:99999"), RangeError);
  assert.throws(() => parseHostPort("host:x"), RangeError);
});

Deno.test("UserAgent answers OPTIONS with 200, Allow, Accept, Supported and Contact", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bob.handle("MESSAGE", (i) => i.respond(200));
    const req = alice.createRequest("OPTIONS", "sip:bob@192.0.2.2");
    const { response, request } = await bed.run(alice.send(req));
    assert.equal(response.status, 200);
    const allow = response.headers.values("Allow");
    assert.ok(allow.includes("OPTIONS") && allow.includes("MESSAGE"), allow.join(","));
    assert.match(response.headers.get("Accept") ?? "", /application\/sdp/);
    assert.ok(response.headers.has("Supported"));
    assert.equal(formatUri(response.contact[0].uri), "sip:bob@192.0.2.2");
    assert.ok(response.to.params.tag, "a To tag on the 200");
    assert.match(response.headers.get("Server") ?? "", /^sipkit\//);
    // The request left Alice with its top Via on the first line, and the
    // header fields of section 8.1.1.
    assert.equal(request.headers.fields[0].name, "Via");
    assert.equal(request.headers.get("Max-Forwards"), "70");
    assert.match(request.headers.get("User-Agent") ?? "", /^sipkit\//);
    assert.ok(request.from.params.tag);
    assert.equal(request.cseq.seq, 1);
    const wire = dec.decode(bed.net.packets[0].data);
    assert.match(wire, /^OPTIONS sip:bob@192\.0\.2\.2 SIP\/2\.0\r\nVia: /);
  });
});

Deno.test("UserAgent answers 405 with Allow to a method nobody handles", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bob.handle("SUBSCRIBE", (i) => i.respond(200));
    const { response } = await bed.run(
      alice.send(alice.createRequest("PUBLISH", "sip:bob@192.0.2.2")),
    );
    assert.equal(response.status, 405);
    assert.deepEqual(response.headers.values("Allow").sort(), ["OPTIONS", "SUBSCRIBE"]);
  });
});

Deno.test("UserAgent answers 481 to an in-dialog request for an unknown dialog", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const seen: string[] = [];
    bob.handle("NOTIFY", (i) => i.respond(200)); // out-of-dialog handler must not get it
    const req = alice.createRequest("NOTIFY", "sip:bob@192.0.2.2", {
      to: { uri: toSipUri("sip:bob@example.test"), params: { tag: "bobtag" } },
      callId: "dlg-1",
      headers: [["Event", "presence"], ["Subscription-State", "active"]],
    });
    const first = await bed.run(alice.send(req, { contact: true }));
    assert.equal(first.response.status, 481);

    // Once the dialog is known, its handler gets the request.
    const fromTag = first.request.from.params.tag!;
    const id = { callId: "dlg-1", localTag: "bobtag", remoteTag: fromTag };
    bob.addDialog(id, (i: IncomingRequest) => {
      seen.push(i.request.method);
      return i.respond(200);
    });
    assert.ok(bob.hasDialog(id));
    const again = alice.createRequest("NOTIFY", "sip:bob@192.0.2.2", {
      to: { uri: toSipUri("sip:bob@example.test"), params: { tag: "bobtag" } },
      from: first.request.from,
      callId: "dlg-1",
      cseq: 2,
      headers: [["Event", "presence"], ["Subscription-State", "active"]],
    });
    const second = await bed.run(alice.send(again, { contact: true }));
    assert.equal(second.response.status, 200);
    assert.deepEqual(seen, ["NOTIFY"]);
    // In-dialog answers leave Server out (it was on the out-of-dialog ones).
    assert.equal(second.response.headers.has("Server"), false);

    bob.removeDialog(id);
    const third = alice.createRequest("NOTIFY", "sip:bob@192.0.2.2", {
      to: { uri: toSipUri("sip:bob@example.test"), params: { tag: "bobtag" } },
      from: first.request.from,
      callId: "dlg-1",
      cseq: 3,
    });
    assert.equal((await bed.run(alice.send(third, { contact: true }))).response.status, 481);
  });
});

Deno.test("UserAgent answers 416 to a Request-URI scheme it does not know", async () => {
  await withBed(async (bed) => {
    await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const raw = bed.raw("192.0.2.99");
    await raw.t.send(options("nobodyKnowsThisScheme:totallyopaquecontent"), BOB);
    await bed.net.settled();
    assert.equal(raw.got.length, 1);
    assert.equal(raw.got[0].status, 416);
  });
});

Deno.test("UserAgent answers 400 to malformed requests and keeps working", async (t) => {
  await withBed(async (bed) => {
    await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const raw = bed.raw("192.0.2.99");
    const base = [
      "Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-bad",
      "Max-Forwards: 70",
      "From: <sip:probe@example.test>;tag=p1",
      "To: <sip:bob@example.test>",
      "Call-ID: bad-1",
    ];
    const cases: [string, Uint8Array, number][] = [
      [
        "a CSeq without number",
        rawRequest(["OPTIONS sip:bob@192.0.2.2 SIP/2.0", ...base, "CSeq: x OPTIONS"]),
        400,
      ],
      [
        "a CSeq method that does not match",
        rawRequest(["OPTIONS sip:bob@192.0.2.2 SIP/2.0", ...base, "CSeq: 1 INVITE"]),
        400,
      ],
      [
        "a bad SIP version",
        rawRequest(["OPTIONS sip:bob@192.0.2.2 SIP/7.0", ...base, "CSeq: 1 OPTIONS"]),
        505, // Version Not Supported (section 8.2.2 and 21.5.7)
      ],
      [
        "two From headers",
        rawRequest([
          "OPTIONS sip:bob@192.0.2.2 SIP/2.0",
          ...base,
          "From: <sip:x@y>;tag=2",
          "CSeq: 1 OPTIONS",
        ]),
        400,
      ],
    ];
    for (const [name, bytes, status] of cases) {
      await t.step(name, async () => {
        raw.got.length = 0;
        await raw.t.send(bytes, BOB);
        await bed.net.settled();
        assert.equal(raw.got.length, 1, "one answer");
        assert.equal(raw.got[0].status, status);
        assert.match(raw.got[0].text, /\r\nTo: <sip:bob@example\.test>;tag=/);
      });
    }
    await t.step("garbage gets no answer and no crash", async () => {
      raw.got.length = 0;
      await raw.t.send(enc.encode("\x00\x01garbage\r\n\r\n"), BOB);
      await raw.t.send(enc.encode("SIP/2.0 200 OK\r\n\r\n"), BOB);
      await bed.net.settled();
      assert.equal(raw.got.length, 0);
    });
    await t.step("then OPTIONS still gets 200", async () => {
      raw.got.length = 0;
      await raw.t.send(options("sip:bob@192.0.2.2"), BOB);
      await bed.net.settled();
      assert.equal(raw.got[0].status, 200);
    });
  });
});

Deno.test("UserAgent answers a handler that throws with 500", async () => {
  await withBed(async (bed) => {
    const logs: string[] = [];
    const bob = await bed.ua("192.0.2.2", {
      aor: "bob@example.test",
      log: (_l, m) => logs.push(m),
    });
    bob.handle("OPTIONS", () => {
      throw new Error("boom");
    });
    const raw = bed.raw("192.0.2.99");
    await raw.t.send(options("sip:bob@192.0.2.2"), BOB);
    await bed.net.settled();
    assert.equal(raw.got[0].status, 500);
    assert.ok(logs.some((l) => l.includes("boom")));
  });
});

Deno.test("UserAgent answers CANCEL: 200, then 487 for the INVITE; 481 without one", async () => {
  await withBed(async (bed) => {
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    let invited = 0;
    bob.handle("INVITE", (i) => {
      invited++;
      return i.respond(180);
    });
    const raw = bed.raw("192.0.2.99");
    const head = (method: string) => [
      `${method} sip:bob@192.0.2.2 SIP/2.0`,
      "Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-inv1",
      "Max-Forwards: 70",
      "From: <sip:probe@example.test>;tag=p1",
      "To: <sip:bob@example.test>",
      "Call-ID: cancel-1",
      `CSeq: 1 ${method}`,
    ];
    await raw.t.send(rawRequest([...head("INVITE"), "Contact: <sip:probe@192.0.2.99>"]), BOB);
    await bed.net.settled();
    assert.equal(invited, 1);
    assert.ok(raw.got.some((m) => m.status === 180));
    raw.got.length = 0;
    await raw.t.send(rawRequest(head("CANCEL")), BOB);
    await bed.net.settled();
    const statuses = raw.got.map((m) => `${m.status} ${m.method}`).sort();
    assert.deepEqual(statuses, ["200 CANCEL", "487 INVITE"]);

    raw.got.length = 0;
    const other = head("CANCEL").map((l) => l.replace("inv1", "none").replace("cancel-1", "c2"));
    await raw.t.send(rawRequest(other), BOB);
    await bed.net.settled();
    assert.equal(raw.got[0].status, 481);
    bed.clock.advance(64_000); // let the INVITE server transaction end
  });
});

/** Bob as a registrar-like server that asks for digest credentials. */
function challenging(
  bob: UserAgent,
  server: DigestServer,
  password: string,
  options: { proxy?: boolean } = {},
): SipRequest[] {
  const seen: SipRequest[] = [];
  bob.handle("MESSAGE", (i) => {
    seen.push(i.request);
    const v = server.verifyRequest(
      i.request,
      (user) => (user === "alice" ? { password } : undefined),
      { proxy: options.proxy },
    );
    if (v.ok) return i.respond(200);
    return i.respond(options.proxy ? 407 : 401, {
      headers: server.challengeFields({ stale: v.stale, proxy: options.proxy }),
    });
  });
  return seen;
}

Deno.test("UserAgent answers a 401 with digest credentials and a new CSeq", async () => {
  await withBed(async (bed) => {
    let asked = 0;
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      password: () => (asked++, Promise.resolve("s3cret")),
    });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const server = new DigestServer({ realm: "example.test", clock: bed.clock });
    const seen = challenging(bob, server, "s3cret");
    const req = alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", {
      body: "hi",
      contentType: "text/plain",
    });
    const { response, request } = await bed.run(alice.send(req));
    assert.equal(response.status, 200);
    assert.equal(seen.length, 2);
    assert.equal(seen[0].headers.has("Authorization"), false);
    assert.match(seen[1].headers.get("Authorization") ?? "", /username="alice"/);
    assert.equal(seen[1].cseq.seq, seen[0].cseq.seq + 1);
    assert.equal(seen[1].callId, seen[0].callId);
    assert.notEqual(seen[1].topVia.params.branch, seen[0].topVia.params.branch);
    assert.equal(request.cseq.seq, 2);
    // The next request is pre-authenticated: no second challenge round.
    const next = alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "again" });
    assert.equal((await bed.run(alice.send(next))).response.status, 200);
    assert.equal(seen.length, 3);
    assert.equal(asked, 1, "the password is asked for once");
    // The password never travels.
    for (const p of bed.net.packets) assert.ok(!dec.decode(p.data).includes("s3cret"));
  });
});

Deno.test("UserAgent answers a 407 with Proxy-Authorization", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      password: () => Promise.resolve("pw"),
    });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const seen = challenging(bob, new DigestServer({ realm: "proxy.test" }), "pw", { proxy: true });
    const { response } = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" })),
    );
    assert.equal(response.status, 200);
    assert.ok(seen[1].headers.has("Proxy-Authorization"));
  });
});

Deno.test("UserAgent stops at a second challenge: the password is wrong", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      password: () => Promise.resolve("wrong"),
    });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const seen = challenging(bob, new DigestServer({ realm: "example.test" }), "right");
    const err = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" })),
    ).catch((e) => e);
    assert.ok(err instanceof DigestAuthError, String(err));
    assert.equal(err.reason, "rejected");
    assert.ok(!err.message.includes("wrong"), "the message never shows the password");
    assert.equal(seen.length, 2);
  });
});

Deno.test("UserAgent without a password reports a challenge as an auth error", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    challenging(bob, new DigestServer({ realm: "example.test" }), "right");
    const err = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" })),
    ).catch((e) => e);
    assert.ok(err instanceof DigestAuthError);
    assert.match(err.message, /no password/);
  });
});

Deno.test("UserAgent fails over to the next target after a timeout (RFC 3263 4.3)", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bed.dns.set("example.test", [
      { protocol: "udp", host: "192.0.2.50", port: 5060 }, // nobody there
      { protocol: "udp", host: "192.0.2.2", port: 5060 },
    ]);
    const sent: string[] = [];
    const start = bed.clock.now();
    const { response, target, request } = await bed.run(
      alice.send(alice.createRequest("REGISTER", "sip:example.test"), {
        onRequest: (r, t) => sent.push(`${t.host} ${r.topVia.params.branch}`),
      }),
    );
    assert.equal(response.status, 405); // Bob is no registrar, but he answered
    assert.equal(target.host, "192.0.2.2");
    assert.equal(sent.length, 2);
    assert.notEqual(sent[0].split(" ")[1], sent[1].split(" ")[1], "a new branch");
    assert.ok(bed.clock.now() - start >= 32_000, "after timer F");
    // The request returned is the one that reached Bob, with its Contact.
    assert.equal(formatUri(request.contact[0].uri), "sip:alice@192.0.2.1");
  });
});

Deno.test("UserAgent fails over at the first retransmission when a UDP target answers ICMP port unreachable", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bed.dns.set("example.test", [
      { protocol: "udp", host: "192.0.2.50", port: 5060 }, // nobody bound: ICMP answers
      { protocol: "udp", host: "192.0.2.2", port: 5060 },
    ]);
    const sent: string[] = [];
    const start = bed.clock.now();
    const { response, target } = await bed.run(
      alice.send(alice.createRequest("REGISTER", "sip:example.test"), {
        onRequest: (_r, t) => sent.push(t.host),
      }),
      100,
    );
    assert.equal(response.status, 405); // Bob is no registrar, but he answered
    assert.equal(target.host, "192.0.2.2");
    assert.deepEqual(sent, ["192.0.2.50", "192.0.2.2"]);
    // RFC 3261 18.4 / RFC 3263 4.3: the retransmission at T1 is the send that
    // hears the refusal, so the failover comes after 500 ms, not timer F's 32 s.
    assert.equal(bed.clock.now() - start, 500);
  }, { icmp: true });
});

Deno.test("UserAgent reports an ICMP port unreachable as a local 503 naming it, not a 408 after 32 s", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const start = bed.clock.now();
    const err = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.77", { body: "x" })),
      100,
    ).catch((e) => e);
    assert.ok(err instanceof SipRequestError, String(err));
    assert.equal(err.status, 503);
    assert.equal(err.local, true);
    assert.match(err.reason, /^Transport error: .*ICMP port unreachable/);
    assert.equal(bed.clock.now() - start, 500);
  }, { icmp: true });
});

Deno.test("UserAgent fails over at once on a transport error and on 503", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" }, "tcp");
    const busy = await bed.ua("192.0.2.3", { aor: "busy@example.test" }, "tcp");
    busy.handle("MESSAGE", (i) => i.respond(503));
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" }, "tcp");
    bob.handle("MESSAGE", (i) => i.respond(200));
    bed.dns.set("example.test", [
      { protocol: "tcp", host: "192.0.2.50", port: 5060 }, // connection refused
      { protocol: "tcp", host: "192.0.2.3", port: 5060 }, // 503
      { protocol: "tcp", host: "192.0.2.2", port: 5060 },
    ]);
    const start = bed.clock.now();
    const { response, target } = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@example.test", { body: "x" })),
    );
    assert.equal(response.status, 200);
    assert.equal(target.host, "192.0.2.2");
    assert.equal(bed.clock.now() - start, 0, "no timer needed");
  });
});

Deno.test("UserAgent rejects with a local 408 when no target answers", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const err = await bed.run(
      alice.send(alice.createRequest("OPTIONS", "sip:nobody@192.0.2.77")),
    ).catch((e) => e);
    assert.ok(err instanceof SipRequestError);
    assert.equal(err.status, 408);
    assert.equal(err.local, true);
  });
});

Deno.test("UserAgent.send() with no target found rejects with a local 503", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    bed.dns.set("nowhere.test", []);
    const err = await alice.send(alice.createRequest("OPTIONS", "sip:x@nowhere.test")).catch((
      e,
    ) => e);
    assert.ok(err instanceof SipRequestError && err.local && err.status === 503);
  });
});

/** A redirect server: each request to `sip:<n>@host` gets 302 to `next(n)`. */
function redirecting(ua: UserAgent, next: (user: string) => string[]): string[] {
  const seen: string[] = [];
  ua.handle("MESSAGE", (i) => {
    const user = i.request.uri.user ?? "";
    seen.push(user);
    const contacts = next(user);
    if (contacts.length === 0) return i.respond(200);
    return i.respond(302, { headers: contacts.map((c) => ["Contact", c] as [string, string]) });
  });
  return seen;
}

Deno.test("UserAgent follows 3xx to the best Contact when asked", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const carol = await bed.ua("192.0.2.3", { aor: "carol@example.test" });
    bob.handle("MESSAGE", (i) =>
      i.respond(302, {
        headers: [
          ["Contact", "<sip:low@192.0.2.9>;q=0.1"],
          ["Contact", "<sip:carol@192.0.2.3?Subject=x>;q=0.9"],
          ["Contact", "<mailto:bob@example.test>"],
        ],
      }));
    const got: SipRequest[] = [];
    carol.handle("MESSAGE", (i) => (got.push(i.request), i.respond(200)));
    const redirects: string[] = [];
    const req = alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" });
    // Without the option the 302 is the answer.
    const plain = await bed.run(alice.send(req));
    assert.equal(plain.response.status, 302);
    const req2 = alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" });
    const { response, request } = await bed.run(
      alice.send(req2, {
        followRedirects: true,
        onRedirect: (from, to) => redirects.push(`${formatUri(from)} -> ${formatUri(to)}`),
      }),
    );
    assert.equal(response.status, 200);
    assert.deepEqual(redirects, ["sip:bob@192.0.2.2 -> sip:carol@192.0.2.3"]);
    assert.equal(formatUri(request.uri), "sip:carol@192.0.2.3");
    assert.equal(got.length, 1);
    assert.equal(formatUri(got[0].to.uri), "sip:bob@192.0.2.2", "To is kept (8.1.3.4)");
    assert.equal(got[0].cseq.seq, 2, "a new CSeq");
  });
});

Deno.test("UserAgent stops following redirects at the limit and at a loop", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const seen = redirecting(bob, (user) => [`<sip:${Number(user) + 1}@192.0.2.2>`]);
    const { response } = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:0@192.0.2.2", { body: "x" }), {
        followRedirects: true,
        maxRedirects: 3,
      }),
    );
    assert.equal(response.status, 302);
    assert.deepEqual(seen, ["0", "1", "2", "3"]);

    seen.length = 0;
    const loop = redirecting(
      bob,
      (user) => [user === "a" ? "<sip:b@192.0.2.2>" : "<sip:a@192.0.2.2>"],
    );
    const second = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:a@192.0.2.2", { body: "x" }), {
        followRedirects: true,
      }),
    );
    assert.equal(second.response.status, 302);
    assert.deepEqual(loop, ["a", "b"], "a URI already tried is not tried again");
  });
});

Deno.test("UserAgent sends through the outbound proxy with a loose Route", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      outboundProxy: "sip:192.0.2.9:5070",
    });
    const proxy = bed.net.transport({ host: "192.0.2.9", port: 5070 });
    bed.raws.push(proxy);
    const got: SipRequest[] = [];
    proxy.onMessage((m) => {
      const req = parseMessage(m.data) as SipRequest;
      got.push(req);
      // Answer like a proxy that relayed to Bob.
      const res = `SIP/2.0 200 OK\r\n${
        req.headers.fields.filter((f) => ["Via", "From", "To", "Call-ID", "CSeq"].includes(f.name))
          .map((f) => `${f.name}: ${f.value}${f.name === "To" ? ";tag=x" : ""}`).join("\r\n")
      }\r\nContent-Length: 0\r\n\r\n`;
      proxy.send(enc.encode(res), m.remote);
    });
    const { response, target } = await bed.run(
      alice.send(alice.createRequest("OPTIONS", "sip:bob@example.test")),
    );
    assert.equal(response.status, 200);
    assert.deepEqual([target.host, target.port], ["192.0.2.9", 5070]);
    assert.equal(formatUri(got[0].uri), "sip:bob@example.test");
    assert.deepEqual(got[0].headers.getAll("Route"), ["<sip:192.0.2.9:5070;lr>"]);
    assert.equal(got[0].headers.fields[0].name, "Via");
    // A request in a dialog keeps its own route set.
    assert.equal(alice.outboundProxy?.host, "192.0.2.9");
  });
});

Deno.test("UserAgent keeps the caller's Contact lines after its own", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const got: SipRequest[] = [];
    bob.handle("REGISTER", (i) => (got.push(i.request), i.respond(200)));
    const req = alice.createRequest("REGISTER", "sip:192.0.2.2", {
      headers: [["Contact", "<sip:alice@198.51.100.7:5060>;expires=0"]],
    });
    await bed.run(alice.send(req, { contact: true }));
    assert.deepEqual(got[0].headers.getAll("Contact"), [
      "sip:alice@192.0.2.1",
      "<sip:alice@198.51.100.7:5060>;expires=0",
    ]);
  });
});

Deno.test("UserAgent after close() refuses to send and stops its transactions", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const pending = alice.send(alice.createRequest("OPTIONS", "sip:x@192.0.2.77"));
    await bed.net.settled();
    await alice.close();
    const err = await pending.catch((e) => e);
    assert.ok(err instanceof SipRequestError && err.local, String(err));
    const again = await alice.send(alice.createRequest("OPTIONS", "sip:x@192.0.2.77")).catch((
      e,
    ) => e);
    assert.ok(again instanceof SipRequestError);
    assert.equal(bed.clock.pending, 0, "no timer left behind");
  });
});

Deno.test("UserAgent answers OPTIONS over the wire format a peer sends", async () => {
  await withBed(async (bed) => {
    await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const raw = bed.raw("192.0.2.99");
    await raw.t.send(options("sip:bob@192.0.2.2", "192.0.2.99", ["Accept: application/sdp"]), BOB);
    await bed.net.settled();
    const res = raw.got[0].msg as SipResponse;
    assert.equal(res.status, 200);
    // The response went back to the source (rport/received) and is well formed.
    assert.equal(formatMessage(res).length > 0, true);
    assert.equal(res.topVia.params.received, undefined);
  });
});

Deno.test("UserAgent answers 420 with Unsupported to a Require it does not know", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    await bed.ua("192.0.2.2", { aor: "bob@example.test", supported: ["eventlist", "path"] });
    const req = alice.createRequest("OPTIONS", "sip:bob@192.0.2.2", {
      headers: [["Require", "path, 100rel"], ["Require", "foo"]],
    });
    const { response } = await bed.run(alice.send(req));
    assert.equal(response.status, 420);
    assert.equal(response.headers.get("Unsupported"), "100rel, foo");
    const ok = alice.createRequest("OPTIONS", "sip:bob@192.0.2.2", {
      headers: [["Require", "PATH"]],
    });
    const second = await bed.run(alice.send(ok));
    assert.equal(second.response.status, 200);
    assert.equal(second.response.headers.get("Supported"), "eventlist, path");
  });
});

Deno.test("UserAgent returns a 3xx whose Contact cannot be parsed instead of following it", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test" });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bob.handle("MESSAGE", (i) => i.respond(302, { headers: [["Contact", "<sip:x@y"]] }));
    const { response } = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" }), {
        followRedirects: true,
      }),
    );
    assert.equal(response.status, 302);
  });
});

Deno.test("UserAgent answers 400 to a request whose To cannot be parsed, without calling handlers", async () => {
  await withBed(async (bed) => {
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    let called = 0;
    bob.handle("MESSAGE", () => void called++);
    const raw = bed.raw("192.0.2.99");
    // Built, not parsed: the header is only read (and found broken) by the UA.
    const req = createRequest("MESSAGE", "sip:bob@192.0.2.2", {
      headers: [
        ["Via", "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-lazy"],
        ["Max-Forwards", "70"],
        ["From", "<sip:probe@example.test>;tag=p1"],
        ["To", "<sip:bob@example.test"],
        ["Call-ID", "lazy-1"],
        ["CSeq", "1 MESSAGE"],
      ],
    });
    bob.transactions.receiveRequest(req, {
      remote: { host: "192.0.2.99", port: 5060 },
      local: { host: "192.0.2.2", port: 5060 },
      protocol: "udp",
      transport: bob.transports[0],
    });
    await bed.net.settled();
    assert.equal(raw.got.length, 1);
    assert.equal(raw.got[0].status, 400);
    assert.match(raw.got[0].text, /^SIP\/2\.0 400 Cannot parse To header/);
    assert.equal(called, 0);
  });
});

Deno.test("UserAgent sends a request with a preloaded Route set to its first hop", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      outboundProxy: "sip:192.0.2.8", // not used: the request has its own route set
    });
    const hop = bed.raw("192.0.2.9");
    const req = alice.createRequest("OPTIONS", "sip:bob@example.test", {
      headers: [["Route", "<sip:192.0.2.9;lr>"], ["Route", "<sip:192.0.2.10;lr>"]],
    });
    const pending = alice.send(req).catch((e) => e);
    await bed.net.settled();
    assert.equal(hop.got.length, 1, "the first Route got it");
    assert.match(hop.got[0].text, /^OPTIONS sip:bob@example\.test SIP\/2\.0\r\n/);
    assert.deepEqual(hop.got[0].msg?.headers.getAll("Route"), [
      "<sip:192.0.2.9;lr>",
      "<sip:192.0.2.10;lr>",
    ]);
    await alice.close();
    await pending;
  });
});

Deno.test("UserAgent locates servers with RFC 3263 (NAPTR, SRV) and fails over between SRV targets", async () => {
  await withBed(async (bed) => {
    const lookups: string[] = [];
    const lookup = staticDnsLookup({
      "example.test": {
        NAPTR: [{
          order: 10,
          preference: 10,
          flags: "s",
          services: "SIP+D2U",
          regexp: "",
          replacement: "_sip._udp.example.test",
        }],
      },
      "_sip._udp.example.test": {
        SRV: [
          { priority: 10, weight: 0, port: 5060, target: "dead.example.test" },
          { priority: 20, weight: 0, port: 5060, target: "bob.example.test" },
        ],
      },
      "dead.example.test": { A: ["192.0.2.50"] },
      "bob.example.test": { A: ["192.0.2.2"] },
      "nowhere.test": { A: new Error("NXDOMAIN") },
    }, lookups);
    const resolve = (uri: Uri, o: ResolveOptions) => resolveSipUri(uri, { ...o, lookup });
    const alice = await bed.ua("192.0.2.1", { aor: "alice@example.test", resolve });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    bob.handle("MESSAGE", (i) => i.respond(200));
    const { response, target } = await bed.run(
      alice.send(alice.createRequest("MESSAGE", "sip:bob@example.test", { body: "x" })),
    );
    assert.equal(response.status, 200);
    assert.equal(target.host, "192.0.2.2");
    assert.ok(lookups.includes("NAPTR example.test"), lookups.join(", "));
    const err = await alice.send(alice.createRequest("MESSAGE", "sip:x@nowhere.test")).catch((
      e,
    ) => e);
    assert.ok(err instanceof SipRequestError, String(err));
    assert.equal(err.status, 503);
    assert.equal(err.local, true);
  });
});

Deno.test("UserAgent answers every well-formed request exactly once (2000 generated requests)", async () => {
  await withBed(async (bed) => {
    const errors: string[] = [];
    const bob = await bed.ua("192.0.2.2", {
      aor: "bob@example.test",
      log: (level, m) => level === "error" && !m.includes("deliberate") && errors.push(m),
    });
    bob.handle("MESSAGE", (i) => i.respond(200));
    bob.handle("SUBSCRIBE", () => {
      throw new Error("deliberate");
    });
    bob.handle("INFO", async (i) => {
      await Promise.resolve();
      await i.respond(202);
    });
    bob.addDialog(
      { callId: "known", localTag: "bt", remoteTag: "at" },
      (i) => i.request.method === "ACK" ? undefined : i.respond(200),
    );
    const finals = new Map<string, number[]>();
    const peer = bed.net.transport({ host: "192.0.2.99" });
    bed.raws.push(peer);
    peer.onMessage((m) => {
      const r = reply(m.data);
      const branch = /branch=([^;\r\n]+)/.exec(r.text)?.[1] ?? "?";
      if (r.status >= 200) finals.set(branch, [...(finals.get(branch) ?? []), r.status]);
    });
    let a = 7;
    const rand = (n: number) => { // mulberry32
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    };
    const pick = <T>(a: T[]) => a[rand(a.length)];
    const expected: string[] = [];
    for (let n = 0; n < 2000; n++) {
      const method = pick([
        "OPTIONS",
        "INVITE",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "BYE",
        "CANCEL",
        "ACK",
        "FOO",
      ]);
      const scheme = pick(["sip", "sip", "sip", "sips", "tel", "urn"]);
      const uri = scheme === "tel"
        ? "tel:+15551234"
        : scheme === "urn"
        ? "urn:service:sos"
        : `${scheme}:bob@192.0.2.2`;
      const inDialog = rand(4) === 0;
      const known = inDialog && rand(2) === 0;
      const branch = `z9hG4bK-gen${n}`;
      const lines = [
        `${method} ${uri} SIP/2.0`,
        `Via: SIP/2.0/UDP 192.0.2.99:5060;branch=${branch}`,
        `Max-Forwards: ${rand(71)}`,
        `From: <sip:gen@example.test>;tag=${known ? "at" : "f" + n}`,
        `To: <sip:bob@example.test>${inDialog ? `;tag=${known ? "bt" : "x" + n}` : ""}`,
        `Call-ID: ${known ? "known" : "gen-" + n}`,
        `CSeq: ${1 + rand(1000)} ${method}`,
      ];
      if (rand(5) === 0) lines.push(`Require: ${pick(["eventlist", "100rel", "foo, bar"])}`);
      if (rand(3) === 0) lines.push(`Contact: <sip:gen@192.0.2.99:${5060 + rand(10)}>`);
      if (method !== "ACK") expected.push(branch);
      await peer.send(rawRequest(lines, rand(4) === 0 ? "body" : ""), BOB);
      if (n % 100 === 99) await bed.net.settled();
    }
    await bed.net.settled();
    for (let i = 0; i < 10; i++) await bed.net.settled();
    const missing = expected.filter((b) => !finals.has(b));
    assert.deepEqual(missing, [], "every request got a final response");
    const twice = [...finals].filter(([, s]) => s.length !== 1);
    assert.deepEqual(twice, [], "and only one");
    const statuses = new Set([...finals.values()].flat());
    for (const s of [200, 202, 405, 416, 420, 481, 500]) assert.ok(statuses.has(s), `saw ${s}`);
    assert.deepEqual(errors, []);
    bed.clock.advance(64_000);
  });
});

Deno.test("UserAgent sends cached credentials only to the next hop that asked for them", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", {
      aor: "alice@example.test",
      password: () => Promise.resolve("s3cret"),
    });
    const registrar = await bed.ua("192.0.2.5");
    const server = new DigestServer({ realm: "example.test" });
    const seen: SipRequest[] = [];
    registrar.handle("REGISTER", (i) => {
      seen.push(i.request);
      const v = server.verifyRequest(i.request, () => ({ password: "s3cret" }));
      return v.ok ? i.respond(200) : i.respond(401, { headers: server.challengeFields() });
    });
    const bob = await bed.ua("192.0.2.2", { aor: "bob@example.test" });
    const atBob: SipRequest[] = [];
    bob.handle("MESSAGE", (i) => (atBob.push(i.request), i.respond(200)));

    const reg = () => alice.createRequest("REGISTER", "sip:192.0.2.5");
    assert.equal((await bed.run(alice.send(reg()))).response.status, 200);
    assert.equal(seen.length, 2);
    // A MESSAGE straight to Bob: no credentials of the registrar's realm.
    await bed.run(alice.send(alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "x" })));
    assert.equal(atBob[0].headers.has("Authorization"), false);
    // The registrar still gets them up front.
    assert.equal((await bed.run(alice.send(reg()))).response.status, 200);
    assert.equal(seen.length, 3);
    assert.ok(seen[2].headers.has("Authorization"));
  });
});
