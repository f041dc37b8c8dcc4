/**
 * SIP over TCP and TLS (RFC 3261 sections 18 and 26.2). Each transport may
 * listen, opens connections on demand, reuses any open connection (inbound
 * or outbound) to the same remote host:port (RFC 3261 18.2.2, the flow reuse
 * idea of RFC 5626), frames the byte stream with {@linkcode StreamFramer},
 * answers RFC 5626 double-CRLF pings, and closes idle connections.
 *
 * TLS verifies the server certificate by default, against the system roots
 * plus `caCerts`. Deno's `Deno.connectTls`/`Deno.startTls` cannot skip chain
 * verification: they only offer `unsafelyDisableHostnameVerification`
 * (exposed here under the same name), and the process-wide
 * `--unsafely-ignore-certificate-errors` CLI flag is the only other switch.
 * So `insecure: true` opens the connection with `node:tls` and
 * `rejectUnauthorized: false` instead (Deno's Node compatibility layer honours
 * it), and skips both the chain and the name checks.
 *
 * @module
 */

import type * as NodeTls from "node:tls";
import { type Clock, systemClock, type TimerId } from "./clock.ts";
import { ConnectError, connectFailure } from "./errors.ts";
import { StreamFramer } from "./framer.ts";
import { DEFAULT_STREAM_LIMITS, type StreamLimits } from "./stream_limits.ts";
import {
  formatHostPort,
  hostPortKey,
  isIPv4,
  isIPv6,
  isUnspecified,
  normalizeHost,
} from "./_net.ts";
import type {
  HostPort,
  InboundHandler,
  SendOptions,
  Transport,
  TransportProtocol,
} from "./transport.ts";

export { DEFAULT_STREAM_LIMITS, type StreamLimits } from "./stream_limits.ts";

/** Options shared by {@linkcode TcpTransport} and {@linkcode TlsTransport}. */
export interface TcpTransportOptions {
  /** Address to listen on. Default "0.0.0.0". */
  host?: string;
  /** Port to listen on; 0 picks an ephemeral port. Default 0. */
  port?: number;
  /** Whether to accept connections. Default true (for TLS: only when `cert` and `key` are given). */
  listen?: boolean;
  /** Closes a connection after this many milliseconds without traffic; 0 never. Default 300000. */
  idleTimeout?: number;
  /** Gives up opening a connection after this many milliseconds. Default 10000. */
  connectTimeout?: number;
  /** Clock for the idle and connect timers. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Largest message accepted on a stream. Default 262144 bytes. */
  maxMessageSize?: number;
  /**
   * Most connections open at once (accepted and opened); an inbound
   * connection over the limit is closed as soon as it is accepted. Default
   * {@linkcode DEFAULT_STREAM_LIMITS}.maxConnections (1024).
   */
  maxConnections?: number;
  /**
   * Most bytes of incomplete messages held for all connections together; the
   * connection whose data would go over it is closed. Default
   * {@linkcode DEFAULT_STREAM_LIMITS}.maxBuffered (16 MiB).
   */
  maxBuffered?: number;
  /**
   * Milliseconds an incomplete message may take to arrive in full (from its
   * first byte, or the end of the message before it) before its connection
   * is closed; 0 never. Default {@linkcode DEFAULT_STREAM_LIMITS}.messageTimeout (10 s).
   */
  messageTimeout?: number;
  /** Receives connection events and errors (framing errors, resets). */
  logger?: (level: "debug" | "info" | "warn" | "error", msg: string) => void;
  /** Called when a single-CRLF pong arrives (the answer to {@linkcode StreamTransport.ping}, RFC 5626 4.4.1). */
  onPong?: (remote: HostPort) => void;
  /** Called when a connection ends, with the reason ("eof", "idle", "framing error: ...", ...). */
  onConnectionClosed?: (remote: HostPort, reason: string) => void;
}

/** Options of {@linkcode TlsTransport}. */
export interface TlsTransportOptions extends TcpTransportOptions {
  /** PEM certificate chain presented to clients; with `key`, enables listening. */
  cert?: string;
  /** PEM private key for `cert`. */
  key?: string;
  /** Extra PEM root certificates trusted when verifying servers. */
  caCerts?: string[];
  /**
   * Skips server certificate verification entirely (chain and name), for
   * tests against self-signed peers (`--insecure`). Default false.
   */
  insecure?: boolean;
  /**
   * Verifies the chain but not the name (Deno's option of the same name), for
   * peers whose certificate names neither their address nor their domain.
   * Default false.
   */
  unsafelyDisableHostnameVerification?: boolean;
}

