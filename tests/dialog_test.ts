import assert from "node:assert/strict";
import {
  Dialog,
  dialogIdOfRequest,
  dialogIdOfResponse,
  dialogKey,
  DialogRegistry,
} from "../lib/sip/dialog.ts";
import {
  createResponse,
  formatMessage,
  formatUri,
  parseMessage,
  type SipRequest,
  type SipResponse,
} from "../lib/sip/message.ts";
import { ManualClock } from "../lib/sip/clock.ts";
import { addTopVia } from "../lib/sip/transaction/build.ts";
import { type Target, TransactionLayer } from "../lib/sip/transaction/mod.ts";
import { TransportLayer } from "../lib/sip/transport_layer.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";

function request(lines: string[]): SipRequest {
  return parseMessage(lines.join("\r\n") + "\r\nContent-Length: 0\r\n\r\n") as SipRequest;
}
function response(lines: string[]): SipResponse {
  return parseMessage(lines.join("\r\n") + "\r\nContent-Length: 0\r\n\r\n") as SipResponse;
}

/** Alice's INVITE to Bob, as it left Alice. */
function invite(uri = "sip:bob@example.test"): SipRequest {
  return request([
    `INVITE ${uri} SIP/2.0`,
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.test>;tag=atag',
    "To: Bob <sip:bob@example.test>",
    "Call-ID: dlg-1@192.0.2.1",
    "CSeq: 314 INVITE",
    "Contact: <sip:alice@192.0.2.1:5060>",
  ]);
}

/** Bob's answer as Alice receives it, through proxies p1 (nearest Alice) and p2. */
function answer(status: number, reason: string, extra: string[] = []): SipResponse {
  return response([
    `SIP/2.0 ${status} ${reason}`,
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa",
    "Record-Route: <sip:p2.example.test;lr>",
    "Record-Route: <sip:p1.example.test;lr>",
    'From: "Alice" <sip:alice@example.test>;tag=atag',
    "To: Bob <sip:bob@example.test>;tag=btag",
    "Call-ID: dlg-1@192.0.2.1",
    "CSeq: 314 INVITE",
    "Contact: <sip:bob@192.0.2.4:5062;transport=udp>",
    ...extra,
  ]);
}

/** The INVITE as Bob receives it, through p1 then p2. */
function inviteAtBob(): SipRequest {
  return request([
    "INVITE sip:bob@192.0.2.4:5062 SIP/2.0",
    "Via: SIP/2.0/UDP p2.example.test;branch=z9hG4bKp2",
    "Via: SIP/2.0/UDP p1.example.test;branch=z9hG4bKp1",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa",
    "Max-Forwards: 68",
    "Record-Route: <sip:p2.example.test;lr>",
    "Record-Route: <sip:p1.example.test;lr>",
    'From: "Alice" <sip:alice@example.test>;tag=atag',
    "To: Bob <sip:bob@example.test>",
    "Call-ID: dlg-1@192.0.2.1",
    "CSeq: 314 INVITE",
    "Contact: <sip:alice@192.0.2.1:5060>",
  ]);
}

function bobAnswer(req: SipRequest, status: number): SipResponse {
  return createResponse(req, status, {
    toTag: "btag",
    headers: { Contact: "<sip:bob@192.0.2.4:5062>" },
  });
}

const hosts = (req: SipRequest) => req.route.map((r) => r.uri.host);

// ------------------------------------------------------------------ UAC

Deno.test("Dialog.createUac() from a 1xx with a To tag makes an early dialog (12.1.2)", () => {
  const req = invite();
  const d = Dialog.createUac(req, answer(180, "Ringing"));
  assert.equal(d.state, "early");
  assert.deepEqual(d.id, { callId: "dlg-1@192.0.2.1", localTag: "atag", remoteTag: "btag" });
  assert.equal(d.key, dialogKey(d.id));
  assert.equal(d.localSeq, 314);
  assert.equal(d.remoteSeq, undefined);
  assert.deepEqual(d.routeSet.map((r) => r.uri.host), ["p1.example.test", "p2.example.test"]);
  assert.equal(formatUri(d.remoteTarget), "sip:bob@192.0.2.4:5062;transport=udp");
  assert.equal(d.local.displayName, "Alice");
  assert.equal(formatUri(d.local.uri), "sip:alice@example.test");
  assert.equal(d.local.params.tag, undefined);
  assert.equal(formatUri(d.remote.uri), "sip:bob@example.test");
  assert.equal(d.remote.params.tag, undefined);
  assert.equal(formatUri(d.localContact!.uri), "sip:alice@192.0.2.1:5060");
  assert.equal(d.secure, false);
  assert.equal(d.inviteSeq, 314);
});

