// Sending UPDATE with an offer (RFC 3311) on the loop network with the manual
// clock: in a confirmed session, refused with rollback, glare (491 both ways,
// retried after the back-off), a peer whose Allow has no UPDATE, and in an
// early dialog from each side once the initial offer/answer completed in a
// reliable 1xx and its PRACK (and not before).

import assert from "node:assert/strict";
import {
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
} from "../lib/sip/message.ts";
import { type IncomingCall, placeCall } from "../lib/sip/invite/mod.ts";
import { packetMessage, withBed } from "./_sip_bed.ts";
import { ALICE, BOB, confirmedCall, count, events, FakeMedia, pair, sdp } from "./_invite_util.ts";

Deno.test("update(): an UPDATE with an offer in a confirmed session, answered in its 200; no ACK", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    const seen = events(callee);
    const methods: string[] = [];
    callee.addEventListener("reinvite", (e) => methods.push((e as CustomEvent).detail.method));
    assert.equal(call.canUpdate, true, "Bob's 2xx listed UPDATE in Allow");
    const acks = count(bed, "ACK", ALICE);
    assert.equal(await bed.run(call.update()), true);
    assert.deepEqual(methods, ["UPDATE"]);
    assert.deepEqual(seen, ["reinvite"]);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1", "offer 2", "apply bob/2"]);
    assert.deepEqual(p.bobMedia.log, ["answer 1 to alice/1", "answer 2 to alice/2"]);
    assert.equal(count(bed, "UPDATE", ALICE), 1);
    assert.equal(count(bed, "200 UPDATE", BOB), 1);
    assert.equal(count(bed, "ACK", ALICE), acks, "UPDATE has no ACK");
    const update = bed.net.packets.map(packetMessage).find((m) =>
      m?.kind === "request" && m.method === "UPDATE"
    ) as SipRequest;
    assert.equal(update.contentType, "application/sdp");
    assert.match(update.text, /o=alice 1 2 /);
    assert.ok(update.headers.get("Contact"), "a target refresh request carries Contact");
    assert.equal(call.localSdp, update.text);
    assert.match(call.remoteSdp ?? "", /o=bob 1 2 /);
    // And the callee can UPDATE too (the caller's INVITE listed UPDATE).
    assert.equal(await bed.run(callee.update()), true);
    assert.deepEqual(p.aliceMedia.log.slice(-1), ["answer 3 to bob/3"]);
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("update(): an offer the peer refuses (488) is rolled back; the session stays", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(call.answered);
    await bed.run(p.incoming[0].session.answered);
    p.bobMedia.refuseAsRtp = true;
    assert.equal(await bed.run(call.update()), false);
    assert.equal(count(bed, "488 UPDATE", BOB), 1);
    assert.equal(p.aliceMedia.log.at(-1), "rollback");
    assert.equal(call.state, "confirmed");
    p.bobMedia.refuseAsRtp = false;
    assert.equal(await bed.run(call.update()), true, "the next one goes through");
  });
});

Deno.test("update() glare: UPDATEs from both sides get 491 and are retried after the 14.1 back-off", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    await bed.advance(1000);
    const started = bed.clock.now();
    const [ra, rb] = await bed.run(Promise.all([call.update(), callee.update()]), 10);
    assert.deepEqual([ra, rb], [true, true]);
    assert.equal(count(bed, "491 UPDATE"), 2, "each side refused the other's first UPDATE");
    const took = bed.clock.now() - started;
    // Bob (not the Call-ID owner) waits 0-2 s, Alice 2.1-4 s.
    assert.ok(took >= 2100 && took <= 4500, `both done after ${took} ms`);
    assert.ok(p.aliceMedia.log.includes("rollback"));
    assert.ok(p.bobMedia.log.includes("rollback"));
    assert.equal(count(bed, "200 UPDATE"), 2);
  });
});

