import assert from "node:assert/strict";
import {
  formatNameAddr,
  formatUri,
  parseNameAddr,
  parseUri,
  SipSyntaxError,
  type Uri,
} from "../lib/sip/message.ts";

function throwsSyntax(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SipSyntaxError, String(e));
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("parseUri() reads every part of a SIP URI", () => {
  const uri = parseUri(
    "SIP:alice:secret@Atlanta.Example.COM:5070;Transport=TCP;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent",
  );
  assert.deepEqual(uri, {
    scheme: "sip",
    user: "alice",
    password: "secret",
    host: "atlanta.example.com",
    port: 5070,
    params: { transport: "TCP", lr: null, maddr: "239.255.255.1" },
    headers: { subject: "project x", priority: "urgent" },
  });
});

Deno.test("parseUri() handles sips, no user part and IPv4", () => {
  assert.deepEqual(parseUri("sips:192.0.2.4"), {
    scheme: "sips",
    host: "192.0.2.4",
    params: {},
    headers: {},
  });
});

Deno.test("parseUri() strips the brackets of IPv6 references and formatUri() restores them", () => {
  const uri = parseUri("sip:bob@[2001:DB8::10]:5070;transport=udp");
  assert.equal(uri.host, "2001:db8::10");
  assert.equal(uri.port, 5070);
  assert.equal(formatUri(uri), "sip:bob@[2001:db8::10]:5070;transport=udp");
  assert.equal(parseUri("sip:[::1]").host, "::1");
  throwsSyntax(() => parseUri("sip:[2001:db8::10"), /unterminated IPv6 reference/);
  throwsSyntax(() => parseUri("sip:[fe80::zz]"), /invalid IPv6 address/);
});

Deno.test("parseUri() decodes escapes in user, password, params and headers", () => {
  const uri = parseUri(
    "sip:sips%3Auser%40example.com:p%40ss@example.net;n%61me=v%61lue%25%34%31?R%6Fute=%3Csip:x%3E",
  );
  assert.equal(uri.user, "sips:user@example.com");
  assert.equal(uri.password, "p@ss");
  assert.deepEqual(uri.params, { name: "value%41" });
  assert.deepEqual(uri.headers, { Route: "<sip:x>" });
  throwsSyntax(() => parseUri("sip:a%G1@example.com"), /invalid escape "%G1"/);
  throwsSyntax(() => parseUri("sip:a%4@example.com"), /invalid escape/);
});

Deno.test("parseUri() reads tel URIs with parameters (RFC 3966)", () => {
  const uri = parseUri("tel:+1-201-555-0123;phone-context=example.com;ext=22");
  assert.deepEqual(uri, {
    scheme: "tel",
    user: "+1-201-555-0123",
    host: "",
    params: { "phone-context": "example.com", ext: "22" },
    headers: {},
  });
  assert.equal(formatUri(uri), "tel:+1-201-555-0123;phone-context=example.com;ext=22");
  throwsSyntax(() => parseUri("tel:+1 201"), /invalid telephone number/);
});

