/**
 * An in-memory network for deterministic tests of the layers above the
 * transports (the pjsip "loop transport" idea). Several
 * {@linkcode LoopTransport}s with made-up addresses attach to one
 * {@linkcode LoopNetwork}; a send is delivered asynchronously (next
 * microtask, or after a delay on a {@linkcode Clock}) to the transport bound
 * to the destination. Loss, duplication and reordering can be injected,
 * deterministically or from a seeded PRNG, and every packet is recorded.
 *
 * @module
 */

import type { Clock } from "./clock.ts";
import { ConnectError } from "./errors.ts";
import { hostPortKey, normalizeHost } from "./_net.ts";
import type { HostPort, InboundHandler, Transport, TransportProtocol } from "./transport.ts";

/** Faults applied to packets sent by unreliable (UDP-like) loop transports. */
export interface LoopFaults {
  /** Drops every Nth unreliable packet (1 drops all). 0 or absent: none. */
  dropEvery?: number;
  /** Drops each unreliable packet with this probability (seeded PRNG). Default 0. */
  dropRate?: number;
  /** Delivers every Nth unreliable packet twice. */
  duplicateEvery?: number;
  /** Delivers each unreliable packet twice with this probability. Default 0. */
  duplicateRate?: number;
  /** Holds every Nth unreliable packet back and delivers it after the next one. */
  reorderEvery?: number;
  /** Seed of the PRNG behind the rates. Default 1. */
  seed?: number;
  /**
   * Drops an unreliable packet when this returns true (targeted loss in
   * tests: the first ACK, every 2xx...). It sees the packet before delivery.
   */
  drop?: (packet: Readonly<LoopPacket>) => boolean;
}

/** Options of {@linkcode LoopNetwork}. */
export interface LoopNetworkOptions extends LoopFaults {
  /** With `delay`, deliveries are scheduled on this clock. */
  clock?: Clock;
  /** Delivery delay in milliseconds on `clock`. Default: next microtask, no clock needed. */
  delay?: number;
  /**
   * An unreliable packet to an address where nothing is bound is answered
   * with ICMP port unreachable: the sender's next send to that address
   * rejects with `Deno.errors.ConnectionRefused`, once, as a real
   * `UdpTransport` does on Linux (RFC 3261 18.4). Default false: such
   * packets vanish silently.
   */
  icmp?: boolean;
}

/** What happened to a recorded packet. */
export type LoopFate = "delivered" | "dropped" | "duplicated" | "reordered" | "unreachable";

/** One packet sent on a {@linkcode LoopNetwork}. */
export interface LoopPacket {
  /** 1-based send order. */
  seq: number;
  /** Protocol of the sending transport. */
  protocol: TransportProtocol;
  /** Sender address. */
  from: HostPort;
  /** Destination address. */
  to: HostPort;
  /** The bytes. */
  data: Uint8Array;
  /** Its fate. */
  fate: LoopFate;
}

/** Options of {@linkcode LoopNetwork.transport}. */
export interface LoopTransportOptions {
  /** Made-up host, e.g. "192.0.2.10" or "alice.test". */
  host: string;
  /** Port. Default 5060. */
  port?: number;
  /** Protocol name it poses as. Default "udp". */
  protocol?: TransportProtocol;
  /** Reliable (no faults, refused when nobody listens). Default: true unless protocol is "udp". */
  reliable?: boolean;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The in-memory network.
 *
 * @example
 * ```ts
 * import { LoopNetwork } from "./transport_loop.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork({ dropEvery: 2 });
 * const a = net.transport({ host: "192.0.2.1" });
 * const b = net.transport({ host: "192.0.2.2" });
 * const got: string[] = [];
 * b.onMessage((m) => got.push(new TextDecoder().decode(m.data)));
 * for (const text of ["one", "two", "three"]) await a.send(new TextEncoder().encode(text), b.local);
 * await net.settled();
 * assert.deepEqual(got, ["one", "three"]);
 * assert.deepEqual(net.packets.map((p) => p.fate), ["delivered", "dropped", "delivered"]);
 * ```
 */
export class LoopNetwork {
  /** Every packet sent, in order. */
  readonly packets: LoopPacket[] = [];
  #faults: LoopFaults;
  #random: () => number;
  #clock?: Clock;
  #delay: number;
  #icmp: boolean;
  #transports = new Map<string, LoopTransport>();
  #unreliableCount = 0;
  #held?: () => void;
  #pending = 0;
  #waiters: (() => void)[] = [];

