import assert from "node:assert/strict";
import {
  buildListNotify,
  formatRlmi,
  parseRlmi,
  type RlmiList,
  unpackListNotify,
} from "../lib/presence/rlmi.ts";
import { presenceToStatus, statusToPidf } from "../lib/presence/status.ts";
import { formatMultipart } from "../lib/sip/multipart.ts";

const enc = new TextEncoder();

// Modelled on RFC 4662 section 5.5 (example with a sublist and a pending resource).
const RLMI = `<?xml version="1.0" encoding="UTF-8"?>
<list xmlns="urn:ietf:params:xml:ns:rlmi"
      uri="sip:adam-friends@pres.example.com" version="1"
      fullState="true">
  <name xml:lang="en">Buddy List at COM</name>
  <name xml:lang="de">Liste der Freunde an COM</name>
  <resource uri="sip:bob@example.com">
    <name>Bob Smith</name>
    <instance id="juwigmtboe" state="active" cid="bUZBsM@pres.example.com"/>
  </resource>
  <resource uri="sip:dave@example.com">
    <name>Dave Jones</name>
    <instance id="hqzsuxtfyq" state="active" cid="ZvSvkz@pres.example.com"/>
  </resource>
  <resource uri="sip:ed@example.net">
    <name>Ed at NET</name>
    <instance id="oflzxqzuvg" state="pending"/>
  </resource>
  <resource uri="sip:fred@example.net">
    <instance id="x1" state="terminated" reason="rejected"/>
  </resource>
</list>`;

Deno.test("parseRlmi() reads list attributes, names, resources and instances", () => {
  const list = parseRlmi(RLMI);
  assert.equal(list.uri, "sip:adam-friends@pres.example.com");
  assert.equal(list.version, 1);
  assert.equal(list.fullState, true);
  assert.deepEqual(list.names, [
    { text: "Buddy List at COM", lang: "en" },
    { text: "Liste der Freunde an COM", lang: "de" },
  ]);
  assert.equal(list.resources.length, 4);
  assert.deepEqual(list.resources[0], {
    uri: "sip:bob@example.com",
    names: [{ text: "Bob Smith" }],
    instances: [{ id: "juwigmtboe", state: "active", cid: "bUZBsM@pres.example.com" }],
  });
  assert.deepEqual(list.resources[3].instances, [{
    id: "x1",
    state: "terminated",
    reason: "rejected",
  }]);
});

Deno.test("formatRlmi() output parses back to the same model", () => {
  const list = parseRlmi(RLMI);
  assert.deepEqual(parseRlmi(formatRlmi(list)), list);
});

Deno.test("parseRlmi() rejects malformed documents with SyntaxError", async (t) => {
  const ns = `xmlns="urn:ietf:params:xml:ns:rlmi"`;
  const cases: Record<string, string> = {
    "not xml": "<list",
    "wrong root": `<lists ${ns} uri="a" version="1" fullState="true"/>`,
    "no uri": `<list ${ns} version="1" fullState="true"/>`,
    "bad version": `<list ${ns} uri="a" version="-1" fullState="true"/>`,
    "bad fullState": `<list ${ns} uri="a" version="1" fullState="yes"/>`,
    "missing fullState": `<list ${ns} uri="a" version="1"/>`,
    "resource without uri": `<list ${ns} uri="a" version="1" fullState="true"><resource/></list>`,
    "bad state":
      `<list ${ns} uri="a" version="1" fullState="true"><resource uri="b"><instance id="1" state="on"/></resource></list>`,
    "instance without id":
      `<list ${ns} uri="a" version="1" fullState="true"><resource uri="b"><instance state="active"/></resource></list>`,
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parseRlmi(input), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse RLMI document: /);
        return true;
      });
    });
  }
});

/** A body in the shape Kamailio's rls module sends: quoted params, binary parts, CRLF. */
function kamailioStyleBody(): { contentType: string; body: Uint8Array } {
  const b = "UniqueBoundary1234";
  const pidfBob = statusToPidf("away", { entity: "sip:bob@example.com", note: "coffee" });
  const pidfDave = `<?xml version="1.0"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" ` +
    `entity="sip:dave@example.com"><tuple id="t"><status><basic>closed</basic></status></tuple></presence>`;
  const part = (cid: string, type: string, content: string) =>
    `--${b}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${cid}>\r\n` +
    `Content-Type: ${type}\r\n\r\n${content}\r\n`;
  const text = part("rlmi1@pres.example.com", 'application/rlmi+xml;charset="UTF-8"', RLMI) +
    part("bUZBsM@pres.example.com", 'application/pidf+xml;charset="UTF-8"', pidfBob) +
    part("ZvSvkz@pres.example.com", 'application/pidf+xml;charset="UTF-8"', pidfDave) +
    `--${b}--\r\n`;
  return {
    contentType:
      `multipart/related;type="application/rlmi+xml";start="<rlmi1@pres.example.com>";boundary="${b}"`,
    body: enc.encode(text),
  };
}

