/**
 * Pager-mode instant messages (RFC 3428): send MESSAGE requests (any MIME
 * type, optionally wrapped in `message/cpim`, RFC 3862) and tell a delivered
 * message (200) from one accepted for later delivery (202); receive them
 * with duplicate suppression, a content-type filter (415 with Accept) and an
 * acknowledgement that waits for the application to have taken the message;
 * send batches with bounded concurrency.
 *
 * @module
 */

import {
  formatUri,
  type NameAddr,
  parseMediaType,
  type SipRequest,
  type Uri,
} from "../sip/message.ts";
import type { InboundInfo } from "../sip/transport_layer.ts";
import { forEachRun, KeyRing, release } from "../sip/_key_ring.ts";
import type { IncomingRequest, UserAgent } from "../sip/ua.ts";
import { CPIM_CONTENT_TYPE, type CpimMessage, parseCpim } from "./cpim.ts";

// The sender is its own module (a one-shot send loads only that); its names
// are exported from here too.
export {
  DEFAULT_MESSAGE_TYPE,
  type MessageFailure,
  type MessageResult,
  MessageSender,
  type MessageSenderOptions,
  MessageSendError,
  type OutgoingMessage,
  UDP_MESSAGE_LIMIT,
} from "./sender.ts";
import {
  DEFAULT_MESSAGE_TYPE,
  type MessageResult,
  type MessageSender,
  type MessageSendError,
  type OutgoingMessage,
} from "./sender.ts";

/** A MESSAGE received. */
export interface ReceivedMessage {
  /** Sender URI (From). */
  from: string;
  /** Sender display name, when given. */
  fromName?: string;
  /** Recipient URI (To). */
  to: string;
  /** Media type of `body` (the encapsulated one for CPIM), as received. */
  contentType: string;
  /** The content (the encapsulated content for CPIM). */
  body: Uint8Array;
  /** The content as text, when its type is textual and it is valid UTF-8. */
  text?: string;
  /** The CPIM wrapper, when the body was `message/cpim`. */
  cpim?: CpimMessage;
  /** SIP Subject header, when present. */
  subject?: string;
  /** Call-ID. */
  callId: string;
  /** CSeq number. */
  cseq: number;
  /** The request. */
  request: SipRequest;
  /** Where it came from. */
  source: InboundInfo;
}

/** Options of {@linkcode MessageListener}. */
export interface MessageListenerOptions {
  /**
   * Takes a message. The 200 is sent only once the returned promise
   * resolves (so nothing acknowledged is lost); if it rejects, 500 is sent
   * and a retransmission or retry is taken as new.
   */
  onMessage: (message: ReceivedMessage) => void | Promise<void>;
  /**
   * Media types taken (`text/plain`, `text/*`, `*\/*`, `message/cpim`);
   * others get 415 with an Accept header. Default: all.
   */
  accept?: string[];
  /** How many Call-ID/CSeq/From-tag keys are remembered for duplicate detection. Default 10000. */
  remember?: number;
  /** Sees every request's outcome (for logs): status sent, and whether it was a duplicate. */
  onAnswer?: (request: SipRequest, status: number, duplicate: boolean) => void;
}

/** Counters of a {@linkcode MessageListener}. */
export interface MessageListenerStats {
  /** Messages passed to `onMessage`. */
  received: number;
  /** Duplicates answered without a new event. */
  duplicates: number;
  /** Requests refused (415, 400, 500). */
  refused: number;
}

/**
 * The keys (Call-ID, CSeq number, From tag) of the messages a
 * {@linkcode MessageListener} took last, with the status each was answered
 * with (0 while it is being taken, when `waits` holds the answer to come): a
 * {@linkcode KeyRing}, so that the 10,000 keys a flood keeps for a few
 * seconds are no objects that V8 promotes and then has to collect.
 */
class SeenRing extends KeyRing {
  statuses: Uint16Array;
  waits: (Promise<number> | undefined)[];

  constructor(capacity = 1024) {
    super(capacity);
    this.statuses = new Uint16Array(capacity);
    this.waits = new Array(capacity).fill(undefined);
  }

  override push(key: string): number {
    const seq = super.push(key);
    this.statuses[this.slot(seq)] = 0;
    return seq;
  }

  override shift(): void {
    if (this.count > 0) this.waits[this.slot(this.head)] = undefined;
    super.shift();
  }

  protected override resized(oldMask: number, mask: number): void {
    const statuses = new Uint16Array(mask + 1);
    const waits = new Array<Promise<number> | undefined>(mask + 1).fill(undefined);
    forEachRun(this.head, this.count, oldMask, mask, (from, to, length) => {
      statuses.set(this.statuses.subarray(from, from + length), to);
      for (let i = 0; i < length; i++) waits[to + i] = this.waits[from + i];
    });
    release(this.statuses);
    this.statuses = statuses;
    this.waits = waits;
  }
}

