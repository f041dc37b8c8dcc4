/**
 * WAV files (RIFF WAVE): read 8/16-bit PCM, mu-law and A-law; write 16-bit
 * PCM. Enough for prompts, recordings and tests without sox.
 *
 * @module
 */

import { alawToLinear, ulawToLinear } from "./codec.ts";

/** A decoded WAV file. */
export interface WavAudio {
  /** Samples per second. */
  sampleRate: number;
  /** Channels; `samples` are interleaved when more than one. */
  channels: number;
  /** The samples as 16-bit linear PCM. */
  samples: Int16Array;
}

/** Options of {@linkcode encodeWav}. */
export interface EncodeWavOptions {
  /** Sample rate in Hz (default 8000). */
  sampleRate?: number;
  /** Channels (default 1); `samples` are interleaved. */
  channels?: number;
}

/** The 44-byte header of a 16-bit PCM WAV file holding `dataBytes` bytes of samples. */
export function wavHeader(dataBytes: number, sampleRate = 8000, channels = 1): Uint8Array {
  const header = new Uint8Array(44);
  const view = new DataView(header.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < text.length; i++) header[offset + i] = text.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // WAVE_FORMAT_PCM
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * channels * 2, true);
  view.setUint16(32, channels * 2, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  return header;
}

/**
 * A 16-bit PCM WAV file of `samples`.
 *
 * @example
 * ```ts
 * import { decodeWav, encodeWav } from "./wav.ts";
 * import assert from "node:assert/strict";
 * const wav = encodeWav(new Int16Array([1, -2, 3]), { sampleRate: 8000 });
 * assert.deepEqual([...decodeWav(wav).samples], [1, -2, 3]);
 * ```
 */
export function encodeWav(samples: Int16Array, options: EncodeWavOptions = {}): Uint8Array {
  const data = samples.length * 2;
  const out = new Uint8Array(44 + data);
  out.set(wavHeader(data, options.sampleRate ?? 8000, options.channels ?? 1));
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(44 + i * 2, samples[i], true);
  return out;
}

/**
 * Decodes a WAV file: PCM 8 or 16 bits, mu-law (format 7) or A-law (format 6),
 * also inside WAVE_FORMAT_EXTENSIBLE. Throws `SyntaxError` for anything else.
 * A data size of 0 or past the end (a recording cut short) reads to the end.
 */
export function decodeWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (offset: number) => String.fromCharCode(...bytes.subarray(offset, offset + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new SyntaxError("Cannot decode WAV: not a RIFF WAVE file");
  }
  let format = -1;
  let channels = 1;
  let sampleRate = 8000;
  let bits = 16;
  let offset = 12;
  while (offset + 8 <= bytes.length) {
    const id = tag(offset);
    let size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === "fmt ") {
      if (size < 16 || body + 16 > bytes.length) {
        throw new SyntaxError("Cannot decode WAV: short fmt chunk");
      }
      format = view.getUint16(body, true);
      channels = view.getUint16(body + 2, true);
      sampleRate = view.getUint32(body + 4, true);
      bits = view.getUint16(body + 14, true);
      if (format === 0xfffe && size >= 40) format = view.getUint16(body + 24, true);
    } else if (id === "data") {
      if (format < 0) throw new SyntaxError("Cannot decode WAV: data before fmt chunk");
      if (size === 0 || body + size > bytes.length) size = bytes.length - body;
      const data = bytes.subarray(body, body + size);
      return { sampleRate, channels: Math.max(1, channels), samples: toLinear(data, format, bits) };
    }
    offset = body + size + (size & 1);
  }
  throw new SyntaxError("Cannot decode WAV: no data chunk");
}

function toLinear(data: Uint8Array, format: number, bits: number): Int16Array {
  if (format === 1 && bits === 16) {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const out = new Int16Array(data.length >> 1);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true);
    return out;
  }
  if (format === 1 && bits === 8) return Int16Array.from(data, (b) => (b - 128) << 8);
  if (format === 7 && bits === 8) return Int16Array.from(data, ulawToLinear);
  if (format === 6 && bits === 8) return Int16Array.from(data, alawToLinear);
  throw new SyntaxError(`Cannot decode WAV: unsupported format ${format} with ${bits} bits`);
}

/**
 * The first channel of interleaved `samples`.
 *
 * @example
 * ```ts
 * import { firstChannel } from "./wav.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...firstChannel(new Int16Array([1, 2, 3, 4]), 2)], [1, 3]);
 * ```
 */
export function firstChannel(samples: Int16Array, channels: number): Int16Array {
  if (channels <= 1) return samples;
  const out = new Int16Array(Math.floor(samples.length / channels));
  for (let i = 0; i < out.length; i++) out[i] = samples[i * channels];
  return out;
}
