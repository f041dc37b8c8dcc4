// ICMP errors for UDP sockets (RFC 3261 18.4, RFC 3263 4.3), Linux only.
//
// Why this file exists: an ICMP port unreachable in answer to a datagram
// tells the sender at once that nobody listens, but the kernel hides it from
// an unconnected UDP socket, and Deno offers no way to connect one or set its
// options: `Deno.listenDatagram` has no connect(), and `node:dgram`'s
// connect() only remembers the peer (the socket stays unconnected, as `ss`
// shows). So a dead UDP server cost timer F (32 s).
//
// What it does: it finds the file descriptor behind the Deno socket (the
// socket inode of /proc/self/fd/N matched with the bound port in
// /proc/self/net/udp or udp6) and turns on IP_RECVERR (and IPV6_RECVERR) with
// libc's setsockopt through FFI. From then on the kernel queues every ICMP
// error with the destination it concerns on the socket's error queue, and
// the socket's next send (or receive) fails with ECONNREFUSED, as on a
// connected socket. `drain()` reads that queue (recvmsg with MSG_ERRQUEUE),
// which also clears the pending error. The socket itself stays Deno's: the
// same port sends requests and responses, so Via, rport and symmetric
// signalling are unchanged.
//
// Needs --allow-ffi and read access to /proc/self; without them, or on
// another system, `watchIcmpErrors` returns undefined and UDP works as before.
//
// The same way, `enlargeReceiveBuffer` sizes the socket's receive buffer
// (SO_RCVBUF, which Deno does not offer either): a listener that pauses
// (garbage collection, a burst of work) then finds the datagrams that came
// meanwhile queued, instead of dropped by the kernel and retransmitted by
// their senders 500 ms later.

import { openLibc } from "../_libc.ts";
import { normalizeHost } from "./_net.ts";
import type { HostPort } from "./transport.ts";

/** One ICMP error the kernel reported for a datagram we sent. */
export interface IcmpError {
  /** Where the datagram that caused it was going. */
  to: HostPort;
  /** The errno the kernel derived (111 ECONNREFUSED for port unreachable). */
  errno: number;
  /** True for "nobody listens there" (port/protocol unreachable, administratively prohibited). */
  refused: boolean;
}

/** The ICMP error queue of one UDP socket. */
export interface IcmpErrorQueue {
  /** Reads and clears every queued error (never blocks). */
  drain(): IcmpError[];
}

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SO_TYPE = 3;
const SOCK_DGRAM = 2;
const SOL_IP = 0;
const SOL_IPV6 = 41;
const IP_RECVERR = 11;
const IPV6_RECVERR = 25;
const MSG_DONTWAIT = 0x40;
const MSG_ERRQUEUE = 0x2000;
const SO_EE_ORIGIN_ICMP = 2;
const SO_EE_ORIGIN_ICMP6 = 3;
const AF_INET = 2;
const AF_INET6 = 10;

const SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;
let libc: Libc | null | undefined;

function libcHere(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  // The struct layouts below are those of 64-bit little-endian Linux.
  if (!["x86_64", "aarch64"].includes(Deno.build.arch)) return null;
  try {
    if (Deno.permissions.querySync({ name: "read", path: "/proc/self" }).state !== "granted") {
      return null;
    }
  } catch {
    return null;
  }
  libc = openLibc(SYMBOLS);
  return libc;
}

/** The two libc calls that tell which socket an fd is. */
interface SocketCalls {
  symbols: {
    getsockopt(
      fd: number,
      level: number,
      name: number,
      value: Uint8Array,
      length: Uint8Array,
    ): number;
    getsockname(fd: number, name: Uint8Array, length: Uint8Array): number;
  };
}

/**
 * The fd of this process's UDP socket bound to exactly `local` (address and
 * port, as getsockname says: two sockets may share a port on different
 * addresses, e.g. while a move re-binds on the same port), or undefined.
 */
export function findSocketFd(lib: SocketCalls, local: HostPort): number | undefined {
  const want = normalizeHost(local.host);
  const name = new Uint8Array(28);
  const nameLength = new Uint32Array(1);
  const type = new Int32Array(1);
  const typeLength = new Uint32Array(1);
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    let link: string;
    try {
      link = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
    } catch {
      continue; // closed meanwhile
    }
    if (!link.startsWith("socket:")) continue;
    const fd = Number(entry.name);
    typeLength[0] = 4;
    const typeBytes = new Uint8Array(type.buffer);
    const typeLengthBytes = new Uint8Array(typeLength.buffer);
    if (lib.symbols.getsockopt(fd, SOL_SOCKET, SO_TYPE, typeBytes, typeLengthBytes) !== 0) continue;
    if (type[0] !== SOCK_DGRAM) continue;
    nameLength[0] = name.length;
    if (lib.symbols.getsockname(fd, name, new Uint8Array(nameLength.buffer)) !== 0) continue;
    const bound = readSockaddr(new DataView(name.buffer), nameLength[0]);
    if (bound && bound.port === local.port && normalizeHost(bound.host) === want) return fd;
  }
  return undefined;
}

function pointer(buffer: ArrayBufferView): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer as BufferSource)));
}

/** RFC 792 and RFC 4443: the ICMP errors that mean nobody takes datagrams there. */
function isRefusal(origin: number, type: number, code: number): boolean {
  // ICMPv4 destination unreachable (3): protocol (2), port (3), prohibited (9, 10, 13).
  if (origin === SO_EE_ORIGIN_ICMP) return type === 3 && [2, 3, 9, 10, 13].includes(code);
  // ICMPv6 destination unreachable (1): administratively prohibited (1), port (4).
  if (origin === SO_EE_ORIGIN_ICMP6) return type === 1 && (code === 1 || code === 4);
  return false;
}

