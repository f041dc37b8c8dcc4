/**
 * The transaction layer (RFC 3261 section 17): creates client transactions
 * for the TU, matches inbound responses and requests to transactions
 * (17.1.3, 17.2.3), creates server transactions for new requests and passes
 * those up, absorbs retransmissions.
 *
 * @module
 */

import { type Clock, systemClock, type TimerId } from "../clock.ts";
import { createResponse, type SipRequest, type SipResponse } from "../message.ts";
import { clientTransactionKey, serverTransactionKey } from "./branch.ts";
import { addTopVia, createCancel, transactionTag } from "./build.ts";
import { ClientInviteTransaction } from "./client_invite.ts";
import { ClientNonInviteTransaction } from "./client_non_invite.ts";
import type { ClientTransaction } from "./client_transaction.ts";
import type { ServerInviteTransaction } from "./server_invite.ts";
import type { ServerNonInviteTransaction } from "./server_non_invite.ts";
import type { ServerTransaction } from "./server_transaction.ts";
import type { TransactionContext } from "./_context.ts";
import {
  type ClientTransactionUser,
  type InboundInfo,
  type PreparedResponse,
  resolveTimers,
  type Target,
  type TimerOptions,
  type Timers,
  type TransactionLog,
  type TransactionTransport,
} from "./types.ts";
import type { KeyTable } from "../_key_ring.ts";
import { hostPortKey } from "../_net.ts";
import type * as ServerSide from "./_server_side.ts";

/** The server side of the layer (`_server_side.ts`), once loaded. */
let serverSide: typeof ServerSide | undefined;

/**
 * Loads the server side of the transaction layer (server transactions and
 * timer J's table). A layer loads it with its first inbound request and
 * handles the requests that came meanwhile in order once it is there;
 * `UserAgent.create` loads it up front, so that requests are
 * handled as they come. Awaiting it before giving a layer requests makes
 * their handling synchronous from the first one.
 */
export async function loadServerTransactions(): Promise<void> {
  serverSide ??= await import("./_server_side.ts");
}

/** Either client transaction. */
export type AnyClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction;
/** Either server transaction. */
export type AnyServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction;

/**
 * Receives each new inbound request (not a retransmission) with its server
 * transaction; an ACK has none (it acknowledges a 2xx, which is the TU's
 * business, 17.2.1 and RFC 6026).
 */
export type RequestHandler = (
  req: SipRequest,
  tx: AnyServerTransaction | undefined,
  info: InboundInfo,
) => void;

/** Receives responses that match no client transaction (e.g. 2xx retransmissions, 13.2.2.4). */
export type StrayResponseHandler = (res: SipResponse, info: InboundInfo) => void;

/** Options of {@linkcode TransactionLayer}. */
export interface TransactionLayerOptions {
  /** The transport layer (or a fake in tests). */
  transport: TransactionTransport;
  /** Clock for every timer; default the system clock. */
  clock?: Clock;
  /** T1, T2, T4, timer D and the 100 Trying delay. */
  timers?: TimerOptions;
  /** Diagnostics sink; default none. */
  log?: TransactionLog;
}

/** Options of {@linkcode TransactionLayer.request}. */
export interface RequestOptions {
  /**
   * Keep the request's top Via and its branch (a CANCEL must carry the Via of
   * the request it cancels, 9.1). By default every Via is replaced by a new
   * top Via with a fresh branch.
   */
  keepVia?: boolean;
}

/** Options of {@linkcode TransactionLayer.cancel}. */
export interface CancelOptions {
  /** Callbacks for the CANCEL's own non-INVITE transaction. */
  user?: ClientTransactionUser;
  /** Reason header value (RFC 3326). */
  reason?: string;
}

