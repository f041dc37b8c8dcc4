import assert from "node:assert/strict";
import { parseUri, type Uri } from "../lib/sip/message.ts";
import { literalSipTarget } from "../lib/sip/_net.ts";
import type { TransportProtocol } from "../lib/sip/transport.ts";
import {
  createDenoDnsLookup,
  type DnsTable,
  isIpAddress,
  type NaptrRecord,
  orderSrv,
  type ResolveOptions,
  resolveSipUri,
  seededRandom,
  SipResolveError,
  type SrvRecord,
  staticDnsLookup,
} from "../lib/sip/resolver.ts";

function uri(text: string): Uri {
  // A tiny builder so these tests do not depend on the message parser:
  // "sips:host:port;a=b;c".
  const m = /^(\w+):(\[[^\]]+\]|[^:;]*)(?::(\d+))?((?:;[^;]*)*)$/.exec(text);
  if (!m) throw new Error(`bad test uri ${text}`);
  const params: Record<string, string | null> = {};
  for (const p of m[4].split(";").filter(Boolean)) {
    const [k, v] = p.split("=");
    params[k.toLowerCase()] = v ?? null;
  }
  return {
    scheme: m[1],
    host: m[2].replace(/^\[|\]$/g, ""),
    port: m[3] ? Number(m[3]) : undefined,
    params,
    headers: {},
  };
}

const naptr = (
  order: number,
  preference: number,
  services: string,
  replacement: string,
  flags = "s",
): NaptrRecord => ({ order, preference, flags, services, regexp: "", replacement });
const srv = (priority: number, weight: number, port: number, target: string): SrvRecord => ({
  priority,
  weight,
  port,
  target,
});

async function resolve(text: string, table: DnsTable, options: ResolveOptions = {}) {
  const log: string[] = [];
  const targets = await resolveSipUri(uri(text), {
    lookup: staticDnsLookup(table, log),
    random: seededRandom(1),
    ...options,
  });
  return {
    log,
    targets: targets.map((t) => `${t.protocol} ${t.host} ${t.port}`),
    serverNames: [...new Set(targets.map((t) => t.serverName))],
  };
}

// A domain with the full RFC 3263 set of records.
const FULL: DnsTable = {
  "example.test": {
    NAPTR: [
      naptr(50, 50, "SIP+D2U", "_sip._udp.example.test"),
      naptr(40, 10, "SIP+D2T", "_sip._tcp.example.test."),
      naptr(30, 50, "SIPS+D2T", "_sips._tcp.example.test"),
      naptr(10, 10, "SIP+D2S", "_sip._sctp.example.test"),
      naptr(20, 10, "SIP+D2U", "ignored.example.test", "a"),
    ],
    A: ["192.0.2.99"],
  },
  "_sip._udp.example.test": { SRV: [srv(10, 1, 5060, "udp1.example.test")] },
  "_sip._tcp.example.test": { SRV: [srv(10, 1, 5062, "tcp1.example.test")] },
  "_sips._tcp.example.test": { SRV: [srv(10, 1, 5063, "tls1.example.test.")] },
  "udp1.example.test": { A: ["192.0.2.1"], AAAA: ["2001:db8::1"] },
  "tcp1.example.test": { A: ["192.0.2.2"] },
  "tls1.example.test": { A: ["192.0.2.3"] },
};

Deno.test("resolveSipUri() uses a numeric host without DNS", async (t) => {
  const cases: [string, string][] = [
    ["sip:192.0.2.7", "udp 192.0.2.7 5060"],
    ["sip:192.0.2.7:5080", "udp 192.0.2.7 5080"],
    ["sips:192.0.2.7", "tls 192.0.2.7 5061"],
    ["sip:192.0.2.7;transport=tcp", "tcp 192.0.2.7 5060"],
    ["sip:192.0.2.7;transport=TLS", "tls 192.0.2.7 5061"],
    ["sips:192.0.2.7;transport=tcp", "tls 192.0.2.7 5061"],
    ["sip:[2001:db8::5]:5090", "udp 2001:db8::5 5090"],
    ["sip:[::1]", "udp ::1 5060"],
  ];
  for (const [text, want] of cases) {
    await t.step(text, async () => {
      const got = await resolve(text, FULL);
      assert.deepEqual(got.targets, [want]);
      assert.deepEqual(got.log, []);
    });
  }
});

