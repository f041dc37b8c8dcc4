// INVITE sessions on the loop network with the manual clock: basic calls,
// lost ACK and 2xx, CANCEL (and CANCEL crossing the 200), forks, glare, BYE
// crossing BYE, 3xx, PRACK, 401 on re-INVITE, no ACK, session timers.

import { parseUri } from "../lib/sip/uri.ts";
import assert from "node:assert/strict";
import { DigestServer } from "../lib/sip/digest.ts";
import { Dialog } from "../lib/sip/dialog.ts";
import {
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import { moveUserAgent } from "../lib/sip/move.ts";
import {
  callsMover,
  InviteAcceptor,
  type InviteSession,
  OfferRejectedError,
  placeCall,
  type SessionEnd,
} from "../lib/sip/invite/mod.ts";
import { type Bed, packetMessage, withBed } from "./_sip_bed.ts";
import {
  ALICE,
  BOB,
  confirmedCall,
  count,
  events,
  FakeMedia,
  origin,
  pair,
  sdp,
} from "./_invite_util.ts";

Deno.test("basic call: INVITE with offer, 180, 200 with answer, ACK, BYE from the caller", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    assert.equal(await bed.run(call.answered), true);
    const callee = p.incoming[0].session;
    const calleeSeen = events(callee);
    await bed.run(callee.answered);
    await bed.net.settled();
    assert.deepEqual(seen, ["ringing 180", "answered"]);
    assert.equal(call.state, "confirmed");
    assert.equal(callee.state, "confirmed");
    assert.equal(p.incoming[0].remoteOffer && origin(p.incoming[0].remoteOffer), "alice/1");
    assert.deepEqual(p.bobMedia.log, ["answer 1 to alice/1"]);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1"]);
    assert.equal(count(bed, "ACK", ALICE), 1);
    await bed.run(call.bye());
    assert.deepEqual(await call.finished, { reason: "local_bye" });
    assert.deepEqual(await bed.run(callee.finished), { reason: "remote_bye" });
    assert.deepEqual(calleeSeen, ["ended remote_bye"]);
    assert.equal(count(bed, "200 BYE", BOB), 1);
    // 2xx retransmission stopped by the ACK: exactly one 200 INVITE.
    await bed.advance(40_000);
    assert.equal(count(bed, "200 INVITE", BOB), 1);
    assert.equal(p.alice.transactions.clientCount + p.alice.transactions.serverCount, 0);
    assert.equal(p.bob.transactions.clientCount + p.bob.transactions.serverCount, 0);
  });
});

Deno.test("BYE from the callee ends both sides; a request in the ended dialog gets 481", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    await bed.run(callee.bye());
    assert.deepEqual(await bed.run(call.finished), { reason: "remote_bye" });
    assert.deepEqual(await callee.finished, { reason: "local_bye" });
    // Alice's dialog is gone: an INFO Bob sends in it is answered 481 (12.2.2).
    const info = callee.dialog!;
    const stale = new Dialog({
      id: info.id,
      state: "confirmed",
      local: info.local,
      remote: info.remote,
      remoteTarget: info.remoteTarget,
      routeSet: info.routeSet,
      secure: false,
      localSeq: (info.localSeq ?? 1) + 1,
    });
    const { response } = await bed.run(
      p.bob.send(stale.createRequest("INFO"), { dialog: stale }),
    );
    assert.equal(response.status, 481);
  });
});

Deno.test("an INVITE without offer: the offer comes in the 2xx, the answer in the ACK", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      earlyOffer: false,
    });
    await bed.run(call.answered);
    await bed.advance(1000);
    assert.equal(p.incoming[0].remoteOffer, undefined);
    assert.deepEqual(p.bobMedia.log, ["offer 1", "apply alice/1"]);
    assert.deepEqual(p.aliceMedia.log, ["answer 1 to bob/1"]);
    const ack = bed.net.packets.map(packetMessage).find((m) =>
      m?.kind === "request" && m.method === "ACK"
    ) as SipRequest;
    assert.equal(origin(ack.text), "alice/1");
    assert.equal(ack.contentType, "application/sdp");
  });
});

Deno.test("a lost ACK: the 2xx is resent, the caller ACKs each copy, the call stays up", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    bed.dropNext(/^ACK /, 2);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    await bed.advance(5_000);
    assert.equal(count(bed, "200 INVITE", BOB), 3, "original and two retransmissions (T1, 2*T1)");
    assert.equal(count(bed, "ACK", ALICE), 3, "one ACK per 2xx");
    await bed.advance(40_000);
    assert.equal(count(bed, "200 INVITE", BOB), 3, "the third ACK stopped them");
    assert.equal(callee.state, "confirmed");
    assert.equal(call.state, "confirmed");
    // The same ACK each time (13.2.2.4): one branch.
    const branches = new Set(
      bed.net.packets.map(packetMessage).filter((m) => m?.kind === "request" && m.method === "ACK")
        .map((m) => m!.topVia.params.branch),
    );
    assert.equal(branches.size, 1);
  });
});

Deno.test("a callee's re-INVITE waits for the ACK of its 2xx (14.1), also when that ACK is late", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    bed.dropNext(/^ACK /, 1);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    // The caller's first ACK was lost: Bob's INVITE transaction is still in progress.
    const moved = callee.updateLocalContact(parseUri("sip:bob@192.0.2.2:5060"));
    assert.equal(count(bed, "INVITE", BOB), 0, "no re-INVITE before the ACK");
    assert.equal(await bed.run(moved), true);
    assert.equal(count(bed, "INVITE", BOB), 1);
    // The first ACK (lost) and the one that answered the 2xx's retransmission both come before.
    const packets = bed.net.packets.map(packetMessage);
    const reinvite = packets.findIndex((m) =>
      m?.kind === "request" && m.method === "INVITE" && m.from.uri.user === "bob"
    );
    const acksBefore = packets.slice(0, reinvite).filter((m) =>
      m?.kind === "request" && m.method === "ACK" && m.cseq.seq === 1
    ).length;
    assert.equal(acksBefore, 2, "the re-INVITE went out only after the 2xx was ACKed");
    assert.equal(callee.state, "confirmed");
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("a lost 2xx: the callee resends it and the call is answered once", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    bed.dropNext(/^SIP\/2.0 200 OK[^]*CSeq: 1 INVITE/);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    await bed.run(call.answered);
    await bed.advance(40_000);
    assert.deepEqual(seen, ["ringing 180", "answered"]);
    assert.equal(count(bed, "200 INVITE", BOB), 2);
    assert.equal(count(bed, "ACK", ALICE), 1);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1"]);
  });
});

