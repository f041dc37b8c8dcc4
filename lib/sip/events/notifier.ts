/**
 * The notifier side of the SIP event framework (RFC 6665 section 4.2): a
 * {@linkcode Notifier} answers SUBSCRIBE for the event packages plugged into
 * it (489 for others), creates the dialog, keeps each
 * {@linkcode ServerSubscription} with its state and expiry, sends NOTIFY at
 * once after the 200/202, on demand (with an optional minimum interval, RFC
 * 6446 style) and at the end, handles refreshes and unsubscribes, and drops
 * expired subscriptions. Every timer runs on the UA's clock.
 *
 * @module
 */

import type { TimerId } from "../clock.ts";
import { Dialog } from "../dialog.ts";
import { SipRequestError } from "../errors.ts";
import { createResponse, formatUri, type NameAddr, type SipRequest, type Uri } from "../message.ts";
import { generateTag } from "../transaction/mod.ts";
import { formatAddress } from "../uri.ts";
import type { IncomingRequest, UserAgent } from "../ua.ts";
import {
  chooseCoding,
  type ContentCoding,
  contentCodingsLoaded,
  encodeBody,
  loadContentCodings,
} from "./encoding.ts";
import {
  type EventHeader,
  formatEvent,
  formatSubscriptionState,
  parseEvent,
  readEventHeader,
  sameEvent,
} from "./headers.ts";

/** The body of a NOTIFY. */
export interface NotifyContent {
  /** The document. */
  body: string | Uint8Array;
  /** Its Content-Type value. */
  contentType: string;
}

/**
 * What a package decides for a new subscription: accept it (`active`), hold
 * it until authorized (`pending`), or refuse it with a status (403 default).
 */
export type SubscribeDecision = "active" | "pending" | { reject: number; reason?: string };

/** An event package plugged into a {@linkcode Notifier}. */
export interface EventPackage {
  /** The package name, e.g. "presence" or "presence.winfo" (lower case). */
  event: string;
  /**
   * Media types the package can send, preferred first. A SUBSCRIBE whose
   * Accept allows none of them gets 406. Default: no check.
   */
  contentTypes?: string[];
  /** Duration when the SUBSCRIBE has no Expires, seconds. Default 3600. */
  defaultExpires?: number;
  /** Shortest duration accepted (423 below), seconds. Default 60; 0 accepts any. */
  minExpires?: number;
  /** Longest duration granted (longer requests are shortened), seconds. Default 86400. */
  maxExpires?: number;
  /**
   * At most one NOTIFY per subscription per this many milliseconds (RFC 6446
   * style); changes in between are merged and the last state is sent when
   * the interval is over. Final NOTIFYs, and those that answer a refresh or
   * an activation (RFC 6665 section 4.2.2: "immediately"), are never held.
   * Default 0.
   */
  minInterval?: number;
  /**
   * Conditional event notification (RFC 5839): put an entity-tag (SIP-ETag)
   * on every NOTIFY, and answer a refresh whose Suppress-If-Match names the
   * state last sent with 204 (No Notification) instead of repeating it.
   * Default false.
   */
  entityTags?: boolean;
  /**
   * Content codings (RFC 3261 section 20.12) the package may apply to NOTIFY
   * bodies, preferred first, e.g. `["deflate"]`. A body is compressed only
   * for a subscriber that listed the coding in the Accept-Encoding of its
   * initial SUBSCRIBE (others get it as it is; a refresh that carries
   * Accept-Encoding changes the choice, one without keeps it), and only when
   * that makes the message smaller. Default none.
   */
  encodings?: readonly ContentCoding[];
  /** Status of the answer to a SUBSCRIBE held pending: 202 (RFC 3265) or 200 (RFC 6665). Default 202. */
  pendingStatus?: 200 | 202;
  /** Decides on a new subscription. Default: "active". */
  authorize?(
    subscription: ServerSubscription,
    request: SipRequest,
  ): SubscribeDecision | Promise<SubscribeDecision>;
  /**
   * The body of the next NOTIFY to this subscription (called when it is
   * sent, so the latest state goes out); undefined sends none.
   */
  content(subscription: ServerSubscription): NotifyContent | undefined;
}

