/**
 * Benchmark: start-up of one-shot `sipkit` commands against a Deno script
 * that only imports commander (bench/_startup_hello.ts), in the same run.
 *
 * sipkit runs in two forms: installed, that is the bundle that `deno task
 * build` makes (tools/build.ts; built here into a temporary directory at the
 * start), which README's install runs; and from source, `cli/main.ts`.
 * Each round runs, in turn: the hello script with `--version`, then for each
 * form `sipkit --version`, `sipkit message <to> <body> --help`, a one-shot
 * `sipkit message` to a `sipkit message --listen` on 127.0.0.1 (started once,
 * before the rounds), and the cron job of README, `sipkit notify --publish
 * --status online --once`, answered by sipp (tests/sipp/publish_uas.xml, also
 * started once; Debian `sip-tester`). Every process is `deno run -A --config deno.json`, the
 * way `deno task` and the README run sipkit, timed by bash's `time`: wall
 * time, and CPU time (user + system, steadier when the machine is busy).
 * Medians of `--runs` rounds (default 15, after one warm-up round that fills
 * Deno's caches), and their ratios to the hello script's medians.
 * Target: each ratio at most 1.3 (issue 8 names `--version`, `--help` and the
 * one-shot `message`; the `notify` row is reported without a target). Exits 1
 * when a command failed or the listener did not print every message sent.
 *
 * `--before <dir>` adds the same commands run from another checkout (e.g.
 * `git archive <commit> | tar -x -C <dir>`, with its own deno.json) from
 * source, and as its bundle when it has tools/build.ts, interleaved in the
 * same rounds: before and after from one run.
 *
 *     deno run -A --config bench/deno.json bench/startup.ts [--runs 15] [--before <dir>]
 *
 * @module
 */

import { spawnSipkit } from "../tests/_sipkit_process.ts";
import { startSipp } from "../tests/peers/sipp.ts";
import { build } from "../tools/build.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const HELLO = new URL("./_startup_hello.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The target ratio of issue 8 section 3. */
export const STARTUP_TARGET = 1.3;
/** The label of the cron case, which issue 8 gives no target. */
const CRON = "notify --publish --once (cron, no target)";

function runsArg(): number {
  const i = Deno.args.indexOf("--runs");
  if (i < 0) return 15;
  const n = Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n <= 0) {
    console.error("startup: --runs must be a positive integer");
    Deno.exit(2);
  }
  return n;
}

/** `--before <dir>`: a checkout whose cli/main.ts and deno.json are compared too. */
function beforeArg(): string | undefined {
  const i = Deno.args.indexOf("--before");
  if (i < 0) return undefined;
  const dir = Deno.args[i + 1]?.replace(/\/+$/, "");
  try {
    Deno.statSync(`${dir}/cli/main.ts`);
    Deno.statSync(`${dir}/deno.json`);
  } catch {
    console.error("startup: --before needs a checkout with cli/main.ts and deno.json");
    Deno.exit(2);
  }
  return dir;
}

/** Wall and CPU (user + system) milliseconds of one process. */
interface Timing {
  wall: number;
  cpu: number;
}

/**
 * Runs `deno run -A --config <config> <args>` once under bash's `time`
 * (wall time, and the CPU time the process used: steadier than wall time on
 * a busy machine).
 */
