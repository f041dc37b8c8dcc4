/**
 * MIME multipart bodies (RFC 2046 section 5.1) on bytes: parse and build
 * `multipart/related` (RFC 2387) and `multipart/mixed`, as carried by
 * RFC 4662 resource list NOTIFYs. Also media type values with parameters
 * (RFC 2045 section 5.1). Depends on nothing else of the SIP stack.
 *
 * @module
 */

import { SipSyntaxError } from "./errors.ts";
import { type MediaType, parseMediaType } from "./message.ts";

/** Media types are parsed by the message layer; re-exported here for MIME users. */
export { type MediaType, parseMediaType };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Formats a media type, quoting parameter values that are not tokens.
 * Refuses CR and LF.
 *
 * @example
 * ```ts
 * import { formatMediaType } from "./multipart.ts";
 * formatMediaType({ type: "multipart/related", params: { type: "application/rlmi+xml" } });
 * // 'multipart/related;type="application/rlmi+xml"'
 * ```
 */
export function formatMediaType(mt: MediaType): string {
  let out = mt.type;
  for (const [name, value] of Object.entries(mt.params)) {
    if (!TOKEN.test(name)) throw new TypeError(`Invalid media type parameter name: ${name}`);
    if (value === null) {
      out += `;${name}`;
      continue;
    }
    if (/[\r\n]/.test(value)) throw new TypeError(`Media type parameter ${name} contains CR or LF`);
    out += `;${name}=${TOKEN.test(value) ? value : `"${value.replace(/(["\\])/g, "\\$1")}"`}`;
  }
  return out;
}

/** One header line of a body part. */
export interface PartHeader {
  /** The name as written. */
  name: string;
  /** The value, unfolded and trimmed. */
  value: string;
}

/** One body part: its headers in order and its content (transfer encoding undone). */
export interface MimePart {
  /** Header lines in order. */
  headers: PartHeader[];
  /** Content bytes. */
  body: Uint8Array;
}

/** First value of a part header (case-insensitive name), or undefined. */
export function partHeader(part: MimePart, name: string): string | undefined {
  const lower = name.toLowerCase();
  return part.headers.find((h) => h.name.toLowerCase() === lower)?.value;
}

/**
 * The part's Content-Type. RFC 2046 section 5.1: without one, a part is
 * `text/plain; charset=us-ascii` (in multipart/digest, message/rfc822).
 */
export function partContentType(part: MimePart): MediaType {
  const value = partHeader(part, "Content-Type");
  return value === undefined
    ? { type: "text/plain", params: { charset: "us-ascii" } }
    : parseMediaType(value);
}

/** The part's Content-ID without the angle brackets, or undefined. */
export function partContentId(part: MimePart): string | undefined {
  const v = partHeader(part, "Content-ID");
  return v === undefined ? undefined : stripAngles(v);
}

/** Removes surrounding `<` `>` (and a `cid:` scheme) from a Content-ID reference. */
export function stripAngles(id: string): string {
  let v = id.trim();
  if (v.toLowerCase().startsWith("cid:")) v = decodeURIComponentSafe(v.slice(4));
  if (v.startsWith("<") && v.endsWith(">")) v = v.slice(1, -1);
  return v.trim();
}

