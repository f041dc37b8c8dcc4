/**
 * Mobility hand-off benchmark (issue 9): how long after the host's address
 * changes the registrar holds the new binding, and the first NOTIFY reaches
 * the new address.
 *
 * Set-up (network namespaces created here, removed at the end; needs root):
 * a mobile host namespace and a server namespace joined by veth pairs
 * (`tests/peers/mobility_net.ts`). The server namespace runs Kamailio (the
 * registrar, with digest authentication) and `sipkit notify` for bob; the
 * mobile host runs `sipkit register --roam` for alice and `sipkit watch
 * --roam` of bob. Each move adds a new address to the link and removes the
 * old one (the new one is promoted: promote_secondaries), 10 moves per run.
 *
 * Times come from the kernel: tshark in the mobile namespace stamps each
 * packet; the change is stamped just before `ip addr del` runs. Measured:
 * - binding: change -> the registrar's 200 to the REGISTER that binds the
 *   new contact (the binding exists from then on);
 * - notify: change -> the first NOTIFY that arrives at the new address;
 * - address_changed: change -> the event `register --roam` writes (the
 *   address monitor's part: netlink, debounce, route lookup; its clock).
 *
 * The peer, side by side in the same run: the same sipkit with the address
 * monitor polling every 10 ms (`--poll 10`, the thesis's approach) instead of
 * listening to netlink. Ratios are netlink / poll.
 *
 * Run: `deno run -A --config bench/deno.json bench/mobility_handoff.ts [--moves 10] [--no-call]`
 * (part of `deno task bench`).
 *
 * @module
 */

import { type SipkitProcess, spawnSipkit } from "../tests/_sipkit_process.ts";
import { type Kamailio, startKamailio } from "../tests/peers/kamailio.ts";
import {
  createMobilityNet,
  type MobilityNet,
  SERVER_ADDRESS,
} from "../tests/peers/mobility_net.ts";
import { netnsUnavailable } from "../tests/peers/netns.ts";
import { findBinary } from "../tests/peers/require.ts";

const movesArg = Deno.args.indexOf("--moves");
const MOVES = movesArg >= 0 ? Number(Deno.args[movesArg + 1]) : 10;
/** `--no-call`: only the registration and subscription moves (a shorter run). */
const NO_CALL = Deno.args.includes("--no-call");

interface Packet {
  at: number; // ms since epoch (kernel timestamp)
  src: string;
  dst: string;
  method: string;
  status: string;
  cseqMethod: string;
}

/** tshark in a namespace, one line per SIP packet. */
function capture(netns: string): { packets: Packet[]; stop: () => Promise<void> } {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      netns,
      "tshark",
      "-l",
      "-n",
      "-i",
      "any",
      "-f",
      "udp",
      "-d",
      "udp.port==5090,sip",
      "-Y",
      "sip",
      "-T",
      "fields",
      "-E",
      "separator=|",
      "-e",
      "frame.time_epoch",
      "-e",
      "ip.src",
      "-e",
      "ip.dst",
      "-e",
      "sip.Method",
      "-e",
      "sip.Status-Code",
      "-e",
      "sip.CSeq.method",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const packets: Packet[] = [];
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const line of lines) {
        const [t, src, dst, method, status, cseqMethod] = line.split("|");
        if (!t) continue;
        packets.push({ at: Number(t) * 1000, src, dst, method, status, cseqMethod });
      }
    }
  })();
  return {
    packets,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await reading.catch(() => {});
    },
  };
}

async function waitFor<T>(fn: () => T | undefined, ms: number): Promise<T | undefined> {
  const end = performance.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (performance.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 5));
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

interface Result {
  binding: number[];
  notify: number[];
  /** Change -> `address_changed` written by `register --roam` (its clock, ms resolution). */
  detected: number[];
  missed: number;
}

