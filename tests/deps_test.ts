/**
 * The runtime import map and lock file hold only what sipkit needs to run.
 * Benchmark-only peers (npm `sip`, `drachtio-sip`, `jssip`) live in
 * bench/deno.json with their own lock (bench/deno.lock): Deno initialises
 * every npm package found in a lock file at start-up, so one listed in the
 * root lock would be fetched by `sipkit --version` on a fresh cache, and with
 * no network sipkit would not start at all.
 */
import assert from "node:assert/strict";
import { build } from "../tools/build.ts";

const root = new URL("..", import.meta.url).pathname;
const BENCH_ONLY = ["sip", "drachtio-sip", "jssip"];

interface Config {
  imports: Record<string, string>;
}
interface Lock {
  specifiers?: Record<string, string>;
  npm?: Record<string, unknown>;
}

async function json<T>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(`${root}${path}`)) as T;
}

/** `npm:name@version` → name (scoped names keep their leading `@`). */
function npmName(spec: string): string {
  const bare = spec.replace(/^npm:/, "");
  return bare.slice(0, bare.indexOf("@", 1));
}

Deno.test("the runtime import map and lock hold no benchmark-only package", async () => {
  const config = await json<Config>("deno.json");
  const lock = await json<Lock>("deno.lock");
  const mapped = Object.values(config.imports).map(npmName);
  const locked = [
    ...Object.keys(lock.specifiers ?? {}).map(npmName),
    ...Object.keys(lock.npm ?? {}).map((k) => k.slice(0, k.indexOf("@", 1))),
  ];
  for (const name of BENCH_ONLY) {
    assert.ok(!mapped.includes(name), `deno.json maps ${name}`);
    assert.ok(!locked.includes(name), `deno.lock holds ${name}`);
  }
});

Deno.test("bench/deno.json maps the benchmark peers and pins shared packages at the root's versions", async () => {
  const config = await json<Config>("deno.json");
  const bench = await json<Config>("bench/deno.json");
  for (const name of BENCH_ONLY) assert.ok(bench.imports[name], `bench/deno.json lacks ${name}`);
  for (const [key, target] of Object.entries(bench.imports)) {
    if (key in config.imports) assert.equal(target, config.imports[key], key);
  }
  // Every package the library imports must resolve in the bench config too.
  for (const key of ["@xmldom/xmldom"]) assert.equal(bench.imports[key], config.imports[key]);
});

Deno.test("sipkit --version starts offline from a cache without the benchmark peers, from source and installed", async () => {
  // Make sure the runtime packages are in the real cache (a fresh CI machine).
  const warm = await new Deno.Command(Deno.execPath(), {
    args: ["cache", `${root}cli/main.ts`],
    cwd: root,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(warm.code, 0, new TextDecoder().decode(warm.stderr));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${root}cli/main.ts`],
    cwd: root,
    stdout: "piped",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { kind: string; npmPackage?: string }[];
    npmPackages: Record<string, { name: string; dependencies: string[]; localPath: string }>;
  };
  // The npm packages the module graph reaches, with their dependencies.
  const needed = new Set<string>();
  const visit = (id: string) => {
    if (needed.has(id)) return;
    needed.add(id);
    for (const dep of info.npmPackages[id]?.dependencies ?? []) visit(dep);
  };
  for (const m of info.modules) if (m.kind === "npm" && m.npmPackage) visit(m.npmPackage);
  // Deno also initialises what the runtime import map names (e.g. a package pinned for
  // code still to come), so those count as runtime packages; benchmark peers never do.
  const config = await json<Config>("deno.json");
  const mapped = Object.values(config.imports).map(npmName);
  for (const [id, pkg] of Object.entries(info.npmPackages)) {
    if (mapped.includes(pkg.name) && !BENCH_ONLY.includes(pkg.name)) visit(id);
  }
  assert.ok(needed.size > 0);
  const dir = await Deno.makeTempDir({ prefix: `sipkit_deps_${Deno.pid}_` });
  try {
    for (const id of needed) {
      const pkg = info.npmPackages[id];
      const parent = pkg.localPath.slice(0, pkg.localPath.lastIndexOf("/"));
      const to = `${dir}/npm/registry.npmjs.org/${pkg.name}`;
      await Deno.mkdir(to, { recursive: true });
      await Deno.copyFile(`${parent}/registry.json`, `${to}/registry.json`);
      const cp = await new Deno.Command("cp", { args: ["-r", pkg.localPath, to] }).output();
      assert.equal(cp.code, 0, `copying ${id}`);
    }
    // `deno run --cached-only -A <args>` with only that cache: its stdout.
    const offline = async (args: string[], cwd: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--cached-only", "-A", ...args],
        cwd,
        env: { DENO_DIR: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout);
    };
    const version = await offline([`${root}cli/main.ts`, "--version"], root);
    assert.match(version, /^\d+\.\d+\.\d+/);
    // The installed form (the bundle of `deno task build`) needs no more.
    await build(`${dir}/dist`);
    const main = `${dir}/dist/main.js`;
    assert.equal(await offline(["--config", `${root}deno.json`, main, "--version"], dir), version);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
