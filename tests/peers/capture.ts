/**
 * Packet capture for tests, inside a network namespace the test created:
 * `dumpcap` (Debian package `tshark`, through `wireshark-common`) writes
 * every matching packet with its kernel time stamp to a pcap file, and
 * {@linkcode Capture.stop} reads the UDP datagrams back (IPv4 and IPv6;
 * link types Linux cooked v1 and v2, and Ethernet). Used to measure when RTP
 * arrives around a move, independently of the processes under test.
 *
 * @module
 */

import { findBinary, MissingPeerError, waitFor } from "./require.ts";

/** One UDP datagram seen by the capture. */
export interface CapturedDatagram {
  /** Kernel time stamp, milliseconds since the epoch (comparable with `Date.now()`). */
  at: number;
  /** Source address. */
  src: string;
  /** Source port. */
  srcPort: number;
  /** Destination address. */
  dst: string;
  /** Destination port. */
  dstPort: number;
  /** The UDP payload. */
  payload: Uint8Array;
}

/** A running capture. */
export interface Capture {
  /** Stops dumpcap, reads its file and returns the UDP datagrams in capture order. */
  stop(): Promise<CapturedDatagram[]>;
  /** What dumpcap printed (for failure dumps). */
  logs(): string;
}

/** Options of {@linkcode startCapture}. */
export interface CaptureOptions {
  /** Interface (default `any`). */
  iface?: string;
  /** libpcap filter (default `udp`). */
  filter?: string;
  /** Milliseconds to wait for dumpcap to start capturing (default 10000). */
  startTimeout?: number;
}

/**
 * Starts dumpcap in namespace `netns`, writing into directory `dir`;
 * resolves once it captures.
 */
export async function startCapture(
  netns: string,
  dir: string,
  options: CaptureOptions = {},
): Promise<Capture> {
  const dumpcap = findBinary("dumpcap");
  if (!dumpcap) throw new MissingPeerError("dumpcap", "tshark");
  const file = `${dir}/capture-${netns}-${crypto.randomUUID().slice(0, 8)}.pcap`;
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      netns,
      dumpcap,
      "-q",
      "-P",
      "-i",
      options.iface ?? "any",
      "-f",
      options.filter ?? "udp",
      "-w",
      file,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  let exited = false;
  const reading = Promise.all([child.stdout, child.stderr].map(async (stream) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      output = (output + chunk).slice(-8000);
    }
  })).catch(() => {});
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGINT");
      } catch {
        // gone
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([status, new Promise((r) => timer = setTimeout(r, 3000))]);
    clearTimeout(timer);
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }
    await status;
    await reading;
  };
  try {
    await waitFor(() => {
      if (exited) throw new Error(`dumpcap exited: ${output}`);
      return /Capturing on/.test(output);
    }, { timeout: options.startTimeout ?? 10_000, message: `dumpcap in ${netns} to capture` });
  } catch (e) {
    await stop();
    await Deno.remove(file).catch(() => {});
    throw e;
  }
  return {
    logs: () => output,
    async stop() {
      await stop();
      try {
        return parsePcap(await Deno.readFile(file));
      } finally {
        await Deno.remove(file).catch(() => {});
      }
    },
  };
}

/** Reads the UDP datagrams of a pcap file (microsecond or nanosecond time stamps). */
export function parsePcap(bytes: Uint8Array): CapturedDatagram[] {
  if (bytes.length < 24) return [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  let little: boolean;
  let nano: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) {
    little = true;
    nano = magic === 0xa1b23c4d;
  } else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) {
    little = false;
    nano = magic === 0x4d3cb2a1;
  } else {
    throw new SyntaxError("Cannot parse pcap: bad magic number");
  }
  const linkType = view.getUint32(20, little) & 0x0fffffff;
  const out: CapturedDatagram[] = [];
  for (let offset = 24; offset + 16 <= bytes.length;) {
    const seconds = view.getUint32(offset, little);
    const fraction = view.getUint32(offset + 4, little);
    const length = view.getUint32(offset + 8, little);
    const start = offset + 16;
    offset = start + length;
    if (offset > bytes.length) break; // cut short by the stop
    const at = seconds * 1000 + (nano ? fraction / 1e6 : fraction / 1e3);
    const frame = bytes.subarray(start, start + length);
    const datagram = udpOfFrame(frame, linkType);
    if (datagram) out.push({ at, ...datagram });
  }
  return out;
}

function udpOfFrame(
  frame: Uint8Array,
  linkType: number,
): Omit<CapturedDatagram, "at"> | undefined {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let protocol: number;
  let ip: number;
  if (linkType === 113 && frame.length >= 16) { // LINUX_SLL
    protocol = view.getUint16(14);
    ip = 16;
  } else if (linkType === 276 && frame.length >= 20) { // LINUX_SLL2
    protocol = view.getUint16(0);
    ip = 20;
  } else if (linkType === 1 && frame.length >= 14) { // Ethernet
    protocol = view.getUint16(12);
    ip = 14;
  } else {
    return undefined;
  }
  let src: string;
  let dst: string;
  let udp: number;
  if (protocol === 0x0800 && frame.length >= ip + 20) {
    if (frame[ip + 9] !== 17) return undefined;
    src = frame.subarray(ip + 12, ip + 16).join(".");
    dst = frame.subarray(ip + 16, ip + 20).join(".");
    udp = ip + (frame[ip] & 0x0f) * 4;
  } else if (protocol === 0x86dd && frame.length >= ip + 40) {
    if (frame[ip + 6] !== 17) return undefined; // no extension headers here
    const v6 = (at: number) =>
      Array.from({ length: 8 }, (_, i) => view.getUint16(at + 2 * i).toString(16)).join(":");
    src = v6(ip + 8);
    dst = v6(ip + 24);
    udp = ip + 40;
  } else {
    return undefined;
  }
  if (frame.length < udp + 8) return undefined;
  return {
    src,
    srcPort: view.getUint16(udp),
    dst,
    dstPort: view.getUint16(udp + 2),
    payload: frame.subarray(udp + 8, udp + view.getUint16(udp + 4)),
  };
}

/**
 * The longest interval, in milliseconds, between consecutive time stamps
 * in `times` (sorted first); 0 for fewer than two.
 */
export function longestGap(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < sorted.length; i++) gap = Math.max(gap, sorted[i] - sorted[i - 1]);
  return gap;
}
