/**
 * The presence watcher: one presence subscription per buddy, or one
 * subscription to an RFC 4662 resource list URI at a presence server, with
 * every NOTIFY turned into per-buddy `presence` events (only when something
 * changed) and subscription life into `subscription` events. Mutual
 * subscription (thesis section 7.3.3): a subscription that failed because
 * the buddy was offline (404, 480, 408) is kept and sent again at once when
 * {@linkcode PresenceWatcher.buddySubscribedToUs} says the buddy is back;
 * otherwise it is retried with back-off.
 *
 * @module
 */

import {
  Subscription,
  type SubscriptionNotify,
  type SubscriptionStateChange,
} from "../sip/events/subscriber.ts";
import type { UserAgent } from "../sip/ua.ts";
import type { PresenceAgent } from "./agent.ts";
import type { TimerId } from "../sip/clock.ts";
import { parseMediaType } from "../sip/multipart.ts";
import { PIDF_CONTENT_TYPE, type PidfContact, type PresenceDocument } from "./pidf.ts";
import { normalizeBuddyUri, sameBuddy } from "./resource_lists.ts";
import { RLMI_CONTENT_TYPE, unpackListNotify } from "./rlmi.ts";
import { type PresenceSummary, presenceToStatus } from "./status.ts";

/** A buddy's presence changed. */
export interface PresenceEvent {
  /** Always "presence". */
  type: "presence";
  /** The buddy (as in the buddy list, or the resource URI of a list NOTIFY). */
  uri: string;
  /** open or closed, when the document says. */
  basic?: "open" | "closed";
  /** One of the six statuses, or another RPID activity name. */
  status: string;
  /** Every activity. */
  activities: string[];
  /** The note, when any. */
  note?: string;
  /** The note's language. */
  noteLang?: string;
  /** Contacts, best first. */
  contacts: PidfContact[];
  /** The PIDF document as received. */
  raw: string;
  /** The list URI, when the state came in a list NOTIFY. */
  list?: string;
  /** The resource's name in the list (RLMI `<name>`), when given. */
  name?: string;
}

/** A subscription (to a buddy, or to the list, or a resource inside the list) changed state. */
export interface SubscriptionEvent {
  /** Always "subscription". */
  type: "subscription";
  /** The buddy or list URI. */
  uri: string;
  /** pending, active, terminated (by the notifier), failed (the SUBSCRIBE was refused or lost). */
  state: "pending" | "active" | "terminated" | "failed";
  /** Termination reason or failure reason phrase. */
  reason?: string;
  /** SIP status of a failure. */
  status?: number;
  /** Seconds until the next try, when one is planned. */
  retryIn?: number;
  /** The list URI, when the state is of a resource inside a list. */
  list?: string;
  /** The resource's name in the list (RLMI `<name>`), when given. */
  name?: string;
}

/** What a {@linkcode PresenceWatcher} reports. */
export type PresenceWatcherEvent = PresenceEvent | SubscriptionEvent;

/** Options of {@linkcode PresenceWatcher}. */
export interface PresenceWatcherOptions {
  /** Buddies to subscribe to, one subscription each. */
  buddies?: string[];
  /** A resource list URI (RFC 4662): one subscription for the whole list. */
  list?: string;
  /** Subscription duration in seconds. Default 3600. */
  expires?: number;
  /**
   * Ask buddies for deflate-compressed documents (`Accept-Encoding:
   * deflate`, RFC 3261 section 20.2; a notifier that does not compress
   * ignores it). Default true.
   */
  compress?: boolean;
  /** First back-off delay in seconds. Default 30. */
  backoffBase?: number;
  /** Largest back-off delay in seconds. Default 1800. */
  backoffMax?: number;
  /** Randomness for back-off jitter. Default Math.random. */
  random?: () => number;
  /**
   * Our own presence agent in the same process: when a buddy subscribes to
   * it, {@linkcode PresenceWatcher.buddySubscribedToUs} is called (mutual
   * subscription without a pipe).
   */
  agent?: PresenceAgent;
  /** Receives events. */
  onEvent?: (event: PresenceWatcherEvent) => void;
}

/** The result of {@linkcode PresenceWatcher.fetch} for one buddy. */
export interface PresenceFetchResult {
  /** The buddy. */
  uri: string;
  /** Its presence, when the fetch worked and the NOTIFY carried a document. */
  presence?: PresenceEvent;
  /**
   * Why not, otherwise: the SIP status of the failed SUBSCRIBE (408 when
   * nothing answered), or 200 when the NOTIFY came without a document.
   */
  error?: {
    status: number;
    reason: string;
    /** True when no response came at all (timeout, transport error). */
    local?: boolean;
  };
}

