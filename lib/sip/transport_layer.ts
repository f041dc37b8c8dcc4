/**
 * The SIP transport layer (RFC 3261 section 18, RFC 3581): owns the
 * transports, parses what they receive and formats what the transaction
 * layer sends. It stamps the top Via of outgoing requests (transport,
 * sent-by, empty rport), marks incoming requests with `received` and
 * `rport`, routes responses back per section 18.2.2, moves large requests
 * from UDP to TCP (section 18.1.1), answers unparsable requests with 400 and
 * drops responses that are not for us (section 18.1.2).
 *
 * @module
 */

import type { Clock, TimerId } from "./clock.ts";
import {
  canonicalName,
  createResponse,
  formatHead,
  formatMessage,
  type FormatOptions,
  formatVia,
  parseMessage,
  parseVia,
  SipHeaders,
  type SipMessage,
  SipMessageError,
  type SipRequest,
  SipResponse,
  type Via,
} from "./message.ts";
import { ConnectError } from "./errors.ts";
import { sanitizeReason } from "./status.ts";
import { randomTag } from "./_random.ts";
import {
  formatHostPort,
  hostPortKey,
  isIPv4,
  isIPv6,
  isLoopback,
  isUnspecified,
  normalizeHost,
} from "./_net.ts";
import type { HostPort, Inbound, Transport, TransportProtocol } from "./transport.ts";

/** Where a request goes (an address; resolving names is RFC 3263's job, done before). */
export interface Target {
  /** Transport protocol. */
  protocol: TransportProtocol;
  /** Destination host (IP address, or a name the socket layer resolves). */
  host: string;
  /** Destination port. */
  port: number;
  /** TLS: the name the server certificate must match (e.g. the SIPS domain). Default `host`. */
  serverName?: string;
}

/** How a message came in: enough to send a response back on the same path. */
export interface InboundInfo {
  /** Source address of the packet or connection. */
  remote: HostPort;
  /** Local address it arrived on. */
  local: HostPort;
  /** Transport protocol it arrived on. */
  protocol: TransportProtocol;
  /** The transport it arrived on. */
  transport: Transport;
}

/**
 * A response formatted and routed over an unreliable transport: what a
 * completed server transaction keeps to answer retransmissions (RFC 3261
 * 17.2.2, timer J) instead of the parsed messages. Either its bytes, or,
 * for a response that `createResponse` derives from the request plus fixed
 * header fields (the usual 200 to a MESSAGE), only what a retransmission of
 * the request does not carry again: the To tag, the request's source and
 * the shared rest; the same bytes are then rebuilt from the retransmission.
 */
export interface PreparedResponse {
  /**
   * The bytes on the wire, one character per byte (a JavaScript string of
   * this kind costs its length plus a few words, where a `Uint8Array` adds
   * an ArrayBuffer and a backing store to each of thousands of responses);
   * undefined when the response is rebuilt from a retransmission.
   */
  readonly wire: string | undefined;
  /** The transport it leaves on. */
  readonly transport: Transport;
  /** Destination host (18.2.2, RFC 3581). */
  readonly host: string;
  /** Destination port. */
  readonly port: number;
}

/** A retransmission of a request, for {@linkcode TransportLayer.sendPrepared}. */
export interface Retransmission {
  /** The request as received again. */
  request: SipRequest;
  /** How it came in. */
  info: InboundInfo;
}

/**
 * What responses built the same way share: status, reason and the header
 * fields added to those `createResponse` copies from the request.
 */
class Recipe {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly extras: { name: string; value: string }[],
  ) {}
}

/**
 * A {@linkcode PreparedResponse}; `tag` and `recipe` set when it is rebuilt,
 * not kept. Thousands are held for timer J: six fields, hosts shared.
 */
class Prepared implements PreparedResponse {
  constructor(
    readonly transport: Transport,
    readonly host: string,
    readonly port: number,
    /** The bytes (one character per byte), or the recipe that rebuilds them. */
    readonly made: string | Recipe,
    /** The To tag the response added ("" when the request had one). */
    readonly tag: string,
    /**
     * Where the request came from (its top Via is marked for that source),
     * when that is not where the response goes.
     */
    readonly source: HostPort | undefined,
  ) {}

  /** The bytes, unless rebuilt. */
  get wire(): string | undefined {
    return typeof this.made === "string" ? this.made : undefined;
  }

  /** The recipe, when rebuilt. */
  get recipe(): Recipe | undefined {
    return typeof this.made === "string" ? undefined : this.made;
  }

  /** Where the request came from. */
  get sourceHost(): string {
    return this.source ? this.source.host : this.host;
  }

  /** Its port. */
  get sourcePort(): number {
    return this.source ? this.source.port : this.port;
  }
}

/**
 * The parts of a {@linkcode PreparedResponse} that a table of many (the
 * transaction layer's timer-J ring) keeps in columns instead of the object;
 * {@linkcode unpackPrepared} makes an equivalent response of them again.
 */
export interface PreparedParts {
  /** The transport it leaves on. */
  readonly transport: Transport;
  /** Destination host. */
  readonly host: string;
  /** Destination port. */
  readonly port: number;
  /** Its bytes or how to rebuild them (opaque). */
  readonly made: unknown;
  /** The To tag it added ("" when none). */
  readonly tag: string;
}

