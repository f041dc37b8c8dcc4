import * as assert from "node:assert/strict";
import { readLines } from "../cli/_io.ts";

const enc = new TextEncoder();

/** A stream that gives these byte chunks one by one, then ends. */
function bytes(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
}

function text(...chunks: string[]): ReadableStream<Uint8Array> {
  return bytes(...chunks.map((s) => enc.encode(s)));
}

async function lines(input: ReadableStream<Uint8Array>): Promise<string[]> {
  const got: string[] = [];
  await readLines(input, (line) => void got.push(line));
  return got;
}

Deno.test("readLines() joins lines and CRLF pairs split across chunks", async () => {
  assert.deepEqual(
    await lines(text("one\r", "\ntw", "o", "\r\nthree\nfo", "ur\r", "\n", "five\n")),
    ["one", "two", "three", "four", "five"],
  );
  // A line split over many chunks, its "\r" alone in one and its "\n" in the next.
  assert.deepEqual(await lines(text("a", "b", "c", "d", "\r", "\n", "e\n")), ["abcd", "e"]);
});

Deno.test("readLines() gives blank lines and keeps a \\r that does not end a line", async () => {
  assert.deepEqual(
    await lines(text("\n\r\nx\ry\r\r\n\n", "\r", "\n")),
    ["", "", "x\ry\r", "", ""],
  );
});

Deno.test("readLines() decodes UTF-8 characters split across chunks", async () => {
  const all = enc.encode("héllo €\n😀 ok\r\nñ");
  // Every cut, including inside the 2-, 3- and 4-byte sequences.
  for (let cut = 1; cut < all.length; cut++) {
    assert.deepEqual(
      await lines(bytes(all.slice(0, cut), all.slice(cut))),
      ["héllo €", "😀 ok", "ñ"],
      `cut at byte ${cut}`,
    );
  }
  // One byte per chunk.
  const single = Array.from(all, (b) => new Uint8Array([b]));
  assert.deepEqual(await lines(bytes(...single)), ["héllo €", "😀 ok", "ñ"]);
});

Deno.test("readLines() gives a last line without newline, and no empty one after a newline", async () => {
  assert.deepEqual(await lines(text("a\nlast")), ["a", "last"]);
  assert.deepEqual(await lines(text("a\nla", "st\r")), ["a", "last"]);
  assert.deepEqual(await lines(text("a\n")), ["a"]);
  assert.deepEqual(await lines(text("")), []);
  assert.deepEqual(await lines(text()), []);
});

Deno.test("readLines() gives every line of a large chunk, in order", async () => {
  const n = 200_000;
  const body = Array.from({ length: n }, (_, i) => `{"type":"send","n":${i}}`);
  const got = await lines(text(body.join("\r\n") + "\n"));
  assert.equal(got.length, n);
  assert.ok(got.every((line, i) => line === body[i]));
  // The same with the chunk ending in the middle of a line, the rest in a second chunk.
  const all = body.join("\n");
  const half = all.length >> 1;
  assert.deepEqual(await lines(text(all.slice(0, half), all.slice(half))), body);
});

Deno.test("readLines() waits for what onLine returns before the next line", async () => {
  const events: string[] = [];
  await readLines(text("a\nb\n", "c"), async (line) => {
    events.push(`start ${line}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
    events.push(`end ${line}`);
  });
  assert.deepEqual(events, ["start a", "end a", "start b", "end b", "start c", "end c"]);
});

/** A stream fed by the test; `cancelled` settles when its reader cancels it. */
function fed() {
  let source!: ReadableStreamDefaultController<Uint8Array>;
  let onCancel!: () => void;
  const cancelled = new Promise<void>((resolve) => onCancel = resolve);
  const input = new ReadableStream<Uint8Array>({
    start: (c) => void (source = c),
    cancel: () => onCancel(),
  });
  return { input, source, cancelled };
}

/** Settles with `p`, or fails after 5 s (so that a broken reader fails instead of hanging). */
async function soon<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within 5 s`)), 5000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("readLines() stops when aborted, cancels the input and removes its listener", async () => {
  const controller = new AbortController();
  const signal = controller.signal;
  const listeners = new Set<unknown>();
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((type: string, fn: EventListener, o?: AddEventListenerOptions) => {
    listeners.add(fn);
    add(type, fn, o);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((type: string, fn: EventListener) => {
    listeners.delete(fn);
    remove(type, fn);
  }) as typeof signal.removeEventListener;
  const { input, source, cancelled } = fed();
  const got: string[] = [];
  let first!: () => void;
  const gotFirst = new Promise<void>((resolve) => first = resolve);
  const done = readLines(input, (line) => {
    got.push(line);
    first();
  }, { signal });
  assert.equal(listeners.size, 1);
  source.enqueue(enc.encode("one\ntwo\n"));
  await soon(gotFirst, "first line");
  // Reading waits for more input: the abort ends it.
  controller.abort();
  await soon(done, "readLines after the abort");
  assert.deepEqual(got, ["one", "two"]);
  await soon(cancelled, "cancel of the input");
  assert.equal(listeners.size, 0, "the abort listener is removed");
  // Nothing more is read: the input is closed to its writer.
  assert.throws(() => source.enqueue(enc.encode("three\n")), TypeError);
  assert.deepEqual(got, ["one", "two"]);
});

Deno.test("readLines() hands over no line once aborted: not the rest of the chunk, nor an unfinished last line", async () => {
  const controller = new AbortController();
  const got: string[] = [];
  // One chunk of three lines and an unfinished fourth; the abort comes while
  // the first is being handled (a batch stopped by SIGTERM).
  await soon(
    readLines(text("one\ntwo\nthree\nfour"), async (line) => {
      got.push(line);
      if (line === "one") controller.abort();
      await Promise.resolve();
    }, { signal: controller.signal }),
    "readLines",
  );
  assert.deepEqual(got, ["one"]);
});

Deno.test("readLines() reads nothing when its signal has already aborted, and cancels the input", async () => {
  const { input, source, cancelled } = fed();
  source.enqueue(enc.encode("one\ntwo\n"));
  const got: string[] = [];
  await soon(
    readLines(input, (line) => void got.push(line), { signal: AbortSignal.abort() }),
    "readLines",
  );
  assert.deepEqual(got, []);
  await soon(cancelled, "cancel of the input");
});

/**
 * Feeds "one\n", then while "one" is being handled errors the input and lets
 * the error reach the reader; with `abort`, aborts before the next read.
 */
async function errorWhileHandling(abort: boolean): Promise<string[]> {
  const controller = new AbortController();
  const { input, source } = fed();
  const got: string[] = [];
  const done = readLines(input, async (line) => {
    got.push(line);
    source.error(new Error("read failed"));
    // The error goes through the decoder's pipe in a few turns of the event loop.
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (abort) controller.abort();
  }, { signal: controller.signal });
  source.enqueue(enc.encode("one\n"));
  await soon(done, "readLines");
  return got;
}

Deno.test("readLines() rejects on a read error, and swallows it once aborted", async () => {
  await assert.rejects(soon(errorWhileHandling(false), "readLines"), /read failed/);
  assert.deepEqual(await errorWhileHandling(true), ["one"]);
});

Deno.test("readLines() rejects when onLine throws", async () => {
  const got: string[] = [];
  await assert.rejects(
    readLines(text("a\nb\n"), (line) => {
      got.push(line);
      if (line === "a") throw new Error("bad line");
    }),
    /bad line/,
  );
  assert.deepEqual(got, ["a"]);
});
