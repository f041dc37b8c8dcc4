// RFC 4475 torture messages (tests/fixtures/rfc4475/*.dat, bit-exact): every
// valid one parses to the values the RFC calls out; every invalid one is
// rejected with a SipSyntaxError subclass that says where and why, and, where
// the RFC asks for a specific answer, carries the status a UAS should send.

import assert from "node:assert/strict";
import {
  createResponse,
  formatMessage,
  parseMessage,
  SipMessageError,
  type SipRequest,
  type SipResponse,
  SipSyntaxError,
  SipVersionError,
} from "../lib/sip/message.ts";

const dir = new URL("./fixtures/rfc4475/", import.meta.url);
const load = (name: string) => Deno.readFileSync(new URL(`${name}.dat`, dir));
const req = (name: string) => {
  const m = parseMessage(load(name));
  assert.equal(m.kind, "request", `${name} is a request`);
  return m as SipRequest;
};
const res = (name: string) => {
  const m = parseMessage(load(name));
  assert.equal(m.kind, "response", `${name} is a response`);
  return m as SipResponse;
};
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Expects parseMessage to throw; checks class, message, header, line, status. */
function rejects(
  name: string,
  expected: {
    message: RegExp;
    header?: string;
    line?: number;
    status?: number;
    partial?: boolean;
    // deno-lint-ignore no-explicit-any
    cls?: abstract new (...args: any[]) => SipMessageError;
  },
): SipMessageError {
  let error: unknown;
  try {
    parseMessage(load(name));
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof SyntaxError, `${name}: throws a SyntaxError`);
  assert.ok(error instanceof SipSyntaxError);
  assert.ok(error instanceof (expected.cls ?? SipMessageError), `${name}: ${error}`);
  const e = error as SipMessageError;
  assert.match(e.message, expected.message);
  if (expected.header !== undefined) assert.equal(e.header, expected.header);
  if (expected.line !== undefined) assert.equal(e.line, expected.line);
  assert.equal(e.status, expected.status ?? 400);
  if (expected.partial !== undefined) assert.equal(e.partial !== undefined, expected.partial);
  return e;
}

/** A valid message survives format + parse with the same start line and values. */
function roundTrips(name: string): void {
  const a = parseMessage(load(name));
  const b = parseMessage(formatMessage(a));
  assert.deepEqual(b.headers.fields, a.headers.fields);
  assert.deepEqual(b.body, a.body);
  assert.deepEqual(b.via, a.via);
  assert.deepEqual(b.from, a.from);
  assert.deepEqual(b.to, a.to);
  if (a.kind === "request" && b.kind === "request") {
    assert.equal(b.method, a.method);
    assert.deepEqual(b.uri, a.uri);
  }
}