/**
 * The parts of `packet` when they are all it is (its request came from where
 * it goes), else undefined: the packet itself then has to be kept.
 */
export function packPrepared(packet: PreparedResponse): PreparedParts | undefined {
  return packet instanceof Prepared && packet.source === undefined ? packet : undefined;
}

/** A prepared response made again of the parts {@linkcode packPrepared} gave. */
export function unpackPrepared(
  transport: Transport,
  host: string,
  port: number,
  made: unknown,
  tag: string,
): PreparedResponse {
  return new Prepared(transport, host, port, made as string | Recipe, tag, undefined);
}

/** True when `recipe` makes a response of this status and reason with the fields `have[from..]`. */
function sameRecipe(
  recipe: Recipe,
  status: number,
  reason: string,
  have: { name: string; value: string }[],
  from: number,
): boolean {
  const extras = recipe.extras;
  if (recipe.status !== status || recipe.reason !== reason) return false;
  if (have.length - from !== extras.length) return false;
  for (let i = 0; i < extras.length; i++) {
    const f = have[from + i];
    if (f.name !== extras[i].name || f.value !== extras[i].value) return false;
  }
  return true;
}

/** At most this many recipes are shared; responses of other shapes keep their bytes. */
const MAX_RECIPES = 256;

/** A tag `createResponse` appends as is. */
const TAG = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

const ascii = new TextDecoder();
const encoder = new TextEncoder();
/** The format of every message without compact headers. */
const PLAIN: FormatOptions = { compact: false, contentLength: true };

/** Bytes as a string of one character per byte. */
function toWire(bytes: Uint8Array): string {
  // Almost every response is ASCII: then its UTF-8 decoding, done natively,
  // is that string (one character per byte, none of them a replacement).
  const text = ascii.decode(bytes);
  if (text.length === bytes.length && text.indexOf("\uFFFD") < 0) return text;
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return s;
}

/** The bytes of a {@linkcode toWire} string. */
function fromWire(wire: string): Uint8Array {
  const bytes = new Uint8Array(wire.length);
  for (let i = 0; i < wire.length; i++) bytes[i] = wire.charCodeAt(i);
  return bytes;
}

/** Log levels of {@linkcode TransportLayerOptions.logger}. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Options of {@linkcode TransportLayer}. */
export interface TransportLayerOptions {
  /** The transports to use (at most one per protocol is used for sending: the first). */
  transports: Transport[];
  /** Receives diagnostics (dropped messages, transport errors). */
  logger?: (level: LogLevel, msg: string) => void;
  /** Called with the raw bytes of every message sent and received (for `--trace`). */
  trace?: (dir: "send" | "recv", data: Uint8Array, peer: Target) => void;
  /**
   * Largest request in bytes sent over UDP; a larger one goes over TCP
   * (RFC 3261 18.1.1). Default 1300, the rule for an unknown path MTU; with
   * a known path MTU M, pass M - 200.
   */
  mtu?: number;
  /** Send header names in their compact forms (RFC 3261 7.3.3). Default false. */
  compact?: boolean;
}

/**
 * How the layer takes inbound messages: it parses each at once and keeps
 * nothing of the bytes (the parser copies the body; a trace is written at
 * once), so a UDP transport need not copy each datagram for it.
 */
const RECEIVE_OPTIONS = { copies: true } as const;

/** The key of a destination in the `#direct` map. */
function directKey(protocol: string, to: HostPort): string {
  return `${protocol.toLowerCase()}|${hostPortKey(to)}`;
}

/** Default port per protocol (RFC 3261 sections 18.2.2 and 19.1.2). */
function defaultPort(protocol: string): number {
  return protocol.toLowerCase() === "tls" ? 5061 : 5060;
}

/**
 * Replaces the top Via value of a message (the first value of the first Via
 * line), keeping any other values on that line.
 */
function replaceTopVia(msg: SipMessage, via: Via): void {
  const fields = msg.headers.fields;
  const index = fields.findIndex((f) => f.name === "Via");
  if (index < 0) throw new TypeError("Cannot send request: missing Via header");
  const line = fields[index].value;
  // A line without a comma holds one value (the usual case): nothing to keep.
  const rest = line.indexOf(",") < 0
    ? []
    : new SipHeaders([{ name: "Via", value: line }]).values("Via").slice(1);
  fields[index] = {
    name: "Via",
    value: rest.length === 0 ? formatVia(via) : [formatVia(via), ...rest].join(", "),
  };
  // The other fields' typed values (From, To, CSeq...) stay as parsed.
  msg._topViaReplaced(via);
}

/**
 * RFC 3261 18.2.1 and RFC 3581 section 4: the Via a server records for a
 * request from `remote`.
 */
