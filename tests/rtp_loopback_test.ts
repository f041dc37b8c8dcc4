import assert from "node:assert/strict";
import { BufferSink, ToneSource } from "../lib/rtp/audio.ts";
import { MediaSession } from "../lib/rtp/media_session.ts";
import { dominantFrequency } from "../lib/rtp/tone.ts";
import { udpNetwork } from "../lib/rtp/socket.ts";
import { waitFor } from "./peers/require.ts";

for (const hostname of ["127.0.0.1", "::1"]) {
  Deno.test(`two MediaSessions over real UDP on ${hostname}: a tone each way, found by frequency`, async () => {
    const a = await MediaSession.open({ hostname, rtcpIntervalMs: 500 });
    const b = await MediaSession.open({ hostname, rtcpIntervalMs: 500 });
    try {
      const offer = await a.createOffer();
      assert.match(offer, hostname === "::1" ? /c=IN IP6 ::1/ : /c=IN IP4 127\.0\.0\.1/);
      await a.applyAnswer(await b.createAnswer(offer));
      a.setSource(new ToneSource(1000));
      b.setSource(new ToneSource(600));
      const atA = new BufferSink();
      const atB = new BufferSink();
      a.setSink(atA);
      b.setSink(atB);
      const dtmf: string[] = [];
      b.addEventListener("dtmf", (e) => dtmf.push((e as CustomEvent).detail.digit));
      await waitFor(() => atA.length >= 8000 && atB.length >= 8000, {
        timeout: 10_000,
        message: "1 s of audio each way",
      });
      assert.equal(dominantFrequency(atB.samples(4000)), 1000);
      assert.equal(dominantFrequency(atA.samples(4000)), 600);
      await a.sendDtmf("5#");
      await waitFor(() => dtmf.length === 2, { message: "two DTMF digits" });
      assert.deepEqual(dtmf, ["5", "#"]);
      await waitFor(() => a.stats().rtt_ms !== null, {
        timeout: 5000,
        message: "an RTT from RTCP",
      });
      const s = a.stats();
      assert.ok(s.packets_sent > 40 && s.packets_received > 40);
      assert.ok(
        s.rtt_ms! >= 0 && s.rtt_ms! < 1000,
        `rtt ${s.rtt_ms} (loopback; the exact value is checked on the manual clock)`,
      );
      assert.ok(
        s.playout_delay_ms <= 320,
        `playout ${s.playout_delay_ms} (the buffer holds at most 300 ms)`,
      );
    } finally {
      await a.close();
      await b.close();
    }
  });
}

Deno.test("udpNetwork on :: (dual-stack) names an IPv4 sender as in SDP, not ::ffff:a.b.c.d", async () => {
  const dual = await udpNetwork.bind("::", 0);
  const v4 = await udpNetwork.bind("127.0.0.1", 0);
  try {
    const from = new Promise<string>((resolve) =>
      dual.onMessage((_data, addr) => resolve(`${addr.hostname}:${addr.port}`))
    );
    v4.send(new Uint8Array([1]), { hostname: "127.0.0.1", port: dual.localAddress.port });
    assert.equal(await from, `127.0.0.1:${v4.localAddress.port}`);
  } finally {
    dual.close();
    v4.close();
  }
});
