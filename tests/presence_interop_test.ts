/**
 * `sipkit watch` and `sipkit notify` against real peers on loopback:
 * Kamailio with its presence modules (presence, presence_xml, rls), Kamailio
 * as a plain proxy (one and two domains), and baresip.
 */

import assert from "node:assert/strict";
import { startBaresip } from "./peers/baresip.ts";
import { kamailioPresenceModule, startKamailio, startKamailioPair } from "./peers/kamailio.ts";
import { requirePeer } from "./peers/require.ts";
import {
  type SipkitBed,
  type SipkitEvent,
  type SipkitProcess,
  spawnSipkit,
  withSipkitBed,
} from "./_sipkit_process.ts";

const HAVE_KAMAILIO = requirePeer("kamailio", "kamailio");
const HAVE_PRESENCE = requirePeer("kamailio", "kamailio-presence-modules", {
  file: kamailioPresenceModule(),
});
const HAVE_BARESIP = requirePeer("baresip", "baresip");

const presence = (uri: string, status: string) => (e: SipkitEvent) =>
  e.type === "presence" && String(e.uri).includes(uri) && e.status === status;

Deno.test({
  name: "baresip watches sipkit notify and sees its status changes",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    await withSipkitBed(async ({ env, keep }) => {
      const alice = keep(spawnSipkit([
        "notify",
        "-u",
        "alice@example.test",
        "--bind",
        "127.0.0.1:0",
        "--status",
        "online",
        "--allow",
        "bob@example.test",
        "--min-interval",
        "0",
        "--trace",
      ], { env, name: "sipkit notify (alice)" }));
      const listening = await alice.waitEvent((e) => e.type === "listening");
      const port = Number(String(listening.address).split(":").at(-1));
      const bob = keep(
        await startBaresip({
          user: "bob",
          contacts: [{ uri: `sip:alice@127.0.0.1:${port}`, name: "Alice" }],
        }),
      );
      const aliceUri = `sip:alice@127.0.0.1:${port}`;
      const watcher = await alice.waitEvent(
        (e) => e.type === "watcher" && e.state === "active",
        { message: "baresip's subscription" },
      );
      assert.equal(watcher.uri, "sip:bob@example.test");
      await bob.waitContactStatus(aliceUri, "Online");
      await alice.send({ type: "status", status: "busy", note: "in a meeting" });
      await bob.waitContactStatus(aliceUri, "Busy");
      await alice.send({ type: "status", status: "offline" });
      await bob.waitContactStatus(aliceUri, "Offline");
      await alice.send({ type: "status", status: "online" });
      await bob.waitContactStatus(aliceUri, "Online");
      assert.equal(await alice.stop(), 0);
      assert.deepEqual(alice.badLines, []);
      // baresip did not ask for deflate: every NOTIFY it got carried a
      // plain, full PIDF document (issue 8: non-participating peers).
      const notifies = alice.logs().split(">>> sent to ").filter((b) => /^[^\n]*\nNOTIFY /.test(b));
      assert.ok(notifies.length >= 4, `${notifies.length} NOTIFYs traced`);
      for (const n of notifies) {
        assert.match(n, /\n(c|Content-Type): application\/pidf\+xml\r?\n/);
        assert.doesNotMatch(n, /\n(e|Content-Encoding):/i);
        assert.match(n, /<presence [^>]*xmlns="urn:ietf:params:xml:ns:pidf"[^]*<\/presence>/);
      }
    });
  },
});

Deno.test({
  name: "sipkit watch sees baresip's status changes",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    await withSipkitBed(async ({ env, keep }) => {
      const bob = keep(await startBaresip({ user: "bob" }));
      await bob.setPresence("online");
      const alice = keep(spawnSipkit(
        ["watch", "-u", "alice@example.test", "--bind", "127.0.0.1:0", bob.contact],
        { env, name: "sipkit watch (alice)" },
      ));
      const online = await alice.waitEvent(presence("bob", "online"), {
        message: "baresip online",
      });
      assert.equal(online.basic, "open");
      await bob.setPresence("offline");
      const offline = await alice.waitEvent(presence("bob", "offline"), {
        message: "baresip offline",
      });
      assert.equal(offline.basic, "closed");
      await bob.setPresence("online");
      await alice.waitEvent(
        (e) =>
          presence("bob", "online")(e) &&
          alice.events.indexOf(e) > alice.events.indexOf(offline),
        { message: "baresip online again" },
      );
      assert.equal(await alice.stop(), 0);
      assert.deepEqual(alice.badLines, []);
    });
  },
});