Deno.test("resolveSipUri() resolves localhost without DNS", async () => {
  const any = await resolve("sip:localhost:5070", {});
  assert.deepEqual(any.targets, ["udp 127.0.0.1 5070", "udp ::1 5070"]);
  assert.deepEqual(any.log, []);
  const v4 = await resolve("sip:LOCALHOST;transport=tcp", {}, { family: "ipv4" });
  assert.deepEqual(v4.targets, ["tcp 127.0.0.1 5060"]);
  const v6 = await resolve("sips:localhost", {}, { family: "ipv6" });
  assert.deepEqual(v6.targets, ["tls ::1 5061"]);
});

Deno.test("resolveSipUri() with a name and an explicit port looks up A/AAAA only", async () => {
  const got = await resolve("sip:udp1.example.test:5099", FULL);
  assert.deepEqual(got.targets, ["udp 192.0.2.1 5099", "udp 2001:db8::1 5099"]);
  assert.deepEqual(got.log, ["A udp1.example.test", "AAAA udp1.example.test"]);
  const tls = await resolve("sips:tcp1.example.test:6000", FULL);
  assert.deepEqual(tls.targets, ["tls 192.0.2.2 6000"]);
});

Deno.test("resolveSipUri() follows NAPTR order, then SRV, then A/AAAA", async () => {
  const got = await resolve("sip:example.test", FULL);
  // SCTP (unsupported) and the non-"s" record are skipped; order 30, 40, 50.
  assert.deepEqual(got.targets, [
    "tls 192.0.2.3 5063",
    "tcp 192.0.2.2 5062",
    "udp 192.0.2.1 5060",
    "udp 2001:db8::1 5060",
  ]);
  assert.deepEqual(got.serverNames, ["example.test"]);
  assert.equal(got.log[0], "NAPTR example.test");
  assert.ok(!got.log.includes("SRV ignored.example.test"));
  assert.ok(!got.log.includes("SRV _sip._sctp.example.test"));
});

Deno.test("resolveSipUri() keeps only NAPTR services the client supports", async () => {
  const udpOnly = await resolve("sip:example.test", FULL, { transports: ["udp"] });
  assert.deepEqual(udpOnly.targets, ["udp 192.0.2.1 5060", "udp 2001:db8::1 5060"]);
  const v4 = await resolve("sip:example.test", FULL, { transports: ["udp"], family: "ipv4" });
  assert.deepEqual(v4.targets, ["udp 192.0.2.1 5060"]);
  assert.ok(!v4.log.includes("AAAA udp1.example.test"));
});

Deno.test("resolveSipUri() for a sips URI uses only SIPS+D2T", async () => {
  const got = await resolve("sips:example.test", FULL);
  assert.deepEqual(got.targets, ["tls 192.0.2.3 5063"]);
  await assert.rejects(
    () => resolve("sips:example.test", FULL, { transports: ["udp", "tcp"] }),
    /Cannot locate SIP server for example\.test: transport tls is not enabled/,
  );
});

Deno.test("resolveSipUri() without NAPTR queries SRV for each supported transport", async () => {
  const table: DnsTable = {
    "b.test": { A: ["192.0.2.50"] },
    "_sip._tcp.b.test": { SRV: [srv(10, 0, 5070, "pbx.b.test")] },
    "_sips._tcp.b.test": { SRV: [srv(10, 0, 5071, "pbx.b.test")] },
    "pbx.b.test": { A: ["192.0.2.51"] },
  };
  const got = await resolve("sip:b.test", table, { transports: ["tcp", "udp", "tls"] });
  assert.deepEqual(got.log.filter((l) => !l.startsWith("A")), [
    "NAPTR b.test",
    "SRV _sip._tcp.b.test",
    "SRV _sip._udp.b.test",
    "SRV _sips._tcp.b.test",
  ]);
  assert.deepEqual(got.targets, ["tcp 192.0.2.51 5070", "tls 192.0.2.51 5071"]);
  const secure = await resolve("sips:b.test", table);
  assert.deepEqual(secure.targets, ["tls 192.0.2.51 5071"]);
  assert.ok(!secure.log.includes("SRV _sip._udp.b.test"));
});