/** What a {@linkcode Notifier} reports. */
export interface NotifierEvent {
  /** added: a new subscription was accepted (active or pending); refreshed; state: pending to active; removed: it ended. */
  type: "added" | "refreshed" | "state" | "removed";
  /** The subscription. */
  subscription: ServerSubscription;
  /** Why it ended (removed): a termination reason, or the NOTIFY failure ("481", "408"). */
  reason?: string;
}

/** Options of {@linkcode Notifier}. */
export interface NotifierOptions {
  /** Receives subscription events. */
  onEvent?: (event: NotifierEvent) => void;
}

/** The states of a {@linkcode ServerSubscription}. */
export type ServerSubscriptionState = "pending" | "active" | "terminated";

/**
 * RFC 6665 section 4.2.2: NOTIFY answers after which the subscription is
 * removed (481, 408 and a transaction timeout, and the answers a subscriber
 * gives when it has no such subscription).
 */
const NOTIFY_FATAL = new Set([
  404,
  405,
  408,
  410,
  416,
  480,
  481,
  482,
  483,
  484,
  485,
  489,
  501,
  604,
]);

/**
 * Receives SUBSCRIBE requests for its event packages.
 *
 * @example
 * ```ts ignore
 * const notifier = new Notifier(ua, { onEvent: (e) => console.log(e.type) });
 * notifier.addPackage({
 *   event: "presence",
 *   contentTypes: ["application/pidf+xml"],
 *   content: () => ({ body: pidf, contentType: "application/pidf+xml" }),
 * });
 * // later, on a change:
 * notifier.notifyAll("presence");
 * ```
 */
export class Notifier {
  readonly #ua: UserAgent;
  readonly #options: NotifierOptions;
  readonly #packages = new Map<string, EventPackage>();
  readonly #subs = new Set<ServerSubscription>();
  readonly #listeners = new Set<(event: NotifierEvent) => void>();
  #closed = false;