Deno.test("Dialog.createUac() from a 2xx makes a confirmed dialog; a sips Request-URI makes it secure", () => {
  const d = Dialog.createUac(invite("sips:bob@example.test"), answer(200, "OK"));
  assert.equal(d.state, "confirmed");
  assert.equal(d.secure, true);
  assert.throws(() => Dialog.createUac(invite(), answer(486, "Busy Here")), RangeError);
  assert.throws(() => Dialog.createUac(invite(), answer(100, "Trying")), RangeError);
  const untagged = answer(180, "Ringing");
  untagged.headers.set("To", "Bob <sip:bob@example.test>");
  assert.throws(() => Dialog.createUac(invite(), untagged), TypeError, "1xx without tag");
  const old = answer(200, "OK");
  old.headers.set("To", "Bob <sip:bob@example.test>");
  assert.equal(Dialog.createUac(invite(), old).id.remoteTag, "", "RFC 2543 2xx without tag");
});

Deno.test("Dialog.createUac() with no Record-Route has an empty route set", () => {
  const res = answer(200, "OK");
  res.headers.delete("Record-Route");
  const d = Dialog.createUac(invite(), res);
  assert.deepEqual(d.routeSet, []);
  const bye = d.createRequest("BYE");
  assert.equal(bye.headers.has("Route"), false);
  assert.equal(formatUri(bye.uri), "sip:bob@192.0.2.4:5062;transport=udp");
});

// ------------------------------------------------------------------ UAS

Deno.test("Dialog.createUas() takes the route set in request order and its own tag and Contact (12.1.1)", () => {
  const req = inviteAtBob();
  const res = bobAnswer(req, 180);
  const d = Dialog.createUas(req, res);
  assert.equal(d.state, "early");
  assert.deepEqual(d.id, { callId: "dlg-1@192.0.2.1", localTag: "btag", remoteTag: "atag" });
  assert.deepEqual(d.routeSet.map((r) => r.uri.host), ["p2.example.test", "p1.example.test"]);
  assert.equal(formatUri(d.remoteTarget), "sip:alice@192.0.2.1:5060");
  assert.equal(d.remoteSeq, 314);
  assert.equal(d.localSeq, undefined);
  assert.equal(formatUri(d.local.uri), "sip:bob@example.test");
  assert.equal(formatUri(d.remote.uri), "sip:alice@example.test");
  assert.equal(formatUri(d.localContact!.uri), "sip:bob@192.0.2.4:5062");
  d.confirm();
  assert.equal(d.state, "confirmed");
});

Deno.test("Dialog.createUas() refuses a response without To tag or a request without Contact", () => {
  const req = inviteAtBob();
  assert.throws(() => Dialog.createUas(req, createResponse(req, 200)), TypeError);
  const noContact = inviteAtBob();
  noContact.headers.delete("Contact");
  assert.throws(() => Dialog.createUas(noContact, bobAnswer(noContact, 200)), TypeError);
});

Deno.test("a UAS's first request picks a CSeq below 2**31 and then counts up", () => {
  const req = inviteAtBob();
  const d = Dialog.createUas(req, bobAnswer(req, 200));
  const first = d.createRequest("INFO").cseq.seq;
  assert.ok(first >= 1 && first < 2 ** 31);
  assert.equal(d.createRequest("BYE").cseq.seq, first + 1);
  assert.equal(d.localSeq, first + 1);
});

// --------------------------------------------------------- in-dialog requests

