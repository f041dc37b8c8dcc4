/**
 * Placing a call: the caller's side of an INVITE session (RFC 3261 13.2).
 *
 * @module
 */

import type { NameAddr, Uri } from "../message.ts";
import type { UserAgent } from "../ua.ts";
import { toSipUri } from "../input.ts";
import { InviteSession, SESSION_METHODS } from "./session.ts";
import type { OfferAnswerHandler, SessionTimers } from "./types.ts";

/** Options of {@linkcode placeCall}. */
export interface PlaceCallOptions {
  /** The media layer: offers and answers. */
  media: OfferAnswerHandler;
  /** From (default the UA's AOR and display name, with a fresh tag). */
  from?: NameAddr;
  /** More header fields for the INVITE. */
  headers?: [string, string][];
  /** Follow 3xx to their Contacts (pre-call mobility). Default true. */
  followRedirects?: boolean;
  /** At most this many redirects (a loop of redirects ends there). Default 5. */
  maxRedirects?: number;
  /** Offer in the INVITE (default true); false sends it empty: offer in the 2xx, answer in the ACK. */
  earlyOffer?: boolean;
  /** Session timing. */
  timers?: SessionTimers;
  /** Ask for RFC 4028 session timers with this interval in seconds (the peer may ask anyway). */
  sessionExpires?: number;
}

/**
 * Places a call: builds the INVITE (with the media layer's offer unless
 * `earlyOffer` is false), sends it through the UA core (outbound proxy,
 * RFC 3263, digest authentication, 3xx when asked) and resolves with the
 * {@linkcode InviteSession} as soon as it is on its way; its events tell
 * the rest ("ringing", "answered", "ended").
 *
 * @example
 * ```ts
 * import { LoopNetwork } from "../transport_loop.ts";
 * import { UserAgent } from "../ua.ts";
 * import { InviteAcceptor, placeCall, type OfferAnswerHandler } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
 *   "m=audio 4000 RTP/AVP 0\r\n";
 * const media: OfferAnswerHandler = {
 *   createOffer: () => Promise.resolve(sdp),
 *   createAnswer: () => Promise.resolve(sdp),
 *   applyAnswer: () => Promise.resolve(),
 *   rollback: () => {},
 * };
 * const net = new LoopNetwork();
 * const alice = await UserAgent.create({ aor: "alice@example.test", transports: [net.transport({ host: "192.0.2.1" })] });
 * const bob = await UserAgent.create({ aor: "bob@example.test", transports: [net.transport({ host: "192.0.2.2" })] });
 * new InviteAcceptor(bob, { onIncoming: (call) => call.accept(media) });
 * const call = await placeCall(alice, "sip:bob@192.0.2.2", { media });
 * assert.equal(await call.answered, true);
 * await call.bye();
 * assert.equal((await call.finished).reason, "local_bye");
 * await alice.close();
 * await bob.close();
 * ```
 */
export async function placeCall(
  ua: UserAgent,
  target: string | Uri,
  options: PlaceCallOptions,
): Promise<InviteSession> {
  const uri = typeof target === "string" ? toSipUri(target) : target;
  const offer = options.earlyOffer === false ? undefined : await options.media.createOffer();
  const headers: [string, string][] = [
    ["Allow", SESSION_METHODS.join(", ")],
    ["Supported", "100rel, timer"],
  ];
  if (options.sessionExpires !== undefined) {
    headers.push(["Session-Expires", String(options.sessionExpires)]);
  }
  headers.push(...(options.headers ?? []));
  const invite = ua.createRequest("INVITE", uri, {
    from: options.from,
    headers,
    body: offer,
    contentType: offer !== undefined ? "application/sdp" : undefined,
  });
  const session = new InviteSession(ua, "uac", invite.callId, options.media);
  session._startUac(invite, options.media, offer, {
    followRedirects: options.followRedirects ?? true,
    maxRedirects: options.maxRedirects ?? 5,
    noAnswer: options.timers?.noAnswer ?? 180_000,
  });
  return session;
}
