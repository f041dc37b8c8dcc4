import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { DigestServer } from "../lib/sip/digest.ts";
import { formatUri, type SipRequest } from "../lib/sip/message.ts";
import {
  readBindings,
  refreshDelay,
  Registration,
  RegistrationError,
  type RegistrationEvent,
  type RegistrationOptions,
} from "../lib/sip/registration.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { type IncomingRequest, UserAgent } from "../lib/sip/ua.ts";

/** A registrar (RFC 3261 section 10.3) small enough to read, on the loop network. */
class TestRegistrar {
  readonly requests: SipRequest[] = [];
  readonly bindings = new Map<string, number>(); // contact -> absolute expiry (ms)
  minExpires?: number;
  /** Answer every REGISTER with this status instead (e.g. 500, 403). */
  failWith?: number;
  /** Drop REGISTERs silently (the client times out). */
  silent = false;
  auth?: DigestServer;

  constructor(readonly ua: UserAgent, readonly clock: ManualClock) {
    ua.handle("REGISTER", (i) => this.#register(i));
  }

  get contacts(): string[] {
    return [...this.bindings.keys()].sort();
  }

  #register(i: IncomingRequest): Promise<void> | void {
    const req = i.request;
    this.requests.push(req);
    if (this.silent) return;
    if (this.failWith) return i.respond(this.failWith);
    if (this.auth) {
      const v = this.auth.verifyRequest(
        req,
        (u) => (u === "alice" ? { password: "pw" } : undefined),
      );
      if (!v.ok) return i.respond(401, { headers: this.auth.challengeFields({ stale: v.stale }) });
    }
    const now = this.clock.now();
    const headerExpires = req.expires ?? 3600;
    const contacts = req.contact;
    if (contacts.length === 1 && contacts[0].uri.scheme === "*") {
      // 10.3 step 6: "*" with Expires 0 removes every binding.
      this.bindings.clear();
    } else {
      for (const c of contacts) {
        const e = c.params.expires != null ? Number(c.params.expires) : headerExpires;
        if (e > 0 && this.minExpires !== undefined && e < this.minExpires) {
          return i.respond(423, { headers: [["Min-Expires", String(this.minExpires)]] });
        }
      }
      for (const c of contacts) {
        const e = c.params.expires != null ? Number(c.params.expires) : headerExpires;
        const key = formatUri(c.uri);
        if (e === 0) this.bindings.delete(key);
        else this.bindings.set(key, now + e * 1000);
      }
    }
    const lines: [string, string][] = [];
    for (const [contact, until] of this.bindings) {
      lines.push(["Contact", `<${contact}>;expires=${Math.round((until - now) / 1000)}`]);
    }
    return i.respond(200, { headers: lines });
  }
}

interface Bed {
  clock: ManualClock;
  net: LoopNetwork;
  alice: UserAgent;
  registrar: TestRegistrar;
  events: RegistrationEvent[];
  reg: Registration;
  /** Runs the network and the clock until `p` settles. */
  run<T>(p: Promise<T>, stepMs?: number): Promise<T>;
  /** Moves the clock, letting the network run at each step. */
  advance(ms: number, stepMs?: number): Promise<void>;
}

async function withRegistrar(
  options: RegistrationOptions,
  fn: (bed: Bed) => Promise<void>,
  setup: (r: TestRegistrar) => void = () => {},
): Promise<void> {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const resolve = (uri: { host: string; port?: number }) =>
    Promise.resolve([{ protocol: "udp" as const, host: uri.host, port: uri.port ?? 5060 }]);
  const alice = await UserAgent.create({
    aor: "alice@example.test",
    transports: [net.transport({ host: "192.0.2.1" })],
    clock,
    resolve,
    password: () => Promise.resolve("pw"),
  });
  const server = await UserAgent.create({
    transports: [net.transport({ host: "192.0.2.5" })],
    clock,
    resolve,
  });
  const registrar = new TestRegistrar(server, clock);
  setup(registrar);
  const events: RegistrationEvent[] = [];
  const reg = new Registration(alice, {
    registrar: "sip:192.0.2.5",
    random: () => 1,
    ...options,
    onEvent: (e) => events.push(e),
  });
  const advance = async (ms: number, stepMs = 1000) => {
    for (let t = 0; t < ms; t += stepMs) {
      await net.settled();
      clock.advance(Math.min(stepMs, ms - t));
    }
    await net.settled();
  };
  const run = async <T>(p: Promise<T>, stepMs = 500): Promise<T> => {
    let done = false;
    p.then(() => (done = true), () => (done = true));
    for (let i = 0; i < 2000 && !done; i++) {
      await net.settled();
      if (!done) clock.advance(stepMs);
    }
    return await p;
  };
  try {
    await fn({ clock, net, alice, registrar, events, reg, run, advance });
  } finally {
    reg.stop();
    await alice.close();
    await server.close();
  }
}

