import assert from "node:assert/strict";
import {
  addBuddy,
  formatResourceLists,
  hasBuddy,
  listBuddies,
  loadBuddyList,
  normalizeBuddyUri,
  parseResourceLists,
  removeBuddy,
  saveBuddyList,
} from "../lib/presence/resource_lists.ts";

// RFC 4826 section 3.3 style document, with a prefix instead of the default namespace.
const RFC_STYLE = `<?xml version="1.0" encoding="UTF-8"?>
<rl:resource-lists xmlns:rl="urn:ietf:params:xml:ns:resource-lists"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <rl:list name="friends">
    <rl:entry uri="sip:bill@example.com">
      <rl:display-name xml:lang="en">Bill Doe</rl:display-name>
    </rl:entry>
    <rl:entry-ref ref="resource-lists/users/sip:bill@example.com/index/~~/resource-lists/list%5b@name=%22list1%22%5d/entry%5b@uri=%22sip:petri@example.com%22%5d"/>
    <rl:list name="close-friends">
      <rl:display-name>Close Friends</rl:display-name>
      <rl:entry uri="sip:joe@example.com">
        <rl:display-name>Joe Smith</rl:display-name>
      </rl:entry>
      <rl:entry uri="sip:nancy@example.com"/>
      <rl:external anchor="http://xcap.example.org/resource-lists/users/sip:a@example.com/index/~~/resource-lists/list%5b@name=%22mkt%22%5d"/>
    </rl:list>
    <x:extra xmlns:x="urn:example:ext">ignored</x:extra>
  </rl:list>
</rl:resource-lists>`;

Deno.test("parseResourceLists() reads nested lists, entries and display names", () => {
  const doc = parseResourceLists(RFC_STYLE);
  assert.equal(doc.lists.length, 1);
  const friends = doc.lists[0];
  assert.equal(friends.name, "friends");
  assert.deepEqual(friends.entries, [
    { uri: "sip:bill@example.com", displayName: "Bill Doe", displayNameLang: "en" },
  ]);
  assert.equal(friends.entryRefs.length, 1);
  const close = friends.lists[0];
  assert.equal(close.name, "close-friends");
  assert.equal(close.displayName, "Close Friends");
  assert.deepEqual(close.entries, [
    { uri: "sip:joe@example.com", displayName: "Joe Smith" },
    { uri: "sip:nancy@example.com" },
  ]);
  assert.equal(close.externals.length, 1);
});

Deno.test("formatResourceLists() output parses back to the same model", () => {
  const doc = parseResourceLists(RFC_STYLE);
  const xml = formatResourceLists(doc);
  assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<resource-lists xmlns=/);
  assert.ok(xml.includes(`\n    <entry uri="sip:bill@example.com">`), "indented for humans");
  assert.deepEqual(parseResourceLists(xml), doc);
});

Deno.test("parseResourceLists() rejects malformed documents with SyntaxError", async (t) => {
  const cases: Record<string, string> = {
    "not xml": "buddies: bob",
    "wrong root": `<lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>`,
    "wrong namespace": `<resource-lists xmlns="urn:example"/>`,
    "entry without uri":
      `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry/></list></resource-lists>`,
    "truncated": `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>`,
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parseResourceLists(input), (e: unknown) => {
        assert.ok(e instanceof SyntaxError);
        assert.match(e.message, /^Cannot parse resource-lists document: /);
        return true;
      });
    });
  }
});

Deno.test("loadBuddyList() gives an empty 'buddies' list for a new file", () => {
  for (const input of ["", "  \n", undefined]) {
    const doc = loadBuddyList(input);
    assert.deepEqual(doc.lists, [{
      name: "buddies",
      entries: [],
      lists: [],
      entryRefs: [],
      externals: [],
    }]);
  }
  assert.throws(() => loadBuddyList("garbage"), SyntaxError);
});

