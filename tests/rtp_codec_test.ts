import assert from "node:assert/strict";
import {
  alawToLinear,
  codecByName,
  linearToAlaw,
  linearToUlaw,
  PCMA,
  PCMU,
  ulawToLinear,
} from "../lib/rtp/codec.ts";

// Reference values of ITU-T G.711 (tables 1 and 2, with the 16-bit scaling of the
// classic Sun reference code g711.c).
Deno.test("ulawToLinear() gives the G.711 mu-law decision values", () => {
  const cases: [number, number][] = [
    [0xff, 0],
    [0x7f, 0],
    [0x80, 32124],
    [0x00, -32124],
    [0xfe, 8],
    [0x7e, -8],
    [0xf0, 120],
    [0xef, 132],
    [0x8f, 16764],
    [0x90, 15996],
    [0x10, -15996],
  ];
  for (const [code, linear] of cases) {
    assert.equal(ulawToLinear(code), linear, `0x${code.toString(16)}`);
  }
});

Deno.test("alawToLinear() gives the G.711 A-law decision values", () => {
  const cases: [number, number][] = [
    [0xd5, 8],
    [0x55, -8],
    [0xaa, 32256],
    [0x2a, -32256],
    [0xd4, 24],
    [0xc5, 264],
    [0xf5, 528],
  ];
  for (const [code, linear] of cases) {
    assert.equal(alawToLinear(code), linear, `0x${code.toString(16)}`);
  }
});

Deno.test("linearToUlaw() and linearToAlaw() encode known samples", () => {
  assert.equal(linearToUlaw(0), 0xff);
  assert.equal(linearToUlaw(-1), 0x7f);
  assert.equal(linearToUlaw(32767), 0x80);
  assert.equal(linearToUlaw(-32768), 0x00);
  assert.equal(linearToUlaw(1000), 0xce);
  assert.equal(linearToUlaw(-1000), 0x4e);
  assert.equal(linearToAlaw(0), 0xd5);
  assert.equal(linearToAlaw(-1), 0x55);
  assert.equal(linearToAlaw(32767), 0xaa);
  assert.equal(linearToAlaw(-32768), 0x2a);
  assert.equal(linearToAlaw(1000), 0xfa);
});

Deno.test("G.711 codes survive decode then encode (every one of the 256)", () => {
  for (let code = 0; code < 256; code++) {
    // 0x7f is mu-law's negative zero: it decodes to 0, which encodes as 0xff.
    if (code !== 0x7f) {
      assert.equal(linearToUlaw(ulawToLinear(code)), code, `mu 0x${code.toString(16)}`);
    }
    assert.equal(linearToAlaw(alawToLinear(code)), code, `A 0x${code.toString(16)}`);
  }
});

Deno.test("the table codecs match the formulas for all 65,536 samples", () => {
  const all = new Int16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i - 32768;
  const mu = PCMU.encode(all);
  const a = PCMA.encode(all);
  for (let i = 0; i < 65536; i++) {
    if (mu[i] !== linearToUlaw(all[i]) || a[i] !== linearToAlaw(all[i])) {
      assert.fail(`sample ${all[i]}`);
    }
  }
  const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual([...PCMU.decode(codes)], [...codes].map(ulawToLinear));
  assert.deepEqual([...PCMA.decode(codes)], [...codes].map(alawToLinear));
});

Deno.test("G.711 quantization error stays within the segment step", () => {
  for (let s = -32000; s <= 32000; s += 7) {
    const mu = ulawToLinear(linearToUlaw(s));
    const a = alawToLinear(linearToAlaw(s));
    const step = Math.max(16, Math.abs(s) / 16);
    assert.ok(Math.abs(mu - s) <= step, `mu ${s} -> ${mu}`);
    assert.ok(Math.abs(a - s) <= step, `A ${s} -> ${a}`);
  }
});

Deno.test("codecByName() knows PCMU and PCMA, case-insensitive, and their RTP facts", () => {
  assert.equal(codecByName("PCMU"), PCMU);
  assert.equal(codecByName("pcma"), PCMA);
  assert.equal(codecByName("G729"), undefined);
  assert.equal(codecByName("toString"), undefined);
  assert.equal(PCMU.payloadType, 0);
  assert.equal(PCMA.payloadType, 8);
  assert.equal(PCMU.clockRate, 8000);
  assert.equal(PCMU.durationOf(160), 160);
});
