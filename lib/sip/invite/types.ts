/**
 * The seam between INVITE sessions and a media layer (RFC 3264 offer/answer
 * with SDP as opaque text), and the types of session events.
 *
 * @module
 */

/**
 * What an INVITE session needs from a media layer: SDP offers and answers
 * as text. `lib/rtp`'s `MediaSession` implements it structurally.
 *
 * @example
 * ```ts
 * import type { OfferAnswerHandler } from "./types.ts";
 * // A media layer that always offers and answers PCMU on one port.
 * const sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
 *   "m=audio 4000 RTP/AVP 0\r\n";
 * const media: OfferAnswerHandler = {
 *   createOffer: () => Promise.resolve(sdp),
 *   createAnswer: (_offer) => Promise.resolve(sdp),
 *   applyAnswer: (_answer) => Promise.resolve(),
 *   rollback: () => {},
 * };
 * ```
 */
export interface OfferAnswerHandler {
  /** A new local offer (initial INVITE, re-INVITE, UPDATE). */
  createOffer(): Promise<string>;
  /** An answer to the remote offer. Throws OfferRejectedError (-> 488) if nothing fits. */
  createAnswer(offer: string): Promise<string>;
  /** Applies the remote answer to our last offer. Throws OfferRejectedError if unusable. */
  applyAnswer(answer: string): Promise<void>;
  /** Our last offer failed (re-INVITE rejected, 488, 491, CANCEL): back to the last agreed state. */
  rollback(): void;
}

/**
 * A media layer refuses an offer or an answer: the session answers 488 Not
 * Acceptable Here (RFC 3261 13.3.1.3 / RFC 3264 6). An error named
 * `SdpNegotiationError` (lib/rtp's) counts the same.
 *
 * @example
 * ```ts
 * import { isOfferRejection, OfferRejectedError } from "./types.ts";
 * isOfferRejection(new OfferRejectedError("no common codec")); // true
 * ```
 */
export class OfferRejectedError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OfferRejectedError";
  }
}

/** True for errors that mean "this SDP is not acceptable" (488), by name. */
export function isOfferRejection(e: unknown): boolean {
  return e instanceof Error &&
    (e.name === "OfferRejectedError" || e.name === "SdpNegotiationError");
}

/** Why a session ended. */
export type EndReason =
  | "local_bye"
  | "remote_bye"
  | "cancelled"
  | "rejected"
  | "no_answer"
  | "timeout"
  | "no_ack"
  | "failed";

/** The end of a session: reason, and the SIP status when one caused it. */
export interface SessionEnd {
  /** Why. */
  reason: EndReason;
  /** The status of the final response that ended it (rejected, failed). */
  status?: number;
  /** Its reason phrase, or a description of a local failure. */
  phrase?: string;
}

/** States of an INVITE session. */
export type SessionState = "calling" | "early" | "confirmed" | "terminated";

/** Detail of the "ringing" event. */
export interface RingingDetail {
  /** 180, 183... */
  status: number;
  /** Reason phrase. */
  reason: string;
  /** True when the 1xx carried SDP (early media). */
  early_media: boolean;
}

/** Detail of the "dtmf_info" event (INFO with application/dtmf-relay or application/dtmf). */
export interface DtmfInfoDetail {
  /** The digit: 0-9, *, #, A-D. */
  digit: string;
  /** Duration in milliseconds (default 250 when the INFO gives none). */
  duration_ms: number;
}

/** Detail of the "reinvite" event (the peer modified the session). */
export interface ReinviteDetail {
  /** The peer's offer, undefined for an offerless re-INVITE. */
  offer?: string;
  /** The method: INVITE or UPDATE. */
  method: string;
}

/** Detail of the "redirected" event. */
export interface RedirectedDetail {
  /** The Request-URI that was redirected. */
  from: string;
  /** The new one. */
  to: string;
  /** The 3xx status. */
  status: number;
}

/** Session timing (milliseconds) beyond the transaction timers. */
export interface SessionTimers {
  /** UAC: CANCEL an unanswered INVITE after this long (reason no_answer). Default 180000. */
  noAnswer?: number;
  /** UAS: how long a reliable provisional response is retransmitted without PRACK. Default 64*T1. */
  prack?: number;
}
