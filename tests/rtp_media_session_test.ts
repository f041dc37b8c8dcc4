import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { BufferSink, ToneSource } from "../lib/rtp/audio.ts";
import { MediaSession, type MediaSessionOptions } from "../lib/rtp/media_session.ts";
import { decodeRtp, looksLikeRtcp } from "../lib/rtp/packet.ts";
import { decodeRtcp } from "../lib/rtp/rtcp.ts";
import { MemoryNetwork } from "../lib/rtp/socket.ts";
import { dominantFrequency } from "../lib/rtp/tone.ts";

interface Pair {
  clock: ManualClock;
  network: MemoryNetwork;
  a: MediaSession;
  b: MediaSession;
  run(ms: number): Promise<void>;
  events(session: MediaSession, type: string): unknown[];
}

async function pair(
  options: Partial<MediaSessionOptions> = {},
  net: { delayMs?: number } = {},
): Promise<Pair> {
  const clock = new ManualClock(1000);
  const network = new MemoryNetwork({ clock, delayMs: net.delayMs });
  const a = await MediaSession.open({ hostname: "10.0.0.1", clock, network, ...options });
  const b = await MediaSession.open({ hostname: "10.0.0.2", clock, network, ...options });
  const seen = new Map<MediaSession, Map<string, unknown[]>>();
  return {
    clock,
    network,
    a,
    b,
    async run(ms: number) {
      for (let t = 0; t < ms; t += 5) {
        clock.advance(5);
        await network.settle();
      }
    },
    events(session, type) {
      let bySession = seen.get(session);
      if (!bySession) seen.set(session, bySession = new Map());
      let list = bySession.get(type);
      if (!list) {
        bySession.set(type, list = []);
        session.addEventListener(type, (e) => list!.push((e as CustomEvent).detail));
      }
      return list;
    },
  };
}

async function connect(p: Pair): Promise<void> {
  await p.a.applyAnswer(await p.b.createAnswer(await p.a.createOffer()));
}

function same(a: { hostname: string; port: number }, b: { hostname: string; port: number }) {
  return a.hostname === b.hostname && a.port === b.port;
}

function rtpSent(network: MemoryNetwork, from: { hostname: string; port: number }) {
  return network.sent
    .filter((d) => same(d.from, from) && !looksLikeRtcp(d.data))
    .map((d) => ({ ...decodeRtp(d.data), to: d.to }));
}

Deno.test("MediaSession: a tone goes each way and is found by frequency at the other end", async () => {
  const p = await pair();
  await connect(p);
  assert.equal(p.a.negotiated?.codec, "PCMU");
  assert.deepEqual(p.a.negotiated?.remote, p.b.localAddress);
  assert.deepEqual(p.b.negotiated?.remote, p.a.localAddress);
  p.a.setSource(new ToneSource(1000));
  p.b.setSource(new ToneSource(600));
  const atB = new BufferSink();
  const atA = new BufferSink();
  p.a.setSink(atA);
  p.b.setSink(atB);
  await p.run(1000);
  assert.equal(dominantFrequency(atB.samples(4000)), 1000);
  assert.equal(dominantFrequency(atA.samples(4000)), 600);
  const sa = p.a.stats();
  assert.ok(sa.packets_sent >= 49 && sa.packets_sent <= 51, `${sa.packets_sent}`);
  assert.equal(sa.lost, 0);
  assert.ok(sa.mos > 4.3, `${sa.mos}`);
  // RTP facts on the wire: one SSRC, sequence +1, timestamp +160, marker only first.
  const sent = rtpSent(p.network, p.a.localAddress);
  assert.ok(sent.length >= 49);
  for (let i = 1; i < sent.length; i++) {
    assert.equal(sent[i].ssrc, p.a.ssrc);
    assert.equal(sent[i].sequenceNumber, (sent[i - 1].sequenceNumber + 1) & 0xffff);
    assert.equal(sent[i].timestamp, (sent[i - 1].timestamp + 160) >>> 0);
    assert.equal(sent[i].marker, false);
    assert.equal(sent[i].payload.length, 160);
  }
  assert.equal(sent[0].marker, true);
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: DTMF both ways, each digit once, with its duration", async () => {
  const p = await pair();
  const atB = p.events(p.b, "dtmf");
  const atA = p.events(p.a, "dtmf");
  await connect(p);
  const sent = p.a.sendDtmf("12#", { durationMs: 100 });
  const back = p.b.sendDtmf("9", { durationMs: 60 });
  await p.run(1500);
  await sent;
  await back;
  assert.deepEqual(atB, [
    { digit: "1", duration_ms: 100 },
    { digit: "2", duration_ms: 100 },
    { digit: "#", duration_ms: 100 },
  ]);
  assert.deepEqual(atA, [{ digit: "9", duration_ms: 60 }]);
  const events = rtpSent(p.network, p.a.localAddress).filter((r) => r.payloadType === 101);
  assert.equal(events.length, 3 * (4 + 3), "4 updates and 3 end packets per 100 ms digit");
  assert.equal(events.filter((e) => e.marker).length, 3);
  await assert.rejects(() => p.a.sendDtmf("1x"), RangeError);
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: no telephone-event, no DTMF; no common codec is SdpNegotiationError", async () => {
  const p = await pair();
  const c = await MediaSession.open({
    hostname: "10.0.0.3",
    clock: p.clock,
    network: p.network,
    codecs: ["PCMA"],
    telephoneEvent: false,
  });
  await p.a.applyAnswer(await c.createAnswer(await p.a.createOffer()));
  assert.equal(p.a.negotiated?.codec, "PCMA");
  await assert.rejects(() => p.a.sendDtmf("1"), /telephone-event/);
  const b = await MediaSession.open({
    hostname: "10.0.0.4",
    clock: p.clock,
    network: p.network,
    codecs: ["PCMU"],
  });
  const cOffer = await c.createOffer();
  await assert.rejects(
    () => b.createAnswer(cOffer),
    (e: Error) => e.name === "SdpNegotiationError",
  );
  await Promise.all([p.a.close(), p.b.close(), b.close(), c.close()]);
});

