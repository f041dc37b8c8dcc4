/**
 * The installable sipkit (`deno task build`, tools/build.ts): the bundle is
 * built into a private directory, then checked against the sources: the
 * same version and help texts, the npm packages left to the import map, and
 * the command tests (real processes over loopback, Kamailio for `register`)
 * run once more against the bundle's `main.js` (`SIPKIT_MAIN`).
 */

import assert from "node:assert/strict";
import { build, BUILD_MARK, importMapKeys } from "../tools/build.ts";
import { VERSION } from "../lib/version.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CONFIG = `${ROOT}deno.json`;
const SOURCE = `${ROOT}cli/main.ts`;

/** The command test files run against the bundle. */
const COMMAND_TESTS = [
  "tests/message_cli_test.ts",
  "tests/presence_cli_test.ts",
  "tests/register_cli_test.ts",
  "tests/call_cli_test.ts",
  "tests/cli_frame_test.ts",
  "tests/cli_lines_test.ts",
];

async function run(main: string, args: string[]): Promise<{ code: number; out: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, main, ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, out: text };
}

Deno.test("deno task build: the bundle runs as the sources do, and passes the command tests", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-bundle-" });
  const outdir = `${dir}/dist`;
  try {
    await build(outdir);
    const main = `${outdir}/main.js`;
    const files = (await Array.fromAsync(Deno.readDir(outdir))).map((e) => e.name);

    await t.step("one entry, chunks with source maps, the npm packages left outside", async () => {
      assert.ok(files.includes("main.js") && files.includes(BUILD_MARK));
      const chunks = files.filter((f) => f.endsWith(".js"));
      assert.ok(chunks.length > 10, `code split into chunks (${chunks.length} files)`);
      const packages = await importMapKeys();
      const imported = new Set<string>();
      for (const f of chunks) {
        assert.ok(files.includes(`${f}.map`), `${f} has a source map`);
        const text = await Deno.readTextFile(`${outdir}/${f}`);
        assert.doesNotMatch(
          text,
          /registry\.npmjs\.org|node_modules/,
          `${f} inlines no npm package`,
        );
        // Static imports and re-exports at line starts; relative ones are chunks.
        for (const m of text.matchAll(/^(?:import|export)\b[^;"]*?(?:from\s*)?"([^"]+)";/gm)) {
          if (!m[1].startsWith(".")) imported.add(m[1]);
        }
      }
      for (const name of imported) {
        assert.ok(
          name.startsWith("node:") || packages.includes(name),
          `${name} is a Node built-in or an import-map name`,
        );
      }
      assert.ok(imported.has("@commander-js/extra-typings"));
    });

    await t.step("a rebuild keeps the previous build's files and prunes older ones", async () => {
      const names = async () =>
        (await Array.fromAsync(Deno.readDir(outdir))).map((e) => e.name).sort();
      await build(outdir);
      assert.deepEqual(await names(), [...files].sort(), "unchanged sources: the same files");
      // A chunk that only the previous build had (a process started from it may
      // still load it), and a staging directory left by a build cut short.
      await Deno.writeTextFile(`${outdir}/chunk-OLDBUILD.js`, "export {};\n");
      const mark = JSON.parse(await Deno.readTextFile(`${outdir}/${BUILD_MARK}`));
      mark.builds = [[], [...mark.builds[1], "chunk-OLDBUILD.js"]];
      await Deno.writeTextFile(`${outdir}/${BUILD_MARK}`, JSON.stringify(mark));
      await Deno.mkdir(`${outdir}/.stage-cut`);
      await build(outdir);
      assert.deepEqual(await names(), [...files, "chunk-OLDBUILD.js"].sort());
      await build(outdir);
      assert.deepEqual(await names(), [...files].sort(), "two builds later it is gone");
      const foreign = `${dir}/foreign`;
      await Deno.mkdir(foreign);
      await Deno.writeTextFile(`${foreign}/keep.txt`, "mine");
      await assert.rejects(() => build(foreign), /not touched/);
      assert.deepEqual((await Array.fromAsync(Deno.readDir(foreign))).map((e) => e.name), [
        "keep.txt",
      ]);
    });

    await t.step("the same version and help texts as the sources", async () => {
      const version = await run(main, ["--version"]);
      assert.equal(version.code, 0);
      assert.equal(version.out.trim(), VERSION);
      for (const args of [["--help"], ...COMMANDS.map((c) => [c, "--help"])]) {
        const [fromBundle, fromSource] = await Promise.all([run(main, args), run(SOURCE, args)]);
        assert.equal(fromBundle.code, 0, args.join(" "));
        assert.equal(fromBundle.out, fromSource.out, `sipkit ${args.join(" ")}`);
      }
    });

    await t.step("the command tests pass against the bundle", async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "--config", CONFIG, ...COMMAND_TESTS],
        cwd: ROOT,
        env: { SIPKIT_MAIN: main, NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.ok(out.success, `deno test against the bundle failed:\n${text.slice(-6000)}`);
      const passed = /ok \| (\d+) passed/.exec(text);
      assert.ok(passed && Number(passed[1]) > 50, `the command tests ran (${passed?.[0]})`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** The commands, for their help texts. */
const COMMANDS = ["register", "watch", "notify", "message", "call", "roam"];
