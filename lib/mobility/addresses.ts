/**
 * Host addresses as the address monitor sees them: one address on one
 * interface, the parsers for what iproute2 prints (`ip -o monitor address`,
 * `ip -o address show`, `ip -o route get`), and the reading of
 * `Deno.networkInterfaces()`.
 *
 * Only addresses a peer could reach count: loopback (127/8, ::1) and
 * link-local (169.254/16, fe80::/10) addresses are left out, and so are
 * IPv6 addresses still `tentative` (duplicate address detection running) or
 * `dadfailed`.
 *
 * @module
 */

/** An address family, as `Deno.networkInterfaces()` names it. */
export type AddressFamily = "IPv4" | "IPv6";

/** One address on one interface. */
export interface InterfaceAddress {
  /** Interface name, e.g. "eth0". */
  interface: string;
  /** The address (IPv6 without brackets, lowercase). */
  address: string;
  /** Its family. */
  family: AddressFamily;
  /** Prefix length of its subnet. */
  prefix: number;
  /** True for an IPv4 secondary address (iproute2 "secondary" flag). */
  secondary?: boolean;
}

/** One line of `ip -o monitor address`, parsed. */
export interface IpAddressEvent {
  /** "added" for a new (or updated) address, "deleted" for a removed one. */
  kind: "added" | "deleted";
  /** The address. */
  address: InterfaceAddress;
  /** False for addresses the monitor does not count (see the module doc). */
  usable: boolean;
}

/** True for loopback and link-local addresses, which never count as the host's address. */
export function isLocalOnly(address: string): boolean {
  const a = address.toLowerCase();
  return /^127\./.test(a) || a === "::1" || /^169\.254\./.test(a) || /^fe[89ab][0-9a-f]:/.test(a);
}

/**
 * A key for an address on an interface ("eth0|192.0.2.7").
 *
 * @example
 * ```ts
 * import { addressKey } from "./addresses.ts";
 * import assert from "node:assert/strict";
 * const key = addressKey({ interface: "eth0", address: "192.0.2.7", family: "IPv4", prefix: 24 });
 * assert.equal(key, "eth0|192.0.2.7");
 * ```
 */
export function addressKey(a: InterfaceAddress): string {
  return `${a.interface}|${a.address}`;
}

/**
 * Parses one line of `ip -o monitor address` or `ip -o address show`. Lines
 * about other objects, and lines that cannot be read, give undefined.
 *
 * @example
 * ```ts
 * import { parseIpAddressLine } from "./addresses.ts";
 * import assert from "node:assert/strict";
 * const e = parseIpAddressLine(
 *   "Deleted 3: eth0    inet 10.9.0.3/24 scope global secondary eth0\\       valid_lft forever",
 * );
 * assert.equal(e?.kind, "deleted");
 * assert.equal(e?.address.address, "10.9.0.3");
 * assert.equal(e?.address.secondary, true);
 * assert.equal(e?.usable, true);
 * ```
 */
export function parseIpAddressLine(line: string): IpAddressEvent | undefined {
  // `ip monitor` (without an object) prefixes "[ADDR]"; timestamps (-t) are not used.
  const text = line.replace(/^\s*\[ADDR\]\s*/, "");
  const m = /^\s*(Deleted\s+)?\d+:\s+(\S+?)\s+(inet6?)\s+([0-9a-fA-F:.]+)\/(\d+)(.*)$/.exec(text);
  if (!m) return undefined;
  const family: AddressFamily = m[3] === "inet6" ? "IPv6" : "IPv4";
  const address = m[4].toLowerCase();
  if (family === "IPv4" && !/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) return undefined;
  if (family === "IPv6" && !address.includes(":")) return undefined;
  const prefix = Number(m[5]);
  const rest = m[6].split("\\")[0];
  const words = rest.trim().split(/\s+/);
  const secondary = words.includes("secondary");
  const scope = words[words.indexOf("scope") + 1];
  // An interface name may carry "@peer" (veth: "eth0@if5").
  const name = m[2].replace(/@.*$/, "");
  const usable = !isLocalOnly(address) && scope !== "host" && scope !== "link" &&
    !words.includes("tentative") && !words.includes("dadfailed");
  return {
    kind: m[1] ? "deleted" : "added",
    address: { interface: name, address, family, prefix, ...(secondary ? { secondary } : {}) },
    usable,
  };
}

/** What `ip -o route get <destination>` says about the way there. */
export interface RouteInfo {
  /** The source address the kernel would use. */
  source: string;
  /** The outgoing interface. */
  interface?: string;
}

/**
 * Parses the output of `ip -o route get <destination>`: the `src` address and
 * the `dev`. Undefined when it names no source (no route, or a local
 * destination printed differently).
 *
 * @example
 * ```ts
 * import { parseRouteGet } from "./addresses.ts";
 * import assert from "node:assert/strict";
 * const r = parseRouteGet("10.9.0.77 dev eth0 src 10.9.0.3 uid 0 \\    cache ");
 * assert.deepEqual(r, { source: "10.9.0.3", interface: "eth0" });
 * ```
 */
export function parseRouteGet(output: string): RouteInfo | undefined {
  const src = /\bsrc\s+([0-9a-fA-F:.]+)/.exec(output);
  if (!src) return undefined;
  const dev = /\bdev\s+(\S+)/.exec(output);
  return { source: src[1].toLowerCase(), ...(dev ? { interface: dev[1] } : {}) };
}

/**
 * The usable addresses in a `Deno.networkInterfaces()` list (or an injected
 * one with the same shape).
 *
 * @example
 * ```ts
 * import { fromNetworkInterfaces } from "./addresses.ts";
 * import assert from "node:assert/strict";
 * const list = fromNetworkInterfaces([
 *   { name: "lo", family: "IPv4", address: "127.0.0.1", netmask: "255.0.0.0", scopeid: null,
 *     cidr: "127.0.0.1/8", mac: "00:00:00:00:00:00" },
 *   { name: "eth0", family: "IPv4", address: "192.0.2.7", netmask: "255.255.255.0",
 *     scopeid: null, cidr: "192.0.2.7/24", mac: "02:00:00:00:00:01" },
 * ]);
 * assert.deepEqual(list, [{ interface: "eth0", address: "192.0.2.7", family: "IPv4", prefix: 24 }]);
 * ```
 */
export function fromNetworkInterfaces(list: Deno.NetworkInterfaceInfo[]): InterfaceAddress[] {
  const out: InterfaceAddress[] = [];
  for (const i of list) {
    const address = i.address.toLowerCase().replace(/%.*$/, "");
    if (isLocalOnly(address)) continue;
    const prefix = Number(i.cidr.split("/")[1] ?? (i.family === "IPv4" ? 32 : 128));
    out.push({ interface: i.name, address, family: i.family, prefix });
  }
  return out;
}
