/**
 * The subscriber side of the SIP event framework (RFC 6665 section 4.1): a
 * {@linkcode Subscription} sends SUBSCRIBE with Event, Accept and Expires,
 * takes NOTIFYs that arrive before the 2xx and from forks (each fork is its
 * own dialog), refreshes before expiry, unsubscribes, fetches (Expires: 0),
 * and subscribes again after a termination or failure with a delay that
 * depends on the reason. Every timer runs on the UA's clock.
 *
 * @module
 */

import type { TimerId } from "../clock.ts";
import { Dialog, type DialogId } from "../dialog.ts";
import { DigestAuthError } from "../errors.ts";
import { SipRequestError } from "../errors.ts";
import type { SipRequest, SipResponse, Uri } from "../message.ts";
import type { IncomingRequest, UserAgent } from "../ua.ts";
import { toSipUri } from "../ua.ts";
import {
  backoffDelay,
  type EventHeader,
  formatEvent,
  parseEvent,
  parseSubscriptionState,
  readEventHeader,
  resubscribeDelay,
  sameEvent,
  type SubscriptionState,
} from "./headers.ts";
import {
  CONTENT_CODINGS,
  contentCodingsLoaded,
  decodeBody,
  isKnownCoding,
  loadContentCodings,
} from "./encoding.ts";

/** Options of {@linkcode Subscription}. */
export interface SubscriptionOptions {
  /** The event package, e.g. "presence". */
  event: string;
  /** The Event `id` parameter, when the package uses several subscriptions per dialog. */
  eventId?: string;
  /** Accept header values, e.g. `["application/pidf+xml"]`. Default: none sent. */
  accept?: string[];
  /**
   * Send Accept on refreshes too. Default true. A package whose `accept` is
   * its default body type can leave it out of refreshes (the notifier then
   * assumes that default, RFC 6665 section 4.1.2), saving the bytes.
   */
  refreshAccept?: boolean;
  /**
   * Content codings to accept on NOTIFY bodies (Accept-Encoding, RFC 3261
   * section 20.2), e.g. `["deflate"]`, sent on the initial SUBSCRIBE: a
   * sipkit notifier keeps them for the subscription, so refreshes leave the
   * header out (a notifier that reads a refresh without it as "identity"
   * just stops compressing). NOTIFYs with a Content-Encoding are decoded
   * whether or not this is set (deflate; others get 415). Default none sent.
   */
  acceptEncoding?: string[];
  /** Requested duration in seconds. Default 3600. */
  expires?: number;
  /** More header fields for every SUBSCRIBE (e.g. `["Supported", "eventlist"]`). */
  headers?: [string, string][];
  /** Body of the initial SUBSCRIBE (filters), with `contentType`. */
  body?: string | Uint8Array;
  /** Content-Type of `body`. */
  contentType?: string;
  /** Subscribe again after a termination or failure when the reason allows it. Default true. */
  resubscribe?: boolean;
  /**
   * Milliseconds to wait for the first NOTIFY after a 2xx (RFC 6665 section
   * 4.1.2.4: 64*T1). Default 32000.
   */
  notifyTimeout?: number;
  /** First back-off delay in seconds. Default 30. */
  backoffBase?: number;
  /** Largest back-off delay in seconds. Default 1800. */
  backoffMax?: number;
  /** Randomness for back-off jitter. Default Math.random. */
  random?: () => number;
  /** Called for every accepted NOTIFY (after the 200 is sent). */
  onNotify?: (notify: SubscriptionNotify) => void;
  /** Called when the subscription's state changes. */
  onState?: (change: SubscriptionStateChange) => void;
}

/** A NOTIFY the subscriber accepted. */
export interface SubscriptionNotify {
  /** The NOTIFY request. */
  request: SipRequest;
  /** Its Subscription-State. */
  state: SubscriptionState;
  /** The body (empty when none), its Content-Encoding undone. */
  body: Uint8Array;
  /** The Content-Type header value with its parameters, when there is a body. */
  contentType?: string;
  /** The dialog (fork) it came in. */
  dialog: DialogId;
}

