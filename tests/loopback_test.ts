/**
 * Two sipkit stacks (UserAgents) talking over real UDP and TCP sockets on
 * 127.0.0.1 (and ::1 when the host has it), with the system clock.
 */

import assert from "node:assert/strict";
import { DigestServer } from "../lib/sip/digest.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import { formatUri, type SipRequest } from "../lib/sip/message.ts";
import { Registration } from "../lib/sip/registration.ts";
import type { InboundInfo } from "../lib/sip/transaction/mod.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { isPortBound } from "./peers/require.ts";

/** A TCP port nothing listens on: privileged, so no test picks it; checked free. */
function closedTcpPort(): number {
  for (let port = 1; port < 1024; port++) if (!isPortBound("tcp", port)) return port;
  throw new Error("no closed TCP port below 1024");
}

async function pair(
  fn: (alice: UserAgent, bob: UserAgent, bobUri: (user?: string) => string) => Promise<void>,
  options: { host?: string; transport?: "udp" | "tcp" } = {},
): Promise<void> {
  const host = options.host ?? "127.0.0.1";
  const ref = host.includes(":") ? `[${host}]` : host;
  const alice = await UserAgent.create({
    aor: "alice@example.test",
    bind: `${ref}:0`,
    transport: options.transport,
    password: () => Promise.resolve("alice-pw"),
  });
  let bob: UserAgent | undefined;
  try {
    bob = await UserAgent.create({ aor: "bob@example.test", bind: `${ref}:0` });
    const port = bob.transports[0].local.port;
    await fn(alice, bob, (user = "bob") => `sip:${user}@${ref}:${port}`);
  } finally {
    await alice.close();
    await bob?.close();
  }
}

/** Collects requests of one method at `ua` and answers them 200. */
function sink(ua: UserAgent, method: string): { req: SipRequest; info: InboundInfo }[] {
  const got: { req: SipRequest; info: InboundInfo }[] = [];
  ua.handle(method, (i) => {
    got.push({ req: i.request, info: i.info });
    return i.respond(200);
  });
  return got;
}

