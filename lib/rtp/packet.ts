/**
 * RTP packets (RFC 3550 section 5.1): encode and decode the fixed header,
 * CSRC list, header extension and padding.
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |V=2|P|X|  CC   |M|     PT      |       sequence number         |
 * |                           timestamp                           |
 * |           synchronization source (SSRC) identifier            |
 * ```
 *
 * @module
 */

/** An RTP packet. */
export interface RtpPacket {
  /** Marker bit (first packet of a talkspurt, first packet of a DTMF event). */
  marker: boolean;
  /** Payload type, 0 to 127. */
  payloadType: number;
  /** Sequence number, 0 to 65535. */
  sequenceNumber: number;
  /** Timestamp in units of the payload's clock rate (32 bits). */
  timestamp: number;
  /** Synchronization source (32 bits). */
  ssrc: number;
  /** Contributing sources. */
  csrc?: number[];
  /** The header extension (RFC 3550 section 5.3.1), when the X bit is set. */
  extension?: { profile: number; data: Uint8Array };
  /** The payload, without padding. */
  payload: Uint8Array;
}

/**
 * The bytes of `packet` (no padding).
 *
 * @example
 * ```ts
 * import { decodeRtp, encodeRtp } from "./packet.ts";
 * import assert from "node:assert/strict";
 * const bytes = encodeRtp({
 *   marker: true, payloadType: 0, sequenceNumber: 1, timestamp: 160, ssrc: 0x11223344,
 *   payload: new Uint8Array([0xff]),
 * });
 * assert.deepEqual([...bytes.subarray(0, 2)], [0x80, 0x80]);
 * assert.equal(decodeRtp(bytes).timestamp, 160);
 * ```
 */
export function encodeRtp(packet: RtpPacket): Uint8Array {
  const csrc = packet.csrc ?? [];
  if (csrc.length > 15) throw new RangeError("Cannot encode RTP: more than 15 CSRC");
  const ext = packet.extension;
  if (ext && ext.data.length % 4 !== 0) {
    throw new RangeError("Cannot encode RTP: header extension not a multiple of 4 bytes");
  }
  const extLength = ext ? 4 + ext.data.length : 0;
  const headerLength = 12 + csrc.length * 4 + extLength;
  const out = new Uint8Array(headerLength + packet.payload.length);
  const view = new DataView(out.buffer);
  out[0] = 0x80 | (ext ? 0x10 : 0) | csrc.length;
  out[1] = (packet.marker ? 0x80 : 0) | (packet.payloadType & 0x7f);
  view.setUint16(2, packet.sequenceNumber & 0xffff);
  view.setUint32(4, packet.timestamp >>> 0);
  view.setUint32(8, packet.ssrc >>> 0);
  let offset = 12;
  for (const c of csrc) {
    view.setUint32(offset, c >>> 0);
    offset += 4;
  }
  if (ext) {
    view.setUint16(offset, ext.profile & 0xffff);
    view.setUint16(offset + 2, ext.data.length / 4);
    out.set(ext.data, offset + 4);
    offset += 4 + ext.data.length;
  }
  out.set(packet.payload, offset);
  return out;
}

/**
 * Decodes an RTP packet. Throws `SyntaxError` when it is not RTP version 2 or
 * its lengths do not fit. The payload is a view into `bytes`.
 */
export function decodeRtp(bytes: Uint8Array): RtpPacket {
  if (bytes.length < 12) throw new SyntaxError("Cannot decode RTP: shorter than 12 bytes");
  if (bytes[0] >> 6 !== 2) throw new SyntaxError("Cannot decode RTP: version is not 2");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const cc = bytes[0] & 0x0f;
  let offset = 12 + cc * 4;
  if (offset > bytes.length) throw new SyntaxError("Cannot decode RTP: CSRC list past the end");
  const csrc: number[] = [];
  for (let i = 0; i < cc; i++) csrc.push(view.getUint32(12 + i * 4));
  let extension: RtpPacket["extension"];
  if (bytes[0] & 0x10) {
    if (offset + 4 > bytes.length) {
      throw new SyntaxError("Cannot decode RTP: extension past the end");
    }
    const words = view.getUint16(offset + 2);
    const end = offset + 4 + words * 4;
    if (end > bytes.length) throw new SyntaxError("Cannot decode RTP: extension past the end");
    extension = { profile: view.getUint16(offset), data: bytes.subarray(offset + 4, end) };
    offset = end;
  }
  let end = bytes.length;
  if (bytes[0] & 0x20) {
    const pad = bytes[bytes.length - 1];
    if (pad === 0 || offset + pad > bytes.length) {
      throw new SyntaxError("Cannot decode RTP: bad padding length");
    }
    end -= pad;
  }
  const packet: RtpPacket = {
    marker: (bytes[1] & 0x80) !== 0,
    payloadType: bytes[1] & 0x7f,
    sequenceNumber: view.getUint16(2),
    timestamp: view.getUint32(4),
    ssrc: view.getUint32(8),
    payload: bytes.subarray(offset, end),
  };
  if (cc > 0) packet.csrc = csrc;
  if (extension) packet.extension = extension;
  return packet;
}

/**
 * True when `bytes` look like RTCP rather than RTP (packet types 192 to 223
 * in the second byte, RFC 5761 section 4), for RTP and RTCP on one port.
 *
 * @example
 * ```ts
 * import { looksLikeRtcp } from "./packet.ts";
 * import assert from "node:assert/strict";
 * assert.equal(looksLikeRtcp(new Uint8Array([0x80, 200, 0, 6])), true);
 * assert.equal(looksLikeRtcp(new Uint8Array([0x80, 0, 0, 1])), false);
 * ```
 */
export function looksLikeRtcp(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] >> 6 === 2 && bytes[1] >= 192 && bytes[1] <= 223;
}
