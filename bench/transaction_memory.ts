/**
 * Benchmark: what a MESSAGE that `message --listen` has answered over UDP
 * costs in memory while timer J keeps it (RFC 3261 17.2.2: 64*T1 = 32 s).
 * A UserAgent with a MessageListener on the in-memory loop network (UDP
 * semantics) takes `--count` MESSAGEs (default 50,000, each with its own
 * branch, Call-ID and a 20-byte body, the size sipp sends) from a raw
 * socket; after a full garbage collection the growth of the V8 heap (and of
 * external memory: ArrayBuffers) divided by the count is the cost of one
 * completed transaction, duplicate memory included (the listener remembers
 * the last 10,000 keys). Run with `--v8-flags=--expose-gc`.
 *
 *     deno run -A --v8-flags=--expose-gc --config bench/deno.json bench/transaction_memory.ts [--count 50000]
 *
 * @module
 */

import { MessageListener } from "../lib/im/message.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { UserAgent } from "../lib/sip/ua.ts";

const i = Deno.args.indexOf("--count");
const COUNT = i >= 0 ? Number(Deno.args[i + 1]) : 50_000;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error("transaction_memory: run with --v8-flags=--expose-gc");
  Deno.exit(2);
}

function used(): number {
  for (let n = 0; n < 3; n++) gc!();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

const net = new LoopNetwork();
const bob = await UserAgent.create({
  aor: "bob@example.test",
  transports: [net.transport({ host: "192.0.2.2", port: 5060 })],
});
let events = 0;
new MessageListener(bob, { onMessage: () => void events++ });
const sender = net.transport({ host: "192.0.2.1", port: 5070 });
sender.onMessage(() => {});
const enc = new TextEncoder();

function message(n: number): Uint8Array {
  const body = `sipp message ${n}\r\n`;
  return enc.encode(
    "MESSAGE sip:bob@192.0.2.2:5060 SIP/2.0\r\n" +
      `Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-4242-${n}-0;rport\r\n` +
      "Max-Forwards: 70\r\n" +
      `From: <sip:sipp@192.0.2.1:5070>;tag=4242SIPpTag00${n}\r\n` +
      "To: <sip:bob@192.0.2.2:5060>\r\n" +
      `Call-ID: ${n}-4242@192.0.2.1\r\n` +
      "CSeq: 1 MESSAGE\r\n" +
      "Content-Type: text/plain;charset=UTF-8\r\n" +
      `Content-Length: ${body.length}\r\n\r\n${body}`,
  );
}

// Warm up (JIT, maps) with messages whose transactions are then forgotten.
for (let n = 0; n < 2000; n++) {
  await sender.send(message(1e9 + n), bob.transports[0].local);
}
await net.settled();
net.packets.length = 0;
await new Promise((r) => setTimeout(r, 50));
const base = used();
const baseServers = bob.transactions.serverCount;
for (let n = 0; n < COUNT; n++) {
  await sender.send(message(n), bob.transports[0].local);
  if (n % 1000 === 999) {
    await net.settled();
    // The loop network records every packet for tests: not part of the cost.
    net.packets.length = 0;
  }
}
await net.settled();
net.packets.length = 0;
await new Promise((r) => setTimeout(r, 50));
const after = used();
const kept = bob.transactions.serverCount - baseServers;
console.log(
  `${COUNT.toLocaleString("en-US")} MESSAGEs answered, ${events.toLocaleString("en-US")} events, ` +
    `${kept.toLocaleString("en-US")} transactions in timer J: ` +
    `${Math.round((after - base) / COUNT)} bytes each (V8 heap + external, after GC)`,
);
await bob.close();
await sender.close();
Deno.exit(0);
