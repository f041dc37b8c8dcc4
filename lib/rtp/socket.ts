/**
 * The datagram sockets media runs on, behind a small interface: real UDP
 * (`Deno.listenDatagram`, needs `--unstable-net`, set in deno.json) and an
 * in-memory network for unit tests, with loss and address rewriting (a NAT)
 * on demand.
 *
 * @module
 */

import type { MediaClock } from "./clock.ts";
import type { MediaAddress } from "./sdp.ts";

/** A bound datagram socket. */
export interface DatagramSocket {
  /** The bound address. */
  readonly localAddress: MediaAddress;
  /** Sends `data` to `to`; errors (unreachable, closed) are swallowed. */
  send(data: Uint8Array, to: MediaAddress): void;
  /** Sets the receive callback (one per socket). */
  onMessage(handler: (data: Uint8Array, from: MediaAddress) => void): void;
  /** Closes the socket; no callback after. */
  close(): void;
}

/** Opens sockets. */
export interface DatagramNetwork {
  /** Binds `hostname:port` (port 0: any). Throws when taken. */
  bind(hostname: string, port: number): DatagramSocket | Promise<DatagramSocket>;
}

class UdpSocket implements DatagramSocket {
  readonly localAddress: MediaAddress;
  #conn: Deno.DatagramConn;
  #handler: ((data: Uint8Array, from: MediaAddress) => void) | undefined;
  #closed = false;

  constructor(conn: Deno.DatagramConn) {
    this.#conn = conn;
    const addr = conn.addr as Deno.NetAddr;
    this.localAddress = { hostname: addr.hostname, port: addr.port };
    this.#loop();
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      let received: [Uint8Array, Deno.Addr];
      try {
        received = await this.#conn.receive();
      } catch {
        if (this.#closed) return;
        continue; // ICMP port unreachable surfaces as a receive error on Linux
      }
      const [data, addr] = received;
      const from = addr as Deno.NetAddr;
      try {
        // On a dual-stack socket (bound to ::) an IPv4 peer shows as
        // ::ffff:a.b.c.d; name it as its SDP does, a.b.c.d.
        const hostname = from.hostname.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, "$1");
        this.#handler?.(data, { hostname, port: from.port });
      } catch (error) {
        console.error(`sipkit: media packet handler failed: ${(error as Error).message}`);
      }
    }
  }

  send(data: Uint8Array, to: MediaAddress): void {
    if (this.#closed) return;
    this.#conn.send(data, { transport: "udp", hostname: to.hostname, port: to.port }).catch(
      () => {},
    );
  }

  onMessage(handler: (data: Uint8Array, from: MediaAddress) => void): void {
    this.#handler = handler;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** Real UDP sockets. */
export const udpNetwork: DatagramNetwork = {
  bind(hostname: string, port: number): DatagramSocket {
    const conn = Deno.listenDatagram({ transport: "udp", hostname, port });
    return new UdpSocket(conn);
  },
};

/** Options of {@linkcode MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /** Called for every datagram; return false to drop it (loss injection). */
  filter?: (data: Uint8Array, from: MediaAddress, to: MediaAddress) => boolean;
  /** With `delayMs`, datagrams are delivered on this clock's timers. */
  clock?: MediaClock;
  /** One-way delay in ms (needs `clock`; default 0: delivery on a microtask). */
  delayMs?: number;
}

/**
 * An in-memory datagram network for tests: delivery on a microtask, in order.
 * {@linkcode MemoryNetwork.nat} makes one address appear as another to the
 * receivers (to test symmetric RTP latching).
 *
 * @example
 * ```ts
 * import { MemoryNetwork } from "./socket.ts";
 * import assert from "node:assert/strict";
 * const net = new MemoryNetwork();
 * const a = net.bind("10.0.0.1", 0);
 * const b = net.bind("10.0.0.2", 4000);
 * const got: string[] = [];
 * b.onMessage((data, from) => got.push(`${data[0]} from ${from.hostname}:${from.port}`));
 * a.send(new Uint8Array([7]), { hostname: "10.0.0.2", port: 4000 });
 * await net.settle();
 * assert.deepEqual(got, [`7 from 10.0.0.1:${a.localAddress.port}`]);
 * ```
 */
export class MemoryNetwork implements DatagramNetwork {
  #sockets = new Map<string, MemorySocket>();
  #nextPort = 20000;
  #nat = new Map<string, MediaAddress>();
  #pending = 0;
  /** Datagrams sent, for assertions. */
  readonly sent: { data: Uint8Array; from: MediaAddress; to: MediaAddress }[] = [];
  /** The loss filter (settable). */
  filter: MemoryNetworkOptions["filter"];

