import assert from "node:assert/strict";
import {
  canonicalName,
  cloneMessage,
  createRequest,
  createResponse,
  formatMessage,
  formatVia,
  parseCSeq,
  parseMediaType,
  parseMessage,
  parseSipDate,
  parseUri,
  parseVia,
  type ResponseOptions,
  SipHeaders,
  SipMessageError,
  type SipRequest,
  type SipResponse,
  SipSyntaxError,
} from "../lib/sip/message.ts";
import {
  isFinalStatus,
  isGlobalFailureStatus,
  isProvisionalStatus,
  isRequestFailureStatus,
  isServerFailureStatus,
  isStatus,
  reasonPhrase,
  STATUS_CODE,
  STATUS_TEXT,
} from "../lib/sip/status.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

const INVITE = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
  "Max-Forwards: 70",
  'To: "Bob" <sip:bob@biloxi.example.com>',
  'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
  "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
  "CSeq: 314159 INVITE",
  "Contact: <sip:alice@pc33.atlanta.example.com>",
  "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
  "Content-Type: application/sdp",
  "Content-Length: 4",
  "",
  "v=0\n",
].join("\r\n");

function throwsSyntax(fn: () => unknown, message: RegExp): SipSyntaxError {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SipSyntaxError, `expected SipSyntaxError, got ${error}`);
  assert.match(error.message, message);
  return error;
}

function withBody(head: string, body: Uint8Array): Uint8Array {
  const h = enc.encode(head);
  const out = new Uint8Array(h.length + body.length);
  out.set(h);
  out.set(body, h.length);
  return out;
}

Deno.test("SipHeaders looks up names case-insensitively and expands compact forms", () => {
  const h = new SipHeaders([
    { name: "v", value: "SIP/2.0/UDP a;branch=z9hG4bK1" },
    { name: "CALL-ID", value: "x@y" },
    { name: "X-Custom", value: "1" },
  ]);
  assert.deepEqual(h.fields.map((f) => f.name), ["Via", "Call-ID", "X-Custom"]);
  assert.equal(h.get("via"), "SIP/2.0/UDP a;branch=z9hG4bK1");
  assert.equal(h.get("i"), "x@y");
  assert.equal(h.get("x-custom"), "1");
  assert.equal(h.has("Contact"), false);
  assert.equal(h.get("m"), undefined);
  for (
    const [short, long] of [
      ["c", "Content-Type"],
      ["e", "Content-Encoding"],
      ["f", "From"],
      ["k", "Supported"],
      ["l", "Content-Length"],
      ["m", "Contact"],
      ["o", "Event"],
      ["r", "Refer-To"],
      ["b", "Referred-By"],
      ["s", "Subject"],
      ["t", "To"],
      ["u", "Allow-Events"],
      ["x", "Session-Expires"],
      ["y", "Identity"],
    ]
  ) {
    assert.equal(canonicalName(short), long);
    assert.equal(canonicalName(short.toUpperCase()), long);
  }
  assert.equal(canonicalName("www-authenticate"), "WWW-Authenticate");
  assert.equal(canonicalName("cseq"), "CSeq");
});

Deno.test("SipHeaders.values() splits on commas outside quotes and <>", () => {
  const h = SipHeaders.from([
    ["Contact", '"Doe, John" <sip:j@a.com;x=1,2>, <sip:k@b.com>'],
    ["Contact", "sip:l@c.com"],
    ["WWW-Authenticate", 'Digest realm="a, b", nonce="n", qop="auth,auth-int"'],
    ["Date", "Sat, 13 Nov 2010 23:29:00 GMT"],
    ["Allow", "INVITE, ACK,,BYE"],
  ]);
  assert.deepEqual(h.values("m"), [
    '"Doe, John" <sip:j@a.com;x=1,2>',
    "<sip:k@b.com>",
    "sip:l@c.com",
  ]);
  assert.deepEqual(h.getAll("Contact").length, 2);
  assert.deepEqual(h.values("WWW-Authenticate").length, 1);
  assert.deepEqual(h.values("Date"), ["Sat, 13 Nov 2010 23:29:00 GMT"]);
  assert.deepEqual(h.values("Allow"), ["INVITE", "ACK", "BYE"]);
});

Deno.test("SipHeaders set, append, prepend and delete keep order", () => {
  const h = SipHeaders.from({ Via: ["SIP/2.0/UDP a", "SIP/2.0/UDP b"], To: "<sip:x@y>" });
  h.prepend("v", "SIP/2.0/UDP top");
  assert.deepEqual(h.getAll("Via"), ["SIP/2.0/UDP top", "SIP/2.0/UDP a", "SIP/2.0/UDP b"]);
  h.append("Route", "<sip:r>");
  h.set("via", "SIP/2.0/UDP only");
  assert.deepEqual([...h], [["Via", "SIP/2.0/UDP only"], ["To", "<sip:x@y>"], [
    "Route",
    "<sip:r>",
  ]]);
  h.delete("route");
  assert.equal(h.has("Route"), false);
  h.set("Max-Forwards", "70");
  assert.equal(h.fields.at(-1)?.name, "Max-Forwards");
});

Deno.test("parseVia() keeps received and rport", () => {
  const v = parseVia("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77;rport=5061;received=192.0.2.9");
  assert.deepEqual(v, {
    protocol: "SIP/2.0",
    transport: "UDP",
    host: "192.0.2.1",
    port: 5060,
    params: { branch: "z9hG4bK77", rport: "5061", received: "192.0.2.9" },
  });
  const flag = parseVia("SIP/2.0/tcp client.example.com;rport;branch=z9hG4bKx");
  assert.equal(flag.params.rport, null);
  assert.equal(flag.transport, "TCP");
  assert.equal(flag.port, undefined);
});

