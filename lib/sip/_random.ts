/**
 * Random identifiers for tags, branches and Call-IDs: `crypto.getRandomValues`
 * bits written with the 64 URL-safe base64 characters, all of which are SIP
 * `token` characters (RFC 3261 section 25.1), so one character carries 6 bits
 * where a hex digit carried 4. Presence over a slow link sends a tag, a
 * branch and a Call-ID in every message: the bytes count.
 *
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/**
 * Random bytes fetched 4 KiB at a time (one `getRandomValues` call per some
 * 500 tags instead of one each); every byte is used once.
 */
const POOL_SIZE = 4096;
let pool = new Uint8Array(0);
let pooled = 0;

/** A random token of `chars` characters, 6 random bits each. */
export function randomChars(chars: number): string {
  if (chars > POOL_SIZE) {
    let big = "";
    for (const b of crypto.getRandomValues(new Uint8Array(chars))) big += ALPHABET[b & 63];
    return big;
  }
  if (pooled + chars > pool.length) {
    pool = crypto.getRandomValues(new Uint8Array(POOL_SIZE));
    pooled = 0;
  }
  let out = "";
  for (let i = 0; i < chars; i++) out += ALPHABET[pool[pooled++] & 63];
  return out;
}

/**
 * A fresh From or To tag: 36 random bits in 6 characters (RFC 3261 section
 * 19.3 asks for at least 32, "globally unique and cryptographically random").
 */
export function randomTag(): string {
  return randomChars(6);
}
