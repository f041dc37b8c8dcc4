/**
 * Digest access authentication for SIP (RFC 3261 section 22, RFC 8760, RFC
 * 7616, and RFC 2617 / RFC 2069 compatibility): challenge and credential
 * parsing and formatting, the response computation for MD5, SHA-256 and
 * SHA-512-256 (plain and `-sess`), qop `auth`, `auth-int` and none, a client
 * that answers 401/407 with a loop guard ({@linkcode DigestClient}), and a
 * stateless server-side verifier for loopback registrars and proxies
 * ({@linkcode DigestServer}).
 *
 * The core works on strings; the `SipRequest`/`SipResponse` helpers only read
 * and write header lines through `SipHeaders`.
 *
 * @module
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { type Clock, systemClock } from "./clock.ts";
import { DigestAuthError, SipSyntaxError } from "./errors.ts";
import {
  formatUri,
  type HeaderField,
  parseUri,
  type SipRequest,
  type SipResponse,
} from "./message.ts";

// The error lives in errors.ts so that its users need not load the digest code.
export { DigestAuthError, type DigestAuthFailure } from "./errors.ts";

// ---------------------------------------------------------------------------
// Algorithms and hashes
// ---------------------------------------------------------------------------

/**
 * The digest algorithms sipkit computes, strongest first (RFC 8760 section
 * 2.1 and RFC 7616 section 6.1). `-sess` variants hash the session key
 * once per nonce and client nonce (RFC 7616 section 3.4.2).
 */
export const DIGEST_ALGORITHMS = [
  "SHA-512-256",
  "SHA-256",
  "MD5",
  "SHA-512-256-sess",
  "SHA-256-sess",
  "MD5-sess",
] as const;

/** A digest algorithm name as sent on the wire. */
export type DigestAlgorithm = typeof DIGEST_ALGORITHMS[number];

/** The quality-of-protection values of RFC 7616 section 3.3. */
export type DigestQop = "auth" | "auth-int";

const HASHES: Record<string, string> = {
  "md5": "md5",
  "sha-256": "sha256",
  "sha-512-256": "sha512-256",
};

/**
 * True when `name` (any case) is an algorithm sipkit can compute.
 *
 * @example
 * ```ts
 * import { isDigestAlgorithm } from "./digest.ts";
 * isDigestAlgorithm("sha-256"); // true
 * isDigestAlgorithm("SHA3-256"); // false
 * ```
 */
export function isDigestAlgorithm(name: string): boolean {
  return canonicalAlgorithm(name) !== undefined;
}

/** The canonical spelling of a supported algorithm, or undefined. */
function canonicalAlgorithm(name: string): DigestAlgorithm | undefined {
  const lower = name.toLowerCase();
  return DIGEST_ALGORITHMS.find((a) => a.toLowerCase() === lower);
}

function baseHash(algorithm: string): { name: string; sess: boolean } {
  const lower = algorithm.toLowerCase();
  const sess = lower.endsWith("-sess");
  const name = HASHES[sess ? lower.slice(0, -5) : lower];
  if (!name) throw new RangeError(`Unsupported digest algorithm: ${algorithm}`);
  return { name, sess };
}

/**
 * H(data) of RFC 7616 section 3.4: the lowercase hex hash of `data` (text is
 * hashed as UTF-8) with the hash of `algorithm` (`-sess` ignored).
 *
 * @example
 * ```ts
 * import { digestHash } from "./digest.ts";
 * digestHash("MD5", ""); // "d41d8cd98f00b204e9800998ecf8427e"
 * ```
 */
export function digestHash(algorithm: string, data: string | Uint8Array): string {
  return createHash(baseHash(algorithm).name).update(data).digest("hex");
}

/** What HA1 is computed from. */
export interface Ha1Input {
  /** User name. */
  username: string;
  /** Realm. */
  realm: string;
  /** Password. */
  password: string;
}

/**
 * HA1 = H(username ":" realm ":" password), RFC 7616 section 3.4.2, without
 * the `-sess` step (what a registrar may store instead of the password).
 *
 * @example
 * ```ts
 * import { computeHa1 } from "./digest.ts";
 * computeHa1({ username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life" });
 * // "939e7578ed9e3c518a452acee763bce9"
 * ```
 */
export function computeHa1(input: Ha1Input, algorithm = "MD5"): string {
  return digestHash(algorithm, `${input.username}:${input.realm}:${input.password}`);
}

/** Everything the response computation needs. */
export interface DigestResponseInput {
  /** Algorithm from the challenge; default "MD5" (RFC 7616 section 3.3). */
  algorithm?: string;
  /** User name. */
  username: string;
  /** Realm of the challenge. */
  realm: string;
  /** The password; give either this or `ha1`. */
  password?: string;
  /** A precomputed H(username:realm:password) instead of the password. */
  ha1?: string;
  /** Server nonce. */
  nonce: string;
  /** Request method (`REGISTER`, `INVITE`...). For ACK and CANCEL use "ACK"/"CANCEL". */
  method: string;
  /** The digest-uri: the Request-URI as sent (RFC 3261 section 22.4). */
  uri: string;
  /** Quality of protection; absent for the RFC 2069 computation. */
  qop?: DigestQop;
  /** Nonce count (required with qop). */
  nc?: number;
  /** Client nonce (required with qop or a `-sess` algorithm). */
  cnonce?: string;
  /** The message body, for `auth-int` (an empty body hashes the empty string). */
  body?: Uint8Array | string;
}

/** Formats a nonce count as the 8 lowercase hex digits of RFC 7616 section 3.4. */
export function formatNonceCount(nc: number): string {
  if (!Number.isInteger(nc) || nc < 1 || nc > 0xffffffff) {
    throw new RangeError(`Invalid nonce count: ${nc}`);
  }
  return nc.toString(16).padStart(8, "0");
}

