import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { inspect } from "node:util";
import { ManualClock } from "../lib/sip/clock.ts";
import {
  computeDigestResponse,
  computeHa1,
  DigestAuthError,
  DigestClient,
  digestHash,
  type DigestQop,
  DigestServer,
  type DigestVerification,
  formatDigestChallenge,
  formatDigestCredentials,
  parseAuthParams,
  parseDigestChallenges,
  parseDigestCredentials,
  selectChallenges,
} from "../lib/sip/digest.ts";
import { SipSyntaxError } from "../lib/sip/errors.ts";
import {
  createRequest,
  createResponse,
  formatMessage,
  parseMessage,
  parseUri,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import { startKamailio } from "./peers/kamailio.ts";
import { withLogsOnFailure } from "./peers/process.ts";
import { requirePeer } from "./peers/require.ts";
import { runSipsak } from "./peers/sipsak.ts";

const md5 = (s: string | Uint8Array) => createHash("md5").update(s).digest("hex");

// RFC 7616 section 3.9.1: one WWW-Authenticate per algorithm, SHA-256 first.
const RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const rfc7616Challenge = (algorithm: string) =>
  `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=${algorithm}, ` +
  `nonce="${RFC7616_NONCE}", opaque="${RFC7616_OPAQUE}"`;

Deno.test("computeDigestResponse() reproduces RFC 2617 section 3.5 (qop=auth, MD5)", () => {
  const input = {
    username: "Mufasa",
    realm: "testrealm@host.com",
    password: "Circle Of Life",
    nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    method: "GET",
    uri: "/dir/index.html",
    qop: "auth" as const,
    nc: 1,
    cnonce: "0a4f113b",
  };
  assert.equal(computeDigestResponse(input), "6629fae49393a05397450978507c4ef1");
  // The same with a stored HA1 instead of the password.
  const ha1 = computeHa1({
    username: "Mufasa",
    realm: "testrealm@host.com",
    password: "Circle Of Life",
  });
  assert.equal(ha1, md5("Mufasa:testrealm@host.com:Circle Of Life"));
  assert.equal(
    computeDigestResponse({ ...input, password: undefined, ha1 }),
    "6629fae49393a05397450978507c4ef1",
  );
});

Deno.test("computeDigestResponse() reproduces RFC 7616 section 3.9.1 for MD5 and SHA-256", async (t) => {
  const base = {
    username: "Mufasa",
    realm: "http-auth@example.org",
    password: "Circle of Life",
    nonce: RFC7616_NONCE,
    method: "GET",
    uri: "/dir/index.html",
    qop: "auth" as const,
    nc: 1,
    cnonce: RFC7616_CNONCE,
  };
  await t.step("MD5", () => {
    assert.equal(
      computeDigestResponse({ ...base, algorithm: "MD5" }),
      "8ca523f5e9506fed4657c9700eebdbec",
    );
  });
  await t.step("SHA-256", () => {
    assert.equal(
      computeDigestResponse({ ...base, algorithm: "SHA-256" }),
      "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    );
  });
});

Deno.test("computeDigestResponse() without qop uses the RFC 2069 formula", () => {
  const got = computeDigestResponse({
    username: "Mufasa",
    realm: "testrealm@host.com",
    password: "CircleOfLife",
    nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
    method: "GET",
    uri: "/dir/index.html",
  });
  const ha1 = md5("Mufasa:testrealm@host.com:CircleOfLife");
  const ha2 = md5("GET:/dir/index.html");
  assert.equal(got, md5(`${ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:${ha2}`));
  assert.equal(got, "1949323746fe6a43ef61f9606e7febea");
});

Deno.test("computeDigestResponse() with qop=auth-int hashes the body into A2", () => {
  const base = {
    username: "bob",
    realm: "biloxi.com",
    password: "zanzibar",
    nonce: "n0",
    method: "INVITE",
    uri: "sip:bob@biloxi.com",
    qop: "auth-int" as const,
    nc: 2,
    cnonce: "c0",
  };
  const body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
  const ha1 = md5("bob:biloxi.com:zanzibar");
  const ha2 = md5(`INVITE:sip:bob@biloxi.com:${md5(body)}`);
  const want = md5(`${ha1}:n0:00000002:c0:auth-int:${ha2}`);
  assert.equal(computeDigestResponse({ ...base, body }), want);
  assert.equal(computeDigestResponse({ ...base, body: new TextEncoder().encode(body) }), want);
  // RFC 3261 section 22.4: an empty body hashes the empty string.
  const empty = md5(
    `${ha1}:n0:00000002:c0:auth-int:${md5(`INVITE:sip:bob@biloxi.com:${md5("")}`)}`,
  );
  assert.equal(computeDigestResponse(base), empty);
  assert.notEqual(computeDigestResponse({ ...base, body: "other" }), want);
});

Deno.test("computeDigestResponse() with MD5-sess hashes nonce and cnonce into HA1", () => {
  const got = computeDigestResponse({
    algorithm: "MD5-sess",
    username: "u",
    realm: "r",
    password: "p",
    nonce: "N",
    method: "REGISTER",
    uri: "sip:r",
    qop: "auth",
    nc: 1,
    cnonce: "C",
  });
  const ha1 = md5(`${md5("u:r:p")}:N:C`);
  assert.equal(got, md5(`${ha1}:N:00000001:C:auth:${md5("REGISTER:sip:r")}`));
  assert.throws(
    () =>
      computeDigestResponse({
        algorithm: "SHA-256-sess",
        username: "u",
        realm: "r",
        password: "p",
        nonce: "N",
        method: "REGISTER",
        uri: "sip:r",
      }),
    TypeError,
  );
});

Deno.test("digestHash() supports MD5, SHA-256 and SHA-512-256 and refuses others", () => {
  assert.equal(digestHash("MD5", "abc"), "900150983cd24fb0d6963f7d28e17f72");
  assert.equal(
    digestHash("sha-256", "abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    digestHash("SHA-512-256-sess", "abc"),
    "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23",
  );
  assert.throws(() => digestHash("SHA3-256", "abc"), RangeError);
});

Deno.test("parseAuthParams() reads several challenges in one line", () => {
  const got = parseAuthParams(
    'Basic realm="simple", Digest realm="a\\"b\\\\c", nonce=abc/def==, qop="auth,auth-int", ' +
      'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Bearer dG9rZW4=',
  );
  assert.deepEqual(got.map((c) => c.scheme), ["Basic", "Digest", "Newauth", "Bearer"]);
  assert.deepEqual(got[1].params, {
    realm: 'a"b\\c',
    nonce: "abc/def==",
    qop: "auth,auth-int",
  });
  assert.deepEqual(got[2].params, { realm: "apps", type: "1", title: 'Login to "apps"' });
  assert.equal(got[3].token68, "dG9rZW4=");
});

Deno.test("parseAuthParams() rejects malformed values with SipSyntaxError", async (t) => {
  const cases: [string, RegExp][] = [
    ['Digest realm="open', /unterminated quoted string/],
    ['Digest realm="r" nonce="n"', /expected a comma after parameter realm/],
    ['Digest nonce="1", realm=, opaque="x"', /missing value for parameter realm/],
    ['= realm="r"', /unexpected character/],
  ];
  for (const [value, why] of cases) {
    await t.step(value, () => {
      assert.throws(() => parseAuthParams(value, "Proxy-Authenticate"), (e: unknown) => {
        assert.ok(e instanceof SipSyntaxError);
        assert.match(e.message, /^Cannot parse Proxy-Authenticate header: /);
        assert.match(e.message, why);
        assert.equal(e.header, "Proxy-Authenticate");
        return true;
      });
    });
  }
});

Deno.test("parseDigestChallenges() reads every field across several header lines", () => {
  const cs = parseDigestChallenges([
    'Digest realm="example.test", domain="sip:example.test sip:other.test", ' +
    'nonce="n1", opaque="op", stale=TRUE, algorithm=sha-256, qop=" auth , Auth-Int"',
    'Basic realm="x", Digest realm="example.test", nonce="n1"',
  ]);
  assert.equal(cs.length, 2);
  assert.equal(cs[0].realm, "example.test");
  assert.deepEqual(cs[0].domain, ["sip:example.test", "sip:other.test"]);
  assert.equal(cs[0].nonce, "n1");
  assert.equal(cs[0].opaque, "op");
  assert.equal(cs[0].stale, true);
  assert.equal(cs[0].algorithm, "SHA-256");
  assert.equal(cs[0].algorithmGiven, true);
  assert.deepEqual(cs[0].qop, ["auth", "auth-int"]);
  // Defaults: MD5, no qop (RFC 2069), not stale.
  assert.equal(cs[1].algorithm, "MD5");
  assert.equal(cs[1].algorithmGiven, false);
  assert.deepEqual(cs[1].qop, []);
  assert.equal(cs[1].stale, false);
  assert.throws(
    () => parseDigestChallenges('Digest realm="r"'),
    /Cannot parse WWW-Authenticate header: missing nonce parameter/,
  );
});

Deno.test("selectChallenges() prefers SHA-256 over MD5 within a realm, one per realm", () => {
  const cs = parseDigestChallenges([
    'Digest realm="a", nonce="1", algorithm=MD5, qop="auth"',
    'Digest realm="a", nonce="1", algorithm=SHA-256, qop="auth"',
    'Digest realm="b", nonce="2", algorithm=MD5-sess',
    'Digest realm="b", nonce="2", algorithm=MD5',
    'Digest realm="c", nonce="3", algorithm=SHA3-512',
    'Digest realm="d", nonce="4", qop="auth-conf"',
  ]);
  const chosen = selectChallenges(cs);
  assert.deepEqual(chosen.map((c) => [c.realm, c.algorithm]), [["a", "SHA-256"], ["b", "MD5"]]);
  const server = selectChallenges(cs, { preference: "server" });
  assert.deepEqual(server.map((c) => [c.realm, c.algorithm]), [["a", "MD5"], ["b", "MD5-sess"]]);
  const md5Only = selectChallenges(cs, { algorithms: ["MD5"] });
  assert.deepEqual(md5Only.map((c) => [c.realm, c.algorithm]), [["a", "MD5"], ["b", "MD5"]]);
  assert.deepEqual(selectChallenges(cs, { realm: "b" }).map((c) => c.realm), ["b"]);
});

Deno.test("formatDigestCredentials() quotes what must be quoted and escapes", () => {
  const value = formatDigestCredentials({
    username: 'a"b\\c',
    realm: "r",
    nonce: "n",
    uri: "sip:bob@r;transport=tcp",
    response: "abcd",
    algorithm: "SHA-256",
    cnonce: "cn",
    opaque: "op",
    qop: "auth",
    nc: 26,
  });
  assert.equal(
    value,
    'Digest username="a\\"b\\\\c", realm="r", nonce="n", uri="sip:bob@r;transport=tcp", ' +
      'response="abcd", algorithm=SHA-256, cnonce="cn", opaque="op", qop=auth, nc=0000001a',
  );
  const back = parseDigestCredentials(value);
  assert.equal(back.username, 'a"b\\c');
  assert.equal(back.nc, 26);
  assert.equal(back.qop, "auth");
  assert.equal(back.algorithm, "SHA-256");
  assert.throws(
    () =>
      formatDigestCredentials({
        username: "a\r\nVia: evil",
        realm: "r",
        nonce: "n",
        uri: "sip:r",
        response: "0",
      }),
    /Cannot format Authorization header: CR, LF or NUL in username/,
  );
  assert.throws(
    () =>
      formatDigestCredentials({
        username: "u",
        realm: "r",
        nonce: "n",
        uri: "sip:r",
        response: "0",
        qop: "auth, x",
      }),
    /qop is not a token/,
  );
});

Deno.test("parseDigestCredentials() rejects missing fields and bad nc", () => {
  assert.throws(
    () => parseDigestCredentials('Digest username="u", realm="r", nonce="n", uri="sip:r"'),
    /Cannot parse Authorization header: missing response parameter/,
  );
  assert.throws(
    () =>
      parseDigestCredentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="0", nc=1',
      ),
    /bad nc parameter/,
  );
  assert.throws(() => parseDigestCredentials("Basic dXNlcjpwYXNz"), SipSyntaxError);
});

Deno.test("formatDigestChallenge() writes a challenge that parses back", () => {
  const v = formatDigestChallenge({
    realm: "example.test",
    nonce: "n",
    algorithm: "SHA-256",
    qop: ["auth", "auth-int"],
    opaque: "o",
    stale: true,
    domain: ["sip:example.test", "sip:b.test"],
  });
  const [c] = parseDigestChallenges(v);
  assert.equal(c.algorithm, "SHA-256");
  assert.deepEqual(c.qop, ["auth", "auth-int"]);
  assert.equal(c.stale, true);
  assert.deepEqual(c.domain, ["sip:example.test", "sip:b.test"]);
});

function rfc7616Client(options = {}) {
  return new DigestClient(
    { username: "Mufasa", password: "Circle of Life" },
    { cnonce: () => RFC7616_CNONCE, ...options },
  );
}

Deno.test("DigestClient answers the RFC 7616 challenges with SHA-256 by default", () => {
  const client = rfc7616Client();
  // RFC 7616 sends SHA-256 first; try both orders.
  for (const order of [["SHA-256", "MD5"], ["MD5", "SHA-256"]]) {
    client.forget();
    client.begin().challenge(401, order.map(rfc7616Challenge));
    const fields = client.headersFor({ method: "GET", uri: "/dir/index.html" });
    assert.equal(fields.length, 1);
    assert.equal(fields[0].name, "Authorization");
    assert.equal(
      fields[0].value,
      'Digest username="Mufasa", realm="http-auth@example.org", ' +
        `nonce="${RFC7616_NONCE}", uri="/dir/index.html", ` +
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", ' +
        `algorithm=SHA-256, cnonce="${RFC7616_CNONCE}", opaque="${RFC7616_OPAQUE}", ` +
        "qop=auth, nc=00000001",
    );
  }
});

Deno.test("DigestClient limited to MD5 answers the RFC 7616 MD5 challenge", () => {
  const client = rfc7616Client({ algorithms: ["MD5"] });
  client.begin().challenge(401, [rfc7616Challenge("SHA-256"), rfc7616Challenge("MD5")]);
  const [field] = client.headersFor({ method: "GET", uri: "/dir/index.html" });
  assert.match(field.value, /response="8ca523f5e9506fed4657c9700eebdbec"/);
  assert.match(field.value, /algorithm=MD5,/);
});

Deno.test("DigestClient answers a legacy challenge without qop, nc or cnonce", () => {
  const client = new DigestClient({ username: "Mufasa", password: "CircleOfLife" });
  client.begin().challenge(401, [
    'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ' +
    'opaque="5ccc069c403ebaf9f0171e9517f40e41"',
  ]);
  const [field] = client.headersFor({ method: "GET", uri: "/dir/index.html" });
  const c = parseDigestCredentials(field.value);
  assert.equal(c.response, "1949323746fe6a43ef61f9606e7febea");
  assert.equal(c.qop, undefined);
  assert.equal(c.nc, undefined);
  assert.equal(c.cnonce, undefined);
  assert.equal(c.opaque, "5ccc069c403ebaf9f0171e9517f40e41");
});

Deno.test("DigestClient uses qop=auth-int only when asked or when it is the only option", () => {
  const req = { method: "MESSAGE", uri: "sip:bob@r", body: "hello" };
  const both = 'Digest realm="r", nonce="n", qop="auth,auth-int"';
  const a = new DigestClient({ username: "u", password: "p" }, { cnonce: () => "c" });
  a.begin().challenge(401, [both]);
  assert.match(a.headersFor(req)[0].value, /qop=auth,/);
  const b = new DigestClient({ username: "u", password: "p" }, {
    cnonce: () => "c",
    preferAuthInt: true,
  });
  b.begin().challenge(401, [both]);
  const bv = parseDigestCredentials(b.headersFor(req)[0].value);
  assert.equal(bv.qop, "auth-int");
  assert.equal(
    bv.response,
    computeDigestResponse({
      username: "u",
      realm: "r",
      password: "p",
      nonce: "n",
      method: "MESSAGE",
      uri: "sip:bob@r",
      qop: "auth-int",
      nc: 1,
      cnonce: "c",
      body: "hello",
    }),
  );
  const c = new DigestClient({ username: "u", password: "p" });
  c.begin().challenge(401, ['Digest realm="r", nonce="n", qop="auth-int"']);
  assert.match(c.headersFor(req)[0].value, /qop=auth-int/);
});

Deno.test("DigestClient counts nonce uses and restarts nc with a new nonce", () => {
  let n = 0;
  const client = new DigestClient({ username: "u", password: "p" }, { cnonce: () => `c${++n}` });
  const req = { method: "REGISTER", uri: "sip:r" };
  client.begin().challenge(401, ['Digest realm="r", nonce="n1", qop="auth"']);
  const nc = () => parseDigestCredentials(client.headersFor(req)[0].value);
  assert.equal(nc().nc, 1);
  const second = nc();
  assert.equal(second.nc, 2);
  assert.equal(second.cnonce, "c1");
  assert.equal(nc().nc, 3);
  // A refresh with a new challenge (new nonce): back to 1 with a new cnonce.
  client.begin().challenge(401, ['Digest realm="r", nonce="n2", qop="auth"']);
  const fresh = nc();
  assert.equal(fresh.nonce, "n2");
  assert.equal(fresh.nc, 1);
  assert.equal(fresh.cnonce, "c2");
});

Deno.test("DigestClient keeps counting when a challenge repeats the same nonce", () => {
  let n = 0;
  const client = new DigestClient({ username: "u", password: "p" }, { cnonce: () => `c${++n}` });
  const req = { method: "REGISTER", uri: "sip:r" };
  const challenge = ['Digest realm="r", nonce="same", qop="auth"'];
  client.begin().challenge(401, challenge);
  assert.equal(parseDigestCredentials(client.headersFor(req)[0].value).nc, 1);
  client.begin().challenge(401, challenge);
  const again = parseDigestCredentials(client.headersFor(req)[0].value);
  assert.equal(again.nc, 2);
  assert.equal(again.cnonce, "c1");
});

Deno.test("DigestClient answers 407 with Proxy-Authorization and keeps both realms", () => {
  const client = new DigestClient({ username: "u", password: "p" }, { cnonce: () => "c" });
  const attempt = client.begin();
  attempt.challenge(407, ['Digest realm="proxy.test", nonce="p1", qop="auth"']);
  attempt.challenge(401, ['Digest realm="registrar.test", nonce="r1", qop="auth"']);
  const fields = client.headersFor({ method: "INVITE", uri: "sip:bob@registrar.test" });
  assert.deepEqual(fields.map((f) => [f.name, parseDigestCredentials(f.value).realm]), [
    ["Proxy-Authorization", "proxy.test"],
    ["Authorization", "registrar.test"],
  ]);
  assert.deepEqual(client.realms, ["proxy:proxy.test", "www:registrar.test"]);
  assert.equal(attempt.challenges, 2);
});

Deno.test("DigestClient retries after stale=true and stops at a second plain challenge", () => {
  const client = new DigestClient({ username: "alice", password: "pw" });
  const attempt = client.begin();
  attempt.challenge(401, ['Digest realm="r", nonce="n1", qop="auth"']);
  // The server says the nonce went stale: not a failure, new nonce used.
  attempt.challenge(401, ['Digest realm="r", nonce="n2", qop="auth", stale=true']);
  assert.equal(
    parseDigestCredentials(client.headersFor({ method: "REGISTER", uri: "sip:r" })[0].value)
      .nonce,
    "n2",
  );
  // Now a non-stale challenge for the same realm: wrong credentials.
  assert.throws(
    () => attempt.challenge(401, ['Digest realm="r", nonce="n3", qop="auth"']),
    (e: unknown) => {
      assert.ok(e instanceof DigestAuthError);
      assert.equal(e.reason, "rejected");
      assert.equal(e.realm, "r");
      assert.equal(e.status, 401);
      assert.equal(
        e.message,
        'Authentication failed for realm "r": credentials of user alice rejected',
      );
      return true;
    },
  );
});

Deno.test("DigestClient pre-authenticated requests may take one fresh challenge", () => {
  const client = new DigestClient({ username: "u", password: "p" });
  client.begin().challenge(401, ['Digest realm="r", nonce="n1", qop="auth"']);
  // A later request sent with cached credentials gets a new non-stale
  // challenge (the server forgot the nonce): answered once, not a failure.
  const later = client.begin();
  later.challenge(401, ['Digest realm="r", nonce="n2", qop="auth"']);
  assert.throws(
    () => later.challenge(401, ['Digest realm="r", nonce="n3", qop="auth"']),
    DigestAuthError,
  );
});

Deno.test("DigestClient gives up after maxChallenges for one request", () => {
  const client = new DigestClient({ username: "u", password: "p" }, { maxChallenges: 3 });
  const attempt = client.begin();
  for (let i = 0; i < 3; i++) {
    attempt.challenge(401, [`Digest realm="r", nonce="n${i}", qop="auth", stale=true`]);
  }
  assert.throws(
    () => attempt.challenge(401, ['Digest realm="r", nonce="n9", stale=true']),
    (e: unknown) => e instanceof DigestAuthError && e.reason === "too-many-challenges",
  );
});

Deno.test("DigestClient refuses challenges it cannot answer", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ["Basic only", ['Basic realm="r"'], /no usable WWW-Authenticate challenge/],
    [
      "unknown algorithm",
      ['Digest realm="r", nonce="n", algorithm=SHA3-256'],
      /no supported challenge among realm "r" SHA3-256/,
    ],
    ["no header", [], /no usable WWW-Authenticate challenge/],
    ["malformed", ['Digest realm="r'], /no usable WWW-Authenticate challenge/],
    ["other realm", ['Digest realm="elsewhere", nonce="n"'], /realm "elsewhere" MD5/],
  ];
  for (const [name, lines, why] of cases) {
    await t.step(name, () => {
      const client = new DigestClient({ username: "u", password: "p", realm: "r" });
      assert.throws(() => client.begin().challenge(401, lines), (e: unknown) => {
        assert.ok(e instanceof DigestAuthError);
        assert.equal(e.reason, "unsupported");
        assert.match(e.message, why);
        return true;
      });
      assert.deepEqual(client.headersFor({ method: "OPTIONS", uri: "sip:r" }), []);
    });
  }
});

