/**
 * lib/sip/invite against sipp on loopback (real UDP sockets): the call
 * scenarios of tests/sipp/ as caller and callee, each checked by sipp itself
 * (RAck, every 2xx ACKed, hold answered recvonly, CANCEL/487) and by the
 * session's end. Skipped outside CI when sipp is missing.
 */

import assert from "node:assert/strict";
import { UserAgent } from "../lib/sip/ua.ts";
import {
  type IncomingCall,
  InviteAcceptor,
  type InviteSession,
  type OfferAnswerHandler,
  placeCall,
} from "../lib/sip/invite/mod.ts";
import { requirePeer, waitFor } from "./peers/require.ts";
import { runSipp, type SippResult, startSipp } from "./peers/sipp.ts";

const HAVE_SIPP = requirePeer("sipp", "sip-tester");

/** Test media: PCMU on a made-up port; a hold offer (sendonly) gets recvonly. */
function media(): OfferAnswerHandler {
  const sdp = (dir: string) =>
    `v=0\r\no=sipkit 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n` +
    `m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=${dir}\r\n`;
  return {
    createOffer: () => Promise.resolve(sdp("sendrecv")),
    createAnswer: (offer) =>
      Promise.resolve(
        sdp(
          /a=sendonly/.test(offer)
            ? "recvonly"
            : /a=inactive/.test(offer)
            ? "inactive"
            : "sendrecv",
        ),
      ),
    applyAnswer: () => Promise.resolve(),
    rollback: () => {},
  };
}

/** Requests sipkit sent, by first word ("ACK", "BYE"...). */
const sentCounts = new Map<string, number>();

async function withUa(fn: (ua: UserAgent) => Promise<void>): Promise<void> {
  sentCounts.clear();
  const dec = new TextDecoder();
  const ua = await UserAgent.create({
    aor: "alice@127.0.0.1",
    bind: "127.0.0.1:0",
    listen: ["udp"],
    trace: (direction, data) => {
      if (direction !== "send") return;
      const word = dec.decode(data.subarray(0, 16)).split(" ")[0];
      sentCounts.set(word, (sentCounts.get(word) ?? 0) + 1);
    },
  });
  try {
    await fn(ua);
  } finally {
    await ua.close();
  }
}

function check(res: SippResult, what: string): void {
  assert.equal(
    res.code,
    0,
    `${what}: sipp exit ${res.code}\n${res.errors.slice(0, 2000)}\n${res.output.slice(-2000)}`,
  );
  assert.equal(res.successful, 1);
}

/** sipp as the callee; sipkit calls it and runs `after`. */
async function callSipp(
  scenario: string,
  after: (call: InviteSession) => Promise<void>,
  extraArgs: string[] = [],
): Promise<InviteSession> {
  let call!: InviteSession;
  await withUa(async (ua) => {
    const sipp = await startSipp({ scenario, extraArgs, timeout: 30, calls: 1 });
    try {
      call = await placeCall(ua, `sip:bob@${sipp.address}`, { media: media() });
      await after(call);
      check(await sipp.done, scenario);
    } finally {
      await sipp.stop().catch(() => {});
    }
  });
  return call;
}

/** sipp as the caller; sipkit answers with `onIncoming`. */
async function sippCalls(
  scenario: string,
  onIncoming: (call: IncomingCall) => Promise<void>,
  extraArgs: string[] = [],
  traceMessages = false,
): Promise<{ sessions: InviteSession[]; result: SippResult }> {
  const sessions: InviteSession[] = [];
  let result!: SippResult;
  await withUa(async (ua) => {
    new InviteAcceptor(ua, {
      onIncoming: (call) => {
        sessions.push(call.session);
        return onIncoming(call);
      },
    });
    result = await runSipp({
      scenario,
      remote: `127.0.0.1:${ua.transports[0].local.port}`,
      service: "alice",
      calls: 1,
      keys: { user: "sipp" },
      extraArgs,
      timeout: 30,
      traceMessages,
    });
    check(result, scenario);
    await Promise.all(sessions.map((s) => s.finished));
  });
  return { sessions, result };
}

Deno.test({
  name: "sipkit calls sipp: 183 with Require: 100rel is PRACKed, then 200 (no SDP), ACK, BYE",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const ringing: boolean[] = [];
    const call = await callSipp("call_uas_100rel.xml", async (call) => {
      call.addEventListener("ringing", (e) => ringing.push((e as CustomEvent).detail.early_media));
      assert.equal(await call.answered, true);
      await call.bye();
    });
    assert.deepEqual(ringing, [true]);
    assert.equal(call.end?.reason, "local_bye");
  },
});

Deno.test({
  name: "sipkit calls sipp: every copy of a retransmitted 200 is ACKed",
  ignore: !HAVE_SIPP,
  fn: async () => {
    await callSipp("call_uas_200_retrans.xml", async (call) => {
      assert.equal(await call.answered, true);
      // sipp sends the 200 three times, each after the ACK of the previous.
      await waitFor(() => sentCounts.get("ACK") === 3, { message: "three ACKs", timeout: 10_000 });
      await call.bye();
    }, ["-nr"]);
  },
});

Deno.test({
  name: "sipkit calls sipp: re-INVITEs from the peer (hold, resume) are answered, then its BYE",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const reinvites: string[] = [];
    const call = await callSipp("call_uas_reinvite.xml", async (call) => {
      call.addEventListener("reinvite", (e) => reinvites.push((e as CustomEvent).detail.offer));
      await call.finished;
    });
    assert.equal(reinvites.length, 2);
    assert.match(reinvites[0], /a=sendonly/);
    assert.equal(call.end?.reason, "remote_bye");
  },
});

Deno.test({
  name: "sipkit calls sipp: 486 Busy Here ends the call rejected",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const call = await callSipp("call_uas_busy.xml", (call) => call.finished.then(() => {}));
    assert.deepEqual(call.end, { reason: "rejected", status: 486, phrase: "Busy Here" });
  },
});

Deno.test({
  name: "sipp calls sipkit requiring 100rel: reliable 180, PRACK, 200, ACK, its BYE",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const { sessions } = await sippCalls("call_uac_100rel.xml", async (call) => {
      await call.progress(180);
      await call.accept(media());
    }, ["-d", "500"]);
    assert.equal(sessions[0].end?.reason, "remote_bye");
  },
});

Deno.test({
  name: "sipp calls sipkit and cancels: 200 to the CANCEL, 487 with the 180's To tag",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const { sessions, result } = await sippCalls(
      "call_uac_cancel.xml",
      async (call) => {
        await call.progress(180);
      },
      ["-d", "300"],
      true,
    );
    assert.equal(sessions[0].end?.reason, "cancelled");
    const tagOf = (status: number) =>
      new RegExp(`SIP/2.0 ${status} [^]*?\\r?\\nTo:[^\\r\\n]*;tag=([^;\\s>]+)`).exec(
        result.messages,
      )?.[1];
    assert.ok(tagOf(180));
    assert.equal(tagOf(487), tagOf(180));
  },
});

Deno.test({
  name: "sipp's built-in uac calls sipkit: answered, then sipp's BYE",
  ignore: !HAVE_SIPP,
  fn: async () => {
    const { sessions } = await sippCalls("uac", async (call) => {
      await call.progress(180);
      await call.accept(media());
    });
    assert.equal(sessions[0].end?.reason, "remote_bye");
  },
});