const CONTACT = "sip:alice@192.0.2.1";

Deno.test("Registration.register() binds our contact and reports it", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, events, run }) => {
    const granted = await run(reg.register());
    assert.equal(granted, 600);
    assert.equal(reg.registered, true);
    assert.equal(reg.contact, CONTACT);
    assert.deepEqual(registrar.contacts, [CONTACT]);
    const req = registrar.requests[0];
    assert.equal(formatUri(req.uri), "sip:192.0.2.5");
    assert.equal(formatUri(req.to.uri), "sip:alice@example.test");
    assert.equal(formatUri(req.from.uri), "sip:alice@example.test");
    assert.equal(req.expires, 600);
    assert.deepEqual(events, [{
      type: "registered",
      refreshed: false,
      aor: "sip:alice@example.test",
      contact: CONTACT,
      expires: 600,
      registrar: "sip:192.0.2.5",
      bindings: [{ contact: CONTACT, expires: 600, q: undefined }],
      replaced: undefined,
    }]);
  });
});

Deno.test("Registration refreshes 60 s before expiry, same Call-ID, rising CSeq", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, events, advance }) => {
    reg.keepAlive();
    await advance(0);
    assert.equal(registrar.requests.length, 1);
    await advance(539_000);
    assert.equal(registrar.requests.length, 1, "no refresh before 540 s");
    await advance(1000);
    assert.equal(registrar.requests.length, 2, "refresh at 540 s");
    const [a, b] = registrar.requests;
    assert.equal(a.callId, b.callId);
    assert.equal(b.cseq.seq, a.cseq.seq + 1);
    assert.equal(events.at(-1)?.type, "registered");
    assert.equal((events.at(-1) as { refreshed: boolean }).refreshed, true);
    // The binding never lapsed.
    assert.deepEqual(registrar.contacts, [CONTACT]);
  });
});

Deno.test("Registration refreshes a short binding at half its lifetime", async () => {
  await withRegistrar({ expires: 100 }, async ({ reg, registrar, advance }) => {
    reg.keepAlive();
    await advance(49_000);
    assert.equal(registrar.requests.length, 1);
    await advance(1000);
    assert.equal(registrar.requests.length, 2);
  });
  assert.equal(refreshDelay(3600), 3540);
  assert.equal(refreshDelay(60), 30);
  assert.equal(refreshDelay(0), 1, "never a tight loop");
});

Deno.test("Registration retries a 423 with the registrar's Min-Expires", async () => {
  await withRegistrar({ expires: 30 }, async ({ reg, registrar, run }) => {
    const granted = await run(reg.register());
    assert.equal(granted, 120);
    assert.equal(reg.expires, 120);
    assert.deepEqual(registrar.requests.map((r) => r.expires), [30, 120]);
    assert.deepEqual(registrar.contacts, [CONTACT]);
  }, (r) => (r.minExpires = 120));
});

Deno.test("Registration gives up on a 423 without a usable Min-Expires", async () => {
  await withRegistrar({ expires: 30 }, async ({ reg, registrar, run }) => {
    registrar.ua.handle("REGISTER", (i) => i.respond(423));
    const err = await run(reg.register()).catch((e) => e);
    assert.ok(err instanceof RegistrationError);
    assert.equal(err.status, 423);
    assert.equal(err.local, false);
  });
});

Deno.test("Registration backs off after failures, doubling up to the maximum", async () => {
  await withRegistrar(
    { expires: 600, backoffBase: 30, backoffMax: 200 },
    async ({ reg, registrar, events, advance }) => {
      reg.keepAlive();
      await advance(0);
      const failures = () => events.filter((e) => e.type === "failed");
      assert.equal(failures().length, 1);
      // 30, 60, 120, then capped at 200.
      await advance(30_000);
      await advance(60_000);
      await advance(120_000);
      await advance(200_000);
      const retries = failures().map((e) => (e as { retryIn?: number }).retryIn);
      assert.deepEqual(retries, [30, 60, 120, 200, 200]);
      assert.equal((failures()[0] as { status: number }).status, 500);
      assert.equal(reg.registered, false);
      // The registrar comes back: registered again, and the back-off starts over.
      registrar.failWith = undefined;
      await advance(200_000);
      assert.equal(events.at(-1)?.type, "registered");
      assert.equal(reg.registered, true);
      registrar.failWith = 503;
      await advance(540_000);
      assert.equal((events.at(-1) as { retryIn?: number }).retryIn, 30);
    },
    (r) => (r.failWith = 500),
  );
});

