/**
 * The kernel's answer to "which source address toward this destination",
 * asked without a child process per question (the address monitor asks it
 * on the hand-off path, where `ip route get` cost 25 to 60 ms under load):
 *
 * - {@linkcode socketRouteLookup}: a UDP socket is connected to the
 *   destination and its local address read back (`socket`, `connect`,
 *   `getsockname`, `close` from libc through FFI). Connecting a UDP socket
 *   only looks the route up: nothing is sent. Linux with `--allow-ffi`.
 * - {@linkcode IpBatchRoutes}: one long-lived `ip -o -force -batch -` child
 *   fed with `route get` lines, started again when it dies; for when FFI is
 *   not allowed.
 *
 * {@linkcode kernelRoutes} picks the first that works here.
 *
 * @module
 */

import { openLibc } from "../_libc.ts";
import { parseRouteGet, type RouteInfo } from "./addresses.ts";
import { ipRouteGet } from "./sources.ts";

/** Looks up the route toward a destination (an IP literal). */
export type RouteLookup = (destination: string) => Promise<RouteInfo | undefined>;

/** A route lookup that holds resources (a child process). */
export interface KernelRoutes {
  /** How it asks: "socket" (a connected UDP socket through FFI) or "ip-batch" (one `ip` child). */
  readonly method: "socket" | "ip-batch";
  /** The route toward `destination`, or undefined when there is none. */
  lookup: RouteLookup;
  /** Releases what it holds. */
  close(): Promise<void>;
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;
let libc: Libc | null | undefined;

function libcHere(): Libc | null {
  if (libc !== undefined) return libc;
  // The sockaddr layouts below are Linux's (no sin_len byte as on the BSDs): openLibc checks it.
  libc = openLibc(SYMBOLS);
  return libc;
}

/** The 16 bytes of an IPv6 literal, or undefined when it is not one. */
function ipv6Bytes(text: string): Uint8Array | undefined {
  let host: string;
  try {
    host = new URL(`http://[${text}]/`).hostname.slice(1, -1); // canonical, IPv4 tail as hex
  } catch {
    return undefined;
  }
  const [head, tail] = host.split("::");
  const a = head ? head.split(":") : [];
  const b = tail ? tail.split(":") : [];
  const groups = tail === undefined ? a : [...a, ...Array(8 - a.length - b.length).fill("0"), ...b];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  });
  return out;
}

/** An IPv6 address in the RFC 5952 form (as `ip` prints it). */
function formatIpv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return new URL(`http://[${groups.join(":")}]/`).hostname.slice(1, -1);
}

/** A sockaddr for `destination` (port 9, discard: nothing is sent), or undefined. */
function sockaddr(destination: string): Uint8Array | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(destination)) {
    const parts = destination.split(".").map(Number);
    if (parts.some((p) => p > 255)) return undefined;
    const sa = new Uint8Array(16);
    new DataView(sa.buffer).setUint16(0, AF_INET, true);
    new DataView(sa.buffer).setUint16(2, 9, false);
    sa.set(parts, 4);
    return sa;
  }
  if (!destination.includes(":") || destination.includes("%")) return undefined;
  const bytes = ipv6Bytes(destination);
  if (!bytes) return undefined;
  const sa = new Uint8Array(28);
  new DataView(sa.buffer).setUint16(0, AF_INET6, true);
  new DataView(sa.buffer).setUint16(2, 9, false);
  sa.set(bytes, 8);
  return sa;
}

/**
 * The route lookup through a connected UDP socket (see the module doc), or
 * undefined where it cannot be done (not Linux, no `--allow-ffi`). It gives
 * the source address only: the interface is left to the caller.
 *
 * @example
 * ```ts ignore
 * const lookup = socketRouteLookup();
 * await lookup?.("127.0.0.1"); // { source: "127.0.0.1" }
 * ```
 */
export function socketRouteLookup(): RouteLookup | undefined {
  const lib = libcHere();
  if (!lib) return undefined;
  const name = new Uint8Array(28);
  const length = new Uint32Array(1);
  const lookup = (destination: string): RouteInfo | undefined => {
    const sa = sockaddr(destination);
    if (!sa) return undefined;
    const family = sa.length === 16 ? AF_INET : AF_INET6;
    const fd = lib.symbols.socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error("socket() failed");
    try {
      // Fails (ENETUNREACH, EHOSTUNREACH...) when there is no route.
      if (lib.symbols.connect(fd, sa, sa.length) !== 0) return undefined;
      length[0] = name.length;
      if (lib.symbols.getsockname(fd, name, new Uint8Array(length.buffer)) !== 0) {
        return undefined;
      }
      const source = family === AF_INET
        ? [...name.subarray(4, 8)].join(".")
        : formatIpv6(name.subarray(8, 24));
      return { source };
    } finally {
      lib.symbols.close(fd);
    }
  };
  return (destination) => Promise.resolve(lookup(destination));
}

