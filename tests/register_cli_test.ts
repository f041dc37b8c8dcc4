/**
 * `sipkit register` as a real process against a real Kamailio registrar on
 * 127.0.0.1 (Debian package `kamailio`), users alice/bob/carol/dave with
 * passwords `<user>-secret` in domain example.test.
 */

import assert from "node:assert/strict";
import { type Kamailio, startKamailio } from "./peers/kamailio.ts";
import { findBinary, isPortBound, requirePeer } from "./peers/require.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { VERSION } from "../lib/version.ts";
import { shellWords, sipkitArgv } from "./_sipkit_process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const HAVE_KAMAILIO = requirePeer("kamailio", "kamailio");

/** An event on stdout. */
interface Ev {
  type: string;
  time: string;
  [field: string]: unknown;
}

/** The environment of the parent without SIPKIT_* variables, plus `extra`. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (!k.startsWith("SIPKIT_") && k !== "CI") env[k] = v;
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

/** Longest life of a test's sipkit process (every test here ends its processes in seconds). */
const LIFETIME_MS = 120_000;

/** A running `sipkit` process: events as they come, stderr, signals, stdin lines. */
class Sipkit {
  readonly events: Ev[] = [];
  readonly badLines: string[] = [];
  stderr = "";
  readonly exited: Promise<number>;
  readonly #child: Deno.ChildProcess;
  readonly #writer?: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #waiters: { pred: (e: Ev) => boolean; resolve: (e: Ev) => void }[] = [];
  #stdinClosed = false;
  #stdoutClosed = false;

  constructor(args: string[], env: Record<string, string>, options: { stdin?: boolean } = {}) {
    const child = new Deno.Command(Deno.execPath(), {
      args: sipkitArgv(args).slice(1),
      cwd: ROOT,
      clearEnv: true,
      env: cleanEnv(env),
      stdin: options.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#writer = options.stdin ? child.stdin.getWriter() : undefined;
    this.#reader = child.stdout.getReader();
    const out = this.#readStdout();
    const err = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) this.stderr += dec.decode(chunk);
    })();
    // A process still running after LIFETIME_MS is killed (exit code 137 and a
    // note in its stderr), so that a hang fails the test instead of stalling CI.
    const guard = setTimeout(() => {
      this.stderr += `\n[test guard: still running after ${LIFETIME_MS} ms, killed]\n`;
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, LIFETIME_MS);
    this.exited = (async () => {
      const status = await child.status;
      clearTimeout(guard);
      await Promise.all([out, err]);
      await this.closeStdin();
      return status.code;
    })();
  }

  async #readStdout(): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    const line = (text: string) => {
      if (text === "") return;
      try {
        const v = JSON.parse(text);
        if (typeof v !== "object" || v === null || typeof v.type !== "string") {
          this.badLines.push(text);
          return;
        }
        this.events.push(v);
        for (const w of [...this.#waiters]) {
          if (w.pred(v)) {
            this.#waiters.splice(this.#waiters.indexOf(w), 1);
            w.resolve(v);
          }
        }
      } catch {
        this.badLines.push(text);
      }
    };
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          line(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      }
      line(buf);
    } catch {
      // cancelled by closeStdout()
    }
  }

  /** Waits for an event matching `pred` (already seen or coming). */
  event(pred: (e: Ev) => boolean, what: string, timeout = 15_000): Promise<Ev> {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (e: Ev) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        reject(new Error(`timed out waiting for ${what}\n${this.logs()}`));
      }, timeout);
      this.#waiters.push(w);
    });
  }

  /** Waits until stderr matches. */
  async stderrMatch(re: RegExp, what: string, timeout = 15_000): Promise<void> {
    const deadline = Date.now() + timeout;
    while (!re.test(this.stderr)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${this.logs()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async send(line: string): Promise<void> {
    await this.#writer!.write(new TextEncoder().encode(line + "\n"));
  }

  async closeStdin(): Promise<void> {
    if (!this.#writer || this.#stdinClosed) return;
    this.#stdinClosed = true;
    await this.#writer.close().catch(() => {});
  }

  /** Closes our end of its stdout, as `| head -1` does. */
  async closeStdout(): Promise<void> {
    if (this.#stdoutClosed) return;
    this.#stdoutClosed = true;
    await this.#reader.cancel().catch(() => {});
  }

  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // already gone
    }
  }

  /** Makes sure it is gone (SIGKILL) and reaped. */
  async dispose(): Promise<void> {
    const timer = setTimeout(() => this.kill("SIGKILL"), 8000);
    this.kill("SIGTERM");
    await this.exited;
    clearTimeout(timer);
  }

  logs(): string {
    return `-- stderr --\n${this.stderr}\n-- events --\n${
      this.events.map((e) => JSON.stringify(e)).join("\n")
    }`;
  }
}

/** Runs sipkit to its end. */
async function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; events: Ev[]; stderr: string; badLines: string[] }> {
  const p = new Sipkit(args, env);
  // A one-shot run that hangs fails the test instead of stalling the suite.
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    p.kill("SIGKILL");
  }, 30_000);
  const code = await p.exited;
  clearTimeout(timer);
  if (hung) throw new Error(`sipkit ${args.join(" ")} did not end within 30 s\n${p.logs()}`);
  return { code, events: p.events, stderr: p.stderr, badLines: p.badLines };
}

