/**
 * SDP offer/answer for one audio stream (RFC 3264 on RFC 8866 SDP), parsed
 * and written with the `sdp-transform` package. It knows nothing of SIP: the
 * signalling hands it SDP text and gets SDP text back.
 *
 * What it negotiates: PCMU (0) and PCMA (8) in preference order,
 * telephone-event (RFC 4733) on a dynamic payload type, `a=ptime` and
 * `a=maxptime` (each a receive preference of the side that writes it, RFC
 * 3264 5.1 and RFC 4566 6: we send with the peer's ptime, never above its
 * maxptime, and an answer asks for the offer's ptime when that is coarser
 * than ours, so that both directions packetize alike), the
 * direction attributes (hold is `sendonly`/`inactive`, RFC 6337), `c=` at
 * session and media level, IPv4 and IPv6 (`IP6`). Streams it cannot use are
 * refused in the answer with port 0 (RFC 3264 section 6); an offer with no
 * usable audio stream throws {@linkcode SdpNegotiationError}, which a SIP
 * layer turns into 488 Not Acceptable Here.
 *
 * The `o=` line keeps one session id; its version goes up by one on every new
 * offer, and on an answer whose content differs from the last description
 * sent (RFC 3264 section 8).
 *
 * @module
 */

import * as sdpTransform from "sdp-transform";
import { codecByName, type CodecName } from "./codec.ts";

/** A stream direction, from the point of view of the side that writes it. */
export type Direction = "sendrecv" | "sendonly" | "recvonly" | "inactive";

/** The four directions (RFC 8866 section 6.7). */
export const DIRECTIONS: readonly Direction[] = ["sendrecv", "sendonly", "recvonly", "inactive"];

/** A transport address. */
export interface MediaAddress {
  /** IPv4 or IPv6 address (no brackets). */
  hostname: string;
  /** UDP port. */
  port: number;
}

/** What one side offers or answers with. */
export interface LocalMedia {
  /** The address written into `c=` (never 0.0.0.0 unless meant). */
  hostname: string;
  /** The RTP port; RTCP is on port + 1. 0 refuses the stream. */
  port: number;
  /** Codecs in preference order. */
  codecs: CodecName[];
  /** Packet duration in ms we would like to receive and send with (default 20). */
  ptime?: number;
  /** The longest packet we take, ms, written as `a=maxptime` (not written when absent). */
  maxptime?: number;
  /** Offer or accept telephone-event (default true). */
  telephoneEvent?: boolean;
  /** Our direction (default sendrecv). */
  direction?: Direction;
}

/** The agreed audio stream, as the media layer uses it. */
export interface NegotiatedMedia {
  /** The codec we send with. */
  codec: CodecName;
  /** Its payload type. */
  payloadType: number;
  /**
   * Milliseconds of audio per packet we send: the peer's a=ptime, else ours,
   * at most the peer's a=maxptime.
   */
  ptime: number;
  /** The peer's a=maxptime, when it wrote one. */
  remoteMaxptime?: number;
  /** Where the peer wants RTP. */
  remote: MediaAddress;
  /** Where the peer wants RTCP (a=rtcp, else RTP port + 1). */
  remoteRtcp: MediaAddress;
  /** Our direction: whether we send and whether we play what comes. */
  direction: Direction;
  /** The peer's direction as written in its SDP (c=0.0.0.0 counts as not receiving). */
  remoteDirection: Direction;
  /** The telephone-event payload type we send with, when both sides take it. */
  telephoneEventPayloadType?: number;
  /**
   * The telephone-event payload type the peer sends with: the one in our own
   * SDP (an answerer may number it differently from the offer).
   */
  receiveTelephoneEventPayloadType?: number;
  /** Every payload type we accept from the peer, by codec name. */
  receivePayloadTypes: Record<number, CodecName>;
}

/**
 * The error for SDP that cannot be used: no common codec, no audio stream,
 * unparsable text. Its `name` is `"SdpNegotiationError"`; a SIP layer maps
 * it to 488 Not Acceptable Here.
 */
export class SdpNegotiationError extends Error {
  /** Creates the error with a message saying what did not fit. */
  constructor(message: string) {
    super(message);
    this.name = "SdpNegotiationError";
  }
}