Deno.test("unpackListNotify() gives each resource its PIDF or its pending/terminated state", () => {
  const { contentType, body } = kamailioStyleBody();
  const n = unpackListNotify(contentType, body);
  assert.equal(n.list.version, 1);
  const [bob, dave, ed, fred] = n.resources;
  assert.equal(bob.uri, "sip:bob@example.com");
  assert.equal(bob.name, "Bob Smith");
  assert.equal(bob.state, "active");
  assert.equal(bob.contentType, "application/pidf+xml");
  assert.equal(presenceToStatus(bob.presence!).status, "away");
  assert.equal(presenceToStatus(bob.presence!).note, "coffee");
  assert.equal(presenceToStatus(dave.presence!).status, "offline");
  assert.deepEqual(ed, {
    uri: "sip:ed@example.net",
    name: "Ed at NET",
    state: "pending",
    instanceId: "oflzxqzuvg",
  });
  assert.deepEqual(fred, {
    uri: "sip:fred@example.net",
    state: "terminated",
    reason: "rejected",
    instanceId: "x1",
  });
});

Deno.test("unpackListNotify() reports a missing or broken part on that resource only", () => {
  const list: RlmiList = {
    uri: "sip:l@x",
    version: 2,
    fullState: false,
    names: [],
    resources: [
      { uri: "sip:a@x", names: [], instances: [{ id: "1", state: "active", cid: "gone@x" }] },
      { uri: "sip:b@x", names: [], instances: [{ id: "2", state: "active", cid: "bad@x" }] },
      { uri: "sip:c@x", names: [], instances: [{ id: "3", state: "active", cid: "ok@x" }] },
    ],
  };
  const { contentType, body } = buildListNotify(list, {
    "bad@x": { contentType: "application/pidf+xml", body: "<presence" },
    "ok@x": {
      contentType: "application/pidf+xml",
      body: statusToPidf("busy", { entity: "sip:c@x" }),
    },
  });
  const n = unpackListNotify(contentType, body);
  assert.equal(n.list.fullState, false);
  assert.match(n.resources[0].error!, /no part has Content-ID <gone@x>/);
  assert.match(n.resources[1].error!, /^Cannot parse PIDF document: /);
  assert.equal(presenceToStatus(n.resources[2].presence!).status, "busy");
});

Deno.test("unpackListNotify() unpacks a nested list part (RFC 4662 section 5.4)", () => {
  const inner = buildListNotify({
    uri: "sip:adam-friends@pres.example.org",
    version: 7,
    fullState: true,
    cid: "sub@x",
    names: [],
    resources: [{
      uri: "sip:joe@example.org",
      names: [],
      instances: [{ id: "j", state: "active", cid: "joe@x" }],
    }],
  }, {
    "joe@x": {
      contentType: "application/pidf+xml",
      body: statusToPidf("lunch", { entity: "sip:joe@example.org" }),
    },
  });
  const outer = buildListNotify({
    uri: "sip:adam-friends@pres.example.com",
    version: 1,
    fullState: true,
    names: [],
    resources: [{
      uri: "sip:adam-friends@pres.example.org",
      names: [],
      instances: [{ id: "s", state: "active", cid: "sub@x" }],
    }],
  }, { "sub@x": { contentType: inner.contentType, body: inner.body } });
  const n = unpackListNotify(outer.contentType, outer.body);
  const sub = n.resources[0].list!;
  assert.equal(sub.list.version, 7);
  assert.equal(presenceToStatus(sub.resources[0].presence!).status, "lunch");
});

Deno.test("unpackListNotify() rejects bodies that are not RFC 4662 lists", async (t) => {
  const { body } = kamailioStyleBody();
  const cases: Record<string, [string, Uint8Array]> = {
    "not multipart/related": ["multipart/mixed;boundary=UniqueBoundary1234", body],
    "root type not rlmi": [
      'multipart/related;type="application/pidf+xml";boundary=UniqueBoundary1234',
      body,
    ],
    "start cid not found": [
      'multipart/related;type="application/rlmi+xml";start="<nope@x>";boundary=UniqueBoundary1234',
      body,
    ],
    "root not rlmi xml": [
      formatMultipart([{ headers: [], body: enc.encode("<x/>") }], { boundary: "q" }).contentType
        .replace("multipart/mixed", "multipart/related"),
      formatMultipart([{ headers: [], body: enc.encode("<x/>") }], { boundary: "q" }).body,
    ],
    "truncated body": [
      'multipart/related;type="application/rlmi+xml";boundary=UniqueBoundary1234',
      body.subarray(0, 300),
    ],
  };
  for (const [name, [ct, b]] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => unpackListNotify(ct, b), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse /);
        return true;
      });
    });
  }
});

Deno.test("unpackListNotify() without start uses the first part as root", () => {
  const { body } = kamailioStyleBody();
  const n = unpackListNotify("multipart/related;boundary=UniqueBoundary1234", body);
  assert.equal(n.resources.length, 4);
});

