/**
 * `deno compile` builds `sipkit` into one binary, which can only embed what
 * the module graph reaches statically. This guards the rules that keep the
 * library and the commands compile-safe: no dynamic `import()`, and no files
 * read relative to the source (`import.meta.url`/`import.meta.dirname`) at
 * run time.
 */
import assert from "node:assert/strict";

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* sources(path);
    else if (entry.name.endsWith(".ts")) yield path;
  }
}

const root = new URL("..", import.meta.url).pathname;

Deno.test("lib/ and cli/ use no dynamic import and read no files relative to the source", async () => {
  const offenders: string[] = [];
  for (const dir of ["lib", "cli"]) {
    for await (const path of sources(`${root}${dir}`)) {
      const text = await Deno.readTextFile(path);
      text.split("\n").forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, "");
        if (/\bimport\s*\(/.test(code) || /import\.meta\.(url|dirname|filename)/.test(code)) {
          offenders.push(`${path.slice(root.length)}:${i + 1}: ${line.trim()}`);
        }
      });
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("cli/main.ts resolves as one static module graph with the whole stack", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${root}cli/main.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string; error?: string }[];
  };
  const broken = info.modules.filter((m) => m.error).map((m) => `${m.specifier}: ${m.error}`);
  assert.deepEqual(broken, []);
  const local = info.modules.filter((m) => m.specifier.startsWith("file:"));
  assert.ok(local.some((m) => m.specifier.endsWith("/lib/sip/ua.ts")));
});
