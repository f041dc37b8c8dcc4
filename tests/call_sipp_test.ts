/**
 * `sipkit call` against sipp scenarios (tests/sipp/call_*.xml): 486 Busy,
 * no answer then CANCEL, a 200 sent three times (every copy ACKed), a
 * reliable 183 (PRACK with the right RAck), hold and resume by re-INVITE
 * from the peer, BYE from the peer, 422 with a larger Min-SE to our re-INVITE
 * (retried with it); a call forked by Kamailio to two sipp forks that each
 * send a reliable 183 with early media (PRACK per dialog, media follows the
 * fork that answers, the other CANCELled by the proxy); and as the callee: a caller that
 * CANCELs (487 with the 180's To tag), a caller that requires 100rel.
 * sipp judges the SIP side (its scenario fails on anything unexpected or
 * missing); the test judges sipkit's events and exit codes.
 */

import assert from "node:assert/strict";
import { requirePeer } from "./peers/require.ts";
import { runSipp, type SippResult, startSipp } from "./peers/sipp.ts";
import { startKamailio } from "./peers/kamailio.ts";
import type { SipkitProcess } from "./_sipkit_process.ts";
import {
  of,
  runLimited,
  sippWithMediaSocket,
  startAnswerer,
  startCaller,
  toTagOf,
  withCallDirs,
  withCallProcs,
  withProcLogs,
} from "./_call_util.ts";

const hasSipp = requirePeer("sipp", "sip-tester");
const hasKamailio = requirePeer("kamailio", "kamailio");

function assertSippOk(r: SippResult, label: string): void {
  assert.equal(r.successful, 1, `${label}: sipp failed\n${r.errors}\n${r.output.slice(-3000)}`);
  assert.equal(r.failed, 0, `${label}: ${r.errors}`);
}

Deno.test({
  name:
    "sipkit call against sipp UAS scenarios: 486, CANCEL, ring timeout, 200 x3, 100rel, re-INVITE hold, INFO DTMF, 422 on re-INVITE, BYE",
  ignore: !hasSipp,
  fn: async () => {
    await withCallDirs(async (dirs) => {
      const procs: SipkitProcess[] = [];
      // sipkit calls one sipp UAS; `act` drives the call and checks its events.
      const uasCase = async (
        scenario: string,
        args: string[],
        act: (p: SipkitProcess) => Promise<void>,
        sippArgs: string[] = [],
      ) => {
        const uas = await startSipp({ scenario, calls: 1, timeout: 30, extraArgs: sippArgs });
        try {
          const p = startCaller(dirs, [`sip:bob@${uas.address}`, "--no-audio", ...args], scenario);
          procs.push(p);
          await act(p);
          assertSippOk(await uas.done, scenario);
        } finally {
          await uas.stop();
        }
      };
      await withProcLogs(() => procs, async () => {
        await runLimited([
          () =>
            uasCase("call_uas_busy.xml", [], async (p) => {
              const end = await p.waitEvent(of("ended"));
              assert.deepEqual([end.reason, end.status], ["rejected", 486]);
              assert.equal(await p.waitExit(), 1);
            }),
          () =>
            uasCase("call_uas_noanswer.xml", [], async (p) => {
              assert.equal((await p.waitEvent(of("ringing"))).status, 180);
              await p.send({ type: "hangup" }); // CANCEL
              assert.equal((await p.waitEvent(of("ended"))).reason, "cancelled");
              assert.equal(await p.waitExit(), 3);
            }),
          () =>
            uasCase("call_uas_noanswer.xml", ["--ring-timeout", "1"], async (p) => {
              await p.waitEvent(of("ringing"));
              assert.equal((await p.waitEvent(of("ended"))).reason, "no_answer"); // CANCEL sent
              assert.equal(await p.waitExit(), 3);
            }),
          () =>
            uasCase("call_uas_200_retrans.xml", ["--duration", "2"], async (p) => {
              await p.waitEvent(of("answered"));
              assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
              assert.equal(await p.waitExit(), 0);
            }, ["-nr"]),
          () =>
            uasCase("call_uas_100rel.xml", ["--duration", "1"], async (p) => {
              const ringing = await p.waitEvent(of("ringing"));
              assert.deepEqual([ringing.status, ringing.early_media], [183, true]);
              await p.waitEvent(of("answered"));
              assert.equal((await p.waitEvent(of("media"))).codec, "PCMU");
              assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
              assert.equal(await p.waitExit(), 0);
            }),
          () =>
            uasCase("call_uas_reinvite.xml", [], async (p) => {
              await p.waitEvent(of("answered"));
              assert.equal((await p.waitEvent(of("held"))).by, "remote");
              assert.equal((await p.waitEvent(of("resumed"))).by, "remote");
              assert.equal((await p.waitEvent(of("ended"))).reason, "remote_bye");
              assert.equal(await p.waitExit(), 0);
            }),
          () =>
            uasCase("call_uas_info.xml", [], async (p) => {
              const media = await p.waitEvent(of("media"));
              assert.equal(media.telephone_event, false);
              await p.send({ type: "dtmf", digits: "5" }); // no telephone-event: SIP INFO
              const got = await p.waitEvent(of("dtmf"));
              assert.deepEqual([got.digit, got.duration_ms, got.via], ["7", 160, "info"]);
              await p.send({ type: "hangup" });
              assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
              assert.equal(await p.waitExit(), 0);
            }),
          () =>
            uasCase("call_uas_422.xml", [], async (p) => {
              // The peer's 200 asks for session timers; our hold re-INVITE meets its 422.
              await p.waitEvent(of("answered"));
              await p.send({ type: "hold" });
              assert.equal((await p.waitEvent(of("held"))).by, "local");
              assert.equal((await p.waitEvent(of("ended"))).reason, "remote_bye");
              assert.equal(p.events.filter(of("error")).length, 0);
              assert.equal(await p.waitExit(), 0);
            }),
          () =>
            uasCase("call_uas_bye.xml", [], async (p) => {
              await p.waitEvent(of("answered"));
              assert.equal((await p.waitEvent(of("ended"))).reason, "remote_bye");
              assert.equal(await p.waitExit(), 0);
            }, ["-d", "1000"]),
        ], 3);
      });
    });
  },
});

