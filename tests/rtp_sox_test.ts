import assert from "node:assert/strict";
import { SoxSink, SoxSource } from "../lib/rtp/audio_sox.ts";
import { BufferSink } from "../lib/rtp/audio.ts";
import { MediaSession } from "../lib/rtp/media_session.ts";
import { dominantFrequency, generateTone, rmsLevel } from "../lib/rtp/tone.ts";
import { decodeWav, encodeWav, firstChannel } from "../lib/rtp/wav.ts";
import { privateAlsa } from "./_audio.ts";
import { requirePeer, waitFor } from "./peers/require.ts";

const haveSox = requirePeer("sox", "sox");
const haveAlsa = haveSox && requirePeer("aplay", "alsa-utils");

/** Reads `total` samples from `source`, pausing for sox when it has not delivered yet. */
async function readSamples(source: SoxSource, total: number): Promise<Int16Array> {
  const out = new Int16Array(total);
  let filled = 0;
  const deadline = Date.now() + 10_000;
  while (filled < total) {
    if (source.ended) break;
    if (source.buffered < 160) {
      if (Date.now() > deadline) throw new Error(`sox delivered only ${filled} samples`);
      await new Promise((r) => setTimeout(r, 5));
      if (source.buffered < 160) continue;
    }
    const frame = source.read(160);
    if (frame === null) break;
    out.set(frame.subarray(0, Math.min(160, total - filled)), filled);
    filled += 160;
  }
  return out.subarray(0, filled);
}

Deno.test({
  name: "SoxSource.file() reads a 16 kHz stereo WAV as 8 kHz mono, then ends",
  ignore: !haveSox,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: `sipkit-sox-${Deno.pid}-` });
    try {
      const mono = generateTone(440, 16000, { sampleRate: 16000 });
      const stereo = new Int16Array(mono.length * 2);
      for (let i = 0; i < mono.length; i++) stereo[2 * i] = stereo[2 * i + 1] = mono[i];
      await Deno.writeFile(`${dir}/in.wav`, encodeWav(stereo, { sampleRate: 16000, channels: 2 }));
      const source = SoxSource.file(`${dir}/in.wav`);
      const samples = await readSamples(source, 16000);
      assert.ok(Math.abs(samples.length - 8000) <= 160, `${samples.length} samples`);
      assert.equal(dominantFrequency(samples.subarray(0, 4000)), 440);
      await waitFor(() => source.read(160) === null, { message: "the end of the file" });
      assert.equal((await source.exited).code, 0);
      await source.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "SoxSink.file() writes a WAV that reads back with the tone; a missing file fails cleanly",
  ignore: !haveSox,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: `sipkit-sox-${Deno.pid}-` });
    try {
      const sink = SoxSink.file(`${dir}/out.wav`);
      const tone = generateTone(1300, 8000);
      for (let i = 0; i < 50; i++) sink.write(tone.subarray(i * 160, (i + 1) * 160));
      await sink.close();
      assert.equal((await sink.exited).code, 0);
      const wav = decodeWav(await Deno.readFile(`${dir}/out.wav`));
      assert.equal(wav.sampleRate, 8000);
      assert.equal(wav.samples.length, 8000);
      assert.equal(dominantFrequency(firstChannel(wav.samples, wav.channels)), 1300);

      const missing = SoxSource.file(`${dir}/nothing.wav`);
      const exit = await missing.exited;
      assert.notEqual(exit.code, 0);
      assert.match(exit.stderr, /nothing\.wav/);
      assert.equal(missing.read(160), null);
      await missing.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "sox through ALSA: capture from and play to file and null PCMs of a private asoundrc",
  ignore: !haveAlsa,
  fn: async () => {
    const alsa = await privateAlsa(700, { captureSeconds: 5 });
    try {
      // Capture: the ALSA file plugin's infile holds a 700 Hz tone.
      const mic = SoxSource.capture(alsa.fileDevice, { env: alsa.env });
      const captured = await readSamples(mic, 4000);
      await mic.close();
      assert.equal(dominantFrequency(captured), 700, `captured ${captured.length}`);
      // Playback: what sox plays to the file PCM lands in its WAV.
      const speaker = SoxSink.playback(alsa.fileDevice, { env: alsa.env });
      const tone = generateTone(900, 8000);
      // Frames come at (about) the playout pace: a live sink bounds its queue.
      for (let i = 0; i < 50; i++) {
        speaker.write(tone.subarray(i * 160, (i + 1) * 160));
        await new Promise((r) => setTimeout(r, 10));
      }
      await speaker.close();
      const exit = await speaker.exited;
      assert.equal(exit.code, 0, exit.stderr);
      const played = decodeWav(await Deno.readFile(alsa.played));
      assert.equal(played.sampleRate, 8000);
      assert.ok(played.samples.length >= 7000, `${played.samples.length} samples`);
      assert.equal(dominantFrequency(firstChannel(played.samples, played.channels)), 900);
      // The null PCM: silence in, anything out.
      const nullMic = SoxSource.capture(alsa.nullDevice, { env: alsa.env });
      const silence = await readSamples(nullMic, 1600);
      await nullMic.close();
      assert.equal(rmsLevel(silence), 0);
      const nullOut = SoxSink.playback(alsa.nullDevice, { env: alsa.env });
      nullOut.write(tone);
      await nullOut.close();
      assert.equal((await nullOut.exited).code, 0);
      // A device that does not exist: sox fails and says so.
      const bad = SoxSource.capture("sipkit_no_such_device", { env: alsa.env });
      const failed = await bad.exited;
      assert.notEqual(failed.code, 0);
      await bad.close();
    } finally {
      await alsa.cleanup();
    }
  },
});

