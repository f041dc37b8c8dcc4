// The UA core and transaction fixes the INVITE usage relies on: CANCEL and
// 487 with the tag of the 1xx (9.2), the 64*T1 limit after CANCEL (9.1), an
// INVITE nobody answers, 2xx retransmissions and forks passed up for ACK
// (13.2.2.4) also after timer M, a re-INVITE retried after 401 (its ACK's
// CSeq), a rejected re-INVITE that leaves the remote target alone.

import assert from "node:assert/strict";
import { DigestServer } from "../lib/sip/digest.ts";
import { Dialog } from "../lib/sip/dialog.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import {
  createResponse,
  formatMessage,
  parseMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import { TransactionLayer } from "../lib/sip/transaction/mod.ts";
import { ManualClock } from "../lib/sip/clock.ts";
import { type Bed, packetMessage, withBed } from "./_sip_bed.ts";

function toTags(bed: Bed, pattern: RegExp): string[] {
  return bed.net.packets.filter((p) => pattern.test(new TextDecoder().decode(p.data)))
    .map((p) => (packetMessage(p) as SipResponse).to.params.tag ?? "");
}

Deno.test("a CANCELled INVITE: the 200 to the CANCEL and the 487 carry the 180's To tag (9.2)", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1");
    const bob = await bed.ua("192.0.2.2");
    let cancelled = 0;
    bob.handle("INVITE", (i) => {
      i.transaction!.user.onCancel = () => cancelled++;
      return i.respond(180);
    });
    const abort = new AbortController();
    const ringing: SipResponse[] = [];
    const sent = alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2"), {
      signal: abort.signal,
      onProvisional: (res) => {
        ringing.push(res);
        abort.abort();
      },
    });
    const { response } = await bed.run(sent);
    assert.equal(response.status, 487);
    assert.equal(cancelled, 1);
    const tag = ringing[0].to.params.tag;
    assert.ok(tag);
    assert.equal(response.to.params.tag, tag);
    assert.deepEqual(toTags(bed, /^SIP\/2.0 200 OK[^]*CSeq: 1 CANCEL/), [tag]);
  });
});

Deno.test("a CANCEL before any 1xx waits for one; the INVITE's 487 then ends the request", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { timers: { trying: 10_000 } });
    const bob = await bed.ua("192.0.2.2", { timers: { trying: 1_000 } });
    bob.handle("INVITE", () => {}); // no answer: the transaction sends 100 after 1 s
    const abort = new AbortController();
    abort.abort();
    await assert.rejects(
      alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2"), { signal: abort.signal }),
      (e) => e instanceof SipRequestError && e.status === 487 && e.local,
    );
    const abort2 = new AbortController();
    const sent = alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2"), {
      signal: abort2.signal,
    });
    await bed.net.settled();
    abort2.abort();
    await bed.net.settled();
    assert.ok(!bed.sent("192.0.2.1").some((s) => s.startsWith("CANCEL")), "no CANCEL before a 1xx");
    const { response } = await bed.run(sent);
    assert.equal(response.status, 487);
    assert.ok(bed.sent("192.0.2.1").some((s) => s.startsWith("CANCEL")));
  });
});

Deno.test("no final response 64*T1 after CANCEL: the INVITE transaction ends with a 408 (9.1)", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1");
    const bob = await bed.ua("192.0.2.2");
    bob.handle("INVITE", (i) => i.respond(180));
    bed.drops.push((_p, text) => text.startsWith("SIP/2.0 487"));
    const abort = new AbortController();
    const sent = alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2"), {
      signal: abort.signal,
      onProvisional: () => abort.abort(),
    });
    const started = bed.clock.now();
    await assert.rejects(
      bed.run(sent),
      (e) => e instanceof SipRequestError && e.status === 408 && e.local,
    );
    const took = bed.clock.now() - started;
    assert.ok(took >= 32_000 && took <= 33_000, `ended after ${took} ms`);
    assert.equal(alice.transactions.clientCount, 0);
  });
});

Deno.test("an INVITE whose handler never answers gets 500 after the answer limit, 487 at its Expires", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1");
    const bob = await bed.ua("192.0.2.2", { timers: { answer: 60_000 } });
    const expired: number[] = [];
    bob.handle("INVITE", (i) => {
      i.transaction!.user.onExpired = (status) => expired.push(status);
    });
    let started = bed.clock.now();
    const first = await bed.run(alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2")));
    assert.equal(first.response.status, 500);
    assert.ok(first.response.to.params.tag, "a final response has a To tag (8.2.6.2)");
    assert.equal(bed.clock.now() - started, 60_000);
    started = bed.clock.now();
    const req = alice.createRequest("INVITE", "sip:bob@192.0.2.2", {
      headers: [["Expires", "10"]],
    });
    const second = await bed.run(alice.send(req));
    assert.equal(second.response.status, 487);
    assert.equal(bed.clock.now() - started, 10_000);
    assert.deepEqual(expired, [500, 487]);
    await bed.advance(40_000);
    assert.equal(bob.transactions.serverCount, 0, "the server transactions are gone");
  });
});

