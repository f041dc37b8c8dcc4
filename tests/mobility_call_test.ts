/**
 * Call mobility in network namespaces the tests create (scenarios C.1 and
 * C.2 of the thesis): sipkit on a mobile host namespace, Kamailio and the
 * other party in a server namespace, joined by veth pairs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type SipkitProcess, spawnSipkit } from "./_sipkit_process.ts";
import { soxStat } from "./_audio.ts";
import { type Kamailio, startKamailio } from "./peers/kamailio.ts";
import {
  createMobilityNet,
  ignoreWithoutNetns,
  type MobilityNet,
  SERVER_ADDRESS,
} from "./peers/mobility_net.ts";
import { requirePeer } from "./peers/require.ts";

const skip = ignoreWithoutNetns() || !requirePeer("kamailio", "kamailio") ||
  !requirePeer("sipsak", "sipsak");
const of = (type: string) => (e: { type: string }) => e.type === type;
const hostOf = (contact: unknown) => /@([^:;>]+)/.exec(String(contact))?.[1];

interface Bed {
  net: MobilityNet;
  k?: Kamailio;
  env: Record<string, string>;
  dir: string;
  procs: SipkitProcess[];
}

async function withBed(
  kamailio: { redirect?: boolean } | false,
  fn: (bed: Bed) => Promise<void>,
): Promise<void> {
  const net = await createMobilityNet();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-mobility-call-" });
  const procs: SipkitProcess[] = [];
  let k: Kamailio | undefined;
  try {
    if (kamailio) {
      k = await startKamailio({ netns: net.server, host: SERVER_ADDRESS, ...kamailio });
    }
    const env = { SIPKIT_CONFIG_DIR: `${dir}/config`, SIPKIT_STATE_DIR: `${dir}/state` };
    await fn({ net, k, env, dir, procs });
  } catch (e) {
    for (const p of procs) console.error(`----- ${p.name} -----\n${p.logs().slice(-8000)}`);
    if (k) console.error(`----- ${k.name} -----\n${k.logs().slice(-6000)}`);
    throw e;
  } finally {
    for (const p of procs) await p.stop();
    await k?.stop();
    await net.destroy();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** alice answers calls on the mobile host, registered, following the host. */
async function aliceAnswering(bed: Bed): Promise<SipkitProcess> {
  const alice = spawnSipkit([
    "call",
    "--answer",
    "--register",
    "-u",
    "alice@example.test",
    "--registrar",
    bed.k!.uri,
    "--roam",
    "--auto-answer",
    "--no-audio",
  ], {
    netns: bed.net.mobile,
    env: { ...bed.env, SIPKIT_PASSWORD: "alice-secret" },
    name: "call --answer alice",
  });
  bed.procs.push(alice);
  const first = await alice.waitEvent(of("registered"));
  assert.equal(hostOf(first.contact), "10.77.1.2");
  // The host moves to another subnet: the new address first, then the old one goes.
  await bed.net.inMobile(["addr", "add", "10.77.3.2/24", "dev", "ma"]);
  await bed.net.inMobile(["addr", "del", "10.77.1.2/24", "dev", "ma"]);
  const moved = await alice.waitEvent(of("moved"));
  assert.deepEqual([moved.new, moved.redone], ["10.77.3.2", ["registration"]]);
  await alice.waitEvent((e) => e.type === "registered" && hostOf(e.contact) === "10.77.3.2");
  return alice;
}

