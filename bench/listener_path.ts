/**
 * Benchmark: CPU time per MESSAGE of the listener's code path without
 * sockets: datagrams built like sipp's go through a fake UDP transport into
 * the transport, transaction and UA layers, the `MessageListener` and the
 * CLI's NDJSON event writer (into a sink), and the 200 comes back out of the
 * transport's `send`. 64 in flight, as in the closed loop of
 * bench/message_flood.ts; every answer is checked (a 200 for each MESSAGE,
 * one event line each). Prints µs of this process's CPU per MESSAGE: for the
 * first 20,000 (the cold start, while V8 compiles the path), then per round.
 *
 * With `--rate R`, instead: R MESSAGEs per second for `--seconds` (default
 * 60), paced by the clock, answered as they come (open loop, as
 * bench/message_memory.ts offers with sipp, but with no other process
 * competing for the CPU); the process's resident memory is sampled every
 * second with the transactions held for timer J (answered in the last 32
 * s), and the peak and the memory per held transaction are printed.
 *
 *     deno run -A --config bench/deno.json bench/listener_path.ts [--count 100000] [--rounds 5]
 *     deno run -A --config bench/deno.json bench/listener_path.ts --rate 5000 [--seconds 60]
 *
 * @module
 */

import process from "node:process";
import { UserAgent } from "../lib/sip/ua.ts";
import { MessageListener } from "../lib/im/message.ts";
import type { HostPort, InboundHandler, Transport } from "../lib/sip/transport.ts";
import { NdjsonWriter } from "../cli/_io.ts";
import { messageEventFields } from "../cli/_message_more.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(Deno.args[i + 1]);
}
const COUNT = arg("count", 100_000);
const ROUNDS = arg("rounds", 5);
const IN_FLIGHT = arg("limit", 64);
const RATE = arg("rate", 0);
const SECONDS = arg("seconds", 60);

