/**
 * `deno compile` builds `sipkit` into one binary, which can only embed what
 * it can find from cli/main.ts: static imports, `import()` calls whose
 * specifier is a string literal, and deno.json's `compile.include` (needed
 * since deno.json asks for lazy dynamic imports). This guards the rules that
 * keep the library and the commands compile-safe and quick to start: no
 * computed `import()`, no files read relative to the source
 * (`import.meta.url`/`dirname`) at run time, commands loaded only when they
 * run, no top-level work on import, and a real compile embeds every module.
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

interface Info {
  roots: string[];
  modules: {
    specifier: string;
    error?: string;
    dependencies?: { specifier: string; isDynamic?: boolean; code?: { specifier: string } }[];
  }[];
}

async function info(path: string): Promise<Info> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", `${root}${path}`],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout)) as Info;
}

/** Every module (local, npm, node) reachable from the root through static imports only. */
function staticReach(graph: Info): Set<string> {
  const byUrl = new Map(graph.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...graph.roots];
  while (stack.length > 0) {
    const url = stack.pop()!;
    if (seen.has(url)) continue;
    seen.add(url);
    for (const dep of byUrl.get(url)?.dependencies ?? []) {
      if (!dep.isDynamic && dep.code) stack.push(dep.code.specifier);
    }
  }
  return seen;
}

/** Local modules reachable from the root through static imports only. */
function staticClosure(graph: Info): Set<string> {
  return new Set(
    [...staticReach(graph)].filter((u) => u.startsWith("file:")).map((u) =>
      u.slice(7 + root.length)
    ),
  );
}