/** The state a {@linkcode Subscription} reports. */
export interface SubscriptionStateChange {
  /**
   * pending / active: what the NOTIFYs say (the best of all forks);
   * terminated: the notifier ended it (or it expired, or was unsubscribed);
   * failed: the SUBSCRIBE was refused or got no answer.
   */
  state: "pending" | "active" | "terminated" | "failed";
  /** Termination reason (RFC 6665 section 4.1.3), or the reason phrase of a failure. */
  reason?: string;
  /** SIP status of a failure (408 when nothing answered, 481 when the notifier forgot it). */
  status?: number;
  /** Seconds until the next SUBSCRIBE; undefined when none will be sent by itself. */
  retryIn?: number;
  /** Seconds the subscription has left (pending and active). */
  expires?: number;
  /** A failure without any response (timeout, transport error). */
  local?: boolean;
}

/** Where a {@linkcode Subscription} is in its life. */
export type SubscriberState =
  | "idle"
  | "subscribing"
  | "pending"
  | "active"
  | "waiting"
  | "terminated";

interface Fork {
  dialog: Dialog;
  /** The SIP-ETag of the last NOTIFY (RFC 5839), for Suppress-If-Match on refreshes. */
  etag?: string;
  state: "init" | "pending" | "active";
  expiresAt: number;
  refreshTimer?: TimerId;
  expireTimer?: TimerId;
  notifyTimer?: TimerId;
  refreshing?: boolean;
}

/** Statuses after which a SUBSCRIBE is not tried again by itself. */
const PERMANENT_FAILURES = new Set([400, 403, 405, 415, 416, 420, 489, 501, 603]);

/**
 * RFC 6665 section 4.1.2.2: "If a SUBSCRIBE request to refresh a subscription
 * receives a 404, 405, 410, 416, 480-485, 489, 501, or 604 response, the
 * subscriber MUST consider the subscription terminated."
 */
const REFRESH_FATAL = new Set([404, 405, 410, 416, 480, 481, 482, 483, 484, 485, 489, 501, 604]);

/**
 * One subscription to one resource, with all the dialogs its SUBSCRIBE
 * created (forks).
 *
 * @example
 * ```ts
 * import { Subscription } from "./subscriber.ts";
 * import { Notifier } from "./notifier.ts";
 * import { UserAgent } from "../ua.ts";
 * import { LoopNetwork } from "../transport_loop.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const ua = (aor: string, host: string) =>
 *   UserAgent.create({ aor, transports: [net.transport({ host })] });
 * const alice = await ua("alice@192.0.2.1", "192.0.2.1");
 * const bob = await ua("bob@192.0.2.2", "192.0.2.2");
 * new Notifier(bob).addPackage({
 *   event: "test",
 *   content: () => ({ body: "hello", contentType: "text/plain" }),
 * });
 * const got: string[] = [];
 * const sub = new Subscription(alice, "sip:bob@192.0.2.2", {
 *   event: "test",
 *   onNotify: (n) => got.push(new TextDecoder().decode(n.body)),
 * });
 * await sub.start();
 * await net.settled();
 * assert.deepEqual(got, ["hello"]);
 * await sub.unsubscribe(); // Expires: 0, then the final NOTIFY
 * assert.equal(sub.state, "terminated");
 * await Promise.all([alice.close(), bob.close()]);
 * ```
 */
export class Subscription {
  /** The resource subscribed to (Request-URI and To). */
  readonly target: Uri;
  /** The Event header this subscription uses. */
  readonly event: EventHeader;
  readonly #ua: UserAgent;
  readonly #options: SubscriptionOptions;
  #state: SubscriberState = "idle";
  #reported?: string;
  #forks = new Map<string, Fork>();
  #ended = new Set<string>();
  #request?: SipRequest;
  #leg?: { callId: string; localTag: string };
  #inflight?: Promise<void>;
  #retryTimer?: TimerId;
  #failures = 0;
  #closing = false;
  #expires: number;
  #finalWaiters: (() => void)[] = [];
  #lastReason?: { reason?: string; status?: number; retryIn?: number };

