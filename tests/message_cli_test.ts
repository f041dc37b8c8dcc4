/**
 * `sipkit message` as real processes over loopback sockets: send and listen,
 * exit codes, batch from a pipe, large bodies over TCP, CPIM, chat in a
 * pseudo-terminal (util-linux `script`).
 */

import assert from "node:assert/strict";
import {
  shellWords,
  sipkitArgv,
  type SipkitDirs,
  type SipkitEvent,
  type SipkitProcess,
  sipkitShellCommand,
  spawnSipkit,
  withSipkitDirs,
} from "./_sipkit_process.ts";
import { findBinary, freePort } from "./peers/require.ts";
import { routeLocalAddress } from "../lib/sip/_net.ts";

/**
 * Runs `fn` with fresh directories and bob listening (`startListener(dirs, extra)`); bob is
 * stopped afterwards, whatever happens.
 */
async function withListener(
  fn: (dirs: SipkitDirs, proc: SipkitProcess, address: string) => Promise<void>,
  extra: string[] = [],
): Promise<void> {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs, extra);
    try {
      await fn(dirs, proc, address);
    } finally {
      await proc.stop();
    }
  });
}

async function startListener(
  dirs: SipkitDirs,
  extra: string[] = [],
): Promise<{ proc: SipkitProcess; address: string }> {
  const proc = spawnSipkit(
    ["message", "--listen", "--bind", "127.0.0.1:0", "-u", "bob@example.test", ...extra],
    { name: "listener", env: dirs.env, stdin: false },
  );
  try {
    const e = await proc.waitEvent((e) => e.type === "listening", { message: "listening" });
    // The same `listening` fields as notify's: address, contact, transports, aor.
    assert.equal(e.contact, `sip:bob@${e.address}`);
    assert.deepEqual(e.transports, ["udp", "tcp"]);
    assert.equal(e.aor, "sip:bob@example.test");
    return { proc, address: String(e.address) };
  } catch (error) {
    await proc.stop();
    throw error;
  }
}

async function runSend(
  dirs: SipkitDirs,
  args: string[],
): Promise<{ code: number; events: SipkitEvent[]; logs: string }> {
  const p = spawnSipkit(["message", "-u", "alice@example.test", ...args], {
    name: "sender",
    env: dirs.env,
    stdin: false,
  });
  const code = await p.waitExit();
  assert.deepEqual(p.badLines, []);
  return { code, events: p.events, logs: p.logs() };
}

Deno.test("sipkit message sends to a sipkit listener: sent (delivered) and message events, exit 0", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    try {
      const r = await runSend(dirs, [`sip:bob@${address}`, "Hello bob ✓"]);
      assert.equal(r.code, 0, r.logs);
      const sent = r.events.find((e) => e.type === "sent")!;
      assert.equal(sent.status, 200);
      assert.equal(sent.delivered, true);
      assert.equal(sent.to, `sip:bob@${address}`);
      const got = await proc.waitEvent((e) => e.type === "message");
      assert.equal(got.body, "Hello bob ✓");
      assert.equal(got.from, "sip:alice@example.test");
      assert.equal(got.content_type, "text/plain;charset=UTF-8");
      assert.equal(got.call_id, sent.call_id);
      assert.equal(got.transport, "udp");
    } finally {
      await proc.stop();
    }
    assert.deepEqual(proc.badLines, []);
  });
});

Deno.test("sipkit message to a host name (localhost:port) locates it with the resolver (loaded for names only)", async () => {
  await withListener(async (dirs, proc, address) => {
    const port = address.split(":").pop();
    const r = await runSend(dirs, [`sip:bob@localhost:${port}`, "by name"]);
    assert.equal(r.code, 0, r.logs);
    const sent = r.events.find((e) => e.type === "sent")!;
    assert.equal(sent.status, 200);
    const got = await proc.waitEvent((e) => e.type === "message");
    assert.equal(got.body, "by name");
  });
});

