/**
 * The deflate coder (node:zlib) is loaded on demand: a subscriber that did
 * not ask for deflate still reads a NOTIFY that a peer compressed unasked,
 * loading the coder as it comes (lib/sip/events/subscriber.ts).
 */

import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import { Subscription, type SubscriptionNotify } from "../lib/sip/events/subscriber.ts";
import { contentCodingsLoaded } from "../lib/sip/events/encoding.ts";
import { Notifier } from "../lib/sip/events/notifier.ts";
import { loopUa, until } from "./_presence_util.ts";

const BOB = "sip:bob@192.0.2.2";

/** The platform's zlib (CompressionStream), so this file does not load node:zlib itself. */
async function platformDeflate(data: Uint8Array): Promise<Uint8Array> {
  const out = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(out).arrayBuffer());
}

Deno.test("a deflate NOTIFY nobody asked for: the subscriber loads the coder and reads it", async () => {
  const clock = new ManualClock();
  const net = new LoopNetwork();
  const alice = await loopUa(net, "alice", "192.0.2.1", { clock });
  const bob = await loopUa(net, "bob", "192.0.2.2", { clock });
  // No encodings on either side: nothing has loaded the coder.
  const notifier = new Notifier(bob);
  notifier.addPackage({
    event: "presence",
    content: () => ({ body: "<presence/>", contentType: "application/pidf+xml" }),
  });
  const notes: SubscriptionNotify[] = [];
  const sub = new Subscription(alice, BOB, { event: "presence", onNotify: (n) => notes.push(n) });
  await sub.start();
  await until(net, () => notes.length === 1);
  assert.equal(contentCodingsLoaded(), false);
  const doc = new TextEncoder().encode("<presence>" + "open ".repeat(40) + "</presence>");
  const s = notifier.subscriptions()[0];
  const req = s.dialog.createRequest("NOTIFY", {
    headers: [
      ["Event", "presence"],
      ["Subscription-State", "active;expires=600"],
      ["Content-Encoding", "deflate"],
    ],
    body: await platformDeflate(doc),
    contentType: "application/pidf+xml",
  });
  const { response } = await bob.send(req, { dialog: s.dialog });
  assert.equal(response.status, 200);
  assert.equal(contentCodingsLoaded(), true);
  assert.equal(notes.length, 2);
  assert.deepEqual(new Uint8Array(notes[1].body), doc);
  sub.close();
  await notifier.close({ notify: false });
  await Promise.all([alice.close(), bob.close()]);
});
