/**
 * Starts a real Kamailio (Debian package `kamailio`, presence modules from
 * `kamailio-presence-modules`) on 127.0.0.1 for integration tests.
 *
 * The configuration is generated from tests/kamailio/kamailio.cfg and the
 * db_text tables in tests/kamailio/db are copied to a private temporary
 * directory (db_text writes to them). Kamailio runs in the foreground
 * (`-DD -E`), as the current user, with a private runtime directory, and
 * listens on UDP and TCP 127.0.0.1:<port> only.
 *
 * Users (table `subscriber`, both domains example.test and example.org):
 * alice, bob, carol, dave; the password of `<user>` is `<user>-secret`.
 * Resource lists (table `xcap`, rls-services documents): in each domain,
 * `sip:buddies-alice@<domain>` (owner alice: bob, carol) and
 * `sip:buddies-bob@<domain>` (owner bob: alice, carol). A list is found by
 * rls only when the SUBSCRIBE comes from its owner (From user and domain).
 *
 * How rls is set up (found by reading the module and running it here):
 * `integrated_xcap_server=1` makes rls read the xcap table instead of an XCAP
 * server; for an initial SUBSCRIBE with `Supported: eventlist` and an Event it
 * handles, it looks up the row with username/domain = the watcher (From) and
 * doc_type 8 (rls-services), and serves the `<service>` whose uri equals the
 * Request-URI; its `<list>` may be inline (used here) or a `<resource-list>`
 * reference. The answer is 200 with `Require: eventlist`, then a full-state
 * multipart/related NOTIFY (RLMI with the members, no instances yet); rls
 * subscribes to every member through pua (`outbound_proxy` = this server,
 * Contact = `server_address`), the back-end NOTIFYs come back to
 * `server_address` and go to `rls_handle_notify()`, and within `waitn_time`
 * (1 s here) a partial NOTIFY carries each member's PIDF. Any other SUBSCRIBE
 * makes `rls_handle_subscribe()` return `to_presence_code` (10) and goes to
 * `handle_subscribe()`. `presence_xml force_active=1` authorizes every watcher.
 *
 * Other facts: REGISTER's realm is the server's domain (so clients naming the
 * server by address authenticate too); a wrong password gets 403 (auth_check
 * -2), an expiry under `minExpires` 423 (registrar min_expires_mode=1).
 * Requests for a domain that is neither the server's nor a peer's get 404,
 * never a DNS lookup.
 *
 * @module
 */

import {
  assertPeer,
  freePort,
  isPortBound,
  isPortBoundBy,
  MissingPeerError,
  waitFor,
} from "./require.ts";
import { isBindFailure, type PeerProcess, spawnPeer } from "./process.ts";
import { sipOptionsPing } from "./sip_probe.ts";

/**
 * What the server does:
 * - `registrar`: registrar (digest auth on REGISTER) and proxy for its domain.
 * - `proxy`: the same routing with REGISTER accepted without authentication
 *   by default (a plain SER-like proxy: SUBSCRIBE/MESSAGE to a registered user
 *   are forwarded, to an unregistered one get 404).
 * - `presence`: registrar plus presence server (PUBLISH, SUBSCRIBE handled
 *   by presence/presence_xml) and RFC 4662 list server (rls).
 */
export type KamailioMode = "registrar" | "proxy" | "presence";

/** Address of a peer server for another domain. */
export interface KamailioPeer {
  /** Host (a loopback address). */
  host?: string;
  /** Port (UDP and TCP). */
  port: number;
}

/** A resource list for rls: an rls-services document owned by `owner`. */
export interface KamailioList {
  /** Owner's user part (the watcher allowed to subscribe to the list). */
  owner: string;
  /** The list URI, e.g. `sip:friends-carol@example.test`. */
  uri: string;
  /** Member URIs. */
  members: string[];
}