Deno.test("MediaSession: hold and resume by re-offer; a rejected re-offer rolls back", async () => {
  const p = await pair();
  await connect(p);
  p.a.setSource(new ToneSource(1000));
  p.b.setSource(new ToneSource(600));
  const atA = new BufferSink();
  const atB = new BufferSink();
  p.a.setSink(atA);
  p.b.setSink(atB);
  await p.run(400);
  p.a.hold();
  const offer = await p.a.createOffer();
  assert.match(offer, /a=sendonly/);
  const answer = await p.b.createAnswer(offer);
  assert.match(answer, /a=recvonly/);
  await p.a.applyAnswer(answer);
  assert.equal(p.a.negotiated?.direction, "sendonly");
  assert.equal(p.b.negotiated?.direction, "recvonly");
  const bSentBefore = p.b.stats().packets_sent;
  const aHeard = atA.length;
  await p.run(500);
  assert.equal(p.b.stats().packets_sent, bSentBefore, "the held side does not send");
  assert.equal(atA.length, aHeard, "the holding side plays nothing");
  p.a.resume();
  await p.a.applyAnswer(await p.b.createAnswer(await p.a.createOffer()));
  assert.equal(p.a.negotiated?.direction, "sendrecv");
  await p.run(500);
  assert.ok(p.b.stats().packets_sent > bSentBefore + 20);
  assert.equal(dominantFrequency(atA.samples(2400)), 600);
  // A re-offer that fails leaves the agreement as it was.
  p.a.hold();
  await p.a.createOffer();
  p.a.rollback();
  assert.equal(p.a.negotiated?.direction, "sendrecv");
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: preferCodec() and a re-offer switch both sides to PCMA", async () => {
  const p = await pair();
  const changedA = p.events(p.a, "codec_changed");
  const changedB = p.events(p.b, "codec_changed");
  await connect(p);
  p.a.setSource(new ToneSource(1000));
  const atB = new BufferSink();
  p.b.setSink(atB);
  await p.run(200);
  p.a.preferCodec("pcma");
  assert.deepEqual(p.a.codecs, ["PCMA", "PCMU"]);
  await p.a.applyAnswer(await p.b.createAnswer(await p.a.createOffer()));
  assert.deepEqual(changedA, [{ codec: "PCMA", payload_type: 8, previous: "PCMU" }]);
  assert.deepEqual(changedB, [{ codec: "PCMA", payload_type: 8, previous: "PCMU" }]);
  const before = p.network.sent.length;
  await p.run(600);
  const after = p.network.sent.slice(before).filter((d) => same(d.from, p.a.localAddress));
  assert.ok(after.length > 20);
  assert.ok(after.every((d) => decodeRtp(d.data).payloadType === 8));
  assert.equal(dominantFrequency(atB.samples(2400)), 1000);
  assert.throws(() => p.a.preferCodec("G722"), RangeError);
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: symmetric RTP latches to the address the peer really sends from", async () => {
  const p = await pair();
  const moved = p.events(p.a, "remote_address_changed");
  await connect(p);
  // b sits behind a NAT: its packets arrive from 192.0.2.9:40000.
  const outside = { hostname: "192.0.2.9", port: 40000 };
  p.network.nat(p.b.localAddress, outside);
  await p.run(100);
  assert.deepEqual(moved, [{ ...outside, previous: p.b.localAddress }]);
  assert.deepEqual(p.a.remoteAddress, outside);
  const last = rtpSent(p.network, p.a.localAddress).at(-1)!;
  assert.deepEqual(last.to, outside, "a answers to the NAT's address");
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: RTCP SR/RR give loss, jitter and RTT; close() sends BYE", async () => {
  const p = await pair({ rtcpIntervalMs: 1000 }, { delayMs: 30 });
  const byes = p.events(p.b, "bye");
  const stats = p.events(p.a, "stats");
  await connect(p);
  // Drop every 10th RTP packet from b to a.
  let n = 0;
  p.network.filter = (data, from) =>
    !(same(from, p.b.localAddress) && !looksLikeRtcp(data) && ++n % 10 === 0);
  await p.run(5000);
  const s = p.a.stats();
  assert.ok(s.rtt_ms !== null && Math.abs(s.rtt_ms - 60) < 2, `rtt ${s.rtt_ms}`);
  assert.ok(s.lost >= 20 && s.lost <= 26, `lost ${s.lost}`);
  assert.ok(Math.abs(s.loss_fraction - 0.1) < 0.02, `${s.loss_fraction}`);
  assert.ok(s.mos < 4, `loss lowers the MOS: ${s.mos}`);
  const sb = p.b.stats();
  assert.ok(sb.remote_lost !== null && sb.remote_lost > 10, "b hears of its loss through a's RR");
  assert.ok(sb.remote_loss_fraction! > 0.05);
  assert.equal(sb.lost, 0);
  assert.ok(stats.length >= 3, "a stats event per report");
  // The compound packets start with SR and carry a CNAME.
  const rtcp = p.network.sent.filter((d) =>
    same(d.from, { ...p.a.localAddress, port: p.a.localAddress.port + 1 })
  ).map((d) => decodeRtcp(d.data));
  assert.ok(rtcp.length >= 3);
  assert.equal(rtcp[1][0].type, "sr");
  assert.equal(rtcp[1][1].type, "sdes");
  await p.a.close("done");
  await p.run(100);
  assert.deepEqual(byes, [{ reason: "done" }]);
  await p.b.close();
});