Deno.test("DigestClient never shows the password", () => {
  const password = "s3cr3t-Pa55word";
  const client = new DigestClient({ username: "alice", password });
  const attempt = client.begin();
  attempt.challenge(401, ['Digest realm="r", nonce="n1", qop="auth"']);
  client.headersFor({ method: "REGISTER", uri: "sip:r" });
  let error: unknown;
  try {
    attempt.challenge(401, ['Digest realm="r", nonce="n2", qop="auth"']);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof DigestAuthError);
  const shown = [
    JSON.stringify(client),
    JSON.stringify(attempt),
    JSON.stringify({ error, client }),
    String(client),
    `${client}`,
    Deno.inspect(client, { depth: 10, showHidden: true }),
    Deno.inspect(attempt, { depth: 10, showHidden: true }),
    Deno.inspect(error, { depth: 10, showHidden: true }),
    inspect(client, { depth: 10, showHidden: true }),
    inspect(attempt, { depth: 10, showHidden: true }),
    inspect(error, { depth: 10, showHidden: true }),
    (error as Error).message,
    (error as Error).stack ?? "",
    Object.keys(client).join(","),
  ];
  for (const text of shown) assert.ok(!text.includes(password), `password leaked in: ${text}`);
  assert.equal(JSON.stringify(client), '{"username":"alice","realms":["www:r"]}');
});

