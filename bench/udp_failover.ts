/**
 * How long a dead UDP server costs (issue 8 section 6), side by side in one
 * run: sipkit as it runs now (`--allow-ffi`: ICMP port unreachable heard,
 * RFC 3261 18.4) against sipkit without `--allow-ffi` (the behaviour before:
 * timer F, 32 s).
 *
 * 1. `sipkit message` to a UDP port on 127.0.0.1 where nothing listens.
 * 2. As root, with dnsmasq (dnsmasq-base) and iproute2: `sipkit register
 *    --once` in a network namespace whose DNS (dnsmasq) lists two SRV targets,
 *    the first a dead UDP port, the second a live registrar
 *    (tests/peers/mini_registrar.ts).
 *
 * Wall time of each command from spawn to exit, median of `--runs` (default
 * 3) with FFI, one run without (it takes 32 s).
 *
 *     deno run -A --config bench/deno.json bench/udp_failover.ts [--runs 3]
 */

import { createNetns, netnsUnavailable } from "../tests/peers/netns.ts";
import { findBinary } from "../tests/peers/require.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = `${ROOT}cli/main.ts`;
const CONFIG = `${ROOT}deno.json`;
const REGISTRAR = `${ROOT}tests/peers/mini_registrar.ts`;
const WITH_FFI = ["-A"];
const WITHOUT_FFI = [
  "--allow-net",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
  "--allow-write",
  "--allow-run",
];

const runsArg = Deno.args.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(Deno.args[runsArg + 1]) : 3;

interface Timed {
  ms: number;
  code: number;
  last: string;
}

async function timed(prefix: string[], perms: string[], args: string[]): Promise<Timed> {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-bench-" });
  const argv = [...prefix, Deno.execPath(), "run", ...perms, "--config", CONFIG, MAIN, ...args];
  const started = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: { SIPKIT_CONFIG_DIR: `${dir}/c`, SIPKIT_STATE_DIR: `${dir}/s`, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  await Deno.remove(dir, { recursive: true });
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return { ms, code: out.code, last: lines.at(-1) ?? "" };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function compare(name: string, prefix: string[], args: string[]): Promise<void> {
  const now: Timed[] = [];
  for (let i = 0; i < RUNS; i++) now.push(await timed(prefix, WITH_FFI, args));
  const before = await timed(prefix, WITHOUT_FFI, args);
  const m = median(now.map((t) => t.ms));
  console.log(`\n${name}`);
  console.log(
    `  with --allow-ffi (ICMP heard): median ${m.toFixed(0)} ms of ${RUNS}, exit ${
      now.map((t) => t.code).join("/")
    }\n    ${now[0].last}`,
  );
  console.log(
    `  without (timer F):             ${
      before.ms.toFixed(0)
    } ms, exit ${before.code}\n    ${before.last}`,
  );
  console.log(`  ratio: ${(before.ms / m).toFixed(1)}x faster`);
}

function closedUdpPort(host: string): number {
  const s = Deno.listenDatagram({ transport: "udp", hostname: host, port: 0 });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

async function waitForOutput(child: Deno.ChildProcess, pattern: RegExp): Promise<void> {
  let text = "";
  const dec = new TextDecoder();
  const reader = child.stdout.getReader();
  const deadline = Date.now() + 20_000;
  while (!pattern.test(text)) {
    if (Date.now() > deadline) throw new Error(`no ${pattern} in: ${text}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`exited before ${pattern}: ${text}`);
    text += dec.decode(value);
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
}

await compare(
  "1. sipkit message to a closed UDP port on 127.0.0.1",
  [],
  ["message", "-u", "alice@example.test", `sip:nobody@127.0.0.1:${closedUdpPort("127.0.0.1")}`]
    .concat(["hi", "--transport", "udp", "-q"]),
);

const why = netnsUnavailable() ?? (findBinary("dnsmasq") ? undefined : "dnsmasq is missing");
if (why) {
  console.log(`\n2. register --once with a dead first SRV target: skipped (${why})`);
} else {
  const ns = await createNetns("bench");
  const children: Deno.ChildProcess[] = [];
  const tmp = await Deno.makeTempDir({ prefix: "sipkit-bench-dns-" });
  try {
    await ns.writeResolvConf("nameserver 127.0.0.1\n");
    const spawn = (args: string[]) => {
      const argv = ns.exec(args);
      const child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      children.push(child);
      return child;
    };
    const dns = spawn([
      "dnsmasq",
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      `--pid-file=${tmp}/dnsmasq.pid`,
      "--log-facility=-",
      "--local=/example.test/",
      "--naptr-record=example.test,10,10,S,SIP+D2U,,_sip._udp.example.test",
      "--srv-host=_sip._udp.example.test,dead.example.test,5070,10,0",
      "--srv-host=_sip._udp.example.test,live.example.test,5080,20,0",
      "--host-record=dead.example.test,127.0.0.2",
      "--host-record=live.example.test,127.0.0.1",
    ]);
    dns.stdout.cancel().catch(() => {});
    const registrar = spawn([
      Deno.execPath(),
      "run",
      "-A",
      "--config",
      CONFIG,
      REGISTRAR,
      "127.0.0.1:5080",
    ]);
    await waitForOutput(registrar, /"type":"listening"/);
    await compare(
      "2. register --once, first SRV target a dead UDP port, second live (dnsmasq, network namespace)",
      ns.exec([]),
      ["register", "-u", "alice@example.test", "--registrar", "sip:example.test", "--once", "-q"],
    );
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
      await c.status;
    }
    await ns.remove();
    await Deno.remove(tmp, { recursive: true });
  }
}