  /** Creates a network with optional faults and delay. */
  constructor(options: LoopNetworkOptions = {}) {
    this.#faults = { ...options };
    this.#random = mulberry32(options.seed ?? 1);
    this.#clock = options.clock;
    this.#delay = options.delay ?? 0;
    this.#icmp = options.icmp ?? false;
    if (this.#delay > 0 && !this.#clock) {
      throw new TypeError("Cannot delay loop deliveries without a clock");
    }
  }

  /** Replaces the fault settings (the PRNG is re-seeded when `seed` is given). */
  setFaults(faults: LoopFaults): void {
    this.#faults = { ...faults };
    if (faults.seed !== undefined) this.#random = mulberry32(faults.seed);
  }

  /**
   * Moves a transport to a new address (mobility tests): from now on it
   * sends from `host:port` and receives what is sent there; packets sent to
   * its old address are unreachable. Throws when the new address is taken.
   */
  move(transport: LoopTransport, host: string, port = transport.local.port): void {
    this._detach(transport);
    const old = transport.local;
    transport._setLocal({ host: normalizeHost(host), port });
    try {
      this._attach(transport);
    } catch (e) {
      transport._setLocal(old);
      this._attach(transport);
      throw e;
    }
  }

  /** Creates a transport bound to `host:port` on this network. Throws when the address is taken. */
  transport(options: LoopTransportOptions): LoopTransport {
    return new LoopTransport(this, options);
  }

  /** Deliveries scheduled and not yet made (a held, reordered packet counts). */
  get pending(): number {
    return this.#pending;
  }

  /** Delivers a packet held back for reordering now. */
  flush(): void {
    const held = this.#held;
    this.#held = undefined;
    held?.();
  }