Deno.test("MediaSession: rebind() moves media to a new address; the next offer carries it", async () => {
  const p = await pair();
  await connect(p);
  p.a.setSource(new ToneSource(1000));
  const atB = new BufferSink();
  p.b.setSink(atB);
  await p.run(200);
  const old = p.a.localAddress;
  const now = await p.a.rebind("10.0.1.1");
  assert.equal(now.hostname, "10.0.1.1");
  assert.notDeepEqual(now, old);
  const offer = await p.a.createOffer();
  assert.match(offer, /c=IN IP4 10\.0\.1\.1/);
  assert.ok(offer.includes(`m=audio ${now.port} `));
  await p.a.applyAnswer(await p.b.createAnswer(offer));
  assert.deepEqual(p.b.remoteAddress, now);
  const heard = atB.length;
  await p.run(400);
  assert.ok(atB.length > heard + 2000);
  assert.equal(dominantFrequency(atB.samples(2400)), 1000);
  await p.a.close();
  await p.b.close();
});

Deno.test("MediaSession: junk on the RTP/RTCP ports is ignored; close() ends source and sink", async () => {
  const p = await pair();
  const ended = p.events(p.a, "source_ended");
  await connect(p);
  let sourceClosed = false;
  let sinkClosed = false;
  let left = 3;
  p.a.setSource({
    read: (n) => left-- > 0 ? new Int16Array(n).fill(1000) : null,
    close: () => {
      sourceClosed = true;
      return Promise.resolve();
    },
  });
  const heard = new BufferSink();
  p.b.setSink({
    write: (s) => heard.write(s),
    close: () => {
      sinkClosed = true;
      return Promise.resolve();
    },
  });
  // Junk: short datagrams, wrong version, RTCP garbage, an unknown payload type.
  const junk = p.network.bind("10.9.9.9", 5000);
  const rtp = p.b.localAddress;
  const rtcp = { ...rtp, port: rtp.port + 1 };
  for (let i = 0; i < 200; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(i % 40));
    junk.send(bytes, i % 2 ? rtp : rtcp);
  }
  junk.send(new Uint8Array([0x80, 99, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2]), rtp);
  await p.run(300);
  assert.equal(ended.length, 1, "source_ended once");
  assert.ok(heard.length > 0);
  assert.deepEqual(p.b.remoteAddress, p.a.localAddress, "junk did not move the latch");
  await p.a.close();
  await p.b.close();
  assert.ok(sourceClosed && sinkClosed);
  await assert.rejects(() => p.a.createOffer(), /closed/);
  junk.close();
});

