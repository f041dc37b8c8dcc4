/**
 * Builds the installable `sipkit`: `cli/main.ts` and every module it can
 * load, bundled by `deno bundle` into ES modules in one directory (default
 * `dist/`): `main.js`, the entry, and chunks that load when a command needs
 * them, so a command still loads only what it runs. Each file has a linked
 * source map, so stack traces name the TypeScript sources.
 *
 * Why: Deno loads a TypeScript module graph one module at a time (resolve,
 * read, look up the transpiled code, compile), and the send path of a one-shot
 * `sipkit message` is 35 modules. The bundle loads the same code as about 20
 * plain JavaScript chunks, which takes about 7 ms less of a 150 ms start
 * (README, "Start-up").
 *
 * The npm packages of deno.json's import map stay outside the bundle: the
 * installed command resolves them through `--config deno.json`, the same
 * pinned versions (deno.lock) as a run from source.
 *
 *     deno task build                        # writes dist/
 *     deno run -A tools/build.ts --outdir <dir>
 *
 * The output directory is replaced: it must not exist, or hold a previous
 * build (the `.sipkit-build` file this script writes); anything else is left
 * alone and the build fails.
 *
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The file that marks a directory as this script's output. */
export const BUILD_MARK = ".sipkit-build";

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

/** Removes `dir` when it holds a previous build; fails when it holds anything else. */
async function clearOutdir(dir: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (entries.length === 0) return;
  if (!entries.some((e) => e.name === BUILD_MARK)) {
    throw new Error(`${dir} is not empty and holds no previous build (${BUILD_MARK}): not touched`);
  }
  await Deno.remove(dir, { recursive: true });
}

/**
 * Bundles `cli/main.ts` into `outdir` (replacing a previous build there).
 * Throws when the build fails, with `deno bundle`'s output.
 */
export async function build(outdir: string, root = ROOT): Promise<void> {
  await clearOutdir(outdir);
  const out = await new Deno.Command(Deno.execPath(), {
    args: await bundleArgs(outdir, root),
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    throw new Error(`deno bundle failed (exit ${out.code}):\n${text.trimEnd()}`);
  }
  await Deno.writeTextFile(
    `${outdir}/${BUILD_MARK}`,
    "Written by tools/build.ts; the whole directory is replaced by the next build.\n",
  );
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
