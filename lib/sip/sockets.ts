/**
 * Opening the real transports of a user agent: UDP and TCP on one port (an
 * ephemeral one picked again when TCP finds it taken) and the TLS client,
 * listening too when a certificate is given. The stream transports' code
 * (`transport_tcp.ts`) is loaded here, when they are opened; a one-shot
 * sender opens them on first use only.
 *
 * @module
 */

import { parseHostPort } from "./input.ts";
import type {
  HostPort,
  InboundHandler,
  MessageHandlerOptions,
  SendOptions,
  Transport,
  TransportProtocol,
} from "./transport.ts";
import type { LogLevel } from "./transport_layer.ts";
import type { StreamLimits } from "./transport_tcp.ts";
import { UdpTransport } from "./transport_udp.ts";

/** TLS settings. */
export interface TlsOptions {
  /** Extra trusted CA certificates (PEM). */
  caCerts?: string[];
  /** Skip certificate verification (`--insecure`). */
  insecure?: boolean;
  /** Certificate (PEM) to accept TLS connections with. */
  cert?: string;
  /** Private key (PEM) for `cert`. */
  key?: string;
}

/** Options of {@linkcode openTransports}. */
export interface OpenTransportsOptions {
  /**
   * Local address `host:port`. Default all interfaces of both address
   * families (see {@linkcode defaultBindHost}) and an ephemeral port; `:port`
   * is all interfaces on that port. An explicit `0.0.0.0` is IPv4 only.
   */
  bind?: string;
  /** Transports to open, all on the same port. Default `["udp", "tcp"]` (the TLS client is always there). */
  listen?: TransportProtocol[];
  /** TLS settings. */
  tls?: TlsOptions;
  /** Limits of the TCP and TLS transports (connections, bytes held, incomplete-message timeout). */
  streamLimits?: Partial<StreamLimits>;
  /** Diagnostics. */
  log?: (level: LogLevel, message: string) => void;
  /** Called when the UDP socket is given up after 1,000 receive errors in a row (then closed). */
  onUdpFailure?: (error: Error) => void;
  /**
   * The UDP socket's receive buffer, pending receives and ICMP set-up (see
   * `UdpTransportOptions`); default a 1 MiB buffer, 8 receives and ICMP
   * errors heard from the start, which a listener needs. Overrides what
   * `oneShot` sets.
   */
  udp?: { receiveBuffer?: number; receivers?: number; icmpAfter?: number };
  /**
   * For a short-lived sender (send a request or a few, await the answers,
   * exit): the UDP socket keeps the system's receive buffer, has one pending
   * receive, and turns on hearing ICMP errors only {@linkcode ONE_SHOT_ICMP_AFTER}
   * ms after its first send; TCP and TLS are opened (and their code loaded)
   * when a request first goes over them. That is plenty for a few responses
   * and starts quicker: no FFI look-up of the socket before the first send,
   * none at all when the answer comes at once, no 448 KiB of idle receive
   * buffers, no stream code for a request over UDP. A dead UDP server is
   * still heard at the first retransmission (T1). Not with `listen` naming
   * TLS (a TLS server is no one-shot). Default false.
   */
  oneShot?: boolean;
}

/**
 * How long after its first send a one-shot sender's UDP socket turns on
 * hearing ICMP errors (see {@linkcode OpenTransportsOptions.oneShot}): well
 * under T1 (500 ms), so that the refusal of the first retransmission is
 * heard, and long enough that a server that answers (on a LAN, or across
 * the Internet) usually has.
 */
export const ONE_SHOT_ICMP_AFTER = 200;

/**
 * Opens the transports a user agent listens on, all on one port.
 *
 * @example
 * ```ts
 * import { openTransports } from "./sockets.ts";
 * import assert from "node:assert/strict";
 * const transports = await openTransports({ bind: "127.0.0.1:0", listen: ["udp"] });
 * assert.deepEqual(transports.map((t) => t.protocol), ["udp", "tls"]);
 * await Promise.all(transports.map((t) => t.close()));
 * ```
 */
