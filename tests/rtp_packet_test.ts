import assert from "node:assert/strict";
import { decodeRtp, encodeRtp, looksLikeRtcp } from "../lib/rtp/packet.ts";
import {
  decodeRtcp,
  encodeRtcp,
  ntpFromUnixMs,
  ntpMiddle,
  ReceptionStats,
  roundTripMs,
} from "../lib/rtp/rtcp.ts";

Deno.test("encodeRtp() writes the RFC 3550 fixed header byte by byte", () => {
  const bytes = encodeRtp({
    marker: true,
    payloadType: 8,
    sequenceNumber: 0xabcd,
    timestamp: 0x01020304,
    ssrc: 0xdeadbeef,
    payload: new Uint8Array([0xd5, 0xd5]),
  });
  assert.deepEqual([...bytes], [
    0x80, // V=2 P=0 X=0 CC=0
    0x88, // M=1 PT=8
    0xab,
    0xcd,
    0x01,
    0x02,
    0x03,
    0x04,
    0xde,
    0xad,
    0xbe,
    0xef,
    0xd5,
    0xd5,
  ]);
});

Deno.test("decodeRtp() reads CSRC, extension and padding, and refuses broken packets", () => {
  const bytes = encodeRtp({
    marker: false,
    payloadType: 0,
    sequenceNumber: 65535,
    timestamp: 0xffffffff,
    ssrc: 1,
    csrc: [2, 3],
    extension: { profile: 0xbede, data: new Uint8Array([1, 2, 3, 4]) },
    payload: new Uint8Array([9, 9, 9]),
  });
  assert.equal(bytes[0], 0x92);
  const padded = new Uint8Array([...bytes, 0, 0, 3]);
  padded[0] |= 0x20;
  const p = decodeRtp(padded);
  assert.equal(p.sequenceNumber, 65535);
  assert.equal(p.timestamp, 0xffffffff);
  assert.deepEqual(p.csrc, [2, 3]);
  assert.equal(p.extension?.profile, 0xbede);
  assert.deepEqual([...p.extension!.data], [1, 2, 3, 4]);
  assert.deepEqual([...p.payload], [9, 9, 9]);
  assert.throws(() => decodeRtp(new Uint8Array(11)), SyntaxError);
  assert.throws(
    () => decodeRtp(new Uint8Array([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    /version/,
  );
  assert.throws(() => decodeRtp(new Uint8Array([0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), /CSRC/);
  const badPad = encodeRtp({
    marker: false,
    payloadType: 0,
    sequenceNumber: 0,
    timestamp: 0,
    ssrc: 0,
    payload: new Uint8Array([40]),
  });
  badPad[0] |= 0x20;
  assert.throws(() => decodeRtp(badPad), /padding/);
  assert.equal(looksLikeRtcp(bytes), false);
});

Deno.test("encodeRtcp() writes SR with a report block, SDES CNAME and BYE byte by byte", () => {
  const bytes = encodeRtcp([
    {
      type: "sr",
      ssrc: 0x11111111,
      sender: {
        ntpSeconds: 0xe0000000,
        ntpFraction: 0x80000000,
        rtpTimestamp: 160,
        packetCount: 2,
        octetCount: 320,
      },
      reports: [{
        ssrc: 0x22222222,
        fractionLost: 64,
        cumulativeLost: -1,
        highestSequence: 0x00010005,
        jitter: 12,
        lastSr: 0xb7052000,
        delaySinceLastSr: 0x00054000,
      }],
    },
    { type: "sdes", chunks: [{ ssrc: 0x11111111, cname: "ab" }] },
    { type: "bye", ssrcs: [0x11111111], reason: "bye" },
  ]);
  assert.deepEqual([...bytes], [
    // SR: V=2 RC=1, PT=200, length 12 words
    0x81,
    200,
    0,
    12,
    0x11,
    0x11,
    0x11,
    0x11,
    0xe0,
    0,
    0,
    0,
    0x80,
    0,
    0,
    0, // NTP
    0,
    0,
    0,
    160, // RTP timestamp
    0,
    0,
    0,
    2, // packets
    0,
    0,
    1,
    0x40, // octets
    0x22,
    0x22,
    0x22,
    0x22,
    64,
    0xff,
    0xff,
    0xff, // fraction 64/256, cumulative -1 (24-bit two's complement)
    0,
    1,
    0,
    5,
    0,
    0,
    0,
    12,
    0xb7,
    0x05,
    0x20,
    0x00,
    0x00,
    0x05,
    0x40,
    0x00,
    // SDES: SC=1, PT=202, length 3 words; CNAME item (1, len 2, "ab"), end octet, pad
    0x81,
    202,
    0,
    3,
    0x11,
    0x11,
    0x11,
    0x11,
    1,
    2,
    0x61,
    0x62,
    0,
    0,
    0,
    0,
    // BYE: SC=1, PT=203, length 2 words, reason "bye"
    0x81,
    203,
    0,
    2,
    0x11,
    0x11,
    0x11,
    0x11,
    3,
    0x62,
    0x79,
    0x65,
  ]);
  const decoded = decodeRtcp(bytes);
  assert.equal(decoded.length, 3);
  assert.equal(decoded[0].type, "sr");
  if (decoded[0].type === "sr") {
    assert.equal(decoded[0].reports[0].cumulativeLost, -1);
    assert.equal(decoded[0].reports[0].fractionLost, 64);
    assert.equal(decoded[0].sender.octetCount, 320);
  }
  assert.deepEqual(decoded[1], { type: "sdes", chunks: [{ ssrc: 0x11111111, cname: "ab" }] });
  assert.deepEqual(decoded[2], { type: "bye", ssrcs: [0x11111111], reason: "bye" });
  assert.equal(looksLikeRtcp(bytes), true);
});

Deno.test("decodeRtcp() reads RR, skips unknown types, refuses wrong lengths", () => {
  const rr = encodeRtcp([{ type: "rr", ssrc: 5, reports: [] }]);
  assert.deepEqual([...rr], [0x80, 201, 0, 1, 0, 0, 0, 5]);
  const app = new Uint8Array([0x80, 204, 0, 2, 0, 0, 0, 5, 0x61, 0x62, 0x63, 0x64]);
  assert.deepEqual(decodeRtcp(new Uint8Array([...rr, ...app])), [
    { type: "rr", ssrc: 5, reports: [] },
    { type: "other", packetType: 204 },
  ]);
  assert.throws(() => decodeRtcp(new Uint8Array([0x80, 201, 0, 5, 0, 0, 0, 5])), /length/);
  assert.throws(() => decodeRtcp(new Uint8Array([0x81, 201, 0, 1, 0, 0, 0, 5])), /shorter/);
  assert.throws(() => decodeRtcp(new Uint8Array([0x00, 201, 0, 1])), /version/);
});

Deno.test("NTP time and the RTT of RFC 3550 section 6.4.1", () => {
  const ntp = ntpFromUnixMs(Date.UTC(2026, 0, 1) + 250);
  assert.equal(ntp.fraction, 0x40000000);
  assert.equal(ntp.seconds, Date.UTC(2026, 0, 1) / 1000 + 2208988800);
  assert.equal(ntpMiddle(0x0000b710, 0x80000000), 0xb7108000);
  assert.equal(roundTripMs(0xb7108000, 0xb7052000, 0x00054000), 6125);
  assert.equal(roundTripMs(0xb7108000, 0, 0), undefined);
});

Deno.test("ReceptionStats counts loss, wrap-around, duplicates and jitter (RFC 3550 A.3, A.8)", () => {
  const s = new ReceptionStats(8000);
  // 65530..65535, 0..9 with 3 lost (65533, 2, 3), one duplicate (5).
  const seqs = [65530, 65531, 65532, 65534, 65535, 0, 1, 4, 5, 5, 6, 7, 8, 9];
  let t = 0;
  for (const seq of seqs) {
    const n = (seq - 65530 + 65536) % 65536;
    s.update(seq, n * 160, t);
    t += 20;
  }
  assert.equal(s.expected, 16);
  assert.equal(s.received, 14);
  assert.equal(s.lost, 2, "3 lost, but the duplicate counts as received");
  assert.equal(s.extendedMax, 65536 + 9);
  const block = s.reportBlock(7);
  assert.equal(block.highestSequence, 65545);
  assert.equal(block.cumulativeLost, 2);
  assert.equal(block.fractionLost, Math.floor(2 * 256 / 16));
  assert.equal(s.reportBlock(7).fractionLost, 0, "nothing new in the next interval");

  // Jitter: packets 20 ms apart in timestamps, arriving alternately 0 and 10 ms late.
  const j = new ReceptionStats(8000);
  for (let i = 0; i < 400; i++) j.update(i, i * 160, i * 20 + (i % 2) * 10);
  assert.ok(Math.abs(j.jitterMs - 10) < 0.5, `${j.jitterMs}`);
  assert.equal(j.reportBlock(1).jitter, Math.floor(j.jitter));
});