async function timeRun(
  name: string,
  config: string,
  args: string[],
  env: Record<string, string>,
): Promise<Timing> {
  const errFile = await Deno.makeTempFile({ prefix: `sipkit_startup_${Deno.pid}_` });
  try {
    const out = await new Deno.Command("bash", {
      args: [
        "-c",
        'TIMEFORMAT="%3R %3U %3S"; time "$@" >/dev/null 2>"$ERR"',
        "--",
        Deno.execPath(),
        "run",
        "-A",
        "--config",
        config,
        ...args,
      ],
      env: { ...env, ERR: errFile },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.code !== 0) {
      throw new Error(
        `${name} exited ${out.code}: ${(await Deno.readTextFile(errFile)).slice(0, 2000)}`,
      );
    }
    const [real, user, sys] = new TextDecoder().decode(out.stderr).trim().split(/\s+/).slice(-3)
      .map(Number);
    return { wall: real * 1000, cpu: (user + sys) * 1000 };
  } finally {
    await Deno.remove(errFile);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Builds the bundle of the checkout at `root` (with its own tools/build.ts)
 * into a new directory listed in `dirs`, and answers its `main.js`; undefined
 * when that checkout has no tools/build.ts.
 */
async function bundleOf(root: string, dirs: string[]): Promise<string | undefined> {
  try {
    Deno.statSync(`${root}/tools/build.ts`);
  } catch {
    return undefined;
  }
  const dir = await Deno.makeTempDir({ prefix: `sipkit_startup_bundle_${Deno.pid}_` });
  dirs.push(dir);
  if (root === ROOT) await build(`${dir}/dist`);
  else {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${root}/tools/build.ts`, "--outdir", `${dir}/dist`],
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`the bundle of ${root} failed`);
  }
  return `${dir}/dist/main.js`;
}

async function main(): Promise<number> {
  const runs = runsArg();
  const tempDirs: string[] = [];
  // sipkit's config and state directories, private to this run: no config of
  // the user's is read, and the cron job's publication state (its entity tag,
  // so that each run after the warm-up round is a refresh, as in a real cron
  // job) is not the user's either.
  const dirsRoot = await Deno.makeTempDir({ prefix: `sipkit_startup_dirs_${Deno.pid}_` });
  tempDirs.push(dirsRoot);
  const dirs = {
    SIPKIT_CONFIG_DIR: `${dirsRoot}/config`,
    SIPKIT_STATE_DIR: `${dirsRoot}/state`,
  };
  const listener = spawnSipkit(
    [
      "message",
      "--listen",
      "--bind",
      "127.0.0.1:0",
      "-u",
      "bob@127.0.0.1",
      "--quiet",
    ],
    { name: "listener", stdin: false, env: dirs },
  );
  let presence: Awaited<ReturnType<typeof startSipp>> | undefined;
  try {
    presence = await startSipp({ scenario: "publish_uas.xml", timeout: 3600 });
    const publishTo = `sip:${presence.address}`;
    const listening = await listener.waitEvent((e) => e.type === "listening", {
      timeout: 30_000,
    });
    const to = String(listening.contact);
    const sipkit = (label: string, main: string, config: string): [string, string, string[]][] => [
      [`${label} --version`, config, [main, "--version"]],
      [`${label} message <to> <body> --help`, config, [main, "message", to, "hi", "--help"]],
      [
        `${label} message <to> <body> (one-shot, 200 OK)`,
        config,
        [main, "message", "-u", "alice@127.0.0.1", "--quiet", to, "hi"],
      ],
      [
        `${label} ${CRON}`,
        config,
        [
          main,
          "notify",
          "--publish",
          "--status",
          "online",
          "--once",
          "-u",
          "alice@127.0.0.1",
          "--proxy",
          publishTo,
          "--quiet",
        ],
      ],
    ];
    const before = beforeArg();
    const beforeBundle = before ? await bundleOf(before, tempDirs) : undefined;
    const cases: [string, string, string[]][] = [
      ["hello script (commander only) --version", CONFIG, [HELLO, "--version"]],
      ...sipkit("sipkit", await bundleOf(ROOT, tempDirs) as string, CONFIG),
      ...sipkit("from source: sipkit", MAIN, CONFIG),
      ...(beforeBundle ? sipkit("before: sipkit", beforeBundle, `${before}/deno.json`) : []),
      ...(before
        ? sipkit("before, from source: sipkit", `${before}/cli/main.ts`, `${before}/deno.json`)
        : []),
    ];
    const loadBefore = Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
    const times = cases.map(() => [] as Timing[]);
    let sent = 0;
    for (let round = 0; round <= runs; round++) {
      for (const [i, [name, config, args]] of cases.entries()) {
        const t = await timeRun(name, config, args, dirs);
        if (name.includes("one-shot")) sent++;
        if (round > 0) times[i].push(t); // round 0 warms the caches
      }
    }
    await listener.waitEvent(
      (e) =>
        e.type === "message" &&
        listener.events.filter((x) => x.type === "message").length === sent,
      { timeout: 10_000, message: `${sent} message events` },
    );
    const wall = times.map((ts) => median(ts.map((t) => t.wall)));
    const cpu = times.map((ts) => median(ts.map((t) => t.cpu)));
    console.log(
      `Start-up, median of ${runs} interleaved runs (deno run -A --config deno.json), ` +
        "wall time and CPU time (user + system) in ms; load average before and after: " +
        `${loadBefore} / ${Deno.loadavg().map((x) => x.toFixed(2)).join(" ")}`,
    );
    console.log("| command | wall | ratio | CPU | ratio | target (wall ratio) |");
    console.log("| --- | ---: | ---: | ---: | ---: | --- |");
    for (const [i, [name]] of cases.entries()) {
      const ratio = wall[i] / wall[0];
      const verdict = i === 0 || name.endsWith(CRON)
        ? ""
        : ratio <= STARTUP_TARGET
        ? `meets <= ${STARTUP_TARGET}`
        : `MISSES <= ${STARTUP_TARGET}`;
      console.log(
        `| ${name} | ${wall[i].toFixed(0)} | ${ratio.toFixed(2)} | ${cpu[i].toFixed(0)} | ${
          (cpu[i] / cpu[0]).toFixed(2)
        } | ${verdict} |`,
      );
    }
    return 0;
  } finally {
    await listener.stop();
    await presence?.stop();
    for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
