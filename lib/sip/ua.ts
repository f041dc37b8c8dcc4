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
  DigestAuthError,
  DigestClient,
  parseDigestChallenges,
  parseDigestCredentials,
} from "./digest.ts";
import { SipRequestError } from "./errors.ts";
import {
  cloneMessage,
  createRequest,
  createResponse,
  formatNameAddr,
  formatUri,
  type NameAddr,
  parseUri,
  type ResponseOptions,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "./message.ts";
import { type Dialog, type DialogId, dialogKey } from "./dialog.ts";
import { type ResolveOptions, resolveSipUri } from "./resolver.ts";
import {
  type AnyServerTransaction,
  generateCallId,
  generateTag,
  type InboundInfo,
  type Target,
  type TimerOptions,
  TransactionLayer,
} from "./transaction/mod.ts";
import type { HostPort, Transport, TransportProtocol } from "./transport.ts";
import { type LogLevel, TransportLayer } from "./transport_layer.ts";
import { TcpTransport, TlsTransport } from "./transport_tcp.ts";
import { UdpTransport } from "./transport_udp.ts";
import { VERSION } from "../version.ts";

/** A log sink. */
export type LogFn = (level: LogLevel, message: string) => void;

/** A trace sink: every message sent and received, as bytes. */
export type TraceFn = (direction: "send" | "recv", data: Uint8Array, peer: Target) => void;

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

/** Options of {@linkcode UserAgent.create}. */
export interface UserAgentOptions {
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

/** Options of {@linkcode UserAgent.send}. */
export interface RequestSendOptions {
  /** Follow 3xx responses to their Contacts (section 8.1.3.4). Default false. */
  followRedirects?: boolean;
  /** At most this many redirects. Default 5. */
  maxRedirects?: number;
  /** Called for each provisional response. */
  onProvisional?: (res: SipResponse) => void;
  /** Called when a redirect is followed. */
  onRedirect?: (from: Uri, to: Uri, res: SipResponse) => void;
  /** Put a Contact for the chosen transport on the request. Default: when it has none and the method needs one. */
  contact?: boolean;
  /** Send straight to this target, skipping routing and resolution. */
  target?: Target;
  /** Called with each request as it is sent (with its Via; after auth, redirect and failover changes). */
  onRequest?: (request: SipRequest, target: Target) => void;
  /**
   * The request belongs to this dialog (built by `dialog.createRequest`): no
   * outbound proxy Route is added, and a retry after 401/407 takes its CSeq
   * from the dialog.
   */
  dialog?: Dialog;
}

/** A response with the request that produced it (the last one sent, after auth and redirects). */
export interface SendResult {
  /** The final response. */
  response: SipResponse;
  /** The request as last sent. */
  request: SipRequest;
  /** Where it went. */
  target: Target;
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

/** Something that owns in-dialog requests of one dialog (a subscription, a call). */
export interface DialogHandler {
  /** Handles an in-dialog request. */
  (incoming: IncomingRequest): void | Promise<void>;
}

const METHODS_NEEDING_CONTACT = new Set(["INVITE", "SUBSCRIBE", "REGISTER", "REFER", "NOTIFY"]);

/** Normalizes `alice@example.test` or `sip:alice@...` to a URI. */
export function toSipUri(text: string): Uri {
  const t = text.trim();
  if (/^(sips?|tel):/i.test(t)) return parseUri(t);
  return parseUri(`sip:${t}`);
}

/** Parses `host:port`, `[v6]:port`, `host` or `:port`. */
export function parseHostPort(text: string, defaultPort = 0): HostPort {
  const t = text.trim();
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (v6) return { host: v6[1], port: v6[2] ? Number(v6[2]) : defaultPort };
  const colons = t.split(":").length - 1;
  if (colons > 1) return { host: t, port: defaultPort };
  const [host, port] = t.split(":");
  const p = port === undefined || port === "" ? defaultPort : Number(port);
  if (!Number.isInteger(p) || p < 0 || p > 65535) {
    throw new RangeError(`Invalid port in "${text}"`);
  }
  return { host: host || "0.0.0.0", port: p };
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
  /** The transports. */
  readonly transports: Transport[];
  /** Diagnostics. */
  readonly log: LogFn;
  /** Display name for From. */
  displayName?: string;
  /** Host advertised in Contact (after an address change); undefined = the local address. */
  advertisedHost?: string;
  /** Option tags supported (see {@linkcode UserAgentOptions.supported}). */
  supported: string[];

  readonly #options: UserAgentOptions;
  readonly #handlers = new Map<string, RequestHandlerFn>();
  readonly #dialogs = new Map<string, DialogHandler>();
  readonly #legs = new Map<string, DialogHandler>();
  #digest?: DigestClient;
  /** Next-hop host -> the realms ("www:r" / "proxy:r") that challenged requests sent there. */
  readonly #realmsByHop = new Map<string, Set<string>>();
  #digestPending?: Promise<DigestClient | undefined>;
  #closed = false;
  #userAgent: string;
  #outboundProxy?: Uri;

  private constructor(
    options: UserAgentOptions,
    transports: Transport[],
    transport: TransportLayer,
  ) {
    this.#options = options;
    this.aor = options.aor ? toSipUri(options.aor) : parseUri("sip:anonymous@anonymous.invalid");
    this.displayName = options.displayName;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => {});
    this.transports = transports;
    this.transport = transport;
    this.advertisedHost = options.advertisedHost;
    this.supported = options.supported ?? ["eventlist"];
    this.#userAgent = options.userAgent ?? `sipkit/${VERSION}`;
    this.#outboundProxy = options.outboundProxy ? toSipUri(options.outboundProxy) : undefined;
    this.transactions = new TransactionLayer({
      transport,
      clock: this.clock,
      timers: options.timers,
      log: (m) => this.log("debug", m),
    });
    this.transactions.onRequest = (req, tx, info) => this.#dispatch(req, tx, info);
    this.transactions.onStrayResponse = (res) => {
      this.log("debug", `stray response ${res.status} ${res.reason} (${res.cseq.method}) dropped`);
    };
  }

  /** Opens the transports and returns a ready user agent. */
  static async create(options: UserAgentOptions = {}): Promise<UserAgent> {
    const transports = options.transports ?? await openTransports(options);
    const layer = new TransportLayer({
      transports,
      logger: options.log,
      trace: options.trace,
      compact: options.compactHeaders,
    });
    return new UserAgent(options, transports, layer);
  }

  /** The outbound proxy, when one is configured. */
  get outboundProxy(): Uri | undefined {
    return this.#outboundProxy;
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
    const toUri = structuredClone(uri);
    toUri.params = {};
    toUri.headers = {};
    const to = options.to ?? { uri: toUri, params: {} };
    const from = options.from ??
      { displayName: this.displayName, uri: this.aor, params: { tag: generateTag() } };
    const headers: [string, string][] = [
      ["Max-Forwards", "70"],
      ["To", formatNameAddr(to)],
      ["From", formatNameAddr(from)],
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
      port: local.port,
      params: target.protocol === "udp" || target.protocol === "tls"
        ? {}
        : { transport: target.protocol },
      headers: {},
    };
    return uri;
  }

  /** The targets of the next hop for a request (Route, outbound proxy, or Request-URI), RFC 3263. */
  async targetsFor(req: SipRequest): Promise<Target[]> {
    const routes = req.route;
    const next = structuredClone(routes.length > 0 ? routes[0].uri : req.uri);
    // --transport applies where the URI names none (RFC 3263 4.1 lets the client choose).
    const preferred = this.#options.transport;
    if (preferred && next.params.transport == null && next.scheme === "sip") {
      next.params.transport = preferred;
    }
    const resolve = this.#options.resolve ?? resolveSipUri;
    let targets: Target[];
    try {
      targets = await resolve(next, {
        transports: this.transports.map((t) => t.protocol).concat("tls")
          .filter((p, i, a) => a.indexOf(p) === i),
      });
    } catch (e) {
      // RFC 3263 section 4.3 / RFC 3261 8.1.3.1: no server could be located,
      // which the UA reports like a transport failure (a local 503).
      const message = e instanceof Error ? e.message : String(e);
      throw new SipRequestError(503, message, { local: true, cause: e });
    }
    if (targets.length === 0) {
      throw new SipRequestError(503, `Cannot locate ${formatUri(next)}`, { local: true });
    }
    return targets;
  }

  /**
   * Sends an out-of-dialog request and resolves with its final response:
   * adds the outbound proxy as Route, locates the next hop (RFC 3263) and
   * fails over to the next target on a timeout, transport error or 503,
   * answers 401/407 with digest credentials (a new CSeq each time), and
   * follows 3xx when asked. Rejects with {@linkcode SipRequestError} (local)
   * when no response comes, and with {@linkcode DigestAuthError} when
   * authentication cannot succeed.
   */
  async send(request: SipRequest, options: RequestSendOptions = {}): Promise<SendResult> {
    if (this.#closed) throw new SipRequestError(503, "User agent closed", { local: true });
    let req = request;
    const dialog = options.dialog;
    if (this.#outboundProxy && !dialog && !req.headers.has("Route")) {
      const proxy = structuredClone(this.#outboundProxy);
      proxy.params.lr = null;
      req.headers.prepend("Route", `<${formatUri(proxy)}>`);
    }
    const wantContact = options.contact ??
      (!req.headers.has("Contact") && METHODS_NEEDING_CONTACT.has(req.method));
    // Contact lines the caller put on the request stay after ours (a REGISTER
    // that adds a new contact and removes an old one carries both).
    const callerContacts = wantContact ? req.headers.getAll("Contact") : [];
    let digestAttempt = (await this.#digestClient(false))?.begin();
    const visited = new Set<string>([formatUri(req.uri)]);
    let redirects = 0;
    for (;;) {
      if (this.#digest) this.#applyCredentials(req);
      const sent = await this.#sendToNextHop(req, options, wantContact, callerContacts);
      const { response, target } = sent;
      req = sent.request;
      if ((response.status === 401 || response.status === 407)) {
        const digest = await this.#digestClient(true);
        if (!digest) {
          throw new DigestAuthError(
            "unsupported",
            `Authentication required by ${
              response.status === 407 ? "proxy" : "server"
            } but no password is configured`,
            { status: response.status },
          );
        }
        digestAttempt ??= digest.begin();
        digestAttempt.handleResponse(response);
        this.#rememberRealms(req, response);
        req = nextAttempt(req, dialog);
        continue;
      }
      if (response.status >= 300 && response.status < 400 && options.followRedirects) {
        let offered: NameAddr[] = [];
        try {
          offered = response.contact;
        } catch (e) {
          this.log("warn", `cannot follow ${response.status}: ${(e as Error).message}`);
        }
        const contacts = offered
          .filter((c) => c.uri.scheme === "sip" || c.uri.scheme === "sips")
          .sort((a, b) => qValue(b) - qValue(a));
        const next = contacts.find((c) => !visited.has(formatUri(c.uri)));
        if (next && redirects < (options.maxRedirects ?? 5)) {
          redirects++;
          visited.add(formatUri(next.uri));
          const to = structuredClone(next.uri);
          // Section 19.1.5: URI headers and method do not belong in a Request-URI.
          to.headers = {};
          delete to.params.method;
          options.onRedirect?.(req.uri, to, response);
          this.log("info", `following ${response.status} to ${formatUri(to)}`);
          req = nextAttempt(req);
          req.uri = to;
          // A new target may challenge with a realm already answered: that is no loop.
          digestAttempt = this.#digest?.begin();
          continue;
        }
        if (next) this.log("warn", `redirect limit reached at ${formatUri(next.uri)}`);
      }
      return { response, request: req, target };
    }
  }

  async #sendToNextHop(
    req: SipRequest,
    options: RequestSendOptions,
    wantContact: boolean,
    callerContacts: string[],
  ): Promise<{ response: SipResponse; target: Target; request: SipRequest }> {
    const targets = options.target ? [options.target] : await this.targetsFor(req);
    let lastError: unknown;
    for (let i = 0; i < targets.length; i++) {
      if (this.#closed) break;
      const target = targets[i];
      const attemptReq = i === 0 ? req : cloneMessage(req);
      if (wantContact) {
        let own: string;
        try {
          // On a stream transport this opens the connection (to learn the local address).
          own = `<${formatUri(await this.contactFor(target))}>`;
        } catch (e) {
          // Section 8.1.3.1: a transport error is treated as a 503 Service
          // Unavailable, and RFC 3263 4.3 moves on to the next target.
          const message = e instanceof Error ? e.message : String(e);
          lastError = new SipRequestError(503, `Transport error: ${message}`, {
            local: true,
            cause: e,
          });
          this.log("debug", `${formatTarget(target)}: ${message}; trying next target`);
          continue;
        }
        attemptReq.headers.delete("Contact");
        for (const c of [own, ...callerContacts]) attemptReq.headers.append("Contact", c);
      }
      const tx = this.transactions.request(attemptReq, target, {
        onProvisional: options.onProvisional,
      });
      options.onRequest?.(attemptReq, target);
      try {
        const response = await tx.response;
        // RFC 3263 section 4.3: "If a failure occurs [...] the client SHOULD
        // create a new request, which is identical to the previous, but has a
        // different value of the Via branch ID [...] and send it to the next
        // element", and a 503 counts as such a failure.
        if (response.status === 503 && i < targets.length - 1) {
          lastError = new SipRequestError(503, response.reason);
          this.log("debug", `${formatTarget(target)}: 503 ${response.reason}; trying next target`);
          continue;
        }
        return { response, target: tx.target, request: attemptReq };
      } catch (e) {
        lastError = e;
        if (e instanceof SipRequestError && e.local) {
          this.log("debug", `${formatTarget(target)}: ${e.message}; trying next target`);
          continue;
        }
        throw e;
      }
    }
    throw lastError ?? new SipRequestError(503, "No target", { local: true });
  }

  async #digestClient(required: boolean): Promise<DigestClient | undefined> {
    if (this.#digest) return this.#digest;
    if (!required) return undefined;
    this.#digestPending ??= (async () => {
      const password = await this.#options.password?.();
      if (password === undefined) return undefined;
      const username = this.#options.authUser ?? this.aor.user ?? "anonymous";
      this.#digest = new DigestClient({ username, password });
      return this.#digest;
    })();
    const client = await this.#digestPending;
    if (!client) this.#digestPending = undefined;
    return client;
  }

  /**
   * Puts cached credentials on a request, but only for realms that
   * challenged requests to the same next hop: a digest response sent to
   * another server would let it guess the password offline (a MESSAGE sent
   * straight to a peer must not carry the registrar's credentials).
   */
  #applyCredentials(req: SipRequest): void {
    const digest = this.#digest!;
    const allowed = this.#realmsByHop.get(nextHopHost(req)) ?? new Set<string>();
    const known = new Set(digest.realms);
    digest.apply(req);
    for (const name of ["Authorization", "Proxy-Authorization"] as const) {
      const lines = req.headers.getAll(name);
      if (lines.length === 0) continue;
      const kind = name === "Authorization" ? "www" : "proxy";
      const keep = lines.filter((line) => {
        try {
          const key = `${kind}:${parseDigestCredentials(line, name).realm}`;
          return !known.has(key) || allowed.has(key);
        } catch {
          return true; // not ours
        }
      });
      if (keep.length === lines.length) continue;
      req.headers.delete(name);
      for (const line of keep) req.headers.append(name, line);
    }
  }

  /** Records the realms of a 401/407 for the next hop the request went to. */
  #rememberRealms(req: SipRequest, response: SipResponse): void {
    const proxy = response.status === 407;
    const header = proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    const hop = nextHopHost(req);
    let set = this.#realmsByHop.get(hop);
    if (!set) this.#realmsByHop.set(hop, set = new Set());
    for (const line of response.headers.getAll(header)) {
      try {
        for (const c of parseDigestChallenges(line, header)) {
          set.add(`${proxy ? "proxy" : "www"}:${c.realm}`);
        }
      } catch {
        // an unparsable line was not answered either
      }
    }
  }

  /** Drops cached digest challenges (after an address change, or a failure). */
  forgetCredentials(): void {
    this.#digest?.forget();
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
              toTag: toOk ? tagFor(req) : undefined,
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
    if (req.method !== "CANCEL" && req.method !== "ACK") {
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
      incoming.respond(200).catch(() => {});
      const handler = this.#handlers.get("CANCEL");
      if (handler) run(handler);
      else if (!invite.lastResponse || invite.lastResponse.status < 200) {
        invite.respond(createResponse(invite.request, 487)); // 9.2
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
      headers.push(["Contact", `<${formatUri(uri)}>`]);
    }
    // Server identifies us once per peer: on answers to out-of-dialog
    // requests. In-dialog answers (NOTIFY, BYE...) leave it out to save bytes
    // on the most frequent messages (RFC 3261 20.35 makes it optional).
    if (req.to.params.tag == null) headers.push(["Server", this.#userAgent]);
    const extra = options.headers === undefined ? [] : toPairs(options.headers);
    const res = createResponse(req, status, {
      ...options,
      toTag: options.toTag ?? (status > 100 ? tagFor(req) : undefined),
      headers: [...headers, ...extra],
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

const tagCache = new WeakMap<SipRequest, string>();

/** One To tag per request, so every response of a transaction carries the same tag. */
function tagFor(req: SipRequest): string {
  let tag = tagCache.get(req);
  if (!tag) {
    tag = generateTag();
    tagCache.set(req, tag);
  }
  return tag;
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

/** A reason phrase from an error text: printable ASCII only, at most 100 characters. */
function sanitizeReason(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]+/g, " ").replace(/\s+/g, " ").trim();
  if (clean === "") return "Bad Request";
  return clean.length > 100 ? clean.slice(0, 97) + "..." : clean;
}

/** The host a request goes to first: its top Route, else its Request-URI. */
function nextHopHost(req: SipRequest): string {
  try {
    const routes = req.route;
    return (routes.length > 0 ? routes[0].uri : req.uri).host.toLowerCase();
  } catch {
    return req.uri.host.toLowerCase();
  }
}

function qValue(c: NameAddr): number {
  const q = c.params.q;
  const n = q == null ? 1 : Number(q);
  return Number.isFinite(n) ? n : 0;
}

function formatTarget(t: Target): string {
  return `${t.protocol}:${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
}

/** A copy of a request for a retry: CSeq + 1 (from the dialog's count when in one), no Via (8.1.3.5, 22.2). */
function nextAttempt(req: SipRequest, dialog?: Dialog): SipRequest {
  const next = cloneMessage(req);
  const cseq = req.cseq;
  let seq = cseq.seq + 1;
  if (dialog) {
    seq = Math.max(seq, (dialog.localSeq ?? 0) + 1);
    dialog.localSeq = seq;
  }
  next.headers.set("CSeq", `${seq} ${cseq.method}`);
  next.headers.delete("Via");
  return next;
}

async function openTransports(options: UserAgentOptions): Promise<Transport[]> {
  const bind = parseHostPort(options.bind ?? "0.0.0.0:0");
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

async function openTransportsOnce(options: UserAgentOptions, bind: HostPort): Promise<Transport[]> {
  const listen = options.listen ?? ["udp", "tcp"];
  const out: Transport[] = [];
  const log = options.log;
  try {
    let port = bind.port;
    // All transports share one port so that one Contact reaches them all.
    if (listen.includes("udp")) {
      const udp = new UdpTransport({ host: bind.host, port, logger: log });
      out.push(udp);
      port = udp.local.port;
    }
    if (listen.includes("tcp")) {
      const tcp = new TcpTransport({ host: bind.host, port, logger: log });
      out.push(tcp);
      port = tcp.local.port;
    }
    const tlsListen = listen.includes("tls") && options.tls?.cert && options.tls.key;
    out.push(
      new TlsTransport({
        host: bind.host,
        port: tlsListen ? port + 1 : 0,
        listen: Boolean(tlsListen),
        caCerts: options.tls?.caCerts,
        insecure: options.tls?.insecure,
        cert: options.tls?.cert,
        key: options.tls?.key,
        logger: log,
      }),
    );
  } catch (e) {
    await Promise.all(out.map((t) => t.close().catch(() => {})));
    throw e;
  }
  return out;
}