Deno.test("parseVia() reads IPv6 sent-by, maddr, ttl and LWS", () => {
  const v = parseVia(
    "SIP / 2.0 / UDP [2001:db8::9] : 5070 ; maddr = 239.255.255.1 ; ttl=16;branch=z9hG4bKa",
  );
  assert.equal(v.host, "2001:db8::9");
  assert.equal(v.port, 5070);
  assert.deepEqual(v.params, { maddr: "239.255.255.1", ttl: "16", branch: "z9hG4bKa" });
  assert.equal(
    formatVia(v),
    "SIP/2.0/UDP [2001:db8::9]:5070;maddr=239.255.255.1;ttl=16;branch=z9hG4bKa",
  );
});

Deno.test("parseVia() rejects malformed values with the reason", () => {
  throwsSyntax(() => parseVia("SIP/2.0 host"), /Cannot parse Via header: expected "\/"/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP"), /missing host|whitespace/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP h;ttl=300"), /invalid ttl/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP h;rport=x"), /invalid rport/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP h;branch"), /empty branch/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP h:99999"), /invalid port/);
  throwsSyntax(() => parseVia("SIP/2.0/UDP h;;"), /empty parameter name/);
});

Deno.test("formatVia() refuses CR/LF and bad hosts", () => {
  const v = parseVia("SIP/2.0/UDP h;branch=z9hG4bK1");
  assert.throws(() => formatVia({ ...v, params: { branch: "a\r\nb" } }), TypeError);
  assert.throws(() => formatVia({ ...v, host: "a b" }), TypeError);
  assert.equal(
    formatVia({ ...v, params: { branch: "z", rport: null } }),
    "SIP/2.0/UDP h;branch=z;rport",
  );
});

Deno.test("parseCSeq() and parseMediaType() read their values", () => {
  assert.deepEqual(parseCSeq("4711 INVITE"), { seq: 4711, method: "INVITE" });
  throwsSyntax(() => parseCSeq("4711"), /whitespace after the sequence number/);
  throwsSyntax(() => parseCSeq("2147483648 INVITE"), /too large/);
  assert.deepEqual(parseMediaType('Text/Plain ; charset="UTF-8"'), {
    type: "text/plain",
    params: { charset: "UTF-8" },
  });
});

Deno.test("parseMessage() reads a request and its typed headers", () => {
  const m = parseMessage(enc.encode(INVITE)) as SipRequest;
  assert.equal(m.kind, "request");
  assert.equal(m.method, "INVITE");
  assert.equal(m.uri.user, "bob");
  assert.equal(m.version, "SIP/2.0");
  assert.equal(m.topVia.params.branch, "z9hG4bK776asdhds");
  assert.equal(m.topVia.params.rport, null);
  assert.equal(m.from.displayName, "Alice");
  assert.equal(m.fromTag, "1928301774");
  assert.equal(m.toTag, undefined);
  assert.equal(m.callId, "a84b4c76e66710@pc33.atlanta.example.com");
  assert.deepEqual(m.cseq, { seq: 314159, method: "INVITE" });
  assert.equal(m.maxForwards, 70);
  assert.equal(m.contentLength, 4);
  assert.equal(m.contentType, "application/sdp");
  assert.deepEqual(m.recordRoute.map((r) => r.uri.host), ["p1.example.com", "p2.example.com"]);
  assert.deepEqual(m.route, []);
  assert.equal(m.contact[0].uri.host, "pc33.atlanta.example.com");
  assert.equal(m.text, "v=0\n");
  assert.equal(m.expires, undefined);
});

Deno.test("parseMessage() unfolds continuation lines and expands compact forms", () => {
  const m = parseMessage(
    "SIP/2.0 180 Ringing\r\n" +
      "v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n" +
      "\t SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n" +
      "v: SIP/2.0/UDP c.example.com;branch=z9hG4bK3\r\n" +
      "f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\n  ;tag=2\r\n" +
      "i: abc\r\nCSeq: 1\r\n   INVITE\r\nSubject: one\r\n two\r\n\tthree\r\nl: 0\r\n\r\n",
  ) as SipResponse;
  assert.equal(m.status, 180);
  assert.equal(m.reason, "Ringing");
  assert.deepEqual(m.via.map((v) => v.host), ["a.example.com", "b.example.com", "c.example.com"]);
  assert.equal(m.toTag, "2");
  assert.deepEqual(m.cseq, { seq: 1, method: "INVITE" });
  assert.equal(m.headers.get("Subject"), "one two three");
  assert.equal(m.headers.getAll("Via").length, 2);
});

Deno.test("parseMessage() cuts a datagram body to Content-Length", () => {
  const head = INVITE.slice(0, INVITE.length - 4);
  const m = parseMessage(enc.encode(head + "v=0\nEXTRA BYTES"));
  assert.equal(m.text, "v=0\n");
});

Deno.test("parseMessage() rejects a body shorter than Content-Length", () => {
  const head = INVITE.slice(0, INVITE.length - 4);
  const e = throwsSyntax(
    () => parseMessage(head + "v="),
    /Content-Length is 4 but the body has 2 bytes/,
  );
  assert.ok(e instanceof SipMessageError);
  assert.equal(e.status, 400);
  assert.equal(e.header, "Content-Length");
  assert.equal(e.line, 11);
  assert.equal(e.partial?.callId, "a84b4c76e66710@pc33.atlanta.example.com");
});

Deno.test("parseMessage() takes the rest of a datagram when Content-Length is missing", () => {
  const text = INVITE.replace("Content-Length: 4\r\n", "");
  assert.equal(parseMessage(enc.encode(text + "more")).text, "v=0\nmore");
});

