/**
 * A UDP sink for RTP benchmarks: records when each packet arrives (monotonic
 * clock) with its RTP header fields, and measures the sender's pacing.
 * Independent of lib/rtp on purpose: it judges sipkit's sender and baresip's
 * by the same yardstick.
 *
 * @module
 */

/** One RTP packet as the sink saw it. */
export interface RtpArrival {
  /** Arrival time, ms on the monotonic clock (`performance.now()`). */
  at: number;
  /** SSRC. */
  ssrc: number;
  /** Sequence number. */
  seq: number;
  /** RTP timestamp. */
  timestamp: number;
  /** Payload type. */
  payloadType: number;
  /** Payload bytes. */
  payloadLength: number;
  /** Source `host:port`. */
  source: string;
}

/** Pacing of one stream. */
export interface PacingReport {
  /** Packets analysed (after the warm-up). */
  packets: number;
  /** Median |interval - ptime| in ms. */
  p50: number;
  /** 99th percentile |interval - ptime| in ms. */
  p99: number;
  /** Largest |interval - ptime| in ms. */
  max: number;
  /** Mean interval in ms. */
  meanInterval: number;
  /**
   * Wall-clock time minus media time over the analysed span, ms, from the
   * least-squares slope of arrival times against RTP timestamps: positive
   * when the sender sends slower than its 8 kHz clock, negative when faster.
   */
  drift: number;
  /** Seconds analysed. */
  seconds: number;
  /** Packets missing by sequence number. */
  lost: number;
  /** Payload types seen. */
  payloadTypes: number[];
}

/** Parses the fixed RTP header (RFC 3550 5.1); undefined if it is not RTP version 2. */
export function parseRtpHeader(
  data: Uint8Array,
): Omit<RtpArrival, "at" | "source"> | undefined {
  if (data.length < 12 || data[0] >> 6 !== 2) return undefined;
  const pt = data[1] & 0x7f;
  // RTCP shares the port under rtcp-mux: payload types 72-76 are RTCP packet types 200-204.
  if (pt >= 72 && pt <= 76) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const csrc = data[0] & 0x0f;
  let header = 12 + 4 * csrc;
  if (data[0] & 0x10 && data.length >= header + 4) {
    header += 4 + 4 * view.getUint16(header + 2);
  }
  return {
    payloadType: pt,
    seq: view.getUint16(2),
    timestamp: view.getUint32(4),
    ssrc: view.getUint32(8),
    payloadLength: Math.max(0, data.length - header),
  };
}

/** A UDP socket on 127.0.0.1 that records RTP arrivals until closed. */
export class RtpSink {
  #socket: Deno.DatagramConn;
  #arrivals: RtpArrival[] = [];
  #loop: Promise<void>;

  private constructor(socket: Deno.DatagramConn) {
    this.#socket = socket;
    this.#loop = this.#read();
  }

  /** Opens a sink on `hostname` (default 127.0.0.1) and a free port. */
  static open(hostname = "127.0.0.1"): RtpSink {
    return new RtpSink(Deno.listenDatagram({ transport: "udp", hostname, port: 0 }));
  }

  /** The port it listens on. */
  get port(): number {
    return (this.#socket.addr as Deno.NetAddr).port;
  }

  /** Every RTP packet so far. */
  get arrivals(): readonly RtpArrival[] {
    return this.#arrivals;
  }

  async #read(): Promise<void> {
    try {
      for (;;) {
        const [data, addr] = await this.#socket.receive();
        const at = performance.now();
        const header = parseRtpHeader(data);
        if (!header) continue;
        const a = addr as Deno.NetAddr;
        this.#arrivals.push({ ...header, at, source: `${a.hostname}:${a.port}` });
      }
    } catch {
      // closed
    }
  }

  /** Stops receiving. */
  async close(): Promise<void> {
    try {
      this.#socket.close();
    } catch {
      // closed already
    }
    await this.#loop;
  }
}

/** The `q` quantile (0..1) of sorted `values` (nearest rank). */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/**
 * Measures the pacing of the stream with the most packets among `arrivals`:
 * intervals between consecutive packets against `ptime` ms (packets in
 * sequence order only; a gap in sequence numbers skips that interval), after
 * dropping the first `warmupMs` of the stream (call set-up, source start).
 */
export function analysePacing(
  arrivals: readonly RtpArrival[],
  options: { ptime?: number; warmupMs?: number; clockRate?: number } = {},
): PacingReport {
  const ptime = options.ptime ?? 20;
  const clockRate = options.clockRate ?? 8000;
  const bySsrc = new Map<number, RtpArrival[]>();
  for (const a of arrivals) {
    const list = bySsrc.get(a.ssrc) ?? [];
    list.push(a);
    bySsrc.set(a.ssrc, list);
  }
  const stream = [...bySsrc.values()].sort((x, y) => y.length - x.length)[0] ?? [];
  const start = (stream[0]?.at ?? 0) + (options.warmupMs ?? 1000);
  const used = stream.filter((a) => a.at >= start);
  const deviations: number[] = [];
  let lost = 0;
  let intervalSum = 0;
  for (let i = 1; i < used.length; i++) {
    const gap = (used[i].seq - used[i - 1].seq + 65536) % 65536;
    if (gap !== 1) {
      if (gap > 1 && gap < 1000) lost += gap - 1;
      continue;
    }
    const interval = used[i].at - used[i - 1].at;
    intervalSum += interval;
    deviations.push(Math.abs(interval - ptime));
  }
  deviations.sort((a, b) => a - b);
  // Drift: the slope of arrival time against media time (least squares over
  // every packet, so single late packets at either end do not count), as the
  // wall-clock time gained or lost over the analysed span.
  let drift = NaN;
  let seconds = 0;
  if (used.length >= 2) {
    const t0 = used[0].timestamp;
    const media = used.map((a) => ((a.timestamp - t0 + 2 ** 32) % 2 ** 32) / clockRate * 1000);
    const wall = used.map((a) => a.at - used[0].at);
    const n = used.length;
    const mx = media.reduce((x, y) => x + y, 0) / n;
    const my = wall.reduce((x, y) => x + y, 0) / n;
    let sxy = 0;
    let sxx = 0;
    for (let i = 0; i < n; i++) {
      sxy += (media[i] - mx) * (wall[i] - my);
      sxx += (media[i] - mx) ** 2;
    }
    const span = media[n - 1];
    drift = sxx > 0 ? (sxy / sxx - 1) * span : 0;
    seconds = wall[n - 1] / 1000;
  }
  return {
    packets: used.length,
    p50: quantile(deviations, 0.5),
    p99: quantile(deviations, 0.99),
    max: deviations[deviations.length - 1] ?? NaN,
    meanInterval: deviations.length ? intervalSum / deviations.length : NaN,
    drift,
    seconds,
    lost,
    payloadTypes: [...new Set(used.map((a) => a.payloadType))],
  };
}

/** CPU time (user + system, ms) used so far by process `pid` and all its descendants. */
export function processTreeCpuMs(pid: number): number {
  const ticks = 100; // USER_HZ on Linux
  let total = 0;
  const visit = (p: number) => {
    try {
      const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
      // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += (Number(rest[11]) + Number(rest[12])) * 1000 / ticks;
    } catch {
      return; // gone
    }
    try {
      for (const task of Deno.readDirSync(`/proc/${p}/task`)) {
        const children = Deno.readTextFileSync(`/proc/${p}/task/${task.name}/children`).trim();
        for (const c of children.split(/\s+/)) if (c) visit(Number(c));
      }
    } catch {
      // no children list
    }
  };
  visit(pid);
  return total;
}
