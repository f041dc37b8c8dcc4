/**
 * Network namespaces for mobility tests: a "mobile host" namespace joined to
 * a "server" namespace by two veth pairs (two interfaces, as a laptop with
 * wired and wireless links). Names carry the test process id, so parallel
 * runs never meet; {@linkcode MobilityNet.destroy} removes both namespaces
 * (and with them the veths) even after a failure. Traffic stays inside them.
 *
 * Addresses (private, inside the namespaces only):
 *
 * ```
 *  mobile ns                               server ns
 *   ma 10.77.1.2/24 (+10.77.3.0/24) ─veth─ sa 10.77.1.1/24, 10.77.3.1/24
 *   mb 10.77.2.2/24                 ─veth─ sb 10.77.2.1/24
 *   route 10.77.0.1 via 10.77.1.1 (metric 10) or via 10.77.2.1 (metric 20)
 *                                           lo 10.77.0.1/32 (the servers' address)
 * ```
 *
 * @module
 */

import { findBinary, MissingPeerError } from "./require.ts";

export { ignoreWithoutNetns } from "./netns.ts";

/** The servers' address, on the server namespace's loopback. */
export const SERVER_ADDRESS = "10.77.0.1";

let counter = 0;

/** Runs `ip` with arguments; throws with its stderr on failure. */
export async function ip(args: string[]): Promise<string> {
  if (findBinary("ip") === undefined) throw new MissingPeerError("ip", "iproute2");
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!out.success) throw new Error(`ip ${args.join(" ")}: ${dec.decode(out.stderr).trim()}`);
  return dec.decode(out.stdout);
}

/** The two namespaces and their links. */
export interface MobilityNet {
  /** The mobile host's namespace. */
  readonly mobile: string;
  /** The servers' namespace. */
  readonly server: string;
  /** Runs `ip <args>` inside the mobile namespace. */
  inMobile(args: string[]): Promise<string>;
  /** Runs `ip <args>` inside the server namespace. */
  inServer(args: string[]): Promise<string>;
  /** The mobile host's global IPv4 addresses now, per interface ("ma" -> [...]). */
  addresses(): Promise<Record<string, string[]>>;
  /** Deletes both namespaces (idempotent). */
  destroy(): Promise<void>;
}

/**
 * Moves the mobile host on its link `ma` from address `from` to `to` (both /24), make before
 * break: `to` is added first, then `from` deleted.
 */
export async function moveOnMa(net: MobilityNet, from: string, to: string): Promise<void> {
  await net.inMobile(["addr", "add", `${to}/24`, "dev", "ma"]);
  await net.inMobile(["addr", "del", `${from}/24`, "dev", "ma"]);
}

/** Creates the two namespaces, the veth pairs, addresses and routes. */
export async function createMobilityNet(): Promise<MobilityNet> {
  // The pid alone is not enough: `deno test --parallel` runs test files in
  // workers of one process, each with its own module state.
  const id = `${Deno.pid}-${++counter}-${crypto.randomUUID().slice(0, 8)}`;
  const mobile = `sk-mob-${id}`;
  const server = `sk-srv-${id}`;
  const inMobile = (args: string[]) => ip(["netns", "exec", mobile, "ip", ...args]);
  const inServer = (args: string[]) => ip(["netns", "exec", server, "ip", ...args]);
  const sysctl = (ns: string, key: string) =>
    new Deno.Command("ip", {
      args: ["netns", "exec", ns, "sysctl", "-q", "-w", key],
      stdout: "null",
      stderr: "null",
    }).output();
  let destroyed = false;
  const created: string[] = [];
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    // Only the namespaces this call created.
    for (const ns of created) {
      // Processes still inside would keep it alive as a mount: end them first.
      const pids = await ip(["netns", "pids", ns]).catch(() => "");
      for (const pid of pids.split(/\s+/).filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
      await ip(["netns", "del", ns]).catch(() => {});
    }
  };
  try {
    await ip(["netns", "add", mobile]);
    created.push(mobile);
    await ip(["netns", "add", server]);
    created.push(server);
    await ip([
      "link",
      "add",
      "name",
      "ma",
      "netns",
      mobile,
      "type",
      "veth",
      "peer",
      "name",
      "sa",
      "netns",
      server,
    ]);
    await ip([
      "link",
      "add",
      "name",
      "mb",
      "netns",
      mobile,
      "type",
      "veth",
      "peer",
      "name",
      "sb",
      "netns",
      server,
    ]);
    await sysctl(mobile, "net.ipv4.conf.all.promote_secondaries=1");
    await sysctl(mobile, "net.ipv4.conf.default.promote_secondaries=1");
    for (const dev of ["ma", "mb"]) {
      await sysctl(mobile, `net.ipv4.conf.${dev}.promote_secondaries=1`);
    }
    for (const dev of ["lo", "ma", "mb"]) await inMobile(["link", "set", "dev", dev, "up"]);
    for (const dev of ["lo", "sa", "sb"]) await inServer(["link", "set", "dev", dev, "up"]);
    await inServer(["addr", "add", `${SERVER_ADDRESS}/32`, "dev", "lo"]);
    await inServer(["addr", "add", "10.77.1.1/24", "dev", "sa"]);
    await inServer(["addr", "add", "10.77.3.1/24", "dev", "sa"]);
    await inServer(["addr", "add", "10.77.2.1/24", "dev", "sb"]);
    await inMobile(["addr", "add", "10.77.1.2/24", "dev", "ma"]);
    await inMobile(["addr", "add", "10.77.2.2/24", "dev", "mb"]);
    await inMobile([
      "route",
      "add",
      `${SERVER_ADDRESS}/32`,
      "via",
      "10.77.1.1",
      "dev",
      "ma",
      "metric",
      "10",
    ]);
    await inMobile([
      "route",
      "add",
      `${SERVER_ADDRESS}/32`,
      "via",
      "10.77.2.1",
      "dev",
      "mb",
      "metric",
      "20",
    ]);
  } catch (e) {
    await destroy();
    throw e;
  }
  return {
    mobile,
    server,
    inMobile,
    inServer,
    async addresses() {
      const out: Record<string, string[]> = {};
      for (
        const line of (await inMobile(["-o", "-4", "addr", "show", "scope", "global"])).split("\n")
      ) {
        const m = /^\d+:\s+(\S+?)(?:@\S+)?\s+inet\s+([\d.]+)\//.exec(line);
        if (m) (out[m[1]] ??= []).push(m[2]);
      }
      return out;
    },
    destroy,
  };
}
