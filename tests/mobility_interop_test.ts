/**
 * Mobility against real peers, in network namespaces the tests create: a
 * mobile host namespace (sipkit) joined by two veth pairs to a server
 * namespace (Kamailio, baresip, and other sipkit processes). The host moves by
 * adding its new address and removing the old one (promote_secondaries),
 * or by losing a link (the route moves to the other interface).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type SipkitEvent, type SipkitProcess, spawnSipkit } from "./_sipkit_process.ts";
import { ignoreWithoutNetns, moveOnMa, SERVER_ADDRESS } from "./peers/mobility_net.ts";
import { requirePeer } from "./peers/require.ts";
import { baresipInServer, type MobilityBed, withMobilityBed } from "./_mobility_bed.ts";

const skip = ignoreWithoutNetns() || !requirePeer("kamailio", "kamailio") ||
  !requirePeer("sipsak", "sipsak");

/** Runs a sipkit command to its end inside a namespace and returns its events. */
async function runIn(
  netns: string,
  args: string[],
  env: Record<string, string>,
): Promise<SipkitEvent[]> {
  const p = spawnSipkit(args, { netns, env, stdin: false });
  const code = await p.waitExit();
  assert.equal(code, 0, p.logs());
  return p.events;
}

/** The contacts Kamailio holds for alice, asked from the server namespace. */
async function bindings(bed: MobilityBed): Promise<string[]> {
  const events = await runIn(
    bed.net.server,
    ["register", "-u", "alice@example.test", "--registrar", bed.k!.uri, "--query"],
    { ...bed.env, SIPKIT_PASSWORD: "alice-secret" },
  );
  return events.filter((e) => e.type === "binding").map((e) => String(e.contact)).sort();
}

/**
 * carol's presence agent on the mobile host (`notify --roam`, port 5092, online, accepting every
 * watcher), listening; stopped with the bed.
 */
async function roamingCarol(bed: MobilityBed): Promise<SipkitProcess> {
  const carol = spawnSipkit([
    "notify",
    "-u",
    "carol@example.test",
    "--bind",
    "0.0.0.0:5092",
    "--status",
    "online",
    "--unknown",
    "accept",
    "--roam",
    "--toward",
    SERVER_ADDRESS,
  ], { netns: bed.net.mobile, env: bed.env, name: "notify carol" });
  bed.procs.push(carol);
  await carol.waitEvent((e) => e.type === "listening");
  return carol;
}

/** alice's `watch --roam` of `target` on the mobile host, once it sees the target online. */
async function roamingAliceWatching(bed: MobilityBed, target: string): Promise<SipkitProcess> {
  const alice = spawnSipkit([
    "watch",
    "-u",
    "alice@example.test",
    target,
    "--roam",
    "--toward",
    SERVER_ADDRESS,
  ], { netns: bed.net.mobile, env: bed.env, name: "watch alice" });
  bed.procs.push(alice);
  await alice.waitEvent((e) => e.type === "presence" && e.status === "online");
  return alice;
}

const hostOf = (contact: unknown) => /@([^:;>]+)/.exec(String(contact))?.[1];

Deno.test({
  name: "register --roam across moves: the registrar holds only the new binding " +
    "(new address then old removed; then a link down moves to the other interface)",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withMobilityBed({}, async (bed) => {
      const { net, env, procs } = bed;
      const k = bed.k!;
      const reg = spawnSipkit([
        "register",
        "-u",
        "alice@example.test",
        "--registrar",
        k.uri,
        "--expires",
        "600",
        "--roam",
      ], { netns: net.mobile, env: { ...env, SIPKIT_PASSWORD: "alice-secret" }, stdin: false });
      procs.push(reg);
      const first = await reg.waitEvent((e) => e.type === "registered");
      assert.equal(hostOf(first.contact), "10.77.1.2");
      assert.deepEqual((await bindings(bed)).map(hostOf), ["10.77.1.2"]);

      // Move 1: a new address on the same link (another subnet), then the old one goes.
      await moveOnMa(net, "10.77.1.2", "10.77.3.2");
      const moved = await reg.waitEvent((e) => e.type === "moved");
      assert.deepEqual([moved.old, moved.new, moved.redone], [
        "10.77.1.2",
        "10.77.3.2",
        ["registration"],
      ]);
      const again = await reg.waitEvent((e) =>
        e.type === "registered" && hostOf(e.contact) === "10.77.3.2"
      );
      assert.deepEqual((again.replaced as string[]).map(hostOf), ["10.77.1.2"]);
      assert.deepEqual((await bindings(bed)).map(hostOf), ["10.77.3.2"], "the old binding is gone");

      // Move 2: the wired link goes down; the route to the registrar leaves by mb.
      await net.inMobile(["link", "set", "dev", "ma", "down"]);
      const second = await reg.waitEvent((e) => e.type === "moved" && e.new === "10.77.2.2");
      assert.equal(second.old, "10.77.3.2");
      await reg.waitEvent((e) => e.type === "registered" && hostOf(e.contact) === "10.77.2.2");
      assert.deepEqual((await bindings(bed)).map(hostOf), ["10.77.2.2"]);

      // On exit the binding is removed.
      assert.equal(await reg.stop(), 0);
      assert.deepEqual(await bindings(bed), []);
    }),
});

