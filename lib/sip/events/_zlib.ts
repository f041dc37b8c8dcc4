/**
 * The `deflate` content coding (zlib format, RFC 1950, around a DEFLATE
 * stream, RFC 1951), synchronous, for the small bodies of NOTIFYs:
 * compressing or expanding one happens within the call that builds or
 * reads the message, like the rest of the stack (no stream, no extra turn
 * of the event loop). The compressor chooses matches by cost, not greedily,
 * and writes the shortest of a fixed-Huffman block, a dynamic-Huffman block
 * fitted to the data, or stored blocks; the expander reads any stream.
 *
 * @module
 */

/** Largest expanded body accepted (a small datagram must not expand to gigabytes). */
export const MAX_INFLATED = 1 << 20;

// deno-fmt-ignore
const LEN_BASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
  163, 195, 227, 258,
];
// deno-fmt-ignore
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
// deno-fmt-ignore
const DIST_BASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
  3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
// deno-fmt-ignore
const DIST_EXTRA = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
];

/** The code whose base is the largest not above `value`. */
function codeOf(bases: number[], value: number): number {
  let c = bases.length - 1;
  while (bases[c] > value) c--;
  return c;
}

/** Bits of the fixed literal/length code for `symbol` (RFC 1951 3.2.6). */
function fixedLitBits(symbol: number): number {
  return symbol < 144 ? 8 : symbol < 256 ? 9 : symbol < 280 ? 7 : 8;
}