function markReceived(via: Via, remote: HostPort): Via {
  const params = { ...via.params };
  const source = normalizeHost(remote.host);
  // 18.2.1: "When the server transport receives a request over any
  // transport, it MUST examine the value of the "sent-by" parameter in the
  // top Via header field value. If the host portion of the "sent-by"
  // parameter contains a domain name, or if it contains an IP address that
  // differs from the packet source address, the server MUST add a
  // "received" parameter to that Via header field value."
  if (normalizeHost(via.host) !== source) params.received = source;
  // RFC 3581 4: "If this Via header field value contains an "rport"
  // parameter with no value, it MUST set the value of the parameter to the
  // source port of the request. [...] the server MUST insert a "received"
  // parameter containing the source IP address that the request came from,
  // even if it is identical to the value of the "sent-by" component."
  if (params.rport === null) {
    params.rport = String(remote.port);
    params.received = source;
  }
  return { ...via, params };
}

/** Raw headers of a message that did not parse: enough to answer it, when readable. */
interface RawRequest {
  method: string;
  fields: { name: string; value: string }[];
}

/** Reads the start line and header lines of bytes that failed to parse, leniently. */
function readRawRequest(data: Uint8Array): RawRequest | undefined {
  const text = new TextDecoder().decode(data.subarray(0, Math.min(data.length, 65_536)));
  const headEnd = text.search(/\r?\n\r?\n/);
  const lines = (headEnd < 0 ? text : text.slice(0, headEnd)).replace(/^[\r\n]+/, "")
    .split(/\r?\n/);
  const start = /^([!-~]+) \S+ SIP\/\S+$/i.exec(lines[0] ?? "");
  if (!start || /^SIP\//i.test(lines[0])) return undefined;
  const fields: { name: string; value: string }[] = [];
  for (const line of lines.slice(1)) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      fields[fields.length - 1].value += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    let name: string;
    try {
      name = canonicalName(line.slice(0, colon).trim());
    } catch {
      continue;
    }
    fields.push({ name, value: line.slice(colon + 1).trim() });
  }
  return { method: start[1], fields };
}

/**
 * The transport layer.
 *
 * @example
 * ```ts
 * import { TransportLayer } from "./transport_layer.ts";
 * import { LoopNetwork } from "./transport_loop.ts";
 * import { createRequest, createResponse } from "./message.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const alice = new TransportLayer({ transports: [net.transport({ host: "192.0.2.1" })] });
 * const bob = new TransportLayer({ transports: [net.transport({ host: "192.0.2.2" })] });
 * bob.onRequest((req, info) => bob.sendResponse(createResponse(req, 200), info));
 * const answer = new Promise<number>((resolve) => alice.onResponse((res) => resolve(res.status)));
 * const req = createRequest("OPTIONS", "sip:bob@192.0.2.2", {
 *   headers: {
 *     Via: "SIP/2.0/UDP invalid;branch=z9hG4bK1",
 *     From: "<sip:alice@example.test>;tag=1",
 *     To: "<sip:bob@example.test>",
 *     "Call-ID": "c1",
 *     CSeq: "1 OPTIONS",
 *     "Max-Forwards": "70",
 *   },
 * });
 * await alice.sendRequest(req, { protocol: "udp", host: "192.0.2.2", port: 5060 });
 * assert.equal(req.topVia.host, "192.0.2.1");
 * assert.equal(await answer, 200);
 * ```
 */