Deno.test("resolveSipUri() falls back to A/AAAA at the default port", async () => {
  const table: DnsTable = { "c.test": { A: ["192.0.2.60"], AAAA: ["2001:db8::60"] } };
  const got = await resolve("sip:c.test", table);
  assert.deepEqual(got.targets, ["udp 192.0.2.60 5060", "udp 2001:db8::60 5060"]);
  const secure = await resolve("sips:c.test", table);
  assert.deepEqual(secure.targets, ["tls 192.0.2.60 5061", "tls 2001:db8::60 5061"]);
  const tcpOnly = await resolve("sip:c.test", table, { transports: ["tcp"] });
  assert.deepEqual(tcpOnly.targets, ["tcp 192.0.2.60 5060", "tcp 2001:db8::60 5060"]);
});

Deno.test("resolveSipUri() with an explicit transport skips NAPTR and queries that SRV", async () => {
  const got = await resolve("sip:example.test;transport=tcp", FULL);
  assert.deepEqual(got.targets, ["tcp 192.0.2.2 5062"]);
  assert.deepEqual(got.log, [
    "SRV _sip._tcp.example.test",
    "A tcp1.example.test",
    "AAAA tcp1.example.test",
  ]);
  const tls = await resolve("sip:example.test;transport=tls", FULL);
  assert.deepEqual(tls.targets, ["tls 192.0.2.3 5063"]);
  // No SRV for that transport: A/AAAA of the name at the default port.
  const noSrv = await resolve("sip:c.test;transport=tcp", { "c.test": { A: ["192.0.2.60"] } });
  assert.deepEqual(noSrv.targets, ["tcp 192.0.2.60 5060"]);
});

Deno.test("resolveSipUri() lets maddr override the host", async () => {
  const got = await resolve("sip:example.test;maddr=192.0.2.200", FULL);
  assert.deepEqual(got.targets, ["udp 192.0.2.200 5060"]);
  assert.deepEqual(got.log, []);
  assert.deepEqual(got.serverNames, ["example.test"]);
  const named = await resolve("sip:other.test:5070;maddr=tcp1.example.test;transport=tcp", FULL);
  assert.deepEqual(named.targets, ["tcp 192.0.2.2 5070"]);
});

Deno.test("resolveSipUri() orders SRV by priority and drops '.' targets", async () => {
  const table: DnsTable = {
    "d.test": {
      NAPTR: [naptr(10, 10, "SIP+D2U", "_sip._udp.d.test")],
    },
    "_sip._udp.d.test": {
      SRV: [
        srv(20, 100, 5060, "backup.d.test"),
        srv(10, 0, 5060, "."),
        srv(10, 5, 5060, "primary.d.test"),
      ],
    },
    "backup.d.test": { A: ["192.0.2.21"] },
    "primary.d.test": { A: ["192.0.2.11"] },
  };
  const got = await resolve("sip:d.test", table);
  assert.deepEqual(got.targets, ["udp 192.0.2.11 5060", "udp 192.0.2.21 5060"]);
});

Deno.test("orderSrv() picks by weight as RFC 2782 says, reproducibly with a seed", () => {
  const records = [srv(1, 60, 1, "a"), srv(1, 30, 1, "b"), srv(1, 10, 1, "c")];
  const rnd = seededRandom(42);
  const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
  const n = 20_000;
  for (let i = 0; i < n; i++) counts[orderSrv(records, rnd)[0].target]++;
  // The random number is uniform over 0..100 inclusive: 61, 30 and 10 values.
  assert.ok(Math.abs(counts.a / n - 61 / 101) < 0.02, JSON.stringify(counts));
  assert.ok(Math.abs(counts.b / n - 30 / 101) < 0.02, JSON.stringify(counts));
  assert.ok(Math.abs(counts.c / n - 10 / 101) < 0.02, JSON.stringify(counts));
  // Every record appears exactly once.
  assert.deepEqual(orderSrv(records, rnd).map((r) => r.target).sort(), ["a", "b", "c"]);
  // Same seed, same order.
  const x = seededRandom(9), y = seededRandom(9);
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(orderSrv(records, x), orderSrv(records, y));
  }
});

