/**
 * The ordered header list of a SIP message, with case-insensitive lookups and
 * compact forms (RFC 3261 section 7.3.3, RFC 3265, 3515, 3841, 3892, 4028, 4474).
 *
 * @module
 */

import { NameTrie, scan, sliceLws, splitList } from "./_scan.ts";

/** One header line as received or added: canonical name and raw value. */
export interface HeaderField {
  /** Canonical name (compact forms expanded, e.g. "Via", "Call-ID", "WWW-Authenticate"). */
  name: string;
  /** Raw value, folding collapsed to single spaces, trimmed. */
  value: string;
}

/**
 * Compact forms (RFC 3261 section 7.3.3 and 20; RFC 3265 section 7.2;
 * RFC 3515 section 2.1; RFC 3841; RFC 3892; RFC 4028; RFC 4474).
 */
export const COMPACT_FORMS = {
  a: "Accept-Contact", // RFC 3841
  b: "Referred-By", // RFC 3892
  c: "Content-Type", // RFC 3261 20.15
  d: "Request-Disposition", // RFC 3841
  e: "Content-Encoding", // RFC 3261 20.12
  f: "From", // RFC 3261 20.20
  i: "Call-ID", // RFC 3261 20.8
  j: "Reject-Contact", // RFC 3841
  k: "Supported", // RFC 3261 20.37
  l: "Content-Length", // RFC 3261 20.14
  m: "Contact", // RFC 3261 20.10
  n: "Identity-Info", // RFC 4474
  o: "Event", // RFC 3265 7.2.1
  r: "Refer-To", // RFC 3515 2.1
  s: "Subject", // RFC 3261 20.36
  t: "To", // RFC 3261 20.39
  u: "Allow-Events", // RFC 3265 7.2.2
  v: "Via", // RFC 3261 20.42
  x: "Session-Expires", // RFC 4028
  y: "Identity", // RFC 4474
} as const;

const KNOWN_NAMES = [
  "Accept",
  "Accept-Contact",
  "Accept-Encoding",
  "Accept-Language",
  "Alert-Info",
  "Allow",
  "Allow-Events",
  "Authentication-Info",
  "Authorization",
  "Call-ID",
  "Call-Info",
  "Contact",
  "Content-Disposition",
  "Content-Encoding",
  "Content-ID",
  "Content-Language",
  "Content-Length",
  "Content-Transfer-Encoding",
  "Content-Type",
  "CSeq",
  "Date",
  "Error-Info",
  "Event",
  "Expires",
  "Flow-Timer",
  "From",
  "History-Info",
  "Identity",
  "Identity-Info",
  "In-Reply-To",
  "Join",
  "Max-Forwards",
  "MIME-Version",
  "Min-Expires",
  "Min-SE",
  "Organization",
  "P-Asserted-Identity",
  "P-Preferred-Identity",
  "Path",
  "Priority",
  "Privacy",
  "Proxy-Authenticate",
  "Proxy-Authorization",
  "Proxy-Require",
  "RAck",
  "Reason",
  "Record-Route",
  "Refer-To",
  "Referred-By",
  "Reject-Contact",
  "Replaces",
  "Reply-To",
  "Request-Disposition",
  "Require",
  "Retry-After",
  "Route",
  "RSeq",
  "Security-Client",
  "Security-Server",
  "Security-Verify",
  "Server",
  "Service-Route",
  "Session-Expires",
  "SIP-ETag",
  "SIP-If-Match",
  "Subject",
  "Subscription-State",
  "Supported",
  "Target-Dialog",
  "Timestamp",
  "To",
  "Unsupported",
  "User-Agent",
  "Via",
  "Warning",
  "WWW-Authenticate",
];

// Lowercase spelling -> canonical name.
const KNOWN = new Map<string, string>();
const CANONICAL = new Set(KNOWN_NAMES);

// Raw spelling -> canonical name, so the common spellings cost one lookup.
const spellings = new Map<string, string>();

/** Codes of the headers the parser tracks while scanning. @internal */
export const H_VIA = 1, H_FROM = 2, H_TO = 3, H_CALL_ID = 4, H_CSEQ = 5;
/** @internal */
export const H_MAX_FORWARDS = 6, H_CONTENT_LENGTH = 7;

const CODES: Record<string, number> = {
  "Via": H_VIA,
  "From": H_FROM,
  "To": H_TO,
  "Call-ID": H_CALL_ID,
  "CSeq": H_CSEQ,
  "Max-Forwards": H_MAX_FORWARDS,
  "Content-Length": H_CONTENT_LENGTH,
};

