import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { Pacer } from "../lib/rtp/clock.ts";
import { JitterBuffer } from "../lib/rtp/jitter_buffer.ts";
import {
  decodeDtmf,
  dtmfPackets,
  DtmfReceiver,
  encodeDtmf,
  isDtmfDigits,
} from "../lib/rtp/dtmf.ts";
import { estimateMos, mosFromR, rFactor } from "../lib/rtp/emodel.ts";

function frame(n: number, base = 0) {
  return {
    timestamp: (base + n * 160) >>> 0,
    sequenceNumber: n & 0xffff,
    samples: new Int16Array(160).fill(n + 1),
  };
}

Deno.test("Pacer catches up a late timer without drift", () => {
  // A clock whose timers fire late by a varying amount, as on a loaded machine.
  const clock = new ManualClock();
  const lateBy = [0, 7, 19, 3, 45, 0, 12];
  let k = 0;
  const late = {
    now: () => clock.now(),
    setTimeout: (fn: () => void, ms: number) =>
      clock.setTimeout(fn, ms + lateBy[k++ % lateBy.length]),
    clearTimeout: (id: number) => clock.clearTimeout(id),
  };
  const at: [number, number][] = [];
  const pacer = new Pacer(late, 20, (n) => at.push([n, clock.now()]));
  pacer.start();
  clock.advance(10_000);
  pacer.stop();
  // Every tick due by t=10000 ran, in order, none early, none twice.
  const indexes = at.map(([n]) => n);
  assert.deepEqual(indexes, [...Array(indexes.length).keys()]);
  assert.ok(indexes.length >= 499 && indexes.length <= 501, `${indexes.length}`);
  for (const [n, t] of at) assert.ok(t >= n * 20, `tick ${n} ran early at ${t}`);
  assert.equal(pacer.skipped, 0);
  // The lateness does not accumulate: the last tick is within one timer delay of its time.
  const [lastN, lastT] = at[at.length - 1];
  assert.ok(lastT - lastN * 20 <= 45, `drift ${lastT - lastN * 20}`);
});

Deno.test("Pacer skips ticks beyond maxBurst after a long stall, keeping indexes on time", () => {
  const clock = new ManualClock();
  const ticks: number[] = [];
  let stalled = false;
  const stalling = {
    now: () => clock.now(),
    setTimeout: (fn: () => void, ms: number) => clock.setTimeout(fn, stalled ? 1000 : ms),
    clearTimeout: (id: number) => clock.clearTimeout(id),
  };
  const pacer = new Pacer(stalling, 20, (n) => ticks.push(n), { maxBurst: 5 });
  pacer.start();
  clock.advance(100); // ticks 0..5
  stalled = true;
  clock.advance(1000);
  stalled = false;
  clock.advance(30);
  pacer.stop();
  // Tick 6 was already scheduled (120 ms); the next wake-up comes at 1120 ms,
  // when ticks 7 to 56 are due: only the last 5 run.
  assert.deepEqual(ticks, [0, 1, 2, 3, 4, 5, 6, 52, 53, 54, 55, 56]);
  assert.equal(pacer.skipped, 45);
});

Deno.test("JitterBuffer plays reordered packets in order", () => {
  const jb = new JitterBuffer();
  jb.push(frame(0), 0);
  jb.push(frame(2), 1);
  jb.push(frame(1), 2);
  jb.push(frame(3), 3);
  const out = [0, 1, 2, 3].map((i) => jb.pop(160, 5 + i * 20).samples[0]);
  assert.deepEqual(out, [1, 2, 3, 4]);
  assert.equal(jb.stats.concealedSamples, 0);
  assert.equal(jb.stats.late, 0);
});

Deno.test("JitterBuffer conceals a lost packet with silence and moves on", () => {
  const jb = new JitterBuffer();
  jb.push(frame(0), 0);
  jb.push(frame(2), 40);
  assert.equal(jb.pop(160, 1).samples[0], 1);
  const gap = jb.pop(160, 41);
  assert.equal(gap.status, "gap");
  assert.ok(gap.samples.every((s) => s === 0));
  assert.equal(jb.pop(160, 61).samples[0], 3);
  assert.equal(jb.stats.concealedSamples, 160);
});