Deno.test("DigestServer verifies what DigestClient sends", async (t) => {
  const clock = new ManualClock(1_000_000);
  const server = new DigestServer({ realm: "example.test", clock, secret: "k" });
  const req = { method: "REGISTER", uri: "sip:example.test" };
  const answer = (password: string, lines = server.challenges()) => {
    const client = new DigestClient({ username: "bob", password });
    client.begin().challenge(401, lines);
    return { client, value: client.headersFor(req)[0].value };
  };

  await t.step("offers SHA-256 then MD5 with qop=auth and one nonce", () => {
    const cs = parseDigestChallenges(server.challenges());
    assert.deepEqual(cs.map((c) => c.algorithm), ["SHA-256", "MD5"]);
    assert.equal(cs[0].nonce, cs[1].nonce);
    assert.deepEqual(cs[0].qop, ["auth"]);
    assert.equal(server.checkNonce(cs[0].nonce), "fresh");
  });

  await t.step("accepts the right password and a stored HA1", () => {
    const { value } = answer("pw");
    assert.deepEqual(server.verify(value, req, { password: "pw" }), {
      ok: true,
      username: "bob",
      realm: "example.test",
      algorithm: "SHA-256",
      nc: 1,
    });
    const { value: v2 } = answer("pw");
    const ha1 = computeHa1({ username: "bob", realm: "example.test", password: "pw" }, "SHA-256");
    assert.equal(server.verify(v2, req, { ha1 }).ok, true);
  });

  await t.step("rejects a wrong password, user or URI", () => {
    const { value } = answer("wrong");
    assert.equal(server.verify(value, req, { password: "pw" }).ok, false);
    assert.deepEqual(server.verify(value, req, { password: "pw" }), {
      ok: false,
      reason: "wrong-response",
      stale: false,
      username: "bob",
    });
    const { value: v2 } = answer("pw");
    const unknown = server.verify(v2, req, undefined);
    assert.equal(unknown.ok === false && unknown.reason, "unknown-user");
    const r = server.verify(v2, { ...req, uri: "sip:other.test" }, { password: "pw" });
    assert.equal(r.ok === false && r.reason, "uri-mismatch");
  });

  await t.step("rejects a replayed nonce count", () => {
    const { client, value } = answer("pw");
    assert.equal(server.verify(value, req, { password: "pw" }).ok, true);
    const replay = server.verify(value, req, { password: "pw" });
    assert.equal(replay.ok === false && replay.reason, "replay");
    const next = client.headersFor(req)[0].value;
    assert.equal(server.verify(next, req, { password: "pw" }).ok, true);
  });

  await t.step("reports an expired nonce as stale only when the digest is right", () => {
    const { value } = answer("pw");
    clock.advance(300_001);
    assert.deepEqual(server.verify(value, req, { password: "pw" }), {
      ok: false,
      reason: "stale",
      stale: true,
      username: "bob",
    });
    const bad = server.verify(value, req, { password: "nope" });
    assert.equal(bad.ok === false && bad.reason, "wrong-response");
    assert.equal(bad.ok === false && bad.stale, false);
  });

  await t.step("rejects a nonce it did not make", () => {
    const other = new DigestServer({ realm: "example.test", clock, secret: "other" });
    const { value } = answer("pw", other.challenges());
    const r = server.verify(value, req, { password: "pw" });
    assert.equal(r.ok === false && r.reason, "bad-nonce");
    assert.equal(server.checkNonce("x.y.z"), "invalid");
    assert.equal(server.checkNonce("plain"), "invalid");
  });

  await t.step("rejects another realm, algorithm or a missing qop", () => {
    const md5Only = new DigestServer({
      realm: "example.test",
      clock,
      secret: "k",
      algorithms: ["MD5"],
    });
    const { value } = answer("pw");
    const r = md5Only.verify(value, req, { password: "pw" });
    assert.equal(r.ok === false && r.reason, "algorithm");
    const elsewhere = new DigestServer({ realm: "b.test", clock, secret: "k" });
    const r2 = elsewhere.verify(value, req, { password: "pw" });
    assert.equal(r2.ok === false && r2.reason, "realm");
    const noQop = formatDigestCredentials({
      username: "bob",
      realm: "example.test",
      nonce: server.createNonce(),
      uri: "sip:example.test",
      response: "0",
      algorithm: "MD5",
    });
    const r3 = server.verify(noQop, req, { password: "pw" });
    assert.equal(r3.ok === false && r3.reason, "qop");
    const r4 = server.verify("Digest garbage", req, { password: "pw" });
    assert.equal(r4.ok === false && r4.reason, "malformed");
  });
});