Deno.test({
  name:
    "sipkit call --answer against sipp UAC scenarios: CANCEL (487 with the 180's tag), Require 100rel",
  ignore: !hasSipp,
  fn: async () => {
    await withCallProcs(async (dirs, procs) => {
      await Promise.all([
        (async () => {
          const b = await startAnswerer(dirs, ["--no-audio"], "cancelled answerer");
          procs.push(b.proc);
          const r = await runSipp({
            scenario: "call_uac_cancel.xml",
            remote: b.contact.replace(/^sip:[^@]*@/, ""),
            service: "bob",
            calls: 1,
            keys: { user: "alice" },
            timeout: 20,
            traceMessages: true,
            extraArgs: ["-d", "500"],
          });
          assertSippOk(r, "call_uac_cancel.xml");
          const ringing = toTagOf(r.messages, /^SIP\/2\.0 180/);
          assert.ok(ringing, "no To tag in the 180");
          assert.equal(toTagOf(r.messages, /^SIP\/2\.0 487/), ringing);
          await b.proc.waitEvent(of("incoming"));
          assert.equal((await b.proc.waitEvent(of("ended"))).reason, "cancelled");
          assert.equal(await b.proc.waitExit(), 3);
        })(),
        (async () => {
          const b = await startAnswerer(
            dirs,
            ["--no-audio", "--auto-answer", "0.5"],
            "100rel answerer",
          );
          procs.push(b.proc);
          const r = await runSipp({
            scenario: "call_uac_100rel.xml",
            remote: b.contact.replace(/^sip:[^@]*@/, ""),
            service: "bob",
            calls: 1,
            keys: { user: "alice" },
            timeout: 20,
            extraArgs: ["-d", "1000"],
          });
          assertSippOk(r, "call_uac_100rel.xml");
          await b.proc.waitEvent(of("answered"));
          assert.equal((await b.proc.waitEvent(of("ended"))).reason, "remote_bye");
          assert.equal(await b.proc.waitExit(), 0);
        })(),
      ]);
    });
  },
});