/** A known spelling: how it is written and its canonical name. @internal */
export interface NameEntry {
  /** Canonical spelling ("Via") or compact form ("v"). */
  spelling: string;
  /** Canonical name. */
  name: string;
}

// Known names by (length, lowercase first character), so that the header
// fields are read without slicing and hashing each name.
// The array is filled densely up front: a sparse one would fall back to
// dictionary elements and cost a hash lookup per header.
const MAX_KNOWN = 32;
const NO_ENTRIES: NameEntry[] = [];
const TABLE: NameEntry[][] = new Array(MAX_KNOWN * 128).fill(NO_ENTRIES);
function addEntry(spelling: string, name: string): void {
  const key = spelling.length * 128 + (spelling.charCodeAt(0) | 32);
  if (TABLE[key] === NO_ENTRIES) TABLE[key] = [];
  TABLE[key].push({ spelling, name });
}

// The tables above filled in one pass over the names (each pass of the
// interpreter over them costs every start-up some 0.1 ms).
function learn(spelling: string, name: string): void {
  KNOWN.set(spelling.toLowerCase(), name);
  spellings.set(spelling, name);
  addEntry(spelling, name);
}
for (const name of KNOWN_NAMES) learn(name, name);
for (const [short, long] of Object.entries(COMPACT_FORMS)) learn(short, long);

// The tracked names (lowercase, compact forms included) and their codes, so
// that reading a field name (a token) also tells whether it is tracked.
const TRACKED_NAMES = new NameTrie([
  "via",
  "v",
  "from",
  "f",
  "to",
  "t",
  "call-id",
  "i",
  "cseq",
  "max-forwards",
  "content-length",
  "l",
]);
const TRACKED_CODES = TRACKED_NAMES.names.map((n) => CODES[canonicalName(n)]);

/**
 * Reads the field name (a token) at `s[i..end)` and returns the index after
 * it (`i` when there is none); `scan.known` is then the tracking code of the
 * header it names (H_VIA to H_CONTENT_LENGTH, in any case, compact forms
 * included), 0 for any other header. @internal
 */
export function readFieldName(s: string, i: number, end: number): number {
  const e = TRACKED_NAMES.readToken(s, i, end);
  scan.known = scan.known === -1 ? 0 : TRACKED_CODES[scan.known];
  return e;
}

/**
 * {@linkcode readFieldName} on the bytes `b[i..end)` of an all-ASCII header
 * block. @internal
 */
export function readFieldNameBytes(b: Uint8Array, i: number, end: number): number {
  const e = TRACKED_NAMES.readTokenBytes(b, i, end);
  scan.known = scan.known === -1 ? 0 : TRACKED_CODES[scan.known];
  return e;
}

/**
 * Finds the known header named by `s[start..end)` (case-insensitive, compact
 * forms included), or undefined. @internal
 */
export function lookupName(s: string, start: number, end: number): NameEntry | undefined {
  const len = end - start;
  const c0 = s.charCodeAt(start);
  if (c0 >= 128 || len >= MAX_KNOWN) return undefined;
  const list = TABLE[len * 128 + (c0 | 32)];
  for (let k = 0; k < list.length; k++) {
    const sp = list[k].spelling;
    let j = 0;
    while (j < len && s.charCodeAt(start + j) === sp.charCodeAt(j)) j++;
    if (j === len) return list[k];
  }
  for (let k = 0; k < list.length; k++) {
    const sp = list[k].spelling;
    let j = 0;
    for (; j < len; j++) {
      const a = s.charCodeAt(start + j);
      const b = sp.charCodeAt(j);
      if (a !== b && ((a | 32) !== (b | 32) || (b | 32) < 97 || (b | 32) > 122)) break;
    }
    if (j === len) return list[k];
  }
  return undefined;
}

/**
 * The canonical name of a header: compact forms expanded, known names in their
 * RFC spelling ("call-id" gives "Call-ID"); unknown names are kept as given.
 *
 * @example
 * ```ts
 * import { canonicalName } from "./headers.ts";
 * canonicalName("v"); // "Via"
 * canonicalName("www-authenticate"); // "WWW-Authenticate"
 * ```
 */
export function canonicalName(name: string): string {
  let c = spellings.get(name);
  if (c !== undefined) return c;
  c = KNOWN.get(name.toLowerCase()) ?? name;
  if (spellings.size < 2000) spellings.set(name, c);
  return c;
}