export async function openTransports(options: OpenTransportsOptions = {}): Promise<Transport[]> {
  const text = options.bind?.trim() ?? "";
  const bind = parseHostPort(text === "" ? ":0" : text);
  // No host given: every interface, IPv4 and IPv6 alike.
  if (text === "" || /^:\d*$/.test(text)) bind.host = defaultBindHost();
  // With an ephemeral port the UDP socket picks it and TCP must follow; the
  // TCP port may be taken by someone else, so pick again a few times.
  const attempts = bind.port === 0 ? 8 : 1;
  for (let attempt = 1;; attempt++) {
    try {
      return await openTransportsOnce(options, bind);
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse) || attempt >= attempts) throw e;
      options.log?.("debug", `ephemeral port taken for TCP; picking another (${attempt})`);
    }
  }
}

let dualStack: boolean | undefined;

/**
 * The address a user agent binds when none is given: `::` where one IPv6
 * socket also takes IPv4 (a dual-stack socket: Linux with the default
 * `net.ipv6.bindv6only=0`, macOS, the BSDs), so that IPv4 and IPv6 peers are
 * both reachable over UDP; `0.0.0.0` (IPv4 only) where IPv6 is missing or
 * IPv6 sockets are IPv6-only. Found once per process: a UDP socket bound to
 * `::` is dual-stack exactly when `0.0.0.0` on the same port is then taken.
 *
 * @example
 * ```ts
 * import { defaultBindHost } from "./sockets.ts";
 * import assert from "node:assert/strict";
 * assert.ok(["::", "0.0.0.0"].includes(defaultBindHost()));
 * ```
 */
export function defaultBindHost(): string {
  dualStack ??= probeDualStack();
  return dualStack ? "::" : "0.0.0.0";
}

function probeDualStack(): boolean {
  const v6only = linuxBindV6Only();
  if (v6only !== undefined) return !v6only;
  let v6: Deno.DatagramConn;
  try {
    v6 = Deno.listenDatagram({ transport: "udp", hostname: "::", port: 0 });
  } catch {
    return false; // no IPv6 here
  }
  try {
    const port = (v6.addr as Deno.NetAddr).port;
    Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port }).close();
    return false; // both bound: the IPv6 socket leaves IPv4 alone
  } catch (e) {
    return e instanceof Deno.errors.AddrInUse;
  } finally {
    v6.close();
  }
}

/**
 * Linux says directly what the probe finds out: IPv6 is there when its
 * sysctl directory is, and an IPv6 socket also takes IPv4 unless
 * `net.ipv6.bindv6only` is 1 (for the process's network namespace). One
 * file read instead of two binds and an `AddrInUse`. Undefined elsewhere,
 * without read permission, or without IPv6 (then the probe decides).
 * Permission is asked first only where Deno could prompt for it (stdin and
 * stderr both terminals): elsewhere a refused read just throws, and the
 * first permission query of a process costs some 0.3 ms.
 */
function linuxBindV6Only(): boolean | undefined {
  if (Deno.build.os !== "linux") return undefined;
  const path = "/proc/sys/net/ipv6/bindv6only";
  try {
    if (
      Deno.stdin.isTerminal() && Deno.stderr.isTerminal() &&
      Deno.permissions.querySync({ name: "read", path }).state !== "granted"
    ) return undefined;
    const value = Deno.readTextFileSync(path).trim();
    return value === "0" ? false : value === "1" ? true : undefined;
  } catch {
    return undefined;
  }
}

