/**
 * Helpers for the presence and event framework tests: user agents on a loop
 * network.
 *
 * @module
 */

import { type Clock, ManualClock } from "../lib/sip/clock.ts";
import {
  createResponse,
  formatUri,
  parseMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "../lib/sip/message.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { Notifier } from "../lib/sip/events/notifier.ts";
import { Subscription, type SubscriptionNotify } from "../lib/sip/events/subscriber.ts";
import { type InboundInfo, TransportLayer } from "../lib/sip/transport_layer.ts";
import { UserAgent } from "../lib/sip/ua.ts";

/** A UA `user@host` on the loop network, port 5060, UDP (and TCP when asked). */
export function loopUa(
  net: LoopNetwork,
  user: string,
  host: string,
  options: { clock?: Clock; port?: number; tcp?: boolean; aor?: string; proxy?: string } = {},
): Promise<UserAgent> {
  const port = options.port ?? 5060;
  const transports = [net.transport({ host, port })];
  // With TCP too, large requests switch to it (RFC 3261 18.1.1).
  if (options.tcp) transports.push(net.transport({ host, port, protocol: "tcp" }));
  return UserAgent.create({
    aor: options.aor ?? `${user}@${host}`,
    outboundProxy: options.proxy,
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

/**
 * A tiny stateless proxy and registrar for one domain on the loop network
 * (what the thesis had between its clients): REGISTER stores the contact,
 * a request for a user of the domain who is not registered gets 404, other
 * requests are forwarded (loose routing, a Via of its own, Max-Forwards
 * down by one) and responses go back along the Via.
 */
export class LoopProxy {
  /** Registered contacts by user. */
  readonly location = new Map<string, Uri>();
  readonly #layer: TransportLayer;
  readonly #host: string;
  readonly #domain: string;
  readonly #peers: Record<string, string>;

  /**
   * Starts the proxy at `host:5060` for `domain`; `peers` maps other
   * domains to the hosts of their proxies (the DNS of the loop network).
   */
  constructor(net: LoopNetwork, host: string, domain: string, peers: Record<string, string> = {}) {
    this.#host = host;
    this.#domain = domain;
    this.#peers = peers;
    this.#layer = new TransportLayer({ transports: [net.transport({ host })] });
    this.#layer.onRequest((req, info) => {
      this.#request(req, info).catch(() => {});
    });
    this.#layer.onResponse((res) => {
      const i = res.headers.fields.findIndex((f) => f.name === "Via");
      if (i < 0) return;
      res.headers.fields.splice(i, 1);
      res.invalidate();
      if (res.headers.has("Via")) this.#layer.sendResponse(res).catch(() => {});
    });
  }

  async #request(req: SipRequest, info: InboundInfo): Promise<void> {
    const route = req.route[0];
    if (route && route.uri.host === this.#host) {
      // RFC 3261 16.4: a loose route naming us is removed.
      const i = req.headers.fields.findIndex((f) => f.name === "Route");
      req.headers.fields.splice(i, 1);
      req.invalidate();
    }
    if (req.method === "REGISTER") {
      const contact = req.contact[0];
      const user = req.to.uri.user ?? "";
      if (contact && req.expires !== 0 && contact.params.expires !== "0") {
        this.location.set(user, contact.uri);
      } else this.location.delete(user);
      const headers: [string, string][] = contact
        ? [["Contact", `<${formatUri(contact.uri)}>;expires=${req.expires ?? 3600}`]]
        : [];
      await this.#layer.sendResponse(createResponse(req, 200, { toTag: "reg", headers }), info);
      return;
    }
    let target = req.uri;
    if (req.route.length === 0 && req.uri.host === this.#domain) {
      const contact = this.location.get(req.uri.user ?? "");
      if (!contact) {
        // The thesis case: the buddy is offline, the proxy knows no contact.
        await this.#layer.sendResponse(createResponse(req, 404, { toTag: "proxy" }), info);
        return;
      }
      req.uri = contact;
      target = contact;
    } else if (req.route.length > 0) target = req.route[0].uri;
    else if (this.#peers[req.uri.host]) {
      target = { ...req.uri, host: this.#peers[req.uri.host], port: 5060 };
    }
    req.headers.set("Max-Forwards", String((req.maxForwards ?? 70) - 1));
    req.headers.prepend(
      "Via",
      `SIP/2.0/UDP ${this.#host}:5060;branch=z9hG4bKp${req.topVia.params.branch}`,
    );
    req.invalidate();
    await this.#layer.sendRequest(req, {
      protocol: "udp",
      host: target.host,
      port: target.port ?? 5060,
    });
  }

  /** Closes the proxy's transport. */
  close(): Promise<void> {
    return this.#layer.close();
  }
}

/**
 * alice (192.0.2.1) subscribed to bob's presence (192.0.2.2) on a loop network with a manual
 * clock: bob's Notifier serves a constant `<presence/>`, neither side offers an encoding, and
 * alice's Subscription has started and got its first NOTIFY (in `notes`). `close()` ends the
 * subscription, the notifier (without a final NOTIFY) and both UAs.
 */
export async function presenceSubscription(): Promise<{
  clock: ManualClock;
  net: LoopNetwork;
  alice: UserAgent;
  bob: UserAgent;
  notifier: Notifier;
  sub: Subscription;
  notes: SubscriptionNotify[];
  close(): Promise<void>;
}> {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  const notifier = new Notifier(bob);
  notifier.addPackage({
    event: "presence",
    content: () => ({ body: "<presence/>", contentType: "application/pidf+xml" }),
  });
  const notes: SubscriptionNotify[] = [];
  const sub = new Subscription(alice, "sip:bob@192.0.2.2", {
    event: "presence",
    onNotify: (n) => notes.push(n),
  });
  await sub.start();
  await until(net, () => notes.length === 1);
  const close = async () => {
    sub.close();
    await notifier.close({ notify: false });
    await Promise.all([alice.close(), bob.close()]);
  };
  return { clock, net, alice, bob, notifier, sub, notes, close };
}