/** Options of {@linkcode IpBatchRoutes}. */
export interface IpBatchRoutesOptions {
  /** Ask in this named network namespace (`ip -n <name>`). Default the process's own. */
  netns?: string;
  /** Longest wait for an answer before the child is ended and a one-off `ip route get` asked. Default 2000 ms. */
  timeoutMs?: number;
  /** Diagnostics. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
}

/** What `ip -o link show dev lo` prints: the end of each answer (every namespace has `lo`). */
const SENTINEL = /^\d+:\s+lo[:@]/;

/**
 * Route lookups through one long-lived `ip -o -force -batch -` child (see
 * the module doc): each question is a `route get <destination>` line
 * followed by `link show dev lo`, whose one-line answer marks the end (a
 * destination without a route prints nothing on stdout, only an error on
 * stderr, which `-force` survives). Questions are asked one at a time. A
 * child that died is started again at the next question.
 *
 * @example
 * ```ts ignore
 * const routes = new IpBatchRoutes();
 * await routes.lookup("192.0.2.1"); // { source: "10.0.0.5", interface: "eth0" }
 * await routes.close();
 * ```
 */
export class IpBatchRoutes implements KernelRoutes {
  /** Always "ip-batch". */
  readonly method = "ip-batch" as const;
  #options: IpBatchRoutesOptions;
  #child?: Deno.ChildProcess;
  #writer?: WritableStreamDefaultWriter<Uint8Array>;
  #lines: string[] = [];
  #wake?: () => void;
  #eof = true;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;
  #missing = false;
  #encoder = new TextEncoder();

  /** Creates the lookup; the child starts at the first question. */
  constructor(options: IpBatchRoutesOptions = {}) {
    this.#options = options;
  }

  /** The process id of the `ip` child, while one runs. */
  get pid(): number | undefined {
    return this.#eof ? undefined : this.#child?.pid;
  }

  /** The route toward `destination` (an IP literal); undefined when there is none or `ip` is missing. */
  lookup = (destination: string): Promise<RouteInfo | undefined> => {
    const run = this.#queue.then(() => this.#ask(destination));
    this.#queue = run.catch(() => {});
    return run;
  };

  async #ask(destination: string): Promise<RouteInfo | undefined> {
    // Only an address may reach the child's stdin: no second command in a line.
    if (this.#closed || !/^[0-9a-fA-F:.]+$/.test(destination)) return undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.#eof && !this.#spawn()) return undefined;
      try {
        await this.#writer!.write(
          this.#encoder.encode(`route get ${destination}\nlink show dev lo\n`),
        );
      } catch {
        this.#stop(); // it died: once more with a new child
        continue;
      }
      const answer = await this.#answer();
      if (answer !== undefined) return parseRouteGet(answer);
      if (this.#closed) return undefined;
      // Died meanwhile, or too slow: ask once without it.
      this.#options.log?.("debug", `ip -batch gave no answer toward ${destination}`);
      this.#stop();
      return await ipRouteGet(destination, this.#options.netns);
    }
    return undefined;
  }

  /** Reads lines up to the sentinel; undefined on end of output or timeout. */
  async #answer(): Promise<string | undefined> {
    const got: string[] = [];
    const deadline = Date.now() + (this.#options.timeoutMs ?? 2000);
    for (;;) {
      while (this.#lines.length > 0) {
        const line = this.#lines.shift()!;
        if (SENTINEL.test(line)) return got.join("\n");
        got.push(line);
      }
      if (this.#eof) return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wake = undefined;
    }
  }

  #spawn(): boolean {
    if (this.#missing || this.#closed) return false;
    const args = [
      ...(this.#options.netns ? ["-n", this.#options.netns] : []),
      "-o",
      "-force",
      "-batch",
      "-",
    ];
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command("ip", { args, stdin: "piped", stdout: "piped", stderr: "null" })
        .spawn();
    } catch (e) {
      this.#missing = true;
      this.#options.log?.("debug", `ip -batch unavailable: ${(e as Error).message}`);
      return false;
    }
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = [];
    this.#eof = false;
    void this.#read(child);
    return true;
  }

  async #read(child: Deno.ChildProcess): Promise<void> {
    let buffer = "";
    try {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        if (child !== this.#child) continue;
        buffer += chunk;
        const lines = buffer.split("\n");
        buffer = lines.pop() ?? "";
        this.#lines.push(...lines.filter((l) => l.trim() !== ""));
        this.#wake?.();
      }
    } catch { /* killed */ }
    if (child === this.#child) {
      this.#eof = true;
      this.#wake?.();
    }
  }

  /** Ends the current child (a new one starts at the next question). */
  #stop(): void {
    const child = this.#child;
    this.#eof = true;
    this.#child = undefined;
    this.#writer?.close().catch(() => {});
    this.#writer = undefined;
    try {
      child?.kill("SIGKILL");
    } catch { /* gone */ }
    void child?.status.catch(() => {});
    this.#wake?.();
  }

  /** Ends the child; later questions answer undefined. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const child = this.#child;
    this.#stop();
    await child?.status.catch(() => {});
    await this.#queue;
  }
}

/** The socket lookup, as {@linkcode KernelRoutes}. */
class SocketRoutes implements KernelRoutes {
  readonly method = "socket" as const;
  readonly lookup: RouteLookup;

  constructor(lookup: RouteLookup) {
    this.lookup = lookup;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The cheapest kernel route lookup available here: the connected-socket one
 * (Linux with `--allow-ffi`), else one `ip -batch` child (Linux), else
 * undefined.
 */
export function kernelRoutes(options: IpBatchRoutesOptions = {}): KernelRoutes | undefined {
  const socket = options.netns === undefined ? socketRouteLookup() : undefined;
  if (socket) return new SocketRoutes(socket);
  if (Deno.build.os === "linux") return new IpBatchRoutes(options);
  return undefined;
}
