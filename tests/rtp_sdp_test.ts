import assert from "node:assert/strict";
import { type LocalMedia, OfferAnswer, SdpNegotiationError } from "../lib/rtp/sdp.ts";

const alice: LocalMedia = { hostname: "127.0.0.1", port: 4000, codecs: ["PCMU", "PCMA"] };
const bob: LocalMedia = { hostname: "127.0.0.2", port: 5000, codecs: ["PCMU", "PCMA"] };

function lines(sdp: string): string[] {
  assert.ok(sdp.endsWith("\r\n"));
  return sdp.trimEnd().split("\r\n");
}

function offerFrom(body: string[]): string {
  return body.join("\r\n") + "\r\n";
}

Deno.test("createOffer() writes PCMU, PCMA, telephone-event, ptime and sendrecv", () => {
  const oa = new OfferAnswer({ sessionId: 42 });
  const offer = lines(oa.createOffer(alice));
  const v = oa.sessionVersion;
  assert.deepEqual(offer, [
    "v=0",
    `o=- 42 ${v} IN IP4 127.0.0.1`,
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 4000 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=sendrecv",
  ]);
  assert.ok(oa.offerPending);
});

Deno.test("createOffer() raises the o= version by one on every new offer, same session id", () => {
  const oa = new OfferAnswer();
  const version = (sdp: string) => lines(sdp)[1].split(" ");
  const first = version(oa.createOffer(alice));
  const second = version(oa.createOffer(alice));
  const third = version(oa.createOffer({ ...alice, direction: "sendonly" }));
  assert.equal(first[1], second[1]);
  assert.equal(Number(second[2]), Number(first[2]) + 1);
  assert.equal(Number(third[2]), Number(second[2]) + 1);
});

Deno.test("IPv6: o= and c= say IP6, and an IPv6 peer's address is read", () => {
  const a = new OfferAnswer();
  const b = new OfferAnswer();
  const offer = a.createOffer({ ...alice, hostname: "::1" });
  assert.ok(offer.includes("c=IN IP6 ::1\r\n"));
  assert.match(offer, /o=- \d+ \d+ IN IP6 ::1/);
  const answer = b.createAnswer(offer, { ...bob, hostname: "fd00::2" });
  assert.deepEqual(answer.negotiated.remote, { hostname: "::1", port: 4000 });
  assert.ok(answer.sdp.includes("c=IN IP6 fd00::2\r\n"));
  assert.deepEqual(a.applyAnswer(answer.sdp).remote, { hostname: "fd00::2", port: 5000 });
});

Deno.test("createAnswer() takes the offerer's first common codec and its telephone-event type", () => {
  const offer = offerFrom([
    "v=0",
    "o=peer 1 1 IN IP4 192.0.2.1",
    "s=call",
    "c=IN IP4 192.0.2.1",
    "t=0 0",
    "m=audio 7000 RTP/AVP 18 8 0 96",
    "a=rtpmap:18 G729/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:96 telephone-event/8000",
    "a=fmtp:96 0-15",
    "a=ptime:30",
  ]);
  const b = new OfferAnswer({ sessionId: 9 });
  const { sdp, negotiated } = b.createAnswer(offer, bob);
  assert.equal(negotiated.codec, "PCMA");
  assert.equal(negotiated.payloadType, 8);
  assert.equal(negotiated.telephoneEventPayloadType, 96);
  assert.equal(negotiated.ptime, 30, "we send with the peer's ptime");
  assert.equal(negotiated.direction, "sendrecv");
  assert.deepEqual(negotiated.remote, { hostname: "192.0.2.1", port: 7000 });
  assert.deepEqual(negotiated.remoteRtcp, { hostname: "192.0.2.1", port: 7001 });
  const body = lines(sdp);
  assert.ok(body.includes("m=audio 5000 RTP/AVP 8 96"));
  assert.ok(body.includes("a=rtpmap:96 telephone-event/8000"));
  assert.ok(!body.some((l) => l.includes("G729")));
  assert.equal(b.negotiated, negotiated);
});