  /** Creates the subscription; nothing is sent before {@linkcode start}. */
  constructor(ua: UserAgent, target: string | Uri, options: SubscriptionOptions) {
    this.#ua = ua;
    this.#options = options;
    this.target = typeof target === "string" ? toSipUri(target) : structuredClone(target);
    this.event = parseEvent(options.event);
    if (options.eventId !== undefined) this.event.id = options.eventId;
    this.#expires = options.expires ?? 3600;
  }

  /** Where the subscription is. */
  get state(): SubscriberState {
    return this.#state;
  }

  /** The dialogs of the live forks. */
  get dialogs(): Dialog[] {
    return [...this.#forks.values()].map((f) => f.dialog);
  }

  /** Seconds left of the longest-lived fork; undefined when there is none. */
  get expires(): number | undefined {
    if (this.#forks.size === 0) return undefined;
    const at = Math.max(...[...this.#forks.values()].map((f) => f.expiresAt));
    return Math.max(0, Math.round((at - this.#ua.clock.now()) / 1000));
  }

  /** Consecutive failures since the last NOTIFY that kept the subscription alive. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Sends the initial SUBSCRIBE. Resolves when its final response has been
   * handled (the outcome is reported through `onState`); it never rejects
   * for a SIP failure. Does nothing while the subscription is live; rejects
   * with `TypeError` after {@linkcode unsubscribe} or {@linkcode close}.
   */
  start(): Promise<void> {
    if (this.#closing) {
      return Promise.reject(new TypeError("Cannot start a subscription that was closed"));
    }
    if (this.#state === "subscribing" || this.#state === "pending" || this.#state === "active") {
      return this.#inflight ?? Promise.resolve(); // live already
    }
    this.#clearRetry();
    this.#inflight = this.#subscribe();
    return this.#inflight;
  }

  /**
   * Subscribes again at once when the subscription is waiting to retry or
   * ended after a failure or termination (mutual subscription: the buddy just
   * subscribed to us, so it is back). Returns false (and does nothing) when
   * it is live or closed.
   */
  retryNow(): boolean {
    if (this.#closing) return false;
    if (this.#state !== "waiting" && this.#state !== "terminated" && this.#state !== "idle") {
      return false;
    }
    this.start().catch(() => {});
    return true;
  }

  /**
   * Mobility: our Contact moved (the host's address changed). Every fork's
   * dialog takes `uri` as local target and is refreshed at once: SUBSCRIBE
   * is a target refresh request (RFC 6665 section 4.1.2.1, RFC 3261
   * 12.2.1.1), so the notifier sends later NOTIFYs to the new address.
   * Later initial SUBSCRIBEs take the UA's current address anyway.
   */
  async updateLocalContact(uri: Uri): Promise<void> {
    for (const f of this.#forks.values()) {
      const old = f.dialog.localContact;
      f.dialog.localContact = { ...(old ?? { params: {} }), uri: structuredClone(uri) };
    }
    // Unconditional (no Suppress-If-Match): the NOTIFY that answers it
    // confirms that the notifier reaches the new address.
    await Promise.all(
      [...this.#forks.values()].map((f) => this.#refreshFork(f, this.#expires, false)),
    );
  }

  /** Refreshes every fork now (section 4.1.2.2). */
  async refresh(): Promise<void> {
    await Promise.all([...this.#forks.values()].map((f) => this.#refreshFork(f, this.#expires)));
  }

  /**
   * Unsubscribes (section 4.1.2.3): SUBSCRIBE with Expires: 0 on every fork,
   * then waits (at most 64*T1) for the final NOTIFYs. Stops retries and
   * timers. Resolves when done, whatever the peer said.
   */
  async unsubscribe(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#clearRetry();
    this.#lastReason = undefined;
    if (this.#inflight) await this.#inflight.catch(() => {});
    const forks = [...this.#forks.values()];
    if (forks.length > 0) {
      const done = new Promise<void>((resolve) => this.#finalWaiters.push(resolve));
      const timer = this.#ua.clock.setTimeout(
        () => this.#resolveFinal(),
        this.#options.notifyTimeout ?? 32000,
      );
      await Promise.all(forks.map((f) => this.#refreshFork(f, 0)));
      if (this.#forks.size > 0) await done;
      this.#ua.clock.clearTimeout(timer);
    }
    this.#shutdown();
    // The reason of the final NOTIFY, when one came.
    // (A cast: the compiler cannot see that the awaits above set it.)
    const reason = (this.#lastReason as { reason?: string } | undefined)?.reason;
    this.#setState("terminated", reason === undefined ? {} : { reason });
  }

  /** Stops every timer and drops the dialogs without sending anything. */
  close(): void {
    this.#closing = true;
    this.#clearRetry();
    this.#shutdown();
    if (this.#state !== "terminated") this.#state = "terminated";
    this.#resolveFinal();
  }

  /**
   * Fetches the current state once (section 4.4.3): SUBSCRIBE with Expires: 0
   * and the NOTIFY that follows. Rejects with {@linkcode SipRequestError} when
   * the SUBSCRIBE fails or no NOTIFY comes in 64*T1.
   */
  static fetch(
    ua: UserAgent,
    target: string | Uri,
    options: Omit<SubscriptionOptions, "expires" | "resubscribe" | "onNotify" | "onState">,
  ): Promise<SubscriptionNotify> {
    return new Promise<SubscriptionNotify>((resolve, reject) => {
      let settled = false;
      const sub: Subscription = new Subscription(ua, target, {
        ...options,
        expires: 0,
        resubscribe: false,
        onNotify: (n) => {
          if (settled) return;
          settled = true;
          resolve(n);
          sub.close();
        },
        onState: (s) => {
          if (settled || s.state !== "failed") return;
          settled = true;
          reject(
            new SipRequestError(s.status ?? 408, s.reason ?? "Subscription failed", {
              local: s.local,
            }),
          );
          sub.close();
        },
      });
      sub.start().catch((e) => {
        if (settled) return;
        settled = true;
        reject(e);
        sub.close();
      });
    });
  }

  // ------------------------------------------------------------ internals

  #buildSubscribe(): SipRequest {
    const headers: [string, string][] = [
      ["Event", formatEvent(this.event)],
      ["Expires", String(this.#expires)],
    ];
    if (this.#options.accept?.length) headers.push(["Accept", this.#options.accept.join(", ")]);
    if (this.#options.acceptEncoding?.length) {
      headers.push(["Accept-Encoding", this.#options.acceptEncoding.join(", ")]);
    }
    headers.push(...(this.#options.headers ?? []));
    return this.#ua.createRequest("SUBSCRIBE", this.target, {
      headers,
      body: this.#options.body,
      contentType: this.#options.contentType,
    });
  }

  async #subscribe(): Promise<void> {
    this.#dropLeg();
    this.#state = "subscribing";
    if (this.#options.acceptEncoding?.length && !contentCodingsLoaded()) {
      // The coder is loaded on demand (start-up of one-shot commands); have
      // it before the first coded NOTIFY can come, so NOTIFYs are decoded
      // synchronously. Should the import fail, a coded NOTIFY gets 415.
      await loadContentCodings().catch(() => {});
      if (this.#closing) return;
    }
    const req = this.#buildSubscribe();
    this.#request = req;
    const leg = { callId: req.callId, localTag: req.from.params.tag ?? "" };
    this.#leg = leg;
    // RFC 6665 section 4.1.2.4: "the subscriber MUST be prepared to receive
    // NOTIFY requests before the SUBSCRIBE transaction has completed".
    this.#ua.addCallLeg(leg.callId, leg.localTag, this.#onRequest);
    let response: SipResponse;
    let sent: SipRequest;
    try {
      const result = await this.#ua.send(req);
      response = result.response;
      sent = result.request;
    } catch (e) {
      if (this.#leg !== leg) return;
      if (e instanceof SipRequestError) {
        this.#failed(e.status, e.reason, undefined, false, e.local);
      } else if (e instanceof DigestAuthError) {
        this.#failed(e.status ?? 403, e.message, undefined, true);
      } else {
        this.#failed(503, (e as Error).message ?? String(e), undefined, false, true);
      }
      return;
    }
    if (this.#leg !== leg) return;
    const status = response.status;
    if (status >= 200 && status < 300) {
      this.#accepted(sent, response);
      return;
    }
    if (status === 423 && !this.#closing) {
      // Section 4.1.2.1 (RFC 3261 10.2.8 style): retry with the Min-Expires.
      const min = Number(response.headers.get("Min-Expires"));
      if (Number.isInteger(min) && min > this.#expires) {
        this.#expires = min;
        return this.#subscribe();
      }
    }
    const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
    this.#failed(status, response.reason, retryAfter, PERMANENT_FAILURES.has(status));
  }

  #accepted(sent: SipRequest, response: SipResponse): void {
    const remoteTag = response.to.params.tag ?? "";
    let fork = this.#forks.get(remoteTag);
    const expires = response.expires ?? this.#expires;
    if (!fork) {
      if (expires === 0 && this.#state === "terminated") return;
      let dialog: Dialog;
      try {
        dialog = Dialog.createUac(sent, response);
      } catch (e) {
        this.#failed(502, `Cannot create the subscription dialog: ${(e as Error).message}`);
        return;
      }
      fork = this.#addFork(dialog, "init", expires);
      // Section 4.1.2.4: no NOTIFY within 64*T1 of the 2xx means it failed.
      const f = fork;
      f.notifyTimer = this.#ua.clock.setTimeout(() => {
        f.notifyTimer = undefined;
        if (this.#forks.get(remoteTag) !== f || f.state !== "init") return;
        this.#removeFork(remoteTag);
        if (this.#forks.size === 0) this.#failed(408, "No NOTIFY after the 2xx");
      }, this.#options.notifyTimeout ?? 32000);
    } else {
      // A NOTIFY made the dialog first; the SUBSCRIBE may have been re-sent with a higher CSeq.
      fork.dialog.localSeq = Math.max(fork.dialog.localSeq ?? 0, sent.cseq.seq);
      if (expires > 0) this.#schedule(fork, expires);
    }
    if (this.#state === "subscribing") this.#state = "pending";
  }

  #addFork(dialog: Dialog, state: Fork["state"], expires: number): Fork {
    const fork: Fork = { dialog, state, expiresAt: 0 };
    this.#forks.set(dialog.id.remoteTag, fork);
    this.#ua.addDialog(dialog.id, this.#onRequest);
    if (expires > 0) this.#schedule(fork, expires);
    return fork;
  }

  #schedule(fork: Fork, expires: number): void {
    const clock = this.#ua.clock;
    fork.expiresAt = clock.now() + expires * 1000;
    if (fork.refreshTimer !== undefined) clock.clearTimeout(fork.refreshTimer);
    if (fork.expireTimer !== undefined) clock.clearTimeout(fork.expireTimer);
    // Refresh a little before the end: a tenth of the duration, 5 to 60 seconds.
    const margin = Math.min(60, Math.max(Math.min(5, expires / 2), expires / 10));
    fork.refreshTimer = clock.setTimeout(() => {
      fork.refreshTimer = undefined;
      if (!this.#closing) this.#refreshFork(fork, this.#expires).catch(() => {});
    }, (expires - margin) * 1000);
    fork.expireTimer = clock.setTimeout(() => {
      fork.expireTimer = undefined;
      // The subscription ran out without a refresh: as a NOTIFY with reason=timeout.
      if (this.#forks.get(fork.dialog.id.remoteTag) !== fork) return;
      this.#removeFork(fork.dialog.id.remoteTag);
      this.#forkEnded({ reason: "timeout" });
    }, expires * 1000);
  }

  async #refreshFork(fork: Fork, expires: number, conditional = true): Promise<void> {
    if (fork.dialog.state === "terminated") return;
    const req = fork.dialog.createRequest("SUBSCRIBE", {
      headers: [
        ["Event", formatEvent(this.event)],
        ["Expires", String(expires)],
        ...(this.#options.accept?.length && this.#options.refreshAccept !== false
          ? [["Accept", this.#options.accept.join(", ")] as [string, string]]
          : []),
        ...(this.#options.headers ?? []),
        // RFC 5839 section 4: a refresh conditional on the state we have;
        // the notifier may answer 204 and send no NOTIFY.
        ...(fork.etag !== undefined && expires > 0 && conditional
          ? [["Suppress-If-Match", fork.etag] as [string, string]]
          : []),
      ],
    });
    const remoteTag = fork.dialog.id.remoteTag;
    let response: SipResponse;
    try {
      response = (await this.#ua.send(req, { dialog: fork.dialog })).response;
    } catch (e) {
      const status = e instanceof SipRequestError ? e.status : 503;
      if (expires === 0) {
        // Nobody answers the unsubscribe: nothing more will come from this fork.
        this.#removeFork(remoteTag);
        if (this.#forks.size === 0) this.#resolveFinal();
        return;
      }
      this.#refreshFailed(fork, status);
      return;
    }
    if (this.#forks.get(remoteTag) !== fork) return;
    fork.dialog.receiveResponse(response);
    const status = response.status;
    if (status >= 200 && status < 300) {
      if (expires === 0) return; // the final NOTIFY ends it
      this.#schedule(fork, response.expires ?? expires);
      return;
    }
    if (status === 423 && expires > 0) {
      const min = Number(response.headers.get("Min-Expires"));
      if (Number.isInteger(min) && min > this.#expires) {
        this.#expires = min;
        return this.#refreshFork(fork, min);
      }
    }
    if (expires === 0 || REFRESH_FATAL.has(status)) {
      this.#removeFork(remoteTag);
      if (expires === 0) {
        if (this.#forks.size === 0) this.#resolveFinal();
        return;
      }
      // Section 4.1.2.2: the subscription is terminated; a new one may be tried.
      this.#forkEnded({ status, reason: response.reason, failure: true });
      return;
    }
    this.#refreshFailed(fork, status);
  }

  /**
   * Section 4.1.2.2: "If a SUBSCRIBE request to refresh a subscription fails
   * with any error code other than 481, the original subscription is still
   * considered valid for the duration of the most recently known 'Expires'
   * value". Try again at half the time left, if that is worth it.
   */
  #refreshFailed(fork: Fork, _status: number): void {
    if (this.#closing || this.#forks.get(fork.dialog.id.remoteTag) !== fork) return;
    const left = fork.expiresAt - this.#ua.clock.now();
    if (left > 4000 && fork.refreshTimer === undefined) {
      fork.refreshTimer = this.#ua.clock.setTimeout(() => {
        fork.refreshTimer = undefined;
        if (!this.#closing) this.#refreshFork(fork, this.#expires).catch(() => {});
      }, left / 2);
    }
  }

  #onRequest = async (incoming: IncomingRequest): Promise<void> => {
    const req = incoming.request;
    if (req.method !== "NOTIFY") {
      await incoming.respond(405, { headers: [["Allow", "NOTIFY"]] });
      return;
    }
    const event = await readEventHeader(incoming);
    if (!event) return;
    // Section 4.1.3: a NOTIFY for another event package gets 489.
    if (!sameEvent(event, this.event)) {
      await incoming.respond(489);
      return;
    }
    let state: SubscriptionState;
    try {
      const text = req.headers.get("Subscription-State");
      if (text === undefined) throw new SyntaxError("missing");
      state = parseSubscriptionState(text);
    } catch {
      await incoming.respond(400, { reason: "Missing or bad Subscription-State header" });
      return;
    }
    const remoteTag = req.from.params.tag ?? "";
    let fork = this.#forks.get(remoteTag);
    if (!fork) {
      // A NOTIFY before the 2xx, or from a new fork (section 4.1.2.4), makes a dialog.
      if (
        this.#state === "terminated" || !this.#request || this.#leg?.callId !== req.callId ||
        this.#ended.has(remoteTag)
      ) {
        await incoming.respond(481);
        return;
      }
      if (state.state !== "terminated") {
        let dialog: Dialog;
        try {
          dialog = Dialog.createFromNotify(this.#request, req);
        } catch {
          await incoming.respond(400, { reason: "Missing Contact header" });
          return;
        }
        fork = this.#addFork(dialog, "init", state.expires ?? this.#expires);
      }
    } else if (!fork.dialog.receiveRequest(req)) {
      // RFC 3261 12.2.2: a lower CSeq is out of order.
      await incoming.respond(500, { reason: "Out of order" });
      return;
    }
    let body = req.body;
    const coding = req.headers.get("Content-Encoding");
    if (coding !== undefined && body.length > 0) {
      const listed = coding.split(",").map((c) => c.trim().toLowerCase());
      const coded = listed.some((c) => c !== "" && c !== "identity");
      if (coded && !contentCodingsLoaded()) {
        // A notifier that codes a body we did not ask to have coded (RFC
        // 3261 20.2 says it should not, but a body we can read is better
        // read): load the coder now and decode, rather than answer 415. The
        // import takes tens of milliseconds, well inside the transaction.
        await loadContentCodings().catch(() => {});
      }
      try {
        body = decodeBody(body, coding);
      } catch (e) {
        // RFC 3261 8.2.3: a coding we do not understand (or whose coder
        // could not be loaded) gets 415 with the ones we do in
        // Accept-Encoding.
        const loaded = contentCodingsLoaded();
        const unknown = !loaded || listed.some((c) => c !== "" && !isKnownCoding(c));
        await incoming.respond(
          unknown ? 415 : 400,
          unknown
            ? {
              headers: [["Accept-Encoding", loaded ? CONTENT_CODINGS.join(", ") : "identity"]],
            }
            : { reason: (e as Error).message },
        );
        return;
      }
    }
    await incoming.respond(200);
    this.#handleNotify(req, state, remoteTag, fork, body);
  };

  #handleNotify(
    req: SipRequest,
    state: SubscriptionState,
    remoteTag: string,
    fork: Fork | undefined,
    body: Uint8Array,
  ): void {
    const notify: SubscriptionNotify = {
      request: req,
      state,
      body,
      dialog: fork?.dialog.id ??
        { callId: req.callId, localTag: req.to.params.tag ?? "", remoteTag },
    };
    // The full value: parameters matter (multipart boundary, RLMI start).
    const contentType = req.headers.get("Content-Type");
    if (body.length > 0 && contentType !== undefined) notify.contentType = contentType;
    if (fork?.notifyTimer !== undefined) {
      this.#ua.clock.clearTimeout(fork.notifyTimer);
      fork.notifyTimer = undefined;
    }
    if (state.state === "terminated") {
      this.#options.onNotify?.(notify);
      if (fork) this.#removeFork(remoteTag);
      this.#forkEnded({ reason: state.reason, retryAfter: state.retryAfter });
      return;
    }
    if (fork) {
      fork.state = state.state === "active" ? "active" : "pending";
      fork.etag = req.headers.get("SIP-ETag")?.trim() || undefined;
      // The notifier may shorten the subscription (section 4.2.1.1).
      if (state.expires !== undefined && !this.#closing) {
        const left = (fork.expiresAt - this.#ua.clock.now()) / 1000;
        if (state.expires < left - 1 || fork.expiresAt === 0) this.#schedule(fork, state.expires);
      }
    }
    this.#failures = 0;
    // The state change first, then the content it carries.
    if (!this.#closing) this.#updateLiveState();
    this.#options.onNotify?.(notify);
  }

  #updateLiveState(): void {
    const forks = [...this.#forks.values()];
    const next = forks.some((f) => f.state === "active")
      ? "active"
      : forks.some((f) => f.state === "pending")
      ? "pending"
      : undefined;
    if (next === undefined) return;
    this.#state = next;
    this.#report({ state: next, expires: this.expires });
  }

  /** A fork ended (final NOTIFY, expiry, fatal refresh answer); when it was the last, decide what next. */
  #forkEnded(
    end: { reason?: string; retryAfter?: number; status?: number; failure?: boolean },
  ): void {
    if (this.#forks.size > 0) {
      if (!this.#closing) this.#updateLiveState();
      return;
    }
    this.#lastReason = { reason: end.reason, status: end.status };
    if (this.#closing) {
      this.#resolveFinal();
      return;
    }
    this.#dropLeg();
    let retryIn: number | undefined;
    if (this.#options.resubscribe !== false && this.#request && this.#expires > 0) {
      retryIn = end.failure
        ? (end.status === 481 && this.#failures === 0
          ? 0
          : backoffDelay(this.#failures, this.#options))
        : resubscribeDelay(end.reason, {
          ...this.#options,
          retryAfter: end.retryAfter,
          failures: this.#failures,
        });
    }
    if (end.failure) this.#failures++;
    else if (retryIn === 0) this.#failures++; // a loop of immediate terminations backs off
    const change: SubscriptionStateChange = { state: "terminated" };
    if (end.reason !== undefined) change.reason = end.reason;
    if (end.status !== undefined) change.status = end.status;
    if (retryIn !== undefined) change.retryIn = retryIn;
    this.#lastReason = { ...this.#lastReason, retryIn };
    if (retryIn === undefined) {
      this.#state = "terminated";
      this.#report(change, true);
      return;
    }
    this.#state = "waiting";
    this.#report(change, true);
    this.#retryIn(retryIn);
  }

  #retryIn(seconds: number): void {
    if (seconds <= 0) {
      // "The subscriber SHOULD retry immediately with a new subscription."
      queueMicrotask(() => {
        if (!this.#closing && this.#state === "waiting") this.start().catch(() => {});
      });
      return;
    }
    this.#retryTimer = this.#ua.clock.setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#closing) this.start().catch(() => {});
    }, seconds * 1000);
  }

  #failed(
    status: number,
    reason: string,
    retryAfter?: number,
    permanent = false,
    local = false,
  ): void {
    this.#dropLeg();
    for (const tag of [...this.#forks.keys()]) this.#removeFork(tag);
    if (this.#closing) {
      this.#state = "terminated";
      this.#resolveFinal();
      return;
    }
    let retryIn: number | undefined;
    if (!permanent && this.#options.resubscribe !== false) {
      retryIn = retryAfter ?? backoffDelay(this.#failures, this.#options);
    }
    this.#failures++;
    const change: SubscriptionStateChange = { state: "failed", status, reason };
    if (retryIn !== undefined) change.retryIn = retryIn;
    if (local) change.local = true;
    this.#lastReason = { reason, status, retryIn };
    if (retryIn === undefined) {
      this.#state = "terminated";
      this.#report(change, true);
      return;
    }
    this.#state = "waiting";
    this.#report(change, true);
    this.#retryIn(retryIn);
  }

  #report(change: SubscriptionStateChange, always = false): void {
    const key = `${change.state}|${change.reason ?? ""}`;
    if (!always && key === this.#reported) return;
    this.#reported = key;
    this.#options.onState?.(change);
  }

  #setState(state: SubscriberState, change?: Omit<SubscriptionStateChange, "state">): void {
    const was = this.#state;
    this.#state = state;
    if (state === "terminated" && was !== "terminated" && change) {
      this.#report({ state: "terminated", ...change }, true);
    }
  }

  #removeFork(remoteTag: string): void {
    const fork = this.#forks.get(remoteTag);
    if (!fork) return;
    const clock = this.#ua.clock;
    for (const t of [fork.refreshTimer, fork.expireTimer, fork.notifyTimer]) {
      if (t !== undefined) clock.clearTimeout(t);
    }
    fork.dialog.terminate();
    this.#ua.removeDialog(fork.dialog.id);
    this.#forks.delete(remoteTag);
    this.#ended.add(remoteTag);
    if (this.#closing && this.#forks.size === 0) this.#resolveFinal();
  }

  #dropLeg(): void {
    if (this.#leg) this.#ua.removeCallLeg(this.#leg.callId, this.#leg.localTag);
    this.#leg = undefined;
    this.#ended.clear();
  }

  #clearRetry(): void {
    if (this.#retryTimer !== undefined) this.#ua.clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #shutdown(): void {
    for (const tag of [...this.#forks.keys()]) this.#removeFork(tag);
    this.#dropLeg();
  }

  #resolveFinal(): void {
    const waiters = this.#finalWaiters;
    this.#finalWaiters = [];
    for (const w of waiters) w();
  }
}

/** Seconds of a Retry-After header (`120 (comment);duration=60`), or undefined. */
function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const m = /^\s*(\d{1,10})/.exec(value);
  return m ? Number(m[1]) : undefined;
}