/**
 * The part of a connection a {@linkcode StreamTransport} uses, what its
 * `openConnection` returns: `Deno.Conn` and `Deno.TlsConn` provide it, and so
 * does the node:tls adapter behind `--insecure`.
 */
export interface StreamConn {
  /** Reads into `p`; the number of bytes, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes from `p`; the number of bytes written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the connection. */
  close(): void;
  /** The local address. */
  readonly localAddr: Deno.Addr;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

interface Connection {
  conn: StreamConn;
  key: string;
  remote: HostPort;
  local: HostPort;
  outbound: boolean;
  framer: StreamFramer;
  writing: Promise<unknown>;
  timer?: TimerId;
  /** Runs while an incomplete message is buffered (the incomplete-message timeout). */
  messageTimer?: TimerId;
  /** Bytes this connection's framer holds (counted in the transport's total). */
  held: number;
  /** Messages framed so far. */
  messages: number;
  closed: boolean;
  reader?: Promise<void>;
}

/** Smallest and largest read buffer of a connection. */
const READ_MIN = 4096;
const READ_MAX = 16_384;

const CRLF = new Uint8Array([13, 10]);
const CRLFCRLF = new Uint8Array([13, 10, 13, 10]);

function netAddr(addr: Deno.Addr): HostPort {
  const a = addr as Deno.NetAddr;
  return { host: normalizeHost(a.hostname ?? ""), port: a.port ?? 0 };
}

/**
 * The connection-managing core of {@linkcode TcpTransport} and
 * {@linkcode TlsTransport}. Use one of those.
 */
export abstract class StreamTransport implements Transport {
  /** "tcp" or "tls". */
  abstract readonly protocol: TransportProtocol;
  /** Streams are reliable: no retransmissions (RFC 3261 17.1.1.2). */
  readonly reliable = true;
  /** The listening address (port 0 when not listening). */
  readonly local: HostPort;
  #listener?: Deno.Listener;
  #acceptLoop?: Promise<void>;
  #conns = new Map<string, Connection>();
  #connecting = new Map<string, Promise<Connection>>();
  #handler?: InboundHandler;
  #closed = false;
  #options: TcpTransportOptions;
  #clock: Clock;
  #idle: number;
  #limits: StreamLimits;
  /** Bytes of incomplete messages held by every connection together. */
  #held = 0;
  #refused = 0;

