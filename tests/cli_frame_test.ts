/**
 * The command frame's parts, in process: NDJSON writer and reader, logger
 * masking, config precedence, password sources, exit code mapping, and the
 * shared registration helper's input handling.
 */

import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import {
  addCommonOptions,
  type CommandContext,
  exitCodeFor,
  intArg,
  uriOption,
} from "../cli/_common.ts";
import {
  applyConfig,
  configDir,
  configFile,
  loadConfigFile,
  passwordProvider,
  stateDir,
} from "../cli/_config.ts";
import { CommandError, EXIT } from "../cli/_exit.ts";
import { createLogger, type InputEvent, isoTime, NdjsonWriter, readNdjson } from "../cli/_io.ts";
import { keepRegistered } from "../cli/_register.ts";
import { ManualClock } from "../lib/sip/clock.ts";
import { SipRequestError } from "../lib/sip/errors.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { UserAgent } from "../lib/sip/ua.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();
const NOW = new Date("2026-01-02T03:04:05.678Z");

/** A byte sink that takes at most `chunk` bytes per write. */
function sink(chunk = Infinity) {
  const parts: Uint8Array[] = [];
  return {
    parts,
    text: () => parts.map((p) => dec.decode(p)).join(""),
    write(p: Uint8Array) {
      const n = Math.min(chunk, p.length);
      parts.push(p.slice(0, n));
      return Promise.resolve(n);
    },
  };
}

Deno.test("NdjsonWriter writes one object per line, type and time first, even through short writes", async () => {
  const out = sink(3);
  const w = new NdjsonWriter(out, { now: () => NOW });
  await w.emit("registered", { aor: "sip:a@x", expires: 60, skipped: undefined });
  await w.emit("binding", { type: "not me", time: "not me", contact: "sip:a@1.2.3.4" });
  const lines = out.text().split("\n");
  assert.equal(lines.length, 3);
  assert.equal(lines[2], "");
  assert.equal(
    lines[0],
    '{"type":"registered","time":"2026-01-02T03:04:05.678Z","aor":"sip:a@x","expires":60}',
  );
  assert.deepEqual(JSON.parse(lines[1]), {
    type: "binding",
    time: "2026-01-02T03:04:05.678Z",
    contact: "sip:a@1.2.3.4",
  });
});

Deno.test("isoTime() formats as Date's toISOString, without a Date", () => {
  const cases = [
    0,
    -1,
    1,
    Date.UTC(2000, 1, 29, 23, 59, 59, 999), // leap day of a century divisible by 400
    Date.UTC(2100, 1, 28, 12), // 2100 is not a leap year
    Date.UTC(2100, 2, 1),
    Date.UTC(1969, 11, 31, 23, 59, 59, 999),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.UTC(0, 0, 1) - 1, // year -1: Date's expanded form
    Date.UTC(10000, 0, 1),
    Date.now(),
  ];
  for (let i = 0; i < 10_000; i++) cases.push(Math.floor((Math.random() - 0.2) * 3e14));
  for (const ms of cases) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
});

