// Low-level scanning helpers shared by the SIP parsers. Internal: not exported
// from mod.ts. Everything here works on strings with charCodeAt/indexOf, no
// regular expressions, because it runs for every received message.

import { SipSyntaxError } from "./errors.ts";

/** Parameters: lowercase names, unescaped values, `null` for a flag. */
export type Params = Record<string, string | null>;

// Character classes of RFC 3261 section 25.1, as bit flags per ASCII code.
/** token (section 25.1). */
export const C_TOKEN = 1;
/** user = 1*( unreserved / escaped / user-unreserved ). */
export const C_USER = 2;
/** password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ). */
export const C_PASS = 4;
/** paramchar = param-unreserved / unreserved / escaped. */
export const C_PARAM = 8;
/** hname / hvalue = hnv-unreserved / unreserved / escaped. */
export const C_HNV = 16;
/** Host name characters (alphanum, "-", "." and, leniently, "_"). */
export const C_HOST = 32;
/** Characters allowed in a tel URI number (RFC 3966, lenient). */
export const C_TEL = 64;
/** word (Call-ID, section 25.1). */
export const C_WORD = 128;
/** gen-value characters outside quotes: token / host (with IPv6 ":", "[", "]"). */
export const C_GENVAL = 256;
/** Uppercase letters (so that a scan can tell whether a name needs lowercasing). */
export const C_UPPER = 512;

/** Flags per ASCII code. */
export const CHARS: Uint16Array = (() => {
  const t = new Uint16Array(128);
  const add = (chars: string, flag: number) => {
    for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] |= flag;
  };
  const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const mark = "-_.!~*'()";
  const unreserved = alnum + mark;
  add(alnum + "-.!%*_+`'~", C_TOKEN);
  add(unreserved + "%" + "&=+$,;?/", C_USER);
  add(unreserved + "%" + "&=+$,", C_PASS);
  add(unreserved + "%" + "[]/:&+$", C_PARAM);
  add(unreserved + "%" + "[]/?:+$", C_HNV);
  add(alnum + "-._", C_HOST);
  add("0123456789abcdefABCDEF*#+-.()%", C_TEL);
  add(alnum + "-.!%*_+`'~()<>:\\\"/[]?{}", C_WORD);
  add(alnum + "-.!%*_+`'~:[]", C_GENVAL);
  add("ABCDEFGHIJKLMNOPQRSTUVWXYZ", C_UPPER);
  return t;
})();

/** True when every character of `s` (non-empty) has `flag`. */
export function allOf(s: string, flag: number): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || (CHARS[c] & flag) === 0) return false;
  }
  return true;
}

/** Index of the first character at or after `i` (before `end`) that is not SP or HTAB. */
export function skipWs(s: string, i: number, end: number = s.length): number {
  let c;
  while (i < end && ((c = s.charCodeAt(i)) === 32 || c === 9)) i++;
  return i;
}

/**
 * Scanner state shared by the readers: `end` is where the last reader stopped
 * (readHost, readQuoted, readPort), to avoid returning tuples; `base` is where
 * the value being parsed starts in its string (parsers read header values in
 * place, inside the whole message text), for column numbers in errors;
 * `known` is what the last {@linkcode NameTrie} read recognized.
 */
export const scan = {
  end: 0,
  base: 0,
  known: -1,
  /**
   * While parseMessage() reads all-ASCII input in place: the message text,
   * the bytes it was decoded from and where it starts in them (the scans of
   * hosts and parameter values then load bytes, cheaper than charCodeAt).
   * Empty and undefined otherwise.
   */
  text: "",
  bytes: undefined as Uint8Array | undefined,
  offset: 0,
};

/** 1-based column of index `i` in the value being parsed. */
export function col(i: number): number {
  return i - scan.base + 1;
}

/** `s.slice(start, end)` lowercased, without a copy when it has no uppercase letter. */
export function sliceLower(s: string, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) return s.slice(start, end).toLowerCase();
  }
  return s.slice(start, end);
}