/** Headers whose values may hold commas that do not separate values. */
const NO_SPLIT = new Set([
  "Authorization",
  "Proxy-Authorization",
  "WWW-Authenticate",
  "Proxy-Authenticate",
  "Authentication-Info",
  "Date",
  "Call-ID",
  "CSeq",
  "Content-Length",
  "Max-Forwards",
  "Subject",
  "Organization",
  "Server",
  "User-Agent",
  "Timestamp",
  "Retry-After",
  "Content-Disposition",
  "Content-Type",
  "Reply-To",
  "Identity-Info",
  "MIME-Version",
  "Priority",
  "Expires",
  "Min-Expires",
  "Identity",
  "SIP-ETag",
  "SIP-If-Match",
  "Subscription-State",
  "Event",
  "RAck",
  "RSeq",
  "Refer-To",
  "Referred-By",
  "Replaces",
  "Session-Expires",
  "Min-SE",
]);

/**
 * True when a header's values can be split on commas (section 7.3.1). False
 * for single-value headers and those whose grammar uses commas inside one
 * value (authentication headers, Date, free text).
 */
export function isListHeader(name: string): boolean {
  return !NO_SPLIT.has(canonicalName(name));
}

/** Shared empty list, only ever passed to the constructor of parsed headers. */
const NO_FIELDS: HeaderField[] = [];

/**
 * Reads the header lines of `s[pos..n)`, a header block that the parser has
 * already checked (every line is `name HCOLON value` or a continuation):
 * names canonical, values trimmed, continuation lines folded in with one SP
 * (section 7.3.1). @internal
 */
export function readFieldLines(s: string, pos: number, n: number): HeaderField[] {
  const fields: HeaderField[] = [];
  while (pos < n) {
    let nl = s.indexOf("\n", pos);
    if (nl === -1 || nl > n) nl = n;
    let end = nl;
    if (end > pos && s.charCodeAt(end - 1) === 13) end--;
    const c0 = s.charCodeAt(pos);
    if (c0 === 32 || c0 === 9) {
      const cur = fields[fields.length - 1];
      const more = sliceLws(s, pos, end);
      if (more.length > 0) cur.value = cur.value.length > 0 ? cur.value + " " + more : more;
    } else {
      const colon = s.indexOf(":", pos);
      const nameEnd = skipWsBack(s, pos, colon);
      const entry = lookupName(s, pos, nameEnd);
      fields.push({
        name: entry === undefined ? s.slice(pos, nameEnd) : entry.name,
        value: sliceLws(s, colon + 1, end),
      });
    }
    pos = nl + 1;
  }
  return fields;
}

/** The index after the last character of `s[start..end)` that is not SP or HTAB. */
function skipWsBack(s: string, start: number, end: number): number {
  let c;
  while (end > start && ((c = s.charCodeAt(end - 1)) === 32 || c === 9)) end--;
  return end;
}

/** What {@linkcode SipHeaders} can be built from. */
export type HeadersInit =
  | SipHeaders
  | HeaderField[]
  | [string, string][]
  | Record<string, string | string[]>;

/**
 * The ordered header fields of a message. Lookups are case-insensitive and
 * accept compact forms ("v" finds "Via"). Values are kept raw; typed access
 * goes through the getters of the message classes.
 *
 * @example
 * ```ts
 * import { SipHeaders } from "./headers.ts";
 * const h = new SipHeaders([{ name: "v", value: "SIP/2.0/UDP a;branch=z9hG4bK1" }]);
 * h.get("Via"); // "SIP/2.0/UDP a;branch=z9hG4bK1"
 * h.fields[0].name; // "Via"
 * ```
 */
export class SipHeaders {
  #fields: HeaderField[] | undefined;
  /** Incremented by every change made through the methods (typed caches check it). */
  version = 0;
  /** Line numbers of the fields in the parsed message (valid while `version` is 0). @internal */
  _lines: number[] | undefined = undefined;
  /** The header block the fields were parsed from, to count lines on error. @internal */
  _head: string | undefined = undefined;
  /** Where the header block ends in `_head`. @internal */
  _headEnd = 0;
  /** Where the first header line starts in `_head` (for fields read on first use). @internal */
  _fieldsStart = 0;

