/**
 * Event state publication (RFC 3903): a {@linkcode Publication} sends PUBLISH
 * outside any dialog to put the user's presence document at a presence
 * server, keeps the entity-tag (SIP-ETag) the server assigns, refreshes it
 * with SIP-If-Match and no body before it expires, modifies it with a new
 * body, removes it with Expires: 0, and publishes afresh when the server
 * has forgotten the entity-tag (412). Timers run on the UA's clock.
 *
 * @module
 */

import type { TimerId } from "../sip/clock.ts";
import { SipRequestError } from "../sip/errors.ts";
import { backoffDelay } from "../sip/events/headers.ts";
import type { SipRequest, SipResponse, Uri } from "../sip/message.ts";
import { generateCallId } from "../sip/transaction/build.ts";
import { toSipUri, type UserAgent } from "../sip/ua.ts";
import { PIDF_CONTENT_TYPE } from "./pidf.ts";

/** What a {@linkcode Publication} reports. */
export type PublicationEvent =
  | {
    /** The server accepted a PUBLISH. */
    type: "published";
    /** create (initial, or afresh after 412), modify (new body) or refresh (no body). */
    action: "create" | "modify" | "refresh";
    /** The entity-tag the server gave. */
    etag: string;
    /** Seconds granted. */
    expires: number;
  }
  | {
    /** The publication was removed (Expires: 0). */
    type: "removed";
    /** The entity-tag it had. */
    etag?: string;
  }
  | {
    /** A PUBLISH sent by a refresh timer failed. */
    type: "failed";
    /** SIP status (408 when nothing answered). */
    status: number;
    /** Reason phrase. */
    reason: string;
    /** Seconds until the next try. */
    retryIn?: number;
  };

/** Options of {@linkcode Publication}. */
export interface PublicationOptions {
  /** The event package. Default "presence". */
  event?: string;
  /** The presentity (Request-URI and To). Default the UA's AOR. */
  target?: string | Uri;
  /** Requested lifetime in seconds. Default 3600. */
  expires?: number;
  /** Content-Type of the bodies. Default "application/pidf+xml". */
  contentType?: string;
  /** An entity-tag kept from an earlier run: the first PUBLISH modifies or refreshes it. */
  etag?: string;
  /** Refresh before expiry by itself. Default true. */
  autoRefresh?: boolean;
  /** First back-off delay in seconds after a failed timed refresh. Default 30. */
  backoffBase?: number;
  /** Largest back-off delay in seconds. Default 1800. */
  backoffMax?: number;
  /** Randomness for back-off jitter. Default Math.random. */
  random?: () => number;
  /** Receives events. */
  onEvent?: (event: PublicationEvent) => void;
}

/** The outcome of a successful PUBLISH. */
export interface PublishResult {
  /** The entity-tag (SIP-ETag) to use next time. */
  etag: string;
  /** Seconds granted. */
  expires: number;
}

/**
 * One publication of event state for one presentity.
 *
 * @example
 * ```ts ignore
 * const pub = new Publication(ua, { etag: saved });
 * const { etag } = await pub.publish(statusToPidf("busy", { entity: "sip:alice@example.test" }));
 * // ... the timer refreshes it; later:
 * await pub.remove();
 * ```
 */
export class Publication {
  /** The presentity. */
  readonly target: Uri;
  /** The event package. */
  readonly event: string;
  readonly #ua: UserAgent;
  readonly #options: PublicationOptions;
  readonly #callId = generateCallId();
  #cseq = 0;
  #etag?: string;
  #body?: Uint8Array | string;
  #expires: number;
  #expiresAt?: number;
  #timer?: TimerId;
  #failures = 0;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();

  /** Creates the publication; nothing is sent yet. */
  constructor(ua: UserAgent, options: PublicationOptions = {}) {
    this.#ua = ua;
    this.#options = options;
    this.target = options.target === undefined
      ? structuredClone(ua.aor)
      : typeof options.target === "string"
      ? toSipUri(options.target)
      : structuredClone(options.target);
    this.event = options.event ?? "presence";
    this.#etag = options.etag;
    this.#expires = options.expires ?? 3600;
  }

  /** The current entity-tag (store it to modify the same publication next run). */
  get etag(): string | undefined {
    return this.#etag;
  }

