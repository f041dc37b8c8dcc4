/**
 * Content codings of message bodies (RFC 3261 sections 20.2 Accept-Encoding
 * and 20.12 Content-Encoding): which coding a peer accepts, and the
 * `deflate` coding itself (zlib format, RFC 1950; synchronous, so a body is
 * coded within the call that builds or reads its message). A notifier compresses NOTIFY bodies only for
 * a subscriber whose SUBSCRIBE listed the coding in Accept-Encoding; without
 * that header a peer gets `identity` (section 20.2: "If no Accept-Encoding
 * header field is present, the server SHOULD assume a default value of
 * identity").
 *
 * @module
 */

import { zlibDeflate, zlibInflate } from "./_zlib.ts";

/** The content codings this module can apply and undo (besides `identity`). */
export const CONTENT_CODINGS = ["deflate"] as const;

/** One of {@linkcode CONTENT_CODINGS}. */
export type ContentCoding = typeof CONTENT_CODINGS[number];

/**
 * The codings an Accept-Encoding header list allows (lower case, q > 0),
 * best first; `*` stands for any coding not named. Values may be whole
 * header values ("deflate, gzip;q=0.5").
 *
 * @example
 * ```ts
 * import { acceptedCodings } from "./encoding.ts";
 * acceptedCodings(["gzip;q=0.5, deflate"]); // ["deflate", "gzip"]
 * ```
 */
export function acceptedCodings(values: string[]): string[] {
  const items: { coding: string; q: number; at: number }[] = [];
  let at = 0;
  for (const value of values) {
    for (const part of value.split(",")) {
      const [name, ...params] = part.split(";");
      const coding = name.trim().toLowerCase();
      if (coding === "") continue;
      let q = 1;
      for (const p of params) {
        const [k, v] = p.split("=");
        if (k.trim().toLowerCase() === "q") q = Number(v);
      }
      if (Number.isFinite(q) && q > 0) items.push({ coding, q, at: at++ });
    }
  }
  items.sort((a, b) => b.q - a.q || a.at - b.at);
  return items.map((i) => i.coding);
}

/**
 * The first of `offered` that Accept-Encoding `values` allow, or undefined
 * (then the body goes as it is, `identity`).
 */
export function chooseCoding(
  values: string[],
  offered: readonly ContentCoding[],
): ContentCoding | undefined {
  for (const a of acceptedCodings(values)) {
    if (a === "*") return offered[0];
    const hit = offered.find((o) => o === a);
    if (hit) return hit;
  }
  return undefined;
}

/** True when `coding` (one Content-Encoding value) can be undone here. */
export function isKnownCoding(coding: string): boolean {
  const c = coding.trim().toLowerCase();
  return c === "identity" || (CONTENT_CODINGS as readonly string[]).includes(c);
}

/** Applies a content coding to a body. */
export function encodeBody(body: Uint8Array, _coding: ContentCoding): Uint8Array {
  return zlibDeflate(body);
}

/**
 * Undoes the codings of a Content-Encoding value (applied in the order
 * listed, so undone from the last). Throws TypeError for a coding it does
 * not know (the request deserves 415) and for a body that does not decode.
 */
export function decodeBody(body: Uint8Array, contentEncoding: string): Uint8Array {
  const codings = contentEncoding.split(",").map((c) => c.trim().toLowerCase()).filter((c) =>
    c !== "" && c !== "identity"
  );
  let out = body;
  for (const coding of codings.reverse()) {
    if (!isKnownCoding(coding)) throw new TypeError(`Unknown content coding "${coding}"`);
    try {
      out = zlibInflate(out);
    } catch (e) {
      throw new TypeError(`Cannot decode the ${coding} body: ${(e as Error).message}`);
    }
  }
  return out;
}