/** Options of {@linkcode startKamailio}. */
export interface KamailioOptions {
  /** Default `registrar`. */
  mode?: KamailioMode;
  /** The domain the server is responsible for (default `example.test`). */
  domain?: string;
  /** UDP and TCP port on 127.0.0.1 (default: a free port). */
  port?: number;
  /** Challenge REGISTER (default: true, except in `proxy` mode). */
  auth?: boolean;
  /** Digest algorithm of the challenges: `SHA-256` (RFC 8760) or MD5 (default, no algorithm param). */
  digestAlgorithm?: "MD5" | "SHA-256";
  /** Registrar min_expires; shorter REGISTER expiries get 423 (default 60). */
  minExpires?: number;
  /** Requests for these domains are relayed to these servers (the two-domain set-up). */
  peers?: Record<string, KamailioPeer>;
  /** Extra resource lists added to the xcap table (presence mode). */
  lists?: KamailioList[];
  /** Kamailio log level, -5..3 (default 2 = info; 3 = debug). */
  debug?: number;
  /** Milliseconds to wait for the server to answer OPTIONS (default 10000). */
  startTimeout?: number;
  /**
   * Listen on this address instead of 127.0.0.1 (with `netns`: an address of
   * that namespace).
   */
  host?: string;
  /**
   * Run inside this network namespace (created by the test, `ip netns exec`);
   * start-up is then checked with sipsak from inside it.
   */
  netns?: string;
  /**
   * Redirect server: an INVITE for a registered user is answered
   * `302 Moved Temporarily` with its current bindings as Contact, instead of
   * being relayed (the pre-call mobility scenario C.1).
   */
  redirect?: boolean;
}

/** A running Kamailio. */
export interface Kamailio {
  /** Mode it runs in. */
  readonly mode: KamailioMode;
  /** Its domain. */
  readonly domain: string;
  /** Its address: 127.0.0.1 unless `host` was given. */
  readonly host: string;
  /** UDP and TCP port. */
  readonly port: number;
  /** `127.0.0.1:<port>`, for `--proxy`/`--registrar` style options. */
  readonly address: string;
  /** `sip:127.0.0.1:<port>` (outbound proxy / registrar URI). */
  readonly uri: string;
  /** Label for log dumps. */
  readonly name: string;
  /** The private directory (config, db, runtime). */
  readonly dir: string;
  /** Everything Kamailio logged so far. */
  logs(): string;
  /** Stops Kamailio and removes its directory. */
  stop(): Promise<void>;
}

const TEMPLATE = new URL("../kamailio/kamailio.cfg", import.meta.url);
const DB_DIR = new URL("../kamailio/db/", import.meta.url);

/** Directories where Debian and source builds put Kamailio's modules. */
const MODULE_DIR_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/kamailio/modules",
  "/usr/lib/aarch64-linux-gnu/kamailio/modules",
  "/usr/lib/kamailio/modules",
  "/usr/lib64/kamailio/modules",
  "/usr/local/lib64/kamailio/modules",
  "/usr/local/lib/kamailio/modules",
];

/** Returns the directory holding Kamailio's modules, if one is found. */
export function kamailioModuleDir(): string | undefined {
  for (const dir of MODULE_DIR_CANDIDATES) {
    try {
      if (Deno.statSync(`${dir}/tm.so`).isFile) return dir;
    } catch {
      // next
    }
  }
  try {
    for (const entry of Deno.readDirSync("/usr/lib")) {
      const dir = `/usr/lib/${entry.name}/kamailio/modules`;
      try {
        if (Deno.statSync(`${dir}/tm.so`).isFile) return dir;
      } catch {
        // next
      }
    }
  } catch {
    // no /usr/lib
  }
  return undefined;
}

/** Path of a presence module, for `requirePeer(..., { file })`. */
export function kamailioPresenceModule(): string {
  return `${kamailioModuleDir() ?? MODULE_DIR_CANDIDATES[0]}/rls.so`;
}

/** Escapes a value for a db_text row (backslash, colon, CR, LF, tab). */
export function escapeDbText(value: string): string {
  return value.replace(
    /[\\:\n\r\t]/g,
    (c) =>
      c === "\\" ? "\\\\" : c === ":" ? "\\:" : c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t",
  );
}

/** Builds an RFC 4826 rls-services document with one service holding an inline list. */
export function rlsServicesDocument(list: KamailioList): string {
  const entries = list.members.map((m) => `<rl:entry uri="${xmlAttr(m)}"/>`).join("");
  return `<?xml version="1.0" encoding="UTF-8"?>` +
    `<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"` +
    ` xmlns:rl="urn:ietf:params:xml:ns:resource-lists">` +
    `<service uri="${xmlAttr(list.uri)}"><list name="list">${entries}</list>` +
    `<packages><package>presence</package></packages></service></rls-services>`;
}

function xmlAttr(value: string): string {
  return value.replaceAll("&", "&amp;").replaceAll('"', "&quot;").replaceAll("<", "&lt;");
}

/**
 * Starts Kamailio and waits until it answers OPTIONS on its UDP port.
 *
 * @example
 * ```ts ignore
 * const k = await startKamailio({ mode: "presence", domain: "example.test" });
 * try {
 *   // register alice@example.test at k.address with password alice-secret
 * } finally {
 *   await k.stop();
 * }
 * ```
 */
