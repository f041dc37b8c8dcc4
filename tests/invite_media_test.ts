// lib/sip/invite with lib/rtp's MediaSession as the OfferAnswerHandler, all
// on in-memory networks and one manual clock: a tone goes through a call set
// up by INVITE, a codec change by re-INVITE is followed by both sides, hold
// by re-INVITE, and an offer with no common codec gets 488 (the
// SdpNegotiationError of lib/rtp); a forked INVITE whose forks each answer in
// a reliable 183: early media from the first, then media follows the fork
// that answers.

import assert from "node:assert/strict";
import { BufferSink, ToneSource } from "../lib/rtp/audio.ts";
import { MediaSession } from "../lib/rtp/media_session.ts";
import { MemoryNetwork } from "../lib/rtp/socket.ts";
import { dominantFrequency } from "../lib/rtp/tone.ts";
import { InviteAcceptor, type InviteSession, placeCall } from "../lib/sip/invite/mod.ts";
import {
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
} from "../lib/sip/message.ts";
import { type Bed, withBed } from "./_sip_bed.ts";

async function media(
  bed: Bed,
  network: MemoryNetwork,
  hostname: string,
  codecs?: ("PCMU" | "PCMA")[],
) {
  return await MediaSession.open({ hostname, clock: bed.clock, network, codecs });
}

/** Runs the clock in 20 ms steps, letting both networks deliver. */
async function play(bed: Bed, network: MemoryNetwork, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 20) {
    bed.clock.advance(20);
    await network.settle();
    await bed.net.settled();
  }
}

Deno.test("a call with MediaSession on both sides: tone heard, codec change and hold by re-INVITE", async () => {
  await withBed(async (bed) => {
    const network = new MemoryNetwork();
    const alice = await bed.ua("192.0.2.1");
    const bob = await bed.ua("192.0.2.2");
    const aliceMedia = await media(bed, network, "10.0.0.1");
    const bobMedia = await media(bed, network, "10.0.0.2");
    try {
      let callee: InviteSession | undefined;
      new InviteAcceptor(bob, {
        onIncoming: async (call) => {
          callee = call.session;
          await call.accept(bobMedia);
        },
      });
      const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: aliceMedia });
      assert.equal(await bed.run(call.answered, 20), true);
      assert.equal(aliceMedia.negotiated?.codec, "PCMU");
      assert.equal(bobMedia.negotiated?.codec, "PCMU");
      aliceMedia.setSource(new ToneSource(1000));
      const heard = new BufferSink();
      bobMedia.setSink(heard);
      await play(bed, network, 1000);
      assert.ok(heard.length >= 4000, `${heard.length} samples`);
      assert.equal(Math.round(dominantFrequency(heard.samples(4000)) / 10) * 10, 1000);

      // Session modification: PCMA first in Alice's next offer.
      aliceMedia.preferCodec("PCMA");
      assert.equal(await bed.run(call.reinvite(), 20), true);
      assert.equal(aliceMedia.negotiated?.codec, "PCMA");
      assert.equal(bobMedia.negotiated?.codec, "PCMA");

      // Hold: Alice offers sendonly; Bob answers recvonly.
      aliceMedia.hold();
      assert.equal(await bed.run(call.reinvite(), 20), true);
      assert.match(call.localSdp ?? "", /a=sendonly/);
      assert.match(call.remoteSdp ?? "", /a=recvonly/);
      await bed.run(callee!.bye(), 20);
      assert.equal((await call.finished).reason, "remote_bye");
    } finally {
      await aliceMedia.close();
      await bobMedia.close();
    }
  });
});

Deno.test("an offer without a common codec: MediaSession's SdpNegotiationError becomes 488", async () => {
  await withBed(async (bed) => {
    const network = new MemoryNetwork();
    const alice = await bed.ua("192.0.2.1");
    const bob = await bed.ua("192.0.2.2");
    const aliceMedia = await media(bed, network, "10.0.0.1", ["PCMU"]);
    const bobMedia = await media(bed, network, "10.0.0.2", ["PCMA"]);
    try {
      new InviteAcceptor(bob, {
        onIncoming: (call) => call.accept(bobMedia).catch(() => {}),
      });
      const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: aliceMedia });
      const end = await bed.run(call.finished, 20);
      assert.deepEqual(end, { reason: "rejected", status: 488, phrase: "Not Acceptable Here" });
    } finally {
      await aliceMedia.close();
      await bobMedia.close();
    }
  });
});