Deno.test("DigestServer stale challenge lets the client retry; wrong password stops the loop", () => {
  const clock = new ManualClock();
  const server = new DigestServer({ realm: "r", clock, nonceLifetimeMs: 1000 });
  const req = { method: "REGISTER", uri: "sip:r" };

  // A UAC loop driven by the server's answers.
  const run = (password: string): string[] => {
    const client = new DigestClient({ username: "u", password });
    const attempt = client.begin();
    const events: string[] = [];
    let response: string[] | undefined = server.challenges();
    clock.advance(2000); // the first nonce is already stale when used
    for (let i = 0; i < 10 && response; i++) {
      try {
        attempt.challenge(401, response);
      } catch (e) {
        events.push((e as DigestAuthError).reason);
        return events;
      }
      const [field] = client.headersFor(req);
      const v = server.verify(field.value, req, { password: "right" });
      events.push(v.ok ? "ok" : v.reason);
      response = v.ok ? undefined : server.challenges({ stale: v.stale });
    }
    return events;
  };
  assert.deepEqual(run("right"), ["stale", "ok"]);
  assert.deepEqual(run("wrong"), ["wrong-response", "rejected"]);
});

// ---------------------------------------------------------------------------
// Message level: SipRequest / SipResponse helpers
// ---------------------------------------------------------------------------