Deno.test("orderSrv() places zero-weight records first, chosen only on a zero draw", () => {
  const records = [srv(1, 10, 1, "heavy"), srv(1, 0, 1, "zero")];
  assert.deepEqual(orderSrv(records, () => 0).map((r) => r.target), ["zero", "heavy"]);
  assert.deepEqual(orderSrv(records, () => 0.5).map((r) => r.target), ["heavy", "zero"]);
  assert.deepEqual(orderSrv(records, () => 0.999999).map((r) => r.target), ["heavy", "zero"]);
  const allZero = [srv(1, 0, 1, "p"), srv(1, 0, 1, "q")];
  assert.deepEqual(orderSrv(allZero, () => 0.7).map((r) => r.target), ["p", "q"]);
  assert.deepEqual(
    orderSrv([srv(5, 1, 1, "late"), srv(1, 1, 1, "early")]).map((r) => r.target),
    ["early", "late"],
  );
});

Deno.test("resolveSipUri() survives a failing NAPTR query and drops duplicates", async () => {
  const table: DnsTable = {
    "e.test": { NAPTR: new Error("SERVFAIL") },
    "_sip._udp.e.test": {
      SRV: [srv(10, 1, 5060, "pbx.e.test"), srv(20, 1, 5060, "pbx.e.test")],
    },
    "pbx.e.test": { A: ["192.0.2.80"] },
  };
  const got = await resolve("sip:e.test", table, { transports: ["udp"] });
  assert.deepEqual(got.targets, ["udp 192.0.2.80 5060"]);
});

Deno.test("resolveSipUri() failures name the host", async (t) => {
  const cases: [string, DnsTable, ResolveOptions, RegExp][] = [
    [
      "sip:nowhere.test",
      {},
      {},
      /^Cannot locate SIP server for nowhere\.test: no NAPTR, SRV, A or AAAA records$/,
    ],
    ["sip:nowhere.test:5060", {}, {}, /^Cannot locate SIP server for nowhere\.test: no A or AAAA/],
    [
      "sip:broken.test",
      { "broken.test": { NAPTR: new Error("timed out"), A: new Error("timed out") } },
      {},
      /broken\.test: no NAPTR, SRV, A or AAAA records \(DNS error: timed out\)/,
    ],
    ["sip:a.test;transport=sctp", {}, {}, /a\.test: transport sctp is not supported/],
    ["sips:a.test;transport=udp", {}, {}, /a\.test: a sips URI cannot use transport=udp/],
    ["sip:a.test;transport=tcp", {}, { transports: ["udp"] }, /transport tcp is not enabled/],
    ["sip:192.0.2.1", {}, { transports: ["tls"] }, /neither udp nor tcp is enabled/],
    ["tel:+15551234", {}, {}, /tel: URIs have no server/],
  ];
  for (const [text, table, options, why] of cases) {
    await t.step(text, async () => {
      await assert.rejects(() => resolve(text, table, options), (e: unknown) => {
        assert.ok(e instanceof SipResolveError);
        assert.match(e.message, why);
        return true;
      });
    });
  }
  await t.step("the DNS error is the cause", async () => {
    const boom = new Error("timed out");
    await assert.rejects(
      () => resolve("sip:f.test", { "f.test": { NAPTR: boom } }),
      (e: unknown) => e instanceof SipResolveError && e.cause === boom && e.host === "f.test",
    );
  });
});

Deno.test("staticDnsLookup() ignores case and the trailing dot and logs queries", async () => {
  const log: string[] = [];
  const lookup = staticDnsLookup({ "Pbx.Example.Test.": { A: ["192.0.2.1"] } }, log);
  assert.deepEqual(await lookup("pbx.example.test", "A"), ["192.0.2.1"]);
  assert.deepEqual(await lookup("PBX.EXAMPLE.TEST.", "A"), ["192.0.2.1"]);
  assert.deepEqual(await lookup("pbx.example.test", "SRV"), []);
  assert.deepEqual(log, ["A pbx.example.test", "A PBX.EXAMPLE.TEST.", "SRV pbx.example.test"]);
});

Deno.test("isIpAddress() tells addresses from names", () => {
  for (
    const ip of ["192.0.2.1", "0.0.0.0", "255.255.255.255", "::1", "2001:db8::1", "fe80::1%eth0"]
  ) {
    assert.equal(isIpAddress(ip), true, ip);
  }
  for (const ip of ["10.0.0.10", "199.249.255.1", "9.99.100.250"]) {
    assert.equal(isIpAddress(ip), true, ip);
  }
  for (const name of ["example.test", "256.1.1.1", "1.2.3", "localhost", "a:b:zz"]) {
    assert.equal(isIpAddress(name), false, name);
  }
  // Dotted quads as RFC 3263 takes them: four parts, 0 to 255, no leading zeros.
  for (
    const name of ["01.2.3.4", "1.2.3.04", "1.2.3.4.5", "1.2.3.", ".1.2.3", "1234.1.1.1", "1..2.3"]
  ) {
    assert.equal(isIpAddress(name), false, name);
  }
});