Deno.test("Registration back-off has jitter between 50% and 100%", async () => {
  await withRegistrar(
    { expires: 600, backoffBase: 100, random: () => 0 },
    async ({ reg, events, advance }) => {
      reg.keepAlive();
      await advance(0);
      assert.equal((events[0] as { retryIn?: number }).retryIn, 50);
    },
    (r) => (r.failWith = 500),
  );
});

Deno.test("Registration reports a timeout as a local failure", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, run }) => {
    const err = await run(reg.register()).catch((e) => e);
    assert.ok(err instanceof RegistrationError);
    assert.equal(err.status, 408);
    assert.equal(err.local, true);
  }, (r) => (r.silent = true));
});

Deno.test("Registration answers digest challenges; the next REGISTER's CSeq is above the retry", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, run, clock }) => {
    registrar.auth = new DigestServer({ realm: "example.test", clock });
    await run(reg.register());
    assert.deepEqual(registrar.contacts, [CONTACT]);
    assert.deepEqual(registrar.requests.map((r) => r.cseq.seq), [1, 2]);
    await run(reg.register());
    assert.deepEqual(registrar.requests.map((r) => r.cseq.seq), [1, 2, 3]);
    assert.ok(registrar.requests[2].headers.has("Authorization"), "pre-authenticated refresh");
  });
});

Deno.test("Registration.changeAddress() adds the new contact and removes the old in one REGISTER", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, events, run, alice, advance }) => {
    reg.keepAlive();
    await advance(0);
    assert.deepEqual(registrar.contacts, [CONTACT]);
    const before = registrar.requests.length;
    await run(reg.changeAddress("198.51.100.7"));
    assert.equal(registrar.requests.length, before + 1, "one REGISTER");
    const req = registrar.requests.at(-1)!;
    assert.deepEqual(req.headers.getAll("Contact"), [
      "sip:alice@198.51.100.7",
      `<${CONTACT}>;expires=0`,
    ]);
    assert.deepEqual(registrar.contacts, ["sip:alice@198.51.100.7"]);
    assert.equal(reg.contact, "sip:alice@198.51.100.7");
    assert.equal(alice.advertisedHost, "198.51.100.7");
    const last = events.at(-1) as Extract<RegistrationEvent, { type: "registered" }>;
    assert.equal(last.refreshed, false, "a new contact is no refresh");
    assert.deepEqual(last.replaced, [CONTACT]);
  });
});

Deno.test("Registration.changeAddress() that fails removes the old contact on the retry", async () => {
  await withRegistrar(
    { expires: 600, backoffBase: 10 },
    async ({ reg, registrar, events, run, advance }) => {
      await run(reg.register());
      reg.keepAlive(); // refresh now
      await advance(0);
      registrar.failWith = 500;
      await run(reg.changeAddress("198.51.100.7")).catch(() => {});
      assert.equal(events.at(-1)?.type, "failed");
      assert.deepEqual(registrar.contacts, [CONTACT], "nothing changed yet");
      registrar.failWith = undefined;
      await advance(10_000);
      assert.deepEqual(registrar.contacts, ["sip:alice@198.51.100.7"]);
    },
  );
});

Deno.test("Registration.unregister() removes our binding, or all with Contact: *", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, events, run, clock }) => {
    registrar.bindings.set("sip:alice@203.0.113.9:5060", clock.now() + 600_000);
    await run(reg.register());
    assert.equal(registrar.contacts.length, 2);
    await run(reg.unregister());
    assert.deepEqual(registrar.contacts, ["sip:alice@203.0.113.9:5060"]);
    let req = registrar.requests.at(-1)!;
    assert.equal(req.expires, 0);
    assert.deepEqual(req.headers.getAll("Contact"), [`<${CONTACT}>`]);
    assert.equal(reg.registered, false);
    assert.deepEqual(events.at(-1), {
      type: "unregistered",
      aor: "sip:alice@example.test",
      contact: CONTACT,
      registrar: "sip:192.0.2.5",
    });
    await run(reg.unregister({ all: true }));
    req = registrar.requests.at(-1)!;
    assert.deepEqual(req.headers.getAll("Contact"), ["*"]);
    assert.equal(req.expires, 0);
    assert.deepEqual(registrar.contacts, []);
    assert.equal((events.at(-1) as { contact: string }).contact, "*");
  });
});

Deno.test("Registration.unregister() stops the refresh timer", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, run, advance }) => {
    reg.keepAlive();
    await advance(0);
    await run(reg.unregister());
    const n = registrar.requests.length;
    await advance(3_600_000, 60_000);
    assert.equal(registrar.requests.length, n);
  });
});