Deno.test("sipkit message --listen | head -1: a message after stdout closed gets 500, the listener exits 0", async () => {
  await withSipkitDirs(async (dirs) => {
    const listen =
      `${sipkitShellCommand()} message --listen --bind 127.0.0.1:0 -u bob@example.test`;
    const shell = new Deno.Command("bash", {
      args: ["-c", `${listen} | head -1; echo "listener exit \${PIPESTATUS[0]}" >&2`],
      env: dirs.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(shell.stderr).text();
    const reader = shell.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      // head's only line is `listening`; head then exits and closes the pipe.
      let first = "";
      while (!first.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        first += value;
      }
      const listening = JSON.parse(first.trim());
      assert.equal(listening.type, "listening");
      const r = await runSend(dirs, [`sip:bob@${listening.address}`, "anyone there?"]);
      // The event could not be written, so the message is not acknowledged.
      assert.equal(r.code, 1, r.logs);
      const failed = r.events.find((e) => e.type === "send_failed")!;
      assert.equal(failed.status, 500, r.logs);
      const status = await shell.status;
      assert.equal(status.code, 0);
      assert.match(await stderr, /listener exit 0\n/);
    } finally {
      try {
        shell.kill();
      } catch {
        // already exited
      }
      await shell.status;
      await reader.cancel().catch(() => {});
      await stderr.catch(() => {});
    }
  });
});

Deno.test("sipkit message --listen on all interfaces: listening has a contact with a real address, not 0.0.0.0", async () => {
  await withSipkitDirs(async (dirs) => {
    for (const bind of ["0.0.0.0:0", "[::]:0"]) {
      const proc = spawnSipkit(["message", "--listen", "--bind", bind, "-u", "bob@example.test"], {
        name: "listener",
        env: dirs.env,
        stdin: false,
      });
      try {
        const e = await proc.waitEvent((e) => e.type === "listening", { message: "listening" });
        const port = String(e.address).replace(/^.*:/, "");
        assert.equal(e.address, `${bind.replace(/:0$/, "")}:${port}`);
        const host = String(e.contact).replace(/^sip:bob@/, "").replace(/:\d+$/, "");
        assert.ok(!["0.0.0.0", "[::]"].includes(host), String(e.contact));
        assert.equal(e.contact, `sip:bob@${routeLocalAddress("0.0.0.0", "192.0.2.1")}:${port}`);
      } finally {
        await proc.stop();
      }
    }
  });
});

Deno.test("sipkit message exits 1 on a final failure (415 from --accept) with send_failed", async () => {
  await withListener(async (dirs, proc, address) => {
    const r = await runSend(dirs, [`sip:bob@${address}`, "{}", "--type", "application/json"]);
    assert.equal(r.code, 1, r.logs);
    const failed = r.events.find((e) => e.type === "send_failed")!;
    assert.equal(failed.status, 415);
    assert.equal(failed.error, "rejected");
    assert.equal(proc.events.filter((e) => e.type === "message").length, 0);
  }, ["--accept", "text/plain"]);
});

Deno.test("sipkit message exits 3 when nobody answers (--timeout)", async () => {
  await withSipkitDirs(async (dirs) => {
    const port = freePort();
    const r = await runSend(dirs, [`sip:nobody@127.0.0.1:${port}`, "anyone?", "--timeout", "1"]);
    assert.equal(r.code, 3, r.logs);
    const failed = r.events.find((e) => e.type === "send_failed")!;
    assert.ok(failed.error === "timeout" || failed.error === "network", String(failed.error));
  });
});

Deno.test("sipkit message with the default bind reaches listeners on 127.0.0.1 and ::1 over UDP", async () => {
  await withSipkitDirs(async (dirs) => {
    for (const host of ["127.0.0.1", "[::1]"]) {
      const proc = spawnSipkit(
        ["message", "--listen", "--bind", `${host}:0`, "-u", "bob@example.test"],
        { name: `listener ${host}`, env: dirs.env, stdin: false },
      );
      try {
        const e = await proc.waitEvent((e) => e.type === "listening", { message: "listening" });
        // No --bind: one dual-stack socket, so IPv6 works over UDP too (was exit 3).
        const r = await runSend(dirs, [`sip:bob@${e.address}`, `hi ${host}`, "--transport", "udp"]);
        assert.equal(r.code, 0, r.logs);
        const got = await proc.waitEvent((e) => e.type === "message");
        assert.equal(got.body, `hi ${host}`);
        assert.equal(got.transport, "udp");
        // The sender's Contact/Via were of the listener's family: the source shows it.
        assert.ok(String(got.source).startsWith(`${host}:`), String(got.source));
      } finally {
        await proc.stop();
      }
    }
  });
});

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`sipkit message to a closed UDP port on ${host} exits 3 at once: send_failed names the ICMP port unreachable`, async () => {
    await withSipkitDirs(async (dirs) => {
      // Nobody listens there: the kernel answers ICMP port unreachable, a
      // transport error (RFC 3261 18.4), not a timeout after 32 s.
      const sink = Deno.listenDatagram({ transport: "udp", hostname: host, port: 0 });
      const port = (sink.addr as Deno.NetAddr).port;
      sink.close();
      const uri = `sip:nobody@${host.includes(":") ? `[${host}]` : host}:${port}`;
      const r = await runSend(dirs, [uri, "anyone?", "--transport", "udp"]);
      assert.equal(r.code, 3, r.logs);
      const failed = r.events.find((e) => e.type === "send_failed")!;
      assert.equal(failed.error, "network", r.logs);
      assert.equal(failed.status, 503);
      assert.match(String(failed.reason), /ICMP port unreachable/);
    });
  });
}

