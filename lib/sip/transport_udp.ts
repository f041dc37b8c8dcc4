/**
 * SIP over UDP (RFC 3261 section 18): one datagram socket, IPv4 or IPv6,
 * one message per datagram.
 *
 * ICMP errors (section 18.4): on Linux, with `--allow-ffi`, the socket hears
 * the ICMP port unreachable that answers a datagram sent to a port where
 * nobody listens (see `_icmp.ts` for how, and why Deno needs it). As on a
 * connected socket, the next send to that destination then rejects with
 * `Deno.errors.ConnectionRefused`, and the owner set with `onRefused` (the
 * transport layer) is told at once: a client transaction that has had no
 * response fails with a transport error as soon as the refusal comes,
 * instead of at timer F (32 s), and RFC 3263 failover moves on to the next
 * server. A short-lived sender may turn this on only when an answer is slow
 * to come (`icmpAfter`): an answered request then never pays for the set-up.
 *
 * Bursts (see `_udp_fast.ts`): on Linux with `--allow-ffi`, a socket with
 * more than one receiver (a listener; a one-shot sender asks for one) waits
 * for the socket with one Deno receive and then takes the datagrams that
 * wait through libc's `recvmmsg` (one call), up to {@linkcode DRAIN}, in arrival order;
 * the datagrams sent in one turn of the event loop (the answers to such a
 * burst, after the event writer's one write) go out with one `sendmmsg` at
 * the end of the turn. What libc cannot do there (a full send buffer, a host
 * that is not an IP literal) goes through Deno's ops as before; without
 * FFI, eight Deno receives are kept pending instead.
 *
 * @module
 */

import type { IcmpErrorQueue } from "./_icmp.ts";
import type { FastUdp } from "./_udp_fast.ts";
import { formatHostPort, hostPortKey, normalizeHost, routeLocalAddress } from "./_net.ts";
import type {
  HostPort,
  Inbound,
  InboundHandler,
  MessageHandlerOptions,
  RefusalHandler,
  Transport,
} from "./transport.ts";

// The hook that drops the cached interface list behind `localFor` (for a
// host whose addresses changed, when `moveUserAgent` is not used).
export { invalidateLocalAddresses } from "./_net.ts";

/** Options of {@linkcode UdpTransport}. */
export interface UdpTransportOptions {
  /** Address to bind: an IPv4 or IPv6 literal. Default "0.0.0.0". */
  host?: string;
  /** Port to bind; 0 picks an ephemeral port. Default 0. */
  port?: number;
  /**
   * Receive buffer to ask the kernel for, in bytes (SO_RCVBUF; Linux with
   * `--allow-ffi` only, capped by net.core.rmem_max unless the process may
   * exceed it). Default 1 MiB (the kernel reports 2 MiB with its overhead):
   * some 1,400 MESSAGEs of the size sipp sends, 280 ms of them at 5,000/s,
   * wait there while the process is busy (a garbage collection, a burst)
   * instead of being dropped and retransmitted 500 ms later. Not deeper: a
   * datagram that waits longer than T1 is retransmitted anyway, and under
   * overload the copies would only add to the queue. 0 keeps the system's
   * default (often 208 KiB).
   */
  receiveBuffer?: number;
  /**
   * Receives kept pending on the socket at once (see {@linkcode RECEIVERS}).
   * Default 8; a short-lived sender that awaits a few responses needs 1.
   */
  receivers?: number;
  /**
   * When to turn on hearing ICMP errors (see the module doc): undefined (the
   * default) at once; a number of milliseconds, that long after the first
   * send, unless the transport was closed before. The set-up (a libc look-up
   * and a search of /proc for the socket) costs a few milliseconds that a
   * one-shot sender answered at once need not pay. A refusal of a datagram
   * sent before the set-up is not heard: keep the delay well under T1 (500
   * ms), so that the first retransmission, which the refusal answers again,
   * is heard. Default undefined.
   */
  icmpAfter?: number;
  /** Receives problems of the receive loop (a handler that threw, a socket error). */
  logger?: (level: "debug" | "info" | "warn" | "error", msg: string) => void;
  /**
   * Called once when the socket is given up after 1,000 receive errors in a
   * row: the transport is then closed (sends reject), so its owner can stop
   * or report instead of listening on a dead socket.
   */
  onFailure?: (error: Error) => void;
}