Deno.test("no ACK at all: the callee gives up after 64*T1 and sends BYE (no_ack)", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    bed.drops.push((_p, text) => text.startsWith("ACK "));
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    const end = await bed.run(callee.finished);
    assert.equal(end.reason, "no_ack");
    assert.equal((await bed.run(call.finished)).reason, "remote_bye");
    assert.equal(count(bed, "BYE", BOB), 1);
  });
});

Deno.test("CANCEL while ringing: 487, both sides end cancelled, the offer is rolled back", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed, (call) => call.progress(180));
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    await bed.advance(1000);
    assert.deepEqual(seen, ["ringing 180"]);
    call.cancel();
    const end = await bed.run(call.finished);
    assert.deepEqual(end, { reason: "cancelled", status: 487, phrase: "Request Terminated" });
    assert.equal((await p.incoming[0].session.finished).reason, "cancelled");
    assert.equal(await call.answered, false);
    assert.ok(p.aliceMedia.log.includes("rollback"));
    assert.equal(count(bed, "487 INVITE", BOB), 1);
    await assert.rejects(p.incoming[0].accept(p.bobMedia), /ended/);
  });
});

Deno.test("CANCEL crossing the 200: the caller ACKs the 2xx and hangs up with BYE", async () => {
  await withBed(async (bed) => {
    let accept!: () => Promise<void>;
    const p = await pair(bed, async (call, media) => {
      await call.progress(180);
      accept = () => call.accept(media);
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.advance(1000);
    // The 200 is on its way (lost the first time) when Alice cancels: the
    // CANCEL finds the INVITE answered (200, no 487) and the 2xx retransmission
    // reaches Alice after her CANCEL.
    bed.dropNext(/^SIP\/2.0 200 OK[^]*CSeq: 1 INVITE/);
    await bed.run(accept());
    call.cancel();
    const end = await bed.run(call.finished);
    assert.equal(end.reason, "cancelled");
    const callee = p.incoming[0].session;
    assert.equal((await bed.run(callee.finished)).reason, "remote_bye");
    assert.equal(count(bed, "CANCEL", ALICE), 1);
    assert.equal(count(bed, "200 CANCEL", BOB), 1);
    assert.equal(count(bed, "487 INVITE", BOB), 0);
    assert.equal(count(bed, "ACK", ALICE), 1);
    assert.equal(count(bed, "BYE", ALICE), 1);
    assert.equal(await call.answered, false);
  });
});

Deno.test("forks: one dialog per To tag, every 2xx ACKed, the first kept, the others get BYE", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const media = new FakeMedia("alice");
    // A forking proxy in one raw transport: two early dialogs, then two 2xx.
    const proxy = bed.net.transport({ host: BOB });
    bed.raws.push(proxy);
    const got: SipRequest[] = [];
    proxy.onMessage((m) => got.push(parseMessage(m.data) as SipRequest));
    const to = { host: ALICE, port: 5060 };
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media });
    const seen = events(call);
    await bed.net.settled();
    const invite = got[0];
    const reply = (status: number, tag: string, body?: string) =>
      proxy.send(
        formatMessage(
          createResponse(invite, status, {
            toTag: tag,
            headers: [["Contact", `<sip:${tag}@192.0.2.2>`]],
            body,
            contentType: body ? "application/sdp" : undefined,
          }),
        ),
        to,
      );
    await reply(183, "fork1", sdp("fork1", 1)); // early media from the fork that loses
    await reply(180, "fork2");
    await bed.net.settled();
    assert.deepEqual(seen, ["ringing 183 early", "ringing 180"]);
    await reply(200, "fork2", sdp("fork2", 1));
    await bed.net.settled();
    await reply(200, "fork1", sdp("fork1", 1));
    await reply(200, "fork1", sdp("fork1", 1)); // retransmitted
    await bed.net.settled();
    assert.equal(call.dialog?.id.remoteTag, "fork2");
    assert.deepEqual(media.log, ["offer 1", "apply fork1/1", "apply fork2/1"]);
    assert.equal(origin(call.remoteSdp!), "fork2/1");
    const acks = got.filter((r) => r.method === "ACK").map((r) => r.uri.user);
    assert.deepEqual(acks, ["fork2", "fork1", "fork1"]);
    const byes = got.filter((r) => r.method === "BYE").map((r) => r.uri.user);
    assert.deepEqual(byes, ["fork1"]);
    assert.deepEqual(seen, ["ringing 183 early", "ringing 180", "answered"]);
    assert.equal(call.state, "confirmed");
    // After timer M no transaction is left; a late fork's 2xx is still ACKed, then hung up.
    await bed.advance(40_000);
    assert.equal(alice.transactions.clientCount, 0);
    await reply(200, "fork3", sdp("fork3", 1));
    await bed.net.settled();
    assert.equal(got.filter((r) => r.method === "ACK" && r.uri.user === "fork3").length, 1);
    assert.equal(got.filter((r) => r.method === "BYE" && r.uri.user === "fork3").length, 1);
    assert.equal(call.dialog?.id.remoteTag, "fork2");
  });
});

