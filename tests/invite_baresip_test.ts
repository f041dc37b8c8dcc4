/**
 * lib/sip/invite against baresip on loopback (signalling; the audio path is
 * cli/call.ts's and lib/rtp's business): sipkit calls baresip and baresip
 * calls sipkit; re-INVITEs both ways (baresip's hold, sipkit's new offer);
 * BYE from each side. Skipped outside CI when baresip is missing.
 */

import assert from "node:assert/strict";
import { Registration } from "../lib/sip/registration.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import {
  InviteAcceptor,
  type InviteSession,
  type OfferAnswerHandler,
  placeCall,
} from "../lib/sip/invite/mod.ts";
import { type Baresip, type BaresipOptions, startBaresip } from "./peers/baresip.ts";
import { type Kamailio, startKamailio } from "./peers/kamailio.ts";
import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";
import { freePort, requirePeer, waitFor } from "./peers/require.ts";

const HAVE_BARESIP = requirePeer("baresip", "baresip");
const HAVE_KAMAILIO = requirePeer("kamailio", "kamailio");

/** SDP on an unused port (no audio here); a hold offer gets recvonly; every offer a new version. */
function media(port: number): OfferAnswerHandler & { log: string[] } {
  let version = 0;
  const log: string[] = [];
  const sdp = (dir: string) =>
    `v=0\r\no=sipkit 1 ${++version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n` +
    `m=audio ${port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=${dir}\r\n`;
  return {
    log,
    createOffer: () => (log.push("offer"), Promise.resolve(sdp("sendrecv"))),
    createAnswer: (offer) => {
      const dir = /a=sendonly/.test(offer)
        ? "recvonly"
        : /a=inactive/.test(offer)
        ? "inactive"
        : "sendrecv";
      log.push(`answer ${dir}`);
      return Promise.resolve(sdp(dir));
    },
    applyAnswer: () => (log.push("apply"), Promise.resolve()),
    rollback: () => void log.push("rollback"),
  };
}

async function sipkitUa(): Promise<UserAgent> {
  return await UserAgent.create({ aor: "alice@127.0.0.1", bind: "127.0.0.1:0", listen: ["udp"] });
}

/** Where baresip reaches the UA of {@linkcode sipkitUa}: alice at its UDP port. */
function aliceAt(ua: UserAgent): string {
  return `sip:alice@127.0.0.1:${ua.transports[0].local.port}`;
}

/**
 * Runs `fn` with {@linkcode sipkitUa} and baresip as bob (with `options`); baresip's logs are
 * printed if `fn` fails; baresip is stopped and the UA closed afterwards, whatever happens.
 */
async function withUaAndBob(
  options: BaresipOptions,
  fn: (ua: UserAgent, b: Baresip) => Promise<void>,
): Promise<void> {
  const ua = await sipkitUa();
  try {
    const b = await startBaresip({ user: "bob", ...options });
    try {
      await withLogsOnFailure([b], () => fn(ua, b));
    } finally {
      await b.stop();
    }
  } finally {
    await ua.close();
  }
}

/**
 * Answers every call that comes to `ua` with {@linkcode media} (after a 180 with `ring`);
 * returns the calls' sessions, in the order they came.
 */
function answerCalls(ua: UserAgent, { ring = false } = {}): InviteSession[] {
  const sessions: InviteSession[] = [];
  new InviteAcceptor(ua, {
    onIncoming: async (call) => {
      sessions.push(call.session);
      if (ring) await call.progress(180);
      await call.accept(media(freePort()));
    },
  });
  return sessions;
}

/**
 * Runs `fn` with a Kamailio proxy of its own and a sipkit UA, alice@example.test, that sends
 * through it; `peers` (Kamailio first) have their logs printed if `fn` fails. The UA is closed
 * and Kamailio stopped afterwards, whatever happens.
 */
async function withProxyAndUa(
  fn: (k: Kamailio, ua: UserAgent, peers: HasLogs[]) => Promise<void>,
): Promise<void> {
  const k = await startKamailio({ mode: "proxy" });
  const peers: HasLogs[] = [k];
  let ua: UserAgent | undefined;
  try {
    ua = await UserAgent.create({
      aor: "alice@example.test",
      bind: "127.0.0.1:0",
      listen: ["udp"],
      outboundProxy: `sip:${k.address}`,
    });
    const proxied = ua;
    await withLogsOnFailure(peers, () => fn(k, proxied, peers));
  } finally {
    await ua?.close();
    await k.stop();
  }
}