// --- sdp-transform shapes (the package ships no types) ---
interface SdpRtp {
  payload: number;
  codec: string;
  rate?: number;
  encoding?: string;
}
interface SdpMedia {
  type: string;
  port: number;
  protocol: string;
  payloads?: string;
  rtp: SdpRtp[];
  fmtp: { payload: number; config: string }[];
  connection?: { version: number; ip: string };
  rtcp?: { port: number; netType?: string; ipVer?: number; address?: string };
  ptime?: number;
  maxptime?: number;
  direction?: Direction;
  [key: string]: unknown;
}
interface SdpSession {
  version: number;
  origin: {
    username: string;
    sessionId: number | string;
    sessionVersion: number;
    netType: string;
    ipVer: number;
    address: string;
  };
  name: string;
  connection?: { version: number; ip: string };
  timing: { start: number; stop: number };
  direction?: Direction;
  media: SdpMedia[];
  [key: string]: unknown;
}

const parseSdp = sdpTransform.parse as unknown as (text: string) => SdpSession;
const writeSdp = sdpTransform.write as unknown as (session: SdpSession) => string;

/** The direction the other side has when we have `d`. */
export function reverseDirection(d: Direction): Direction {
  return d === "sendonly" ? "recvonly" : d === "recvonly" ? "sendonly" : d;
}

/** True when `d` includes sending. */
export function sends(d: Direction): boolean {
  return d === "sendrecv" || d === "sendonly";
}

/** True when `d` includes receiving. */
export function receives(d: Direction): boolean {
  return d === "sendrecv" || d === "recvonly";
}

function directionOf(send: boolean, receive: boolean): Direction {
  return send ? (receive ? "sendrecv" : "sendonly") : (receive ? "recvonly" : "inactive");
}

/** The direction allowed by both `ours` and the reverse of the peer's `theirs`. */
function intersect(ours: Direction, theirs: Direction): Direction {
  return directionOf(sends(ours) && receives(theirs), receives(ours) && sends(theirs));
}

function ipVersion(hostname: string): 4 | 6 {
  return hostname.includes(":") ? 6 : 4;
}

/**
 * Parses SDP text, throwing {@linkcode SdpNegotiationError} for text that is
 * not SDP.
 */
function parse(text: string): SdpSession {
  let session: SdpSession;
  try {
    session = parseSdp(text);
  } catch (error) {
    throw new SdpNegotiationError(`Cannot parse SDP: ${(error as Error).message}`);
  }
  if (!session || !Array.isArray(session.media) || session.version === undefined) {
    throw new SdpNegotiationError("Cannot parse SDP: no v= line");
  }
  return session;
}

const TELEPHONE_EVENT = "telephone-event";
const DEFAULT_TE_PT = 101;

/** The codec name a payload type stands for in `m`, or undefined. */
function codecOf(m: SdpMedia, pt: number): string | undefined {
  const map = m.rtp?.find((r) => r.payload === pt);
  if (map) {
    if ((map.rate ?? 8000) !== 8000) return undefined;
    return map.codec.toUpperCase() === "TELEPHONE-EVENT"
      ? TELEPHONE_EVENT
      : map.codec.toUpperCase();
  }
  // RFC 3551 static payload types need no rtpmap.
  if (pt === 0) return "PCMU";
  if (pt === 8) return "PCMA";
  return undefined;
}

function payloadList(m: SdpMedia): number[] {
  return String(m.payloads ?? "").trim().split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
}

function connectionOf(session: SdpSession, m: SdpMedia): string | undefined {
  return m.connection?.ip ?? session.connection?.ip;
}

function isNullAddress(ip: string | undefined): boolean {
  return ip === undefined || ip === "0.0.0.0" || ip === "::";
}

function mediaDirection(session: SdpSession, m: SdpMedia): Direction {
  let d: Direction = m.direction ?? session.direction ?? "sendrecv";
  // RFC 3264 section 8.4 (old style hold): c=0.0.0.0 means do not send to me.
  if (isNullAddress(connectionOf(session, m))) d = directionOf(sends(d), false);
  return d;
}

function usableAudio(m: SdpMedia): boolean {
  return m.type === "audio" && m.port !== 0 && /^RTP\/AVP$/i.test(m.protocol);
}

/** Reads the remote side of an audio m= line. */
function remoteOf(session: SdpSession, m: SdpMedia): Pick<
  NegotiatedMedia,
  "remote" | "remoteRtcp" | "remoteDirection"
> {
  const ip = connectionOf(session, m) ?? "0.0.0.0";
  const rtcpHost = m.rtcp?.address ?? ip;
  return {
    remote: { hostname: ip, port: m.port },
    remoteRtcp: { hostname: rtcpHost, port: m.rtcp?.port ?? m.port + 1 },
    remoteDirection: mediaDirection(session, m),
  };
}

function telephoneEventPt(m: SdpMedia): number | undefined {
  return payloadList(m).find((pt) => codecOf(m, pt) === TELEPHONE_EVENT);
}