Deno.test("createAnswer() knows static payload types without rtpmap and c= per media", () => {
  const offer = offerFrom([
    "v=0",
    "o=- 1 1 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "t=0 0",
    "m=audio 7000 RTP/AVP 0",
    "c=IN IP4 198.51.100.7",
    "a=rtcp:7010",
  ]);
  const { negotiated } = new OfferAnswer().createAnswer(offer, { ...bob, telephoneEvent: false });
  assert.equal(negotiated.codec, "PCMU");
  assert.deepEqual(negotiated.remote, { hostname: "198.51.100.7", port: 7000 });
  assert.deepEqual(negotiated.remoteRtcp, { hostname: "198.51.100.7", port: 7010 });
  assert.equal(negotiated.telephoneEventPayloadType, undefined);
  assert.equal(negotiated.ptime, 20);
});

Deno.test("hold: directions are answered by RFC 3264 section 6.1 and RFC 6337", async (t) => {
  const cases: [string, string | undefined, string, string][] = [
    // offer direction, our local direction, answer line, our resulting direction
    ["sendonly", undefined, "a=recvonly", "recvonly"],
    ["recvonly", undefined, "a=sendonly", "sendonly"],
    ["inactive", undefined, "a=inactive", "inactive"],
    ["sendrecv", "sendonly", "a=sendonly", "sendonly"],
    ["sendonly", "sendonly", "a=inactive", "inactive"],
    ["sendrecv", "inactive", "a=inactive", "inactive"],
  ];
  for (const [offered, local, line, ours] of cases) {
    await t.step(`${offered} offered, local ${local ?? "sendrecv"}`, () => {
      const a = new OfferAnswer();
      const offer = a.createOffer({ ...alice, direction: offered as LocalMedia["direction"] });
      assert.ok(offer.includes(`a=${offered}\r\n`));
      const answer = new OfferAnswer().createAnswer(offer, {
        ...bob,
        direction: local as LocalMedia["direction"],
      });
      assert.ok(answer.sdp.includes(`${line}\r\n`), answer.sdp);
      assert.equal(answer.negotiated.direction, ours);
      assert.equal(answer.negotiated.remoteDirection, offered);
      const mine = a.applyAnswer(answer.sdp);
      assert.equal(mine.remoteDirection, line.slice(2));
    });
  }
});

Deno.test("c=0.0.0.0 (old-style hold) means: do not send to that side", () => {
  const offer = offerFrom([
    "v=0",
    "o=- 1 2 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 0.0.0.0",
    "t=0 0",
    "m=audio 7000 RTP/AVP 0",
  ]);
  const { negotiated, sdp } = new OfferAnswer().createAnswer(offer, bob);
  assert.equal(negotiated.remoteDirection, "sendonly");
  assert.equal(negotiated.direction, "recvonly");
  assert.ok(sdp.includes("a=recvonly"));
});

Deno.test("port 0: streams we cannot use are refused, in place, with port 0", () => {
  const offer = offerFrom([
    "v=0",
    "o=- 1 1 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "t=0 0",
    "m=video 7002 RTP/AVP 31",
    "m=audio 7004 RTP/SAVP 0",
    "m=audio 7000 RTP/AVP 0",
  ]);
  const { sdp, negotiated } = new OfferAnswer().createAnswer(offer, bob);
  const m = lines(sdp).filter((l) => l.startsWith("m="));
  assert.deepEqual(m, ["m=video 0 RTP/AVP 31", "m=audio 0 RTP/SAVP 0", "m=audio 5000 RTP/AVP 0"]);
  assert.equal(negotiated.remote.port, 7000);
  // An answer must keep the m= lines of the offer, and a port 0 audio stream refuses.
  const a = new OfferAnswer();
  const ours = a.createOffer(alice);
  assert.throws(
    () => a.applyAnswer(ours.replace("m=audio 4000", "m=audio 0")),
    (e: Error) => e instanceof SdpNegotiationError && /refused/.test(e.message),
  );
  assert.throws(
    () => new OfferAnswer().createAnswer(ours.replace("m=audio 4000", "m=audio 0"), bob),
    (e: Error) => e.name === "SdpNegotiationError" && /port 0/.test(e.message),
  );
});