/**
 * Known names (lowercase tokens) recognized while a token is read, so that
 * reading a token and telling which of the names it spells take one pass over
 * its characters. It is a trie whose transitions are a table indexed by
 * `state * 128 + character`: state 0 stands for "not a token character" (the
 * token ends before it), state 1 for a token that is none of the names, and
 * state 2 is the root. Unless the trie is case-sensitive, an uppercase letter
 * moves as its lowercase letter does, so names match in any case (RFC 3261
 * section 7.3.1 and 19.1.4: header and parameter names are case-insensitive).
 * @internal
 */
export class NameTrie {
  /** The names, by index. */
  readonly names: readonly string[];
  #next: Uint8Array;
  /** Per state: 1 + the index of the name that ends there, 0 for none. */
  #accept: Uint8Array;

  /**
   * Builds the trie of `names` (at most 253 trie nodes): lowercase tokens
   * matched in any case, or with `caseSensitive` any tokens, matched as
   * written (methods, section 7.1).
   */
  constructor(names: readonly string[], options: { caseSensitive?: boolean } = {}) {
    const anyCase = options.caseSensitive !== true;
    this.names = names;
    // One table with room for every state there can be (the three fixed
    // ones, at most one per character, at most 256), built with a few bulk
    // copies: state 0 is all zeros, every other state starts as the token
    // row (set once, then doubled). A typed array per node, copied in at the
    // end, cost about 0.15 ms per trie of every start-up in the interpreter.
    let most = 3;
    for (let i = 0; i < names.length; i++) most += names[i].length;
    if (most > 256) most = 256;
    const size = most * 128;
    const next = new Uint8Array(size);
    next.set(TOKEN_ROW, 128);
    for (let filled = 128; 128 + filled < size; filled *= 2) {
      next.copyWithin(128 + filled, 128, 128 + Math.min(filled, size - 128 - filled));
    }
    const accept = new Uint8Array(most);
    let count = 3;
    for (let index = 0; index < names.length; index++) {
      const name = names[index];
      let state = 2;
      for (let k = 0; k < name.length; k++) {
        const c = name.charCodeAt(k);
        if (c >= 128 || (CHARS[c] & C_TOKEN) === 0 || (anyCase && c >= 65 && c <= 90)) {
          throw new TypeError(`NameTrie: "${name}" is not a ${anyCase ? "lowercase " : ""}token`);
        }
        let to = next[(state << 7) | c];
        if (to <= 1) {
          if (count === most) throw new TypeError("NameTrie: too many names");
          to = count++;
          next[(state << 7) | c] = to;
          if (anyCase && c >= 97 && c <= 122) next[(state << 7) | (c - 32)] = to;
        }
        state = to;
      }
      accept[state] = index + 1;
    }
    this.#next = next.slice(0, count * 128);
    this.#accept = accept.slice(0, count);
  }

  /**
   * Reads the token at `s[i..end)` and returns the index after it (`i` when
   * there is none); `scan.known` is then the index of the name it spells,
   * -1 when none.
   */
  readToken(s: string, i: number, end: number): number {
    const next = this.#next;
    let state = 2;
    let c;
    while (i < end && (c = s.charCodeAt(i)) < 128) {
      const to = next[(state << 7) | c];
      if (to === 0) break;
      state = to;
      i++;
    }
    scan.known = this.#accept[state] - 1;
    return i;
  }

  /**
   * {@linkcode readToken} on bytes: reads the token at `b[i..end)` (ASCII
   * bytes are the same codes as the characters they decode to; loads from a
   * byte array cost less than charCodeAt).
   */
  readTokenBytes(b: Uint8Array, i: number, end: number): number {
    const next = this.#next;
    let state = 2;
    let c;
    while (i < end && (c = b[i]) < 128) {
      const to = next[(state << 7) | c];
      if (to === 0) break;
      state = to;
      i++;
    }
    scan.known = this.#accept[state] - 1;
    return i;
  }