const PRESENCE_ACCEPT = [PIDF_CONTENT_TYPE];
/**
 * Seconds between the quick re-sends that follow a mutual-subscription
 * re-send that failed: the buddy's own agent may come up a moment after its
 * watcher subscribed to us (two processes of a shell pipe start together).
 */
const QUICK_RETRY_DELAYS = [2, 5];
const LIST_ACCEPT = [PIDF_CONTENT_TYPE, RLMI_CONTENT_TYPE, "multipart/related"];

/** Converts a parsed presence document into a {@linkcode PresenceEvent}. */
export function presenceEvent(
  uri: string,
  doc: PresenceDocument | string | Uint8Array,
  raw?: string,
): PresenceEvent {
  const summary: PresenceSummary = presenceToStatus(doc);
  const event: PresenceEvent = {
    type: "presence",
    uri,
    status: summary.status,
    activities: summary.activities,
    contacts: summary.contacts,
    raw: raw ??
      (typeof doc === "string"
        ? doc
        : doc instanceof Uint8Array
        ? new TextDecoder().decode(doc)
        : ""),
  };
  if (summary.basic) event.basic = summary.basic;
  if (summary.note !== undefined) event.note = summary.note;
  if (summary.noteLang !== undefined) event.noteLang = summary.noteLang;
  return event;
}

function changeKey(e: PresenceEvent): string {
  return JSON.stringify([e.basic, e.status, e.activities, e.note, e.noteLang, e.contacts]);
}

/**
 * Watches buddies' presence.
 *
 * @example
 * ```ts
 * import { PresenceWatcher } from "./watcher.ts";
 * import { PresenceAgent } from "./agent.ts";
 * import { UserAgent } from "../sip/ua.ts";
 * import { LoopNetwork } from "../sip/transport_loop.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const ua = (aor: string, host: string) =>
 *   UserAgent.create({ aor, transports: [net.transport({ host })] });
 * const alice = await ua("alice@192.0.2.1", "192.0.2.1");
 * const bob = await ua("bob@192.0.2.2", "192.0.2.2");
 * const agent = new PresenceAgent(bob, { allow: ["sip:alice@192.0.2.1"], minInterval: 0 });
 * const seen: string[] = [];
 * const watcher = new PresenceWatcher(alice, {
 *   buddies: ["sip:bob@192.0.2.2"],
 *   onEvent: (e) => e.type === "presence" && seen.push(e.status),
 * });
 * await watcher.start();
 * await net.settled();
 * agent.setStatus("busy");
 * await net.settled();
 * assert.deepEqual(seen, ["online", "busy"]);
 * await watcher.close();
 * await agent.close();
 * await Promise.all([alice.close(), bob.close()]);
 * ```
 */
export class PresenceWatcher {
  readonly #ua: UserAgent;
  readonly #options: PresenceWatcherOptions;
  readonly #subs = new Map<string, Subscription>();
  readonly #last = new Map<string, PresenceEvent>();
  #list?: { uri: string; sub: Subscription };
  #started = false;
  #closed = false;
  #unlink?: () => void;
  /** Buddies re-sent to by mutual subscription: quick re-sends left, and the pending one. */
  readonly #quick = new Map<string, { left: number; timer?: TimerId }>();