Deno.test({
  name:
    "a call's audio from an ALSA capture device to an ALSA playback device, over RTP on loopback",
  ignore: !haveAlsa,
  fn: async () => {
    const alsa = await privateAlsa(1100, { captureSeconds: 20 });
    const a = await MediaSession.open({ hostname: "127.0.0.1" });
    const b = await MediaSession.open({ hostname: "127.0.0.1" });
    try {
      await a.applyAnswer(await b.createAnswer(await a.createOffer()));
      a.setSource(SoxSource.capture(alsa.fileDevice, { env: alsa.env }));
      const speaker = SoxSink.playback(alsa.fileDevice, { env: alsa.env });
      const heard = new BufferSink();
      b.setSink({
        write(samples) {
          heard.write(samples);
          speaker.write(samples);
        },
        close: () => speaker.close(),
      });
      await waitFor(() => heard.length >= 12000, {
        timeout: 10_000,
        message: "1.5 s of audio at b",
      });
      assert.equal(dominantFrequency(heard.samples(4000)), 1100);
      await b.close(); // closes the sink: sox finishes played.wav
      const played = decodeWav(await Deno.readFile(alsa.played));
      assert.ok(played.samples.length >= 8000, `${played.samples.length}`);
      assert.equal(dominantFrequency(played.samples.subarray(played.samples.length - 4000)), 1100);
    } finally {
      await a.close();
      await b.close();
      await alsa.cleanup();
    }
  },
});

Deno.test({
  name:
    "SoxSource capture from a device paced in real time: the backlog is dropped, delay stays bounded",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // A stand-in for sox on a sound card: 100 ms of a 500 Hz square wave every 100 ms.
    const dir = await Deno.makeTempDir({ prefix: `sipkit-paced-${Deno.pid}-` });
    const fake = `${dir}/fake-sox`;
    const frame = new Uint8Array(1600);
    const view = new DataView(frame.buffer);
    for (let i = 0; i < 800; i++) view.setInt16(i * 2, (i % 16) < 8 ? 8000 : -8000, true);
    await Deno.writeFile(`${dir}/frame.raw`, frame);
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nwhile :; do cat '${dir}/frame.raw'; sleep 0.1; done\n`,
    );
    await Deno.chmod(fake, 0o755);
    const mic = SoxSource.capture("whatever", { sox: fake, maxLatencyMs: 100 });
    try {
      // Nobody reads for 1.5 s (the call is not answered yet): a backlog builds up.
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(mic.buffered >= 4000, `backlog ${mic.buffered}`);
      // Then the session reads 20 ms every 20 ms: within about a second the backlog is gone.
      for (let i = 0; i < 75; i++) {
        mic.read(160);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(
        mic.droppedSamples > 2000,
        `dropped ${mic.droppedSamples}, buffered ${mic.buffered}`,
      );
      assert.ok(mic.buffered <= 1600, `still buffered ${mic.buffered}`);
      await waitFor(() => mic.buffered >= 800, { message: "more audio" });
      const f = dominantFrequency(mic.read(800)!);
      assert.ok(Math.abs(f - 500) <= 2, `what is left is the device's audio: ${f} Hz`);
    } finally {
      await mic.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