  /** An empty network. */
  constructor(options: MemoryNetworkOptions = {}) {
    this.filter = options.filter;
    this.#clock = options.clock;
    this.#delay = options.delayMs ?? 0;
  }

  #clock: MediaClock | undefined;
  #delay: number;

  /** Binds `hostname:port` (0: the next free port, even numbers first). */
  bind(hostname: string, port: number): DatagramSocket {
    let p = port;
    if (p === 0) {
      while (this.#sockets.has(`${hostname}|${this.#nextPort}`)) this.#nextPort++;
      p = this.#nextPort++;
    }
    const key = `${hostname}|${p}`;
    if (this.#sockets.has(key)) throw new Deno.errors.AddrInUse(`${hostname}:${p} is in use`);
    const socket = new MemorySocket(this, { hostname, port: p }, () => this.#sockets.delete(key));
    this.#sockets.set(key, socket);
    return socket;
  }

  /** Makes datagrams from `inside` arrive as if sent from `outside`. */
  nat(inside: MediaAddress, outside: MediaAddress): void {
    this.#nat.set(`${inside.hostname}|${inside.port}`, outside);
  }

  /** Resolves once every datagram in flight was delivered. */
  async settle(): Promise<void> {
    for (let i = 0; i < 1000 && this.#pending > 0; i++) await Promise.resolve();
    await new Promise((r) => setTimeout(r, 0));
  }

  /** @internal */
  deliver(data: Uint8Array, from: MediaAddress, to: MediaAddress): void {
    const seen = this.#nat.get(`${from.hostname}|${from.port}`) ?? from;
    this.sent.push({ data, from: seen, to });
    if (this.filter && !this.filter(data, seen, to)) return;
    const target = this.#sockets.get(`${to.hostname}|${to.port}`);
    if (!target) return;
    if (this.#clock && this.#delay > 0) {
      const copy = data.slice();
      this.#clock.setTimeout(() => target.receive(copy, seen), this.#delay);
      return;
    }
    this.#pending++;
    queueMicrotask(() => {
      this.#pending--;
      target.receive(data.slice(), seen);
    });
  }
}

class MemorySocket implements DatagramSocket {
  #handler: ((data: Uint8Array, from: MediaAddress) => void) | undefined;
  #closed = false;

  constructor(
    readonly network: MemoryNetwork,
    readonly localAddress: MediaAddress,
    readonly onClose: () => void,
  ) {}

  send(data: Uint8Array, to: MediaAddress): void {
    if (!this.#closed) this.network.deliver(data, this.localAddress, to);
  }

  onMessage(handler: (data: Uint8Array, from: MediaAddress) => void): void {
    this.#handler = handler;
  }

  receive(data: Uint8Array, from: MediaAddress): void {
    if (!this.#closed) this.#handler?.(data, from);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose();
  }
}

/**
 * Binds an RTP socket on an even port and RTCP on the next one (RFC 3550
 * section 11). With `port` 0, tries free pairs until one fits.
 */
export async function bindPair(
  network: DatagramNetwork,
  hostname: string,
  port = 0,
): Promise<{ rtp: DatagramSocket; rtcp: DatagramSocket }> {
  if (port !== 0) {
    const rtp = await network.bind(hostname, port);
    try {
      return { rtp, rtcp: await network.bind(hostname, port + 1) };
    } catch (error) {
      rtp.close();
      throw error;
    }
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 100; attempt++) {
    const probe = await network.bind(hostname, 0);
    const p = probe.localAddress.port;
    if (p % 2 === 0 && p < 65535) {
      try {
        const rtcp = await network.bind(hostname, p + 1);
        return { rtp: probe, rtcp };
      } catch (error) {
        lastError = error;
      }
    } else if (p > 1024 && p % 2 === 1) {
      // Odd: try the even port just below it.
      try {
        const rtp = await network.bind(hostname, p - 1);
        probe.close();
        try {
          return { rtp, rtcp: await network.bind(hostname, p) };
        } catch (error) {
          rtp.close();
          lastError = error;
        }
      } catch (error) {
        lastError = error;
      }
    }
    probe.close();
  }
  throw new Error(
    `Cannot bind an RTP/RTCP port pair on ${hostname}: ${(lastError as Error)?.message}`,
  );
}
