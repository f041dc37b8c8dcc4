/**
 * Network namespaces for tests (iproute2 `ip netns`, needs root): a private
 * network stack with only its own loopback up, where a test may run real
 * servers (dnsmasq, a registrar) and sipkit on any port without touching the
 * host's addresses. Names carry the test process's pid and a counter, so
 * parallel runs never meet; `remove()` kills what still runs inside, deletes
 * the namespace and its `/etc/netns/<name>` directory, and is safe to call
 * twice.
 *
 * `ip netns exec <name> cmd` runs `cmd` in the namespace (the same pid:
 * `ip` execs it) and bind-mounts `/etc/netns/<name>/resolv.conf`, when it
 * exists, over `/etc/resolv.conf`: that is how a test points the system
 * resolver of its processes at its own DNS server.
 *
 * @module
 */

import { findBinary, isCi } from "./require.ts";

let counter = 0;

/** A network namespace created by a test. */
export interface Netns {
  /** Its name, e.g. `sk-dns-12345-1`. */
  readonly name: string;
  /** `args` prefixed to run in the namespace: `["ip", "netns", "exec", name, ...args]`. */
  exec(args: string[]): string[];
  /** Writes `/etc/netns/<name>/resolv.conf` (processes started afterwards use it). */
  writeResolvConf(text: string): Promise<void>;
  /** Kills what still runs inside, deletes the namespace and its /etc/netns directory. */
  remove(): Promise<void>;
}

/**
 * Why namespaces cannot be used here (not root, no iproute2), or undefined
 * when they can. Tests skip with this message outside CI and fail under CI.
 */
export function netnsUnavailable(): string | undefined {
  if (!findBinary("ip")) return "ip (Debian package iproute2) is not installed";
  if (Deno.uid() !== 0) return "network namespaces need root";
  return undefined;
}

/** `ignore` value for a test that needs namespaces: skip outside CI, run (and fail) under CI. */
export function ignoreWithoutNetns(): boolean {
  const why = netnsUnavailable();
  if (why === undefined || isCi()) return false;
  console.warn(`skipping network namespace tests: ${why}`);
  return true;
}

async function ip(args: string[], check = true): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (check && !out.success) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** Creates a namespace `sk-<label>-<pid>-<n>` with its loopback up. */
export async function createNetns(label: string): Promise<Netns> {
  const why = netnsUnavailable();
  if (why) throw new Error(`Cannot create a network namespace: ${why}`);
  const name = `sk-${label}-${Deno.pid}-${++counter}`;
  const etc = `/etc/netns/${name}`;
  await ip(["netns", "add", name]);
  let removed = false;
  const ns: Netns = {
    name,
    exec: (args) => ["ip", "netns", "exec", name, ...args],
    async writeResolvConf(text) {
      await Deno.mkdir(etc, { recursive: true });
      await Deno.writeTextFile(`${etc}/resolv.conf`, text);
    },
    async remove() {
      if (removed) return;
      removed = true;
      // Only processes this test started can be inside its own namespace.
      for (const pid of (await ip(["netns", "pids", name], false)).split(/\s+/)) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone already */ }
      }
      await ip(["netns", "del", name], false);
      await Deno.remove(etc, { recursive: true }).catch(() => {});
    },
  };
  try {
    await ip(["-n", name, "link", "set", "lo", "up"]);
  } catch (e) {
    await ns.remove();
    throw e;
  }
  return ns;
}
