import assert from "node:assert/strict";
import { CPIM_HEADERS_NS, cpimExtension, formatCpim, parseCpim } from "../lib/im/cpim.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

// The example of RFC 3862 section 2 ("h:" and "e:" lines), as it travels in a MESSAGE body.
const RFC_EXAMPLE = [
  "From: MR SANDERS <im:piglet@100akerwood.com>",
  "To: Depressed Donkey <im:eeyore@100akerwood.com>",
  "DateTime: 2000-12-13T13:40:00-08:00",
  "Subject: the weather will be fine today",
  "Subject:;lang=fr beau temps prevu pour aujourd'hui",
  "NS: MyFeatures <mid:MessageFeatures@id.foo.com>",
  "Require: MyFeatures.VitalMessageOption",
  "MyFeatures.VitalMessageOption: Confirmation-requested",
  "MyFeatures.WackyMessageOption: Use-silly-font",
  "",
  "Content-type: text/xml; charset=utf-8",
  "Content-ID: <1234567890@foo.com>",
  "",
  "<body>",
  "Here is the text of my message.",
  "</body>",
].join("\r\n");

Deno.test("parseCpim() reads the RFC 3862 example headers, MIME headers and content", () => {
  const m = parseCpim(enc.encode(RFC_EXAMPLE));
  assert.deepEqual(m.from, { name: "MR SANDERS", uri: "im:piglet@100akerwood.com" });
  assert.deepEqual(m.to, [{ name: "Depressed Donkey", uri: "im:eeyore@100akerwood.com" }]);
  assert.equal(m.dateTime, "2000-12-13T13:40:00-08:00");
  assert.deepEqual(m.subject, [
    { text: "the weather will be fine today" },
    { text: "beau temps prevu pour aujourd'hui", lang: "fr" },
  ]);
  assert.deepEqual(m.ns, { MyFeatures: "mid:MessageFeatures@id.foo.com" });
  assert.deepEqual(m.require, ["MyFeatures.VitalMessageOption"]);
  assert.deepEqual(cpimExtension(m, "mid:MessageFeatures@id.foo.com", "WackyMessageOption"), [
    "Use-silly-font",
  ]);
  assert.equal(m.headers[0].namespace, CPIM_HEADERS_NS);
  assert.equal(m.contentType, "text/xml; charset=utf-8");
  assert.deepEqual(m.contentHeaders[1], { name: "Content-ID", value: "<1234567890@foo.com>" });
  assert.equal(dec.decode(m.body), "<body>\r\nHere is the text of my message.\r\n</body>");
});

Deno.test("parseCpim() resolves extension prefixes by namespace, whatever the prefix", () => {
  const m = parseCpim(
    "From: <sip:a@x>\nNS: Z <mid:features@x>\nZ.Urgent: yes\nOther.Urgent: no\n\nContent-Type: text/plain\n\nhi",
  );
  assert.deepEqual(cpimExtension(m, "mid:features@x", "Urgent"), ["yes"]);
  const other = m.headers.find((h) => h.name === "Other.Urgent")!;
  assert.equal(other.namespace, undefined, "an undeclared prefix has no namespace");
});

Deno.test("parseCpim() keeps binary content bytes and reads quoted names with escapes", () => {
  const head = enc.encode(
    'From: "Smith, \\"Al\\" \\u00e9" <im:al@x>\r\ncc: <im:c1@x>\r\ncc: C Two <im:c2@x>\r\n\r\n' +
      "Content-Type: application/octet-stream\r\n\r\n",
  );
  const payload = new Uint8Array([0, 255, 13, 10, 13, 10, 1]);
  const body = new Uint8Array(head.length + payload.length);
  body.set(head);
  body.set(payload, head.length);
  const m = parseCpim(body);
  assert.deepEqual(m.from, { name: 'Smith, "Al" é', uri: "im:al@x" });
  assert.deepEqual(m.cc, [{ uri: "im:c1@x" }, { name: "C Two", uri: "im:c2@x" }]);
  assert.deepEqual(m.body, payload);
});

Deno.test("formatCpim() output parses back: addresses, subjects, NS, Require, extensions", () => {
  const bytes = formatCpim({
    from: { name: "Alice Liddell", uri: "sip:alice@example.test" },
    to: [{ name: "Bob, the builder", uri: "sip:bob@example.test" }, "im:carol@example.test"],
    cc: ["sip:dave@example.test"],
    dateTime: new Date("2026-11-27T21:00:00.123Z"),
    subject: [{ text: "Hello" }, { text: "Bonjour", lang: "fr" }],
    ns: { Ext: "urn:example:ext" },
    require: ["Ext.Priority"],
    extensions: [{ name: "Ext.Priority", value: "high" }],
    contentType: "text/plain;charset=UTF-8",
    contentHeaders: [{ name: "Content-Language", value: "en" }],
    body: "Hi Bob 👋\r\n\r\nsecond paragraph",
  });
  const text = dec.decode(bytes);
  assert.ok(text.startsWith("From: Alice Liddell <sip:alice@example.test>\r\n"));
  assert.ok(text.includes('\r\nTo: "Bob, the builder" <sip:bob@example.test>\r\n'));
  assert.ok(text.includes("\r\nSubject:;lang=fr Bonjour\r\n"));
  const m = parseCpim(bytes);
  assert.deepEqual(m.from, { name: "Alice Liddell", uri: "sip:alice@example.test" });
  assert.deepEqual(m.to, [
    { name: "Bob, the builder", uri: "sip:bob@example.test" },
    { uri: "im:carol@example.test" },
  ]);
  assert.deepEqual(m.cc, [{ uri: "sip:dave@example.test" }]);
  assert.equal(m.dateTime, "2026-11-27T21:00:00.123Z");
  assert.deepEqual(m.subject, [{ text: "Hello" }, { text: "Bonjour", lang: "fr" }]);
  assert.deepEqual(m.require, ["Ext.Priority"]);
  assert.deepEqual(cpimExtension(m, "urn:example:ext", "Priority"), ["high"]);
  assert.equal(m.contentType, "text/plain;charset=UTF-8");
  assert.deepEqual(m.contentHeaders[1], { name: "Content-Language", value: "en" });
  assert.equal(dec.decode(m.body), "Hi Bob 👋\r\n\r\nsecond paragraph");
});