Deno.test("glare: re-INVITEs from both sides get 491 and are retried after the 14.1 back-off", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    await bed.advance(1000);
    const started = bed.clock.now();
    const a = call.reinvite();
    const b = callee.reinvite();
    const [ra, rb] = await bed.run(Promise.all([a, b]), 10);
    assert.deepEqual([ra, rb], [true, true]);
    assert.equal(count(bed, "491 INVITE"), 2, "each side refused the other's first re-INVITE");
    // Bob (not the Call-ID owner) waits 0-2 s, Alice 2.1-4 s: Bob's goes first.
    const took = bed.clock.now() - started;
    assert.ok(took >= 2100 && took <= 4500, `both done after ${took} ms`);
    assert.ok(p.aliceMedia.log.includes("rollback"));
    assert.ok(p.bobMedia.log.includes("rollback"));
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("BYE crossing BYE: both answered 200, both sides end local_bye", async () => {
  await withBed(async (bed) => {
    const { call, callee } = await confirmedCall(bed);
    await bed.advance(1000);
    await bed.run(Promise.all([call.bye(), callee.bye()]));
    assert.equal((await call.finished).reason, "local_bye");
    assert.equal((await callee.finished).reason, "local_bye");
    assert.equal(count(bed, "200 BYE"), 2);
    assert.equal(count(bed, "481 BYE"), 0);
  });
});

Deno.test("3xx followed to the new Contact (pre-call mobility); a redirect loop ends at the limit", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const moved = await bed.ua("192.0.2.3", { aor: "old@example.test" });
    moved.handle(
      "INVITE",
      (i) => i.respond(302, { headers: [["Contact", "<sip:bob@192.0.2.2>"]] }),
    );
    const call = await placeCall(p.alice, "sip:old@192.0.2.3", { media: p.aliceMedia });
    const redirects: string[] = [];
    call.addEventListener("redirected", (e) => redirects.push((e as CustomEvent).detail.to));
    assert.equal(await bed.run(call.answered), true);
    assert.deepEqual(redirects, ["sip:bob@192.0.2.2"]);
    await bed.run(call.bye());

    // Two servers that send each other's address: a loop, cut by the visited set and the limit.
    const loop = await bed.ua("192.0.2.4");
    loop.handle("INVITE", (i) =>
      i.respond(302, {
        headers: [["Contact", `<sip:x${i.request.cseq.seq}@192.0.2.4>`]],
      }));
    const looping = await placeCall(p.alice, "sip:x@192.0.2.4", {
      media: p.aliceMedia,
      maxRedirects: 3,
    });
    const end = await bed.run(looping.finished);
    assert.equal(end.reason, "rejected");
    assert.equal(end.status, 302);
    assert.equal(count(bed, "INVITE", ALICE) - 2, 4, "the first INVITE and 3 redirects");
  });
});

Deno.test("PRACK: 183 with Require: 100rel and the answer is PRACKed; the 2xx waits for the PRACK", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed, async (call, media) => {
      await call.progress(183, { media, reliable: true });
      await call.accept(media);
    });
    bed.dropNext(/^PRACK /); // the PRACK transaction retransmits it
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    await bed.run(call.answered);
    await bed.advance(1000);
    assert.deepEqual(seen, ["ringing 183 early", "answered"]);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1"], "the answer applied once");
    assert.equal(count(bed, "PRACK", ALICE), 2);
    assert.equal(count(bed, "200 PRACK", BOB), 1);
    assert.equal(count(bed, "ACK", ALICE), 1);
    const msgs = bed.net.packets.map(packetMessage);
    const r183 = msgs.find((m) => m?.kind === "response" && m.status === 183) as SipResponse;
    assert.equal(r183.headers.get("Require"), "100rel");
    const ok = msgs.find((m) =>
      m?.kind === "response" && m.status === 200 && m.cseq.method === "INVITE"
    ) as SipResponse;
    assert.equal(ok.body.length, 0, "offer/answer was complete: no SDP in the 2xx");
    const prackIndex = bed.sent().findIndex((s) => s.startsWith("200 PRACK"));
    const okIndex = bed.sent().findIndex((s) => s.startsWith("200 INVITE"));
    assert.ok(prackIndex < okIndex, "the 2xx went after the PRACK's answer");
  });
});

Deno.test("PRACK with an empty INVITE: the reliable 1xx has the offer, the PRACK the answer", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed, async (call, media) => {
      await call.progress(183, { media, reliable: true });
      await call.accept(media);
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      earlyOffer: false,
    });
    await bed.run(call.answered);
    await bed.advance(1000);
    assert.deepEqual(p.bobMedia.log, ["offer 1", "apply alice/1"]);
    assert.deepEqual(p.aliceMedia.log, ["answer 1 to bob/1"]);
  });
});

/**
 * alice (password "pw") and bob as UA cores in `bed`, and the digest server (realm example.test)
 * with which bob's handlers challenge and verify her.
 */
async function digestPair(bed: Bed) {
  const alice = await bed.ua(ALICE, {
    aor: "alice@example.test",
    password: () => Promise.resolve("pw"),
  });
  const bob = await bed.ua(BOB, { aor: "bob@example.test" });
  const server = new DigestServer({ realm: "example.test", clock: bed.clock });
  return { alice, bob, server };
}

Deno.test("401 on a re-INVITE: the retry carries credentials, its ACK the new CSeq and the same credentials", async () => {
  await withBed(async (bed) => {
    const { alice, bob, server } = await digestPair(bed);
    // Bob: a plain UA core that answers the INVITE and challenges re-INVITEs.
    bob.handle("INVITE", (i) => {
      const req = i.request;
      const ok = createResponse(req, 200, {
        toTag: "bob1",
        headers: [["Contact", "<sip:bob@192.0.2.2>"]],
        body: sdp("bob", 1),
        contentType: "application/sdp",
      });
      i.transaction!.respond(ok);
      bob.addDialog(
        { callId: req.callId, localTag: "bob1", remoteTag: req.from.params.tag! },
        (r) => {
          if (r.request.method !== "INVITE") return;
          const v = server.verifyRequest(r.request, () => ({ password: "pw" }));
          if (!v.ok) return r.respond(401, { headers: server.challengeFields({ stale: v.stale }) });
          return r.respond(200, {
            contact: true,
            body: sdp("bob", 2),
            contentType: "application/sdp",
          });
        },
      );
    });
    const media = new FakeMedia("alice");
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media });
    await bed.run(call.answered);
    assert.equal(await bed.run(call.reinvite()), true);
    await bed.net.settled();
    const acks = bed.net.packets.map(packetMessage).filter((m) =>
      m?.kind === "request" && m.method === "ACK"
    ) as SipRequest[];
    // 1: the call's 2xx; 2: the 401 (ACKed by its transaction); 3: the retried re-INVITE's 2xx.
    assert.deepEqual(acks.map((a) => a.cseq.seq), [1, 2, 3]);
    assert.match(acks[2].headers.get("Authorization") ?? "", /username="alice"/);
    assert.notEqual(acks[2].topVia.params.branch, acks[1].topVia.params.branch);
    assert.deepEqual(media.log, ["offer 1", "apply bob/1", "offer 2", "apply bob/2"]);
  });
});