Deno.test("NdjsonWriter without `now` stamps the system clock's time", async () => {
  const chunks: Uint8Array[] = [];
  const w = new NdjsonWriter({ write: (p) => (chunks.push(p.slice()), Promise.resolve(p.length)) });
  const before = Date.now();
  await w.emit("tick");
  const after = Date.now();
  const line = JSON.parse(new TextDecoder().decode(chunks[0]));
  const at = Date.parse(line.time);
  assert.ok(at >= before && at <= after, line.time);
  assert.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

Deno.test("NdjsonWriter writes the same line as JSON.stringify of the frame and the fields", async () => {
  const out = sink();
  const w = new NdjsonWriter(out, { now: () => NOW });
  const cases: [string, Record<string, unknown>][] = [
    ["message", {}],
    ["message", { a: undefined }],
    ["message", { body: 'quote " back \\ nl \n é \u2028', n: 1, x: null, u: undefined }],
    ['odd "type"\n', { nested: { l: [1, "2", { z: undefined }] }, when: new Date(0) }],
    ["message", { toJSON: () => ({ replaced: true }), keep: 1 }],
    ["message", { time: "mine", b: 2 }],
  ];
  for (const [type, fields] of cases) await w.emit(type, fields);
  const lines = out.text().split("\n").slice(0, -1);
  assert.equal(lines.length, cases.length);
  cases.forEach(([type, fields], i) => {
    const event = { type, time: NOW.toISOString(), ...fields };
    event.type = type;
    event.time = NOW.toISOString();
    assert.equal(lines[i], JSON.stringify(event), `case ${i}`);
  });
});

Deno.test("NdjsonWriter batches lines emitted during a write, and resolves each only once written", async () => {
  const writes: string[] = [];
  const pending: (() => void)[] = [];
  // A slow stdout: each write completes when the test says so.
  const w = new NdjsonWriter({
    write: (p) => {
      writes.push(new TextDecoder().decode(p));
      return new Promise((resolve) => pending.push(() => resolve(p.length)));
    },
  }, { now: () => NOW });
  const done: string[] = [];
  const a = w.emit("a").then(() => done.push("a"));
  await Promise.resolve();
  await Promise.resolve();
  assert.equal(writes.length, 1, "the first line goes out at once");
  const b = w.emit("b").then(() => done.push("b"));
  const c = w.emit("c").then(() => done.push("c"));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(writes.length, 1, "b and c wait for the write under way");
  assert.deepEqual(done, []);
  pending.shift()!();
  await a;
  assert.deepEqual(done, ["a"], "b and c are not written yet");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(writes.length, 2);
  assert.deepEqual(writes[1].split("\n").map((l) => l && JSON.parse(l).type), ["b", "c", ""]);
  pending.shift()!();
  await Promise.all([b, c]);
  assert.deepEqual(done, ["a", "b", "c"]);
  await w.flush();
});

Deno.test("NdjsonWriter writes a turn's lines in one writeSync, and asynchronously once it would block", async () => {
  const syncWrites: string[] = [];
  const asyncWrites: string[] = [];
  let blocking = false;
  const w = new NdjsonWriter({
    writeSync: (p) => {
      if (blocking) {
        // Half of it goes out, then the output says it would block.
        if (p.length > 1 && !syncWrites.some((s) => s.startsWith("half:"))) {
          const n = p.length >> 1;
          syncWrites.push("half:" + dec.decode(p.subarray(0, n)));
          return n;
        }
        throw new Deno.errors.WouldBlock("Resource temporarily unavailable");
      }
      syncWrites.push(dec.decode(p));
      return p.length;
    },
    write: (p) => {
      asyncWrites.push(dec.decode(p));
      return Promise.resolve(p.length);
    },
  }, { now: () => NOW });
  await Promise.all([w.emit("a"), w.emit("b"), w.emit("c")]);
  assert.equal(syncWrites.length, 1, "one write for the three lines of one turn");
  assert.deepEqual(syncWrites[0].split("\n").map((l) => l && JSON.parse(l).type), [
    "a",
    "b",
    "c",
    "",
  ]);
  assert.equal(asyncWrites.length, 0);
  blocking = true;
  await w.emit("d", { pad: "x".repeat(40) });
  const half = syncWrites[1].slice("half:".length);
  assert.equal(
    JSON.parse(half + asyncWrites[0]).type,
    "d",
    "the rest of the line follows asynchronously",
  );
  await w.emit("e");
  assert.equal(syncWrites.length, 2, "no writeSync after WouldBlock");
  assert.equal(JSON.parse(asyncWrites[1]).type, "e");
});

Deno.test("NdjsonWriter stops quietly when writeSync hits a broken pipe", async () => {
  let closed = 0;
  const w = new NdjsonWriter({
    writeSync: () => {
      throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
    },
    write: () => Promise.reject(new Error("not used")),
  }, { onClosed: (e) => (assert.equal(e, undefined), closed++) });
  await w.emit("one");
  await w.emit("two");
  assert.equal(closed, 1);
  assert.equal(w.closed, true);
});

Deno.test("NdjsonWriter --pretty prints readable lines", async () => {
  const out = sink();
  const w = new NdjsonWriter(out, { now: () => NOW, pretty: true });
  await w.emit("registered", { aor: "sip:a@x", expires: 60, bindings: [1] });
  assert.equal(out.text(), "03:04:05.678 registered aor=sip:a@x expires=60 bindings=[1]\n");
});

Deno.test("NdjsonWriter on a broken pipe stops quietly and calls onClosed once", async () => {
  let closed = 0;
  let writes = 0;
  const w = new NdjsonWriter({
    write: () => {
      writes++;
      return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
    },
  }, { onClosed: (e) => (assert.equal(e, undefined), closed++) });
  await w.emit("one");
  await w.emit("two");
  await w.flush();
  assert.equal(closed, 1);
  assert.equal(writes, 1, "nothing more is written once the reader is gone");
  assert.equal(w.closed, true);
});

Deno.test("NdjsonWriter reports another write error through onClosed and never rejects", async () => {
  const seen: unknown[] = [];
  const w = new NdjsonWriter({ write: () => Promise.reject(new Error("disk on fire")) }, {
    onClosed: (e) => seen.push(e),
  });
  await w.emit("x");
  await w.emit("y");
  assert.equal(seen.length, 1);
  assert.match(String(seen[0]), /disk on fire/);
  assert.equal(w.closed, true);
});

Deno.test("createLogger() filters by level and masks secrets", () => {
  const lines: string[] = [];
  const secrets = ["hunter2"];
  const log = createLogger({ level: "info", secrets: () => secrets, write: (t) => lines.push(t) });
  log.log("debug", "hidden");
  log.log("info", "password is hunter2");
  log.log("warn", "careful");
  log.log("error", "broken");
  log.raw('Authorization: Digest username="hunter2"');
  assert.deepEqual(lines, [
    "sipkit: password is ***\n",
    "sipkit: warn: careful\n",
    "sipkit: error: broken\n",
    'Authorization: Digest username="***"\n',
  ]);
});

function stream(...chunks: string[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(enc.encode(chunk));
      c.close();
    },
  });
}

