// The FIFO of keys with its own hash table over typed arrays
// (lib/sip/_key_ring.ts), which holds the transaction layer's completed UDP
// transactions (timer J) and the MESSAGE listener's duplicate memory.

import assert from "node:assert/strict";
import { forEachRun, hashKey, KeyRing, KeyTable, SEQ_MASK } from "../lib/sip/_key_ring.ts";

/** A fixed pseudo-random sequence (xorshift) from `seed`, the same on every run: `rand(n)` in [0, n). */
function xorshift(seed: number): (n: number) => number {
  let x = seed;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/** Keys whose home bucket in a table of `tableSize` slots is `bucket`. */
function keysInBucket(bucket: number, tableSize: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const k = `z9hG4bK${i}|192.0.2.1:5060|MESSAGE`;
    if ((hashKey(k) & (tableSize - 1)) === bucket) out.push(k);
  }
  return out;
}

Deno.test("KeyRing finds what it holds, in order, and forgets the oldest first", () => {
  const ring = new KeyRing(4);
  const seqs = ["a", "bb", "ccc"].map((k) => ring.push(k));
  assert.deepEqual(seqs, [0, 1, 2]);
  assert.equal(ring.find("bb"), 1);
  assert.equal(ring.find("b"), -1);
  assert.equal(ring.find("bbb"), -1);
  assert.equal(ring.key(2), "ccc");
  assert.equal(ring.size, 3);
  ring.shift();
  assert.equal(ring.find("a"), -1);
  assert.equal(ring.has(0), false);
  assert.equal(ring.find("ccc"), 2);
  assert.equal(ring.size, 2);
  assert.equal(ring.count, 2);
  assert.throws(() => new KeyRing(1000), RangeError);
});

Deno.test("KeyRing: keys that share a bucket form a run; removing any of them keeps the others found (backward shift)", () => {
  // A ring of 8 slots has a table of 16: six keys with the same home bucket
  // 15 make a run that wraps to the start of the table, after which two
  // keys of bucket 0 and 1 are displaced too.
  const run = keysInBucket(15, 16, 6);
  const after = [...keysInBucket(0, 16, 1), ...keysInBucket(1, 16, 1)];
  for (const drop of [0, 2, 5]) {
    const ring = new KeyRing(8);
    const all = [...run, ...after];
    const seqs = all.map((k) => ring.push(k));
    assert.equal(ring.capacity, 8);
    for (let i = 0; i < all.length; i++) assert.equal(ring.find(all[i]), seqs[i]);
    ring.unindex(seqs[drop]);
    assert.equal(ring.find(all[drop]), -1, `dropped ${drop}`);
    assert.equal(ring.isIndexed(seqs[drop]), false);
    assert.equal(ring.has(seqs[drop]), true, "still takes its slot until it leaves");
    for (let i = 0; i < all.length; i++) {
      if (i !== drop) assert.equal(ring.find(all[i]), seqs[i], `${i} after dropping ${drop}`);
    }
    // Removing them all, oldest first, leaves nothing found and the table empty.
    while (ring.count > 0) ring.shift();
    for (const k of all) assert.equal(ring.find(k), -1);
    assert.equal(ring.size, 0);
  }
});

Deno.test("KeyRing: two keys with the same 32-bit hash are told apart by their bytes", () => {
  const a = "z9hG4bK91698|192.0.2.1:5060|MESSAGE";
  const b = "z9hG4bK416556|192.0.2.1:5060|MESSAGE";
  assert.equal(hashKey(a), hashKey(b));
  const ring = new KeyRing(4);
  const sa = ring.push(a);
  assert.equal(ring.find(b), -1);
  const sb = ring.push(b);
  assert.equal(ring.find(a), sa);
  assert.equal(ring.find(b), sb);
  ring.unindex(sa);
  assert.equal(ring.find(a), -1);
  assert.equal(ring.find(b), sb);
});

Deno.test("KeyRing: the same key again takes the place of the older entry", () => {
  const ring = new KeyRing(4);
  const first = ring.push("k");
  ring.push("other");
  const second = ring.push("k");
  assert.equal(ring.find("k"), second);
  assert.equal(ring.isIndexed(first), false);
  assert.equal(ring.size, 2);
  ring.shift(); // the older "k" leaves: the newer stays found
  assert.equal(ring.find("k"), second);
  ring.unindex(first); // not indexed any more, and gone: nothing happens
  assert.equal(ring.size, 2);
});