Deno.test("no common codec: SdpNegotiationError (a SIP layer answers 488)", () => {
  const a = new OfferAnswer();
  const offer = a.createOffer({ ...alice, codecs: ["PCMA"] });
  const b = new OfferAnswer();
  assert.throws(() => b.createAnswer(offer, { ...bob, codecs: ["PCMU"] }), (e: Error) => {
    assert.ok(e instanceof SdpNegotiationError);
    assert.equal(e.name, "SdpNegotiationError");
    assert.match(e.message, /no common codec \(offered PCMA, telephone-event; we take PCMU\)/);
    return true;
  });
  assert.equal(b.negotiated, undefined);
  // An answer naming a codec we never offered is unusable too.
  const answer = new OfferAnswer().createAnswer(a.createOffer({ ...alice, codecs: ["PCMU"] }), bob);
  assert.throws(
    () =>
      a.applyAnswer(
        answer.sdp.replace("RTP/AVP 0 101", "RTP/AVP 8 101").replace(
          "rtpmap:0 PCMU",
          "rtpmap:8 PCMA",
        ),
      ),
    /no codec we offered/,
  );
  assert.throws(() => new OfferAnswer().createAnswer("hello", bob), SdpNegotiationError);
  assert.throws(() => new OfferAnswer().applyAnswer(answer.sdp), /no offer is pending/);
});

Deno.test("applyAnswer() agrees on the answer's codec; rollback() keeps the last agreement", () => {
  const a = new OfferAnswer();
  const b = new OfferAnswer();
  const first = b.createAnswer(a.createOffer(alice), bob);
  assert.equal(a.applyAnswer(first.sdp).codec, "PCMU");
  // Session modification: prefer PCMA.
  const reoffer = a.createOffer({ ...alice, codecs: ["PCMA", "PCMU"] });
  assert.match(reoffer, /m=audio 4000 RTP\/AVP 8 0 101/);
  a.rollback();
  assert.equal(a.offerPending, false);
  assert.equal(a.negotiated?.codec, "PCMU");
  const again = a.createOffer({ ...alice, codecs: ["PCMA", "PCMU"] });
  const second = b.createAnswer(again, bob);
  assert.equal(second.negotiated.codec, "PCMA");
  const agreed = a.applyAnswer(second.sdp);
  assert.equal(agreed.codec, "PCMA");
  assert.equal(agreed.payloadType, 8);
  assert.equal(agreed.telephoneEventPayloadType, 101);
  assert.deepEqual(agreed.receivePayloadTypes, { 8: "PCMA" });
});

Deno.test("an answer's o= version changes only when its content changes", () => {
  const a = new OfferAnswer();
  const b = new OfferAnswer();
  const version = (sdp: string) => Number(lines(sdp)[1].split(" ")[2]);
  const v1 = version(b.createAnswer(a.createOffer(alice), bob).sdp);
  const v2 = version(b.createAnswer(a.createOffer(alice), bob).sdp);
  assert.equal(v2, v1, "same answer, same version");
  const v3 = version(b.createAnswer(a.createOffer(alice), { ...bob, port: 5002 }).sdp);
  assert.equal(v3, v1 + 1);
  const v4 = version(b.createOffer(bob));
  assert.equal(v4, v3 + 1);
});

Deno.test("applyAnswer() takes the same answer twice (183 then 200), not a different one", () => {
  const a = new OfferAnswer();
  const b = new OfferAnswer();
  const answer = b.createAnswer(a.createOffer(alice), bob).sdp;
  const first = a.applyAnswer(answer);
  assert.equal(a.applyAnswer(answer), first);
  const other = new OfferAnswer().createAnswer(a.createOffer(alice), bob).sdp;
  a.rollback();
  assert.throws(() => a.applyAnswer(other), /no offer is pending/);
});

Deno.test("applyAnswer() takes another fork's answer to the same offer: media follows it", () => {
  const a = new OfferAnswer();
  const offer = a.createOffer(alice);
  // Two forks of the INVITE answer the one offer, each with its own o= line and address.
  const fork1 = new OfferAnswer({ sessionId: 11 }).createAnswer(offer, bob).sdp;
  const fork2 = new OfferAnswer({ sessionId: 22 }).createAnswer(offer, {
    hostname: "127.0.0.3",
    port: 6000,
    codecs: ["PCMA"],
  }).sdp;
  assert.deepEqual(a.applyAnswer(fork1).remote, { hostname: "127.0.0.2", port: 5000 });
  const second = a.applyAnswer(fork2);
  assert.deepEqual(second.remote, { hostname: "127.0.0.3", port: 6000 });
  assert.equal(second.codec, "PCMA");
  // Back to the first fork (its 2xx came first after all), and its answer again changes nothing.
  assert.deepEqual(a.applyAnswer(fork1).remote, { hostname: "127.0.0.2", port: 5000 });
  assert.equal(a.applyAnswer(fork1), a.negotiated);
  // An answer that refuses the stream changes nothing either.
  assert.throws(() => a.applyAnswer(fork2.replace("m=audio 6000", "m=audio 0")), /refused/);
  assert.equal(a.negotiated?.remote.port, 5000);
  // Once we offered (or answered) anew, an old offer's answers are no longer taken.
  a.createOffer(alice);
  a.rollback();
  assert.throws(() => a.applyAnswer(fork2), /no offer is pending/);
});

