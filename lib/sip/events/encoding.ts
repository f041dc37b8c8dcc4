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
 * The coder is `node:zlib` (built into Deno), loaded on demand: importing it
 * costs tens of milliseconds of start-up, which one-shot commands must not
 * pay. Whoever will code bodies awaits {@linkcode loadContentCodings} first
 * (a notifier whose package has `encodings`, a subscriber that sends
 * Accept-Encoding, or that receives a coded NOTIFY); after that
 * {@linkcode encodeBody} and {@linkcode decodeBody} are synchronous.
 *
 * @module
 */

import type * as NodeZlib from "node:zlib";

/** The largest body {@linkcode decodeBody} expands (1 MiB): a small body that inflates to more is refused (a decompression bomb). */
export const MAX_DECODED_BODY = 1 << 20;

let zlib: typeof NodeZlib | undefined;
let loading: Promise<void> | undefined;

/**
 * Loads the coder of the `deflate` coding (`node:zlib`) once; later calls
 * return the same promise. Await it before {@linkcode encodeBody} or
 * {@linkcode decodeBody} of a coded body.
 */
export function loadContentCodings(): Promise<void> {
  loading ??= import("node:zlib").then((m) => {
    zlib = m;
  }, (e) => {
    loading = undefined; // let a later call try again
    throw e;
  });
  return loading;
}

/** True once {@linkcode loadContentCodings} has finished: coded bodies can be made and read synchronously. */
export function contentCodingsLoaded(): boolean {
  return zlib !== undefined;
}

function coder(): typeof NodeZlib {
  if (!zlib) {
    throw new TypeError("Content codings are not loaded: await loadContentCodings() first");
  }
  return zlib;
}

/** A Buffer viewed as a plain Uint8Array (no copy). */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

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

/**
 * Applies a content coding to a body: `deflate` is the zlib format (RFC
 * 1950) at level 9. Throws TypeError before {@linkcode loadContentCodings}
 * has finished.
 */
export function encodeBody(body: Uint8Array, _coding: ContentCoding): Uint8Array {
  return plain(coder().deflateSync(body, { level: 9 }));
}

/**
 * Undoes the codings of a Content-Encoding value (applied in the order
 * listed, so undone from the last). Throws TypeError for a coding it does
 * not know (the request deserves 415), for a body that does not decode or
 * that would expand beyond {@linkcode MAX_DECODED_BODY}, and for a coded
 * body before {@linkcode loadContentCodings} has finished.
 */
export function decodeBody(body: Uint8Array, contentEncoding: string): Uint8Array {
  const codings = contentEncoding.split(",").map((c) => c.trim().toLowerCase()).filter((c) =>
    c !== "" && c !== "identity"
  );
  let out = body;
  for (const coding of codings.reverse()) {
    if (!isKnownCoding(coding)) throw new TypeError(`Unknown content coding "${coding}"`);
    const z = coder();
    try {
      out = plain(z.inflateSync(out, { maxOutputLength: MAX_DECODED_BODY }));
    } catch (e) {
      const why = (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE"
        ? `it expands too much (over ${MAX_DECODED_BODY} bytes)`
        : (e as Error).message;
      throw new TypeError(`Cannot decode the ${coding} body: ${why}`);
    }
  }
  return out;
}