/**
 * Answers incoming MESSAGE requests on a UA: each distinct message (by
 * Call-ID, CSeq and From tag) goes to `onMessage` once, and its 200 is sent
 * after `onMessage` has resolved.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoopNetwork } from "../sip/transport_loop.ts";
 * import type { Uri } from "../sip/message.ts";
 * import { UserAgent } from "../sip/ua.ts";
 * import { MessageListener, MessageSendError, MessageSender } from "./message.ts";
 *
 * const net = new LoopNetwork();
 * const resolve = (uri: Uri) =>
 *   Promise.resolve([{ protocol: "tcp" as const, host: uri.host, port: uri.port ?? 5060 }]);
 * const agent = (aor: string, host: string) =>
 *   UserAgent.create({ aor, resolve, transports: [net.transport({ host, protocol: "tcp" })] });
 * const alice = await agent("alice@example.test", "192.0.2.1");
 * const bob = await agent("bob@example.test", "192.0.2.2");
 *
 * const got: string[] = [];
 * new MessageListener(bob, {
 *   accept: ["text/plain", "message/cpim"],
 *   // The 200 goes out once this promise resolves (write the message somewhere first).
 *   onMessage: async (m) => void got.push(`${m.from}: ${m.text}`),
 * });
 * const sender = new MessageSender(alice);
 * await sender.send("sip:bob@192.0.2.2", { body: "hi", cpim: true });
 * await assert.rejects(
 *   sender.send("sip:bob@192.0.2.2", { body: "{}", contentType: "application/json" }),
 *   (e) => e instanceof MessageSendError && e.status === 415,
 * );
 * assert.deepEqual(got, ["sip:alice@example.test: hi"]);
 * await alice.close();
 * await bob.close();
 * ```
 */
export class MessageListener {
  /** Counters. */
  readonly stats: MessageListenerStats = { received: 0, duplicates: 0, refused: 0 };
  readonly #options: MessageListenerOptions;
  /** The duplicate memory: the last `remember` keys and how each was answered. */
  readonly #seen = new SeenRing();
  /** Messages being taken now (counted, not kept: {@linkcode settled} waits for zero). */
  #inflight = 0;
  #idle: (() => void)[] = [];
  /** Content-Type values seen, with their media type and whether the body reads as text. */
  readonly #types = new Map<string, { type: string; textual: boolean }>();
  readonly #remember: number;
  readonly #accept?: string[];