Deno.test("a one-shot sipkit message sets ICMP errors up only when no answer came: never when answered, and a closed UDP port still exits 3 long before timer F", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    try {
      const r = await runSend(dirs, [`sip:bob@${address}`, "quick", "--transport", "udp", "-v"]);
      assert.equal(r.code, 0, r.logs);
      // Answered within the deferral: no libc look-up, no /proc search.
      assert.doesNotMatch(r.logs, /ICMP errors/, r.logs);
    } finally {
      await proc.stop();
    }
    const port = freePort();
    const started = performance.now();
    const r = await runSend(dirs, [`sip:nobody@127.0.0.1:${port}`, "anyone?", "-v"]);
    const ms = performance.now() - started;
    assert.equal(r.code, 3, r.logs);
    assert.match(r.logs, /ICMP errors heard/, r.logs);
    const failed = r.events.find((e) => e.type === "send_failed")!;
    assert.equal(failed.error, "network", r.logs);
    assert.match(String(failed.reason), /ICMP port unreachable/);
    // The refusal of the first retransmission (T1, 500 ms) ends it: about a
    // second with the process start on a quiet machine; timer F would be 32 s.
    assert.ok(ms < 10_000, `exited after ${ms.toFixed(0)} ms`);
  });
});

Deno.test("sipkit message exits 2 on bad usage", async (t) => {
  await withSipkitDirs(async (dirs) => {
    const cases: [string, string[]][] = [
      ["--listen with a recipient", ["--listen", "sip:bob@127.0.0.1:5060"]],
      ["--register without --listen", ["--register", "sip:bob@127.0.0.1:5060", "x"]],
      ["a body and --file", ["sip:bob@127.0.0.1:5060", "x", "--file", "/etc/hostname"]],
      ["a bad --type", ["sip:bob@127.0.0.1:5060", "x", "--type", "plain"]],
      ["--file without a recipient", ["--file", "/etc/hostname"]],
      ["a bad --concurrency", ["--concurrency", "zero"]],
      ["--chat with a bad --accept", ["--chat", "bob@example.test", "--accept", "text"]],
    ];
    for (const [name, args] of cases) {
      await t.step(name, async () => {
        const r = await runSend(dirs, args);
        assert.equal(r.code, 2, r.logs);
      });
    }
  });
});

