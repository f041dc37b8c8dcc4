/**
 * The edge presence agent (the thesis model: every client is its own
 * presence server): answers SUBSCRIBE with Event: presence through a
 * {@linkcode Notifier}, sends a PIDF document built from one of the six user
 * statuses at once and on every change, authorizes watchers (allow list,
 * then accept / pending / reject for the rest), and sends at most one NOTIFY
 * per watcher per `minInterval` (RFC 6446 style) while the last state always
 * gets through.
 *
 * @module
 */

import { formatUri } from "../sip/message.ts";
import {
  type EventPackage,
  Notifier,
  type NotifierEvent,
  type NotifyContent,
  type ServerSubscription,
  type SubscribeDecision,
} from "../sip/events/notifier.ts";
import type { UserAgent } from "../sip/ua.ts";
import { PIDF_CONTENT_TYPE } from "./pidf.ts";
import { normalizeBuddyUri, sameBuddy } from "./resource_lists.ts";
import { isUserStatus, statusToPidf, type UserStatus } from "./status.ts";
import { formatWatcherInfo, type Watcher, WATCHERINFO_CONTENT_TYPE } from "./watcherinfo.ts";

/** What to do with a watcher that is not on the allow list. */
export type UnknownWatcherPolicy = "accept" | "pending" | "reject";

/** Options of {@linkcode PresenceAgent}. */
export interface PresenceAgentOptions {
  /** The presentity URI in the documents. Default the UA's AOR. */
  entity?: string;
  /** Initial status. Default "online". */
  status?: UserStatus;
  /** Initial note. */
  note?: string;
  /** The note's language (`xml:lang`, e.g. "fr"). */
  noteLang?: string;
  /** Contact URI to put in the tuple. Default none. */
  contact?: string;
  /** Watchers accepted at once (buddy list, `--allow`). */
  allow?: string[];
  /** Policy for other watchers. Default "pending". */
  unknown?: UnknownWatcherPolicy;
  /** At most one NOTIFY per watcher per this many milliseconds. Default 1000. */
  minInterval?: number;
  /** Subscription duration when the SUBSCRIBE names none, seconds. Default 3600. */
  defaultExpires?: number;
  /** Shortest duration accepted (423 below), seconds. Default 60. */
  minExpires?: number;
  /** Longest duration granted, seconds. Default 86400. */
  maxExpires?: number;
  /**
   * Conditional notification (RFC 5839): entity-tags on NOTIFYs, and 204
   * without a NOTIFY to a refresh that already has the current state.
   * Default true (it only acts when the watcher asks with Suppress-If-Match).
   */
  entityTags?: boolean;
  /**
   * Compress documents with deflate (RFC 3261 section 20.12) for watchers
   * whose SUBSCRIBE says `Accept-Encoding: deflate`; others (baresip,
   * Kamailio, linphone) always get plain PIDF. Default true.
   */
  compress?: boolean;
  /** Start documents with the XML declaration. Default false (39 bytes less per NOTIFY). */
  xmlDeclaration?: boolean;
  /**
   * Also serve watcher information (RFC 3857 `presence.winfo`, RFC 3858
   * documents) to the user's own other clients (subscribers whose URI is
   * the entity); others get 403. Default false.
   */
  winfo?: boolean;
  /** The notifier to plug into (to share one with other packages). Default: a new one on `ua`. */
  notifier?: Notifier;
  /** Receives watcher events. */
  onEvent?: (event: PresenceAgentEvent) => void;
}

/** A watcher came, refreshed, was allowed, or went. */
export interface PresenceAgentEvent {
  /** Always "watcher". */
  type: "watcher";
  /** added, refreshed, allowed (pending to active), removed. */
  change: "added" | "refreshed" | "allowed" | "removed";
  /** The watcher's URI (From of its SUBSCRIBE). */
  uri: string;
  /** The subscription's state now. */
  state: "active" | "pending" | "terminated";
  /** Seconds the subscription has left (0 when removed). */
  expires: number;
  /** Why it was removed: a termination reason, or the status of a failed NOTIFY. */
  reason?: string;
}

/** One watcher of the agent. */
export interface PresenceWatcherInfo {
  /** The watcher's URI. */
  uri: string;
  /** active or pending. */
  state: "active" | "pending";
  /** Seconds left. */
  expires: number;
}

/**
 * The user's presence agent.
 *
 * @example
 * ```ts ignore
 * const agent = new PresenceAgent(ua, { status: "online", allow: ["sip:bob@example.test"] });
 * agent.setStatus("busy", { note: "in a meeting" });
 * agent.allow("sip:carol@example.test");
 * await agent.close();
 * ```
 */
