/**
 * Common Presence and Instant Messaging message format (RFC 3862,
 * `message/cpim`): wrap a MIME object with message headers (From, To, cc,
 * DateTime, Subject, NS, Require and namespaced extension headers), and
 * unwrap it back into headers and content bytes.
 *
 * @module
 */

import { parseMediaType } from "../sip/message.ts";

/** The media type of CPIM messages. */
export const CPIM_CONTENT_TYPE = "message/cpim";
/** The namespace of the headers defined by RFC 3862 (section 3.4, the default one). */
export const CPIM_HEADERS_NS = "urn:ietf:params:cpim-headers:";

/** An address in From, To or cc (RFC 3862 section 4.1): optional name and URI. */
export interface CpimAddress {
  /** The formal name, when given. */
  name?: string;
  /** The URI, e.g. "im:alice@example.test" or "sip:alice@example.test". */
  uri: string;
}

/** A Subject with its language (RFC 3862 section 4.5). */
export interface CpimSubject {
  /** The text. */
  text: string;
  /** The `lang` parameter, when given. */
  lang?: string;
}

/** One message header as received. */
export interface CpimHeader {
  /** The name with its prefix, as written (e.g. "From", "MyFeatures.VoiceMail"). */
  name: string;
  /** Header parameters (e.g. `lang`), names as written. */
  params: Record<string, string>;
  /** The value, unescaped only where it is a string. */
  value: string;
  /** The namespace URI of the header (the default one for unprefixed names). */
  namespace?: string;
}

/** One encapsulated MIME header (Content-Type and others). */
export interface CpimContentHeader {
  /** Name as written. */
  name: string;
  /** Value. */
  value: string;
}

/** A parsed CPIM message. */
export interface CpimMessage {
  /** From (at most one). */
  from?: CpimAddress;
  /** To, in order. */
  to: CpimAddress[];
  /** cc, in order. */
  cc: CpimAddress[];
  /** DateTime as sent (RFC 3339). */
  dateTime?: string;
  /** Subjects (one per language). */
  subject: CpimSubject[];
  /** Namespace prefixes declared by NS headers (prefix -> URI; "" is the default). */
  ns: Record<string, string>;
  /** Header names listed in Require. */
  require: string[];
  /** Every message header in order, the ones above included. */
  headers: CpimHeader[];
  /** The encapsulated MIME headers in order. */
  contentHeaders: CpimContentHeader[];
  /** The encapsulated Content-Type value. */
  contentType: string;
  /** The content bytes. */
  body: Uint8Array;
}

const CR = 13;
const LF = 10;
const NAME = /^[!#$%&'*+^_`|~0-9A-Za-z-]+$/; // token chars without "."

function fail(why: string, line?: number): never {
  throw new SyntaxError(`Cannot parse CPIM message: ${line ? `line ${line}: ` : ""}${why}`);
}

/** Finds the end of a header block: returns [end of headers, start of next section]. */
function blankLine(data: Uint8Array, from: number): [number, number] | undefined {
  if (data[from] === CR && data[from + 1] === LF) return [from, from + 2];
  if (data[from] === LF) return [from, from + 1];
  for (let i = from; i < data.length; i++) {
    if (data[i] !== LF) continue;
    if (data[i + 1] === LF) return [i + 1, i + 2];
    if (data[i + 1] === CR && data[i + 2] === LF) return [i + 1, i + 3];
  }
  return undefined;
}

function decodeLines(bytes: Uint8Array, firstLine: number): { text: string; line: number }[] {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    fail("headers are not valid UTF-8");
  }
  const out: { text: string; line: number }[] = [];
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  lines.forEach((t, i) => {
    const line = firstLine + i;
    if (/^[ \t]/.test(t)) {
      // Folded continuation (tolerated, as in MIME).
      if (out.length === 0) fail("continuation line before any header", line);
      out[out.length - 1].text += " " + t.trim();
    } else out.push({ text: t, line });
  });
  return out;
}

/** Reads a quoted string at `s[i] === '"'` with the escapes of RFC 3862 section 2.3. */
function readString(s: string, i: number, line: number): [string, number] {
  let out = "";
  i++;
  while (i < s.length) {
    const c = s[i++];
    if (c === '"') return [out, i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = s[i++];
    switch (e) {
      case "u": {
        const hex = s.slice(i, i + 4);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) fail(`bad \\u escape in "${s}"`, line);
        out += String.fromCharCode(parseInt(hex, 16));
        i += 4;
        break;
      }
      case "b":
        out += "\b";
        break;
      case "t":
        out += "\t";
        break;
      case "n":
        out += "\n";
        break;
      case "r":
        out += "\r";
        break;
      case '"':
      case "'":
      case "\\":
        out += e;
        break;
      default:
        fail(`bad escape "\\${e ?? ""}" in "${s}"`, line);
    }
  }
  return fail(`unterminated string in "${s}"`, line);
}

