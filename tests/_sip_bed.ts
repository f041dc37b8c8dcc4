// A loop-network test bed for the UA core and its usages: user agents on one
// LoopNetwork and one ManualClock, targeted packet loss, and a run() that
// advances the clock until a promise settles.

import { ManualClock } from "../lib/sip/clock.ts";
import { parseMessage, type SipMessage, type Uri } from "../lib/sip/message.ts";
import type { Target } from "../lib/sip/transaction/mod.ts";
import { LoopNetwork, type LoopPacket, type LoopTransport } from "../lib/sip/transport_loop.ts";
import { UserAgent, type UserAgentOptions } from "../lib/sip/ua.ts";

const dec = new TextDecoder();

/** A parsed view of a recorded packet. */
export function packetMessage(p: Readonly<LoopPacket>): SipMessage | undefined {
  try {
    return parseMessage(p.data);
  } catch {
    return undefined;
  }
}

/** First line and CSeq of a packet, e.g. "ACK 1" or "200 INVITE". */
export function describe(p: Readonly<LoopPacket>): string {
  const text = dec.decode(p.data);
  const first = text.slice(0, text.indexOf("\r\n"));
  const cseq = /\r\nCSeq:\s*(\d+)\s+(\S+)/i.exec(text);
  if (first.startsWith("SIP/2.0 ")) return `${first.split(" ")[1]} ${cseq?.[2]}`;
  return `${first.split(" ")[0]} ${cseq?.[1]}`;
}

/** The test bed. */
export class Bed {
  readonly clock = new ManualClock();
  readonly net = new LoopNetwork();
  readonly uas: UserAgent[] = [];
  readonly raws: LoopTransport[] = [];
  /** Packet filters: a packet any of them matches is dropped (UDP only). */
  readonly drops: ((p: Readonly<LoopPacket>, text: string) => boolean)[] = [];

  constructor() {
    this.net.setFaults({
      drop: (p) => this.drops.some((d) => d(p, dec.decode(p.data))),
    });
  }

  /** A user agent at `host` (port 5060, udp unless `protocol`) with the bed's clock. */
  async ua(
    host: string,
    options: UserAgentOptions = {},
    protocol: "udp" | "tcp" = "udp",
  ): Promise<UserAgent> {
    const ua = await UserAgent.create({
      aor: `user@${host}`,
      transports: [this.net.transport({ host, protocol })],
      clock: this.clock,
      resolve: (uri: Uri) =>
        Promise.resolve<Target[]>([{
          protocol,
          host: uri.host,
          port: uri.port ?? 5060,
        }]),
      ...options,
    });
    this.uas.push(ua);
    return ua;
  }

  /** Drops the next `count` UDP packets whose text matches `pattern`. */
  dropNext(pattern: RegExp, count = 1): void {
    let left = count;
    this.drops.push((_p, text) => {
      if (left > 0 && pattern.test(text)) {
        left--;
        return true;
      }
      return false;
    });
  }

  /** Packets sent so far, described (see {@linkcode describe}), optionally only those from `host`. */
  sent(host?: string): string[] {
    return this.net.packets.filter((p) => host === undefined || p.from.host === host).map(
      describe,
    );
  }

  /** Lets the network and the stack run, advancing the clock until `p` settles. */
  async run<T>(p: Promise<T>, stepMs = 100, limitMs = 300_000): Promise<T> {
    let done = false;
    p.then(() => (done = true), () => (done = true));
    for (let t = 0; t <= limitMs; t += stepMs) {
      await this.net.settled();
      if (done) break;
      this.clock.advance(stepMs);
    }
    return await p;
  }

  /** Advances the clock by `ms` in steps, letting the network settle between steps. */
  async advance(ms: number, stepMs = 100): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      await this.net.settled();
      this.clock.advance(Math.min(stepMs, ms - t));
    }
    await this.net.settled();
  }

  /** Closes every UA and raw transport. */
  async close(): Promise<void> {
    for (const ua of this.uas) await ua.close();
    for (const t of this.raws) await t.close();
  }
}

/** Runs `fn` with a fresh bed, closing it afterwards. */
export async function withBed(fn: (bed: Bed) => Promise<void>): Promise<void> {
  const bed = new Bed();
  try {
    await fn(bed);
  } finally {
    await bed.close();
  }
}
