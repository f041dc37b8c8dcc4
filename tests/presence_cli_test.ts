/**
 * `sipkit watch` and `sipkit notify` as real processes over loopback sockets.
 */

import assert from "node:assert/strict";
import { parseResourceLists } from "../lib/presence/resource_lists.ts";
import { spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";

async function run(args: string[], env: Record<string, string>) {
  const p = spawnSipkit(args, { env, stdin: false });
  const code = await p.exited;
  return { code, events: p.events, logs: p.logs(), badLines: p.badLines };
}

Deno.test("watch add/remove/list edit the buddy list file in the config directory", async () => {
  const dirs = await tempSipkitDirs();
  try {
    const added = await run(["watch", "add", "bob@example.test", "--name", "Bob"], dirs.env);
    assert.equal(added.code, 0, added.logs);
    assert.equal(added.events[0].type, "buddy_added");
    assert.equal(added.events[0].uri, "sip:bob@example.test");
    assert.equal(added.events[0].name, "Bob");
    assert.equal(added.events[0].existed, false);
    assert.equal((await run(["watch", "add", "sip:carol@example.test"], dirs.env)).code, 0);
    const again = await run(["watch", "add", "sip:bob@EXAMPLE.test"], dirs.env);
    assert.equal(again.events[0].existed, true);

    const file = `${dirs.configDir}/buddies.xml`;
    const doc = parseResourceLists(await Deno.readTextFile(file));
    assert.deepEqual(
      doc.lists[0].entries.map((e) => [e.uri, e.displayName]),
      [["sip:bob@example.test", "Bob"], ["sip:carol@example.test", undefined]],
    );

    const listed = await run(["watch", "list"], dirs.env);
    assert.equal(listed.code, 0);
    assert.deepEqual(
      listed.events.map((e) => [e.type, e.uri, e.name]),
      [["buddy", "sip:bob@example.test", "Bob"], ["buddy", "sip:carol@example.test", undefined]],
    );

    const removed = await run(["watch", "remove", "bob@example.test"], dirs.env);
    assert.equal(removed.code, 0);
    assert.deepEqual([removed.events[0].type, removed.events[0].existed], ["buddy_removed", true]);
    const missing = await run(["watch", "remove", "bob@example.test"], dirs.env);
    assert.deepEqual([missing.code, missing.events[0].existed], [0, false]);
    const after = await run(["watch", "list"], dirs.env);
    assert.deepEqual(after.events.map((e) => e.uri), ["sip:carol@example.test"]);
    assert.deepEqual([...added.badLines, ...listed.badLines, ...after.badLines], []);
  } finally {
    await dirs.cleanup();
  }
});

Deno.test("watch list --buddies reads another file; a broken file is a usage error", async () => {
  const dirs = await tempSipkitDirs();
  try {
    const file = `${dirs.configDir}/other.xml`;
    await Deno.mkdir(dirs.configDir, { recursive: true });
    await Deno.writeTextFile(
      file,
      `<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` +
        `<list name="work"><entry uri="sip:dave@example.org"/></list></resource-lists>`,
    );
    const listed = await run(["watch", "list", "--buddies", file], dirs.env);
    assert.deepEqual(listed.events.map((e) => e.uri), ["sip:dave@example.org"]);
    await Deno.writeTextFile(file, "<not-a-list/>");
    const broken = await run(["watch", "list", "--buddies", file], dirs.env);
    assert.equal(broken.code, 2);
    assert.match(broken.logs, /Cannot parse buddy list/);
    const bad = await run(["watch", "add", "bob @example.test"], dirs.env);
    assert.equal(bad.code, 2);
  } finally {
    await dirs.cleanup();
  }
});