Deno.test("KeyRing: long keys, keys beyond Latin-1 and keys of 65,535 characters or more", () => {
  const ring = new KeyRing(4, 8);
  const long = "2543|sip:bob@example.test|" + "x".repeat(5000) + "|MESSAGE";
  const wide = "z9hG4bKé€|bücher.example:5060|MESSAGE";
  const huge = "h".repeat(70_000);
  const latin = "z9hG4bK\u00ff\u0080|host|MESSAGE";
  const seqs = [long, wide, huge, latin].map((k) => ring.push(k));
  assert.ok(ring.arenaSize >= long.length + latin.length, String(ring.arenaSize));
  assert.deepEqual([long, wide, huge, latin].map((k) => ring.find(k)), seqs);
  assert.deepEqual(seqs.map((s) => ring.key(s)), [long, wide, huge, latin]);
  // A key that differs from a Latin-1 one only beyond 0xFF is not it.
  assert.equal(ring.find("z9hG4bK\u01ff\u0080|host|MESSAGE"), -1);
  assert.equal(ring.find(long.slice(0, -1) + "F"), -1);
  for (let i = 0; i < 4; i++) ring.shift();
  assert.equal(ring.size, 0);
  for (const k of [long, wide, huge, latin]) assert.equal(ring.find(k), -1);
});

Deno.test("KeyRing: growth of the ring and of the arena while the oldest entry is mid-ring; lookups after many entries; sequence numbers wrap", () => {
  const ring = new KeyRing(16, 4);
  const key = (i: number) => `z9hG4bK-${i}-${"p".repeat(i % 23)}|10.0.0.${i % 250}:5060|MESSAGE`;
  const seqOf = new Map<number, number>();
  let oldest = 0;
  let next = 0;
  // Keep 1,000 then 3,000 then 30,000 entries: the head moves on while the
  // ring and its arena double.
  for (const keep of [1000, 3000, 30_000]) {
    for (let round = 0; round < 2 * keep; round++) {
      seqOf.set(next, ring.push(key(next)));
      next++;
      if (next - oldest > keep) {
        ring.shift();
        seqOf.delete(oldest++);
      }
    }
    assert.equal(ring.count, keep);
    for (let i = oldest; i < next; i += 7) assert.equal(ring.find(key(i)), seqOf.get(i), `${i}`);
    assert.equal(ring.find(key(oldest - 1)), -1);
  }
  assert.equal(ring.capacity, 32_768);
  assert.ok(ring.arenaSize < 4 * 1024 * 1024, `arena ${ring.arenaSize}`);
  for (let i = oldest; i < next; i++) assert.equal(ring.key(seqOf.get(i)!), key(i));
  // When the flood is over the ring and its arena shrink back, and what is
  // left is still found.
  const arena = ring.arenaSize;
  while (next - oldest > 100) {
    ring.shift();
    seqOf.delete(oldest++);
  }
  assert.equal(ring.capacity, 512, "100 entries: halved while under an eighth full");
  assert.ok(ring.arenaSize < arena / 32, `arena ${ring.arenaSize} of ${arena}`);
  for (let i = oldest; i < next; i++) {
    assert.equal(ring.find(key(i)), seqOf.get(i), `${i}`);
    assert.equal(ring.key(seqOf.get(i)!), key(i));
  }
  for (let i = 0; i < 100; i++) seqOf.set(next, ring.push(key(next++)));
  for (let i = oldest; i < next; i++) assert.equal(ring.find(key(i)), seqOf.get(i), `${i}`);
  // Sequence numbers wrap at 2^30 and stay valid.
  const fresh = new KeyRing(4);
  fresh.head = SEQ_MASK - 1;
  const w = ["w0", "w1", "w2", "w3", "w4"].map((k) => fresh.push(k));
  assert.deepEqual(w, [SEQ_MASK - 1, SEQ_MASK, 0, 1, 2]);
  assert.deepEqual(["w0", "w1", "w2", "w3", "w4"].map((k) => fresh.find(k)), w);
  fresh.shift();
  fresh.shift();
  assert.equal(fresh.head, 0);
  assert.equal(fresh.find("w1"), -1);
  assert.equal(fresh.find("w4"), 2);
});

Deno.test("KeyRing agrees with a Map under random pushes, withdrawals and shifts", () => {
  const rand = xorshift(0x2545f491);
  const ring = new KeyRing(2, 2);
  const model = new Map<string, number>(); // key -> seq of its indexed entry
  const order: { key: string; seq: number }[] = [];
  for (let step = 0; step < 60_000; step++) {
    const op = rand(10);
    if (op < 5 || order.length === 0) {
      // Few distinct keys, so that the same key comes back often.
      const key = `k${rand(3000)}${"~".repeat(rand(4) * 9)}`;
      const seq = ring.push(key);
      model.set(key, seq);
      order.push({ key, seq });
    } else if (op < 7) {
      const { key, seq } = order[rand(order.length)];
      ring.unindex(seq);
      if (model.get(key) === seq) model.delete(key);
    } else {
      const { key, seq } = order.shift()!;
      ring.shift();
      if (model.get(key) === seq) model.delete(key);
    }
    if (step % 97 === 0) {
      assert.equal(ring.size, model.size, `step ${step}`);
      assert.equal(ring.count, order.length);
      for (let i = 0; i < 20; i++) {
        const key = `k${rand(3000)}${"~".repeat(rand(4) * 9)}`;
        assert.equal(ring.find(key), model.get(key) ?? -1, `step ${step}: ${key}`);
      }
    }
  }
  for (const [key, seq] of model) assert.equal(ring.find(key), seq);
});