// ---------------------------------------------------------------------------
// The Deno.resolveDns adapter, against a tiny DNS server on 127.0.0.1
// ---------------------------------------------------------------------------

const TYPES: Record<number, string> = { 1: "A", 28: "AAAA", 33: "SRV", 35: "NAPTR" };

function encodeName(name: string): number[] {
  const out: number[] = [];
  for (const label of name.split(".").filter(Boolean)) {
    const bytes = new TextEncoder().encode(label);
    out.push(bytes.length, ...bytes);
  }
  out.push(0);
  return out;
}

function charString(s: string): number[] {
  const bytes = new TextEncoder().encode(s);
  return [bytes.length, ...bytes];
}

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];

function rdata(type: string, record: unknown): number[] {
  switch (type) {
    case "A":
      return (record as string).split(".").map(Number);
    case "AAAA": {
      // Only the forms used below: "2001:db8::N".
      const [head, tail] = (record as string).split("::");
      const h = head.split(":").map((x) => parseInt(x, 16));
      const t = tail ? tail.split(":").map((x) => parseInt(x, 16)) : [];
      const words = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
      return words.flatMap(u16);
    }
    case "SRV": {
      const r = record as SrvRecord;
      return [...u16(r.priority), ...u16(r.weight), ...u16(r.port), ...encodeName(r.target)];
    }
    default: {
      const r = record as NaptrRecord;
      return [
        ...u16(r.order),
        ...u16(r.preference),
        ...charString(r.flags),
        ...charString(r.services),
        ...charString(r.regexp),
        ...encodeName(r.replacement),
      ];
    }
  }
}

/** Answers DNS queries over UDP on 127.0.0.1 from a table. */
function startDnsServer(
  table: Record<string, Record<string, unknown[]>>,
  options: { servfail?: string[]; silent?: boolean } = {},
) {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (socket.addr as Deno.NetAddr).port;
  const queries: string[] = [];
  const done = (async () => {
    try {
      for await (const [data, from] of socket) {
        // Header (12 bytes), then one question: name, type, class.
        let i = 12;
        const labels: string[] = [];
        while (data[i] !== 0) {
          labels.push(new TextDecoder().decode(data.slice(i + 1, i + 1 + data[i])));
          i += data[i] + 1;
        }
        const qEnd = i + 5;
        const type = TYPES[(data[i + 1] << 8) | data[i + 2]] ?? "?";
        const name = labels.join(".").toLowerCase();
        queries.push(`${type} ${name}`);
        if (options.silent) continue;
        const entry = table[name];
        const records = entry?.[type] ?? [];
        const answers = records.flatMap((r) => {
          const rd = rdata(type, r);
          const code = Number(Object.entries(TYPES).find(([, v]) => v === type)![0]);
          return [0xc0, 12, ...u16(code), 0, 1, 0, 0, 0, 60, ...u16(rd.length), ...rd];
        });
        // SERVFAIL when asked, NXDOMAIN for unknown names.
        const rcode = options.servfail?.includes(name) ? 2 : entry ? 0 : 3;
        const header = [
          data[0],
          data[1],
          0x81,
          0x80 | rcode,
          0,
          1,
          ...u16(records.length),
          0,
          0,
          0,
          0,
        ];
        const reply = new Uint8Array([...header, ...data.slice(12, qEnd), ...answers]);
        await socket.send(reply, from);
      }
    } catch {
      // closed
    }
  })();
  return {
    port,
    queries,
    async close() {
      socket.close();
      await done;
    },
  };
}

