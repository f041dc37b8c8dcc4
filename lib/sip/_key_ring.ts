/**
 * A FIFO of string keys, found again by exact match, that is no
 * garbage-collected object per key: the keys' characters sit in one byte
 * arena, and an open-addressing hash table (linear probing, deletion by
 * backward shift, no tombstones) over typed arrays finds them. Entries are
 * appended and leave in the order they came (the oldest first); an entry may
 * also be withdrawn from the index before it leaves (it is then no longer
 * found, and still takes its slot until its turn to leave).
 *
 * Made for state that many requests hold for a fixed time and that a
 * listener under a flood keeps by the hundred thousand: the transaction
 * layer's completed UDP transactions (timer J, 32 s) and the MESSAGE
 * listener's duplicate memory. A key in a Map is a string and a Map slot for
 * each entry, which live long enough to be promoted to V8's old generation
 * and die there, where only a full collection frees them; here the only
 * objects are a few typed arrays, allocated again only when the ring doubles.
 *
 * Each entry has a sequence number (a small integer below 2^30, wrapping)
 * that stays its own through growth; entry `n` lives in slot
 * `n & (capacity - 1)`, where subclasses keep their own columns.
 *
 * {@linkcode KeyTable} is the same kind of table for short-lived entries
 * that are objects anyway (live transactions): a `Map` in their place keeps
 * young objects alive through V8's scavenges (see there).
 *
 * @module
 */

/** Sequence numbers wrap at 2^30: small integers, and a multiple of every capacity. */
export const SEQ_MASK = 2 ** 30 - 1;

/** An empty slot of the hash table. */
const EMPTY = -1;
/** `len` of a key kept as a string (a character over 0xFF, or 65,535 of them or more). */
const WIDE = 0xffff;

/** The key {@linkcode hashKey} hashed last, and its hash. */
let lastKey: string | undefined;
let lastHash = 0;

/**
 * The hash of a key: FNV-1a over its UTF-16 code units, then murmur3's
 * finalizer so that the low bits, which pick the bucket, depend on every
 * character.
 */
export function hashKey(key: string): number {
  // The same key is looked up, added and removed several times in a row
  // (a transaction's key in the live table, then in the ring): hash it once.
  if (key === lastKey) return lastHash;
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  lastKey = key;
  return lastHash = h ^ (h >>> 16);
}

/**
 * The entries `head` .. `head + count - 1` (sequence numbers) of a ring of
 * `oldMask + 1` slots, as runs that are contiguous both there and in a ring
 * of `mask + 1` slots: `move(from, to, length)` for each (at most two when
 * `count` fits the smaller ring), so that a ring that doubles or halves
 * moves its columns with a few native copies.
 */
export function forEachRun(
  head: number,
  count: number,
  oldMask: number,
  mask: number,
  move: (from: number, to: number, length: number) => void,
): void {
  const unit = Math.min(oldMask, mask) + 1;
  for (let n = head, left = count; left > 0;) {
    const length = Math.min(left, unit - (n & (unit - 1)));
    move(n & oldMask, n & mask, length);
    n = (n + length) & SEQ_MASK;
    left -= length;
  }
}

/** See the module doc. */
export class KeyRing {
  /** Sequence number of the oldest entry. */
  head = 0;
  /** Entries in the ring, found or not. */
  count = 0;
  #mask: number;
  /** Per slot: the key's hash, where its bytes start in the arena, how many. */
  #hash: Int32Array;
  #start: Uint32Array;
  #len: Uint16Array;
  /** Per slot: 1 while the entry is in the index. */
  #found: Uint8Array;
  /** The keys' characters (each at most 0xFF), entry after entry, wrapping. */
  #bytes: Uint8Array;
  /** Where the next key's bytes go. */
  #end = 0;
  /** Bytes held by the entries in the ring. */
  #used = 0;
  /** Open addressing: sequence numbers or EMPTY; twice as many slots as the ring. */
  #table: Int32Array;
  #indexed = 0;
  /** The first capacity and arena size: the ring does not shrink below them. */
  #minCapacity: number;
  #minArena: number;
  /** Keys that do not fit the arena, by sequence number (rare). */
  #wide?: Map<number, string>;