  /** The index of the name that `s[start..end)` spells (in any case), -1 when none. */
  find(s: string, start: number, end: number): number {
    const next = this.#next;
    let state = 2;
    for (let i = start; i < end && state > 1; i++) {
      const c = s.charCodeAt(i);
      state = c < 128 ? next[(state << 7) | c] : 0;
    }
    return this.#accept[state] - 1;
  }
}

/** A trie row in which every token character leads to state 1 (no name). */
const TOKEN_ROW = new Uint8Array(128);
for (let c = 0; c < 128; c++) if ((CHARS[c] & C_TOKEN) !== 0) TOKEN_ROW[c] = 1;

// Common parameter names, so that the parser uses these (internalized)
// strings as property keys instead of fresh slices.
const PARAM_NAMES = new NameTrie([
  "tag",
  "branch",
  "rport",
  "received",
  "lr",
  "transport",
  "expires",
  "q",
  "maddr",
  "ttl",
  "user",
  "method",
  "ftag",
  "duration",
  "reason",
  "retry-after",
  "boundary",
  "charset",
  "+sip.instance",
  "reg-id",
  "ob",
  "id",
  "cause",
  "text",
]);

/** The lowercase parameter name `s[start..end)`, a shared string when it is a common one. */
export function paramName(s: string, start: number, end: number): string {
  const known = PARAM_NAMES.find(s, start, end);
  return known === -1 ? sliceLower(s, start, end) : PARAM_NAMES.names[known];
}

/**
 * `params[name] = v`, with a named store for the common names: a keyed store
 * with ever-changing names is megamorphic in V8 and costs several times as
 * much, and a message holds about ten parameters.
 */
export function setParam(params: Params, name: string, v: string | null): void {
  switch (name) {
    case "tag":
      params.tag = v;
      return;
    case "branch":
      params.branch = v;
      return;
    case "rport":
      params.rport = v;
      return;
    case "received":
      params.received = v;
      return;
    case "lr":
      params.lr = v;
      return;
    case "transport":
      params.transport = v;
      return;
    case "expires":
      params.expires = v;
      return;
    case "user":
      params.user = v;
      return;
    case "ftag":
      params.ftag = v;
      return;
    default:
      params[name] = v;
  }
}

/** `s[start..end)` without leading and trailing SP/HTAB (unlike trim(), keeps U+FEFF etc.). */
export function sliceLws(s: string, start = 0, end = s.length): string {
  let c;
  while (start < end && ((c = s.charCodeAt(start)) === 32 || c === 9)) start++;
  while (end > start && ((c = s.charCodeAt(end - 1)) === 32 || c === 9)) end--;
  return s.slice(start, end);
}

/** An internal parse failure: the message is the "why" part. */
export function fail(reason: string): SipSyntaxError {
  return new SipSyntaxError(reason);
}

/**
 * Rethrows a SipSyntaxError with a "Cannot parse X: " prefix and location;
 * other errors unchanged.
 */
export function rethrow(
  e: unknown,
  what: string,
  options: { header?: string; line?: number; offset?: number } = {},
): never {
  if (e instanceof SipSyntaxError) {
    throw new SipSyntaxError(`Cannot parse ${what}: ${e.message}`, { ...options, cause: e });
  }
  throw e;
}

/** Throws TypeError when `s` holds CR or LF (the header-injection guard). */
export function refuseCrLf(s: string, what: string): void {
  if (s.indexOf("\r") !== -1 || s.indexOf("\n") !== -1) {
    throw new TypeError(`Cannot format ${what}: value contains CR or LF`);
  }
}

const HEX = "0123456789ABCDEF";
const encoder = new TextEncoder();
const utf8 = new TextDecoder();

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  c |= 32;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/**
 * Decodes %HH escapes (RFC 3261 section 25.1, escaped = "%" HEXDIG HEXDIG).
 * The bytes are read as UTF-8 (invalid sequences become U+FFFD).
 */