Deno.test("update(): a peer whose Allow has no UPDATE: canUpdate is false and update() throws", async () => {
  await withBed(async (bed) => {
    const raw = bed.net.transport({ host: BOB });
    bed.raws.push(raw);
    raw.onMessage((m) => {
      const req = parseMessage(m.data) as SipRequest;
      if (req.method === "ACK") return;
      const body = req.method === "INVITE" ? sdp("bob", 1) : undefined;
      raw.send(
        formatMessage(createResponse(req, 200, {
          toTag: "bobtag",
          headers: [["Contact", "<sip:bob@192.0.2.2>"], ["Allow", "INVITE, ACK, BYE, CANCEL"]],
          body,
          contentType: body ? "application/sdp" : undefined,
        })),
        { host: ALICE, port: 5060 },
      );
    });
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const aliceMedia = new FakeMedia("alice");
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: aliceMedia });
    await bed.run(call.answered);
    assert.equal(call.canUpdate, false);
    await assert.rejects(() => call.update(), /the peer does not allow UPDATE/);
    assert.equal(count(bed, "UPDATE", ALICE), 0);
    assert.equal(await bed.run(call.reinvite()), true, "a re-INVITE still works");
  });
});

Deno.test("update() in the early dialog: the caller, after the answer in a reliable 183 and its PRACK", async () => {
  await withBed(async (bed) => {
    let accept!: () => void;
    const p = await pair(bed, async (call, media) => {
      await call.progress(183, { media, reliable: true });
      await new Promise<void>((resolve) => (accept = resolve));
      await call.accept(media);
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    await bed.run(
      new Promise<void>((resolve) => call.addEventListener("ringing", () => resolve())),
    );
    // The PRACK is on its way: until its 200, no UPDATE.
    assert.equal(call.state, "early");
    await bed.advance(100);
    assert.equal(call.canUpdate, true);
    assert.equal(await bed.run(call.update()), true);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1", "offer 2", "apply bob/2"]);
    assert.deepEqual(p.bobMedia.log, ["answer 1 to alice/1", "answer 2 to alice/2"]);
    assert.equal(call.state, "early", "still ringing");
    assert.equal(count(bed, "200 UPDATE", BOB), 1);
    accept();
    await bed.run(call.answered);
    await bed.advance(500);
    assert.deepEqual(seen, ["ringing 183 early", "answered"]);
    // The 2xx carries no SDP (the exchanges were complete) and nothing was applied again.
    assert.deepEqual(p.aliceMedia.log.slice(4), []);
    assert.equal(call.state, "confirmed");
    assert.equal(count(bed, "ACK", ALICE), 1);
  });
});

Deno.test("update() in the early dialog: the callee, once the PRACK of its reliable 183 came; never before", async () => {
  await withBed(async (bed) => {
    let callee!: IncomingCall;
    let progressed!: Promise<void>;
    const p = await pair(bed, (call, media) => {
      callee = call;
      progressed = call.progress(183, { media, reliable: true });
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(
      new Promise<void>((resolve) => call.addEventListener("ringing", () => resolve())),
    );
    await bed.run(progressed);
    const session = callee.session;
    assert.equal(session.canUpdate, true);
    const aliceSaw: string[] = [];
    call.addEventListener("reinvite", (e) => aliceSaw.push((e as CustomEvent).detail.method));
    assert.equal(await bed.run(session.update()), true);
    assert.deepEqual(aliceSaw, ["UPDATE"]);
    assert.deepEqual(p.bobMedia.log, ["answer 1 to alice/1", "offer 2", "apply alice/2"]);
    assert.deepEqual(p.aliceMedia.log.slice(-1), ["answer 2 to bob/2"]);
    await bed.run(callee.accept(p.bobMedia));
    await bed.run(call.answered);
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("update() before the initial offer/answer completed: refused (an unreliable 180)", async () => {
  await withBed(async (bed) => {
    let ringing!: IncomingCall;
    const p = await pair(bed, async (call, media) => {
      ringing = call;
      await call.progress(180, { media });
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(
      new Promise<void>((resolve) => call.addEventListener("ringing", () => resolve())),
    );
    await bed.advance(100);
    assert.equal(call.state, "early");
    assert.equal(call.canUpdate, false);
    await assert.rejects(() => call.update(), /reliable provisional response/);
    assert.equal(ringing.session.canUpdate, false);
    await assert.rejects(() => ringing.session.update(), /reliable provisional response/);
    assert.equal(count(bed, "UPDATE"), 0);
    call.cancel();
    await bed.run(call.finished);
  });
});
