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

/** A random token of `chars` characters, 6 random bits each. */
export function randomChars(chars: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(chars));
  let out = "";
  for (const b of buf) out += ALPHABET[b & 63];
  return out;
}

/**
 * A fresh From or To tag: 48 random bits (RFC 3261 section 19.3 asks for
 * at least 32, "globally unique and cryptographically random").
 */
export function randomTag(): string {
  return randomChars(8);
}
