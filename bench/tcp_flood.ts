/**
 * Benchmark: `sipkit message --listen` under a TCP flood on 127.0.0.1:
 * `--connections` connections (default 5,000), each sending `--bytes`
 * (default 60,000) of a header that never ends, then nothing. Measured twice
 * in the same run: with the default stream limits, and with the limits
 * lifted (`--tcp-max-connections 1000000 --tcp-max-buffered 2^40
 * --tcp-message-timeout 0`, which is how sipkit behaved before it had any).
 * For each: the listener's resident memory (VmRSS, peak VmHWM) before, while
 * the flood holds and after the incomplete-message timeout, whether UDP
 * OPTIONS were answered during the flood, and how many flood connections the
 * listener closed. Needs `ulimit -n` above the connection count. Loopback
 * only; stops by itself.
 *
 *     deno run -A bench/tcp_flood.ts [--connections 5000] [--bytes 60000]
 *
 * @module
 */

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    console.error(`tcp_flood: --${name} must be a positive integer`);
    Deno.exit(2);
  }
  return n;
}

const CONNECTIONS = arg("connections", 5000);
const BYTES = arg("bytes", 60_000);
const MIB = 1024 * 1024;

function memory(pid: number): { rss: number; hwm: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}

async function startListener(extra: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-tcpflood-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      CONFIG,
      MAIN,
      "message",
      "--listen",
      "--quiet",
      "--bind",
      "127.0.0.1:0",
      "-u",
      "bob@example.test",
      ...extra,
    ],
    env: { SIPKIT_CONFIG_DIR: `${dir}/c`, SIPKIT_STATE_DIR: `${dir}/s`, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes('"listening"')) {
    const { value, done } = await reader.read();
    if (done) throw new Error("listener exited before listening");
    text += dec.decode(value);
  }
  // Keep draining stdout so the listener never blocks on it.
  const drain = (async () => {
    while (!(await reader.read()).done) { /* events are not needed */ }
  })();
  const port = Number(/"address":"127\.0\.0\.1:(\d+)"/.exec(text)?.[1]);
  return {
    pid: child.pid,
    port,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await drain.catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

async function udpOptions(port: number): Promise<boolean> {
  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const local = udp.addr as Deno.NetAddr;
    const branch = crypto.randomUUID().slice(0, 8);
    const req = [
      "OPTIONS sip:bob@127.0.0.1 SIP/2.0",
      `Via: SIP/2.0/UDP 127.0.0.1:${local.port};branch=z9hG4bK${branch};rport`,
      "Max-Forwards: 70",
      `From: <sip:probe@127.0.0.1>;tag=${branch}`,
      "To: <sip:bob@127.0.0.1>",
      `Call-ID: ${branch}@bench`,
      "CSeq: 1 OPTIONS",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
    await udp.send(enc.encode(req), { transport: "udp", hostname: "127.0.0.1", port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      udp.receive(),
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), 5000)),
    ]).finally(() => clearTimeout(timer));
    return got !== "timeout" && dec.decode(got[0]).startsWith("SIP/2.0 200");
  } finally {
    udp.close();
  }
}

interface Result {
  label: string;
  before: number;
  during: number;
  after: number;
  peak: number;
  optionsDuring: boolean;
  closedEarly: number;
  closedTotal: number;
  seconds: number;
}

async function flood(label: string, extra: string[], waitAfter: number): Promise<Result> {
  const listener = await startListener(extra);
  const conns: Deno.TcpConn[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500));
    const before = memory(listener.pid).rss;
    const start = performance.now();
    const head = `MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nX-Pad: `;
    const payload = enc.encode(head + "a".repeat(Math.max(0, BYTES - head.length)));
    let closed = 0;
    const watchers: Promise<void>[] = [];
    // Connect in batches (the accept backlog is finite), then write.
    for (let i = 0; i < CONNECTIONS; i += 200) {
      const batch = await Promise.all(
        Array.from(
          { length: Math.min(200, CONNECTIONS - i) },
          () => Deno.connect({ hostname: "127.0.0.1", port: listener.port }).catch(() => null),
        ),
      );
      for (const conn of batch) {
        if (!conn) {
          closed++;
          continue;
        }
        conns.push(conn);
        watchers.push((async () => {
          try {
            await conn.write(payload);
            const buf = new Uint8Array(256);
            while (await conn.read(buf) !== null) { /* nothing expected */ }
          } catch { /* reset */ }
          closed++;
        })());
      }
    }
    await new Promise((r) => setTimeout(r, 2000));
    const during = memory(listener.pid).rss;
    const optionsDuring = await udpOptions(listener.port);
    const closedEarly = closed;
    await new Promise((r) => setTimeout(r, waitAfter));
    const after = memory(listener.pid).rss;
    const peak = memory(listener.pid).hwm;
    return {
      label,
      before,
      during,
      after,
      peak,
      optionsDuring,
      closedEarly,
      closedTotal: closed,
      seconds: (performance.now() - start) / 1000,
    };
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await listener.stop();
  }
}

function mib(n: number): string {
  return (n / MIB).toFixed(0);
}

/** The soft limit on open files of this process (Linux), or undefined. */
function openFileLimit(): number | undefined {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\d+)/m.exec(limits);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<number> {
  const limit = openFileLimit();
  if (limit !== undefined && limit < CONNECTIONS + 200) {
    console.error(
      `tcp_flood: skipped: ${CONNECTIONS} connections need more open files than the limit of ` +
        `${limit} (raise it with ulimit -n ${CONNECTIONS + 1000}, or pass --connections)`,
    );
    return 0;
  }
  console.log(
    `TCP flood: ${CONNECTIONS.toLocaleString("en-US")} connections to message --listen on ` +
      `127.0.0.1, each sending ${BYTES.toLocaleString("en-US")} bytes of an unfinished header`,
  );
  const rows = [
    await flood("default limits", [], 10_000),
    await flood("limits lifted (as before)", [
      "--tcp-max-connections",
      "1000000",
      "--tcp-max-buffered",
      String(2 ** 40),
      "--tcp-message-timeout",
      "0",
    ], 1000),
  ];
  console.log(
    "| listener | RSS before MiB | during MiB | after MiB | peak MiB | UDP OPTIONS during | flood connections closed (2 s / end) |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | --- | ---: |");
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${mib(r.before)} | ${mib(r.during)} | ${mib(r.after)} | ${mib(r.peak)} | ` +
        `${r.optionsDuring ? "answered" : "NOT answered"} | ${r.closedEarly} / ${r.closedTotal} |`,
    );
  }
  const ok = rows[0].optionsDuring && rows[1].optionsDuring;
  console.log(
    `\nwith the default limits: peak ${mib(rows[0].peak)} MiB (target < 150), ` +
      `UDP ${rows[0].optionsDuring ? "served" : "NOT served"}; limits lifted: peak ` +
      `${mib(rows[1].peak)} MiB${rows[0].peak < 150 * MIB ? "" : " (TARGET MISSED)"}`,
  );
  // Memory over the target is a result; a listener that stops answering is a failure.
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
