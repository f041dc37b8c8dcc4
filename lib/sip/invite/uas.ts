/**
 * Answering calls: the callee's side of INVITE sessions (RFC 3261 13.3).
 *
 * @module
 */

import type { NameAddr, SipRequest } from "../message.ts";
import type { IncomingRequest, UserAgent } from "../ua.ts";
import { InviteSession } from "./session.ts";
import type { OfferAnswerHandler } from "./types.ts";

/** Options of {@linkcode InviteAcceptor}. */
export interface InviteAcceptorOptions {
  /** Called with each new incoming call; answer, reject or let it ring. */
  onIncoming(incoming: IncomingCall): void | Promise<void>;
  /**
   * A call neither answered nor rejected after this many milliseconds gets
   * 480 Temporarily Unavailable and ends with reason "no_answer". Default
   * 170000 (before the transaction's own 3-minute limit).
   */
  noAnswer?: number;
}

/**
 * An incoming call, until it is answered or rejected. Its
 * {@linkcode IncomingCall.session} exists at once: listen to its "ended"
 * event to learn that the caller cancelled.
 */
export class IncomingCall {
  /** The INVITE. */
  readonly request: SipRequest;
  /** The session this call becomes. */
  readonly session: InviteSession;

  /** @internal The acceptor creates it. */
  constructor(request: SipRequest, session: InviteSession) {
    this.request = request;
    this.session = session;
  }

  /** The caller (From). */
  get from(): NameAddr {
    return this.request.from;
  }

  /** Who was called (To). */
  get to(): NameAddr {
    return this.request.to;
  }

  /** The Call-ID. */
  get callId(): string {
    return this.request.callId;
  }

  /** The caller's SDP offer, undefined for an INVITE without one. */
  get remoteOffer(): string | undefined {
    return this.session.remoteOffer;
  }

  /**
   * Sends a provisional response (180 Ringing, 183 Session Progress...).
   * With `media`, it carries the answer to the caller's offer (early media;
   * the 2xx repeats it). `reliable` sends it with 100rel and waits for the
   * PRACK (RFC 3262); a caller that requires 100rel always gets it so.
   */
  progress(
    status = 180,
    options: { media?: OfferAnswerHandler; reliable?: boolean } = {},
  ): Promise<void> {
    return this.session._progress(status, options);
  }

  /**
   * Answers 200 OK with the answer from `media` (or its offer when the
   * INVITE had none; the answer then comes in the ACK). The 2xx is resent
   * until the ACK arrives; without one the call ends with BYE ("no_ack").
   * An offer the media layer refuses (OfferRejectedError, SdpNegotiationError)
   * gets 488 and the call ends; the error is rethrown.
   */
  accept(media: OfferAnswerHandler): Promise<void> {
    return this.session._accept(media);
  }

  /** Rejects the call (486 Busy Here by default; 603 Decline, 480...). */
  reject(status = 486, reason?: string): Promise<void> {
    return this.session._reject(status, reason);
  }
}

/**
 * Takes the INVITEs that reach a user agent and turns each into an
 * {@linkcode IncomingCall}. Registers the UA's INVITE handler and adds the
 * option tags it supports (100rel, timer) to the UA.
 *
 * @example
 * ```ts
 * import { LoopNetwork } from "../transport_loop.ts";
 * import { UserAgent } from "../ua.ts";
 * import { InviteAcceptor } from "./uas.ts";
 * const net = new LoopNetwork();
 * const bob = await UserAgent.create({ transports: [net.transport({ host: "192.0.2.2" })] });
 * const acceptor = new InviteAcceptor(bob, { onIncoming: (call) => call.reject(486) });
 * bob.allowed.includes("INVITE"); // true
 * acceptor.close();
 * await bob.close();
 * ```
 */
export class InviteAcceptor {
  readonly #ua: UserAgent;
  readonly #options: InviteAcceptorOptions;
  #closed = false;

  /** Starts taking calls. */
  constructor(ua: UserAgent, options: InviteAcceptorOptions) {
    this.#ua = ua;
    this.#options = options;
    for (const tag of ["100rel", "timer"]) {
      if (!ua.supported.some((t) => t.toLowerCase() === tag)) ua.supported.push(tag);
    }
    ua.handle("INVITE", (incoming) => this.#onInvite(incoming));
  }

  /** Stops taking calls: new INVITEs get 480 Temporarily Unavailable. */
  close(): void {
    this.#closed = true;
  }

  async #onInvite(incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    if (this.#closed) {
      await incoming.respond(480);
      return;
    }
    let hasContact = false;
    try {
      hasContact = req.contact.length > 0;
    } catch {
      hasContact = false;
    }
    if (!hasContact) {
      // 8.1.1.8: an INVITE "MUST contain a Contact" (it names the remote target).
      await incoming.respond(400, { reason: "Missing Contact" });
      return;
    }
    const type = req.contentType;
    if (req.body.length > 0 && type !== "application/sdp") {
      // 8.2.3: a body we do not understand: 415 with Accept.
      await incoming.respond(415, { headers: [["Accept", "application/sdp"]] });
      return;
    }
    const se = /^\s*(\d+)/.exec(req.headers.get("Session-Expires") ?? "");
    if (se && Number(se[1]) < 90) {
      // RFC 4028 8.1: "422 ... MUST contain a Min-SE header field".
      await incoming.respond(422, { headers: [["Min-SE", "90"]] });
      return;
    }
    const session = new InviteSession(this.#ua, "uas", req.callId);
    session._startUas(incoming, this.#options.noAnswer ?? 170_000);
    const call = new IncomingCall(req, session);
    try {
      await this.#options.onIncoming(call);
    } catch (e) {
      this.#ua.log("error", `onIncoming failed: ${(e as Error).stack ?? e}`);
      await session._reject(500);
    }
  }
}