Deno.test("forked early media with 100rel: each fork's 183 PRACKed in its dialog, early media from the first, media follows the fork that answers", async () => {
  await withBed(async (bed) => {
    const network = new MemoryNetwork();
    const alice = await bed.ua("192.0.2.1");
    const aliceMedia = await media(bed, network, "10.0.0.1");
    // Two phones behind a forking proxy: their RTP ends are MediaSessions, their SIP is raw.
    const phone1 = await media(bed, network, "10.0.0.2");
    const phone2 = await media(bed, network, "10.0.0.3", ["PCMA"]);
    const heard1 = new BufferSink();
    const heard2 = new BufferSink();
    phone1.setSink(heard1);
    phone2.setSink(heard2);
    try {
      const proxy = bed.net.transport({ host: "192.0.2.2" });
      bed.raws.push(proxy);
      const got: SipRequest[] = [];
      const to = { host: "192.0.2.1", port: 5060 };
      const send = (res: ReturnType<typeof createResponse>) => proxy.send(formatMessage(res), to);
      proxy.onMessage((m) => {
        const req = parseMessage(m.data) as SipRequest;
        got.push(req);
        if (req.method === "PRACK" || req.method === "BYE") send(createResponse(req, 200));
      });
      const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: aliceMedia });
      aliceMedia.setSource(new ToneSource(800));
      const ringing: string[] = [];
      call.addEventListener("ringing", (e) => {
        const d = (e as CustomEvent).detail;
        ringing.push(`${d.status}${d.early_media ? " early" : ""}`);
      });
      await bed.net.settled();
      const invite = got[0];
      const reliable183 = async (tag: string, rseq: number, phone: MediaSession) =>
        send(createResponse(invite, 183, {
          toTag: tag,
          headers: [
            ["Contact", `<sip:${tag}@192.0.2.2>`],
            ["Require", "100rel"],
            ["RSeq", String(rseq)],
          ],
          body: await phone.createAnswer(invite.text),
          contentType: "application/sdp",
        }));
      await reliable183("fork1", 1, phone1);
      await play(bed, network, 100);
      await reliable183("fork2", 4711, phone2);
      await reliable183("fork2", 4711, phone2); // a retransmission: not PRACKed again
      await play(bed, network, 500);
      assert.deepEqual(ringing, ["183 early", "183 early"]);
      // One PRACK per early dialog, each with its own fork's RSeq.
      const pracks = got.filter((r) => r.method === "PRACK");
      assert.deepEqual(
        pracks.map((r) => `${r.to.params.tag} ${r.uri.user} ${r.headers.get("RAck")}`),
        [
          `fork1 fork1 1 ${invite.cseq.seq} INVITE`,
          `fork2 fork2 4711 ${invite.cseq.seq} INVITE`,
        ],
      );
      // Early media plays to and from the first fork.
      assert.equal(aliceMedia.negotiated?.remote.hostname, "10.0.0.2");
      assert.ok(heard1.length > 2000, `phone 1 heard ${heard1.length} samples`);
      assert.equal(phone2.stats().packets_received, 0);

      // The second fork answers, its 200 without SDP (the answer was in its reliable 183).
      send(createResponse(invite, 200, {
        toTag: "fork2",
        headers: [["Contact", "<sip:fork2@192.0.2.2>"]],
      }));
      assert.equal(await bed.run(call.answered, 20), true);
      assert.equal(call.dialog?.id.remoteTag, "fork2");
      assert.equal(aliceMedia.negotiated?.remote.hostname, "10.0.0.3");
      assert.equal(aliceMedia.negotiated?.codec, "PCMA");
      await play(bed, network, 40); // packets already on their way
      const before1 = phone1.stats().packets_received;
      await play(bed, network, 1000);
      assert.equal(phone1.stats().packets_received, before1, "phone 1 gets no more RTP");
      assert.ok(heard2.length >= 4000, `phone 2 heard ${heard2.length} samples`);
      assert.equal(Math.round(dominantFrequency(heard2.samples(4000)) / 10) * 10, 800);
      const acks = got.filter((r) => r.method === "ACK").map((r) => r.to.params.tag);
      assert.deepEqual(acks, ["fork2"]);
      const rtpAt1 = phone1.stats().packets_received;
      // The losing fork's early dialog is gone: the proxy CANCELs it, nothing is sent to it.
      assert.equal(got.filter((r) => r.to.params.tag === "fork1").length, 1, "only its PRACK");
      // Had it answered too (its 200 crossing the proxy's CANCEL), it gets ACK and BYE, and
      // media stays with the fork that answered first.
      send(createResponse(invite, 200, {
        toTag: "fork1",
        headers: [["Contact", "<sip:fork1@192.0.2.2>"]],
      }));
      await play(bed, network, 100);
      assert.deepEqual(
        got.filter((r) => r.to.params.tag === "fork1").map((r) => r.method),
        ["PRACK", "ACK", "BYE"],
      );
      assert.equal(aliceMedia.negotiated?.remote.hostname, "10.0.0.3");
      assert.equal(call.dialog?.id.remoteTag, "fork2");
      assert.equal(phone1.stats().packets_received, rtpAt1, "still no RTP to phone 1");
      await bed.run(call.bye(), 20);
      assert.deepEqual(got.filter((r) => r.method === "BYE").map((r) => r.to.params.tag), [
        "fork1",
        "fork2",
      ]);
    } finally {
      await aliceMedia.close();
      await phone1.close();
      await phone2.close();
    }
  });
});
