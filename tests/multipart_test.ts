import assert from "node:assert/strict";
import { SipSyntaxError } from "../lib/sip/errors.ts";
import {
  formatMediaType,
  formatMultipart,
  type MimePart,
  parseMediaType,
  parseMultipart,
  partContentId,
  partContentType,
  partHeader,
} from "../lib/sip/multipart.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("parseMediaType() reads type, quoted and token parameters", () => {
  assert.deepEqual(
    parseMediaType(
      'Multipart/Related ; type="application/rlmi+xml";start="<nXYxAE@pres.example.com>"; boundary=50UBfW7LSCVLtggUPe5z',
    ),
    {
      type: "multipart/related",
      params: {
        type: "application/rlmi+xml",
        start: "<nXYxAE@pres.example.com>",
        boundary: "50UBfW7LSCVLtggUPe5z",
      },
    },
  );
  assert.deepEqual(parseMediaType('text/plain;charset="a\\"b"'), {
    type: "text/plain",
    params: { charset: 'a"b' },
  });
});

Deno.test("parseMediaType() rejects malformed values with SipSyntaxError", async (t) => {
  for (const bad of ["", "text", "text/", "/plain", "text/plain;", 'a/b;c="open', "a/b c"]) {
    await t.step(JSON.stringify(bad), () => {
      assert.throws(() => parseMediaType(bad), (e: unknown) => {
        assert.ok(e instanceof SipSyntaxError);
        assert.match(e.message, /^Cannot parse media type: /);
        return true;
      });
    });
  }
});

Deno.test("formatMediaType() quotes values that are not tokens and refuses CR/LF", () => {
  assert.equal(
    formatMediaType({ type: "multipart/related", params: { type: "application/rlmi+xml" } }),
    'multipart/related;type="application/rlmi+xml"',
  );
  assert.equal(formatMediaType({ type: "a/b", params: { x: "tok" } }), "a/b;x=tok");
  assert.throws(() => formatMediaType({ type: "a/b", params: { x: "a\r\nB: c" } }), TypeError);
});

// RFC 4662 section 5.1 style body: preamble, parts with Content-Transfer-Encoding binary.
const RFC4662_BODY = "preamble to ignore\r\n" +
  "--50UBfW7LSCVLtggUPe5z\r\n" +
  "Content-Transfer-Encoding: binary\r\n" +
  "Content-ID: <nXYxAE@pres.example.com>\r\n" +
  "Content-Type: application/rlmi+xml;charset=UTF-8\r\n" +
  "\r\n" +
  "<list/>\r\n" +
  "--50UBfW7LSCVLtggUPe5z\r\n" +
  "Content-Transfer-Encoding: binary\r\n" +
  "Content-ID: <bUZBsM@pres.example.com>\r\n" +
  "Content-Type: application/pidf+xml;charset=UTF-8\r\n" +
  "\r\n" +
  "<presence/>\r\n\r\n" +
  "--50UBfW7LSCVLtggUPe5z--\r\n" +
  "epilogue";

Deno.test("parseMultipart() splits an RFC 4662 body into parts with headers", () => {
  const mp = parseMultipart(
    enc.encode(RFC4662_BODY),
    'multipart/related;type="application/rlmi+xml";start="<nXYxAE@pres.example.com>";boundary="50UBfW7LSCVLtggUPe5z"',
  );
  assert.equal(mp.type, "multipart/related");
  assert.equal(mp.params.start, "<nXYxAE@pres.example.com>");
  assert.equal(mp.parts.length, 2);
  assert.equal(partContentId(mp.parts[0]), "nXYxAE@pres.example.com");
  assert.equal(partContentType(mp.parts[0]).type, "application/rlmi+xml");
  assert.equal(dec.decode(mp.parts[0].body), "<list/>");
  // The CRLF before a delimiter belongs to the delimiter; one more CRLF is content.
  assert.equal(dec.decode(mp.parts[1].body), "<presence/>\r\n");
  assert.equal(partHeader(mp.parts[1], "content-transfer-encoding"), "binary");
});

Deno.test("parseMultipart() keeps binary bytes intact, including ones that look like delimiters", () => {
  const binary = new Uint8Array([0, 255, 13, 10, 45, 45, 120, 13, 10, 200]); // "--x" not at boundary
  const { body, contentType } = formatMultipart([
    { headers: [{ name: "Content-Type", value: "application/octet-stream" }], body: binary },
    { headers: [], body: enc.encode("no headers") },
  ], { boundary: "bnd" });
  const mp = parseMultipart(body, contentType);
  assert.deepEqual(mp.parts[0].body, binary);
  assert.deepEqual(mp.parts[1].headers, []);
  assert.equal(dec.decode(mp.parts[1].body), "no headers");
  assert.deepEqual(partContentType(mp.parts[1]), {
    type: "text/plain",
    params: { charset: "us-ascii" },
  });
});

