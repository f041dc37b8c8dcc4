import assert from "node:assert/strict";
import { dominantFrequency, generateTone, goertzelPower, rmsLevel } from "../lib/rtp/tone.ts";
import { decodeWav, encodeWav, firstChannel, wavHeader } from "../lib/rtp/wav.ts";
import {
  BufferSink,
  BufferSource,
  SilenceSource,
  ToneSource,
  WavFileSink,
} from "../lib/rtp/audio.ts";
import { PCMA, PCMU } from "../lib/rtp/codec.ts";

Deno.test("generateTone() makes a sine of the asked amplitude and continues its phase", () => {
  const tone = generateTone(1000, 8, { amplitude: 1 });
  // 1000 Hz at 8 kHz: 8 samples per period.
  assert.deepEqual([...tone], [0, 23170, 32767, 23170, 0, -23170, -32767, -23170]);
  const split = [...generateTone(700, 100), ...generateTone(700, 100, { offset: 100 })];
  assert.deepEqual(split, [...generateTone(700, 200)]);
});

Deno.test("goertzelPower() measures one frequency and ignores others", () => {
  const tone = generateTone(1000, 1600, { amplitude: 0.5 });
  assert.ok(Math.abs(goertzelPower(tone, 1000) - 0.25) < 0.01);
  assert.ok(goertzelPower(tone, 1200) < 1e-4);
  assert.equal(goertzelPower(new Int16Array(0), 1000), 0);
  assert.equal(goertzelPower(new Int16Array(800), 1000), 0);
});

Deno.test("dominantFrequency() finds the strongest tone to about 1 Hz, through G.711 too", async (t) => {
  for (const f of [300, 440, 697, 1209, 1234, 2000, 3333, 3400]) {
    await t.step(`${f} Hz`, () => {
      const mix = generateTone(f, 4000, { amplitude: 0.5 });
      const weak = generateTone(f === 440 ? 900 : 440, 4000, { amplitude: 0.1 });
      for (let i = 0; i < mix.length; i++) mix[i] += weak[i];
      assert.ok(Math.abs(dominantFrequency(mix) - f) <= 1, `${dominantFrequency(mix)}`);
      for (const codec of [PCMU, PCMA]) {
        const through = codec.decode(codec.encode(mix));
        assert.ok(Math.abs(dominantFrequency(through) - f) <= 1, codec.name);
      }
    });
  }
  assert.equal(dominantFrequency(new Int16Array(800)), 0);
});

Deno.test("rmsLevel() of silence and of a full-scale sine", () => {
  assert.equal(rmsLevel(new Int16Array(100)), 0);
  assert.ok(Math.abs(rmsLevel(generateTone(1000, 8000, { amplitude: 1 })) - 0.7071) < 0.001);
});

Deno.test("encodeWav() writes the 44-byte PCM header byte by byte", () => {
  const wav = encodeWav(new Int16Array([0x0102, -2]), { sampleRate: 8000 });
  const expected = [
    ..."RIFF".split("").map((c) => c.charCodeAt(0)),
    40,
    0,
    0,
    0, // RIFF size 36 + 4
    ..."WAVEfmt ".split("").map((c) => c.charCodeAt(0)),
    16,
    0,
    0,
    0,
    1,
    0,
    1,
    0, // fmt size, PCM, mono
    0x40,
    0x1f,
    0,
    0, // 8000 Hz
    0x80,
    0x3e,
    0,
    0, // 16000 bytes/s
    2,
    0,
    16,
    0, // block align, bits
    ..."data".split("").map((c) => c.charCodeAt(0)),
    4,
    0,
    0,
    0,
    0x02,
    0x01,
    0xfe,
    0xff,
  ];
  assert.deepEqual([...wav], expected);
  assert.equal(wavHeader(0).length, 44);
});

Deno.test("decodeWav() reads PCM 16/8-bit, mu-law, A-law, stereo, and skips other chunks", () => {
  const samples = generateTone(500, 400);
  const round = decodeWav(encodeWav(samples, { sampleRate: 16000 }));
  assert.equal(round.sampleRate, 16000);
  assert.deepEqual([...round.samples], [...samples]);

  const build = (format: number, bits: number, channels: number, data: Uint8Array) => {
    const list = new Uint8Array([
      ..."LIST".split("").map((c) => c.charCodeAt(0)),
      3,
      0,
      0,
      0,
      1,
      2,
      3,
      0,
    ]);
    const out = new Uint8Array(12 + 24 + list.length + 8 + data.length);
    const v = new DataView(out.buffer);
    out.set("RIFF".split("").map((c) => c.charCodeAt(0)), 0);
    v.setUint32(4, out.length - 8, true);
    out.set("WAVEfmt ".split("").map((c) => c.charCodeAt(0)), 8);
    v.setUint32(16, 16, true);
    v.setUint16(20, format, true);
    v.setUint16(22, channels, true);
    v.setUint32(24, 8000, true);
    v.setUint16(34, bits, true);
    out.set(list, 36);
    out.set("data".split("").map((c) => c.charCodeAt(0)), 36 + list.length);
    v.setUint32(40 + list.length, data.length, true);
    out.set(data, 44 + list.length);
    return out;
  };
  assert.deepEqual([...decodeWav(build(7, 8, 1, PCMU.encode(samples))).samples], [
    ...PCMU.decode(PCMU.encode(samples)),
  ]);
  assert.deepEqual([...decodeWav(build(6, 8, 1, PCMA.encode(samples))).samples], [
    ...PCMA.decode(PCMA.encode(samples)),
  ]);
  assert.deepEqual([...decodeWav(build(1, 8, 1, new Uint8Array([128, 255, 0]))).samples], [
    0,
    127 << 8,
    -128 << 8,
  ]);
  const stereo = decodeWav(build(1, 8, 2, new Uint8Array([128, 0, 129, 0])));
  assert.equal(stereo.channels, 2);
  assert.deepEqual([...firstChannel(stereo.samples, 2)], [0, 256]);
  assert.throws(() => decodeWav(new Uint8Array(10)), SyntaxError);
  assert.throws(() => decodeWav(build(85, 0, 1, new Uint8Array(4))), /unsupported format 85/);
});

Deno.test("WavFileSink writes a WAV file that decodeWav() reads back", async () => {
  const path = await Deno.makeTempFile({ suffix: ".wav" });
  try {
    const sink = await WavFileSink.create(path);
    const source = new ToneSource(800);
    for (let i = 0; i < 10; i++) sink.write(source.read(160)!);
    await sink.close();
    const wav = decodeWav(await Deno.readFile(path));
    assert.equal(wav.samples.length, 1600);
    assert.deepEqual([...wav.samples], [...generateTone(800, 1600)]);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("sources: silence, tone with a limit, buffer with loop; BufferSink keeps the tail", () => {
  assert.deepEqual([...new SilenceSource().read(4)], [0, 0, 0, 0]);
  const tone = new ToneSource(1000, { maxSamples: 320 });
  assert.ok(tone.read(160));
  assert.ok(tone.read(160));
  assert.equal(tone.read(160), null);
  const loop = new BufferSource(new Int16Array([1, 2, 3]), true);
  assert.deepEqual([...loop.read(7)!], [1, 2, 3, 1, 2, 3, 1]);
  const sink = new BufferSink();
  sink.write(new Int16Array([1, 2, 3]));
  sink.write(new Int16Array([4]));
  assert.deepEqual([...sink.samples(2)], [3, 4]);
  assert.equal(sink.length, 4);
});
