/**
 * Locating SIP servers (RFC 3263): from a `sip:` or `sips:` URI to an ordered
 * list of transport, IP address and port to try. Numeric hosts and explicit
 * ports skip the DNS steps that do not apply; otherwise NAPTR, then SRV
 * (RFC 2782 priority and weighted random order), then A/AAAA.
 *
 * DNS goes through an injectable {@linkcode DnsLookup}: the default uses
 * `Deno.resolveDns`; tests use {@linkcode staticDnsLookup} so that no query
 * leaves the process.
 *
 * @module
 */

import type { Uri } from "./message.ts";
import type { TransportProtocol } from "./transport.ts";
import {
  DEFAULT_PORTS,
  defaultSipTransport,
  explicitSipTransport,
  isIpAddress,
  literalSipTarget,
  sipUriTarget,
} from "./_net.ts";

export { DEFAULT_PORTS, isIpAddress };

/** A NAPTR record (RFC 3403). */
export interface NaptrRecord {
  /** Order (lower first). */
  order: number;
  /** Preference among equal orders (lower first). */
  preference: number;
  /** Flags, e.g. "s" (next lookup is SRV). */
  flags: string;
  /** Service, e.g. "SIP+D2U". */
  services: string;
  /** Regular expression (unused for SIP). */
  regexp: string;
  /** Replacement domain name (the SRV name to query). */
  replacement: string;
}

/** An SRV record (RFC 2782). */
export interface SrvRecord {
  /** Priority (lower first). */
  priority: number;
  /** Relative weight among equal priorities. */
  weight: number;
  /** Port. */
  port: number;
  /** Target host name ("." means no service). */
  target: string;
}

/** The answer type of each query type. */
export interface DnsAnswers {
  /** IPv4 addresses. */
  A: string[];
  /** IPv6 addresses. */
  AAAA: string[];
  /** NAPTR records. */
  NAPTR: NaptrRecord[];
  /** SRV records. */
  SRV: SrvRecord[];
}

/** The DNS query types the resolver uses. */
export type DnsQueryType = keyof DnsAnswers;

/**
 * A DNS lookup: resolves to the records (an empty array when the name or
 * records do not exist) and rejects only on real failures (timeout, server
 * failure).
 */
export type DnsLookup = <T extends DnsQueryType>(name: string, type: T) => Promise<DnsAnswers[T]>;

/** Options of {@linkcode createDenoDnsLookup}. */
export interface DenoDnsLookupOptions {
  /** Abandon one query after this many milliseconds; default 5000. */
  timeoutMs?: number;
  /** Name server to ask instead of the system's. */
  nameServer?: { ipAddr: string; port?: number };
}

