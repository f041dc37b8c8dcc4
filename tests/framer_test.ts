import assert from "node:assert/strict";
import { StreamFramer } from "../lib/sip/framer.ts";
import { SipSyntaxError } from "../lib/sip/errors.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function collect(options: { maxMessageSize?: number } = {}) {
  const messages: string[] = [];
  const events: string[] = [];
  const errors: Error[] = [];
  const framer = new StreamFramer({
    ...options,
    onMessage: (m) => {
      messages.push(dec.decode(m));
      events.push("message");
    },
    onPing: () => events.push("ping"),
    onPong: () => events.push("pong"),
    onError: (e) => errors.push(e),
  });
  return { framer, messages, events, errors };
}

const invite = "INVITE sip:bob@example.test SIP/2.0\r\n" +
  "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
  "Content-Type: application/sdp\r\n" +
  "Content-Length: 14\r\n\r\n" +
  "v=0\r\no=- 1 1\r\n";
const compact = "MESSAGE sip:bob@example.test SIP/2.0\r\n" +
  "v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKa\r\n" +
  "l:5\r\n\r\nhello";
const noBody =
  "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKb\r\nContent-Length:   0  \r\n\r\n";

Deno.test("StreamFramer cuts a message at Content-Length however the stream is split", () => {
  const all = enc.encode(invite + compact + noBody);
  for (let a = 0; a <= all.length; a++) {
    for (const b of [a, Math.min(all.length, a + 1), Math.min(all.length, a + 37)]) {
      const { framer, messages, errors } = collect();
      framer.push(all.subarray(0, a));
      framer.push(all.subarray(a, b));
      framer.push(all.subarray(b));
      assert.deepEqual(errors, []);
      assert.deepEqual(messages, [invite, compact, noBody], `split at ${a}/${b}`);
      assert.equal(framer.buffered, 0);
    }
  }
});

Deno.test("StreamFramer delivers byte-by-byte input", () => {
  const { framer, messages } = collect();
  for (const byte of enc.encode(invite + invite)) framer.push(new Uint8Array([byte]));
  assert.deepEqual(messages, [invite, invite]);
});

Deno.test("StreamFramer delivers several messages from one chunk and keeps a partial tail", () => {
  const { framer, messages } = collect();
  const partial = compact.slice(0, compact.length - 2);
  framer.push(enc.encode(noBody + invite + partial));
  assert.deepEqual(messages, [noBody, invite]);
  assert.equal(framer.buffered, partial.length);
  framer.push(enc.encode(compact.slice(-2)));
  assert.deepEqual(messages, [noBody, invite, compact]);
});

Deno.test("StreamFramer reports a double-CRLF ping and a single-CRLF pong between messages", () => {
  const { framer, messages, events } = collect();
  framer.push(enc.encode("\r\n\r\n"));
  assert.deepEqual(events, ["ping"]);
  framer.push(enc.encode("\r\n"));
  assert.deepEqual(events, ["ping", "pong"]);
  framer.push(enc.encode(noBody + "\r\n\r\n" + noBody + "\r\n"));
  assert.deepEqual(events, ["ping", "pong", "message", "ping", "message", "pong"]);
  assert.deepEqual(messages, [noBody, noBody]);
});

Deno.test("StreamFramer keeps a ping split across chunks a ping", () => {
  const { framer, events } = collect();
  framer.push(enc.encode("\r"));
  framer.push(enc.encode("\n\r"));
  framer.push(enc.encode("\n"));
  assert.deepEqual(events, ["ping"]);
});

Deno.test("StreamFramer does not treat CRLF inside a body as a keep-alive", () => {
  const { framer, messages, events } = collect();
  const msg = "MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
  framer.push(enc.encode(msg));
  assert.deepEqual(messages, [msg]);
  assert.deepEqual(events, ["message"]);
});

Deno.test("StreamFramer fails on a message without Content-Length", () => {
  const { framer, messages, errors } = collect();
  framer.push(enc.encode("OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n" + noBody));
  assert.deepEqual(messages, []);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof SipSyntaxError);
  assert.match(errors[0].message, /missing Content-Length/);
  assert.equal(framer.failed, true);
  framer.push(enc.encode(noBody));
  assert.deepEqual(messages, [], "input after a failure is ignored");
  assert.equal(errors.length, 1);
});

Deno.test("StreamFramer fails on a bad or conflicting Content-Length", async (t) => {
  const cases: [string, RegExp][] = [
    ["Content-Length: -1", /bad Content-Length "-1"/],
    ["Content-Length: 12abc", /bad Content-Length/],
    ["l: ", /bad Content-Length ""/],
    ["Content-Length: 2\r\nl: 3", /conflicting Content-Length/],
  ];
  for (const [header, expected] of cases) {
    await t.step(header.replaceAll("\r\n", " | "), () => {
      const { framer, errors, messages } = collect();
      framer.push(enc.encode(`OPTIONS sip:a@b SIP/2.0\r\n${header}\r\n\r\nhi`));
      assert.equal(errors.length, 1);
      assert.match(errors[0].message, expected);
      assert.deepEqual(messages, []);
    });
  }
});

Deno.test("StreamFramer accepts repeated equal Content-Length headers and folding", () => {
  const { framer, messages, errors } = collect();
  const msg = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 2\r\nl: 2\r\n\r\nhi";
  const folded = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length:\r\n  3\r\n\r\nabc";
  framer.push(enc.encode(msg + folded));
  assert.deepEqual(errors, []);
  assert.deepEqual(messages, [msg, folded]);
});

Deno.test("StreamFramer refuses a message larger than the limit", () => {
  const big = collect({ maxMessageSize: 100 });
  big.framer.push(enc.encode("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\n"));
  assert.equal(big.errors.length, 1);
  assert.ok(big.errors[0] instanceof RangeError);
  assert.match(big.errors[0].message, /exceed the limit of 100/);

  const endless = collect({ maxMessageSize: 100 });
  for (let i = 0; i < 10; i++) endless.framer.push(enc.encode("X-Filler: 0123456789\r\n"));
  assert.equal(endless.errors.length, 1);
  assert.match(endless.errors[0].message, /header block larger than 100 bytes/);
});

Deno.test("StreamFramer delivers copies that later input does not overwrite", () => {
  const kept: Uint8Array[] = [];
  const framer = new StreamFramer({ onMessage: (m) => kept.push(m) });
  framer.push(enc.encode(noBody));
  framer.push(enc.encode(invite));
  assert.equal(dec.decode(kept[0]), noBody);
  assert.equal(dec.decode(kept[1]), invite);
});
