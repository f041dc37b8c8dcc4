/**
 * The media library's side of the call benchmarks, on loopback UDP:
 *
 * 1. Send pacing: a `MediaSession` sends a tone (PCMU, 20 ms) to a UDP sink
 *    (`_rtp_sink.ts`, the same yardstick the baresip comparison uses) for
 *    `--seconds`; reports p50/p99/max deviation of the packet intervals from
 *    20 ms, drift of the wall clock against the RTP timestamps, and this
 *    process's CPU per second of call.
 * 2. Receive path: a second session receives that stream; reports the time
 *    from each packet's arrival to the playout of its first sample (jitter
 *    buffer and output tick), p50/p99/mean, at 0 % loss. Target: 40 ms.
 *
 * Run: `deno run -A --config bench/deno.json bench/rtp_media.ts --seconds 10 [--json]`.
 * `measureSipkitPacing()` is exported for the side-by-side run with baresip.
 *
 * @module
 */

import { MediaSession } from "../lib/rtp/media_session.ts";
import { ToneSource } from "../lib/rtp/audio.ts";
import {
  analysePacing,
  type PacingReport,
  processTreeCpuMs,
  quantile,
  RtpSink,
} from "./_rtp_sink.ts";

/** Pacing of sipkit's sender, and the CPU it took. */
export interface SipkitPacing {
  /** The sink's analysis. */
  pacing: PacingReport;
  /** CPU ms per second of sending (this process: sender and sink together). */
  cpuMsPerSecond: number;
}

/** Sends a tone from a MediaSession to a UDP sink for `seconds` and measures the pacing. */
export async function measureSipkitPacing(seconds: number): Promise<SipkitPacing> {
  const sink = RtpSink.open("127.0.0.1");
  const media = await MediaSession.open({ hostname: "127.0.0.1" });
  try {
    const offer = await media.createOffer();
    await media.applyAnswer(answerTo(offer, sink.port));
    media.setSource(new ToneSource(1000));
    const cpu0 = processTreeCpuMs(Deno.pid);
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const cpu = processTreeCpuMs(Deno.pid) - cpu0;
    const elapsed = (performance.now() - t0) / 1000;
    return { pacing: analysePacing(sink.arrivals, { ptime: 20 }), cpuMsPerSecond: cpu / elapsed };
  } finally {
    await media.close();
    await sink.close();
  }
}

/**
 * CPU ms per second of the bare runtime doing the same I/O: a `setInterval`
 * of 20 ms sending 172-byte datagrams to the same kind of sink. What the
 * media session costs is the difference.
 */
export async function measureRuntimeBaseline(seconds: number): Promise<number> {
  const sink = RtpSink.open("127.0.0.1");
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const packet = new Uint8Array(172);
  packet[0] = 0x80;
  const cpu0 = processTreeCpuMs(Deno.pid);
  const t0 = performance.now();
  const timer = setInterval(() => {
    socket.send(packet, { transport: "udp", hostname: "127.0.0.1", port: sink.port }).catch(
      () => {},
    );
  }, 20);
  await sleep(seconds * 1000);
  clearInterval(timer);
  const result = (processTreeCpuMs(Deno.pid) - cpu0) / ((performance.now() - t0) / 1000);
  socket.close();
  await sink.close();
  return result;
}

/** Receive path latency (arrival to playout), ms. */
export interface ReceiveLatency {
  /** Packets played. */
  packets: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Mean (the session's own `playout_delay_ms`). */
  mean: number;
  /** Packets lost or late at the receiver. */
  lostOrLate: number;
  /** The jitter buffer's counters (underruns, dropped samples...) and jitter. */
  jb: Record<string, number>;
}

/** Streams from one MediaSession to another for `seconds`; measures the receiver's added latency. */
export async function measureReceiveLatency(seconds: number): Promise<ReceiveLatency> {
  const a = await MediaSession.open({ hostname: "127.0.0.1" });
  const b = await MediaSession.open({ hostname: "127.0.0.1" });
  const latencies: number[] = [];
  try {
    await a.applyAnswer(await b.createAnswer(await a.createOffer()));
    a.setSource(new ToneSource(1000));
    let played = 0;
    b.setSink({
      write() {
        // Called right after each playout pop: record the latency of a newly played packet.
        const jb = b.jitterBuffer;
        const count = jb.stats.queued;
        if (count > played) latencies.push(jb.lastLatencyMs);
        played = count;
      },
    });
    await sleep(seconds * 1000);
    const s = b.stats();
    const sorted = latencies.slice(50).sort((x, y) => x - y); // skip the first second
    return {
      packets: sorted.length,
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      mean: s.playout_delay_ms,
      lostOrLate: s.lost + s.late,
      jb: { ...b.jitterBuffer.stats, jitterMs: b.jitterBuffer.jitterMs },
    };
  } finally {
    await a.close();
    await b.close();
  }
}

function answerTo(offer: string, port: number): string {
  const session = /o=- (\d+) /.exec(offer)?.[1] ?? "1";
  return [
    "v=0",
    `o=- ${Number(session) + 1} 1 IN IP4 127.0.0.1`,
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    `m=audio ${port} RTP/AVP 0`,
    "a=rtpmap:0 PCMU/8000",
    "a=ptime:20",
    "a=sendrecv",
    "",
  ].join("\r\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function fmt(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : "n/a";
}

if (import.meta.main) {
  const args = Deno.args;
  const flag = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const seconds = Number(flag("--seconds") ?? 10);
  if (!(seconds > 1)) {
    console.error("sipkit bench: --seconds must be more than 1");
    Deno.exit(2);
  }
  const send = await measureSipkitPacing(seconds);
  const baseline = await measureRuntimeBaseline(Math.min(seconds, 5));
  const receive = await measureReceiveLatency(seconds);
  if (args.includes("--json")) {
    console.log(JSON.stringify({ seconds, send, baselineCpuMsPerSecond: baseline, receive }));
  } else {
    const p = send.pacing;
    console.log(`RTP media on loopback, ${seconds} s each (after a 1 s warm-up)`);
    console.log(
      `  send pacing (sipkit MediaSession -> UDP sink): ${p.packets} packets, deviation from 20 ms ` +
        `p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms, max ${fmt(p.max)} ms; mean interval ` +
        `${fmt(p.meanInterval)} ms; drift ${fmt(p.drift)} ms over ${
          fmt(p.seconds)
        } s; lost ${p.lost}`,
    );
    console.log(
      `  CPU: ${
        fmt(send.cpuMsPerSecond)
      } ms per second of call (sender and sink); the bare runtime ` +
        `sending the same packets from a setInterval: ${fmt(baseline)} ms/s (ratio ` +
        `${fmt(send.cpuMsPerSecond / baseline)})`,
    );
    console.log(
      `  receive path (arrival -> playout): p50 ${fmt(receive.p50)} ms, p99 ${
        fmt(receive.p99)
      } ms, ` +
        `mean ${
          fmt(receive.mean)
        } ms over ${receive.packets} packets; lost or late ${receive.lostOrLate}` +
        ` (target 40 ms)`,
    );
  }
}