interface Described {
  media: LocalMedia;
  /** Payload types we wrote, by codec name. */
  payloadTypes: { codec: CodecName; pt: number }[];
  telephoneEventPt?: number;
}

/** Options of {@linkcode OfferAnswer}. */
export interface OfferAnswerOptions {
  /** The o= session id (default: random). */
  sessionId?: number;
  /** The o= user name (default `-`). */
  username?: string;
  /** The s= line (default `-`). */
  sessionName?: string;
}

/**
 * The offer/answer state of one session (RFC 3264): our o= line, the last
 * offer we sent (pending until answered or rolled back) and the agreed media.
 *
 * @example
 * ```ts
 * import { OfferAnswer } from "./sdp.ts";
 * import assert from "node:assert/strict";
 * const alice = new OfferAnswer();
 * const bob = new OfferAnswer();
 * const offer = alice.createOffer({ hostname: "127.0.0.1", port: 4000, codecs: ["PCMA", "PCMU"] });
 * const answer = bob.createAnswer(offer, { hostname: "127.0.0.1", port: 5000, codecs: ["PCMU", "PCMA"] });
 * const agreed = alice.applyAnswer(answer.sdp);
 * assert.equal(agreed.codec, "PCMA");
 * assert.deepEqual(agreed.remote, { hostname: "127.0.0.1", port: 5000 });
 * ```
 */
export class OfferAnswer {
  readonly #sessionId: number;
  readonly #username: string;
  readonly #sessionName: string;
  #version = 0;
  #lastBody: string | undefined;
  #pending: { session: SdpSession; described: Described; version: number } | undefined;
  #negotiated: NegotiatedMedia | undefined;
  #lastAnswerOrigin: string | undefined;
  /** The offer the last applied answer answered, until we offer or answer anew (forks). */
  #answered: { session: SdpSession; described: Described; version: number } | undefined;

  /** Creates the state with a fresh o= session id. */
  constructor(options: OfferAnswerOptions = {}) {
    this.#sessionId = options.sessionId ?? Math.floor(Math.random() * 2 ** 31) + 1;
    this.#username = options.username ?? "-";
    this.#sessionName = options.sessionName ?? "-";
    this.#version = Math.floor(Math.random() * 1000);
  }

  /** The agreed media, after an answer was sent or applied. */
  get negotiated(): NegotiatedMedia | undefined {
    return this.#negotiated;
  }

  /** True while an offer we made waits for its answer. */
  get offerPending(): boolean {
    return this.#pending !== undefined;
  }

  /** The o= session version of the last description we wrote. */
  get sessionVersion(): number {
    return this.#version;
  }

  /** The o= session id. */
  get sessionId(): number {
    return this.#sessionId;
  }

  /** Writes a new offer from `local`; its o= version is one more than the last one. */
  createOffer(local: LocalMedia): string {
    const described = this.#describe(local);
    const session = this.#session(local, [this.#mediaLine(described)]);
    this.#version++;
    session.origin.sessionVersion = this.#version;
    const text = writeSdp(session);
    this.#lastBody = bodyWithoutOrigin(text);
    this.#pending = { session, described, version: this.#version };
    this.#answered = undefined;
    return text;
  }

