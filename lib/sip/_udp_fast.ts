// Datagrams through libc for a busy UDP socket (Linux, --allow-ffi).
//
// Why: Deno takes one datagram per asynchronous receive op and sends one per
// asynchronous send op. Under a flood those ops were a third of the
// listener's CPU (a profile of `message --listen` under sipp: 12 % in
// op_net_recv_udp, 11 % in op_net_send_udp, against 62 % busy), most of it
// the op machinery around the system call, not the call.
//
// What: `recvmmsg`, `sendmmsg` and `sendto` on the socket Deno owns, with
// MSG_DONTWAIT, called synchronously. `UdpTransport` still waits for the
// socket with one Deno receive; after it wakes, it takes the datagrams that
// wait with `receiveMany` (several with one system call, in arrival order:
// nothing else reads the socket meanwhile), and its answers go out together
// with `flush` (one at once with `send`). Whatever this
// cannot do (no room in the send buffer, an address it does not parse, any
// error but a pending ICMP error) it reports, and the transport falls back to
// Deno's op, which waits or reports the error as usual.
//
// The struct layouts are those of 64-bit little-endian Linux, as in _icmp.ts.

import { openLibc } from "../_libc.ts";
import { findSocketFd, readSockaddr } from "./_icmp.ts";
import { isIPv4, normalizeHost } from "./_net.ts";
import type { HostPort } from "./transport.ts";

const SYMBOLS = {
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;
let libc: Libc | null | undefined;

const MSG_DONTWAIT = 0x40;
const AF_INET = 2;
const AF_INET6 = 10;
const EINTR = 4;
const EAGAIN = 11;
const ECONNREFUSED = 111;

/** `receiveMany` found no datagram waiting. */
export const NONE = -1;
/** `receiveMany`/`send` met the socket's pending ICMP error (read it from the error queue). */
export const REFUSED = -2;
/** `receiveMany`/`send` could not do it: let Deno's op do it (and report any error). */
export const FALLBACK = -3;

/** Synchronous receive and send on one UDP socket that Deno owns. */
export interface FastUdp {
  /**
   * Takes up to `max` (at most {@linkcode RECEIVE_SLOTS}) waiting datagrams
   * with one system call, without waiting, in arrival order: returns how
   * many (read them with `received` and `sender`; fewer than `max` means
   * none was left), or {@linkcode NONE}, {@linkcode REFUSED} or
   * {@linkcode FALLBACK}. They stay valid until the next call.
   */
  receiveMany(max: number): number;
  /** Datagram `i` of the last `receiveMany` (a view of this socket's buffer). */
  received(i: number): Uint8Array;
  /** The sender of datagram `i` of the last `receiveMany`. */
  sender(i: number): HostPort;
  /**
   * Sends one datagram without waiting: returns 0 when sent, else
   * {@linkcode REFUSED} or {@linkcode FALLBACK} (nothing was sent).
   */
  send(data: Uint8Array, to: HostPort): number;
  /**
   * Copies one datagram into the next slot of the batch that `flush` sends;
   * returns false (nothing queued) when the batch is full, the datagram
   * larger than a slot or its address one that `send` does not take either.
   */
  queue(data: Uint8Array, to: HostPort): boolean;
  /**
   * As `queue`, for a datagram given as text: encoded as UTF-8 straight into
   * the slot (no buffer of its own); false when its bytes do not fit a slot.
   */
  queueText(text: string, to: HostPort): boolean;
  /** Datagrams queued since the last `flush`. */
  readonly queued: number;
  /**
   * Sends the queued datagrams with one system call and empties the batch:
   * returns how many went out from the front (all of them, or those before
   * the first that failed), or {@linkcode REFUSED} or {@linkcode FALLBACK}
   * when the first failed. The caller sends those after the front itself.
   */
  flush(): number;
}

function libcHere(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (!["x86_64", "aarch64"].includes(Deno.build.arch)) return null;
  libc = openLibc(SYMBOLS);
  return libc;
}

const utf8 = new TextEncoder();

/** Datagrams taken by one `receiveMany`. */
export const RECEIVE_SLOTS = 8;
/** Room for one received datagram: the largest UDP payload. */
const RECEIVE_BYTES = 65_536;

/** Datagrams in one `flush`. */
const SLOTS = 64;
/** Room for one queued datagram (a 200 to a MESSAGE takes about 350 bytes). */
const SLOT_BYTES = 2048;
/** Room for a sockaddr_in6 in the batch (28 bytes, aligned). */
const NAME_BYTES = 32;

function pointer(buffer: ArrayBufferView): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer as BufferSource)));
}