function parseHeaderLine(text: string, line: number): CpimHeader {
  const colon = text.indexOf(":");
  if (colon <= 0) fail(`header line without a colon: "${text.slice(0, 40)}"`, line);
  const name = text.slice(0, colon);
  const pieces = name.split(".");
  if (pieces.length > 2 || !pieces.every((p) => NAME.test(p))) {
    fail(`bad header name "${name.slice(0, 40)}"`, line);
  }
  let i = colon + 1;
  const params: Record<string, string> = {};
  // RFC 3862 section 3.6: Header = Header-name ":" *( ";" Parameter ) SP Header-value
  while (text[i] === ";") {
    i++;
    const eq = text.indexOf("=", i);
    if (eq === -1) fail(`parameter without "=" in header ${name}`, line);
    const pname = text.slice(i, eq).trim();
    if (!NAME.test(pname)) fail(`bad parameter name in header ${name}`, line);
    i = eq + 1;
    let value: string;
    if (text[i] === '"') [value, i] = readString(text, i, line);
    else {
      const start = i;
      while (i < text.length && text[i] !== ";" && text[i] !== " ") i++;
      value = text.slice(start, i);
      if (!value) fail(`parameter ${pname} without a value in header ${name}`, line);
    }
    params[pname] = value;
  }
  return { name, params, value: text.slice(i).trim() };
}

/** Parses `[Formal-name] "<" URI ">"` (RFC 3862 section 4.1). */
function parseAddress(value: string, header: string, line: number): CpimAddress {
  const v = value.trim();
  let name: string | undefined;
  let rest = v;
  if (v.startsWith('"')) {
    const [n, end] = readString(v, 0, line);
    name = n;
    rest = v.slice(end).trim();
  } else {
    const lt = v.indexOf("<");
    if (lt > 0) {
      name = v.slice(0, lt).trim();
      rest = v.slice(lt);
    }
  }
  if (!rest.startsWith("<") || !rest.endsWith(">")) {
    fail(`${header} value is not [name] <URI>: "${value.slice(0, 60)}"`, line);
  }
  const uri = rest.slice(1, -1).trim();
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) fail(`${header} has a bad URI "${uri}"`, line);
  return name ? { name, uri } : { uri };
}

const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/**
 * Parses a `message/cpim` body: message headers, a blank line, the
 * encapsulated MIME headers (Content-Type required), a blank line, then the
 * content (kept as bytes). Lines may end in CRLF or LF. Throws `SyntaxError`
 * with the line number for malformed input.
 *
 * @example
 * ```ts
 * import { parseCpim } from "./cpim.ts";
 * const m = parseCpim("From: Alice <im:alice@example.test>\r\nTo: <im:bob@example.test>\r\n\r\n" +
 *   "Content-Type: text/plain\r\n\r\nHello");
 * m.from?.name; // "Alice"
 * new TextDecoder().decode(m.body); // "Hello"
 * ```
 */