  /**
   * Answers the remote `offer` with what `local` allows, and makes the result
   * the agreed media. The first usable audio stream is taken, with the first
   * codec in the offer (the offerer's preference) that `local` supports; other
   * streams are refused with port 0. Throws {@linkcode SdpNegotiationError}
   * when no audio stream fits.
   */
  createAnswer(offer: string, local: LocalMedia): { sdp: string; negotiated: NegotiatedMedia } {
    const remote = parse(offer);
    let chosen: { index: number; codec: CodecName; pt: number } | undefined;
    let reason = "no audio stream in the offer";
    for (let i = 0; i < remote.media.length && !chosen; i++) {
      const m = remote.media[i];
      if (m.type !== "audio") continue;
      if (!usableAudio(m)) {
        reason = m.port === 0
          ? "the audio stream is refused (port 0)"
          : `unsupported protocol ${m.protocol}`;
        continue;
      }
      for (const pt of payloadList(m)) {
        const name = codecOf(m, pt);
        if (name && (local.codecs as string[]).includes(name)) {
          chosen = { index: i, codec: name as CodecName, pt };
          break;
        }
      }
      if (!chosen) {
        reason = `no common codec (offered ${describePayloads(m)}; we take ${
          local.codecs.join(", ")
        })`;
      }
    }
    if (!chosen) throw new SdpNegotiationError(`Cannot answer the offer: ${reason}`);

    const offered = remote.media[chosen.index];
    const offeredTe = telephoneEventPt(offered);
    const useTe = (local.telephoneEvent ?? true) && offeredTe !== undefined;
    const ourDirection = intersect(local.direction ?? "sendrecv", mediaDirection(remote, offered));
    const ptime = local.ptime ?? 20;
    // Our receive preference: the offer's ptime when coarser than ours (a
    // peer that packetizes coarsely wants the same back), within our maxptime.
    const answerPtime = clampPtime(Math.min(
      Math.max(ptime, offered.ptime ?? 0),
      local.maxptime ?? Infinity,
    ));
    const described: Described = {
      media: { ...local, direction: ourDirection, ptime: answerPtime },
      payloadTypes: [{ codec: chosen.codec, pt: chosen.pt }],
      telephoneEventPt: useTe ? offeredTe : undefined,
    };
    const lines = remote.media.map((m, i) => {
      if (i === chosen!.index) return this.#mediaLine(described);
      return refusedLine(m);
    });
    const session = this.#session(local, lines);
    const text = this.#stamp(session);

    const remoteSide = remoteOf(remote, offered);
    const negotiated: NegotiatedMedia = {
      codec: chosen.codec,
      payloadType: chosen.pt,
      ptime: sendPtime(offered, ptime),
      ...maxptimeOf(offered),
      ...remoteSide,
      direction: ourDirection,
      telephoneEventPayloadType: useTe ? offeredTe : undefined,
      receiveTelephoneEventPayloadType: useTe ? offeredTe : undefined,
      receivePayloadTypes: { [chosen.pt]: chosen.codec },
    };
    this.#pending = undefined;
    this.#answered = undefined;
    this.#negotiated = negotiated;
    return { sdp: text, negotiated };
  }

  /**
   * Applies the remote `answer` to our pending offer and makes the result the
   * agreed media. The answer already applied, given again (same o= line), is
   * accepted and changes nothing. Another answer to the offer already
   * answered (another o= line, and no offer or answer of ours since) is an
   * answer from another fork of the same INVITE (RFC 3261 13.2.2.4: each
   * early dialog answers the offer on its own) and replaces the agreed media,
   * so that media follows the fork that answers. Throws
   * {@linkcode SdpNegotiationError} when there is no offer to answer, the
   * answer refuses the audio stream, or names no codec we offered; the
   * pending offer is then dropped (the caller may
   * {@linkcode OfferAnswer.rollback}).
   */
  applyAnswer(answer: string): NegotiatedMedia {
    let pending = this.#pending;
    const remote = parse(answer);
    if (!pending) {
      // The same answer again (a 183 then its 200 carry the same SDP): nothing changes.
      const again = this.#lastAnswerOrigin !== undefined && this.#negotiated !== undefined &&
        originOf(remote) === this.#lastAnswerOrigin;
      if (again) return this.#negotiated!;
      pending = this.#answered;
      if (!pending) throw new SdpNegotiationError("Cannot apply an answer: no offer is pending");
    }
    this.#pending = undefined;
    if (remote.media.length !== pending.session.media.length) {
      throw new SdpNegotiationError(
        `Cannot apply the answer: ${remote.media.length} m= lines for ${pending.session.media.length} offered`,
      );
    }
    const m = remote.media[0];
    if (!usableAudio(m)) {
      throw new SdpNegotiationError("Cannot apply the answer: the audio stream was refused");
    }
    const offeredPts = new Map(pending.described.payloadTypes.map((p) => [p.pt, p.codec]));
    const receivePayloadTypes: Record<number, CodecName> = {};
    let first: { codec: CodecName; pt: number } | undefined;
    for (const pt of payloadList(m)) {
      const name = codecOf(m, pt);
      const codec = offeredPts.get(pt);
      if (codec && name === codec) {
        receivePayloadTypes[pt] = codec;
        first ??= { codec, pt };
      }
    }
    if (!first) {
      throw new SdpNegotiationError(
        `Cannot apply the answer: no codec we offered (answered ${describePayloads(m)})`,
      );
    }
    const answeredTe = telephoneEventPt(m);
    const useTe = pending.described.telephoneEventPt !== undefined && answeredTe !== undefined;
    const negotiated: NegotiatedMedia = {
      codec: first.codec,
      payloadType: first.pt,
      ptime: sendPtime(m, pending.described.media.ptime ?? 20),
      ...maxptimeOf(m),
      ...remoteOf(remote, m),
      direction: intersect(
        pending.described.media.direction ?? "sendrecv",
        mediaDirection(remote, m),
      ),
      telephoneEventPayloadType: useTe ? answeredTe : undefined,
      receiveTelephoneEventPayloadType: useTe ? pending.described.telephoneEventPt : undefined,
      receivePayloadTypes,
    };
    this.#negotiated = negotiated;
    this.#lastAnswerOrigin = originOf(remote);
    this.#answered = pending;
    return negotiated;
  }