Deno.test("addBuddy() normalizes URIs, keeps display names and does not duplicate", () => {
  let doc = loadBuddyList("");
  doc = addBuddy(doc, "bob@example.test", { displayName: "Bob" });
  doc = addBuddy(doc, "sip:carol@example.test");
  doc = addBuddy(doc, "sip:bob@EXAMPLE.test");
  assert.deepEqual(listBuddies(doc), [
    { uri: "sip:bob@example.test", displayName: "Bob" },
    { uri: "sip:carol@example.test" },
  ]);
  doc = addBuddy(doc, "carol@example.test", { displayName: "Carol & Co <ltd>" });
  assert.deepEqual(listBuddies(doc)[1], {
    uri: "sip:carol@example.test",
    displayName: "Carol & Co <ltd>",
  });
  const saved = saveBuddyList(doc);
  assert.deepEqual(listBuddies(loadBuddyList(saved)), listBuddies(doc));
});

Deno.test("addBuddy() and removeBuddy() do not modify their input", () => {
  const a = addBuddy(loadBuddyList(""), "bob@b");
  const b = addBuddy(a, "carol@b");
  assert.equal(listBuddies(a).length, 1);
  const c = removeBuddy(b, "sip:bob@b");
  assert.equal(listBuddies(b).length, 2);
  assert.deepEqual(listBuddies(c), [{ uri: "sip:carol@b" }]);
});

Deno.test("addBuddy() puts the buddy in the named list, creating it when absent", () => {
  let doc = parseResourceLists(RFC_STYLE);
  doc = addBuddy(doc, "sip:zed@example.com", { list: "close-friends" });
  assert.deepEqual(doc.lists[0].lists[0].entries.at(-1), { uri: "sip:zed@example.com" });
  doc = addBuddy(doc, "sip:work@example.com", { list: "work" });
  assert.equal(doc.lists[1].name, "work");
  assert.deepEqual(doc.lists[1].entries, [{ uri: "sip:work@example.com" }]);
});

Deno.test("removeBuddy() removes from nested lists and hasBuddy() reports it", () => {
  let doc = parseResourceLists(RFC_STYLE);
  assert.ok(hasBuddy(doc, "joe@example.com"));
  doc = removeBuddy(doc, "joe@example.com");
  assert.ok(!hasBuddy(doc, "joe@example.com"));
  assert.deepEqual(listBuddies(doc).map((e) => e.uri), [
    "sip:bill@example.com",
    "sip:nancy@example.com",
  ]);
  // Removing what is not there changes nothing.
  assert.deepEqual(removeBuddy(doc, "nobody@example.com"), doc);
});

Deno.test("removeBuddy() and hasBuddy() cope with odd URIs already in the file", () => {
  const doc = parseResourceLists(`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
    <list><entry uri="bob smith"/><entry uri="sip:carol@x"/></list></resource-lists>`);
  assert.ok(hasBuddy(doc, "carol@x"));
  assert.deepEqual(listBuddies(removeBuddy(doc, "carol@x")), [{ uri: "bob smith" }]);
});

Deno.test("normalizeBuddyUri() adds sip: only when no scheme is given", () => {
  assert.equal(normalizeBuddyUri("bob@example.test"), "sip:bob@example.test");
  assert.equal(normalizeBuddyUri("<sips:bob@example.test>"), "sips:bob@example.test");
  assert.equal(normalizeBuddyUri("tel:+3281000000"), "tel:+3281000000");
  assert.equal(normalizeBuddyUri("example.test:5060"), "sip:example.test:5060");
  assert.equal(normalizeBuddyUri("bob@example.test:5070"), "sip:bob@example.test:5070");
  assert.throws(() => normalizeBuddyUri("  "), TypeError);
  assert.throws(() => normalizeBuddyUri("bob smith@x"), TypeError);
});

Deno.test("parseResourceLists() throws only SyntaxError on mutated documents", () => {
  let seed = 9;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = `<>/"'=&;:-x \n`;
  for (let i = 0; i < 1500; i++) {
    const chars = [...RFC_STYLE];
    for (let k = 0; k < 1 + rand(4); k++) {
      chars[rand(chars.length)] = alphabet[rand(alphabet.length)];
    }
    try {
      listBuddies(loadBuddyList(chars.join("")));
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `case ${i} threw ${e}`);
    }
  }
});