Deno.test("a re-INVITE the peer refuses (488) rolls back and keeps the session and the remote target", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    p.bobMedia.refuseAsRtp = true;
    const before = callee.dialog!.remoteTarget.host;
    assert.equal(
      await bed.run(call.updateLocalContact(parseUri("sip:alice@192.0.2.9:5060"))),
      false,
    );
    assert.equal(count(bed, "488 INVITE", BOB), 1);
    assert.equal(callee.dialog!.remoteTarget.host, before, "a rejected refresh changes nothing");
    assert.equal(call.dialog!.localContact!.uri.host, ALICE);
    assert.equal(p.aliceMedia.log.at(-1), "rollback");
    // Accepted this time: Bob's dialog now targets the new address.
    p.bobMedia.refuseAsRtp = false;
    const reinvites: string[] = [];
    callee.addEventListener("reinvite", (e) => reinvites.push((e as CustomEvent).detail.method));
    const moved = await bed.ua("192.0.2.9", { aor: "alice@example.test" });
    void moved;
    assert.equal(
      await bed.run(call.updateLocalContact(parseUri("sip:alice@192.0.2.9:5060"))),
      true,
    );
    assert.equal(callee.dialog!.remoteTarget.host, "192.0.2.9");
    assert.deepEqual(reinvites, ["INVITE"]);
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("an offer the callee's media refuses gets 488 and the call ends rejected", async () => {
  await withBed(async (bed) => {
    let error: unknown;
    const p = await pair(bed, async (call, media) => {
      media.refuse = true;
      await call.accept(media).catch((e) => (error = e));
    });
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const end = await bed.run(call.finished);
    assert.deepEqual(end, { reason: "rejected", status: 488, phrase: "Not Acceptable Here" });
    assert.ok(error instanceof OfferRejectedError);
    assert.equal(p.incoming[0].session.end?.status, 488);
  });
});

Deno.test("INFO with DTMF and OPTIONS in the dialog are answered; dtmf_info is reported", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    const seen = events(callee);
    const res = await bed.run(
      call.sendInfo("Signal=5\r\nDuration=160\r\n", "application/dtmf-relay"),
    );
    assert.equal(res.status, 200);
    assert.deepEqual(seen, ["dtmf 5 160"]);
    const dialog = call.dialog!;
    const { response } = await bed.run(
      p.alice.send(dialog.createRequest("OPTIONS"), { dialog }),
    );
    assert.equal(response.status, 200);
    assert.match(response.headers.get("Allow") ?? "", /UPDATE/);
  });
});

Deno.test("session timers: the caller asks for 90 s, refreshes with UPDATE every 45 s; without refresh the callee hangs up", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      sessionExpires: 90,
    });
    const seen = events(call);
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    await bed.run(callee.answered);
    assert.equal(call.sessionExpires, 90);
    assert.equal(callee.sessionExpires, 90);
    const ok = bed.net.packets.map(packetMessage).find((m) =>
      m?.kind === "response" && m.status === 200 && m.cseq.method === "INVITE"
    ) as SipResponse;
    assert.equal(ok.headers.get("Session-Expires"), "90;refresher=uac");
    assert.equal(ok.headers.get("Require"), "timer");
    await bed.advance(200_000, 1000);
    assert.equal(count(bed, "UPDATE", ALICE), 4);
    assert.deepEqual(seen.filter((s) => s.startsWith("refreshed")).length, 4);
    assert.equal(callee.state, "confirmed");
    // The refreshes stop reaching Bob: at 90 - 30 s after the last one he sends BYE.
    bed.drops.push((_p, text) => text.startsWith("UPDATE "));
    const end = await bed.run(callee.finished, 1000);
    assert.equal(end.reason, "timeout");
    assert.equal((await bed.run(call.finished)).reason, "remote_bye");
  });
});

Deno.test("session timers: a caller that asks for refresher=uas is refreshed by the callee's UPDATEs, and refreshes nothing itself", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      headers: [["Session-Expires", "120;refresher=uas"]],
    });
    await bed.run(call.answered);
    const callee = p.incoming[0].session;
    const seen = events(callee);
    await bed.run(callee.answered);
    await bed.advance(61_000, 1000);
    assert.deepEqual(seen, ["refreshed UPDATE"]);
    assert.equal(count(bed, "UPDATE", BOB), 1);
    const ended: SessionEnd[] = [];
    call.addEventListener("ended", (e) => ended.push((e as CustomEvent).detail));
    await bed.advance(200_000, 1000);
    assert.deepEqual(ended, []);
    assert.equal(count(bed, "UPDATE", ALICE), 0, "only the refresher refreshes");
    assert.ok(count(bed, "UPDATE", BOB) >= 4);
  });
});