/** `register -u <aor> --registrar <registrar>` plus `args`. */
function registerArgs(aor: string, registrar: string, args: string[]): string[] {
  return ["register", "-u", aor, "--registrar", registrar, ...args];
}

interface Ctx {
  k: Kamailio;
  dir: string;
  /** Private config/state directories. */
  env: Record<string, string>;
  /** `register -u <user>@example.test --registrar <kamailio>` plus `args`. */
  register(user: string, args: string[]): string[];
  /** `env` plus the user's password (`<user>-secret`) in SIPKIT_PASSWORD. */
  pw(user: string): Record<string, string>;
  /** The contacts Kamailio lists for a user (a --query run). */
  bindings(user: string): Promise<string[]>;
  /**
   * Runs `fn` with a running `sipkit` of `register(user, args)` (with `pw(user)`) and its first
   * `registered` event; the process is disposed of afterwards, whatever happens.
   */
  whileRegistered(
    user: string,
    args: string[],
    fn: (p: Sipkit, reg: Ev) => Promise<void>,
    options?: { stdin?: boolean },
  ): Promise<void>;
}

async function withKamailio(
  fn: (ctx: Ctx) => Promise<void>,
  options: { digestAlgorithm?: "MD5" | "SHA-256" } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sipkit-register-cli-" });
  // min_expires 2: refreshes come after a second or two (a 1 s request gets 423).
  const k = await startKamailio({ mode: "registrar", minExpires: 2, ...options });
  const env = {
    SIPKIT_CONFIG_DIR: `${dir}/config`,
    SIPKIT_STATE_DIR: `${dir}/state`,
  };
  const ctx: Ctx = {
    k,
    dir,
    env,
    register: (user, args) => registerArgs(`${user}@example.test`, k.uri, args),
    pw: (user) => ({ ...env, SIPKIT_PASSWORD: `${user}-secret` }),
    bindings: async (user) => {
      const r = await run(ctx.register(user, ["--query"]), ctx.pw(user));
      assert.equal(r.code, 0, r.stderr);
      return r.events.filter((e) => e.type === "binding").map((e) => String(e.contact));
    },
    whileRegistered: async (user, args, fn, options) => {
      const p = new Sipkit(ctx.register(user, args), ctx.pw(user), options);
      try {
        await fn(p, await p.event((e) => e.type === "registered", "registered"));
      } finally {
        await p.dispose();
      }
    },
  };
  try {
    await fn(ctx);
  } catch (e) {
    console.error(`----- ${k.name} -----\n${k.logs().slice(-6000)}`);
    throw e;
  } finally {
    await k.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * A TCP port on which nothing listens: a privileged one, which the
 * ephemeral ports other tests pick can never be, checked free.
 */
function closedTcpPort(): number {
  for (let port = 1; port < 1024; port++) if (!isPortBound("tcp", port)) return port;
  throw new Error("no closed TCP port below 1024");
}

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

Deno.test({
  name: "sipkit register --once registers, --query lists, --remove removes",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ k, env, register, bindings }) => {
      const pw = { ...env, SIPKIT_PASSWORD: "alice-secret" };
      const once = await run(register("alice", ["--once", "--expires", "600"]), pw);
      assert.equal(once.code, 0, once.stderr);
      assert.deepEqual(once.badLines, []);
      assert.equal(once.events.length, 1);
      const ev = once.events[0];
      assert.equal(ev.type, "registered");
      assert.match(ev.time, ISO_MS);
      assert.equal(ev.aor, "sip:alice@example.test");
      assert.equal(ev.expires, 600);
      assert.equal(ev.registrar, k.uri);
      const contact = String(ev.contact);
      assert.match(contact, /^sip:alice@127\.0\.0\.1:\d+$/);

      const q = await run(register("alice", ["--query"]), pw);
      assert.equal(q.code, 0, q.stderr);
      const listed = q.events.filter((e) => e.type === "binding");
      const mine = listed.find((e) => e.contact === contact);
      assert.ok(mine, JSON.stringify(q.events));
      assert.equal(mine.aor, "sip:alice@example.test");
      assert.ok(Number(mine.expires) > 500 && Number(mine.expires) <= 600);

      // --remove with --contact removes exactly that binding.
      const second = await run(register("alice", ["--once", "--expires", "600"]), pw);
      const other = String(second.events[0].contact);
      assert.deepEqual((await bindings("alice")).sort(), [contact, other].sort());
      const rm = await run(register("alice", ["--remove", "--contact", contact]), pw);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(rm.events[0].type, "unregistered");
      assert.equal(rm.events[0].contact, contact);
      assert.deepEqual(await bindings("alice"), [other]);

      // --remove alone removes what --once runs of this host left (recorded in the state directory).
      const left = await run(register("alice", ["--remove"]), pw);
      assert.equal(left.code, 0, left.stderr);
      assert.deepEqual(left.events.map((e) => [e.type, e.contact]), [["unregistered", other]]);
      assert.deepEqual(await bindings("alice"), []);
      const none = await run(register("alice", ["--remove"]), pw);
      assert.equal(none.code, 2, none.stderr);
      assert.match(none.stderr, /no binding of sip:alice@example\.test .* is known/);

      // With --bind, --remove removes the contact of that address (no record needed).
      const fixed = await run(register("alice", ["--once", "--bind", "127.0.0.1:0"]), pw);
      const port = Number(String(fixed.events[0].contact).split(":").at(-1));
      assert.ok(port > 0);
      const elsewhere = { ...pw, SIPKIT_STATE_DIR: `${env.SIPKIT_STATE_DIR}-other` };
      const byBind = await run(
        register("alice", ["--remove", "--bind", `127.0.0.1:${port}`]),
        elsewhere,
      );
      assert.equal(byBind.code, 0, byBind.stderr);
      assert.deepEqual(await bindings("alice"), []);

      // Third-party registration: a contact where another process listens.
      const third = await run(
        register("alice", ["--once", "--contact", "sip:alice@127.0.0.1:5999;transport=tcp"]),
        pw,
      );
      assert.equal(third.code, 0, third.stderr);
      assert.equal(third.events[0].contact, "sip:alice@127.0.0.1:5999;transport=tcp");
      assert.deepEqual(await bindings("alice"), ["sip:alice@127.0.0.1:5999;transport=tcp"]);
      await run(register("alice", ["--once"]), pw);

      // --remove --all sends Contact: * and every binding goes.
      const all = await run(register("alice", ["--remove", "--all", "--trace"]), pw);
      assert.equal(all.code, 0, all.stderr);
      assert.equal(all.events[0].contact, "*");
      assert.match(all.stderr, /\r?\nContact: \*\r?\n/);
      assert.deepEqual(await bindings("alice"), []);
    }),
});