/** The datagrams, sockaddrs, iovecs and mmsghdrs of `receiveMany`, and what it read. */
interface ReceiveBuffers {
  data: Uint8Array;
  names: Uint8Array;
  nameView: DataView;
  iov: BigUint64Array;
  headers: BigUint64Array;
  headerBytes: Uint8Array;
  headers32: Uint32Array;
  views: Uint8Array[];
  from: HostPort[];
}

/** At most this many remembered addresses each way (then the memory starts again). */
const MAX_ADDRESSES = 4096;

class Fast implements FastUdp {
  #lib: Libc;
  #fd: number;
  #v6: boolean;
  #errno: Deno.UnsafePointerView;
  /** IPv4 source (as a number, network order read big-endian) -> host string. */
  #v4Hosts = new Map<number, string>();
  /** Destination host -> its sockaddr (the port is written in at each send). */
  #addresses = new Map<string, Uint8Array | null>();

  /** The batch: datagrams, their sockaddrs, iovecs and mmsghdrs (see `flush`). */
  #out = new Uint8Array(SLOTS * SLOT_BYTES);
  /** Each slot of `#out`, as a view. */
  #slots = Array.from(
    { length: SLOTS },
    (_, i) => this.#out.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES),
  );
  #names = new Uint8Array(SLOTS * NAME_BYTES);
  #iov = new BigUint64Array(SLOTS * 2);
  #iov32 = new Uint32Array(this.#iov.buffer);
  #headers = new BigUint64Array(SLOTS * 8);
  #headerBytes = new Uint8Array(this.#headers.buffer);
  #headers32 = new Uint32Array(this.#headers.buffer);
  queued = 0;

  /** What `receiveMany` reads into. */
  #in?: ReceiveBuffers;

  constructor(lib: Libc, fd: number, v6: boolean) {
    this.#lib = lib;
    this.#fd = fd;
    this.#v6 = v6;
    this.#errno = new Deno.UnsafePointerView(lib.symbols.__errno_location()!);
    // What does not change from one batch to the next: where slot i's
    // bytes, sockaddr and iovec are. struct iovec: base, length; struct
    // mmsghdr: msghdr (name, namelen, iov, iovlen, control, controllen,
    // flags) and msg_len, 64 bytes.
    const out = pointer(this.#out), names = pointer(this.#names), iov = pointer(this.#iov);
    for (let i = 0; i < SLOTS; i++) {
      this.#iov[2 * i] = out + BigInt(i * SLOT_BYTES);
      this.#headers[8 * i] = names + BigInt(i * NAME_BYTES);
      this.#headers[8 * i + 2] = iov + BigInt(16 * i);
      this.#headers[8 * i + 3] = 1n;
    }
  }

  queue(data: Uint8Array, to: HostPort): boolean {
    const i = this.queued;
    if (i === SLOTS || data.length > SLOT_BYTES) return false;
    const address = this.#address(to.host);
    if (!address) return false;
    this.#out.set(data, i * SLOT_BYTES);
    this.#commit(i, data.length, address, to.port);
    return true;
  }

  queueText(text: string, to: HostPort): boolean {
    const i = this.queued;
    // A character takes at most 3 bytes (a surrogate pair 4, for 2 of them).
    if (i === SLOTS || text.length > SLOT_BYTES) return false;
    const address = this.#address(to.host);
    if (!address) return false;
    const slot = this.#slots[i];
    let written: number;
    if (text.length * 3 <= SLOT_BYTES) {
      written = utf8.encodeInto(text, slot).written;
    } else {
      const r = utf8.encodeInto(text, slot);
      if (r.read < text.length) return false;
      written = r.written;
    }
    this.#commit(i, written, address, to.port);
    return true;
  }

  /** Takes slot `i`, whose bytes are in place, into the batch. */
  #commit(i: number, length: number, address: Uint8Array, port: number): void {
    address[2] = port >> 8;
    address[3] = port & 255;
    this.#names.set(address, i * NAME_BYTES);
    this.#iov32[4 * i + 2] = length;
    this.#headers32[16 * i + 2] = address.length;
    this.queued = i + 1;
  }

  flush(): number {
    const count = this.queued;
    this.queued = 0;
    if (count === 0) return 0;
    for (;;) {
      const n = this.#lib.symbols.sendmmsg(this.#fd, this.#headerBytes, count, MSG_DONTWAIT);
      if (n >= 0) return n;
      const errno = this.#errno.getInt32(0);
      if (errno === EINTR) continue;
      return errno === ECONNREFUSED ? REFUSED : FALLBACK;
    }
  }

  receiveMany(max: number): number {
    const input = this.#in ??= this.#receiveBuffers();
    const count = Math.min(max, RECEIVE_SLOTS);
    const h32 = input.headers32;
    // The kernel writes each sender's address length over the room given.
    for (let i = 0; i < count; i++) h32[16 * i + 2] = NAME_BYTES;
    for (;;) {
      const n = this.#lib.symbols.recvmmsg(this.#fd, input.headerBytes, count, MSG_DONTWAIT, null);
      if (n < 0) {
        const errno = this.#errno.getInt32(0);
        if (errno === EINTR) continue;
        if (errno === EAGAIN) return NONE;
        return errno === ECONNREFUSED ? REFUSED : FALLBACK;
      }
      for (let i = 0; i < n; i++) {
        const from = this.#sourceAt(input.nameView, i * NAME_BYTES, h32[16 * i + 2]);
        // Not an IP source: cannot happen on a UDP socket; read as nobody's.
        input.from[i] = from ?? { host: "", port: 0 };
        input.views[i] = input.data.subarray(
          i * RECEIVE_BYTES,
          i * RECEIVE_BYTES + h32[16 * i + 14],
        );
      }
      return n;
    }
  }

  received(i: number): Uint8Array {
    return this.#in!.views[i];
  }

  sender(i: number): HostPort {
    return this.#in!.from[i];
  }

  /** The buffers of `receiveMany`, made on first use (a sender never needs them). */
  #receiveBuffers(): ReceiveBuffers {
    const data = new Uint8Array(RECEIVE_SLOTS * RECEIVE_BYTES);
    const names = new Uint8Array(RECEIVE_SLOTS * NAME_BYTES);
    const iov = new BigUint64Array(RECEIVE_SLOTS * 2);
    const headers = new BigUint64Array(RECEIVE_SLOTS * 8);
    const base = pointer(data), nameBase = pointer(names), iovBase = pointer(iov);
    for (let i = 0; i < RECEIVE_SLOTS; i++) {
      iov[2 * i] = base + BigInt(i * RECEIVE_BYTES);
      iov[2 * i + 1] = BigInt(RECEIVE_BYTES);
      headers[8 * i] = nameBase + BigInt(i * NAME_BYTES);
      headers[8 * i + 2] = iovBase + BigInt(16 * i);
      headers[8 * i + 3] = 1n;
    }
    return {
      data,
      names,
      nameView: new DataView(names.buffer),
      iov,
      headers,
      headerBytes: new Uint8Array(headers.buffer),
      headers32: new Uint32Array(headers.buffer),
      views: [],
      from: [],
    };
  }

  send(data: Uint8Array, to: HostPort): number {
    const address = this.#address(to.host);
    if (!address) return FALLBACK;
    address[2] = to.port >> 8;
    address[3] = to.port & 255;
    for (;;) {
      const n = Number(
        this.#lib.symbols.sendto(
          this.#fd,
          data,
          BigInt(data.length),
          MSG_DONTWAIT,
          address,
          address.length,
        ),
      );
      if (n >= 0) return 0;
      const errno = this.#errno.getInt32(0);
      if (errno === EINTR) continue;
      return errno === ECONNREFUSED ? REFUSED : FALLBACK;
    }
  }

  /** The address in the sockaddr at `at` in `view`, `length` bytes long. */
  #sourceAt(view: DataView, at: number, length: number): HostPort | undefined {
    const family = view.getUint16(at, true);
    const port = view.getUint16(at + 2, false);
    if (family === AF_INET) {
      return { host: this.#v4Host(view.getUint32(at + 4, false)), port };
    }
    // An IPv4-mapped IPv6 source (a dual-stack socket) reads as IPv4.
    if (
      family === AF_INET6 && view.getUint32(at + 8, false) === 0 &&
      view.getUint32(at + 12, false) === 0 && view.getUint32(at + 16, false) === 0xffff
    ) {
      return { host: this.#v4Host(view.getUint32(at + 20, false)), port };
    }
    return readSockaddr(new DataView(view.buffer, view.byteOffset + at, NAME_BYTES), length);
  }

  #v4Host(address: number): string {
    let host = this.#v4Hosts.get(address);
    if (host === undefined) {
      host = `${address >>> 24}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${
        address & 255
      }`;
      if (this.#v4Hosts.size >= MAX_ADDRESSES) this.#v4Hosts.clear();
      this.#v4Hosts.set(address, host);
    }
    return host;
  }

  /** The sockaddr for `host` (null when this does not handle it). */
  #address(host: string): Uint8Array | null {
    let address = this.#addresses.get(host);
    if (address === undefined) {
      address = sockaddr(normalizeHost(host), this.#v6);
      if (this.#addresses.size >= MAX_ADDRESSES) this.#addresses.clear();
      this.#addresses.set(host, address);
    }
    return address;
  }
}

/**
 * The sockaddr (port 0) of an IP literal for a socket of the given family: a
 * sockaddr_in, or a sockaddr_in6 (an IPv4 address mapped into IPv6 on an
 * IPv6 socket). Null for anything else (a name, an IPv6 address with a zone,
 * IPv6 on an IPv4 socket): Deno's send handles or refuses those.
 */
export function sockaddr(host: string, v6Socket: boolean): Uint8Array | null {
  if (isIPv4(host)) {
    const parts = host.split(".").map(Number);
    if (parts.some((p) => p > 255)) return null;
    if (!v6Socket) {
      const out = new Uint8Array(16);
      out[0] = AF_INET;
      out.set(parts, 4);
      return out;
    }
    const out = new Uint8Array(28);
    out[0] = AF_INET6;
    out[18] = 0xff;
    out[19] = 0xff;
    out.set(parts, 20);
    return out;
  }
  if (!v6Socket) return null;
  const groups = parseIPv6(host);
  if (!groups) return null;
  const out = new Uint8Array(28);
  out[0] = AF_INET6;
  for (let i = 0; i < 8; i++) {
    out[8 + 2 * i] = groups[i] >> 8;
    out[9 + 2 * i] = groups[i] & 255;
  }
  return out;
}

/** The eight groups of an IPv6 literal (with "::", and an IPv4 tail), or null. */
export function parseIPv6(host: string): number[] | null {
  if (!/^[0-9a-f:.]+$/i.test(host)) return null;
  const halves = host.split("::");
  if (halves.length > 2) return null;
  const read = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const pieces = part.split(":");
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i];
      if (i === pieces.length - 1 && piece.includes(".")) {
        if (!isIPv4(piece)) return null;
        const b = piece.split(".").map(Number);
        if (b.some((x) => x > 255)) return null;
        out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(piece)) return null;
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const head = read(halves[0]);
  const tail = halves.length === 2 ? read(halves[1]) : [];
  if (!head || !tail) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  if (head.length + tail.length > 7) return null;
  return [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
}

/**
 * Synchronous receive and send for the UDP socket bound to `local` in this
 * process, or undefined when that cannot be done (not Linux on x86_64 or
 * aarch64, no --allow-ffi or read access to /proc/self, socket not found).
 */
export function openFastUdp(local: HostPort): FastUdp | undefined {
  const lib = libcHere();
  if (!lib) return undefined;
  try {
    const fd = findSocketFd(lib, local);
    if (fd === undefined) return undefined;
    return new Fast(lib, fd, normalizeHost(local.host).includes(":"));
  } catch {
    return undefined;
  }
}