  /**
   * Resolves once no delivery is pending, including deliveries caused by
   * handlers in the meantime. Releases a held packet first. In delay mode the
   * clock must be advanced for this to resolve.
   */
  async settled(): Promise<void> {
    for (;;) {
      this.flush();
      if (this.#pending === 0) {
        // Give handlers that send after an await a chance to do so.
        for (let i = 0; i < 20 && this.#pending === 0; i++) await Promise.resolve();
        if (this.#pending === 0 && !this.#held) return;
        continue;
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** @internal Binds a transport. */
  _attach(transport: LoopTransport): void {
    const k = `${transport.protocol}|${hostPortKey(transport.local)}`;
    if (this.#transports.has(k)) {
      throw new Error(
        `Cannot bind loop transport: ${transport.protocol} ${
          k.split("|").slice(1).join(":")
        } is in use`,
      );
    }
    this.#transports.set(k, transport);
  }

  /** @internal Unbinds a transport. */
  _detach(transport: LoopTransport): void {
    const k = `${transport.protocol}|${hostPortKey(transport.local)}`;
    if (this.#transports.get(k) === transport) this.#transports.delete(k);
  }

  /** @internal Sends a packet from `from`. */
  _send(from: LoopTransport, data: Uint8Array, to: HostPort): void {
    const target = this.#transports.get(`${from.protocol}|${hostPortKey(to)}`);
    const packet: LoopPacket = {
      seq: this.packets.length + 1,
      protocol: from.protocol,
      from: { ...from.local },
      to: { host: normalizeHost(to.host), port: to.port },
      data: data.slice(),
      fate: "delivered",
    };
    this.packets.push(packet);
    if (!target) {
      packet.fate = "unreachable";
      if (from.reliable) {
        throw new ConnectError(
          "refused",
          `Cannot connect over ${from.protocol} to ${packet.to.host}:${to.port}: connection refused`,
        );
      }
      if (this.#icmp) from._refuse(to);
      return;
    }
    let copies = 1;
    let hold = false;
    if (!from.reliable) {
      const n = ++this.#unreliableCount;
      const f = this.#faults;
      if (
        (f.dropEvery && n % f.dropEvery === 0) || (f.dropRate && this.#random() < f.dropRate) ||
        f.drop?.(packet)
      ) {
        packet.fate = "dropped";
        return;
      }
      if (
        (f.duplicateEvery && n % f.duplicateEvery === 0) ||
        (f.duplicateRate && this.#random() < f.duplicateRate)
      ) {
        packet.fate = "duplicated";
        copies = 2;
      }
      if (f.reorderEvery && n % f.reorderEvery === 0 && !this.#held) {
        packet.fate = "reordered";
        hold = true;
      }
    }
    const deliver = () => {
      for (let i = 0; i < copies; i++) this.#schedule(() => target._deliver(packet, from.local));
    };
    if (hold) {
      this.#pending++;
      this.#held = () => {
        this.#pending--;
        deliver();
        this.#wake();
      };
      return;
    }
    deliver();
    this.flush();
  }

  #schedule(fn: () => void): void {
    this.#pending++;
    const run = () => {
      this.#pending--;
      try {
        fn();
      } finally {
        this.#wake();
      }
    };
    if (this.#delay > 0) this.#clock!.setTimeout(run, this.#delay);
    else queueMicrotask(run);
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/**
 * A transport on a {@linkcode LoopNetwork}. Create it with
 * {@linkcode LoopNetwork.transport}.
 */
export class LoopTransport implements Transport {
  /** The protocol it poses as. */
  readonly protocol: TransportProtocol;
  /** Whether it poses as a reliable (stream) transport. */
  readonly reliable: boolean;
  /** The network it is attached to. */
  readonly network: LoopNetwork;
  #local: HostPort;
  #handler?: InboundHandler;
  #closed = false;
  #refused = new Set<string>();

  /** Attaches a transport to `network` at `options.host:port`. */
  constructor(network: LoopNetwork, options: LoopTransportOptions) {
    this.network = network;
    this.protocol = options.protocol ?? "udp";
    this.reliable = options.reliable ?? this.protocol !== "udp";
    this.#local = { host: normalizeHost(options.host), port: options.port ?? 5060 };
    network._attach(this);
  }

  /** Its made-up address (changed by {@linkcode LoopNetwork.move}). */
  get local(): HostPort {
    return this.#local;
  }

  /** @internal Sets the address (for {@linkcode LoopNetwork.move}). */
  _setLocal(local: HostPort): void {
    this.#local = local;
  }

  /** Moves this transport to `host` on its network, same port; returns itself. */
  rebind(host: string): Promise<Transport> {
    try {
      this.network.move(this, host);
      return Promise.resolve(this);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Sets the handler for inbound messages. */
  onMessage(handler: InboundHandler): void {
    this.#handler = handler;
  }

  /**
   * Queues delivery; rejects when closed, (reliable) when nobody is bound at
   * `to`, and (unreliable, with the network's `icmp` option) when an earlier
   * packet to `to` found nobody there.
   */
  send(data: Uint8Array, to: HostPort): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new Error(`Cannot send over loop ${this.protocol}: transport is closed`),
      );
    }
    const key = hostPortKey(to);
    if (this.#refused.delete(key)) {
      return Promise.reject(
        new Deno.errors.ConnectionRefused(
          `Cannot send over loop ${this.protocol} to ${normalizeHost(to.host)}:${to.port}: ` +
            `ICMP port unreachable`,
        ),
      );
    }
    try {
      this.network._send(this, data, to);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Detaches from the network; later deliveries to it are lost. */
  close(): Promise<void> {
    this.#closed = true;
    this.network._detach(this);
    return Promise.resolve();
  }

  /** @internal Records an ICMP port unreachable from `to` (network option `icmp`). */
  _refuse(to: HostPort): void {
    this.#refused.add(hostPortKey(to));
  }

  /** @internal Hands a packet to the handler. */
  _deliver(packet: LoopPacket, from: HostPort): void {
    if (this.#closed) return;
    this.#handler?.({
      data: packet.data.slice(),
      remote: { ...from },
      local: this.local,
      transport: this,
    });
  }
}