const REGISTER = "REGISTER sip:example.test SIP/2.0\r\n" +
  "Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK776asdhds\r\n" +
  "Max-Forwards: 70\r\n" +
  "To: <sip:alice@example.test>\r\n" +
  "From: <sip:alice@example.test>;tag=1928301774\r\n" +
  "Call-ID: a84b4c76e66710@pc33\r\n" +
  "CSeq: 1 REGISTER\r\n" +
  "Contact: <sip:alice@192.0.2.5>\r\n" +
  "Content-Length: 0\r\n\r\n";

const wire = <T extends SipMessage>(m: T): T => parseMessage(formatMessage(m)) as T;

Deno.test("DigestAttempt.handleResponse() and DigestClient.apply() work on messages", () => {
  const server = new DigestServer({ realm: "example.test" });
  const proxy = new DigestServer({ realm: "proxy.test" });
  const client = new DigestClient({ username: "alice", password: "pw" });
  const attempt = client.begin();
  let req = parseMessage(REGISTER) as SipRequest;

  // 407 from the proxy, then 401 from the registrar, over the wire format.
  attempt.handleResponse(
    wire(createResponse(req, 407, { headers: proxy.challengeFields({ proxy: true }) })),
  );
  req = wire(req);
  client.apply(req);
  assert.equal(req.headers.getAll("Proxy-Authorization").length, 1);
  assert.equal(req.headers.has("Authorization"), false);
  attempt.handleResponse(wire(createResponse(req, 401, { headers: server.challengeFields() })));

  client.apply(req);
  const sent = wire(req);
  assert.equal(sent.headers.getAll("Proxy-Authorization").length, 1);
  assert.equal(sent.headers.getAll("Authorization").length, 1);
  assert.equal(parseDigestCredentials(sent.headers.get("Authorization")!).uri, "sip:example.test");
  const lookup = () => ({ password: "pw" });
  assert.equal(server.verifyRequest(sent, lookup).ok, true);
  assert.equal(proxy.verifyRequest(sent, lookup, { proxy: true }).ok, true);
  assert.equal(server.verifyRequest(sent, () => ({ password: "bad" })).ok, false);

  // Applying again replaces our lines (one per realm, nc incremented) and keeps others.
  sent.headers.append(
    "Authorization",
    'Digest username="x", realm="elsewhere", nonce="n", uri="sip:e", response="0"',
  );
  client.apply(sent);
  const lines = sent.headers.getAll("Authorization").map((l) => parseDigestCredentials(l));
  assert.deepEqual(lines.map((c) => [c.realm, c.nc]), [["elsewhere", undefined], [
    "example.test",
    2,
  ]]);
  assert.equal(sent.headers.getAll("Proxy-Authorization").length, 1);
  assert.equal(server.verifyRequest(wire(sent), lookup).ok, true);
});