function stripDot(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/**
 * A {@linkcode DnsLookup} backed by `Deno.resolveDns` (needs `--allow-net`).
 * Missing names or records give an empty array (so does a server failure:
 * Deno does not tell it apart); a timeout or unreachable server rejects.
 */
export function createDenoDnsLookup(options: DenoDnsLookupOptions = {}): DnsLookup {
  const timeoutMs = options.timeoutMs ?? 5000;
  return (async (name: string, type: DnsQueryType) => {
    const opts = {
      signal: AbortSignal.timeout(timeoutMs),
      ...(options.nameServer ? { nameServer: options.nameServer } : {}),
    };
    try {
      switch (type) {
        case "A":
        case "AAAA":
          return await Deno.resolveDns(name, type, opts);
        case "SRV":
          return (await Deno.resolveDns(name, "SRV", opts)).map((r) => ({
            priority: r.priority,
            weight: r.weight,
            port: r.port,
            target: stripDot(r.target),
          }));
        case "NAPTR":
          return (await Deno.resolveDns(name, "NAPTR", opts)).map((r) => ({
            order: r.order,
            preference: r.preference,
            flags: r.flags,
            services: r.services,
            regexp: r.regexp,
            replacement: stripDot(r.replacement),
          }));
      }
    } catch (e) {
      // Deno reports NXDOMAIN, NODATA and SERVFAIL alike as NotFound.
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
  }) as DnsLookup;
}

/** The default lookup: `Deno.resolveDns` with a 5 s timeout per query. */
export const denoDnsLookup: DnsLookup = createDenoDnsLookup();

/**
 * A fake DNS table: names (case-insensitive, trailing dot ignored) to the
 * records of each type; an `Error` value makes that query fail.
 */
export type DnsTable = Record<
  string,
  { [K in DnsQueryType]?: DnsAnswers[K] | Error }
>;

/**
 * A {@linkcode DnsLookup} that answers from a table and never touches the
 * network, for tests. Every query is appended to `log` as `"TYPE name"`.
 *
 * @example
 * ```ts
 * import { staticDnsLookup } from "./resolver.ts";
 * import assert from "node:assert/strict";
 * const lookup = staticDnsLookup({ "pbx.example.test": { A: ["192.0.2.10"] } });
 * assert.deepEqual(await lookup("PBX.example.test.", "A"), ["192.0.2.10"]);
 * assert.deepEqual(await lookup("pbx.example.test", "AAAA"), []);
 * ```
 */
export function staticDnsLookup(table: DnsTable, log?: string[]): DnsLookup {
  const norm = new Map<string, DnsTable[string]>();
  for (const [name, records] of Object.entries(table)) {
    norm.set(stripDot(name.toLowerCase()), records);
  }
  return (<T extends DnsQueryType>(name: string, type: T): Promise<DnsAnswers[T]> => {
    log?.push(`${type} ${name}`);
    const answer = norm.get(stripDot(name.toLowerCase()))?.[type];
    if (answer instanceof Error) return Promise.reject(answer);
    return Promise.resolve(structuredClone(answer ?? []) as DnsAnswers[T]);
  }) as DnsLookup;
}

/** One place to send a request: transport, IP address and port. */
export interface SipTarget {
  /** Transport protocol. */
  protocol: TransportProtocol;
  /** IP address (IPv6 without brackets). */
  host: string;
  /** Port. */
  port: number;
  /** The domain to verify a TLS certificate against (the URI host, RFC 5922). */
  serverName: string;
}

/** Options of {@linkcode resolveSipUri}. */
export interface ResolveOptions {
  /** Transports this side supports, in order of preference; default udp, tcp, tls. */
  transports?: readonly TransportProtocol[];
  /** DNS lookup; default {@linkcode denoDnsLookup}. */
  lookup?: DnsLookup;
  /** Random numbers in [0, 1) for the SRV weighted order; default Math.random. */
  random?: () => number;
  /** Address families: "any" (default, IPv4 first), "ipv4" or "ipv6". */
  family?: "any" | "ipv4" | "ipv6";
}

/** The server location failed: no usable record, or an unusable URI. */
export class SipResolveError extends Error {
  /** The host (or maddr) that could not be resolved. */
  readonly host: string;

  /** Creates the error. */
  constructor(message: string, host: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SipResolveError";
    this.host = host;
  }
}

/** NAPTR services and SRV prefixes per transport (RFC 3263 sections 4.1 and 4.2). */
const NAPTR_SERVICES: Record<string, TransportProtocol> = {
  "sip+d2u": "udp",
  "sip+d2t": "tcp",
  "sips+d2t": "tls",
};
const SRV_PREFIX: Record<TransportProtocol, string> = {
  udp: "_sip._udp.",
  tcp: "_sip._tcp.",
  tls: "_sips._tcp.",
};

/**
 * A small seedable generator (mulberry32) of numbers in [0, 1), for
 * reproducible SRV ordering in tests.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./resolver.ts";
 * const a = seededRandom(7), b = seededRandom(7);
 * a() === b(); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Orders SRV records as RFC 2782 says: by priority, then within a priority
 * by weighted random selection. Records whose target is "." are dropped.
 *
 * @example
 * ```ts
 * import { orderSrv } from "./resolver.ts";
 * const out = orderSrv([
 *   { priority: 20, weight: 0, port: 5060, target: "b.test" },
 *   { priority: 10, weight: 5, port: 5060, target: "a.test" },
 * ]);
 * out[0].target; // "a.test"
 * ```
 */
export function orderSrv(
  records: readonly SrvRecord[],
  random: () => number = Math.random,
): SrvRecord[] {
  const usable = records.filter((r) => stripDot(r.target) !== "");
  const priorities = [...new Set(usable.map((r) => r.priority))].sort((a, b) => a - b);
  const out: SrvRecord[] = [];
  for (const p of priorities) {
    // RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any
    // order, except that all those with weight 0 are placed at the beginning".
    const group = usable.filter((r) => r.priority === p);
    const left = [...group.filter((r) => r.weight === 0), ...group.filter((r) => r.weight > 0)];
    while (left.length > 0) {
      // "Compute the sum of the weights of those RRs ... choose a uniform random
      // number between 0 and the sum computed (inclusive), and select the RR
      // whose running sum value is the first in the selected order which is
      // greater than or equal to the random number selected."
      const total = left.reduce((sum, r) => sum + r.weight, 0);
      const pick = Math.min(total, Math.floor(random() * (total + 1)));
      let running = 0;
      let index = left.length - 1;
      for (let i = 0; i < left.length; i++) {
        running += left[i].weight;
        if (running >= pick) {
          index = i;
          break;
        }
      }
      out.push(left.splice(index, 1)[0]);
    }
  }
  return out;
}

/**
 * Locates the servers for a `sip:` or `sips:` URI (RFC 3263 section 4) and
 * returns targets in the order to try. Throws {@linkcode SipResolveError}
 * naming the host when nothing is found, or when the URI asks for a
 * transport this side does not support.
 *
 * @example
 * ```ts
 * import { resolveSipUri, staticDnsLookup } from "./resolver.ts";
 * import assert from "node:assert/strict";
 * const lookup = staticDnsLookup({
 *   "_sip._udp.example.test": { SRV: [{ priority: 10, weight: 1, port: 5070, target: "pbx.example.test" }] },
 *   "pbx.example.test": { A: ["192.0.2.10"] },
 * });
 * const targets = await resolveSipUri(
 *   { scheme: "sip", host: "example.test", params: {}, headers: {} },
 *   { lookup, transports: ["udp"] },
 * );
 * assert.deepEqual(targets, [{ protocol: "udp", host: "192.0.2.10", port: 5070, serverName: "example.test" }]);
 * ```
 */
export async function resolveSipUri(uri: Uri, options: ResolveOptions = {}): Promise<SipTarget[]> {
  const supported = options.transports ?? ["udp", "tcp", "tls"];
  // RFC 3263 section 4.2: "If TARGET is a numeric IP address, the client
  // uses that address", with the URI's port or the transport's default.
  // One rule, shared with the send path that does not load this module.
  const literal = literalSipTarget(uri, supported);
  if (literal) return [literal];
  const lookup = options.lookup ?? denoDnsLookup;
  const random = options.random ?? Math.random;
  const family = options.family ?? "any";
  const scheme = uri.scheme.toLowerCase();
  const serverName = uri.host;
  if (scheme !== "sip" && scheme !== "sips") {
    throw new SipResolveError(
      `Cannot locate SIP server for ${uri.host || scheme}: ${scheme}: URIs have no server`,
      uri.host,
    );
  }
  const secure = scheme === "sips";
  const target = sipUriTarget(uri);
  if (target === "") throw new SipResolveError("Cannot locate SIP server: empty host", target);
  const errors: unknown[] = [];
  const fail = (why: string): never => {
    const cause = errors[0];
    const detail = cause instanceof Error ? ` (DNS error: ${cause.message})` : "";
    throw new SipResolveError(
      `Cannot locate SIP server for ${target}: ${why}${detail}`,
      target,
      { cause },
    );
  };
  const query = async <T extends DnsQueryType>(name: string, type: T): Promise<DnsAnswers[T]> => {
    try {
      return await lookup(name, type);
    } catch (e) {
      errors.push(e);
      return [] as unknown as DnsAnswers[T];
    }
  };
  const addresses = async (name: string): Promise<string[]> => {
    if (isIpAddress(name)) return [name];
    if (name === "localhost") return filterFamily(["127.0.0.1", "::1"], family);
    const v4 = family === "ipv6" ? [] : await query(name, "A");
    const v6 = family === "ipv4" ? [] : await query(name, "AAAA");
    return [...v4, ...v6];
  };
  const isSupported = (t: TransportProtocol) => supported.includes(t);

  // The transport: explicit, or the default when no NAPTR step applies.
  const named = explicitSipTransport(uri.params.transport, secure, supported);
  if (named !== undefined && typeof named !== "string") fail(named.refused);
  const explicit = named as TransportProtocol | undefined;
  const defaultTransport = (): TransportProtocol => {
    const protocol = defaultSipTransport(secure, supported);
    return typeof protocol === "string" ? protocol : fail(protocol.refused);
  };
  const fromAddresses = async (
    protocol: TransportProtocol,
    port: number,
    name = target,
  ): Promise<SipTarget[]> =>
    (await addresses(name)).map((host) => ({ protocol, host, port, serverName }));

  const portGiven = uri.port !== undefined;
  // RFC 3263 section 4.2: "If TARGET is a numeric IP address, the client uses
  // that address. If the URI also contains a port, it uses that port. If no
  // port is specified, it uses the default port for the particular transport
  // protocol." (A numeric TARGET whose transport can be used was answered
  // above; here it only fails, saying why.) "If the TARGET was not a numeric
  // IP address, but a port is present in the URI, the client performs an A
  // or AAAA record lookup."
  if (isIpAddress(target) || target === "localhost" || portGiven) {
    const protocol = explicit ?? defaultTransport();
    const found = await fromAddresses(protocol, uri.port ?? DEFAULT_PORTS[protocol]);
    return found.length > 0 ? found : fail("no A or AAAA records");
  }

  const out: SipTarget[] = [];
  const fromSrv = async (protocol: TransportProtocol, name: string) => {
    for (const srv of orderSrv(await query(name, "SRV"), random)) {
      out.push(...await fromAddresses(protocol, srv.port, srv.target));
    }
  };

  let srvNames = 0;
  if (explicit) {
    // RFC 3263 section 4.2: "because a transport was specified explicitly, the
    // client performs an SRV query for that specific transport".
    srvNames++;
    await fromSrv(explicit, SRV_PREFIX[explicit] + target);
  } else {
    // RFC 3263 section 4.1: NAPTR, keeping only services the client supports;
    // "If the URI is a SIPS URI, only SIPS+D2T is usable" (TLS).
    const naptr = (await query(target, "NAPTR"))
      .filter((r) => r.flags.toLowerCase() === "s")
      .map((r) => ({ r, protocol: NAPTR_SERVICES[r.services.toLowerCase()] }))
      .filter(({ protocol }) =>
        protocol && isSupported(protocol) && (!secure || protocol === "tls")
      )
      .sort((a, b) => a.r.order - b.r.order || a.r.preference - b.r.preference);
    for (const { r, protocol } of naptr) {
      srvNames++;
      await fromSrv(protocol, stripDot(r.replacement));
    }
    if (naptr.length === 0) {
      // "If no NAPTR records are found, the client constructs SRV queries for
      // those transport protocols it supports, and does a query for each."
      for (const protocol of supported) {
        if (secure && protocol !== "tls") continue;
        srvNames++;
        await fromSrv(protocol, SRV_PREFIX[protocol] + target);
      }
    }
  }
  if (out.length === 0) {
    // RFC 3263 section 4.2: "If no SRV records were found, the client performs
    // an A or AAAA record lookup of the domain name", at the default port.
    const protocol = explicit ?? defaultTransport();
    out.push(...await fromAddresses(protocol, DEFAULT_PORTS[protocol]));
  }
  if (out.length === 0) {
    fail(srvNames > 0 ? "no NAPTR, SRV, A or AAAA records" : "no A or AAAA records");
  }
  return dedupe(out);
}

function filterFamily(list: string[], family: "any" | "ipv4" | "ipv6"): string[] {
  if (family === "any") return list;
  return list.filter((a) => (family === "ipv6") === a.includes(":"));
}

function dedupe(targets: SipTarget[]): SipTarget[] {
  const seen = new Set<string>();
  return targets.filter((t) => {
    const key = `${t.protocol}|${t.host}|${t.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
