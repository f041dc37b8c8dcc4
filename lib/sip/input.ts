/**
 * Reading addresses as users type them (command-line flags, profiles, stdin
 * lines): `alice@example.test` as a SIP URI, `host:port` as a bind address.
 *
 * @module
 */

import { parseUri, type Uri } from "./message.ts";
import type { HostPort } from "./transport.ts";

/**
 * Normalizes `alice@example.test` or `sip:alice@...` to a URI.
 *
 * @example
 * ```ts
 * import { toSipUri } from "./input.ts";
 * import assert from "node:assert/strict";
 * assert.equal(toSipUri("bob@example.test").scheme, "sip");
 * assert.equal(toSipUri("sips:bob@example.test").scheme, "sips");
 * ```
 */
export function toSipUri(text: string): Uri {
  const t = text.trim();
  const scheme = t.slice(0, 5).toLowerCase();
  if (scheme.startsWith("sip:") || scheme === "sips:" || scheme.startsWith("tel:")) {
    return parseUri(t);
  }
  return parseUri(`sip:${t}`);
}

/**
 * Parses `host:port`, `[v6]:port`, `host` or `:port`.
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./input.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseHostPort("[::1]:5060"), { host: "::1", port: 5060 });
 * assert.deepEqual(parseHostPort(":5070"), { host: "0.0.0.0", port: 5070 });
 * ```
 */
export function parseHostPort(text: string, defaultPort = 0): HostPort {
  const t = text.trim();
  const v6 = t.startsWith("[") ? /^\[([^\]]+)\](?::(\d+))?$/.exec(t) : null;
  if (v6) return { host: v6[1], port: v6[2] ? Number(v6[2]) : defaultPort };
  const colons = t.split(":").length - 1;
  if (colons > 1) return { host: t, port: defaultPort };
  const [host, port] = t.split(":");
  const p = port === undefined || port === "" ? defaultPort : Number(port);
  if (!Number.isInteger(p) || p < 0 || p > 65535) {
    throw new RangeError(`Invalid port in "${text}"`);
  }
  return { host: host || "0.0.0.0", port: p };
}