function hasIpv6Loopback(): boolean {
  try {
    const l = Deno.listen({ hostname: "::1", port: 0 });
    l.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("loopback UDP: OPTIONS and MESSAGE between two stacks", async () => {
  await pair(async (alice, bob, uri) => {
    const got = sink(bob, "MESSAGE");
    const opt = await alice.send(alice.createRequest("OPTIONS", uri()));
    assert.equal(opt.response.status, 200);
    assert.equal(opt.target.protocol, "udp");
    assert.match(opt.response.headers.get("Allow") ?? "", /MESSAGE/);
    const msg = await alice.send(
      alice.createRequest("MESSAGE", uri(), { body: "héllo", contentType: "text/plain" }),
    );
    assert.equal(msg.response.status, 200);
    assert.equal(new TextDecoder().decode(got[0].req.body), "héllo");
    assert.equal(got[0].info.protocol, "udp");
    // RFC 3581: Bob saw our source port in rport (in the answer to the
    // first request; the next one leaves rport out, nothing NATs us).
    assert.equal(
      opt.response.topVia.params.rport,
      String(alice.transports[0].local.port),
    );
    assert.equal(got[0].req.topVia.params.rport, undefined);
  });
});

Deno.test("loopback TCP: requests go over TCP with transport=tcp in Contact", async () => {
  await pair(async (alice, bob, uri) => {
    const got = sink(bob, "SUBSCRIBE");
    const res = await alice.send(
      alice.createRequest("SUBSCRIBE", uri(), { headers: [["Event", "presence"]] }),
    );
    assert.equal(res.response.status, 200);
    assert.equal(res.target.protocol, "tcp");
    assert.equal(got[0].info.protocol, "tcp");
    assert.equal(got[0].req.topVia.transport, "TCP");
    assert.equal(got[0].req.contact[0].uri.params.transport, "tcp");
    // Bob's answer OPTIONS over TCP carries a TCP contact too.
    const opt = await alice.send(alice.createRequest("OPTIONS", uri()));
    assert.equal(opt.response.contact[0].uri.params.transport, "tcp");
  }, { transport: "tcp" });
});

Deno.test("loopback: a request over 1300 bytes meant for UDP goes over TCP (RFC 3261 18.1.1)", async () => {
  await pair(async (alice, bob, uri) => {
    const got = sink(bob, "MESSAGE");
    const body = "x".repeat(4000);
    const res = await alice.send(alice.createRequest("MESSAGE", uri(), { body }));
    assert.equal(res.response.status, 200);
    assert.equal(got[0].info.protocol, "tcp");
    assert.equal(got[0].req.body.length, 4000);
  });
});

Deno.test("loopback: digest REGISTER, query and removal over real sockets", async () => {
  await pair(async (alice, bob, uri) => {
    const server = new DigestServer({ realm: "example.test" });
    const bound = new Map<string, number>();
    bob.handle("REGISTER", (i) => {
      const v = server.verifyRequest(
        i.request,
        (u) => (u === "alice" ? { password: "alice-pw" } : undefined),
      );
      if (!v.ok) return i.respond(401, { headers: server.challengeFields() });
      for (const c of i.request.contact) {
        const e = Number(c.params.expires ?? i.request.expires ?? 3600);
        if (e === 0) bound.delete(formatUri(c.uri));
        else bound.set(formatUri(c.uri), e);
      }
      return i.respond(200, {
        headers: [...bound].map(([c, e]) => ["Contact", `<${c}>;expires=${e}`] as [string, string]),
      });
    });
    const reg = new Registration(alice, {
      registrar: uri("").replace("sip:@", "sip:"),
      expires: 300,
    });
    assert.equal(await reg.register(), 300);
    const contact = `sip:alice@127.0.0.1:${alice.transports[0].local.port}`;
    assert.deepEqual([...bound.keys()], [contact]);
    assert.deepEqual(await reg.query(), [{ contact, expires: 300, q: undefined }]);
    await reg.unregister();
    assert.equal(bound.size, 0);
  });
});

Deno.test("loopback: a refused TCP connection is a local 503 at once", async () => {
  const alice = await UserAgent.create({ aor: "alice@example.test", bind: "127.0.0.1:0" });
  try {
    const port = closedTcpPort();
    const started = Date.now();
    const err = await alice.send(
      alice.createRequest("REGISTER", `sip:127.0.0.1:${port};transport=tcp`),
    ).catch((e) => e);
    assert.ok(err instanceof SipRequestError, String(err));
    assert.equal(err.status, 503);
    assert.equal(err.local, true);
    assert.ok(Date.now() - started < 5000);
  } finally {
    await alice.close();
  }
});

Deno.test({
  name: "loopback IPv6: OPTIONS over UDP and TCP on ::1",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    for (const transport of ["udp", "tcp"] as const) {
      await pair(async (alice, _bob, uri) => {
        const res = await alice.send(alice.createRequest("OPTIONS", uri()));
        assert.equal(res.response.status, 200);
        assert.equal(res.target.protocol, transport);
        assert.equal(res.response.contact[0].uri.host, "::1");
      }, { host: "::1", transport });
    }
  },
});

Deno.test("UserAgent.create on an ephemeral port picks another when TCP finds UDP's port taken", async () => {
  // The UDP socket picks the port and TCP follows; when another program holds
  // that TCP port, the UA tries again instead of failing to start.
  const listen = Deno.listen;
  let refused = 0;
  Object.assign(Deno, {
    listen: (options: Deno.TcpListenOptions) => {
      if (refused++ < 2) throw new Deno.errors.AddrInUse("Address already in use");
      return listen(options);
    },
  });
  let ua: UserAgent | undefined;
  try {
    ua = await UserAgent.create({ aor: "alice@example.test", bind: "127.0.0.1:0" });
  } finally {
    Object.assign(Deno, { listen });
  }
  try {
    assert.equal(refused, 3);
    const [udp, tcp] = ua.transports;
    assert.equal(udp.protocol, "udp");
    assert.equal(tcp.protocol, "tcp");
    assert.equal(tcp.local.port, udp.local.port);
  } finally {
    await ua.close();
  }
  // An explicit port that is taken is an error at once.
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await assert.rejects(
      UserAgent.create({ bind: `127.0.0.1:${(taken.addr as Deno.NetAddr).port}` }),
      Deno.errors.AddrInUse,
    );
  } finally {
    taken.close();
  }
});

Deno.test({
  name:
    "loopback: with the default bind one stack reaches IPv4 and IPv6 peers over UDP and TCP, Via and Contact in each peer's family",
  ignore: !hasIpv6Loopback(),
  fn: async () => {
    // No bind given: a dual-stack socket on [::] (this host allows it).
    const alice = await UserAgent.create({ aor: "alice@example.test" });
    const peers: UserAgent[] = [];
    try {
      assert.equal(alice.transports[0].local.host, "::");
      for (
        const [host, transport] of [
          ["127.0.0.1", "udp"],
          ["::1", "udp"],
          ["127.0.0.1", "tcp"],
          ["::1", "tcp"],
        ] as const
      ) {
        const ref = host.includes(":") ? `[${host}]` : host;
        const bob = await UserAgent.create({ aor: "bob@example.test", bind: `${ref}:0` });
        peers.push(bob);
        const got = sink(bob, "SUBSCRIBE");
        const port = bob.transports[0].local.port;
        const uri = `sip:bob@${ref}:${port};transport=${transport}`;
        const req = alice.createRequest("SUBSCRIBE", uri, { headers: [["Event", "presence"]] });
        const { response } = await alice.send(req);
        assert.equal(response.status, 200, `${transport} to ${host}`);
        const seen = got[0].req;
        // Via sent-by and Contact name an address of the peer's family, the bound port.
        assert.equal(seen.topVia.host, host, `${transport} Via to ${host}`);
        assert.equal(seen.contact[0].uri.host, host, `${transport} Contact to ${host}`);
        assert.equal(seen.contact[0].uri.port, alice.transports[0].local.port);
        // The peer saw the request come from that family (an IPv4 source is unmapped).
        assert.equal(got[0].info.remote.host, host);
      }
    } finally {
      await alice.close();
      for (const p of peers) await p.close();
    }
  },
});
