import assert from "node:assert/strict";
import { type SipkitEvent, type SipkitProcess, spawnSipkit } from "./_sipkit_process.ts";
import {
  createMobilityNet,
  ignoreWithoutNetns,
  type MobilityNet,
  moveOnMa,
  SERVER_ADDRESS,
} from "./peers/mobility_net.ts";

const skip = ignoreWithoutNetns();

/**
 * Runs `fn` in a new pair of namespaces (`tests/peers/mobility_net.ts`) with the sipkit process
 * that `start` spawns there: its log is printed if `fn` fails; it is stopped and the namespaces
 * removed afterwards, whatever happens.
 */
async function withProcessInNet(
  start: (net: MobilityNet) => SipkitProcess,
  fn: (net: MobilityNet, p: SipkitProcess) => Promise<void>,
): Promise<void> {
  const net = await createMobilityNet();
  let p: SipkitProcess | undefined;
  try {
    p = start(net);
    await fn(net, p);
  } catch (e) {
    if (p) console.error(p.logs());
    throw e;
  } finally {
    await p?.stop();
    await net.destroy();
  }
}

/** tests/_monitor_probe.ts (the library's AddressMonitor) toward the servers, on the mobile host. */
function monitorProbe(net: MobilityNet, args: string[]): SipkitProcess {
  return spawnSipkit(["--toward", SERVER_ADDRESS, ...args], {
    name: "monitor probe",
    script: new URL("./_monitor_probe.ts", import.meta.url).pathname,
    netns: net.mobile,
    stdin: false,
  });
}

const changed = (events: SipkitEvent[]) => events.filter((e) => e.type === "address_changed");

for (const mode of ["netlink", "poll"] as const) {
  Deno.test({
    name: `sipkit roam (${mode}) in a namespace: a docker interface is no move, ` +
      "add-then-remove is one address_changed, and a link going down moves to the other interface",
    ignore: skip,
    sanitizeResources: false,
    fn: () =>
      withProcessInNet((net) => {
        const poll = mode === "poll" ? ["--poll", "100"] : [];
        return spawnSipkit(["roam", "--toward", SERVER_ADDRESS, ...poll], {
          netns: net.mobile,
          stdin: false,
        });
      }, async (net, roam) => {
        const start = await roam.waitEvent((e) => e.type === "roaming");
        assert.equal(start.address, "10.77.1.2");
        assert.equal(start.interface, "ma");
        assert.equal(start.method, mode);

        // A container bridge appears: an address is added, the host did not move.
        await net.inMobile(["link", "add", "dk0", "type", "veth", "peer", "name", "dk1"]);
        await net.inMobile(["addr", "add", "172.30.0.1/24", "dev", "dk0"]);
        await net.inMobile(["link", "set", "dev", "dk0", "up"]);
        await roam.waitEvent((e) => e.type === "address_added" && e.address === "172.30.0.1");

        // Make before break on the same link: new address first, then the old one goes.
        await moveOnMa(net, "10.77.1.2", "10.77.1.3");
        const moved = await roam.waitEvent((e) => e.type === "address_changed");
        assert.deepEqual(
          [moved.old, moved.new, moved.interface, moved.family],
          ["10.77.1.2", "10.77.1.3", "ma", "IPv4"],
        );
        await roam.waitEvent((e) => e.type === "address_lost" && e.address === "10.77.1.2");
        await roam.waitEvent((e) => e.type === "address_added" && e.address === "10.77.1.3");

        // The wired link goes down: the route to the servers now leaves by mb.
        await net.inMobile(["link", "set", "dev", "ma", "down"]);
        const second = await roam.waitEvent((e) =>
          e.type === "address_changed" && e.new === "10.77.2.2"
        );
        assert.deepEqual([second.old, second.interface], ["10.77.1.3", "mb"]);
        assert.equal(changed(roam.events).length, 2, roam.logs());
        assert.deepEqual(roam.badLines, []);
        assert.equal(await roam.stop(), 0);
      }),
  });
}

/** The pids of the `ip -o monitor ...` children of process `pid`. */
function ipMonitorChildren(pid: number): number[] {
  return ipChildren(pid, "monitor");
}

/** The pids of the `ip` children of process `pid` with `word` in their arguments. */
function ipChildren(pid: number, word: string): number[] {
  const out: number[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    let children = "";
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
    } catch { /* the thread ended */ }
    for (const child of children.split(/\s+/).filter(Boolean)) {
      try {
        const argv = Deno.readTextFileSync(`/proc/${child}/cmdline`).split("\0");
        if (argv[0].endsWith("ip") && argv.includes(word)) out.push(Number(child));
      } catch { /* gone */ }
    }
  }
  return out;
}

