/**
 * DTMF as RTP events (RFC 4733): the telephone-event payload, the sender's
 * packet plan for a digit, and a receiver that reports each event once.
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * |     event     |E|R| volume    |          duration             |
 * ```
 *
 * @module
 */

/** The DTMF digits and their event codes (RFC 4733 section 3.2). */
export const DTMF_EVENTS: Readonly<Record<string, number>> = {
  "0": 0,
  "1": 1,
  "2": 2,
  "3": 3,
  "4": 4,
  "5": 5,
  "6": 6,
  "7": 7,
  "8": 8,
  "9": 9,
  "*": 10,
  "#": 11,
  "A": 12,
  "B": 13,
  "C": 14,
  "D": 15,
};

const DIGITS = "0123456789*#ABCD";

/** The digit of event code `event`, or undefined (flash and others). */
export function dtmfDigit(event: number): string | undefined {
  return event >= 0 && event < 16 ? DIGITS[event] : undefined;
}

/** True when every character of `digits` is a DTMF digit (0-9 * # A-D, case-insensitive). */
export function isDtmfDigits(digits: string): boolean {
  return digits.length > 0 && [...digits.toUpperCase()].every((d) => Object.hasOwn(DTMF_EVENTS, d));
}

/** A telephone-event payload. */
export interface DtmfEvent {
  /** Event code (0-15 for DTMF digits). */
  event: number;
  /** End of the event. */
  end: boolean;
  /** Power level, 0 to -63 dBm0, as a positive number (default 10). */
  volume: number;
  /** Duration so far, in timestamp units. */
  duration: number;
}

/**
 * The 4 payload bytes of `e`.
 *
 * @example
 * ```ts
 * import { decodeDtmf, encodeDtmf } from "./dtmf.ts";
 * import assert from "node:assert/strict";
 * const bytes = encodeDtmf({ event: 11, end: true, volume: 10, duration: 800 });
 * assert.deepEqual([...bytes], [11, 0x8a, 0x03, 0x20]);
 * assert.deepEqual(decodeDtmf(bytes), { event: 11, end: true, volume: 10, duration: 800 });
 * ```
 */
export function encodeDtmf(e: DtmfEvent): Uint8Array {
  const duration = Math.min(0xffff, Math.max(0, Math.round(e.duration)));
  return new Uint8Array([
    e.event & 0xff,
    (e.end ? 0x80 : 0) | (e.volume & 0x3f),
    duration >> 8,
    duration & 0xff,
  ]);
}

/** Decodes a telephone-event payload. Throws `SyntaxError` when shorter than 4 bytes. */
export function decodeDtmf(payload: Uint8Array): DtmfEvent {
  if (payload.length < 4) {
    throw new SyntaxError("Cannot decode telephone-event: shorter than 4 bytes");
  }
  return {
    event: payload[0],
    end: (payload[1] & 0x80) !== 0,
    volume: payload[1] & 0x3f,
    duration: (payload[2] << 8) | payload[3],
  };
}

/** One packet a sender emits for a digit. */
export interface DtmfPacketPlan {
  /** The payload. */
  payload: Uint8Array;
  /** Marker bit: the first packet of the event. */
  marker: boolean;
}

/**
 * The packets of one digit, one per packet interval (RFC 4733 section 2.5):
 * the first with the marker bit, each with the duration so far, all with the
 * event's start timestamp; the end packet is sent three times
 * (section 2.5.1.4).
 *
 * @example
 * ```ts
 * import { decodeDtmf, dtmfPackets } from "./dtmf.ts";
 * import assert from "node:assert/strict";
 * const plan = dtmfPackets("5", 100, 160);
 * assert.equal(plan.length, 4 + 3);
 * assert.equal(plan[0].marker, true);
 * assert.deepEqual(plan.map((p) => decodeDtmf(p.payload).duration), [160, 320, 480, 640, 800, 800, 800]);
 * ```
 */
export function dtmfPackets(
  digit: string,
  durationMs: number,
  samplesPerPacket: number,
  volume = 10,
): DtmfPacketPlan[] {
  const event = DTMF_EVENTS[digit.toUpperCase()];
  if (event === undefined) {
    throw new RangeError(`Cannot send DTMF: ${JSON.stringify(digit)} is not a digit`);
  }
  const total = Math.max(samplesPerPacket, Math.round(durationMs * 8));
  const plan: DtmfPacketPlan[] = [];
  for (let d = samplesPerPacket; d < total; d += samplesPerPacket) {
    plan.push({
      payload: encodeDtmf({ event, end: false, volume, duration: d }),
      marker: plan.length === 0,
    });
  }
  for (let i = 0; i < 3; i++) {
    plan.push({
      payload: encodeDtmf({ event, end: true, volume, duration: total }),
      marker: plan.length === 0,
    });
  }
  return plan;
}

/** A digit received, once per event. */
export interface DtmfDigit {
  /** The digit: 0-9 * # A-D. */
  digit: string;
  /** Its duration in ms. */
  durationMs: number;
}

/**
 * Turns telephone-event packets into digits, each reported once: at its
 * first end packet (the two repeats are ignored), or, when every end packet
 * was lost, when the next event starts or {@linkcode DtmfReceiver.flush} is
 * called. Events are told apart by their RTP timestamp.
 *
 * @example
 * ```ts
 * import { DtmfReceiver, encodeDtmf } from "./dtmf.ts";
 * import assert from "node:assert/strict";
 * const got: string[] = [];
 * const rx = new DtmfReceiver((d) => got.push(d.digit));
 * for (const end of [false, true, true, true]) {
 *   rx.receive(1000, encodeDtmf({ event: 1, end, volume: 10, duration: 800 }));
 * }
 * assert.deepEqual(got, ["1"]);
 * ```
 */
export class DtmfReceiver {
  #current: { timestamp: number; event: number; duration: number; reported: boolean } | undefined;
  #recent: number[] = [];
  #onDigit: (digit: DtmfDigit) => void;

  /** A receiver calling `onDigit` once per event. */
  constructor(onDigit: (digit: DtmfDigit) => void) {
    this.#onDigit = onDigit;
  }

  /** Takes the payload of a telephone-event packet with RTP timestamp `timestamp`. */
  receive(timestamp: number, payload: Uint8Array): void {
    let e: DtmfEvent;
    try {
      e = decodeDtmf(payload);
    } catch {
      return;
    }
    const ts = timestamp >>> 0;
    if (this.#recent.includes(ts)) return; // a repeat of an event already reported
    if (!this.#current || this.#current.timestamp !== ts) {
      this.flush();
      this.#current = { timestamp: ts, event: e.event, duration: e.duration, reported: false };
    }
    this.#current.duration = Math.max(this.#current.duration, e.duration);
    if (e.end) this.flush();
  }

  /** Reports the event in progress, if any (its end packets were lost). */
  flush(): void {
    const c = this.#current;
    this.#current = undefined;
    if (!c || c.reported) return;
    c.reported = true;
    this.#recent.push(c.timestamp);
    if (this.#recent.length > 16) this.#recent.shift();
    const digit = dtmfDigit(c.event);
    if (digit !== undefined) this.#onDigit({ digit, durationMs: c.duration / 8 });
  }
}