Deno.test("createRequest() builds an in-dialog request per 12.2.1.1 (loose routing)", () => {
  const d = Dialog.createUac(invite(), answer(200, "OK"));
  const bye = d.createRequest("BYE", { headers: { Reason: "SIP;cause=200" } });
  assert.equal(bye.method, "BYE");
  assert.equal(formatUri(bye.uri), "sip:bob@192.0.2.4:5062;transport=udp");
  assert.deepEqual(hosts(bye), ["p1.example.test", "p2.example.test"]);
  assert.equal(bye.toTag, "btag");
  assert.equal(bye.fromTag, "atag");
  assert.equal(bye.from.displayName, "Alice");
  assert.equal(bye.to.displayName, "Bob");
  assert.equal(bye.callId, "dlg-1@192.0.2.1");
  assert.deepEqual(bye.cseq, { seq: 315, method: "BYE" });
  assert.equal(bye.maxForwards, 70);
  assert.equal(bye.headers.has("Contact"), false, "BYE is no target refresh");
  assert.equal(bye.headers.get("Reason"), "SIP;cause=200");
  assert.equal(d.localSeq, 315);
  assert.equal(formatUri(d.nextHop()), "sip:p1.example.test;lr");
  // with the Via the transaction layer adds, it formats into a message that parses back
  addTopVia(bye);
  const again = parseMessage(formatMessage(bye)) as SipRequest;
  assert.deepEqual(again.cseq, bye.cseq);
  assert.equal(again.toTag, "btag");
});

Deno.test("createRequest() puts Contact, body and Content-Type on a re-INVITE; ACK reuses its CSeq; CANCEL is refused (9.1)", () => {
  const d = Dialog.createUac(invite(), answer(200, "OK"));
  const ack = d.createRequest("ACK");
  assert.deepEqual(ack.cseq, { seq: 314, method: "ACK" });
  assert.equal(ack.headers.has("Contact"), false);
  const reinvite = d.createRequest("INVITE", { body: "v=0\r\n", contentType: "application/sdp" });
  assert.deepEqual(reinvite.cseq, { seq: 315, method: "INVITE" });
  assert.equal(reinvite.headers.get("Contact"), "sip:alice@192.0.2.1:5060");
  assert.equal(reinvite.contentType, "application/sdp");
  assert.equal(reinvite.text, "v=0\r\n");
  assert.deepEqual(d.createRequest("ACK").cseq, { seq: 315, method: "ACK" });
  assert.throws(() => d.createRequest("CANCEL"), TypeError, "CANCEL must copy the INVITE's Via");
  assert.equal(d.localSeq, 315, "ACK does not count");
  assert.deepEqual(d.createRequest("UPDATE", { contact: null }).cseq.seq, 316);
  assert.equal(d.createRequest("INFO", { cseq: 400 }).cseq.seq, 400);
  assert.equal(d.createRequest("INFO").cseq.seq, 401);
});

Deno.test("createRequest() handles a strict router: first route as Request-URI, remote target last (12.2.1.1)", () => {
  const res = answer(200, "OK");
  res.headers.delete("Record-Route");
  res.headers.append("Record-Route", "<sip:p2.example.test;lr>");
  res.headers.append("Record-Route", "<sip:p1.example.test;method=INVITE?Subject=x>");
  const d = Dialog.createUac(invite(), res);
  assert.equal(d.strictRouting, true);
  const bye = d.createRequest("BYE");
  assert.equal(formatUri(bye.uri), "sip:p1.example.test", "method parameter and headers stripped");
  assert.deepEqual(bye.route.map((r) => formatUri(r.uri)), [
    "sip:p2.example.test;lr",
    "sip:bob@192.0.2.4:5062;transport=udp",
  ]);
  assert.equal(formatUri(d.nextHop()), "sip:p1.example.test;method=INVITE?Subject=x");
});

Deno.test("createRequest() refuses a terminated dialog and ACK without INVITE", () => {
  const sub = request([
    "SUBSCRIBE sip:bob@example.test SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs",
    "Max-Forwards: 70",
    "From: <sip:alice@example.test>;tag=atag",
    "To: <sip:bob@example.test>",
    "Call-ID: sub-1",
    "CSeq: 1 SUBSCRIBE",
    "Event: presence",
    "Contact: <sip:alice@192.0.2.1>",
  ]);
  const ok = response([
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs",
    "From: <sip:alice@example.test>;tag=atag",
    "To: <sip:bob@example.test>;tag=btag",
    "Call-ID: sub-1",
    "CSeq: 1 SUBSCRIBE",
    "Contact: <sip:bob@192.0.2.4>",
  ]);
  const d = Dialog.createUac(sub, ok);
  assert.throws(() => d.createRequest("ACK"), TypeError);
  assert.equal(d.createRequest("SUBSCRIBE").headers.get("Contact"), "sip:alice@192.0.2.1");
  d.terminate();
  assert.equal(d.state, "terminated");
  assert.throws(() => d.createRequest("SUBSCRIBE"), TypeError);
});