Deno.test("JitterBuffer drops a late packet, and waits (underrun) instead of skipping", () => {
  const clock = new ManualClock();
  const jb = new JitterBuffer();
  jb.push(frame(0), clock.now());
  assert.equal(jb.pop(160, clock.now()).samples[0], 1);
  clock.advance(20);
  // Packet 1 is late: an underrun, playout waits.
  assert.equal(jb.pop(160, clock.now()).status, "idle");
  assert.equal(jb.stats.underruns, 1);
  clock.advance(5);
  jb.push(frame(1), clock.now());
  clock.advance(15);
  assert.equal(jb.pop(160, clock.now()).samples[0], 2, "nothing was skipped");
  // Packet 3 arrives before packet 2; packet 2 comes after its turn: late.
  jb.push(frame(3), clock.now());
  clock.advance(20);
  const concealed = jb.pop(160, clock.now());
  assert.equal(concealed.status, "gap");
  assert.equal(jb.push(frame(2), clock.now()), "late");
  assert.equal(jb.stats.late, 1);
  assert.equal(jb.pop(160, clock.now()).samples[0], 4);
  assert.equal(jb.push(frame(3), clock.now()), "late");
});

Deno.test("JitterBuffer adapts: delay grows with jitter and shrinks back when it calms", () => {
  const clock = new ManualClock();
  const jb = new JitterBuffer({ window: 50 });
  let n = 0;
  const delays: number[] = [];
  const played: number[] = [];
  // 10 s: sender every 20 ms; for the first 4 s every other packet is 30 ms late.
  for (let t = 0; t < 10_000; t += 1) {
    if (t % 20 === 0) {
      const idx = t / 20;
      const jitter = t < 4000 && idx % 2 === 1 ? 30 : 0;
      const f = frame(idx);
      clock.setTimeout(() => jb.push(f, clock.now()), jitter);
    }
    if (t % 20 === 10) {
      delays.push(jb.bufferedMs);
      const pop = jb.pop(160, clock.now());
      if (pop.status === "audio") played.push(pop.samples[0]);
      n++;
    }
    clock.advance(1);
  }
  assert.ok(n > 400);
  // Played in order, without duplicates.
  for (let i = 1; i < played.length; i++) assert.ok(played[i] > played[i - 1]);
  const early = delays.slice(150, 200); // 3 to 4 s: jittery
  const late = delays.slice(-50); // the last second: calm again
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(avg(early) >= 30, `jittery delay ${avg(early)}`);
  assert.ok(avg(late) <= 25, `calm ${avg(late)} vs jittery ${avg(early)}`);
  assert.ok(jb.stats.droppedSamples > 0, "the surplus delay was dropped");
  assert.ok(jb.stats.late <= 2, `late ${jb.stats.late}`);
});

Deno.test("JitterBuffer handles timestamp wrap-around, duplicates and a jump after a pause", () => {
  const jb = new JitterBuffer();
  const base = 0xffffff00;
  jb.push(frame(0, base), 0);
  jb.push(frame(1, base), 20);
  assert.equal(jb.push(frame(1, base), 21), "duplicate");
  assert.equal(jb.pop(160, 22).samples[0], 1);
  assert.equal(jb.pop(160, 42).samples[0], 2);
  // The sender paused 10 s (hold) then resumed: playout jumps, no 500 lost frames.
  jb.push(frame(500, base), 10_000);
  assert.equal(jb.pop(160, 10_001).samples[0], 501);
  assert.equal(jb.stats.resyncs, 1);
  assert.equal(jb.stats.concealedSamples, 0);
});

Deno.test("JitterBuffer measures the latency from arrival to playout", () => {
  const jb = new JitterBuffer();
  jb.push(frame(0), 100);
  jb.pop(160, 112);
  assert.equal(jb.lastLatencyMs, 12);
  jb.push(frame(1), 121);
  jb.pop(160, 132);
  assert.equal(jb.lastLatencyMs, 11);
  assert.equal(jb.meanLatencyMs, 11.5);
});

Deno.test("dtmfPackets(): marker first, growing durations, the end packet three times", () => {
  const plan = dtmfPackets("#", 60, 160);
  const decoded = plan.map((p) => decodeDtmf(p.payload));
  assert.deepEqual(plan.map((p) => p.marker), [true, false, false, false, false]);
  assert.deepEqual(decoded.map((d) => [d.event, d.end, d.duration]), [
    [11, false, 160],
    [11, false, 320],
    [11, true, 480],
    [11, true, 480],
    [11, true, 480],
  ]);
  assert.deepEqual([...encodeDtmf({ event: 5, end: false, volume: 10, duration: 160 })], [
    5,
    10,
    0,
    160,
  ]);
  assert.throws(() => dtmfPackets("x", 100, 160), RangeError);
  assert.ok(isDtmfDigits("0123456789*#abcd"));
  assert.ok(!isDtmfDigits("12x"));
  assert.ok(!isDtmfDigits(""));
});

