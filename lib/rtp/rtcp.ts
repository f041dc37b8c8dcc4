/**
 * RTCP (RFC 3550 section 6): sender reports, receiver reports, SDES CNAME
 * and BYE, in compound packets; NTP timestamps; and the reception statistics
 * of appendix A (extended sequence numbers, loss, interarrival jitter).
 *
 * @module
 */

/** One reception report block (RFC 3550 section 6.4.1). */
export interface ReportBlock {
  /** The source this block is about. */
  ssrc: number;
  /** Fraction lost since the last report, in 1/256 (0 to 255). */
  fractionLost: number;
  /** Cumulative packets lost (signed 24 bits; duplicates can make it negative). */
  cumulativeLost: number;
  /** Extended highest sequence number received. */
  highestSequence: number;
  /** Interarrival jitter, in timestamp units. */
  jitter: number;
  /** Middle 32 bits of the NTP time of the last SR received from that source (0: none). */
  lastSr: number;
  /** Delay since that SR, in 1/65536 s. */
  delaySinceLastSr: number;
}

/** The sender information of an SR. */
export interface SenderInfo {
  /** NTP timestamp, seconds since 1900. */
  ntpSeconds: number;
  /** NTP timestamp, fraction in 1/2^32 s. */
  ntpFraction: number;
  /** The RTP timestamp of the same instant. */
  rtpTimestamp: number;
  /** Packets sent. */
  packetCount: number;
  /** Payload octets sent. */
  octetCount: number;
}

/** An RTCP packet of a compound packet. */
export type RtcpPacket =
  | { type: "sr"; ssrc: number; sender: SenderInfo; reports: ReportBlock[] }
  | { type: "rr"; ssrc: number; reports: ReportBlock[] }
  | { type: "sdes"; chunks: { ssrc: number; cname?: string }[] }
  | { type: "bye"; ssrcs: number[]; reason?: string }
  | { type: "other"; packetType: number };

const PT_SR = 200;
const PT_RR = 201;
const PT_SDES = 202;
const PT_BYE = 203;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encodeOne(packet: RtcpPacket): Uint8Array {
  const body: number[] = [];
  const u32 = (v: number) =>
    body.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const blocks = (reports: ReportBlock[]) => {
    for (const r of reports) {
      u32(r.ssrc);
      const lost = Math.max(-0x800000, Math.min(0x7fffff, r.cumulativeLost)) & 0xffffff;
      u32(((r.fractionLost & 0xff) << 24 | lost) >>> 0);
      u32(r.highestSequence);
      u32(r.jitter);
      u32(r.lastSr);
      u32(r.delaySinceLastSr);
    }
  };
  let count = 0;
  let pt: number;
  switch (packet.type) {
    case "sr":
      pt = PT_SR;
      count = packet.reports.length;
      u32(packet.ssrc);
      u32(packet.sender.ntpSeconds);
      u32(packet.sender.ntpFraction);
      u32(packet.sender.rtpTimestamp);
      u32(packet.sender.packetCount);
      u32(packet.sender.octetCount);
      blocks(packet.reports);
      break;
    case "rr":
      pt = PT_RR;
      count = packet.reports.length;
      u32(packet.ssrc);
      blocks(packet.reports);
      break;
    case "sdes":
      pt = PT_SDES;
      count = packet.chunks.length;
      for (const chunk of packet.chunks) {
        u32(chunk.ssrc);
        if (chunk.cname !== undefined) {
          const text = encoder.encode(chunk.cname).subarray(0, 255);
          body.push(1, text.length, ...text);
        }
        // Item list ends with a null octet, then pad to 32 bits.
        body.push(0);
        while (body.length % 4 !== 0) body.push(0);
      }
      break;
    case "bye":
      pt = PT_BYE;
      count = packet.ssrcs.length;
      for (const s of packet.ssrcs) u32(s);
      if (packet.reason) {
        const text = encoder.encode(packet.reason).subarray(0, 255);
        body.push(text.length, ...text);
        while (body.length % 4 !== 0) body.push(0);
      }
      break;
    default:
      throw new TypeError(`Cannot encode RTCP packet type ${packet.packetType}`);
  }
  if (count > 31) throw new RangeError("Cannot encode RTCP: more than 31 items");
  const out = new Uint8Array(4 + body.length);
  out[0] = 0x80 | count;
  out[1] = pt;
  const words = out.length / 4 - 1;
  out[2] = words >> 8;
  out[3] = words & 0xff;
  out.set(body, 4);
  return out;
}

/**
 * A compound RTCP packet of `packets` in order (RFC 3550 section 6.1: an SR
 * or RR first, then SDES with a CNAME; BYE last).
 *
 * @example
 * ```ts
 * import { decodeRtcp, encodeRtcp } from "./rtcp.ts";
 * import assert from "node:assert/strict";
 * const bytes = encodeRtcp([
 *   { type: "rr", ssrc: 1, reports: [] },
 *   { type: "sdes", chunks: [{ ssrc: 1, cname: "a@h" }] },
 * ]);
 * assert.equal(bytes.length, 8 + 16);
 * assert.deepEqual(decodeRtcp(bytes)[1], { type: "sdes", chunks: [{ ssrc: 1, cname: "a@h" }] });
 * ```
 */