Deno.test("401 on the INVITE: retried with credentials; the ACK of the 2xx carries the same credentials", async () => {
  await withBed(async (bed) => {
    const { alice, bob, server } = await digestPair(bed);
    bob.handle("INVITE", (i) => {
      const v = server.verifyRequest(i.request, () => ({ password: "pw" }));
      if (!v.ok) return i.respond(401, { headers: server.challengeFields({ stale: v.stale }) });
      return i.respond(200, { contact: true, body: sdp("bob", 1), contentType: "application/sdp" });
    });
    const media = new FakeMedia("alice");
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media });
    assert.equal(await bed.run(call.answered), true);
    await bed.net.settled();
    const sent = bed.net.packets.map(packetMessage).filter((m) => m?.kind === "request");
    const invites = sent.filter((m) => (m as SipRequest).method === "INVITE") as SipRequest[];
    assert.deepEqual(invites.map((r) => r.cseq.seq), [1, 2]);
    const auth = invites[1].headers.get("Authorization");
    assert.match(auth ?? "", /username="alice"/);
    const acks = sent.filter((m) => (m as SipRequest).method === "ACK") as SipRequest[];
    assert.deepEqual(acks.map((a) => a.cseq.seq), [1, 2], "the 401's ACK, then the 2xx's");
    assert.equal(acks[1].headers.get("Authorization"), auth, "13.2.2.4: the INVITE's credentials");
    assert.deepEqual(media.log, ["offer 1", "apply bob/1"]);
  });
});

Deno.test("the ACK of a 2xx follows the route set from Record-Route to the remote target", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const uas = bed.net.transport({ host: BOB });
    const proxy = bed.net.transport({ host: "192.0.2.5" });
    bed.raws.push(uas, proxy);
    const atUas: SipRequest[] = [];
    const atProxy: SipRequest[] = [];
    uas.onMessage((m) => atUas.push(parseMessage(m.data) as SipRequest));
    proxy.onMessage((m) => atProxy.push(parseMessage(m.data) as SipRequest));
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: new FakeMedia("alice") });
    await bed.net.settled();
    await uas.send(
      formatMessage(
        createResponse(atUas[0], 200, {
          toTag: "b",
          headers: [
            ["Record-Route", "<sip:192.0.2.5;lr>"],
            ["Contact", "<sip:bob@192.0.2.6>"],
          ],
          body: sdp("bob", 1),
          contentType: "application/sdp",
        }),
      ),
      { host: ALICE, port: 5060 },
    );
    await bed.run(call.answered);
    await bed.net.settled();
    const ack = atProxy.find((r) => r.method === "ACK")!;
    assert.ok(ack, "the ACK went to the proxy of the route set");
    assert.equal(ack.uri.host, "192.0.2.6");
    assert.equal(ack.headers.get("Route"), "<sip:192.0.2.5;lr>");
    assert.equal(ack.cseq.seq, 1);
    const bye = call.bye();
    await bed.net.settled();
    assert.equal(atProxy.filter((r) => r.method === "BYE").length, 1);
    void bye;
  });
});

Deno.test("cancel() before any 1xx waits for one; the no_answer timer cancels an unanswered call", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed, () => {}); // ring silently (100 Trying from the transaction)
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.net.settled(); // the INVITE is there; the 100 comes after 200 ms
    call.cancel();
    await bed.net.settled();
    assert.equal(count(bed, "CANCEL", ALICE), 0, "no CANCEL before a provisional response (9.1)");
    assert.equal((await bed.run(call.finished)).reason, "cancelled");
    assert.equal(count(bed, "CANCEL", ALICE), 1);
    assert.ok(
      bed.sent().indexOf("100 INVITE") < bed.sent().findIndex((s) => s.startsWith("CANCEL")),
      "the CANCEL went after the 100",
    );
    const started = bed.clock.now();
    const late = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      timers: { noAnswer: 30_000 },
    });
    const end = await bed.run(late.finished);
    assert.equal(end.reason, "no_answer");
    assert.equal(end.status, 487);
    assert.ok(bed.clock.now() - started >= 30_000);
  });
});

Deno.test("UPDATE with an offer from the callee during the call is answered; reinvite event says UPDATE", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    const seen = events(call);
    const dialog = callee.dialog!;
    const { response } = await bed.run(
      p.bob.send(
        dialog.createRequest("UPDATE", { body: sdp("bob", 7), contentType: "application/sdp" }),
        { dialog },
      ),
    );
    assert.equal(response.status, 200);
    assert.equal(origin(response.text), "alice/2");
    assert.deepEqual(seen, ["reinvite"]);
    assert.equal(origin(call.remoteSdp!), "bob/7");
  });
});

Deno.test("a reliable 1xx is resent until the PRACK; none in 64*T1: the INVITE gets a 5xx", async () => {
  await withBed(async (bed) => {
    let progressError: unknown;
    const p = await pair(bed, async (call, media) => {
      await call.progress(183, { media, reliable: true }).catch((e) => (progressError = e));
    });
    bed.drops.push((_p, text) => text.startsWith("PRACK "));
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    const seen = events(call);
    const end = await bed.run(call.finished);
    assert.equal(end.reason, "rejected");
    assert.equal(end.status, 504);
    assert.ok(progressError instanceof Error);
    assert.ok(count(bed, "183 INVITE", BOB) >= 6, "retransmitted with back-off");
    assert.deepEqual(seen.filter((s) => s.startsWith("ringing")), ["ringing 183 early"]);
  });
});

Deno.test("a caller that requires 100rel gets reliable provisional responses", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      headers: [["Require", "100rel"]],
    });
    await bed.run(call.answered);
    assert.equal(count(bed, "420 INVITE"), 0);
    assert.equal(count(bed, "PRACK", ALICE), 1);
    const r180 = bed.net.packets.map(packetMessage).find((m) =>
      m?.kind === "response" && m.status === 180
    ) as SipResponse;
    assert.equal(r180.headers.get("Require"), "100rel");
    assert.ok(r180.headers.get("RSeq"));
  });
});

Deno.test("reinvite() while the peer's re-INVITE waits for its ACK waits, then goes (14.1)", async () => {
  await withBed(async (bed) => {
    const { call, callee } = await confirmedCall(bed);
    bed.dropNext(/^ACK /); // Bob's first ACK for his re-INVITE's 2xx is lost
    let mine: Promise<boolean> | undefined;
    call.addEventListener("reinvite", () => (mine = call.reinvite()));
    assert.equal(await bed.run(callee.reinvite()), true);
    assert.ok(mine);
    assert.equal(await bed.run(mine!), true);
    assert.equal(count(bed, "491 INVITE"), 0);
    assert.equal(count(bed, "INVITE", ALICE), 2);
  });
});