Deno.test({
  name: "sipkit roam | sipkit register across a move: the pipeline form moves the binding too",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withMobilityBed({}, async (bed) => {
      const { net, env, procs } = bed;
      const k = bed.k!;
      const roam = spawnSipkit(["roam", "--toward", SERVER_ADDRESS], {
        netns: net.mobile,
        env,
        stdin: false,
      });
      procs.push(roam);
      const reg = spawnSipkit(
        ["register", "-u", "alice@example.test", "--registrar", k.uri, "--expires", "600"],
        { netns: net.mobile, env: { ...env, SIPKIT_PASSWORD: "alice-secret" } },
      );
      procs.push(reg);
      await roam.waitEvent((e) => e.type === "roaming");
      await reg.waitEvent((e) => e.type === "registered");
      roam.onEvent((e) => void reg.send(e));
      await moveOnMa(net, "10.77.1.2", "10.77.1.9");
      await reg.waitEvent((e) => e.type === "moved" && e.new === "10.77.1.9");
      await reg.waitEvent((e) => e.type === "registered" && hostOf(e.contact) === "10.77.1.9");
      assert.deepEqual((await bindings(bed)).map(hostOf), ["10.77.1.9"]);
    }),
});

Deno.test({
  name: "watch --roam across a move: status changes after the move still reach the watcher; " +
    "notify --roam across a move: the watcher keeps seeing us",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withMobilityBed(false, async (bed) => {
      const { net, env, procs } = bed;
      // bob's presence agent in the server namespace, alice watching from the mobile host.
      const bob = spawnSipkit([
        "notify",
        "-u",
        "bob@example.test",
        "--bind",
        `${SERVER_ADDRESS}:5090`,
        "--status",
        "online",
        "--unknown",
        "accept",
      ], { netns: net.server, env, name: "notify bob" });
      procs.push(bob);
      await bob.waitEvent((e) => e.type === "listening");
      const alice = await roamingAliceWatching(bed, `sip:bob@${SERVER_ADDRESS}:5090`);

      await moveOnMa(net, "10.77.1.2", "10.77.3.2");
      const moved = await alice.waitEvent((e) => e.type === "moved");
      assert.deepEqual([moved.new, moved.redone], ["10.77.3.2", ["subscriptions"]]);
      await bob.send({ type: "status", status: "busy" });
      await alice.waitEvent((e) => e.type === "presence" && e.status === "busy", {
        message: "a status change after the move, at the new address",
      });

      // Now the presence agent moves (it runs in the mobile namespace this time).
      const carol = await roamingCarol(bed);
      const dave = spawnSipkit(
        ["watch", "-u", "dave@example.test", "sip:carol@10.77.3.2:5092"],
        { netns: net.server, env, name: "watch dave" },
      );
      procs.push(dave);
      await dave.waitEvent((e) => e.type === "presence" && e.status === "online");
      await moveOnMa(net, "10.77.3.2", "10.77.3.7");
      const carolMoved = await carol.waitEvent((e) => e.type === "moved" && e.new === "10.77.3.7");
      assert.deepEqual(carolMoved.redone, ["subscriptions"]);
      await carol.send({ type: "status", status: "away" });
      await dave.waitEvent((e) => e.type === "presence" && e.status === "away", {
        message: "the watcher keeps seeing the moved agent",
      });
    }),
});

Deno.test({
  name: "watch --roam and notify --roam across a move with baresip in the server namespace: " +
    "baresip's NOTIFYs follow the watcher's refreshed target, and baresip keeps seeing the " +
    "moved presence agent",
  ignore: skip || !requirePeer("baresip", "baresip"),
  sanitizeResources: false,
  fn: () =>
    withMobilityBed(false, async (bed) => {
      const { net } = bed;

      // carol's presence agent on the mobile host, started before baresip
      // subscribes to it (baresip retries a failed subscription only after 30 s).
      const carol = await roamingCarol(bed);
      const carolUri = "sip:carol@10.77.1.2:5092";
      const bob = await baresipInServer(bed, { contacts: [{ uri: carolUri, name: "Carol" }] });
      await bob.setPresence("online");
      await bob.waitContactStatus(carolUri, "Online");
      // alice watches bob (baresip's own presence) from the mobile host.
      const alice = await roamingAliceWatching(bed, bob.contact);

      // Both move with the host.
      await moveOnMa(net, "10.77.1.2", "10.77.3.2");
      const aliceMoved = await alice.waitEvent((e) => e.type === "moved");
      assert.deepEqual([aliceMoved.new, aliceMoved.redone], ["10.77.3.2", ["subscriptions"]]);
      const carolMoved = await carol.waitEvent((e) => e.type === "moved");
      assert.deepEqual([carolMoved.new, carolMoved.redone], ["10.77.3.2", ["subscriptions"]]);

      // alice's refresh carried her new Contact: baresip's next NOTIFY goes there.
      const refresh = bob.trace().find((m) =>
        m.method === "SUBSCRIBE" && m.source.startsWith("10.77.3.2:")
      );
      assert.ok(refresh, "alice's SUBSCRIBE refresh from the new address reached baresip");
      assert.match(
        refresh.headers.find((h) => /^(Contact|m)\s*:/i.test(h)) ?? "",
        /@10\.77\.3\.2(?![\d.])/,
        "with the new Contact",
      );
      await bob.setPresence("offline");
      await alice.waitEvent((e) => e.type === "presence" && e.status === "offline", {
        message: "baresip's NOTIFY at alice's new address",
      });
      // carol's NOTIFY from the new address (with the new Contact) is taken by baresip.
      await carol.send({ type: "status", status: "busy" });
      await bob.waitContactStatus(carolUri, "Busy");
      assert.ok(
        bob.trace().some((m) =>
          m.method === "NOTIFY" && m.source.startsWith("10.77.3.2:") &&
          m.headers.some((h) => /^(Contact|m)\s*:.*@10\.77\.3\.2(?![\d.])/i.test(h))
        ),
        "carol's NOTIFY came from the new address with the new Contact",
      );
    }),
});
