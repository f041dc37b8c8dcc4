/**
 * `sipkit call` against real peers: baresip (aufile plays a tone, sndfile
 * records) calling sipkit and called by it, directly and through Kamailio
 * with Record-Route; the audio is checked by frequency at both ends, a
 * mid-call codec change to PCMA must be followed by baresip (its encoder,
 * so the RTP payload type it sends, and the audio after the change), and
 * each side hangs up in turn.
 */

import assert from "node:assert/strict";
import { requirePeer, waitFor } from "./peers/require.ts";
import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";
import { type Baresip, startBaresip } from "./peers/baresip.ts";
import { type Kamailio, startKamailio } from "./peers/kamailio.ts";
import { makeToneWav } from "./_audio.ts";
import type { SipkitProcess } from "./_sipkit_process.ts";
import {
  assertTone,
  type CallDirs,
  of,
  startAnswerer,
  startCaller,
  withCallDirs,
} from "./_call_util.ts";

const hasBaresip = requirePeer("baresip", "baresip");
const hasKamailio = requirePeer("kamailio", "kamailio");
const hasSox = requirePeer("sox", "sox");

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A sipkit process as a peer for log dumps. */
function asPeer(p: SipkitProcess): HasLogs {
  return { name: p.name, logs: () => p.logs() };
}

/** baresip playing a 1000 Hz tone, recording, PCMU then PCMA. */
async function toneBaresip(
  dirs: CallDirs,
  options: { proxy?: string; autoAnswer?: boolean },
): Promise<Baresip> {
  const wav = `${dirs.dir}/1000.wav`;
  await makeToneWav(wav, 1000, { seconds: 60 });
  return await startBaresip({
    user: "bob",
    audioSource: `aufile,${wav}`,
    audioCodecs: ["PCMU", "PCMA"],
    record: true,
    autoAnswer: options.autoAnswer,
    proxy: options.proxy,
  });
}

/** Checks what baresip recorded (440 Hz from sipkit) once its call has closed. */
async function assertBaresipHeard(b: Baresip, hz: number): Promise<void> {
  const recordings = await b.recordings();
  assert.equal(recordings.length, 1, JSON.stringify(recordings));
  assert.ok(recordings[0].dec, "baresip wrote no dec recording");
  await assertTone(recordings[0].dec, hz, "what baresip heard");
}

/**
 * Runs `fn` with fresh call directories and the list of peers it starts, whose logs are printed
 * if it fails (each test starts and stops its own peers).
 */
async function withPeerLogs(fn: (dirs: CallDirs, peers: HasLogs[]) => Promise<void>) {
  await withCallDirs(async (dirs) => {
    const peers: HasLogs[] = [];
    await withLogsOnFailure(peers, () => fn(dirs, peers));
  });
}

/** sipkit's side of every call here: alice, playing 440 Hz, recording to `at-sipkit.wav`. */
function aliceArgs(dirs: CallDirs, ...args: string[]): string[] {
  return ["-u", "alice@example.test", ...args, "--tone", "440", "--record", atSipkit(dirs)];
}

/** Where sipkit records what it hears. */
function atSipkit(dirs: CallDirs): string {
  return `${dirs.dir}/at-sipkit.wav`;
}

/** Once the call has closed: sipkit heard baresip's 1000 Hz, baresip heard sipkit's 440 Hz. */
async function assertBothHeard(dirs: CallDirs, b: Baresip): Promise<void> {
  await assertTone(atSipkit(dirs), 1000, "what sipkit heard");
  await assertBaresipHeard(b, 440);
}

function inDialog(k: Kamailio, method: string): boolean {
  return new RegExp(`in-dialog ${method} \\S+ cseq \\d+ relayed by loose_route`).test(k.logs());
}