/** An RTCP RR (RFC 3550 6.4.2) about `ssrc` saying `fraction` (0-255/256) was lost, plus SDES CNAME. */
function lossReport(ssrc: number, fraction: number, highestSeq: number): Uint8Array {
  const cname = new TextEncoder().encode("test@127.0.0.1");
  const sdesLen = Math.ceil((4 + 2 + cname.length + 1) / 4) * 4; // chunk padded to 32 bits
  const out = new Uint8Array(32 + 4 + sdesLen);
  const v = new DataView(out.buffer);
  v.setUint8(0, 0x81); // V=2, RC=1
  v.setUint8(1, 201); // RR
  v.setUint16(2, 7);
  v.setUint32(4, 0x5eed1234); // our SSRC
  v.setUint32(8, ssrc);
  v.setUint32(12, (fraction << 24) | Math.round(highestSeq * fraction / 256));
  v.setUint32(16, highestSeq);
  // jitter, LSR, DLSR: 0
  v.setUint8(32, 0x81); // V=2, SC=1
  v.setUint8(33, 202); // SDES
  v.setUint16(34, sdesLen / 4);
  v.setUint32(36, 0x5eed1234);
  out[40] = 1; // CNAME
  out[41] = cname.length;
  out.set(cname, 42);
  return out;
}

/** One RTP packet as the test's socket got it. */
interface Got {
  at: number;
  pt: number;
  seq: number;
  ts: number;
  ssrc: number;
}

/**
 * Checks a run of packets of one payload type: consecutive sequence numbers,
 * a timestamp step of `ptime` * 8, and a mean arrival gap of `ptime` ms
 * (within 15 %: the timing is seen by a test process on a shared machine;
 * the pacing itself is checked exactly on the manual clock in
 * rtp_media_session_test.ts). Returns the mean gap.
 */
function assertPacing(run: Got[], ptime: number, label: string): number {
  assert.ok(run.length >= 15, `${label}: only ${run.length} packets`);
  for (let i = 1; i < run.length; i++) {
    assert.equal(run[i].seq, (run[i - 1].seq + 1) & 0xffff, `${label}: sequence at ${i}`);
    assert.equal((run[i].ts - run[i - 1].ts) >>> 0, ptime * 8, `${label}: timestamp step at ${i}`);
  }
  const mean = (run[run.length - 1].at - run[0].at) / (run.length - 1);
  assert.ok(Math.abs(mean - ptime) <= ptime * 0.15, `${label}: mean gap ${mean} ms`);
  return mean;
}