// ------------------------------------------------------------ inbound requests

function inDialog(method: string, seq: number, contact?: string): SipRequest {
  return request([
    `${method} sip:alice@192.0.2.1:5060 SIP/2.0`,
    "Via: SIP/2.0/UDP 192.0.2.4:5062;branch=z9hG4bKb" + seq,
    "Max-Forwards: 70",
    "From: Bob <sip:bob@example.test>;tag=btag",
    'To: "Alice" <sip:alice@example.test>;tag=atag',
    "Call-ID: dlg-1@192.0.2.1",
    `CSeq: ${seq} ${method}`,
    ...(contact ? [`Contact: ${contact}`] : []),
  ]);
}

Deno.test("receiveRequest() sets an empty remote CSeq, then refuses lower or equal numbers (12.2.2)", () => {
  const d = Dialog.createUac(invite(), answer(200, "OK"));
  assert.equal(d.remoteSeq, undefined);
  assert.equal(d.receiveRequest(inDialog("INFO", 10)), true);
  assert.equal(d.remoteSeq, 10);
  assert.equal(d.receiveRequest(inDialog("INFO", 9)), false, "lower: answer 500");
  assert.equal(d.receiveRequest(inDialog("INFO", 10)), false, "equal on a new request: 500");
  assert.equal(d.remoteSeq, 10);
  assert.equal(d.receiveRequest(inDialog("BYE", 11)), true);
  assert.equal(d.remoteSeq, 11);
  assert.equal(d.receiveRequest(inDialog("ACK", 5)), true, "ACK carries the INVITE's number");
  assert.equal(d.remoteSeq, 11);
});

Deno.test("receiveRequest() takes the Contact of a target refresh request as remote target", () => {
  const d = Dialog.createUac(invite(), answer(200, "OK"));
  d.receiveRequest(inDialog("INFO", 1, "<sip:bob@198.51.100.7>"));
  assert.equal(
    formatUri(d.remoteTarget),
    "sip:bob@192.0.2.4:5062;transport=udp",
    "INFO refreshes nothing",
  );
  d.receiveRequest(inDialog("INVITE", 2, "<sip:bob@198.51.100.7:5070>"));
  assert.equal(formatUri(d.remoteTarget), "sip:bob@198.51.100.7:5070");
  d.receiveRequest(inDialog("UPDATE", 3, "<sip:bob@198.51.100.8>"));
  assert.equal(formatUri(d.remoteTarget), "sip:bob@198.51.100.8");
  d.receiveRequest(inDialog("NOTIFY", 4, "<sip:bob@198.51.100.9>"));
  assert.equal(formatUri(d.remoteTarget), "sip:bob@198.51.100.9");
  d.receiveRequest(inDialog("INVITE", 5));
  assert.equal(formatUri(d.remoteTarget), "sip:bob@198.51.100.9", "no Contact: unchanged");
});

// ------------------------------------------------------------ responses

Deno.test("receiveResponse() confirms an early dialog on 2xx and recomputes its route set (13.2.2.4)", () => {
  const req = invite();
  const ringing = answer(180, "Ringing");
  ringing.headers.delete("Record-Route");
  ringing.headers.delete("Contact");
  const d = Dialog.createUac(req, ringing);
  assert.equal(d.routeSet.length, 0);
  assert.equal(formatUri(d.remoteTarget), "sip:bob@example.test", "no Contact yet: Request-URI");
  d.receiveResponse(answer(200, "OK"));
  assert.equal(d.state, "confirmed");
  assert.deepEqual(d.routeSet.map((r) => r.uri.host), ["p1.example.test", "p2.example.test"]);
  assert.equal(formatUri(d.remoteTarget), "sip:bob@192.0.2.4:5062;transport=udp");
});