Deno.test("createDenoDnsLookup() reads NAPTR, SRV, A and AAAA and maps missing names to []", async () => {
  const server = startDnsServer({
    "example.test": {
      NAPTR: [naptr(10, 20, "SIP+D2T", "_sip._tcp.example.test")],
    },
    "_sip._tcp.example.test": { SRV: [srv(5, 7, 5070, "pbx.example.test")] },
    "pbx.example.test": { A: ["127.0.0.2"], AAAA: ["2001:db8::2"] },
  });
  try {
    const lookup = createDenoDnsLookup({
      nameServer: { ipAddr: "127.0.0.1", port: server.port },
      timeoutMs: 3000,
    });
    assert.deepEqual(await lookup("example.test", "NAPTR"), [
      naptr(10, 20, "SIP+D2T", "_sip._tcp.example.test"),
    ]);
    assert.deepEqual(await lookup("_sip._tcp.example.test", "SRV"), [
      srv(5, 7, 5070, "pbx.example.test"),
    ]);
    assert.deepEqual(await lookup("pbx.example.test", "A"), ["127.0.0.2"]);
    assert.deepEqual(await lookup("pbx.example.test", "AAAA"), ["2001:db8::2"]);
    assert.deepEqual(await lookup("missing.example.test", "A"), []);
    assert.deepEqual(await lookup("example.test", "A"), []);
    const targets = await resolveSipUri(uri("sip:example.test"), { lookup, family: "ipv4" });
    assert.deepEqual(targets, [
      { protocol: "tcp", host: "127.0.0.2", port: 5070, serverName: "example.test" },
    ]);
    assert.ok(server.queries.includes("NAPTR example.test"), server.queries.join(", "));
  } finally {
    await server.close();
  }
});