Deno.test({
  name:
    "sipkit call --adapt: RTCP reports of heavy loss re-INVITE with the next codec and ptime 40 (RTP 40 ms apart), calm ones back to 20",
  ignore: !hasSipp,
  fn: async () => {
    await withCallDirs(async (dirs) => {
      const procs: SipkitProcess[] = [];
      let reporting: ReturnType<typeof setInterval> | undefined;
      // Every RTP packet sipkit sends us, with when it came.
      const got: Got[] = [];
      const { uas, socket, close } = await sippWithMediaSocket("call_uas_adapt.xml", (p) => {
        const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
        if (p.length < 12 || (p[1] & 0x7f) >= 72 && (p[1] & 0x7f) <= 76) return; // RTCP
        got.push({
          at: performance.now(),
          pt: p[1] & 0x7f,
          seq: v.getUint16(2),
          ts: v.getUint32(4),
          ssrc: v.getUint32(8),
        });
      });
      try {
        await withProcLogs(() => procs, async () => {
          const p = startCaller(dirs, [
            `sip:bob@${uas.address}`,
            "--tone",
            "440",
            "--adapt",
            "--adapt-interval",
            "2",
            "--duration",
            "8",
          ]);
          procs.push(p);
          const media = await p.waitEvent(of("media"));
          assert.equal(media.ptime, 20);
          const rtcpPort = Number(/:(\d+)$/.exec(String(media.local_rtp))![1]) + 1;
          // sipkit's SSRC and sequence numbers, from the RTP it sends us.
          while (got.length === 0) await new Promise((r) => setTimeout(r, 20));
          const ssrc = got[0].ssrc;
          let fraction = 128; // 50 % lost
          let n = 0;
          reporting = setInterval(() => {
            n++;
            socket.send(lossReport(ssrc, fraction, got[0].seq + 25 * n), {
              transport: "udp",
              hostname: "127.0.0.1",
              port: rtcpPort,
            }).catch(() => {});
          }, 500);
          const adapted = await p.waitEvent(of("adapted"));
          fraction = 0; // the link calms down
          assert.equal(adapted.reason, "loss");
          assert.equal(adapted.loss_fraction, 0.5);
          assert.deepEqual(
            [adapted.requested, adapted.codec, adapted.previous_codec, adapted.accepted],
            ["PCMA", "PCMA", "PCMU", true],
          );
          assert.deepEqual(
            [adapted.requested_ptime, adapted.ptime, adapted.previous_ptime, adapted.renegotiated],
            [40, 40, 20, true],
          );
          const changed = await p.waitEvent(of("codec_changed"));
          assert.deepEqual([changed.codec, changed.by], ["PCMA", "adapt"]);
          const recovered = await p.waitEvent((e) =>
            e.type === "adapted" && e.reason === "recovered"
          );
          assert.equal(recovered.reason, "recovered");
          assert.equal(recovered.loss_fraction, 0);
          assert.deepEqual([recovered.requested_ptime, recovered.ptime, recovered.previous_ptime], [
            20,
            20,
            40,
          ]);
          assert.equal(recovered.requested, null, "the codec stays");
          assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
          assert.equal(await p.waitExit(), 0);
          assertSippOk(await uas.done, "call_uas_adapt.xml");
          // What came at the receiver: PCMU at 20 ms, PCMA at 40 ms, PCMA at 20 ms again.
          const pcmu = got.filter((g) => g.pt === 0);
          const pcma = got.filter((g) => g.pt === 8);
          // The PCMA run at 40 ms: while the steps stay 320; the packet after the last
          // 320 step is the first 20 ms one (the step counts the samples of the packet before).
          let i = 1;
          while (i < pcma.length && ((pcma[i].ts - pcma[i - 1].ts) >>> 0) === 320) i++;
          const at40 = pcma.slice(0, i - 1);
          const at20 = pcma.slice(i - 1);
          const gaps = [
            assertPacing(pcmu.slice(5), 20, "PCMU before"),
            assertPacing(at40, 40, "PCMA at 40 ms"),
            assertPacing(at20, 20, "PCMA at 20 ms again"),
          ].map((g) => g.toFixed(2));
          console.log(
            `--adapt pacing at the receiver: mean gaps ${gaps.join(" / ")} ms ` +
              `(${pcmu.length - 5} / ${at40.length} / ${at20.length} packets)`,
          );
          // The switches themselves: the timestamp goes on by the last packet's samples.
          const lastPcmu = pcmu[pcmu.length - 1];
          assert.equal(at40[0].seq, (lastPcmu.seq + 1) & 0xffff);
          assert.equal((at40[0].ts - lastPcmu.ts) >>> 0, 160, "20 ms, then 40 ms packets");
          assert.equal((at20[0].ts - at40[at40.length - 1].ts) >>> 0, 320, "40 ms, then 20 ms");
        });
      } finally {
        clearInterval(reporting);
        await close();
      }
    });
  },
});

/** The RTP packets arriving at a UDP socket on 127.0.0.1: their sequence numbers, in order. */
function rtpCounter() {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const seqs: number[] = [];
  const reading = (async () => {
    try {
      for await (const [data] of socket) {
        if (data.length >= 12 && data[0] >> 6 === 2) seqs.push((data[2] << 8) | data[3]);
      }
    } catch {
      // closed
    }
  })();
  return {
    port: (socket.addr as Deno.NetAddr).port,
    seqs,
    async close() {
      socket.close();
      await reading;
    },
  };
}

/** REGISTERs `contacts` for `aor` at a Kamailio without authentication (proxy mode), from a raw socket. */
async function registerContacts(proxyPort: number, aor: string, contacts: string[]): Promise<void> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const port = (socket.addr as Deno.NetAddr).port;
    const id = crypto.randomUUID();
    const text = [
      `REGISTER sip:${aor.split("@")[1]} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${id.slice(0, 8)};rport`,
      "Max-Forwards: 70",
      `From: <sip:${aor}>;tag=${id.slice(9, 13)}`,
      `To: <sip:${aor}>`,
      `Call-ID: ${id}`,
      "CSeq: 1 REGISTER",
      ...contacts.map((c) => `Contact: <${c}>`),
      "Expires: 300",
      "Content-Length: 0",
      "",
      "",
    ].join("\r\n");
    await socket.send(new TextEncoder().encode(text), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: proxyPort,
    });
    const timer = setTimeout(() => socket.close(), 10_000);
    try {
      for (;;) {
        const [data] = await socket.receive();
        const reply = new TextDecoder().decode(data);
        if (/^SIP\/2\.0 1\d\d/.test(reply)) continue;
        assert.match(reply, /^SIP\/2\.0 200 /, reply);
        for (const c of contacts) assert.ok(reply.includes(c), `${c} not bound:\n${reply}`);
        return;
      }
    } finally {
      clearTimeout(timer);
    }
  } finally {
    try {
      socket.close();
    } catch {
      // closed by the timer
    }
  }
}