  /** Creates the notifier and takes over out-of-dialog SUBSCRIBE requests of `ua`. */
  constructor(ua: UserAgent, options: NotifierOptions = {}) {
    this.#ua = ua;
    this.#options = options;
    ua.handle("SUBSCRIBE", (incoming) => this.#onSubscribe(incoming));
  }

  /** The user agent. */
  get ua(): UserAgent {
    return this.#ua;
  }

  /** Adds a listener for subscription events (besides `options.onEvent`); returns its remover. */
  addListener(listener: (event: NotifierEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Plugs in an event package (replacing one of the same name). */
  addPackage(pkg: EventPackage): void {
    this.#packages.set(pkg.event.toLowerCase(), pkg);
    // The coder is loaded on demand (start-up of commands that never code
    // a body); start now, so it is there when the first SUBSCRIBE comes.
    if (pkg.encodings?.length) loadContentCodings().catch(() => {});
  }

  /** The names of the packages, for Allow-Events. */
  get packages(): string[] {
    return [...this.#packages.keys()];
  }

  /** The live subscriptions (of one package, when given). */
  subscriptions(event?: string): ServerSubscription[] {
    return [...this.#subs].filter((s) =>
      s.state !== "terminated" && (event === undefined || s.event.package === event)
    );
  }

  /** Sends the current state to every live subscription of a package (those `filter` keeps). */
  notifyAll(event: string, filter?: (s: ServerSubscription) => boolean): void {
    for (const s of this.subscriptions(event)) if (!filter || filter(s)) s.notify();
  }

  /**
   * Terminates every subscription with `reason` (default "noresource") and
   * waits for the answers to the final NOTIFYs; new SUBSCRIBEs get 480.
   * With `notify: false` the subscriptions are dropped without a NOTIFY
   * (the UA is going away and cannot send any more).
   */
  async close(options: { reason?: string; notify?: boolean } = {}): Promise<void> {
    this.#closed = true;
    if (options.notify === false) {
      for (const s of [...this.#subs]) s.drop();
      return;
    }
    await Promise.all(
      this.subscriptions().map((s) => s.terminate(options.reason ?? "noresource")),
    );
  }

  /** @internal */
  _emit(event: NotifierEvent): void {
    if (event.type === "removed") this.#subs.delete(event.subscription);
    this.#options.onEvent?.(event);
    for (const l of this.#listeners) l(event);
  }

  async #onSubscribe(incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    if (this.#closed) {
      await incoming.respond(480);
      return;
    }
    const event = await readEventHeader(incoming);
    if (!event) return;
    const pkg = this.#packages.get(event.package);
    if (!pkg) {
      // Section 4.2.1.1: "... the notifier ... MUST respond with a 489 (Bad
      // Event) response" for a package it does not understand; Allow-Events
      // lists those it does (section 8.2.2).
      await incoming.respond(489, { headers: [["Allow-Events", this.packages.join(", ")]] });
      return;
    }
    const expires = checkExpires(req, pkg);
    if (typeof expires === "object") {
      await incoming.respond(423, { headers: [["Min-Expires", String(expires.min)]] });
      return;
    }
    const accept = acceptList(req);
    if (pkg.contentTypes && accept.length > 0 && !chooseType(accept, pkg.contentTypes)) {
      await incoming.respond(406, { headers: [["Accept", pkg.contentTypes.join(", ")]] });
      return;
    }
    if (!req.contact[0]) {
      await incoming.respond(400, { reason: "Missing Contact header" });
      return;
    }
    if (pkg.encodings?.length && !contentCodingsLoaded()) {
      // Rarely still loading (addPackage started it): wait, so the first
      // NOTIFY is coded as the subscriber asked. If the import failed,
      // bodies go uncoded (identity), which every subscriber reads.
      await loadContentCodings().catch(() => {});
    }
    const toTag = generateTag();
    const contact = await this.#ua.contactFor({
      protocol: incoming.info.protocol,
      host: incoming.info.remote.host,
      port: incoming.info.remote.port,
    });
    const contactValue = formatAddress({ uri: contact, params: {} });
    const dialog = Dialog.createUas(
      req,
      createResponse(req, 200, { toTag, headers: [["Contact", contactValue]] }),
    );
    const sub = new ServerSubscription(this, pkg, {
      dialog,
      event,
      request: req,
      accept,
      expires,
    });
    const decision = pkg.authorize ? await pkg.authorize(sub, req) : "active";
    if (typeof decision === "object") {
      await incoming.respond(decision.reject || 403, { reason: decision.reason });
      return;
    }
    this.#subs.add(sub);
    this.#ua.addDialog(dialog.id, (i) => sub._onRequest(i));
    const status = decision === "pending" ? (pkg.pendingStatus ?? 202) : 200;
    await incoming.respond(status, {
      toTag,
      headers: [["Contact", contactValue], ["Expires", String(expires)]],
    });
    sub._start(decision, expires);
  }
}

/** The Expires a SUBSCRIBE asks for, checked against the package (or the 423 minimum). */
function checkExpires(req: SipRequest, pkg: EventPackage): number | { min: number } {
  const asked = req.expires ?? pkg.defaultExpires ?? 3600;
  const min = pkg.minExpires ?? 60;
  // Section 4.2.1.1: a notifier "MAY" reject too short a subscription with
  // 423 (Interval Too Brief) carrying Min-Expires; 0 (fetch, unsubscribe) is fine.
  if (asked > 0 && asked < min) return { min };
  return Math.min(asked, pkg.maxExpires ?? 86400);
}

/** The media ranges of the Accept headers, lower case, without parameters. */
function acceptList(req: SipRequest): string[] {
  return req.headers.values("Accept")
    .map((v) => v.split(";")[0].trim().toLowerCase())
    .filter((v) => v !== "");
}

/** The first of `offered` that a media range of `accept` allows. */
function chooseType(accept: string[], offered: string[]): string | undefined {
  return offered.find((t) => {
    const type = t.split(";")[0].trim().toLowerCase();
    return accept.some((a) =>
      a === "*/*" || a === type || (a.endsWith("/*") && type.startsWith(a.slice(0, -1)))
    );
  });
}

/**
 * A short entity-tag for a state and document: FNV-1a, 30 of its 32 bits in
 * 5 token characters (RFC 5839 asks only that tags of different states of a
 * resource differ).
 */
function entityTag(state: string, content: NotifyContent | undefined): string {
  let h = 0x811c9dc5;
  const feed = (bytes: Uint8Array) => {
    for (const b of bytes) {
      h ^= b;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  };
  const enc = new TextEncoder();
  feed(enc.encode(`${state}\n${content?.contentType ?? ""}\n`));
  if (content) feed(typeof content.body === "string" ? enc.encode(content.body) : content.body);
  const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  let tag = "";
  for (let i = 0; i < 5; i++) tag += chars[(h >>> (6 * i)) & 63];
  return tag;
}

/** Parts of a new {@linkcode ServerSubscription}. */
interface ServerSubscriptionInit {
  dialog: Dialog;
  event: EventHeader;
  request: SipRequest;
  accept: string[];
  expires: number;
}

/**
 * One subscription a {@linkcode Notifier} accepted. NOTIFYs to it go one at
 * a time, in order (a change made while one is on the way is sent after it),
 * and never more often than the package's `minInterval`.
 */
export class ServerSubscription {
  /** The Event header (package and id). */
  readonly event: EventHeader;
  /** The dialog. */
  readonly dialog: Dialog;
  /** The subscriber (From of the SUBSCRIBE, without tag). */
  readonly subscriber: NameAddr;
  /** The subscriber's URI as text, e.g. "sip:alice@example.test". */
  readonly subscriberUri: string;
  /** The resource subscribed to (Request-URI of the initial SUBSCRIBE). */
  readonly resource: string;
  /** The media ranges the subscriber accepts (empty: the package default). */
  readonly accept: string[];
  /** The last SUBSCRIBE received for it. */
  request: SipRequest;
  /** The Accept-Encoding values that govern NOTIFY bodies (the last SUBSCRIBE that had any). */
  #acceptEncoding: string[];
  /** Free slot for the package's own data. */
  data: Record<string, unknown> = {};
  readonly #notifier: Notifier;
  readonly #pkg: EventPackage;
  #state: ServerSubscriptionState = "pending";
  #authorized = false;
  #expiresAt = 0;
  #expireTimer?: TimerId;
  #throttleTimer?: TimerId;
  #dirty = false;
  #sending = false;
  #lastSentAt?: number;
  #final?: { reason: string; retryAfter?: number };
  #finalSent = false;
  #removed = false;
  #lastEtag?: string;
  #urgent = false;
  #lastState?: ServerSubscriptionState;
  #idleWaiters: (() => void)[] = [];
  #notifyCount = 0;

  /** @internal Created by the notifier. */
  constructor(notifier: Notifier, pkg: EventPackage, init: ServerSubscriptionInit) {
    this.#notifier = notifier;
    this.#pkg = pkg;
    this.event = init.event;
    this.dialog = init.dialog;
    this.subscriber = this.dialog.remote;
    const uri = structuredClone(this.subscriber.uri);
    uri.params = {};
    uri.headers = {};
    this.subscriberUri = formatUri(uri);
    const res = structuredClone(init.request.uri);
    res.params = {};
    res.headers = {};
    this.resource = formatUri(res);
    this.accept = init.accept;
    this.request = init.request;
    this.#acceptEncoding = init.request.headers.values("Accept-Encoding");
    this.#expiresAt = notifier.ua.clock.now() + init.expires * 1000;
  }

  /** pending, active or terminated. */
  get state(): ServerSubscriptionState {
    return this.#state;
  }

  /** True once the subscription was active (authorized), even after it ended. */
  get authorized(): boolean {
    return this.#authorized;
  }

  /** Seconds left. */
  get expires(): number {
    return Math.max(0, Math.round((this.#expiresAt - this.#notifier.ua.clock.now()) / 1000));
  }

  /** How many NOTIFYs were sent. */
  get notifyCount(): number {
    return this.#notifyCount;
  }

  /** The package's media type the subscriber accepts best (the package's first when it said nothing). */
  get contentType(): string | undefined {
    const offered = this.#pkg.contentTypes ?? [];
    return this.accept.length === 0 ? offered[0] : chooseType(this.accept, offered);
  }

  /**
   * The content coding its NOTIFY bodies get (the package's first that the
   * subscriber accepts), or undefined: plain.
   */
  get contentCoding(): ContentCoding | undefined {
    const codings = this.#pkg.encodings;
    return codings?.length ? chooseCoding(this.#acceptEncoding, codings) : undefined;
  }

  /** Moves a pending subscription to active and notifies (authorization granted). */
  activate(): void {
    if (this.#state !== "pending") return;
    this.#state = "active";
    this.#authorized = true;
    this.#notifier._emit({ type: "state", subscription: this });
    this.#urgent = true;
    this.notify();
  }

  /**
   * Sends the current state: at once, or when the minimum interval since the
   * last NOTIFY is over, or after the NOTIFY on the way (changes merge).
   */
  notify(): void {
    if (this.#state === "terminated") return;
    this.#dirty = true;
    this.#pump();
  }

  /**
   * Mobility: our Contact moved (the host's address changed). The dialog
   * takes `uri` as local target and a NOTIFY goes at once (NOTIFY is a
   * target refresh request, RFC 6665 section 4.1), so the subscriber's
   * refreshes reach the new address. Resolves when it was answered.
   */
  updateLocalContact(uri: Uri): Promise<void> {
    if (this.#state === "terminated") return Promise.resolve();
    const old = this.dialog.localContact;
    this.dialog.localContact = { ...(old ?? { params: {} }), uri: structuredClone(uri) };
    this.#urgent = true;
    this.notify();
    return this.settled();
  }

  /**
   * Ends the subscription with a final NOTIFY (`Subscription-State:
   * terminated;reason=...`), section 4.2.2; resolves when it was answered.
   * Reasons: deactivated, probation, rejected, timeout, giveup, noresource,
   * invariant (section 4.1.3).
   */
  terminate(reason = "noresource", options: { retryAfter?: number } = {}): Promise<void> {
    if (this.#state !== "terminated") {
      this.#state = "terminated";
      this.#final = { reason, retryAfter: options.retryAfter };
      this.#clearTimers();
      this.#dirty = true;
      this.#pump();
    }
    return this.settled();
  }

  /**
   * Forgets the subscription without a NOTIFY: timers stop, the dialog is
   * removed, and a `removed` event with reason "dropped" is emitted.
   */
  drop(): void {
    if (this.#removed) return;
    this.#state = "terminated";
    this.#finalSent = true;
    this.#dirty = false;
    this.#remove("dropped");
    this.#wakeIdle();
  }

  /** Resolves when no NOTIFY is waiting or on the way. */
  settled(): Promise<void> {
    if (!this.#sending && !this.#dirty) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** @internal Sends the first NOTIFY and arms the expiry after the 2xx. */
  _start(decision: "active" | "pending", expires: number): void {
    this.#state = decision;
    this.#authorized = decision === "active";
    if (expires === 0) {
      // Section 4.4.3: a fetch gets one NOTIFY with the state, terminated.
      this.#notifier._emit({ type: "added", subscription: this });
      this.terminate("timeout");
      return;
    }
    this.#arm(expires);
    this.#notifier._emit({ type: "added", subscription: this });
    // Section 4.2.2: "Upon successfully accepting or refreshing a
    // subscription, notifiers MUST send a NOTIFY request immediately".
    this.notify();
  }

  /** @internal An in-dialog request: a refresh or an unsubscribe. */
  async _onRequest(incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    if (req.method !== "SUBSCRIBE") {
      await incoming.respond(405, { headers: [["Allow", "SUBSCRIBE"]] });
      return;
    }
    if (!this.dialog.receiveRequest(req)) {
      await incoming.respond(500, { reason: "Out of order" });
      return;
    }
    let event: EventHeader | undefined;
    try {
      const text = req.headers.get("Event");
      event = text === undefined ? undefined : parseEvent(text);
    } catch {
      event = undefined;
    }
    if (!event || !sameEvent(event, this.event)) {
      await incoming.respond(489, { headers: [["Allow-Events", this.event.package]] });
      return;
    }
    if (this.#state === "terminated") {
      await incoming.respond(481);
      return;
    }
    const expires = checkExpires(req, this.#pkg);
    if (typeof expires === "object") {
      await incoming.respond(423, { headers: [["Min-Expires", String(expires.min)]] });
      return;
    }
    this.request = req;
    if (req.headers.has("Accept-Encoding")) {
      this.#acceptEncoding = req.headers.values("Accept-Encoding");
    }
    if (expires > 0 && this.#canSuppress(req.headers.get("Suppress-If-Match"))) {
      // RFC 5839 section 5: the subscriber has the current state already;
      // 204 (No Notification) refreshes the subscription without a NOTIFY.
      // Armed first: a NOTIFY being built meanwhile says the new expiry.
      this.#arm(expires);
      await incoming.respond(204, { headers: [["Expires", String(expires)]] });
      this.#notifier._emit({ type: "refreshed", subscription: this });
      return;
    }
    await incoming.respond(200, { headers: [["Expires", String(expires)]] });
    if (expires === 0) {
      // Section 4.1.2.3: unsubscribing is a refresh with Expires 0; the
      // notifier sends a final NOTIFY.
      await this.terminate("timeout");
      return;
    }
    this.#arm(expires);
    this.#notifier._emit({ type: "refreshed", subscription: this });
    // Section 4.2.2: "immediately", so the rate limit does not hold it back.
    this.#urgent = true;
    this.notify();
  }

  /**
   * True when the subscriber has, or is being sent, the current state: its
   * entity-tag names the state last sent, or a NOTIFY with the current state
   * is on its way (a refresh that crossed that NOTIFY would otherwise cost a
   * second NOTIFY with the same content); and nothing newer waits.
   */
  #canSuppress(tag: string | undefined): boolean {
    if (!this.#pkg.entityTags || tag === undefined || this.#lastEtag === undefined) return false;
    return (tag.trim() === this.#lastEtag || this.#sending) && !this.#dirty &&
      this.#lastState === this.#state;
  }

  #arm(expires: number): void {
    const clock = this.#notifier.ua.clock;
    this.#expiresAt = clock.now() + expires * 1000;
    if (this.#expireTimer !== undefined) clock.clearTimeout(this.#expireTimer);
    this.#expireTimer = clock.setTimeout(() => {
      this.#expireTimer = undefined;
      // Section 4.2.2: an expired subscription ends with reason=timeout.
      this.terminate("timeout").catch(() => {});
    }, expires * 1000);
  }

  #clearTimers(): void {
    const clock = this.#notifier.ua.clock;
    if (this.#expireTimer !== undefined) clock.clearTimeout(this.#expireTimer);
    if (this.#throttleTimer !== undefined) clock.clearTimeout(this.#throttleTimer);
    this.#expireTimer = undefined;
    this.#throttleTimer = undefined;
  }

  #pump(): void {
    if (this.#sending || !this.#dirty || this.#finalSent) {
      if (!this.#sending && !this.#dirty) this.#wakeIdle();
      return;
    }
    const clock = this.#notifier.ua.clock;
    if (this.#urgent && this.#throttleTimer !== undefined) {
      clock.clearTimeout(this.#throttleTimer);
      this.#throttleTimer = undefined;
    }
    if (this.#throttleTimer !== undefined && !this.#final) return;
    const interval = this.#pkg.minInterval ?? 0;
    if (!this.#final && !this.#urgent && this.#lastSentAt !== undefined && interval > 0) {
      const wait = this.#lastSentAt + interval - clock.now();
      if (wait > 0) {
        this.#throttleTimer = clock.setTimeout(() => {
          this.#throttleTimer = undefined;
          this.#pump();
        }, wait);
        return;
      }
    }
    this.#dirty = false;
    this.#urgent = false;
    this.#sending = true;
    this.#sendNotify().finally(() => {
      this.#sending = false;
      this.#pump();
    });
  }

  async #sendNotify(): Promise<void> {
    const ua = this.#notifier.ua;
    const final = this.#final;
    if (final) this.#finalSent = true;
    const content = this.#pkg.content(this);
    const extra: [string, string][] = [];
    if (this.#pkg.entityTags && !final) {
      this.#lastEtag = entityTag(this.#state, content);
      this.#lastState = this.#state;
      extra.push(["SIP-ETag", this.#lastEtag]);
    }
    const body = content ? this.#encode(content.body, extra) : undefined;
    const stateValue = final
      ? formatSubscriptionState({
        state: "terminated",
        reason: final.reason,
        retryAfter: final.retryAfter,
      })
      : formatSubscriptionState({ state: this.#state, expires: this.expires });
    const headers: [string, string][] = [
      ["Event", formatEvent(this.event)],
      ["Subscription-State", stateValue],
      ...extra,
    ];
    let req: SipRequest;
    try {
      req = this.dialog.createRequest("NOTIFY", {
        headers,
        body,
        contentType: content?.contentType,
      });
    } catch {
      return; // the dialog is gone
    }
    this.#lastSentAt = ua.clock.now();
    this.#notifyCount++;
    let status: number;
    try {
      const { response } = await ua.send(req, { dialog: this.dialog });
      this.dialog.receiveResponse(response);
      status = response.status;
    } catch (e) {
      status = e instanceof SipRequestError ? e.status : 503;
      if (status === 503 || (e instanceof SipRequestError && e.local)) status = 408;
    }
    if (final) {
      this.#remove(final.reason);
      return;
    }
    if (NOTIFY_FATAL.has(status)) {
      // Section 4.2.2: "If the NOTIFY request fails due to expiration of SIP
      // Timer F (transaction timeout), the notifier SHOULD remove the
      // subscription"; a 481 means the subscriber has none.
      this.#state = "terminated";
      this.#clearTimers();
      this.#dirty = false;
      this.#remove(String(status));
    }
  }

  /**
   * The body as sent: compressed with {@linkcode contentCoding} (RFC 3261
   * section 20.2),
   * when that saves more than the Content-Encoding line costs; then the
   * header is added to `headers`.
   */
  #encode(body: string | Uint8Array, headers: [string, string][]): Uint8Array {
    const raw = typeof body === "string" ? new TextEncoder().encode(body) : body;
    const coding = this.contentCoding;
    // Without the coder (its import failed) the body goes as it is.
    if (!coding || raw.length === 0 || !contentCodingsLoaded()) return raw;
    const packed = encodeBody(raw, coding);
    // "e: deflate" and its CRLF (more with full header names).
    if (packed.length + coding.length + 5 >= raw.length) return raw;
    headers.push(["Content-Encoding", coding]);
    return packed;
  }

  #remove(reason: string): void {
    if (this.#removed) return;
    this.#removed = true;
    this.#clearTimers();
    this.dialog.terminate();
    this.#notifier.ua.removeDialog(this.dialog.id);
    this.#notifier._emit({ type: "removed", subscription: this, reason });
  }

  #wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