  /** Forgets the pending offer: the agreed media stays what it was (RFC 3264 section 8). */
  rollback(): void {
    this.#pending = undefined;
  }

  #describe(local: LocalMedia): Described {
    const payloadTypes = local.codecs.map((codec) => {
      const c = codecByName(codec);
      if (!c) throw new TypeError(`Unknown codec ${codec}`);
      return { codec, pt: c.payloadType };
    });
    if (payloadTypes.length === 0) throw new TypeError("Cannot offer: no codec");
    return {
      media: { ...local, ptime: local.ptime ?? 20, direction: local.direction ?? "sendrecv" },
      payloadTypes,
      telephoneEventPt: (local.telephoneEvent ?? true) ? DEFAULT_TE_PT : undefined,
    };
  }

  #mediaLine(d: Described): SdpMedia {
    const pts = d.payloadTypes.map((p) => p.pt);
    const rtp: SdpRtp[] = d.payloadTypes.map((p) => ({
      payload: p.pt,
      codec: p.codec,
      rate: 8000,
    }));
    const fmtp: SdpMedia["fmtp"] = [];
    if (d.telephoneEventPt !== undefined) {
      pts.push(d.telephoneEventPt);
      rtp.push({ payload: d.telephoneEventPt, codec: TELEPHONE_EVENT, rate: 8000 });
      fmtp.push({ payload: d.telephoneEventPt, config: "0-16" });
    }
    return {
      type: "audio",
      port: d.media.port,
      protocol: "RTP/AVP",
      payloads: pts.join(" "),
      rtp,
      fmtp,
      ptime: d.media.ptime,
      ...(d.media.maxptime ? { maxptime: clampPtime(d.media.maxptime) } : {}),
      direction: d.media.direction,
    };
  }

  #session(local: LocalMedia, media: SdpMedia[]): SdpSession {
    const ipVer = ipVersion(local.hostname);
    return {
      version: 0,
      origin: {
        username: this.#username,
        sessionId: this.#sessionId,
        sessionVersion: this.#version,
        netType: "IN",
        ipVer,
        address: local.hostname,
      },
      name: this.#sessionName,
      connection: { version: ipVer, ip: local.hostname },
      timing: { start: 0, stop: 0 },
      media,
    };
  }

  /** Sets the o= version of an answer: +1 only when the content changed. */
  #stamp(session: SdpSession): string {
    session.origin.sessionVersion = this.#version;
    let text = writeSdp(session);
    const body = bodyWithoutOrigin(text);
    if (this.#lastBody !== undefined && body !== this.#lastBody) {
      this.#version++;
      session.origin.sessionVersion = this.#version;
      text = writeSdp(session);
    }
    this.#lastBody = body;
    return text;
  }
}

function originOf(session: SdpSession): string {
  const o = session.origin;
  return o ? `${o.username} ${o.sessionId} ${o.sessionVersion} ${o.address}` : "";
}

function bodyWithoutOrigin(text: string): string {
  return text.split("\r\n").filter((l) => !l.startsWith("o=")).join("\r\n");
}

function refusedLine(m: SdpMedia): SdpMedia {
  const pts = payloadList(m);
  return {
    type: m.type,
    port: 0,
    protocol: m.protocol,
    payloads: pts.length > 0 ? String(pts[0]) : "0",
    rtp: [],
    fmtp: [],
  };
}

function describePayloads(m: SdpMedia): string {
  return payloadList(m).map((pt) => codecOf(m, pt) ?? String(pt)).join(", ") || "nothing";
}

/** The ptime we send with: the peer's a=ptime, else `ours`, never above its a=maxptime. */
function sendPtime(m: SdpMedia, ours: number): number {
  const max = positive(m.maxptime);
  const wanted = positive(m.ptime) ?? ours;
  const ptime = clampPtime(wanted);
  return max !== undefined && ptime > max ? Math.max(10, Math.floor(max / 10) * 10) : ptime;
}

function maxptimeOf(m: SdpMedia): { remoteMaxptime?: number } {
  const max = positive(m.maxptime);
  return max === undefined ? {} : { remoteMaxptime: max };
}

function positive(value: unknown): number | undefined {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function clampPtime(ms: number): number {
  if (!Number.isFinite(ms) || ms <= 0) return 20;
  return Math.min(100, Math.max(10, Math.round(ms / 10) * 10));
}
