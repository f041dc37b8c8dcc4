// Self-tests of the test harness in tests/peers/: every helper is checked
// against the real Debian peers (kamailio, baresip, sipp, sipsak) with
// sipsak and sipp as independent clients, so that the sipkit tests built on
// the harness can trust it.

import assert from "node:assert/strict";
import {
  findBinary,
  freePort,
  freePortRange,
  isPortBound,
  isPortBoundBy,
  requirePeer,
  waitFor,
} from "./peers/require.ts";
import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";
import {
  escapeDbText,
  type Kamailio,
  type KamailioMode,
  kamailioPresenceModule,
  rlsServicesDocument,
  startKamailio,
  startKamailioPair,
} from "./peers/kamailio.ts";
import { parseElapsed, parseStatCsv, runSipp, type SippResult, startSipp } from "./peers/sipp.ts";
import { sipsakMessage, sipsakRegister } from "./peers/sipsak.ts";
import {
  type Baresip,
  type BaresipOptions,
  encodeNetstring,
  NetstringDecoder,
  parseContacts,
  parseMessages,
  parseSipTrace,
  startBaresip,
} from "./peers/baresip.ts";
import { sipOptionsPing } from "./peers/sip_probe.ts";
import { longestGap, parsePcap } from "./peers/capture.ts";

const hasKamailio = requirePeer("kamailio", "kamailio");
const hasPresence = requirePeer("kamailio", "kamailio-presence-modules", {
  file: kamailioPresenceModule(),
});
const hasSipp = requirePeer("sipp", "sip-tester");
const hasSipsak = requirePeer("sipsak", "sipsak");
const hasBaresip = requirePeer("baresip", "baresip");

/**
 * Registers `<sip:user@contact>` for `user@domain` by sipp at `registrar`, a Kamailio in proxy
 * mode (REGISTER is accepted without a challenge); sipp must succeed.
 */
async function registerContact(
  registrar: string,
  user: string,
  domain: string,
  contact: string,
): Promise<void> {
  const reg = await runSipp({
    scenario: "register_uac.xml",
    remote: registrar,
    calls: 1,
    keys: { user, domain, expires: 120, contact: `<sip:${user}@${contact}>` },
    timeout: 10,
  });
  assert.equal(reg.code, 0, reg.errors);
}

/** Publishes an open status with `note` for `user@domain` by sipp at `server`; sipp must succeed. */
async function publishOpen(server: string, user: string, domain: string, note: string) {
  const pub = await runSipp({
    scenario: "publish_uac.xml",
    remote: server,
    calls: 1,
    keys: { user, domain, expires: 120, basic: "open", note },
    timeout: 10,
  });
  assert.equal(pub.code, 0, pub.errors);
}

/** alice@`domain` subscribes by sipp through `server` to bob's presence (messages traced). */
function aliceWatchesBob(server: string, domain: string): Promise<SippResult> {
  return runSipp({
    scenario: "subscribe_uac.xml",
    remote: server,
    service: "bob",
    calls: 1,
    keys: { user: "alice", domain, expires: 60 },
    timeout: 10,
    traceMessages: true,
  });
}

// ---------------------------------------------------------------- pure helpers

Deno.test("requirePeer() skips a missing peer outside CI and runs it under CI", () => {
  const saved = Deno.env.get("CI");
  try {
    Deno.env.delete("CI");
    assert.equal(requirePeer("sipkit-no-such-binary", "sipkit-no-such-package"), false);
    Deno.env.set("CI", "true");
    assert.equal(requirePeer("sipkit-no-such-binary", "sipkit-no-such-package"), true);
    assert.equal(requirePeer("sh", "dash"), true);
    Deno.env.delete("CI");
    assert.equal(requirePeer("sh", "dash", { file: "/nonexistent/file" }), false);
  } finally {
    if (saved === undefined) Deno.env.delete("CI");
    else Deno.env.set("CI", saved);
  }
});

Deno.test("findBinary() finds sh in PATH and not a made-up name", () => {
  assert.match(findBinary("sh") ?? "", /\/sh$/);
  assert.equal(findBinary("sipkit-no-such-binary"), undefined);
});