Deno.test("parseUri() keeps other schemes opaque", () => {
  const uri = parseUri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
  assert.equal(uri.scheme, "urn");
  assert.equal(uri.opaque, "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
  assert.equal(formatUri(uri), "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
});

Deno.test("parseUri() rejects malformed URIs with the reason", () => {
  throwsSyntax(() => parseUri("example.com"), /Cannot parse URI "example.com": missing scheme/);
  throwsSyntax(() => parseUri("sip:alice@example.com:99999"), /invalid port/);
  throwsSyntax(() => parseUri("sip:alice@example.com:"), /invalid port/);
  throwsSyntax(() => parseUri("sip:alice@"), /missing host/);
  throwsSyntax(() => parseUri("sip:@example.com"), /empty user part/);
  throwsSyntax(() => parseUri("sip:alice@example.com;;lr"), /empty URI parameter name/);
  throwsSyntax(() => parseUri("sip:alice@exa mple.com"), /unexpected " "/);
  throwsSyntax(() => parseUri("sip:a@b.com?x"), /URI header without "="/);
  throwsSyntax(() => parseUri("1sip:a@b"), /invalid scheme/);
});

Deno.test("formatUri() escapes what must be escaped and round-trips", () => {
  const uri: Uri = {
    scheme: "sip",
    user: "I have spaces@home",
    host: "example.net",
    params: { "my param": "a;b" },
    headers: { Subject: "a&b=c" },
  };
  const text = formatUri(uri);
  assert.equal(text, "sip:I%20have%20spaces%40home@example.net;my%20param=a%3Bb?Subject=a%26b%3Dc");
  assert.deepEqual(parseUri(text), uri);
  // Characters allowed in the user part stay as they are.
  assert.equal(
    formatUri(parseUri("sip:user;par=u%40example.net@example.com")),
    "sip:user;par=u%40example.net@example.com",
  );
});

Deno.test("formatUri() refuses CR or LF in any part", () => {
  const base: Uri = { scheme: "sip", user: "bob", host: "example.com", params: {}, headers: {} };
  const bad: Uri[] = [
    { ...base, user: "bob\r\nVia: evil" },
    { ...base, password: "x\ny" },
    { ...base, params: { lr: "a\rb" } },
    { ...base, params: { "a\nb": null } },
    { ...base, headers: { Subject: "a\r\nb" } },
    { scheme: "foo", host: "", params: {}, headers: {}, opaque: "bar\r\nbaz" },
  ];
  for (const uri of bad) {
    assert.throws(
      () => formatUri(uri),
      (e: unknown) => e instanceof TypeError && /CR or LF/.test(e.message),
    );
  }
  assert.throws(() => formatUri({ ...base, host: "exa\r\nmple.com" }), TypeError);
  assert.throws(() => formatUri({ ...base, port: 70000 }), TypeError);
});

Deno.test("parseNameAddr() reads quoted display names with escapes", () => {
  const v = parseNameAddr('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8');
  assert.equal(v.displayName, 'J Rosenberg \\"');
  assert.equal(v.uri.user, "jdrosen");
  assert.deepEqual(v.params, { tag: "98asjd8" });
});

Deno.test("parseNameAddr() reads token display names and no display name", () => {
  assert.equal(parseNameAddr("A. G. Bell <sip:agb@bell-telephone.com>").displayName, "A. G. Bell");
  assert.equal(parseNameAddr("caller<sip:caller@example.com>").displayName, "caller");
  assert.equal(parseNameAddr("<sip:caller@example.com>").displayName, undefined);
});

Deno.test("parseNameAddr() gives addr-spec parameters to the header (RFC 3261 20.10)", () => {
  const spec = parseNameAddr("sip:+12125551212@server.phone2net.com;tag=887s;expires=60");
  assert.deepEqual(spec.uri.params, {});
  assert.deepEqual(spec.params, { tag: "887s", expires: "60" });
  const named = parseNameAddr("<sip:server.example.com;lr>;expires=60");
  assert.deepEqual(named.uri.params, { lr: null });
  assert.deepEqual(named.params, { expires: "60" });
});

Deno.test("parseNameAddr() reads quoted parameter values and LWS around separators", () => {
  const v = parseNameAddr(
    '<sip:alice@192.0.2.5:5060;transport=tcp> ; +sip.instance = "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>" ;q=0.7',
  );
  assert.equal(v.params["+sip.instance"], "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>");
  assert.equal(v.params.q, "0.7");
});

Deno.test("parseNameAddr() reads * as a URI with scheme *", () => {
  const v = parseNameAddr("*");
  assert.equal(v.uri.scheme, "*");
  assert.equal(formatNameAddr(v), "*");
});

Deno.test("parseNameAddr() rejects malformed values", () => {
  throwsSyntax(() => parseNameAddr("<sip:a@example.com"), /missing ">"/);
  throwsSyntax(() => parseNameAddr('"Bob <sip:a@example.com>'), /unterminated quoted string/);
  throwsSyntax(() => parseNameAddr("Bell, Alexander <sip:a@example.com>"), /must be quoted/);
  throwsSyntax(() => parseNameAddr("sip:a@example.com?Route=x"), /must be enclosed in <>/);
  throwsSyntax(() => parseNameAddr("<sip:a@example.com>;tag=1;"), /empty parameter name/);
  throwsSyntax(() => parseNameAddr("<sip:a@example.com> junk"), /unexpected "j"/);
});

Deno.test("formatNameAddr() quotes the display name and round-trips", () => {
  const v = parseNameAddr(
    '"Quoted \\"name\\"" <sip:a@example.com;lr>;tag=x;+sip.instance="<urn:a>";flag',
  );
  const text = formatNameAddr(v);
  assert.equal(
    text,
    '"Quoted \\"name\\"" <sip:a@example.com;lr>;tag=x;+sip.instance="<urn:a>";flag',
  );
  assert.deepEqual(parseNameAddr(text), v);
  assert.equal(
    formatNameAddr({ uri: parseUri("sip:a@example.com"), params: {} }),
    "<sip:a@example.com>",
  );
});

Deno.test("formatAddress() writes <> only when the URI needs them (section 20.10)", async () => {
  const { formatAddress } = await import("../lib/sip/uri.ts");
  const plain = (text: string) => formatAddress({ uri: parseUri(text), params: { tag: "t" } });
  assert.equal(plain("sip:a@example.com"), "sip:a@example.com;tag=t");
  assert.equal(plain("sip:a@example.com;lr"), "<sip:a@example.com;lr>;tag=t");
  assert.equal(plain("sip:a@example.com?Subject=x"), "<sip:a@example.com?Subject=x>;tag=t");
  assert.equal(plain("sip:a,b@example.com"), "<sip:a,b@example.com>;tag=t");
  assert.equal(plain("SIPS:a@example.com"), "sips:a@example.com;tag=t");
  assert.equal(plain("im:a@example.com"), "im:a@example.com;tag=t");
});

Deno.test("formatNameAddr() refuses CR or LF in the display name and parameters", () => {
  const uri = parseUri("sip:a@example.com");
  assert.throws(
    () => formatNameAddr({ displayName: "Eve\r\nVia: x", uri, params: {} }),
    (e: unknown) => e instanceof TypeError && /display name/.test(e.message),
  );
  assert.throws(() => formatNameAddr({ uri, params: { tag: "a\r\nb" } }), TypeError);
  assert.throws(() => formatNameAddr({ uri, params: { "ta g": "a" } }), TypeError);
});