Deno.test({
  name: "sipkit register keeps refreshing, and on SIGINT removes its binding and exits 130",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(({ whileRegistered, bindings }) =>
      whileRegistered("bob", ["--expires", "4"], async (p, reg) => {
        assert.equal(reg.expires, 4);
        const refreshed = await p.event((e) => e.type === "refreshed", "refreshed");
        assert.equal(refreshed.contact, reg.contact);
        assert.deepEqual(await bindings("bob"), [reg.contact]);
        p.kill("SIGINT");
        assert.equal(await p.exited, 130, p.logs());
        const un = p.events.find((e) => e.type === "unregistered");
        assert.ok(un, p.logs());
        assert.equal(un.contact, reg.contact);
        assert.deepEqual(await bindings("bob"), []);
        assert.deepEqual(p.badLines, []);
      })
    ),
});

Deno.test({
  name: "sipkit register through an outbound proxy, over UDP and TCP, to the AOR's domain",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ k, env, bindings }) => {
      const pw = { ...env, SIPKIT_PASSWORD: "carol-secret" };
      for (const transport of ["udp", "tcp"]) {
        // No --registrar: the registrar is the AOR's domain, reached through
        // the proxy's Route (so no DNS look-up of example.test is made).
        const r = await run([
          "register",
          "-u",
          "carol@example.test",
          "--proxy",
          `${k.uri};transport=${transport}`,
          "--once",
          "--trace",
        ], pw);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.events[0].registrar, "sip:example.test");
        assert.match(r.stderr, /\r?\nREGISTER sip:example\.test SIP\/2\.0\r?\nVia: SIP\/2\.0\//);
        assert.match(
          r.stderr,
          new RegExp(`Route: <sip:127\\.0\\.0\\.1:${k.port};transport=${transport};lr>`),
        );
        assert.match(r.stderr, new RegExp(`>>> sent to ${transport} 127\\.0\\.0\\.1:${k.port}`));
        const contact = String(r.events[0].contact);
        if (transport === "tcp") assert.match(contact, /;transport=tcp$/);
        assert.ok((await bindings("carol")).includes(contact));
      }
    }),
});

