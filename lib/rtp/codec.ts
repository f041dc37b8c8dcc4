/**
 * Audio codecs behind one interface, and the G.711 table codecs (ITU-T G.711):
 * PCMU (mu-law, static payload type 0) and PCMA (A-law, payload type 8), as
 * RFC 3551 section 4.5.14 registers them. More codecs can be added to
 * {@linkcode CODECS} without touching the RTP code: the sender and receiver
 * only call {@linkcode AudioCodec.encode} and {@linkcode AudioCodec.decode}.
 *
 * Each G.711 codec is two lookup tables: 65,536 entries from 16-bit linear
 * PCM to a code byte, and 256 entries back.
 *
 * @module
 */

/** An audio codec: linear 16-bit PCM frames to RTP payloads and back. */
export interface AudioCodec {
  /** The encoding name of the SDP rtpmap, e.g. `PCMU`. */
  readonly name: string;
  /** The payload type: the static one of RFC 3551, or a default dynamic one. */
  readonly payloadType: number;
  /** The RTP clock rate in Hz (the timestamp unit). */
  readonly clockRate: number;
  /** The PCM sample rate in Hz that encode takes and decode gives. */
  readonly sampleRate: number;
  /** Encodes PCM samples into one payload. */
  encode(pcm: Int16Array): Uint8Array;
  /** Decodes one payload into PCM samples. */
  decode(payload: Uint8Array): Int16Array;
  /** How many RTP timestamp units a payload of `bytes` covers. */
  durationOf(bytes: number): number;
}

/** Encodes one 16-bit linear sample to mu-law (G.711, with the usual 0x84 bias). */
export function linearToUlaw(sample: number): number {
  const BIAS = 0x84;
  const CLIP = 32635;
  let s = sample | 0;
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  if (s > CLIP) s = CLIP;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** Decodes one mu-law byte to a 16-bit linear sample. */
export function ulawToLinear(code: number): number {
  const u = ~code & 0xff;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return (u & 0x80) ? (-magnitude | 0) : magnitude;
}

const ALAW_SEGMENT_END = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];

/** Encodes one 16-bit linear sample to A-law (G.711, even bits inverted). */
export function linearToAlaw(sample: number): number {
  let pcm = (sample | 0) >> 3;
  let mask: number;
  if (pcm >= 0) {
    mask = 0xd5;
  } else {
    mask = 0x55;
    pcm = -pcm - 1;
  }
  let segment = 0;
  while (segment < 8 && pcm > ALAW_SEGMENT_END[segment]) segment++;
  if (segment >= 8) return 0x7f ^ mask;
  let code = segment << 4;
  code |= segment < 2 ? (pcm >> 1) & 0x0f : (pcm >> segment) & 0x0f;
  return code ^ mask;
}

/** Decodes one A-law byte to a 16-bit linear sample. */
export function alawToLinear(code: number): number {
  const a = (code & 0xff) ^ 0x55;
  let t = (a & 0x0f) << 4;
  const segment = (a & 0x70) >> 4;
  if (segment === 0) t += 8;
  else if (segment === 1) t += 0x108;
  else t = (t + 0x108) << (segment - 1);
  return (a & 0x80) ? t : -t;
}

class G711Codec implements AudioCodec {
  readonly clockRate = 8000;
  readonly sampleRate = 8000;
  readonly #encodeTable = new Uint8Array(65536);
  readonly #decodeTable = new Int16Array(256);

  constructor(
    readonly name: string,
    readonly payloadType: number,
    encode: (sample: number) => number,
    decode: (code: number) => number,
  ) {
    for (let i = 0; i < 65536; i++) this.#encodeTable[i] = encode(i - 32768);
    for (let i = 0; i < 256; i++) this.#decodeTable[i] = decode(i);
  }

  encode(pcm: Int16Array): Uint8Array {
    const out = new Uint8Array(pcm.length);
    const table = this.#encodeTable;
    for (let i = 0; i < pcm.length; i++) out[i] = table[pcm[i] + 32768];
    return out;
  }

  decode(payload: Uint8Array): Int16Array {
    const out = new Int16Array(payload.length);
    const table = this.#decodeTable;
    for (let i = 0; i < payload.length; i++) out[i] = table[payload[i]];
    return out;
  }

  durationOf(bytes: number): number {
    return bytes;
  }
}

/**
 * G.711 mu-law (RFC 3551 payload type 0).
 *
 * @example
 * ```ts
 * import { PCMU } from "./codec.ts";
 * import assert from "node:assert/strict";
 * const payload = PCMU.encode(new Int16Array([0, 1000, -1000]));
 * assert.deepEqual([...payload], [0xff, 0xce, 0x4e]);
 * ```
 */
export const PCMU: AudioCodec = new G711Codec("PCMU", 0, linearToUlaw, ulawToLinear);

/**
 * G.711 A-law (RFC 3551 payload type 8).
 *
 * @example
 * ```ts
 * import { PCMA } from "./codec.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...PCMA.encode(new Int16Array([0]))], [0xd5]);
 * ```
 */
export const PCMA: AudioCodec = new G711Codec("PCMA", 8, linearToAlaw, alawToLinear);

/** The codecs sipkit can negotiate, by SDP encoding name. */
export const CODECS: Readonly<Record<string, AudioCodec>> = { PCMU, PCMA };

/** The name of a codec in {@linkcode CODECS}. */
export type CodecName = "PCMU" | "PCMA";

/** True when `name` names a codec in {@linkcode CODECS} (case-insensitive). */
export function isCodecName(name: string): name is CodecName {
  return Object.hasOwn(CODECS, name.toUpperCase()) && name === name.toUpperCase();
}

/**
 * The codec registered under `name` (case-insensitive), or undefined.
 *
 * @example
 * ```ts
 * import { codecByName } from "./codec.ts";
 * import assert from "node:assert/strict";
 * assert.equal(codecByName("pcma")?.payloadType, 8);
 * ```
 */
export function codecByName(name: string): AudioCodec | undefined {
  const key = name.toUpperCase();
  return Object.hasOwn(CODECS, key) ? CODECS[key] : undefined;
}