Deno.test("send() passes every 2xx up for ACK (retransmissions, forks) and a response leg gets them after timer M", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1");
    const raw = bed.net.transport({ host: "192.0.2.2" });
    bed.raws.push(raw);
    let invite: SipRequest | undefined;
    raw.onMessage((m) => {
      const msg = parseMessage(m.data);
      if (msg.kind === "request" && msg.method === "INVITE") invite = msg;
    });
    const finals: string[] = [];
    const req = alice.createRequest("INVITE", "sip:bob@192.0.2.2");
    const txs: string[] = [];
    const sent = alice.send(req, {
      onFinal: (res) => finals.push(res.to.params.tag ?? ""),
      onTransaction: (tx, request) => txs.push(`${tx.state} ${request.method}`),
    });
    await bed.net.settled();
    assert.ok(invite);
    assert.deepEqual(txs, ["calling INVITE"], "the client transaction is exposed");
    const ok = (tag: string) =>
      formatMessage(
        createResponse(invite!, 200, {
          toTag: tag,
          headers: [["Contact", "<sip:bob@192.0.2.2>"]],
        }),
      );
    await raw.send(ok("b1"), { host: "192.0.2.1", port: 5060 });
    const { response } = await bed.run(sent);
    assert.equal(response.to.params.tag, "b1");
    await raw.send(ok("b1"), { host: "192.0.2.1", port: 5060 });
    await raw.send(ok("b2"), { host: "192.0.2.1", port: 5060 });
    await bed.net.settled();
    assert.deepEqual(finals, ["b1", "b1", "b2"]);
    // After timer M (64*T1) no transaction matches: the response leg gets it.
    await bed.advance(33_000);
    assert.equal(alice.transactions.clientCount, 0);
    const late: string[] = [];
    alice.addResponseLeg(req.callId, req.from.params.tag!, (res) => late.push(res.to.params.tag!));
    await raw.send(ok("b3"), { host: "192.0.2.1", port: 5060 });
    await bed.net.settled();
    assert.deepEqual(late, ["b3"]);
    alice.removeResponseLeg(req.callId, req.from.params.tag!);
    await raw.send(ok("b3"), { host: "192.0.2.1", port: 5060 });
    await bed.net.settled();
    assert.deepEqual(late, ["b3"]);
  });
});

Deno.test("a re-INVITE retried after 401 raises the dialog's INVITE sequence: its ACK uses the new CSeq", async () => {
  await withBed(async (bed) => {
    const alice = await bed.ua("192.0.2.1", { password: () => Promise.resolve("pw") });
    const bob = await bed.ua("192.0.2.2");
    const server = new DigestServer({ realm: "example.test", clock: bed.clock });
    bob.handle("INVITE", (i) => i.respond(200, { contact: true }));
    const first = await bed.run(alice.send(alice.createRequest("INVITE", "sip:bob@192.0.2.2")));
    const dialog = Dialog.createUac(first.request, first.response);
    const reinvites: number[] = [];
    bob.addDialog(
      { callId: dialog.id.callId, localTag: dialog.id.remoteTag, remoteTag: dialog.id.localTag },
      (i) => {
        if (i.request.method !== "INVITE") return;
        reinvites.push(i.request.cseq.seq);
        const v = server.verifyRequest(i.request, () => ({ password: "pw" }));
        if (v.ok) return i.respond(200, { contact: true });
        return i.respond(401, { headers: server.challengeFields({ stale: v.stale }) });
      },
    );
    const reinvite = dialog.createRequest("INVITE");
    assert.equal(reinvite.cseq.seq, 2);
    const { response, request } = await bed.run(alice.send(reinvite, { dialog }));
    assert.equal(response.status, 200);
    assert.deepEqual(reinvites, [2, 3]);
    assert.equal(request.cseq.seq, 3);
    assert.equal(dialog.inviteSeq, 3);
    assert.equal(dialog.createRequest("ACK").cseq.seq, 3);
    assert.equal(dialog.createRequest("BYE").cseq.seq, 4);
  });
});

Deno.test("the transaction layer's 500 after a TU crash keeps the To tag of the 1xx sent", () => {
  const clock = new ManualClock();
  const sent: SipResponse[] = [];
  let deliver: (req: SipRequest) => void = () => {};
  const layer = new TransactionLayer({
    clock,
    transport: {
      sendRequest: (_r, t) => Promise.resolve(t),
      sendResponse: (res) => (sent.push(res), Promise.resolve()),
      onRequest: (
        h,
      ) => (deliver = (req) =>
        h(
          req,
          {
            protocol: "udp",
            remote: { host: "192.0.2.9", port: 5060 },
            local: { host: "192.0.2.2", port: 5060 },
          } as never,
        )),
      onResponse: () => {},
    },
  });
  layer.onRequest = (req, tx) => {
    tx!.respond(createResponse(req, 180, { toTag: "t180" }));
    throw new Error("boom");
  };
  deliver(
    parseMessage(
      "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-x\r\n" +
        "From: <sip:a@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\nCall-ID: crash\r\n" +
        "CSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.9>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ) as SipRequest,
  );
  assert.deepEqual(sent.map((r) => `${r.status} ${r.to.params.tag}`), ["180 t180", "500 t180"]);
  layer.close();
});

Deno.test("Dialog.refreshRejected() puts back the remote target of a rejected re-INVITE", () => {
  const invite = parseMessage(
    "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
      "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
      "Call-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n" +
      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
  ) as SipRequest;
  const dialog = Dialog.createUas(invite, createResponse(invite, 200, { toTag: "b" }));
  const reinvite = parseMessage(
    "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK2\r\n" +
      "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>;tag=b\r\n" +
      "Call-ID: c\r\nCSeq: 2 INVITE\r\nContact: <sip:alice@192.0.2.7>\r\n" +
      "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
  ) as SipRequest;
  assert.equal(dialog.receiveRequest(reinvite), true);
  assert.equal(dialog.remoteTarget.host, "192.0.2.7");
  dialog.refreshRejected(reinvite);
  assert.equal(dialog.remoteTarget.host, "192.0.2.1");
  assert.equal(dialog.remoteSeq, 2, "the CSeq stays counted");
});