  /** Starts listening when `listener` is given. */
  constructor(options: TcpTransportOptions, listener: Deno.Listener | undefined) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#idle = options.idleTimeout ?? 300_000;
    this.#limits = {
      maxConnections: options.maxConnections ?? DEFAULT_STREAM_LIMITS.maxConnections,
      maxBuffered: options.maxBuffered ?? DEFAULT_STREAM_LIMITS.maxBuffered,
      messageTimeout: options.messageTimeout ?? DEFAULT_STREAM_LIMITS.messageTimeout,
    };
    this.#listener = listener;
    if (listener) {
      this.local = netAddr(listener.addr);
      this.#acceptLoop = this.#accept(listener);
    } else {
      this.local = { host: normalizeHost(options.host ?? "0.0.0.0"), port: 0 };
    }
  }

  /** True when the transport accepts connections. */
  get listening(): boolean {
    return this.#listener !== undefined;
  }

  /** Number of open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /** The limits in force. */
  get limits(): Readonly<StreamLimits> {
    return this.#limits;
  }

  /** Bytes of incomplete messages held now, all connections together. */
  get buffered(): number {
    return this.#held;
  }

  /** Inbound connections closed at once because {@linkcode StreamLimits.maxConnections} were open. */
  get refused(): number {
    return this.#refused;
  }

  /** True when a connection to (or from) `remote` is open. */
  hasConnection(remote: HostPort): boolean {
    return this.#conns.has(hostPortKey(remote));
  }

  /** Sets the handler for inbound messages. */
  onMessage(handler: InboundHandler): void {
    this.#handler = handler;
  }

  /**
   * Sends one message over the open connection to `to`, or a new one. A
   * write that fails on a reused outbound connection is retried once on a
   * fresh connection.
   */
  async send(data: Uint8Array, to: HostPort, options: SendOptions = {}): Promise<void> {
    this.#checkOpen();
    const existing = this.#conns.get(hostPortKey(to));
    if (existing) {
      try {
        await this.#write(existing, data);
        return;
      } catch (error) {
        if (!existing.outbound) throw error;
        this.#log(
          "debug",
          `${this.protocol}: reconnecting to ${formatHostPort(to)} after ${error}`,
        );
      }
    }
    const conn = await this.#connection(to, options);
    await this.#write(conn, data);
  }

  /** Sends an RFC 5626 double-CRLF keep-alive ping over the open connection to `to`. */
  async ping(to: HostPort): Promise<void> {
    const conn = this.#conns.get(hostPortKey(to));
    if (!conn) {
      throw new Error(`Cannot ping ${formatHostPort(to)}: no open ${this.protocol} connection`);
    }
    await this.#write(conn, CRLFCRLF);
  }

  /**
   * The address messages to `to` leave from (opens the connection when
   * needed): the connection's local host, with the listening port when
   * listening (so sent-by is reachable), else the connection's own port.
   */
  async localFor(to: HostPort, options: SendOptions = {}): Promise<HostPort> {
    this.#checkOpen();
    const conn = this.#conns.get(hostPortKey(to)) ?? await this.#connection(to, options);
    if (this.#listener) {
      const host = isUnspecified(this.local.host) ? conn.local.host : this.local.host;
      return { host, port: this.local.port };
    }
    return conn.local;
  }

  /** Closes the connections whose local address is `host` (a lost address). */
  closeConnectionsFrom(host: string): number {
    const lost = normalizeHost(host);
    let n = 0;
    for (const conn of [...this.#conns.values()]) {
      if (conn.local.host !== lost) continue;
      this.#drop(conn, `local address ${lost} lost`);
      n++;
    }
    return n;
  }

  /** Closes the listener and every connection, and waits for their loops to end. */
  async close(): Promise<void> {
    this.#closed = true;
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    await Promise.allSettled([...this.#connecting.values()]);
    const readers: Promise<void>[] = [];
    for (const conn of [...this.#conns.values()]) {
      this.#drop(conn, "transport closed");
      if (conn.reader) readers.push(conn.reader);
    }
    await Promise.allSettled(readers);
  }

  /** Opens a raw connection (TCP, or TLS with verification). */
  protected abstract openConnection(
    to: HostPort,
    options: SendOptions,
    signal: AbortSignal,
  ): Promise<StreamConn>;

  #checkOpen(): void {
    if (this.#closed) throw new Error(`Cannot send over ${this.protocol}: transport is closed`);
  }

  #log(level: "debug" | "info" | "warn" | "error", msg: string): void {
    this.#options.logger?.(level, msg);
  }

  #connection(to: HostPort, options: SendOptions): Promise<Connection> {
    const k = hostPortKey(to);
    const pending = this.#connecting.get(k);
    if (pending) return pending;
    const promise = this.#open(to, options).finally(() => this.#connecting.delete(k));
    this.#connecting.set(k, promise);
    return promise;
  }

  async #open(to: HostPort, options: SendOptions): Promise<Connection> {
    const abort = new AbortController();
    const timeout = this.#options.connectTimeout ?? 10_000;
    const timer = this.#clock.setTimeout(() => abort.abort(), timeout);
    let raw: StreamConn;
    try {
      raw = await this.openConnection(
        { host: normalizeHost(to.host), port: to.port },
        options,
        abort.signal,
      );
    } catch (error) {
      const kind = abort.signal.aborted ? "timeout" : connectFailure(error);
      const why = abort.signal.aborted ? `timed out after ${timeout} ms` : String(error);
      throw new ConnectError(
        kind,
        `Cannot connect over ${this.protocol} to ${formatHostPort(to)}: ${why}`,
        { cause: error },
      );
    } finally {
      this.#clock.clearTimeout(timer);
    }
    if (this.#closed) {
      raw.close();
      throw new Error(`Cannot send over ${this.protocol}: transport is closed`);
    }
    this.#log("debug", `${this.protocol}: connected to ${formatHostPort(to)}`);
    // Key by the address asked for, so later sends to it find the connection.
    return this.#adopt(raw, true, { host: normalizeHost(to.host), port: to.port });
  }

  async #accept(listener: Deno.Listener): Promise<void> {
    for (;;) {
      let raw: Deno.Conn;
      try {
        raw = await listener.accept();
      } catch (error) {
        if (this.#closed) return;
        if (error instanceof Deno.errors.BadResource) return;
        this.#log("warn", `${this.protocol}: accept failed: ${error}`);
        continue;
      }
      if (this.#closed) {
        raw.close();
        return;
      }
      if (this.#conns.size >= this.#limits.maxConnections) {
        // Over the limit: closed before a byte is read.
        this.#refused++;
        if (this.#refused === 1 || this.#refused % 1000 === 0) {
          this.#log(
            "warn",
            `${this.protocol}: ${this.#conns.size} connections open (the limit); ` +
              `closing new ones (${this.#refused} so far)`,
          );
        }
        try {
          raw.close();
        } catch { /* already closed */ }
        continue;
      }
      const conn = this.#adopt(raw, false, netAddr(raw.remoteAddr));
      this.#log("debug", `${this.protocol}: accepted ${formatHostPort(conn.remote)}`);
    }
  }

  #adopt(raw: StreamConn, outbound: boolean, remote: HostPort): Connection {
    const conn: Connection = {
      conn: raw,
      key: hostPortKey(remote),
      remote,
      local: netAddr(raw.localAddr),
      outbound,
      writing: Promise.resolve(),
      held: 0,
      messages: 0,
      closed: false,
      framer: undefined as unknown as StreamFramer,
    };
    conn.framer = new StreamFramer({
      maxMessageSize: this.#options.maxMessageSize,
      onMessage: (data) => {
        conn.messages++;
        try {
          this.#handler?.({ data, remote: conn.remote, local: conn.local, transport: this });
        } catch (error) {
          this.#log("error", `${this.protocol}: message handler threw: ${error}`);
        }
      },
      // RFC 5626 3.5.1: a double CRLF ping is answered with a single CRLF pong.
      onPing: () => {
        this.#write(conn, CRLF).catch(() => {});
      },
      onPong: () => {
        try {
          this.#options.onPong?.(conn.remote);
        } catch (error) {
          this.#log("error", `${this.protocol}: onPong threw: ${error}`);
        }
      },
      onError: (error) => {
        this.#log(
          "warn",
          `${this.protocol}: closing ${formatHostPort(conn.remote)}: ${error.message}`,
        );
        this.#drop(conn, `framing error: ${error.message}`);
      },
    });
    const previous = this.#conns.get(conn.key);
    if (previous) this.#drop(previous, "replaced");
    this.#conns.set(conn.key, conn);
    this.#touch(conn);
    conn.reader = this.#read(conn);
    return conn;
  }

  async #read(conn: Connection): Promise<void> {
    // A small buffer unless reads keep filling it: most connections wait
    // most of the time, and each waiting read holds its buffer.
    let buffer = new Uint8Array(READ_MIN);
    let reason = "eof";
    try {
      for (;;) {
        const n = await conn.conn.read(buffer);
        if (n === null) break;
        if (conn.closed) return;
        this.#touch(conn);
        const before = conn.messages;
        conn.framer.push(buffer.subarray(0, n));
        if (conn.closed) return;
        this.#account(conn, conn.messages !== before);
        if (conn.closed) return;
        if (n === buffer.length) {
          if (buffer.length < READ_MAX) buffer = new Uint8Array(buffer.length * 4);
        } else if (buffer.length > READ_MIN) {
          buffer = new Uint8Array(READ_MIN);
        }
      }
    } catch (error) {
      if (conn.closed) return;
      reason = `read error: ${error instanceof Error ? error.message : error}`;
      this.#log("debug", `${this.protocol}: ${formatHostPort(conn.remote)}: ${reason}`);
    }
    this.#drop(conn, reason);
  }

  /**
   * After a read: counts the bytes the connection holds against
   * `maxBuffered` (closing it when they go over) and runs the
   * incomplete-message timer while a message is incomplete, from its first
   * byte or from the end of the message before it.
   */
  #account(conn: Connection, framed: boolean): void {
    const held = conn.framer.buffered;
    this.#held += held - conn.held;
    conn.held = held;
    if (held > 0 && this.#held > this.#limits.maxBuffered) {
      this.#log(
        "warn",
        `${this.protocol}: closing ${formatHostPort(conn.remote)}: incomplete messages of all ` +
          `connections would hold more than ${this.#limits.maxBuffered} bytes`,
      );
      this.#drop(conn, "buffer limit");
      return;
    }
    if ((framed || held === 0) && conn.messageTimer !== undefined) {
      this.#clock.clearTimeout(conn.messageTimer);
      conn.messageTimer = undefined;
    }
    if (held > 0 && conn.messageTimer === undefined && this.#limits.messageTimeout > 0) {
      conn.messageTimer = this.#clock.setTimeout(() => {
        conn.messageTimer = undefined;
        this.#log(
          "info",
          `${this.protocol}: closing ${
            formatHostPort(conn.remote)
          }: a message still incomplete after ` +
            `${this.#limits.messageTimeout} ms`,
        );
        this.#drop(conn, "incomplete message timeout");
      }, this.#limits.messageTimeout);
    }
  }

  #write(conn: Connection, data: Uint8Array): Promise<void> {
    const run = async () => {
      if (conn.closed) {
        throw new Error(`Cannot send to ${formatHostPort(conn.remote)}: connection closed`);
      }
      let offset = 0;
      while (offset < data.length) {
        offset += await conn.conn.write(data.subarray(offset));
      }
      this.#touch(conn);
    };
    const result = conn.writing.then(run, run);
    conn.writing = result.catch((error) => {
      this.#drop(conn, `write error: ${error instanceof Error ? error.message : error}`);
    });
    return result;
  }

  #touch(conn: Connection): void {
    if (this.#idle <= 0 || conn.closed) return;
    if (conn.timer !== undefined) this.#clock.clearTimeout(conn.timer);
    conn.timer = this.#clock.setTimeout(() => {
      conn.timer = undefined;
      this.#log(
        "debug",
        `${this.protocol}: closing idle connection ${formatHostPort(conn.remote)}`,
      );
      this.#drop(conn, "idle");
    }, this.#idle);
  }

  #drop(conn: Connection, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.timer !== undefined) this.#clock.clearTimeout(conn.timer);
    conn.timer = undefined;
    if (conn.messageTimer !== undefined) this.#clock.clearTimeout(conn.messageTimer);
    conn.messageTimer = undefined;
    this.#held -= conn.held;
    conn.held = 0;
    if (this.#conns.get(conn.key) === conn) this.#conns.delete(conn.key);
    try {
      conn.conn.close();
    } catch { /* already closed */ }
    try {
      this.#options.onConnectionClosed?.(conn.remote, reason);
    } catch (error) {
      this.#log("error", `${this.protocol}: onConnectionClosed threw: ${error}`);
    }
  }
}

