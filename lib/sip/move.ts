/**
 * Mobility in the stack: {@linkcode moveUserAgent} moves a running user
 * agent to the host's new address without losing its transactions and
 * dialogs, then has every {@linkcode Mover} redo what depends on the address
 * (the registration, the subscriptions, the calls).
 *
 * What a move does, in order:
 * 1. Transports bound to one address get a replacement on the new address
 *    (the same port when it is free): {@linkcode Transport.rebind}. The old
 *    ones keep receiving for 64*T1 (answers to requests sent before still
 *    reach their transactions), then close.
 * 2. Datagram transports bound to all addresses keep their socket (it
 *    receives on the new address too) and take the new address as Via
 *    sent-by and Contact host ({@linkcode TransportLayer.setLocalHost}).
 * 3. Stream connections from the old address are closed (they cannot carry
 *    anything once it is gone); new ones open from the new address.
 * 4. Retransmissions, CANCEL and non-2xx ACK keep the Via they were first
 *    sent with (RFC 3261 17.1.1.2, 9.1, 17.2.3): the transport layer does so.
 * 5. Digest credentials are kept: a server that wants new ones challenges
 *    again and the UA answers, as for any request.
 * 6. The movers run side by side; each one's outcome is reported.
 *
 * @module
 */

import type { Subscription } from "./events/subscriber.ts";
import type { ServerSubscription } from "./events/notifier.ts";
import type { Uri } from "./message.ts";
import type { Registration } from "./registration.ts";
import type { Transport } from "./transport.ts";
import type { LogFn, UserAgent } from "./ua.ts";
import { invalidateLocalAddresses, isIPv6, isUnspecified, normalizeHost } from "./_net.ts";

/** The address change a {@linkcode Mover} acts on. */
export interface MoveChange {
  /** The previous address, when known. */
  old: string | null;
  /** The new address. */
  new: string;
}

/** Something to redo after the user agent moved (its transports already follow). */
export interface Mover {
  /** What it redoes, as `moved` events name it: "registration", "subscriptions", "calls". */
  readonly name: string;
  /** Redoes it on the new address; rejects when that failed. */
  move(change: MoveChange): Promise<void>;
}

/** What {@linkcode moveUserAgent} did. */
export interface MoveResult {
  /** The previous address, when known. */
  old: string | null;
  /** The new address. */
  new: string;
  /** The movers that succeeded, by name. */
  redone: string[];
  /** The movers that failed, with why. */
  failed: { name: string; reason: string }[];
  /** Transports replaced by new ones on the new address. */
  rebound: number;
  /** Stream connections closed because they came from the old address. */
  closedConnections: number;
  /** Milliseconds the move took (on the UA's clock). */
  durationMs: number;
}

/** Options of {@linkcode moveUserAgent}. */
export interface MoveOptions {
  /** Diagnostics. Default the UA's log. */
  log?: LogFn;
  /** How long replaced transports keep receiving, in ms. Default 32000 (64*T1). */
  retireAfterMs?: number;
}

/**
 * Moves `ua` to the host's new address `host` (an IP literal) and runs the
 * movers. Never rejects for a mover's failure: it is listed in `failed`.
 *
 * @example
 * ```ts
 * import { LoopNetwork, moveUserAgent, UserAgent } from "../../mod.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const ua = await UserAgent.create({ transports: [net.transport({ host: "192.0.2.1" })] });
 * const result = await moveUserAgent(ua, "192.0.2.9", [
 *   { name: "registration", move: () => Promise.resolve() },
 * ]);
 * assert.equal(ua.transports[0].local.host, "192.0.2.9");
 * assert.deepEqual([result.old, result.new, result.redone], ["192.0.2.1", "192.0.2.9", ["registration"]]);
 * await ua.close();
 * ```
 */
