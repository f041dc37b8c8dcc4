/**
 * `sipkit message` against real peers on loopback: Kamailio as registrar and
 * proxy (a registered sipkit listener reached through it), two domains with
 * two proxies (scenario B.2), and baresip as the other party (scenario B.1).
 * Skipped outside CI when the Debian packages are missing; under CI=true they
 * run and fail instead.
 */

import assert from "node:assert/strict";
import {
  type SipkitBed,
  type SipkitProcess,
  spawnSipkit,
  withSipkitBed,
} from "./_sipkit_process.ts";
import { startKamailio, startKamailioPair } from "./peers/kamailio.ts";
import { startBaresip } from "./peers/baresip.ts";
import { requirePeer } from "./peers/require.ts";

const HAVE_KAMAILIO = requirePeer("kamailio", "kamailio");
const HAVE_BARESIP = requirePeer("baresip", "baresip");

/** A registered sipkit listener for `aor` behind `proxy`; stdin stays open for sends. */
async function registeredListener(
  bed: SipkitBed,
  aor: string,
  proxy: string,
  password?: string,
): Promise<SipkitProcess> {
  const proc = spawnSipkit(
    [
      "message",
      "--listen",
      "--register",
      "--bind",
      "127.0.0.1:0",
      "-u",
      aor,
      "--proxy",
      proxy,
    ],
    {
      name: `listener ${aor}`,
      env: { ...bed.env, ...(password ? { SIPKIT_PASSWORD: password } : {}) },
    },
  );
  try {
    await proc.waitEvent((e) => e.type === "registered", { message: `${aor} registered` });
    return proc;
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

/** A one-shot `sipkit message` of `body` to `to` from alice@example.test through `proxy`. */
async function aliceSends(
  bed: SipkitBed,
  proxy: string,
  to: string,
  body: string,
): Promise<{ code: number; proc: SipkitProcess }> {
  const proc = spawnSipkit(["message", "-u", "alice@example.test", "--proxy", proxy, to, body], {
    name: "sender",
    env: bed.env,
    stdin: false,
  });
  return { code: await proc.waitExit(), proc };
}

Deno.test({
  name: "Kamailio routes a MESSAGE to a sipkit listener registered with --register (digest)",
  ignore: !HAVE_KAMAILIO,
  fn: async () => {
    await withSipkitBed(async (bed) => {
      const k = bed.keep(await startKamailio({ mode: "registrar", domain: "example.test" }));
      const bob = bed.keep(await registeredListener(bed, "bob@example.test", k.uri, "bob-secret"));
      const { code, proc } = await aliceSends(
        bed,
        k.uri,
        "bob@example.test",
        "through the registrar",
      );
      assert.equal(code, 0, proc.logs());
      const sent = proc.events.find((e) => e.type === "sent")!;
      assert.equal(sent.delivered, true);
      const got = await bob.waitEvent((e) => e.type === "message");
      assert.equal(got.body, "through the registrar");
      assert.equal(got.from, "sip:alice@example.test");
      assert.equal(got.to, "sip:bob@example.test");
      // Nobody registered as carol: Kamailio answers 404, a final failure.
      const none = await aliceSends(bed, k.uri, "carol@example.test", "anyone?");
      assert.equal(none.code, 1, none.proc.logs());
      assert.equal(none.proc.events.find((e) => e.type === "send_failed")?.status, 404);
      // On exit the listener removes its binding: bob is unreachable again.
      await bob.stop();
      assert.ok(bob.events.some((e) => e.type === "unregistered"), bob.logs());
      const after = await aliceSends(bed, k.uri, "bob@example.test", "gone?");
      assert.equal(after.code, 1, after.proc.logs());
    });
  },
});

Deno.test({
  name: "B.2: MESSAGE across two domains through both proxies, both ways",
  ignore: !HAVE_KAMAILIO,
  fn: async () => {
    await withSipkitBed(async (bed) => {
      const pair = await startKamailioPair({ mode: "proxy" });
      bed.keep(pair.a);
      bed.keep(pair.b);
      const alice = bed.keep(await registeredListener(bed, "alice@example.test", pair.a.uri));
      const bob = bed.keep(await registeredListener(bed, "bob@example.org", pair.b.uri));
      // Listeners also send what they read on stdin (a bot's loop).
      await alice.send({ type: "send", to: "bob@example.org", body: "hello from A", id: 1 });
      const sentA = await alice.waitEvent((e) => e.type === "sent" || e.type === "send_failed");
      assert.equal(sentA.type, "sent", alice.logs());
      assert.equal(sentA.id, 1);
      const atBob = await bob.waitEvent((e) => e.type === "message");
      assert.equal(atBob.body, "hello from A");
      assert.equal(atBob.from, "sip:alice@example.test");

      await bob.send({ type: "send", to: "alice@example.test", body: "hello from B", id: 2 });
      const sentB = await bob.waitEvent((e) => e.type === "sent" || e.type === "send_failed");
      assert.equal(sentB.type, "sent", bob.logs());
      const atAlice = await alice.waitEvent((e) => e.type === "message");
      assert.equal(atAlice.body, "hello from B");
      assert.equal(atAlice.from, "sip:bob@example.org");
    });
  },
});

Deno.test({
  name: "B.1: MESSAGE both ways between sipkit and baresip in one domain",
  ignore: !HAVE_KAMAILIO || !HAVE_BARESIP,
  fn: async () => {
    await withSipkitBed(async (bed) => {
      const k = bed.keep(await startKamailio({ mode: "registrar", domain: "example.test" }));
      const alice = bed.keep(
        await registeredListener(bed, "alice@example.test", k.uri, "alice-secret"),
      );
      const baresip = bed.keep(
        await startBaresip({
          user: "bob",
          proxy: k.address,
          contacts: [{ uri: "sip:alice@example.test", presence: false }],
        }),
      );
      // baresip -> sipkit: the listener prints it.
      const status = await baresip.sendMessage("sip:alice@example.test", "hi alice, bob here");
      assert.match(status, /^200\b/);
      const got = await alice.waitEvent((e) => e.type === "message");
      assert.equal(got.body, "hi alice, bob here");
      assert.equal(got.from, "sip:bob@example.test");
      // sipkit -> baresip: baresip receives it.
      const { code, proc } = await aliceSends(bed, k.uri, "bob@example.test", "hi bob, alice here");
      assert.equal(code, 0, proc.logs());
      const sent = proc.events.find((e) => e.type === "sent")!;
      assert.equal(sent.status, 200);
      const atBaresip = await baresip.waitMessage((m) => m.body === "hi bob, alice here");
      assert.match(atBaresip.from, /alice@example\.test/);
    });
  },
});