Deno.test({
  name:
    "forked early media through Kamailio: two forks send reliable 183 with SDP, each PRACKed in its dialog; media follows the fork that answers, the other is CANCELled",
  ignore: !hasSipp || !hasKamailio,
  fn: async () => {
    await withCallDirs(async (dirs) => {
      const procs: SipkitProcess[] = [];
      const k = await startKamailio({ mode: "proxy" });
      const rtpA = rtpCounter();
      const rtpB = rtpCounter();
      const forkA = await startSipp({
        scenario: "call_uas_fork_lose.xml",
        calls: 1,
        timeout: 40,
        keys: { rtp_port: rtpA.port },
      });
      const forkB = await startSipp({
        scenario: "call_uas_fork_win.xml",
        calls: 1,
        timeout: 40,
        keys: { rtp_port: rtpB.port },
        traceMessages: true,
      });
      try {
        await withProcLogs(() => procs, async () => {
          // bob is registered at two contacts (same q): Kamailio forks in parallel.
          await registerContacts(k.port, `bob@${k.domain}`, [
            `sip:bob@${forkA.address}`,
            `sip:bob@${forkB.address}`,
          ]);
          const p = startCaller(dirs, [
            "-u",
            `alice@${k.domain}`,
            "--proxy",
            k.uri,
            `bob@${k.domain}`,
            "--tone",
            "440",
            "--duration",
            "2",
          ], "forked caller");
          procs.push(p);
          const first = await p.waitEvent(of("ringing"));
          assert.deepEqual([first.status, first.early_media], [183, true]);
          const answered = await p.waitEvent(of("answered"));
          const ringing = p.events.filter(of("ringing"));
          assert.deepEqual(
            ringing.map((e) => `${e.status} ${e.early_media}`),
            ["183 true", "183 true"],
            "one reliable 183 from each fork",
          );
          assert.ok(p.events.indexOf(ringing[1]) < p.events.indexOf(answered));
          const media = await p.waitEvent(of("media"));
          assert.equal(media.remote_rtp, `127.0.0.1:${rtpB.port}`, "media follows fork B");
          assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
          assert.equal(await p.waitExit(), 0);
          // sipp judges the SIP side: each PRACK with its fork's RAck, the CANCEL, ACK, BYE.
          assertSippOk(await forkA.done, "call_uas_fork_lose.xml");
          assertSippOk(await forkB.done, "call_uas_fork_win.xml");
          // Early media went to fork A (the first 183), then the stream moved to fork B: one
          // sender, so every packet A got comes before every packet B got (sequence numbers,
          // counted from A's first one; no timing involved).
          assert.ok(rtpA.seqs.length > 10, `fork A got ${rtpA.seqs.length} RTP packets`);
          assert.ok(rtpB.seqs.length > 40, `fork B got ${rtpB.seqs.length} RTP packets`);
          const base = rtpA.seqs[0];
          const rel = (seq: number) => (seq - base + 0x10000) % 0x10000;
          const lastA = Math.max(...rtpA.seqs.map(rel));
          const firstB = Math.min(...rtpB.seqs.map(rel));
          assert.ok(lastA < firstB, `fork A got up to ${lastA}, fork B from ${firstB}`);
          // The in-dialog requests went through the proxy (Record-Route).
          for (const method of ["PRACK", "ACK", "BYE"]) {
            assert.match(k.logs(), new RegExp(`in-dialog ${method} `), `${method} via Kamailio`);
          }
        });
      } catch (e) {
        console.error(`----- kamailio -----\n${k.logs().slice(-4000)}`);
        console.error(`----- fork B -----\n${(await forkB.stop()).messages.slice(-6000)}`);
        throw e;
      } finally {
        await forkA.stop();
        await forkB.stop();
        await rtpA.close();
        await rtpB.close();
        await k.stop();
      }
    });
  },
});

