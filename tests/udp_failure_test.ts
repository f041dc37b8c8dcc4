// A UDP socket whose receive loop gives up (1,000 errors in a row) must not
// leave a command listening deaf: the library tells its owner (`onFailure`,
// kept across a move's re-bind), and every command that runs a user agent
// writes an `error` event and exits 3.
//
// The failure is provoked for real by tests/_udp_break.ts: it takes a copy of
// the socket from the process (pidfd_getfd), shuts its reading side so that
// errors wake the reader, and makes the kernel queue EHOSTUNREACH on it with
// forged ICMP host unreachable messages over loopback (inside a namespace the
// test creates for the commands; on the host's loopback for the library test,
// about the test's own socket only).

import assert from "node:assert/strict";
import { UdpTransport } from "../lib/sip/transport_udp.ts";
import type { Transport } from "../lib/sip/transport.ts";
import type { CommandContext } from "../cli/_common.ts";
import type { CommandError } from "../cli/_exit.ts";
import { udpFailureHandler } from "../cli/_ua.ts";
import { spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";
import { createNetns, ignoreWithoutNetns, netnsUnavailable } from "./peers/netns.ts";
import { isCi } from "./peers/require.ts";

const BREAK = new URL("./_udp_break.ts", import.meta.url).pathname;

/** Starts tests/_udp_break.ts against `pid`'s UDP socket on `port` (in `netns` when given). */
function breakSocket(pid: number, port: number, netns?: string): Deno.ChildProcess {
  const argv = [Deno.execPath(), "run", "-A", BREAK, String(pid), String(port)];
  if (netns) argv.unshift("ip", "netns", "exec", netns);
  return new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

async function stopBreaking(child: Deno.ChildProcess): Promise<string> {
  try {
    child.kill("SIGKILL");
  } catch { /* ended */ }
  const out = await child.output().catch(() => undefined);
  return out ? new TextDecoder().decode(out.stderr) : "";
}

/** A command context that records what the wiring does with it. */
function fakeContext() {
  const events: Record<string, unknown>[] = [];
  const logs: string[] = [];
  const failures: CommandError[] = [];
  const ctx = {
    out: {
      emit: (type: string, fields: Record<string, unknown>) => {
        events.push({ type, ...fields });
        return Promise.resolve();
      },
    },
    log: { log: (level: string, message: string) => logs.push(`${level}: ${message}`) },
    fail: (error: CommandError) => failures.push(error),
  } as unknown as CommandContext;
  return { ctx, events, logs, failures };
}

const socket = (port: number, failure?: Error) =>
  ({ protocol: "udp", local: { host: "127.0.0.1", port }, failure }) as unknown as Transport;

Deno.test("udpFailureHandler: a failed socket of the UA gives an error event, then exit 3", async () => {
  const { ctx, events, failures } = fakeContext();
  const failure = new Error("UDP socket on port 5072 failed 1000 receives in a row (last: x)");
  const handler = udpFailureHandler(ctx, () => [socket(5071), socket(5072, failure)]);
  handler(failure);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(events, [
    { type: "error", source: "udp", address: "127.0.0.1:5072", message: failure.message },
  ]);
  assert.equal(failures.length, 1);
  assert.equal(failures[0].code, 3);
  assert.equal(failures[0].message, failure.message);
});

Deno.test("udpFailureHandler: a socket the UA no longer uses (left behind by a move) is only logged", async () => {
  const { ctx, events, logs, failures } = fakeContext();
  const failure = new Error("UDP socket on port 5072 failed 1000 receives in a row (last: x)");
  udpFailureHandler(ctx, () => [socket(5073)])(failure);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(events, []);
  assert.deepEqual(failures, []);
  assert.match(logs[0], /^warn: .*no longer in use/);
});

Deno.test({
  name: "UdpTransport: a socket re-bound by a move keeps onFailure, called when its receives fail",
  ignore: netnsUnavailable() !== undefined && !isCi(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const failed = Promise.withResolvers<Error>();
    const first = await UdpTransport.open({
      host: "127.0.0.1",
      onFailure: (e) => failed.resolve(e),
    });
    const moved = await first.rebind("127.0.0.1") as UdpTransport;
    assert.ok(moved.hearsIcmp, "IP_RECVERR on (Linux, --allow-ffi)");
    // Loopback only, about this socket's own port.
    const breaker = breakSocket(Deno.pid, moved.local.port);
    try {
      const timeout = setTimeout(() => failed.reject(new Error("no onFailure in 60 s")), 60_000);
      const error = await failed.promise;
      clearTimeout(timeout);
      assert.equal(moved.failure, error, "the re-bound socket's failure");
      assert.match(error.message, /failed 1000 receives in a row/);
      assert.equal(first.failure, undefined, "the old socket is fine");
      await assert.rejects(
        () => moved.send(new Uint8Array([1]), { host: "127.0.0.1", port: first.local.port }),
      );
    } catch (e) {
      console.error(await stopBreaking(breaker));
      throw e;
    } finally {
      await stopBreaking(breaker);
      await first.close();
      await moved.close();
    }
  },
});

for (
  const [name, args] of [
    ["message --listen", ["message", "--listen", "-u", "bob@example.test"]],
    ["notify (edge mode)", ["notify", "-u", "alice@example.test"]],
  ] as const
) {
  Deno.test({
    name: `sipkit ${name}: when its UDP socket fails it writes an error event and exits 3`,
    ignore: ignoreWithoutNetns(),
    sanitizeResources: false,
    fn: async () => {
      const ns = await createNetns("udpfail");
      const dirs = await tempSipkitDirs();
      const proc = spawnSipkit([...args, "--bind", "127.0.0.1:0"], {
        env: dirs.env,
        netns: ns.name,
        stdin: false,
      });
      let breaker: Deno.ChildProcess | undefined;
      try {
        const listening = await proc.waitEvent((e) => e.type === "listening", { timeout: 20_000 });
        const port = Number(String(listening.address).split(":")[1]);
        breaker = breakSocket(proc.pid, port, ns.name);
        const code = await Promise.race([
          proc.exited,
          new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 60_000)),
        ]);
        assert.equal(code, 3, proc.logs());
        const errors = proc.events.filter((e) => e.type === "error");
        assert.equal(errors.length, 1, proc.logs());
        assert.equal(errors[0].source, "udp");
        assert.equal(errors[0].address, `127.0.0.1:${port}`);
        assert.match(String(errors[0].message), /failed 1000 receives in a row .*; closed/);
        assert.match(proc.logs(), /error: UDP socket on port \d+ failed 1000 receives/);
        assert.deepEqual(proc.badLines, []);
      } catch (e) {
        console.error(proc.logs().slice(-4000));
        if (breaker) console.error(await stopBreaking(breaker));
        throw e;
      } finally {
        if (breaker) await stopBreaking(breaker);
        await proc.stop();
        await ns.remove();
        await dirs.cleanup();
      }
    },
  });
}