export function unescape(s: string): string {
  const pct = s.indexOf("%");
  if (pct === -1) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 37) {
      const h = hexVal(s.charCodeAt(i + 1));
      const l = hexVal(s.charCodeAt(i + 2));
      if (i + 2 >= s.length || h < 0 || l < 0) {
        throw fail(`invalid escape "${s.slice(i, i + 3)}"`);
      }
      bytes.push(h * 16 + l);
      i += 2;
    } else if (c < 128) {
      bytes.push(c);
    } else {
      for (const b of encoder.encode(s[i] + (c >= 0xd800 && c < 0xdc00 ? s[++i] ?? "" : ""))) {
        bytes.push(b);
      }
    }
  }
  // A CR or LF has no business in a URI part; refusing it here keeps every
  // parsed URI formattable (formatUri refuses them as header injection).
  if (bytes.indexOf(13) !== -1 || bytes.indexOf(10) !== -1) throw fail("escaped CR or LF");
  return utf8.decode(new Uint8Array(bytes));
}

/** Escapes every character of `s` whose class lacks `flag` as %HH of its UTF-8 bytes. */
export function escape(s: string, flag: number): string {
  let ok = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || c === 37 || (CHARS[c] & flag) === 0) {
      ok = false;
      break;
    }
  }
  if (ok) return s;
  let out = "";
  for (const b of encoder.encode(s)) {
    if (b < 128 && b !== 37 && (CHARS[b] & flag) !== 0) out += String.fromCharCode(b);
    else out += "%" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/**
 * Reads a quoted-string starting at `s[i] === '"'` (section 25.1: quoted-pair
 * = "\" followed by any character but CR and LF). Returns the unescaped text;
 * `scan.end` is the index after the closing quote.
 */
export function readQuoted(s: string, i: number, end: number = s.length): string {
  let out = "";
  let start = i + 1;
  for (let j = start; j < end; j++) {
    const c = s.charCodeAt(j);
    if (c === 92) {
      out += s.slice(start, j);
      if (j + 1 >= end || s.charCodeAt(j + 1) === 13 || s.charCodeAt(j + 1) === 10) break;
      out += s[j + 1];
      j++;
      start = j + 1;
    } else if (c === 13 || c === 10) {
      // qdtext and quoted-pair exclude CR and LF (section 25.1).
      break;
    } else if (c === 34) {
      scan.end = j + 1;
      return start === i + 1 ? s.slice(start, j) : out + s.slice(start, j);
    }
  }
  throw fail("unterminated quoted string");
}

/** Quotes `s` as a quoted-string, escaping `"` and `\`. Refuses CR/LF. */
export function quote(s: string, what: string): string {
  refuseCrLf(s, what);
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '"' || ch === "\\") out += "\\";
    out += ch;
  }
  return out + '"';
}

/**
 * Splits a header value on commas that are outside quoted strings, <> and
 * parentheses (section 7.3.1). Parts are trimmed; empty parts are kept.
 */
export function splitList(value: string): string[] {
  if (value.indexOf(",") === -1) return [sliceLws(value)];
  const out: string[] = [];
  let start = 0;
  let angle = false;
  let paren = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 34) {
      i = skipQuoted(value, i);
    } else if (c === 60) angle = true;
    else if (c === 62) angle = false;
    else if (c === 40) paren++;
    else if (c === 41 && paren > 0) paren--;
    else if (c === 44 && !angle && paren === 0) {
      out.push(sliceLws(value, start, i));
      start = i + 1;
    }
  }
  out.push(sliceLws(value, start));
  return out;
}

/** Index of the closing quote of a quoted string opening at i (or the end). */
export function skipQuoted(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 92) j++;
    else if (c === 34) return j;
  }
  return s.length;
}

/** True for characters allowed in an unquoted generic-param value (token, host, IPv6). */
function isGenValueChar(c: number): boolean {
  return c < 128 && (CHARS[c] & C_GENVAL) !== 0;
}

