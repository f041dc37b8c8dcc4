// Helpers of the INVITE session tests on the loop network (tests/invite_*_test.ts):
// a fake media layer with readable SDP, a caller/callee pair, event and message tallies.

import type { UserAgent } from "../lib/sip/ua.ts";
import {
  type IncomingCall,
  InviteAcceptor,
  type InviteSession,
  type OfferAnswerHandler,
  OfferRejectedError,
  placeCall,
} from "../lib/sip/invite/mod.ts";
import type { Bed } from "./_sip_bed.ts";

/** A media layer stand-in: fixed SDP strings that name their side and version. */
export class FakeMedia implements OfferAnswerHandler {
  readonly log: string[] = [];
  version = 0;
  /** Refuse offers (createAnswer) with OfferRejectedError. */
  refuse = false;
  /** Name errors like lib/rtp does. */
  refuseAsRtp = false;
  constructor(readonly name: string) {}
  createOffer(): Promise<string> {
    this.version++;
    this.log.push(`offer ${this.version}`);
    return Promise.resolve(sdp(this.name, this.version));
  }
  createAnswer(offer: string): Promise<string> {
    if (this.refuse) return Promise.reject(new OfferRejectedError("no common codec"));
    if (this.refuseAsRtp) {
      const e = new Error("no codec");
      e.name = "SdpNegotiationError";
      return Promise.reject(e);
    }
    this.version++;
    this.log.push(`answer ${this.version} to ${origin(offer)}`);
    return Promise.resolve(sdp(this.name, this.version));
  }
  applyAnswer(answer: string): Promise<void> {
    this.log.push(`apply ${origin(answer)}`);
    return Promise.resolve();
  }
  rollback(): void {
    this.log.push("rollback");
  }
}

export function sdp(name: string, version: number): string {
  return `v=0\r\no=${name} 1 ${version} IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n` +
    "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
}

/** "alice/2" from an SDP made by {@linkcode sdp}. */
export function origin(text: string): string {
  const m = /o=(\S+) 1 (\d+)/.exec(text);
  return m ? `${m[1]}/${m[2]}` : "?";
}

export const ALICE = "192.0.2.1";
export const BOB = "192.0.2.2";

export interface Pair {
  alice: UserAgent;
  bob: UserAgent;
  aliceMedia: FakeMedia;
  bobMedia: FakeMedia;
  incoming: IncomingCall[];
}

/** Alice and Bob; Bob's acceptor runs `onIncoming` (default: ring, then answer). */
export async function pair(
  bed: Bed,
  onIncoming?: (call: IncomingCall, media: FakeMedia) => void | Promise<void>,
): Promise<Pair> {
  const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
  const bob = await bed.ua(BOB, { aor: "bob@example.test" });
  const aliceMedia = new FakeMedia("alice");
  const bobMedia = new FakeMedia("bob");
  const incoming: IncomingCall[] = [];
  new InviteAcceptor(bob, {
    onIncoming: async (call) => {
      incoming.push(call);
      if (onIncoming) return onIncoming(call, bobMedia);
      await call.progress(180);
      await call.accept(bobMedia);
    },
  });
  return { alice, bob, aliceMedia, bobMedia, incoming };
}

export function events(session: InviteSession): string[] {
  const out: string[] = [];
  for (const type of ["ringing", "answered", "ended", "reinvite", "dtmf_info", "refreshed"]) {
    session.addEventListener(type, (e) => {
      const d = (e as CustomEvent).detail;
      out.push(
        type === "ringing"
          ? `ringing ${d.status}${d.early_media ? " early" : ""}`
          : type === "ended"
          ? `ended ${d.reason}${d.status ? " " + d.status : ""}`
          : type === "dtmf_info"
          ? `dtmf ${d.digit} ${d.duration_ms}`
          : type === "refreshed"
          ? `refreshed ${d.method}`
          : type,
      );
    });
  }
  return out;
}

/** Alice calls Bob (who rings, then answers); resolves once both sides are confirmed. */
export async function confirmedCall(
  bed: Bed,
): Promise<{ p: Pair; call: InviteSession; callee: InviteSession }> {
  const p = await pair(bed);
  const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
  await bed.run(call.answered);
  const callee = p.incoming[0].session;
  await bed.run(callee.answered);
  return { p, call, callee };
}

export function count(bed: Bed, what: string, host?: string): number {
  return bed.sent(host).filter((s) => s === what || s.startsWith(what + " ")).length;
}