export async function startKamailio(options: KamailioOptions = {}): Promise<Kamailio> {
  // A port picked by freePort() can be taken by another process before
  // Kamailio binds it: then try another one (only when no port was given).
  for (let attempt = 1;; attempt++) {
    try {
      return await startKamailioOnce(options);
    } catch (error) {
      if (options.port !== undefined || attempt >= 3 || !isBindFailure(error)) throw error;
    }
  }
}

async function startKamailioOnce(options: KamailioOptions): Promise<Kamailio> {
  assertPeer("kamailio", "kamailio");
  const mode = options.mode ?? "registrar";
  const domain = options.domain ?? "example.test";
  // A namespace of the test's own has every port free.
  const port = options.port ?? (options.netns ? 5060 : freePort());
  const auth = options.auth ?? mode !== "proxy";
  if (mode === "presence") {
    const module = kamailioPresenceModule();
    try {
      Deno.statSync(module);
    } catch {
      throw new MissingPeerError(`Kamailio module ${module}`, "kamailio-presence-modules");
    }
  }
  const dir = await Deno.makeTempDir({ prefix: `sipkit-kamailio-${mode}-` });
  let process: PeerProcess | undefined;
  try {
    const dbDir = `${dir}/db`;
    const runDir = `${dir}/run`;
    await Deno.mkdir(dbDir);
    await Deno.mkdir(runDir);
    for await (const entry of Deno.readDir(DB_DIR)) {
      if (entry.isFile) await Deno.copyFile(new URL(entry.name, DB_DIR), `${dbDir}/${entry.name}`);
    }
    if (options.lists?.length) await appendLists(`${dbDir}/xcap`, options.lists);

    const defines: string[] = [];
    if (auth) defines.push("WITH_AUTH");
    if (auth && options.digestAlgorithm === "SHA-256") defines.push("WITH_SHA256");
    if (mode === "presence") defines.push("WITH_PRESENCE", "WITH_RLS");
    const peerRoutes = Object.entries(options.peers ?? {}).map(([peerDomain, peer]) => {
      if (!/^[A-Za-z0-9.-]+$/.test(peerDomain)) {
        throw new TypeError(`Bad peer domain: ${peerDomain}`);
      }
      const host = peer.host ?? "127.0.0.1";
      return `\tif ($rd == "${peerDomain}") {\n\t\t$du = "sip:${host}:${peer.port}";\n` +
        `\t\tif (is_method("INVITE|SUBSCRIBE")) {\n\t\t\trecord_route();\n\t\t}\n` +
        `\t\troute(RELAY);\n\t\texit;\n\t}`;
    }).join("\n");
    const template = await Deno.readTextFile(TEMPLATE);
    const values: Record<string, string> = {
      PORT: String(port),
      DOMAIN: domain,
      DB_URL: `text://${dbDir}`,
      DEBUG: String(options.debug ?? 2),
      MIN_EXPIRES: String(options.minExpires ?? 60),
      PEER_ROUTES: peerRoutes,
    };
    let config = template.replace(/%%([A-Z_]+)%%/g, (whole, key: string) => {
      if (!(key in values)) throw new Error(`Unknown placeholder ${whole} in kamailio.cfg`);
      return values[key];
    });
    const lines = config.split("\n");
    config = [lines[0], ...defines.map((d) => `#!define ${d}`), ...lines.slice(1)].join("\n");
    const moduleDir = kamailioModuleDir();
    if (moduleDir) config = config.replace(/^(loadmodule )/m, `mpath="${moduleDir}/"\n$1`);
    const host = options.host ?? "127.0.0.1";
    if (host !== "127.0.0.1") config = config.replaceAll(`127.0.0.1:${port}`, `${host}:${port}`);
    if (options.redirect) {
      // A redirect server (RFC 3261 8.3): the destination set found by
      // lookup() goes back as the Contacts of a 302.
      config = config.replace(
        "route[LOCATION] {\n",
        'route[LOCATION] {\n\tif (is_method("INVITE") && lookup("location")) {\n' +
          '\t\tsl_send_reply("302", "Moved Temporarily");\n\t\texit;\n\t}\n',
      );
    }
    const cfgPath = `${dir}/kamailio.cfg`;
    await Deno.writeTextFile(cfgPath, config);

    const name = `kamailio ${mode} ${domain} ${host}:${port}${
      options.netns ? ` in ${options.netns}` : ""
    }`;
    const inNetns = options.netns ? ["netns", "exec", options.netns, "kamailio"] : [];
    process = spawnPeer(options.netns ? "ip" : "kamailio", [
      ...inNetns,
      "-DD",
      "-E",
      "-f",
      cfgPath,
      "-Y",
      runDir,
      "-w",
      runDir,
      "-m",
      "64",
      "-M",
      "8",
    ], { name, debianPackage: "kamailio", cwd: dir });
    const proc = process;
    await waitFor(async () => {
      if (proc.hasExited) throw new Error("kamailio exited during start-up");
      if (options.netns) {
        // The host's /proc and sockets do not see into the namespace: ask from inside.
        const probe = await new Deno.Command("ip", {
          args: ["netns", "exec", options.netns, "sipsak", "-H", host, "-s", `sip:${host}:${port}`],
          stdout: "null",
          stderr: "null",
        }).output();
        return probe.success;
      }
      // The main process holds the UDP socket; the TCP listener belongs to
      // its "tcp main" child, so TCP is only checked as bound.
      if (!isPortBoundBy(proc.pid, "udp", port) || !isPortBound("tcp", port)) return false;
      return (await sipOptionsPing("127.0.0.1", port, { timeout: 200 })) === 200;
    }, { timeout: options.startTimeout ?? 10_000, message: `${name} to answer OPTIONS` });
    let stopped: Promise<void> | undefined;
    return {
      mode,
      domain,
      host,
      port,
      address: `${host}:${port}`,
      uri: `sip:${host}:${port}`,
      name,
      dir,
      logs: () => proc.logs(),
      stop() {
        stopped ??= (async () => {
          await proc.stop("SIGTERM", 3000);
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        })();
        return stopped;
      },
    };
  } catch (error) {
    if (process) {
      await process.stop("SIGTERM", 3000);
      const message = error instanceof Error ? error.message : String(error);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw new Error(`${message}\n----- kamailio output -----\n${process.logs()}`);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function appendLists(path: string, lists: KamailioList[]): Promise<void> {
  const text = await Deno.readTextFile(path);
  const rows = text.split("\n").filter((l) => l.trim() !== "");
  let id = rows.length; // header + rows: next id
  const added = lists.map((list) => {
    const match = /^sips?:[^@]+@([^;>]+)/.exec(list.uri);
    if (!match) throw new TypeError(`Bad list URI: ${list.uri}`);
    const listDomain = match[1];
    const doc = rlsServicesDocument(list);
    const docUri = `rls-services/users/sip:${list.owner}@${listDomain}/index`;
    // columns: id username domain doc doc_type(8 = rls-services) etag source doc_uri port
    return [
      String(id++),
      escapeDbText(list.owner),
      escapeDbText(listDomain),
      escapeDbText(doc),
      "8",
      escapeDbText(`etag-${id}`),
      "1",
      escapeDbText(docUri),
      "0",
    ].join(":");
  });
  await Deno.writeTextFile(path, [...rows, ...added].join("\n") + "\n");
}

/** Options of {@linkcode startKamailioPair}. */
export interface KamailioPairOptions {
  /** Mode of both servers (default `proxy`). */
  mode?: KamailioMode;
  /** First domain (default `example.test`). */
  domainA?: string;
  /** Second domain (default `example.org`). */
  domainB?: string;
  /** Passed to both. */
  auth?: boolean;
  /** Passed to both. */
  debug?: number;
}

/**
 * Starts two Kamailio servers for two domains on two ports, each relaying
 * requests for the other's domain to the other (static mapping, no DNS), and
 * serving its own users from its own location table.
 */
export async function startKamailioPair(
  options: KamailioPairOptions = {},
): Promise<{ a: Kamailio; b: Kamailio; stop(): Promise<void> }> {
  const domainA = options.domainA ?? "example.test";
  const domainB = options.domainB ?? "example.org";
  const portA = freePort();
  let portB = freePort();
  while (portB === portA) portB = freePort();
  const common = { mode: options.mode ?? "proxy", auth: options.auth, debug: options.debug };
  const a = await startKamailio({
    ...common,
    domain: domainA,
    port: portA,
    peers: { [domainB]: { port: portB } },
  });
  try {
    const b = await startKamailio({
      ...common,
      domain: domainB,
      port: portB,
      peers: { [domainA]: { port: portA } },
    });
    return { a, b, stop: async () => void await Promise.all([a.stop(), b.stop()]) };
  } catch (error) {
    await a.stop();
    throw error;
  }
}