Deno.test({
  name:
    "sipkit calls baresip: PCMU both ways, codec change to PCMA that baresip follows, baresip hangs up",
  ignore: !hasBaresip || !hasSox,
  fn: async () => {
    await withPeerLogs(async (dirs, peers) => {
      const b = await toneBaresip(dirs, { autoAnswer: true });
      peers.push(b);
      let a: SipkitProcess | undefined;
      try {
        a = startCaller(dirs, aliceArgs(dirs, b.contact));
        peers.push(asPeer(a));
        const media = await a.waitEvent(of("media"));
        assert.deepEqual([media.codec, media.payload_type], ["PCMU", 0]);
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        await delay(1500);
        assert.deepEqual(b.encoders(), ["PCMU"]);
        await a.send({ type: "codec", codec: "PCMA" });
        const changed = await a.waitEvent(of("codec_changed"));
        assert.deepEqual([changed.codec, changed.payload_type, changed.by], ["PCMA", 8, "local"]);
        // baresip now encodes PCMA: the payload type of what it sends is 8.
        await waitFor(() => b.encoders().at(-1) === "PCMA", { message: "baresip to send PCMA" });
        await delay(2500);
        await b.hangup();
        const end = await a.waitEvent(of("ended"));
        assert.equal(end.reason, "remote_bye");
        assert.equal(await a.waitExit(), 0);
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        // The second half of each recording is after the change: PCMA both ways.
        await assertBothHeard(dirs, b);
      } finally {
        await a?.stop();
        await b.stop();
      }
    });
  },
});

Deno.test({
  name: "baresip calls sipkit through Kamailio (Record-Route): PCMU both ways, sipkit hangs up",
  ignore: !hasBaresip || !hasKamailio || !hasSox,
  fn: async () => {
    await withPeerLogs(async (dirs, peers) => {
      const k = await startKamailio({ mode: "proxy" });
      peers.push(k);
      let a: SipkitProcess | undefined;
      let b: Baresip | undefined;
      try {
        const answerer = await startAnswerer(
          dirs,
          aliceArgs(
            dirs,
            "--proxy",
            `sip:${k.address}`,
            "--register",
            "--registrar",
            `sip:${k.address}`,
            "--auto-answer",
          ),
        );
        a = answerer.proc;
        peers.push(asPeer(a));
        await a.waitEvent(of("registered"));
        b = await toneBaresip(dirs, { proxy: k.address });
        peers.push(b);
        await b.dial("sip:alice@example.test");
        const incoming = await a.waitEvent(of("incoming"));
        assert.match(String(incoming.from), /^sip:bob@example\.test/);
        assert.deepEqual(incoming.codecs, ["PCMU", "PCMA"]);
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        assert.equal((await a.waitEvent(of("media"))).codec, "PCMU");
        await delay(2500);
        await a.send({ type: "hangup" });
        assert.equal((await a.waitEvent(of("ended"))).reason, "local_bye");
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        await waitFor(() => inDialog(k, "BYE"), { message: "the BYE through Kamailio" });
        assert.equal(await a.waitExit(), 0);
        await assertBothHeard(dirs, b);
      } finally {
        await a?.stop();
        await b?.stop();
        await k.stop();
      }
    });
  },
});

Deno.test({
  name:
    "sipkit calls baresip through Kamailio: codec change by re-INVITE through the proxy, sipkit hangs up",
  ignore: !hasBaresip || !hasKamailio || !hasSox,
  fn: async () => {
    await withPeerLogs(async (dirs, peers) => {
      const k = await startKamailio({ mode: "proxy" });
      peers.push(k);
      let a: SipkitProcess | undefined;
      let b: Baresip | undefined;
      try {
        b = await toneBaresip(dirs, { proxy: k.address, autoAnswer: true });
        peers.push(b);
        a = startCaller(
          dirs,
          aliceArgs(dirs, "--proxy", `sip:${k.address}`, "sip:bob@example.test"),
        );
        peers.push(asPeer(a));
        await a.waitEvent(of("answered"));
        await delay(1000);
        await a.send({ type: "codec", codec: "PCMA" });
        await a.waitEvent(of("codec_changed"));
        await waitFor(() => inDialog(k, "INVITE"), { message: "the re-INVITE through Kamailio" });
        await waitFor(() => b?.encoders().at(-1) === "PCMA", { message: "baresip to send PCMA" });
        await delay(2500);
        await a.send({ type: "hangup" });
        assert.equal((await a.waitEvent(of("ended"))).reason, "local_bye");
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        await waitFor(() => inDialog(k, "BYE"), { message: "the BYE through Kamailio" });
        assert.equal(await a.waitExit(), 0);
        await assertBothHeard(dirs, b);
      } finally {
        await a?.stop();
        await b?.stop();
        await k.stop();
      }
    });
  },
});