  /** Creates a header list from fields; names are canonicalized. */
  constructor(fields: HeaderField[] = []) {
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      const c = canonicalName(f.name);
      if (c !== f.name) fields[i] = { name: c, value: f.value };
    }
    this.#fields = fields;
  }

  /**
   * Headers of a parsed message, read from the checked header block
   * `head[start..end)` on first use of `fields` (a stack that reads only the
   * headers the parser tracks never builds the others). @internal
   */
  static _parsed(head: string, start: number, end: number): SipHeaders {
    const h = new SipHeaders(NO_FIELDS);
    h.#fields = undefined;
    h._head = head;
    h._fieldsStart = start;
    h._headEnd = end;
    return h;
  }

  /** The fields in message order. Edit through the methods, or call `invalidate()` on the message. */
  get fields(): HeaderField[] {
    return this.#fields ??= readFieldLines(this._head ?? "", this._fieldsStart, this._headEnd);
  }

  /** Builds headers from fields, pairs, a record (arrays give repeated lines) or copies a SipHeaders. */
  static from(init: HeadersInit = []): SipHeaders {
    if (init instanceof SipHeaders) return init.clone();
    if (Array.isArray(init)) {
      const fields: HeaderField[] = [];
      for (const f of init) {
        if (Array.isArray(f)) fields.push({ name: f[0], value: f[1] });
        else fields.push({ name: f.name, value: f.value });
      }
      return new SipHeaders(fields);
    }
    const fields: HeaderField[] = [];
    for (const [name, v] of Object.entries(init)) {
      if (Array.isArray(v)) { for (const x of v) fields.push({ name, value: x }); }
      else fields.push({ name, value: v });
    }
    return new SipHeaders(fields);
  }

  /** A deep copy. */
  clone(): SipHeaders {
    const h = new SipHeaders(this.fields.map((f) => ({ name: f.name, value: f.value })));
    return h;
  }

  /** Number of header lines. */
  get size(): number {
    return this.fields.length;
  }

  /** Index of the first line of a header (canonical name), or -1. @internal */
  _index(canon: string, from = 0): number {
    const f = this.fields;
    if (CANONICAL.has(canon)) {
      for (let i = from; i < f.length; i++) if (f[i].name === canon) return i;
      return -1;
    }
    const lc = canon.toLowerCase();
    for (let i = from; i < f.length; i++) {
      const n = f[i].name;
      if (n.length === lc.length && (n === canon || n.toLowerCase() === lc)) return i;
    }
    return -1;
  }

  /** First raw value of a header, or undefined. */
  get(name: string): string | undefined {
    const i = this._index(canonicalName(name));
    return i === -1 ? undefined : this.fields[i].value;
  }

  /** Every raw line of a header, in order (a line may hold several comma-separated values). */
  getAll(name: string): string[] {
    const canon = canonicalName(name);
    const out: string[] = [];
    for (let i = this._index(canon); i !== -1; i = this._index(canon, i + 1)) {
      out.push(this.fields[i].value);
    }
    return out;
  }

  /**
   * Every value of a header, comma-separated lines split (quotes and <>
   * respected; see {@linkcode isListHeader} for headers never split). Empty
   * values are dropped.
   */
  values(name: string): string[] {
    const canon = canonicalName(name);
    const lines = this.getAll(canon);
    if (!isListHeader(canon)) return lines;
    const out: string[] = [];
    for (const line of lines) {
      for (const v of splitList(line)) if (v.length > 0) out.push(v);
    }
    return out;
  }

  /** True when the header is present. */
  has(name: string): boolean {
    return this._index(canonicalName(name)) !== -1;
  }

  /** Replaces every line of a header by one value (in place of the first line; at the end when absent). */
  set(name: string, value: string): void {
    const canon = canonicalName(name);
    const first = this._index(canon);
    if (first === -1) {
      this.fields.push({ name: canon, value });
    } else {
      this.fields[first] = { name: canon, value };
      for (let i = this._index(canon, first + 1); i !== -1; i = this._index(canon, i)) {
        this.fields.splice(i, 1);
      }
    }
    this.version++;
  }

  /** Adds a line at the end. */
  append(name: string, value: string): void {
    this.fields.push({ name: canonicalName(name), value });
    this.version++;
  }

  /**
   * Adds a line before the first line of the same header (e.g. a new top
   * Via); when the header is absent, as the first line of the message.
   */
  prepend(name: string, value: string): void {
    const canon = canonicalName(name);
    const first = this._index(canon);
    if (first === -1) this.fields.unshift({ name: canon, value });
    else this.fields.splice(first, 0, { name: canon, value });
    this.version++;
  }

  /** Removes every line of a header. */
  delete(name: string): void {
    const canon = canonicalName(name);
    for (let i = this._index(canon); i !== -1; i = this._index(canon, i)) {
      this.fields.splice(i, 1);
    }
    this.version++;
  }

  /** Iterates over [name, value] pairs in order. */
  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (const f of this.fields) yield [f.name, f.value];
  }
}
