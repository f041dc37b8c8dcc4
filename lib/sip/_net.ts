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
  // "::ffff:" and four dot-separated runs of digits (what a dual-stack
  // socket reports for an IPv4 peer): scanned, since a regular expression
  // costs some 0.3 ms the first time it runs.
  if (!h.startsWith("::ffff:")) return h;
  let dots = 0;
  let digits = 0;
  for (let i = 7; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c >= 48 && c <= 57) digits++;
    else if (c === 46 && digits > 0 && dots < 3) dots++, digits = 0;
    else return h;
  }
  return dots === 3 && digits > 0 ? h.slice(7) : h;
}

/** A map key for a host and port. */
export function hostPortKey(hp: HostPort): string {
  return `${normalizeHost(hp.host)}|${hp.port}`;
}

/** True for a literal IPv4 address (four dot-separated runs of 1 to 3 digits). */
export function isIPv4(host: string): boolean {
  return scanQuad(host, false);
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
  return h === "localhost" || h === "::1" || h.startsWith("127.");
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

/**
 * True for a dotted-quad IPv4 literal as RFC 3263 takes it (each part 0 to
 * 255, no leading zeros).
 */
export function isDottedQuad(host: string): boolean {
  return scanQuad(host, true);
}

/**
 * Four dot-separated runs of 1 to 3 digits, with `strict` each 0 to 255
 * without leading zeros. Scanned rather than matched with a regular
 * expression: a one-shot command checks an address or two, and a regular
 * expression costs some 0.3 ms the first time it runs.
 */
function scanQuad(host: string, strict: boolean): boolean {
  let i = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (host.charCodeAt(i) !== 46) return false; // "."
      i++;
    }
    const start = i;
    let value = 0;
    for (let d; i - start < 3 && (d = host.charCodeAt(i) - 48) >= 0 && d <= 9; i++) {
      value = value * 10 + d;
    }
    const digits = i - start;
    if (digits === 0) return false;
    if (strict && (value > 255 || (digits > 1 && host.charCodeAt(start) === 48))) return false;
  }
  return i === host.length;
}

/** True for an IPv4 address or an IPv6 address (without brackets). */
export function isIpAddress(host: string): boolean {
  return isDottedQuad(host) || (host.includes(":") && /^[0-9a-fA-F:.]+(%.+)?$/.test(host));
}

/** Default ports (RFC 3261 section 19.1.2). */
export const DEFAULT_PORTS = { udp: 5060, tcp: 5060, tls: 5061 } as const;

/** Why a URI's transport cannot be used: the resolver's error says `refused`. */
export interface TransportRefusal {
  /** What is wrong, e.g. "transport tls is not enabled". */
  refused: string;
}

/**
 * RFC 3263 section 4.1's TARGET of a `sip:`/`sips:` URI: "If the URI
 * contains an maddr parameter with a value, that value is the TARGET. If
 * not, the TARGET is the host value." Lowercase; an IPv6 `maddr` without
 * its brackets (the URI's host has none already).
 */
export function sipUriTarget(uri: { host: string; params: Record<string, string | null> }): string {
  const maddr = uri.params.maddr;
  if (!maddr) return uri.host.toLowerCase();
  const target = maddr.toLowerCase();
  return target.startsWith("[") && target.endsWith("]") ? target.slice(1, -1) : target;
}

/**
 * The transport a URI's `transport` parameter asks for (RFC 3263 section
 * 4.1: "that transport protocol SHOULD be used"; in a SIPS URI `tcp` means
 * TLS over TCP, RFC 3261 section 26.2.2), or why it cannot be used (unknown,
 * `udp` in a SIPS URI, or not among `supported`). Undefined without the
 * parameter.
 */
export function explicitSipTransport(
  transport: string | null | undefined,
  secure: boolean,
  supported: readonly TransportProtocol[],
): TransportProtocol | TransportRefusal | undefined {
  const tp = transport?.toLowerCase();
  if (!tp) return undefined;
  let protocol: TransportProtocol;
  if (tp === "udp") protocol = "udp";
  else if (tp === "tcp") protocol = secure ? "tls" : "tcp";
  else if (tp === "tls") protocol = "tls";
  else return { refused: `transport ${tp} is not supported` };
  if (secure && protocol === "udp") return { refused: "a sips URI cannot use transport=udp" };
  if (!supported.includes(protocol)) return { refused: `transport ${protocol} is not enabled` };
  return protocol;
}

/**
 * The transport of a URI that names none where no NAPTR step applies (RFC
 * 3263 section 4.1, a numeric IP address or an explicit port: "UDP for a
 * SIP URI, and TCP for a SIPS URI", TLS over TCP; TCP for a SIP URI when
 * this side has no UDP), or why there is none among `supported`.
 */
export function defaultSipTransport(
  secure: boolean,
  supported: readonly TransportProtocol[],
): TransportProtocol | TransportRefusal {
  if (secure) {
    return supported.includes("tls") ? "tls" : { refused: "transport tls is not enabled" };
  }
  if (supported.includes("udp")) return "udp";
  if (supported.includes("tcp")) return "tcp";
  return { refused: "neither udp nor tcp is enabled for a sip URI" };
}

/**
 * RFC 3263's answer for a `sip:`/`sips:` URI whose TARGET (see
 * {@linkcode sipUriTarget}) is an IP address literal (section 4.2: "If
 * TARGET is a numeric IP address, the client uses that address. If the URI
 * also contains a port, it uses that port. If no port is specified, it uses
 * the default port for the particular transport protocol"): the transport
 * of {@linkcode explicitSipTransport}, else of
 * {@linkcode defaultSipTransport}. It needs no DNS, so a request to an
 * address does not load the resolver; `resolveSipUri` answers such a URI
 * with this. Undefined for everything else (another scheme, a name, a
 * transport that cannot be used): the resolver handles those, and says why
 * it fails.
 */
export function literalSipTarget(
  uri: { scheme: string; host: string; port?: number; params: Record<string, string | null> },
  supported: readonly TransportProtocol[],
): { protocol: TransportProtocol; host: string; port: number; serverName: string } | undefined {
  const scheme = uri.scheme.toLowerCase();
  if (scheme !== "sip" && scheme !== "sips") return undefined;
  const host = sipUriTarget(uri);
  if (!isIpAddress(host)) return undefined;
  const secure = scheme === "sips";
  const protocol = explicitSipTransport(uri.params.transport, secure, supported) ??
    defaultSipTransport(secure, supported);
  if (typeof protocol !== "string") return undefined;
  return { protocol, host, port: uri.port ?? DEFAULT_PORTS[protocol], serverName: uri.host };
}