/** An RTP packet of PCMU silence. */
function rtpPacket(seq: number, ts: number, ssrc: number): Uint8Array {
  const out = new Uint8Array(12 + 160).fill(0xff, 12);
  const v = new DataView(out.buffer);
  v.setUint8(0, 0x80);
  v.setUint8(1, 0); // PCMU
  v.setUint16(2, seq & 0xffff);
  v.setUint32(4, ts >>> 0);
  v.setUint32(8, ssrc);
  return out;
}

Deno.test({
  name:
    "sipkit call --adapt: jittery RTP from the peer raises the jitter buffer's target, a steady stream lowers it again",
  ignore: !hasSipp,
  fn: async () => {
    await withCallDirs(async (dirs) => {
      const procs: SipkitProcess[] = [];
      const timers: ReturnType<typeof setInterval>[] = [];
      let ssrc: number | undefined;
      let firstSeq = 0;
      const { uas, socket, close } = await sippWithMediaSocket("call_uas_media.xml", (p) => {
        if (ssrc === undefined && p.length >= 12 && (p[1] & 0x7f) === 0) {
          const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
          firstSeq = v.getUint16(2);
          ssrc = v.getUint32(8);
        }
      });
      try {
        await withProcLogs(() => procs, async () => {
          const p = startCaller(dirs, [
            `sip:bob@${uas.address}`,
            "--no-audio",
            "--adapt",
            "--adapt-jitter",
            "20",
            "--adapt-interval",
            "1",
          ]);
          procs.push(p);
          const media = await p.waitEvent(of("media"));
          const port = Number(/:(\d+)$/.exec(String(media.local_rtp))![1]);
          const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
          while (ssrc === undefined) await new Promise((r) => setTimeout(r, 20));
          // The peer's reports about sipkit's stream: no loss, no jitter (the session is fine).
          let n = 0;
          timers.push(setInterval(() => {
            n++;
            socket.send(lossReport(ssrc!, 0, firstSeq + 25 * n), { ...to, port: port + 1 })
              .catch(() => {});
          }, 500));
          // The peer's RTP: bursts of 5 packets every 100 ms (timestamps 20 ms apart), an
          // interarrival jitter of about 30 ms.
          const mySsrc = 0x1234abcd;
          let seq = 1;
          let ts = 0;
          let steady = false;
          timers.push(setInterval(() => {
            if (steady) return;
            for (let i = 0; i < 5; i++) {
              socket.send(rtpPacket(seq++, ts, mySsrc), to).catch(() => {});
              ts += 160;
            }
          }, 100));
          const raised = await p.waitEvent((e) => e.type === "adapted", { timeout: 15_000 });
          assert.equal(raised.reason, "jitter");
          assert.ok(Number(raised.local_jitter_ms) > 20, `jitter ${raised.local_jitter_ms}`);
          assert.deepEqual(
            [raised.jitter_buffer_ms, raised.previous_jitter_buffer_ms, raised.renegotiated],
            [40, 0, false],
          );
          assert.deepEqual([raised.ptime, raised.previous_ptime], [20, 20], "no ptime change");
          // Now a steady stream: timestamps follow the sender's clock, so whatever this test's
          // timers do, the jitter sipkit measures falls.
          steady = true;
          const base = ts;
          const t0 = performance.now();
          timers.push(setInterval(() => {
            const now = base + Math.round((performance.now() - t0) * 8);
            socket.send(rtpPacket(seq++, now, mySsrc), to).catch(() => {});
          }, 20));
          const lowered = await p.waitEvent(
            (e) => e.type === "adapted" && e.reason === "recovered",
            { timeout: 15_000 },
          );
          assert.ok(Number(lowered.local_jitter_ms) <= 10, `jitter ${lowered.local_jitter_ms}`);
          assert.deepEqual([lowered.jitter_buffer_ms, lowered.previous_jitter_buffer_ms], [0, 40]);
          await p.send({ type: "hangup" });
          assert.equal((await p.waitEvent(of("ended"))).reason, "local_bye");
          assert.equal(await p.exited, 0);
          assertSippOk(await uas.done, "call_uas_media.xml");
          assert.ok(!p.events.some((e) => e.type === "codec_changed"), "no session change");
        });
      } finally {
        for (const t of timers) clearInterval(t);
        await close();
      }
    });
  },
});