async function runMode(
  net: MobilityNet,
  k: Kamailio,
  env: Record<string, string>,
  extra: string[],
): Promise<Result> {
  const procs: SipkitProcess[] = [];
  const tap = capture(net.mobile);
  const result: Result = { binding: [], notify: [], detected: [], missed: 0 };
  try {
    const reg = spawnSipkit(
      ["register", "-u", "alice@example.test", "--registrar", k.uri, "--roam", ...extra],
      { netns: net.mobile, env: { ...env, SIPKIT_PASSWORD: "alice-secret" }, stdin: false },
    );
    procs.push(reg);
    const watch = spawnSipkit(
      [
        "watch",
        "-u",
        "alice@example.test",
        `sip:bob@${SERVER_ADDRESS}:5090`,
        "--roam",
        "--toward",
        SERVER_ADDRESS,
        ...extra,
      ],
      { netns: net.mobile, env, stdin: false },
    );
    procs.push(watch);
    await reg.waitEvent((e) => e.type === "registered", { timeout: 15000 });
    await watch.waitEvent((e) => e.type === "presence", { timeout: 15000 });
    await new Promise((r) => setTimeout(r, 1500)); // tshark is up
    let current = (await net.addresses()).ma[0];
    for (let i = 0; i < MOVES; i++) {
      const next = current === "10.77.1.2" ? "10.77.1.3" : "10.77.1.2";
      await net.inMobile(["addr", "add", `${next}/24`, "dev", "ma"]);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await net.inMobile(["addr", "del", `${current}/24`, "dev", "ma"]);
      const bound = await waitFor(
        () =>
          tap.packets.find((p) =>
            p.at >= t0 && p.dst === next && p.status === "200" && p.cseqMethod === "REGISTER"
          ),
        5000,
      );
      const notified = await waitFor(
        () => tap.packets.find((p) => p.at >= t0 && p.dst === next && p.method === "NOTIFY"),
        5000,
      );
      const seen = reg.events.find((e) =>
        e.type === "address_changed" && e.new === next && Date.parse(e.time) >= t0
      );
      if (seen) result.detected.push(Date.parse(seen.time) - t0);
      if (bound) result.binding.push(bound.at - t0);
      if (notified) result.notify.push(notified.at - t0);
      if (!bound || !notified) result.missed++;
      if (Deno.env.get("BENCH_DEBUG")) {
        for (const p of tap.packets.filter((p) => p.at >= t0 - 200)) {
          console.error((p.at - t0).toFixed(1), p.src, p.dst, p.method, p.status, p.cseqMethod);
        }
      }
      current = next;
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    for (const p of procs) await p.stop();
    await tap.stop();
  }
  return result;
}

/** tshark in a namespace: every UDP datagram to `host` (time, source, destination port). */
function captureUdp(
  netns: string,
  host: string,
): { packets: { at: number; src: string; port: number }[]; stop: () => Promise<void> } {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      netns,
      "tshark",
      "-l",
      "-n",
      "-i",
      "any",
      "-f",
      `udp and dst host ${host}`,
      "-T",
      "fields",
      "-E",
      "separator=|",
      "-e",
      "frame.time_epoch",
      "-e",
      "ip.src",
      "-e",
      "udp.dstport",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const packets: { at: number; src: string; port: number }[] = [];
  const reading = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const line of lines) {
        const [t, src, port] = line.split("|");
        if (t) packets.push({ at: Number(t) * 1000, src, port: Number(port) });
      }
    }
  })();
  return {
    packets,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await reading.catch(() => {});
    },
  };
}

interface CallResult {
  firstRtp: number[];
  gap: number[];
  missed: number;
}

/**
 * A call between alice (mobile host, `call --answer --roam`) and bob (server
 * namespace) with tones both ways; alice moves `MOVES` times. At bob: the
 * first RTP packet from alice's new address after each change, and the
 * longest interval between RTP packets around it (the media gap).
 */
async function runCall(
  net: MobilityNet,
  env: Record<string, string>,
  extra: string[],
): Promise<CallResult> {
  const procs: SipkitProcess[] = [];
  const result: CallResult = { firstRtp: [], gap: [], missed: 0 };
  let tap: ReturnType<typeof captureUdp> | undefined;
  try {
    const alice = spawnSipkit(
      [
        "call",
        "--answer",
        "-u",
        "alice@example.test",
        "--bind",
        "0.0.0.0:5080",
        "--roam",
        "--toward",
        SERVER_ADDRESS,
        "--auto-answer",
        "--tone",
        "1000",
        "--no-audio",
        ...extra,
      ].filter((a) => a !== "--no-audio"),
      { netns: net.mobile, env, stdin: false },
    );
    procs.push(alice);
    await alice.waitEvent((e) => e.type === "listening");
    let current = (await net.addresses()).ma[0];
    const bob = spawnSipkit([
      "call",
      "-u",
      "bob@example.test",
      "--bind",
      `${SERVER_ADDRESS}:5094`,
      `sip:alice@${current}:5080`,
      "--tone",
      "440",
    ], { netns: net.server, env, stdin: false });
    procs.push(bob);
    const media = await bob.waitEvent((e) => e.type === "media", { timeout: 15000 });
    const rtpPort = Number(String(media.local_rtp).split(":").pop());
    tap = captureUdp(net.server, SERVER_ADDRESS);
    await new Promise((r) => setTimeout(r, 1500));
    for (let i = 0; i < MOVES; i++) {
      const next = current === "10.77.1.2" ? "10.77.1.3" : "10.77.1.2";
      await net.inMobile(["addr", "add", `${next}/24`, "dev", "ma"]);
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await net.inMobile(["addr", "del", `${current}/24`, "dev", "ma"]);
      const first = await waitFor(
        () => tap!.packets.find((p) => p.at >= t0 && p.src === next && p.port === rtpPort),
        5000,
      );
      await new Promise((r) => setTimeout(r, 300));
      const rtp = tap.packets.filter((p) =>
        p.port === rtpPort && p.at >= t0 - 200 && p.at <= t0 + 1500
      );
      let gap = 0;
      for (let j = 1; j < rtp.length; j++) gap = Math.max(gap, rtp[j].at - rtp[j - 1].at);
      if (first) {
        result.firstRtp.push(first.at - t0);
        result.gap.push(gap);
      } else result.missed++;
      current = next;
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    for (const p of procs) await p.stop();
    await tap?.stop();
  }
  return result;
}

function summary(values: number[]): { median: number; p95: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), p95: quantile(sorted, 0.95) };
}