Deno.test({
  name: "baresip calls sipkit directly: PCMU both ways, baresip hangs up",
  ignore: !hasBaresip || !hasSox,
  fn: async () => {
    await withPeerLogs(async (dirs, peers) => {
      let a: SipkitProcess | undefined;
      let b: Baresip | undefined;
      try {
        const answerer = await startAnswerer(dirs, aliceArgs(dirs));
        a = answerer.proc;
        peers.push(asPeer(a));
        b = await toneBaresip(dirs, {});
        peers.push(b);
        await b.dial(answerer.contact);
        await a.waitEvent(of("incoming"));
        await a.send({ type: "answer" });
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        await delay(2500);
        await b.hangup();
        assert.equal((await a.waitEvent(of("ended"))).reason, "remote_bye");
        assert.equal(await a.waitExit(), 0);
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        await assertBothHeard(dirs, b);
      } finally {
        await a?.stop();
        await b?.stop();
      }
    });
  },
});

Deno.test({
  name:
    "sipkit calls baresip: a re-INVITE with a=ptime:40 makes baresip send 40 ms packets, and its answer asks 40 of us",
  ignore: !hasBaresip || !hasSox,
  fn: async () => {
    await withPeerLogs(async (dirs, peers) => {
      const b = await toneBaresip(dirs, { autoAnswer: true });
      peers.push(b);
      let a: SipkitProcess | undefined;
      try {
        a = startCaller(dirs, aliceArgs(dirs, b.contact, "--stats-interval", "1"));
        peers.push(asPeer(a));
        const media = await a.waitEvent(of("media"));
        assert.equal(media.ptime, 20);
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        const before = await a.waitEvent((e) =>
          e.type === "stats" && typeof e.received_ptime === "number"
        );
        assert.equal(before.received_ptime, 20, "baresip sends 20 ms packets at first");
        await a.send({ type: "codec", ptime: 40 });
        // baresip honours our a=ptime:40 for what it sends, and answers a=ptime:40.
        const after = await a.waitEvent(
          (e) => e.type === "stats" && e.received_ptime === 40,
          { timeout: 8000, message: "40 ms packets from baresip" },
        );
        assert.equal(after.ptime, 40, "we send with baresip's answered a=ptime:40");
        const changed = await a.waitEvent(of("ptime_changed"));
        assert.deepEqual([changed.ptime, changed.previous, changed.by], [40, 20, "local"]);
        const answers = b.trace().filter((m) =>
          m.status === 200 && m.cseqMethod === "INVITE" && /a=ptime:40/.test(m.body)
        );
        assert.ok(answers.length > 0, "baresip's 200 carries a=ptime:40");
        assert.ok(!a.events.some((e) => e.type === "error"), "no error: the re-INVITE was taken");
        await delay(2000);
        await a.send({ type: "hangup" });
        assert.equal((await a.waitEvent(of("ended"))).reason, "local_bye");
        assert.equal(await a.waitExit(), 0);
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        // The audio survives the change both ways.
        await assertBothHeard(dirs, b);
      } finally {
        await a?.stop();
        await b.stop();
      }
    });
  },
});