export class PresenceAgent {
  /** The notifier it is plugged into. */
  readonly notifier: Notifier;
  /** The presentity URI. */
  readonly entity: string;
  readonly #options: PresenceAgentOptions;
  #status: UserStatus;
  #note?: string;
  #noteLang?: string;
  #contact?: string;
  #allow: string[];
  #closing = false;
  readonly #listeners = new Set<(event: PresenceAgentEvent) => void>();

  /** Creates the agent and plugs the presence package into the notifier. */
  constructor(ua: UserAgent, options: PresenceAgentOptions = {}) {
    this.#options = options;
    this.notifier = options.notifier ?? new Notifier(ua);
    const aor = structuredClone(ua.aor);
    aor.params = {};
    aor.headers = {};
    this.entity = options.entity ?? formatUri(aor);
    this.#status = options.status ?? "online";
    if (!isUserStatus(this.#status)) throw new TypeError(`Unknown user status: ${this.#status}`);
    this.#note = options.note;
    this.#noteLang = options.noteLang;
    this.#contact = options.contact;
    this.#allow = (options.allow ?? []).map(normalizeBuddyUri);
    const pkg: EventPackage = {
      event: "presence",
      contentTypes: [PIDF_CONTENT_TYPE],
      defaultExpires: options.defaultExpires ?? 3600,
      minExpires: options.minExpires ?? 60,
      maxExpires: options.maxExpires ?? 86400,
      minInterval: options.minInterval ?? 1000,
      entityTags: options.entityTags ?? true,
      encodings: options.compress === false ? [] : ["deflate"],
      authorize: (sub) => this.#authorize(sub),
      content: (sub) => this.#content(sub),
    };
    this.notifier.addPackage(pkg);
    if (options.winfo) {
      this.notifier.addPackage({
        event: "presence.winfo",
        contentTypes: [WATCHERINFO_CONTENT_TYPE],
        defaultExpires: options.defaultExpires ?? 3600,
        minExpires: options.minExpires ?? 60,
        maxExpires: options.maxExpires ?? 86400,
        minInterval: options.minInterval ?? 1000,
        // RFC 3857 section 5.4: watcher information is for the presentity itself.
        authorize: (sub) => sameBuddy(sub.subscriberUri, this.entity) ? "active" : { reject: 403 },
        content: (sub) => this.#winfo(sub),
      });
    }
    this.notifier.addListener((e) => this.#forward(e));
  }

  #watcherIds = new WeakMap<ServerSubscription, string>();
  #nextWatcherId = 1;

  #watcherId(s: ServerSubscription): string {
    let id = this.#watcherIds.get(s);
    if (!id) {
      id = `w${this.#nextWatcherId++}`;
      this.#watcherIds.set(s, id);
    }
    return id;
  }

  #winfo(sub: ServerSubscription): NotifyContent {
    const version = typeof sub.data.winfoVersion === "number" ? sub.data.winfoVersion : 0;
    sub.data.winfoVersion = version + 1;
    const watchers: Watcher[] = this.notifier.subscriptions("presence").map((s) => ({
      id: this.#watcherId(s),
      uri: s.subscriberUri,
      status: s.state === "active" ? "active" : "pending",
      event: s.state === "active" ? (s.authorized ? "approved" : "subscribe") : "subscribe",
      expiration: s.expires,
    }));
    return {
      body: formatWatcherInfo({
        version,
        state: "full",
        lists: [{ resource: this.entity, package: "presence", watchers }],
      }),
      contentType: WATCHERINFO_CONTENT_TYPE,
    };
  }

  #forward(e: NotifierEvent): void {
    if (e.subscription.event.package !== "presence") return;
    const s = e.subscription;
    const event: PresenceAgentEvent = {
      type: "watcher",
      change: e.type === "state" ? "allowed" : e.type,
      uri: s.subscriberUri,
      state: s.state,
      expires: e.type === "removed" ? 0 : s.expires,
    };
    if (e.reason !== undefined) event.reason = e.reason;
    if (e.type !== "refreshed") this.notifier.notifyAll("presence.winfo");
    this.#options.onEvent?.(event);
    for (const l of this.#listeners) l(event);
  }

  /** Adds a listener for watcher events (besides `options.onEvent`); returns its remover. */
  addListener(listener: (event: PresenceAgentEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The current status. */
  get status(): UserStatus {
    return this.#status;
  }

  /** The current note. */
  get note(): string | undefined {
    return this.#note;
  }

  /**
   * Changes the status (and note, its language and contact: `undefined`
   * keeps them, `null` clears them; a new or cleared note without
   * `noteLang` has no language) and notifies every active watcher, unless
   * nothing changed.
   */
  setStatus(
    status: UserStatus,
    options: { note?: string | null; noteLang?: string | null; contact?: string | null } = {},
  ): void {
    if (!isUserStatus(status)) throw new TypeError(`Unknown user status: ${String(status)}`);
    const note = options.note === undefined ? this.#note : options.note ?? undefined;
    const noteLang = options.noteLang !== undefined
      ? options.noteLang ?? undefined
      : options.note === undefined
      ? this.#noteLang
      : undefined;
    const contact = options.contact === undefined ? this.#contact : options.contact ?? undefined;
    if (
      status === this.#status && note === this.#note && noteLang === this.#noteLang &&
      contact === this.#contact
    ) return;
    this.#status = status;
    this.#note = note;
    this.#noteLang = noteLang;
    this.#contact = contact;
    // Pending watchers see the neutral document, which did not change.
    this.notifier.notifyAll("presence", (s) => s.state === "active");
  }

  /**
   * The PIDF document active watchers get now (`inlineNamespaces`: see
   * `FormatPidfOptions` in pidf.ts).
   */
  document(options: { inlineNamespaces?: boolean } = {}): string {
    return statusToPidf(this.#closing ? "offline" : this.#status, {
      inlineNamespaces: options.inlineNamespaces,
      entity: this.entity,
      note: this.#closing ? undefined : this.#note,
      noteLang: this.#closing ? undefined : this.#noteLang,
      contact: this.#contact,
      xmlDeclaration: this.#options.xmlDeclaration ?? false,
    });
  }

  /** Adds a watcher to the allow list and activates its pending subscriptions. */
  allow(uri: string): void {
    const u = normalizeBuddyUri(uri);
    if (!this.#allow.some((a) => sameBuddy(a, u))) this.#allow.push(u);
    for (const s of this.notifier.subscriptions("presence")) {
      if (s.state === "pending" && sameBuddy(s.subscriberUri, u)) s.activate();
    }
  }

  /**
   * Takes a watcher off the allow list and ends its subscriptions with
   * reason "rejected" (it should not subscribe again).
   */
  async deny(uri: string): Promise<void> {
    this.#allow = this.#allow.filter((a) => !sameBuddy(a, uri));
    await Promise.all(
      this.notifier.subscriptions("presence")
        .filter((s) => sameBuddy(s.subscriberUri, uri))
        .map((s) => s.terminate("rejected")),
    );
  }

  /** The current watchers. */
  watchers(): PresenceWatcherInfo[] {
    return this.notifier.subscriptions("presence").map((s) => ({
      uri: s.subscriberUri,
      state: s.state === "active" ? "active" : "pending",
      expires: s.expires,
    }));
  }

  /**
   * Ends every presence subscription with a final NOTIFY that says offline
   * (basic closed), reason "probation" by default: the presentity still
   * exists, only its agent goes away, so watchers keep the subscription and
   * retry later with their back-off (RFC 6665 section 4.1.3: "the client
   * SHOULD retry at some later time"), or at once when we subscribe to them
   * again (mutual subscription). With "noresource" a plain watcher would
   * never see us again after a restart.
   * `notify: false` drops them without a NOTIFY (timers stop).
   */
  async close(options: { reason?: string; notify?: boolean } = {}): Promise<void> {
    this.#closing = true;
    if (options.notify === false) {
      for (const s of this.notifier.subscriptions("presence")) s.drop();
      return;
    }
    await Promise.all(
      this.notifier.subscriptions("presence").map((s) =>
        s.terminate(options.reason ?? "probation")
      ),
    );
  }

  #authorize(sub: ServerSubscription): SubscribeDecision {
    if (this.#closing) return { reject: 480, reason: "Temporarily Unavailable" };
    if (this.#allow.some((a) => sameBuddy(a, sub.subscriberUri))) return "active";
    const policy = this.#options.unknown ?? "pending";
    if (policy === "accept") return "active";
    if (policy === "reject") return { reject: 403 };
    return "pending";
  }

  #content(sub: ServerSubscription): NotifyContent {
    if (sub.authorized) {
      // A watcher that takes deflate is no prefix-matching simple peer.
      const inline = sub.contentCoding !== undefined;
      return { body: this.document({ inlineNamespaces: inline }), contentType: PIDF_CONTENT_TYPE };
    }
    // A pending watcher sees a neutral document: basic closed, nothing else.
    return {
      body: statusToPidf("offline", {
        entity: this.entity,
        xmlDeclaration: this.#options.xmlDeclaration ?? false,
      }),
      contentType: PIDF_CONTENT_TYPE,
    };
  }
}