Deno.test("parseMessage() keeps the body as bytes, never decoding it", () => {
  const body = new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0d, 0x0a]);
  const head = INVITE.slice(0, INVITE.length - 4).replace("Content-Length: 4", "Content-Length: 7");
  const m = parseMessage(withBody(head, body));
  assert.deepEqual(m.body, body);
  assert.deepEqual(parseMessage(formatMessage(m)).body, body);
});

Deno.test("parseMessage() decodes UTF-8 headers and rejects invalid UTF-8 in them", () => {
  const ok = INVITE.replace('"Alice"', '"Алиса 😀"');
  assert.equal(parseMessage(enc.encode(ok)).from.displayName, "Алиса 😀");
  const bytes = enc.encode(INVITE.replace('"Alice"', '"Al?ce"'));
  bytes[bytes.indexOf(0x3f)] = 0xff;
  throwsSyntax(() => parseMessage(bytes), /not valid UTF-8/);
});

Deno.test("parseMessage() ignores CRLFs before the start line and accepts bare LF", () => {
  const m = parseMessage(enc.encode("\r\n\r\n" + INVITE));
  assert.equal(m.kind, "request");
  const lf = parseMessage(INVITE.replaceAll("\r\n", "\n"));
  assert.equal(lf.callId, "a84b4c76e66710@pc33.atlanta.example.com");
  assert.equal(lf.text, "v=0\n");
});

Deno.test("parseMessage() says where and why a message is malformed", () => {
  const line = (e: SipSyntaxError) => [e.header, e.line];
  let e = throwsSyntax(
    () => parseMessage(INVITE.replace("CSeq: 314159 INVITE", "CSeq: x INVITE")),
    /CSeq header/,
  );
  assert.deepEqual(line(e), ["CSeq", 7]);
  e = throwsSyntax(
    () => parseMessage(INVITE.replace("Max-Forwards: 70", "Max-Forwards: 256")),
    /Max-Forwards/,
  );
  assert.deepEqual(line(e), ["Max-Forwards", 3]);
  e = throwsSyntax(
    () => parseMessage(INVITE.replace("Max-Forwards: 70", "Max-Forwards 70")),
    /line 3: missing ":"/,
  );
  assert.equal(e.line, 3);
  e = throwsSyntax(
    () => parseMessage(INVITE.replace("Via: SIP/2.0/UDP pc33", "Via: SIP/2.0/UDP pc33;;")),
    /Via header/,
  );
  assert.deepEqual(line(e), ["Via", 2]);
  e = throwsSyntax(
    () => parseMessage(INVITE.replace(/Call-ID: .*\r\n/, "")),
    /missing Call-ID header/,
  );
  assert.equal(e.header, "Call-ID");
  throwsSyntax(() => parseMessage("SIP/2.0 99 Low\r\n\r\n"), /invalid status code "99"/);
  throwsSyntax(
    () => parseMessage("HTTP/1.1 200 OK\r\n\r\n"),
    /start line: invalid character "\/" in method/,
  );
  throwsSyntax(() => parseMessage("OPTIONS sip:a@b SIP/2\r\n\r\n"), /invalid SIP-Version "SIP\/2"/);
  throwsSyntax(() => parseMessage(""), /empty message/);
  throwsSyntax(() => parseMessage(" continued\r\n"), /start line/);
});

Deno.test("parseMessage() reads start lines near the SIP/2.0 fast paths like any other", () => {
  const rest = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n" +
    "Call-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
  const res = (line: string) => parseMessage(line + "\r\n" + rest) as SipResponse;
  assert.deepEqual([res("SIP/2.0 200 OK").status, res("SIP/2.0 200 OK").reason], [200, "OK"]);
  assert.deepEqual([res("SIP/2.0 200 ").status, res("SIP/2.0 200 ").reason], [200, ""]);
  assert.deepEqual([res("SIP/2.0 404").status, res("SIP/2.0 404").reason], [404, ""]);
  assert.equal(res("sip/2.0 180 Ringing").status, 180);
  assert.equal(res("SIP/2.0 699 x y").reason, "x y");
  throwsSyntax(() => res("SIP/2.0 099 Low"), /invalid status code "099"/);
  throwsSyntax(() => res("SIP/2.0 2 0 OK"), /invalid status code "2"/);
  throwsSyntax(() => res("SIP/2.0 20a OK"), /invalid status code "20a"/);
  throwsSyntax(() => res("SIP/2.0 2000 OK"), /invalid status code "2000"/);
  throwsSyntax(() => res("SIP/2.0  200 OK"), /invalid status code ""/);
  throwsSyntax(() => res("SIP/2.0 200 O\u0001K"), /control character/);
  assert.throws(() => res("SIP/2.1 200 OK"), /unsupported SIP-Version "SIP\/2.1"/);
  const req = (line: string) => parseMessage(line + "\r\n" + rest) as SipRequest;
  assert.equal(req("OPTIONS sip:a@b SIP/2.0").uri.host, "b");
  assert.equal(req("OPTIONS sip:a@b sip/2.0").version, "SIP/2.0");
  assert.equal(req("OPTIONS sip:a@b:5060;lr SIP/2.0").uri.port, 5060);
  throwsSyntax(() => req("OPTIONS sip:a@b  SIP/2.0"), /more than one space before the SIP-Version/);
  throwsSyntax(() => req("OPTIONS  sip:a@b SIP/2.0"), /more than one space after the method/);
  throwsSyntax(() => req("OPTIONS SIP/2.0"), /missing SIP-Version/);
  throwsSyntax(() => req("OPTIONS sip:a@b SIP/2.0 "), /whitespace at the end/);
  throwsSyntax(() => req("OPTIONS sip:a b SIP/2.0"), /whitespace inside the Request-URI/);
  assert.throws(() => req("OPTIONS sip:a@b SIP/2.00"), /unsupported SIP-Version "SIP\/2.00"/);
});

