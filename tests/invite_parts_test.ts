// The parts of an INVITE session in their own modules, on the manual clock:
// SessionTimerState (RFC 4028) and ReliableProvisionals (RFC 3262).

import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { parseMessage, type SipRequest, type SipResponse } from "../lib/sip/message.ts";
import {
  MIN_SESSION_INTERVAL,
  parseSessionExpires,
  SessionTimerState,
} from "../lib/sip/invite/session_timer.ts";
import { ReliableProvisionals } from "../lib/sip/invite/reliable.ts";

function message(start: string, headers: string[]): string {
  return [
    start,
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1",
    "From: <sip:a@192.0.2.1>;tag=a",
    "To: <sip:b@192.0.2.2>",
    "Call-ID: c1",
    ...headers,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

const request = (method: string, headers: string[]) =>
  parseMessage(
    message(`${method} sip:b@192.0.2.2 SIP/2.0`, [`CSeq: 1 ${method}`, ...headers]),
  ) as SipRequest;
const response = (status: number, headers: string[]) =>
  parseMessage(message(`SIP/2.0 ${status} X`, ["CSeq: 1 INVITE", ...headers])) as SipResponse;

function timers(clock: ManualClock) {
  const seen: string[] = [];
  const state = new SessionTimerState({
    after: (ms, fn) => clock.setTimeout(fn, ms) as unknown as number,
    cancel: (id) => id !== undefined && clock.clearTimeout(id as never),
    ended: () => false,
    refresh: () => seen.push(`refresh at ${clock.now()}`),
    expired: () => seen.push(`expired at ${clock.now()}`),
    log: () => {},
  });
  return { state, seen };
}

Deno.test("SessionTimerState: refresher and deadline, headers both ways, 422 and Min-SE", () => {
  const clock = new ManualClock(0);
  const { state, seen } = timers(clock);
  // A request asking for 120 s, refresher unnamed, the UAC supports timers: the UAC (peer) refreshes.
  const headers = state.fromRequest(
    request("INVITE", ["Session-Expires: 120", "Supported: timer"]),
  );
  assert.deepEqual(headers, [["Session-Expires", "120;refresher=uac"], ["Require", "timer"]]);
  assert.deepEqual(state.current, { interval: 120, refresher: "remote" });
  // The peer refreshes: we give up at 120 - min(32, 40) = 88 s.
  clock.advance(87_999);
  assert.deepEqual(seen, []);
  clock.advance(1);
  assert.deepEqual(seen, ["expired at 88000"]);
  assert.equal(state.scheduled, false);
  // A 2xx to our request naming us: we refresh at half the interval.
  state.fromResponse(response(200, ["Session-Expires: 90;refresher=uac"]));
  assert.deepEqual(state.headers(), [["Session-Expires", "90;refresher=uac"]]);
  clock.advance(45_000);
  assert.deepEqual(seen.slice(1), ["refresh at 133000"]);
  // Busy: the refresh comes again 2 s later.
  state.retryRefresh(2000);
  clock.advance(2000);
  assert.deepEqual(seen.slice(2), ["refresh at 135000"]);
  assert.equal(state.scheduled, false);
  // A 422 with a larger Min-SE raises the interval, and refreshes repeat the Min-SE.
  assert.equal(state.raiseMinSe(response(422, ["Min-SE: 300"])), true);
  assert.deepEqual(state.headers(), [
    ["Session-Expires", "300;refresher=uac"],
    ["Min-SE", "300"],
  ]);
  assert.equal(state.raiseMinSe(response(422, ["Min-SE: 200"])), false, "not above the interval");
  assert.equal(state.raiseMinSe(response(500, ["Min-SE: 900"])), false, "not a 422");
  // A request below our minimum gets 422 with ours; one without Session-Expires stops timers.
  assert.equal(state.tooSmall(request("UPDATE", ["Session-Expires: 30"])), MIN_SESSION_INTERVAL);
  assert.equal(state.tooSmall(request("UPDATE", ["Session-Expires: 90"])), undefined);
  state.start({ interval: 100, refresher: "local" });
  assert.equal(state.scheduled, true);
  assert.deepEqual(state.fromRequest(request("UPDATE", [])), []);
  assert.equal(state.current, undefined);
  assert.equal(state.scheduled, false);
  clock.advance(200_000);
  assert.equal(seen.length, 3, "nothing fires after stop");
  // A UAC without timer support, no refresher named: we (the UAS) refresh.
  state.fromRequest(request("INVITE", ["Session-Expires: 1800"]));
  assert.deepEqual(state.current, { interval: 1800, refresher: "local" });
  assert.deepEqual(parseSessionExpires("1800;refresher=uas"), { interval: 1800, refresher: "uas" });
  assert.equal(parseSessionExpires("abc"), undefined);
  assert.equal(parseSessionExpires("-5"), undefined);
});

Deno.test("ReliableProvisionals: resent after T1, 2T1, 4T1...; the PRACK with its RAck settles it; 64*T1 without one gives up (5xx)", async () => {
  const clock = new ManualClock(0);
  const resent: number[] = [];
  let gaveUp = 0;
  let open = true;
  const reliable = new ReliableProvisionals({
    after: (ms, fn) => void clock.setTimeout(fn, ms),
    t1: () => 500,
    open: () => open,
    resend: () => resent.push(clock.now()),
    gaveUp: () => gaveUp++,
  });
  const res = response(183, []);
  const rseq = reliable.nextRseq();
  const first = reliable.awaitPrack(res, rseq, true);
  assert.equal(reliable.pending?.hasSdp, true);
  // A second reliable 1xx waits for its turn.
  let second = false;
  const turn = reliable.turn().then(() => (second = true));
  clock.advance(3500);
  assert.deepEqual(resent, [500, 1500, 3500]);
  // Only the right RAck matches.
  assert.equal(reliable.match(`${rseq + 1} 1 INVITE`, 1), undefined);
  assert.equal(reliable.match(`${rseq} 2 INVITE`, 1), undefined);
  assert.equal(reliable.match(`${rseq} 1 UPDATE`, 1), undefined);
  assert.equal(reliable.match("junk", 1), undefined);
  const pending = reliable.match(`${rseq} 1 INVITE`, 1)!;
  assert.equal(pending.rseq, rseq);
  reliable.settled();
  pending.done();
  await first;
  await turn;
  assert.equal(second, true);
  clock.advance(60_000);
  assert.deepEqual(resent, [500, 1500, 3500], "no resend after the PRACK");
  // The next one gets no PRACK: resent until 64*T1, then given up.
  const next = reliable.nextRseq();
  assert.equal(next, rseq + 1);
  const failed = reliable.awaitPrack(res, next, false).then(() => "done", (e) => e.message);
  // Given up at 64*T1 exactly (before, only when the next doubled wait ended, at 127*T1).
  clock.advance(64 * 500 - 1);
  assert.equal(gaveUp, 0);
  clock.advance(1);
  assert.equal(await failed, "No PRACK for a reliable provisional response");
  assert.equal(gaveUp, 1);
  assert.equal(reliable.pending, undefined);
  assert.equal(resent.length, 3 + 6, "resent after T1, 2T1 ... 32T1 of waiting");
  // The call ends: a waiting 1xx learns it, and nothing is resent once closed.
  const third = reliable.awaitPrack(res, reliable.nextRseq(), false).then(
    () => "done",
    (e) => e.message,
  );
  open = false;
  clock.advance(10_000);
  reliable.abort(new Error("The call ended (cancelled)"));
  assert.equal(await third, "The call ended (cancelled)");
  assert.equal(resent.length, 9);
});