Deno.test("createDenoDnsLookup() rejects on timeout, and the resolver names host and cause", async () => {
  // Deno.resolveDns reports NXDOMAIN, NODATA and SERVFAIL alike as NotFound
  // ("no records found"), which the adapter turns into []: only failures to
  // get any answer reject.
  const failing = startDnsServer({}, { servfail: ["broken.test"] });
  const silent = startDnsServer({}, { silent: true });
  try {
    const lookup = createDenoDnsLookup({ nameServer: { ipAddr: "127.0.0.1", port: failing.port } });
    assert.deepEqual(await lookup("broken.test", "A"), []);
    const slow = createDenoDnsLookup({
      nameServer: { ipAddr: "127.0.0.1", port: silent.port },
      timeoutMs: 200,
    });
    await assert.rejects(
      () => slow("quiet.test", "SRV"),
      (e: unknown) => (e as Error).name === "TimeoutError",
    );
    await assert.rejects(
      () => resolveSipUri(uri("sip:quiet.test:5060"), { lookup: slow, family: "ipv4" }),
      (e: unknown) =>
        e instanceof SipResolveError && e.host === "quiet.test" &&
        (e.cause as Error).name === "TimeoutError" &&
        /^Cannot locate SIP server for quiet\.test: no A or AAAA records \(DNS error: /.test(
          e.message,
        ),
    );
  } finally {
    await failing.close();
    await silent.close();
  }
});

Deno.test("resolveSipUri() takes URIs from parseUri()", async () => {
  const lookup = staticDnsLookup(FULL);
  const cases: [string, string[]][] = [
    ["sip:alice@[2001:db8::9]:5070;transport=TCP", ["tcp 2001:db8::9 5070"]],
    ["sips:alice@EXAMPLE.test", ["tls 192.0.2.3 5063"]],
    ["sip:bob@example.test;maddr=192.0.2.44;transport=udp", ["udp 192.0.2.44 5060"]],
  ];
  for (const [text, want] of cases) {
    const targets = await resolveSipUri(parseUri(text), { lookup });
    assert.deepEqual(targets.map((t) => `${t.protocol} ${t.host} ${t.port}`), want, text);
  }
});

Deno.test("an address literal: literalSipTarget() (without the resolver) and resolveSipUri() give RFC 3263's one target, with no DNS query", async () => {
  const all = ["udp", "tcp", "tls"] as const;
  const noUdp = ["tcp", "tls"] as const;
  const udpOnly = ["udp"] as const;
  // URI, transports, expected "protocol host port serverName".
  const cases: [string, readonly TransportProtocol[], string][] = [
    ["sip:b@127.0.0.1", all, "udp 127.0.0.1 5060 127.0.0.1"],
    ["sip:b@127.0.0.1", noUdp, "tcp 127.0.0.1 5060 127.0.0.1"],
    ["sip:b@127.0.0.1:5070", all, "udp 127.0.0.1 5070 127.0.0.1"],
    ["SIP:b@192.0.2.7:7000", udpOnly, "udp 192.0.2.7 7000 192.0.2.7"],
    ["sip:b@[::1]:5070", all, "udp ::1 5070 ::1"],
    ["sip:b@[2001:DB8::1]", all, "udp 2001:db8::1 5060 2001:db8::1"],
    ["sips:b@192.0.2.7", all, "tls 192.0.2.7 5061 192.0.2.7"],
    ["sips:b@192.0.2.7:5071", noUdp, "tls 192.0.2.7 5071 192.0.2.7"],
    // A SIPS URI with transport=tcp is TLS over TCP (RFC 3261 26.2.2).
    ["sips:b@192.0.2.7;transport=tcp", all, "tls 192.0.2.7 5061 192.0.2.7"],
    ["sip:b@192.0.2.7;transport=TCP", all, "tcp 192.0.2.7 5060 192.0.2.7"],
    ["sip:b@192.0.2.7;transport=tls", all, "tls 192.0.2.7 5061 192.0.2.7"],
    ["sip:b@192.0.2.7;transport=udp", all, "udp 192.0.2.7 5060 192.0.2.7"],
    // maddr is the TARGET (RFC 3263 4.1); the certificate is still the host's.
    ["sip:b@example.test;maddr=192.0.2.44;transport=tcp", all, "tcp 192.0.2.44 5060 example.test"],
    ["sip:b@example.test:5080;maddr=[2001:db8::2]", all, "udp 2001:db8::2 5080 example.test"],
    ["sip:b@192.0.2.7;maddr=192.0.2.8", all, "udp 192.0.2.8 5060 192.0.2.7"],
    // An empty maddr is no maddr.
    ["sip:b@192.0.2.7;maddr=", all, "udp 192.0.2.7 5060 192.0.2.7"],
  ];
  const show = (t: { protocol: string; host: string; port: number; serverName: string }) =>
    `${t.protocol} ${t.host} ${t.port} ${t.serverName}`;
  for (const [text, transports, want] of cases) {
    const uri = parseUri(text);
    const fast = literalSipTarget(uri, transports);
    assert.ok(fast, `literalSipTarget(${text}, ${transports})`);
    assert.equal(show(fast), want, `literalSipTarget(${text}, ${transports})`);
    const log: string[] = [];
    const full = await resolveSipUri(uri, { transports, lookup: staticDnsLookup({}, log) });
    assert.deepEqual(full.map(show), [want], `resolveSipUri(${text}, ${transports})`);
    assert.deepEqual(log, [], `no DNS query for ${text}`);
  }
  // A literal whose transport cannot be used: no target, and the resolver
  // says why (without asking DNS).
  const refused: [string, readonly TransportProtocol[], RegExp][] = [
    ["sips:b@192.0.2.7;transport=udp", all, /a sips URI cannot use transport=udp/],
    ["sip:b@192.0.2.7;transport=sctp", all, /transport sctp is not supported/],
    ["sip:b@192.0.2.7;transport=udp", noUdp, /transport udp is not enabled/],
    ["sips:b@192.0.2.7", udpOnly, /transport tls is not enabled/],
    ["sip:b@192.0.2.7", ["tls"], /neither udp nor tcp is enabled for a sip URI/],
    ["sip:b@example.test;maddr=192.0.2.44;transport=tcp", udpOnly, /transport tcp is not enabled/],
  ];
  for (const [text, transports, why] of refused) {
    const uri = parseUri(text);
    assert.equal(literalSipTarget(uri, transports), undefined, `${text} ${transports}`);
    const log: string[] = [];
    await assert.rejects(
      () => resolveSipUri(uri, { transports, lookup: staticDnsLookup({}, log) }),
      (e: unknown) => e instanceof SipResolveError && why.test(e.message),
      `${text} ${transports}`,
    );
    assert.deepEqual(log, [], `no DNS query for ${text}`);
  }
  // What is not an address is left to the resolver (names, localhost, a
  // name in maddr, leading zeros, other schemes).
  for (
    const text of [
      "sip:b@localhost",
      "sip:b@example.test:5060",
      "sip:b@192.0.2.7;maddr=proxy.example.test",
      "sip:b@010.0.0.1",
      "tel:+1555",
    ]
  ) {
    assert.equal(literalSipTarget(parseUri(text), all), undefined, text);
  }
});
