// NameTrie (lib/sip/_scan.ts): the tries the parsers read names with, built
// at import, checked against a plain model (a token ends at the first
// non-token character; it is a name when it spells one, in any case unless
// the trie is case-sensitive).

import assert from "node:assert/strict";
import { C_TOKEN, CHARS, NameTrie, scan } from "../lib/sip/_scan.ts";

function isToken(c: number): boolean {
  return c < 128 && (CHARS[c] & C_TOKEN) !== 0;
}

/** The model: where the token at `s[i..]` ends and which name it is (-1 none). */
function model(names: readonly string[], anyCase: boolean, s: string, i: number): [number, number] {
  let end = i;
  while (end < s.length && isToken(s.charCodeAt(end))) end++;
  const token = s.slice(i, end);
  return [end, names.indexOf(anyCase ? token.toLowerCase() : token)];
}

/** Every name, its prefixes and extensions, in three cases, with a delimiter after. */
function samples(names: readonly string[]): string[] {
  const out = new Set<string>(["", ";", "x", "Z", "é", "a b"]);
  for (const name of names) {
    for (const variant of [name, name.toUpperCase(), name[0].toUpperCase() + name.slice(1)]) {
      out.add(variant);
      out.add(variant + ";x");
      out.add(variant + ":");
      out.add(variant + "s");
      out.add(variant + "-1");
      out.add(variant.slice(0, -1));
      out.add(variant.slice(0, -1) + "é");
    }
  }
  return [...out];
}

function check(names: readonly string[], anyCase: boolean) {
  const trie = new NameTrie(names, { caseSensitive: !anyCase });
  const bytes = new TextEncoder();
  for (const s of samples(names)) {
    const [end, known] = model(names, anyCase, s, 0);
    assert.equal(trie.readToken(s, 0, s.length), end, `readToken end of "${s}"`);
    assert.equal(scan.known, known, `readToken name of "${s}"`);
    if ([...s].every((ch) => ch.charCodeAt(0) < 128)) {
      assert.equal(trie.readTokenBytes(bytes.encode(s), 0, s.length), end, `bytes "${s}"`);
      assert.equal(scan.known, known, `bytes name of "${s}"`);
    }
    // find() looks at the whole slice: a name only when all of it spells one.
    const whole = end === s.length ? known : -1;
    assert.equal(trie.find(s, 0, s.length), whole, `find "${s}"`);
  }
}

Deno.test("NameTrie: names in any case, prefixes and extensions are no names", () => {
  check(
    ["tag", "branch", "rport", "received", "lr", "transport", "t", "ta", "+sip.instance"],
    true,
  );
  check(["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "content-length", "l"], true);
});

Deno.test("NameTrie: case-sensitive names (methods)", () => {
  check(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "Info"], false);
});

Deno.test("NameTrie: one name, and no names", () => {
  check(["q"], true);
  check([], true);
});

Deno.test("NameTrie: refuses names that are no lowercase tokens, and more than 256 states", () => {
  assert.throws(() => new NameTrie(["Tag"]), /not a lowercase token/);
  assert.throws(() => new NameTrie(["a b"]), /not a lowercase token/);
  assert.throws(() => new NameTrie(["a b"], { caseSensitive: true }), /not a token/);
  // 3 fixed states + 253 nodes is the most: one node more is refused.
  assert.equal(new NameTrie(["x".repeat(253)]).find("X".repeat(253), 0, 253), 0);
  assert.throws(() => new NameTrie(["x".repeat(254)]), /too many names/);
  const wide = Array.from(
    { length: 26 * 10 },
    (_, i) => String.fromCharCode(97 + (i % 26)) + String.fromCharCode(97 + Math.floor(i / 26)),
  );
  assert.throws(() => new NameTrie(wide), /too many names/);
});