Deno.test("receiveResponse() ends an early dialog on a non-2xx final, any dialog on 481 or 408", () => {
  const early = Dialog.createUac(invite(), answer(183, "Session Progress"));
  early.receiveResponse(answer(486, "Busy Here"));
  assert.equal(early.state, "terminated");

  const d = Dialog.createUac(invite(), answer(200, "OK"));
  const bye = d.createRequest("INFO");
  d.receiveResponse(createResponse(bye, 415));
  assert.equal(d.state, "confirmed", "a failed INFO keeps the dialog");
  d.receiveResponse(createResponse(d.createRequest("INFO"), 481));
  assert.equal(d.state, "terminated");

  const d2 = Dialog.createUac(invite(), answer(200, "OK"));
  d2.receiveResponse(createResponse(d2.createRequest("INFO"), 408));
  assert.equal(d2.state, "terminated");
});

Deno.test("receiveResponse() takes the Contact of a 2xx to a target refresh request (12.2.1.2)", () => {
  const d = Dialog.createUac(invite(), answer(200, "OK"));
  const reinvite = d.createRequest("INVITE");
  const ok = createResponse(reinvite, 200, { headers: { Contact: "<sip:bob@203.0.113.5>" } });
  d.receiveResponse(ok);
  assert.equal(formatUri(d.remoteTarget), "sip:bob@203.0.113.5");
  const info = d.createRequest("INFO");
  d.receiveResponse(createResponse(info, 200, { headers: { Contact: "<sip:bob@203.0.113.6>" } }));
  assert.equal(formatUri(d.remoteTarget), "sip:bob@203.0.113.5", "INFO is no target refresh");
  const reinvite2 = d.createRequest("INVITE");
  d.receiveResponse(
    createResponse(reinvite2, 488, { headers: { Contact: "<sip:bob@203.0.113.7>" } }),
  );
  assert.equal(formatUri(d.remoteTarget), "sip:bob@203.0.113.5", "only 2xx refreshes");
  assert.equal(d.state, "confirmed", "a failed re-INVITE keeps a confirmed dialog");
});

// ------------------------------------------------------------ subscriptions

Deno.test("Dialog.createFromNotify() makes the subscriber's dialog from a NOTIFY (RFC 6665)", () => {
  const subscribe = request([
    "SUBSCRIBE sip:bob@example.test SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKs",
    "Max-Forwards: 70",
    "From: <sip:alice@example.test>;tag=atag",
    "To: <sip:bob@example.test>",
    "Call-ID: sub-2",
    "CSeq: 7 SUBSCRIBE",
    "Event: presence",
    "Contact: <sip:alice@192.0.2.1>",
  ]);
  const notify = request([
    "NOTIFY sip:alice@192.0.2.1 SIP/2.0",
    "Via: SIP/2.0/UDP p1.example.test;branch=z9hG4bKn1",
    "Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKn",
    "Max-Forwards: 69",
    "Record-Route: <sip:p2.example.test;lr>",
    "Record-Route: <sip:p1.example.test;lr>",
    "From: <sip:bob@example.test>;tag=btag",
    "To: <sip:alice@example.test>;tag=atag",
    "Call-ID: sub-2",
    "CSeq: 1 NOTIFY",
    "Event: presence",
    "Subscription-State: active;expires=3600",
    "Contact: <sip:bob@192.0.2.4>",
  ]);
  const d = Dialog.createFromNotify(subscribe, notify);
  assert.equal(d.state, "confirmed");
  assert.deepEqual(d.id, { callId: "sub-2", localTag: "atag", remoteTag: "btag" });
  assert.deepEqual(d.routeSet.map((r) => r.uri.host), ["p2.example.test", "p1.example.test"]);
  assert.equal(formatUri(d.remoteTarget), "sip:bob@192.0.2.4");
  assert.equal(d.localSeq, 7);
  assert.equal(d.remoteSeq, 1);
  const refresh = d.createRequest("SUBSCRIBE", { headers: { Event: "presence", Expires: "0" } });
  assert.deepEqual(refresh.cseq, { seq: 8, method: "SUBSCRIBE" });
  assert.equal(refresh.toTag, "btag");
  assert.deepEqual(hosts(refresh), ["p2.example.test", "p1.example.test"]);
  assert.equal(d.receiveRequest(notify), false, "the same NOTIFY again is out of order");
});

// ------------------------------------------------------------ both ends and registry