Deno.test({
  name: "sipkit register on SIGTERM removes its binding and exits 0",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(({ whileRegistered, bindings }) =>
      whileRegistered("carol", ["--expires", "600"], async (p, reg) => {
        p.kill("SIGTERM");
        assert.equal(await p.exited, 0, p.logs());
        assert.ok(p.events.some((e) => e.type === "unregistered" && e.contact === reg.contact));
        assert.deepEqual(await bindings("carol"), []);
      })
    ),
});

Deno.test({
  name: "sipkit register follows address_changed from stdin and reports a bad line",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(({ whileRegistered, bindings }) =>
      whileRegistered("dave", ["--expires", "600", "--bind", "0.0.0.0:0"], async (p, reg) => {
        const old = String(reg.contact);
        assert.match(old, /^sip:dave@127\.0\.0\.1:\d+$/);
        const port = old.split(":").at(-1);
        // A line that is not JSON: reported, skipped, the command goes on.
        await p.send("this is not json");
        const err = await p.event((e) => e.type === "error", "error event");
        assert.equal(err.line, 1);
        assert.match(p.stderr, /<stdin>:1:/);
        await p.send(JSON.stringify({ type: "something_else", x: 1 }));
        await p.send(JSON.stringify({ type: "address_changed", address: "127.0.0.2" }));
        const moved = await p.event(
          (e) => e.type === "registered" && e.contact !== old,
          "registered on the new address",
        );
        assert.equal(moved.contact, `sip:dave@127.0.0.2:${port}`);
        assert.deepEqual(moved.replaced, [old]);
        assert.deepEqual(await bindings("dave"), [moved.contact]);
        p.kill("SIGINT");
        assert.equal(await p.exited, 130, p.logs());
        assert.deepEqual(await bindings("dave"), []);
        // stdout held only events.
        assert.deepEqual(p.badLines, []);
      }, { stdin: true })
    ),
});

Deno.test({
  name: "sipkit register with a wrong password says so on stderr and exits 1",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ env, register }) => {
      const r = await run(register("alice", ["--once"]), {
        ...env,
        SIPKIT_PASSWORD: "not-the-password",
      });
      assert.equal(r.code, 1, r.stderr);
      // Kamailio answers the wrong digest with 403 Forbidden - Wrong Password.
      assert.match(r.stderr, /^sipkit: error: Registration failed: 403 Forbidden/m);
      assert.ok(!r.stderr.includes("not-the-password"));
      assert.deepEqual(r.events.map((e) => [e.type, e.status]), [["registration_failed", 403]]);
    }),
});

