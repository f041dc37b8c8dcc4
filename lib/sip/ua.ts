/**
 * The user agent core (RFC 3261 section 8): owns the transports, the
 * transport and transaction layers; sends out-of-dialog requests through an
 * outbound proxy or Route set with RFC 3263 server location, digest
 * authentication and optional 3xx following; dispatches incoming requests to
 * the handlers the running usage registered, answering OPTIONS itself, 405
 * to methods nobody handles and 481 to requests for unknown dialogs.
 *
 * @module
 */

import { type Clock, systemClock } from "./clock.ts";
import {
  createRequest,
  createResponse,
  type NameAddr,
  parseUri,
  type ResponseOptions,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "./message.ts";
import { type DialogId, dialogKey } from "./dialog_id.ts";
import { uriPort } from "./_net.ts";
import { toSipUri } from "./input.ts";
import { cloneUri, formatAddress } from "./uri.ts";
import { OutboundSender, type RequestSendOptions, type SendResult } from "./outbound.ts";
import type { ResolveOptions } from "./resolver.ts";
import { openTransports, type TlsOptions } from "./sockets.ts";
import type { StreamLimits } from "./transport_tcp.ts";
// From the modules themselves, not mod.ts, which loads the server side too.
import {
  generateCallId,
  generateTag,
  localTagFor,
  transactionTag,
  useLocalTag,
} from "./transaction/build.ts";
import {
  type AnyServerTransaction,
  loadServerTransactions,
  TransactionLayer,
} from "./transaction/layer.ts";
import type { InboundInfo, Target, TimerOptions } from "./transaction/types.ts";
import { sanitizeReason } from "./status.ts";
import type { Transport, TransportProtocol } from "./transport.ts";
import { type LogLevel, TransportLayer } from "./transport_layer.ts";
import { VERSION } from "../version.ts";

// Moved out of the UA core; still importable from here.
export { parseHostPort, toSipUri } from "./input.ts";
export type { RequestSendOptions, SendResult } from "./outbound.ts";
export type { TlsOptions } from "./sockets.ts";

/** A log sink. */
export type LogFn = (level: LogLevel, message: string) => void;

/** A trace sink: every message sent and received, as bytes. */
export type TraceFn = (direction: "send" | "recv", data: Uint8Array, peer: Target) => void;

/** Options of {@linkcode UserAgent.create}. */
export interface UserAgentOptions {
  /**
   * A short-lived sender (send a request or a few, await the answers,
   * exit): its sockets, when the UA opens them, are set up for that
   * (`oneShot` of {@linkcode openTransports}), and the server side of the
   * transaction layer is loaded only if a request comes (which is then
   * handled once it is, in order), not before the UA starts. Default false.
   */
  oneShot?: boolean;
  /** The address of record: `alice@example.test` or `sip:alice@example.test`. */
  aor?: string;
  /** Display name for From. */
  displayName?: string;
  /** Local address `host:port`; default all interfaces, an ephemeral port. */
  bind?: string;
  /** Transports to open, all on the same port. Default `["udp", "tcp"]` (TLS client is always available). */
  listen?: TransportProtocol[];
  /** Transport for requests whose URI names none. Default "udp". */
  transport?: TransportProtocol;
  /** Outbound proxy URI (a pre-existing route set of one, section 8.1.2). */
  outboundProxy?: string;
  /** Authentication user name; default the user part of the AOR. */
  authUser?: string;
  /** Yields the password when a challenge first needs it. */
  password?: () => Promise<string | undefined>;
  /** TLS settings. */
  tls?: TlsOptions;
  /** Limits of the TCP and TLS transports (see {@linkcode StreamLimits}). */
  streamLimits?: Partial<StreamLimits>;
  /** Clock for every timer. */
  clock?: Clock;
  /** Transaction timer settings. */
  timers?: TimerOptions;
  /** Diagnostics. */
  log?: LogFn;
  /** Message trace. */
  trace?: TraceFn;
  /** User-Agent header value. Default `sipkit/<version>`. */
  userAgent?: string;
  /** Server location; default RFC 3263 through DNS. */
  resolve?: (uri: Uri, options: ResolveOptions) => Promise<Target[]>;
  /** Pre-built transports (tests use loop transports); replaces `bind`/`listen`. */
  transports?: Transport[];
  /** Host to advertise in Contact instead of the local address (after an address change). */
  advertisedHost?: string;
  /** Send compact header names (RFC 3261 7.3.3), which every SIP peer must accept. Default false. */
  compactHeaders?: boolean;
  /**
   * Option tags this UA supports (Supported header of OPTIONS answers); a
   * request that requires any other gets 420 (RFC 3261 8.2.2.3). Default
   * `["eventlist"]`.
   */
  supported?: string[];
}

/** An incoming request handed to a usage. */
export interface IncomingRequest {
  /** The request. */
  request: SipRequest;
  /** Where it came from. */
  info: InboundInfo;
  /** Its server transaction (absent for ACK). */
  transaction?: AnyServerTransaction;
  /** Sends a response (adds a To tag to non-100 responses when needed, User-Agent, Contact on request). */
  respond(status: number, options?: RespondOptions): Promise<void>;
}

/** Options of {@linkcode IncomingRequest.respond}. */
export interface RespondOptions extends ResponseOptions {
  /** Add our Contact (dialog-creating 2xx). */
  contact?: boolean;
}

/** A handler for one method. */
export type RequestHandlerFn = (incoming: IncomingRequest) => void | Promise<void>;

/** Receives 2xx responses to INVITEs of a call leg that no transaction matches. */
export type ResponseLegHandler = (res: SipResponse, info: InboundInfo) => void;

/** Something that owns in-dialog requests of one dialog (a subscription, a call). */
export interface DialogHandler {
  /** Handles an in-dialog request. */
  (incoming: IncomingRequest): void | Promise<void>;
}

/**
 * The user agent core.
 *
 * @example
 * ```ts
 * import { LoopNetwork } from "./transport_loop.ts";
 * import { UserAgent } from "./ua.ts";
 * import assert from "node:assert/strict";
 * // Two user agents on an in-memory network (real ones bind UDP/TCP sockets).
 * const net = new LoopNetwork();
 * const alice = await UserAgent.create({
 *   aor: "alice@example.test",
 *   transports: [net.transport({ host: "192.0.2.1" })],
 * });
 * const bob = await UserAgent.create({
 *   aor: "bob@example.test",
 *   transports: [net.transport({ host: "192.0.2.2" })],
 * });
 * bob.handle("MESSAGE", (incoming) => incoming.respond(200));
 * const { response } = await alice.send(
 *   alice.createRequest("MESSAGE", "sip:bob@192.0.2.2", { body: "hi", contentType: "text/plain" }),
 * );
 * assert.equal(response.status, 200);
 * const options = await alice.send(alice.createRequest("OPTIONS", "sip:bob@192.0.2.2"));
 * assert.equal(options.response.headers.get("Allow"), "OPTIONS, MESSAGE");
 * await alice.close();
 * await bob.close();
 * ```
 */
export class UserAgent {
  /** The address of record (From of out-of-dialog requests). */
  readonly aor: Uri;
  /** The clock for every timer. */
  readonly clock: Clock;
  /** The transport layer. */
  readonly transport: TransportLayer;
  /** The transaction layer. */
  readonly transactions: TransactionLayer;
  /** Diagnostics. */
  readonly log: LogFn;
  /** Display name for From. */
  displayName?: string;
  /** The transports (they change when the host moves: see `moveUserAgent`). */
  get transports(): readonly Transport[] {
    return this.transport.transports;
  }
  /** Host advertised in Contact (after an address change); undefined = the local address. */
  advertisedHost?: string;
  /** Option tags supported (see {@linkcode UserAgentOptions.supported}). */
  supported: string[];

  readonly #options: UserAgentOptions;
  readonly #handlers = new Map<string, RequestHandlerFn>();
  readonly #dialogs = new Map<string, DialogHandler>();
  readonly #legs = new Map<string, DialogHandler>();
  readonly #responseLegs = new Map<string, ResponseLegHandler>();
  readonly #outbound: OutboundSender;
  #closed = false;
  #userAgent: string;

  private constructor(
    options: UserAgentOptions,
    transport: TransportLayer,
  ) {
    this.#options = options;
    this.aor = options.aor ? toSipUri(options.aor) : parseUri("sip:anonymous@anonymous.invalid");
    this.displayName = options.displayName;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    this.transport = transport;
    this.advertisedHost = options.advertisedHost;
    this.supported = options.supported ?? ["eventlist"];
    this.#userAgent = options.userAgent ?? `sipkit/${VERSION}`;
    this.transactions = new TransactionLayer({
      transport,
      clock: this.clock,
      timers: options.timers,
      log: (m) => this.log("debug", m),
    });
    this.transactions.onRequest = (req, tx, info) => this.#dispatch(req, tx, info);
    this.transactions.onStrayResponse = (res, info) => {
      // 13.2.2.4: 2xx retransmissions and 2xx of other forks that come after
      // the INVITE transaction ended (timer M) still need an ACK.
      const leg = res.cseq.method === "INVITE" && res.status >= 200 && res.status < 300
        ? this.#responseLegs.get(`${res.callId}\n${res.from.params.tag ?? ""}`)
        : undefined;
      if (leg) leg(res, info);
      else {
        this.log(
          "debug",
          `stray response ${res.status} ${res.reason} (${res.cseq.method}) dropped`,
        );
      }
    };
    this.#outbound = new OutboundSender({
      transactions: this.transactions,
      // A snapshot: their protocols (what RFC 3263 resolution needs) do not change on a move.
      transports: [...transport.transports],
      aor: this.aor,
      contactFor: (target) => this.contactFor(target),
      log: this.log,
      closed: () => this.#closed,
      outboundProxy: options.outboundProxy ? toSipUri(options.outboundProxy) : undefined,
      transport: options.transport,
      authUser: options.authUser,
      password: options.password,
      resolve: options.resolve,
    });
  }

  /** Opens the transports and returns a ready user agent. */
  static async create(options: UserAgentOptions = {}): Promise<UserAgent> {
    const transports = options.transports ?? await openTransports(options);
    // Requests are handled as they come from the start (see `oneShot`).
    if (!options.oneShot) await loadServerTransactions();
    const layer = new TransportLayer({
      transports,
      logger: options.log,
      trace: options.trace,
      compact: options.compactHeaders,
    });
    return new UserAgent(options, layer);
  }

  /** The outbound proxy, when one is configured. */
  get outboundProxy(): Uri | undefined {
    return this.#outbound.outboundProxy;
  }

  /** The methods this UA answers (Allow header). */
  get allowed(): string[] {
    return ["OPTIONS", ...this.#handlers.keys()].filter((m, i, a) => a.indexOf(m) === i);
  }

  /** Registers the handler for out-of-dialog requests of one method. */
  handle(method: string, handler: RequestHandlerFn): void {
    this.#handlers.set(method, handler);
  }

  /**
   * Registers the handler for in-dialog requests of a dialog: requests whose
   * To tag, From tag and Call-ID match `id` go to it; others get 481.
   */
  addDialog(id: DialogId, handler: DialogHandler): void {
    this.#dialogs.set(dialogKey(id), handler);
  }

  /** Removes a dialog handler. */
  removeDialog(id: DialogId): void {
    this.#dialogs.delete(dialogKey(id));
  }

  /**
   * Registers a handler for in-dialog requests of one call leg (Call-ID and
   * local tag) whose dialog has no handler yet: a subscriber gets the NOTIFY
   * that arrives before the SUBSCRIBE's 2xx, and NOTIFYs of new forks, which
   * create dialogs (RFC 6665 sections 4.1.2.4 and 4.5.2). Exact dialog
   * handlers ({@linkcode addDialog}) take precedence.
   */
  addCallLeg(callId: string, localTag: string, handler: DialogHandler): void {
    this.#legs.set(`${callId}\n${localTag}`, handler);
  }

  /** Removes a call-leg handler. */
  removeCallLeg(callId: string, localTag: string): void {
    this.#legs.delete(`${callId}\n${localTag}`);
  }

  /**
   * Registers a handler for 2xx responses to INVITEs of one call leg
   * (Call-ID and local tag) that match no client transaction any more:
   * retransmissions and other forks after timer M, which the INVITE usage
   * still acknowledges (13.2.2.4).
   */
  addResponseLeg(callId: string, localTag: string, handler: ResponseLegHandler): void {
    this.#responseLegs.set(`${callId}\n${localTag}`, handler);
  }

  /** Removes a response-leg handler. */
  removeResponseLeg(callId: string, localTag: string): void {
    this.#responseLegs.delete(`${callId}\n${localTag}`);
  }

  /** True when a handler is registered for the dialog. */
  hasDialog(id: DialogId): boolean {
    return this.#dialogs.has(dialogKey(id));
  }

  /**
   * Builds an out-of-dialog request (section 8.1.1) from the AOR to `target`:
   * To, From with a fresh tag, Call-ID, CSeq 1, Max-Forwards 70, User-Agent.
   */
  createRequest(
    method: string,
    target: string | Uri,
    options: {
      to?: NameAddr;
      from?: NameAddr;
      callId?: string;
      cseq?: number;
      headers?: [string, string][];
      body?: Uint8Array | string;
      contentType?: string;
    } = {},
  ): SipRequest {
    const uri = typeof target === "string" ? toSipUri(target) : target;
    const toUri = cloneUri(uri);
    toUri.params = {};
    toUri.headers = {};
    const to = options.to ?? { uri: toUri, params: {} };
    const from = options.from ??
      { displayName: this.displayName, uri: this.aor, params: { tag: generateTag() } };
    const headers: [string, string][] = [
      ["Max-Forwards", "70"],
      ["To", formatAddress(to)],
      ["From", formatAddress(from)],
      ["Call-ID", options.callId ?? generateCallId()],
      ["CSeq", `${options.cseq ?? 1} ${method}`],
      ["User-Agent", this.#userAgent],
      ...(options.headers ?? []),
    ];
    return createRequest(method, uri, {
      headers,
      body: options.body,
      contentType: options.contentType,
    });
  }

  /**
   * Our Contact URI as seen from `target`: the local address the transport
   * uses towards it (or the advertised host), with `transport=` for streams.
   */
  async contactFor(target: Target): Promise<Uri> {
    const local = await this.transport.localAddress(target);
    const uri: Uri = {
      scheme: target.protocol === "tls" ? "sips" : "sip",
      user: this.aor.user,
      host: this.advertisedHost ?? local.host,
      port: uriPort(this.advertisedHost ?? local.host, local.port, target.protocol),
      params: target.protocol === "udp" || target.protocol === "tls"
        ? {}
        : { transport: target.protocol },
      headers: {},
    };
    return uri;
  }

  /** The targets of the next hop for a request (Route, outbound proxy, or Request-URI), RFC 3263. */
  targetsFor(req: SipRequest): Promise<Target[]> {
    return this.#outbound.targetsFor(req);
  }

  /**
   * Sends an out-of-dialog (or, with `options.dialog`, in-dialog) request
   * and resolves with its final response: adds the outbound proxy as Route,
   * locates the next hop (RFC 3263) and fails over to the next target on a
   * timeout, transport error or 503, answers 401/407 with digest credentials
   * (a new CSeq each time), and follows 3xx when asked. `options.signal`
   * cancels an INVITE; `options.onTransaction` and `options.onFinal` expose
   * each client transaction and every final it passes up (2xx
   * retransmissions and forks, which the caller ACKs). Rejects with
   * {@linkcode SipRequestError} (local) when no response comes, and with
   * {@linkcode DigestAuthError} when authentication cannot succeed.
   */
  send(request: SipRequest, options: RequestSendOptions = {}): Promise<SendResult> {
    return this.#outbound.send(request, options);
  }

  /** Drops cached digest challenges (after an address change, or a failure). */
  forgetCredentials(): void {
    this.#outbound.forgetCredentials();
  }

  #dispatch(req: SipRequest, tx: AnyServerTransaction | undefined, info: InboundInfo): void {
    const incoming: IncomingRequest = {
      request: req,
      info,
      transaction: tx,
      respond: (status, opts) => this.#respond(req, tx, info, status, opts),
    };
    // Section 8.2 / 21.4.1: a request whose essential headers cannot be
    // parsed is answered 400 (the parser checks most of them already; this
    // covers what it leaves for later) and never reaches a handler.
    const problem = malformation(req);
    if (problem !== undefined) {
      this.log("info", `answering 400 to a malformed ${req.method}: ${problem}`);
      if (tx && req.method !== "ACK") {
        let toOk = true;
        try {
          req.to;
        } catch {
          toOk = false;
        }
        try {
          tx.respond(
            createResponse(req, 400, {
              reason: sanitizeReason(problem),
              toTag: toOk ? localTagFor(req) : undefined,
            }),
          );
        } catch (e) {
          this.log("warn", `cannot answer a malformed ${req.method}: ${(e as Error).message}`);
        }
      }
      return;
    }
    const run = (fn: RequestHandlerFn) => {
      Promise.resolve().then(() => fn(incoming)).catch((e) => {
        this.log("error", `handler for ${req.method} failed: ${(e as Error).stack ?? e}`);
        if (tx && !tx.lastResponse) incoming.respond(500).catch(() => {});
      });
    };
    // Section 8.2.2.1: the Request-URI scheme must be one we understand.
    if (req.method !== "ACK" && !["sip", "sips", "tel"].includes(req.uri.scheme)) {
      incoming.respond(416).catch(() => {});
      return;
    }
    // Section 8.2.2.3: "If a UAS does not understand an option-tag listed in
    // a Require header field, it MUST respond by generating a response with
    // status code 420 (Bad Extension). The UAS MUST add an Unsupported header
    // field". Not for CANCEL and ACK, whose Require is not processed.
    if (req.method !== "CANCEL" && req.method !== "ACK" && req.headers.has("Require")) {
      const unknown = req.headers.values("Require").map((t) => t.trim())
        .filter((t) =>
          t !== "" && !this.supported.some((s) => s.toLowerCase() === t.toLowerCase())
        );
      if (unknown.length > 0) {
        incoming.respond(420, { headers: [["Unsupported", unknown.join(", ")]] }).catch(() => {});
        return;
      }
    }
    const toTag = req.to.params.tag;
    if (toTag != null && req.method !== "CANCEL") {
      const id = { callId: req.callId, localTag: toTag, remoteTag: req.from.params.tag ?? "" };
      const handler = this.#dialogs.get(dialogKey(id));
      if (handler) {
        run(handler);
        return;
      }
      const leg = this.#legs.get(`${req.callId}\n${toTag}`);
      if (leg) {
        run(leg);
        return;
      }
      if (req.method === "ACK") return; // an ACK for a dialog we do not know is dropped (13.3.1.4)
      // Section 12.2.2: "If the UAS wishes to reject the request because it
      // does not wish to recreate the dialog, it MUST respond ... 481".
      incoming.respond(481).catch(() => {});
      return;
    }
    if (req.method === "CANCEL") {
      const invite = this.transactions.findInviteServerTransaction(req);
      if (!invite) {
        incoming.respond(481).catch(() => {});
        return;
      }
      // 9.2: "The To tag of the response to the CANCEL and the To tag in the
      // response to the original request SHOULD be the same", and the 487
      // carries the tag of the 1xx already sent (8.2.6.2: a To tag on every
      // final response).
      const tag = transactionTag(invite.request, invite.lastResponse);
      useLocalTag(invite.request, tag);
      incoming.respond(200, { toTag: tag }).catch(() => {});
      const handler = this.#handlers.get("CANCEL");
      if (handler) run(handler);
      else if (!invite.lastResponse || invite.lastResponse.status < 200) {
        // 9.2: "the UAS SHOULD then respond to the INVITE with a 487".
        invite.respond(createResponse(invite.request, 487, { toTag: tag }));
        const user = invite.user;
        try {
          user.onCancel?.(req);
        } catch (e) {
          this.log("error", `CANCEL handler failed: ${(e as Error).stack ?? e}`);
        }
      }
      return;
    }
    if (req.method === "ACK") {
      const handler = this.#handlers.get("ACK");
      if (handler) run(handler);
      return;
    }
    const handler = this.#handlers.get(req.method);
    if (handler) {
      run(handler);
      return;
    }
    if (req.method === "OPTIONS") {
      // Section 11.2: answer as to an INVITE, with Allow, Accept and Supported.
      incoming.respond(200, {
        headers: [
          ["Allow", this.allowed.join(", ")],
          ["Accept", "application/sdp, application/pidf+xml, text/plain, message/cpim"],
          ...(this.supported.length > 0
            ? [["Supported", this.supported.join(", ")] as [string, string]]
            : []),
          ["Accept-Language", "en"],
        ],
        contact: true,
      }).catch(() => {});
      return;
    }
    // Section 8.2.1: a method we do not support gets 405 with Allow.
    incoming.respond(405, { headers: [["Allow", this.allowed.join(", ")]] }).catch(() => {});
  }

  async #respond(
    req: SipRequest,
    tx: AnyServerTransaction | undefined,
    info: InboundInfo,
    status: number,
    options: RespondOptions = {},
  ): Promise<void> {
    if (!tx) throw new TypeError(`Cannot answer ${req.method}: it has no transaction`);
    const headers: [string, string][] = [];
    if (options.contact) {
      const uri = await this.contactFor({
        protocol: info.protocol,
        host: info.remote.host,
        port: info.remote.port,
      });
      headers.push(["Contact", formatAddress({ uri, params: {} })]);
    }
    // Server identifies us once per peer: on answers to out-of-dialog
    // requests. In-dialog answers (NOTIFY, BYE...) leave it out to save bytes
    // on the most frequent messages (RFC 3261 20.35 makes it optional).
    if (req.to.params.tag == null) headers.push(["Server", this.#userAgent]);
    if (options.headers !== undefined) headers.push(...toPairs(options.headers));
    const res = createResponse(req, status, {
      ...options,
      toTag: options.toTag ?? (status > 100 ? localTagFor(req) : undefined),
      headers,
    });
    tx.respond(res);
  }

  /** Closes transactions and transports. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.transactions.close();
    await this.transport.close();
  }
}

function toPairs(init: NonNullable<ResponseOptions["headers"]>): [string, string][] {
  if (Array.isArray(init)) {
    return (init as Array<[string, string] | { name: string; value: string }>).map((f) =>
      Array.isArray(f) ? f : [f.name, f.value]
    );
  }
  if ("fields" in init && Array.isArray((init as { fields: unknown }).fields)) {
    return (init as { fields: { name: string; value: string }[] }).fields.map((
      f,
    ) => [f.name, f.value]);
  }
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(init as Record<string, string | string[]>)) {
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, one]);
  }
  return out;
}

/** The first parse error among the headers every request must have, if any. */
function malformation(req: SipRequest): string | undefined {
  try {
    req.from;
    req.to;
    req.callId;
    req.cseq;
    req.topVia;
    return undefined;
  } catch (e) {
    if (e instanceof SyntaxError) return e.message;
    return String(e);
  }
}
