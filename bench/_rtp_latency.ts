/**
 * Receive-path latency of `sipkit call`: sipp (tests/sipp/call_uac_media.xml)
 * calls `sipkit call --answer --record <fifo>` with an SDP offer naming a
 * socket of this benchmark; the benchmark sends PCMU from that socket, paced
 * every 20 ms, alternating 500 ms of silence and 500 ms of a 1 kHz tone, and
 * reads the recording from the named pipe as sipkit writes it. For each tone
 * onset: the time from sending its first packet to reading its first loud
 * sample. That covers sipkit's jitter buffer, decoding and output writing
 * (plus a loopback hop and a pipe, both well under a millisecond).
 *
 * @module
 */

import { runSipp } from "../tests/peers/sipp.ts";
import { spawnSipkit } from "../tests/_sipkit_process.ts";
import { findBinary } from "../tests/peers/require.ts";

/** G.711 mu-law encoding of one 16-bit sample (ITU-T G.711), written here independently of lib/rtp. */
export function muLaw(sample: number): number {
  const BIAS = 0x84;
  let s = Math.max(-32635, Math.min(32635, sample | 0));
  const sign = s < 0 ? 0x80 : 0;
  if (s < 0) s = -s;
  s += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

/** Options of {@linkcode measureReceiveLatency}. */
export interface LatencyOptions {
  /** Tone onsets measured (one call). */
  runs: number;
  /** Environment of the sipkit process (private config and state directories). */
  env: Record<string, string>;
}

/** Returns one latency in ms per tone onset. */
export async function measureReceiveLatency(options: LatencyOptions): Promise<number[]> {
  const mkfifo = findBinary("mkfifo");
  if (!mkfifo) throw new Error("mkfifo (coreutils) is needed for the receive latency benchmark");
  const dir = await Deno.makeTempDir({ prefix: "sipkit-latency-" });
  const fifo = `${dir}/record.wav`;
  const made = await new Deno.Command(mkfifo, { args: [fifo] }).output();
  if (!made.success) throw new Error("mkfifo failed");
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const rtpPort = (socket.addr as Deno.NetAddr).port;
  const periodMs = 1000; // 500 ms silence + 500 ms tone
  const callMs = options.runs * periodMs + 2000;
  const sipkit = spawnSipkit([
    "call",
    "--answer",
    "--auto-answer",
    "0",
    "--bind",
    "127.0.0.1:0",
    "--codec",
    "PCMU",
    "--record",
    fifo,
  ], { env: options.env, name: "sipkit call --answer (latency bench)" });
  const latencies: number[] = [];
  // Reader first: opening a FIFO waits for the other end, and sipkit opens
  // its recording when it answers.
  const opening = Deno.open(fifo, { read: true });
  try {
    const listening = await sipkit.waitEvent((e) => e.type === "listening", { timeout: 20_000 });
    const contact = String(listening.contact);
    const hostPort = /@?([0-9.]+):(\d+)/.exec(contact.replace(/^sips?:/, ""));
    if (!hostPort) throw new Error(`cannot read the listening contact ${contact}`);
    const call = runSipp({
      scenario: "call_uac_media.xml",
      remote: `${hostPort[1]}:${hostPort[2]}`,
      service: "bench",
      calls: 1,
      keys: { user: "sipp", rtp_host: "127.0.0.1", rtp_port: rtpPort },
      timeout: Math.ceil(callMs / 1000) + 20,
      extraArgs: ["-d", String(callMs)],
    });
    const media = await sipkit.waitEvent((e) => e.type === "media", { timeout: 20_000 });
    const local = String(media.local_rtp ?? "");
    const port = Number(/:(\d+)$/.exec(local)?.[1]);
    if (!port) throw new Error(`no local_rtp in ${JSON.stringify(media)}`);
    const reader = await opening;
    const onsetsSent: number[] = [];
    const onsetsRead: number[] = [];
    const readLoop = (async () => {
      const buf = new Uint8Array(4096);
      let header: Uint8Array | undefined = new Uint8Array(0) as Uint8Array;
      let carry: number | undefined;
      let loud = false;
      let quiet = 0;
      for (;;) {
        const n = await reader.read(buf).catch(() => null);
        if (n === null) break;
        const at = performance.now();
        let chunk: Uint8Array = buf.subarray(0, n);
        if (header) {
          // Skip the WAV header: everything up to and including "data" + size.
          const joined: Uint8Array = new Uint8Array(header.length + chunk.length);
          joined.set(header);
          joined.set(chunk, header.length);
          const i = findData(joined);
          if (i < 0) {
            header = joined;
            continue;
          }
          chunk = joined.subarray(i);
          header = undefined;
        }
        let bytes = chunk;
        if (carry !== undefined) {
          const joined = new Uint8Array(bytes.length + 1);
          joined[0] = carry;
          joined.set(bytes, 1);
          bytes = joined;
          carry = undefined;
        }
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const whole = bytes.length & ~1;
        for (let i = 0; i < whole; i += 2) {
          const v = Math.abs(view.getInt16(i, true));
          if (!loud && v > 4000) {
            loud = true;
            quiet = 0;
            onsetsRead.push(at);
          } else if (loud) {
            quiet = v < 500 ? quiet + 1 : 0;
            if (quiet > 800) loud = false; // 100 ms of silence ends a burst
          }
        }
        if (bytes.length & 1) carry = bytes[bytes.length - 1];
      }
    })();
    // Paced sender: 20 ms frames on its own schedule (absolute deadlines, no drift).
    const ssrc = (Math.random() * 2 ** 32) >>> 0;
    const start = performance.now() + 200;
    const frames = Math.floor(callMs / 20) - 50;
    let phase = 0;
    for (let k = 0; k < frames; k++) {
      const due = start + k * 20;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const inPeriod = (k * 20) % periodMs;
      const tone = inPeriod >= periodMs / 2 && k * 20 < options.runs * periodMs;
      const packet = new Uint8Array(12 + 160);
      const view = new DataView(packet.buffer);
      packet[0] = 0x80;
      packet[1] = 0; // PCMU
      view.setUint16(2, k & 0xffff);
      view.setUint32(4, (k * 160) >>> 0);
      view.setUint32(8, ssrc);
      for (let i = 0; i < 160; i++) {
        const s = tone ? Math.round(16000 * Math.sin(phase)) : 0;
        if (tone) phase += 2 * Math.PI * 1000 / 8000;
        packet[12 + i] = muLaw(s);
      }
      if (tone && inPeriod === periodMs / 2) onsetsSent.push(performance.now());
      await socket.send(packet, { transport: "udp", hostname: "127.0.0.1", port });
    }
    const result = await call;
    if (result.code !== 0) throw new Error(`sipp: ${result.errors}`);
    await sipkit.exited;
    await readLoop;
    reader.close();
    for (let i = 0; i < onsetsSent.length && i < onsetsRead.length; i++) {
      latencies.push(onsetsRead[i] - onsetsSent[i]);
    }
    if (latencies.length === 0) {
      throw new Error(`no tone onset read back from sipkit's recording\n${sipkit.logs()}`);
    }
    return latencies;
  } finally {
    socket.close();
    await sipkit.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Index just after the `data` chunk's size field in a WAV header, or -1. */
function findData(bytes: Uint8Array): number {
  for (let i = 12; i + 8 <= bytes.length; i++) {
    if (
      bytes[i] === 0x64 && bytes[i + 1] === 0x61 && bytes[i + 2] === 0x74 && bytes[i + 3] === 0x61
    ) {
      return i + 8;
    }
  }
  return -1;
}