Deno.test("parseMultipart() accepts LF line ends, folded headers, padding and longer look-alike lines", () => {
  const text = "--b  \n" +
    "Content-Type: text/plain;\n charset=utf-8\n" +
    "\n" +
    "line one\n--bb not a delimiter\n" +
    "--b--\n";
  const mp = parseMultipart(enc.encode(text), "multipart/mixed; boundary=b");
  assert.equal(mp.parts.length, 1);
  assert.equal(partHeader(mp.parts[0], "Content-Type"), "text/plain; charset=utf-8");
  assert.equal(dec.decode(mp.parts[0].body), "line one\n--bb not a delimiter");
});

Deno.test("parseMultipart() decodes base64 and quoted-printable parts", () => {
  const text = "--q\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8=\r\n" +
    "--q\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n--q--";
  const mp = parseMultipart(enc.encode(text), "multipart/mixed;boundary=q");
  assert.equal(dec.decode(mp.parts[0].body), "hello");
  assert.equal(dec.decode(mp.parts[1].body), "café au lait");
});

Deno.test("parseMultipart() rejects malformed bodies with SipSyntaxError", async (t) => {
  const cases: Record<string, [string, string]> = {
    "no boundary parameter": ["--b\r\n\r\nx\r\n--b--", "multipart/mixed"],
    "not multipart": ["--b\r\n\r\nx\r\n--b--", "text/plain;boundary=b"],
    "no delimiter": ["just text", "multipart/mixed;boundary=b"],
    "no close delimiter": ["--b\r\n\r\nx\r\n--b\r\n\r\ny", "multipart/mixed;boundary=b"],
    "only a close delimiter": ["--b--\r\n", "multipart/mixed;boundary=b"],
    "header without colon": [
      "--b\r\nbroken header\r\n\r\nx\r\n--b--",
      "multipart/mixed;boundary=b",
    ],
    "bad base64": [
      "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--",
      "multipart/mixed;boundary=b",
    ],
    "boundary too long": ["x", `multipart/mixed;boundary=${"a".repeat(71)}`],
  };
  for (const [name, [body, ct]] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parseMultipart(enc.encode(body), ct), (e: unknown) => {
        assert.ok(e instanceof SipSyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse (multipart body|Content-Type header): /);
        return true;
      });
    });
  }
});

Deno.test("parseMultipart() throws only SipSyntaxError on random garbage", () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const base = enc.encode(RFC4662_BODY);
  for (let i = 0; i < 2000; i++) {
    const b = base.slice(0, rand(base.length + 1));
    for (let k = 0; k < 3; k++) if (b.length) b[rand(b.length)] = rand(256);
    try {
      parseMultipart(b, "multipart/related;boundary=50UBfW7LSCVLtggUPe5z");
    } catch (e) {
      assert.ok(e instanceof SipSyntaxError, `case ${i} threw ${e}`);
    }
  }
});

Deno.test("formatMultipart() writes CRLF framing and a Content-Type with boundary and params", () => {
  const parts: MimePart[] = [{
    headers: [
      { name: "Content-Transfer-Encoding", value: "binary" },
      { name: "Content-ID", value: "<a@x>" },
      { name: "Content-Type", value: "application/rlmi+xml;charset=UTF-8" },
    ],
    body: enc.encode("<list/>"),
  }];
  const out = formatMultipart(parts, {
    type: "multipart/related",
    params: { type: "application/rlmi+xml", start: "<a@x>" },
    boundary: "zz",
  });
  assert.equal(
    out.contentType,
    'multipart/related;type="application/rlmi+xml";start="<a@x>";boundary=zz',
  );
  assert.equal(
    dec.decode(out.body),
    "--zz\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <a@x>\r\n" +
      "Content-Type: application/rlmi+xml;charset=UTF-8\r\n\r\n<list/>\r\n--zz--\r\n",
  );
});

Deno.test("formatMultipart() picks a boundary absent from the parts and refuses bad input", () => {
  const out = formatMultipart([{ headers: [], body: enc.encode("--sipkit-") }]);
  const boundary = parseMediaType(out.contentType).params.boundary ?? "";
  assert.match(boundary, /^sipkit-[0-9a-f]{24}$/);
  assert.equal(dec.decode(parseMultipart(out.body, out.contentType).parts[0].body), "--sipkit-");
  assert.throws(
    () => formatMultipart([{ headers: [], body: enc.encode("x\r\n--b\r\n") }], { boundary: "b" }),
    TypeError,
  );
  assert.throws(
    () =>
      formatMultipart([{
        headers: [{ name: "X", value: "a\r\nInjected: 1" }],
        body: enc.encode(""),
      }]),
    TypeError,
  );
  assert.throws(() => formatMultipart([]), TypeError);
});