Deno.test("freePort() returns a port free for UDP and TCP, never 5060", () => {
  const port = freePort();
  assert.notEqual(port, 5060);
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
  const tcp = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port });
  try {
    assert.equal(isPortBound("udp", port), true);
    assert.equal(isPortBound("tcp", port), true);
  } finally {
    udp.close();
    tcp.close();
  }
  // Other tests run in parallel and may take the port at once: only our own socket must be gone.
  assert.equal(isPortBoundBy(Deno.pid, "tcp", port), false);
});

Deno.test("freePortRange() returns consecutive free ports", () => {
  const base = freePortRange(2);
  const a = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: base });
  const b = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: base + 1 });
  a.close();
  b.close();
});

Deno.test("waitFor() returns the first truthy value and times out with the message", async () => {
  let n = 0;
  assert.equal(await waitFor(() => ++n >= 3 && n, { interval: 1 }), 3);
  await assert.rejects(
    waitFor(() => false, { timeout: 30, interval: 5, message: "nothing" }),
    /Timed out after 30 ms waiting for nothing/,
  );
});

Deno.test("NetstringDecoder reassembles netstrings split across chunks", () => {
  const bytes = new Uint8Array([
    ...encodeNetstring('{"a":1}'),
    ...encodeNetstring("ü"),
    ...encodeNetstring(""),
  ]);
  const decoder = new NetstringDecoder();
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 3) out.push(...decoder.push(bytes.subarray(i, i + 3)));
  assert.deepEqual(out, ['{"a":1}', "ü", ""]);
  assert.throws(() => new NetstringDecoder().push(new TextEncoder().encode("2:ab;")), SyntaxError);
});

Deno.test("parseStatCsv() and parseElapsed() read sipp's statistics", () => {
  const csv = "A;SuccessfulCall(C);ElapsedTime(C);\n1;2;00:00:00:000000;\n2;7;00:01:02:500000;\n";
  const stats = parseStatCsv(csv);
  assert.equal(stats["SuccessfulCall(C)"], "7");
  assert.equal(parseElapsed(stats["ElapsedTime(C)"]), 62.5);
  assert.equal(parseElapsed("00:01:02"), 62);
  assert.deepEqual(parseStatCsv(""), {});
});

Deno.test("parseContacts() and parseMessages() read baresip's output", () => {
  const contacts = parseContacts(
    "\n--- Contacts (2) ---\n>     \x1b[32mOnline\x1b[;m Alice <sip:alice@example.test>\n" +
      "      \x1b[31mOffline\x1b[;m Carol <sip:carol@example.test>\n",
  );
  assert.deepEqual(contacts, [
    { current: true, status: "Online", name: "Alice", uri: "sip:alice@example.test" },
    { current: false, status: "Offline", name: "Carol", uri: "sip:carol@example.test" },
  ]);
  assert.deepEqual(parseMessages('x\nsip:alice@example.test: "hi: there"\n'), [
    { from: "sip:alice@example.test", body: "hi: there" },
  ]);
  // The print landed inside a line of baresip's own SIP trace (seen in CI).
  const interleaved = "\x1b[36;1m#\nUDP 127.0.0.1:41046 -> 127.0.0.1:" +
    '\rsip:alice@example.test: "hi bob, alice here"\n45680\nSIP/2.0 200 OK\n' +
    'Authorization: Digest username="bob", uri="sip:alice@example.test", response="ab"\n';
  assert.deepEqual(parseMessages(interleaved), [
    { from: "sip:alice@example.test", body: "hi bob, alice here" },
  ]);
});

Deno.test("parseSipTrace() splits baresip's -s trace into messages", () => {
  const trace = "\x1b[36;1m#\nUDP 127.0.0.1:1 -> 127.0.0.1:2\nMESSAGE sip:a@b SIP/2.0\n" +
    "Call-ID: c1\nCSeq: 3 MESSAGE\nContent-Length: 2\n\nhi\x1b[;m\n\x1b[36;1m#\n" +
    "UDP 127.0.0.1:2 -> 127.0.0.1:1\nSIP/2.0 200 OK\nCall-ID: c1\nCSeq: 3 MESSAGE\n\n\x1b[;m";
  const [request, response] = parseSipTrace(trace);
  assert.equal(request.method, "MESSAGE");
  assert.equal(request.body, "hi");
  assert.equal(response.status, 200);
  assert.equal(response.callId, "c1");
  assert.equal(response.cseqMethod, "MESSAGE");
});

