/**
 * The deflate coder (node:zlib) is loaded on demand: a subscriber that did
 * not ask for deflate still reads a NOTIFY that a peer compressed unasked,
 * loading the coder as it comes (lib/sip/events/subscriber.ts).
 */

import assert from "node:assert/strict";
import { contentCodingsLoaded } from "../lib/sip/events/encoding.ts";
import { presenceSubscription } from "./_presence_util.ts";

/** The platform's zlib (CompressionStream), so this file does not load node:zlib itself. */
async function platformDeflate(data: Uint8Array): Promise<Uint8Array> {
  const out = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(out).arrayBuffer());
}

Deno.test("a deflate NOTIFY nobody asked for: the subscriber loads the coder and reads it", async () => {
  // No encodings on either side: nothing has loaded the coder.
  const { bob, notifier, notes, close } = await presenceSubscription();
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
  await close();
});