  /**
   * A ring of `capacity` slots (a power of two; it doubles when full, and
   * halves, down to `capacity`, when an eighth full) with room for
   * `bytesPerKey` characters a key in its arena (which doubles and halves
   * too).
   */
  constructor(capacity = 1024, bytesPerKey = 64) {
    if (capacity < 1 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`Cannot make a key ring of ${capacity} slots: not a power of two`);
    }
    this.#mask = capacity - 1;
    this.#minCapacity = capacity;
    this.#hash = new Int32Array(capacity);
    this.#start = new Uint32Array(capacity);
    this.#len = new Uint16Array(capacity);
    this.#found = new Uint8Array(capacity);
    this.#bytes = new Uint8Array(powerOfTwo(capacity * bytesPerKey));
    this.#minArena = this.#bytes.length;
    this.#table = new Int32Array(capacity * 2).fill(EMPTY);
  }

  /** Number of slots. */
  get capacity(): number {
    return this.#mask + 1;
  }

  /** Number of entries in the index (those {@linkcode find} can return). */
  get size(): number {
    return this.#indexed;
  }

  /** Bytes of the arena (for tests and benchmarks). */
  get arenaSize(): number {
    return this.#bytes.length;
  }

  /** Slot of entry `seq`. */
  slot(seq: number): number {
    return seq & this.#mask;
  }

  /** True while entry `seq` is in the ring. */
  has(seq: number): boolean {
    return seq >= 0 && ((seq - this.head) & SEQ_MASK) < this.count;
  }

  /** True while entry `seq` is in the ring and in the index. */
  isIndexed(seq: number): boolean {
    return this.has(seq) && this.#found[seq & this.#mask] === 1;
  }

  /** Sequence number of the indexed entry whose key is `key`, or -1. */
  find(key: string): number {
    const h = hashKey(key);
    const table = this.#table;
    const tmask = table.length - 1;
    for (let p = h & tmask;; p = (p + 1) & tmask) {
      const seq = table[p];
      if (seq === EMPTY) return -1;
      if (this.#hash[seq & this.#mask] === h && this.#equals(seq, key)) return seq;
    }
  }

  /**
   * Appends an entry for `key` (doubling the ring when full) and indexes it;
   * an indexed entry with the same key is withdrawn from the index. Returns
   * the new entry's sequence number.
   */
  push(key: string): number {
    if (this.count === this.capacity) this.#resize(this.capacity * 2);
    const n = (this.head + this.count) & SEQ_MASK;
    const slot = n & this.#mask;
    const h = hashKey(key);
    if (key.length < WIDE && this.#used + key.length > this.#bytes.length) {
      let size = this.#bytes.length * 2;
      while (size < this.#used + key.length) size *= 2;
      this.#resizeArena(size);
    }
    // The characters go into the arena as they are checked (one pass); a
    // character over 0xFF (rare) makes it a wide key, and the bytes written
    // are left where the next key goes.
    const bytes = this.#bytes;
    const amask = bytes.length - 1;
    const at = this.#end;
    let wide = key.length >= WIDE ? 0x100 : 0;
    for (let i = 0; i < key.length && wide === 0; i++) {
      const c = key.charCodeAt(i);
      bytes[(at + i) & amask] = c;
      wide = c & ~0xff;
    }
    if (wide === 0) {
      this.#start[slot] = at;
      this.#len[slot] = key.length;
      this.#end = (at + key.length) & amask;
      this.#used += key.length;
    } else {
      this.#len[slot] = WIDE;
      (this.#wide ??= new Map()).set(n, key);
    }
    this.#hash[slot] = h;
    this.count++;
    const table = this.#table;
    const tmask = table.length - 1;
    for (let p = h & tmask;; p = (p + 1) & tmask) {
      const seq = table[p];
      if (seq === EMPTY) {
        table[p] = n;
        this.#indexed++;
        break;
      }
      if (this.#hash[seq & this.#mask] === h && this.#equals(seq, key)) {
        table[p] = n; // the same key again: the new entry takes the old one's place
        this.#found[seq & this.#mask] = 0;
        break;
      }
    }
    this.#found[slot] = 1;
    return n;
  }

  /** Withdraws entry `seq` from the index (nothing when it is not there). */
  unindex(seq: number): void {
    if (!this.isIndexed(seq)) return;
    this.#found[seq & this.#mask] = 0;
    this.#indexed--;
    const table = this.#table;
    const tmask = table.length - 1;
    let i = this.#hash[seq & this.#mask] & tmask;
    while (table[i] !== seq) i = (i + 1) & tmask;
    // Backward shift: each later entry of the run that may sit at `i`
    // (its home bucket is not after `i`, cyclically) moves up to fill it.
    for (let j = (i + 1) & tmask;; j = (j + 1) & tmask) {
      const other = table[j];
      if (other === EMPTY) break;
      const home = this.#hash[other & this.#mask] & tmask;
      if (((j - home) & tmask) >= ((j - i) & tmask)) {
        table[i] = other;
        i = j;
      }
    }
    table[i] = EMPTY;
  }

  /** Removes the oldest entry (from the index too). */
  shift(): void {
    if (this.count === 0) return;
    const n = this.head;
    this.unindex(n);
    const len = this.#len[n & this.#mask];
    if (len === WIDE) this.#wide!.delete(n);
    else this.#used -= len;
    this.head = (n + 1) & SEQ_MASK;
    this.count--;
    // After a flood, give the memory back: halve what is used an eighth.
    if (this.count * 8 < this.capacity && this.capacity > this.#minCapacity) {
      this.#resize(this.capacity / 2);
    }
    if (this.#used * 8 < this.#bytes.length && this.#bytes.length > this.#minArena) {
      this.#resizeArena(this.#bytes.length / 2);
    }
  }

  /** The key of entry `seq` (which must be in the ring). */
  key(seq: number): string {
    const slot = seq & this.#mask;
    const len = this.#len[slot];
    if (len === WIDE) return this.#wide!.get(seq)!;
    const bytes = this.#bytes;
    const amask = bytes.length - 1;
    const at = this.#start[slot];
    let key = "";
    for (let i = 0; i < len; i++) key += String.fromCharCode(bytes[(at + i) & amask]);
    return key;
  }

  /**
   * Called when the ring doubles, after its own columns moved: a subclass
   * moves its columns from slot `seq & oldMask` to `seq & newMask` for each
   * entry in the ring.
   */
  protected resized(_oldMask: number, _newMask: number): void {}

  #equals(seq: number, key: string): boolean {
    const slot = seq & this.#mask;
    const len = this.#len[slot];
    if (len === WIDE) return this.#wide!.get(seq) === key;
    if (len !== key.length) return false;
    const bytes = this.#bytes;
    const amask = bytes.length - 1;
    const at = this.#start[slot];
    for (let i = 0; i < len; i++) {
      if (bytes[(at + i) & amask] !== key.charCodeAt(i)) return false;
    }
    return true;
  }

  /**
   * Gives the ring `size` slots (twice or half as many, at least `count`)
   * and a hash table twice that; every entry keeps its sequence number.
   */
  #resize(size: number): void {
    const oldMask = this.#mask;
    const mask = size - 1;
    const hash = new Int32Array(size);
    const start = new Uint32Array(size);
    const len = new Uint16Array(size);
    const found = new Uint8Array(size);
    const table = new Int32Array(size * 2).fill(EMPTY);
    const tmask = table.length - 1;
    // The columns move in runs (a native copy each, whatever tier the code
    // runs in: a ring doubles rarely, so this code stays cold); the index is
    // built again entry by entry.
    forEachRun(this.head, this.count, oldMask, mask, (from, to, length) => {
      hash.set(this.#hash.subarray(from, from + length), to);
      start.set(this.#start.subarray(from, from + length), to);
      len.set(this.#len.subarray(from, from + length), to);
      found.set(this.#found.subarray(from, from + length), to);
    });
    for (let a = 0; a < this.count; a++) {
      const n = (this.head + a) & SEQ_MASK;
      const to = n & mask;
      if (found[to] === 1) {
        let p = hash[to] & tmask;
        while (table[p] !== EMPTY) p = (p + 1) & tmask;
        table[p] = n;
      }
    }
    release(this.#hash, this.#start, this.#len, this.#found, this.#table);
    this.#hash = hash;
    this.#start = start;
    this.#len = len;
    this.#found = found;
    this.#table = table;
    this.#mask = mask;
    this.resized(oldMask, mask);
  }

  /** Gives the arena `size` bytes (at least `#used`); the keys move to its start, oldest first. */
  #resizeArena(size: number): void {
    const old = this.#bytes;
    const omask = old.length - 1;
    const bytes = new Uint8Array(size);
    // The keys lie one after the other from the oldest key's first byte
    // (keys are added at the end and leave from the front; wide keys take
    // no bytes), wrapping: one or two native copies move them all.
    let base = -1;
    for (let a = 0; a < this.count && base < 0; a++) {
      const slot = ((this.head + a) & SEQ_MASK) & this.#mask;
      if (this.#len[slot] !== WIDE) base = this.#start[slot];
    }
    const used = this.#used;
    if (base >= 0 && used > 0) {
      const first = Math.min(used, old.length - base);
      bytes.set(old.subarray(base, base + first), 0);
      if (first < used) bytes.set(old.subarray(0, used - first), first);
      for (let a = 0; a < this.count; a++) {
        const slot = ((this.head + a) & SEQ_MASK) & this.#mask;
        if (this.#len[slot] !== WIDE) this.#start[slot] = (this.#start[slot] - base) & omask;
      }
    }
    release(old);
    this.#bytes = bytes;
    this.#end = used & (size - 1);
  }
}

/**
 * Frees the memory of typed arrays that a growth has just replaced, at once
 * (a detached buffer's memory goes back to the allocator): otherwise the
 * old columns of a ring that doubled under a flood stay resident until the
 * next full collection, which a listener that promotes little may not run
 * for a while.
 */
export function release(...views: ArrayBufferView[]): void {
  for (const view of views) (view.buffer as ArrayBuffer).transfer(0);
}

/** The smallest power of two at least `n` (and at least 64). */
function powerOfTwo(n: number): number {
  let p = 64;
  while (p < n) p *= 2;
  return p;
}

/**
 * A map from string keys to objects for entries that come and go by the
 * thousand a second (the transaction layer's live server transactions): an
 * open-addressing hash table (linear probing, deletion by backward shift)
 * over a hash column and two plain arrays. A deleted entry's slots are
 * cleared at once. A long-lived `Map` with as much churn keeps young objects
 * alive through V8's scavenges: in a flood of MESSAGEs, a fifth of what each
 * scavenge found was copied, then promoted to the old generation, where only
 * a full collection frees it; with this table, under one percent.
 */
export class KeyTable<T> {
  #hash: Int32Array;
  #keys: (string | undefined)[];
  #values: (T | undefined)[];
  #size = 0;
  #min: number;

  /** A table of `capacity` slots (a power of two); it doubles at half full. */
  constructor(capacity = 64) {
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`Cannot make a key table of ${capacity} slots: not a power of two`);
    }
    this.#min = capacity;
    this.#hash = new Int32Array(capacity);
    this.#keys = new Array(capacity).fill(undefined);
    this.#values = new Array(capacity).fill(undefined);
  }

  /** Number of entries. */
  get size(): number {
    return this.#size;
  }

  /** Number of slots (for tests). */
  get capacity(): number {
    return this.#keys.length;
  }

  /** The value of `key`, or undefined. */
  get(key: string): T | undefined {
    const i = this.#find(key, hashKey(key));
    return i < 0 ? undefined : this.#values[i];
  }

  /** Sets the value of `key`. */
  set(key: string, value: T): void {
    const h = hashKey(key);
    const found = this.#find(key, h);
    if (found >= 0) {
      this.#values[found] = value;
      return;
    }
    if ((this.#size + 1) * 2 > this.#keys.length) this.#rebuild(this.#keys.length * 2);
    this.#place(key, h, value);
    this.#size++;
  }

  /** Removes `key`; true when it was there. */
  delete(key: string): boolean {
    let i = this.#find(key, hashKey(key));
    if (i < 0) return false;
    const hashes = this.#hash;
    const keys = this.#keys;
    const values = this.#values;
    const mask = keys.length - 1;
    for (let j = (i + 1) & mask; keys[j] !== undefined; j = (j + 1) & mask) {
      const home = hashes[j] & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        hashes[i] = hashes[j];
        keys[i] = keys[j];
        values[i] = values[j];
        i = j;
      }
    }
    keys[i] = undefined;
    values[i] = undefined;
    this.#size--;
    if (this.#size * 8 < keys.length && keys.length > this.#min) this.#rebuild(keys.length / 2);
    return true;
  }

  /** The values, in no particular order (a copy: the table may change meanwhile). */
  values(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#keys.length; i++) {
      if (this.#keys[i] !== undefined) out.push(this.#values[i]!);
    }
    return out;
  }

  /** Removes every entry. */
  clear(): void {
    this.#size = 0;
    this.#hash = new Int32Array(this.#min);
    this.#keys = new Array(this.#min).fill(undefined);
    this.#values = new Array(this.#min).fill(undefined);
  }

  #find(key: string, h: number): number {
    const hashes = this.#hash;
    const keys = this.#keys;
    const mask = keys.length - 1;
    for (let i = h & mask;; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === undefined) return -1;
      if (hashes[i] === h && k === key) return i;
    }
  }

  #place(key: string, h: number, value: T): void {
    const keys = this.#keys;
    const mask = keys.length - 1;
    let i = h & mask;
    while (keys[i] !== undefined) i = (i + 1) & mask;
    this.#hash[i] = h;
    keys[i] = key;
    this.#values[i] = value;
  }

  #rebuild(capacity: number): void {
    const hashes = this.#hash;
    const keys = this.#keys;
    const values = this.#values;
    this.#hash = new Int32Array(capacity);
    this.#keys = new Array(capacity).fill(undefined);
    this.#values = new Array(capacity).fill(undefined);
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== undefined) this.#place(keys[i]!, hashes[i], values[i]!);
    }
  }
}