async function openTransportsOnce(
  options: OpenTransportsOptions,
  bind: HostPort,
): Promise<Transport[]> {
  const listen = options.listen ?? ["udp", "tcp"];
  const out: Transport[] = [];
  const log = options.log;
  const tlsListen = Boolean(listen.includes("tls") && options.tls?.cert && options.tls.key);
  const lazy = options.oneShot === true && !tlsListen;
  try {
    let port = bind.port;
    // All transports share one port so that one Contact reaches them all.
    if (listen.includes("udp")) {
      const udp = await UdpTransport.open({
        host: bind.host,
        port,
        logger: log,
        onFailure: options.onUdpFailure,
        receiveBuffer: options.udp?.receiveBuffer ?? (options.oneShot ? 0 : undefined),
        receivers: options.udp?.receivers ?? (options.oneShot ? 1 : undefined),
        icmpAfter: options.udp?.icmpAfter ?? (options.oneShot ? ONE_SHOT_ICMP_AFTER : undefined),
      });
      out.push(udp);
      port = udp.local.port;
    }
    const tcpOptions = { host: bind.host, port, logger: log, ...options.streamLimits };
    const tlsOptions = {
      host: bind.host,
      port: 0,
      listen: false,
      caCerts: options.tls?.caCerts,
      insecure: options.tls?.insecure,
      cert: options.tls?.cert,
      key: options.tls?.key,
      logger: log,
      ...options.streamLimits,
    };
    if (lazy) {
      if (listen.includes("tcp")) {
        out.push(
          new LazyTransport("tcp", { host: bind.host, port }, async () => {
            const { TcpTransport } = await import("./transport_tcp.ts");
            try {
              return new TcpTransport(tcpOptions);
            } catch (e) {
              // The port was taken meanwhile: a client-only TCP transport
              // (answers come back over the connection, RFC 3261 18.2.2).
              if (!(e instanceof Deno.errors.AddrInUse)) throw e;
              return new TcpTransport({ ...tcpOptions, port: 0, listen: false });
            }
          }),
        );
      }
      out.push(
        new LazyTransport("tls", { host: bind.host, port: 0 }, async () => {
          const { TlsTransport } = await import("./transport_tcp.ts");
          return new TlsTransport(tlsOptions);
        }),
      );
      return out;
    }
    const { TcpTransport, TlsTransport } = await import("./transport_tcp.ts");
    if (listen.includes("tcp")) {
      const tcp = new TcpTransport(tcpOptions);
      out.push(tcp);
      port = tcp.local.port;
    }
    out.push(
      new TlsTransport({ ...tlsOptions, port: tlsListen ? port + 1 : 0, listen: tlsListen }),
    );
  } catch (e) {
    await Promise.all(out.map((t) => t.close().catch(() => {})));
    throw e;
  }
  return out;
}

/**
 * A stream transport opened on first use (see
 * {@linkcode OpenTransportsOptions.oneShot}): until a request goes over it,
 * nothing is bound or loaded, and `local` is where it will listen. Sends,
 * `localFor` and the inbound handler go to the real transport once it is
 * open; closing before that opens nothing.
 */
class LazyTransport implements Transport {
  readonly protocol: TransportProtocol;
  readonly reliable = true;
  readonly local: HostPort;
  #open: () => Promise<Transport>;
  #real?: Promise<Transport>;
  #opened?: Transport;
  #handler?: InboundHandler;
  #handlerOptions?: MessageHandlerOptions;
  #closed = false;

  constructor(protocol: TransportProtocol, local: HostPort, open: () => Promise<Transport>) {
    this.protocol = protocol;
    this.local = local;
    this.#open = open;
  }

  #get(): Promise<Transport> {
    if (this.#closed) {
      return Promise.reject(new Error(`Cannot send over ${this.protocol}: transport is closed`));
    }
    this.#real ??= this.#open().then((t) => {
      this.#opened = t;
      if (this.#handler) t.onMessage(this.#handler, this.#handlerOptions);
      // Closed while it was opening: it goes too.
      if (this.#closed) void t.close().catch(() => {});
      return t;
    });
    return this.#real;
  }

  async send(data: Uint8Array, to: HostPort, options?: SendOptions): Promise<void> {
    await (await this.#get()).send(data, to, options);
  }

  onMessage(handler: InboundHandler, options?: MessageHandlerOptions): void {
    this.#handler = handler;
    this.#handlerOptions = options;
    this.#opened?.onMessage(handler, options);
  }

  async localFor(to: HostPort, options?: SendOptions): Promise<HostPort> {
    const t = await this.#get();
    return t.localFor ? await t.localFor(to, options) : t.local;
  }

  closeConnectionsFrom(host: string): number {
    return this.#opened?.closeConnectionsFrom?.(host) ?? 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const t = await this.#real?.catch(() => undefined);
    await t?.close();
  }
}