export function encodeRtcp(packets: RtcpPacket[]): Uint8Array {
  const parts = packets.map(encodeOne);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Decodes a compound RTCP packet. Throws `SyntaxError` when a length or version is wrong. */
export function decodeRtcp(bytes: Uint8Array): RtcpPacket[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: RtcpPacket[] = [];
  let offset = 0;
  if (bytes.length < 4) throw new SyntaxError("Cannot decode RTCP: shorter than 4 bytes");
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new SyntaxError("Cannot decode RTCP: truncated header");
    if (bytes[offset] >> 6 !== 2) throw new SyntaxError("Cannot decode RTCP: version is not 2");
    const count = bytes[offset] & 0x1f;
    const pt = bytes[offset + 1];
    const length = (view.getUint16(offset + 2) + 1) * 4;
    const end = offset + length;
    if (end > bytes.length) throw new SyntaxError("Cannot decode RTCP: length past the end");
    let at = offset + 4;
    const need = (n: number) => {
      if (at + n > end) {
        throw new SyntaxError("Cannot decode RTCP: packet shorter than its contents");
      }
    };
    const u32 = () => {
      need(4);
      const v = view.getUint32(at);
      at += 4;
      return v;
    };
    const blocks = () => {
      const reports: ReportBlock[] = [];
      for (let i = 0; i < count; i++) {
        const ssrc = u32();
        const word = u32();
        let lost = word & 0xffffff;
        if (lost & 0x800000) lost -= 0x1000000;
        reports.push({
          ssrc,
          fractionLost: word >>> 24,
          cumulativeLost: lost,
          highestSequence: u32(),
          jitter: u32(),
          lastSr: u32(),
          delaySinceLastSr: u32(),
        });
      }
      return reports;
    };
    if (pt === PT_SR) {
      const ssrc = u32();
      const sender: SenderInfo = {
        ntpSeconds: u32(),
        ntpFraction: u32(),
        rtpTimestamp: u32(),
        packetCount: u32(),
        octetCount: u32(),
      };
      out.push({ type: "sr", ssrc, sender, reports: blocks() });
    } else if (pt === PT_RR) {
      const ssrc = u32();
      out.push({ type: "rr", ssrc, reports: blocks() });
    } else if (pt === PT_SDES) {
      const chunks: { ssrc: number; cname?: string }[] = [];
      for (let i = 0; i < count; i++) {
        const chunk: { ssrc: number; cname?: string } = { ssrc: u32() };
        for (;;) {
          need(1);
          const item = bytes[at++];
          if (item === 0) break;
          need(1);
          const len = bytes[at++];
          need(len);
          if (item === 1) chunk.cname = decoder.decode(bytes.subarray(at, at + len));
          at += len;
        }
        at = offset + Math.ceil((at - offset) / 4) * 4;
        chunks.push(chunk);
      }
      out.push({ type: "sdes", chunks });
    } else if (pt === PT_BYE) {
      const ssrcs: number[] = [];
      for (let i = 0; i < count; i++) ssrcs.push(u32());
      const bye: RtcpPacket = { type: "bye", ssrcs };
      if (at < end) {
        const len = bytes[at++];
        need(len);
        bye.reason = decoder.decode(bytes.subarray(at, at + len));
      }
      out.push(bye);
    } else {
      out.push({ type: "other", packetType: pt });
    }
    offset = end;
  }
  return out;
}

/** Seconds between the NTP epoch (1900) and the Unix epoch (1970). */
export const NTP_UNIX_OFFSET = 2208988800;

/**
 * The NTP timestamp of `unixMs` milliseconds since 1970.
 *
 * @example
 * ```ts
 * import { ntpFromUnixMs } from "./rtcp.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(ntpFromUnixMs(500), { seconds: 2208988800, fraction: 0x80000000 });
 * ```
 */
export function ntpFromUnixMs(unixMs: number): { seconds: number; fraction: number } {
  const seconds = Math.floor(unixMs / 1000);
  const fraction = Math.floor(((unixMs - seconds * 1000) / 1000) * 0x100000000);
  return { seconds: (seconds + NTP_UNIX_OFFSET) >>> 0, fraction: fraction >>> 0 };
}

/** The middle 32 bits of an NTP timestamp (the LSR and arrival units of RFC 3550 6.4.1). */
export function ntpMiddle(seconds: number, fraction: number): number {
  return (((seconds & 0xffff) << 16) | (fraction >>> 16)) >>> 0;
}

