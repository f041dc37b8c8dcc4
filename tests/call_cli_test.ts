/**
 * `sipkit call` as real processes calling each other over loopback: tones
 * found by frequency at each end, DTMF both ways, hold and resume, a codec
 * change by re-INVITE, BYE from each side, Ctrl-C (BYE or CANCEL, exit 130),
 * answer and reject from stdin, bad input lines.
 */

import assert from "node:assert/strict";
import type { SipkitProcess } from "./_sipkit_process.ts";
import { requirePeer } from "./peers/require.ts";
import { makeToneWav, privateAlsa } from "./_audio.ts";
import {
  assertTone,
  interrupt,
  of,
  startAnswerer,
  startCaller,
  withCallDirs,
  withCallProcs,
  withProcLogs,
} from "./_call_util.ts";

const hasSox = requirePeer("sox", "sox");

Deno.test({
  name:
    "sipkit calls sipkit: tones both ways, DTMF both ways, hold and resume, BYE from the caller",
  ignore: !hasSox,
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      const b = await startAnswerer(dirs, [
        "-u",
        "bob@example.test",
        "--auto-answer",
        "--tone",
        "1000",
        "--record",
        `${dirs.dir}/at-bob.wav`,
      ]);
      procs.push(b.proc);
      const a = startCaller(dirs, [
        "-u",
        "alice@example.test",
        b.contact,
        "--tone",
        "440",
        "--record",
        `${dirs.dir}/at-alice.wav`,
      ]);
      procs.push(a);
      const incoming = await b.proc.waitEvent(of("incoming"));
      assert.equal(incoming.from, "sip:alice@example.test");
      assert.deepEqual(incoming.codecs, ["PCMU", "PCMA"]);
      const calling = await a.waitEvent(of("calling"));
      assert.equal(calling.call_id, incoming.call_id);
      await a.waitEvent(of("answered"));
      const mediaA = await a.waitEvent(of("media"));
      const mediaB = await b.proc.waitEvent(of("media"));
      assert.equal(mediaA.codec, "PCMU");
      assert.equal(mediaA.payload_type, 0);
      assert.equal(mediaA.ptime, 20);
      // Each side sends where the other listens.
      assert.equal(mediaA.remote_rtp, mediaB.local_rtp);
      assert.equal(mediaB.remote_rtp, mediaA.local_rtp);

      await a.send({ type: "dtmf", digits: "12#" });
      for (const digit of ["1", "2", "#"]) {
        const d = await b.proc.waitEvent((e) => e.type === "dtmf" && e.digit === digit);
        assert.equal(d.via, "rtp");
        assert.ok(Number(d.duration_ms) >= 60, JSON.stringify(d));
      }
      await b.proc.send({ type: "dtmf", digits: "9*" });
      await a.waitEvent((e) => e.type === "dtmf" && e.digit === "9");
      await a.waitEvent((e) => e.type === "dtmf" && e.digit === "*");

      await a.send({ type: "hold" });
      assert.equal((await a.waitEvent(of("held"))).by, "local");
      assert.equal((await b.proc.waitEvent(of("held"))).by, "remote");
      await a.send({ type: "resume" });
      assert.equal((await a.waitEvent(of("resumed"))).by, "local");
      assert.equal((await b.proc.waitEvent(of("resumed"))).by, "remote");
      // Audio flows again after the resume: give it a second to record.
      await new Promise((resolve) => setTimeout(resolve, 1500));

      await a.send({ type: "hangup" });
      const endA = await a.waitEvent(of("ended"));
      const endB = await b.proc.waitEvent(of("ended"));
      assert.equal(endA.reason, "local_bye");
      assert.equal(endB.reason, "remote_bye");
      assert.ok(Number(endA.duration) >= 1, JSON.stringify(endA));
      const finalA = a.events.find((e) => e.type === "stats" && e.final === true);
      assert.ok(finalA && Number(finalA.packets_received) > 50, JSON.stringify(finalA));
      assert.equal(await a.waitExit(), 0);
      assert.equal(await b.proc.waitExit(), 0);
      assert.deepEqual(a.badLines, []);
      assert.deepEqual(b.proc.badLines, []);
      await assertTone(`${dirs.dir}/at-alice.wav`, 1000, "what alice heard");
      await assertTone(`${dirs.dir}/at-bob.wav`, 440, "what bob heard");
    });
  },
});