Deno.test("422 Session Interval Too Small: the caller retries with the callee's Min-SE (RFC 4028)", async () => {
  await withBed(async (bed) => {
    const p = await pair(bed);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", {
      media: p.aliceMedia,
      sessionExpires: 30,
    });
    assert.equal(await bed.run(call.answered), true);
    assert.equal(count(bed, "422 INVITE", BOB), 1);
    const invites = bed.net.packets.map(packetMessage).filter((m) =>
      m?.kind === "request" && m.method === "INVITE"
    ) as SipRequest[];
    assert.deepEqual(invites.map((r) => r.headers.get("Session-Expires")), ["30", "90"]);
    assert.deepEqual(invites.map((r) => r.cseq.seq), [1, 2]);
    assert.equal(call.sessionExpires, 90);
    assert.deepEqual(p.aliceMedia.log, ["offer 1", "apply bob/1"]);
  });
});

Deno.test("an incoming call nobody answers gets 480 after the acceptor's noAnswer time", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const bob = await bed.ua(BOB, { aor: "bob@example.test" });
    const sessions: InviteSession[] = [];
    new InviteAcceptor(bob, {
      noAnswer: 20_000,
      onIncoming: (call) => {
        sessions.push(call.session);
        return call.progress(180);
      },
    });
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media: new FakeMedia("alice") });
    const end = await bed.run(call.finished);
    assert.deepEqual(end, { reason: "no_answer", status: 480, phrase: "Temporarily Unavailable" });
    assert.equal(sessions[0].end?.reason, "no_answer");
  });
});

Deno.test("a re-INVITE without offer: our offer goes in the 2xx, the peer's answer comes in the ACK", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    // Bob's UA sends an offerless re-INVITE in the call's dialog by hand.
    const dialog = callee.dialog!;
    const { response, request } = await bed.run(
      p.bob.send(dialog.createRequest("INVITE"), { dialog }),
    );
    assert.equal(response.status, 200);
    assert.equal(origin(response.text), "alice/2");
    const ack = dialog.createRequest("ACK", {
      cseq: request.cseq.seq,
      body: sdp("bob", 9),
      contentType: "application/sdp",
    });
    const [target] = await p.bob.targetsFor(ack);
    await p.bob.transactions.sendAck(ack, target);
    await bed.advance(1000);
    assert.deepEqual(p.aliceMedia.log.slice(-2), ["offer 2", "apply bob/9"]);
    assert.equal(origin(call.remoteSdp!), "bob/9");
    assert.equal(count(bed, "200 INVITE", ALICE), 1, "the ACK stopped the 2xx retransmissions");
    assert.equal(await bed.run(call.reinvite()), true, "the exchange is complete");
  });
});

Deno.test("a callee that hangs up before the ACK sends its BYE only once the ACK came (15)", async () => {
  await withBed(async (bed) => {
    let hungUp: Promise<void> | undefined;
    const p = await pair(bed, async (call, media) => {
      await call.accept(media);
      hungUp = call.session.bye();
    });
    bed.dropNext(/^ACK /);
    const call = await placeCall(p.alice, "sip:bob@192.0.2.2", { media: p.aliceMedia });
    await bed.net.settled();
    assert.ok(hungUp);
    assert.equal(count(bed, "BYE", BOB), 0, "no BYE before the ACK");
    await bed.run(hungUp!);
    const sent = bed.sent();
    const acks = sent.flatMap((s, i) => (s === "ACK 1" ? [i] : []));
    assert.equal(acks.length, 2, "the first ACK was lost, the second came with the 2xx resent");
    assert.ok(sent.findIndex((s) => s.startsWith("BYE")) > acks[1], sent.join(", "));
    assert.equal((await bed.run(call.finished)).reason, "remote_bye");
  });
});

Deno.test("a call over TCP: nothing retransmitted (reliable 183 included), ACK and BYE", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" }, "tcp");
    const bob = await bed.ua(BOB, { aor: "bob@example.test" }, "tcp");
    const bobMedia = new FakeMedia("bob");
    const sessions: InviteSession[] = [];
    new InviteAcceptor(bob, {
      onIncoming: async (call) => {
        sessions.push(call.session);
        await call.progress(183, { media: bobMedia, reliable: true });
        await call.accept(bobMedia);
      },
    });
    const call = await placeCall(alice, "sip:bob@192.0.2.2;transport=tcp", {
      media: new FakeMedia("alice"),
    });
    assert.equal(await bed.run(call.answered), true);
    await bed.advance(10_000);
    assert.equal(count(bed, "183 INVITE", BOB), 1);
    assert.equal(count(bed, "200 INVITE", BOB), 1);
    assert.equal(count(bed, "ACK", ALICE), 1);
    await bed.run(call.bye());
    assert.equal((await bed.run(sessions[0].finished)).reason, "remote_bye");
    // Timers L and M (RFC 6026) run 64*T1 on every transport; K, J are zero here.
    await bed.advance(40_000);
    assert.equal(alice.transactions.clientCount + alice.transactions.serverCount, 0);
    assert.equal(bob.transactions.clientCount + bob.transactions.serverCount, 0);
  });
});

Deno.test("mid-call mobility: the calls mover re-INVITEs with the Contact on the new address; the peer's BYE reaches it", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    const rebound: string[] = [];
    const result = await bed.run(
      moveUserAgent(p.alice, "192.0.2.9", [
        callsMover(p.alice, () => [call], {
          rebindMedia: (_session, host) => (rebound.push(host), Promise.resolve()),
        }),
      ]),
    );
    assert.deepEqual(result.redone, ["calls"]);
    assert.deepEqual(rebound, ["192.0.2.9"]);
    assert.equal(callee.dialog!.remoteTarget.host, "192.0.2.9");
    assert.equal(call.dialog!.localContact!.uri.host, "192.0.2.9");
    assert.deepEqual(p.aliceMedia.log.slice(-2), ["offer 2", "apply bob/2"]);
    await bed.run(callee.bye());
    assert.equal((await bed.run(call.finished)).reason, "remote_bye");
    const bye = bed.net.packets.map(packetMessage).find((m) =>
      m?.kind === "request" && m.method === "BYE"
    ) as SipRequest;
    assert.equal(bye.uri.host, "192.0.2.9");
  });
});