Deno.test("sipkit message --file sends a 10 KB body over TCP end to end", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    const file = `${dirs.configDir}-big.txt`;
    const body = Array.from({ length: 1024 }, (_, i) => `${i % 10}abcdefghi`).join("");
    await Deno.writeTextFile(file, body);
    try {
      const r = await runSend(dirs, [`sip:bob@${address}`, "--file", file]);
      assert.equal(r.code, 0, r.logs);
      const got = await proc.waitEvent((e) => e.type === "message");
      assert.equal(got.transport, "tcp");
      assert.equal(got.body, body);
      assert.equal((got.body as string).length, 10240);
    } finally {
      await proc.stop();
      await Deno.remove(file).catch(() => {});
    }
  });
});

Deno.test("sipkit message --cpim --subject: the listener shows the CPIM headers", async () => {
  await withListener(async (dirs, proc, address) => {
    const r = await runSend(dirs, [`sip:bob@${address}`, "wrapped", "--cpim", "--subject", "hi"]);
    assert.equal(r.code, 0, r.logs);
    const got = await proc.waitEvent((e) => e.type === "message");
    assert.equal(got.body, "wrapped");
    const cpim = got.cpim as Record<string, unknown>;
    assert.equal(cpim.from, "sip:alice@example.test");
    assert.deepEqual(cpim.to, [`sip:bob@${address}`]);
    assert.equal(cpim.subject, "hi");
    assert.match(String(cpim.datetime), /^\d{4}-\d\d-\d\dT/);
  });
});

Deno.test("sipkit message carries binary bodies as body_base64", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    const file = `${dirs.configDir}-bin`;
    await Deno.writeFile(file, new Uint8Array([0, 1, 2, 253, 254, 255]));
    try {
      const r = await runSend(dirs, [
        `sip:bob@${address}`,
        "--file",
        file,
        "--type",
        "application/octet-stream",
      ]);
      assert.equal(r.code, 0, r.logs);
      const got = await proc.waitEvent((e) => e.type === "message");
      assert.equal(got.body_base64, "AAEC/f7/");
      assert.equal(got.body, undefined);
    } finally {
      await proc.stop();
      await Deno.remove(file).catch(() => {});
    }
  });
});

Deno.test("sipkit message takes the body from stdin when it is not NDJSON input", async () => {
  await withListener(async (dirs, proc, address) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...sipkitArgv().slice(1),
        "message",
        "-u",
        "alice@example.test",
        `sip:bob@${address}`,
      ],
      env: { NO_COLOR: "1", ...dirs.env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("line one\nline two\n"));
    await w.close();
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const got = await proc.waitEvent((e) => e.type === "message");
    assert.equal(got.body, "line one\nline two\n");
  });
});

Deno.test("sipkit message batch from a pipe: one result per line with its id, bad lines reported", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    const sender = spawnSipkit(
      ["message", "-u", "alice@example.test", "--concurrency", "5"],
      { name: "batch", env: dirs.env },
    );
    try {
      const n = 40;
      for (let i = 0; i < n; i++) {
        await sender.send({
          type: "send",
          to: `sip:bob@${address}`,
          body: `msg ${i}`,
          id: `m${i}`,
        });
        if (i === 10) await sender.send({ type: "send", body: "no recipient", id: "bad" });
        if (i === 15) {
          await sender.send({ type: "send", to: "sip:bob@bad host", body: "x", id: "badto" });
        }
        if (i === 20) await sender.send({ type: "presence", note: "ignored" });
      }
      await sender.closeStdin();
      const code = await sender.waitExit();
      // A bad line makes the exit code 2; every good line was still sent.
      assert.equal(code, 2, sender.logs());
      const sent = sender.events.filter((e) => e.type === "sent");
      assert.equal(sent.length, n);
      assert.deepEqual(
        sent.map((e) => e.id).sort(),
        Array.from({ length: n }, (_, i) => `m${i}`).sort(),
      );
      const failed = sender.events.filter((e) => e.type === "send_failed");
      assert.deepEqual(failed.map((e) => [e.id, e.error]), [["bad", "invalid"], [
        "badto",
        "invalid",
      ]]);
      assert.equal(failed[0].message, 'missing string field "to"');
      assert.match(String(failed[1].message), /^bad "to": Cannot parse URI/);
      await proc.waitEvent(() => proc.events.filter((e) => e.type === "message").length === n);
      const bodies = proc.events.filter((e) => e.type === "message").map((e) => e.body);
      assert.equal(new Set(bodies).size, n);
      assert.deepEqual(sender.badLines, []);
    } finally {
      await sender.stop();
      await proc.stop();
    }
  });
});

