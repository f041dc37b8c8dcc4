/**
 * The transport interface (RFC 3261 section 18). UDP, TCP, TLS and the
 * in-memory loop transport all implement {@linkcode Transport}; the layers
 * above never touch sockets.
 *
 * @module
 */

/** Transport protocols sipkit speaks. */
export type TransportProtocol = "udp" | "tcp" | "tls";

/** A host (IPv4, IPv6 without brackets, or name) and port. */
export interface HostPort {
  /** Host address. */
  host: string;
  /** Port number. */
  port: number;
}

/** One SIP message received: a datagram, or one framed message from a stream. */
export interface Inbound {
  /** The message bytes (exactly one message). */
  data: Uint8Array;
  /** Who sent it (source address of the packet or connection). */
  remote: HostPort;
  /** The local address it arrived on. */
  local: HostPort;
  /** The transport it arrived on. */
  transport: Transport;
}

/** Per-message send options (all optional). */
export interface SendOptions {
  /**
   * TLS only: the name the server certificate must match when a new
   * connection is opened (e.g. the domain of a SIPS URI while `to.host` is
   * the resolved address). Default: `to.host`.
   */
  serverName?: string;
}

/** Called for each inbound message. */
export type InboundHandler = (message: Inbound) => void;

/** Options of {@linkcode Transport.onMessage}. */
export interface MessageHandlerOptions {
  /**
   * The handler is done with `data` when it returns (it copies whatever it
   * keeps): a datagram transport may then hand it a view of its receive
   * buffer instead of a copy of each datagram, one allocation less per
   * message. Default false (each message's `data` is its own).
   */
  copies?: boolean;
}

/**
 * Told that `to` refused a datagram (ICMP port unreachable); `error` is what
 * a send to it would reject with. Returns true when the refusal was taken.
 */
export type RefusalHandler = (to: HostPort, error: Error) => boolean;

/** A bound SIP transport. */
export interface Transport {
  /** Protocol name used in Via ("udp" gives "SIP/2.0/UDP"). */
  readonly protocol: TransportProtocol;
  /** True for stream transports (no retransmissions needed, section 17.1.1.2). */
  readonly reliable: boolean;
  /** The bound local address (the real port when 0 was asked). */
  readonly local: HostPort;
  /** Sends one message to a destination; for streams, over an existing connection when one exists, else a new one. */
  send(data: Uint8Array, to: HostPort, options?: SendOptions): Promise<void>;
  /**
   * Sends one message given as text, its bytes the text in UTF-8 (a message
   * without a body, as `formatHead` writes it), as `send` does. Optional: a
   * transport that can encode it into its own buffer saves the message's
   * own; without it the caller encodes and calls `send`.
   */
  sendText?(text: string, to: HostPort): Promise<void>;
  /** Sets the handler for inbound messages. */
  onMessage(handler: InboundHandler, options?: MessageHandlerOptions): void;
  /**
   * The local address that messages to `to` leave from, as Via sent-by and
   * Contact should show it: the bound address, or for a transport bound to
   * all interfaces the address that routes to `to`. Optional: when absent,
   * `local` is used.
   */
  localFor?(to: HostPort, options?: SendOptions): Promise<HostPort>;
  /**
   * Mobility: a transport bound to `host` (the same port when it is free)
   * that replaces this one after the host's address changed. It may return
   * itself (moved) or a new transport; the caller closes this one when a new
   * one comes back. Optional: without it, a transport bound to one address
   * cannot follow the host.
   */
  rebind?(host: string): Promise<Transport>;
  /**
   * Mobility: closes the stream connections whose local address is `host`
   * (an address the host lost). Returns how many were closed. Optional:
   * datagram transports have none.
   */
  closeConnectionsFrom?(host: string): number;
  /**
   * Datagram transports that hear ICMP errors (RFC 3261 18.4): sets the
   * handler told when a destination refused a datagram (ICMP port
   * unreachable), with the error a send to it would reject with. The handler
   * returns true when it took the refusal (a request waiting on that
   * destination failed on it); otherwise the next send there rejects with it.
   * Optional.
   */
  onRefused?(handler: RefusalHandler): void;
  /** Closes the socket(s); pending sends reject. */
  close(): Promise<void>;
}
