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

const report = (lossFraction: number | null, jitterMs: number | null) => ({
  lossFraction,
  jitterMs,
});
const quiet = report(0, 2);

Deno.test("AdaptPolicy: sustained loss or jitter steps codec and ptime up, once per codec, with a cool-down", () => {
  const p = new AdaptPolicy(["PCMU", "PCMA"], {
    lossThreshold: 0.05,
    jitterThresholdMs: 40,
    sustain: 2,
    cooldownMs: 10_000,
  });
  const at = { codec: "PCMU", ptime: 20, jitterBufferMs: 0 };
  const lossy = { remote: report(0.2, 3), local: quiet };
  const jittery = { remote: report(0, 80), local: quiet };
  const good = { remote: report(0.01, 3), local: quiet };
  // One bad report between good ones is not sustained.
  assert.equal(p.observe(lossy, at, 0), undefined);
  assert.equal(p.observe(good, at, 5000), undefined);
  assert.equal(p.observe(lossy, at, 10_000), undefined);
  assert.deepEqual(p.observe(lossy, at, 15_000), { reason: "loss", codec: "PCMA", ptime: 40 });
  // The cool-down holds the next step back, however bad it stays.
  const pcma40 = { codec: "PCMA", ptime: 40, jitterBufferMs: 0 };
  assert.equal(p.observe(jittery, pcma40, 20_000), undefined);
  assert.equal(p.observe(jittery, pcma40, 24_000), undefined);
  // Every codec was tried: only the ptime goes on up, to the last rung.
  assert.deepEqual(p.observe(jittery, pcma40, 25_000), { reason: "jitter", ptime: 60 });
  const top = { codec: "PCMA", ptime: 60, jitterBufferMs: 0 };
  assert.equal(p.observe(lossy, top, 40_000), undefined);
  assert.equal(p.observe(lossy, top, 45_000), undefined, "nothing left to change");
  // Unknown values (no report block yet) are neither bad nor calm.
  const q = new AdaptPolicy(["PCMA", "PCMU"], { sustain: 1, cooldownMs: 0 });
  const unknown = { remote: report(null, null), local: report(null, null) };
  for (let i = 0; i < 10; i++) {
    assert.equal(q.observe(unknown, { codec: "PCMA", ptime: 20, jitterBufferMs: 0 }, i), undefined);
  }
  // The peer's a=maxptime caps the ptime asked for.
  const r = new AdaptPolicy(["PCMU"], { sustain: 1, cooldownMs: 0 });
  const capped = { codec: "PCMU", ptime: 20, jitterBufferMs: 0, maxPtime: 30 };
  assert.equal(r.observe(lossy, capped, 0), undefined, "PCMU tried, 40 above maxptime 30");
  assert.deepEqual(r.observe(lossy, { ...capped, maxPtime: 40 }, 1), { reason: "loss", ptime: 40 });
});

Deno.test("AdaptPolicy: calm reports step the ptime back down, with hysteresis", () => {
  const p = new AdaptPolicy(["PCMU"], {
    lossThreshold: 0.1,
    sustain: 2,
    calm: 3,
    cooldownMs: 5000,
  });
  const at60 = { codec: "PCMU", ptime: 60, jitterBufferMs: 0 };
  // Under the threshold but above half of it: neither bad nor calm, nothing moves.
  const middling = { remote: report(0.07, 3), local: quiet };
  for (let t = 0; t < 10; t++) assert.equal(p.observe(middling, at60, t * 5000), undefined);
  const calm = { remote: report(0.02, 3), local: quiet };
  assert.equal(p.observe(calm, at60, 60_000), undefined);
  assert.equal(p.observe(calm, at60, 65_000), undefined);
  assert.deepEqual(p.observe(calm, at60, 70_000), { reason: "recovered", ptime: 40 });
  const at40 = { ...at60, ptime: 40 };
  // The count starts again after a change, and the cool-down applies.
  assert.equal(p.observe(calm, at40, 71_000), undefined);
  assert.equal(p.observe(calm, at40, 72_000), undefined);
  assert.equal(p.observe(calm, at40, 73_000), undefined, "calm enough but inside the cool-down");
  assert.deepEqual(p.observe(calm, at40, 75_000), { reason: "recovered", ptime: 20 });
  // At the first rung there is nothing to step back to.
  const at20 = { ...at60, ptime: 20 };
  for (let t = 0; t < 6; t++) assert.equal(p.observe(calm, at20, 90_000 + t * 5000), undefined);
});

Deno.test("AdaptPolicy: our measured jitter raises the jitter buffer's target, calm lowers it", () => {
  const p = new AdaptPolicy(["PCMU"], {
    jitterThresholdMs: 30,
    sustain: 2,
    calm: 3,
    cooldownMs: 1000,
    jitterBufferStepMs: 40,
    maxJitterBufferMs: 80,
  });
  const state = (jitterBufferMs: number) => ({ codec: "PCMU", ptime: 20, jitterBufferMs });
  // The peer hears us fine; what we receive is jittery: no session change, a buffer step.
  const jittery = { remote: report(0, 2), local: report(0, 50) };
  assert.equal(p.observe(jittery, state(0), 0), undefined);
  assert.deepEqual(p.observe(jittery, state(0), 500), { reason: "jitter", jitterBufferMs: 40 });
  assert.equal(p.observe(jittery, state(40), 1000), undefined);
  assert.deepEqual(p.observe(jittery, state(40), 1500), { reason: "jitter", jitterBufferMs: 80 });
  assert.equal(p.observe(jittery, state(80), 3000), undefined);
  assert.equal(p.observe(jittery, state(80), 4000), undefined, "at its ceiling");
  // Between half the threshold and the threshold: it stays.
  const middling = { remote: report(0, 2), local: report(0, 20) };
  for (let t = 0; t < 8; t++) {
    assert.equal(p.observe(middling, state(80), 5000 + t * 1000), undefined);
  }
  const calm = { remote: report(0, 2), local: report(0, 5) };
  assert.equal(p.observe(calm, state(80), 20_000), undefined);
  assert.equal(p.observe(calm, state(80), 21_000), undefined);
  assert.deepEqual(p.observe(calm, state(80), 22_000), { reason: "recovered", jitterBufferMs: 40 });
  // Both tracks in one report: the session's reason, both changes.
  const q = new AdaptPolicy(["PCMU", "PCMA"], { sustain: 1, cooldownMs: 0 });
  assert.deepEqual(
    q.observe({ remote: report(0.3, 2), local: report(0, 90) }, state(0), 0),
    { reason: "loss", codec: "PCMA", ptime: 40, jitterBufferMs: 40 },
  );
});