Deno.test({
  name:
    "Kamailio presence server: notify --publish, then watch through the server sees each change",
  ignore: !HAVE_PRESENCE,
  fn: async () => {
    await withSipkitBed(async ({ env, stateDir, keep }) => {
      const k = keep(await startKamailio({ mode: "presence" }));
      const common = ["--proxy", k.uri, "--bind", "127.0.0.1:0"];
      // cron style first: publish once, then once more refreshes the same publication.
      const once = async (status: string) => {
        const p = keep(spawnSipkit(
          [
            "notify",
            "--publish",
            "--once",
            "-u",
            "carol@example.test",
            ...common,
            "--status",
            status,
          ],
          { env, stdin: false, name: "sipkit notify --publish --once" },
        ));
        assert.equal(await p.waitExit(), 0, p.logs());
        return p.events.find((e) => e.type === "published")!;
      };
      const first = await once("lunch");
      const second = await once("lunch");
      const third = await once("busy");
      assert.deepEqual([first.action, second.action, third.action], [
        "create",
        "refresh",
        "modify",
      ]);
      const saved = JSON.parse(
        await Deno.readTextFile(`${stateDir}/publish-sip_carol@example.test.json`),
      );
      assert.equal(saved.etag, third.etag);

      const alice = keep(spawnSipkit(
        [
          "notify",
          "--publish",
          "-u",
          "alice@example.test",
          ...common,
          "--status",
          "busy",
          "--note",
          "in a meeting",
        ],
        { env, name: "sipkit notify --publish (alice)" },
      ));
      await alice.waitEvent((e) => e.type === "published", { message: "alice's PUBLISH" });
      const bob = keep(spawnSipkit(
        [
          "watch",
          "-u",
          "bob@example.test",
          ...common,
          "alice@example.test",
          "carol@example.test",
        ],
        { env, name: "sipkit watch (bob)" },
      ));
      const busy = await bob.waitEvent(presence("alice", "busy"), { message: "alice busy" });
      assert.equal(busy.note, "in a meeting");
      await bob.waitEvent(presence("carol", "busy"), { message: "carol's cron publication" });
      await alice.send({ type: "status", status: "away" });
      await bob.waitEvent(presence("alice", "away"), { message: "alice away" });
      await alice.send({ type: "status", status: "on-the-phone" });
      await bob.waitEvent(presence("alice", "on-the-phone"), { message: "alice on the phone" });
      // alice stops: her publication is removed, the server tells bob.
      assert.equal(await alice.stop(), 0);
      assert.ok(alice.events.some((e) => e.type === "unpublished"), "removed on exit");
      await bob.waitEvent(
        (e) => e.type === "presence" && e.uri === "sip:alice@example.test" && e.basic !== "open",
        { message: "alice gone after her publication was removed" },
      );
      assert.equal(await bob.stop(), 0);
    });
  },
});