Deno.test("unpackListNotify() reads a body laid out as Kamailio's rls module sends it", () => {
  // Layout of kamailio rls notify.c: libxml2-dumped RLMI with xmlns as a plain attribute,
  // cids "<time>.<uri>.<rand>", instance id "Scf8UhwQ", "\r\n\r\n" after each resource body.
  const boundary = "ASkd1Hh5Zq";
  const cidRoot = "1764277200.sip:rl-alice@example.test.1804289383";
  const cidBob = "1764277200.sip:bob@example.test.846930886";
  const rlmi = `<?xml version="1.0"?>
<list uri="sip:rl-alice@example.test" xmlns="urn:ietf:params:xml:ns:rlmi" version="2" fullState="true">
  <resource uri="sip:bob@example.test">
    <instance id="Scf8UhwQ" state="active" cid="${cidBob}"/>
  </resource>
  <resource uri="sip:carol@example.test">
    <instance id="Scf8UhwQ" state="pending"/>
  </resource>
  <resource uri="sip:dave@example.test"/>
</list>
`;
  const pidf =
    `<?xml version="1.0"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:bob@example.test">\n  <tuple id="t1"><status><basic>open</basic></status></tuple>\n  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>\n</presence>\n`;
  const body =
    `--${boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${cidRoot}>\r\n` +
    `Content-Type: application/rlmi+xml;charset="UTF-8"\r\n\r\n${rlmi}\r\n` +
    `--${boundary}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${cidBob}>\r\n` +
    `Content-Type: application/pidf+xml\r\n\r\n${pidf}\r\n\r\n` +
    `--${boundary}--\r\n`;
  const n = unpackListNotify(
    `multipart/related;type="application/rlmi+xml";start="<${cidRoot}>";boundary="${boundary}"`,
    enc.encode(body),
  );
  assert.equal(n.list.uri, "sip:rl-alice@example.test");
  assert.equal(n.list.version, 2);
  const [bob, carol, dave] = n.resources;
  assert.equal(bob.state, "active");
  assert.equal(presenceToStatus(bob.presence!).status, "on-the-phone");
  assert.deepEqual(carol, {
    uri: "sip:carol@example.test",
    state: "pending",
    instanceId: "Scf8UhwQ",
  });
  assert.deepEqual(dave, { uri: "sip:dave@example.test", state: "pending" });
});

/** Splits a raw SIP message into its Content-Type value and body bytes (enough for fixtures). */
async function readNotify(name: string): Promise<{ contentType: string; body: Uint8Array }> {
  const raw = await Deno.readFile(new URL(`./fixtures/rlmi/${name}`, import.meta.url));
  const text = new TextDecoder().decode(raw);
  const end = text.indexOf("\r\n\r\n");
  const header = text.slice(0, end).split("\r\n").find((l) => /^content-type:/i.test(l))!;
  const headBytes = new TextEncoder().encode(text.slice(0, end + 4)).length;
  return {
    contentType: header.slice(header.indexOf(":") + 1).trim(),
    body: raw.subarray(headBytes),
  };
}

// Real NOTIFYs of Kamailio 5.6.3 (presence, presence_xml, pua, rls on db_text) for a
// list of bob, carol and dave after bob and carol PUBLISHed sipkit documents.
Deno.test("unpackListNotify() reads Kamailio rls's first NOTIFY: full state, no instances yet", async () => {
  const { contentType, body } = await readNotify("kamailio_rls_initial.sip");
  const n = unpackListNotify(contentType, body);
  assert.equal(n.list.uri, "sip:friends@example.test");
  assert.equal(n.list.version, 1);
  assert.equal(n.list.fullState, true);
  assert.deepEqual(n.resources, [
    { uri: "sip:bob@example.test", state: "pending" },
    { uri: "sip:carol@example.test", state: "pending" },
    { uri: "sip:dave@example.test", state: "pending" },
  ]);
});

Deno.test("unpackListNotify() reads Kamailio rls's partial update with PIDF parts", async () => {
  const { contentType, body } = await readNotify("kamailio_rls_update.sip");
  const n = unpackListNotify(contentType, body);
  assert.equal(n.list.version, 2);
  assert.equal(n.list.fullState, false);
  assert.deepEqual(
    n.resources.map((r) => [r.uri, r.state, presenceToStatus(r.presence!).status]),
    [["sip:bob@example.test", "active", "away"], ["sip:carol@example.test", "active", "busy"]],
  );
  assert.equal(presenceToStatus(n.resources[0].presence!).note, "bob is away");
});

Deno.test("unpackListNotify() and parseRlmi() throw only SyntaxError on mutated input", async () => {
  const { contentType, body } = await readNotify("kamailio_rls_update.sip");
  let seed = 11;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = enc.encode(`<>/"'=&;:-x \r\n`);
  for (let i = 0; i < 1500; i++) {
    const b = body.slice(0, body.length - rand(40));
    for (let k = 0; k < 1 + rand(4); k++) b[rand(b.length)] = alphabet[rand(alphabet.length)];
    try {
      const n = unpackListNotify(contentType, b);
      for (const r of n.resources) assert.equal(typeof r.uri, "string");
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `case ${i} threw ${e}`);
    }
    try {
      parseRlmi(b);
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `case ${i} threw ${e}`);
    }
  }
});