/**
 * Computes the `response` value of RFC 7616 section 3.4.1 (and RFC 2617
 * section 3.2.2.1 without qop).
 *
 * @example
 * ```ts
 * import { computeDigestResponse } from "./digest.ts";
 * import assert from "node:assert/strict";
 * // RFC 2617 section 3.5
 * const response = computeDigestResponse({
 *   username: "Mufasa", realm: "testrealm@host.com", password: "Circle Of Life",
 *   nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", method: "GET", uri: "/dir/index.html",
 *   qop: "auth", nc: 1, cnonce: "0a4f113b",
 * });
 * assert.equal(response, "6629fae49393a05397450978507c4ef1");
 * ```
 */
export function computeDigestResponse(input: DigestResponseInput): string {
  const algorithm = input.algorithm ?? "MD5";
  const { sess } = baseHash(algorithm);
  let ha1 = input.ha1 ??
    (input.password === undefined ? undefined : computeHa1(
      { username: input.username, realm: input.realm, password: input.password },
      algorithm,
    ));
  if (ha1 === undefined) throw new TypeError("computeDigestResponse() needs a password or ha1");
  if (sess) {
    // RFC 7616 section 3.4.2: for "-sess", HA1 = H(H(user:realm:pass) ":" nonce ":" cnonce).
    if (input.cnonce === undefined) throw new TypeError(`${algorithm} needs a cnonce`);
    ha1 = digestHash(algorithm, `${ha1}:${input.nonce}:${input.cnonce}`);
  }
  let a2 = `${input.method}:${input.uri}`;
  if (input.qop === "auth-int") {
    // RFC 7616 section 3.4.3: A2 = Method ":" request-uri ":" H(entity-body);
    // RFC 3261 section 22.4: an empty body hashes the empty string.
    a2 += `:${digestHash(algorithm, input.body ?? "")}`;
  }
  const ha2 = digestHash(algorithm, a2);
  if (input.qop === undefined) {
    // RFC 2617 section 3.2.2.1 (RFC 2069 compatibility): KD(HA1, nonce ":" HA2).
    return digestHash(algorithm, `${ha1}:${input.nonce}:${ha2}`);
  }
  if (input.nc === undefined || input.cnonce === undefined) {
    throw new TypeError(`qop=${input.qop} needs nc and cnonce`);
  }
  const nc = formatNonceCount(input.nc);
  return digestHash(algorithm, `${ha1}:${input.nonce}:${nc}:${input.cnonce}:${input.qop}:${ha2}`);
}

/** A fresh random client nonce (128 bits, hex). */
export function createCnonce(): string {
  return randomBytes(16).toString("hex");
}

// ---------------------------------------------------------------------------
// Parsing WWW-Authenticate / Proxy-Authenticate / Authorization values
// ---------------------------------------------------------------------------

/** One challenge or credentials value: the scheme and its parameters. */
export interface AuthParams {
  /** The auth-scheme as sent ("Digest", "Basic"...). */
  scheme: string;
  /** Parameters with lowercase names and unquoted, unescaped values. */
  params: Record<string, string>;
  /** A token68 value (`Basic dXNlcg==`), for schemes that use one. */
  token68?: string;
}