export function parseCpim(data: Uint8Array | string): CpimMessage {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const first = blankLine(bytes, 0);
  if (!first) fail("no blank line after the message headers");
  const headerLines = decodeLines(bytes.subarray(0, first[0]), 1);
  const second = blankLine(bytes, first[1]);
  if (!second) fail("no blank line after the encapsulated MIME headers");
  let lf = 0;
  for (let i = 0; i < first[1]; i++) if (bytes[i] === LF) lf++;
  const contentLines = decodeLines(bytes.subarray(first[1], second[0]), lf + 1);

  const msg: CpimMessage = {
    to: [],
    cc: [],
    subject: [],
    ns: {},
    require: [],
    headers: [],
    contentHeaders: [],
    contentType: "",
    body: bytes.slice(second[1]),
  };
  if (headerLines.length === 0) fail("no message headers");
  for (const { text, line } of headerLines) {
    const h = parseHeaderLine(text, line);
    const dot = h.name.indexOf(".");
    const prefix = dot === -1 ? "" : h.name.slice(0, dot);
    // RFC 3862 section 3.4: an NS header applies to the headers after it;
    // without one, unprefixed names are in the default namespace.
    const nsUri = prefix === "" ? (msg.ns[""] ?? CPIM_HEADERS_NS) : msg.ns[prefix];
    if (nsUri !== undefined) h.namespace = nsUri;
    msg.headers.push(h);
    if (prefix !== "" || nsUri !== CPIM_HEADERS_NS) continue;
    switch (h.name.toLowerCase()) {
      case "from":
        if (msg.from) fail("more than one From header", line);
        msg.from = parseAddress(h.value, "From", line);
        break;
      case "to":
        msg.to.push(parseAddress(h.value, "To", line));
        break;
      case "cc":
        msg.cc.push(parseAddress(h.value, "cc", line));
        break;
      case "datetime":
        if (!DATE_TIME.test(h.value)) {
          fail(`DateTime "${h.value}" is not an RFC 3339 date-time`, line);
        }
        msg.dateTime = h.value;
        break;
      case "subject":
        msg.subject.push(
          h.params.lang ? { text: h.value, lang: h.params.lang } : { text: h.value },
        );
        break;
      case "ns": {
        // NS: [Name-prefix] "<" URI ">" (section 4.6)
        const m = /^([!#$%&'*+^_`|~0-9A-Za-z-]+)?\s*<([^<>\s]+)>$/.exec(h.value);
        if (!m) fail(`NS value is not [prefix] <URI>: "${h.value.slice(0, 60)}"`, line);
        msg.ns[m[1] ?? ""] = m[2];
        break;
      }
      case "require":
        for (const r of h.value.split(",")) if (r.trim()) msg.require.push(r.trim());
        break;
    }
  }
  for (const { text, line } of contentLines) {
    const colon = text.indexOf(":");
    if (colon <= 0) fail(`MIME header line without a colon: "${text.slice(0, 40)}"`, line);
    const name = text.slice(0, colon).trim();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) fail(`bad MIME header name "${name}"`, line);
    msg.contentHeaders.push({ name, value: text.slice(colon + 1).trim() });
  }
  const ct = msg.contentHeaders.find((h) => h.name.toLowerCase() === "content-type");
  if (!ct) fail("the encapsulated MIME object has no Content-Type");
  try {
    parseMediaType(ct.value);
  } catch (cause) {
    throw new SyntaxError(`Cannot parse CPIM message: bad Content-Type "${ct.value}"`, { cause });
  }
  msg.contentType = ct.value;
  return msg;
}

/**
 * The values of an extension header, found by namespace URI and name
 * (whatever prefix the sender bound to that URI).
 *
 * @example
 * ```ts
 * import { cpimExtension, parseCpim } from "./cpim.ts";
 * const m = parseCpim("NS: F <mid:features@x>\nF.Urgent: yes\n\nContent-Type: text/plain\n\nhi");
 * cpimExtension(m, "mid:features@x", "Urgent"); // ["yes"]
 * ```
 */
export function cpimExtension(msg: CpimMessage, namespace: string, name: string): string[] {
  return msg.headers
    .filter((h) => h.namespace === namespace && h.name.slice(h.name.indexOf(".") + 1) === name)
    .map((h) => h.value);
}

/** What {@linkcode formatCpim} wraps. */
export interface CpimMessageInit {
  /** From: a URI or an address with a name. */
  from?: string | CpimAddress;
  /** To (one or several). */
  to?: string | CpimAddress | (string | CpimAddress)[];
  /** cc. */
  cc?: (string | CpimAddress)[];
  /** DateTime: a Date (written in UTC) or an RFC 3339 string. */
  dateTime?: Date | string;
  /** Subject(s). */
  subject?: string | CpimSubject | CpimSubject[];
  /** NS declarations written before the extension headers (prefix -> URI). */
  ns?: Record<string, string>;
  /** Names for the Require header. */
  require?: string[];
  /** Extension headers, names with their prefix (e.g. "MyFeatures.VoiceMail"). */
  extensions?: { name: string; value: string }[];
  /** The content's media type. Default "text/plain;charset=UTF-8". */
  contentType?: string;
  /** More encapsulated MIME headers (after Content-Type). */
  contentHeaders?: CpimContentHeader[];
  /** The content, bytes or text (text is UTF-8 encoded). */
  body: Uint8Array | string;
}

function checkLine(value: string, what: string): string {
  if (/[\r\n]/.test(value)) throw new TypeError(`CPIM ${what} contains CR or LF`);
  return value;
}

function formatAddress(a: string | CpimAddress, what: string): string {
  const addr = typeof a === "string" ? { uri: a } : a;
  const uri = checkLine(addr.uri.trim(), what);
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:[^<>\s]+$/.test(uri)) {
    throw new TypeError(`CPIM ${what} has a bad URI: ${uri}`);
  }
  if (!addr.name) return `<${uri}>`;
  const name = checkLine(addr.name, what);
  if (/^[!#$%&'*+.^_`|~0-9A-Za-z-]+( [!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/.test(name)) {
    return `${name} <${uri}>`;
  }
  return `"${name.replace(/(["\\])/g, "\\$1")}" <${uri}>`;
}

/**
 * Wraps content as a `message/cpim` body (CRLF line ends): message headers
 * in the order From, To, cc, DateTime, Subject, NS, Require, extensions,
 * then the encapsulated Content-Type and headers, then the content bytes.
 * Refuses CR or LF inside a header value (TypeError).
 *
 * @example
 * ```ts
 * import { formatCpim, parseCpim } from "./cpim.ts";
 * const bytes = formatCpim({ from: "im:alice@x", to: "im:bob@x", subject: "Hi", body: "Hello" });
 * parseCpim(bytes).subject[0].text; // "Hi"
 * ```
 */
export function formatCpim(init: CpimMessageInit): Uint8Array {
  const lines: string[] = [];
  if (init.from !== undefined) lines.push(`From: ${formatAddress(init.from, "From")}`);
  const to = init.to === undefined ? [] : Array.isArray(init.to) ? init.to : [init.to];
  for (const t of to) lines.push(`To: ${formatAddress(t, "To")}`);
  for (const c of init.cc ?? []) lines.push(`cc: ${formatAddress(c, "cc")}`);
  if (init.dateTime !== undefined) {
    const dt = init.dateTime instanceof Date ? init.dateTime.toISOString() : init.dateTime;
    if (!DATE_TIME.test(dt)) throw new TypeError(`CPIM DateTime is not RFC 3339: ${dt}`);
    lines.push(`DateTime: ${dt}`);
  }
  const subjects = init.subject === undefined
    ? []
    : typeof init.subject === "string"
    ? [{ text: init.subject }]
    : Array.isArray(init.subject)
    ? init.subject
    : [init.subject];
  for (const s of subjects) {
    const text = checkLine(s.text, "Subject");
    if (s.lang !== undefined && !/^[A-Za-z0-9-]+$/.test(s.lang)) {
      throw new TypeError(`CPIM Subject has a bad language tag: ${s.lang}`);
    }
    lines.push(s.lang ? `Subject:;lang=${s.lang} ${text}` : `Subject: ${text}`);
  }
  for (const [prefix, uri] of Object.entries(init.ns ?? {})) {
    if (prefix !== "" && !NAME.test(prefix)) throw new TypeError(`Bad CPIM NS prefix: ${prefix}`);
    if (!/^[^<>\s]+$/.test(uri)) throw new TypeError(`Bad CPIM NS URI: ${uri}`);
    lines.push(prefix ? `NS: ${prefix} <${uri}>` : `NS: <${uri}>`);
  }
  if (init.require?.length) lines.push(`Require: ${checkLine(init.require.join(","), "Require")}`);
  for (const e of init.extensions ?? []) {
    const pieces = e.name.split(".");
    if (pieces.length > 2 || !pieces.every((p) => NAME.test(p))) {
      throw new TypeError(`Bad CPIM header name: ${e.name}`);
    }
    lines.push(`${e.name}: ${checkLine(e.value, e.name)}`);
  }
  if (lines.length === 0) throw new TypeError("A CPIM message needs at least one header");
  const contentType = checkLine(init.contentType ?? "text/plain;charset=UTF-8", "Content-Type");
  parseMediaType(contentType);
  const mime = [`Content-Type: ${contentType}`];
  for (const h of init.contentHeaders ?? []) {
    if (h.name.toLowerCase() === "content-type") continue;
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h.name)) {
      throw new TypeError(`Bad MIME header name: ${h.name}`);
    }
    mime.push(`${h.name}: ${checkLine(h.value, h.name)}`);
  }
  const head = new TextEncoder().encode(
    lines.join("\r\n") + "\r\n\r\n" + mime.join("\r\n") + "\r\n\r\n",
  );
  const body = typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}