Deno.test("RFC 4475 3.1.1: valid messages parse to the right values", async (t) => {
  await t.step("wsinv: a short tortuous INVITE (3.1.1.1)", () => {
    const m = req("wsinv");
    assert.equal(m.method, "INVITE");
    assert.equal(m.uri.host, "chair-dnrc.example.com");
    assert.deepEqual(m.uri.params, { unknownparam: null });
    // TO on a folded line, LWS around ";" and "=".
    assert.equal(m.to.uri.user, "vivekg");
    assert.equal(m.to.params.tag, "1918181833n");
    // Escaped quote and backslash in the display name.
    assert.equal(m.from.displayName, 'J Rosenberg \\"');
    assert.equal(m.from.params.tag, "98asjd8");
    assert.equal(m.maxForwards, 68); // "0068"
    assert.deepEqual(m.cseq, { seq: 9, method: "INVITE" }); // "0009" folded
    assert.equal(m.callId, "wsinv.ndaksdj@192.0.2.1");
    assert.equal(m.contentLength, 150);
    // Three Via values over two header lines, with LWS inside sent-protocol.
    assert.deepEqual(
      m.via.map((v) => [v.protocol, v.transport, v.host, v.params.branch]),
      [
        ["SIP/2.0", "UDP", "192.0.2.2", "390skdjuw"],
        ["SIP/2.0", "TCP", "spindle.example.com", "z9hG4bK9ikj8"],
        ["SIP/2.0", "UDP", "192.168.255.111", "z9hG4bK30239"],
      ],
    );
    assert.equal(m.headers.get("Subject"), ""); // "s :" with an empty value
    assert.equal(m.headers.get("NewFangledHeader"), "newfangled value continued newfangled value");
    assert.equal(m.headers.get("unknownheaderwithunusualvalue"), ";;,,;;,;");
    assert.equal(m.route.length, 1);
    assert.deepEqual(m.route[0].uri.params, {
      lr: null,
      unknownwith: "value",
      "unknown-no-value": null,
    });
    assert.equal(m.contact.length, 1);
    assert.equal(m.contact[0].displayName, 'Quoted string ""');
    assert.deepEqual(m.contact[0].params, { newparam: "newvalue", secondparam: null, q: "0.33" });
    assert.equal(m.contentType, "application/sdp");
    assert.equal(m.body.length, 150);
    roundTrips("wsinv");
  });

  await t.step("intmeth: wide range of valid characters (3.1.1.2)", () => {
    const m = req("intmeth");
    assert.equal(m.method, "!interesting-Method0123456789_*+`.%indeed'~");
    assert.equal(m.cseq.method, m.method);
    assert.equal(m.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(m.uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    assert.equal(m.uri.host, "example.com");
    assert.equal(m.topVia.params.branch, "z9hG4bK-.!%66*_+`'~");
    assert.equal(m.to.displayName, "BEL:\x07 NUL:\x00 DEL:\x7f");
    assert.equal(m.to.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    assert.equal(m.from.displayName, "token1~` token2'+_ token3*%!.-");
    assert.equal(m.from.params["fromparam''~+*_!.-%"], "работающий");
    assert.equal(m.from.params.tag, "_token~1'+`*%!-.");
    assert.equal(m.callId, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert.equal(m.maxForwards, 255);
    assert.equal(m.headers.get("extensionHeader-!.%*+_`'~"), "\ufeff大停電");
    roundTrips("intmeth");
  });

  await t.step("esc01: valid use of the % escape (3.1.1.3)", () => {
    const m = req("esc01");
    assert.equal(m.uri.user, "sips:user@example.com");
    assert.equal(m.uri.host, "example.net");
    assert.equal(m.to.uri.user, "user");
    assert.equal(m.from.uri.user, "I have spaces");
    const c = m.contact[0].uri;
    assert.equal(c.user, "caller");
    // "%6C%72" is the flag "lr"; "v%61lue%25%34%31" decodes once to "value%41".
    assert.deepEqual(c.params, { lr: null, name: "value%41" });
    assert.equal(m.callId, "esc01.239409asdfakjkn23onasd0-3234");
    roundTrips("esc01");
  });

  await t.step("escnull: escaped NULs in URIs (3.1.1.4)", () => {
    const m = req("escnull");
    assert.equal(m.to.uri.user, "null-\x00-null");
    assert.equal(m.from.uri.user, "null-\x00-null");
    assert.deepEqual(m.contact.map((c) => c.uri.user), ["\x00", "\x00\x00"]);
    roundTrips("escnull");
  });

  await t.step("esc02: % where it is not an escape (3.1.1.5)", () => {
    const m = req("esc02");
    assert.equal(m.method, "RE%47IST%45R"); // methods are never unescaped
    assert.equal(m.cseq.method, "RE%47IST%45R");
    assert.equal(m.to.displayName, "%Z%45");
    assert.equal(m.topVia.params.branch, "z9hG4bK209%fzsnel234");
    // "C%6Fntact" is an unknown header, not Contact.
    assert.equal(m.contact.length, 2);
    assert.equal(m.headers.get("C%6Fntact"), "<sip:alias2@host2.example.com>");
    roundTrips("esc02");
  });

  await t.step("lwsdisp: no LWS between display name and < (3.1.1.6)", () => {
    const m = req("lwsdisp");
    assert.equal(m.from.displayName, "caller");
    assert.equal(m.from.uri.user, "caller");
    assert.equal(m.from.params.tag, "323");
  });

  await t.step("longreq: long values in header fields (3.1.1.7)", () => {
    const m = req("longreq");
    assert.equal(
      m.to.displayName,
      `I have a user name of ${"extreme".repeat(10)} proportion`,
    );
    assert.equal(m.to.uri.port, 6000);
    assert.equal(m.to.uri.params.unknownparam1, `very${"long".repeat(20)}value`);
    assert.equal(m.to.uri.params[`longparam${"name".repeat(25)}`], "shortvalue");
    assert.equal(m.to.uri.params[`very${"long".repeat(25)}parameternamewithnovalue`], null);
    assert.equal(m.from.uri.user, "amazinglylongcallername".repeat(5));
    assert.equal(m.from.params.tag, `12${"982".repeat(50)}424`);
    assert.equal(m.callId, `longreq.one${"really".repeat(20)}longcallid`);
    assert.equal(m.via.length, 34);
    assert.equal(m.via[0].host, "sip33.example.com");
    assert.equal(m.via[33].params.branch, `very${"long".repeat(50)}branchvalue`);
    assert.equal(m.via[33].params.received, "192.0.2.5");
    assert.equal(m.contact[0].uri.user, "amazinglylongcallername".repeat(5));
    assert.equal(m.body.length, 150);
    roundTrips("longreq");
  });

  await t.step("dblreq: extra octets after Content-Length are dropped (3.1.1.8)", () => {
    const m = req("dblreq");
    assert.equal(m.method, "REGISTER");
    assert.equal(m.body.length, 0);
    assert.equal(m.callId, "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
  });

  await t.step("semiuri: semicolons in the URI user part (3.1.1.9)", () => {
    const m = req("semiuri");
    assert.equal(m.uri.user, "user;par=u@example.net");
    assert.equal(m.uri.host, "example.com");
    assert.deepEqual(m.uri.params, {});
    assert.deepEqual(m.headers.values("Accept"), [
      "application/sdp",
      "application/pkcs7-mime",
      "multipart/mixed",
      "multipart/signed",
      "message/sip",
      "message/sipfrag",
    ]);
    roundTrips("semiuri");
  });

  await t.step("transports: varied and unknown transports (3.1.1.10)", () => {
    const m = req("transports");
    assert.deepEqual(m.via.map((v) => v.transport), ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert.equal(m.callId, "transports.kijh4akdnaqjkwendsasfdj");
  });

  await t.step("mpart01: multipart body kept as bytes (3.1.1.11)", () => {
    const m = req("mpart01");
    assert.equal(m.method, "MESSAGE");
    assert.equal(m.contentType, "multipart/mixed");
    assert.equal(m.mediaType?.params.boundary, "7a9cbec02ceef655");
    assert.equal(m.body.length, 553);
    // The binary part survives untouched (a UTF-8 decode would change it).
    const raw = load("mpart01");
    assert.deepEqual(m.body, raw.subarray(raw.length - 553));
    assert.equal(m.topVia.params.rport, null);
    assert.equal(m.date?.toISOString(), "2005-10-15T04:44:56.000Z");
    roundTrips("mpart01");
  });

  await t.step("unreason: UTF-8 reason phrase (3.1.1.12)", () => {
    const m = res("unreason");
    assert.equal(m.status, 200);
    assert.equal(m.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert.equal(m.body.length, 154);
    const again = parseMessage(formatMessage(m)) as SipResponse;
    assert.equal(again.reason, m.reason);
  });

  await t.step("noreason: empty reason phrase (3.1.1.13)", () => {
    const m = res("noreason");
    assert.equal(m.status, 100);
    assert.equal(m.reason, "");
    assert.equal(m.to.params.tag, "902jndnke3");
  });
});

Deno.test("RFC 4475 3.1.2: invalid messages are rejected with where and why", async (t) => {
  await t.step("badinv01: extraneous separators in Via (3.1.2.1)", () => {
    rejects("badinv01", { message: /Via header: empty parameter name/, header: "Via", line: 7 });
  });
  await t.step("clerr: Content-Length larger than the body: 400 over UDP (3.1.2.2)", () => {
    const e = rejects("clerr", {
      message: /Content-Length is 9999 but the body has \d+ bytes/,
      header: "Content-Length",
      line: 10,
      partial: true,
    });
    assert.equal(e.partial?.callId, "clerr.0ha0isndaksdjweiafasdk3");
  });
  await t.step("ncl: negative Content-Length (3.1.2.3)", () => {
    rejects("ncl", {
      message: /Content-Length header: "-999"/,
      header: "Content-Length",
      line: 10,
    });
  });
  await t.step("scalar02: CSeq above 2**31 gets a 400 (3.1.2.4)", () => {
    rejects("scalar02", {
      message: /CSeq header: sequence number .* too large/,
      header: "CSeq",
      line: 5,
    });
  });
  await t.step("scalarlg: overlarge scalars in a response, which is dropped (3.1.2.5)", () => {
    rejects("scalarlg", {
      message: /CSeq header: sequence number .* too large/,
      header: "CSeq",
      line: 5,
    });
  });
  await t.step("quotbal: unterminated quoted string (3.1.2.6)", () => {
    rejects("quotbal", { message: /To header: unterminated quoted string/, header: "To", line: 2 });
  });
  // 3.1.2.7 to 3.1.2.10: "reasonable always to reject ... with a 400": the
  // error carries the request (placeholder Request-URI) so a UAS can answer.
  const answerable = (e: SipMessageError) => {
    const partial = e.partial as SipRequest;
    assert.equal(partial.uri.scheme, "");
    const answer = createResponse(partial, e.status);
    assert.equal(answer.status, 400);
    assert.equal(answer.callId, partial.headers.get("Call-ID"));
  };
  await t.step("ltgtruri: <> around the Request-URI (3.1.2.7)", () => {
    answerable(rejects("ltgtruri", {
      message: /start line: the Request-URI must not be enclosed in <>/,
      line: 1,
      partial: true,
    }));
  });
  await t.step("lwsruri: whitespace inside the Request-URI (3.1.2.8)", () => {
    answerable(rejects("lwsruri", {
      message: /start line: whitespace inside the Request-URI/,
      line: 1,
      partial: true,
    }));
  });
  await t.step("lwsstart: several SP between Request-Line elements (3.1.2.9)", () => {
    answerable(rejects("lwsstart", {
      message: /start line: more than one space after the method/,
      line: 1,
      partial: true,
    }));
  });
  await t.step("trws: SP at the end of the Request-Line (3.1.2.10)", () => {
    answerable(rejects("trws", {
      message: /start line: whitespace at the end of the Request-Line/,
      line: 1,
      partial: true,
    }));
  });
  await t.step("escruri: escaped headers in the Request-URI (3.1.2.11)", () => {
    const e = rejects("escruri", {
      message: /Request-URI must not contain headers/,
      line: 1,
      partial: true,
    });
    assert.equal((e.partial as SipRequest).uri.headers.Route, "<sip:example.com>");
  });
  await t.step("baddate: non-GMT Date is rejected when the Date is read (3.1.2.12)", () => {
    // The RFC: reject only when the Date matters; the parser accepts the
    // message and the `date` getter throws.
    const m = req("baddate");
    assert.equal(m.headers.get("Date"), "Fri, 01 Jan 2010 16:00:00 EST");
    assert.throws(() => m.date, (e: unknown) => {
      assert.ok(e instanceof SipSyntaxError);
      assert.match(e.message, /Date header: time zone "EST" is not GMT/);
      assert.equal(e.header, "Date");
      assert.equal(e.line, 8);
      return true;
    });
  });
  await t.step("regbadct: Contact with URI headers outside <> (3.1.2.13)", () => {
    // Contact is parsed on first use: the message parses, reading Contact throws.
    const m = req("regbadct");
    assert.throws(() => m.contact, (e: unknown) => {
      assert.ok(e instanceof SipSyntaxError);
      assert.match(e.message, /Contact header: a URI with "\?" or "," must be enclosed in <>/);
      assert.equal(e.header, "Contact");
      assert.equal(e.line, 8);
      return true;
    });
  });
  await t.step("badaspec: spaces inside <> (3.1.2.14)", () => {
    rejects("badaspec", { message: /To header: whitespace inside <>/, header: "To", line: 5 });
  });
  await t.step("baddn: unquoted display names with non-token characters (3.1.2.15)", () => {
    rejects("baddn", {
      message: /From header: display name with "," must be quoted/,
      header: "From",
      line: 4,
    });
  });
  await t.step("badvers: SIP/7.0 gets 505 Version Not Supported (3.1.2.16)", () => {
    const e = rejects("badvers", {
      message: /unsupported SIP-Version "SIP\/7.0"/,
      status: 505,
      line: 1,
      partial: true,
      cls: SipVersionError,
    });
    assert.equal((e as SipVersionError).version, "SIP/7.0");
    assert.equal(e.reason, "Version Not Supported");
    assert.equal(e.partial?.from.displayName, "A. Bell");
  });
  await t.step("mismatch01: CSeq method differs from the Request-Line: 400 (3.1.2.17)", () => {
    rejects("mismatch01", {
      message: /CSeq header: method "INVITE" does not match the Request-Line method "OPTIONS"/,
      header: "CSeq",
      status: 400,
      partial: true,
    });
  });
  await t.step("mismatch02: unknown method with CSeq mismatch: 501 (3.1.2.18)", () => {
    rejects("mismatch02", {
      message: /does not match the Request-Line method "NEWMETHOD"/,
      header: "CSeq",
      line: 6,
      status: 501,
      partial: true,
    });
  });
  await t.step("bigcode: status code above 699 (3.1.2.19)", () => {
    rejects("bigcode", {
      message: /start line: invalid status code "4294967301"/,
      line: 1,
      partial: false,
    });
  });
  await t.step("badcseq: CSeq without a number", () => {
    rejects("badcseq", {
      message: /CSeq header: missing sequence number/,
      header: "CSeq",
      line: 7,
    });
  });
});

Deno.test("RFC 4475 3.2: transaction-layer cases parse", async (t) => {
  await t.step("badbranch: branch is only the magic cookie (3.2.1)", () => {
    // The parser accepts it; the transaction layer may answer 400 or fall
    // back to RFC 2543 matching.
    const m = req("badbranch");
    assert.equal(m.topVia.params.branch, "z9hG4bK");
  });
});

Deno.test("RFC 4475 3.3: application-layer cases", async (t) => {
  await t.step("insuf: missing Call-ID, From, To gets 400 (3.3.1)", () => {
    rejects("insuf", { message: /missing From header/, header: "From" });
  });
  await t.step("unkscm: unknown Request-URI scheme parses; the UA answers 416 (3.3.2)", () => {
    const m = req("unkscm");
    assert.equal(m.uri.scheme, "nobodyknowsthisscheme");
    assert.equal(m.uri.opaque, "totallyopaquecontent");
  });
  await t.step("novelsc: known but atypical scheme parses (3.3.3)", () => {
    const m = req("novelsc");
    assert.equal(m.uri.scheme, "soap.beep");
    assert.equal(m.uri.opaque, "//192.0.2.103:3002");
  });
  await t.step("unksm2: non-SIP schemes in To, From, Contact parse (3.3.4)", () => {
    const m = req("unksm2");
    assert.equal(m.to.uri.scheme, "isbn");
    assert.equal(m.to.uri.opaque, "2983792873");
    assert.equal(m.from.uri.scheme, "http");
    assert.equal(m.from.params.tag, "3234233");
    assert.equal(m.contact[0].uri.scheme, "name");
    assert.equal(m.contact[0].uri.opaque, "John_Smith");
  });
  await t.step("bext01: unknown Require values parse; the UA answers 420 (3.3.5)", () => {
    const m = req("bext01");
    assert.deepEqual(m.headers.values("Require"), [
      "nothingSupportsThis",
      "nothingSupportsThisEither",
    ]);
    assert.deepEqual(m.headers.values("Proxy-Require"), [
      "noProxiesSupportThis",
      "norDoAnyProxiesSupportThis",
    ]);
  });
  await t.step("invut: unknown Content-Type parses; the UA answers 415 (3.3.6)", () => {
    const m = req("invut");
    assert.equal(m.contentType, "application/unknownformat");
    assert.equal(text(m.body), '<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n');
  });
  await t.step("regaut01: unknown Authorization scheme parses (3.3.7)", () => {
    const m = req("regaut01");
    assert.equal(m.headers.get("Authorization"), "NoOneKnowsThisScheme opaque-data=here");
    assert.equal(m.contentLength, 0);
  });
  await t.step("multi01: several Call-ID, To, From, CSeq, Max-Forwards get 400 (3.3.8)", () => {
    rejects("multi01", { message: /more than one/, partial: true });
  });
  await t.step("mcl01: conflicting Content-Length values (3.3.9)", () => {
    rejects("mcl01", { message: /Content-Length header: several different values/, line: 9 });
  });
  await t.step("bcast: broadcast address in a lower Via parses (3.3.10)", () => {
    const m = res("bcast");
    assert.equal(m.via[1].host, "255.255.255.255");
    assert.equal(m.via[1].params.branch, "z9hG4bK1saber23");
  });
  await t.step("zeromf: Max-Forwards 0 parses; a proxy answers 483 (3.3.11)", () => {
    assert.equal(req("zeromf").maxForwards, 0);
  });
  await t.step("cparam01: addr-spec parameters belong to the header (3.3.12)", () => {
    const c = req("cparam01").contact[0];
    assert.equal(c.uri.user, "+19725552222");
    assert.deepEqual(c.uri.params, {});
    assert.deepEqual(c.params, { unknownparam: null });
  });
  await t.step("cparam02: name-addr parameters inside <> belong to the URI (3.3.13)", () => {
    const c = req("cparam02").contact[0];
    assert.deepEqual(c.uri.params, { unknownparam: null });
    assert.deepEqual(c.params, {});
  });
  await t.step("regescrt: escaped headers in a Contact URI are kept (3.3.14)", () => {
    const m = req("regescrt");
    assert.deepEqual(m.contact[0].uri.headers, { Route: "<sip:sip.example.com>" });
    assert.equal(m.contentLength, 0); // "L:0"
    roundTrips("regescrt");
  });
  await t.step("sdp01: Accept without application/sdp parses; the UA answers 406 (3.3.15)", () => {
    const m = req("sdp01");
    assert.deepEqual(m.headers.values("Accept"), ["text/nobodyKnowsThis"]);
    assert.equal(m.contentType, "application/sdp");
  });
});

Deno.test("RFC 4475 3.4: inv2543, an RFC 2543 INVITE, is accepted", () => {
  const m = req("inv2543");
  assert.equal(m.topVia.params.branch, undefined);
  assert.equal(m.from.params.tag, undefined);
  assert.equal(m.maxForwards, undefined);
  assert.equal(m.contentLength, undefined);
  // No Content-Length over UDP: the body is the rest of the datagram.
  const raw = load("inv2543");
  const blank = text(raw).indexOf("\r\n\r\n") + 4;
  assert.equal(m.body.length, raw.length - blank);
  assert.equal(m.from.uri.params.user, "phone");
  assert.equal(m.recordRoute[0].uri.params.maddr, "ss1.example.com");
});

Deno.test("RFC 4475: every fixture file has a step above", () => {
  const covered = new Set([
    ...["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq"],
    ...["semiuri", "transports", "mpart01", "unreason", "noreason", "badinv01", "clerr"],
    ...["ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri", "lwsruri", "lwsstart", "trws"],
    ...["escruri", "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01"],
    ...["mismatch02", "bigcode", "badcseq", "badbranch", "insuf", "unkscm", "novelsc"],
    ...["unksm2", "bext01", "invut", "regaut01", "multi01", "mcl01", "bcast", "zeromf"],
    ...["cparam01", "cparam02", "regescrt", "sdp01", "inv2543"],
  ]);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name.replace(/\.dat$/, "")).sort();
  assert.equal(files.length, 50);
  assert.deepEqual(files.filter((f) => !covered.has(f)), []);
});