/** Runs a command in a pseudo-terminal with util-linux `script`. */
function inTerminal(command: string[], env: Record<string, string>) {
  const quoted = command.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
  const child = new Deno.Command("script", {
    args: ["-qefc", quoted, "/dev/null"],
    env: { NO_COLOR: "1", ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let screen = "";
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) {
      screen += dec.decode(chunk, { stream: true });
      for (const w of [...waiters]) {
        const m = screen.match(w.re);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  })();
  const stderr = child.stderr.pipeTo(new WritableStream());
  const writer = child.stdin.getWriter();
  return {
    screen: () => screen,
    type: (text: string) => writer.write(new TextEncoder().encode(text)),
    waitFor(re: RegExp, timeout = 10_000): Promise<RegExpMatchArray> {
      const m = screen.match(re);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`timed out waiting for ${re} on the terminal:\n${screen}`));
        }, timeout);
        const w = {
          re,
          resolve: (m: RegExpMatchArray) => {
            clearTimeout(timer);
            resolve(m);
          },
        };
        waiters.push(w);
      });
    },
    async close(): Promise<number> {
      await writer.close().catch(() => {});
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const status = await child.status;
      clearTimeout(timer);
      await reading;
      await stderr;
      return status.code;
    },
  };
}

Deno.test({
  name:
    "sipkit message --chat in a terminal: typed lines are sent, bob's messages shown, failures inline",
  ignore: !findBinary("script"),
  fn: async () => {
    await withSipkitDirs(async (dirs) => {
      const { proc: bob, address } = await startListener(dirs);
      const term = inTerminal([
        ...sipkitArgv(),
        "message",
        "-u",
        "alice@example.test",
        "--bind",
        "127.0.0.1:0",
        "--chat",
        "bob@example.test",
        "--proxy",
        `sip:${address}`,
        "--timeout",
        "2",
      ], dirs.env);
      try {
        const [, aliceAddress] = await term.waitFor(/on (127\.0\.0\.1:\d+) \(Ctrl-D ends\)/);
        await term.type("hi bob\r");
        const got = await bob.waitEvent((e) => e.type === "message");
        assert.equal(got.body, "hi bob");
        assert.equal(got.from, "sip:alice@example.test");
        const reply = await runSend(dirs, [
          "-u",
          "bob@example.test",
          `sip:alice@${aliceAddress}`,
          "hello alice",
        ]);
        assert.equal(reply.code, 0, reply.logs);
        await term.waitFor(/\d\d:\d\d sip:bob@example\.test: hello alice/);
        // bob goes away: the next line is reported as not delivered, inline.
        await bob.stop();
        await term.type("are you there\r");
        await term.waitFor(/✗ not delivered \(\d{3} [^)]*\): are you there/);
        await term.type("\x04");
      } finally {
        const code = await term.close();
        await bob.stop();
        // Ctrl-D ends the chat; the failed line makes the exit code non-zero.
        assert.ok(code === 3 || code === 1, `exit ${code}\n${term.screen()}`);
      }
    });
  },
});

/**
 * A UDP relay on 127.0.0.1 that drops packets in both directions with a
 * seeded PRNG: the sender talks to `port`, the relay forwards to `to` and
 * the answers back to whoever sent last.
 */