Deno.test("readNdjson() hands over events in order and reports bad lines by number", async () => {
  const got: [string, number][] = [];
  const bad: [number, string][] = [];
  await readNdjson(
    stream(
      '{"type":"address_changed","address":"192.0.2.7"}\n',
      "not json\r\n",
      "\n",
      "[1,2]\n",
      '{"no":"type"}\n{"type":"a"}\r\n{"ty',
      'pe":"last"}',
    ),
    (e: InputEvent, line) => void got.push([e.type, line]),
    { onInvalid: (line, message) => void bad.push([line, message]) },
  );
  assert.deepEqual(got, [["address_changed", 1], ["a", 6], ["last", 7]]);
  assert.deepEqual(bad.map(([l]) => l), [2, 4, 5]);
  assert.match(bad[0][1], /^not JSON/);
  assert.equal(bad[1][1], "not a JSON object");
  assert.equal(bad[2][1], 'missing string field "type"');
});

Deno.test("readNdjson() stops when aborted", async () => {
  const controller = new AbortController();
  let pull: ReadableStreamDefaultController<Uint8Array> | undefined;
  const input = new ReadableStream<Uint8Array>({ start: (c) => void (pull = c) });
  const got: string[] = [];
  const done = readNdjson(input, (e) => {
    got.push(e.type);
    controller.abort();
  }, { onInvalid: () => {}, signal: controller.signal });
  pull!.enqueue(enc.encode('{"type":"first"}\n'));
  await done;
  assert.deepEqual(got, ["first"]);
});

Deno.test("intArg() accepts whole numbers within bounds only", () => {
  const parse = intArg("--expires", 1, 100);
  assert.equal(parse("60"), 60);
  for (const bad of ["0", "101", "-1", "1.5", "x", ""]) {
    assert.throws(() => parse(bad), { code: "commander.invalidArgument" }, bad);
  }
});

function testCommand() {
  const cmd = new Command("register")
    .option("--registrar <uri>")
    .option("--expires <s>", "lifetime", intArg("--expires", 0), 3600)
    .option("--once");
  return addCommonOptions(cmd);
}

