import assert from "node:assert/strict";
import { formatWatcherInfo, parseWatcherInfo } from "../lib/presence/watcherinfo.ts";

// Modelled on RFC 3858 section 5, with a prefix instead of the default namespace.
const DOC = `<?xml version="1.0"?>
<w:watcherinfo xmlns:w="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">
  <w:watcher-list resource="sip:professor@example.net" package="presence">
    <w:watcher status="active" id="8ajksjda7s" duration-subscribed="509"
        event="approved">sip:userA@example.net</w:watcher>
    <w:watcher status="pending" id="hh8juja87s997-ass7" display-name="Mr. Subscriber"
        xml:lang="en" expiration="3600" event="subscribe">sip:userB@example.org</w:watcher>
    <w:watcher status="terminated" id="z" event="rejected">sip:userC@example.org</w:watcher>
  </w:watcher-list>
</w:watcherinfo>`;

Deno.test("parseWatcherInfo() reads watcher lists and watchers with all attributes", () => {
  const info = parseWatcherInfo(DOC);
  assert.equal(info.version, 0);
  assert.equal(info.state, "full");
  assert.equal(info.lists[0].resource, "sip:professor@example.net");
  assert.equal(info.lists[0].package, "presence");
  assert.deepEqual(info.lists[0].watchers, [
    {
      id: "8ajksjda7s",
      uri: "sip:userA@example.net",
      status: "active",
      event: "approved",
      durationSubscribed: 509,
    },
    {
      id: "hh8juja87s997-ass7",
      uri: "sip:userB@example.org",
      status: "pending",
      event: "subscribe",
      displayName: "Mr. Subscriber",
      lang: "en",
      expiration: 3600,
    },
    { id: "z", uri: "sip:userC@example.org", status: "terminated", event: "rejected" },
  ]);
});

Deno.test("formatWatcherInfo() output parses back to the same model", () => {
  const info = parseWatcherInfo(DOC);
  info.lists[0].watchers[1].displayName = `Dr. "Quote" & <Co>`;
  info.state = "partial";
  info.version = 12;
  assert.deepEqual(parseWatcherInfo(formatWatcherInfo(info)), info);
});

Deno.test("parseWatcherInfo() rejects malformed documents with SyntaxError", async (t) => {
  const ns = `xmlns="urn:ietf:params:xml:ns:watcherinfo"`;
  const wl = (w: string) =>
    `<watcherinfo ${ns} version="1" state="full"><watcher-list resource="r" package="presence">${w}</watcher-list></watcherinfo>`;
  const cases: Record<string, string> = {
    "not xml": "<<",
    "wrong root": `<watchers ${ns}/>`,
    "bad state": `<watcherinfo ${ns} version="1" state="some"/>`,
    "no version": `<watcherinfo ${ns} state="full"/>`,
    "list without package":
      `<watcherinfo ${ns} version="1" state="full"><watcher-list resource="r"/></watcherinfo>`,
    "bad status": wl(`<watcher id="1" status="happy" event="subscribe">sip:a@b</watcher>`),
    "no id": wl(`<watcher status="active" event="subscribe">sip:a@b</watcher>`),
    "no event": wl(`<watcher id="1" status="active">sip:a@b</watcher>`),
    "no uri": wl(`<watcher id="1" status="active" event="approved"/>`),
    "bad expiration": wl(
      `<watcher id="1" status="active" event="approved" expiration="soon">sip:a@b</watcher>`,
    ),
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parseWatcherInfo(input), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse watcherinfo document: /);
        return true;
      });
    });
  }
});

Deno.test("parseWatcherInfo() throws only SyntaxError on mutated documents", () => {
  let seed = 5;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = `<>/"'=&;:-x \n`;
  for (let i = 0; i < 1500; i++) {
    const chars = [...DOC];
    for (let k = 0; k < 1 + rand(4); k++) {
      chars[rand(chars.length)] = alphabet[rand(alphabet.length)];
    }
    try {
      parseWatcherInfo(chars.join(""));
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `case ${i} threw ${e}`);
    }
  }
});