function listenTcp(options: TcpTransportOptions): Deno.Listener {
  return Deno.listen({
    transport: "tcp",
    hostname: normalizeHost(options.host ?? "0.0.0.0"),
    port: options.port ?? 0,
  });
}

/**
 * SIP over TCP.
 *
 * @example
 * ```ts
 * import { TcpTransport } from "./transport_tcp.ts";
 * import assert from "node:assert/strict";
 * const server = new TcpTransport({ host: "127.0.0.1" });
 * const client = new TcpTransport({ host: "127.0.0.1", listen: false });
 * const got = new Promise<string>((resolve) =>
 *   server.onMessage((m) => resolve(new TextDecoder().decode(m.data)))
 * );
 * const msg = "OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n";
 * await client.send(new TextEncoder().encode(msg), server.local);
 * assert.equal(await got, msg);
 * await client.close();
 * await server.close();
 * ```
 */
export class TcpTransport extends StreamTransport {
  /** Always "tcp". */
  readonly protocol = "tcp" as const;

  #tcpOptions: TcpTransportOptions;

  /** Listens (unless `listen: false`) on `host:port`. Throws when the address cannot be bound. */
  constructor(options: TcpTransportOptions = {}) {
    super(options, options.listen === false ? undefined : listenTcp(options));
    this.#tcpOptions = options;
  }

