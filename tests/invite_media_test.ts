// lib/sip/invite with lib/rtp's MediaSession as the OfferAnswerHandler, all
// on in-memory networks and one manual clock: a tone goes through a call set
// up by INVITE, a codec change by re-INVITE is followed by both sides, hold
// by re-INVITE, and an offer with no common codec gets 488 (the
// SdpNegotiationError of lib/rtp).

import assert from "node:assert/strict";
import { BufferSink, ToneSource } from "../lib/rtp/audio.ts";
import { MediaSession } from "../lib/rtp/media_session.ts";
import { MemoryNetwork } from "../lib/rtp/socket.ts";
import { dominantFrequency } from "../lib/rtp/tone.ts";
import { InviteAcceptor, type InviteSession, placeCall } from "../lib/sip/invite/mod.ts";
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