/** A UDP transport without a socket: `deliver` feeds it, `send` counts. */
class FakeUdp implements Transport {
  readonly protocol = "udp" as const;
  readonly reliable = false;
  readonly local: HostPort = { host: "127.0.0.1", port: 5060 };
  handler?: InboundHandler;
  sent = 0;
  okSent = 0;
  onSent?: () => void;
  send(data: Uint8Array): Promise<void> {
    this.sent++;
    // "SIP/2.0 200"
    if (data[8] === 50 && data[9] === 48 && data[10] === 48) this.okSent++;
    this.onSent?.();
    return Promise.resolve();
  }
  onMessage(handler: InboundHandler): void {
    this.handler = handler;
  }
  deliver(data: Uint8Array): void {
    this.handler!({
      data,
      remote: { host: "127.0.0.1", port: 5061 },
      local: this.local,
      transport: this,
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const enc = new TextEncoder();
function message(n: number): Uint8Array {
  const body = `sipp message ${n}`;
  return enc.encode(
    `MESSAGE sip:bob@127.0.0.1:5060 SIP/2.0\r\n` +
      `Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-${n}-0;rport\r\n` +
      `Max-Forwards: 70\r\n` +
      `From: <sip:sipp@127.0.0.1:5061>;tag=4242SIPpTag00${n}\r\n` +
      `To: <sip:bob@127.0.0.1:5060>\r\n` +
      `Call-ID: ${n}-4242@127.0.0.1\r\n` +
      `CSeq: 1 MESSAGE\r\n` +
      `Content-Type: text/plain;charset=UTF-8\r\n` +
      `Content-Length: ${body.length}\r\n\r\n${body}`,
  );
}

let lines = 0;
const sink = {
  write(p: Uint8Array): Promise<number> {
    for (let i = 0; i < p.length; i++) if (p[i] === 10) lines++;
    return Promise.resolve(p.length);
  },
};

const transport = new FakeUdp();
const ua = await UserAgent.create({ aor: "bob@example.test", transports: [transport] });
const out = new NdjsonWriter(sink);
new MessageListener(ua, {
  onMessage: async (m) => {
    await out.emit("message", messageEventFields(m));
  },
});

let next = 0;
async function round(count: number): Promise<void> {
  const target = transport.okSent + count;
  const stop = next + count;
  await new Promise<void>((resolve) => {
    transport.onSent = () => {
      if (next < stop) transport.deliver(message(next++));
      else if (transport.okSent >= target) resolve();
    };
    for (let i = 0; i < IN_FLIGHT && next < stop; i++) transport.deliver(message(next++));
  });
}

/**
 * Open loop at RATE for SECONDS, sampling RSS: see the module doc. At most
 * 64 MESSAGEs are handed over per turn of the event loop, and no more than
 * BACKLOG may be due and not yet handed over: beyond that they are dropped
 * and counted, as a full socket receive buffer would.
 */
async function sustained(): Promise<void> {
  const MIB = 1024 * 1024;
  const BACKLOG = 1400;
  const before = Deno.memoryUsage().rss;
  const answeredAt: number[] = []; // answers per whole second since the start
  const samples: { t: number; rss: number; heap: number; held: number }[] = [];
  const start = performance.now();
  const total = RATE * SECONDS;
  let due = 0;
  let dropped = 0;
  let handed = 0;
  let peak = before;
  const c0 = process.cpuUsage();
  transport.onSent = () => {
    const s = Math.floor((performance.now() - start) / 1000);
    answeredAt[s] = (answeredAt[s] ?? 0) + 1;
  };
  const held = (second: number) => {
    let n = 0;
    for (let s = Math.max(0, second - 31); s <= second; s++) n += answeredAt[s] ?? 0;
    return n;
  };
  console.log("| second | RSS MiB | V8 heap MiB | answered | transactions held (timer J) |");
  console.log("| ---: | ---: | ---: | ---: | ---: |");
  let nextSample = 1;
  while (handed + dropped < total) {
    const t = (performance.now() - start) / 1000;
    due = Math.min(total, Math.floor(t * RATE));
    if (due - handed - dropped > BACKLOG) dropped = due - handed - BACKLOG;
    for (let i = 0; i < 64 && handed + dropped < due; i++) {
      transport.deliver(message(next++));
      handed++;
    }
    if (t >= nextSample) {
      const mem = Deno.memoryUsage();
      peak = Math.max(peak, mem.rss);
      const second = Math.floor(t);
      samples.push({ t: second, rss: mem.rss, heap: mem.heapUsed, held: held(second) });
      if (second % 5 === 0) {
        const last = samples[samples.length - 1];
        console.log(
          `| ${second} | ${(last.rss / MIB).toFixed(0)} | ${(last.heap / MIB).toFixed(0)} | ` +
            `${transport.okSent} | ${last.held} |`,
        );
      }
      nextSample = second + 1;
    }
    // Yield: to the answers' microtasks and timers (a macrotask turn).
    await new Promise((resolve) => setTimeout(resolve, handed + dropped < due ? 0 : 2));
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  const cpu = process.cpuUsage(c0);
  const wall = (performance.now() - start) / 1000;
  const most = samples.reduce((a, b) => (b.held > a.held ? b : a));
  console.log(
    `\n${RATE}/s for ${SECONDS} s in process (${wall.toFixed(0)} s wall): ${transport.okSent} ` +
      `answered, ${dropped} dropped (backlog over ${BACKLOG}), CPU ${
        (100 * (cpu.user + cpu.system) / 1e6 / wall).toFixed(0)
      } % of one core; RSS before ${(before / MIB).toFixed(0)} MiB, peak ${
        (peak / MIB).toFixed(0)
      } MiB; most held ${most.held} at second ${most.t}, RSS then ${
        (most.rss / MIB).toFixed(0)
      } MiB (V8 heap ${(most.heap / MIB).toFixed(0)} MiB): ${
        ((most.rss - before) / most.held).toFixed(0)
      } bytes of RSS per held transaction (upper bound)`,
  );
}

if (RATE > 0) {
  // No warm-up: its transactions would be held too, and its heap growth counted.
  await sustained();
  await ua.close();
  Deno.exit(0);
}
{
  // The cold start: the first 20,000 MESSAGEs of the process (its warm-up).
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await round(20_000);
  const c1 = process.cpuUsage(c0);
  console.log(
    `cold start (first 20,000): ${((c1.user + c1.system) / 20_000).toFixed(1)} µs CPU/MESSAGE, ` +
      `${(1000 * (performance.now() - t0) / 20_000).toFixed(1)} µs wall`,
  );
}
const results: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const lines0 = lines;
  const ok0 = transport.okSent;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await round(COUNT);
  const c1 = process.cpuUsage(c0);
  const wall = performance.now() - t0;
  const got = transport.okSent - ok0;
  if (got !== COUNT || lines - lines0 !== COUNT) {
    throw new Error(`round ${r}: ${got} answers, ${lines - lines0} lines for ${COUNT}`);
  }
  const us = (c1.user + c1.system) / COUNT;
  results.push(us);
  console.log(
    `round ${r + 1}: ${us.toFixed(1)} µs CPU/MESSAGE, ${(1000 * wall / COUNT).toFixed(1)} µs wall`,
  );
}
results.sort((a, b) => a - b);
console.log(`median ${results[results.length >> 1].toFixed(1)} µs CPU per MESSAGE`);
await ua.close();
Deno.exit(0);
