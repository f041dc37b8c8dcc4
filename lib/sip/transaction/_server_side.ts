/**
 * The server side of the transaction layer, loaded with the first inbound
 * request (or up front by a UA that will take requests): the server
 * transactions, the table of live ones and the ring of completed ones
 * (timer J). A one-shot sender, which only gets responses, never loads it.
 *
 * @module
 */

import type { SipResponse } from "../message.ts";
import type { ServerTransaction } from "./server_transaction.ts";
import type { InboundInfo, PreparedResponse } from "./types.ts";
import { packPrepared, unpackPrepared } from "../transport_layer.ts";
import type { Transport } from "../transport.ts";
import { forEachRun, KeyRing, release } from "../_key_ring.ts";

export { KeyTable, SEQ_MASK } from "../_key_ring.ts";
export { ServerInviteTransaction } from "./server_invite.ts";
export { ServerNonInviteTransaction } from "./server_non_invite.ts";

/**
 * What is left of a non-INVITE server transaction over UDP once it has sent
 * its final response (RFC 3261 17.2.2, Completed): for timer J (64*T1) it
 * must answer retransmissions of the request with that response, and for
 * that it needs the key and the response, not the parsed request nor the
 * transaction. Every entry waits the same 64*T1, so they expire in the order
 * they came: they live in a ring of slots (a FIFO) whose fields are columns,
 * and the keys are found through the ring's own hash table over typed
 * arrays (see {@linkcode KeyRing}). A usual entry (its response goes back
 * where the request came from) is no garbage-collected object at all, so
 * that the old generation, where entries that live 32 s would end up, does
 * not grow with them.
 */
export class CompletedRing extends KeyRing {
  /** When timer J fires, on the layer's clock. */
  expires: Float64Array;
  /**
   * 1 when the response as sent packs (see packPrepared): it is made again
   * of the columns below; else the object is `extras[slot].packet`.
   */
  packed: Uint8Array;
  /** Its transport and recipe, as numbers in {@linkcode shared}. */
  transports: Uint8Array;
  mades: Uint8Array;
  /** Its destination host (a string shared per address) and port. */
  hosts: (string | undefined)[];
  ports: Uint16Array;
  /** Each slot's To tag: a length byte, then up to TAG_WIDTH - 1 ASCII bytes. */
  tags: Uint8Array;
  /** What only some entries need. */
  extras: (CompletedExtra | undefined)[];
  /**
   * The transports and recipes the entries name (a few: a recipe is shared
   * by every response of one shape), forgotten when the ring is empty.
   */
  shared: unknown[] = [];
  #sharedIds = new Map<unknown, number>();

  /** A ring of `capacity` slots, a power of two. */
  constructor(capacity = 1024) {
    super(capacity);
    this.expires = new Float64Array(capacity);
    this.packed = new Uint8Array(capacity);
    this.transports = new Uint8Array(capacity);
    this.mades = new Uint8Array(capacity);
    this.hosts = new Array(capacity).fill(undefined);
    this.ports = new Uint16Array(capacity);
    this.tags = new Uint8Array(capacity * TAG_WIDTH);
    this.extras = new Array(capacity).fill(undefined);
  }

  /** The response kept in `slot`. */
  packet(slot: number): PreparedResponse | undefined {
    if (!this.packed[slot]) return this.extras[slot]?.packet;
    const at = slot * TAG_WIDTH;
    let tag = "";
    for (let i = 1; i <= this.tags[at]; i++) tag += String.fromCharCode(this.tags[at + i]);
    return unpackPrepared(
      this.shared[this.transports[slot]] as Transport,
      this.hosts[slot]!,
      this.ports[slot],
      this.shared[this.mades[slot]],
      tag,
    );
  }