  /**
   * A new TCP transport listening on `host`, on this port when it is free
   * (else an ephemeral one); this one keeps its connections until closed.
   */
  rebind(host: string): Promise<Transport> {
    const options = { ...this.#tcpOptions, host };
    try {
      return Promise.resolve(new TcpTransport({ ...options, port: this.local.port }));
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
      return Promise.resolve(new TcpTransport({ ...options, port: 0 }));
    }
  }

  /** Opens a TCP connection. */
  protected async openConnection(
    to: HostPort,
    _options: SendOptions,
    signal: AbortSignal,
  ): Promise<StreamConn> {
    return await Deno.connect({ hostname: to.host, port: to.port, signal });
  }
}

/**
 * SIP over TLS (transport "tls", port 5061 by default). Listens only with a
 * certificate and key; verifies servers against the system roots plus
 * `caCerts`, for `SendOptions.serverName` or else the target host.
 *
 * @example
 * ```ts
 * import { TlsTransport } from "./transport_tcp.ts";
 * const client = new TlsTransport({ caCerts: [], listen: false });
 * console.log(client.listening); // false
 * await client.close();
 * ```
 */
export class TlsTransport extends StreamTransport {
  /** Always "tls". */
  readonly protocol = "tls" as const;
  #tls: TlsTransportOptions;