Deno.test({
  name: "sipkit register exits 3 when the registrar cannot be reached",
  ignore: !HAVE_KAMAILIO,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const port = closedTcpPort(); // nobody listens: TCP connection refused at once
      const started = Date.now();
      const r = await run(
        registerArgs("alice@example.test", `sip:127.0.0.1:${port}`, [
          "--transport",
          "tcp",
          "--once",
        ]),
        { SIPKIT_CONFIG_DIR: dir, SIPKIT_PASSWORD: "x" },
      );
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.events[0]?.type, "registration_failed");
      assert.ok(Date.now() - started < 15_000, "no transaction timeout");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("sipkit register --once to a closed UDP port exits 3 at once, naming the ICMP port unreachable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // Nobody listens on this UDP port: the kernel answers ICMP port unreachable
    // (RFC 3261 18.4). Without hearing it, this took timer F (32 s) and ended
    // with 408; the run() guard kills a run that takes 30 s.
    const sink = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (sink.addr as Deno.NetAddr).port;
    sink.close();
    const r = await run(
      registerArgs("alice@example.test", `sip:127.0.0.1:${port}`, ["--transport", "udp", "--once"]),
      { SIPKIT_CONFIG_DIR: dir, SIPKIT_PASSWORD: "x" },
    );
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.events[0]?.type, "registration_failed", r.stderr);
    assert.equal(r.events[0]?.status, 503);
    assert.match(String(r.events[0]?.reason), /ICMP port unreachable/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "sipkit register --once stops at once on SIGINT while waiting for an answer",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    // A registrar that never answers.
    const sink = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    const port = (sink.addr as Deno.NetAddr).port;
    const p = new Sipkit(registerArgs("alice@example.test", `sip:127.0.0.1:${port}`, ["--once"]), {
      SIPKIT_CONFIG_DIR: dir,
      SIPKIT_PASSWORD: "x",
    });
    try {
      const [data] = await sink.receive();
      assert.match(new TextDecoder().decode(data), /^REGISTER /);
      const t0 = Date.now();
      p.kill("SIGINT");
      assert.equal(await p.exited, 130, p.logs());
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    } finally {
      sink.close();
      await p.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "sipkit register answers a SHA-256 digest challenge (RFC 8760) from Kamailio",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ env, register, pw }) => {
      const ok = await run(register("alice", ["--once", "--trace"]), pw("alice"));
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stderr, /WWW-Authenticate: Digest .*algorithm=SHA-256/);
      assert.match(ok.stderr, /Authorization: Digest .*response="[0-9a-f]{64}", algorithm=SHA-256/);
      assert.equal(ok.events[0].type, "registered");
      const wrong = await run(register("alice", ["--once"]), { ...env, SIPKIT_PASSWORD: "nope" });
      assert.equal(wrong.code, 1, wrong.stderr);
    }, { digestAlgorithm: "SHA-256" }),
});

Deno.test({
  name: "sipkit register retries a 423 with Min-Expires",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ register, pw }) => {
      const r = await run(register("alice", ["--once", "--expires", "1", "--trace"]), pw("alice"));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /SIP\/2\.0 423 /);
      assert.equal(r.events[0].type, "registered");
      assert.equal(r.events[0].expires, 2);
    }),
});

Deno.test({
  name: "sipkit register takes its password from --password-file and --password-env",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ env, dir, register }) => {
      const file = `${dir}/pw`;
      await Deno.writeTextFile(file, "alice-secret\nsecond line ignored\n");
      const a = await run(register("alice", ["--once", "--password-file", file]), {
        ...env,
        SIPKIT_PASSWORD: "wrong", // the flag wins
      });
      assert.equal(a.code, 0, a.stderr);
      assert.equal(a.events[0].type, "registered");

      const b = await run(register("alice", ["--once", "--password-env", "MY_PW"]), {
        ...env,
        MY_PW: "alice-secret",
      });
      assert.equal(b.code, 0, b.stderr);

      const missingFile = await run(
        register("alice", ["--once", "--password-file", `${dir}/nope`]),
        env,
      );
      assert.equal(missingFile.code, 2, missingFile.stderr);
      assert.match(missingFile.stderr, /Cannot read password file/);

      const missingVar = await run(register("alice", ["--once", "--password-env", "NOPE_PW"]), env);
      assert.equal(missingVar.code, 2);
      assert.match(missingVar.stderr, /NOPE_PW/);
    }),
});