Deno.test("MediaSession: a ptime change by re-offer: a=ptime/maxptime, 40 ms packets, timestamps locked to the clock", async () => {
  const p = await pair({ maxPtime: 60 });
  const changedA = p.events(p.a, "ptime_changed");
  const changedB = p.events(p.b, "ptime_changed");
  // When each of a's RTP packets left, on the manual clock.
  const sentAt: { at: number; ts: number; seq: number; marker: boolean }[] = [];
  p.network.filter = (data, from) => {
    if (same(from, p.a.localAddress) && !looksLikeRtcp(data)) {
      const r = decodeRtp(data);
      sentAt.push({ at: p.clock.now(), ts: r.timestamp, seq: r.sequenceNumber, marker: r.marker });
    }
    return true;
  };
  await connect(p);
  p.a.setSource(new ToneSource(1000));
  const atB = new BufferSink();
  p.b.setSink(atB);
  await p.run(200);
  const switchedAt = sentAt.length;
  assert.equal(p.a.setPtime(40), 40);
  assert.equal(p.a.ptime, 40);
  const offer = await p.a.createOffer();
  assert.match(offer, /a=ptime:40\r\n/);
  assert.match(offer, /a=maxptime:60\r\n/);
  const answer = await p.b.createAnswer(offer);
  // b took the coarser ptime as its own receive preference too.
  assert.match(answer, /a=ptime:40\r\n/);
  assert.equal(p.b.negotiated?.ptime, 40, "b sends with the ptime a asked for");
  await p.a.applyAnswer(answer);
  assert.equal(p.a.negotiated?.ptime, 40, "a sends with the ptime b asked for");
  assert.deepEqual(changedA, [{ ptime: 40, previous: 20 }]);
  assert.deepEqual(changedB, [{ ptime: 40, previous: 20 }]);
  await p.run(1000);
  const before = sentAt.slice(0, switchedAt);
  const after = sentAt.slice(switchedAt);
  assert.ok(before.length >= 10 && after.length >= 24, `${before.length} / ${after.length}`);
  for (let i = 1; i < before.length; i++) {
    assert.equal(before[i].at - before[i - 1].at, 20);
    assert.equal((before[i].ts - before[i - 1].ts) >>> 0, 160);
  }
  // The first 40 ms packet starts where the last 20 ms one ends: one 160 step, then 320.
  const last = before[before.length - 1];
  assert.equal(after[0].at - last.at, 20);
  assert.equal((after[0].ts - last.ts) >>> 0, 160);
  assert.equal(after[0].seq, (last.seq + 1) & 0xffff);
  assert.equal(after[0].marker, false, "no new talkspurt: the stream goes on");
  for (let i = 1; i < after.length; i++) {
    assert.equal(after[i].at - after[i - 1].at, 40, `packet ${i}`);
    assert.equal((after[i].ts - after[i - 1].ts) >>> 0, 320);
    assert.equal(after[i].seq, (after[i - 1].seq + 1) & 0xffff);
  }
  // No drift: packet k of the new interval is at exactly its slot on the clock, and the
  // timestamp is the clock's time at 8 kHz.
  const k = after.length - 1;
  assert.equal(after[k].at, after[0].at + 40 * k);
  assert.equal((after[k].ts - before[0].ts) >>> 0, (after[k].at - before[0].at) * 8);
  assert.equal(dominantFrequency(atB.samples(4000)), 1000, "the tone survives the switch");
  assert.equal(p.b.stats().ptime, 40);
  assert.equal(p.b.stats().received_ptime, 40);
  // Back to 20 ms.
  p.a.setPtime(20);
  await p.a.applyAnswer(await p.b.createAnswer(await p.a.createOffer()));
  // b keeps its own 20 ms preference, a asks for 20 again: both back to 20.
  assert.equal(p.a.negotiated?.ptime, 20);
  assert.equal(p.b.negotiated?.ptime, 20);
  const back = sentAt.length;
  await p.run(200);
  assert.ok(sentAt.slice(back + 1).every((s, i) => s.at - sentAt[back + i].at === 20));
  assert.throws(() => p.a.setPtime(5), RangeError);
  assert.equal(p.a.setPtime(100), 60, "capped by maxPtime");
  await p.a.close();
  await p.b.close();
});
