// Self-tests of the call parts of the test harness: baresip as a headless
// call peer (aufile plays a WAV, sndfile records), checked against another
// baresip over loopback with sox's own analysis, so that the sipkit call
// tests built on the harness can trust it.

import assert from "node:assert/strict";
import { requirePeer, waitFor } from "./peers/require.ts";
import { startKamailio } from "./peers/kamailio.ts";
import { runSipp, type SippProcess, startSipp } from "./peers/sipp.ts";
import { type HasLogs, withLogsOnFailure } from "./peers/process.ts";
import { type Baresip, parseEncoders, startBaresip, wavFormat } from "./peers/baresip.ts";
import { analysePacing, parseRtpHeader, type RtpArrival } from "../bench/_rtp_sink.ts";
import { makeToneWav, parseWav, privateAlsa, readWav, rms, soxStat } from "./_audio.ts";
import { toTagOf } from "./_call_util.ts";

const hasBaresip = requirePeer("baresip", "baresip");
const hasSox = requirePeer("sox", "sox");
const hasSipp = requirePeer("sipp", "sip-tester");
const hasKamailio = requirePeer("kamailio", "kamailio");

Deno.test("wavFormat() and parseWav() read a sox-made WAV; parseEncoders() reads baresip's log", async () => {
  if (!hasSox) return;
  const dir = await Deno.makeTempDir({ prefix: "sipkit-audio-" });
  try {
    await makeToneWav(`${dir}/t.wav`, 1000, { seconds: 0.5, rate: 16000, channels: 2 });
    const bytes = await Deno.readFile(`${dir}/t.wav`);
    assert.deepEqual(wavFormat(bytes.subarray(0, 4096)), { rate: 16000, channels: 2 });
    const wav = parseWav(bytes);
    assert.equal(wav.sampleRate, 16000);
    assert.equal(wav.channels, 2);
    assert.equal(wav.samples.length, 8000);
    // A sine of amplitude 0.5 has an RMS of 0.5 / sqrt(2).
    assert.ok(Math.abs(rms(wav.samples) - 0.3536) < 0.01, String(rms(wav.samples)));
    assert.throws(() => parseWav(new TextEncoder().encode("RIFF....WAVEjunk")), SyntaxError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(
    parseEncoders(
      "audio: Set audio encoder: PCMU 8000Hz 1ch\n\x1b[31mx\x1b[;m" +
        "audio: Set audio encoder: PCMA 8000Hz 1ch\n",
    ),
    ["PCMU", "PCMA"],
  );
});

Deno.test({
  name: "baresip calls baresip over loopback: aufile tones both ways, recorded by sndfile",
  ignore: !hasBaresip || !hasSox,
  fn: async () => {
    const peers: HasLogs[] = [];
    const dir = await Deno.makeTempDir({ prefix: "sipkit-callpeers-" });
    try {
      await makeToneWav(`${dir}/440.wav`, 440);
      await makeToneWav(`${dir}/1000.wav`, 1000);
      await withLogsOnFailure(peers, async () => {
        const a = await startBaresip({
          user: "alice",
          audioSource: `aufile,${dir}/440.wav`,
          audioCodecs: ["PCMA", "PCMU"],
          record: true,
        });
        peers.push(a);
        const b = await startBaresip({
          user: "bob",
          audioSource: `aufile,${dir}/1000.wav`,
          audioCodecs: ["PCMU", "PCMA"],
          record: true,
        });
        peers.push(b);
        try {
          assert.equal((await a.dial(b.contact)).ok, true);
          await b.waitEvent((e) => e.type === "CALL_INCOMING");
          await b.accept();
          await a.waitEvent((e) => e.type === "CALL_ESTABLISHED");
          await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
          await new Promise((resolve) => setTimeout(resolve, 1500));
          // The answerer's encoder follows the offer's first codec: PCMA.
          assert.deepEqual(a.encoders(), ["PCMA"]);
          assert.deepEqual(b.encoders(), ["PCMA"]);
          await b.hangup();
          await a.waitEvent((e) => e.type === "CALL_CLOSED");
          await b.waitEvent((e) => e.type === "CALL_CLOSED");
          for (const [who, hz] of [[a, 1000], [b, 440]] as const) {
            const [rec] = await who.recordings();
            assert.ok(rec?.dec, `${who.name} recorded nothing`);
            const wav = await readWav(rec.dec);
            assert.equal(wav.sampleRate, 8000);
            assert.ok(wav.samples.length > 8000, `${wav.samples.length} samples`);
            const stat = await soxStat(rec.dec);
            assert.ok(Math.abs(stat.roughFrequency - hz) < hz * 0.05, JSON.stringify(stat));
            assert.ok(stat.rmsAmplitude > 0.2, JSON.stringify(stat));
          }
        } finally {
          await a.stop();
          await b.stop();
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "privateAlsa(): sox plays to and captures from the file PCM, and uses the null PCM",
  ignore: !hasSox || !requirePeer("aplay", "alsa-utils"),
  fn: async () => {
    const alsa = await privateAlsa(700, { captureSeconds: 5 });
    const dir = await Deno.makeTempDir({ prefix: "sipkit-alsa-test-" });
    try {
      const sox = (args: string[]) =>
        new Deno.Command("sox", { args, env: alsa.env, stdout: "null", stderr: "piped" })
          .output();
      const pcm = ["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"];
      let out = await sox([
        "-q",
        ...pcm,
        "-t",
        "alsa",
        alsa.fileDevice,
        `${dir}/cap.wav`,
        "trim",
        "0",
        "2",
      ]);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      let stat = await soxStat(`${dir}/cap.wav`);
      assert.ok(Math.abs(stat.roughFrequency - 700) < 35, JSON.stringify(stat));
      await makeToneWav(`${dir}/440.wav`, 440, { seconds: 2 });
      out = await sox(["-q", `${dir}/440.wav`, ...pcm, "-t", "alsa", alsa.fileDevice]);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      stat = await soxStat(alsa.played);
      assert.ok(Math.abs(stat.roughFrequency - 440) < 22, JSON.stringify(stat));
      out = await sox(["-q", `${dir}/440.wav`, ...pcm, "-t", "alsa", alsa.nullDevice]);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      out = await sox([
        "-q",
        ...pcm,
        "-t",
        "alsa",
        alsa.nullDevice,
        `${dir}/null.wav`,
        "trim",
        "0",
        "1",
      ]);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
    } finally {
      await Deno.remove(dir, { recursive: true });
      await alsa.cleanup();
    }
  },
});

Deno.test({
  name: "sipp call scenarios play their part against baresip and against each other",
  ignore: !hasBaresip || !hasSipp,
  fn: async () => {
    const peers: HasLogs[] = [];
    const withBaresip = async (
      fn: (b: Awaited<ReturnType<typeof startBaresip>>) => Promise<void>,
    ) => {
      const b = await startBaresip({ user: "alice", autoAnswer: false });
      peers.push(b);
      try {
        await fn(b);
      } finally {
        await b.stop();
      }
    };
    // baresip calls a sipp UAS; `act` drives baresip during the call.
    const uasCase = (
      scenario: string,
      act: (b: Baresip, uas: SippProcess) => Promise<void>,
      extraArgs: string[] = [],
    ) =>
      withBaresip(async (b) => {
        const uas = await startSipp({ scenario, calls: 1, timeout: 20, extraArgs });
        peers.push(uas);
        try {
          await b.dial(`sip:bob@${uas.address}`);
          await act(b, uas);
          const result = await uas.done;
          assert.equal(result.code, 0, `${scenario}: ${result.errors}`);
          assert.equal(result.successful, 1, scenario);
        } finally {
          await uas.stop();
        }
      });
    const closed = (b: Baresip) =>
      b.waitEvent((e) => e.type === "CALL_CLOSED", { timeout: 10_000, message: "CALL_CLOSED" });
    await withLogsOnFailure(peers, async () => {
      await Promise.all([
        uasCase("call_uas_busy.xml", async (b) => {
          const end = await closed(b);
          assert.match(String(end.param), /486/);
        }),
        uasCase("call_uas_noanswer.xml", async (b) => {
          await b.waitEvent((e) => e.type === "CALL_RINGING");
          await b.hangup(); // baresip CANCELs
          await closed(b);
        }),
        uasCase("call_uas_200_retrans.xml", async (b) => {
          await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
          // Three copies of the 200, 300 ms apart, each ACKed.
          await new Promise((resolve) => setTimeout(resolve, 1200));
          await b.hangup();
          await closed(b);
          const acks = b.trace().filter((m) => m.method === "ACK");
          assert.equal(acks.length, 3, "ACKs sent by baresip");
        }, ["-nr"]),
        uasCase("call_uas_reinvite.xml", async (b) => {
          await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
          await closed(b); // sipp holds, resumes, then BYEs
          const reinvites = b.trace().filter((m) =>
            m.method === "INVITE" && m.destination === b.address && m.body.includes("a=sendonly")
          );
          assert.equal(reinvites.length, 1, "hold re-INVITE received");
        }),
        uasCase("call_uas_bye.xml", async (b) => {
          await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
          const end = await closed(b);
          assert.ok(end.param !== undefined);
        }, ["-d", "500"]),
        withBaresip(async (b) => {
          const uac = await runSipp({
            scenario: "call_uac_cancel.xml",
            remote: b.address,
            service: "alice",
            calls: 1,
            keys: { user: "carol" },
            timeout: 10,
            traceMessages: true,
            extraArgs: ["-d", "300"],
          });
          assert.equal(uac.code, 0, uac.errors);
          const ringing = toTagOf(uac.messages, /^SIP\/2\.0 180/);
          assert.ok(ringing);
          assert.equal(toTagOf(uac.messages, /^SIP\/2\.0 487/), ringing);
          await closed(b);
        }),
        (async () => {
          const uas = await startSipp({ scenario: "call_uas_100rel.xml", calls: 1, timeout: 20 });
          peers.push(uas);
          try {
            const uac = await runSipp({
              scenario: "call_uac_100rel.xml",
              remote: uas.address,
              service: "bob",
              calls: 1,
              keys: { user: "alice" },
              timeout: 15,
              extraArgs: ["-d", "300"],
            });
            assert.equal(uac.code, 0, uac.errors);
            const result = await uas.done;
            assert.equal(result.successful, 1, result.errors);
          } finally {
            await uas.stop();
          }
        })(),
      ]);
    });
  },
});

Deno.test({
  name: "baresip calls baresip through Kamailio: hold re-INVITE and BYE follow the Record-Route",
  ignore: !hasBaresip || !hasKamailio,
  fn: async () => {
    const peers: HasLogs[] = [];
    const k = await startKamailio({ mode: "proxy" });
    peers.push(k);
    await withLogsOnFailure(peers, async () => {
      const a = await startBaresip({ user: "alice", proxy: k.address });
      peers.push(a);
      const b = await startBaresip({ user: "bob", proxy: k.address, autoAnswer: true });
      peers.push(b);
      try {
        await a.dial("sip:bob@example.test");
        const up = await a.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        await b.waitEvent((e) => e.type === "CALL_ESTABLISHED");
        await a.hold();
        await waitFor(() => /in-dialog INVITE \S+ cseq \d+ relayed by loose_route/.test(k.logs()), {
          message: "the hold re-INVITE at Kamailio",
        });
        await b.hangup();
        await a.waitEvent((e) => e.type === "CALL_CLOSED");
        await waitFor(() => /in-dialog BYE \S+ cseq \d+ relayed by loose_route/.test(k.logs()), {
          message: "the BYE at Kamailio",
        });
        assert.ok(up.id);
      } finally {
        await a.stop();
        await b.stop();
        await k.stop();
      }
    });
  },
});

Deno.test("bench RTP sink: parseRtpHeader() and analysePacing() measure deviations, loss and drift", () => {
  const packet = new Uint8Array(12 + 160);
  packet[0] = 0x80;
  packet[1] = 8;
  new DataView(packet.buffer).setUint16(2, 513);
  new DataView(packet.buffer).setUint32(4, 160_000);
  new DataView(packet.buffer).setUint32(8, 0xdeadbeef);
  assert.deepEqual(parseRtpHeader(packet), {
    payloadType: 8,
    seq: 513,
    timestamp: 160_000,
    ssrc: 0xdeadbeef,
    payloadLength: 160,
  });
  packet[1] = 200 & 0x7f | 0x80; // an RTCP SR under rtcp-mux
  assert.equal(parseRtpHeader(packet), undefined);
  // 20 ms packets, every 10th one 5 ms late (the next one early), seq 60 lost,
  // and the sender 1 ms slow per second against its 8 kHz clock.
  const arrivals: RtpArrival[] = [];
  for (let k = 0; k < 200; k++) {
    if (k === 60) continue;
    const at = 1000 + k * 20 * 1.001 + (k % 10 === 5 ? 5 : 0);
    arrivals.push({
      at,
      ssrc: 1,
      seq: (65530 + k) % 65536,
      timestamp: k * 160,
      payloadType: 0,
      payloadLength: 160,
      source: "127.0.0.1:4000",
    });
  }
  arrivals.push({ ...arrivals[0], ssrc: 2 }); // another, shorter stream is ignored
  const r = analysePacing(arrivals, { warmupMs: 0 });
  assert.equal(r.packets, 199);
  assert.equal(r.lost, 1);
  assert.ok(r.p50 < 0.05, String(r.p50));
  assert.ok(Math.abs(r.max - 5.02) < 0.05, String(r.max));
  assert.ok(Math.abs(r.drift - 3.98) < 0.05, String(r.drift));
  assert.deepEqual(r.payloadTypes, [0]);
});