export class TransportLayer {
  #transports: Transport[];
  #logger?: TransportLayerOptions["logger"];
  #trace?: TransportLayerOptions["trace"];
  #mtu: number;
  #compact: boolean;
  #onRequest?: (req: SipRequest, info: InboundInfo) => void;
  #onResponse?: (res: SipResponse, info: InboundInfo) => void;
  #onRefused?: (target: Target, error: Error) => boolean;
  /** The response last prepared, with its bytes or text, until it is first sent. */
  #prepared?: {
    packet: PreparedResponse;
    bytes: Uint8Array | undefined;
    text: string | undefined;
  };
  /** Recipes shared by the responses rebuilt from retransmissions, by shape. */
  #recipes = new Map<string, Recipe>();
  /** The recipe `#recipeFor` found last. */
  #lastRecipe?: Recipe;
  /** Host strings shared by prepared responses (one copy, not one per datagram). */
  #hosts = new Map<string, string>();
  /** sent-by values put into requests (18.1.2 check of responses). */
  #sentBy = new Set<string>();
  /**
   * Destinations (protocol, address, port) whose answers showed that they
   * see our requests come from our sent-by (RFC 3581 `received`/`rport`
   * equal to it: no NAT between us), with that sent-by: requests to them
   * leave `rport` out, since it would change nothing. A new sent-by (a move)
   * does not match, so `rport` comes back until an answer confirms again.
   */
  #direct = new Map<string, string>();
  /** Requests already stamped: a retransmission keeps its Via (17.1.1.2, 17.2.3). */
  #stamped = new WeakSet<SipRequest>();
  /** Mobility: the host's current address per family, for sockets bound to all addresses. */
  #localHosts = new Map<"v4" | "v6", string>();
  /** Transports replaced after a move, still receiving until closed. */
  #retired = new Set<Transport>();
  #retireTimers = new Map<TimerId, Clock>();

  /** Takes ownership of the transports and starts receiving on them. */
  constructor(options: TransportLayerOptions) {
    this.#transports = [...options.transports];
    this.#logger = options.logger;
    this.#trace = options.trace;
    this.#mtu = options.mtu ?? 1300;
    this.#compact = options.compact ?? false;
    for (const t of this.#transports) {
      this.#sentBy.add(hostPortKey(t.local));
      t.onMessage((inbound) => this.#receive(inbound), RECEIVE_OPTIONS);
      t.onRefused?.((to, error) => this.#refused(t, to, error));
    }
  }

  /** Sets the handler for inbound requests (with `received`/`rport` already applied). */
  onRequest(handler: (req: SipRequest, info: InboundInfo) => void): void {
    this.#onRequest = handler;
  }

  /** Sets the handler for inbound responses that passed the sent-by check. */
  onResponse(handler: (res: SipResponse, info: InboundInfo) => void): void {
    this.#onResponse = handler;
  }

  /**
   * Sets the handler told when a destination refused a datagram (ICMP port
   * unreachable, RFC 3261 18.4: see {@linkcode Transport.onRefused}); it
   * returns true when it took the refusal.
   */
  onRefused(handler: (target: Target, error: Error) => boolean): void {
    this.#onRefused = handler;
  }

  /**
   * Mobility: puts `next` in the place of `old` (after the host's address
   * changed). `next` receives from now on and sends every later request and
   * retransmission; the sent-by values of `old` stay accepted, so answers to
   * requests sent before still match. The caller closes `old` (when it is
   * not `next` itself).
   */
  replaceTransport(old: Transport, next: Transport): void {
    const index = this.#transports.indexOf(old);
    if (index < 0) throw new TypeError("Cannot replace a transport the layer does not own");
    this.#transports[index] = next;
    this.#sentBy.add(hostPortKey(next.local));
    if (next !== old) {
      next.onMessage((inbound) => this.#receive(inbound), RECEIVE_OPTIONS);
      next.onRefused?.((to, error) => this.#refused(next, to, error));
    }
  }

  /** A refusal heard by `transport`, passed on to the handler. */
  #refused(transport: Transport, to: HostPort, error: Error): boolean {
    const target: Target = { protocol: transport.protocol, host: to.host, port: to.port };
    return this.#onRefused?.(target, error) ?? false;
  }

  /**
   * Mobility: transports replaced by {@linkcode replaceTransport} that keep
   * receiving (answers to requests sent before the move) until they are
   * closed; {@linkcode close} closes them too.
   */
  retire(transports: Transport[], clock: Clock, afterMs: number): void {
    for (const t of transports) this.#retired.add(t);
    const timer = clock.setTimeout(() => {
      this.#retireTimers.delete(timer);
      for (const t of transports) {
        this.#retired.delete(t);
        t.close().catch(() => {});
      }
    }, afterMs);
    this.#retireTimers.set(timer, clock);
  }

  /**
   * Mobility: the host's address that matters now (from an address
   * monitor). Datagram transports bound to all addresses (0.0.0.0, ::) use
   * it as Via sent-by and Contact host toward destinations of its family
   * (loopback destinations excepted), instead of guessing from the
   * interface list. Undefined forgets it for that family.
   */
  setLocalHost(host: string, family?: "IPv4" | "IPv6"): void {
    const h = normalizeHost(host);
    const key = family ? (family === "IPv6" ? "v6" : "v4") : isIPv6(h) ? "v6" : "v4";
    this.#localHosts.set(key, h);
  }

  /** The address set by {@linkcode setLocalHost} for a family, if any. */
  localHost(family: "IPv4" | "IPv6"): string | undefined {
    return this.#localHosts.get(family === "IPv6" ? "v6" : "v4");
  }

  /** The first transport of a protocol, or undefined. */
  transport(protocol: TransportProtocol): Transport | undefined {
    return this.#transports.find((t) => t.protocol === protocol);
  }

  /** Every transport, in the order given. */
  get transports(): readonly Transport[] {
    return this.#transports;
  }

  /**
   * The address (for Via sent-by and Contact) that a message to `target`
   * leaves from. May open a connection on stream transports.
   */
  async localAddress(target: Target): Promise<HostPort> {
    const transport = this.#require(target.protocol, target.host);
    return await this.#localFor(transport, target);
  }

  /**
   * Sends a request. The top Via must exist (with its branch); its
   * transport, sent-by and an empty `rport` are filled in here. A UDP request
   * larger than `mtu` goes over TCP (RFC 3261 18.1.1), falling back to UDP
   * when the TCP connection is refused (except MESSAGE, RFC 3428 section 8). Resolves with the target used.
   */
  async sendRequest(req: SipRequest, target: Target): Promise<Target> {
    const transport = this.#require(target.protocol, target.host);
    if (this.#keepsVia(req)) {
      // 17.1.1.2 / 17.1.2.2: a retransmission is the same request; 9.1: "the
      // CANCEL [...] MUST have a single Via header field value matching the
      // top Via value in the request being cancelled", which 17.2.3 matches
      // on: after the host moved, they still carry the Via first sent.
      const same = this.#format(req, transport.reliable);
      await this.#send(transport, same, target);
      return target;
    }
    let bytes = await this.#stamp(req, transport, target);
    if (target.protocol === "udp" && bytes.length > this.#mtu) {
      // 18.1.1: "If a request is within 200 bytes of the path MTU, or if it
      // is larger than 1300 bytes and the path MTU is unknown, the request
      // MUST be sent using an RFC 2914 congestion controlled transport
      // protocol, such as TCP."
      const tcp = this.transport("tcp") && this.#require("tcp", target.host);
      if (!tcp) {
        throw new Error(
          `Cannot send ${req.method} over UDP: ${bytes.length} bytes exceed ${this.#mtu} ` +
            `(RFC 3261 18.1.1) and no TCP transport is configured`,
        );
      }
      const switched: Target = { ...target, protocol: "tcp" };
      const udpBytes = bytes;
      try {
        bytes = await this.#stamp(req, tcp, switched);
        await this.#send(tcp, bytes, switched);
        return switched;
      } catch (error) {
        // 18.1.1: "if the attempt to establish the connection generates
        // either an ICMP Protocol Not Supported, or results in a TCP reset,
        // the element SHOULD retry the request, using UDP."
        if (!(error instanceof ConnectError)) throw error;
        if (req.method === "MESSAGE") {
          // RFC 3428 section 8: a MESSAGE over the size limit goes over a
          // congestion-controlled transport only, never back to UDP.
          throw new Error(
            `Cannot send MESSAGE over UDP: ${udpBytes.length} bytes exceed ${this.#mtu} ` +
              `(RFC 3261 18.1.1) and TCP failed: ${(error as Error).message}`,
          );
        }
        this.#log(
          "info",
          `${req.method} to ${formatHostPort(target)}: TCP ${error.kind}, retrying over UDP`,
        );
        await this.#stamp(req, transport, target);
        await this.#send(transport, udpBytes, target);
        return target;
      }
    }
    await this.#send(transport, bytes, target);
    return target;
  }

  /**
   * Sends a response (RFC 3261 18.2.2, RFC 3581 4): over the connection or
   * socket the request came in on when `info` is given; to `received` and
   * `rport`, `maddr`, or sent-by otherwise.
   */
  async sendResponse(res: SipResponse, info?: InboundInfo): Promise<void> {
    const via = res.topVia;
    const protocol = via.transport.toLowerCase() as TransportProtocol;
    const port = via.port ?? defaultPort(protocol);
    // The transport the request came in on (RFC 3581: the response goes out
    // from the address and port the request arrived on).
    const inbound = info
      ? info.transport ?? this.#require(info.protocol, info.remote.host)
      : undefined;
    const reliable = inbound ? inbound.reliable : protocol !== "udp";
    const bytes = this.#format(res, reliable);
    if (reliable) {
      // 18.2.2: "If the "sent-protocol" is a reliable transport protocol such
      // as TCP or SCTP, or TLS over those, the response MUST be sent using
      // the existing connection to the source of the original request [...]
      // If that connection is no longer open, the server SHOULD open a
      // connection to the IP address in the "received" parameter, if
      // present, using the port in the "sent-by" value, or the default port
      // for that transport, if no port is specified."
      const transport = inbound ?? this.#require(protocol, via.params.received ?? via.host);
      if (info) {
        try {
          await this.#send(transport, bytes, { ...info.remote, protocol: info.protocol });
          return;
        } catch (error) {
          this.#log(
            "debug",
            `response to ${formatHostPort(info.remote)} failed (${error}), using Via`,
          );
        }
      }
      const host = via.params.received ?? via.host;
      await this.#send(transport, bytes, { protocol: transport.protocol, host, port });
      return;
    }
    const to = this.#unreliableDestination(via, port, inbound);
    await this.#send(to.transport, bytes, {
      protocol: to.transport.protocol,
      host: to.host,
      port: to.port,
    });
  }

  /**
   * Formats and routes a response to a request that came in on an unreliable
   * transport (see {@linkcode PreparedResponse}); undefined when it came over
   * a stream, whose responses go through {@linkcode sendResponse}. With the
   * request it answers, a response derived from it by `createResponse` keeps
   * only what a retransmission does not carry.
   */
  prepareResponse(
    res: SipResponse,
    info: InboundInfo,
    request?: SipRequest,
  ): PreparedResponse | undefined {
    const inbound = info.transport ?? this.#require(info.protocol, info.remote.host);
    if (inbound.reliable) return undefined;
    const via = res.topVia;
    const to = this.#unreliableDestination(via, via.port ?? defaultPort(via.transport), inbound);
    // Without a body, the text: a transport with sendText encodes it into its own buffer.
    const text = res.body.length === 0
      ? formatHead(res, this.#formatOptions(res, false))
      : undefined;
    const bytes = text === undefined ? this.#format(res, false) : undefined;
    let made: { recipe: Recipe; tag: string } | undefined;
    try {
      made = request ? this.#recipeFor(res, request) : undefined;
    } catch {
      made = undefined; // a header of the request that does not parse: keep the bytes
    }
    const host = this.#host(to.host);
    const source = info.remote.host === to.host && info.remote.port === to.port
      ? undefined
      : { host: this.#host(info.remote.host), port: info.remote.port };
    const packet = new Prepared(
      to.transport,
      host,
      to.port,
      made ? made.recipe : toWire(bytes ?? encoder.encode(text!)),
      made?.tag ?? "",
      source,
    );
    // The first send, which usually follows at once, needs no conversion back.
    this.#prepared = { packet, bytes, text };
    return packet;
  }

  /** The shared copy of a host string (at most 1,024 kept). */
  #host(host: string): string {
    const shared = this.#hosts.get(host);
    if (shared !== undefined) return shared;
    if (this.#hosts.size >= 1024) this.#hosts.clear();
    this.#hosts.set(host, host);
    return host;
  }

  /**
   * Sends a response made by {@linkcode prepareResponse} (again). One kept
   * without its bytes is rebuilt from `again`, the retransmission it answers
   * (the same bytes: a retransmission is the same request), and is refused
   * without it.
   */
  async sendPrepared(packet: PreparedResponse, again?: Retransmission): Promise<void> {
    const prepared = this.#prepared?.packet === packet ? this.#prepared : undefined;
    this.#prepared = undefined;
    const transport = packet.transport;
    if (prepared?.text !== undefined && transport.sendText && !this.#trace) {
      await transport.sendText(prepared.text, { host: packet.host, port: packet.port });
      return;
    }
    let bytes = prepared && (prepared.bytes ?? encoder.encode(prepared.text!));
    if (!bytes && packet.wire !== undefined) bytes = fromWire(packet.wire);
    if (!bytes) {
      if (!(packet instanceof Prepared) || !packet.recipe || !again) {
        throw new TypeError("Cannot resend a prepared response without the retransmission");
      }
      bytes = this.#rebuild(packet, packet.recipe, again);
    }
    await this.#send(packet.transport, bytes, {
      protocol: packet.transport.protocol,
      host: packet.host,
      port: packet.port,
    });
  }

  /**
   * The recipe and To tag that rebuild `res` from `request` (or from a
   * retransmission of it), when `res` is what `createResponse` makes of it:
   * no body, the request's Via, From, To (with a new tag), Call-ID and CSeq
   * (and Record-Route on a 101-299) in order, then other fields.
   */
  #recipeFor(res: SipResponse, request: SipRequest): { recipe: Recipe; tag: string } | undefined {
    if (res.body.length !== 0 || request.kind !== "request") return undefined;
    const status = res.status;
    const withRR = status > 100 && status < 300;
    const have = res.headers.fields;
    let k = 0;
    let tag = "";
    for (const f of request.headers.fields) {
      const n = f.name;
      if (n === "To") {
        const got = have[k++];
        if (got?.name !== "To") return undefined;
        if (got.value === f.value) continue;
        // createResponse adds ";tag=" to a To without one (it reads the tag
        // of the retransmission the same way).
        if (!got.value.startsWith(f.value + ";tag=")) return undefined;
        tag = got.value.slice(f.value.length + 5);
        if (!TAG.test(tag) || request.to.params.tag != null) return undefined;
      } else if (
        n === "Via" || n === "From" || n === "Call-ID" || n === "CSeq" ||
        (n === "Record-Route" && withRR) || (n === "Timestamp" && status === 100)
      ) {
        const got = have[k++];
        if (got?.name !== n || got.value !== f.value) return undefined;
      }
    }
    // Most responses have the shape of the one before (a flood of 200s):
    // compared field by field, without building its key.
    const last = this.#lastRecipe;
    if (last !== undefined && sameRecipe(last, status, res.reason, have, k)) {
      return { recipe: last, tag };
    }
    const extras = have.slice(k);
    let shape = status + "\n" + res.reason;
    for (const f of extras) shape += "\n" + f.name + ":" + f.value;
    let recipe = this.#recipes.get(shape);
    if (!recipe) {
      if (this.#recipes.size >= MAX_RECIPES) return undefined;
      recipe = new Recipe(
        status,
        res.reason,
        extras.map((f) => ({ name: f.name, value: f.value })),
      );
      this.#recipes.set(shape, recipe);
    }
    this.#lastRecipe = recipe;
    return { recipe, tag };
  }

  /** The bytes of a kept response, made again from the retransmission it answers. */
  #rebuild(packet: Prepared, recipe: Recipe, again: Retransmission): Uint8Array {
    const req = again.request;
    const remote = again.info.remote;
    if (remote.host !== packet.sourceHost || remote.port !== packet.sourcePort) {
      // From another source than the first copy: the response still goes
      // where the first one went (17.2.2, 18.2.2), so its top Via is marked
      // for that source, as it was then (a client sends neither `received`
      // nor a valued `rport` itself).
      const top = req.topVia;
      const params = { ...top.params };
      delete params.received;
      if (params.rport !== undefined) params.rport = null;
      replaceTopVia(
        req,
        markReceived({ ...top, params }, { host: packet.sourceHost, port: packet.sourcePort }),
      );
    }
    const res = createResponse(req, recipe.status, {
      reason: recipe.reason,
      toTag: packet.tag === "" ? undefined : packet.tag,
      headers: recipe.extras,
    });
    return this.#format(res, false);
  }

  /** Where a response over UDP goes: 18.2.2 and RFC 3581 section 4. */
  #unreliableDestination(
    via: Via,
    port: number,
    inbound: Transport | undefined,
  ): { transport: Transport; host: string; port: number } {
    let to: HostPort;
    if (via.params.maddr) {
      // 18.2.2: "if the Via header field value contains a "maddr" parameter,
      // the response MUST be forwarded to the address listed there, using
      // the port indicated in "sent-by", or port 5060 if none is present."
      to = { host: via.params.maddr, port };
    } else if (via.params.received && via.params.rport) {
      // RFC 3581 4: "the response MUST be sent to the IP address listed in
      // the received parameter, and the port in the rport parameter."
      to = { host: via.params.received, port: Number(via.params.rport) };
    } else if (via.params.received) {
      to = { host: via.params.received, port };
    } else {
      to = { host: via.host, port };
    }
    const transport = inbound ??
      this.#require(via.transport.toLowerCase() as TransportProtocol, to.host);
    return { transport, host: to.host, port: to.port };
  }

  /** Closes every transport. */
  async close(): Promise<void> {
    for (const [timer, clock] of this.#retireTimers) clock.clearTimeout(timer);
    this.#retireTimers.clear();
    await Promise.allSettled([...this.#transports, ...this.#retired].map((t) => t.close()));
  }

  /**
   * The transport of `protocol` to use towards `host`: among several (say an
   * IPv4 and an IPv6 socket), one bound to the host's address family, or to
   * all addresses; else the first.
   */
  #require(protocol: TransportProtocol, host?: string): Transport {
    const all = this.#transports.filter((t) => t.protocol === protocol);
    if (all.length === 0) {
      throw new Error(`Cannot send over ${protocol}: no ${protocol} transport is configured`);
    }
    if (host === undefined || all.length === 1) return all[0];
    const h = normalizeHost(host);
    const v6 = isIPv6(h);
    const v4 = isIPv4(h);
    const fits = (t: Transport) => {
      const local = normalizeHost(t.local.host);
      if (local === "::") return true; // dual-stack
      if (local === "0.0.0.0") return !v6;
      return v6 ? isIPv6(local) : v4 ? isIPv4(local) : true;
    };
    const exact = all.find((t) => fits(t) && !isUnspecified(t.local.host));
    return exact ?? all.find(fits) ?? all[0];
  }

  #log(level: LogLevel, msg: string): void {
    this.#logger?.(level, msg);
  }

  async #localFor(transport: Transport, target: Target): Promise<HostPort> {
    if (!transport.reliable && isUnspecified(transport.local.host) && !isLoopback(target.host)) {
      const pinned = this.#localHosts.get(isIPv6(target.host) ? "v6" : "v4");
      if (pinned) return { host: pinned, port: transport.local.port };
    }
    if (!transport.localFor) return transport.local;
    return await transport.localFor(
      { host: target.host, port: target.port },
      { serverName: target.serverName },
    );
  }

  /**
   * True when the request's Via must not be rewritten: a request sent
   * before (a retransmission), or a CANCEL or non-2xx ACK copying the Via of
   * a request we sent (its sent-by is one of ours).
   */
  #keepsVia(req: SipRequest): boolean {
    try {
      const via = req.topVia;
      // A new placeholder Via (a caller that replaced it) is always filled in.
      if (isUnspecified(via.host)) return false;
      if (this.#stamped.has(req)) return true;
      if (req.method !== "CANCEL" && req.method !== "ACK") return false;
      return this.#sentBy.has(
        hostPortKey({ host: via.host, port: via.port ?? defaultPort(via.transport) }),
      );
    } catch {
      return false;
    }
  }

  /** Fills the top Via for `transport` and formats the request. */
  async #stamp(req: SipRequest, transport: Transport, target: Target): Promise<Uint8Array> {
    const top = req.topVia;
    const sentBy = await this.#localFor(transport, target);
    const params = { ...top.params };
    // RFC 3581 3: a client "MAY include an "rport" parameter in the top Via
    // header field value of requests it generates. This parameter MUST have
    // no value". It asks the server to answer to the source port (a NAT's);
    // toward a destination that showed it sees our sent-by, it would change
    // nothing and cost its bytes and the server's `received`.
    if (this.#direct.get(directKey(transport.protocol, target)) === hostPortKey(sentBy)) {
      delete params.rport;
    } else {
      params.rport = null;
    }
    replaceTopVia(req, {
      ...top,
      transport: transport.protocol.toUpperCase(),
      host: sentBy.host,
      // 18.2.2: the default port (5060, 5061 for TLS) goes without saying.
      port: sentBy.port === defaultPort(transport.protocol) ? undefined : sentBy.port,
      params,
    });
    this.#sentBy.add(hostPortKey(sentBy));
    this.#stamped.add(req);
    return this.#format(req, transport.reliable);
  }

  /**
   * Formats a message. With compact headers (the lean mode), SUBSCRIBE and
   * NOTIFY and their answers over UDP go without Content-Length: RFC 3261
   * 18.3 lets the body run to the end of the datagram (20.14 says SHOULD;
   * only streams MUST have it); presence repeats them all day (issue 8).
   */
  #format(msg: SipMessage, reliable: boolean): Uint8Array {
    return formatMessage(msg, this.#formatOptions(msg, reliable));
  }

  /** How `#format` writes a message. */
  #formatOptions(msg: SipMessage, reliable: boolean): FormatOptions {
    if (!this.#compact) return PLAIN;
    let method: string | undefined;
    try {
      method = msg.kind === "request" ? msg.method : msg.cseq.method;
    } catch {
      method = undefined; // a 400 to a request whose CSeq did not parse
    }
    const lean = !reliable && (method === "NOTIFY" || method === "SUBSCRIBE");
    return { compact: true, contentLength: !lean };
  }

  async #send(transport: Transport, bytes: Uint8Array, target: Target): Promise<void> {
    this.#trace?.("send", bytes, {
      protocol: transport.protocol,
      host: target.host,
      port: target.port,
    });
    await transport.send(
      bytes,
      { host: target.host, port: target.port },
      target.serverName ? { serverName: target.serverName } : undefined,
    );
  }

  #receive(inbound: Inbound): void {
    const info: InboundInfo = {
      remote: inbound.remote,
      local: inbound.local,
      protocol: inbound.transport.protocol,
      transport: inbound.transport,
    };
    try {
      this.#trace?.("recv", inbound.data, { protocol: info.protocol, ...inbound.remote });
      let msg: SipMessage;
      try {
        msg = parseMessage(inbound.data);
      } catch (error) {
        if (!(error instanceof SyntaxError)) throw error;
        this.#malformed(inbound.data, error, info);
        return;
      }
      if (msg.kind === "request") {
        const top = msg.topVia;
        const marked = markReceived(top, inbound.remote);
        if (
          marked.params.received !== top.params.received || marked.params.rport !== top.params.rport
        ) {
          replaceTopVia(msg, marked);
        }
        this.#onRequest?.(msg, info);
      } else {
        // 18.1.2: "If the value of the "sent-by" parameter in that header
        // field value does not correspond to a value that the client
        // transport is configured to insert into requests, the response MUST
        // be silently discarded."
        const via = msg.topVia;
        const key = hostPortKey({ host: via.host, port: via.port ?? defaultPort(via.transport) });
        if (this.#sentBy.has(key)) this.#learnDirect(via, key, info);
        if (!this.#sentBy.has(key)) {
          this.#log(
            "debug",
            `dropped ${msg.status} response from ${formatHostPort(inbound.remote)}: ` +
              `Via sent-by ${formatHostPort({ host: via.host, port: via.port ?? 0 })} is not ours`,
          );
          return;
        }
        this.#onResponse?.(msg, info);
      }
    } catch (error) {
      this.#log(
        "error",
        `error handling a message from ${formatHostPort(inbound.remote)}: ${error}`,
      );
    }
  }

  /** Answers an unparsable request with 400 (or the status the parser asks for), or drops it. */
  /**
   * RFC 3581 4: the `received` and `rport` of an answer say where the server
   * saw the request come from; equal to our sent-by, no NAT is in between.
   */
  #learnDirect(via: Via, sentBy: string, info: InboundInfo): void {
    const { received, rport } = via.params;
    if (received == null || rport == null) return;
    const port = via.port ?? defaultPort(via.transport);
    const direct = normalizeHost(received) === normalizeHost(via.host) && Number(rport) === port;
    const key = directKey(info.protocol, info.remote);
    if (!direct) {
      this.#direct.delete(key);
      return;
    }
    if (this.#direct.size >= 4096) this.#direct.clear();
    this.#direct.set(key, sentBy);
  }

  #malformed(data: Uint8Array, error: SyntaxError, info: InboundInfo): void {
    const from = formatHostPort(info.remote);
    const raw = readRawRequest(data);
    const need = ["Via", "From", "To", "Call-ID", "CSeq"];
    if (!raw || raw.method === "ACK" || need.some((n) => !raw.fields.some((f) => f.name === n))) {
      this.#log("warn", `dropped an unparsable message from ${from}: ${error.message}`);
      return;
    }
    let via: Via;
    try {
      const first = raw.fields.find((f) => f.name === "Via")!;
      via = parseVia(new SipHeaders([{ name: "Via", value: first.value }]).values("Via")[0]);
    } catch (viaError) {
      this.#log(
        "warn",
        `dropped an unparsable request from ${from}: ${error.message} (and ${
          (viaError as Error).message
        })`,
      );
      return;
    }
    const status = error instanceof SipMessageError ? error.status : 400;
    const headers = new SipHeaders();
    let viaDone = false;
    for (const f of raw.fields) {
      if (f.name === "Via") {
        if (!viaDone) {
          const rest = new SipHeaders([{ name: "Via", value: f.value }]).values("Via").slice(1);
          headers.append("Via", [formatVia(markReceived(via, info.remote)), ...rest].join(", "));
          viaDone = true;
        } else {
          headers.append("Via", f.value);
        }
      } else if (f.name === "To") {
        // 8.2.6.2: the UAS MUST add a tag to the To header field.
        headers.append(
          "To",
          /;\s*tag\s*=/i.test(f.value) ? f.value : `${f.value};tag=${randomTag()}`,
        );
      } else if (f.name === "From" || f.name === "Call-ID" || f.name === "CSeq") {
        headers.append(f.name, f.value);
      }
    }
    const reason = sanitizeReason(error.message);
    const res = new SipResponse(status, reason, headers);
    this.#log("info", `answering ${status} to an unparsable ${raw.method} from ${from}: ${reason}`);
    this.sendResponse(res, info).catch((e) =>
      this.#log("warn", `could not answer an unparsable request from ${from}: ${e}`)
    );
  }
}