  /** Seconds the publication has left; undefined when none is known. */
  get expires(): number | undefined {
    if (this.#expiresAt === undefined) return undefined;
    return Math.max(0, Math.round((this.#expiresAt - this.#ua.clock.now()) / 1000));
  }

  /**
   * Publishes a document: the initial PUBLISH when there is no entity-tag,
   * else a modify with SIP-If-Match (RFC 3903 section 4.4). A 412 answer
   * (the server does not know the tag) starts afresh with the same body
   * (section 4.1: "... the ESC ... publish[es] a new initial PUBLISH").
   * Rejects with {@linkcode SipRequestError} on failure.
   */
  publish(body: string | Uint8Array): Promise<PublishResult> {
    this.#body = body;
    return this.#serial(() => this.#send(this.#etag ? "modify" : "create", body));
  }

  /**
   * Refreshes the publication (section 4.3): SIP-If-Match, Expires and no
   * body. Without an entity-tag (or after 412) the last body is published
   * afresh; with no body known that rejects with `TypeError`.
   */
  refresh(): Promise<PublishResult> {
    return this.#serial(() => {
      if (this.#etag) return this.#send("refresh");
      if (this.#body === undefined) {
        return Promise.reject(new TypeError("Cannot refresh a publication that has no entity-tag"));
      }
      return this.#send("create", this.#body);
    });
  }

  /**
   * Removes the publication (section 4.5): SIP-If-Match with Expires: 0.
   * A 412 counts as removed. Stops the refresh timer.
   */
  remove(): Promise<void> {
    this.#clearTimer();
    return this.#serial(async () => {
      const etag = this.#etag;
      if (!etag) return;
      const { response } = await this.#transmit(undefined, etag, 0);
      if (response.status >= 300 && response.status !== 412) {
        throw new SipRequestError(response.status, response.reason);
      }
      this.#etag = undefined;
      this.#expiresAt = undefined;
      this.#clearTimer();
      this.#options.onEvent?.({ type: "removed", etag });
    });
  }

  /** Stops the refresh timer; sends nothing. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #send(
    action: "create" | "modify" | "refresh",
    body?: Uint8Array | string,
  ): Promise<PublishResult> {
    const etag = action === "create" ? undefined : this.#etag;
    let { response } = await this.#transmit(body, etag, this.#expires);
    if (response.status === 423) {
      // Section 6 (step 6 at the ESC): 423 carries Min-Expires; try again with it.
      const min = Number(response.headers.get("Min-Expires"));
      if (Number.isInteger(min) && min > this.#expires) {
        this.#expires = min;
        ({ response } = await this.#transmit(body, etag, this.#expires));
      }
    }
    if (response.status === 412 && etag !== undefined) {
      // Section 6 step 3: an unknown entity-tag gets 412 (Conditional Request
      // Failed); the publication has to start again with the full state.
      this.#etag = undefined;
      const full = body ?? this.#body;
      if (full === undefined) {
        throw new SipRequestError(412, response.reason);
      }
      return this.#send("create", full);
    }
    if (response.status < 200 || response.status >= 300) {
      throw new SipRequestError(response.status, response.reason);
    }
    const newTag = response.headers.get("SIP-ETag");
    if (!newTag) {
      // Section 11.3: a 2xx to PUBLISH "MUST contain a SIP-ETag header field".
      throw new SipRequestError(502, "2xx to PUBLISH without SIP-ETag");
    }
    const expires = response.expires ?? this.#expires;
    this.#etag = newTag.trim();
    this.#failures = 0;
    this.#expiresAt = this.#ua.clock.now() + expires * 1000;
    this.#schedule(expires);
    this.#options.onEvent?.({ type: "published", action, etag: this.#etag, expires });
    return { etag: this.#etag, expires };
  }

  async #transmit(
    body: Uint8Array | string | undefined,
    etag: string | undefined,
    expires: number,
  ): Promise<{ response: SipResponse; request: SipRequest }> {
    const headers: [string, string][] = [["Event", this.event], ["Expires", String(expires)]];
    if (etag !== undefined) headers.push(["SIP-If-Match", etag]);
    const req = this.#ua.createRequest("PUBLISH", this.target, {
      callId: this.#callId,
      cseq: ++this.#cseq,
      headers,
      body,
      contentType: body === undefined ? undefined : this.#options.contentType ?? PIDF_CONTENT_TYPE,
    });
    const { response, request } = await this.#ua.send(req);
    this.#cseq = Math.max(this.#cseq, request.cseq.seq);
    return { response, request };
  }

  #schedule(expires: number): void {
    this.#clearTimer();
    if (this.#closed || this.#options.autoRefresh === false || expires <= 0) return;
    const margin = Math.min(60, Math.max(Math.min(5, expires / 2), expires / 10));
    this.#timer = this.#ua.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#timedRefresh();
    }, (expires - margin) * 1000);
  }

  #timedRefresh(): void {
    if (this.#closed) return;
    this.refresh().catch((e) => {
      if (this.#closed) return;
      const status = e instanceof SipRequestError ? e.status : 503;
      const reason = e instanceof SipRequestError ? e.reason : String(e);
      const retryIn = backoffDelay(this.#failures++, this.#options);
      this.#options.onEvent?.({ type: "failed", status, reason, retryIn });
      this.#clearTimer();
      this.#timer = this.#ua.clock.setTimeout(() => {
        this.#timer = undefined;
        this.#timedRefresh();
      }, retryIn * 1000);
    });
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) this.#ua.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