Deno.test("DtmfReceiver reports each event once: repeats, lost ends, late repeats", () => {
  const got: string[] = [];
  const rx = new DtmfReceiver((d) => got.push(`${d.digit}:${d.durationMs}`));
  const send = (ts: number, event: number, end: boolean, duration: number) =>
    rx.receive(ts, encodeDtmf({ event, end, volume: 10, duration }));
  // "1" with its three end packets.
  send(1000, 1, false, 160);
  send(1000, 1, true, 800);
  send(1000, 1, true, 800);
  send(1000, 1, true, 800);
  // "2" whose end packets were all lost: reported when "3" starts.
  send(3000, 2, false, 160);
  send(3000, 2, false, 320);
  send(5000, 3, false, 160);
  send(5000, 3, true, 400);
  // A late repeat of "1" is not a new digit.
  send(1000, 1, true, 800);
  rx.receive(6000, new Uint8Array([1])); // malformed: ignored
  assert.deepEqual(got, ["1:100", "2:40", "3:50"]);
});

Deno.test("E-model: G.711 without impairments scores 4.41; loss and delay lower it", () => {
  assert.equal(rFactor({ lossPercent: 0, delayMs: 0 }), 93.2);
  assert.equal(mosFromR(93.2).toFixed(2), "4.41");
  assert.equal(mosFromR(-5), 1);
  assert.equal(mosFromR(120), 4.5);
  const clean = estimateMos({ lossPercent: 0, delayMs: 40 });
  const lossy = estimateMos({ lossPercent: 2, delayMs: 40 });
  const far = estimateMos({ lossPercent: 0, delayMs: 400 });
  assert.ok(clean > 4.3);
  assert.ok(lossy < clean && lossy > 3, `${lossy}`);
  assert.ok(far < 3.8, `${far}`);
  // G.113: Ie-eff at 2 % random loss with Bpl 4.3 is 95 * 2 / 6.3 = 30.2.
  assert.equal(
    rFactor({ lossPercent: 2, delayMs: 0 }).toFixed(1),
    (93.2 - 95 * 2 / 6.3).toFixed(1),
  );
});

Deno.test("JitterBuffer target delay: raised, playout holds back to it; lowered, the surplus drains; 40 ms frames", () => {
  const clock = new ManualClock();
  const jb = new JitterBuffer({ window: 25 });
  // A steady stream of 40 ms packets (320 samples), played in 20 ms pops.
  const big = (n: number) => ({
    timestamp: n * 320,
    sequenceNumber: n,
    samples: new Int16Array(320).fill(n + 1),
  });
  const levels: number[] = [];
  const played: number[] = [];
  const step = (from: number, to: number) => {
    for (let t = from; t < to; t++) {
      if (t % 40 === 0) jb.push(big(t / 40), clock.now());
      if (t % 20 === 5) {
        levels.push(jb.bufferedMs);
        const pop = jb.pop(160, clock.now());
        if (pop.status === "audio") played.push(pop.samples[0]);
      }
      clock.advance(1);
    }
  };
  step(0, 2000);
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const base = avg(levels.slice(-25));
  assert.ok(base <= 45, `base level ${base}`);
  assert.equal(jb.targetDelayMs, 0);
  assert.equal(jb.setTargetDelay(120), 120);
  const stretchedBefore = jb.stats.stretchedSamples;
  step(2000, 5000);
  // Levels are taken before each pop: with 40 ms packets they swing by 20 ms around the target.
  const raised = avg(levels.slice(-25));
  assert.ok(raised >= 100 && raised <= 170, `raised level ${raised} (was ${base})`);
  const stretched = jb.stats.stretchedSamples - stretchedBefore;
  // About the difference in silence was played to build the level up (no samples dropped).
  assert.ok(stretched >= 80 * 8 && stretched <= 140 * 8, `stretched ${stretched}`);
  assert.ok(jb.lastLatencyMs >= 80, `latency ${jb.lastLatencyMs}`);
  jb.setTargetDelay(0);
  const droppedBefore = jb.stats.droppedSamples;
  step(5000, 12_000);
  const lowered = avg(levels.slice(-25));
  assert.ok(lowered <= 60, `lowered level ${lowered}`);
  assert.ok(jb.stats.droppedSamples > droppedBefore, "the surplus was dropped");
  // Every frame played in order, each 40 ms packet as two 20 ms halves, none repeated.
  for (let i = 1; i < played.length; i++) assert.ok(played[i] >= played[i - 1]);
  assert.equal(jb.stats.late, 0);
  // The target is capped below the maximum delay.
  assert.equal(new JitterBuffer({ maxDelayMs: 300 }).setTargetDelay(1000), 280);
});