Deno.test("mid-call mobility: a re-INVITE the peer refuses fails the calls mover; with endRefused the call is hung up", async () => {
  for (const endRefused of [false, true]) {
    await withBed(async (bed) => {
      const { p, call, callee } = await confirmedCall(bed);
      p.bobMedia.refuseAsRtp = true;
      const result = await bed.run(
        moveUserAgent(p.alice, "192.0.2.9", [callsMover(p.alice, () => [call], { endRefused })]),
      );
      assert.deepEqual(result.redone, []);
      assert.equal(result.failed[0]?.name, "calls");
      assert.match(result.failed[0]?.reason ?? "", /did not accept/);
      assert.equal(count(bed, "488 INVITE", BOB), 1);
      if (endRefused) {
        assert.equal((await bed.run(call.finished)).reason, "local_bye");
        assert.equal((await bed.run(callee.finished)).reason, "remote_bye");
      } else {
        assert.equal(call.state, "confirmed", "the call goes on with the old Contact");
      }
    });
  }
});

Deno.test("odd in-dialog requests are answered, never crash the session", async () => {
  await withBed(async (bed) => {
    const { p, call, callee } = await confirmedCall(bed);
    const dialog = callee.dialog!;
    const send = async (method: string, headers: [string, string][], body?: string) =>
      (await bed.run(
        p.bob.send(
          dialog.createRequest(method, {
            headers,
            body,
            contentType: body === undefined ? undefined : "application/sdp",
          }),
          { dialog },
        ),
      )).response;
    assert.equal((await send("PRACK", [])).status, 481, "PRACK without RAck");
    assert.equal((await send("PRACK", [["RAck", "x y z"]])).status, 481);
    assert.equal((await send("UPDATE", [["Session-Expires", "abc;refresher=?"]])).status, 200);
    const small = await send("UPDATE", [["Session-Expires", "10"]]);
    assert.equal(small.status, 422);
    assert.equal(small.headers.get("Min-SE"), "90");
    assert.equal((await send("INFO", [], "\u0000\u00ff garbage")).status, 200);
    assert.equal((await send("MESSAGE", [])).status, 405);
    assert.equal(call.state, "confirmed");
    assert.equal(callee.state, "confirmed");
  });
});

/**
 * A callee in a raw transport that insists on session intervals of at
 * least `minSe` seconds (422 with Min-SE below that, RFC 4028 8.1) and
 * answers every other request 200; `allowUpdate` says whether its Allow
 * lists UPDATE (else refreshes come as re-INVITEs).
 */
function strictTimerPeer(bed: Bed, allowUpdate: boolean) {
  const raw = bed.net.transport({ host: BOB });
  bed.raws.push(raw);
  const peer = {
    minSe: 90,
    /** The Min-SE its 422s name (a broken peer names less than it wants); default minSe. */
    announced: undefined as number | undefined,
    got: [] as SipRequest[],
    version: 0,
  };
  const allow = `INVITE, ACK, BYE, CANCEL${allowUpdate ? ", UPDATE" : ""}`;
  raw.onMessage((m) => {
    const req = parseMessage(m.data) as SipRequest;
    peer.got.push(req);
    if (req.method === "ACK") return;
    const se = /^(\d+)/.exec(req.headers.get("Session-Expires") ?? "");
    const headers: [string, string][] = [["Contact", "<sip:bob@192.0.2.2>"], ["Allow", allow]];
    let status = 200;
    let body: string | undefined;
    if (se && Number(se[1]) < peer.minSe) {
      status = 422;
      headers.push(["Min-SE", String(peer.announced ?? peer.minSe)]);
    } else {
      if (se) headers.push(["Session-Expires", `${se[1]};refresher=uac`], ["Require", "timer"]);
      if (req.method === "INVITE") body = sdp("bob", ++peer.version);
    }
    raw.send(
      formatMessage(createResponse(req, status, {
        toTag: "bobtag",
        headers,
        body,
        contentType: body ? "application/sdp" : undefined,
      })),
      { host: ALICE, port: 5060 },
    );
  });
  return peer;
}

/** The Session-Expires and Min-SE of `method` requests the peer got after the first `skip`. */
function timerHeadersOf(got: SipRequest[], method: string, skip = 0): string[] {
  return got.filter((r) => r.method === method).slice(skip).map((r) =>
    `${r.cseq.seq} ${r.headers.get("Session-Expires")} min-se=${r.headers.get("Min-SE") ?? "none"}`
  );
}

Deno.test("422 on a session refresh by re-INVITE and on a re-INVITE: retried at once with the peer's Min-SE (RFC 4028 7.4)", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const media = new FakeMedia("alice");
    const peer = strictTimerPeer(bed, false);
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media, sessionExpires: 90 });
    const seen = events(call);
    assert.equal(await bed.run(call.answered), true);
    assert.equal(call.sessionExpires, 90);
    // The peer now wants 300 s: the refresh at 45 s gets 422 and goes again with 300.
    peer.minSe = 300;
    await bed.advance(46_000, 500);
    assert.deepEqual(timerHeadersOf(peer.got, "INVITE", 1), [
      "2 90;refresher=uac min-se=none",
      "3 300;refresher=uac min-se=300",
    ]);
    assert.equal(call.sessionExpires, 300);
    assert.equal(call.state, "confirmed");
    assert.deepEqual(seen, ["answered", "refreshed INVITE"]);
    assert.deepEqual(media.log, [
      "offer 1",
      "apply bob/1",
      "offer 2",
      "rollback",
      "offer 3",
      "apply bob/2",
    ]);
    // The next refresh is half of 300 s later, with the Min-SE learned.
    await bed.advance(100_000, 1000);
    assert.equal(peer.got.filter((r) => r.method === "INVITE").length, 3);
    await bed.advance(51_000, 1000);
    assert.deepEqual(timerHeadersOf(peer.got, "INVITE", 3), ["4 300;refresher=uac min-se=300"]);
    // A re-INVITE of ours (a codec change, a hold) that meets a larger minimum.
    peer.minSe = 600;
    assert.equal(await bed.run(call.reinvite()), true);
    assert.deepEqual(timerHeadersOf(peer.got, "INVITE", 4), [
      "5 300;refresher=uac min-se=300",
      "6 600;refresher=uac min-se=600",
    ]);
    assert.equal(call.sessionExpires, 600);
    // Every 2xx was ACKed with its CSeq (the 422s by the transaction layer).
    assert.deepEqual(peer.got.filter((r) => r.method === "ACK").map((r) => r.cseq.seq), [
      1,
      2,
      3,
      4,
      5,
      6,
    ]);
    assert.equal(call.state, "confirmed");
  });
});