/**
 * Parses header parameters `*( SEMI generic-param )` from `s` at `i` to the
 * end (section 25.1: generic-param = token [ EQUAL gen-value ], gen-value =
 * token / host / quoted-string). Names are lowercased; quoted values unquoted.
 * With `list`, stops at a comma (the next value of a list). Returns where it
 * stopped.
 */
export function parseHeaderParams(
  s: string,
  i: number,
  params: Params,
  via = false,
  n: number = s.length,
  list = false,
): number {
  let c = 0;
  for (;;) {
    while (i < n && ((c = s.charCodeAt(i)) === 32 || c === 9)) i++;
    if (i >= n || (c === 44 && list)) return i;
    if (c !== 59) throw fail(`unexpected "${s[i]}" at column ${col(i)}, expected ";"`);
    i++;
    while (i < n && ((c = s.charCodeAt(i)) === 32 || c === 9)) i++;
    const ns = i;
    // The name is a token; a common one is a shared string.
    i = PARAM_NAMES.readToken(s, i, n);
    if (i === ns) throw fail(`empty parameter name at column ${col(ns)}`);
    const name = scan.known === -1 ? sliceLower(s, ns, i) : PARAM_NAMES.names[scan.known];
    while (i < n && ((c = s.charCodeAt(i)) === 32 || c === 9)) i++;
    let v: string | null = null;
    if (i < n && c === 61) {
      i++;
      while (i < n && ((c = s.charCodeAt(i)) === 32 || c === 9)) i++;
      if (i < n && c === 34) {
        v = readQuoted(s, i, n);
        i = scan.end;
      } else {
        const vs = i;
        const b = s === scan.text ? scan.bytes : undefined;
        if (b !== undefined) {
          const o = scan.offset;
          let j = i + o;
          const e = n + o;
          while (j < e && (c = b[j]) < 128 && (CHARS[c] & C_GENVAL) !== 0) j++;
          i = j - o;
        } else {
          while (i < n && (c = s.charCodeAt(i)) < 128 && (CHARS[c] & C_GENVAL) !== 0) i++;
        }
        if (i === vs) throw fail(`empty value for parameter "${name}"`);
        v = s.slice(vs, i);
      }
    }
    if (via) checkViaParam(name, v);
    setParam(params, name, v);
  }
}

/**
 * Via parameter rules (section 20.42 and 25.1; RFC 3581): via-ttl = "ttl"
 * EQUAL 1*3DIGIT (0-255); via-maddr, via-received and via-branch need a
 * value; response-port = "rport" [EQUAL 1*DIGIT].
 */
function checkViaParam(name: string, v: string | null): void {
  switch (name) {
    case "branch":
      if (v === null || v === "") throw fail("empty branch parameter");
      break;
    case "rport":
      if (v !== null && parseDigits(v, 65535) < 0) throw fail(`invalid rport "${v}"`);
      break;
    case "received":
    case "maddr":
      if (v === null || v === "") throw fail(`empty ${name} parameter`);
      break;
    case "ttl":
      if (v === null || parseDigits(v, 255) < 0) throw fail(`invalid ttl "${v}"`);
      break;
  }
}

/** Formats header parameters, quoting values that are not token/host. */
export function formatHeaderParams(params: Params, what: string): string {
  let out = "";
  for (const name in params) {
    const v = params[name];
    if (!allOf(name, C_TOKEN)) {
      throw new TypeError(`Cannot format ${what}: bad parameter name "${name}"`);
    }
    out += ";" + name;
    if (v !== null && v !== undefined) {
      let plain = v.length > 0;
      for (let i = 0; i < v.length && plain; i++) plain = isGenValueChar(v.charCodeAt(i));
      out += "=" + (plain ? v : quote(v, what));
    }
  }
  return out;
}

/**
 * Parses decimal digits only (no sign, no spaces) in `s[start..end)`; -1 when
 * not digits or above max.
 */
export function parseDigits(s: string, max: number, start = 0, end: number = s.length): number {
  if (end === start || end - start > 16) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v > max ? -1 : v;
}