function lossyRelay(to: { hostname: string; port: number }, dropRate: number, seed: number) {
  let state = seed >>> 0;
  const random = () => {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 4294967296;
  };
  const front = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const back = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const stats = { forward: 0, backward: 0, droppedForward: 0, droppedBackward: 0 };
  let client: Deno.NetAddr | undefined;
  const pump = async (
    from: Deno.DatagramConn,
    out: Deno.DatagramConn,
    dest: () => Deno.NetAddr | undefined,
    forward: boolean,
  ) => {
    try {
      for (;;) {
        const [data, addr] = await from.receive();
        if (forward) client = addr as Deno.NetAddr;
        if (forward) stats.forward++;
        else stats.backward++;
        if (random() < dropRate) {
          if (forward) stats.droppedForward++;
          else stats.droppedBackward++;
          continue;
        }
        const d = dest();
        if (d) await out.send(data, d);
      }
    } catch {
      // closed
    }
  };
  const target: Deno.NetAddr = { transport: "udp", ...to };
  const pumps = Promise.all([
    pump(front, back, () => target, true),
    pump(back, front, () => client, false),
  ]);
  return {
    port: (front.addr as Deno.NetAddr).port,
    stats,
    async close() {
      front.close();
      back.close();
      await pumps;
    },
  };
}

Deno.test("a batch of 1,000 lines over UDP through a lossy relay: each delivered once, every result reported", async () => {
  await withSipkitDirs(async (dirs) => {
    const { proc, address } = await startListener(dirs);
    const [host, port] = address.split(":");
    const relay = lossyRelay({ hostname: host, port: Number(port) }, 0.1, 20261127);
    const sender = spawnSipkit(
      ["message", "-u", "alice@example.test", "--concurrency", "50", "--transport", "udp"],
      { name: "batch", env: dirs.env },
    );
    try {
      const n = 1000;
      for (let i = 0; i < n; i++) {
        await sender.send({
          type: "send",
          to: `sip:bob@127.0.0.1:${relay.port}`,
          body: `lossy ${i}`,
          id: i,
        });
      }
      await sender.closeStdin();
      // 1,000 messages with losses and retransmissions: a longer deadline than the default.
      const code = await sender.waitExit(180_000);
      assert.equal(code, 0, sender.logs().slice(-4000));
      const sent = sender.events.filter((e) => e.type === "sent");
      assert.equal(sent.length, n);
      assert.deepEqual(
        sent.map((e) => e.id as number).sort((a, b) => a - b),
        Array.from({ length: n }, (_, i) => i),
      );
      assert.ok(sent.every((e) => e.status === 200 && e.delivered === true));
      await proc.waitEvent(() => proc.events.filter((e) => e.type === "message").length >= n, {
        timeout: 5000,
      });
      const bodies = proc.events.filter((e) => e.type === "message").map((e) => e.body);
      assert.equal(bodies.length, n, "one event per message, no duplicates");
      assert.equal(new Set(bodies).size, n);
      assert.ok(relay.stats.droppedForward > 0 && relay.stats.droppedBackward > 0);
    } finally {
      await sender.stop();
      await proc.stop();
      await relay.close();
    }
  });
});

Deno.test({
  name:
    "sipkit message --chat with a terminal on stdin and a pipe on stdout: typed lines sent, NDJSON out",
  ignore: !findBinary("script"),
  fn: async () => {
    await withSipkitDirs(async (dirs) => {
      const { proc: bob, address } = await startListener(dirs);
      const chat = shellWords(sipkitArgv([
        "message",
        "-u",
        "alice@example.test",
        "--bind",
        "127.0.0.1:0",
        "--chat",
        "bob@example.test",
        "--proxy",
        `sip:${address}`,
      ]));
      const term = inTerminal(["sh", "-c", `${chat} | cat`], dirs.env);
      let code: number | undefined;
      try {
        await term.waitFor(/"type":"listening"/);
        await term.type("typed, piped\r");
        const got = await bob.waitEvent((e) => e.type === "message");
        assert.equal(got.body, "typed, piped");
        await term.waitFor(/\{"type":"sent",[^\n]*"delivered":true/);
        await term.type("\x04");
      } finally {
        code = await term.close();
        await bob.stop();
      }
      assert.equal(code, 0, term.screen());
    });
  },
});