const why = netnsUnavailable() ??
  (!findBinary("kamailio")
    ? "kamailio is not installed"
    : !findBinary("tshark")
    ? "tshark is not installed"
    : undefined);
if (why) {
  console.log(`mobility hand-off: skipped (${why})`);
  Deno.exit(0);
}

const net = await createMobilityNet();
const dir = await Deno.makeTempDir({ prefix: "sipkit-bench-mobility-" });
let k: Kamailio | undefined;
let bob: SipkitProcess | undefined;
try {
  k = await startKamailio({ netns: net.server, host: SERVER_ADDRESS });
  const env = { SIPKIT_CONFIG_DIR: `${dir}/config`, SIPKIT_STATE_DIR: `${dir}/state` };
  bob = spawnSipkit([
    "notify",
    "-u",
    "bob@example.test",
    "--bind",
    `${SERVER_ADDRESS}:5090`,
    "--unknown",
    "accept",
  ], { netns: net.server, env, stdin: false });
  await bob.waitEvent((e) => e.type === "listening");
  const netlink = await runMode(net, k, env, []);
  const poll = await runMode(net, k, env, ["--poll", "10"]);
  const rows = [
    ["netlink (sipkit default)", netlink],
    ["poll every 10 ms (thesis)", poll],
  ] as const;
  console.log(`mobility hand-off, ${MOVES} moves each (ms from the address change):`);
  for (const [name, r] of rows) {
    const b = summary(r.binding);
    const n = summary(r.notify);
    const d = summary(r.detected);
    console.log(
      `  ${name.padEnd(26)} new binding median ${b.median.toFixed(1)} p95 ${
        b.p95.toFixed(1)
      } | first NOTIFY at the new address median ${n.median.toFixed(1)} p95 ${n.p95.toFixed(1)}${
        r.missed ? ` | ${r.missed} moves missed` : ""
      } | address_changed at the mobile host median ${d.median.toFixed(0)} p95 ${d.p95.toFixed(0)}`,
    );
  }
  const callNetlink = NO_CALL ? undefined : await runCall(net, env, []);
  const callPoll = NO_CALL ? undefined : await runCall(net, env, ["--poll", "10"]);
  for (
    const [name, r] of [["netlink (sipkit default)", callNetlink], [
      "poll every 10 ms (thesis)",
      callPoll,
    ]] as const
  ) {
    if (!r) continue;
    const f = summary(r.firstRtp);
    const g = summary(r.gap);
    console.log(
      `  call, ${name.padEnd(26)} first RTP from the new address median ${
        f.median.toFixed(1)
      } p95 ${f.p95.toFixed(1)} | media gap at the peer median ${g.median.toFixed(1)} p95 ${
        g.p95.toFixed(1)
      }${r.missed ? ` | ${r.missed} moves missed` : ""}`,
    );
  }
  const rb = summary(netlink.binding).median / summary(poll.binding).median;
  const rn = summary(netlink.notify).median / summary(poll.notify).median;
  console.log(
    `  ratio netlink/poll: binding ${rb.toFixed(2)}x, NOTIFY ${rn.toFixed(2)}x; ` +
      `target: new binding < 200 ms (median ${summary(netlink.binding).median.toFixed(1)} ms: ${
        summary(netlink.binding).median < 200 ? "met" : "NOT met"
      })`,
  );
} finally {
  await bob?.stop();
  await k?.stop();
  await net.destroy();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