function adler32(data: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (let i = 0; i < data.length; i += 3800) {
    const end = Math.min(i + 3800, data.length);
    for (let j = i; j < end; j++) {
      a += data[j];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

class BitWriter {
  out: number[] = [];
  #acc = 0;
  #n = 0;
  /** Writes `count` bits of `value`, least significant first. */
  bits(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      this.#acc |= ((value >>> i) & 1) << this.#n;
      if (++this.#n === 8) this.flush();
    }
  }
  /** Writes a Huffman code, most significant bit first. */
  code(code: number, length: number): void {
    for (let i = length - 1; i >= 0; i--) this.bits((code >>> i) & 1, 1);
  }
  flush(): void {
    if (this.#n === 0) return;
    this.out.push(this.#acc);
    this.#acc = 0;
    this.#n = 0;
  }
}

function writeFixedLit(w: BitWriter, symbol: number): void {
  if (symbol < 144) w.code(0x30 + symbol, 8);
  else if (symbol < 256) w.code(0x190 + symbol - 144, 9);
  else if (symbol < 280) w.code(symbol - 256, 7);
  else w.code(0xc0 + symbol - 280, 8);
}

/** Bits per literal/length symbol (0..285) and per distance code (0..29) of a code. */
interface Costs {
  lit: (symbol: number) => number;
  dist: (code: number) => number;
}

const FIXED_COSTS: Costs = { lit: fixedLitBits, dist: () => 5 };

/** One step of a parse: a literal (length 1) or a match. */
interface Step {
  length: number;
  dist: number;
}

/**
 * Chooses literals and matches by cost (the shortest encoding under
 * `costs`): for each position, the cheapest way to the end. Candidates are
 * the previous occurrences of the next three bytes, nearest first, so the
 * first that reaches a length also has the shortest distance for it.
 */
function parse(data: Uint8Array, costs: Costs): Step[] {
  const n = data.length;
  const WINDOW = 32768;
  const MAX_CHAIN = 128;
  const head = new Map<number, number>();
  const prev = new Int32Array(n).fill(-1);
  for (let i = 0; i + 2 < n; i++) {
    const h = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    prev[i] = head.get(h) ?? -1;
    head.set(h, i);
  }
  const cost = new Float64Array(n + 1);
  const choice: Step[] = new Array(n);
  for (let i = n - 1; i >= 0; i--) {
    cost[i] = cost[i + 1] + costs.lit(data[i]);
    choice[i] = { length: 1, dist: 0 };
    let best = 2;
    let chain = 0;
    for (let j = prev[i]; j >= 0 && i - j <= WINDOW && chain < MAX_CHAIN; j = prev[j], chain++) {
      let len = 0;
      const max = Math.min(258, n - i);
      while (len < max && data[j + len] === data[i + len]) len++;
      if (len <= best) continue;
      const dist = i - j;
      const dc = codeOf(DIST_BASE, dist);
      const distBits = costs.dist(dc) + DIST_EXTRA[dc];
      for (let l = best + 1; l <= len; l++) {
        const lc = codeOf(LEN_BASE, l);
        const c = cost[i + l] + costs.lit(257 + lc) + LEN_EXTRA[lc] + distBits;
        if (c < cost[i]) {
          cost[i] = c;
          choice[i] = { length: l, dist };
        }
      }
      best = len;
    }
  }
  const steps: Step[] = [];
  for (let i = 0; i < n; i += choice[i].length) steps.push(choice[i]);
  return steps;
}

/** Symbol frequencies of a parse (the end-of-block symbol included). */
function frequencies(data: Uint8Array, steps: Step[]): { lit: number[]; dist: number[] } {
  const lit = new Array(286).fill(0);
  const dist = new Array(30).fill(0);
  let i = 0;
  for (const s of steps) {
    if (s.length === 1) lit[data[i]]++;
    else {
      lit[257 + codeOf(LEN_BASE, s.length)]++;
      dist[codeOf(DIST_BASE, s.dist)]++;
    }
    i += s.length;
  }
  lit[256]++;
  return { lit, dist };
}

/**
 * Huffman code lengths for `freq`, none longer than `limit` (when a tree is
 * too deep, the frequencies are flattened and it is built again). At least
 * two symbols get a code, as RFC 1951 decoders expect of a complete code.
 */
function codeLengths(freq: number[], limit: number): number[] {
  let f = freq.slice();
  const used = f.filter((x) => x > 0).length;
  if (used < 2) {
    for (let s = 0, added = used; added < 2 && s < f.length; s++) {
      if (f[s] === 0) {
        f[s] = 1;
        added++;
      }
    }
  }
  for (;;) {
    type Node = { weight: number; symbol: number; left?: Node; right?: Node };
    const nodes: Node[] = [];
    f.forEach((w, symbol) => {
      if (w > 0) nodes.push({ weight: w, symbol });
    });
    while (nodes.length > 1) {
      nodes.sort((a, b) => a.weight - b.weight || b.symbol - a.symbol);
      const left = nodes.shift()!;
      const right = nodes.shift()!;
      nodes.push({ weight: left.weight + right.weight, symbol: -1, left, right });
    }
    const lengths = new Array(freq.length).fill(0);
    const walk = (node: Node, depth: number) => {
      if (node.left) {
        walk(node.left, depth + 1);
        walk(node.right!, depth + 1);
      } else lengths[node.symbol] = depth;
    };
    walk(nodes[0], 0);
    if (Math.max(...lengths) <= limit) return lengths;
    f = f.map((x) => x > 0 ? Math.max(1, x >> 1) : 0);
  }
}

/** Canonical codes for lengths (RFC 1951 3.2.2). */
function canonical(lengths: number[]): number[] {
  const count = new Array(16).fill(0);
  for (const l of lengths) if (l) count[l]++;
  const next = new Array(16).fill(0);
  let code = 0;
  for (let len = 1; len < 16; len++) {
    next[len] = code;
    code = (code + count[len]) << 1;
  }
  return lengths.map((l) => l ? next[l]++ : 0);
}

/** Writes the steps with a literal/length and a distance code. */
function writeSteps(
  w: BitWriter,
  data: Uint8Array,
  steps: Step[],
  lit: (w: BitWriter, symbol: number) => void,
  dist: (w: BitWriter, code: number) => void,
): void {
  let i = 0;
  for (const s of steps) {
    if (s.length === 1) lit(w, data[i]);
    else {
      const lc = codeOf(LEN_BASE, s.length);
      lit(w, 257 + lc);
      w.bits(s.length - LEN_BASE[lc], LEN_EXTRA[lc]);
      const dc = codeOf(DIST_BASE, s.dist);
      dist(w, dc);
      w.bits(s.dist - DIST_BASE[dc], DIST_EXTRA[dc]);
    }
    i += s.length;
  }
  lit(w, 256);
}

/** One final fixed-Huffman block. */
function fixedBlock(data: Uint8Array): number[] {
  const w = new BitWriter();
  w.bits(1, 1); // BFINAL
  w.bits(1, 2); // BTYPE 01
  writeSteps(w, data, parse(data, FIXED_COSTS), writeFixedLit, (w, c) => w.code(c, 5));
  w.flush();
  return w.out;
}

/** One final dynamic-Huffman block, its codes fitted to the data (a few rounds of parse and count). */
function dynamicBlock(data: Uint8Array): number[] {
  let steps = parse(data, FIXED_COSTS);
  let freq = frequencies(data, steps);
  for (let round = 0; round < 2; round++) {
    const litLen = codeLengths(freq.lit, 15);
    const distLen = codeLengths(freq.dist, 15);
    steps = parse(data, {
      lit: (s) => litLen[s] || 16,
      dist: (c) => distLen[c] || 16,
    });
    freq = frequencies(data, steps);
  }
  const litLen = codeLengths(freq.lit, 15);
  const distLen = codeLengths(freq.dist, 15);
  let hlit = 286;
  while (hlit > 257 && litLen[hlit - 1] === 0) hlit--;
  let hdist = 30;
  while (hdist > 1 && distLen[hdist - 1] === 0) hdist--;
  // The code lengths, run-length coded with symbols 16, 17 and 18.
  const all = [...litLen.slice(0, hlit), ...distLen.slice(0, hdist)];
  const rle: { symbol: number; extra: number; bits: number }[] = [];
  for (let i = 0; i < all.length;) {
    const v = all[i];
    let run = 1;
    while (i + run < all.length && all[i + run] === v) run++;
    if (v === 0 && run >= 3) {
      const r = Math.min(run, 138);
      rle.push(
        r <= 10 ? { symbol: 17, extra: r - 3, bits: 3 } : { symbol: 18, extra: r - 11, bits: 7 },
      );
      i += r;
    } else if (v !== 0 && run >= 4) {
      rle.push({ symbol: v, extra: 0, bits: 0 });
      const r = Math.min(run - 1, 6);
      rle.push({ symbol: 16, extra: r - 3, bits: 2 });
      i += 1 + r;
    } else {
      rle.push({ symbol: v, extra: 0, bits: 0 });
      i++;
    }
  }
  const clFreq = new Array(19).fill(0);
  for (const r of rle) clFreq[r.symbol]++;
  const clLen = codeLengths(clFreq, 7);
  const clCode = canonical(clLen);
  let hclen = 19;
  while (hclen > 4 && clLen[ORDER[hclen - 1]] === 0) hclen--;
  const litCode = canonical(litLen);
  const distCode = canonical(distLen);
  const w = new BitWriter();
  w.bits(1, 1); // BFINAL
  w.bits(2, 2); // BTYPE 10
  w.bits(hlit - 257, 5);
  w.bits(hdist - 1, 5);
  w.bits(hclen - 4, 4);
  for (let i = 0; i < hclen; i++) w.bits(clLen[ORDER[i]], 3);
  for (const r of rle) {
    w.code(clCode[r.symbol], clLen[r.symbol]);
    w.bits(r.extra, r.bits);
  }
  writeSteps(
    w,
    data,
    steps,
    (w, s) => w.code(litCode[s], litLen[s]),
    (w, c) => w.code(distCode[c], distLen[c]),
  );
  w.flush();
  return w.out;
}

/** Stored blocks (BTYPE 00): the data as it is. */
function storedBlocks(data: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i === 0 || i < data.length; i += 65535) {
    const len = Math.min(65535, data.length - i);
    out.push(i + len >= data.length ? 1 : 0, len & 0xff, len >> 8, ~len & 0xff, (~len >> 8) & 0xff);
    for (let j = 0; j < len; j++) out.push(data[i + j]);
  }
  return out;
}

/**
 * Compresses `data` into the zlib format: the shortest of one fixed-Huffman
 * block, one dynamic-Huffman block, or stored blocks.
 */
export function zlibDeflate(data: Uint8Array): Uint8Array {
  const blocks = [storedBlocks(data), fixedBlock(data)];
  // A dynamic block pays only when there is enough data for its table.
  if (data.length >= 64 && data.length <= 65536) blocks.push(dynamicBlock(data));
  const best = blocks.reduce((a, b) => b.length < a.length ? b : a);
  const sum = adler32(data);
  // CMF 0x78 (deflate, 32 KiB window), FLG 0xDA (maximum compression; the
  // pair is a multiple of 31).
  return new Uint8Array([
    0x78,
    0xda,
    ...best,
    sum >>> 24,
    (sum >>> 16) & 0xff,
    (sum >>> 8) & 0xff,
    sum & 0xff,
  ]);
}

class BitReader {
  #pos = 0;
  #bit = 0;
  constructor(readonly data: Uint8Array, start: number) {
    this.#pos = start;
  }
  get pos(): number {
    return this.#pos;
  }
  bit(): number {
    if (this.#pos >= this.data.length) throw new TypeError("deflate data ends early");
    const b = (this.data[this.#pos] >>> this.#bit) & 1;
    if (++this.#bit === 8) {
      this.#bit = 0;
      this.#pos++;
    }
    return b;
  }
  bits(count: number): number {
    let v = 0;
    for (let i = 0; i < count; i++) v |= this.bit() << i;
    return v;
  }
  align(): void {
    if (this.#bit !== 0) {
      this.#bit = 0;
      this.#pos++;
    }
  }
}

/** A canonical Huffman code: how many codes of each length, and the symbols in code order. */
interface Huffman {
  counts: number[];
  symbols: number[];
}

function huffman(lengths: number[]): Huffman {
  const counts = new Array(16).fill(0);
  for (const l of lengths) counts[l]++;
  counts[0] = 0;
  let left = 1;
  for (let len = 1; len < 16; len++) {
    left = left * 2 - counts[len];
    if (left < 0) throw new TypeError("deflate data has an over-subscribed code");
  }
  const offs = new Array(16).fill(0);
  for (let len = 1; len < 15; len++) offs[len + 1] = offs[len] + counts[len];
  const symbols: number[] = [];
  lengths.forEach((l, s) => {
    if (l !== 0) symbols[offs[l]++] = s;
  });
  return { counts, symbols };
}

function decodeSymbol(r: BitReader, h: Huffman): number {
  let code = 0;
  let first = 0;
  let index = 0;
  for (let len = 1; len < 16; len++) {
    code |= r.bit();
    const count = h.counts[len];
    if (code - count < first) return h.symbols[index + (code - first)];
    index += count;
    first = (first + count) << 1;
    code <<= 1;
  }
  throw new TypeError("deflate data has an invalid code");
}

const FIXED_LIT = huffman(
  Array.from({ length: 288 }, (_, s) => s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8),
);
const FIXED_DIST = huffman(new Array(30).fill(5));
// deno-fmt-ignore
const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * Expands zlib-format data (RFC 1950: header, DEFLATE stream, Adler-32).
 * Throws TypeError on anything malformed, a preset dictionary, a bad
 * checksum, or more than {@linkcode MAX_INFLATED} bytes.
 */
export function zlibInflate(data: Uint8Array): Uint8Array {
  if (data.length < 6) throw new TypeError("zlib data too short");
  const cmf = data[0];
  const flg = data[1];
  if ((cmf & 0x0f) !== 8 || (cmf >> 4) > 7 || ((cmf << 8) | flg) % 31 !== 0) {
    throw new TypeError("not zlib data");
  }
  if (flg & 0x20) throw new TypeError("zlib data needs a preset dictionary");
  const r = new BitReader(data, 2);
  const out: number[] = [];
  const push = (b: number) => {
    if (out.length >= MAX_INFLATED) throw new TypeError("deflate data expands too much");
    out.push(b);
  };
  let final = 0;
  while (!final) {
    final = r.bit();
    const type = r.bits(2);
    if (type === 0) {
      r.align();
      const p = r.pos;
      if (p + 4 > data.length) throw new TypeError("deflate data ends early");
      const len = data[p] | (data[p + 1] << 8);
      const nlen = data[p + 2] | (data[p + 3] << 8);
      if ((len ^ 0xffff) !== nlen) throw new TypeError("deflate stored block length mismatch");
      if (p + 4 + len > data.length) throw new TypeError("deflate data ends early");
      for (let i = 0; i < len; i++) push(data[p + 4 + i]);
      for (let i = 0; i < (4 + len) * 8; i++) r.bit();
      continue;
    }
    let lit = FIXED_LIT;
    let dist = FIXED_DIST;
    if (type === 2) {
      const nlit = r.bits(5) + 257;
      const ndist = r.bits(5) + 1;
      const ncode = r.bits(4) + 4;
      const codeLengths = new Array(19).fill(0);
      for (let i = 0; i < ncode; i++) codeLengths[ORDER[i]] = r.bits(3);
      const lencode = huffman(codeLengths);
      const lengths: number[] = [];
      while (lengths.length < nlit + ndist) {
        const sym = decodeSymbol(r, lencode);
        if (sym < 16) {
          lengths.push(sym);
          continue;
        }
        let repeat: number;
        let value = 0;
        if (sym === 16) {
          if (lengths.length === 0) throw new TypeError("deflate repeat with no length");
          value = lengths[lengths.length - 1];
          repeat = 3 + r.bits(2);
        } else if (sym === 17) repeat = 3 + r.bits(3);
        else repeat = 11 + r.bits(7);
        if (lengths.length + repeat > nlit + ndist) throw new TypeError("deflate too many lengths");
        for (let i = 0; i < repeat; i++) lengths.push(value);
      }
      lit = huffman(lengths.slice(0, nlit));
      dist = huffman(lengths.slice(nlit));
    } else if (type !== 1) {
      throw new TypeError("deflate data has an invalid block type");
    }
    for (;;) {
      const sym = decodeSymbol(r, lit);
      if (sym < 256) {
        push(sym);
        continue;
      }
      if (sym === 256) break;
      const lc = sym - 257;
      if (lc >= 29) throw new TypeError("deflate data has an invalid length code");
      const length = LEN_BASE[lc] + r.bits(LEN_EXTRA[lc]);
      const dc = decodeSymbol(r, dist);
      if (dc >= 30) throw new TypeError("deflate data has an invalid distance code");
      const d = DIST_BASE[dc] + r.bits(DIST_EXTRA[dc]);
      if (d > out.length) throw new TypeError("deflate distance too far back");
      for (let i = 0; i < length; i++) push(out[out.length - d]);
    }
  }
  r.align();
  const p = r.pos;
  if (p + 4 > data.length) throw new TypeError("zlib data ends before its checksum");
  const expect = ((data[p] << 24) | (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]) >>> 0;
  const result = new Uint8Array(out);
  if (adler32(result) !== expect) throw new TypeError("zlib checksum mismatch");
  return result;
}