Deno.test("422 on a session refresh by UPDATE: the UPDATE goes again with the peer's Min-SE", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const media = new FakeMedia("alice");
    const peer = strictTimerPeer(bed, true);
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media, sessionExpires: 90 });
    const seen = events(call);
    assert.equal(await bed.run(call.answered), true);
    peer.minSe = 120;
    await bed.advance(46_000, 500);
    assert.deepEqual(timerHeadersOf(peer.got, "UPDATE"), [
      "2 90;refresher=uac min-se=none",
      "3 120;refresher=uac min-se=120",
    ]);
    assert.equal(call.sessionExpires, 120);
    assert.deepEqual(seen, ["answered", "refreshed UPDATE"]);
    assert.equal(peer.got.filter((r) => r.method === "INVITE").length, 1, "no re-INVITE needed");
    // A 422 whose Min-SE is no larger than what we asked for is no reason to retry: the
    // refresh fails, the re-INVITE fallback fails too, and the refresher ends the session
    // (RFC 4028 10).
    peer.minSe = 100_000;
    peer.announced = 120;
    await bed.run(call.finished, 1000);
    assert.deepEqual(timerHeadersOf(peer.got, "UPDATE", 2), ["4 120;refresher=uac min-se=120"]);
    assert.deepEqual(timerHeadersOf(peer.got, "INVITE", 1), ["5 120;refresher=uac min-se=120"]);
    assert.equal(call.end?.reason, "timeout");
    assert.ok(peer.got.some((r) => r.method === "BYE"));
  });
});

Deno.test("forks with an empty INVITE: each fork's offer in its reliable 183 is answered in its own PRACK; the answering fork's offer is the one in force", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua(ALICE, { aor: "alice@example.test" });
    const media = new FakeMedia("alice");
    const proxy = bed.net.transport({ host: BOB });
    bed.raws.push(proxy);
    const got: SipRequest[] = [];
    const to = { host: ALICE, port: 5060 };
    proxy.onMessage((m) => {
      const req = parseMessage(m.data) as SipRequest;
      got.push(req);
      if (req.method === "PRACK" || req.method === "BYE") {
        proxy.send(formatMessage(createResponse(req, 200)), to);
      }
    });
    const call = await placeCall(alice, "sip:bob@192.0.2.2", { media, earlyOffer: false });
    await bed.net.settled();
    const invite = got[0];
    assert.equal(invite.body.length, 0);
    const reply = (status: number, tag: string, headers: [string, string][], body?: string) =>
      proxy.send(
        formatMessage(
          createResponse(invite, status, {
            toTag: tag,
            headers: [["Contact", `<sip:${tag}@192.0.2.2>`], ...headers],
            body,
            contentType: body ? "application/sdp" : undefined,
          }),
        ),
        to,
      );
    await reply(183, "fork1", [["Require", "100rel"], ["RSeq", "10"]], sdp("fork1", 1));
    await bed.net.settled();
    await reply(183, "fork2", [["Require", "100rel"], ["RSeq", "20"]], sdp("fork2", 1));
    await bed.net.settled();
    const pracks = got.filter((r) => r.method === "PRACK");
    assert.deepEqual(
      pracks.map((r) => `${r.to.params.tag} ${r.headers.get("RAck")} ${origin(r.text)}`),
      ["fork1 10 1 INVITE alice/1", "fork2 20 1 INVITE alice/2"],
    );
    // Fork 1 answers: its offer (answered in the first PRACK) is in force again.
    await reply(200, "fork1", []);
    assert.equal(await bed.run(call.answered), true);
    assert.deepEqual(media.log, [
      "answer 1 to fork1/1",
      "answer 2 to fork2/1",
      "answer 3 to fork1/1",
    ]);
    assert.equal(origin(call.remoteSdp!), "fork1/1");
    const ack = got.find((r) => r.method === "ACK")!;
    assert.equal(ack.to.params.tag, "fork1");
    assert.equal(ack.body.length, 0, "the offer/answer was done in the PRACK");
  });
});

Deno.test("mid-call mobility: a re-INVITE the peer never answers ends the call cleanly (timer B, then BYE)", async () => {
  await withBed(async (bed) => {
    const { p, call } = await confirmedCall(bed);
    // Bob goes silent: nothing he sends arrives any more.
    bed.drops.push((packet) => packet.from.host === BOB);
    const result = await bed.run(
      moveUserAgent(p.alice, "192.0.2.9", [
        callsMover(p.alice, () => [call], { endRefused: true }),
      ]),
    );
    assert.equal(result.failed[0]?.name, "calls");
    assert.match(result.failed[0]?.reason ?? "", /did not accept.*call ended/);
    const ended = await bed.run(call.finished);
    assert.equal(call.state, "terminated");
    assert.ok(["local_bye", "timeout"].includes(ended.reason), ended.reason);
    // The first INVITE, then the re-INVITE and its retransmissions (timer A) until timer B.
    assert.ok(count(bed, "INVITE") >= 3, `INVITEs sent: ${count(bed, "INVITE")}`);
  });
});