Deno.test({
  name: "sipkit calls sipkit: codec change to PCMA by re-INVITE, stats, BYE from the callee",
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      const b = await startAnswerer(dirs, [
        "--auto-answer",
        "0.2",
        "--tone",
        "700",
        "--record",
        `${dirs.dir}/at-bob.wav`,
        "--stats-interval",
        "1",
      ]);
      procs.push(b.proc);
      const a = startCaller(dirs, [
        b.contact,
        "--tone",
        "1200",
        "--record",
        `${dirs.dir}/at-alice.wav`,
        "--stats-interval",
        "1",
      ]);
      procs.push(a);
      await a.waitEvent(of("answered"));
      await a.send({ type: "codec", codec: "PCMA" });
      const changedA = await a.waitEvent(of("codec_changed"));
      assert.deepEqual(
        [changedA.codec, changedA.previous, changedA.payload_type, changedA.by],
        ["PCMA", "PCMU", 8, "local"],
      );
      const changedB = await b.proc.waitEvent(of("codec_changed"));
      assert.deepEqual([changedB.codec, changedB.by], ["PCMA", "remote"]);
      const stats = await a.waitEvent((e) =>
        e.type === "stats" && e.codec === "PCMA" && Number(e.packets_received) > 0
      );
      for (
        const field of ["packets_sent", "packets_received", "lost", "loss_fraction", "jitter_ms"]
      ) {
        assert.equal(typeof stats[field], "number", field);
      }
      assert.ok(Number(stats.mos) > 3.5 && Number(stats.mos) <= 4.5, JSON.stringify(stats));
      // A second of PCMA audio in each direction before the callee hangs up.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await b.proc.send({ type: "hangup" });
      assert.equal((await b.proc.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal((await a.waitEvent(of("ended"))).reason, "remote_bye");
      assert.equal(await a.waitExit(), 0);
      assert.equal(await b.proc.waitExit(), 0);
      if (hasSox) {
        await assertTone(`${dirs.dir}/at-alice.wav`, 700, "what alice heard");
        await assertTone(`${dirs.dir}/at-bob.wav`, 1200, "what bob heard");
      }
    });
  },
});

Deno.test({
  name: "sipkit call: Ctrl-C sends CANCEL while ringing and BYE once answered (exit 130)",
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      // Ringing (nobody answers): Ctrl-C cancels.
      const ringing = await startAnswerer(dirs, ["--no-audio"], "ringing answerer");
      procs.push(ringing.proc);
      const a = startCaller(dirs, [ringing.contact, "--no-audio"], "caller 1");
      procs.push(a);
      await ringing.proc.waitEvent(of("incoming"));
      assert.equal((await a.waitEvent(of("ringing"))).status, 180);
      interrupt(a);
      assert.equal(await a.waitExit(), 130);
      assert.equal((await a.waitEvent(of("ended"))).reason, "cancelled");
      assert.equal((await ringing.proc.waitEvent(of("ended"))).reason, "cancelled");
      assert.equal(await ringing.proc.waitExit(), 3);

      // Answered: Ctrl-C hangs up with BYE.
      const b = await startAnswerer(dirs, ["--no-audio", "--auto-answer"], "answerer");
      procs.push(b.proc);
      const c = startCaller(dirs, [b.contact, "--no-audio"], "caller 2");
      procs.push(c);
      await c.waitEvent(of("answered"));
      interrupt(c);
      assert.equal(await c.waitExit(), 130);
      assert.equal((await c.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal((await b.proc.waitEvent(of("ended"))).reason, "remote_bye");
      assert.equal(await b.proc.waitExit(), 0);
    });
  },
});

Deno.test({
  name: "sipkit call --answer: reject and answer from stdin; bad input lines give error events",
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      const b = await startAnswerer(dirs, ["--no-audio"], "rejecting answerer");
      procs.push(b.proc);
      const a = startCaller(dirs, [b.contact, "--no-audio"], "rejected caller");
      procs.push(a);
      await b.proc.waitEvent(of("incoming"));
      await b.proc.send({ type: "reject", status: 486 });
      const end = await a.waitEvent(of("ended"));
      assert.deepEqual([end.reason, end.status], ["rejected", 486]);
      assert.equal(await a.waitExit(), 1);
      await b.proc.waitExit();

      const d = await startAnswerer(dirs, ["--no-audio"], "answering answerer");
      procs.push(d.proc);
      // An answer with no call is an error; the command keeps waiting.
      await d.proc.send({ type: "answer" });
      await d.proc.waitEvent((e) =>
        e.type === "error" && /no incoming call/.test(String(e.message))
      );
      const c = startCaller(dirs, [d.contact, "--no-audio", "--duration", "1"], "caller");
      procs.push(c);
      await d.proc.waitEvent(of("incoming"));
      await d.proc.send({ type: "answer" });
      await c.waitEvent(of("answered"));
      await d.proc.send({ type: "dtmf", digits: "x" });
      const bad = await d.proc.waitEvent(of("error"));
      assert.equal(bad.source, "stdin");
      // The host moves (to another loopback address): the call follows with a re-INVITE.
      await d.proc.send({ type: "address_changed", new: "127.0.0.2" });
      const moved = await d.proc.waitEvent(of("moved"));
      assert.deepEqual([moved.new, moved.redone], ["127.0.0.2", ["calls"]]);
      assert.equal((await c.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal(await c.waitExit(), 0);
      assert.equal(await d.proc.waitExit(), 0);
    });
  },
});