Deno.test("parsePcap() reads UDP datagrams of cooked (v1, v2) captures; longestGap()", () => {
  /** A pcap file (microsecond stamps) of `frames` with link type `link`. */
  const pcap = (link: number, frames: { at: number; bytes: number[] }[]) => {
    const out: number[] = [];
    const u32 = (v: number) => out.push(v & 255, (v >> 8) & 255, (v >> 16) & 255, v >>> 24);
    u32(0xa1b2c3d4);
    out.push(2, 0, 4, 0);
    u32(0);
    u32(0);
    u32(262144);
    u32(link);
    for (const f of frames) {
      u32(Math.floor(f.at / 1000));
      u32(Math.round((f.at % 1000) * 1000));
      u32(f.bytes.length);
      u32(f.bytes.length);
      out.push(...f.bytes);
    }
    return new Uint8Array(out);
  };
  const ipv4Udp = (protocol = 17) => [
    ...[0x45, 0, 0, 32, 0, 0, 0, 0, 64, protocol, 0, 0],
    ...[10, 77, 1, 2, 10, 77, 0, 1],
    ...[0x13, 0xc4, 0x80, 0x1e, 0, 12, 0, 0], // 5060 -> 32798, length 12
    ...[1, 2, 3, 4],
  ];
  const sll = [0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
  const sll2 = [0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
  const v1 = parsePcap(pcap(113, [
    { at: 1_700_000_000_000.5, bytes: [...sll, ...ipv4Udp()] },
    { at: 1_700_000_000_020, bytes: [...sll, ...ipv4Udp(6)] }, // TCP: skipped
    { at: 1_700_000_000_090.25, bytes: [...sll, ...ipv4Udp()] },
  ]));
  assert.equal(v1.length, 2);
  const { payload, ...head } = v1[0];
  assert.deepEqual(head, {
    at: 1_700_000_000_000.5,
    src: "10.77.1.2",
    srcPort: 5060,
    dst: "10.77.0.1",
    dstPort: 32798,
  });
  assert.deepEqual([...payload], [1, 2, 3, 4]);
  const v2 = parsePcap(pcap(276, [{ at: 5, bytes: [...sll2, ...ipv4Udp()] }]));
  assert.deepEqual([v2[0].src, v2[0].dstPort], ["10.77.1.2", 32798]);
  assert.throws(() => parsePcap(new Uint8Array(24)), /magic/);
  assert.equal(longestGap(v1.map((d) => d.at)), 89.75);
  assert.equal(longestGap([30, 10, 20, 55]), 25);
  assert.equal(longestGap([1]), 0);
});

Deno.test("escapeDbText() and rlsServicesDocument() build db_text xcap rows", () => {
  assert.equal(escapeDbText("a:b\nc\\"), "a\\:b\\nc\\\\");
  const doc = rlsServicesDocument({
    owner: "carol",
    uri: "sip:friends@example.test",
    members: ["sip:alice@example.test"],
  });
  assert.match(doc, /<service uri="sip:friends@example.test"><list name="list">/);
  assert.match(doc, /<rl:entry uri="sip:alice@example.test"\/>/);
});

// ------------------------------------------------------------------- kamailio

Deno.test({
  name: "startKamailio() registrar answers OPTIONS on UDP and TCP of 127.0.0.1 only",
  ignore: !hasKamailio,
  fn: async () => {
    const k = await startKamailio({ mode: "registrar" });
    await withLogsOnFailure([k], async () => {
      try {
        assert.equal(await sipOptionsPing("127.0.0.1", k.port), 200);
        assert.equal(isPortBound("tcp", k.port), true);
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port: k.port });
        tcp.close();
        // Nothing on other addresses: the listen lines name 127.0.0.1 only.
        const udp = Deno.readTextFileSync("/proc/net/udp");
        const hex = k.port.toString(16).toUpperCase().padStart(4, "0");
        assert.ok(udp.includes(`0100007F:${hex}`));
        assert.ok(!udp.includes(`00000000:${hex}`));
      } finally {
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "Kamailio registrar challenges REGISTER, refuses a wrong password and a short expiry",
  ignore: !hasKamailio || !hasSipsak,
  fn: async () => {
    const k = await startKamailio({ mode: "registrar", minExpires: 60 });
    await withLogsOnFailure([k], async () => {
      try {
        const good = await sipsakRegister({
          user: "alice",
          password: "alice-secret",
          port: k.port,
        });
        assert.equal(good.code, 0, good.output);
        assert.ok(good.statuses.includes(401), "first REGISTER is challenged");
        assert.ok(good.statuses.includes(200));

        const bad = await sipsakRegister({ user: "alice", password: "wrong", port: k.port });
        assert.notEqual(bad.code, 0);
        assert.ok(bad.statuses.includes(403), bad.output);

        const brief = await sipsakRegister({
          user: "bob",
          password: "bob-secret",
          port: k.port,
          expires: 10,
        });
        assert.notEqual(brief.code, 0);
        assert.ok(brief.statuses.includes(423), brief.output);
        assert.match(k.logs(), /Thank you|Listening on/);
      } finally {
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "Kamailio registrar: sipp REGISTER with digest, query lists the binding, remove clears it",
  ignore: !hasKamailio || !hasSipp,
  fn: async () => {
    const k = await startKamailio({ mode: "registrar" });
    await withLogsOnFailure([k], async () => {
      try {
        const auth = { username: "alice", password: "alice-secret" };
        const common = { user: "alice", domain: "example.test" };
        const reg = await runSipp({
          scenario: "register_uac.xml",
          remote: k.address,
          calls: 1,
          auth,
          keys: { ...common, expires: 120, contact: "<sip:alice@127.0.0.1:5099>" },
          timeout: 10,
        });
        assert.equal(reg.code, 0, reg.errors || reg.output);
        assert.equal(reg.successful, 1);

        const second = await runSipp({
          scenario: "register_uac.xml",
          remote: k.address,
          calls: 1,
          auth,
          keys: { ...common, expires: 120, contact: "<sip:alice@127.0.0.1:5098>" },
          timeout: 10,
        });
        assert.equal(second.code, 0, second.errors);
        const query = await runSipp({
          scenario: "register_query_uac.xml",
          remote: k.address,
          calls: 1,
          auth,
          keys: common,
          timeout: 10,
          traceMessages: true,
        });
        assert.equal(query.code, 0, query.errors);
        const bindings = query.messages.split("SIP/2.0 200 OK").pop() ?? "";
        assert.match(bindings, /<sip:alice@127\.0\.0\.1:5099>;expires=/);
        assert.match(bindings, /<sip:alice@127\.0\.0\.1:5098>;expires=/);

        const remove = await runSipp({
          scenario: "register_uac.xml",
          remote: k.address,
          calls: 1,
          auth,
          keys: { ...common, expires: 0, contact: "*" },
          timeout: 10,
          traceMessages: true,
        });
        assert.equal(remove.code, 0, remove.errors);
        const removed = remove.messages.split("SIP/2.0 200 OK").pop() ?? "";
        assert.doesNotMatch(removed, /^Contact:/m);
      } finally {
        await k.stop();
      }
    });
  },
});

Deno.test({
  name:
    "Kamailio proxy forwards MESSAGE to a registered user and answers 404 for an unregistered one",
  ignore: !hasKamailio || !hasSipp || !hasSipsak,
  fn: async () => {
    const peers: HasLogs[] = [];
    const k = await startKamailio({ mode: "proxy" });
    peers.push(k);
    const uas = await startSipp({ scenario: "message_uas.xml", traceMessages: true });
    peers.push(uas);
    await withLogsOnFailure(peers, async () => {
      try {
        // Proxy mode: REGISTER is accepted without a challenge.
        await registerContact(k.address, "carol", "example.test", uas.address);

        const sent = await sipsakMessage({
          to: "sip:carol@example.test",
          from: "sip:alice@example.test",
          body: "hello carol",
          port: k.port,
        });
        assert.equal(sent.code, 0, sent.output);
        assert.ok(sent.statuses.includes(200));

        const offline = await sipsakMessage({
          to: "sip:dave@example.test",
          body: "anyone?",
          port: k.port,
        });
        assert.ok(offline.statuses.includes(404), offline.output);

        const result = await uas.stop();
        assert.equal(result.successful, 1);
        assert.match(result.messages, /hello carol/);
      } finally {
        await uas.stop();
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "Kamailio presence: PUBLISH then SUBSCRIBE gets a NOTIFY with the published PIDF",
  ignore: !hasPresence || !hasSipp,
  fn: async () => {
    const k = await startKamailio({ mode: "presence" });
    await withLogsOnFailure([k], async () => {
      try {
        await publishOpen(k.address, "bob", "example.test", "lunch");
        const sub = await aliceWatchesBob(k.address, "example.test");
        assert.equal(sub.code, 0, sub.errors);
        assert.match(sub.messages, /Subscription-State: active/);
        assert.match(sub.messages, /<basic>open<\/basic><\/status><note>lunch<\/note>/);
      } finally {
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "Kamailio rls serves an RFC 4662 list from the xcap table with RLMI and member PIDF",
  ignore: !hasPresence || !hasSipp,
  fn: async () => {
    const k = await startKamailio({
      mode: "presence",
      lists: [{
        owner: "dave",
        uri: "sip:team-dave@example.test",
        members: ["sip:bob@example.test"],
      }],
    });
    await withLogsOnFailure([k], async () => {
      try {
        await publishOpen(k.address, "bob", "example.test", "here");
        for (
          const [user, list, others] of [["alice", "buddies-alice", 1], [
            "dave",
            "team-dave",
            0,
          ]] as const
        ) {
          const sub = await runSipp({
            scenario: "subscribe_list_uac.xml",
            remote: k.address,
            service: list,
            calls: 1,
            keys: { user, domain: "example.test", expires: 60 },
            timeout: 15,
            traceMessages: true,
          });
          assert.equal(sub.code, 0, sub.errors);
          assert.match(sub.messages, /Require: eventlist/);
          assert.match(
            sub.messages,
            /Content-Type: multipart\/related;type="application\/rlmi\+xml"/,
          );
          assert.match(sub.messages, new RegExp(`<list uri="sip:${list}@example.test"`));
          assert.match(sub.messages, /<resource uri="sip:bob@example.test"/);
          assert.equal(/<resource uri="sip:carol@example.test"/.test(sub.messages), others === 1);
          // The back-end subscription brings bob's PIDF into a later NOTIFY.
          assert.match(sub.messages, /<basic>open<\/basic><\/status><note>here<\/note>/);
        }
        // A SUBSCRIBE for a list the watcher does not own goes to the presence server.
        const notMine = await runSipp({
          scenario: "subscribe_list_uac.xml",
          remote: k.address,
          service: "buddies-alice",
          calls: 1,
          keys: { user: "carol", domain: "example.test", expires: 60 },
          timeout: 15,
          traceMessages: true,
        });
        assert.doesNotMatch(notMine.messages, /Require: eventlist/);
        assert.doesNotMatch(notMine.messages, /Content-Type: multipart\/related/);
      } finally {
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "startKamailioPair() relays MESSAGE across two domains and serves each domain's users",
  ignore: !hasKamailio || !hasSipp || !hasSipsak,
  fn: async () => {
    const peers: HasLogs[] = [];
    const pair = await startKamailioPair({ mode: "proxy" });
    peers.push(pair.a, pair.b);
    const uas = await startSipp({ scenario: "message_uas.xml", traceMessages: true });
    peers.push(uas);
    await withLogsOnFailure(peers, async () => {
      try {
        assert.equal(pair.a.domain, "example.test");
        assert.equal(pair.b.domain, "example.org");
        await registerContact(pair.b.address, "carol", "example.org", uas.address);
        // Sent to example.test's proxy, for a user of example.org.
        const sent = await sipsakMessage({
          to: "sip:carol@example.org",
          from: "sip:alice@example.test",
          body: "across domains",
          port: pair.a.port,
        });
        assert.ok(sent.statuses.includes(200), sent.output);
        // example.org's own unregistered user, asked through example.test.
        const offline = await sipsakMessage({
          to: "sip:dave@example.org",
          body: "x",
          port: pair.a.port,
        });
        assert.ok(offline.statuses.includes(404), offline.output);
        // A domain nobody serves is refused without any DNS lookup.
        const unknown = await sipsakMessage({
          to: "sip:eve@example.net",
          body: "x",
          port: pair.a.port,
        });
        assert.ok(unknown.statuses.includes(404), unknown.output);
        const result = await uas.stop();
        assert.equal(result.successful, 1);
        assert.match(result.messages, /across domains/);
        assert.match(result.messages, /MESSAGE sip:carol@127\.0\.0\.1/);
      } finally {
        await uas.stop();
        await pair.stop();
      }
    });
  },
});

Deno.test({
  name:
    "startKamailioPair() in presence mode: SUBSCRIBE through the watcher's proxy reaches the other domain's presence server",
  ignore: !hasPresence || !hasSipp,
  fn: async () => {
    const pair = await startKamailioPair({ mode: "presence" });
    await withLogsOnFailure([pair.a, pair.b], async () => {
      try {
        await publishOpen(pair.b.address, "bob", "example.org", "org");
        // To bob@example.org, sent to example.test's proxy (the scenario uses one domain
        // for From and To, so the watcher is alice@example.org here).
        const sub = await aliceWatchesBob(pair.a.address, "example.org");
        assert.equal(sub.code, 0, sub.errors);
        assert.match(
          sub.messages,
          new RegExp(`Record-Route: <sip:127\\.0\\.0\\.1:${pair.a.port};lr`),
        );
        assert.match(sub.messages, /<note>org<\/note>/);
      } finally {
        await pair.stop();
      }
    });
  },
});

// ------------------------------------------------------------------------ sipp

Deno.test({
  name: "runSipp() MESSAGE flood UAC against the MESSAGE UAS counts every 200",
  ignore: !hasSipp,
  fn: async () => {
    const uas = await startSipp({ scenario: "message_uas.xml" });
    await withLogsOnFailure([uas], async () => {
      try {
        const flood = await runSipp({
          scenario: "message_uac.xml",
          remote: uas.address,
          service: "bob",
          rate: 500,
          calls: 200,
          timeout: 20,
        });
        assert.equal(flood.code, 0, flood.errors);
        assert.equal(flood.successful, 200);
        assert.equal(flood.failed, 0);
        assert.equal(flood.created, 200);
        // 200 calls at 500/s take about 0.4 s.
        assert.ok(flood.elapsed > 0.2 && flood.elapsed < 10, `elapsed ${flood.elapsed}`);
        assert.ok(flood.rate > 0);
        const served = await uas.stop();
        assert.equal(served.successful, 200);
      } finally {
        await uas.stop();
      }
    });
  },
});

Deno.test({
  name:
    "runSipp() OPTIONS ping succeeds against Kamailio over UDP and TCP and fails against a closed port",
  ignore: !hasSipp || !hasKamailio,
  fn: async () => {
    const k = await startKamailio({ mode: "proxy" });
    await withLogsOnFailure([k], async () => {
      try {
        const ok = await runSipp({
          scenario: "options_uac.xml",
          remote: k.address,
          calls: 1,
          timeout: 10,
        });
        assert.equal(ok.code, 0, ok.errors);
        assert.equal(ok.successful, 1);
        const tcp = await runSipp({
          scenario: "options_uac.xml",
          remote: k.address,
          transport: "t1",
          calls: 1,
          timeout: 10,
        });
        assert.equal(tcp.code, 0, tcp.errors);
        const none = await runSipp({
          scenario: "options_uac.xml",
          remote: `127.0.0.1:${freePort()}`,
          calls: 1,
          timeout: 3,
        });
        assert.notEqual(none.code, 0);
        assert.equal(none.successful, 0);
      } finally {
        await k.stop();
      }
    });
  },
});

// --------------------------------------------------------------------- baresip

/**
 * Runs `fn` with a Kamailio in `mode` and baresip as bob (with `options`) using it as its proxy;
 * `peers`, both and whatever `fn` adds, have their logs printed if `fn` fails. baresip and
 * Kamailio are stopped afterwards, whatever happens (also when baresip fails to start).
 */
async function withKamailioAndBob(
  mode: KamailioMode,
  options: BaresipOptions,
  fn: (k: Kamailio, b: Baresip, peers: HasLogs[]) => Promise<void>,
): Promise<void> {
  const k = await startKamailio({ mode });
  const peers: HasLogs[] = [k];
  try {
    await withLogsOnFailure(peers, async () => {
      const b = await startBaresip({ user: "bob", proxy: k.address, ...options });
      peers.push(b);
      try {
        await fn(k, b, peers);
      } finally {
        await b.stop();
      }
    });
  } finally {
    await k.stop();
  }
}

Deno.test({
  name: "baresip registers through Kamailio and reports a MESSAGE sent to it by sipsak",
  ignore: !hasBaresip || !hasKamailio || !hasSipsak,
  fn: async () => {
    await withKamailioAndBob("registrar", {}, async (k, b) => {
      assert.match(k.logs(), /Listening on/);
      const sent = await sipsakMessage({
        to: "sip:bob@example.test",
        from: "sip:alice@example.test",
        body: "hello bob",
        port: k.port,
      });
      assert.ok(sent.statuses.includes(200), sent.output);
      const message = await b.waitMessage((m) => m.body === "hello bob");
      assert.equal(message.from, "sip:alice@example.test");
    });
  },
});

Deno.test({
  name: "baresip sends a MESSAGE to a contact and reports the final response",
  ignore: !hasBaresip || !hasKamailio || !hasSipp,
  fn: async () => {
    const contacts = [
      { uri: "sip:alice@example.test", presence: false },
      { uri: "sip:carol@example.test", name: "Carol", presence: false },
    ];
    await withKamailioAndBob("proxy", { contacts }, async (k, b, peers) => {
      const uas = await startSipp({ scenario: "message_uas.xml", traceMessages: true });
      peers.push(uas);
      try {
        await registerContact(k.address, "carol", "example.test", uas.address);
        assert.equal(await b.sendMessage("sip:carol@example.test", "hi carol"), "200 OK");
        assert.equal(await b.sendMessage("sip:alice@example.test", "hi alice"), "404 Not Found");
        const served = await uas.stop();
        assert.match(served.messages, /hi carol/);
      } finally {
        await uas.stop();
      }
    });
  },
});

Deno.test({
  name: "baresip watches a contact through Kamailio's presence server and sees it go online",
  ignore: !hasBaresip || !hasPresence || !hasSipp,
  fn: async () => {
    const contacts = [{ uri: "sip:alice@example.test", name: "Alice" }];
    await withKamailioAndBob("presence", { contacts }, async (k, b) => {
      await publishOpen(k.address, "alice", "example.test", "in");
      await b.waitContactStatus("sip:alice@example.test", "Online");
    });
  },
});

Deno.test({
  name: "baresip answers SUBSCRIBE as its own presence agent and NOTIFYs a status change",
  ignore: !hasBaresip || !hasKamailio || !hasSipp,
  fn: async () => {
    await withKamailioAndBob("proxy", { presence: "online" }, async (k, b) => {
      const watching = aliceWatchesBob(k.address, "example.test");
      await waitFor(
        () => b.trace().some((m) => m.method === "NOTIFY" && m.body.includes("<basic>open")),
        { message: "baresip's first NOTIFY" },
      );
      await b.setPresence("offline");
      const sub = await watching;
      assert.equal(sub.code, 0, sub.errors);
      assert.match(sub.messages, /<basic>open<\/basic>/);
      assert.match(sub.messages, /<basic>closed<\/basic>/);
    });
  },
});

Deno.test({
  name: "baresip places and receives calls through Kamailio with ctrl_tcp call events",
  ignore: !hasBaresip || !hasKamailio || !hasSipp,
  fn: async () => {
    await withKamailioAndBob("proxy", { autoAnswer: true }, async (k, b, peers) => {
      const uas = await startSipp({ scenario: "invite_uas.xml" });
      peers.push(uas);
      try {
        await registerContact(k.address, "carol", "example.test", uas.address);

        let mark = b.ctrl.mark();
        assert.equal((await b.dial("sip:carol@example.test")).ok, true);
        const up = await b.ctrl.waitEvent((e) => e.type === "CALL_ESTABLISHED", { from: mark });
        assert.equal(up.direction, "outgoing");
        assert.equal(up.peeruri, "sip:carol@example.test");
        await b.hangup();
        await b.ctrl.waitEvent((e) => e.type === "CALL_CLOSED", { from: mark });
        assert.equal((await uas.stop()).successful, 1);

        mark = b.ctrl.mark();
        const call = await runSipp({
          scenario: "invite_uac.xml",
          remote: k.address,
          service: "bob",
          calls: 1,
          keys: { user: "alice", domain: "example.test" },
          timeout: 15,
          extraArgs: ["-d", "200"],
        });
        assert.equal(call.code, 0, call.errors);
        const incoming = await b.ctrl.waitEvent((e) => e.type === "CALL_ESTABLISHED", {
          from: mark,
        });
        assert.equal(incoming.direction, "incoming");
        assert.equal(incoming.peeruri, "sip:alice@example.test");
        await b.ctrl.waitEvent((e) => e.type === "CALL_CLOSED", { from: mark });
      } finally {
        await uas.stop();
      }
    });
  },
});