Deno.test({
  name: "sipkit register never shows the password in --trace, logs or events",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ env, register }) => {
      const secret = "alice-secret";
      const ok = await run(register("alice", ["--once", "--trace", "-v"]), {
        ...env,
        SIPKIT_PASSWORD: secret,
      });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stderr, /Authorization: Digest username="alice"/);
      assert.match(ok.stderr, /<<< received from udp 127\.0\.0\.1:\d+/);
      const everything = ok.stderr + JSON.stringify(ok.events) + ok.badLines.join("");
      assert.ok(!everything.includes(secret));
      // A password that would show up in a message (as a display name here,
      // via the auth user) is masked in the trace.
      const masked = await run(
        register("alice", ["--once", "--trace", "--auth-user", "zz-masked-pw-zz"]),
        { ...env, SIPKIT_PASSWORD: "zz-masked-pw-zz" },
      );
      assert.equal(masked.code, 1);
      assert.ok(!masked.stderr.includes("zz-masked-pw-zz"), masked.stderr);
      assert.match(masked.stderr, /username="\*\*\*"/);
    }),
});

Deno.test({
  name:
    "sipkit register reads profiles and SIPKIT_* variables: flags, then environment, then profile",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(async ({ k, env, dir }) => {
      await Deno.mkdir(`${dir}/config`, { recursive: true });
      await Deno.writeTextFile(
        `${dir}/config/config.json`,
        JSON.stringify({
          default_profile: "home",
          profiles: {
            home: { user: "bob@example.test", password_env: "PW_BOB", registrar: k.uri },
            work: { user: "carol@example.test", "password-env": "PW_CAROL", registrar: k.uri },
          },
        }),
      );
      const base = {
        ...env,
        PW_BOB: "bob-secret",
        PW_CAROL: "carol-secret",
        PW_DAVE: "dave-secret",
      };
      const aor = async (args: string[], extra: Record<string, string> = {}) => {
        const r = await run(["register", "--once", "--expires", "300", ...args], {
          ...base,
          ...extra,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.events[0].registrar, k.uri);
        return r.events[0].aor;
      };
      assert.equal(await aor([]), "sip:bob@example.test", "default profile");
      assert.equal(await aor(["--profile", "work"]), "sip:carol@example.test");
      assert.equal(await aor([], { SIPKIT_PROFILE: "work" }), "sip:carol@example.test");
      assert.equal(
        await aor([], { SIPKIT_USER: "dave@example.test", SIPKIT_PASSWORD_ENV: "PW_DAVE" }),
        "sip:dave@example.test",
        "environment over profile",
      );
      assert.equal(
        await aor(["-u", "carol@example.test", "--password-env", "PW_CAROL"], {
          SIPKIT_USER: "dave@example.test",
          SIPKIT_PASSWORD_ENV: "PW_DAVE",
        }),
        "sip:carol@example.test",
        "flags over environment",
      );
      // --expires from the environment goes through the option's own parser.
      const r = await run(["register", "--once"], { ...base, SIPKIT_EXPIRES: "120" });
      assert.equal(r.events[0].expires, 120);
      const bad = await run(["register", "--once"], { ...base, SIPKIT_EXPIRES: "soon" });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /SIPKIT_EXPIRES/);
      const unknown = await run(["register", "--once", "--profile", "nope"], base);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /Unknown profile "nope"/);
    }),
});

Deno.test({
  name: "sipkit register ends quietly with exit 0 when stdout closes, after removing its binding",
  ignore: !HAVE_KAMAILIO,
  fn: () =>
    withKamailio(({ whileRegistered, bindings }) =>
      whileRegistered("bob", ["--expires", "4"], async (p, reg) => {
        await p.closeStdout(); // like `| head -1`
        // The next event (the refresh) meets a broken pipe.
        assert.equal(await p.exited, 0, p.stderr);
        assert.ok(!/error/i.test(p.stderr), p.stderr);
        const left = await bindings("bob");
        assert.ok(!left.includes(String(reg.contact)), `binding removed: ${left}`);
      })
    ),
});

