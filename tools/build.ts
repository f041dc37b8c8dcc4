/**
 * Builds the installable `sipkit`: `cli/main.ts` and every module it can
 * load, bundled by `deno bundle` into ES modules in one directory (default
 * `dist/`): `main.js`, the entry, and chunks that load when a command needs
 * them, so a command still loads only what it runs. Each file has a linked
 * source map, so stack traces name the TypeScript sources.
 *
 * Why: Deno loads a TypeScript module graph one module at a time (resolve,
 * read, look up the transpiled code, compile), and the send path of a one-shot
 * `sipkit message` is 35 modules. The bundle loads the same code as about 18
 * plain JavaScript chunks, which takes 5 to 9 ms less of a 150 ms start
 * (README, "Start-up").
 *
 * The npm packages of deno.json's import map stay outside the bundle: the
 * installed command resolves them through `--config deno.json`, the same
 * pinned versions (deno.lock) as a run from source.
 *
 *     deno task build                        # writes dist/
 *     deno run -A tools/build.ts --outdir <dir>
 *
 * The output directory must not exist, be empty, or hold earlier builds (the
 * `.sipkit-build` file this script writes); anything else is left alone and
 * the build fails. A new build keeps the files of the previous one, for the
 * sipkit processes still running from it (see {@linkcode build}).
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The file that marks a directory as this script's output. */
export const BUILD_MARK = ".sipkit-build";
/** The name prefix of the staging directory a build writes into first. */
const STAGE = ".stage-";

/** The bare specifiers of deno.json's import map: kept external to the bundle. */
export async function importMapKeys(root = ROOT): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  return Object.keys(config.imports ?? {});
}

/** The `deno bundle` arguments that write the bundle of `cli/main.ts` to `outdir`. */
export async function bundleArgs(outdir: string, root = ROOT): Promise<string[]> {
  return [
    "bundle",
    "--config",
    `${root}/deno.json`,
    "--platform",
    "deno",
    "--format",
    "esm",
    "--code-splitting",
    "--sourcemap",
    "linked",
    ...(await importMapKeys(root)).flatMap((name) => ["--external", name]),
    "--outdir",
    outdir,
    `${root}/cli/main.ts`,
  ];
}

/** What the mark file records: the files of the last two builds, oldest first. */
interface BuildMark {
  builds: string[][];
}

/**
 * The builds recorded in `dir`: an empty list when `dir` does not exist or
 * is empty. Throws when `dir` holds files but no mark (not our output).
 */
async function previousBuilds(dir: string): Promise<string[][]> {
  let names: string[];
  try {
    // A staging directory left by a build that was cut short does not count.
    names = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name)
      .filter((name) => !name.startsWith(STAGE));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  if (names.length === 0) return [];
  if (!names.includes(BUILD_MARK)) {
    throw new Error(`${dir} is not empty and holds no previous build (${BUILD_MARK}): not touched`);
  }
  try {
    const mark = JSON.parse(await Deno.readTextFile(`${dir}/${BUILD_MARK}`)) as BuildMark;
    if (Array.isArray(mark.builds)) return mark.builds;
  } catch {
    // an older or damaged mark: no list, so nothing of it is pruned now
  }
  return [];
}

/**
 * Bundles `cli/main.ts` into `outdir`. Throws when the build fails, with
 * `deno bundle`'s output.
 *
 * A long-running sipkit (a `message --listen`, a `notify` agent) loads some
 * chunks only when it first needs them (TCP, digest authentication, ...),
 * maybe days after it started, from the build it started with. So a new
 * build does not pull the old one away: it is written into a staging
 * directory inside `outdir` and each file is then renamed into place (an
 * atomic replace: a process starting meanwhile reads the old `main.js` or
 * the new one, never half of one). Chunk names carry a hash of their
 * content, so a changed chunk gets a new name and the old one stays. Files
 * of builds before the previous one are removed: a process survives one
 * rebuild under it, not two.
 */
export async function build(outdir: string, root = ROOT): Promise<void> {
  const builds = await previousBuilds(outdir);
  await Deno.mkdir(outdir, { recursive: true });
  const stage = await Deno.makeTempDir({ dir: outdir, prefix: STAGE });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: await bundleArgs(stage, root),
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      throw new Error(`deno bundle failed (exit ${out.code}):\n${text.trimEnd()}`);
    }
    const files = (await Array.fromAsync(Deno.readDir(stage))).map((e) => e.name).sort();
    // main.js last: the chunks it names are in place before it is.
    for (const name of files.filter((f) => f !== "main.js")) {
      await Deno.rename(`${stage}/${name}`, `${outdir}/${name}`);
    }
    if (files.includes("main.js")) await Deno.rename(`${stage}/main.js`, `${outdir}/main.js`);
    const previous = builds.at(-1) ?? [];
    const mark: BuildMark = { builds: [previous, files] };
    await Deno.writeTextFile(`${outdir}/${BUILD_MARK}`, JSON.stringify(mark) + "\n");
    const keep = new Set([
      ...previous,
      ...files,
      BUILD_MARK,
      stage.slice(stage.lastIndexOf("/") + 1),
    ]);
    for await (const entry of Deno.readDir(outdir)) {
      if (!keep.has(entry.name)) {
        await Deno.remove(`${outdir}/${entry.name}`, { recursive: true });
      }
    }
  } finally {
    await Deno.remove(stage, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--outdir");
  const given = i < 0 ? `${ROOT}/dist` : Deno.args[i + 1];
  if (!given) {
    console.error("build: --outdir needs a directory");
    Deno.exit(2);
  }
  const outdir = given.startsWith("/") ? given : `${Deno.cwd()}/${given}`;
  try {
    await build(outdir);
    console.error(`build: sipkit bundled into ${outdir} (entry: ${outdir}/main.js)`);
  } catch (e) {
    console.error(`build: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
