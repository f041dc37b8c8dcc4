/**
 * Tones and their detection: a sine generator, the Goertzel algorithm (the
 * power of one frequency in a block of samples) and a dominant-frequency
 * search built on it. Tests use these to check by frequency that audio went
 * through a call.
 *
 * @module
 */

/** Options of {@linkcode generateTone}. */
export interface ToneOptions {
  /** Sample rate in Hz (default 8000). */
  sampleRate?: number;
  /** Peak amplitude as a fraction of full scale, 0 to 1 (default 0.5). */
  amplitude?: number;
  /** Index of the first sample, for continuing a tone without a phase jump (default 0). */
  offset?: number;
}

/**
 * A sine tone of `frequency` Hz, `count` samples of 16-bit PCM.
 *
 * @example
 * ```ts
 * import { dominantFrequency, generateTone } from "./tone.ts";
 * import assert from "node:assert/strict";
 * const tone = generateTone(440, 8000);
 * assert.ok(Math.abs(dominantFrequency(tone) - 440) <= 2);
 * ```
 */
export function generateTone(
  frequency: number,
  count: number,
  options: ToneOptions = {},
): Int16Array {
  const rate = options.sampleRate ?? 8000;
  const amplitude = Math.max(0, Math.min(1, options.amplitude ?? 0.5)) * 32767;
  const offset = options.offset ?? 0;
  const out = new Int16Array(count);
  const w = 2 * Math.PI * frequency / rate;
  for (let i = 0; i < count; i++) out[i] = Math.round(amplitude * Math.sin(w * (offset + i)));
  return out;
}

/**
 * The power of `frequency` in `samples` by the Goertzel algorithm, scaled so
 * that a full-scale sine at that frequency gives about 1 (a sine of peak
 * amplitude `a`, as a fraction of full scale, gives about `a * a`).
 *
 * @example
 * ```ts
 * import { generateTone, goertzelPower } from "./tone.ts";
 * import assert from "node:assert/strict";
 * const tone = generateTone(1000, 800, { amplitude: 0.5 });
 * assert.ok(goertzelPower(tone, 1000) > 0.2);
 * assert.ok(goertzelPower(tone, 1500) < 0.001);
 * ```
 */
export function goertzelPower(samples: Int16Array, frequency: number, sampleRate = 8000): number {
  const n = samples.length;
  if (n === 0) return 0;
  const coeff = 2 * Math.cos(2 * Math.PI * frequency / sampleRate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const s0 = samples[i] / 32768 + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const magnitude2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  return magnitude2 / ((n / 2) * (n / 2));
}

/** Options of {@linkcode dominantFrequency}. */
export interface DominantFrequencyOptions {
  /** Sample rate in Hz (default 8000). */
  sampleRate?: number;
  /** Lowest frequency searched, Hz (default 100). */
  minHz?: number;
  /** Highest frequency searched, Hz (default 3800, under the 8 kHz Nyquist limit). */
  maxHz?: number;
}

/**
 * The frequency (Hz, to about 1 Hz) with the most power in `samples`,
 * searched with Goertzel from `minHz` to `maxHz`: a coarse 10 Hz scan on short
 * blocks, then 1 Hz steps around the best on up to one second. Returns 0 for
 * silence.
 *
 * @example
 * ```ts
 * import { dominantFrequency, generateTone } from "./tone.ts";
 * import assert from "node:assert/strict";
 * assert.ok(Math.abs(dominantFrequency(generateTone(1234, 4000)) - 1234) <= 2);
 * ```
 */
export function dominantFrequency(
  samples: Int16Array,
  options: DominantFrequencyOptions = {},
): number {
  const rate = options.sampleRate ?? 8000;
  const min = options.minHz ?? 100;
  const max = Math.min(options.maxHz ?? 3800, rate / 2);
  // Coarse: 10 Hz steps over short blocks (a 400-sample block has a main lobe
  // of +-20 Hz, so no tone falls between steps), power summed over the blocks.
  const block = Math.min(samples.length, Math.round(rate / 20));
  const blocks: Int16Array[] = [];
  const count = Math.min(16, Math.floor(samples.length / Math.max(1, block)));
  const stride = count > 1 ? Math.floor((samples.length - block) / (count - 1)) : 0;
  for (let i = 0; i < count; i++) blocks.push(samples.subarray(i * stride, i * stride + block));
  let best = 0;
  let bestPower = 0;
  for (let f = min; f <= max; f += 10) {
    let p = 0;
    for (const b of blocks) p += goertzelPower(b, f, rate);
    if (p > bestPower) {
      bestPower = p;
      best = f;
    }
  }
  if (bestPower < 1e-8 * Math.max(1, blocks.length)) return 0;
  // Fine: 1 Hz steps around the best, over the whole signal (up to 1 s).
  const whole = samples.subarray(0, Math.min(samples.length, rate));
  const coarse = best;
  bestPower = 0;
  for (let f = Math.max(min, coarse - 15); f <= Math.min(max, coarse + 15); f += 1) {
    const p = goertzelPower(whole, f, rate);
    if (p > bestPower) {
      bestPower = p;
      best = f;
    }
  }
  return best;
}

/**
 * The RMS level of `samples` as a fraction of full scale (0 for silence).
 *
 * @example
 * ```ts
 * import { generateTone, rmsLevel } from "./tone.ts";
 * import assert from "node:assert/strict";
 * assert.ok(Math.abs(rmsLevel(generateTone(500, 8000, { amplitude: 1 })) - Math.SQRT1_2) < 0.01);
 * ```
 */
export function rmsLevel(samples: Int16Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length) / 32768;
}