Deno.test("KeyTable: get, set, delete in a run of colliding keys (backward shift), growth and shrinking", () => {
  const table = new KeyTable<number>(16);
  // Seven keys with home bucket 15 of 16 slots wrap around the table's end.
  const run = keysInBucket(15, 16, 7);
  run.forEach((k, i) => table.set(k, i));
  assert.equal(table.capacity, 16, "7 of 16: not yet half full");
  const dropped = new Set<number>();
  for (const drop of [3, 0, 6]) {
    assert.equal(table.delete(run[drop]), true);
    assert.equal(table.delete(run[drop]), false);
    dropped.add(drop);
    run.forEach((k, i) => {
      assert.equal(table.get(k), dropped.has(i) ? undefined : i, `${i} after dropping ${drop}`);
    });
  }
  assert.equal(table.size, 4);
  table.set(run[1], 100);
  assert.equal(table.get(run[1]), 100, "set replaces");
  assert.equal(table.size, 4);
  // Grows at half full and keeps every entry; shrinks again when nearly empty.
  const many = Array.from({ length: 5000 }, (_, i) => `z9hG4bK-${i}|10.1.${i % 256}.1:5060|INVITE`);
  many.forEach((k, i) => table.set(k, i));
  assert.equal(table.capacity, 16_384);
  many.forEach((k, i) => assert.equal(table.get(k), i));
  assert.equal(table.values().length, 5004);
  many.forEach((k) => assert.equal(table.delete(k), true));
  assert.ok(table.capacity <= 64, String(table.capacity));
  assert.equal(table.size, 4);
  assert.deepEqual(table.values().sort((a, b) => a - b), [2, 4, 5, 100]);
  table.clear();
  assert.equal(table.size, 0);
  assert.equal(table.get(run[1]), undefined);
  assert.throws(() => new KeyTable(10), RangeError);
});

Deno.test("KeyTable agrees with a Map under random sets and deletes", () => {
  const rand = xorshift(0x1234567);
  const table = new KeyTable<number>(2);
  const model = new Map<string, number>();
  for (let step = 0; step < 50_000; step++) {
    const key = `k${rand(2000)}`;
    if (rand(3) === 0) assert.equal(table.delete(key), model.delete(key), `step ${step}`);
    else {
      table.set(key, step);
      model.set(key, step);
    }
    if (step % 101 === 0) {
      assert.equal(table.size, model.size);
      for (let i = 0; i < 20; i++) {
        const probe = `k${rand(2000)}`;
        assert.equal(table.get(probe), model.get(probe), `step ${step}: ${probe}`);
      }
    }
  }
});

Deno.test("forEachRun: runs cover each entry once, from its old slot to its new one, for growth and shrinking, across the sequence wrap", () => {
  const rand = (n: number) => Math.floor(Math.random() * n);
  for (let trial = 0; trial < 2000; trial++) {
    const oldSize = 1 << (1 + rand(8));
    const size = rand(2) === 0 ? oldSize * 2 : Math.max(1, oldSize / 2);
    const count = rand(Math.min(oldSize, size) + 1);
    const head = rand(4) === 0 ? SEQ_MASK - rand(oldSize) : rand(1 << 20);
    const seen = new Map<number, number>();
    let runs = 0;
    forEachRun(head, count, oldSize - 1, size - 1, (from, to, length) => {
      runs++;
      assert.ok(length > 0 && from + length <= oldSize && to + length <= size);
      for (let i = 0; i < length; i++) seen.set(from + i, to + i);
    });
    assert.ok(runs <= 2, `${runs} runs`);
    assert.equal(seen.size, count);
    for (let a = 0; a < count; a++) {
      const n = (head + a) & SEQ_MASK;
      assert.equal(seen.get(n & (oldSize - 1)), n & (size - 1));
    }
  }
});

Deno.test("KeyRing keeps every key's bytes through arena growth and shrinking with wrap-around, among wide and empty keys", () => {
  const rand = xorshift(0x1234567);
  const ring = new KeyRing(2, 1);
  const order: { key: string; seq: number }[] = [];
  const makeKey = () => {
    const r = rand(20);
    if (r === 0) return "";
    if (r === 1) return `wide€${rand(1000)}`;
    return `key${rand(100_000)}${"x".repeat(rand(40))}`;
  };
  for (let step = 0; step < 40_000; step++) {
    // Runs of pushes, then runs of shifts: the arena doubles and halves often.
    const phase = Math.floor(step / 700) % 2 === 0;
    if ((phase && rand(10) < 8) || order.length === 0) {
      const key = makeKey();
      order.push({ key, seq: ring.push(key) });
    } else {
      order.shift();
      ring.shift();
    }
    if (step % 101 === 0) {
      assert.equal(ring.count, order.length);
      for (const { key, seq } of order) assert.equal(ring.key(seq), key, `step ${step}`);
    }
  }
  for (const { key, seq } of order) assert.equal(ring.key(seq), key);
});