Deno.test({
  name: "C.1 pre-call mobility: after the move a caller reaches sipkit through the registrar",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withBed({}, async (bed) => {
      const alice = await aliceAnswering(bed);
      const bob = spawnSipkit([
        "call",
        "-u",
        "bob@example.test",
        "--proxy",
        bed.k!.uri,
        "sip:alice@example.test",
        "--no-audio",
        "--duration",
        "1",
      ], { netns: bed.net.server, env: bed.env, stdin: false, name: "call bob" });
      bed.procs.push(bob);
      await alice.waitEvent(of("incoming"));
      await bob.waitEvent(of("answered"));
      assert.equal((await bob.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal(await bob.waitExit(), 0);
    }),
});

Deno.test({
  name: "C.1 pre-call mobility: after the move a redirect server answers 302 with the new " +
    "binding and the caller follows it",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withBed({ redirect: true }, async (bed) => {
      const alice = await aliceAnswering(bed);
      const bob = spawnSipkit([
        "call",
        "-u",
        "bob@example.test",
        `sip:alice@${SERVER_ADDRESS}:${bed.k!.port}`,
        "--no-audio",
        "--duration",
        "1",
        "--trace",
      ], { netns: bed.net.server, env: bed.env, stdin: false, name: "call bob" });
      bed.procs.push(bob);
      await alice.waitEvent(of("incoming"));
      await bob.waitEvent(of("answered"));
      assert.equal(await bob.waitExit(), 0);
      const trace = bob.logs();
      assert.match(trace, /SIP\/2\.0 302 Moved Temporarily/, "the redirect server answered 302");
      assert.match(trace, /INVITE sip:alice@10\.77\.3\.2:\d+/, "and the caller followed it");
    }),
});

Deno.test({
  name: "C.2 mid-call mobility: sipkit moves during a call, re-INVITEs, and audio is heard " +
    "at both ends after the move (by frequency)",
  ignore: skip || !requirePeer("sox", "sox"),
  sanitizeResources: false,
  fn: () =>
    withBed(false, async (bed) => {
      const { net, env, dir, procs } = bed;
      const alice = spawnSipkit([
        "call",
        "--answer",
        "-u",
        "alice@example.test",
        "--bind",
        "0.0.0.0:5080",
        "--roam",
        "--toward",
        SERVER_ADDRESS,
        "--auto-answer",
        "--tone",
        "1000",
        "--record",
        `${dir}/at-alice.wav`,
      ], { netns: net.mobile, env, name: "call --answer alice" });
      procs.push(alice);
      await alice.waitEvent(of("listening"));
      const bob = spawnSipkit([
        "call",
        "-u",
        "bob@example.test",
        "--bind",
        `${SERVER_ADDRESS}:5090`,
        "sip:alice@10.77.1.2:5080",
        "--tone",
        "440",
        "--record",
        `${dir}/at-bob.wav`,
        "--stats-interval",
        "1",
      ], { netns: net.server, env, name: "call bob" });
      procs.push(bob);
      await bob.waitEvent(of("answered"));
      await alice.waitEvent(of("media"));
      await new Promise((r) => setTimeout(r, 1000));

      await net.inMobile(["addr", "add", "10.77.3.2/24", "dev", "ma"]);
      await net.inMobile(["addr", "del", "10.77.1.2/24", "dev", "ma"]);
      const moved = await alice.waitEvent(of("moved"));
      assert.deepEqual([moved.new, moved.redone], ["10.77.3.2", ["calls"]]);
      // Two seconds of audio after the move, then bob hangs up.
      await new Promise((r) => setTimeout(r, 2000));
      await bob.send({ type: "hangup" });
      assert.equal((await bob.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal((await alice.waitEvent(of("ended"))).reason, "remote_bye");
      assert.equal(await bob.waitExit(), 0);
      assert.equal(await alice.waitExit(), 0);
      // The last second of each recording was sent after the move.
      for (
        const [file, hz, who] of [["at-bob.wav", 1000, "bob"], [
          "at-alice.wav",
          440,
          "alice",
        ]] as const
      ) {
        const whole = await soxStat(`${dir}/${file}`);
        const tail = await soxStat(`${dir}/${file}`, Math.max(0, whole.seconds - 1.2));
        assert.ok(
          tail.rmsAmplitude > 0.05,
          `${who} hears audio after the move: ${JSON.stringify(tail)}`,
        );
        assert.ok(
          Math.abs(tail.roughFrequency - hz) < hz * 0.1,
          `${who} hears ${hz} Hz after the move: ${JSON.stringify(tail)}`,
        );
      }
    }),
});