/**
 * The transaction layer.
 *
 * @example
 * ```ts
 * import { TransactionLayer } from "./layer.ts";
 * import { ManualClock } from "../clock.ts";
 * import { createRequest } from "../message.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * const sent: number[] = [];
 * const tl = new TransactionLayer({
 *   clock,
 *   transport: { // a fake transport layer that loses everything
 *     sendRequest: (_req, target) => (sent.push(clock.now()), Promise.resolve(target)),
 *     sendResponse: () => Promise.resolve(),
 *     onRequest: () => {},
 *     onResponse: () => {},
 *   },
 * });
 * const req = createRequest("OPTIONS", "sip:bob@192.0.2.2", {
 *   headers: {
 *     "Max-Forwards": "70",
 *     From: "<sip:alice@example.test>;tag=1",
 *     To: "<sip:bob@example.test>",
 *     "Call-ID": "c1",
 *     CSeq: "1 OPTIONS",
 *   },
 * });
 * const tx = tl.request(req, { protocol: "udp", host: "192.0.2.2", port: 5060 });
 * clock.advance(32_000); // timer F
 * assert.equal(tx.state, "terminated");
 * assert.deepEqual(sent.slice(0, 5), [0, 500, 1500, 3500, 7500]);
 * await tx.response.catch((e) => assert.equal(e.status, 408));
 * ```
 */
export class TransactionLayer {
  /** New inbound requests; set by the TU (UA core). */
  onRequest?: RequestHandler;
  /** Responses that match no client transaction. */
  onStrayResponse?: StrayResponseHandler;
  /** The timer values in use. */
  readonly timers: Timers;
  /** The clock in use. */
  readonly clock: Clock;

  readonly #transport: TransactionTransport;
  readonly #log: TransactionLog;
  readonly #clients = new Map<string, ClientTransaction>();
  /**
   * Live server transactions (not yet completed over UDP: a few at a time
   * even under a flood, since a MESSAGE is answered at once), in a
   * {@linkcode KeyTable}: a Map with that churn keeps young objects alive.
   */
  #servers?: KeyTable<ServerTransaction>;
  /**
   * Completed entries in the order their timer J runs out (all wait 64*T1),
   * found by key in the ring's own table. A key is in at most one of the two.
   */
  #completed?: ServerSide.CompletedRing;
  /** Requests that came before the server side was loaded, in order. */
  #pending?: [SipRequest, InboundInfo][];
  #sweep?: TimerId;
  readonly #cancelled = new WeakSet<ClientInviteTransaction>();
  readonly #ctx: TransactionContext;

  /** Creates the layer and registers it with the transport for inbound messages. */
  constructor(options: TransactionLayerOptions) {
    this.#transport = options.transport;
    this.clock = options.clock ?? systemClock;
    this.timers = resolveTimers(options.timers);
    this.#log = options.log ?? (() => {});
    this.#ctx = {
      transport: this.#transport,
      clock: this.clock,
      timers: this.timers,
      log: this.#log,
      remove: (key, tx) => {
        if (this.#clients.get(key) === tx) this.#clients.delete(key);
        const servers = this.#servers;
        if (servers !== undefined && servers.get(key) === tx) {
          servers.delete(key);
          return;
        }
        const ring = this.#completed;
        if (ring === undefined || ring.size === 0) return;
        const seq = ring.find(key);
        if (seq >= 0 && ring.extras[ring.slot(seq)]?.tx === tx) ring.unindex(seq);
      },
      complete: (tx, res, onError) => this.#complete(tx, res, onError),
    };
    if (serverSide !== undefined) {
      this.#servers = new serverSide.KeyTable<ServerTransaction>();
      this.#completed = new serverSide.CompletedRing();
    }
    this.#transport.onRequest((req, info) => this.receiveRequest(req, info));
    this.#transport.onResponse((res, info) => this.receiveResponse(res, info));
    this.#transport.onRefused?.((target, error) => this.#refused(target, error));
  }

  /**
   * RFC 3261 18.4 and 17.1.4: `target` refused a datagram (ICMP port
   * unreachable). The client transactions over UDP to it that have had no
   * response yet end with a transport error now, rather than at their next
   * retransmission; true when there was one.
   */
  #refused(target: Target, error: Error): boolean {
    const key = hostPortKey(target);
    let took = false;
    for (const tx of [...this.#clients.values()]) {
      const to = tx.target;
      if (to.protocol !== target.protocol || to.port !== target.port) continue;
      if (hostPortKey(to) === key && tx.refused(error)) took = true;
    }
    return took;
  }

