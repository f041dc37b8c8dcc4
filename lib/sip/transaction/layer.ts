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
import { ServerInviteTransaction } from "./server_invite.ts";
import { ServerNonInviteTransaction } from "./server_non_invite.ts";
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

/**
 * What is left of a non-INVITE server transaction over UDP once it has sent
 * its final response (RFC 3261 17.2.2, Completed): for timer J (64*T1) it
 * must answer retransmissions of the request with that response, and for
 * that it needs the key and the response bytes, not the parsed request nor
 * the transaction: about 0.6 KB for the answer to a MESSAGE, against some
 * 5 KB for the transaction with its parsed messages.
 */
class Completed {
  constructor(
    /** The matching key. */
    readonly key: string,
    /** When timer J fires, on the layer's clock. */
    readonly expires: number,
    /** The response as sent, ready to send again. */
    readonly packet: PreparedResponse | undefined,
    /** What only some entries need. */
    readonly extra: CompletedExtra | undefined,
  ) {}
}

/** The parts of a {@linkcode Completed} entry that most do without. */
interface CompletedExtra {
  /** Without a transport that prepares packets (test fakes): the response and where to. */
  response?: SipResponse;
  info?: InboundInfo;
  /** RFC 2543 keys only: the request's To tag, part of the match. */
  toTag?: string | null;
  /** Kept only when its TU waits for onTerminated. */
  tx?: ServerTransaction;
}

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
  readonly #servers = new Map<string, ServerTransaction | Completed>();
  /** Completed entries in the order their timer J runs out (all wait 64*T1). */
  #expiry: Completed[] = [];
  #expiryHead = 0;
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
        const server = this.#servers.get(key);
        if (server === tx || (server instanceof Completed && server.extra?.tx === tx)) {
          this.#servers.delete(key);
        }
      },
      complete: (tx, res, onError) => this.#complete(tx, res, onError),
    };
    this.#transport.onRequest((req, info) => this.receiveRequest(req, info));
    this.#transport.onResponse((res, info) => this.receiveResponse(res, info));
  }

  /** Number of live client transactions. */
  get clientCount(): number {
    return this.#clients.size;
  }

  /** Number of live server transactions. */
  get serverCount(): number {
    return this.#servers.size;
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
    const tx = this.#servers.get(serverTransactionKey(cancel, "INVITE"));
    if (!(tx instanceof ServerInviteTransaction) || tx.terminated) return undefined;
    if (tx.key.startsWith("2543|") && !sameTag(tx.request.to.params.tag, cancel.to.params.tag)) {
      return undefined;
    }
    return tx;
  }

  /** Handles an inbound request (the transport calls this). */
  receiveRequest(req: SipRequest, info: InboundInfo): void {
    let key: string;
    try {
      key = serverTransactionKey(req);
    } catch (e) {
      this.#log(`dropping request that cannot be matched: ${e instanceof Error ? e.message : e}`);
      return;
    }
    const existing = this.#servers.get(key);
    if (existing instanceof Completed) {
      if (!existing.key.startsWith("2543|") || sameTag(existing.extra?.toTag, req.to.params.tag)) {
        // 17.2.2: in Completed, "the server transaction MUST pass the final
        // response to the transport layer for retransmission".
        this.#resend(existing, req, info);
        return;
      }
    } else if (existing && this.#toTagMatches(existing, req)) {
      if (existing.receiveRequest(req)) this.#deliver(req, undefined, info);
      return;
    }
    if (req.method === "ACK") {
      // An ACK matching no transaction acknowledges a 2xx: it is the TU's.
      // An INVITE server transaction still Accepted learns of it, to stop
      // the 2xx retransmissions it does for the TU (13.3.1.4).
      for (const tx of this.#servers.values()) {
        if (tx instanceof ServerInviteTransaction && tx.matches2xxAck(req)) tx.ackReceived();
      }
      this.#deliver(req, undefined, info);
      return;
    }
    let tx: AnyServerTransaction;
    if (req.method === "INVITE") {
      const invite = new ServerInviteTransaction(this.#ctx, req, info, key);
      this.#servers.set(key, invite);
      invite.start();
      tx = invite;
    } else {
      tx = new ServerNonInviteTransaction(this.#ctx, req, info, key);
      this.#servers.set(key, tx);
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
    for (const tx of [...this.#servers.values()]) {
      if (tx instanceof Completed) tx.extra?.tx?.terminate();
      else tx.terminate();
    }
    this.#servers.clear();
    if (this.#sweep !== undefined) this.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    this.#expiry = [];
    this.#expiryHead = 0;
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
    const entry = new Completed(
      tx.key,
      this.clock.now() + 64 * this.timers.t1,
      packet,
      packet && !rfc2543 && !keep ? undefined : {
        response: packet ? undefined : res,
        info: packet ? undefined : tx.info,
        toTag: rfc2543 ? tx.request.to.params.tag : undefined,
        tx: keep,
      },
    );
    if (this.#servers.get(tx.key) === tx) this.#servers.set(tx.key, entry);
    const sent = packet ? transport.sendPrepared!(packet) : transport.sendResponse(res, tx.info);
    sent.catch((e) => {
      if (this.#servers.get(entry.key) === entry) this.#servers.delete(entry.key);
      onError(e);
    });
    this.#expiry.push(entry);
    if (this.#sweep === undefined) this.#armSweep();
  }

  #resend(entry: Completed, request: SipRequest, info: InboundInfo): void {
    const sent = entry.packet
      ? this.#transport.sendPrepared!(entry.packet, { request, info })
      : this.#transport.sendResponse(entry.extra!.response!, entry.extra!.info);
    sent.catch((e) => {
      this.#log(
        `transaction ${entry.key}: retransmission failed: ${e instanceof Error ? e.message : e}`,
      );
      // 17.2.4: a transport failure ends the transaction.
      if (this.#servers.get(entry.key) === entry) this.#servers.delete(entry.key);
    });
  }

  /** Arms one timer for the oldest completed entry. */
  #armSweep(): void {
    const head = this.#expiry[this.#expiryHead];
    if (!head) {
      this.#expiry = [];
      this.#expiryHead = 0;
      return;
    }
    this.#sweep = this.clock.setTimeout(
      () => this.#runSweep(),
      Math.max(0, head.expires - this.clock.now()),
    );
  }

  /** Timer J of every entry whose time has come: forget it (and tell a TU that waits). */
  #runSweep(): void {
    this.#sweep = undefined;
    const now = this.clock.now();
    const queue = this.#expiry;
    while (this.#expiryHead < queue.length && queue[this.#expiryHead].expires <= now) {
      const entry = queue[this.#expiryHead];
      queue[this.#expiryHead++] = undefined as unknown as Completed;
      if (this.#servers.get(entry.key) === entry) this.#servers.delete(entry.key);
      entry.extra?.tx?.terminate();
    }
    if (this.#expiryHead > 1024 && this.#expiryHead * 2 > queue.length) {
      this.#expiry = queue.slice(this.#expiryHead);
      this.#expiryHead = 0;
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