Deno.test({
  name: "sipkit call --device: audio through sox and ALSA (private file and null PCMs)",
  ignore: !hasSox || !requirePeer("aplay", "alsa-utils"),
  fn: async () => {
    const alsa = await privateAlsa(700);
    try {
      await withCallDirs(async (dirs) => {
        const env = { ...dirs.env, ...alsa.env };
        const procs: SipkitProcess[] = [];
        await withProcLogs(() => procs, async () => {
          // The answerer talks and listens through ALSA: capture plays a 700 Hz
          // tone from the file PCM, playback is written to alsa.played.
          const b = await startAnswerer({ ...dirs, env }, [
            "--auto-answer",
            "--device",
            alsa.fileDevice,
          ]);
          procs.push(b.proc);
          const a = startCaller(dirs, [
            b.contact,
            "--tone",
            "440",
            "--record",
            `${dirs.dir}/at-a.wav`,
          ]);
          procs.push(a);
          await a.waitEvent(of("answered"));
          // The null PCM: sox plays to and captures from it during the same run.
          const n = await startAnswerer({ ...dirs, env }, [
            "--auto-answer",
            "--device",
            alsa.nullDevice,
          ], "null answerer");
          procs.push(n.proc);
          const c = startCaller(
            dirs,
            [n.contact, "--tone", "440", "--duration", "2"],
            "null caller",
          );
          procs.push(c);
          await new Promise((resolve) => setTimeout(resolve, 2500));
          await a.send({ type: "hangup" });
          assert.equal(await a.waitExit(), 0);
          assert.equal(await b.proc.waitExit(), 0);
          assert.equal(await c.waitExit(), 0);
          assert.equal(await n.proc.waitExit(), 0);
          const nullStats = n.proc.events.find((e) => e.type === "stats" && e.final === true);
          assert.ok(Number(nullStats?.packets_received) > 50, JSON.stringify(nullStats));
          await assertTone(`${dirs.dir}/at-a.wav`, 700, "what the caller heard from ALSA capture");
          await assertTone(alsa.played, 440, "what the answerer played to ALSA");
        });
      });
    } finally {
      await alsa.cleanup();
    }
  },
});

Deno.test({
  name:
    "sipkit call as an IVR probe: --play (any format, through sox), --record, DTMF from stdin, --codec order, --duration",
  ignore: !hasSox,
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      // The prompt is 16 kHz stereo and the reply FLAC: sox converts both to 8 kHz mono.
      await makeToneWav(`${dirs.dir}/prompt.wav`, 600, { seconds: 10, rate: 16000, channels: 2 });
      await makeToneWav(`${dirs.dir}/reply.flac`, 900, { seconds: 10 });
      const ivr = await startAnswerer(dirs, [
        "--auto-answer",
        "--play",
        `${dirs.dir}/prompt.wav`,
        "--record",
        `${dirs.dir}/ivr-heard.wav`,
      ], "ivr");
      procs.push(ivr.proc);
      const probe = startCaller(dirs, [
        ivr.contact,
        "--play",
        `${dirs.dir}/reply.flac`,
        "--record",
        `${dirs.dir}/probe-heard.wav`,
        "--codec",
        "PCMA,PCMU",
        "--duration",
        "3",
      ], "probe");
      procs.push(probe);
      const media = await probe.waitEvent(of("media"));
      assert.deepEqual([media.codec, media.payload_type], ["PCMA", 8]);
      await probe.send({ type: "dtmf", digits: "1" });
      assert.equal((await ivr.proc.waitEvent(of("dtmf"))).digit, "1");
      assert.equal((await probe.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal(await probe.waitExit(), 0);
      assert.equal(await ivr.proc.waitExit(), 0);
      const seconds = await assertTone(`${dirs.dir}/probe-heard.wav`, 600, "the prompt");
      assert.ok(seconds >= 2.5 && seconds < 4, `${seconds} s recorded`);
      await assertTone(`${dirs.dir}/ivr-heard.wav`, 900, "the reply");
    });
  },
});

