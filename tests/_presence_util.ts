/**
 * Helpers for the presence and event framework tests: user agents on a loop
 * network.
 *
 * @module
 */

import type { Clock } from "../lib/sip/clock.ts";
import {
  parseMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import type { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { UserAgent } from "../lib/sip/ua.ts";

/** A UA `user@host` on the loop network, port 5060, UDP (and TCP when asked). */
export function loopUa(
  net: LoopNetwork,
  user: string,
  host: string,
  options: { clock?: Clock; port?: number; tcp?: boolean; aor?: string } = {},
): Promise<UserAgent> {
  const port = options.port ?? 5060;
  const transports = [net.transport({ host, port })];
  // With TCP too, large requests switch to it (RFC 3261 18.1.1).
  if (options.tcp) transports.push(net.transport({ host, port, protocol: "tcp" }));
  return UserAgent.create({
    aor: options.aor ?? `${user}@${host}`,
    transports,
    clock: options.clock,
    timers: { t1: 500 },
  });
}

/** The messages recorded on the network, parsed. */
export function messages(net: LoopNetwork): SipMessage[] {
  return net.packets.map((p) => parseMessage(p.data));
}

/** The requests of one method recorded on the network. */
export function requestsOf(net: LoopNetwork, method: string): SipRequest[] {
  return messages(net).filter((m): m is SipRequest => m.kind === "request" && m.method === method);
}

/** The responses to one method recorded on the network. */
export function responsesTo(net: LoopNetwork, method: string): SipResponse[] {
  return messages(net).filter((m): m is SipResponse =>
    m.kind === "response" && m.cseq.method === method
  );
}

/** Waits until `pred` holds, letting the network deliver (no clock moves). */
export async function until(
  net: LoopNetwork,
  pred: () => boolean,
  what = "condition",
): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (pred()) return;
    await net.settled();
    await new Promise((r) => setTimeout(r, 0));
  }
  if (!pred()) throw new Error(`Timed out waiting for ${what}`);
}

/**
 * Moves a manual clock forward in steps, letting the network deliver after
 * each step, so that a refresh sent at one step is answered before the next
 * timer falls due.
 */
export async function advance(
  clock: { advance(ms: number): void },
  net: LoopNetwork,
  ms: number,
  step = 1000,
): Promise<void> {
  let left = ms;
  while (left > 0) {
    const d = Math.min(step, left);
    clock.advance(d);
    left -= d;
    await net.settled();
    await new Promise((r) => setTimeout(r, 0));
    await net.settled();
  }
}
