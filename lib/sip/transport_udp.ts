/**
 * SIP over UDP (RFC 3261 section 18): one datagram socket, IPv4 or IPv6,
 * one message per datagram.
 *
 * @module
 */

import { normalizeHost, routeLocalAddress } from "./_net.ts";
import type { HostPort, Inbound, InboundHandler, Transport } from "./transport.ts";

/** Options of {@linkcode UdpTransport}. */
export interface UdpTransportOptions {
  /** Address to bind: an IPv4 or IPv6 literal. Default "0.0.0.0". */
  host?: string;
  /** Port to bind; 0 picks an ephemeral port. Default 0. */
  port?: number;
  /** Receives problems of the receive loop (a handler that threw, a socket error). */
  logger?: (level: "debug" | "info" | "warn" | "error", msg: string) => void;
}

/** Largest UDP payload we read. */
const MAX_DATAGRAM = 65_535;

/**
 * A SIP transport on one UDP socket. The socket is bound in the constructor;
 * {@linkcode UdpTransport.local} holds the real port.
 *
 * @example
 * ```ts
 * import { UdpTransport } from "./transport_udp.ts";
 * import assert from "node:assert/strict";
 * const a = new UdpTransport({ host: "127.0.0.1" });
 * const b = new UdpTransport({ host: "127.0.0.1" });
 * const got = new Promise<string>((resolve) =>
 *   b.onMessage((m) => resolve(new TextDecoder().decode(m.data)))
 * );
 * await a.send(new TextEncoder().encode("OPTIONS sip:x SIP/2.0\r\n\r\n"), b.local);
 * assert.match(await got, /^OPTIONS/);
 * await a.close();
 * await b.close();
 * ```
 */
export class UdpTransport implements Transport {
  /** Always "udp". */
  readonly protocol = "udp" as const;
  /** UDP is unreliable: transactions retransmit. */
  readonly reliable = false;
  /** The bound address with the real port. */
  readonly local: HostPort;
  #conn: Deno.DatagramConn;
  #handler?: InboundHandler;
  #closed = false;
  #loop: Promise<void>;
  #logger?: UdpTransportOptions["logger"];

  /** Binds the socket and starts receiving. Throws when the address cannot be bound. */
  constructor(options: UdpTransportOptions = {}) {
    this.#logger = options.logger;
    this.#conn = Deno.listenDatagram({
      transport: "udp",
      hostname: normalizeHost(options.host ?? "0.0.0.0"),
      port: options.port ?? 0,
    });
    const addr = this.#conn.addr as Deno.NetAddr;
    this.local = { host: normalizeHost(addr.hostname), port: addr.port };
    this.#loop = this.#receive();
  }

  /** Sets the handler for inbound datagrams. */
  onMessage(handler: InboundHandler): void {
    this.#handler = handler;
  }

  /** Sends one datagram. Rejects after close or on a socket error. */
  async send(data: Uint8Array, to: HostPort): Promise<void> {
    if (this.#closed) throw new Error("Cannot send over UDP: transport is closed");
    await this.#conn.send(data, {
      transport: "udp",
      hostname: normalizeHost(to.host),
      port: to.port,
    });
  }

  /** The bound address, or for 0.0.0.0/:: the interface address that routes to `to`. */
  localFor(to: HostPort): Promise<HostPort> {
    return Promise.resolve({
      host: routeLocalAddress(this.local.host, to.host),
      port: this.local.port,
    });
  }

  /** Closes the socket and waits for the receive loop to end. */
  async close(): Promise<void> {
    if (this.#closed) return await this.#loop;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    await this.#loop;
  }

  async #receive(): Promise<void> {
    const buffer = new Uint8Array(MAX_DATAGRAM);
    let failures = 0;
    while (!this.#closed) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await this.#conn.receive(buffer);
      } catch (error) {
        if (this.#closed) return;
        // ICMP port unreachable and similar errors surface here on some
        // systems: log and keep receiving.
        this.#logger?.("warn", `UDP receive error on port ${this.local.port}: ${error}`);
        if (++failures >= 1000) {
          this.#logger?.("error", `UDP socket on port ${this.local.port} keeps failing; giving up`);
          return;
        }
        continue;
      }
      failures = 0;
      // Empty datagrams and bare CRLF keep-alives carry no message.
      if (isBlank(data)) continue;
      const addr = from as Deno.NetAddr;
      const inbound: Inbound = {
        data: data.slice(),
        remote: { host: normalizeHost(addr.hostname), port: addr.port },
        local: this.local,
        transport: this,
      };
      try {
        this.#handler?.(inbound);
      } catch (error) {
        this.#logger?.("error", `UDP message handler threw: ${error}`);
      }
    }
  }
}

function isBlank(data: Uint8Array): boolean {
  for (const b of data) {
    if (b !== 13 && b !== 10 && b !== 32 && b !== 9 && b !== 0) return false;
  }
  return true;
}