/**
 * The round-trip time in ms from a report block about us, received when the
 * NTP middle 32 bits were `arrival` (RFC 3550 section 6.4.1: A - LSR - DLSR).
 * Undefined when the block carries no LSR.
 *
 * @example
 * ```ts
 * import { roundTripMs } from "./rtcp.ts";
 * import assert from "node:assert/strict";
 * // The RFC's example: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 5.250 s.
 * assert.equal(roundTripMs(0xb7108000, 0xb7052000, 0x00054000), 6125);
 * ```
 */
export function roundTripMs(
  arrival: number,
  lastSr: number,
  delaySinceLastSr: number,
): number | undefined {
  if (lastSr === 0) return undefined;
  const rtt = (arrival - lastSr - delaySinceLastSr) >>> 0;
  if (rtt > 0x7fffffff) return 0; // negative: clocks or rounding
  return (rtt / 65536) * 1000;
}

/**
 * Reception statistics of one source (RFC 3550 appendix A.1, A.3, A.8):
 * extended highest sequence number with wrap-around, packets expected and
 * lost, fraction lost per report interval, interarrival jitter.
 */
export class ReceptionStats {
  #baseSeq = 0;
  #maxSeq = 0;
  #cycles = 0;
  #received = 0;
  #started = false;
  #expectedPrior = 0;
  #receivedPrior = 0;
  #transit: number | undefined;
  #jitter = 0;
  #badSeq = -1;

  /** Statistics for a stream with `clockRate` timestamp units per second. */
  constructor(readonly clockRate = 8000) {}

  /**
   * Counts a packet that arrived at `arrivalMs` (any monotonic ms clock).
   * Returns false when its sequence number is a large jump that needs one
   * more packet to confirm a restart (RFC 3550 A.1).
   */
  update(sequenceNumber: number, timestamp: number, arrivalMs: number): boolean {
    const seq = sequenceNumber & 0xffff;
    if (!this.#started) {
      this.#restart(seq);
      this.#started = true;
    } else {
      const delta = (seq - this.#maxSeq + 0x10000) & 0xffff;
      if (delta < 3000) {
        if (seq < this.#maxSeq) this.#cycles += 0x10000;
        this.#maxSeq = seq;
      } else if (delta <= 0x10000 - 100) {
        // A large jump: a restart if the next packet follows this one.
        if (seq === this.#badSeq) {
          this.#restart(seq);
        } else {
          this.#badSeq = (seq + 1) & 0xffff;
          return false;
        }
      }
      // else: duplicate or reordered, counted as received.
    }
    this.#received++;
    const arrival = Math.round(arrivalMs * this.clockRate / 1000);
    const transit = (arrival - timestamp) | 0;
    if (this.#transit !== undefined) {
      const d = Math.abs((transit - this.#transit) | 0);
      this.#jitter += (d - this.#jitter) / 16;
    }
    this.#transit = transit;
    return true;
  }

  #restart(seq: number): void {
    this.#baseSeq = seq;
    this.#maxSeq = seq;
    this.#cycles = 0;
    this.#received = 0;
    this.#expectedPrior = 0;
    this.#receivedPrior = 0;
    this.#badSeq = -1;
  }

  /** Packets received (duplicates included, as RFC 3550 counts them). */
  get received(): number {
    return this.#received;
  }

  /** The extended highest sequence number received. */
  get extendedMax(): number {
    return this.#cycles + this.#maxSeq;
  }

  /** Packets expected from the first to the highest sequence number. */
  get expected(): number {
    return this.#started ? this.extendedMax - this.#baseSeq + 1 : 0;
  }

  /** Packets lost so far (expected minus received; can be negative with duplicates). */
  get lost(): number {
    return this.expected - this.#received;
  }

  /** Interarrival jitter in timestamp units. */
  get jitter(): number {
    return this.#jitter;
  }

  /** Interarrival jitter in milliseconds. */
  get jitterMs(): number {
    return this.#jitter * 1000 / this.clockRate;
  }

  /** True once a packet was counted. */
  get started(): boolean {
    return this.#started;
  }

  /**
   * A report block for `ssrc`, and the start of a new report interval for the
   * fraction lost. `lastSr`/`delaySinceLastSr` as in {@linkcode ReportBlock}.
   */
  reportBlock(ssrc: number, lastSr = 0, delaySinceLastSr = 0): ReportBlock {
    const expected = this.expected;
    const expectedInterval = expected - this.#expectedPrior;
    const receivedInterval = this.#received - this.#receivedPrior;
    this.#expectedPrior = expected;
    this.#receivedPrior = this.#received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval === 0 || lostInterval <= 0
      ? 0
      : Math.floor((lostInterval << 8) / expectedInterval);
    return {
      ssrc,
      fractionLost: Math.min(255, fraction),
      cumulativeLost: this.lost,
      highestSequence: this.extendedMax >>> 0,
      jitter: Math.floor(this.#jitter) >>> 0,
      lastSr,
      delaySinceLastSr,
    };
  }
}