Deno.test("sipkit --help, --version and bad usage", async (t) => {
  const dir = await Deno.makeTempDir();
  const env = { SIPKIT_CONFIG_DIR: dir };
  try {
    await t.step("--help exits 0", async () => {
      const a = new Sipkit(["register", "--help"], env);
      const code = await a.exited;
      assert.equal(code, 0);
      assert.deepEqual(a.badLines.slice(0, 1), ["Usage: sipkit register [options]"]);
      assert.ok(a.badLines.some((l) => l.includes("--password-file")));
    });
    await t.step("--version prints the version", async () => {
      const v = new Sipkit(["--version"], env);
      assert.equal(await v.exited, 0);
      assert.deepEqual(v.badLines, [VERSION]);
    });
    const usage: [string, string[], RegExp][] = [
      ["unknown option", ["register", "--bogus"], /unknown option '--bogus'/],
      ["bad number", ["register", "-u", "a@127.0.0.1", "--expires", "soon"], /whole number/],
      ["no user", ["register", "--once"], /missing --user/],
      ["exclusive modes", ["register", "-u", "a@127.0.0.1", "--once", "--query"], /exclude/],
      ["--all alone", ["register", "-u", "a@127.0.0.1", "--all"], /--all goes with --remove/],
      ["bad transport", ["register", "-u", "a@127.0.0.1", "--transport", "sctp"], /sctp/],
      ["bad bind", ["register", "-u", "a@127.0.0.1", "--once", "--bind", "x:99999"], /port/i],
      ["an AOR without user", ["register", "-u", "example.test", "--once"], /no user part/],
      ["a bad AOR", ["register", "-u", "sip:a@", "--once"], /--user: Cannot parse/],
      [
        "a bad registrar",
        ["register", "-u", "a@127.0.0.1", "--registrar", "sip:", "--once"],
        /--registrar/,
      ],
      [
        "a bad proxy",
        ["register", "-u", "a@127.0.0.1", "--proxy", "mailto:x@y", "--once"],
        /--proxy/,
      ],
      ["expires 0", ["register", "-u", "a@127.0.0.1", "--expires", "0"], /between 1 and/],
    ];
    for (const [name, args, re] of usage) {
      await t.step(`${name} exits 2`, async () => {
        const r = await run(args, env);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, re);
        assert.deepEqual(r.events, []);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A registrar inside the test (no auth) whose behaviour the test changes as it goes. */
async function testRegistrar(): Promise<{
  uri: string;
  mode: { answer: "ok" | "silent" | number };
  registers: number;
  close(): Promise<void>;
}> {
  const ua = await UserAgent.create({ bind: "127.0.0.1:0", listen: ["udp"] });
  const state = {
    uri: `sip:127.0.0.1:${ua.transports[0].local.port}`,
    mode: { answer: "ok" as "ok" | "silent" | number },
    registers: 0,
    close: () => ua.close(),
  };
  ua.handle("REGISTER", (i) => {
    state.registers++;
    const answer = state.mode.answer;
    if (answer === "silent") return;
    if (typeof answer === "number") return i.respond(answer);
    return i.respond(200, {
      headers: i.request.headers.getAll("Contact").map((c) => ["Contact", c] as [string, string]),
    });
  });
  return state;
}

Deno.test("sipkit register reports a failure with retry_in and keeps running", async () => {
  const dir = await Deno.makeTempDir();
  const registrar = await testRegistrar();
  registrar.mode.answer = 503;
  const p = new Sipkit(["register", "-u", "alice@example.test", "--registrar", registrar.uri], {
    SIPKIT_CONFIG_DIR: dir,
  });
  try {
    const failed = await p.event((e) => e.type === "registration_failed", "registration_failed");
    assert.equal(failed.status, 503);
    assert.equal(typeof failed.retry_in, "number");
    assert.ok(Number(failed.retry_in) >= 15 && Number(failed.retry_in) <= 30);
    assert.match(p.stderr, /registration failed: 503 .*retrying in \d+ s/);
    // Not registered: SIGTERM ends it at once, nothing to remove.
    p.kill("SIGTERM");
    assert.equal(await p.exited, 0, p.logs());
    assert.ok(!p.events.some((e) => e.type === "unregistered"));
  } finally {
    await p.dispose();
    await registrar.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sipkit register bounds its clean-up when the registrar went silent; a second SIGINT exits at once", async () => {
  const dir = await Deno.makeTempDir();
  const registrar = await testRegistrar();
  const args = ["register", "-u", "alice@example.test", "--registrar", registrar.uri];
  const a = new Sipkit(args, { SIPKIT_CONFIG_DIR: dir });
  const b = new Sipkit(args, { SIPKIT_CONFIG_DIR: dir });
  try {
    await a.event((e) => e.type === "registered", "registered (a)");
    await b.event((e) => e.type === "registered", "registered (b)");
    registrar.mode.answer = "silent";
    const t0 = Date.now();
    a.kill("SIGINT");
    b.kill("SIGINT");
    await b.stderrMatch(/removing binding sip:alice@/, "b to start its clean-up");
    b.kill("SIGINT"); // impatient user
    assert.equal(await b.exited, 130, b.logs());
    const bTime = Date.now() - t0;
    assert.equal(await a.exited, 130, a.logs());
    const aTime = Date.now() - t0;
    assert.ok(aTime >= 4500 && aTime < 12_000, `clean-up took ${aTime} ms`);
    assert.ok(bTime < aTime, `second SIGINT: ${bTime} ms, bounded clean-up: ${aTime} ms`);
    assert.match(a.stderr, /could not remove binding: no answer within 5000 ms/);
  } finally {
    await a.dispose();
    await b.dispose();
    await registrar.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs sipkit in a pseudo-terminal (util-linux `script`): what a person at a terminal sees. */
function inTerminal(args: string[], env: Record<string, string>) {
  const command = shellWords(sipkitArgv(args));
  const child = new Deno.Command("script", {
    args: ["-qefc", command, "/dev/null"],
    cwd: ROOT,
    clearEnv: true,
    env: cleanEnv(env),
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let screen = "";
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) screen += dec.decode(chunk, { stream: true });
  })();
  const writer = child.stdin.getWriter();
  return {
    screen: () => screen,
    type: (text: string) => writer.write(new TextEncoder().encode(text)),
    async waitFor(re: RegExp, timeout = 15_000): Promise<void> {
      const deadline = Date.now() + timeout;
      while (!re.test(screen)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${screen}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close(): Promise<number> {
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const status = await child.status;
      clearTimeout(timer);
      await writer.close().catch(() => {});
      await reading;
      return status.code;
    },
  };
}

Deno.test({
  name: "sipkit register in a terminal asks for the password without echoing it",
  ignore: !HAVE_KAMAILIO || !findBinary("script"),
  fn: () =>
    withKamailio(async ({ env, register }) => {
      const term = inTerminal(register("bob", ["--once"]), env);
      try {
        await term.waitFor(/Password: /);
        await term.type("bob-secret\r");
        await term.waitFor(/"type":"registered"/);
        assert.equal(await term.close(), 0, term.screen());
        assert.ok(!term.screen().includes("bob-secret"), term.screen());
        assert.match(term.screen(), /"aor":"sip:bob@example\.test"/);
      } finally {
        await term.close();
      }
    }),
});

Deno.test({
  name: "sipkit register: Ctrl-C at the password prompt exits 130",
  ignore: !HAVE_KAMAILIO || !findBinary("script"),
  fn: () =>
    withKamailio(async ({ env, register }) => {
      const term = inTerminal(register("bob", ["--once"]), env);
      try {
        await term.waitFor(/Password: /);
        await term.type("bob-se\x03");
        assert.equal(await term.close(), 130, term.screen());
        assert.ok(!term.screen().includes("registered"), term.screen());
      } finally {
        await term.close();
      }
    }),
});

Deno.test("sipkit register --remove --bind exits 3 when the registrar refuses the TCP connection", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await run(
      registerArgs("alice@127.0.0.1", `sip:127.0.0.1:${closedTcpPort()};transport=tcp`, [
        "--remove",
        "--bind",
        "127.0.0.1:0",
        "--contact",
        "sip:alice@127.0.0.1:5999",
      ]),
      { SIPKIT_CONFIG_DIR: dir, SIPKIT_STATE_DIR: dir },
    );
    assert.equal(r.code, 3, r.stderr);
    const q = await run(
      registerArgs("alice@127.0.0.1", `sip:127.0.0.1:${closedTcpPort()};transport=tcp`, [
        "--query",
      ]),
      { SIPKIT_CONFIG_DIR: dir, SIPKIT_STATE_DIR: dir },
    );
    assert.equal(q.code, 3, q.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
