/**
 * Sending out-of-dialog and in-dialog requests from the UA core (RFC 3261
 * section 8.1): the outbound proxy as a pre-existing route set, next-hop
 * location (RFC 3263) with failover to the next target, digest
 * authentication on 401/407 (credentials only for realms that challenged
 * the same next hop), 3xx following with a loop limit, and CANCEL of an
 * INVITE through an AbortSignal.
 *
 * @module
 */

import type * as Digest from "./digest.ts";
import type { Dialog } from "./dialog.ts";
import { DigestAuthError, SipRequestError } from "./errors.ts";
import {
  cloneMessage,
  formatUri,
  type NameAddr,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "./message.ts";
import type { ResolveOptions } from "./resolver.ts";
import type { AnyClientTransaction, Target, TransactionLayer } from "./transaction/mod.ts";
import { formatHostPort, literalSipTarget } from "./_net.ts";
import { cloneUri, formatAddress } from "./uri.ts";
import type { Transport, TransportProtocol } from "./transport.ts";
import type { LogLevel } from "./transport_layer.ts";

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
   * Called with the client transaction of each attempt (auth retry,
   * redirect, failover) as it starts: an INVITE usage follows its state.
   */
  onTransaction?: (tx: AnyClientTransaction, request: SipRequest) => void;
  /**
   * Called with every final response a transaction passes up, including
   * the 2xx retransmissions and the 2xx of other forks that arrive while an
   * INVITE transaction is Accepted (RFC 6026 8.4): the TU acknowledges each
   * (13.2.2.4). The first final also settles the returned promise.
   */
  onFinal?: (res: SipResponse, request: SipRequest) => void;
  /**
   * Aborting cancels the request: an INVITE transaction in progress gets a
   * CANCEL (9.1, sent once a provisional response came, with the 64*T1
   * limit), and no further attempt (auth retry, redirect, failover) starts.
   * The promise then settles with the INVITE's final response (487, or a 2xx
   * that crossed the CANCEL), or rejects with a local 408.
   */
  signal?: AbortSignal;
  /**
   * The request belongs to this dialog (built by `dialog.createRequest`): no
   * outbound proxy Route is added, and a retry after 401/407 takes its CSeq
   * from the dialog (and raises the dialog's INVITE sequence for a re-INVITE,
   * which its ACK reuses).
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

/** What {@linkcode OutboundSender} needs from the UA core. */
export interface OutboundSenderOptions {
  /** The transaction layer that runs the client transactions. */
  transactions: TransactionLayer;
  /** The transports (their protocols guide RFC 3263 resolution). */
  transports: Transport[];
  /** The address of record (default authentication user). */
  aor: Uri;
  /** Our Contact URI as seen from a target. */
  contactFor: (target: Target) => Promise<Uri>;
  /** Diagnostics. */
  log: (level: LogLevel, message: string) => void;
  /** True once the UA closed. */
  closed: () => boolean;
  /** Outbound proxy URI. */
  outboundProxy?: Uri;
  /** Transport for requests whose URI names none. */
  transport?: TransportProtocol;
  /** Authentication user name; default the user part of the AOR. */
  authUser?: string;
  /** Yields the password when a challenge first needs it. */
  password?: () => Promise<string | undefined>;
  /** Server location; default RFC 3263 through DNS. */
  resolve?: (uri: Uri, options: ResolveOptions) => Promise<Target[]>;
}

const METHODS_NEEDING_CONTACT = new Set(["INVITE", "SUBSCRIBE", "REGISTER", "REFER", "NOTIFY"]);

/**
 * The UA core's request sender; {@linkcode UserAgent.send} uses it. Holds
 * the digest state (cached challenges, and which realms challenged which
 * next hop).
 */
export class OutboundSender {
  readonly #o: OutboundSenderOptions;
  #digest?: Digest.DigestClient;
  /** The digest module, loaded with the first client (most requests are never challenged). */
  #digestApi?: typeof Digest;
  /** Next-hop host -> the realms ("www:r" / "proxy:r") that challenged requests sent there. */
  readonly #realmsByHop = new Map<string, Set<string>>();
  #digestPending?: Promise<Digest.DigestClient | undefined>;

  /** Creates the sender for one UA. */
  constructor(options: OutboundSenderOptions) {
    this.#o = options;
  }

  /** The outbound proxy, when one is configured. */
  get outboundProxy(): Uri | undefined {
    return this.#o.outboundProxy;
  }

  /** The targets of the next hop for a request (Route, outbound proxy, or Request-URI), RFC 3263. */
  async targetsFor(req: SipRequest): Promise<Target[]> {
    const routes = req.route;
    const next = cloneUri(routes.length > 0 ? routes[0].uri : req.uri);
    // --transport applies where the URI names none (RFC 3263 4.1 lets the client choose).
    const preferred = this.#o.transport;
    if (preferred && next.params.transport == null && next.scheme === "sip") {
      next.params.transport = preferred;
    }
    const transports = this.#o.transports.map((t) => t.protocol).concat("tls")
      .filter((p, i, a) => a.indexOf(p) === i);
    let targets: Target[];
    try {
      if (this.#o.resolve) targets = await this.#o.resolve(next, { transports });
      else {
        // An address needs no DNS: the resolver is loaded for names only.
        const literal = literalSipTarget(next, transports);
        targets = literal
          ? [literal]
          : await (await import("./resolver.ts")).resolveSipUri(next, { transports });
      }
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
    if (this.#o.closed()) throw new SipRequestError(503, "User agent closed", { local: true });
    let req = request;
    const dialog = options.dialog;
    if (this.#o.outboundProxy && !dialog && !req.headers.has("Route")) {
      const proxy = cloneUri(this.#o.outboundProxy);
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
    const signal = options.signal;
    if (signal?.aborted) throw new SipRequestError(487, "Request Terminated", { local: true });
    for (;;) {
      if (this.#digest) this.#applyCredentials(req);
      const sent = await this.#sendToNextHop(req, options, wantContact, callerContacts);
      const { response, target } = sent;
      req = sent.request;
      // Once cancelled, no new attempt starts: the caller gets this answer.
      if (signal?.aborted) return { response, request: req, target };
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
          this.#o.log("warn", `cannot follow ${response.status}: ${(e as Error).message}`);
        }
        const contacts = offered
          .filter((c) => c.uri.scheme === "sip" || c.uri.scheme === "sips")
          .sort((a, b) => qValue(b) - qValue(a));
        const next = contacts.find((c) => !visited.has(formatUri(c.uri)));
        if (next && redirects < (options.maxRedirects ?? 5)) {
          redirects++;
          visited.add(formatUri(next.uri));
          const to = cloneUri(next.uri);
          // Section 19.1.5: URI headers and method do not belong in a Request-URI.
          to.headers = {};
          delete to.params.method;
          options.onRedirect?.(req.uri, to, response);
          this.#o.log("info", `following ${response.status} to ${formatUri(to)}`);
          req = nextAttempt(req);
          req.uri = to;
          // A new target may challenge with a realm already answered: that is no loop.
          digestAttempt = this.#digest?.begin();
          continue;
        }
        if (next) this.#o.log("warn", `redirect limit reached at ${formatUri(next.uri)}`);
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
    const signal = options.signal;
    for (let i = 0; i < targets.length; i++) {
      if (this.#o.closed()) break;
      if (signal?.aborted) {
        throw lastError ?? new SipRequestError(487, "Request Terminated", { local: true });
      }
      const target = targets[i];
      const attemptReq = i === 0 ? req : cloneMessage(req);
      if (wantContact) {
        let own: string;
        try {
          // On a stream transport this opens the connection (to learn the local address).
          own = formatAddress({ uri: await this.#o.contactFor(target), params: {} });
        } catch (e) {
          // Section 8.1.3.1: a transport error is treated as a 503 Service
          // Unavailable, and RFC 3263 4.3 moves on to the next target.
          const message = e instanceof Error ? e.message : String(e);
          lastError = new SipRequestError(503, `Transport error: ${message}`, {
            local: true,
            cause: e,
          });
          this.#o.log("debug", `${formatTarget(target)}: ${message}; trying next target`);
          continue;
        }
        attemptReq.headers.delete("Contact");
        for (const c of [own, ...callerContacts]) attemptReq.headers.append("Contact", c);
      }
      if (signal?.aborted) {
        throw new SipRequestError(487, "Request Terminated", { local: true });
      }
      const tx = this.#o.transactions.request(attemptReq, target, {
        onProvisional: options.onProvisional,
        onFinal: options.onFinal && ((res) => options.onFinal?.(res, attemptReq)),
      });
      options.onRequest?.(attemptReq, target);
      options.onTransaction?.(tx, attemptReq);
      const cancel = () => {
        if (tx.request.method === "INVITE") this.#o.transactions.cancel(tx);
      };
      signal?.addEventListener("abort", cancel, { once: true });
      try {
        const response = await tx.response;
        // RFC 3263 section 4.3: "If a failure occurs [...] the client SHOULD
        // create a new request, which is identical to the previous, but has a
        // different value of the Via branch ID [...] and send it to the next
        // element", and a 503 counts as such a failure.
        if (response.status === 503 && i < targets.length - 1) {
          lastError = new SipRequestError(503, response.reason);
          this.#o.log(
            "debug",
            `${formatTarget(target)}: 503 ${response.reason}; trying next target`,
          );
          continue;
        }
        return { response, target: tx.target, request: attemptReq };
      } catch (e) {
        lastError = e;
        if (e instanceof SipRequestError && e.local && !signal?.aborted) {
          this.#o.log("debug", `${formatTarget(target)}: ${e.message}; trying next target`);
          continue;
        }
        throw e;
      } finally {
        signal?.removeEventListener("abort", cancel);
      }
    }
    throw lastError ?? new SipRequestError(503, "No target", { local: true });
  }

  async #digestClient(required: boolean): Promise<Digest.DigestClient | undefined> {
    if (this.#digest) return this.#digest;
    if (!required) return undefined;
    this.#digestPending ??= (async () => {
      const password = await this.#o.password?.();
      if (password === undefined) return undefined;
      const username = this.#o.authUser ?? this.#o.aor.user ?? "anonymous";
      // Loaded here, not imported: a one-shot command that is never
      // challenged starts without it (and without node:crypto).
      this.#digestApi ??= await import("./digest.ts");
      this.#digest = new this.#digestApi.DigestClient({ username, password });
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
          const key = `${kind}:${this.#digestApi!.parseDigestCredentials(line, name).realm}`;
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
        for (const c of this.#digestApi!.parseDigestChallenges(line, header)) {
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
}

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
  return `${t.protocol}:${formatHostPort(t)}`;
}

/** A copy of a request for a retry: CSeq + 1 (from the dialog's count when in one), no Via (8.1.3.5, 22.2). */
function nextAttempt(req: SipRequest, dialog?: Dialog): SipRequest {
  const next = cloneMessage(req);
  const cseq = req.cseq;
  let seq = cseq.seq + 1;
  if (dialog) seq = Math.max(seq, (dialog.localSeq ?? 0) + 1);
  next.headers.set("CSeq", `${seq} ${cseq.method}`);
  // A re-INVITE retried with credentials: its ACK takes the new number too.
  dialog?.noteSent(cseq.method, seq);
  next.headers.delete("Via");
  return next;
}