/**
 * The libc code (receive buffer, ICMP errors, burst I/O: `_icmp.ts`,
 * `_udp_fast.ts`), loaded by the first socket that needs it; a one-shot
 * sender's socket (one receiver, the default receive buffer, ICMP deferred)
 * does not, and starts without it.
 */
let libc: { icmp: typeof import("./_icmp.ts"); fast: typeof import("./_udp_fast.ts") } | undefined;

async function loadLibc(): Promise<NonNullable<typeof libc>> {
  const [icmp, fast] = await Promise.all([import("./_icmp.ts"), import("./_udp_fast.ts")]);
  return libc ??= { icmp, fast };
}

/** True when a socket with these options uses the libc code as soon as it is bound. */
function needsLibc(options: UdpTransportOptions): boolean {
  return (options.receiveBuffer ?? RECEIVE_BUFFER) > 0 || options.icmpAfter === undefined ||
    (options.receivers ?? RECEIVERS) > 1;
}

/** Default of {@linkcode UdpTransportOptions.receiveBuffer}. */
const RECEIVE_BUFFER = 1024 * 1024;

/** Largest UDP payload we read. */
const MAX_DATAGRAM = 65_535;

/**
 * Receives kept pending on the socket at once. Deno delivers one datagram
 * per receive call, and the results of the calls that completed in one turn
 * of the event loop together: with several pending, a burst is handled in
 * one turn instead of one turn per datagram, so the work done once per turn
 * (the event writer's batch, the loop itself) is shared. Each datagram is
 * still taken from the socket in arrival order and handed on in that order.
 */
const RECEIVERS = 8;

/**
 * At most this many datagrams taken through libc after one wake-up (see
 * `#drain`) before the loop gives the event loop a turn: their event lines
 * go out in one write, and their answers after it. Small, so that the
 * first answers of a burst do not wait for the whole burst: in a closed loop
 * (sipp, 64 in flight) 8 gave a better rate than 16 or 32 at the same CPU
 * per message (README, MESSAGE flood).
 */
const DRAIN = 8;

/**
 * How long an ICMP refusal waits for the next send to its destination. It
 * covers the longest gap between retransmissions of a transaction (T2, 4 s)
 * twice; an older one no longer says anything about the server.
 */
const REFUSAL_TTL_MS = 8_000;
/**
 * How often a socket whose ICMP set-up was deferred reads its error queue
 * (see `#watchIcmp`): a refusal is heard this long after it came, at most.
 */
