/**
 * Gates for tests that need real peers (Debian packages), free loopback
 * ports, and a condition poller.
 *
 * Outside CI a test whose peer is missing is skipped with a message naming the
 * Debian package; under `CI=true` it runs anyway and fails with that message,
 * so CI can never pass by skipping.
 *
 * @module
 */

/** True when the environment variable `CI` is `true` (or `1`). */
export function isCi(): boolean {
  const ci = Deno.env.get("CI")?.toLowerCase();
  return ci === "true" || ci === "1";
}

/** Returns the absolute path of `binary` found in `PATH`, or undefined. */
export function findBinary(binary: string): string | undefined {
  if (binary.includes("/")) return isExecutable(binary) ? binary : undefined;
  const path = Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
  const dirs = [...path.split(":"), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = `${dir}/${binary}`;
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The error thrown when a peer binary or file is missing. */
export class MissingPeerError extends Error {
  /** The Debian package that provides it. */
  readonly debianPackage: string;
  /** Creates the error for `what`, provided by `debianPackage`. */
  constructor(what: string, debianPackage: string) {
    super(`${what} is not installed: install Debian package ${debianPackage}`);
    this.name = "MissingPeerError";
    this.debianPackage = debianPackage;
  }
}

/** Options of {@linkcode requirePeer}. */
export interface RequirePeerOptions {
  /** A file that must also exist (a module of an optional package), e.g. a Kamailio module. */
  file?: string;
}

const announced = new Set<string>();

/**
 * Whether a test needing `binary` (from `debianPackage`) should run.
 *
 * Returns true when it is installed. When it is missing, outside CI it logs
 * `skipping: install Debian package X` once and returns false (use the result
 * as `Deno.test`'s `ignore: !requirePeer(...)`, computed at module load);
 * under `CI=true` it returns true, so the test runs and fails with a
 * {@linkcode MissingPeerError} when it tries to start the peer.
 *
 * @example
 * ```ts ignore
 * Deno.test({
 *   name: "kamailio answers OPTIONS",
 *   ignore: !requirePeer("kamailio", "kamailio"),
 *   fn: async () => {},
 * });
 * ```
 */
export function requirePeer(
  binary: string,
  debianPackage: string,
  options: RequirePeerOptions = {},
): boolean {
  let present = findBinary(binary) !== undefined;
  if (present && options.file !== undefined) present = fileExists(options.file);
  if (present) return true;
  if (isCi()) return true;
  if (!announced.has(debianPackage)) {
    announced.add(debianPackage);
    console.error(`skipping: install Debian package ${debianPackage} (${binary} not found)`);
  }
  return false;
}

/** Throws {@linkcode MissingPeerError} unless `binary` is in PATH; returns its path. */
export function assertPeer(binary: string, debianPackage: string): string {
  const path = findBinary(binary);
  if (path === undefined) throw new MissingPeerError(binary, debianPackage);
  return path;
}

function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns a port that is free on 127.0.0.1 for both UDP and TCP at the time of
 * the call (bound to port 0, then closed). Never 5060.
 */
export function freePort(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = tryPort(0);
    if (port !== undefined && port !== 5060) return port;
  }
  throw new Error("Cannot find a free UDP+TCP port on 127.0.0.1");
}

/**
 * Returns a port `p` such that `p` and `p + 1` (... `p + count - 1`) are all
 * free for UDP and TCP on 127.0.0.1 (baresip binds TLS on its SIP port + 1).
 */
export function freePortRange(count: number): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = freePort();
    if (base + count - 1 > 65535) continue;
    let ok = true;
    for (let i = 1; i < count && ok; i++) ok = tryPort(base + i) !== undefined;
    if (ok) return base;
  }
  throw new Error(`Cannot find ${count} consecutive free ports on 127.0.0.1`);
}

function tryPort(port: number): number | undefined {
  let udp: Deno.DatagramConn | undefined;
  let tcp: Deno.Listener | undefined;
  try {
    udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    const bound = (udp.addr as Deno.NetAddr).port;
    tcp = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: bound });
    return bound;
  } catch {
    return undefined;
  } finally {
    udp?.close();
    tcp?.close();
  }
}

/**
 * True when some process has bound `port` for `protocol` (UDP socket, or TCP
 * socket in LISTEN state), read from /proc/net without binding anything.
 */
export function isPortBound(protocol: "udp" | "tcp", port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const file of [`/proc/net/${protocol}`, `/proc/net/${protocol}6`]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      const [, local, , state] = fields;
      if (!local.endsWith(`:${hexPort}`)) continue;
      // TCP state 0A is LISTEN; any UDP socket counts.
      if (protocol === "udp" || state === "0A") return true;
    }
  }
  return false;
}

/**
 * True when process `pid` holds a socket bound to `port` for `protocol`
 * (matched through the socket inodes in /proc/<pid>/net, the tables of its
 * own network namespace, and /proc/<pid>/fd), so a start-up check cannot be
 * fooled by another process holding the port, and works for a process in
 * another namespace.
 */
export function isPortBoundBy(pid: number, protocol: "udp" | "tcp", port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  // The process's own network namespace's tables (the same as ours unless it runs in another).
  for (const file of [`/proc/${pid}/net/${protocol}`, `/proc/${pid}/net/${protocol}6`]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || !fields[1].endsWith(`:${hexPort}`)) continue;
      if (protocol === "tcp" && fields[3] !== "0A") continue;
      inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return false;
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const target = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
        const match = /^socket:\[(\d+)\]$/.exec(target);
        if (match && inodes.has(match[1])) return true;
      } catch {
        // fd closed meanwhile
      }
    }
  } catch {
    return false;
  }
  return false;
}

/** Options of {@linkcode waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds (default 5000). */
  timeout?: number;
  /** Poll interval in milliseconds (default 20). */
  interval?: number;
  /** What is awaited, for the timeout error message. */
  message?: string;
}

/**
 * Polls `predicate` until it returns a truthy value, and returns that value.
 * Throws when `timeout` passes first. Clears its own timers.
 *
 * @example
 * ```ts ignore
 * await waitFor(() => log.includes("registered"), { message: "registration" });
 * ```
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeout = options.timeout ?? 5000;
  const interval = options.interval ?? 20;
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  while (true) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const what = options.message ?? "condition";
      const cause = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}${cause}`);
    }
    await delay(interval);
  }
}

/** Resolves after `ms` milliseconds (internal poll step of waitFor). */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