Deno.test("lib/ and cli/ use only literal import() specifiers and read no files relative to the source", async () => {
  const offenders: string[] = [];
  for (const dir of ["lib", "cli"]) {
    for await (const path of sources(`${root}${dir}`)) {
      const text = await Deno.readTextFile(path);
      text.split("\n").forEach((line, i) => {
        // Comments (line comments and JSDoc lines) may talk about import().
        const code = /^\s*(\*|\/\*)/.test(line) ? "" : line.replace(/\/\/.*$/, "");
        // import("./x.ts") and typeof import("./x.ts") are fine: deno compile sees them.
        const computed = /\bimport\s*\(\s*(?!["'][^"'`$]+["']\s*\))/.test(code);
        if (computed || /import\.meta\.(url|dirname|filename)/.test(code)) {
          offenders.push(`${path.slice(root.length)}:${i + 1}: ${line.trim()}`);
        }
      });
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("cli/main.ts resolves as one module graph with every command and the whole stack", async () => {
  const graph = await info("cli/main.ts");
  const broken = graph.modules.filter((m) => m.error).map((m) => `${m.specifier}: ${m.error}`);
  assert.deepEqual(broken, []);
  const local = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"));
  for (const file of ["lib/sip/ua.ts", "lib/sip/digest.ts", "cli/_message.ts", "cli/register.ts"]) {
    assert.ok(local.some((s) => s.endsWith(`/${file}`)), `${file} is not in the graph`);
  }
});

Deno.test("sipkit loads a command and the library only when that command runs", async () => {
  const main = staticClosure(await info("cli/main.ts"));
  assert.ok(!main.has("lib/sip/ua.ts"), [...main].join(", "));
  assert.ok(!main.has("cli/message.ts"), [...main].join(", "));
  // A command's definition (its options and help) does not load the library either.
  const message = staticClosure(await info("cli/message.ts"));
  for (const stack of ["lib/sip/message.ts", "lib/sip/ua.ts", "lib/im/message.ts"]) {
    assert.ok(!message.has(stack), `cli/message.ts loads ${stack}`);
  }
  // A one-shot send loads neither the digest code (node:crypto) nor node:tls.
  const send = await info("cli/_message.ts");
  const sendClosure = staticClosure(send);
  assert.ok(!sendClosure.has("lib/sip/digest.ts"));
  assert.ok(!sendClosure.has("lib/sip/registration.ts"));
  // Nor the dialog code, multipart bodies, presence, calls or mobility.
  for (const unused of ["lib/sip/dialog.ts", "lib/sip/multipart.ts"]) {
    assert.ok(!sendClosure.has(unused), `a one-shot send loads ${unused}`);
  }
  for (const dir of ["lib/presence/", "lib/rtp/", "lib/mobility/", "lib/sip/invite/"]) {
    assert.ok(![...sendClosure].some((f) => f.startsWith(dir)), `a one-shot send loads ${dir}`);
  }
  // Nor the stream transports (opened on first use), the listener and the
  // batches, or the command's listen, chat and batch modes; nor CPIM (loaded
  // for --cpim) or the DNS resolver (loaded for a target that is a name).
  for (
    const unused of [
      "lib/sip/transport_tcp.ts",
      "lib/sip/framer.ts",
      "lib/im/message.ts",
      "cli/_message_more.ts",
      "lib/im/cpim.ts",
      "lib/sip/resolver.ts",
      // The libc code of listening sockets (receive buffer, ICMP errors,
      // burst I/O), loaded by the first socket that needs it.
      "lib/sip/_udp_fast.ts",
      "lib/sip/_icmp.ts",
      "lib/_libc.ts",
      // The server side of the transaction layer (server transactions,
      // timer J's table), loaded with the first inbound request.
      "lib/sip/transaction/_server_side.ts",
      "lib/sip/transaction/server_invite.ts",
      "lib/sip/transaction/server_non_invite.ts",
      "lib/sip/_key_ring.ts",
    ]
  ) {
    assert.ok(!sendClosure.has(unused), `a one-shot send loads ${unused}`);
  }

  // Nor does notify's definition (options, help): of lib/ only two leaves
  // without imports, the status names (for --status's choices) and the
  // stream limits' defaults (of the common options); no SIP stack, no
  // presence documents, no XML.
  const definition = await info("cli/notify.ts");
  const notify = staticClosure(definition);
  assert.deepEqual(
    [...notify].filter((f) => f.startsWith("lib/")).toSorted(),
    ["lib/presence/user_status.ts", "lib/sip/stream_limits.ts"],
    [...notify].join(", "),
  );
  for (const leaf of ["lib/presence/user_status.ts", "lib/sip/stream_limits.ts"]) {
    const module = definition.modules.find((m) => m.specifier === `file://${root}${leaf}`);
    assert.deepEqual(module?.dependencies ?? [], [], `${leaf} imports modules`);
  }
  assert.ok(!notify.has("cli/_notify.ts") && !notify.has("cli/_common.ts"));
  const npm = [...staticReach(definition)].filter((u) => !u.startsWith("file:"));
  assert.ok(!npm.some((u) => u.includes("xmldom")), `cli/notify.ts loads ${npm.join(", ")}`);

  // Nor does call's definition (options, help): of lib/ only the stream
  // limits' defaults (a leaf without imports, of the common options); no SIP
  // stack, no INVITE sessions, no RTP, no SDP (sdp-transform). What runs is
  // in cli/_call.ts, loaded by the command's action.
  const callDefinition = await info("cli/call.ts");
  const call = staticClosure(callDefinition);
  assert.deepEqual(
    [...call].filter((f) => f.startsWith("lib/")),
    ["lib/sip/stream_limits.ts"],
    [...call].join(", "),
  );
  for (const dir of ["lib/sip/invite/", "lib/rtp/"]) {
    assert.ok(![...call].some((f) => f.startsWith(dir)), `cli/call.ts loads ${dir}`);
  }
  assert.ok(!call.has("cli/_call.ts") && !call.has("cli/_common.ts"), [...call].join(", "));
  const callNpm = [...staticReach(callDefinition)].filter((u) => !u.startsWith("file:"));
  assert.ok(
    !callNpm.some((u) => u.includes("sdp-transform")),
    `cli/call.ts loads ${callNpm.join(", ")}`,
  );
  // The command that runs does load them (the assertions above look at the right names).
  const placing = staticClosure(await info("cli/_call.ts"));
  for (const used of ["lib/sip/ua.ts", "lib/sip/invite/mod.ts", "lib/rtp/mod.ts"]) {
    assert.ok(placing.has(used), `cli/_call.ts does not load ${used}`);
  }
  assert.ok(
    [...staticReach(await info("cli/_call.ts"))].some((u) => u.includes("sdp-transform")),
    "cli/_call.ts does not load sdp-transform",
  );
  // A call without --register does not load the registration.
  for (const unused of ["cli/_register.ts", "lib/sip/registration.ts"]) {
    assert.ok(!placing.has(unused), `cli/_call.ts loads ${unused}`);
  }

  // What runs: a --publish --once loads the PUBLISH client and the PIDF code
  // (with xmldom), not the edge mode (presence agent, event notifier, buddy
  // list, watcher info), the registration, the mobility follower, the
  // server side of the transaction layer, nor the stream transports.
  const publish = staticClosure(await info("cli/_notify.ts"));
  for (const needed of ["lib/presence/publish.ts", "lib/presence/status.ts", "lib/sip/ua.ts"]) {
    assert.ok(publish.has(needed), `--publish --once does not load ${needed}`);
  }
  for (
    const unused of [
      "cli/_notify_more.ts",
      "cli/watch.ts",
      "cli/_register.ts",
      "cli/_roam.ts",
      "lib/presence/agent.ts",
      "lib/presence/resource_lists.ts",
      "lib/presence/watcherinfo.ts",
      "lib/presence/watcher.ts",
      "lib/presence/rlmi.ts",
      "lib/sip/events/notifier.ts",
      "lib/sip/events/subscriber.ts",
      "lib/sip/dialog.ts",
      "lib/sip/move.ts",
      "lib/sip/registration.ts",
      "lib/sip/digest.ts",
      "lib/sip/resolver.ts",
      "lib/sip/transport_tcp.ts",
      "lib/sip/transaction/mod.ts",
      "lib/sip/transaction/_server_side.ts",
      "lib/sip/transaction/server_invite.ts",
      "lib/sip/transaction/server_non_invite.ts",
    ]
  ) {
    assert.ok(!publish.has(unused), `--publish --once loads ${unused}`);
  }
  for (const dir of ["lib/mobility/", "lib/im/", "lib/rtp/", "lib/sip/invite/"]) {
    assert.ok(![...publish].some((f) => f.startsWith(dir)), `--publish --once loads ${dir}`);
  }
  // The edge mode's module is what brings them.
  const edge = staticClosure(await info("cli/_notify_more.ts"));
  for (const used of ["lib/presence/agent.ts", "cli/_roam.ts", "lib/sip/move.ts"]) {
    assert.ok(edge.has(used), `cli/_notify_more.ts does not load ${used}`);
  }
  // It reads the buddy list through the small shared module, not watch's.
  for (const unused of ["cli/watch.ts", "cli/_watch.ts", "lib/presence/watcher.ts"]) {
    assert.ok(!edge.has(unused), `cli/_notify_more.ts loads ${unused}`);
  }

  // watch's definition (options, help, buddy list subcommands) loads no SIP
  // stack, no presence code and no XML: of lib/ only the stream limits'
  // defaults (of the common options), a leaf without imports.
  const watchDefinition = await info("cli/watch.ts");
  const watch = staticClosure(watchDefinition);
  assert.deepEqual(
    [...watch].filter((f) => f.startsWith("lib/")).toSorted(),
    ["lib/sip/stream_limits.ts"],
    [...watch].join(", "),
  );
  for (
    const unused of [
      "cli/_watch.ts",
      "cli/_watch_more.ts",
      "cli/_watch_buddies.ts",
      "cli/_buddies.ts",
      "cli/_common.ts",
      "cli/_config.ts",
    ]
  ) {
    assert.ok(!watch.has(unused), `cli/watch.ts loads ${unused}`);
  }
  const watchNpm = [...staticReach(watchDefinition)].filter((u) => !u.startsWith("file:"));
  assert.ok(
    !watchNpm.some((u) => u.includes("xmldom")),
    `cli/watch.ts loads ${watchNpm.join(", ")}`,
  );
  // What a `watch --once` probe runs: the watcher's fetch (SUBSCRIBE
  // Expires: 0), not the lasting watcher's stdin handling, the mobility
  // follower, the buddy list's editing, nor notify's presence agent.
  const probe = staticClosure(await info("cli/_watch.ts"));
  for (const needed of ["lib/presence/watcher.ts", "lib/sip/ua.ts", "cli/_buddies.ts"]) {
    assert.ok(probe.has(needed), `watch --once does not load ${needed}`);
  }
  for (
    const unused of [
      "cli/_watch_more.ts",
      "cli/_watch_buddies.ts",
      "cli/_roam.ts",
      "cli/_register.ts",
      "cli/_notify.ts",
      "lib/sip/move.ts",
      "lib/sip/registration.ts",
      "lib/presence/agent.ts",
      "lib/sip/events/notifier.ts",
    ]
  ) {
    assert.ok(!probe.has(unused), `watch --once loads ${unused}`);
  }
  for (const dir of ["lib/mobility/", "lib/im/", "lib/rtp/", "lib/sip/invite/"]) {
    assert.ok(![...probe].some((f) => f.startsWith(dir)), `watch --once loads ${dir}`);
  }
  // The lasting watcher's module is what brings the follower.
  const watcher = staticClosure(await info("cli/_watch_more.ts"));
  for (const used of ["cli/_roam.ts", "lib/sip/move.ts"]) {
    assert.ok(watcher.has(used), `cli/_watch_more.ts does not load ${used}`);
  }
});

Deno.test("every cli/_X_preload.ts imports every module that cli/_X.ts runs, each directly, and main preloads it", async () => {
  // Deno fetches the graph behind an import() one import depth per round; a
  // preload module puts a command's whole run path one import away (see
  // cli/_message_preload.ts). A command X's preload lists the static closure
  // of cli/_X.ts, and cli/main.ts starts it for X.
  const { COMMANDS } = await import("../cli/main.ts");
  const preloads: string[] = [];
  for await (const entry of Deno.readDir(`${root}cli`)) {
    const m = /^_(.+)_preload\.ts$/.exec(entry.name);
    if (m) preloads.push(m[1]);
  }
  for (const command of ["message", "notify"]) {
    assert.ok(preloads.includes(command), `cli/_${command}_preload.ts is missing`);
  }
  for (const command of preloads) {
    const closure = staticClosure(await info(`cli/_${command}.ts`));
    const text = await Deno.readTextFile(`${root}cli/_${command}_preload.ts`);
    const listed = [...text.matchAll(/^import "(.+)";$/gm)]
      .map((m) => new URL(m[1], `file://${root}cli/`).pathname.slice(root.length));
    assert.deepEqual(listed.toSorted(), [...closure].toSorted(), `cli/_${command}_preload.ts`);
    assert.ok(COMMANDS[command]?.preload, `cli/main.ts does not preload the ${command} command`);
  }
});

Deno.test("node:zlib (tens of ms to import) is loaded only on demand, by the content-coding module", async () => {
  const graph = await info("cli/main.ts");
  const importers = graph.modules.flatMap((m) =>
    (m.dependencies ?? []).filter((d) => d.specifier === "node:zlib").map((d) => ({
      from: m.specifier.slice(7 + root.length),
      dynamic: d.isDynamic === true,
    }))
  );
  assert.deepEqual(importers, [{ from: "lib/sip/events/encoding.ts", dynamic: true }]);
});

Deno.test("importing any module of lib/ and cli/ does no work that needs a permission", async () => {
  const lines: string[] = [];
  for (const dir of ["lib", "cli"]) {
    for await (const path of sources(`${root}${dir}`)) lines.push(`import "file://${path}";`);
  }
  const entry = await Deno.makeTempFile({ prefix: `sipkit_imports_${Deno.pid}_`, suffix: ".ts" });
  try {
    await Deno.writeTextFile(entry, lines.join("\n") + "\n");
    // No --allow-*: reading the environment, files, interfaces or the network
    // at import time would fail here.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--config", `${root}deno.json`, entry],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(entry);
  }
});

Deno.test("sipkit --help lists every command on one line", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", `${root}deno.json`, `${root}cli/main.ts`, "--help"],
    env: { COLUMNS: "80" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const text = new TextDecoder().decode(out.stdout);
  const list = text.slice(text.indexOf("Commands:")).split("\n").slice(1).filter((l) => l.trim());
  const { COMMANDS } = await import("../cli/main.ts");
  // Every line starts with a command name: a wrapped summary would start with spaces only.
  for (const line of list) assert.match(line, /^ {2}\S/, `a wrapped line: "${line}"`);
  for (const name of Object.keys(COMMANDS)) {
    assert.ok(list.some((l) => l.trimStart().startsWith(`${name} `)), `${name} is not listed`);
  }
});

/**
 * The paths `deno compile` lists under "Embedded Files" (a tree; a `dir/*`
 * entry stands for a whole directory), relative to the binary's root.
 */
function embeddedPaths(listing: string): string[] {
  // deno-lint-ignore no-control-regex
  const lines = listing.replace(/\x1b\[[0-9;]*m/g, "").split("\n");
  const start = lines.findIndex((l) => l.trim() === "Embedded Files");
  const paths: string[] = [];
  const stack: string[] = [];
  for (const line of lines.slice(start + 3)) {
    const m = /^((?:[│ ] )*)[├└]─[─┬] (.+?)(?: \([^()]*\))?$/.exec(line);
    if (!m) break;
    const depth = m[1].length / 2;
    stack.length = depth;
    stack.push(m[2]);
    paths.push(stack.join("/"));
  }
  return paths;
}

Deno.test("deno compile embeds every module of the graph, also those behind import()", async () => {
  // deno.json asks for lazy dynamic imports (quicker start: `deno run` walks only
  // the graph that runs). `deno compile` then leaves out what only import()
  // reaches, unless its "compile.include" names it: check the real binary's
  // file list. DENORT_BIN makes compile use this Deno as the runtime, with no
  // download; the binary is not run, only its embedded files are listed.
  const dir = await Deno.makeTempDir({ prefix: `sipkit_compile_${Deno.pid}_` });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "--no-check",
        "--allow-all",
        "--config",
        `${root}deno.json`,
        "--output",
        `${dir}/sipkit`,
        `${root}cli/main.ts`,
      ],
      cwd: root,
      env: { DENORT_BIN: Deno.execPath(), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    const embedded = embeddedPaths(text);
    assert.ok(embedded.length > 0, text);
    const covered = (file: string) =>
      embedded.some((p) => p === file || (p.endsWith("/*") && file.startsWith(p.slice(0, -1))));
    const graph = await info("cli/main.ts");
    const local = graph.modules.map((m) => m.specifier).filter((s) => s.startsWith("file:"))
      .map((s) => s.slice(7 + root.length));
    for (const file of ["cli/_message.ts", "cli/call.ts", "cli/_call.ts", "lib/sip/digest.ts"]) {
      assert.ok(local.includes(file), `${file} is not in the graph`);
    }
    const missing = local.filter((f) => !covered(f));
    assert.deepEqual(missing, [], `not embedded:\n${text}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