const TOKEN_CHAR = /[A-Za-z0-9\-.!%*_+`'~]/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=\s*(?:,|$))/;

function isWs(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\r" || c === "\n";
}

/**
 * Parses the value of one WWW-Authenticate, Proxy-Authenticate, Authorization
 * or Proxy-Authorization line, which may hold several challenges
 * (`Digest realm="a", nonce="1", Digest realm="a", nonce="2", algorithm=SHA-256`).
 * Quoted strings are unescaped. Throws {@linkcode SipSyntaxError} when the
 * value is malformed.
 *
 * @example
 * ```ts
 * import { parseAuthParams } from "./digest.ts";
 * import assert from "node:assert/strict";
 * const [c] = parseAuthParams('Digest realm="a\\"b", nonce=xyz');
 * assert.equal(c.params.realm, 'a"b');
 * ```
 */
export function parseAuthParams(value: string, header = "WWW-Authenticate"): AuthParams[] {
  const s = value;
  let i = 0;
  const out: AuthParams[] = [];
  const fail = (why: string): never => {
    throw new SipSyntaxError(`Cannot parse ${header} header: ${why}`, { header, offset: i });
  };
  const skipWs = () => {
    while (isWs(s[i])) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < s.length && TOKEN_CHAR.test(s[i])) i++;
    return s.slice(start, i);
  };
  const readQuoted = (): string => {
    i++; // opening quote
    let v = "";
    for (;;) {
      if (i >= s.length) fail("unterminated quoted string");
      const c = s[i++];
      if (c === '"') return v;
      if (c === "\\") {
        if (i >= s.length) fail("unterminated quoted string");
        v += s[i++];
      } else {
        v += c;
      }
    }
  };
  for (;;) {
    while (isWs(s[i]) || s[i] === ",") i++;
    if (i >= s.length) break;
    const scheme = readToken();
    if (!scheme) fail(`unexpected character ${JSON.stringify(s[i])}`);
    const challenge: AuthParams = { scheme, params: {} };
    out.push(challenge);
    skipWs();
    const t68 = TOKEN68.exec(s.slice(i));
    if (t68) {
      challenge.token68 = t68[0];
      i += t68[0].length;
    }
    // auth-param list: name = (token | quoted-string), separated by commas.
    for (;;) {
      skipWs();
      if (i >= s.length) break;
      if (s[i] === ",") {
        i++;
        continue;
      }
      const start = i;
      const name = readToken();
      if (!name) fail(`unexpected character ${JSON.stringify(s[i])}`);
      skipWs();
      if (s[i] !== "=") {
        // A token without "=" starts the next challenge.
        i = start;
        break;
      }
      i++;
      skipWs();
      let v: string;
      if (s[i] === '"') {
        v = readQuoted();
      } else {
        const vs = i;
        // Lenient: an unquoted value runs to the next comma or space (servers
        // send base64 nonces unquoted).
        while (i < s.length && s[i] !== "," && !isWs(s[i])) i++;
        v = s.slice(vs, i);
        if (!v) fail(`missing value for parameter ${name}`);
      }
      const key = name.toLowerCase();
      if (!(key in challenge.params)) challenge.params[key] = v;
      skipWs();
      if (i < s.length && s[i] !== ",") fail(`expected a comma after parameter ${name}`);
    }
  }
  return out;
}

/** A parsed Digest challenge (RFC 7616 section 3.3, RFC 3261 section 20.44). */
export interface DigestChallenge {
  /** Realm. */
  realm: string;
  /** Server nonce. */
  nonce: string;
  /** Algorithm, canonical spelling when known; "MD5" when absent. */
  algorithm: string;
  /** True when the challenge carried an explicit algorithm parameter. */
  algorithmGiven: boolean;
  /** qop options, lowercase (empty for RFC 2069 servers). */
  qop: string[];
  /** stale=true: the previous credentials were right, only the nonce expired. */
  stale: boolean;
  /** Opaque value to echo. */
  opaque?: string;
  /** Protection space URIs. */
  domain: string[];
  /** Every parameter as parsed. */
  params: Record<string, string>;
}

/**
 * Turns one parsed challenge into a {@linkcode DigestChallenge}; returns
 * undefined for other schemes. Throws {@linkcode SipSyntaxError} when a
 * Digest challenge lacks its realm or nonce.
 */
export function toDigestChallenge(
  value: AuthParams,
  header = "WWW-Authenticate",
): DigestChallenge | undefined {
  if (value.scheme.toLowerCase() !== "digest") return undefined;
  const p = value.params;
  for (const name of ["realm", "nonce"]) {
    if (p[name] === undefined) {
      throw new SipSyntaxError(`Cannot parse ${header} header: missing ${name} parameter`, {
        header,
      });
    }
  }
  const algorithm = p.algorithm === undefined
    ? "MD5"
    : canonicalAlgorithm(p.algorithm) ?? p.algorithm;
  return {
    realm: p.realm,
    nonce: p.nonce,
    algorithm,
    algorithmGiven: p.algorithm !== undefined,
    qop: (p.qop ?? "").split(",").map((q) => q.trim().toLowerCase()).filter((q) => q !== ""),
    stale: (p.stale ?? "").toLowerCase() === "true",
    opaque: p.opaque,
    domain: (p.domain ?? "").split(/\s+/).filter((d) => d !== ""),
    params: p,
  };
}

/**
 * Parses every Digest challenge from WWW-Authenticate or Proxy-Authenticate
 * lines (each line may hold several challenges). Other schemes are skipped.
 *
 * @example
 * ```ts
 * import { parseDigestChallenges } from "./digest.ts";
 * import assert from "node:assert/strict";
 * const cs = parseDigestChallenges([
 *   'Digest realm="r", nonce="1", algorithm=SHA-256, qop="auth,auth-int"',
 *   'Digest realm="r", nonce="1", algorithm=MD5, qop="auth"',
 * ]);
 * assert.deepEqual(cs.map((c) => c.algorithm), ["SHA-256", "MD5"]);
 * ```
 */
export function parseDigestChallenges(
  lines: string | readonly string[],
  header = "WWW-Authenticate",
): DigestChallenge[] {
  const out: DigestChallenge[] = [];
  for (const line of typeof lines === "string" ? [lines] : lines) {
    for (const c of parseAuthParams(line, header)) {
      const d = toDigestChallenge(c, header);
      if (d) out.push(d);
    }
  }
  return out;
}

/** Options of {@linkcode selectChallenges}. */
export interface SelectChallengeOptions {
  /** Algorithms the client accepts; default every supported one. */
  algorithms?: readonly string[];
  /**
   * "strongest" (default): per realm, the strongest supported algorithm, then
   * server order. "server": the topmost supported challenge per realm, as
   * RFC 8760 section 2.4 describes absent a local policy.
   */
  preference?: "strongest" | "server";
  /** Only answer this realm. */
  realm?: string;
}

/** True when the client can answer this challenge (algorithm and qop). */
function answerable(c: DigestChallenge, algorithms: readonly string[]): boolean {
  const alg = canonicalAlgorithm(c.algorithm);
  if (!alg || !algorithms.some((a) => a.toLowerCase() === alg.toLowerCase())) return false;
  // RFC 7616 section 3.3: with a qop list, the client must pick one it supports.
  return c.qop.length === 0 || c.qop.includes("auth") || c.qop.includes("auth-int");
}

/**
 * Chooses one challenge per realm: the strongest supported algorithm
 * (SHA-512-256, then SHA-256, then MD5; plain before `-sess`) unless
 * `preference: "server"`. Unanswerable challenges are dropped.
 *
 * @example
 * ```ts
 * import { parseDigestChallenges, selectChallenges } from "./digest.ts";
 * import assert from "node:assert/strict";
 * const cs = parseDigestChallenges('Digest realm="r", nonce="1", Digest realm="r", nonce="1", algorithm=SHA-256');
 * assert.equal(selectChallenges(cs)[0].algorithm, "SHA-256");
 * ```
 */
export function selectChallenges(
  challenges: readonly DigestChallenge[],
  options: SelectChallengeOptions = {},
): DigestChallenge[] {
  const algorithms = options.algorithms ?? DIGEST_ALGORITHMS;
  const byRealm = new Map<string, DigestChallenge[]>();
  for (const c of challenges) {
    if (options.realm !== undefined && c.realm !== options.realm) continue;
    if (!answerable(c, algorithms)) continue;
    const list = byRealm.get(c.realm) ?? [];
    list.push(c);
    byRealm.set(c.realm, list);
  }
  const rank = (c: DigestChallenge) =>
    DIGEST_ALGORITHMS.indexOf(canonicalAlgorithm(c.algorithm) as DigestAlgorithm);
  const out: DigestChallenge[] = [];
  for (const list of byRealm.values()) {
    if (options.preference === "server") {
      out.push(list[0]);
    } else {
      // Array.prototype.sort is stable: equal strength keeps server order.
      out.push([...list].sort((a, b) => rank(a) - rank(b))[0]);
    }
  }
  return out;
}

/** Parsed Authorization / Proxy-Authorization Digest credentials (RFC 7616 section 3.4). */
export interface DigestCredentials {
  /** User name. */
  username: string;
  /** Realm. */
  realm: string;
  /** Server nonce echoed. */
  nonce: string;
  /** digest-uri. */
  uri: string;
  /** Response hash, lowercase hex. */
  response: string;
  /** Algorithm (canonical when known); "MD5" when absent. */
  algorithm: string;
  /** Client nonce. */
  cnonce?: string;
  /** Opaque echoed. */
  opaque?: string;
  /** Chosen qop, lowercase. */
  qop?: string;
  /** Nonce count. */
  nc?: number;
  /** Every parameter as parsed. */
  params: Record<string, string>;
}

/**
 * Parses one Authorization or Proxy-Authorization value with the Digest
 * scheme. Throws {@linkcode SipSyntaxError} for another scheme, a missing
 * parameter or a malformed nonce count.
 *
 * @example
 * ```ts
 * import { parseDigestCredentials } from "./digest.ts";
 * const c = parseDigestCredentials('Digest username="bob", realm="r", nonce="n", uri="sip:r", response="00", nc=0000000a');
 * c.nc; // 10
 * ```
 */
export function parseDigestCredentials(
  value: string,
  header = "Authorization",
): DigestCredentials {
  const [first, ...rest] = parseAuthParams(value, header);
  if (!first || rest.length > 0 || first.scheme.toLowerCase() !== "digest") {
    throw new SipSyntaxError(`Cannot parse ${header} header: not one Digest credentials value`, {
      header,
    });
  }
  const p = first.params;
  for (const name of ["username", "realm", "nonce", "uri", "response"]) {
    if (p[name] === undefined) {
      throw new SipSyntaxError(`Cannot parse ${header} header: missing ${name} parameter`, {
        header,
      });
    }
  }
  let nc: number | undefined;
  if (p.nc !== undefined) {
    if (!/^[0-9a-fA-F]{8}$/.test(p.nc)) {
      throw new SipSyntaxError(`Cannot parse ${header} header: bad nc parameter`, { header });
    }
    nc = parseInt(p.nc, 16);
  }
  return {
    username: p.username,
    realm: p.realm,
    nonce: p.nonce,
    uri: p.uri,
    response: p.response.toLowerCase(),
    algorithm: p.algorithm === undefined ? "MD5" : canonicalAlgorithm(p.algorithm) ?? p.algorithm,
    cnonce: p.cnonce,
    opaque: p.opaque,
    qop: p.qop?.toLowerCase(),
    nc,
    params: p,
  };
}

/** Quotes a value as a quoted-string, escaping `"` and `\`; refuses CR, LF and NUL. */
function quote(name: string, value: string, header: string): string {
  if (/[\r\n\0]/.test(value)) {
    throw new TypeError(`Cannot format ${header} header: CR, LF or NUL in ${name}`);
  }
  return `"${value.replace(/[\\"]/g, (c) => "\\" + c)}"`;
}

function token(name: string, value: string, header: string): string {
  if (!/^[A-Za-z0-9\-.!%*_+`'~]+$/.test(value)) {
    throw new TypeError(`Cannot format ${header} header: ${name} is not a token`);
  }
  return value;
}

/** What {@linkcode formatDigestCredentials} writes. */
export interface DigestCredentialsInit {
  /** User name (quoted). */
  username: string;
  /** Realm (quoted). */
  realm: string;
  /** Nonce (quoted). */
  nonce: string;
  /** digest-uri (quoted). */
  uri: string;
  /** Response (quoted). */
  response: string;
  /** Algorithm (token); omitted when undefined. */
  algorithm?: string;
  /** Client nonce (quoted). */
  cnonce?: string;
  /** Opaque (quoted). */
  opaque?: string;
  /** qop (token). */
  qop?: string;
  /** Nonce count (8 hex digits, unquoted). */
  nc?: number;
}

/**
 * Formats an Authorization / Proxy-Authorization Digest value. username,
 * realm, nonce, uri, response, cnonce and opaque are quoted; algorithm, qop
 * and nc are tokens (RFC 7616 section 3.4, RFC 3261 section 25.1).
 *
 * @example
 * ```ts
 * import { formatDigestCredentials } from "./digest.ts";
 * formatDigestCredentials({ username: "bob", realm: "r", nonce: "n", uri: "sip:r", response: "ab", algorithm: "MD5", qop: "auth", nc: 1, cnonce: "c" });
 * // 'Digest username="bob", realm="r", nonce="n", uri="sip:r", response="ab", algorithm=MD5, cnonce="c", qop=auth, nc=00000001'
 * ```
 */
export function formatDigestCredentials(
  c: DigestCredentialsInit,
  header = "Authorization",
): string {
  const parts = [
    `username=${quote("username", c.username, header)}`,
    `realm=${quote("realm", c.realm, header)}`,
    `nonce=${quote("nonce", c.nonce, header)}`,
    `uri=${quote("uri", c.uri, header)}`,
    `response=${quote("response", c.response, header)}`,
  ];
  if (c.algorithm !== undefined) parts.push(`algorithm=${token("algorithm", c.algorithm, header)}`);
  if (c.cnonce !== undefined) parts.push(`cnonce=${quote("cnonce", c.cnonce, header)}`);
  if (c.opaque !== undefined) parts.push(`opaque=${quote("opaque", c.opaque, header)}`);
  if (c.qop !== undefined) parts.push(`qop=${token("qop", c.qop, header)}`);
  if (c.nc !== undefined) parts.push(`nc=${formatNonceCount(c.nc)}`);
  return `Digest ${parts.join(", ")}`;
}

/** What {@linkcode formatDigestChallenge} writes. */
export interface DigestChallengeInit {
  /** Realm (quoted). */
  realm: string;
  /** Nonce (quoted). */
  nonce: string;
  /** Algorithm (token); omitted when undefined. */
  algorithm?: string;
  /** qop options, written as one quoted list; omitted when empty. */
  qop?: readonly string[];
  /** Opaque (quoted). */
  opaque?: string;
  /** stale=TRUE when true. */
  stale?: boolean;
  /** Protection space URIs (quoted, space-separated). */
  domain?: readonly string[];
}

/**
 * Formats a WWW-Authenticate / Proxy-Authenticate Digest challenge.
 *
 * @example
 * ```ts
 * import { formatDigestChallenge } from "./digest.ts";
 * formatDigestChallenge({ realm: "r", nonce: "n", algorithm: "SHA-256", qop: ["auth"] });
 * // 'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"'
 * ```
 */
export function formatDigestChallenge(
  c: DigestChallengeInit,
  header = "WWW-Authenticate",
): string {
  const parts = [`realm=${quote("realm", c.realm, header)}`];
  if (c.domain && c.domain.length > 0) {
    parts.push(`domain=${quote("domain", c.domain.join(" "), header)}`);
  }
  parts.push(`nonce=${quote("nonce", c.nonce, header)}`);
  if (c.opaque !== undefined) parts.push(`opaque=${quote("opaque", c.opaque, header)}`);
  if (c.stale) parts.push("stale=TRUE");
  if (c.algorithm !== undefined) parts.push(`algorithm=${token("algorithm", c.algorithm, header)}`);
  if (c.qop && c.qop.length > 0) {
    c.qop.forEach((q) => token("qop", q, header));
    parts.push(`qop="${c.qop.join(",")}"`);
  }
  return `Digest ${parts.join(", ")}`;
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/** The user's credentials. */
export interface DigestUserCredentials {
  /** Authentication user name. */
  username: string;
  /** Password. Kept private by {@linkcode DigestClient}; never logged. */
  password: string;
  /** Answer only challenges for this realm (default: any realm). */
  realm?: string;
}

/** The request fields the digest covers. */
export interface DigestRequestInfo {
  /** Method. */
  method: string;
  /** Request-URI as it is sent. */
  uri: string;
  /** Body (for qop=auth-int). */
  body?: Uint8Array | string;
}

/** Options of {@linkcode DigestClient}. */
export interface DigestClientOptions {
  /** 401/407 responses accepted for one request before giving up; default 5. */
  maxChallenges?: number;
  /** Client nonce generator; default 128 random bits in hex. */
  cnonce?: () => string;
  /** Accepted algorithms; default every supported one. */
  algorithms?: readonly string[];
  /** Challenge choice per realm; default "strongest". */
  preference?: "strongest" | "server";
  /** Use qop=auth-int (body integrity) when the server offers it; default false. */
  preferAuthInt?: boolean;
}

interface RealmState {
  proxy: boolean;
  challenge: DigestChallenge;
  nc: number;
  cnonce: string;
}

const INSPECT = Symbol.for("Deno.customInspect");
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom");

/**
 * Answers digest challenges for one user. Remembers each challenged realm
 * (and whether it came from a proxy) so that later requests are
 * pre-authenticated with the same nonce and an incremented nonce count.
 * Use {@linkcode DigestClient.begin} once per logical request for the loop
 * guard.
 *
 * @example
 * ```ts
 * import { DigestClient } from "./digest.ts";
 * import assert from "node:assert/strict";
 * const client = new DigestClient({ username: "alice", password: "secret" }, { cnonce: () => "c" });
 * const attempt = client.begin();
 * attempt.challenge(401, ['Digest realm="example.test", nonce="n1", qop="auth"']);
 * const [field] = client.headersFor({ method: "REGISTER", uri: "sip:example.test" });
 * assert.equal(field.name, "Authorization");
 * assert.match(field.value, /nc=00000001/);
 * ```
 */
export class DigestClient {
  readonly #username: string;
  readonly #password: string;
  readonly #realm?: string;
  readonly #options: DigestClientOptions;
  readonly #states = new Map<string, RealmState>();

  /** Creates a client; the password is held in a private field. */
  constructor(credentials: DigestUserCredentials, options: DigestClientOptions = {}) {
    this.#username = credentials.username;
    this.#password = credentials.password;
    this.#realm = credentials.realm;
    this.#options = options;
  }

  /** The authentication user name. */
  get username(): string {
    return this.#username;
  }

  /** The realms with cached challenges, e.g. `["www:example.test"]`. */
  get realms(): string[] {
    return [...this.#states.values()].map((s) =>
      `${s.proxy ? "proxy" : "www"}:${s.challenge.realm}`
    );
  }

  /** Forgets every cached challenge (after a failure or an address change). */
  forget(): void {
    this.#states.clear();
  }

  /**
   * Authorization / Proxy-Authorization fields for a request, one per cached
   * realm; each call counts one use of the nonce (nc increments).
   */
  headersFor(request: DigestRequestInfo): HeaderField[] {
    const fields: HeaderField[] = [];
    for (const st of this.#states.values()) {
      fields.push({
        name: st.proxy ? "Proxy-Authorization" : "Authorization",
        value: this.#answer(st, request),
      });
    }
    return fields;
  }

  /**
   * Puts the cached credentials on a request: replaces the Authorization and
   * Proxy-Authorization lines of the realms this client knows, keeps others.
   */
  apply(request: SipRequest): void {
    const fields = this.headersFor({
      method: request.method,
      uri: formatUri(request.uri),
      body: request.body,
    });
    for (const name of ["Authorization", "Proxy-Authorization"]) {
      const lines = request.headers.getAll(name);
      if (lines.length === 0) continue;
      const keep = lines.filter((line) => {
        try {
          const realm = parseDigestCredentials(line, name).realm;
          return !this.#states.has(stateKey(name === "Proxy-Authorization", realm));
        } catch {
          return true;
        }
      });
      request.headers.delete(name);
      for (const line of keep) request.headers.append(name, line);
    }
    for (const f of fields) request.headers.append(f.name, f.value);
  }

  /** Starts the challenge loop of one logical request. */
  begin(): DigestAttempt {
    return new DigestAttempt({
      username: this.#username,
      realm: this.#realm,
      options: this.#options,
      store: (proxy: boolean, challenge: DigestChallenge) => {
        const key = stateKey(proxy, challenge.realm);
        const old = this.#states.get(key);
        if (
          old && old.challenge.nonce === challenge.nonce &&
          old.challenge.algorithm === challenge.algorithm
        ) {
          // The same nonce again: its count goes on (RFC 7616 section 3.4:
          // nc counts every request sent with that nonce).
          old.challenge = challenge;
          return;
        }
        this.#states.set(key, {
          proxy,
          challenge,
          nc: 0,
          cnonce: (this.#options.cnonce ?? createCnonce)(),
        });
      },
    });
  }

  #answer(st: RealmState, request: DigestRequestInfo): string {
    const c = st.challenge;
    let qop: DigestQop | undefined;
    if (c.qop.length > 0) {
      const authInt = c.qop.includes("auth-int");
      qop = (this.#options.preferAuthInt && authInt) || !c.qop.includes("auth")
        ? "auth-int"
        : "auth";
    }
    const sess = c.algorithm.toLowerCase().endsWith("-sess");
    let nc: number | undefined;
    let cnonce: string | undefined;
    if (qop !== undefined) {
      st.nc++;
      nc = st.nc;
      cnonce = st.cnonce;
    } else if (sess) {
      cnonce = st.cnonce;
    }
    const response = computeDigestResponse({
      algorithm: c.algorithm,
      username: this.#username,
      realm: c.realm,
      password: this.#password,
      nonce: c.nonce,
      method: request.method,
      uri: request.uri,
      qop,
      nc,
      cnonce,
      body: request.body,
    });
    return formatDigestCredentials({
      username: this.#username,
      realm: c.realm,
      nonce: c.nonce,
      uri: request.uri,
      response,
      algorithm: c.algorithm,
      cnonce,
      opaque: c.opaque,
      qop,
      nc,
    }, st.proxy ? "Proxy-Authorization" : "Authorization");
  }

  /** A safe JSON form: the user name and realms, no secret. */
  toJSON(): { username: string; realms: string[] } {
    return { username: this.#username, realms: this.realms };
  }

  /** A safe string form. */
  toString(): string {
    return `DigestClient(${this.#username})`;
  }

  /** Deno.inspect / console.log show no secret. */
  [INSPECT](): string {
    return this.toString();
  }

  /** node:util inspect shows no secret. */
  [NODE_INSPECT](): string {
    return this.toString();
  }
}

function stateKey(proxy: boolean, realm: string): string {
  return `${proxy ? "proxy" : "www"}\u0000${realm}`;
}

/** What a {@linkcode DigestAttempt} may see of its client (no secret). */
export interface DigestAttemptContext {
  /** User name, for error messages. */
  username: string;
  /** Realm restriction of the credentials. */
  realm?: string;
  /** The client's options. */
  options: DigestClientOptions;
  /** Records the challenge chosen for a realm (resets nc, new cnonce). */
  store(proxy: boolean, challenge: DigestChallenge): void;
}

/**
 * The challenge loop of one logical request (a request and its retries with
 * new CSeq numbers). It applies the loop guard: a second non-stale challenge
 * for a realm already answered means the credentials are wrong.
 */
export class DigestAttempt {
  readonly #ctx: DigestAttemptContext;
  readonly #answered = new Set<string>();
  #challenges = 0;

  /** Use {@linkcode DigestClient.begin}. */
  constructor(context: DigestAttemptContext) {
    this.#ctx = context;
  }

  /** How many 401/407 responses this attempt has handled. */
  get challenges(): number {
    return this.#challenges;
  }

  /**
   * Handles the challenge lines of a 401 (WWW-Authenticate) or 407
   * (Proxy-Authenticate; any other status is taken as 401). After it
   * returns, {@linkcode DigestClient.headersFor} gives the credentials for
   * the retry. Throws {@linkcode DigestAuthError} when the request must not
   * be retried.
   */
  challenge(status: number, lines: readonly string[]): void {
    const proxy = status === 407;
    const header = proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    const { username: user, options, realm } = this.#ctx;
    this.#challenges++;
    const max = options.maxChallenges ?? 5;
    if (this.#challenges > max) {
      throw new DigestAuthError(
        "too-many-challenges",
        `Authentication failed for user ${user}: more than ${max} challenges for one request`,
        { status },
      );
    }
    const parsed: DigestChallenge[] = [];
    for (const line of lines) {
      let values: AuthParams[];
      try {
        values = parseAuthParams(line, header);
      } catch {
        continue; // one malformed line does not hide the others
      }
      for (const v of values) {
        try {
          const d = toDigestChallenge(v, header);
          if (d) parsed.push(d);
        } catch {
          // a Digest challenge without realm or nonce cannot be answered
        }
      }
    }
    const chosen = selectChallenges(parsed, {
      algorithms: options.algorithms,
      preference: options.preference,
      realm,
    });
    if (chosen.length === 0) {
      const offered = parsed.length === 0
        ? `no usable ${header} challenge`
        : `no supported challenge among ${
          parsed.map((c) => `realm "${c.realm}" ${c.algorithm}`).join(", ")
        }`;
      throw new DigestAuthError(
        "unsupported",
        `Authentication failed for user ${user}: ${offered}`,
        { status, realm },
      );
    }
    for (const c of chosen) {
      const key = stateKey(proxy, c.realm);
      // RFC 7616 section 3.3 (stale): "the client may wish to simply retry the
      // request with a new encrypted response, without reprompting the user".
      // RFC 2617 section 3.2.1: otherwise "the username and/or password are
      // invalid": a second non-stale challenge for a realm answered in this
      // request ends the loop.
      if (!c.stale && this.#answered.has(key)) {
        throw new DigestAuthError(
          "rejected",
          `Authentication failed for realm "${c.realm}": credentials of user ${user} rejected`,
          { status, realm: c.realm },
        );
      }
      this.#answered.add(key);
      this.#ctx.store(proxy, c);
    }
  }

  /** Handles a 401/407 response (reads its challenge header lines). */
  handleResponse(response: SipResponse): void {
    const name = response.status === 407 ? "Proxy-Authenticate" : "WWW-Authenticate";
    this.challenge(response.status, response.headers.getAll(name));
  }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/** A user's secret for verification: the password, or a stored HA1 for the algorithm used. */
export type DigestSecret = { password: string } | { ha1: string };

/** Options of {@linkcode DigestServer}. */
export interface DigestServerOptions {
  /** Realm of the challenges. */
  realm: string;
  /** HMAC key for stateless nonces; default 32 random bytes. */
  secret?: string | Uint8Array;
  /** Challenges offered, one header line each, in this order; default SHA-256 then MD5. */
  algorithms?: readonly DigestAlgorithm[];
  /** qop options offered; default ["auth"]; empty for RFC 2069 style. */
  qop?: readonly DigestQop[];
  /** How long a nonce is fresh; default 300 000 ms. */
  nonceLifetimeMs?: number;
  /** Clock for nonce timestamps; default the system clock. */
  clock?: Clock;
  /** Opaque value sent with challenges. */
  opaque?: string;
}

/** Outcome of {@linkcode DigestServer.verify}. */
export type DigestVerification =
  | { ok: true; username: string; realm: string; algorithm: string; nc?: number }
  | {
    ok: false;
    /** Why; "stale" means the digest was right but the nonce expired: challenge with stale=true. */
    reason:
      | "missing"
      | "malformed"
      | "realm"
      | "unknown-user"
      | "algorithm"
      | "qop"
      | "bad-nonce"
      | "uri-mismatch"
      | "replay"
      | "wrong-response"
      | "stale";
    /** True when the new challenge should carry stale=true. */
    stale: boolean;
    /** User name sent, when parsed. */
    username?: string;
  };

/**
 * The server side of digest (for loopback registrars and proxies in tests):
 * makes challenges whose nonces carry a timestamp and an HMAC, so they are
 * checked without state, and verifies credentials against a password or HA1.
 *
 * @example
 * ```ts
 * import { DigestClient, DigestServer } from "./digest.ts";
 * import assert from "node:assert/strict";
 * const server = new DigestServer({ realm: "example.test" });
 * const client = new DigestClient({ username: "bob", password: "pw" });
 * client.begin().challenge(401, server.challenges());
 * const req = { method: "REGISTER", uri: "sip:example.test" };
 * const [auth] = client.headersFor(req);
 * assert.equal(server.verify(auth.value, req, { password: "pw" }).ok, true);
 * ```
 */
export class DigestServer {
  /** The realm. */
  readonly realm: string;
  readonly #key: Uint8Array;
  readonly #algorithms: readonly DigestAlgorithm[];
  readonly #qop: readonly DigestQop[];
  readonly #lifetime: number;
  readonly #clock: Clock;
  readonly #opaque?: string;
  readonly #counts = new Map<string, { nc: number; at: number }>();

  /** Creates a verifier for one realm. */
  constructor(options: DigestServerOptions) {
    this.realm = options.realm;
    this.#key = typeof options.secret === "string"
      ? new TextEncoder().encode(options.secret)
      : options.secret ?? new Uint8Array(randomBytes(32));
    this.#algorithms = options.algorithms ?? ["SHA-256", "MD5"];
    this.#qop = options.qop ?? ["auth"];
    this.#lifetime = options.nonceLifetimeMs ?? 300_000;
    this.#clock = options.clock ?? systemClock;
    this.#opaque = options.opaque;
  }

  #mac(body: string): string {
    return createHmac("sha256", this.#key).update(`${body}.${this.realm}`).digest("base64url")
      .slice(0, 22);
  }

  /** A new nonce: `<timestamp>.<random>.<hmac>` (base36 and base64url). */
  createNonce(): string {
    const body = `${Math.floor(this.#clock.now()).toString(36)}.${
      randomBytes(12).toString("base64url")
    }`;
    return `${body}.${this.#mac(body)}`;
  }

  /** "fresh", "stale" (ours but older than the lifetime) or "invalid". */
  checkNonce(nonce: string): "fresh" | "stale" | "invalid" {
    const parts = nonce.split(".");
    if (parts.length !== 3) return "invalid";
    const body = `${parts[0]}.${parts[1]}`;
    const want = new TextEncoder().encode(this.#mac(body));
    const got = new TextEncoder().encode(parts[2]);
    if (want.length !== got.length || !timingSafeEqual(want, got)) return "invalid";
    const ts = parseInt(parts[0], 36);
    if (!Number.isFinite(ts)) return "invalid";
    const age = this.#clock.now() - ts;
    return age >= 0 && age <= this.#lifetime ? "fresh" : "stale";
  }

  /**
   * Challenge header values, one per algorithm (RFC 8760 section 2.4: in
   * order of preference, all with the same nonce).
   */
  challenges(options: { stale?: boolean } = {}): string[] {
    const nonce = this.createNonce();
    return this.#algorithms.map((algorithm) =>
      formatDigestChallenge({
        realm: this.realm,
        nonce,
        algorithm,
        qop: this.#qop,
        opaque: this.#opaque,
        stale: options.stale,
      })
    );
  }

  /** The challenge header fields of a 401 (or a 407 with `proxy: true`). */
  challengeFields(options: { stale?: boolean; proxy?: boolean } = {}): HeaderField[] {
    const name = options.proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    return this.challenges(options).map((value) => ({ name, value }));
  }

  /**
   * Verifies one Authorization / Proxy-Authorization value for a request.
   * `request.uri` is compared with the digest-uri unless it is undefined.
   */
  verify(
    value: string,
    request: { method: string; uri?: string; body?: Uint8Array | string },
    secret: DigestSecret | undefined,
  ): DigestVerification {
    let c: DigestCredentials;
    try {
      c = parseDigestCredentials(value);
    } catch {
      return { ok: false, reason: "malformed", stale: false };
    }
    const fail = (
      reason: Exclude<DigestVerification, { ok: true }>["reason"],
      stale = false,
    ): DigestVerification => ({ ok: false, reason, stale, username: c.username });
    if (c.realm !== this.realm) return fail("realm");
    if (!this.#algorithms.some((a) => a.toLowerCase() === c.algorithm.toLowerCase())) {
      return fail("algorithm");
    }
    if (c.qop !== undefined) {
      if (!this.#qop.includes(c.qop as DigestQop)) return fail("qop");
      if (c.nc === undefined || c.cnonce === undefined) return fail("malformed");
    } else if (this.#qop.length > 0) {
      return fail("qop");
    }
    const nonceState = this.checkNonce(c.nonce);
    if (nonceState === "invalid") return fail("bad-nonce");
    // RFC 3261 section 22.4: the digest-uri is the Request-URI of the request.
    if (request.uri !== undefined && !sameRequestUri(c.uri, request.uri)) {
      return fail("uri-mismatch");
    }
    if (secret === undefined) return fail("unknown-user");
    const expected = computeDigestResponse({
      algorithm: c.algorithm,
      username: c.username,
      realm: c.realm,
      nonce: c.nonce,
      method: request.method,
      uri: c.uri,
      qop: c.qop as DigestQop | undefined,
      nc: c.nc,
      cnonce: c.cnonce,
      body: request.body,
      ...("password" in secret ? { password: secret.password } : { ha1: secret.ha1 }),
    });
    const a = new TextEncoder().encode(expected);
    const b = new TextEncoder().encode(c.response);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return fail("wrong-response");
    // RFC 7616 section 3.3 (stale): the digest is valid but the nonce is not.
    if (nonceState === "stale") return fail("stale", true);
    if (c.nc !== undefined) {
      const key = `${c.nonce}\u0000${c.cnonce}`;
      const prev = this.#counts.get(key);
      if (prev && c.nc <= prev.nc) return fail("replay");
      this.#remember(key, c.nc);
    }
    return { ok: true, username: c.username, realm: c.realm, algorithm: c.algorithm, nc: c.nc };
  }

  #remember(key: string, nc: number): void {
    const now = this.#clock.now();
    this.#counts.set(key, { nc, at: now });
    if (this.#counts.size > 1000) {
      for (const [k, v] of this.#counts) {
        if (now - v.at > this.#lifetime) this.#counts.delete(k);
      }
    }
  }

  /**
   * Verifies a request's Authorization (or Proxy-Authorization with
   * `proxy: true`) lines for this realm; `lookup` gives the secret of a user.
   */
  verifyRequest(
    request: SipRequest,
    lookup: (username: string, algorithm: string) => DigestSecret | undefined,
    options: { proxy?: boolean } = {},
  ): DigestVerification {
    const name = options.proxy ? "Proxy-Authorization" : "Authorization";
    const uri = formatUri(request.uri);
    let last: DigestVerification = { ok: false, reason: "missing", stale: false };
    // RFC 3261 section 22.3: look through every value for one with our realm.
    for (const line of request.headers.getAll(name)) {
      let c: DigestCredentials;
      try {
        c = parseDigestCredentials(line, name);
      } catch {
        // Another scheme (RFC 4475 section 3.1.2.10 "regaut01") counts as
        // no credentials: the caller challenges.
        let digest = true;
        try {
          digest = parseAuthParams(line, name).some((v) => v.scheme.toLowerCase() === "digest");
        } catch {
          // unparsable: malformed
        }
        if (digest) last = { ok: false, reason: "malformed", stale: false };
        continue;
      }
      if (c.realm !== this.realm) continue;
      return this.verify(
        line,
        { method: request.method, uri, body: request.body },
        lookup(c.username, c.algorithm),
      );
    }
    return last;
  }
}

/** Compares a digest-uri with a Request-URI: same text, or the same URI once parsed. */
function sameRequestUri(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return formatUri(parseUri(a)) === formatUri(parseUri(b));
  } catch {
    return false;
  }
}
