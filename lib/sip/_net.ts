// Internal address helpers shared by the transports and the transport layer.

import type { HostPort, TransportProtocol } from "./transport.ts";

/** The last host normalized, and the result: most traffic comes from few peers. */
let lastHost = "";
let lastNormal = "";

/** Strips IPv6 brackets, lowercases, and unmaps IPv4-mapped IPv6 addresses. */
export function normalizeHost(host: string): string {
  if (host === lastHost) return lastNormal;
  const h = normalize(host);
  lastHost = host;
  lastNormal = h;
  return h;
}

function normalize(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (mapped) return mapped[1];
  return h;
}

/** A map key for a host and port. */
export function hostPortKey(hp: HostPort): string {
  return `${normalizeHost(hp.host)}|${hp.port}`;
}

/** True for a literal IPv4 address. */
export function isIPv4(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

/** True for a literal IPv6 address (with or without brackets). */
export function isIPv6(host: string): boolean {
  return normalizeHost(host).includes(":");
}

/** True for 0.0.0.0 and ::. */
export function isUnspecified(host: string): boolean {
  const h = normalizeHost(host);
  return h === "0.0.0.0" || h === "::" || h === "";
}

/** True for 127.0.0.0/8, ::1 and "localhost". */
export function isLoopback(host: string): boolean {
  const h = normalizeHost(host);
  return h === "localhost" || h === "::1" || /^127\./.test(h);
}

/** Formats host:port with brackets around IPv6. */
export function formatHostPort(hp: HostPort): string {
  const h = normalizeHost(hp.host);
  return `${h.includes(":") ? `[${h}]` : h}:${hp.port}`;
}

function ipv4ToInt(ip: string): number {
  return ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

function ipv6ToBigInt(ip: string): bigint {
  let h = normalizeHost(ip);
  const zone = h.indexOf("%");
  if (zone >= 0) h = h.slice(0, zone);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (v4) {
    const n = ipv4ToInt(v4[1]);
    h = h.slice(0, -v4[1].length) + `${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, tail] = h.includes("::") ? h.split("::") : [h, undefined];
  const a = head ? head.split(":") : [];
  const b = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? a : [...a, ...Array(8 - a.length - b.length).fill("0"), ...b];
  return groups.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g || "0", 16)), 0n);
}

/** True when `ip` lies in `cidr` (e.g. "192.0.2.0/24", "2001:db8::/32"). */
export function inSubnet(address: string, cidr: string): boolean {
  const [rawNet, bitsText] = cidr.split("/");
  const ip = normalizeHost(address);
  const net = normalizeHost(rawNet);
  // An IPv4-mapped IPv6 network ("::ffff:10.0.0.0/104") is an IPv4 one.
  const bits = Number(bitsText) - (isIPv4(net) && !isIPv4(rawNet) ? 96 : 0);
  if (isIPv4(ip) && isIPv4(net)) {
    if (bits === 0) return true;
    const mask = bits >= 32 ? 0xffffffff : (~0 << (32 - bits)) >>> 0;
    return ((ipv4ToInt(ip) & mask) >>> 0) === ((ipv4ToInt(net) & mask) >>> 0);
  }
  if (isIPv6(ip) && isIPv6(net)) {
    const shift = BigInt(128 - Math.min(128, bits));
    return (ipv6ToBigInt(ip) >> shift) === (ipv6ToBigInt(net) >> shift);
  }
  return false;
}

/**
 * How long {@linkcode routeLocalAddress} reuses the interface list, in ms.
 * It is asked on every send from a socket bound to all interfaces; reading
 * the list each time cost a system call per message. An address change is
 * seen within this time even when nobody calls
 * {@linkcode invalidateLocalAddresses}.
 */
const INTERFACES_TTL_MS = 2_000;
let cachedInterfaces: { at: number; list: Deno.NetworkInterfaceInfo[] } | undefined;
let readInterfaces: () => Deno.NetworkInterfaceInfo[] = () => Deno.networkInterfaces();

/**
 * Forgets the cached interface list, so that the next
 * {@linkcode routeLocalAddress} reads it again. Call it when the host's
 * addresses change (`moveUserAgent` does, so `address_changed` input and
 * `sipkit roam` are covered).
 */
export function invalidateLocalAddresses(): void {
  cachedInterfaces = undefined;
}

/**
 * Replaces how the interface list is read (tests count the reads; undefined
 * restores `Deno.networkInterfaces`), and forgets the cached list.
 */
export function _setInterfaceReader(read?: () => Deno.NetworkInterfaceInfo[]): void {
  readInterfaces = read ?? (() => Deno.networkInterfaces());
  cachedInterfaces = undefined;
}

/** The host's interfaces, read at most once per {@linkcode INTERFACES_TTL_MS}. Throws without --allow-sys. */
function localInterfaces(): Deno.NetworkInterfaceInfo[] {
  const now = performance.now();
  if (cachedInterfaces === undefined || now - cachedInterfaces.at >= INTERFACES_TTL_MS) {
    cachedInterfaces = { at: now, list: readInterfaces() };
  }
  return cachedInterfaces.list;
}

/**
 * The local address that routes to `target` for a socket bound to `bound`.
 * A specific bound address is returned as is. For 0.0.0.0 or ::, a loopback
 * target gets a loopback address; otherwise the address of an interface whose
 * subnet holds the target, else the first non-internal, non-link-local address
 * of the target's family (a heuristic: Deno offers no UDP connect() to ask the
 * kernel's routing table). A name rather than an address gets an IPv4 address
 * (on a dual-stack `::` socket an IPv6 one when the host has no IPv4 address
 * to offer). Needs --allow-sys for the interface list; without it the bound
 * address is returned.
 */
export function routeLocalAddress(bound: string, target: string): string {
  if (!isUnspecified(bound)) return normalizeHost(bound);
  const t = normalizeHost(target);
  if (isLoopback(t)) return isIPv6(t) ? "::1" : "127.0.0.1";
  const families = isIPv6(t)
    ? ["IPv6"]
    : isIPv4(t) || normalizeHost(bound) !== "::"
    ? ["IPv4"]
    : ["IPv4", "IPv6"];
  let interfaces: Deno.NetworkInterfaceInfo[];
  try {
    interfaces = localInterfaces();
  } catch {
    return normalizeHost(bound);
  }
  for (const family of families) {
    const candidates = interfaces.filter((i) => i.family === family);
    if (isIPv4(t) || isIPv6(t)) {
      const direct = candidates.find((i) => inSubnet(t, i.cidr) && !isLoopback(i.address));
      if (direct) return normalizeHost(direct.address);
    }
    const usable = candidates.find((i) =>
      !isLoopback(i.address) && !normalizeHost(i.address).startsWith("fe80:")
    );
    if (usable) return normalizeHost(usable.address);
  }
  return families[0] === "IPv6" ? "::1" : "127.0.0.1";
}

/**
 * The port to write in a URI for `host:port` reached over `protocol`:
 * undefined for the transport's default port (5060, 5061 for TLS) on an
 * address literal, which RFC 3263 section 4.2 resolves to that port anyway;
 * with a domain name the port stays (leaving it out would change how the URI
 * is resolved).
 */
export function uriPort(host: string, port: number, protocol: string): number | undefined {
  const literal = isIPv4(host) || isIPv6(host);
  return literal && port === (protocol === "tls" ? 5061 : 5060) ? undefined : port;
}

/** A dotted-quad IPv4 literal as RFC 3263 takes it (each part 0 to 255, no leading zeros). */
export const IPV4_LITERAL =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * RFC 3263's answer for a `sip:`/`sips:` URI whose host is an IP address
 * literal (section 4.2: "If TARGET is a numeric IP address, the client uses
 * that address"): the transport from the `transport` parameter, else UDP for
 * `sip` and TLS for `sips` (4.1), at the URI's port or the default one. It
 * needs no DNS, so a request to an address does not load the resolver.
 * Undefined for everything else (a name, `maddr`, a transport that is not
 * among `supported` or not allowed): the resolver handles those, and its
 * errors. `resolveSipUri` gives the same answer for every URI this answers.
 */
export function literalSipTarget(
  uri: { scheme: string; host: string; port?: number; params: Record<string, string | null> },
  supported: readonly TransportProtocol[],
): { protocol: TransportProtocol; host: string; port: number; serverName: string } | undefined {
  const scheme = uri.scheme.toLowerCase();
  if ((scheme !== "sip" && scheme !== "sips") || uri.params.maddr != null) return undefined;
  const host = uri.host.toLowerCase();
  // The resolver's tests for a literal (no leading zeros in IPv4; IPv6
  // with a zone is left to it).
  if (!IPV4_LITERAL.test(host) && !/^[0-9a-f]*:[0-9a-f:.]*$/.test(host)) return undefined;
  const secure = scheme === "sips";
  const tp = uri.params.transport?.toLowerCase();
  let protocol: TransportProtocol;
  if (tp === "udp" && !secure) protocol = "udp";
  else if (tp === "tcp") protocol = secure ? "tls" : "tcp";
  else if (tp === "tls") protocol = "tls";
  else if (tp) return undefined;
  else if (secure) protocol = "tls";
  else if (supported.includes("udp")) protocol = "udp";
  else protocol = "tcp";
  if (!supported.includes(protocol)) return undefined;
  return {
    protocol,
    host,
    port: uri.port ?? (protocol === "tls" ? 5061 : 5060),
    serverName: uri.host,
  };
}