  /** Listens on `host:port` when `cert` and `key` are given (and `listen` is not false). */
  constructor(options: TlsTransportOptions = {}) {
    const canListen = options.listen !== false && options.cert && options.key;
    if (options.listen === true && !canListen) {
      throw new TypeError("Cannot listen for TLS: cert and key are required");
    }
    super(
      options,
      canListen
        ? Deno.listenTls({
          transport: "tcp",
          hostname: normalizeHost(options.host ?? "0.0.0.0"),
          port: options.port ?? 0,
          cert: options.cert!,
          key: options.key!,
        })
        : undefined,
    );
    this.#tls = options;
  }

  /** Opens a TLS connection and completes the handshake (so verification errors surface here). */
  protected async openConnection(
    to: HostPort,
    options: SendOptions,
    signal: AbortSignal,
  ): Promise<StreamConn> {
    const serverName = options.serverName ?? to.host;
    if (this.#tls.insecure) return await connectInsecure(to, serverName, signal);
    const tcp = await Deno.connect({ hostname: to.host, port: to.port, signal });
    let tls: Deno.TlsConn;
    try {
      tls = await Deno.startTls(tcp, {
        hostname: serverName,
        caCerts: this.#tls.caCerts,
        unsafelyDisableHostnameVerification: this.#tls.unsafelyDisableHostnameVerification,
      });
    } catch (error) {
      tcp.close();
      throw error;
    }
    // The connect timeout covers the handshake too: closing the connection
    // makes a pending handshake fail.
    const onAbort = () => {
      try {
        tls.close();
      } catch { /* already closed */ }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal.aborted) throw new Error("aborted");
      await tls.handshake();
    } catch (error) {
      onAbort();
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return tls;
  }
}

/** A node:tls socket without certificate verification, behind the StreamConn shape. */
async function connectInsecure(
  to: HostPort,
  serverName: string,
  signal: AbortSignal,
): Promise<StreamConn> {
  // Loaded here, not imported: only --insecure needs node:tls, and loading
  // it costs every command's start-up a few milliseconds.
  const nodeTls = await import("node:tls");
  return await new Promise<StreamConn>((resolve, reject) => {
    if (signal.aborted) return reject(new Error("aborted"));
    const socket = nodeTls.connect({
      host: to.host,
      port: to.port,
      rejectUnauthorized: false,
      servername: isIPv4(serverName) || isIPv6(serverName) ? undefined : serverName,
    });
    const onAbort = () => {
      socket.destroy();
      reject(new Error("aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (error) => {
      signal.removeEventListener("abort", onAbort);
      reject(error);
    });
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      resolve(new NodeSocketConn(socket));
    });
  });
}

class NodeSocketConn implements StreamConn {
  #socket: NodeTls.TLSSocket;
  #queue: Uint8Array[] = [];
  #ended = false;
  #error?: Error;
  #wake?: () => void;
  readonly localAddr: Deno.NetAddr;
  readonly remoteAddr: Deno.NetAddr;

  constructor(socket: NodeTls.TLSSocket) {
    this.#socket = socket;
    this.localAddr = {
      transport: "tcp",
      hostname: socket.localAddress ?? "",
      port: socket.localPort ?? 0,
    };
    this.remoteAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    socket.on("data", (chunk: Uint8Array) => {
      this.#queue.push(new Uint8Array(chunk));
      this.#wake?.();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("error", (error: Error) => {
      this.#error = error;
      this.#wake?.();
    });
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#queue.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    const head = this.#queue[0];
    const n = Math.min(p.length, head.length);
    p.set(head.subarray(0, n));
    if (n === head.length) this.#queue.shift();
    else this.#queue[0] = head.subarray(n);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (error?: Error | null) => error ? reject(error) : resolve(p.length));
    });
  }

  close(): void {
    this.#ended = true;
    this.#socket.destroy();
    this.#wake?.();
  }
}