  /** Registers the MESSAGE handler on `ua`. */
  constructor(ua: UserAgent, options: MessageListenerOptions) {
    this.#options = options;
    this.#remember = Math.max(1, options.remember ?? 10_000);
    // Parameters (";charset=...") do not matter for the choice.
    this.#accept = options.accept?.map((t) => t.split(";")[0].trim().toLowerCase())
      .filter((t) => t !== "");
    if (this.#accept) {
      for (const t of this.#accept) {
        if (!/^(\*|[!#$%&'*+.^_`|~0-9a-z-]+)\/(\*|[!#$%&'*+.^_`|~0-9a-z-]+)$/.test(t)) {
          throw new TypeError(`Invalid media type in accept list: "${t}"`);
        }
      }
    }
    ua.handle("MESSAGE", (incoming) => this.#handle(incoming));
  }

  /** True when `type` (without parameters) is taken. */
  accepts(type: string): boolean {
    if (!this.#accept) return true;
    const t = type.toLowerCase();
    const major = t.split("/")[0];
    return this.#accept.some((a) => a === "*/*" || a === t || a === `${major}/*`);
  }

  async #handle(incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    const key = `${req.callId}\u0000${req.cseq.seq}\u0000${req.fromTag ?? ""}`;
    const seen = this.#seen;
    const earlier = seen.find(key);
    if (earlier >= 0) {
      // A duplicate (a retransmission after the transaction ended, or the
      // same message again over another path): answer as the first one was
      // answered, once that answer is known, and raise no new event.
      this.stats.duplicates++;
      const slot = seen.slot(earlier);
      const status = seen.statuses[slot] || await seen.waits[slot]!;
      this.#options.onAnswer?.(req, status, true);
      await incoming.respond(status);
      return;
    }
    this.#inflight++;
    try {
      const outcome = this.#take(incoming);
      // The oldest key is forgotten first.
      if (seen.count >= this.#remember) seen.shift();
      const seq = seen.push(key);
      seen.waits[seen.slot(seq)] = outcome;
      const status = await outcome;
      if (seen.has(seq)) {
        const slot = seen.slot(seq);
        seen.statuses[slot] = status;
        seen.waits[slot] = undefined;
        // A message that could not be taken is forgotten, so that a retry is new.
        if (status >= 500) seen.unindex(seq);
      }
    } finally {
      if (--this.#inflight === 0 && this.#idle.length > 0) {
        const idle = this.#idle;
        this.#idle = [];
        for (const resolve of idle) resolve();
      }
    }
  }

  /** Resolves once every message being taken now has been answered (call before closing the UA). */
  settled(): Promise<void> {
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Counts a refusal, tells `onAnswer` and sends `status`; resolves to `status`. */
  async #answer(
    incoming: IncomingRequest,
    status: number,
    headers?: [string, string][],
    reason?: string,
  ): Promise<number> {
    if (status >= 300) this.stats.refused++;
    this.#options.onAnswer?.(incoming.request, status, false);
    await incoming.respond(status, headers || reason ? { headers, reason } : undefined);
    return status;
  }

  #acceptHeader(): [string, string][] {
    return [["Accept", (this.#accept ?? ["*/*"]).join(", ")]];
  }

  /**
   * The media type of a Content-Type value and whether its body reads as
   * text (see {@linkcode asText}), remembered per distinct value (a few
   * dozen; senders repeat theirs). Throws on a malformed value.
   */
  #typeOf(value: string): { type: string; textual: boolean } {
    let known = this.#types.get(value);
    if (known === undefined) {
      const mt = parseMediaType(value);
      known = { type: mt.type, textual: isTextual(mt.type, mt.params.charset) };
      if (this.#types.size >= 64) this.#types.clear();
      this.#types.set(value, known);
    }
    return known;
  }

  async #take(incoming: IncomingRequest): Promise<number> {
    const req = incoming.request;
    let outer: { type: string; value: string };
    try {
      const value = req.headers.get("Content-Type");
      if (value === undefined || value === null) {
        outer = req.body.length === 0
          ? { type: "text/plain", value: DEFAULT_MESSAGE_TYPE }
          : { type: "application/octet-stream", value: "application/octet-stream" };
      } else outer = { type: this.#typeOf(value).type, value };
    } catch (e) {
      return await this.#answer(
        incoming,
        400,
        undefined,
        `Bad Content-Type: ${(e as Error).message}`,
      );
    }
    // RFC 3428 section 7: "If the UAS does not understand the content type
    // [...] it MUST respond with a 415 (Unsupported Media Type)", and RFC
    // 3261 21.4.13: the response lists acceptable types in Accept.
    if (!this.accepts(outer.type)) return await this.#answer(incoming, 415, this.#acceptHeader());
    let contentType = outer.value;
    let body = req.body;
    let cpim: CpimMessage | undefined;
    let text: string | undefined;
    if (outer.type === CPIM_CONTENT_TYPE) {
      try {
        cpim = parseCpim(req.body);
      } catch (e) {
        return await this.#answer(incoming, 400, undefined, (e as Error).message.slice(0, 100));
      }
      const inner = parseMediaType(cpim.contentType).type;
      const specific = (this.#accept ?? []).some((a) => a !== CPIM_CONTENT_TYPE);
      if (specific && !this.accepts(inner)) {
        return await this.#answer(incoming, 415, this.#acceptHeader());
      }
      contentType = cpim.contentType;
      body = cpim.body;
      text = asText(contentType, body);
    } else if (this.#typeOf(contentType).textual) text = decodeText(body);
    const subject = req.headers.get("Subject") ?? undefined;
    const message: ReceivedMessage = {
      from: formatUri(plainUri(req.from)),
      fromName: req.from.displayName || undefined,
      to: formatUri(plainUri(req.to)),
      contentType,
      body,
      text,
      cpim,
      subject: subject ?? undefined,
      callId: req.callId,
      cseq: req.cseq.seq,
      request: req,
      source: incoming.info,
    };
    try {
      const taking = this.#options.onMessage(message);
      if (taking !== undefined) await taking;
    } catch (e) {
      return await this.#answer(
        incoming,
        500,
        undefined,
        `Cannot take message: ${(e as Error).message}`.slice(0, 100),
      );
    }
    this.stats.received++;
    // RFC 3428 section 7: "A 2xx response to a MESSAGE request MUST NOT contain a body."
    this.#options.onAnswer?.(req, 200, false);
    await incoming.respond(200);
    return 200;
  }
}

/** The address's URI without parameters or headers (a shallow copy: nothing is shared that changes). */
function plainUri(addr: NameAddr): Uri {
  return { ...addr.uri, params: {}, headers: {} };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

const TEXTUAL = /^(text\/|application\/(json|xml|[^;]*\+(xml|json))$|message\/cpim$)/;

/**
 * The body as text when its type is textual, its charset UTF-8 or ASCII, and it decodes.
 *
 * @example
 * ```ts
 * import { asText } from "./message.ts";
 * asText("text/plain;charset=UTF-8", new TextEncoder().encode("hé")); // "hé"
 * asText("image/png", new Uint8Array([137, 80])); // undefined
 * ```
 */
export function asText(contentType: string, body: Uint8Array): string | undefined {
  let textual: boolean;
  try {
    const mt = parseMediaType(contentType);
    textual = isTextual(mt.type, mt.params.charset);
  } catch {
    return undefined;
  }
  return textual ? decodeText(body) : undefined;
}

/** True when a body of media type `type` with this `charset` parameter is read as text. */
function isTextual(type: string, charset: string | null | undefined): boolean {
  if (!TEXTUAL.test(type)) return false;
  const cs = charset?.toLowerCase();
  return !cs || ["utf-8", "utf8", "us-ascii", "ascii"].includes(cs);
}

/** The body decoded as UTF-8, or undefined when it is not valid UTF-8. */
function decodeText(body: Uint8Array): string | undefined {
  // A short ASCII body (the usual chat line) without the decoder's call.
  if (body.length <= 64) {
    let text = "";
    for (let i = 0; i < body.length; i++) {
      const b = body[i];
      if (b > 127) return decodeUtf8(body);
      text += String.fromCharCode(b);
    }
    return text;
  }
  return decodeUtf8(body);
}

function decodeUtf8(body: Uint8Array): string | undefined {
  try {
    return utf8.decode(body);
  } catch {
    return undefined;
  }
}

/** One message of a batch. */
export interface BatchItem {
  /** Recipient. */
  to: string;
  /** What to send. */
  message: OutgoingMessage;
  /** Anything the caller wants back with the result (a line number, an `id`). */
  ref?: unknown;
}

/** The result of one batch item. */
export type BatchResult =
  | { item: BatchItem; ok: true; result: MessageResult }
  | { item: BatchItem; ok: false; error: MessageSendError | Error };

/** Options of {@linkcode MessageBatch}. */
export interface MessageBatchOptions {
  /** Messages in flight at once. Default 8. */
  concurrency?: number;
  /** Receives each result; the next message waits for a slot, not for this. */
  onResult: (result: BatchResult) => void | Promise<void>;
}

/**
 * Sends many messages with at most `concurrency` in flight, reporting one
 * result per item, in completion order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LoopNetwork } from "../sip/transport_loop.ts";
 * import type { Uri } from "../sip/message.ts";
 * import { UserAgent } from "../sip/ua.ts";
 * import { MessageBatch, MessageListener, MessageSender } from "./message.ts";
 *
 * const net = new LoopNetwork();
 * const resolve = (uri: Uri) =>
 *   Promise.resolve([{ protocol: "tcp" as const, host: uri.host, port: uri.port ?? 5060 }]);
 * const agent = (aor: string, host: string) =>
 *   UserAgent.create({ aor, resolve, transports: [net.transport({ host, protocol: "tcp" })] });
 * const alice = await agent("alice@example.test", "192.0.2.1");
 * const bob = await agent("bob@example.test", "192.0.2.2");
 *
 * new MessageListener(bob, { onMessage: () => {} });
 * const results: unknown[] = [];
 * const batch = new MessageBatch(new MessageSender(alice), {
 *   concurrency: 4,
 *   onResult: (r) => void results.push(r.item.ref),
 * });
 * for (let i = 0; i < 10; i++) {
 *   await batch.add({ to: "sip:bob@192.0.2.2", message: { body: `n${i}` }, ref: i });
 * }
 * await batch.drain();
 * assert.equal(results.length, 10);
 * await alice.close();
 * await bob.close();
 * ```
 */
export class MessageBatch {
  readonly #sender: MessageSender;
  readonly #concurrency: number;
  readonly #onResult: MessageBatchOptions["onResult"];
  #inFlight = 0;
  #waiting: (() => void)[] = [];
  #all = new Set<Promise<void>>();

  /** Creates a batch on `sender`. */
  constructor(sender: MessageSender, options: MessageBatchOptions) {
    this.#sender = sender;
    this.#concurrency = Math.max(1, options.concurrency ?? 8);
    this.#onResult = options.onResult;
  }

  /** Messages in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Starts sending `item`; resolves once it is in flight (waits for a free slot). */
  async add(item: BatchItem): Promise<void> {
    while (this.#inFlight >= this.#concurrency) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    this.#inFlight++;
    const run = (async () => {
      let result: BatchResult;
      try {
        result = { item, ok: true, result: await this.#sender.send(item.to, item.message) };
      } catch (e) {
        result = { item, ok: false, error: e instanceof Error ? e : new Error(String(e)) };
      }
      this.#inFlight--;
      this.#waiting.shift()?.();
      await this.#onResult(result);
    })();
    this.#all.add(run);
    run.finally(() => this.#all.delete(run));
  }

  /** Resolves once every added item has been sent and its result reported. */
  async drain(): Promise<void> {
    while (this.#all.size > 0) await Promise.allSettled([...this.#all]);
  }
}