const ICMP_POLL_MS = 50;
/** At most this many remembered refusals (the oldest are forgotten first). */
const MAX_REFUSALS = 1024;

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
  /** The handler copies what it keeps: it gets views of the receive buffer. */
  #lend = false;
  #closed = false;
  #loop: Promise<unknown>;
  /** Receive errors in a row (see `onFailure`). */
  #failures = 0;
  #logger?: UdpTransportOptions["logger"];
  #onFailure?: UdpTransportOptions["onFailure"];
  #receiveBuffer: number;
  #receivers: number;
  #receiveBufferSize?: number;
  #failure?: Error;
  #icmp?: IcmpErrorQueue;
  /** Receive and send through libc (Linux, --allow-ffi), when this socket has them. */
  #fast?: FastUdp;
  /** Datagrams queued in `#fast` for the next `#flush`, with their callers. */
  #batch: {
    data: Uint8Array | string;
    to: HostPort;
    resolve: () => void;
    reject: (error: unknown) => void;
  }[] = [];
  #icmpAfter?: number;
  /** The deferred ICMP set-up (see `icmpAfter`), then the reads of its error queue. */
  #icmpTimer?: ReturnType<typeof setTimeout>;
  #onRefused?: RefusalHandler;
  /** Destinations that answered with ICMP port unreachable -> when (ms). */
  #refused = new Map<string, number>();

  /**
   * Resolves once the socket is set up (receive buffer, ICMP errors, burst
   * I/O, the receive loops): at once when the libc code it needs is loaded,
   * else when it is (the first such socket of a process made with `new`;
   * until then sends go through Deno and datagrams wait in the socket).
   * {@linkcode UdpTransport.open} waits for it.
   */
  readonly ready: Promise<void>;

  /**
   * Binds a socket and resolves with it set up (see {@linkcode ready}).
   * Throws when the address cannot be bound.
   */
  static async open(options: UdpTransportOptions = {}): Promise<UdpTransport> {
    if (libc === undefined && needsLibc(options)) await loadLibc();
    return new UdpTransport(options);
  }

  /**
   * Binds the socket and starts receiving (see {@linkcode ready}). Throws
   * when the address cannot be bound.
   */
  constructor(options: UdpTransportOptions = {}) {
    this.#logger = options.logger;
    this.#onFailure = options.onFailure;
    this.#conn = Deno.listenDatagram({
      transport: "udp",
      hostname: normalizeHost(options.host ?? "0.0.0.0"),
      port: options.port ?? 0,
    });
    const addr = this.#conn.addr as Deno.NetAddr;
    this.local = { host: normalizeHost(addr.hostname), port: addr.port };
    this.#receiveBuffer = options.receiveBuffer ?? RECEIVE_BUFFER;
    this.#icmpAfter = options.icmpAfter;
    this.#receivers = Math.max(1, options.receivers ?? RECEIVERS);
    if (libc !== undefined || !needsLibc(options)) {
      this.#loop = this.#start();
      this.ready = Promise.resolve();
    } else {
      const loaded = loadLibc();
      this.#loop = loaded.then(() => this.#closed ? undefined : this.#start());
      this.ready = loaded.then(() => {});
    }
  }

  /** Sets the socket up (with the libc code when it needs it, loaded by now) and starts receiving. */
  #start(): Promise<unknown> {
    if (this.#receiveBuffer > 0) {
      this.#receiveBufferSize = libc!.icmp.enlargeReceiveBuffer(this.local, this.#receiveBuffer);
      this.#logger?.(
        "debug",
        `UDP port ${this.local.port}: receive buffer ${
          this.#receiveBufferSize ?? "unchanged (needs Linux and --allow-ffi)"
        }`,
      );
    }
    if (this.#icmpAfter === undefined) this.#watchIcmp(false);
    const loops: Promise<void>[] = [];
    // A socket that expects bursts reads and sends through libc when it can.
    if (this.#receivers > 1) this.#fast = libc!.fast.openFastUdp(this.local);
    const receivers = this.#fast ? 1 : this.#receivers;
    for (let i = 0; i < receivers; i++) loops.push(this.#receive());
    return Promise.all(loops);
  }

  /**
   * True when this socket takes bursts and sends its answers in batches
   * through libc (Linux with --allow-ffi, more than one receiver): see the
   * module doc.
   */
  get batching(): boolean {
    return this.#fast !== undefined;
  }

  /**
   * True when ICMP errors are heard (Linux with --allow-ffi): see the module
   * doc. With `icmpAfter`, false until the deferred set-up has run.
   */
  get hearsIcmp(): boolean {
    return this.#icmp !== undefined;
  }

  /** Sets the handler told when a destination refused a datagram (see {@linkcode Transport.onRefused}). */
  onRefused(handler: RefusalHandler): void {
    this.#onRefused = handler;
  }

  /**
   * Turns on hearing ICMP errors (once; see the module doc). With `poll`,
   * the error queue is also read every {@linkcode ICMP_POLL_MS} until
   * close: a pending receive does not wake up for an ICMP error (only the
   * next send or receive sees it), and a sender whose answer is late (the
   * deferred set-up) should hear a refusal before its next retransmission.
   */
  #watchIcmp(poll: boolean): void {
    if (this.#icmp || this.#closed) return;
    if (libc === undefined) {
      // A deferred set-up loads the libc code now.
      loadLibc().then(() => this.#watchIcmp(poll));
      return;
    }
    this.#icmp = libc.icmp.watchIcmpErrors(this.local);
    if (!this.#icmp) {
      this.#logger?.(
        "debug",
        `UDP port ${this.local.port}: ICMP errors not available (needs Linux and --allow-ffi); ` +
          `an unreachable server is noticed by timeout only`,
      );
      return;
    }
    this.#logger?.("debug", `UDP port ${this.local.port}: ICMP errors heard (IP_RECVERR)`);
    if (poll) this.#icmpTimer = setInterval(() => this.#readIcmp(), ICMP_POLL_MS);
  }

  /**
   * The receive buffer the kernel reports for the socket after
   * {@linkcode UdpTransportOptions.receiveBuffer} was applied (about twice
   * the size granted), or undefined when it could not be set.
   */
  get receiveBufferSize(): number | undefined {
    return this.#receiveBufferSize;
  }

  /** Why the socket was given up (1,000 receive errors in a row), once it was; see `onFailure`. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /**
   * Sets the handler for inbound datagrams. With `copies`, each datagram's
   * `data` is a view of the receive buffer, valid until the handler returns.
   */
  onMessage(handler: InboundHandler, options?: MessageHandlerOptions): void {
    this.#handler = handler;
    this.#lend = options?.copies ?? false;
  }

  /**
   * Sends one datagram. Rejects after close, on a socket error, and with
   * `Deno.errors.ConnectionRefused` when `to` answered an earlier datagram
   * with ICMP port unreachable (reported once, like a connected socket).
   */
  send(data: Uint8Array, to: HostPort): Promise<void> {
    return this.#send(data, to);
  }

  /**
   * Sends one datagram given as text (its UTF-8 bytes), as `send` does: in a
   * batch, encoded straight into the batch's buffer.
   */
  sendText(text: string, to: HostPort): Promise<void> {
    return this.#send(text, to);
  }

  #send(data: Uint8Array | string, to: HostPort): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new Error("Cannot send over UDP: transport is closed", { cause: this.#failure }),
      );
    }
    try {
      this.#takeRefusal(to);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#icmpAfter !== undefined) {
      // Deferred ICMP set-up (see `icmpAfter`): armed by the first send.
      const after = this.#icmpAfter;
      this.#icmpAfter = undefined;
      this.#icmpTimer = setTimeout(() => {
        this.#icmpTimer = undefined;
        this.#watchIcmp(true);
      }, after);
    }
    const fast = this.#fast;
    if (fast) {
      const text = typeof data === "string";
      if (text ? fast.queueText(data, to) : fast.queue(data, to)) return this.#queued(data, to);
      if (fast.queued > 0) {
        // A full batch: send it, then this one joins the next. (Too big or
        // an address of another kind: sent after the batch, in order.)
        this.#flush();
        if (text ? fast.queueText(data, to) : fast.queue(data, to)) {
          return this.#queued(data, to);
        }
      }
    }
    return this.#sendOne(bytesOf(data), to);
  }

  /** A datagram queued for the batch: resolves when it went out. */
  #queued(data: Uint8Array | string, to: HostPort): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#batch.push({ data, to, resolve, reject });
    if (this.#batch.length === 1) queueMicrotask(this.#flushLater);
    return promise;
  }

  #flushLater = () => this.#flush();

  /**
   * Sends the batch: the datagrams that `send` queued in this turn of the
   * event loop (the answers of one burst), with one system call. Those from
   * the first that failed on are sent one by one, which waits for room or
   * reports the error each met.
   */
  #flush(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    if (this.#closed) {
      for (const b of batch) {
        b.reject(new Error("Cannot send over UDP: transport is closed", { cause: this.#failure }));
      }
      return;
    }
    const sent = Math.max(0, this.#fast!.flush());
    for (let i = 0; i < sent; i++) batch[i].resolve();
    if (sent === batch.length) return;
    // A refusal may have cut the batch short; its error is on the queue.
    if (this.#icmp) this.#readIcmp();
    for (let i = sent; i < batch.length; i++) {
      const b = batch[i];
      let refused = false;
      try {
        this.#takeRefusal(b.to);
      } catch (error) {
        b.reject(error);
        refused = true;
      }
      if (!refused) this.#sendOne(bytesOf(b.data), b.to).then(b.resolve, b.reject);
    }
  }

  /** Sends one datagram now: through libc when it can, else Deno's send. */
  async #sendOne(data: Uint8Array, to: HostPort): Promise<void> {
    if (this.#fast) {
      let sent = this.#fast.send(data, to);
      if (sent === libc!.fast.REFUSED) {
        // As below: read the queue, then send once more.
        this.#readIcmp();
        this.#takeRefusal(to);
        sent = this.#fast.send(data, to);
      }
      // Else (no room in the send buffer, an address libc I/O does not
      // take, another error) Deno's send waits, sends or reports.
      if (sent === 0) return;
    }
    const addr: Deno.NetAddr = {
      transport: "udp",
      hostname: normalizeHost(to.host),
      port: to.port,
    };
    try {
      await this.#conn.send(data, addr);
    } catch (error) {
      if (!this.#icmp || !(error instanceof Deno.errors.ConnectionRefused)) throw error;
      // The socket's pending ICMP error, which may concern another
      // destination: read the queue, then send (nothing was sent yet).
      this.#readIcmp();
      this.#takeRefusal(to);
      await this.#conn.send(data, addr);
    }
  }

  /** The bound address, or for 0.0.0.0/:: the interface address that routes to `to`. */
  localFor(to: HostPort): Promise<HostPort> {
    return Promise.resolve({
      host: routeLocalAddress(this.local.host, to.host),
      port: this.local.port,
    });
  }

  /**
   * A new socket on `host`, on this port when it is free (else an ephemeral
   * one), with the same handler, logger and `onFailure`; this one stays open
   * until closed.
   */
  rebind(host: string): Promise<Transport> {
    const options = {
      host,
      // A deferred set-up not yet done stays deferred on the new socket.
      icmpAfter: this.#icmpAfter,
      logger: this.#logger,
      receiveBuffer: this.#receiveBuffer,
      receivers: this.#receivers,
      onFailure: this.#onFailure,
    };
    let next: UdpTransport;
    try {
      next = new UdpTransport({ ...options, port: this.local.port });
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
      next = new UdpTransport({ ...options, port: 0 });
    }
    if (this.#handler) next.onMessage(this.#handler, { copies: this.#lend });
    if (this.#onRefused) next.onRefused(this.#onRefused);
    return next.ready.then(() => next);
  }

  /** Closes the socket and waits for the receive loop to end. */
  async close(): Promise<void> {
    if (this.#closed) {
      await this.#loop;
      return;
    }
    // What was sent before close goes out.
    this.#flush();
    this.#closed = true;
    // One id space for both kinds of timer: clearTimeout clears an interval too.
    if (this.#icmpTimer !== undefined) clearTimeout(this.#icmpTimer);
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    await this.#loop;
  }

  /** Throws when `to` refused a datagram lately, and forgets that refusal. */
  #takeRefusal(to: HostPort): void {
    if (this.#refused.size === 0) return;
    const key = hostPortKey(to);
    const at = this.#refused.get(key);
    if (at === undefined) return;
    this.#refused.delete(key);
    if (Date.now() - at > REFUSAL_TTL_MS) return;
    throw refusal(to);
  }

  /**
   * Reads the socket's queued ICMP errors: each refusal goes to the
   * `onRefused` handler, and when it does not take it, into the refusals
   * that the next send to that destination rejects with.
   */
  #readIcmp(): void {
    for (const e of this.#icmp?.drain() ?? []) {
      if (!e.refused) {
        this.#logger?.("debug", `ICMP error (errno ${e.errno}) for ${formatHostPort(e.to)}`);
        continue;
      }
      this.#logger?.("debug", `ICMP port unreachable from ${formatHostPort(e.to)}`);
      try {
        if (this.#onRefused?.(e.to, refusal(e.to))) continue;
      } catch (error) {
        this.#logger?.("error", `UDP refusal handler threw: ${error}`);
      }
      const key = hostPortKey(e.to);
      this.#refused.delete(key);
      this.#refused.set(key, Date.now());
      if (this.#refused.size > MAX_REFUSALS) {
        this.#refused.delete(this.#refused.keys().next().value!);
      }
    }
  }

  /**
   * One of the {@linkcode RECEIVERS} receive loops; with libc I/O the only
   * one, which after each wake-up takes what else waits (see `#drain`).
   */
  async #receive(): Promise<void> {
    const buffer = new Uint8Array(MAX_DATAGRAM);
    while (!this.#closed) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await this.#conn.receive(buffer);
      } catch (error) {
        if (this.#closed || this.#receiveFailed(error)) return;
        continue;
      }
      this.#failures = 0;
      const addr = from as Deno.NetAddr;
      this.#deliver(data, { host: normalizeHost(addr.hostname), port: addr.port });
      if (this.#fast) this.#drain(this.#fast);
    }
  }

  /**
   * Takes the datagrams that wait on the socket through libc, in arrival
   * order, up to {@linkcode DRAIN} of them, with one `recvmmsg` (a second
   * only when the first met an ICMP error); stops when none is left (a
   * short batch says so), or on an error other than an ICMP one, which the
   * next Deno receive then meets and reports.
   */
  #drain(fast: FastUdp): void {
    for (let left = DRAIN; left > 0 && !this.#closed;) {
      const n = fast.receiveMany(left);
      if (n === libc!.fast.REFUSED) {
        this.#readIcmp();
        continue;
      }
      if (n <= 0) return;
      for (let i = 0; i < n && !this.#closed; i++) this.#deliver(fast.received(i), fast.sender(i));
      if (n < left) return;
      left -= n;
    }
  }

  /**
   * Hands one datagram to the handler: copied out of the receive buffer, or
   * the buffer itself to a handler that copies what it keeps (`copies`).
   */
  #deliver(data: Uint8Array, remote: HostPort): void {
    // Empty datagrams and bare CRLF keep-alives carry no message.
    if (isBlank(data)) return;
    const inbound: Inbound = {
      data: this.#lend ? data : data.slice(),
      remote,
      local: this.local,
      transport: this,
    };
    try {
      this.#handler?.(inbound);
    } catch (error) {
      this.#logger?.("error", `UDP message handler threw: ${error}`);
    }
  }

  /** Handles a failed receive; returns true when the loop must end. */
  #receiveFailed(error: unknown): boolean {
    if (this.#icmp && error instanceof Deno.errors.ConnectionRefused) {
      // A pending ICMP error (see the module doc): remember it, go on.
      this.#readIcmp();
      return false;
    }
    // Other socket errors: log and keep receiving.
    this.#logger?.("warn", `UDP receive error on port ${this.local.port}: ${error}`);
    if (++this.#failures < 1000) return false;
    if (this.#failure) return true; // another loop gave up first
    // Giving up silently would leave a process listening on a dead
    // socket: close, log, and tell the owner.
    this.#failure = new Error(
      `UDP socket on port ${this.local.port} failed 1000 receives in a row (last: ${error}); ` +
        "closed",
      { cause: error },
    );
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#logger?.("error", this.#failure.message);
    try {
      this.#onFailure?.(this.#failure);
    } catch (e) {
      this.#logger?.("error", `UDP onFailure handler threw: ${e}`);
    }
    return true;
  }
}

const utf8 = new TextEncoder();

/** The bytes of a datagram given as bytes or as text. */
function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? utf8.encode(data) : data;
}

/** The error of a send to `to` after it refused a datagram. */
function refusal(to: HostPort): Error {
  return new Deno.errors.ConnectionRefused(
    `Cannot send over UDP to ${formatHostPort(to)}: ICMP port unreachable`,
  );
}

function isBlank(data: Uint8Array): boolean {
  for (const b of data) {
    if (b !== 13 && b !== 10 && b !== 32 && b !== 9 && b !== 0) return false;
  }
  return true;
}
