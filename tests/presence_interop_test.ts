/**
 * `sipkit watch` and `sipkit notify` against real peers on loopback:
 * Kamailio with its presence modules (presence, presence_xml, rls), Kamailio
 * as a plain proxy (one and two domains), and baresip.
 */

import assert from "node:assert/strict";
import { startBaresip } from "./peers/baresip.ts";
import { kamailioPresenceModule, startKamailio, startKamailioPair } from "./peers/kamailio.ts";
import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";
import { freePort, requirePeer } from "./peers/require.ts";
import {
  type SipkitEvent,
  type SipkitProcess,
  spawnSipkit,
  tempSipkitDirs,
} from "./_sipkit_process.ts";

const HAVE_KAMAILIO = requirePeer("kamailio", "kamailio");
const HAVE_PRESENCE = requirePeer("kamailio", "kamailio-presence-modules", {
  file: kamailioPresenceModule(),
});
const HAVE_BARESIP = requirePeer("baresip", "baresip");

/** Stops every process and peer, whatever happened. */
async function stopAll(items: Array<{ stop(): Promise<unknown> } | undefined>): Promise<void> {
  await Promise.allSettled(items.filter((i) => i !== undefined).map((i) => i!.stop()));
}

const presence = (uri: string, status: string) => (e: SipkitEvent) =>
  e.type === "presence" && String(e.uri).includes(uri) && e.status === status;

Deno.test({
  name: "baresip watches sipkit notify and sees its status changes",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    const dirs = await tempSipkitDirs();
    const port = freePort();
    const logs: HasLogs[] = [];
    let alice: SipkitProcess | undefined;
    let bob: Awaited<ReturnType<typeof startBaresip>> | undefined;
    try {
      await withLogsOnFailure(logs, async () => {
        alice = spawnSipkit([
          "notify",
          "-u",
          "alice@example.test",
          "--bind",
          `127.0.0.1:${port}`,
          "--status",
          "online",
          "--allow",
          "bob@example.test",
          "--min-interval",
          "0",
        ], { env: dirs.env, name: "sipkit notify (alice)" });
        logs.push(alice);
        await alice.waitEvent((e) => e.type === "listening", { message: "listening" });
        bob = await startBaresip({
          user: "bob",
          contacts: [{ uri: `sip:alice@127.0.0.1:${port}`, name: "Alice" }],
        });
        logs.push(bob);
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
      });
    } finally {
      await stopAll([alice, bob]);
      await dirs.cleanup();
    }
  },
});