Deno.test("parseMessage() reads ASCII bytes (names and Call-ID checked on the bytes) as it reads text", () => {
  const enc = new TextEncoder();
  const outcome = (input: string | Uint8Array) => {
    try {
      const m = parseMessage(input);
      return JSON.stringify([
        m.callId,
        m.from,
        m.to,
        m.topVia,
        m.cseq,
        m.maxForwards,
        m.headers.fields,
      ]);
    } catch (e) {
      const err = e as SipSyntaxError;
      return JSON.stringify([err.message, err.header, err.line]);
    }
  };
  const variants: [string, string][] = [
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: abc"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: a b"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: @x"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: x@"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: x@y@z"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID:"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "i: abc\r\n  def"],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "cALL-id:  x.y  "],
    ["Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: \u00e9t\u00e9"],
    ["Max-Forwards: 70", "MAX-FORWARDS : 69"],
    ["Max-Forwards: 70", "Max-Forwards\u00e9: 69"],
    ["Max-Forwards: 70", "Max Forwards: 69"],
    ["Max-Forwards: 70", "Max-Forwards: 70\r\nX-Name\u00e9: 1"],
    ["Max-Forwards: 70", "Max-Forwards: 70\r\nV: SIP/2.0/TCP other;branch=z9hG4bK2"],
    ["Max-Forwards: 70", "Max-Forwards: 70\r\nX\u00ff: 1"],
    ['To: "Bob"', 'To: "Bob \u00e9"'],
    ["Via: SIP/2.0/UDP", "via : SIP/2.0/UDP"],
    ["pc33.atlanta.example.com;branch", "PC33.Atlanta.example.com;branch"],
    ["pc33.atlanta.example.com;branch", "pc33.atl@nta.example.com;branch"],
    ["pc33.atlanta.example.com;branch", "[2001:DB8::1]:5062;branch"],
    ["pc33.atlanta.example.com;branch", "pc33.atl\u00e9nta.example.com;branch"],
    ["branch=z9hG4bK776asdhds", "branch=z9hG4bK776as{dhds"],
    ["branch=z9hG4bK776asdhds", 'branch="z9hG4bK776 asdhds"'],
    ["branch=z9hG4bK776asdhds;rport", "branch=z9hG4bK776asdhds;rport=5x"],
    ["branch=z9hG4bK776asdhds;rport", "branch=z9hG4bK776asdhds;received=[::1];rport"],
    ["tag=1928301774", "tag=19283\u00e901774"],
    ["tag=1928301774", "tag=19283/01774"],
    ["tag=1928301774", "TAG = abc ; x=y"],
    ["<sip:bob@biloxi.example.com>", "<sip:bob@BILOXI.example.com:5070;transport=TCP>"],
    ["<sip:bob@biloxi.example.com>", "<sip:bob@bil_oxi.example.com>"],
    ["<sip:bob@biloxi.example.com>", "<sip:bob@bil*oxi.example.com>"],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@Biloxi.Example.COM;lr"],
    ["CSeq: 314159 INVITE", "CSeq: 314159 INVITEX"],
    ["CSeq: 314159 INVITE", "CSeq: 314159 invite"],
    ["CSeq: 314159 INVITE", "CSeq: 314159 INV\u00e9TE"],
    ["SIP/2.0/UDP pc33", "SIP/2.0/tcp pc33"],
    ["SIP/2.0/UDP pc33", "SIP/2.0/UDPX pc33"],
    ["SIP/2.0/UDP pc33", "SIP/2.0/U{DP pc33"],
    [";branch=", ";BRANCH=a;Received=1.2.3.4;lr;reg-id=2;+sip.instance=x;branch="],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:b%6Fb@biloxi.example.com"],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:b{ob@biloxi.example.com"],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:bob:pw@biloxi.example.com"],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:biloxi.example.com"],
    ["<sip:alice@atlanta.example.com>", "<sip:+1-555;x=y@atlanta.example.com>"],
    ["INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@biloxi.exa%mple.com"],
    ["Content-Type", "Content-Type\t"],
  ];
  for (const [from, to] of variants) {
    const text = INVITE.replace(from, to);
    assert.notEqual(text, INVITE);
    assert.equal(outcome(enc.encode(text)), outcome(text), to);
    // CRLFs before the start line (skipped): the text starts further into the bytes.
    assert.equal(outcome(enc.encode("\r\n\r\n" + text)), outcome(text), to);
  }
});

Deno.test("parseMessage() keeps unknown headers raw and in order", () => {
  const m = parseMessage(
    INVITE.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nX-Weird: a,,b ;; c"),
  );
  assert.equal(m.headers.get("x-weird"), "a,,b ;; c");
  assert.equal(m.headers.fields[2].name, "X-Weird");
});

Deno.test("typed getters are cached and refreshed after header edits", () => {
  const m = parseMessage(INVITE);
  const from = m.from;
  assert.equal(m.from, from);
  m.headers.set("From", "<sip:carol@example.com>;tag=9");
  assert.equal(m.from.uri.user, "carol");
  m.headers.fields[3] = { name: "From", value: "<sip:dave@example.com>;tag=9" };
  assert.equal(m.from.uri.user, "carol"); // direct edits need invalidate()
  m.invalidate();
  assert.equal(m.from.uri.user, "dave");
});

Deno.test("Contact: * yields one entry with scheme *", () => {
  const m = createRequest("REGISTER", "sip:example.com", {
    headers: { Contact: "*", Expires: "0" },
  });
  assert.equal(m.contact.length, 1);
  assert.equal(m.contact[0].uri.scheme, "*");
  assert.equal(m.expires, 0);
});