export async function moveUserAgent(
  ua: UserAgent,
  host: string,
  movers: Mover[] = [],
  options: MoveOptions = {},
): Promise<MoveResult> {
  const started = performance.now();
  // The host's addresses changed: routeLocalAddress() must not answer from its cache.
  invalidateLocalAddresses();
  const log = options.log ?? ua.log;
  const next = normalizeHost(host);
  const family = isIPv6(next) ? "IPv6" : "IPv4";
  const layer = ua.transport;
  const bound = layer.transports.find((t) =>
    !isUnspecified(t.local.host) && isIPv6(t.local.host) === isIPv6(next)
  );
  const old = layer.localHost(family) ?? ua.advertisedHost ?? bound?.local.host ?? null;
  let rebound = 0;
  const retired: Transport[] = [];
  for (const t of [...layer.transports]) {
    const local = normalizeHost(t.local.host);
    if (isUnspecified(local) || local === next) continue;
    // Only what was bound to the old address (or, when it is unknown, to the same family).
    if (old !== null ? local !== normalizeHost(old) : isIPv6(local) !== isIPv6(next)) continue;
    if (t.local.port === 0) continue; // a client-only transport: its connections go below
    if (!t.rebind) {
      log("warn", `${t.protocol} transport bound to ${local} cannot move to ${next}`);
      continue;
    }
    const replacement = await t.rebind(next);
    layer.replaceTransport(t, replacement);
    rebound++;
    if (replacement !== t) retired.push(t);
  }
  layer.setLocalHost(next);
  ua.advertisedHost = undefined;
  let closedConnections = 0;
  if (old !== null && normalizeHost(old) !== next) {
    for (const t of [...layer.transports, ...retired]) {
      closedConnections += t.closeConnectionsFrom?.(old) ?? 0;
    }
  }
  if (retired.length > 0) layer.retire(retired, ua.clock, options.retireAfterMs ?? 32_000);
  const outcomes = await Promise.allSettled(
    movers.map((m) => m.move({ old: old === null ? null : normalizeHost(old), new: next })),
  );
  const redone: string[] = [];
  const failed: { name: string; reason: string }[] = [];
  outcomes.forEach((o, i) => {
    const name = movers[i].name;
    if (o.status === "fulfilled") redone.push(name);
    else {
      const reason = o.reason instanceof Error ? o.reason.message : String(o.reason);
      log("warn", `after the move to ${next}: ${name} failed: ${reason}`);
      failed.push({ name, reason });
    }
  });
  return {
    old: old === null ? null : normalizeHost(old),
    new: next,
    redone,
    failed,
    rebound,
    closedConnections,
    durationMs: performance.now() - started,
  };
}

/**
 * A contact URI moved to `host`: the same user and parameters, the new host,
 * and the port of the UA's transport for the URI's transport now.
 *
 * @example
 * ```ts
 * import { LoopNetwork, movedContact, parseUri, UserAgent } from "../../mod.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const ua = await UserAgent.create({ transports: [net.transport({ host: "192.0.2.1", port: 5070 })] });
 * const uri = movedContact(ua, parseUri("sip:alice@192.0.2.1:5070"), "192.0.2.9");
 * assert.equal(uri.host, "192.0.2.9");
 * assert.equal(uri.port, 5070);
 * await ua.close();
 * ```
 */
export function movedContact(ua: UserAgent, uri: Uri, host: string): Uri {
  const protocol = String(uri.params.transport ?? (uri.scheme === "sips" ? "tls" : "udp"))
    .toLowerCase();
  const t = ua.transports.find((t) => t.protocol === protocol && t.local.port !== 0);
  return {
    ...structuredClone(uri),
    host: normalizeHost(host),
    port: t?.local.port ?? uri.port,
  };
}

/**
 * The registration mover: registers the contact on the new address and
 * removes the old binding in the same REGISTER (RFC 3261 10.2.1 and 10.2.2),
 * so that the old binding does not linger.
 */
export function registrationMover(registration: Registration): Mover {
  return {
    name: "registration",
    async move(change) {
      await registration.changeAddress(change.new);
    },
  };
}

/**
 * The subscriptions mover: each subscription we hold (as subscriber) is
 * refreshed with the new Contact, and each one we serve (as notifier) gets
 * a NOTIFY with it, both target refreshes (RFC 6665 section 4.1).
 */
export function subscriptionsMover(
  ua: UserAgent,
  list: () => { held?: Subscription[]; served?: ServerSubscription[] },
): Mover {
  return {
    name: "subscriptions",
    async move(change) {
      const { held = [], served = [] } = list();
      const work: Promise<void>[] = [];
      for (const sub of held) {
        const contact = sub.dialogs[0]?.localContact?.uri;
        if (!contact) continue; // not live: its next SUBSCRIBE takes the new address anyway
        work.push(sub.updateLocalContact(movedContact(ua, contact, change.new)));
      }
      for (const sub of served) {
        const contact = sub.dialog.localContact?.uri;
        if (!contact || sub.state === "terminated") continue;
        work.push(sub.updateLocalContact(movedContact(ua, contact, change.new)));
      }
      await Promise.all(work);
    },
  };
}