Deno.test({
  name: "notify --publish --once: a server that forgot the saved entity-tag (412) gets a new " +
    "publication, whether the status is the same (refresh) or new (modify)",
  ignore: !HAVE_PRESENCE,
  fn: async () => {
    await withSipkitBed(async ({ env, stateDir, keep }) => {
      const once = async (server: string, status: string) => {
        const p = keep(spawnSipkit(
          [
            "notify",
            "--publish",
            "--once",
            "--trace",
            "-u",
            "dave@example.test",
            "--proxy",
            server,
            "--bind",
            "127.0.0.1:0",
            "--status",
            status,
          ],
          { env, stdin: false, name: `sipkit notify --publish --once (${status})` },
        ));
        assert.equal(await p.waitExit(), 0, p.logs());
        return { p, published: p.events.find((e) => e.type === "published")! };
      };
      const savedEtag = async () =>
        JSON.parse(await Deno.readTextFile(`${stateDir}/publish-sip_dave@example.test.json`))
          .etag;
      // Each Kamailio starts with an empty presentity table: a restart forgets every ETag.
      for (const [first, second] of [["busy", "busy"], ["busy", "lunch"]]) {
        let k = keep(await startKamailio({ mode: "presence" }));
        const a = await once(k.uri, first);
        assert.equal(a.published.action, "create");
        await k.stop();
        k = keep(await startKamailio({ mode: "presence" }));
        const b = await once(k.uri, second);
        assert.match(b.p.logs(), /SIP\/2\.0 412 /, "the stale entity-tag was sent and refused");
        assert.equal(b.published.action, "create", "published afresh after 412");
        assert.equal(await savedEtag(), b.published.etag);
        const c = await once(k.uri, second);
        assert.equal(c.published.action, "refresh", "the new entity-tag is the one kept");
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "Kamailio rls: one RFC 4662 list subscription gives per-buddy presence events",
  ignore: !HAVE_PRESENCE,
  fn: async () => {
    await withSipkitBed(async ({ env, keep }) => {
      const k = keep(await startKamailio({ mode: "presence" }));
      const common = ["--proxy", k.uri, "--bind", "127.0.0.1:0"];
      const publish = keep(spawnSipkit(
        ["notify", "--publish", "-u", "alice@example.test", ...common, "--status", "lunch"],
        { env, name: "sipkit notify --publish (alice)" },
      ));
      await publish.waitEvent((e) => e.type === "published");
      // sip:buddies-bob@example.test is bob's list (alice, carol) in the test database.
      const bob = keep(spawnSipkit(
        ["watch", "-u", "bob@example.test", ...common, "--list", "sip:buddies-bob@example.test"],
        { env, name: "sipkit watch --list (bob)" },
      ));
      const lunch = await bob.waitEvent(presence("alice", "lunch"), {
        message: "alice's state inside a list NOTIFY",
        timeout: 15_000,
      });
      assert.equal(lunch.list, "sip:buddies-bob@example.test");
      assert.equal(lunch.uri, "sip:alice@example.test");
      const listSub = bob.events.find((e) =>
        e.type === "subscription" && e.uri === "sip:buddies-bob@example.test"
      );
      assert.equal(listSub?.state, "active");
      assert.ok(
        bob.events.some((e) =>
          e.type === "subscription" && e.uri === "sip:carol@example.test" &&
          e.list === "sip:buddies-bob@example.test"
        ),
        "carol's resource state is reported",
      );
      await publish.send({ type: "status", status: "busy" });
      await bob.waitEvent(presence("alice", "busy"), {
        message: "the change in a partial list NOTIFY",
        timeout: 15_000,
      });
      assert.equal(await bob.stop(), 0);
      assert.equal(await publish.stop(), 0);
    });
  },
});

/**
 * One side of the thesis set-up behind a proxy: `sipkit notify --register`
 * (its contact is registered, so SUBSCRIBEs routed through the proxy reach
 * it) and `sipkit watch` of the buddy, with notify's `watcher` events fed to
 * watch's stdin as `sipkit notify | sipkit watch` would.
 */
async function presenceUser(
  keep: SipkitBed["keep"],
  user: string,
  buddy: string,
  proxy: string,
  env: Record<string, string>,
): Promise<{ notify: SipkitProcess; watch: SipkitProcess }> {
  const notify = keep(spawnSipkit(
    [
      "notify",
      "-u",
      user,
      "--proxy",
      proxy,
      "--bind",
      "127.0.0.1:0",
      "--register",
      "--allow",
      buddy,
    ],
    { env, name: `sipkit notify (${user})` },
  ));
  await notify.waitEvent((e) => e.type === "registered", { message: `${user} registered` });
  const watch = keep(spawnSipkit(
    ["watch", "-u", user, "--proxy", proxy, "--bind", "127.0.0.1:0", buddy],
    { env, name: `sipkit watch (${user})` },
  ));
  // The pipe: every watcher event of notify goes to watch's stdin.
  notify.onEvent((e) => {
    if (e.type === "watcher") watch.send(e).catch(() => {});
  });
  return { notify, watch };
}

for (const first of ["alice", "bob"] as const) {
  Deno.test({
    name:
      `Kamailio as a plain proxy: SUBSCRIBE to an offline user gets 404, and mutual subscription ` +
      `joins both when the other comes online (${first} first; A.1, A.2)`,
    ignore: !HAVE_KAMAILIO,
    fn: async () => {
      await withSipkitBed(async ({ env, keep }) => {
        const k = keep(await startKamailio({ mode: "proxy" }));
        const second = first === "alice" ? "bob" : "alice";
        const aor = (u: string) => `${u}@example.test`;
        const a = await presenceUser(keep, aor(first), aor(second), k.uri, env);
        const failed = await a.watch.waitEvent(
          (e) => e.type === "subscription" && e.state === "failed",
          { message: `${first}'s SUBSCRIBE to the offline ${second}` },
        );
        assert.equal(failed.status, 404, "the proxy answers 404 for a user not registered");
        assert.ok(Number(failed.retry_in) >= 10, "kept for a later retry");

        const b = await presenceUser(keep, aor(second), aor(first), k.uri, env);
        const started = Date.now();
        // The second one sees the first at once (the first is registered and answers).
        const seenByB = await b.watch.waitEvent((e) => e.type === "presence", {
          message: `${second} sees ${first}`,
        });
        assert.deepEqual([seenByB.uri, seenByB.status], [`sip:${aor(first)}`, "online"]);
        // The first one's stored subscription is re-sent when the second subscribes.
        const seenByA = await a.watch.waitEvent((e) => e.type === "presence", {
          message: `${first} sees ${second} through mutual subscription`,
        });
        assert.deepEqual([seenByA.uri, seenByA.status], [`sip:${aor(second)}`, "online"]);
        assert.ok(
          Date.now() - started < Number(failed.retry_in) * 1000,
          "re-sent at once, not after the back-off",
        );
        // And status changes flow both ways through the proxy.
        await a.notify.send({ type: "status", status: "away" });
        await b.watch.waitEvent((e) => e.type === "presence" && e.status === "away");
        await b.notify.send({ type: "status", status: "busy" });
        await a.watch.waitEvent((e) => e.type === "presence" && e.status === "busy");
        for (const p of [a.watch, b.watch, a.notify, b.notify]) {
          assert.equal(await p.stop(), 0, p.name);
          assert.deepEqual(p.badLines, []);
        }
        assert.ok(
          a.notify.events.some((e) => e.type === "unregistered"),
          "notify removed its binding on exit",
        );
      });
    },
  });
}

Deno.test({
  name: "presence across two domains, each with its own Kamailio proxy (A.4)",
  ignore: !HAVE_KAMAILIO,
  fn: async () => {
    await withSipkitBed(async ({ env, keep }) => {
      const pair = await startKamailioPair({ mode: "proxy" });
      keep(pair.a);
      keep(pair.b);
      const alice = await presenceUser(
        keep,
        "alice@example.test",
        "bob@example.org",
        pair.a.uri,
        env,
      );
      const bob = await presenceUser(
        keep,
        "bob@example.org",
        "alice@example.test",
        pair.b.uri,
        env,
      );
      const seenByBob = await bob.watch.waitEvent((e) => e.type === "presence", {
        message: "bob@example.org sees alice@example.test",
      });
      assert.deepEqual([seenByBob.uri, seenByBob.status], ["sip:alice@example.test", "online"]);
      const seenByAlice = await alice.watch.waitEvent((e) => e.type === "presence", {
        message: "alice@example.test sees bob@example.org",
        timeout: 15_000,
      });
      assert.deepEqual([seenByAlice.uri, seenByAlice.status], ["sip:bob@example.org", "online"]);
      await alice.notify.send({ type: "status", status: "lunch" });
      await bob.watch.waitEvent((e) => e.type === "presence" && e.status === "lunch", {
        message: "alice's change across both proxies",
      });
      await bob.notify.send({ type: "status", status: "on-the-phone" });
      await alice.watch.waitEvent((e) => e.type === "presence" && e.status === "on-the-phone", {
        message: "bob's change across both proxies",
      });
      for (const p of [alice.watch, bob.watch, alice.notify, bob.notify]) {
        assert.equal(await p.stop(), 0, p.name);
      }
    });
  },
});