Deno.test("formatMessage() writes the start line, headers and Content-Length from the body", () => {
  const m = parseMessage(INVITE);
  m.body = enc.encode("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
  const text = dec.decode(formatMessage(m));
  assert.ok(text.startsWith("INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: "));
  assert.match(text, /\r\nContent-Length: 31\r\n\r\nv=0\r\n/);
  assert.equal(text.match(/Content-Length/g)?.length, 1);
  const again = parseMessage(formatMessage(m));
  assert.deepEqual(again.headers.fields.map((f) => f.name), m.headers.fields.map((f) => f.name));
  const noCl = createRequest("OPTIONS", "sip:a@b.example.com", { headers: { "Call-ID": "1" } });
  assert.ok(dec.decode(formatMessage(noCl)).endsWith("Call-ID: 1\r\nContent-Length: 0\r\n\r\n"));
});

Deno.test("formatMessage() refuses CR or LF in header values, reason phrases and URIs", () => {
  const m = parseMessage(INVITE);
  m.headers.set("Subject", "hi\r\nVia: SIP/2.0/UDP evil");
  assert.throws(
    () => formatMessage(m),
    (e: unknown) => e instanceof TypeError && /CR or LF/.test(e.message),
  );
  const r = createResponse(parseMessage(INVITE) as SipRequest, 200, { reason: "OK\r\nX: y" });
  assert.throws(() => formatMessage(r), TypeError);
  const q = parseMessage(INVITE) as SipRequest;
  q.uri = { ...q.uri, user: "bob\r\n" };
  assert.throws(() => formatMessage(q), TypeError);
  const n = parseMessage(INVITE) as SipRequest;
  n.headers.append("Bad Name", "x");
  assert.throws(() => formatMessage(n), TypeError);
  n.headers.delete("Bad Name");
  n.method = "IN VITE";
  assert.throws(() => formatMessage(n), TypeError);
});

Deno.test("createResponse() copies Via, From, To, Call-ID, CSeq and adds the To tag", () => {
  const req = parseMessage(INVITE) as SipRequest;
  const res = createResponse(req, 180, { toTag: "a6c85cf" });
  assert.equal(res.reason, "Ringing");
  assert.deepEqual(res.headers.fields.map((f) => f.name), [
    "Via",
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Record-Route",
  ]);
  assert.equal(res.toTag, "a6c85cf");
  assert.equal(res.topVia.params.branch, "z9hG4bK776asdhds");
  const trying = createResponse(req, 100);
  assert.equal(trying.headers.has("Record-Route"), false);
  assert.equal(trying.toTag, undefined);
  const fail = createResponse(req, 486, { headers: { "Retry-After": "60" } });
  assert.equal(fail.reason, "Busy Here");
  assert.equal(fail.headers.get("Retry-After"), "60");
  // The To tag already there is kept.
  const tagged = parseMessage(
    INVITE.replace(
      'To: "Bob" <sip:bob@biloxi.example.com>',
      "To: <sip:bob@biloxi.example.com>;tag=x",
    ),
  ) as SipRequest;
  assert.equal(createResponse(tagged, 200, { toTag: "y" }).toTag, "x");
});

Deno.test("createResponse() answers the partial message of a SipMessageError", () => {
  const bad = INVITE.replace("Max-Forwards: 70", "Max-Forwards: many");
  let error: unknown;
  try {
    parseMessage(bad);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SipMessageError);
  assert.equal(error.partial?.kind, "request");
  const res = createResponse(error.partial as SipRequest, error.status);
  assert.equal(res.status, 400);
  assert.equal(res.callId, "a84b4c76e66710@pc33.atlanta.example.com");
});

Deno.test("createRequest() builds a message from parts and cloneMessage() copies it", () => {
  const req = createRequest("MESSAGE", "sip:bob@example.com", {
    headers: [["Via", "SIP/2.0/UDP h;branch=z9hG4bK5"], ["Max-Forwards", "70"]],
    body: "hello ☺",
    contentType: "text/plain;charset=UTF-8",
  });
  assert.equal(req.uri.user, "bob");
  assert.equal(req.contentType, "text/plain");
  assert.equal(req.body.length, 9);
  const copy = cloneMessage(req);
  copy.headers.set("Max-Forwards", "69");
  copy.uri.user = "carol";
  copy.body[0] = 0x48;
  assert.equal(req.maxForwards, 70);
  assert.equal(copy.maxForwards, 69);
  assert.equal(req.uri.user, "bob");
  assert.equal(req.text, "hello ☺");
  const uri = parseUri("sip:x@example.com");
  assert.equal(createRequest("OPTIONS", uri).uri, uri);
});

Deno.test("status codes have reason phrases, types and guards", () => {
  assert.equal(STATUS_TEXT[STATUS_CODE.RequestTerminated], "Request Terminated");
  assert.equal(reasonPhrase(STATUS_CODE.VersionNotSupported), "Version Not Supported");
  assert.equal(reasonPhrase(499), "Bad Request");
  assert.equal(reasonPhrase(183), "Session Progress");
  assert.ok(isStatus(481));
  assert.ok(!isStatus(299));
  assert.ok(isProvisionalStatus(183));
  assert.ok(!isFinalStatus(183));
  assert.ok(isFinalStatus(200));
  assert.ok(isRequestFailureStatus(486) && !isRequestFailureStatus(503));
  assert.ok(isServerFailureStatus(503) && !isServerFailureStatus(603));
  assert.ok(isGlobalFailureStatus(603) && !isGlobalFailureStatus(486));
  // Every code has its reason phrase and sits in the right class.
  for (const [name, code] of Object.entries(STATUS_CODE)) {
    assert.ok(STATUS_TEXT[code].length > 0, name);
    assert.ok(code >= 100 && code <= 699, name);
  }
});

Deno.test("parseMessage() with stream: true requires an exact Content-Length", () => {
  const framed = enc.encode(INVITE);
  assert.equal(parseMessage(framed, { stream: true }).body.length, 4);
  throwsSyntax(
    () => parseMessage(INVITE.replace("Content-Length: 4\r\n", ""), { stream: true }),
    /missing Content-Length header \(required on streams\)/,
  );
  throwsSyntax(
    () => parseMessage(enc.encode(INVITE + "OPTIONS"), { stream: true }),
    /7 bytes after the 4-byte body/,
  );
  // The same bytes as a datagram: the extra octets are dropped.
  assert.equal(parseMessage(enc.encode(INVITE + "OPTIONS")).body.length, 4);
});

Deno.test("SipHeaders.prepend() puts an absent header first", () => {
  const h = SipHeaders.from([["To", "<sip:a@b>"]]);
  h.prepend("Via", "SIP/2.0/UDP h;branch=z9hG4bK1");
  assert.deepEqual(h.fields.map((f) => f.name), ["Via", "To"]);
});

Deno.test("SipMessageError carries the partial message and the failed header", () => {
  let error: unknown;
  try {
    parseMessage(
      INVITE.replace('From: "Alice" <sip:alice@atlanta.example.com>', "From: <sip:alice@>"),
    );
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SipMessageError);
  assert.match(error.message, /^Cannot parse From header: missing host/);
  assert.equal(error.header, "From");
  assert.equal(error.line, 5);
  assert.equal(error.status, 400);
  assert.equal(error.partial?.callId, "a84b4c76e66710@pc33.atlanta.example.com");
  assert.throws(() => error.partial?.from, SipSyntaxError);
});

Deno.test("parseMessage() rejects a repeated single-value header and a CSeq method mismatch", () => {
  let e = throwsSyntax(
    () =>
      parseMessage(INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 INVITE\r\nCall-ID: other")),
    /Call-ID header: more than one Call-ID header/,
  );
  assert.equal(e.line, 8);
  e = throwsSyntax(
    () => parseMessage(INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE")),
    /method "BYE" does not match the Request-Line method "INVITE"/,
  );
  assert.equal((e as SipMessageError).status, 400);
});

Deno.test("typed getters read Event, Subscription-State, Min-Expires and option tags", () => {
  const m = createRequest("NOTIFY", "sip:a@example.com", {
    headers: [
      ["o", "Presence;id=7"],
      ["Subscription-State", "terminated;reason=timeout;retry-after=30"],
      ["Min-Expires", "60"],
      ["k", "eventlist, timer"],
      ["Require", "eventlist"],
      ["Allow", "INVITE, ACK,BYE"],
    ],
  });
  assert.deepEqual(m.event, { value: "presence", params: { id: "7" } });
  assert.deepEqual(m.subscriptionState, {
    value: "terminated",
    params: { reason: "timeout", "retry-after": "30" },
  });
  assert.equal(m.minExpires, 60);
  assert.deepEqual(m.supported, ["eventlist", "timer"]);
  assert.deepEqual(m.require, ["eventlist"]);
  assert.deepEqual(m.allow, ["INVITE", "ACK", "BYE"]);
  const none = createRequest("OPTIONS", "sip:a@example.com");
  assert.equal(none.event, undefined);
  assert.deepEqual(none.supported, []);
  none.headers.set("Event", ";id=1");
  assert.throws(
    () => none.event,
    (e: unknown) => e instanceof SipSyntaxError && e.header === "Event",
  );
});

Deno.test("parseMessage() throws only SipSyntaxError on mutated messages, and what it accepts formats back", () => {
  // Deterministic PRNG (mulberry32) so a failure can be replayed.
  let seed = 0x5eed;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  const dir = new URL("./fixtures/rfc4475/", import.meta.url);
  const bases = [enc.encode(INVITE)];
  for (const e of Deno.readDirSync(dir)) bases.push(Deno.readFileSync(new URL(e.name, dir)));
  const special = [0, 9, 10, 13, 32, 34, 37, 44, 47, 58, 59, 60, 62, 64, 91, 93, 0x80, 0xc3, 0xff];
  let accepted = 0;
  for (let round = 0; round < 4000; round++) {
    let bytes = pick(bases).slice();
    for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
      const at = Math.floor(rand() * bytes.length);
      const r = rand();
      if (r < 0.5) {
        bytes[at] = rand() < 0.7 ? pick(special) : Math.floor(rand() * 256);
      } else if (r < 0.75) {
        const len = 1 + Math.floor(rand() * 8);
        bytes = new Uint8Array([...bytes.subarray(0, at), ...bytes.subarray(at + len)]);
      } else {
        const len = 1 + Math.floor(rand() * 16);
        bytes = new Uint8Array([
          ...bytes.subarray(0, at),
          ...bytes.subarray(at, at + len),
          ...bytes.subarray(at),
        ]);
      }
    }
    let m;
    try {
      m = parseMessage(bytes);
    } catch (e) {
      assert.ok(e instanceof SipSyntaxError, `round ${round}: ${e}`);
      continue;
    }
    accepted++;
    for (
      const read of [
        () => m.via,
        () => m.contact,
        () => m.recordRoute,
        () => m.route,
        () => m.mediaType,
        () => m.expires,
        () => m.date,
        () => m.event,
        () => m.subscriptionState,
        () => m.headers.values("Accept"),
      ]
    ) {
      try {
        read();
      } catch (e) {
        assert.ok(e instanceof SipSyntaxError, `round ${round}: ${e}`);
      }
    }
    const again = parseMessage(formatMessage(m));
    const strip = (f: { name: string }[]) => f.filter((x) => x.name !== "Content-Length");
    assert.deepEqual(strip(again.headers.fields), strip(m.headers.fields), `round ${round}`);
    assert.deepEqual(again.body, m.body);
    assert.deepEqual(again.topVia, m.topVia);
    assert.deepEqual(again.from, m.from);
  }
  assert.ok(accepted > 500, `only ${accepted} mutated messages parsed`);
});

Deno.test("parseMessage() reads IPv6 references in the Request-URI, Via and Contact (RFC 5118)", () => {
  const m = parseMessage(
    [
      "REGISTER sip:[2001:db8::10]:5070 SIP/2.0",
      "Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=2001:db8::9:255;rport",
      "Max-Forwards: 70",
      'From: "Caller" <sip:caller@[2001:db8::1]>;tag=810x2',
      "To: <sip:caller@[2001:db8::1]>",
      "Call-ID: SSG9559905523997077@hlau_4100",
      "CSeq: 98176 REGISTER",
      'Contact: "Caller" <sip:caller@[::ffff:192.0.2.1]:5060;transport=udp>',
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n"),
  ) as SipRequest;
  assert.equal(m.uri.host, "2001:db8::10");
  assert.equal(m.uri.port, 5070);
  assert.equal(m.topVia.host, "2001:db8::9:1");
  assert.equal(m.topVia.port, 6050);
  assert.equal(m.topVia.params.received, "2001:db8::9:255");
  assert.equal(m.from.uri.host, "2001:db8::1");
  assert.equal(m.contact[0].uri.host, "::ffff:192.0.2.1");
  const text = dec.decode(formatMessage(m));
  assert.ok(text.startsWith("REGISTER sip:[2001:db8::10]:5070 SIP/2.0\r\n"));
  // RFC 5118 4.3: inside the brackets it is all address, no port.
  assert.equal(parseUri("sip:[2001:db8::10:5070]").port, undefined);
  // Without brackets an IPv6 address is not a host.
  throwsSyntax(() => parseUri("sip:user@2001:db8::10"), /invalid port/);
});

Deno.test("createResponse() answers a partial message whose To is unreadable without touching To", () => {
  let error: unknown;
  try {
    parseMessage(INVITE.replace('To: "Bob" <sip:bob@biloxi.example.com>', 'To: "Bob <sip:bob@x>'));
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SipMessageError);
  assert.equal(error.header, "To");
  const res = createResponse(error.partial as SipRequest, error.status, { toTag: "t1" });
  assert.equal(res.headers.get("To"), '"Bob <sip:bob@x>');
  assert.ok(dec.decode(formatMessage(res)).startsWith("SIP/2.0 400 Bad Request\r\n"));
});

Deno.test("parseSipDate() reads RFC 1123 dates in GMT only (section 20.17)", () => {
  assert.equal(
    parseSipDate("Sat, 13 Nov 2010 23:29:00 GMT").toISOString(),
    "2010-11-13T23:29:00.000Z",
  );
  throwsSyntax(() => parseSipDate("Fri, 01 Jan 2010 16:00:00 EST"), /time zone "EST" is not GMT/);
  throwsSyntax(() => parseSipDate("Sat, 13 Nov 2010 25:29:00 GMT"), /not an RFC 1123 date/);
  throwsSyntax(() => parseSipDate("13 Nov 2010 23:29:00 GMT"), /not an RFC 1123 date/);
  throwsSyntax(() => parseSipDate("Sat, 13 Foo 2010 23:29:00 GMT"), /not an RFC 1123 date/);
});

Deno.test("formatMessage() with compact writes the short header names and parses back the same", () => {
  const req = parseMessage(
    "MESSAGE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
      "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
      "Call-ID: c1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
  );
  const long = formatMessage(req);
  const short = formatMessage(req, { compact: true });
  const text = new TextDecoder().decode(short);
  for (const line of ["v: ", "f: ", "t: ", "i: ", "c: ", "l: 2", "Max-Forwards: 70", "CSeq: 1"]) {
    assert.ok(text.includes(`\r\n${line}`), `missing ${line}`);
  }
  assert.ok(short.length < long.length);
  const back = parseMessage(short);
  assert.equal(back.callId, "c1");
  assert.equal(back.from.params.tag, "a");
  assert.equal(back.contentType, "text/plain");
  assert.equal(back.text, "hi");
});

Deno.test("parseMessage() finds the body after non-ASCII headers, bare LF and a U+FFFD", async (t) => {
  const cases: [string, string][] = [
    ["non-ASCII display name", INVITE.replace('"Alice"', '"Алиса 😀"')],
    ["bare LF line ends", INVITE.replaceAll("\r\n", "\n")],
    ["bare LF empty line after CRLF lines", INVITE.replace("\r\n\r\n", "\r\n\n")],
    ["a valid U+FFFD in a header", INVITE.replace('"Alice"', '"Al\uFFFDce"')],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => {
      const m = parseMessage(enc.encode(text));
      assert.equal(m.callId, "a84b4c76e66710@pc33.atlanta.example.com");
      assert.equal(m.text, "v=0\n");
      assert.equal(m.headers.get("Max-Forwards"), "70");
    });
  }
});

Deno.test("parseMessage() reads the header fields on first use, the same as written", () => {
  const m = parseMessage(enc.encode(
    "OPTIONS sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nX-Long:  a\r\n" +
      "  b \r\n\tc\r\nf: <sip:a@example.com>\r\n ;tag=1\r\nt: <sip:b@example.com>\r\ni: x\r\n" +
      "CSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
  ));
  assert.equal(m.fromTag, "1");
  assert.deepEqual(m.headers.fields, [
    { name: "Via", value: "SIP/2.0/UDP h;branch=z9hG4bK1" },
    { name: "X-Long", value: "a b c" },
    { name: "From", value: "<sip:a@example.com> ;tag=1" },
    { name: "To", value: "<sip:b@example.com>" },
    { name: "Call-ID", value: "x" },
    { name: "CSeq", value: "1 OPTIONS" },
    { name: "Content-Length", value: "0" },
  ]);
  // invalidate() before any use of the fields keeps them.
  const n = parseMessage(formatMessage(m));
  n.invalidate();
  assert.equal(n.headers.get("X-Long"), "a b c");
  assert.equal(n.toTag, undefined);
});

Deno.test("parseMessage() rejects a stray CR in any header line with 400", async (t) => {
  const lines = INVITE.split("\r\n");
  for (let i = 1; lines[i] !== ""; i++) {
    const name = lines[i].slice(0, lines[i].indexOf(":"));
    await t.step(name, () => {
      const bad = [...lines];
      bad[i] = bad[i].slice(0, -2) + "\r" + bad[i].slice(-2);
      let error: unknown;
      try {
        parseMessage(enc.encode(bad.join("\r\n")));
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof SipMessageError, `${name}: ${error}`);
      assert.equal(error.status, 400);
    });
  }
  await t.step("second value of the top Via line", () => {
    const bad = INVITE.replace(";rport", ";rport, SIP/2.0/UDP p\r1.example.com");
    assert.throws(() => parseMessage(enc.encode(bad)), SipMessageError);
  });
});

Deno.test("parseMessage() recognizes header, parameter, transport and method names in one pass", async (t) => {
  await t.step("tracked headers in any case and compact form", () => {
    const m = parseMessage(
      [
        "OPTIONS sip:bob@example.com SIP/2.0",
        "vIA: SIP/2.0/udp h.example.com;BRANCH=z9hG4bK1;RPort",
        "MAX-FORWARDS: 69",
        "t: <sip:bob@example.com>",
        "FROM: <sip:alice@example.com>;Tag=a1",
        "call-id: x@h",
        "cseq: 7 OPTIONS",
        "L: 0",
        "",
        "",
      ].join("\r\n"),
    );
    assert.equal(m.topVia.transport, "UDP");
    assert.deepEqual(m.topVia.params, { branch: "z9hG4bK1", rport: null });
    assert.equal(m.maxForwards, 69);
    assert.equal(m.fromTag, "a1");
    assert.equal(m.to.uri.user, "bob");
    assert.equal(m.callId, "x@h");
    assert.equal(m.cseq.seq, 7);
    assert.equal(m.contentLength, 0);
  });
  await t.step("names that only start like a tracked one are other headers", () => {
    const m = parseMessage(
      INVITE.replace(
        "Max-Forwards: 70",
        "Max-Forwards: 70\r\nVias: x\r\nTox: y\r\nFrom-X: z\r\nCSeqs: 1\r\nCall-IDs: q\r\nVi: 1",
      ),
    );
    assert.equal(m.to.displayName, "Bob");
    assert.equal(m.fromTag, "1928301774");
    assert.equal(m.cseq.seq, 314159);
    assert.equal(m.callId, "a84b4c76e66710@pc33.atlanta.example.com");
    assert.equal(m.via.length, 1);
    assert.equal(m.headers.get("Tox"), "y");
    assert.equal(m.headers.get("vi"), "1");
  });
  await t.step("other transports: known ones uppercase, unknown ones uppercased", () => {
    assert.equal(parseVia("SIP/2.0/wss h;branch=z9hG4bK1").transport, "WSS");
    assert.equal(parseVia("SIP/2.0/Tls h;branch=z9hG4bK1").transport, "TLS");
    assert.equal(parseVia("SIP/2.0/udpx h;branch=z9hG4bK1").transport, "UDPX");
  });
  await t.step("a parameter name that only starts like a common one keeps its own name", () => {
    const v = parseVia("SIP/2.0/UDP h;branches=1;BRANCH=z9hG4bK1;ta=2");
    assert.deepEqual(v.params, { branches: "1", branch: "z9hG4bK1", ta: "2" });
  });
  await t.step("methods are case-sensitive", () => {
    const lower = INVITE.replace("INVITE sip:", "invite sip:");
    const e = throwsSyntax(() => parseMessage(lower), /method "INVITE" does not match .* "invite"/);
    assert.equal((e as SipMessageError).status, 501);
    const m = parseMessage(lower.replace("CSeq: 314159 INVITE", "CSeq: 314159 invite"));
    assert.equal(m.kind === "request" && m.method, "invite");
    assert.equal(m.cseq.method, "invite");
  });
});

Deno.test("createResponse: the response's top Via reads as the request's (taken from its parse, the same text)", () => {
  const req = parseMessage(
    "MESSAGE sip:bob@192.0.2.4 SIP/2.0\r\n" +
      "Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKvia1;rport=5070;received=192.0.2.9, " +
      "SIP/2.0/TCP proxy.example.test;branch=z9hG4bKvia2\r\n" +
      "Via: SIP/2.0/UDP far.example.test;branch=z9hG4bKvia3\r\n" +
      "From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n" +
      "Call-ID: via-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
  ) as SipRequest;
  for (const options of [{}, { toTag: "t", headers: [["Via", "SIP/2.0/UDP x;branch=z9hG4bKx"]] }]) {
    const res = createResponse(req, 200, options as ResponseOptions);
    const fresh = parseMessage(formatMessage(res)) as SipResponse;
    assert.deepEqual(res.topVia, fresh.topVia);
    assert.deepEqual(res.via, fresh.via);
    assert.equal(res.topVia.params.received, "192.0.2.9");
  }
  // Not yet parsed on the request: the response parses its own.
  const raw = parseMessage(formatMessage(req)) as SipRequest;
  raw.headers.set("Max-Forwards", "9"); // drops the request's cached values
  const res = createResponse(raw, 200);
  assert.deepEqual(res.topVia, req.topVia);
});