/** The host and port of a sockaddr_in or sockaddr_in6 of `length` bytes. */
export function readSockaddr(view: DataView, length: number): HostPort | undefined {
  if (length < 8) return undefined;
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === AF_INET) {
    return { host: [4, 5, 6, 7].map((i) => view.getUint8(i)).join("."), port };
  }
  if (family === AF_INET6 && length >= 24) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(view.getUint16(8 + 2 * i, false).toString(16));
    // normalizeHost unmaps ::ffff:a.b.c.d; write the tail as IPv4 for that.
    if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
      const v4 = [16, 17, 18, 19].map((i) => view.getUint8(4 + i)).join(".");
      return { host: v4, port };
    }
    return { host: normalizeHost(compressV6(groups)), port };
  }
  return undefined;
}

function compressV6(groups: string[]): string {
  // The longest run of zero groups becomes "::".
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (bestLen < 2) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

class ErrorQueue implements IcmpErrorQueue {
  #libc: Libc;
  #fd: number;
  #name = new Uint8Array(128);
  #control = new Uint8Array(512);
  #data = new Uint8Array(64);
  #iov = new BigUint64Array(2);
  #msg = new BigUint64Array(7);

  constructor(lib: Libc, fd: number) {
    this.#libc = lib;
    this.#fd = fd;
    this.#iov[0] = pointer(this.#data);
    this.#iov[1] = BigInt(this.#data.length);
  }

  drain(): IcmpError[] {
    const out: IcmpError[] = [];
    // Bounded: the kernel limits the queue by the receive buffer anyway.
    for (let i = 0; i < 256; i++) {
      // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
      const msg = this.#msg;
      msg[0] = pointer(this.#name);
      msg[1] = BigInt(this.#name.length);
      msg[2] = pointer(this.#iov);
      msg[3] = 1n;
      msg[4] = pointer(this.#control);
      msg[5] = BigInt(this.#control.length);
      msg[6] = 0n;
      const n = this.#libc.symbols.recvmsg(
        this.#fd,
        new Uint8Array(msg.buffer),
        MSG_ERRQUEUE | MSG_DONTWAIT,
      );
      if (n < 0) break; // EAGAIN: the queue is empty
      const to = readSockaddr(new DataView(this.#name.buffer), Number(msg[1] & 0xffffffffn));
      const controlLength = Number(msg[5]);
      const control = new DataView(this.#control.buffer);
      // struct cmsghdr: len (size_t), level, type; then struct sock_extended_err.
      for (let off = 0; off + 16 <= controlLength;) {
        const len = Number(control.getBigUint64(off, true));
        const level = control.getInt32(off + 8, true);
        const type = control.getInt32(off + 12, true);
        if (len < 16) break;
        const isErr = (level === SOL_IP && type === IP_RECVERR) ||
          (level === SOL_IPV6 && type === IPV6_RECVERR);
        if (isErr && to && len >= 16 + 8) {
          const errno = control.getUint32(off + 16, true);
          const origin = control.getUint8(off + 20);
          const icmpType = control.getUint8(off + 21);
          const icmpCode = control.getUint8(off + 22);
          out.push({ to, errno, refused: isRefusal(origin, icmpType, icmpCode) });
        }
        off += (len + 7) & ~7;
      }
    }
    return out;
  }
}

/**
 * Turns on ICMP error reporting for the UDP socket bound to `local` in this
 * process. Returns its error queue, or undefined when that cannot be done
 * (not Linux, no --allow-ffi, socket not found): UDP then works as before
 * and a dead server costs timer F.
 */
export function watchIcmpErrors(local: HostPort): IcmpErrorQueue | undefined {
  const lib = libcHere();
  if (!lib) return undefined;
  try {
    const v6 = normalizeHost(local.host).includes(":");
    const fd = findSocketFd(lib, local);
    if (fd === undefined) return undefined;
    const on = new Uint8Array(new Int32Array([1]).buffer);
    // IP_RECVERR also covers IPv4 traffic of a dual-stack IPv6 socket.
    if (lib.symbols.setsockopt(fd, SOL_IP, IP_RECVERR, on, 4) !== 0 && !v6) return undefined;
    if (v6 && lib.symbols.setsockopt(fd, SOL_IPV6, IPV6_RECVERR, on, 4) !== 0) return undefined;
    return new ErrorQueue(lib, fd);
  } catch {
    return undefined;
  }
}

/**
 * Asks for a receive buffer of `bytes` on the UDP socket bound to `local` in
 * this process: SO_RCVBUFFORCE where the process may (CAP_NET_ADMIN, e.g.
 * root), else SO_RCVBUF, which the kernel caps at net.core.rmem_max. Returns
 * the size the kernel reports afterwards (it counts its own overhead, so
 * about twice what was granted), or undefined when that cannot be done (not
 * Linux, no --allow-ffi, socket not found).
 */
export function enlargeReceiveBuffer(local: HostPort, bytes: number): number | undefined {
  const lib = libcHere();
  if (!lib) return undefined;
  try {
    const fd = findSocketFd(lib, local);
    if (fd === undefined) return undefined;
    const size = new Uint8Array(new Int32Array([bytes]).buffer);
    if (lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) !== 0) {
      lib.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
    }
    const got = new Int32Array([0]);
    const length = new Uint32Array([4]);
    const ok = lib.symbols.getsockopt(
      fd,
      SOL_SOCKET,
      SO_RCVBUF,
      new Uint8Array(got.buffer),
      new Uint8Array(length.buffer),
    );
    return ok === 0 ? got[0] : undefined;
  } catch {
    return undefined;
  }
}