  /** Creates the watcher; nothing is sent before {@linkcode start}. */
  constructor(ua: UserAgent, options: PresenceWatcherOptions = {}) {
    this.#ua = ua;
    this.#options = options;
    this.#unlink = options.agent?.addListener((e) => {
      if (e.change === "added") this.buddySubscribedToUs(e.uri);
    });
  }

  /** The buddies with an individual subscription. */
  get buddies(): string[] {
    return [...this.#subs.keys()];
  }

  /** Every subscription: one per buddy, plus the list's. */
  get subscriptions(): Subscription[] {
    return [...this.#subs.values(), ...(this.#list ? [this.#list.sub] : [])];
  }

  /** The last presence reported for a buddy. */
  presence(uri: string): PresenceEvent | undefined {
    for (const [k, v] of this.#last) if (sameBuddy(k, uri)) return v;
    return undefined;
  }

  /** The subscription of a buddy (or of the list URI). */
  subscription(uri: string): Subscription | undefined {
    if (this.#list && sameBuddy(this.#list.uri, uri)) return this.#list.sub;
    for (const [k, v] of this.#subs) if (sameBuddy(k, uri)) return v;
    return undefined;
  }

  /**
   * Subscribes to every buddy (and the list). Resolves when each initial
   * SUBSCRIBE has its answer; outcomes come as events.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const jobs: Promise<void>[] = [];
    if (this.#options.list) jobs.push(this.#startList(this.#options.list));
    for (const b of this.#options.buddies ?? []) jobs.push(this.add(b));
    await Promise.all(jobs);
  }

  /** Subscribes to one more buddy (nothing when already watched). */
  async add(uri: string): Promise<void> {
    if (this.#closed) throw new TypeError("Cannot add a buddy: the watcher is closed");
    const u = normalizeBuddyUri(uri);
    if (this.subscription(u) && !(this.#list && sameBuddy(this.#list.uri, u))) return;
    const sub = new Subscription(this.#ua, u, {
      event: "presence",
      accept: PRESENCE_ACCEPT,
      // RFC 3856 section 6.5: without Accept the notifier assumes
      // application/pidf+xml, all that PRESENCE_ACCEPT says; the initial
      // SUBSCRIBE keeps it, refreshes leave it out.
      refreshAccept: false,
      acceptEncoding: this.#options.compress === false ? undefined : ["deflate"],
      expires: this.#options.expires ?? 3600,
      backoffBase: this.#options.backoffBase,
      backoffMax: this.#options.backoffMax,
      random: this.#options.random,
      onNotify: (n) => this.#onBuddyNotify(u, n),
      onState: (s) => this.#emitState(u, s),
    });
    this.#subs.set(u, sub);
    this.#started = true;
    await sub.start();
  }

  /** Unsubscribes from a buddy and forgets it. */
  async remove(uri: string): Promise<void> {
    for (const [k, sub] of this.#subs) {
      if (!sameBuddy(k, uri)) continue;
      this.#subs.delete(k);
      this.#last.delete(k);
      await sub.unsubscribe();
    }
  }

  /**
   * Mutual subscription: the buddy just subscribed to us, so it is online;
   * a subscription to it that failed or is waiting to retry is sent again
   * at once. Returns true when a SUBSCRIBE went out.
   */
  buddySubscribedToUs(uri: string): boolean {
    if (this.#closed) return false;
    let any = false;
    for (const [k, sub] of this.#subs) {
      if (!sameBuddy(k, uri) || !sub.retryNow()) continue;
      any = true;
      // Should this re-send fail too, a couple of quick ones follow before the back-off.
      this.#clearQuick(k);
      this.#quick.set(k, { left: QUICK_RETRY_DELAYS.length });
    }
    return any;
  }

  #clearQuick(key: string): void {
    const q = this.#quick.get(key);
    if (q?.timer !== undefined) this.#ua.clock.clearTimeout(q.timer);
    this.#quick.delete(key);
  }

  /** After a mutual re-send failed: the next quick re-send, or undefined when none is left. */
  #quickRetry(key: string, s: SubscriptionStateChange): number | undefined {
    const q = this.#quick.get(key);
    if (!q) return undefined;
    if (s.state !== "failed" || s.retryIn === undefined || q.left === 0 || this.#closed) {
      // Subscribed (or pending), refused for good, or out of quick tries.
      this.#clearQuick(key);
      return undefined;
    }
    const delay = QUICK_RETRY_DELAYS[QUICK_RETRY_DELAYS.length - q.left];
    q.left--;
    if (delay >= s.retryIn) {
      this.#clearQuick(key);
      return undefined;
    }
    if (q.timer !== undefined) this.#ua.clock.clearTimeout(q.timer);
    q.timer = this.#ua.clock.setTimeout(() => {
      q.timer = undefined;
      this.#subs.get(key)?.retryNow();
    }, delay * 1000);
    return delay;
  }

  /**
   * Stops watching: unsubscribes everything (default; waits at most 64*T1
   * for the final NOTIFYs) or just drops the subscriptions and their timers
   * (`unsubscribe: false`, which also ends an unsubscribe still waiting).
   */
  async close(options: { unsubscribe?: boolean } = {}): Promise<void> {
    for (const key of [...this.#quick.keys()]) this.#clearQuick(key);
    const subs = [...this.#subs.values()];
    if (this.#list) subs.push(this.#list.sub);
    if (options.unsubscribe === false) {
      // Also cuts short an unsubscribe still waiting for its final NOTIFYs.
      this.#closed = true;
      this.#unlink?.();
      subs.forEach((s) => s.close());
      return;
    }
    if (this.#closed) return;
    this.#closed = true;
    this.#unlink?.();
    await Promise.all(subs.map((s) => s.unsubscribe()));
  }

  /**
   * Fetches each buddy's presence once (SUBSCRIBE with Expires: 0,
   * RFC 6665 section 4.4.3), in parallel.
   */
  static async fetch(ua: UserAgent, uris: string[]): Promise<PresenceFetchResult[]> {
    return await Promise.all(uris.map(async (raw) => {
      const uri = normalizeBuddyUri(raw);
      try {
        const n = await Subscription.fetch(ua, uri, { event: "presence", accept: PRESENCE_ACCEPT });
        const doc = presenceOf(n);
        if (!doc) {
          // E.g. a notifier that holds us pending sends no (or a neutral) document.
          const why = n.state.reason ? `${n.state.state}, ${n.state.reason}` : n.state.state;
          return {
            uri,
            error: { status: 200, reason: `NOTIFY without a presence document (${why})` },
          };
        }
        return { uri, presence: presenceEvent(uri, doc, new TextDecoder().decode(n.body)) };
      } catch (e) {
        const err = e as { status?: number; reason?: string; local?: boolean };
        const error: { status: number; reason: string; local?: boolean } = {
          status: err.status ?? 500,
          reason: err.reason ?? String(e),
        };
        if (err.local) error.local = true;
        return { uri, error };
      }
    }));
  }

  async #startList(uri: string): Promise<void> {
    const u = normalizeBuddyUri(uri);
    const sub = new Subscription(this.#ua, u, {
      event: "presence",
      accept: LIST_ACCEPT,
      // RFC 4662 section 4.1: the subscriber "MUST include a Supported header
      // field ... with 'eventlist'" in the SUBSCRIBE.
      headers: [["Supported", "eventlist"]],
      expires: this.#options.expires ?? 3600,
      backoffBase: this.#options.backoffBase,
      backoffMax: this.#options.backoffMax,
      random: this.#options.random,
      onNotify: (n) => this.#onListNotify(u, n),
      onState: (s) => this.#emitState(u, s),
    });
    this.#list = { uri: u, sub };
    await sub.start();
  }

  #onBuddyNotify(uri: string, n: SubscriptionNotify): void {
    const doc = presenceOf(n);
    if (doc) this.#emitPresence(presenceEvent(uri, doc, new TextDecoder().decode(n.body)));
  }

  #onListNotify(listUri: string, n: SubscriptionNotify): void {
    if (n.body.length === 0 || !n.contentType) return;
    const type = parseMediaType(n.contentType).type;
    if (type === PIDF_CONTENT_TYPE) {
      // The server sent the presence of the list URI itself (no list support).
      const doc = presenceOf(n);
      if (doc) this.#emitPresence(presenceEvent(listUri, doc, new TextDecoder().decode(n.body)));
      return;
    }
    if (type !== "multipart/related") return;
    let list;
    try {
      list = unpackListNotify(n.contentType, n.body);
    } catch {
      return;
    }
    const walk = (resources: typeof list.resources) => {
      for (const r of resources) {
        if (r.list) {
          walk(r.list.resources);
          continue;
        }
        const prev = this.#resourceStates.get(r.uri);
        const key = `${r.state}|${r.reason ?? ""}`;
        if (prev !== key) {
          this.#resourceStates.set(r.uri, key);
          const ev: SubscriptionEvent = {
            type: "subscription",
            uri: r.uri,
            state: r.state,
            list: listUri,
          };
          if (r.reason) ev.reason = r.reason;
          if (r.name) ev.name = r.name;
          this.#options.onEvent?.(ev);
        }
        if (r.presence && r.body) {
          const ev = presenceEvent(r.uri, r.presence, new TextDecoder().decode(r.body));
          ev.list = listUri;
          if (r.name) ev.name = r.name;
          this.#emitPresence(ev);
        }
      }
    };
    walk(list.resources);
  }

  #resourceStates = new Map<string, string>();

  #emitPresence(event: PresenceEvent): void {
    const prev = this.#last.get(event.uri);
    // Only changes are reported (a refresh NOTIFY repeats the same state).
    if (prev && changeKey(prev) === changeKey(event)) {
      this.#last.set(event.uri, event);
      return;
    }
    this.#last.set(event.uri, event);
    this.#options.onEvent?.(event);
  }

  #emitState(uri: string, s: SubscriptionStateChange): void {
    const ev: SubscriptionEvent = { type: "subscription", uri, state: s.state };
    if (s.reason !== undefined) ev.reason = s.reason;
    if (s.status !== undefined) ev.status = s.status;
    const quick = this.#quickRetry(uri, s);
    if (quick !== undefined) ev.retryIn = quick;
    else if (s.retryIn !== undefined) ev.retryIn = s.retryIn;
    this.#options.onEvent?.(ev);
  }
}

/** The PIDF document of a NOTIFY, when it has one that parses. */
function presenceOf(n: SubscriptionNotify): Uint8Array | undefined {
  if (n.body.length === 0 || !n.contentType) return undefined;
  try {
    if (parseMediaType(n.contentType).type !== PIDF_CONTENT_TYPE) return undefined;
    presenceToStatus(n.body);
    return n.body;
  } catch {
    return undefined;
  }
}