Deno.test("Registration.query() lists the bindings without changing them", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, run, clock }) => {
    registrar.bindings.set("sip:alice@203.0.113.9:5060", clock.now() + 300_000);
    const bindings = await run(reg.query());
    assert.deepEqual(bindings, [{
      contact: "sip:alice@203.0.113.9:5060",
      expires: 300,
      q: undefined,
    }]);
    const req = registrar.requests[0];
    assert.equal(req.headers.has("Contact"), false, "a query has no Contact (10.2.3)");
    assert.equal(req.headers.has("Expires"), false);
    assert.equal(reg.registered, false);
  });
});

Deno.test("Registration with a third-party contact registers that contact", async () => {
  await withRegistrar(
    { expires: 600, contact: "sip:alice@203.0.113.5:5080;transport=tcp" },
    async ({ reg, registrar, run }) => {
      await run(reg.register());
      assert.deepEqual(registrar.contacts, ["sip:alice@203.0.113.5:5080;transport=tcp"]);
      // An address change of ours does not move it.
      await run(reg.changeAddress("198.51.100.7"));
      assert.deepEqual(registrar.contacts, ["sip:alice@203.0.113.5:5080;transport=tcp"]);
    },
  );
});

Deno.test("Registration reports a rejected password as a 401 failure", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, run, clock }) => {
    registrar.auth = new DigestServer({ realm: "example.test", clock });
    registrar.ua.handle(
      "REGISTER",
      (i) => i.respond(401, { headers: registrar.auth!.challengeFields() }),
    );
    const err = await run(reg.register()).catch((e) => e);
    assert.ok(err instanceof RegistrationError);
    assert.equal(err.status, 401);
    assert.equal(err.local, false);
    assert.match(err.message, /rejected/);
  });
});

Deno.test("readBindings() takes expires from the parameter, else from the header", () => {
  const res = {
    contact: [
      { uri: { scheme: "sip", host: "a", params: {}, headers: {} }, params: { expires: "30" } },
      { uri: { scheme: "sip", host: "b", params: {}, headers: {} }, params: { q: "0.5" } },
    ],
    expires: 90,
  };
  // deno-lint-ignore no-explicit-any
  assert.deepEqual(readBindings(res as any), [
    { contact: "sip:a", expires: 30, q: undefined },
    { contact: "sip:b", expires: 90, q: 0.5 },
  ]);
});

Deno.test("Registration.unregister({ contacts }) removes exactly those bindings, one event each", async () => {
  await withRegistrar({ expires: 600 }, async ({ reg, registrar, events, run, clock }) => {
    for (const c of ["sip:alice@203.0.113.1:5060", "sip:alice@203.0.113.2:5060", CONTACT]) {
      registrar.bindings.set(c, clock.now() + 600_000);
    }
    assert.equal(await reg.localContact(), CONTACT);
    await run(
      reg.unregister({ contacts: ["sip:alice@203.0.113.1:5060", "alice@203.0.113.2:5060"] }),
    );
    assert.deepEqual(registrar.contacts, [CONTACT]);
    const req = registrar.requests.at(-1)!;
    assert.deepEqual(req.headers.getAll("Contact"), [
      "<sip:alice@203.0.113.1:5060>",
      "<sip:alice@203.0.113.2:5060>",
    ]);
    assert.equal(req.expires, 0);
    assert.deepEqual(
      events.map((e) => e.type === "unregistered" ? e.contact : e.type),
      ["sip:alice@203.0.113.1:5060", "sip:alice@203.0.113.2:5060"],
    );
  });
});

Deno.test("Registration after a failed refresh still counts the binding until it expires", async () => {
  await withRegistrar(
    { expires: 100, backoffBase: 300 },
    async ({ reg, registrar, events, advance }) => {
      reg.keepAlive();
      await advance(0);
      registrar.failWith = 500;
      await advance(50_000); // the refresh fails
      assert.equal(events.at(-1)?.type, "failed");
      assert.equal(reg.registered, true, "the old binding is still there");
      await advance(51_000);
      assert.equal(reg.registered, false, "expired");
    },
  );
});

Deno.test("readBindings() gives no bindings for an unparsable Contact list or Expires", async () => {
  const { parseMessage } = await import("../lib/sip/message.ts");
  const res = parseMessage(
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n" +
      "To: <sip:a@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@1.2.3.4\r\n" +
      "Expires: soon\r\nContent-Length: 0\r\n\r\n",
  );
  // deno-lint-ignore no-explicit-any
  assert.deepEqual(readBindings(res as any), []);
});