function decodeURIComponentSafe(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/** A parsed multipart body. */
export interface Multipart {
  /** The media type, e.g. "multipart/related". */
  type: string;
  /** Its parameters (boundary, type, start...). */
  params: Record<string, string | null>;
  /** The parts in order. */
  parts: MimePart[];
}

const CR = 13;
const LF = 10;
const DASH = 45;

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  const last = hay.length - needle.length;
  outer: for (
    let i = hay.indexOf(first, from);
    i !== -1 && i <= last;
    i = hay.indexOf(first, i + 1)
  ) {
    for (let k = 1; k < needle.length; k++) if (hay[i + k] !== needle[k]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Parses a multipart body from bytes. `contentType` is the Content-Type
 * value (or its parsed form) and must carry a boundary. Lines may end in
 * CRLF (RFC 2046) or, leniently, LF. Content-Transfer-Encoding base64 and
 * quoted-printable are decoded; binary, 8bit and 7bit are taken as they are.
 * Throws {@linkcode SipSyntaxError} for a missing boundary, missing
 * delimiters or a malformed part header.
 *
 * @example
 * ```ts
 * import { parseMultipart } from "./multipart.ts";
 * const body = new TextEncoder().encode("--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n");
 * const mp = parseMultipart(body, "multipart/mixed;boundary=b");
 * new TextDecoder().decode(mp.parts[0].body); // "hi"
 * ```
 */
export function parseMultipart(body: Uint8Array, contentType: string | MediaType): Multipart {
  const mt = typeof contentType === "string" ? parseMediaType(contentType) : contentType;
  const fail = (why: string): never => {
    throw new SipSyntaxError(`Cannot parse multipart body: ${why}`);
  };
  if (!mt.type.startsWith("multipart/")) fail(`${mt.type} is not a multipart type`);
  const boundary = mt.params.boundary ?? "";
  // RFC 2046 section 5.1.1: boundary := 0*69<bchars> bcharsnospace
  if (!boundary) fail("Content-Type has no boundary parameter");
  if (boundary.length > 70) fail("boundary longer than 70 characters");
  const dashBoundary = new TextEncoder().encode("--" + boundary);

  // Find each delimiter: "--boundary" at the start of the body or right after a line end.
  type Delim = { lineStart: number; end: number; close: boolean };
  const delims: Delim[] = [];
  let pos = 0;
  while (pos <= body.length) {
    const at = indexOf(body, dashBoundary, pos);
    if (at === -1) break;
    let lineStart = -1;
    if (at === 0) lineStart = 0;
    else if (body[at - 1] === LF) lineStart = at >= 2 && body[at - 2] === CR ? at - 2 : at - 1;
    if (lineStart === -1) {
      pos = at + 1;
      continue;
    }
    let i = at + dashBoundary.length;
    let close = false;
    if (body[i] === DASH && body[i + 1] === DASH) {
      close = true;
      i += 2;
    }
    // Transport padding (LWSP) up to the line end.
    while (i < body.length && (body[i] === 32 || body[i] === 9)) i++;
    if (i < body.length) {
      if (body[i] === CR && body[i + 1] === LF) i += 2;
      else if (body[i] === LF) i += 1;
      else if (!close) {
        // "--boundaryX": a longer line that merely starts like the boundary.
        pos = at + 1;
        continue;
      }
    }
    delims.push({ lineStart, end: i, close });
    if (close) break;
    pos = i;
  }
  if (delims.length === 0) fail(`no delimiter "--${boundary}" found`);
  if (!delims[delims.length - 1].close) fail(`missing close delimiter "--${boundary}--"`);
  if (delims.length < 2) fail("no body part");

  const parts: MimePart[] = [];
  for (let k = 0; k + 1 < delims.length; k++) {
    const raw = body.subarray(delims[k].end, delims[k + 1].lineStart);
    parts.push(parsePart(raw, k + 1));
  }
  return { type: mt.type, params: mt.params, parts };
}

function parsePart(raw: Uint8Array, index: number): MimePart {
  const fail = (why: string): never => {
    throw new SipSyntaxError(`Cannot parse multipart body: part ${index}: ${why}`);
  };
  // Headers end at the first empty line; a part may have no headers at all.
  let headerEnd = -1;
  let bodyStart = 0;
  if (raw[0] === CR && raw[1] === LF) bodyStart = 2;
  else if (raw[0] === LF) bodyStart = 1;
  else {
    for (let i = 0; i < raw.length; i++) {
      if (raw[i] !== LF) continue;
      if (raw[i + 1] === LF) {
        headerEnd = i;
        bodyStart = i + 2;
        break;
      }
      if (raw[i + 1] === CR && raw[i + 2] === LF) {
        headerEnd = i;
        bodyStart = i + 3;
        break;
      }
    }
    if (headerEnd === -1) {
      // Headers that run to the end of the part: no content.
      headerEnd = raw.length;
      bodyStart = raw.length;
    }
  }
  const headers: PartHeader[] = [];
  if (headerEnd > 0) {
    const text = new TextDecoder().decode(raw.subarray(0, headerEnd));
    for (const line of text.split(/\r?\n/)) {
      if (line === "") continue;
      if (line[0] === " " || line[0] === "\t") {
        if (headers.length === 0) fail("folded line before any header");
        headers[headers.length - 1].value += " " + line.trim();
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) fail(`header line without a colon: "${line.slice(0, 40)}"`);
      const name = line.slice(0, colon).trim();
      if (!TOKEN.test(name)) fail(`bad header name "${name.slice(0, 40)}"`);
      headers.push({ name, value: line.slice(colon + 1).trim() });
    }
  }
  const part: MimePart = { headers, body: raw.slice(bodyStart) };
  const cte = partHeader(part, "Content-Transfer-Encoding")?.toLowerCase();
  if (cte === "base64") part.body = decodeBase64(part.body, fail);
  else if (cte === "quoted-printable") part.body = decodeQuotedPrintable(part.body);
  return part;
}

function decodeBase64(data: Uint8Array, fail: (why: string) => never): Uint8Array {
  const text = new TextDecoder().decode(data).replace(/[\s]/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 === 1) fail("invalid base64 content");
  try {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return fail("invalid base64 content");
  }
}

function decodeQuotedPrintable(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  const hex = (c: number) =>
    c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c !== 61 /* = */) {
      out.push(c);
      continue;
    }
    if (data[i + 1] === CR && data[i + 2] === LF) i += 2; // soft line break
    else if (data[i + 1] === LF) i += 1;
    else if (hex(data[i + 1]) >= 0 && hex(data[i + 2]) >= 0) {
      out.push(hex(data[i + 1]) * 16 + hex(data[i + 2]));
      i += 2;
    } else out.push(c);
  }
  return new Uint8Array(out);
}

/** Options of {@linkcode formatMultipart}. */
export interface FormatMultipartOptions {
  /** The multipart media type. Default "multipart/mixed". */
  type?: string;
  /** Extra Content-Type parameters (e.g. `type` and `start` for multipart/related). */
  params?: Record<string, string>;
  /** The boundary. Default: a random one that occurs in no part. */
  boundary?: string;
}

/** A built multipart body and the Content-Type value that goes with it. */
export interface FormattedMultipart {
  /** The Content-Type header value, with the boundary. */
  contentType: string;
  /** The body bytes. */
  body: Uint8Array;
}

/**
 * Builds a multipart body: CRLF line ends, each part's headers as given,
 * the content as bytes (Content-Transfer-Encoding binary, nothing encoded).
 * Refuses CR or LF inside a header value and a boundary that occurs in a part.
 *
 * @example
 * ```ts
 * import { formatMultipart } from "./multipart.ts";
 * const { contentType } = formatMultipart(
 *   [{ headers: [{ name: "Content-Type", value: "text/plain" }], body: new Uint8Array([104, 105]) }],
 *   { type: "multipart/related", params: { type: "text/plain" }, boundary: "xyz" },
 * );
 * contentType; // 'multipart/related;type="text/plain";boundary=xyz'
 * ```
 */
export function formatMultipart(
  parts: MimePart[],
  options: FormatMultipartOptions = {},
): FormattedMultipart {
  const type = (options.type ?? "multipart/mixed").toLowerCase();
  if (!/^multipart\/[a-z0-9.+-]+$/.test(type)) throw new TypeError(`Not a multipart type: ${type}`);
  if (parts.length === 0) throw new TypeError("A multipart body needs at least one part");
  const enc = new TextEncoder();
  let boundary = options.boundary;
  if (boundary !== undefined) {
    if (!/^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/.test(boundary)) {
      throw new TypeError(`Invalid multipart boundary: ${boundary}`);
    }
    const needle = enc.encode("--" + boundary);
    if (parts.some((p) => indexOf(p.body, needle, 0) !== -1)) {
      throw new TypeError(`Multipart boundary ${boundary} occurs inside a part`);
    }
  } else {
    do {
      const rnd = crypto.getRandomValues(new Uint8Array(12));
      boundary = "sipkit-" + Array.from(rnd, (b) => b.toString(16).padStart(2, "0")).join("");
    } while (parts.some((p) => indexOf(p.body, enc.encode("--" + boundary), 0) !== -1));
  }
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\n`;
    for (const h of part.headers) {
      if (!TOKEN.test(h.name)) throw new TypeError(`Invalid part header name: ${h.name}`);
      if (/[\r\n]/.test(h.value)) throw new TypeError(`Part header ${h.name} contains CR or LF`);
      head += `${h.name}: ${h.value}\r\n`;
    }
    chunks.push(enc.encode(head + "\r\n"), part.body, enc.encode("\r\n"));
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const body = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    body.set(c, off);
    off += c.length;
  }
  const contentType = formatMediaType({ type, params: { ...options.params, boundary } });
  return { contentType, body };
}