Deno.test("UAC and UAS dialogs of one exchange mirror each other and the registry matches requests", () => {
  const atAlice = invite();
  const atBob = inviteAtBob();
  const ok = bobAnswer(atBob, 200);
  const bob = Dialog.createUas(atBob, ok);
  const alice = Dialog.createUac(atAlice, answer(200, "OK"));
  assert.equal(alice.id.localTag, bob.id.remoteTag);
  assert.equal(alice.id.remoteTag, bob.id.localTag);

  const bobDialogs = new DialogRegistry();
  bobDialogs.add(bob);
  const bye = alice.createRequest("BYE");
  assert.deepEqual(dialogIdOfRequest(bye), bob.id);
  assert.equal(bobDialogs.matchRequest(bye), bob);
  assert.equal(bob.receiveRequest(bye), true);

  const stranger = alice.createRequest("BYE");
  stranger.headers.set("To", "<sip:bob@example.test>;tag=unknown");
  assert.equal(bobDialogs.matchRequest(stranger), undefined, "no dialog: the UA answers 481");
  assert.equal(dialogIdOfRequest(atBob), undefined, "no To tag: not in a dialog");

  const aliceDialogs = new DialogRegistry();
  aliceDialogs.add(alice);
  const byeOk = createResponse(bye, 200);
  assert.deepEqual(dialogIdOfResponse(byeOk), alice.id);
  assert.equal(aliceDialogs.matchResponse(byeOk), alice);
  assert.equal(aliceDialogs.size, 1);

  alice.terminate();
  assert.equal(aliceDialogs.matchResponse(byeOk), undefined, "terminated dialogs do not match");
  assert.equal(aliceDialogs.size, 0);
});

Deno.test("DialogRegistry keeps the forks of one INVITE apart", () => {
  const req = invite();
  const a = Dialog.createUac(req, answer(180, "Ringing"));
  const other = answer(180, "Ringing");
  other.headers.set("To", "Bob <sip:bob@example.test>;tag=ctag");
  const b = Dialog.createUac(req, other);
  const reg = new DialogRegistry();
  reg.add(a);
  reg.add(b);
  assert.equal(reg.size, 2);
  assert.deepEqual(reg.forks("dlg-1@192.0.2.1", "atag").map((d) => d.id.remoteTag).sort(), [
    "btag",
    "ctag",
  ]);
  assert.equal(reg.matchResponse(other), b);
  assert.equal(reg.get(a.id), a);
  assert.equal(reg.delete(a), true);
  assert.equal(reg.get(a.id), undefined);
  assert.deepEqual(reg.values(), [b]);
});

Deno.test("a call over two stacks: dialogs from INVITE/200, 2xx ACK and BYE matched at the callee", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const aliceSocket = net.transport({ host: "192.0.2.1" });
  const bobSocket = net.transport({ host: "192.0.2.2" });
  const alice = new TransactionLayer({
    transport: new TransportLayer({ transports: [aliceSocket] }),
    clock,
  });
  const bob = new TransactionLayer({
    transport: new TransportLayer({ transports: [bobSocket] }),
    clock,
  });
  const bobDialogs = new DialogRegistry();
  const bobLog: string[] = [];
  bob.onRequest = (req, tx) => {
    const dialog = bobDialogs.matchRequest(req);
    bobLog.push(`${req.method}:${dialog ? "dialog" : "none"}`);
    if (req.method === "INVITE" && !dialog) {
      const ok = bobAnswer(req, 200);
      bobDialogs.add(Dialog.createUas(req, ok));
      tx!.respond(ok);
    } else if (dialog && req.method !== "ACK") {
      tx!.respond(createResponse(req, dialog.receiveRequest(req) ? 200 : 500));
      if (req.method === "BYE") dialog.terminate();
    }
  };
  const req = invite("sip:bob@192.0.2.2");
  const toBob: Target = { protocol: "udp", host: "192.0.2.2", port: 5060 };
  const tx = alice.request(req, toBob);
  await net.settled();
  const ok = await tx.response;
  assert.equal(ok.status, 200);
  const dialog = Dialog.createUac(req, ok);
  await alice.sendAck(dialog.createRequest("ACK"), toBob);
  await net.settled();
  const bye = alice.request(dialog.createRequest("BYE"), toBob);
  await net.settled();
  assert.equal((await bye.response).status, 200);
  assert.deepEqual(bobLog, ["INVITE:none", "ACK:dialog", "BYE:dialog"]);
  assert.equal(bobDialogs.size, 0, "BYE ended the callee's dialog");
  alice.close();
  bob.close();
  await aliceSocket.close();
  await bobSocket.close();
});