Deno.test("an answer numbering telephone-event differently: send with its number, receive with ours", () => {
  const a = new OfferAnswer();
  const offer = a.createOffer(alice);
  const answer = offerFrom([
    "v=0",
    "o=- 5 5 IN IP4 192.0.2.5",
    "s=-",
    "c=IN IP4 192.0.2.5",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0 96",
    "a=rtpmap:96 telephone-event/8000",
  ]);
  assert.match(offer, /a=rtpmap:101 telephone-event/);
  const agreed = a.applyAnswer(answer);
  assert.equal(agreed.telephoneEventPayloadType, 96);
  assert.equal(agreed.receiveTelephoneEventPayloadType, 101);
});

Deno.test("ptime and maxptime are receive preferences: we send with the peer's, never above its maxptime", () => {
  const peer = (extra: string[]) =>
    offerFrom([
      "v=0",
      "o=peer 1 1 IN IP4 192.0.2.1",
      "s=-",
      "c=IN IP4 192.0.2.1",
      "t=0 0",
      "m=audio 7000 RTP/AVP 0",
      ...extra,
    ]);
  // An offer asking for 40 ms: we send 40 and, ours being finer, ask for 40 back.
  let r = new OfferAnswer().createAnswer(peer(["a=ptime:40"]), bob);
  assert.equal(r.negotiated.ptime, 40);
  assert.ok(lines(r.sdp).includes("a=ptime:40"));
  assert.ok(!lines(r.sdp).some((l) => l.startsWith("a=maxptime")), "none unless configured");
  // Our own coarser preference stays ours; the offer's ptime is still what we send.
  r = new OfferAnswer().createAnswer(peer(["a=ptime:20"]), { ...bob, ptime: 60, maxptime: 60 });
  assert.equal(r.negotiated.ptime, 20);
  assert.ok(lines(r.sdp).includes("a=ptime:60"));
  assert.ok(lines(r.sdp).includes("a=maxptime:60"));
  // The offer's ptime above our maxptime: we ask for no more than our maxptime.
  r = new OfferAnswer().createAnswer(peer(["a=ptime:80"]), { ...bob, maxptime: 40 });
  assert.ok(lines(r.sdp).includes("a=ptime:40"));
  // Only a maxptime: we send ours, capped by it.
  r = new OfferAnswer().createAnswer(peer(["a=maxptime:30"]), { ...bob, ptime: 60 });
  assert.equal(r.negotiated.ptime, 30);
  assert.equal(r.negotiated.remoteMaxptime, 30);
  // An answer's ptime and maxptime rule what the offerer sends.
  const a = new OfferAnswer();
  const offer = a.createOffer({ ...alice, ptime: 40, maxptime: 60 });
  assert.ok(lines(offer).includes("a=ptime:40") && lines(offer).includes("a=maxptime:60"));
  const answer = (extra: string[]) =>
    offerFrom([
      "v=0",
      "o=peer 1 2 IN IP4 192.0.2.1",
      "s=-",
      "c=IN IP4 192.0.2.1",
      "t=0 0",
      "m=audio 7000 RTP/AVP 0",
      ...extra,
    ]);
  assert.equal(a.applyAnswer(answer([])).ptime, 40, "no ptime in the answer: ours");
  a.createOffer({ ...alice, ptime: 40 });
  assert.equal(a.applyAnswer(answer(["a=ptime:20"])).ptime, 20, "the answerer's ptime wins");
  a.createOffer({ ...alice, ptime: 60 });
  assert.equal(a.applyAnswer(answer(["a=maxptime:40"])).ptime, 40, "capped by its maxptime");
});