  /** Number of live client transactions. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Number of server transactions: live, and completed over UDP (in timer J). */
  get serverCount(): number {
    return (this.#servers?.size ?? 0) + (this.#completed?.size ?? 0);
  }

  /**
   * Sends a request in a new client transaction: an INVITE client transaction
   * for INVITE, a non-INVITE one otherwise. Puts a new top Via with a fresh
   * branch on it unless `keepVia`. ACK is refused: the ACK for a 2xx goes
   * through {@linkcode sendAck}, the one for other finals is the
   * transaction's own.
   */
  request(
    req: SipRequest,
    target: Target,
    user: ClientTransactionUser = {},
    options: RequestOptions = {},
  ): AnyClientTransaction {
    if (req.method === "ACK") {
      throw new TypeError("Cannot send ACK in a client transaction: use sendAck()");
    }
    if (!options.keepVia) {
      req.headers.delete("Via");
      addTopVia(req, { protocol: target.protocol });
    }
    const tx = req.method === "INVITE"
      ? new ClientInviteTransaction(this.#ctx, req, target, user)
      : new ClientNonInviteTransaction(this.#ctx, req, target, user);
    this.#clients.set(tx.key, tx);
    tx.start();
    return tx;
  }

  /**
   * Sends an ACK for a 2xx (13.2.2.4), outside any transaction, with a new
   * top Via and fresh branch unless `keepVia`. Resolves with the target used.
   */
  sendAck(ack: SipRequest, target: Target, options: RequestOptions = {}): Promise<Target> {
    if (!options.keepVia) {
      ack.headers.delete("Via");
      addTopVia(ack, { protocol: target.protocol });
    }
    return this.#transport.sendRequest(ack, target);
  }

  /**
   * Cancels an INVITE (9.1): builds the CANCEL and sends it in its own
   * non-INVITE transaction to the INVITE's target. "If no provisional
   * response has been received, the CANCEL request MUST NOT be sent; rather,
   * the client MUST wait for the arrival of a provisional response": until
   * then it waits, and it is dropped when a final response comes first.
   * Calling it again does nothing. A 2xx can still cross the CANCEL: the TU
   * then acknowledges it and sends BYE (section 9.1, 15).
   */
  cancel(tx: AnyClientTransaction, options: CancelOptions = {}): void {
    if (!(tx instanceof ClientInviteTransaction)) {
      throw new TypeError(`Cannot cancel a ${tx.request.method} request: only INVITE`);
    }
    if (this.#cancelled.has(tx)) return;
    this.#cancelled.add(tx);
    // 9.1: "If there is no final response for the original request in 64*T1
    // seconds ..., the client SHOULD then consider the original transaction
    // cancelled and SHOULD destroy the client transaction".
    tx.cancelDeadline(64 * this.timers.t1);
    tx.whenProceeding(() => {
      const cancel = createCancel(tx.request, { reason: options.reason });
      this.request(cancel, tx.target, options.user ?? {}, { keepVia: true });
    });
  }

  /**
   * The INVITE server transaction a CANCEL refers to (9.2: matched like a
   * request to a transaction, with method INVITE), or undefined.
   */
  findInviteServerTransaction(cancel: SipRequest): ServerInviteTransaction | undefined {
    const tx = this.#servers?.get(serverTransactionKey(cancel, "INVITE"));
    if (!(tx instanceof serverSide!.ServerInviteTransaction) || tx.terminated) return undefined;
    if (tx.key.startsWith("2543|") && !sameTag(tx.request.to.params.tag, cancel.to.params.tag)) {
      return undefined;
    }
    return tx;
  }

  /**
   * Handles an inbound request (the transport calls this): at once when the
   * server side is loaded (see {@linkcode loadServerTransactions}), else
   * once it is, after those that came before it.
   */
  receiveRequest(req: SipRequest, info: InboundInfo): void {
    if (serverSide !== undefined && this.#pending === undefined) {
      this.#handleRequest(req, info, serverSide);
      return;
    }
    if (this.#pending !== undefined) {
      this.#pending.push([req, info]);
      return;
    }
    this.#pending = [[req, info]];
    loadServerTransactions().then(() => {
      // Those that come while these are handled join the end of the queue.
      const pending = this.#pending;
      while (pending !== undefined && pending.length > 0) {
        const [r, i] = pending.shift()!;
        this.#handleRequest(r, i, serverSide!);
      }
      if (this.#pending === pending) this.#pending = undefined;
    }, (e) => this.#log(`cannot load the server transactions: ${e}`));
  }

  #handleRequest(req: SipRequest, info: InboundInfo, side: typeof ServerSide): void {
    let key: string;
    try {
      key = serverTransactionKey(req);
    } catch (e) {
      this.#log(`dropping request that cannot be matched: ${e instanceof Error ? e.message : e}`);
      return;
    }
    const servers = this.#servers ??= new side.KeyTable<ServerTransaction>();
    const existing = servers.get(key);
    /** A completed entry with this key that a new transaction replaces (RFC 2543 keys only). */
    let replaced = -1;
    if (existing === undefined) {
      const ring = this.#completed ??= new side.CompletedRing();
      const seq = ring.size === 0 ? -1 : ring.find(key);
      if (seq >= 0) {
        if (
          !key.startsWith("2543|") ||
          sameTag(ring.extras[ring.slot(seq)]?.toTag, req.to.params.tag)
        ) {
          // 17.2.2: in Completed, "the server transaction MUST pass the final
          // response to the transport layer for retransmission".
          this.#resend(seq, key, req, info);
          return;
        }
        replaced = seq;
      }
    } else if (this.#toTagMatches(existing, req)) {
      if (existing.receiveRequest(req)) this.#deliver(req, undefined, info);
      return;
    }
    if (req.method === "ACK") {
      // An ACK matching no transaction acknowledges a 2xx: it is the TU's.
      // An INVITE server transaction still Accepted learns of it, to stop
      // the 2xx retransmissions it does for the TU (13.3.1.4).
      for (const tx of servers.values()) {
        if (tx instanceof side.ServerInviteTransaction && tx.matches2xxAck(req)) tx.ackReceived();
      }
      this.#deliver(req, undefined, info);
      return;
    }
    if (replaced >= 0) this.#completed!.unindex(replaced);
    let tx: AnyServerTransaction;
    if (req.method === "INVITE") {
      const invite = new side.ServerInviteTransaction(this.#ctx, req, info, key);
      servers.set(key, invite);
      invite.start();
      tx = invite;
    } else {
      tx = new side.ServerNonInviteTransaction(this.#ctx, req, info, key);
      servers.set(key, tx);
    }
    this.#deliver(req, tx, info);
  }

  /** Handles an inbound response (the transport calls this). */
  receiveResponse(res: SipResponse, info: InboundInfo): void {
    let key: string | undefined;
    try {
      key = clientTransactionKey(res);
    } catch (e) {
      this.#log(`dropping response that cannot be matched: ${e instanceof Error ? e.message : e}`);
      return;
    }
    const tx = key === undefined ? undefined : this.#clients.get(key);
    if (tx) {
      tx.receiveResponse(res);
      return;
    }
    if (this.onStrayResponse) {
      try {
        this.onStrayResponse(res, info);
      } catch (e) {
        this.#log(`onStrayResponse threw: ${e instanceof Error ? e.stack ?? e.message : e}`);
      }
    }
  }

  /** Terminates every transaction and stops all their timers. */
  close(): void {
    for (const tx of [...this.#clients.values()]) tx.terminate();
    this.#pending = undefined;
    for (const tx of this.#servers?.values() ?? []) tx.terminate();
    this.#servers?.clear();
    if (this.#sweep !== undefined) this.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    const ring = this.#completed;
    this.#completed = serverSide && new serverSide.CompletedRing();
    for (let a = 0; a < (ring?.count ?? 0); a++) {
      ring!.extras[ring!.slot((ring!.head + a) & serverSide!.SEQ_MASK)]?.tx?.terminate();
    }
  }

  /** Number of slots of the ring of completed entries (for tests). */
  get completedCapacity(): number {
    return this.#completed?.capacity ?? 0;
  }

  /** Sends the final response of a non-INVITE server transaction over UDP and keeps it for timer J. */
  #complete(tx: ServerTransaction, res: SipResponse, onError: (e: unknown) => void): void {
    const transport = this.#transport;
    let packet: PreparedResponse | undefined;
    try {
      packet = transport.sendPrepared
        ? transport.prepareResponse?.(res, tx.info, tx.request)
        : undefined;
    } catch (e) {
      onError(e);
      return;
    }
    const rfc2543 = tx.key.startsWith("2543|");
    const keep = tx.user.onTerminated ? tx : undefined;
    const key = tx.key;
    // A server transaction exists, so the server side is loaded.
    const ring = this.#completed ??= new serverSide!.CompletedRing();
    const seq = ring.add(
      key,
      this.clock.now() + 64 * this.timers.t1,
      packet,
      packet && !rfc2543 && !keep ? undefined : {
        response: packet ? undefined : res,
        info: packet ? undefined : tx.info,
        toTag: rfc2543 ? tx.request.to.params.tag : undefined,
        tx: keep,
      },
    );
    // Found from now on in the ring, unless another transaction took its key.
    const servers = this.#servers;
    if (servers !== undefined && servers.get(key) === tx) servers.delete(key);
    else ring.unindex(seq);
    const sent = packet ? transport.sendPrepared!(packet) : transport.sendResponse(res, tx.info);
    sent.catch((e) => {
      if (this.#completed === ring) ring.unindex(seq);
      onError(e);
    });
    if (this.#sweep === undefined) this.#armSweep();
  }

  #resend(seq: number, key: string, request: SipRequest, info: InboundInfo): void {
    const ring = this.#completed!;
    const packet = ring.packet(ring.slot(seq));
    const extra = ring.extras[ring.slot(seq)];
    const sent = packet
      ? this.#transport.sendPrepared!(packet, { request, info })
      : this.#transport.sendResponse(extra!.response!, extra!.info!);
    sent.catch((e) => {
      this.#log(
        `transaction ${key}: retransmission failed: ${e instanceof Error ? e.message : e}`,
      );
      // 17.2.4: a transport failure ends the transaction.
      if (this.#completed === ring) ring.unindex(seq);
    });
  }

  /** Arms one timer for the oldest completed entry. */
  #armSweep(): void {
    const ring = this.#completed;
    if (ring === undefined || ring.count === 0) return;
    this.#sweep = this.clock.setTimeout(
      () => this.#runSweep(),
      Math.max(0, ring.expires[ring.slot(ring.head)] - this.clock.now()),
    );
  }

  /** Timer J of every entry whose time has come: forget it (and tell a TU that waits). */
  #runSweep(): void {
    this.#sweep = undefined;
    const now = this.clock.now();
    const ring = this.#completed;
    while (ring !== undefined && ring.count > 0 && ring.expires[ring.slot(ring.head)] <= now) {
      const tx = ring.extras[ring.slot(ring.head)]?.tx;
      ring.shift();
      tx?.terminate();
    }
    this.#armSweep();
  }
  /**
   * Without the magic cookie (17.2.3, RFC 2543 matching) the To tag is part
   * of the match: the request's for a retransmission, the response's for an ACK.
   */
  #toTagMatches(tx: ServerTransaction, req: SipRequest): boolean {
    if (!tx.key.startsWith("2543|")) return true;
    const tag = req.to.params.tag;
    if (req.method === "ACK") return sameTag(tx.lastResponse?.to.params.tag, tag);
    return sameTag(tx.request.to.params.tag, tag);
  }

  #deliver(req: SipRequest, tx: AnyServerTransaction | undefined, info: InboundInfo): void {
    if (!this.onRequest) {
      this.#log(`no handler for ${req.method}; answering 503`);
      tx?.respond(createResponse(req, 503, { toTag: transactionTag(req, tx.lastResponse) }));
      return;
    }
    try {
      this.onRequest(req, tx, info);
    } catch (e) {
      this.#log(`onRequest threw: ${e instanceof Error ? e.stack ?? e.message : e}`);
      // Never leave the client waiting because the TU crashed.
      if (tx && !tx.terminated && (!tx.lastResponse || tx.lastResponse.status < 200)) {
        tx.respond(createResponse(req, 500, { toTag: transactionTag(req, tx.lastResponse) }));
      }
    }
  }
}

function sameTag(a: string | null | undefined, b: string | null | undefined): boolean {
  return (a ?? undefined) === (b ?? undefined);
}