Deno.test("DigestServer.verifyRequest() reports missing, other schemes and other realms", () => {
  const server = new DigestServer({ realm: "example.test" });
  const lookup = () => ({ password: "pw" });
  const bare = parseMessage(REGISTER) as SipRequest;
  assert.deepEqual(server.verifyRequest(bare, lookup), {
    ok: false,
    reason: "missing",
    stale: false,
  });
  // RFC 4475 regaut01: an unknown scheme is no credentials, not an error.
  const regaut = parseMessage(
    Deno.readTextFileSync(new URL("./fixtures/rfc4475/regaut01.dat", import.meta.url)),
  ) as SipRequest;
  assert.deepEqual(server.verifyRequest(regaut, lookup), {
    ok: false,
    reason: "missing",
    stale: false,
  });
  const other = parseMessage(REGISTER) as SipRequest;
  other.headers.append(
    "Authorization",
    'Digest username="a", realm="b.test", nonce="n", uri="sip:example.test", response="0"',
  );
  assert.deepEqual(server.verifyRequest(other, lookup), {
    ok: false,
    reason: "missing",
    stale: false,
  });
  const broken = parseMessage(REGISTER) as SipRequest;
  broken.headers.append("Authorization", 'Digest username="a", realm="example.test"');
  const r = server.verifyRequest(broken, lookup);
  assert.equal(r.ok === false && r.reason, "malformed");
});