  /**
   * Appends an entry (doubling the ring when full), findable by `key`, and
   * returns its sequence number: a small integer, unique among the entries
   * in the ring, that stays the entry's through growth.
   */
  add(
    key: string,
    expires: number,
    packet: PreparedResponse | undefined,
    extra: CompletedExtra | undefined,
  ): number {
    const n = this.push(key);
    const slot = this.slot(n);
    this.expires[slot] = expires;
    const parts = packet && packPrepared(packet);
    const transport = parts ? this.#share(parts.transport) : -1;
    // A recipe packs; bytes (a string) are the entry's own.
    const made = parts && typeof parts.made === "object" ? this.#share(parts.made) : -1;
    if (
      parts && transport >= 0 && made >= 0 && fitsTag(parts.tag) &&
      parts.port === (parts.port & 0xffff)
    ) {
      this.packed[slot] = 1;
      this.transports[slot] = transport;
      this.mades[slot] = made;
      this.hosts[slot] = parts.host;
      this.ports[slot] = parts.port;
      const tag = parts.tag;
      const at = slot * TAG_WIDTH;
      this.tags[at] = tag.length;
      for (let i = 0; i < tag.length; i++) this.tags[at + 1 + i] = tag.charCodeAt(i);
    } else {
      this.packed[slot] = 0;
      if (packet) (extra ??= {}).packet = packet;
    }
    this.extras[slot] = extra;
    return n;
  }

  /** Frees the oldest entry. */
  override shift(): void {
    if (this.count === 0) return;
    const slot = this.slot(this.head);
    this.hosts[slot] = undefined;
    this.extras[slot] = undefined;
    super.shift();
    if (this.count === 0 && this.shared.length > 0) {
      this.shared = [];
      this.#sharedIds.clear();
    }
  }

  /** The number of `thing` in {@linkcode shared} (-1 when 255 are taken). */
  #share(thing: unknown): number {
    let id = this.#sharedIds.get(thing);
    if (id === undefined) {
      if (this.shared.length >= 255) return -1;
      id = this.shared.length;
      this.shared.push(thing);
      this.#sharedIds.set(thing, id);
    }
    return id;
  }

  /** Moves the columns when the ring doubles; every entry keeps its sequence number. */
  protected override resized(oldMask: number, mask: number): void {
    const size = mask + 1;
    const expires = new Float64Array(size);
    const packed = new Uint8Array(size);
    const transports = new Uint8Array(size);
    const mades = new Uint8Array(size);
    const hosts = new Array<string | undefined>(size).fill(undefined);
    const ports = new Uint16Array(size);
    const tags = new Uint8Array(size * TAG_WIDTH);
    const extras = new Array<CompletedExtra | undefined>(size).fill(undefined);
    forEachRun(this.head, this.count, oldMask, mask, (from, to, length) => {
      const end = from + length;
      expires.set(this.expires.subarray(from, end), to);
      packed.set(this.packed.subarray(from, end), to);
      transports.set(this.transports.subarray(from, end), to);
      mades.set(this.mades.subarray(from, end), to);
      ports.set(this.ports.subarray(from, end), to);
      tags.set(this.tags.subarray(from * TAG_WIDTH, end * TAG_WIDTH), to * TAG_WIDTH);
      for (let i = 0; i < length; i++) {
        hosts[to + i] = this.hosts[from + i];
        extras[to + i] = this.extras[from + i];
      }
    });
    release(this.expires, this.packed, this.transports, this.mades, this.ports, this.tags);
    this.expires = expires;
    this.packed = packed;
    this.transports = transports;
    this.mades = mades;
    this.hosts = hosts;
    this.ports = ports;
    this.tags = tags;
    this.extras = extras;
  }
}

/** Bytes per tag in the ring: a length, then the tag (ours are 6 characters). */
const TAG_WIDTH = 8;

/** A tag the ring's fixed-width bytes hold: short and ASCII. */
function fitsTag(tag: string): boolean {
  if (tag.length >= TAG_WIDTH) return false;
  for (let i = 0; i < tag.length; i++) if (tag.charCodeAt(i) > 127) return false;
  return true;
}

/** The parts of a {@linkcode CompletedRing} entry that most do without. */
export interface CompletedExtra {
  /** Without a transport that prepares packets (test fakes): the response and where to. */
  response?: SipResponse;
  info?: InboundInfo;
  /** RFC 2543 keys only: the request's To tag, part of the match. */
  toTag?: string | null;
  /** Kept only when its TU waits for onTerminated. */
  tx?: ServerTransaction;
  /** The response as sent, when it does not pack into the ring's columns. */
  packet?: PreparedResponse;
}