/** Waits until `pid` has an `ip monitor` child other than `not`; returns its pid. */
async function waitIpMonitor(pid: number, not?: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = ipMonitorChildren(pid).find((p) => p !== not);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no ip monitor child of ${pid}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** CPU time (user + system) of a process so far, in ms. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the line (11 and 12 after the name), in clock ticks.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

Deno.test({
  name: "sipkit roam in a namespace: its ip monitor child is killed, it polls, reports the next " +
    "move, starts ip monitor again and reports the move after that",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withProcessInNet(
      (net) =>
        spawnSipkit(["roam", "--toward", SERVER_ADDRESS], { netns: net.mobile, stdin: false }),
      async (net, roam) => {
        const start = await roam.waitEvent((e) => e.type === "roaming");
        assert.equal(start.method, "netlink");
        const first = await waitIpMonitor(roam.pid);
        Deno.kill(first, "SIGKILL");
        // Said once on stderr, then moves are still reported.
        const deadline = Date.now() + 10_000;
        while (!/ip monitor ended; polling/.test(roam.logs())) {
          if (Date.now() > deadline) throw new Error("no fallback message");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await moveOnMa(net, "10.77.1.2", "10.77.1.3");
        const moved = await roam.waitEvent((e) => e.type === "address_changed");
        assert.deepEqual([moved.old, moved.new, moved.interface], ["10.77.1.2", "10.77.1.3", "ma"]);

        // ip monitor comes back (after 1 s) and reports the next move.
        const second = await waitIpMonitor(roam.pid, first);
        await new Promise((resolve) => setTimeout(resolve, 300)); // its snapshot taken
        await net.inMobile(["link", "set", "dev", "ma", "down"]);
        const again = await roam.waitEvent((e) =>
          e.type === "address_changed" && e.new === "10.77.2.2"
        );
        assert.deepEqual([again.old, again.interface], ["10.77.1.3", "mb"]);
        assert.deepEqual(ipMonitorChildren(roam.pid), [second]);
        assert.equal(roam.logs().match(/ip monitor ended/g)?.length, 1, roam.logs());
        assert.equal(changed(roam.events).length, 2, roam.logs());
        assert.deepEqual(roam.badLines, []);
        assert.equal(await roam.stop(), 0);
      },
    ),
});

Deno.test({
  name: "AddressMonitor (library) in a namespace: after its ip monitor child is killed it polls " +
    "without busy CPU and still reports a move",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withProcessInNet(
      (net) => monitorProbe(net, ["--poll", "200", "--restart", "600000"]),
      async (net, probe) => {
        const ready = await probe.waitEvent((e) => e.type === "ready", { timeout: 20_000 });
        assert.deepEqual([ready.address, ready.method, ready.route_method], [
          "10.77.1.2",
          "netlink",
          "socket",
        ]);
        Deno.kill(await waitIpMonitor(probe.pid), "SIGKILL");
        await probe.waitEvent((e) => e.type === "method" && e.method === "poll");
        // Polling every 200 ms sleeps in between: far below one CPU.
        const cpu0 = cpuMs(probe.pid);
        const t0 = performance.now();
        await new Promise((resolve) => setTimeout(resolve, 2000));
        const share = (cpuMs(probe.pid) - cpu0) / (performance.now() - t0);
        assert.ok(share < 0.5, `the polling monitor used ${Math.round(share * 100)} % of a CPU`);
        assert.deepEqual(ipMonitorChildren(probe.pid), [], "not started again (--restart 600000)");

        await moveOnMa(net, "10.77.1.2", "10.77.1.3");
        const moved = await probe.waitEvent((e) => e.type === "address_changed");
        assert.deepEqual([moved.old, moved.new, moved.interface], ["10.77.1.2", "10.77.1.3", "ma"]);
        await probe.waitEvent((e) => e.type === "address_lost" && e.address === "10.77.1.2");
        await probe.waitEvent((e) => e.type === "address_added" && e.address === "10.77.1.3");
        assert.equal(probe.logs().match(/ip monitor ended/g)?.length, 1, probe.logs());
      },
    ),
});

Deno.test({
  name: "AddressMonitor (library) without FFI in a namespace: routes asked through one ip -batch " +
    "child; moves reported, also after that child is killed",
  ignore: skip,
  sanitizeResources: false,
  fn: () =>
    withProcessInNet((net) => monitorProbe(net, ["--no-ffi"]), async (net, probe) => {
      const ready = await probe.waitEvent((e) => e.type === "ready", { timeout: 20_000 });
      assert.deepEqual([ready.address, ready.method, ready.route_method], [
        "10.77.1.2",
        "netlink",
        "ip-batch",
      ]);
      const batch = ipChildren(probe.pid, "-batch");
      assert.equal(batch.length, 1, "one ip -batch child");
      await moveOnMa(net, "10.77.1.2", "10.77.1.3");
      const moved = await probe.waitEvent((e) => e.type === "address_changed");
      assert.deepEqual([moved.old, moved.new, moved.interface], ["10.77.1.2", "10.77.1.3", "ma"]);
      assert.deepEqual(ipChildren(probe.pid, "-batch"), batch, "the same child answered");

      Deno.kill(batch[0], "SIGKILL");
      await net.inMobile(["link", "set", "dev", "ma", "down"]);
      const again = await probe.waitEvent((e) =>
        e.type === "address_changed" && e.new === "10.77.2.2"
      );
      assert.deepEqual([again.old, again.interface], ["10.77.1.3", "mb"]);
      const next = ipChildren(probe.pid, "-batch");
      assert.equal(next.length, 1);
      assert.notEqual(next[0], batch[0], "a new child");
    }),
});
