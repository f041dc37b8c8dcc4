// Unit tests of the pieces `sipkit call` adds to lib/rtp: the SDP summary
// shown for an incoming call and the --adapt policy.

import assert from "node:assert/strict";
import { AdaptPolicy, summarizeSdp } from "../lib/rtp/mod.ts";

const SDP = (media: string, extra = "") =>
  "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" + extra + media;

Deno.test("summarizeSdp(): codecs in the sender's order, static and dynamic, telephone-event, direction", () => {
  const s = summarizeSdp(SDP(
    "m=audio 4000 RTP/AVP 9 0 8 96 101\r\na=rtpmap:96 opus/48000/2\r\n" +
      "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
  ));
  assert.deepEqual(s.codecs, ["G722", "PCMU", "PCMA", "OPUS"]);
  assert.equal(s.telephoneEvent, true);
  assert.equal(s.direction, "sendrecv");
  assert.deepEqual(s.address, { hostname: "192.0.2.1", port: 4000 });
  const held = summarizeSdp(SDP("m=audio 4000 RTP/AVP 0\r\n", "a=inactive\r\n"));
  assert.equal(held.direction, "inactive");
  assert.equal(held.telephoneEvent, false);
  // A video-only offer, and text that is not SDP, give no codecs (never throw).
  assert.deepEqual(summarizeSdp(SDP("m=video 5000 RTP/AVP 96\r\n")).codecs, []);
  assert.deepEqual(summarizeSdp("not sdp at all").codecs, []);
  assert.deepEqual(summarizeSdp("").codecs, []);
});

Deno.test("AdaptPolicy: acts on sustained loss or jitter only, once per codec, with a cool-down", () => {
  const p = new AdaptPolicy(["PCMU", "PCMA"], {
    lossThreshold: 0.05,
    jitterThresholdMs: 40,
    sustain: 2,
    cooldownMs: 10_000,
  });
  const good = { lossFraction: 0.01, jitterMs: 3 };
  const lossy = { lossFraction: 0.2, jitterMs: 3 };
  const jittery = { lossFraction: 0, jitterMs: 80 };
  // One bad report between good ones is not sustained.
  assert.equal(p.observe(lossy, { codec: "PCMU" }, 0), undefined);
  assert.equal(p.observe(good, { codec: "PCMU" }, 5000), undefined);
  assert.equal(p.observe(lossy, { codec: "PCMU" }, 10_000), undefined);
  assert.deepEqual(p.observe(lossy, { codec: "PCMU" }, 15_000), { reason: "loss", codec: "PCMA" });
  // Now on PCMA: every codec was tried, nothing more is asked.
  assert.equal(p.observe(jittery, { codec: "PCMA" }, 30_000), undefined);
  assert.equal(p.observe(jittery, { codec: "PCMA" }, 35_000), undefined);
  // Unknown values (no report block yet) are not bad.
  const q = new AdaptPolicy(["PCMA", "PCMU"], { sustain: 1, cooldownMs: 0 });
  assert.equal(q.observe({ lossFraction: null, jitterMs: null }, { codec: "PCMA" }, 0), undefined);
  assert.deepEqual(q.observe(jittery, { codec: "PCMA" }, 1), { reason: "jitter", codec: "PCMU" });
  // The cool-down holds a second change back.
  const r = new AdaptPolicy(["PCMU", "PCMA", "G722"], { sustain: 1, cooldownMs: 10_000 });
  assert.deepEqual(r.observe(lossy, { codec: "PCMU" }, 0), { reason: "loss", codec: "PCMA" });
  assert.equal(r.observe(lossy, { codec: "PCMA" }, 5000), undefined);
  assert.deepEqual(r.observe(lossy, { codec: "PCMA" }, 10_000), { reason: "loss", codec: "G722" });
});
