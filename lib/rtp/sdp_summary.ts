/**
 * What an SDP offer or answer says, in short: the audio codecs by name in
 * the sender's order, telephone-event, direction and address. For showing an
 * incoming call before it is answered (the offer/answer itself is
 * {@linkcode OfferAnswer}'s work).
 *
 * @module
 */

import * as sdpTransform from "sdp-transform";

/** The short description of an SDP body. */
export interface SdpSummary {
  /** Audio codec names in the sender's preference order (e.g. `["PCMU", "PCMA", "G722"]`). */
  codecs: string[];
  /** True when telephone-event (RFC 4733) is offered. */
  telephoneEvent: boolean;
  /** The audio stream's direction (session-level or media-level, default sendrecv). */
  direction: string;
  /** The audio connection address and port (`c=` and `m=`), if any. */
  address?: { hostname: string; port: number };
}

interface Rtp {
  payload: number;
  codec: string;
}
interface Media {
  type: string;
  port: number;
  payloads?: string | number;
  rtp?: Rtp[];
  connection?: { ip: string };
  direction?: string;
}
interface Session {
  connection?: { ip: string };
  direction?: string;
  media?: Media[];
}

/** Static payload types of RFC 3551 that an offer may use without rtpmap. */
const STATIC: Record<number, string> = {
  0: "PCMU",
  3: "GSM",
  4: "G723",
  8: "PCMA",
  9: "G722",
  18: "G729",
};

/**
 * Summarizes the first audio stream of `sdp`. Unparsable text gives an empty
 * summary (no codecs) rather than an error.
 *
 * @example
 * ```ts
 * import { summarizeSdp } from "./sdp_summary.ts";
 * import assert from "node:assert/strict";
 * const s = summarizeSdp("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
 *   "m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n");
 * assert.deepEqual(s.codecs, ["PCMA", "PCMU"]);
 * assert.equal(s.telephoneEvent, true);
 * assert.equal(s.direction, "sendonly");
 * ```
 */
export function summarizeSdp(sdp: string): SdpSummary {
  let session: Session;
  try {
    session = sdpTransform.parse(sdp) as unknown as Session;
  } catch {
    return { codecs: [], telephoneEvent: false, direction: "sendrecv" };
  }
  const audio = session.media?.find((m) => m.type === "audio");
  if (!audio) {
    return { codecs: [], telephoneEvent: false, direction: session.direction ?? "sendrecv" };
  }
  const names = new Map<number, string>();
  for (const r of audio.rtp ?? []) names.set(r.payload, r.codec);
  const codecs: string[] = [];
  let telephoneEvent = false;
  for (const p of String(audio.payloads ?? "").split(/\s+/).filter((s) => s !== "")) {
    const pt = Number(p);
    const name = names.get(pt) ?? STATIC[pt] ?? `pt${pt}`;
    if (name.toLowerCase() === "telephone-event") telephoneEvent = true;
    else if (!codecs.includes(name.toUpperCase())) codecs.push(name.toUpperCase());
  }
  const ip = audio.connection?.ip ?? session.connection?.ip;
  return {
    codecs,
    telephoneEvent,
    direction: audio.direction ?? session.direction ?? "sendrecv",
    address: ip ? { hostname: ip, port: audio.port } : undefined,
  };
}
