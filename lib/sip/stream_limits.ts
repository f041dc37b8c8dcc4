/**
 * The limits of the TCP and TLS transports (see `transport_tcp.ts`), in a
 * module of their own so that command-line help can show the defaults
 * without loading the transports.
 *
 * @module
 */

/** The limits a stream transport applies to what its peers may make it hold. */
export interface StreamLimits {
  /** Most connections open at once. */
  maxConnections: number;
  /** Most bytes of incomplete messages held, all connections together. */
  maxBuffered: number;
  /** Milliseconds an incomplete message may sit before its connection is closed (0: no limit). */
  messageTimeout: number;
}

/**
 * Defaults of {@linkcode StreamLimits}: like Kamailio's `tcp_max_connections`
 * and `tcp_msg_read_timeout`, they keep a flood of connections that send
 * half a message and stop from taking the process's memory, while peers that
 * keep a connection open and send whole messages never meet them.
 */
export const DEFAULT_STREAM_LIMITS: Readonly<StreamLimits> = Object.freeze({
  maxConnections: 1024,
  maxBuffered: 16 * 1024 * 1024,
  messageTimeout: 10_000,
});
