/**
 * `sipkit call` modifying the session by UPDATE (RFC 3311) with
 * `"method":"update"` on its stdin lines: against a sipp UAS that checks
 * each UPDATE's offer (PCMA first with a=ptime:40, then a=sendonly) and
 * answers it in its 200, with the RTP checked at the test's UDP socket; and
 * sipkit calling sipkit (hold, resume and a codec change by UPDATE, seen in
 * the callee's SIP trace, no re-INVITE).
 */

import assert from "node:assert/strict";
import { requirePeer } from "./peers/require.ts";
import type { SipkitProcess } from "./_sipkit_process.ts";
import {
  of,
  sippWithMediaSocket,
  startAnswerer,
  startCaller,
  withCallDirs,
  withCallProcs,
  withProcLogs,
} from "./_call_util.ts";

const hasSipp = requirePeer("sipp", "sip-tester");

Deno.test({
  name:
    "sipkit call: codec, ptime and hold by UPDATE against sipp (offers checked by sipp, RTP at a UDP socket)",
  ignore: !hasSipp,
  fn: async () => {
    await withCallDirs(async (dirs) => {
      const procs: SipkitProcess[] = [];
      const got: { pt: number; seq: number; ts: number }[] = [];
      const { uas, close } = await sippWithMediaSocket("call_uas_update.xml", (p) => {
        if (p.length < 12 || ((p[1] & 0x7f) >= 72 && (p[1] & 0x7f) <= 76)) return; // RTCP
        const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
        got.push({ pt: p[1] & 0x7f, seq: v.getUint16(2), ts: v.getUint32(4) });
      });
      try {
        await withProcLogs(() => procs, async () => {
          const p = startCaller(dirs, [`sip:bob@${uas.address}`, "--tone", "440"]);
          procs.push(p);
          await p.waitEvent(of("media"));
          // A bad method is an error line, and nothing is sent.
          await p.send({ type: "hold", method: "options" });
          const bad = await p.waitEvent(of("error"));
          assert.match(String(bad.message), /"method" must be "invite" or "update"/);
          await p.send({ type: "codec", codec: "PCMA", ptime: 40, method: "update" });
          const changed = await p.waitEvent(of("codec_changed"));
          assert.deepEqual([changed.codec, changed.by], ["PCMA", "local"]);
          const ptime = await p.waitEvent(of("ptime_changed"));
          assert.deepEqual([ptime.ptime, ptime.previous, ptime.by], [40, 20, "local"]);
          await new Promise((r) => setTimeout(r, 1000));
          await p.send({ type: "hold", method: "update" });
          assert.equal((await p.waitEvent(of("held"))).by, "local");
          await new Promise((r) => setTimeout(r, 300));
          await p.send({ type: "hangup" });
          assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
          assert.equal(await p.exited, 0);
          assert.equal(p.events.filter((e) => e.type === "error").length, 1);
          const r = await uas.done;
          assert.equal(r.successful, 1, `sipp failed\n${r.errors}\n${r.output.slice(-3000)}`);
          // PCMA after the UPDATE, 40 ms packets: a timestamp step of 320 between consecutive ones.
          const pcma = got.filter((g) => g.pt === 8);
          assert.ok(pcma.length >= 15, `${pcma.length} PCMA packets`);
          for (let i = 1; i < pcma.length; i++) {
            assert.equal(pcma[i].seq, (pcma[i - 1].seq + 1) & 0xffff);
            assert.equal((pcma[i].ts - pcma[i - 1].ts) >>> 0, 320, `step at ${i}`);
          }
        });
      } finally {
        await close();
      }
    });
  },
});

Deno.test({
  name: "sipkit calls sipkit: hold, resume and a codec change by UPDATE (no re-INVITE)",
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      const b = await startAnswerer(dirs, [
        "-u",
        "bob@example.test",
        "--auto-answer",
        "--no-audio",
        "--trace",
      ]);
      procs.push(b.proc);
      const a = startCaller(dirs, ["-u", "alice@example.test", b.contact, "--no-audio"]);
      procs.push(a);
      await a.waitEvent(of("media"));
      await b.proc.waitEvent(of("media"));
      await a.send({ type: "hold", method: "update" });
      assert.equal((await a.waitEvent(of("held"))).by, "local");
      assert.equal((await b.proc.waitEvent(of("held"))).by, "remote");
      await a.send({ type: "resume", method: "update" });
      assert.equal((await a.waitEvent(of("resumed"))).by, "local");
      assert.equal((await b.proc.waitEvent(of("resumed"))).by, "remote");
      await a.send({ type: "codec", codec: "PCMA", method: "update" });
      assert.equal((await a.waitEvent(of("codec_changed"))).by, "local");
      const remote = await b.proc.waitEvent(of("codec_changed"));
      assert.deepEqual([remote.codec, remote.by], ["PCMA", "remote"]);
      await a.send({ type: "hangup" });
      assert.equal((await a.waitEvent(of("ended"))).reason, "local_bye");
      assert.equal((await b.proc.waitEvent(of("ended"))).reason, "remote_bye");
      assert.equal(await a.exited, 0);
      assert.equal(await b.proc.exited, 0);
      // The callee's trace: three UPDATEs with SDP came, and one INVITE only (counted by CSeq:
      // a UDP retransmission on a loaded machine prints the same request twice).
      const trace = b.proc.logs();
      const seqs = (method: string) =>
        new Set(
          [...trace.matchAll(
            new RegExp(`^${method} sip:\\S+ SIP/2\\.0$[^]*?^CSeq: (\\d+) ${method}$`, "gm"),
          )]
            .map((m) => m[1]),
        ).size;
      assert.equal(seqs("UPDATE"), 3, "three UPDATEs");
      assert.equal(seqs("INVITE"), 1, "no re-INVITE");
      assert.ok(!a.events.some((e) => e.type === "error"));
    });
  },
});