async function configured(
  args: string[],
  env: Record<string, string>,
  config?: unknown,
): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir();
  try {
    if (config !== undefined) {
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    }
    const cmd = testCommand();
    cmd.parse(args, { from: "user" });
    const vars = new Map(Object.entries({ SIPKIT_CONFIG_DIR: dir, ...env }));
    applyConfig(cmd, { get: (k) => vars.get(k) });
    return cmd.opts() as Record<string, unknown>;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadConfigFile(): a missing directory or file is an empty config, a file is read, a broken one refused", async () => {
  const root = await Deno.makeTempDir({ prefix: `sipkit_cfg_${Deno.pid}_` });
  try {
    // The sipkit directory is not there (the parent's listing tells), nor its parent.
    assert.deepEqual(loadConfigFile(`${root}/sipkit/config.json`), {});
    assert.deepEqual(loadConfigFile(`${root}/none/sipkit/config.json`), {});
    // The directory is there, the file is not.
    await Deno.mkdir(`${root}/sipkit`);
    assert.deepEqual(loadConfigFile(`${root}/sipkit/config.json`), {});
    // A file, also through a symbolic link to its directory.
    await Deno.writeTextFile(`${root}/sipkit/config.json`, '{"default_profile":"a"}');
    assert.deepEqual(loadConfigFile(`${root}/sipkit/config.json`), { default_profile: "a" });
    await Deno.symlink(`${root}/sipkit`, `${root}/linked`);
    assert.deepEqual(loadConfigFile(`${root}/linked/config.json`), { default_profile: "a" });
    assert.deepEqual(loadConfigFile(`${root}/sipkit/./config.json`), { default_profile: "a" });
    await Deno.writeTextFile(`${root}/sipkit/config.json`, "{broken");
    assert.throws(() => loadConfigFile(`${root}/sipkit/config.json`), /Cannot parse config file/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("applyConfig(): flags, then SIPKIT_* variables, then the profile", async () => {
  const config = {
    default_profile: "home",
    profiles: {
      home: { user: "bob@example.test", expires: 600, proxy: "sip:p.test", once: true },
      work: { "auth-user": "c1", auth_user: "c2", registrar: "sip:r.test" },
      default: { user: "never@example.test" },
    },
  };
  const home = await configured([], {}, config);
  assert.equal(home.user, "bob@example.test");
  assert.equal(home.expires, 600, "profile values go through the option parser");
  assert.equal(home.once, true);
  const env = await configured(
    [],
    { SIPKIT_USER: "carol@example.test", SIPKIT_EXPIRES: "120" },
    config,
  );
  assert.equal(env.user, "carol@example.test");
  assert.equal(env.expires, 120);
  assert.equal(env.proxy, "sip:p.test", "other values still from the profile");
  const flags = await configured(["-u", "dave@example.test", "--expires", "90"], {
    SIPKIT_USER: "carol@example.test",
    SIPKIT_EXPIRES: "120",
  }, config);
  assert.equal(flags.user, "dave@example.test");
  assert.equal(flags.expires, 90);
  const work = await configured(["--profile", "work"], {}, config);
  assert.equal(work.registrar, "sip:r.test");
  assert.equal(work.user, undefined);
  const byEnv = await configured([], { SIPKIT_PROFILE: "work" }, config);
  assert.equal(byEnv.registrar, "sip:r.test");
  const camel = await configured([], { SIPKIT_AUTH_USER: "u1", SIPKIT_PASSWORD_ENV: "PW" }, {});
  assert.equal(camel.authUser, "u1", "SIPKIT_AUTH_USER for --auth-user");
  assert.equal(camel.passwordEnv, "PW");
  const bool = await configured([], { SIPKIT_TRACE: "1", SIPKIT_INSECURE: "no" }, {});
  assert.equal(bool.trace, true);
  assert.equal(bool.insecure, false);
  const noFile = await configured([], {});
  assert.equal(noFile.expires, 3600, "built-in default");
});

Deno.test("applyConfig(): a --password-env flag overrides a profile's password_file, and back", async () => {
  const config = { profiles: { default: { password_file: "/p/file" } } };
  const flag = await configured(["--password-env", "MY_PW"], {}, config);
  assert.equal(flag.passwordEnv, "MY_PW");
  assert.equal(flag.passwordFile, undefined);
  const env = await configured([], { SIPKIT_PASSWORD_ENV: "MY_PW" }, config);
  assert.equal(env.passwordEnv, "MY_PW");
  assert.equal(env.passwordFile, undefined);
  const profileEnv = { profiles: { default: { password_env: "PROFILE_PW" } } };
  const file = await configured(["--password-file", "/f"], {}, profileEnv);
  assert.equal(file.passwordFile, "/f");
  assert.equal(file.passwordEnv, undefined);
  const same = await configured(["--password-file", "/f", "--password-env", "X"], {}, {});
  assert.deepEqual([same.passwordFile, same.passwordEnv], ["/f", "X"], "same level: file first");
});

Deno.test("applyConfig() falls back to the profile named default", async () => {
  const opts = await configured([], {}, { profiles: { default: { user: "x@example.test" } } });
  assert.equal(opts.user, "x@example.test");
});

Deno.test("applyConfig() reports bad values and unknown profiles as usage errors", async () => {
  const usage = (e: unknown) => e instanceof CommandError && e.code === EXIT.USAGE;
  await assert.rejects(configured([], { SIPKIT_EXPIRES: "soon" }, {}), (e: Error) => {
    assert.ok(usage(e));
    assert.match(e.message, /environment variable SIPKIT_EXPIRES/);
    return true;
  });
  await assert.rejects(configured([], { SIPKIT_TRANSPORT: "sctp" }, {}), usage);
  await assert.rejects(configured(["--profile", "nope"], {}, { profiles: {} }), (e: Error) => {
    assert.ok(usage(e));
    assert.match(e.message, /Unknown profile "nope"/);
    return true;
  });
  await assert.rejects(configured([], {}, [1, 2]), /not a JSON object/);
  await assert.rejects(configured([], {}, { profiles: 3 }), /"profiles" must be an object/);
});

Deno.test("configDir(), stateDir() and configFile() follow SIPKIT_*, then XDG, then HOME", () => {
  const env = (vars: Record<string, string>) => ({ get: (k: string) => vars[k] });
  assert.equal(configDir(env({ SIPKIT_CONFIG_DIR: "/c", HOME: "/h" })), "/c");
  assert.equal(configDir(env({ XDG_CONFIG_HOME: "/x", HOME: "/h" })), "/x/sipkit");
  assert.equal(configDir(env({ HOME: "/h" })), "/h/.config/sipkit");
  assert.equal(stateDir(env({ XDG_STATE_HOME: "/s" })), "/s/sipkit");
  assert.equal(stateDir(env({ HOME: "/h" })), "/h/.local/state/sipkit");
  assert.equal(configFile(env({ SIPKIT_CONFIG: "/f.json" })), "/f.json");
  assert.equal(configFile(env({ HOME: "/h" })), "/h/.config/sipkit/config.json");
  assert.throws(() => configDir(env({})), /HOME is not set/);
});

Deno.test("passwordProvider() reads the first line of a file, or a named variable, once", async () => {
  const dir = await Deno.makeTempDir();
  const name = `SIPKIT_TEST_PW_${crypto.randomUUID().slice(0, 8).toUpperCase()}`;
  try {
    await Deno.writeTextFile(`${dir}/pw`, "s3cret\r\nnext\n");
    const fromFile = passwordProvider({ passwordFile: `${dir}/pw` });
    assert.equal(await fromFile(), "s3cret");
    Deno.env.set(name, "from-env");
    const fromEnv = passwordProvider({ passwordEnv: name });
    assert.equal(await fromEnv(), "from-env");
    Deno.env.set(name, "changed");
    assert.equal(await fromEnv(), "from-env", "read once");
    await assert.rejects(
      passwordProvider({ passwordFile: `${dir}/missing` })(),
      (e: unknown) => e instanceof CommandError && e.code === EXIT.USAGE,
    );
    await assert.rejects(
      passwordProvider({ passwordEnv: `${name}_UNSET` })(),
      (e: unknown) => e instanceof CommandError && e.code === EXIT.USAGE,
    );
  } finally {
    Deno.env.delete(name);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exitCodeFor() maps errors to the documented exit codes", () => {
  assert.equal(exitCodeFor(new CommandError(EXIT.USAGE, "x")), 2);
  assert.equal(exitCodeFor(new SipRequestError(408, "Request Timeout", { local: true })), 3);
  assert.equal(exitCodeFor(new SipRequestError(404, "Not Found")), 1);
  assert.equal(exitCodeFor(new Deno.errors.ConnectionRefused("refused")), 3);
  assert.equal(exitCodeFor(new Deno.errors.AddrInUse("in use")), 3);
  assert.equal(exitCodeFor(new TypeError("bug")), 70);
});

Deno.test("keepRegistered() registers, follows address_changed, flags bad input, removes on stop", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const resolve = (uri: { host: string; port?: number }) =>
    Promise.resolve([{ protocol: "udp" as const, host: uri.host, port: uri.port ?? 5060 }]);
  const ua = await UserAgent.create({
    aor: "alice@example.test",
    transports: [net.transport({ host: "192.0.2.1" })],
    clock,
    resolve,
  });
  const registrar = await UserAgent.create({
    transports: [net.transport({ host: "192.0.2.5" })],
    clock,
    resolve,
  });
  const bound = new Set<string>();
  registrar.handle("REGISTER", (i) => {
    for (const c of i.request.contact) {
      const key = `${c.uri.host}:${c.uri.port ?? 5060}`;
      const expires = c.params.expires ?? String(i.request.expires ?? 3600);
      if (expires === "0") bound.delete(key);
      else bound.add(key);
    }
    return i.respond(200);
  });
  const events: Record<string, unknown>[] = [];
  const logs: string[] = [];
  const ctx = {
    out: {
      emit: (type: string, fields: Record<string, unknown> = {}) => {
        events.push({ type, ...fields });
        return Promise.resolve();
      },
    },
    log: { log: (_l: string, m: string) => logs.push(m), raw: () => {} },
    skipLine: (line: number, message: string) => {
      logs.push(`<stdin>:${line}: ${message}; line skipped`);
      events.push({ type: "error", source: "stdin", line, message });
      return Promise.resolve();
    },
  } as unknown as CommandContext;
  try {
    const kept = keepRegistered(ua, ctx, { registrar: "sip:192.0.2.5", expires: 600 });
    await net.settled();
    assert.deepEqual([...bound], ["192.0.2.1:5060"]);
    assert.equal(events[0].type, "registered");

    assert.equal(await kept.handleInput({ type: "status", status: "away" }, 1), false);
    assert.equal(await kept.handleInput({ type: "address_changed", address: "nowhere" }, 2), true);
    assert.equal(await kept.handleInput({ type: "address_changed" }, 3), true);
    assert.deepEqual(events.slice(1).map((e) => [e.type, e.line]), [["error", 2], ["error", 3]]);
    assert.match(String(events[1].message), /not an IP address/);

    const moving = kept.handleInput({ type: "address_changed", address: "198.51.100.7" }, 4);
    await net.settled();
    assert.equal(await moving, true);
    assert.deepEqual([...bound], ["198.51.100.7:5060"]);
    const registered = events.at(-2)!;
    assert.equal(registered.type, "registered");
    assert.equal(registered.contact, "sip:alice@198.51.100.7");
    assert.deepEqual(registered.replaced, ["sip:alice@192.0.2.1"]);
    // The process moved: its socket (bound to the old address) now lives on the new one.
    const moved = events.at(-1)!;
    assert.deepEqual([moved.type, moved.old, moved.new, moved.redone], [
      "moved",
      "192.0.2.1",
      "198.51.100.7",
      ["registration"],
    ]);
    assert.equal(ua.transports[0].local.host, "198.51.100.7");

    const stopping = kept.stop();
    await net.settled();
    await stopping;
    assert.equal(bound.size, 0);
    assert.equal(events.at(-1)!.type, "unregistered");
    assert.ok(logs.some((l) => l.startsWith("removing binding sip:alice@198.51.100.7")));
    await kept.stop(); // twice is fine
  } finally {
    await ua.close();
    await registrar.close();
  }
});

Deno.test("NdjsonWriter: batches written with writeSync, small and large, ASCII and not, each arrive whole", async () => {
  const lines: string[] = [];
  const w = new NdjsonWriter({
    writeSync: (p) => {
      // Copied at once, as a real write takes the bytes before it returns.
      lines.push(...dec.decode(p).split("\n").filter((l) => l !== ""));
      return p.length;
    },
    write: () => Promise.reject(new Error("no asynchronous write expected")),
  }, { now: () => NOW });
  const bodies = ["a", "é中😀".repeat(2000), "b".repeat(10_000), "c", "ü".repeat(5000), "d"];
  for (const body of bodies) await w.emit("message", { body });
  await Promise.all(bodies.map((body) => w.emit("message", { body })));
  assert.deepEqual(lines.map((l) => JSON.parse(l).body), [...bodies, ...bodies]);
});

Deno.test("NdjsonWriter: the kept encode buffer shrinks back after a large event, and the bytes stay exact", async () => {
  const out: Uint8Array[] = [];
  const buffers = new Set<ArrayBufferLike>();
  const w = new NdjsonWriter({
    writeSync: (p) => {
      buffers.add(p.buffer);
      out.push(p.slice());
      return p.length;
    },
    write: () => Promise.reject(new Error("no asynchronous write expected")),
  }, { now: () => NOW });
  const expected: string[] = [];
  const emit = async (type: string, fields: Record<string, unknown>) => {
    expected.push(JSON.stringify({ type, time: NOW.toISOString(), ...fields }) + "\n");
    await w.emit(type, fields);
  };
  assert.equal(w.keptBufferSize, 0);
  await emit("message", { body: "hello" });
  assert.equal(w.keptBufferSize, 4096);

  // One large event (a 200,000-byte body in base64, as a MESSAGE listener would print it).
  const big = new Uint8Array(200_000).map((_, i) => (i * 7919) & 0xff);
  await emit("message", {
    body_base64: btoa(Array.from(big, (b) => String.fromCharCode(b)).join("")),
  });
  const large = w.keptBufferSize;
  assert.ok(large >= 3 * 266_668, `grown to fit the large batch: ${large}`);

  // Small batches that follow: the buffer stays (no allocation) for a while, then comes back down.
  buffers.clear();
  for (let i = 0; i < 15; i++) await emit("message", { body: `small ${i} é中😀` });
  assert.equal(w.keptBufferSize, large, "kept through 15 small batches");
  assert.equal(buffers.size, 1, "15 small batches, one buffer");
  await emit("message", { body: "the 16th" });
  assert.equal(w.keptBufferSize, 4096, "back to 4 KiB after 16 small batches");

  // A steady stream of small batches then reuses that one buffer.
  buffers.clear();
  for (let i = 0; i < 100; i++) await emit("message", { body: "x".repeat(i * 10) });
  assert.equal(w.keptBufferSize, 4096);
  assert.equal(buffers.size, 1, "no new buffer per batch in the steady state");

  // Batches of a steady medium size never make it shrink below what they need,
  // and a batch that needs over a quarter of it restarts the count.
  await emit("message", { body: "m".repeat(40_000) }); // needs 120,001: 128 KiB
  assert.equal(w.keptBufferSize, 131_072);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 15; i++) await emit("message", { body: "s" });
    await emit("message", { body: "q".repeat(11_000) }); // needs over 32 KiB: a quarter
  }
  assert.equal(w.keptBufferSize, 131_072, "a batch over a quarter restarts the count");
  // 16 batches in a row that need under a quarter: it shrinks to fit the largest of them.
  for (let i = 0; i < 15; i++) await emit("message", { body: "s" });
  await emit("message", { body: "r".repeat(5_000) }); // needs 15,000 and a frame: 16 KiB
  assert.equal(w.keptBufferSize, 16_384, "shrunk to what the largest small batch needed");

  // Several lines in one batch count as one batch, and a new large event grows it again.
  await Promise.all([
    emit("message", { body: "ü".repeat(100_000) }),
    emit("message", { body: "after" }),
  ]);
  assert.ok(w.keptBufferSize >= 300_000);

  const got = new Uint8Array(out.reduce((n, p) => n + p.length, 0));
  out.reduce((off, p) => (got.set(p, off), off + p.length), 0);
  assert.deepEqual(got, enc.encode(expected.join("")), "every byte as JSON.stringify would write");
});

Deno.test("uriOption() reads SIP URIs and refuses other schemes as usage errors", () => {
  assert.equal(uriOption("--user", " alice@example.test ").user, "alice");
  assert.equal(uriOption("--proxy", "SIPS:proxy.example.test").scheme, "sips");
  assert.equal(uriOption("--user", "sip:bob@example.test:5070").port, 5070);
  for (
    const value of ["mailto:x@example.test", "TEL:+15551234", " https://example.test", "Im:x@y"]
  ) {
    assert.throws(
      () => uriOption("--user", value),
      (e: unknown) =>
        e instanceof CommandError && e.code === EXIT.USAGE &&
        /is not a sip: or sips: URI/.test(e.message),
      value,
    );
  }
  assert.throws(
    () => uriOption("--user", "example.test", { needUser: true }),
    (e: unknown) => e instanceof CommandError && /has no user part/.test(e.message),
  );
});
