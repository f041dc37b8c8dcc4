/**
 * Sending pager-mode instant messages (RFC 3428): MESSAGE requests of any
 * MIME type, optionally wrapped in `message/cpim` (RFC 3862), a delivered
 * message (200) told from one accepted for later delivery (202). Apart from
 * the listener and the batches (`message.ts`, which re-exports this) so that
 * a one-shot sender loads only this.
 *
 * @module
 */

import { DigestAuthError } from "../sip/errors.ts";
import { SipRequestError } from "../sip/errors.ts";
import {
  formatUri,
  parseMediaType,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "../sip/message.ts";
import { toSipUri, type UserAgent } from "../sip/ua.ts";

/** The CPIM code, loaded by the first message that asks for CPIM (a plain one does not). */
let cpimApi: typeof import("./cpim.ts") | undefined;

/** The Content-Type of a message when none is given. */
export const DEFAULT_MESSAGE_TYPE = "text/plain;charset=UTF-8";

/**
 * RFC 3428 section 8 (and RFC 3261 18.1.1): a request larger than this many
 * bytes, when the path MTU is unknown, must go over a congestion-controlled
 * transport.
 */
export const UDP_MESSAGE_LIMIT = 1300;

/** What to send. */
export interface OutgoingMessage {
  /** The content: text (UTF-8) or bytes. */
  body: string | Uint8Array;
  /** Its media type. Default {@linkcode DEFAULT_MESSAGE_TYPE}. */
  contentType?: string;
  /** Wrap the content in `message/cpim` (RFC 3862) with From, To and DateTime. Default false. */
  cpim?: boolean;
  /** A subject: a CPIM Subject when wrapped, else a SIP Subject header. */
  subject?: string;
  /** Extra header fields for the MESSAGE request. */
  headers?: [string, string][];
}

/** The outcome of a MESSAGE that got a 2xx. */
export interface MessageResult {
  /** The recipient URI as sent (Request-URI). */
  to: string;
  /** The final status (200, 202, ...). */
  status: number;
  /** Its reason phrase. */
  reason: string;
  /**
   * True for 200 (delivered to the recipient), false for 202 (accepted by an
   * intermediary for later delivery, RFC 3428 section 7) and other 2xx.
   */
  delivered: boolean;
  /** Call-ID of the MESSAGE. */
  callId: string;
  /** The final response. */
  response: SipResponse;
}

/**
 * Why a MESSAGE failed: `rejected` (a final non-2xx response), `auth`
 * (authentication failed or no password), `timeout` (no final response in
 * time), `network` (the next hop could not be reached), `too_large` (over
 * {@linkcode UDP_MESSAGE_LIMIT} bytes and no congestion-controlled transport).
 */
export type MessageFailure = "rejected" | "auth" | "timeout" | "network" | "too_large";

/** A MESSAGE that did not get a 2xx; carries the status, reason and kind of failure. */
export class MessageSendError extends Error {
  /** The kind of failure. */
  readonly kind: MessageFailure;
  /** The SIP status (408 for a local timeout, 503 for a network failure). */
  readonly status: number;
  /** The reason phrase. */
  readonly reason: string;
  /** The recipient. */
  readonly to: string;
  /** The Call-ID of the MESSAGE. */
  readonly callId: string;
  /** The final response, when one came. */
  readonly response?: SipResponse;

  /** Creates the error. */
  constructor(
    kind: MessageFailure,
    init: {
      status: number;
      reason: string;
      to: string;
      callId: string;
      response?: SipResponse;
      message?: string;
      cause?: unknown;
    },
  ) {
    super(
      init.message ?? `MESSAGE to ${init.to} failed: ${init.status} ${init.reason}`,
      init.cause === undefined ? undefined : { cause: init.cause },
    );
    this.name = "MessageSendError";
    this.kind = kind;
    this.status = init.status;
    this.reason = init.reason;
    this.to = init.to;
    this.callId = init.callId;
    this.response = init.response;
  }
}

/** Options of {@linkcode MessageSender}. */
export interface MessageSenderOptions {
  /** Give up on a MESSAGE after this many milliseconds (on the UA's clock). Default: the transaction's own Timer F (64*T1). */
  timeout?: number;
  /** Follow 3xx responses. Default true. */
  followRedirects?: boolean;
  /** The time written as CPIM DateTime. Default `() => new Date()`. */
  now?: () => Date;
}

/**
 * Sends pager-mode MESSAGE requests through a {@linkcode UserAgent}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoopNetwork } from "../sip/transport_loop.ts";
 * import type { Uri } from "../sip/message.ts";
 * import { UserAgent } from "../sip/ua.ts";
 * import { MessageListener, MessageSender } from "./message.ts";
 *
 * // Two agents on an in-memory network (stream transports: no timers left behind).
 * const net = new LoopNetwork();
 * const resolve = (uri: Uri) =>
 *   Promise.resolve([{ protocol: "tcp" as const, host: uri.host, port: uri.port ?? 5060 }]);
 * const agent = (aor: string, host: string) =>
 *   UserAgent.create({ aor, resolve, transports: [net.transport({ host, protocol: "tcp" })] });
 * const alice = await agent("alice@example.test", "192.0.2.1");
 * const bob = await agent("bob@example.test", "192.0.2.2");
 *
 * const got: string[] = [];
 * new MessageListener(bob, { onMessage: (m) => void got.push(m.text ?? "") });
 * const result = await new MessageSender(alice).send("sip:bob@192.0.2.2", { body: "Hello" });
 * assert.equal(result.status, 200);
 * assert.equal(result.delivered, true); // false for a 202
 * assert.deepEqual(got, ["Hello"]);
 * await alice.close();
 * await bob.close();
 * ```
 */
export class MessageSender {
  readonly #ua: UserAgent;
  readonly #options: MessageSenderOptions;

  /** Creates a sender on `ua`. */
  constructor(ua: UserAgent, options: MessageSenderOptions = {}) {
    this.#ua = ua;
    this.#options = options;
  }

  /**
   * Loads what building `message` needs: the CPIM code when `cpim` is set
   * (kept off the start-up of a plain message). {@linkcode send} does this
   * itself; call it before {@linkcode buildRequest} with `cpim`.
   */
  async prepare(message: OutgoingMessage): Promise<void> {
    if (message.cpim) cpimApi ??= await import("./cpim.ts");
  }

  /**
   * Builds the MESSAGE request for `to` (no Contact: MESSAGE creates no
   * dialog, RFC 3428 section 4). With `cpim`, {@linkcode prepare} must have
   * been awaited (by this sender or another) first.
   */
  buildRequest(to: string, message: OutgoingMessage): SipRequest {
    const uri = toSipUri(to);
    const headers: [string, string][] = [...(message.headers ?? [])];
    let body = message.body;
    let contentType = message.contentType ?? DEFAULT_MESSAGE_TYPE;
    // Checked unless it is the default (a constant known to be good).
    if (contentType !== DEFAULT_MESSAGE_TYPE) parseMediaType(contentType);
    if (message.cpim) {
      if (cpimApi === undefined) {
        throw new Error("MessageSender: await prepare() before building a CPIM message");
      }
      const { CPIM_CONTENT_TYPE, formatCpim } = cpimApi;
      const plain = (u: Uri) => formatUri({ ...u, params: {}, headers: {} });
      body = formatCpim({
        from: { uri: plain(this.#ua.aor), name: this.#ua.displayName },
        to: plain(uri),
        dateTime: (this.#options.now ?? (() => new Date()))(),
        subject: message.subject,
        contentType,
        body,
      });
      contentType = CPIM_CONTENT_TYPE;
    } else if (message.subject !== undefined) {
      if (/[\r\n]/.test(message.subject)) throw new TypeError("Subject contains CR or LF");
      headers.push(["Subject", message.subject]);
    }
    return this.#ua.createRequest("MESSAGE", uri, { headers, body, contentType });
  }

  /**
   * Sends one message. Resolves on a 2xx with `delivered` true for 200 and
   * false for 202; rejects with {@linkcode MessageSendError} otherwise.
   */
  async send(to: string, message: OutgoingMessage): Promise<MessageResult> {
    if (message.cpim && cpimApi === undefined) await this.prepare(message);
    return await this.sendRequest(this.buildRequest(to, message));
  }

  /**
   * Sends a MESSAGE made by {@linkcode buildRequest}, with the outcome of
   * {@linkcode send}: for a caller that builds first (to tell bad input from
   * a failed send) without building twice. Each request is sent once.
   */
  async sendRequest(req: SipRequest): Promise<MessageResult> {
    const target = formatUri(req.uri);
    const callId = req.callId;
    const fail = (kind: MessageFailure, status: number, reason: string, extra = {}) =>
      new MessageSendError(kind, { status, reason, to: target, callId, ...extra });
    let timer: number | undefined;
    const timeout = this.#options.timeout;
    const clock = this.#ua.clock;
    try {
      const sending = this.#ua.send(req, {
        followRedirects: this.#options.followRedirects ?? true,
      });
      const { response } = timeout === undefined ? await sending : await Promise.race([
        sending,
        new Promise<never>((_, reject) => {
          timer = clock.setTimeout(
            () =>
              reject(
                fail("timeout", 408, "Request Timeout", {
                  message: `MESSAGE to ${target}: no final response within ${timeout / 1000} s`,
                }),
              ),
            timeout,
          );
        }),
      ]).finally(() => void sending.catch(() => {}));
      if (response.status >= 200 && response.status < 300) {
        return {
          to: target,
          status: response.status,
          reason: response.reason,
          // RFC 3428 section 7: a 202 "indicates that the request has been
          // accepted for processing, but the processing has not been
          // completed"; only a 200 says the recipient got it.
          delivered: response.status === 200,
          callId,
          response,
        };
      }
      throw fail("rejected", response.status, response.reason, { response });
    } catch (e) {
      if (e instanceof MessageSendError) throw e;
      if (e instanceof DigestAuthError) {
        throw fail("auth", e.status, e.message, { cause: e, message: e.message });
      }
      if (e instanceof SipRequestError) {
        const cause = String((e.cause as Error | undefined)?.message ?? "");
        if (/exceed/.test(cause) && /18\.1\.1/.test(cause)) {
          // RFC 3428 section 8: a MESSAGE over the limit must go over a
          // congestion-controlled transport; with none, say so.
          throw fail("too_large", 513, "Message Too Large", {
            cause: e,
            message: `Cannot send MESSAGE to ${target}: ${req.body.length} bytes of body ` +
              `need TCP or TLS (RFC 3428 section 8) and none could be used` +
              (/TCP failed: /.test(cause) ? ` (${cause.replace(/^.*TCP failed: /, "")})` : ""),
          });
        }
        if (e.local) {
          const kind = e.status === 408 ? "timeout" : "network";
          throw fail(kind, e.status, e.reason, {
            cause: e,
            message: `MESSAGE to ${target}: ${e.status} ${e.reason}` +
              (cause && !e.reason.includes(cause) ? ` (${cause})` : ""),
          });
        }
        throw fail("rejected", e.status, e.reason, { cause: e });
      }
      if (e instanceof Error && /Cannot (send|connect|locate)/.test(e.message)) {
        throw fail("network", 503, "Service Unavailable", { cause: e, message: e.message });
      }
      throw e;
    } finally {
      if (timer !== undefined) clock.clearTimeout(timer);
    }
  }
}