Deno.test("sipkit call: bad usage exits 2 before any call", async () => {
  await withCallDirs(async (dirs) => {
    const cases: [string[], RegExp][] = [
      [[], /missing target/],
      [["--answer", "bob@example.test"], /--answer takes no target/],
      [["bob@127.0.0.1:9", "--codec", "G729"], /unknown codec "G729"/],
      [["bob@127.0.0.1:9", "--play", `${dirs.dir}/missing.wav`], /--play: cannot read/],
      [["bob@127.0.0.1:9", "--tone", "5000"], /--tone must be between/],
    ];
    await Promise.all(cases.map(async ([args, message]) => {
      const p = startCaller(dirs, args, `call ${args.join(" ")}`);
      await p.closeStdin();
      assert.equal(await p.waitExit(), 2, p.logs());
      assert.match(p.logs(), message);
      assert.deepEqual(p.events.filter((e) => e.type === "calling"), []);
    }));
  });
});

Deno.test("waitExit: a process that does not exit by the deadline is killed and the test fails with its log", async () => {
  await withCallDirs(async (dirs) => {
    // An answerer with nobody calling waits forever: the guard must end it.
    const { proc } = await startAnswerer(dirs, ["--no-audio"], "hanging answerer");
    try {
      const error = await proc.waitExit(1500).then(() => undefined, (e: Error) => e);
      assert.ok(error, "waitExit must reject for a process still running");
      assert.match(error.message, /hanging answerer: still running after 1500 ms; killed/);
      assert.match(error.message, /"type":"listening"/, "the log tail is in the message");
      assert.notEqual(await proc.exited, 0, "the process is gone (killed)");
    } finally {
      await proc.stop();
    }
  });
});

Deno.test({
  name:
    "sipkit call --answer: a second call while the first rings, and one while it is up, get 486 and a busy event; the first call goes on",
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      const b = await startAnswerer(dirs, ["--no-audio", "--stats-interval", "1"], "busy bob");
      procs.push(b.proc);
      const a = startCaller(dirs, [b.contact, "--no-audio"], "first caller");
      procs.push(a);
      const first = await b.proc.waitEvent(of("incoming"));
      assert.equal((await a.waitEvent(of("ringing"))).status, 180);

      // While the first call rings.
      const c = startCaller(dirs, [b.contact, "--no-audio"], "second caller (ringing)");
      procs.push(c);
      const cCalling = await c.waitEvent(of("calling"));
      const cEnd = await c.waitEvent(of("ended"));
      assert.deepEqual([cEnd.reason, cEnd.status], ["rejected", 486]);
      assert.equal(await c.waitExit(), 1);
      const busy1 = await b.proc.waitEvent(of("busy"));
      assert.equal(busy1.call_id, cCalling.call_id);
      assert.equal(busy1.current_call_id, first.call_id);
      assert.equal(busy1.status, 486);
      assert.deepEqual(busy1.codecs, ["PCMU", "PCMA"]);
      assert.equal(b.proc.events.filter(of("incoming")).length, 1, "no second incoming");

      // The first call still rings and can be answered.
      await b.proc.send({ type: "answer" });
      await a.waitEvent(of("answered"));
      await b.proc.waitEvent(of("answered"));

      // While it is up.
      const d = startCaller(dirs, [b.contact, "--no-audio"], "second caller (in call)");
      procs.push(d);
      const dCalling = await d.waitEvent(of("calling"));
      const dEnd = await d.waitEvent(of("ended"));
      assert.deepEqual([dEnd.reason, dEnd.status], ["rejected", 486]);
      assert.equal(await d.waitExit(), 1);
      const busy2 = await b.proc.waitEvent((e) => e.type === "busy" && e !== busy1);
      assert.equal(busy2.call_id, dCalling.call_id);
      assert.equal(busy2.current_call_id, first.call_id);

      // The first call is not disturbed: media keeps flowing, and it ends normally.
      const after = b.proc.events.length;
      const stats = await b.proc.waitEvent((e) =>
        e.type === "stats" && b.proc.events.indexOf(e) >= after &&
        Number(e.packets_received) > 0
      );
      assert.ok(Number(stats.packets_sent) > 0);
      assert.equal(b.proc.events.filter(of("ended")).length, 0);
      await a.send({ type: "hangup" });
      assert.equal((await b.proc.waitEvent(of("ended"))).reason, "remote_bye");
      assert.equal(await a.waitExit(), 0);
      assert.equal(await b.proc.waitExit(), 0);
    });
  },
});