Deno.test({
  name:
    "sipkit calls baresip: answered, baresip's hold re-INVITE answered, sipkit's re-INVITE accepted, BYE from sipkit",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    await withUaAndBob({ autoAnswer: true, audioCodecs: ["PCMU", "PCMA"] }, async (ua, b) => {
      const m = media(freePort());
      const call = await placeCall(ua, b.contact, { media: m });
      assert.equal(await call.answered, true);
      await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
      const reinvites: string[] = [];
      call.addEventListener("reinvite", (e) => reinvites.push((e as CustomEvent).detail.offer));
      await b.hold();
      await waitFor(() => reinvites.length === 1, { message: "baresip's hold", timeout: 10_000 });
      assert.match(reinvites[0], /a=sendonly/);
      assert.equal(await call.reinvite(), true);
      assert.deepEqual(m.log, ["offer", "apply", "answer recvonly", "offer", "apply"]);
      await call.bye();
      await b.waitEvent((e) => e.type === "CALL_CLOSED");
      assert.equal(call.end?.reason, "local_bye");
    });
  },
});

Deno.test({
  name: "baresip calls sipkit: 180, 200 with the answer, ACK; baresip hangs up (remote_bye)",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    await withUaAndBob({}, async (ua, b) => {
      const sessions = answerCalls(ua, { ring: true });
      assert.equal((await b.dial(aliceAt(ua))).ok, true);
      await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
      await waitFor(() => sessions[0]?.state === "confirmed", { message: "confirmed" });
      await b.hangup();
      const end = await sessions[0].finished;
      assert.equal(end.reason, "remote_bye");
    });
  },
});

Deno.test({
  name: "baresip calls sipkit, sipkit hangs up: BYE reaches baresip",
  ignore: !HAVE_BARESIP,
  fn: async () => {
    await withUaAndBob({}, async (ua, b) => {
      const sessions = answerCalls(ua);
      await b.dial(aliceAt(ua));
      await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
      await waitFor(() => sessions[0]?.state === "confirmed", { message: "confirmed" });
      await sessions[0].bye();
      await b.waitEvent((e) => e.type === "CALL_CLOSED");
      assert.equal(sessions[0].end?.reason, "local_bye");
    });
  },
});

Deno.test({
  name:
    "sipkit calls baresip through Kamailio: route set from Record-Route; ACK, re-INVITE and BYE go through the proxy",
  ignore: !HAVE_BARESIP || !HAVE_KAMAILIO,
  fn: async () => {
    await withProxyAndUa(async (k, ua, peers) => {
      const b = await startBaresip({ user: "bob", proxy: k.address, autoAnswer: true });
      peers.push(b);
      try {
        const call = await placeCall(ua, "sip:bob@example.test", { media: media(freePort()) });
        assert.equal(await call.answered, true);
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        assert.equal(call.dialog?.routeSet.length, 1);
        assert.equal(call.dialog?.routeSet[0].uri.port, k.port);
        assert.equal(await call.reinvite(), true);
        await waitFor(
          () => /in-dialog INVITE \S+ cseq \d+ relayed by loose_route/.test(k.logs()),
          {
            message: "the re-INVITE at Kamailio",
          },
        );
        await b.hangup();
        assert.equal((await call.finished).reason, "remote_bye");
        await waitFor(() => /in-dialog BYE \S+ cseq \d+ relayed by loose_route/.test(k.logs()), {
          message: "the BYE at Kamailio",
        });
      } finally {
        await b.stop();
      }
    });
  },
});

Deno.test({
  name:
    "baresip calls a registered sipkit through Kamailio: the callee's route set from Record-Route; its BYE goes through the proxy",
  ignore: !HAVE_BARESIP || !HAVE_KAMAILIO,
  fn: async () => {
    await withProxyAndUa(async (k, ua, peers) => {
      const registration = new Registration(ua, { registrar: `sip:${k.address}`, expires: 600 });
      assert.equal(await registration.register(), 600, "registered for 600 s");
      const sessions = answerCalls(ua, { ring: true });
      const b = await startBaresip({ user: "bob", proxy: k.address });
      peers.push(b);
      try {
        assert.equal((await b.dial("sip:alice@example.test")).ok, true);
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        await waitFor(() => sessions[0]?.state === "confirmed", { message: "confirmed" });
        const dialog = sessions[0].dialog!;
        assert.equal(dialog.routeSet.length, 1);
        assert.equal(dialog.routeSet[0].uri.port, k.port);
        await sessions[0].bye();
        await b.waitEvent((e) => e.type === "CALL_CLOSED");
        await waitFor(() => /in-dialog BYE \S+ cseq \d+ relayed by loose_route/.test(k.logs()), {
          message: "sipkit's BYE at Kamailio",
        });
      } finally {
        registration.stop();
        await b.stop();
      }
    });
  },
});
