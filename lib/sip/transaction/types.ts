/**
 * Types shared by the transaction layer (RFC 3261 section 17): what it needs
 * from the transport layer, its timer settings and the typed callback
 * interfaces of its transaction users (TU).
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";
import type { InboundInfo, PreparedResponse, Retransmission, Target } from "../transport_layer.ts";

export type { InboundInfo, PreparedResponse, Retransmission, Target } from "../transport_layer.ts";

/**
 * The part of the transport layer the transaction layer uses. The real
 * `TransportLayer` fills in the Via transport, sent-by and rport of the top
 * Via the transaction layer put on a request; tests use a fake.
 */
export interface TransactionTransport {
  /** Sends a request; resolves with the target actually used (e.g. TCP for a large request). */
  sendRequest(req: SipRequest, target: Target): Promise<Target>;
  /** Sends a response back where the request came from (section 18.2.2). */
  sendResponse(res: SipResponse, info?: InboundInfo): Promise<void>;
  /**
   * Optional: formats and routes a response to a request that came over an
   * unreliable transport, for {@linkcode sendPrepared} now and again on each
   * retransmission; undefined for reliable transports. Without it the layer
   * keeps the parsed response for retransmissions. `request` is the request
   * answered: a response derived from it may be kept without its bytes.
   */
  prepareResponse?(
    res: SipResponse,
    info: InboundInfo,
    request?: SipRequest,
  ): PreparedResponse | undefined;
  /**
   * Optional, with `prepareResponse`: sends a prepared response; `again` is
   * the retransmission it answers (needed by one kept without its bytes).
   */
  sendPrepared?(packet: PreparedResponse, again?: Retransmission): Promise<void>;
  /** Registers the handler for inbound requests. */
  onRequest(handler: (req: SipRequest, info: InboundInfo) => void): void;
  /** Registers the handler for inbound responses. */
  onResponse(handler: (res: SipResponse, info: InboundInfo) => void): void;
  /**
   * Optional: registers the handler told when a destination refused a
   * datagram (ICMP port unreachable, RFC 3261 18.4); it returns true when it
   * took the refusal.
   */
  onRefused?(handler: (target: Target, error: Error) => boolean): void;
}

/** Timer settings in milliseconds (RFC 3261 section 17.1.1.1 and table 4). */
export interface TimerOptions {
  /** RTT estimate T1; default 500. */
  t1?: number;
  /** Maximum retransmission interval for non-INVITE requests and INVITE responses, T2; default 4000. */
  t2?: number;
  /** Maximum time a message stays in the network, T4; default 5000. */
  t4?: number;
  /** Timer D on unreliable transports ("at least 32 s"); default 32000. */
  d?: number;
  /** Delay before a server INVITE transaction sends 100 Trying itself (17.2.1); default 200. */
  trying?: number;
  /**
   * Longest an INVITE server transaction waits for the TU's final response:
   * then it answers 500 itself, so that a handler that never answers does not
   * leave it forever (sooner, at the INVITE's Expires, 487 as 13.3.1.1
   * says). Default 180000 (3 minutes, like a proxy's timer C).
   */
  answer?: number;
}

/** {@linkcode TimerOptions} with every value filled. */
export type Timers = Required<TimerOptions>;

/** Fills defaults into timer options. */
export function resolveTimers(options: TimerOptions = {}): Timers {
  return {
    t1: options.t1 ?? 500,
    t2: options.t2 ?? 4000,
    t4: options.t4 ?? 5000,
    d: options.d ?? 32000,
    trying: options.trying ?? 200,
    answer: options.answer ?? 180_000,
  };
}

/** States of the four machines, RFC 6026's Accepted included. */
export type TransactionState =
  | "calling"
  | "trying"
  | "proceeding"
  | "accepted"
  | "completed"
  | "confirmed"
  | "terminated";

/** Callbacks of the TU of a client transaction. All are optional. */
export interface ClientTransactionUser {
  /** A 1xx response. */
  onProvisional?(res: SipResponse): void;
  /**
   * A final response. Called once for non-2xx finals and for non-INVITE
   * requests; for INVITE, every 2xx that matches while the transaction is
   * Accepted (retransmissions, other forks) is passed up too (RFC 6026 8.4):
   * the TU acknowledges each.
   */
  onFinal?(res: SipResponse): void;
  /** Timer B or F fired: no final response (treat as 408, section 8.1.3.1). */
  onTimeout?(): void;
  /** The transport failed to send (treat as 503, section 8.1.3.1). */
  onTransportError?(error: Error): void;
  /** The transaction reached Terminated. */
  onTerminated?(): void;
}

/** Callbacks of the TU of a server transaction. All are optional. */
export interface ServerTransactionUser {
  /**
   * A CANCEL for this INVITE arrived and the UA core answered it 200 and the
   * INVITE 487, both with the transaction's To tag (9.2).
   */
  onCancel?(cancel: SipRequest): void;
  /**
   * The TU gave no final response in time (see {@linkcode TimerOptions.answer}):
   * the transaction answered `status` (487 at the INVITE's Expires, else 500).
   */
  onExpired?(status: number): void;
  /** Timer H fired: the ACK for a non-2xx final never came (17.2.1). */
  onAckTimeout?(): void;
  /** Sending a response failed (17.2.4). */
  onTransportError?(error: Error): void;
  /** The transaction reached Terminated. */
  onTerminated?(): void;
}

/** A log sink for diagnostics (stderr in the CLI). */
export type TransactionLog = (message: string) => void;