Deno.test("formatCpim() refuses header injection and bad values", async (t) => {
  const cases: Record<string, Parameters<typeof formatCpim>[0]> = {
    "CR/LF in subject": { from: "im:a@x", subject: "hi\r\nTo: <im:evil@x>", body: "" },
    "CR/LF in name": { from: { name: "A\nB", uri: "im:a@x" }, body: "" },
    "bad URI": { from: "not a uri", body: "" },
    "bad DateTime": { from: "im:a@x", dateTime: "yesterday", body: "" },
    "bad extension name": { extensions: [{ name: "A.B.C", value: "x" }], body: "" },
    "bad content type": { from: "im:a@x", contentType: "text", body: "" },
    "no header at all": { body: "x" },
  };
  for (const [name, init] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => formatCpim(init), (e: unknown) => {
        assert.ok(e instanceof TypeError || e instanceof SyntaxError, `got ${e}`);
        return true;
      });
    });
  }
});

Deno.test("parseCpim() rejects malformed messages with a SyntaxError naming the line", async (t) => {
  const cases: Record<string, [string, RegExp]> = {
    "no blank line": ["From: <im:a@x>", /no blank line after the message headers/],
    "no MIME section end": [
      "From: <im:a@x>\r\n\r\nContent-Type: text/plain",
      /no blank line after the encapsulated MIME headers/,
    ],
    "no message headers": ["\r\nContent-Type: text/plain\r\n\r\nx", /no message headers/],
    "header without colon": [
      "From <im:a@x>\r\n\r\nContent-Type: a/b\r\n\r\n",
      /line 1: bad header name "From <im"/,
    ],
    "From without angle brackets": [
      "To: <im:b@x>\r\nFrom: im:a@x\r\n\r\nContent-Type: a/b\r\n\r\n",
      /line 2: From value is not/,
    ],
    "two From headers": [
      "From: <im:a@x>\r\nFrom: <im:b@x>\r\n\r\nContent-Type: a/b\r\n\r\n",
      /more than one From/,
    ],
    "bad DateTime": [
      "From: <im:a@x>\r\nDateTime: 13/12/2000\r\n\r\nContent-Type: a/b\r\n\r\n",
      /DateTime/,
    ],
    "bad NS": ["NS: prefix mid:x\r\n\r\nContent-Type: a/b\r\n\r\n", /NS value/],
    "unterminated string": [
      'From: "Al <im:a@x>\r\n\r\nContent-Type: a/b\r\n\r\n',
      /unterminated string/,
    ],
    "bad escape": ['From: "A\\q" <im:a@x>\r\n\r\nContent-Type: a/b\r\n\r\n', /bad escape/],
    "no Content-Type": ["From: <im:a@x>\r\n\r\nContent-ID: <1@x>\r\n\r\nbody", /no Content-Type/],
    "bad Content-Type": [
      "From: <im:a@x>\r\n\r\nContent-Type: text\r\n\r\nbody",
      /bad Content-Type/,
    ],
    "MIME header without colon": [
      "From: <im:a@x>\r\n\r\nContent-Type: a/b\r\nbroken\r\n\r\n",
      /line 4: MIME header line without a colon/,
    ],
    "bad header name": ["A.B.C: x\r\n\r\nContent-Type: a/b\r\n\r\n", /bad header name/],
    "parameter without value": ["Subject:;lang hi\r\n\r\nContent-Type: a/b\r\n\r\n", /parameter/],
  };
  for (const [name, [input, re]] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parseCpim(input), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse CPIM message: /);
        assert.match(e.message, re);
        return true;
      });
    });
  }
  await t.step("invalid UTF-8 in headers", () => {
    const bad = new Uint8Array([
      ...enc.encode("From: <im:a@x>\r\nSubject: "),
      0xff,
      ...enc.encode("\r\n\r\nContent-Type: a/b\r\n\r\n"),
    ]);
    assert.throws(() => parseCpim(bad), /not valid UTF-8/);
  });
});

Deno.test("parseCpim() throws only SyntaxError on random garbage", () => {
  let seed = 3;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const base = enc.encode(RFC_EXAMPLE);
  for (let i = 0; i < 3000; i++) {
    const b = base.slice(0, rand(base.length + 1));
    for (let k = 0; k < 3; k++) if (b.length) b[rand(b.length)] = rand(128);
    try {
      parseCpim(b);
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `case ${i} threw ${e}`);
    }
  }
});