Deno.test("DigestServer.verifyRequest() checks the digest-uri against the Request-URI", () => {
  const server = new DigestServer({ realm: "example.test" });
  const client = new DigestClient({ username: "alice", password: "pw" });
  client.begin().challenge(401, server.challenges());
  const req = parseMessage(REGISTER) as SipRequest;
  client.apply(req);
  req.uri = parseUri("sip:elsewhere.test");
  const r = server.verifyRequest(req, () => ({ password: "pw" }));
  assert.equal(r.ok === false && r.reason, "uri-mismatch");
});

// ---------------------------------------------------------------------------
// Interop with real peers on loopback: sipsak as client, Kamailio as server
// ---------------------------------------------------------------------------

/** A UDP "server" on 127.0.0.1 that answers every request with DigestServer. */
function startDigestUas(server: DigestServer, users: Record<string, string>) {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const results: DigestVerification[] = [];
  const done = (async () => {
    try {
      for await (const [data, from] of socket) {
        const req = parseMessage(data);
        if (req.kind !== "request") continue;
        const v = server.verifyRequest(req, (user) => {
          const password = users[user];
          return password === undefined ? undefined : { password };
        });
        results.push(v);
        const res = v.ok ? createResponse(req, 200, { toTag: "uas" }) : createResponse(req, 401, {
          toTag: "uas",
          headers: server.challengeFields({ stale: v.stale }),
        });
        await socket.send(formatMessage(res), from);
      }
    } catch {
      // closed
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    results,
    async close() {
      socket.close();
      await done;
    },
  };
}

Deno.test({
  name: "DigestServer accepts sipsak's digest (qop=auth and RFC 2069) and refuses a wrong password",
  ignore: !requirePeer("sipsak", "sipsak"),
  fn: async (t) => {
    for (const qop of [["auth"], []] as DigestQop[][]) {
      await t.step(qop.length ? "qop=auth" : "no qop", async () => {
        const uas = startDigestUas(
          new DigestServer({ realm: "127.0.0.1", algorithms: ["MD5"], qop }),
          { alice: "alice-pw" },
        );
        try {
          const args = (password: string) => [
            "-vv",
            "-s",
            "sip:alice@127.0.0.1",
            "-r",
            String(uas.port),
            "-H",
            "127.0.0.1",
            "--auth-username=alice",
            "-a",
            password,
          ];
          const good = await runSipsak(args("alice-pw"));
          assert.equal(good.code, 0, good.output);
          assert.deepEqual(uas.results.map((r) => r.ok || r.reason), ["missing", true]);
          uas.results.length = 0;
          const bad = await runSipsak(args("nope"));
          assert.notEqual(bad.code, 0, bad.output);
          assert.deepEqual(uas.results.slice(0, 2).map((r) => r.ok || r.reason), [
            "missing",
            "wrong-response",
          ]);
        } finally {
          await uas.close();
        }
      });
    }
  },
});

/** Sends one request over UDP and waits for its final response. */
async function exchange(
  socket: Deno.DatagramConn,
  req: SipRequest,
  to: Deno.NetAddr,
): Promise<SipResponse> {
  await socket.send(formatMessage(req), to);
  for (;;) {
    const [data] = await socket.receive();
    const msg = parseMessage(data);
    if (msg.kind === "response" && msg.status >= 200) return msg;
  }
}

Deno.test({
  name: "DigestClient registers at Kamailio, then pre-authenticates the refresh with nc=2",
  ignore: !requirePeer("kamailio", "kamailio"),
  fn: async () => {
    const k = await startKamailio({ mode: "registrar", domain: "example.test" });
    const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    try {
      await withLogsOnFailure([k], async () => {
        const local = (socket.addr as Deno.NetAddr).port;
        const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: k.port };
        let cseq = 0;
        const register = () =>
          createRequest("REGISTER", "sip:example.test", {
            headers: [
              ["Via", `SIP/2.0/UDP 127.0.0.1:${local};rport;branch=z9hG4bK${crypto.randomUUID()}`],
              ["Max-Forwards", "70"],
              ["From", "<sip:alice@example.test>;tag=h4"],
              ["To", "<sip:alice@example.test>"],
              ["Call-ID", "digest-interop@127.0.0.1"],
              ["CSeq", `${++cseq} REGISTER`],
              ["Contact", `<sip:alice@127.0.0.1:${local}>`],
              ["Expires", "60"],
            ],
          });
        const client = new DigestClient({ username: "alice", password: "alice-secret" });
        const attempt = client.begin();
        const first = await exchange(socket, register(), to);
        assert.equal(first.status, 401);
        attempt.handleResponse(first);
        const retry = register();
        client.apply(retry);
        const ok = await exchange(socket, retry, to);
        assert.equal(ok.status, 200, `${ok.status} ${ok.reason}`);

        // The refresh carries the cached credentials: no new challenge.
        const refresh = register();
        client.apply(refresh);
        assert.equal(parseDigestCredentials(refresh.headers.get("Authorization")!).nc, 2);
        const refreshed = await exchange(socket, refresh, to);
        assert.equal(refreshed.status, 200, `${refreshed.status} ${refreshed.reason}`);

        // A wrong password: Kamailio's config answers 403 to a bad digest.
        const wrong = new DigestClient({ username: "alice", password: "wrong" });
        const w = wrong.begin();
        w.handleResponse(await exchange(socket, register(), to));
        const bad = register();
        wrong.apply(bad);
        assert.equal((await exchange(socket, bad, to)).status, 403);
      });
    } finally {
      socket.close();
      await k.stop();
    }
  },
});
