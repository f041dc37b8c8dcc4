/**
 * One call's media: SDP offer/answer state, RTP and RTCP sockets, a paced
 * sender, a jitter buffer feeding a sink, DTMF and statistics. It implements
 * the `OfferAnswerHandler` shape an INVITE session asks for (createOffer,
 * createAnswer, applyAnswer, rollback) without importing anything of SIP.
 *
 * Timing: the sender ticks every ptime on its own monotonic clock
 * ({@linkcode Pacer}), so it neither drifts nor depends on how fast a source
 * delivers (a file or an ALSA null device is read as fast as asked); RTP
 * timestamps are locked to that clock at 8 kHz. Playout ticks every 20 ms on
 * the same clock and pulls from the {@linkcode JitterBuffer}.
 *
 * ptime: we offer our preference ({@linkcode MediaSession.setPtime} changes it
 * for the next offer) and send with the one the peer asks for in its SDP
 * (a=ptime, at most its a=maxptime). When a new offer/answer changes it, the
 * sender goes on at the new interval from where the last packet ends: the
 * RTP timestamp advances by the old packet's samples once, then by the new
 * packet's, with no gap, overlap or drift.
 *
 * Symmetric RTP (RFC 4961): RTP is sent from the socket it is received on,
 * and the destination follows the address the peer's packets really come
 * from (a NAT), which is reported as `remote_address_changed`.
 *
 * Events (`addEventListener`, `CustomEvent.detail`):
 * - `negotiated`: {@linkcode NegotiatedMedia} after each offer/answer;
 * - `codec_changed`: `{ codec, payload_type, previous }`;
 * - `ptime_changed`: `{ ptime, previous }` when the sending interval changes;
 * - `remote_address_changed`: `{ hostname, port, previous }`;
 * - `dtmf`: `{ digit, duration_ms }` once per RFC 4733 event;
 * - `rtcp`: `{ packets }` for each compound RTCP packet received;
 * - `stats`: {@linkcode MediaStats} each time an RTCP report is sent;
 * - `bye`: `{ reason? }` when the peer sends RTCP BYE;
 * - `source_ended`: the audio source has no more audio (silence follows).
 *
 * @module
 */

import { type AudioSink, type AudioSource, NullSink, SilenceSource } from "./audio.ts";
import { type MediaClock, monotonicClock, Pacer } from "./clock.ts";
import { type AudioCodec, codecByName, type CodecName, CODECS } from "./codec.ts";
import { type DtmfPacketPlan, dtmfPackets, DtmfReceiver, isDtmfDigits } from "./dtmf.ts";
import { estimateMos } from "./emodel.ts";
import { JitterBuffer, type JitterBufferOptions } from "./jitter_buffer.ts";
import { decodeRtp, encodeRtp, looksLikeRtcp } from "./packet.ts";
import {
  decodeRtcp,
  encodeRtcp,
  ntpFromUnixMs,
  ntpMiddle,
  ReceptionStats,
  type ReportBlock,
  roundTripMs,
  type RtcpPacket,
} from "./rtcp.ts";
import {
  type Direction,
  type LocalMedia,
  type MediaAddress,
  type NegotiatedMedia,
  OfferAnswer,
  receives,
  sends,
} from "./sdp.ts";
import { bindPair, type DatagramNetwork, type DatagramSocket, udpNetwork } from "./socket.ts";

/** Options of {@linkcode MediaSession.open}. */
export interface MediaSessionOptions {
  /** The local address to bind RTP and RTCP to. */
  hostname: string;
  /** The RTP port (even; RTCP on port + 1); 0 or absent: any free pair. */
  port?: number;
  /** The address written in SDP, when `hostname` is 0.0.0.0 or :: (default: `hostname`). */
  advertisedHostname?: string;
  /** Codecs in preference order (default PCMU, PCMA). */
  codecs?: CodecName[];
  /** Packet duration we offer and send with when the peer says nothing, ms (default 20). */
  ptime?: number;
  /** The longest packet we take, ms: offered and answered as a=maxptime (not written when absent). */
  maxPtime?: number;
  /** Offer and accept RFC 4733 telephone-event (default true). */
  telephoneEvent?: boolean;
  /** Clock for pacing, playout and RTCP (default: the monotonic clock). */
  clock?: MediaClock;
  /** Sockets (default: real UDP). */
  network?: DatagramNetwork;
  /** Wall-clock ms since 1970 for RTCP NTP timestamps (default: derived from `clock`). */
  wallClock?: () => number;
  /** Mean RTCP report interval, ms (default 5000; RFC 3550 6.2 minimum). */
  rtcpIntervalMs?: number;
  /** The SDES CNAME (default `sipkit@<advertised host>`). */
  cname?: string;
  /** Jitter buffer options. */
  jitterBuffer?: JitterBufferOptions;
}

/** Options of {@linkcode MediaSession.sendDtmf}. */
export interface SendDtmfOptions {
  /** Tone duration per digit, ms (default 100). */
  durationMs?: number;
  /** Pause between digits, ms (default 60). */
  gapMs?: number;
}

/** Media statistics, with NDJSON-ready snake_case names. */
export interface MediaStats {
  /** The codec sending now, if negotiated. */
  codec: string | null;
  /** RTP packets sent. */
  packets_sent: number;
  /** RTP payload octets sent. */
  octets_sent: number;
  /** RTP packets received. */
  packets_received: number;
  /** Packets lost (expected minus received, RFC 3550 A.3), never negative. */
  lost: number;
  /** `lost` over packets expected, 0 to 1. */
  loss_fraction: number;
  /** Interarrival jitter of what we receive, ms. */
  jitter_ms: number;
  /** Round-trip time from RTCP (LSR/DLSR), ms; null until measured. */
  rtt_ms: number | null;
  /** Packets that came too late to play. */
  late: number;
  /** Mean time from arrival to playout of received audio, ms. */
  playout_delay_ms: number;
  /** Loss the peer reports about our stream (cumulative), when it sent a report. */
  remote_lost: number | null;
  /** The peer's last reported fraction lost, 0 to 1. */
  remote_loss_fraction: number | null;
  /** Jitter the peer reports about our stream, ms. */
  remote_jitter_ms: number | null;
  /** Estimated MOS of what we hear (ITU-T G.107 E-model). */
  mos: number;
  /** The ptime we send with now, ms (null before negotiation). */
  ptime: number | null;
  /** Audio per packet in the peer's last audio packet, ms (null before one came). */
  received_ptime: number | null;
  /** The jitter buffer's target delay, ms (0: as little as the network allows). */
  jitter_buffer_ms: number;
}

interface QueuedDigit {
  digit: string;
  durationMs: number;
  gapMs: number;
  done?: () => void;
}

const PLAYOUT_MS = 20;

function randomU32(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

function sameAddress(a: MediaAddress | undefined, b: MediaAddress | undefined): boolean {
  return !!a && !!b && a.port === b.port && a.hostname === b.hostname;
}

function usableAddress(a: MediaAddress): boolean {
  return a.port > 0 && a.hostname !== "0.0.0.0" && a.hostname !== "::";
}

/**
 * The media of one call. Open with {@linkcode MediaSession.open}, hand it to
 * the INVITE session as its offer/answer handler, set a source and a sink.
 *
 * @example
 * ```ts
 * import { MediaSession, MemoryNetwork, BufferSink, ToneSource, dominantFrequency } from "../../mod.ts";
 * import { ManualClock } from "../sip/clock.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * const network = new MemoryNetwork();
 * const a = await MediaSession.open({ hostname: "10.0.0.1", clock, network });
 * const b = await MediaSession.open({ hostname: "10.0.0.2", clock, network });
 * await a.applyAnswer(await b.createAnswer(await a.createOffer()));
 * a.setSource(new ToneSource(1000));
 * const heard = new BufferSink();
 * b.setSink(heard);
 * for (let i = 0; i < 50; i++) { clock.advance(20); await network.settle(); }
 * assert.equal(dominantFrequency(heard.samples(4000)), 1000);
 * await a.close();
 * await b.close();
 * ```
 */
export class MediaSession extends EventTarget {
  #options: MediaSessionOptions;
  #clock: MediaClock;
  #network: DatagramNetwork;
  #wallClock: () => number;
  #rtp: DatagramSocket;
  #rtcp: DatagramSocket;
  #advertised: string;
  #codecs: CodecName[];
  #ptime: number;
  #held = false;
  #oa = new OfferAnswer();
  #negotiated: NegotiatedMedia | undefined;
  #closed = false;
  #lead: number;

  // sending
  readonly #ssrc = randomU32();
  #seq = randomU32() & 0xffff;
  readonly #tsBase = randomU32();
  readonly #epoch: number;
  #sender: Pacer | undefined;
  #senderPtime = 0;
  #sendTo: MediaAddress | undefined;
  #rtcpTo: MediaAddress | undefined;
  #marker = true;
  #packetsSent = 0;
  #octetsSent = 0;
  #sentSinceReport = false;
  #source: AudioSource = new SilenceSource();
  #sourceEnded = false;
  #dtmfQueue: QueuedDigit[] = [];
  #dtmf:
    | { plan: DtmfPacketPlan[]; timestamp: number; gapTicks: number; item: QueuedDigit }
    | undefined;

  // receiving
  #remoteSsrc: number | undefined;
  #reception = new ReceptionStats(8000);
  #jitter: JitterBuffer;
  #playout: Pacer;
  #sink: AudioSink = new NullSink();
  #dtmfReceiver: DtmfReceiver;
  #lastSr: { middle: number; at: number } | undefined;
  #rtt: number | undefined;
  #remoteReport: ReportBlock | undefined;
  #rtcpTimer: number | undefined;
  #receivedPtime: number | undefined;

  private constructor(
    options: MediaSessionOptions,
    sockets: { rtp: DatagramSocket; rtcp: DatagramSocket },
  ) {
    super();
    this.#options = options;
    this.#clock = options.clock ?? monotonicClock;
    this.#network = options.network ?? udpNetwork;
    const wallBase = Date.now() - this.#clock.now();
    this.#wallClock = options.wallClock ?? (() => wallBase + this.#clock.now());
    this.#rtp = sockets.rtp;
    this.#rtcp = sockets.rtcp;
    this.#advertised = options.advertisedHostname ?? options.hostname;
    this.#codecs = [...(options.codecs ?? ["PCMU", "PCMA"])];
    for (const c of this.#codecs) {
      if (!codecByName(c)) throw new TypeError(`Unknown codec ${c}`);
    }
    if (this.#codecs.length === 0) throw new TypeError("A media session needs at least one codec");
    this.#ptime = options.ptime ?? 20;
    this.#epoch = this.#clock.now();
    this.#jitter = new JitterBuffer(options.jitterBuffer);
    // On the real clock, run ticks up to 1 ms early rather than a timer late.
    this.#lead = options.clock ? 0 : 1;
    this.#playout = new Pacer(this.#clock, PLAYOUT_MS, () => this.#playTick(), {
      leadMs: this.#lead,
    });
    this.#dtmfReceiver = new DtmfReceiver((d) =>
      this.#emit("dtmf", { digit: d.digit, duration_ms: Math.round(d.durationMs) })
    );
    this.#listen();
  }

  /** Binds the RTP/RTCP sockets and returns an idle session (nothing sent before negotiation). */
  static async open(options: MediaSessionOptions): Promise<MediaSession> {
    const sockets = await bindPair(
      options.network ?? udpNetwork,
      options.hostname,
      options.port ?? 0,
    );
    return new MediaSession(options, sockets);
  }

  /** The bound RTP address (RTCP is on port + 1). */
  get localAddress(): MediaAddress {
    return { ...this.#rtp.localAddress };
  }

  /** The agreed media, once an offer/answer completed. */
  get negotiated(): NegotiatedMedia | undefined {
    return this.#negotiated;
  }

  /** Where RTP goes now (the SDP address, or the latched one). */
  get remoteAddress(): MediaAddress | undefined {
    return this.#sendTo ? { ...this.#sendTo } : undefined;
  }

  /** Our SSRC. */
  get ssrc(): number {
    return this.#ssrc;
  }

  /** True after {@linkcode MediaSession.hold} until {@linkcode MediaSession.resume}. */
  get held(): boolean {
    return this.#held;
  }

  /** The codec preference order used in the next offer. */
  get codecs(): readonly CodecName[] {
    return this.#codecs;
  }

  // --- offer/answer (the OfferAnswerHandler shape) ---

  /** A new local offer (initial INVITE, re-INVITE, UPDATE); o= version +1. */
  createOffer(): Promise<string> {
    try {
      this.#assertOpen();
      return Promise.resolve(this.#oa.createOffer(this.#localMedia()));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Answers a remote offer and starts media as agreed. Throws `SdpNegotiationError` (488). */
  createAnswer(offer: string): Promise<string> {
    try {
      this.#assertOpen();
      const { sdp, negotiated } = this.#oa.createAnswer(offer, this.#localMedia());
      this.#apply(negotiated);
      return Promise.resolve(sdp);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Applies the answer to our last offer. Throws `SdpNegotiationError` when unusable. */
  applyAnswer(answer: string): Promise<void> {
    try {
      this.#assertOpen();
      this.#apply(this.#oa.applyAnswer(answer));
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Our last offer failed: media stays as last agreed. */
  rollback(): void {
    this.#oa.rollback();
  }

  // --- controls ---

  /** Sets what we send (replacing and closing the previous source); null sends silence. */
  setSource(source: AudioSource | null): void {
    const old = this.#source;
    this.#source = source ?? new SilenceSource();
    this.#sourceEnded = false;
    if (old !== this.#source) old.close?.().catch(() => {});
  }

  /** Sets where received audio goes (replacing and closing the previous sink); null drops it. */
  setSink(sink: AudioSink | null): void {
    const old = this.#sink;
    this.#sink = sink ?? new NullSink();
    if (old !== this.#sink) old.close?.().catch(() => {});
  }

  /**
   * Sends `digits` as RFC 4733 events, one after the other; resolves when
   * the last end packet went out. Throws when the peer did not accept
   * telephone-event or the digits are not DTMF.
   */
  sendDtmf(digits: string, options: SendDtmfOptions = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The media session is closed"));
    if (!isDtmfDigits(digits)) {
      return Promise.reject(
        new RangeError(`Cannot send DTMF: ${JSON.stringify(digits)} has a non-DTMF character`),
      );
    }
    if (this.#negotiated?.telephoneEventPayloadType === undefined) {
      return Promise.reject(new Error("Cannot send DTMF: the peer did not accept telephone-event"));
    }
    return new Promise((resolve) => {
      const chars = [...digits.toUpperCase()];
      chars.forEach((digit, i) =>
        this.#dtmfQueue.push({
          digit,
          durationMs: options.durationMs ?? 100,
          gapMs: options.gapMs ?? 60,
          done: i === chars.length - 1 ? resolve : undefined,
        })
      );
    });
  }

  /** Puts the call on hold: the next offer says sendonly (RFC 6337); media follows its answer. */
  hold(): void {
    this.#held = true;
  }

  /** Takes the call off hold: the next offer says sendrecv. */
  resume(): void {
    this.#held = false;
  }

  /** The ptime of our next offer (what we would like to receive), ms. */
  get ptime(): number {
    return this.#ptime;
  }

  /**
   * Sets the ptime of our next offers, ms (10 to 100 in steps of 10; above
   * the `maxPtime` option it is capped). It takes effect with the next
   * offer/answer: the peer's answer says what we send with.
   */
  setPtime(ms: number): number {
    if (!Number.isFinite(ms) || ms < 10 || ms > 100) {
      throw new RangeError(`ptime must be 10 to 100 ms, not ${ms}`);
    }
    const max = this.#options.maxPtime ?? 100;
    this.#ptime = Math.min(max, Math.round(ms / 10) * 10);
    return this.#ptime;
  }

  /** Puts `codec` first in the next offer (a session modification asks for it). */
  preferCodec(codec: string): void {
    const c = codecByName(codec);
    if (!c) throw new RangeError(`Unknown codec ${codec}`);
    const name = c.name as CodecName;
    this.#codecs = [name, ...this.#codecs.filter((n) => n !== name)];
  }

  /**
   * Moves media to new sockets on `hostname` (mobility: a new local address).
   * RTP is sent from the new socket at once; the next offer carries it.
   */
  async rebind(
    hostname: string,
    options: { advertisedHostname?: string } = {},
  ): Promise<MediaAddress> {
    this.#assertOpen();
    const sockets = await bindPair(this.#network, hostname, 0);
    const old = { rtp: this.#rtp, rtcp: this.#rtcp };
    this.#rtp = sockets.rtp;
    this.#rtcp = sockets.rtcp;
    this.#advertised = options.advertisedHostname ?? hostname;
    this.#listen();
    old.rtp.close();
    old.rtcp.close();
    return this.localAddress;
  }

  /** Current statistics. */
  stats(): MediaStats {
    const r = this.#reception;
    const expected = r.expected;
    const lost = Math.max(0, r.lost);
    const late = this.#jitter.stats.late;
    const lossPercent = expected > 0 ? Math.min(100, (lost + late) * 100 / expected) : 0;
    const playout = this.#jitter.meanLatencyMs;
    const ptime = this.#negotiated?.ptime ?? this.#ptime;
    const mos = estimateMos({ lossPercent, delayMs: (this.#rtt ?? 0) / 2 + playout + ptime });
    const rr = this.#remoteReport;
    return {
      codec: this.#negotiated?.codec ?? null,
      packets_sent: this.#packetsSent,
      octets_sent: this.#octetsSent,
      packets_received: r.received,
      lost,
      loss_fraction: round(expected > 0 ? lost / expected : 0, 4),
      jitter_ms: round(r.jitterMs, 2),
      rtt_ms: this.#rtt === undefined ? null : round(this.#rtt, 1),
      late,
      playout_delay_ms: round(playout, 1),
      remote_lost: rr ? Math.max(0, rr.cumulativeLost) : null,
      remote_loss_fraction: rr ? round(rr.fractionLost / 256, 4) : null,
      remote_jitter_ms: rr ? round(rr.jitter / 8, 2) : null,
      mos: round(mos, 2),
      ptime: this.#negotiated?.ptime ?? null,
      received_ptime: this.#receivedPtime ?? null,
      jitter_buffer_ms: round(this.#jitter.targetDelayMs, 1),
    };
  }

  /** The jitter buffer (for its counters and delay). */
  get jitterBuffer(): JitterBuffer {
    return this.#jitter;
  }

  /** Sends RTCP BYE, stops, closes the sockets, the source and the sink. Idempotent. */
  async close(reason?: string): Promise<void> {
    if (this.#closed) return;
    this.#sender?.stop();
    this.#playout.stop();
    if (this.#rtcpTimer !== undefined) this.#clock.clearTimeout(this.#rtcpTimer);
    this.#dtmfReceiver.flush();
    if (this.#negotiated) this.#sendReport(reason ?? "");
    this.#closed = true;
    for (const item of this.#dtmfQueue) item.done?.();
    this.#dtmf?.item.done?.();
    this.#dtmfQueue = [];
    this.#rtp.close();
    this.#rtcp.close();
    await Promise.allSettled([this.#source.close?.(), this.#sink.close?.()]);
  }

  // --- internals ---

  #assertOpen(): void {
    if (this.#closed) throw new Error("The media session is closed");
  }

  #emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #localMedia(): LocalMedia {
    const direction: Direction = this.#held ? "sendonly" : "sendrecv";
    return {
      hostname: this.#advertised,
      port: this.#rtp.localAddress.port,
      codecs: this.#codecs,
      ptime: this.#ptime,
      maxptime: this.#options.maxPtime,
      telephoneEvent: this.#options.telephoneEvent ?? true,
      direction,
    };
  }

  #apply(n: NegotiatedMedia): void {
    const previous = this.#negotiated;
    this.#negotiated = n;
    if (previous && previous.codec !== n.codec) {
      this.#emit("codec_changed", {
        codec: n.codec,
        payload_type: n.payloadType,
        previous: previous.codec,
      });
    }
    if (!previous || !sameAddress(previous.remote, n.remote)) {
      this.#sendTo = { ...n.remote };
    }
    if (!previous || !sameAddress(previous.remoteRtcp, n.remoteRtcp)) {
      this.#rtcpTo = { ...n.remoteRtcp };
    }
    const sending = sends(n.direction) && usableAddress(n.remote);
    if (sending && (!this.#sender || this.#senderPtime !== n.ptime)) {
      const old = this.#sender;
      const previousPtime = this.#senderPtime;
      old?.stop();
      this.#senderPtime = n.ptime;
      this.#sender = new Pacer(this.#clock, n.ptime, (i) => this.#sendTick(i), {
        leadMs: this.#lead,
      });
      if (old) {
        // A new interval: the next packet starts where the last one ends, so
        // timestamps and the schedule go on without a gap or an overlap.
        this.#sender.start(old.timeOf(old.index));
        this.#emit("ptime_changed", { ptime: n.ptime, previous: previousPtime });
      } else {
        this.#marker = true;
        this.#sender.start();
      }
    } else if (!sending && this.#sender) {
      this.#sender.stop();
      this.#sender = undefined;
    }
    if (this.#rtcpTimer === undefined) this.#scheduleRtcp(true);
    this.#emit("negotiated", n);
  }

  #listen(): void {
    const rtp = this.#rtp;
    const rtcp = this.#rtcp;
    rtp.onMessage((data, from) => {
      if (this.#closed || rtp !== this.#rtp) return;
      if (looksLikeRtcp(data)) this.#onRtcp(data, from, true);
      else this.#onRtp(data, from);
    });
    rtcp.onMessage((data, from) => {
      if (this.#closed || rtcp !== this.#rtcp) return;
      this.#onRtcp(data, from, false);
    });
  }

  #rtpTimestamp(clockMs: number): number {
    return (this.#tsBase + Math.round((clockMs - this.#epoch) * 8)) >>> 0;
  }

  #sendTick(index: number): void {
    const n = this.#negotiated;
    const sender = this.#sender;
    if (!n || !sender || !this.#sendTo) return;
    const samples = n.ptime * 8;
    const ts = this.#rtpTimestamp(sender.timeOf(index));
    // DTMF events replace audio while they last; the source is still read so
    // a live capture stays in step.
    if (!this.#dtmf && this.#dtmfQueue.length > 0 && n.telephoneEventPayloadType !== undefined) {
      const item = this.#dtmfQueue.shift()!;
      this.#dtmf = {
        plan: dtmfPackets(item.digit, item.durationMs, samples),
        timestamp: ts,
        gapTicks: Math.max(1, Math.round(item.gapMs / n.ptime)),
        item,
      };
    }
    const frame = this.#readSource(samples);
    const dtmf = this.#dtmf;
    if (dtmf && dtmf.plan.length > 0 && n.telephoneEventPayloadType !== undefined) {
      const p = dtmf.plan.shift()!;
      this.#sendRtp(n.telephoneEventPayloadType, p.marker, dtmf.timestamp, p.payload);
      if (dtmf.plan.length === 0 && this.#dtmfQueue.length === 0) {
        dtmf.item.done?.();
        dtmf.item.done = undefined;
      }
      return;
    }
    if (dtmf) {
      // The pause after a digit (audio flows).
      if (--dtmf.gapTicks <= 0) {
        dtmf.item.done?.();
        this.#dtmf = undefined;
      }
    }
    const codec = codecByName(n.codec) as AudioCodec;
    this.#sendRtp(n.payloadType, this.#marker, ts, codec.encode(frame));
    this.#marker = false;
  }

  #readSource(samples: number): Int16Array {
    let frame: Int16Array | null = null;
    try {
      frame = this.#source.read(samples);
    } catch (error) {
      console.error(`sipkit: audio source failed: ${(error as Error).message}`);
    }
    if (frame === null) {
      if (!this.#sourceEnded) {
        this.#sourceEnded = true;
        this.#emit("source_ended", {});
      }
      return new Int16Array(samples);
    }
    if (frame.length !== samples) {
      const fixed = new Int16Array(samples);
      fixed.set(frame.subarray(0, samples));
      return fixed;
    }
    return frame;
  }

  #sendRtp(payloadType: number, marker: boolean, timestamp: number, payload: Uint8Array): void {
    const bytes = encodeRtp({
      marker,
      payloadType,
      sequenceNumber: this.#seq,
      timestamp,
      ssrc: this.#ssrc,
      payload,
    });
    this.#seq = (this.#seq + 1) & 0xffff;
    this.#packetsSent++;
    this.#octetsSent += payload.length;
    this.#sentSinceReport = true;
    this.#rtp.send(bytes, this.#sendTo!);
  }

  #onRtp(data: Uint8Array, from: MediaAddress): void {
    const n = this.#negotiated;
    if (!n) return;
    let packet;
    try {
      packet = decodeRtp(data);
    } catch {
      return; // not RTP: ignored
    }
    const pt = packet.payloadType;
    const isDtmf = pt === n.receiveTelephoneEventPayloadType || pt === n.telephoneEventPayloadType;
    const codec = isDtmf ? undefined : this.#codecForPayloadType(n, pt);
    if (!isDtmf && !codec) return; // a payload type we never agreed to
    if (this.#remoteSsrc !== packet.ssrc) {
      if (this.#remoteSsrc !== undefined) {
        // A new source (the peer restarted its stream): start over.
        this.#jitter.reset();
        this.#reception = new ReceptionStats(8000);
        this.#lastSr = undefined;
      }
      this.#remoteSsrc = packet.ssrc;
    }
    // RFC 4961 symmetric RTP: answer to where the peer really sends from.
    if (!sameAddress(from, this.#sendTo)) {
      const previous = this.#sendTo;
      this.#sendTo = { ...from };
      this.#emit("remote_address_changed", {
        hostname: from.hostname,
        port: from.port,
        previous: previous ? { ...previous } : null,
      });
    }
    const now = this.#clock.now();
    this.#reception.update(packet.sequenceNumber, packet.timestamp, now);
    if (isDtmf) {
      this.#dtmfReceiver.receive(packet.timestamp, packet.payload);
      return;
    }
    if (!receives(n.direction)) return;
    // Playout ticks only once there is something to play.
    if (!this.#playout.running) this.#playout.start();
    const samples = codec!.decode(packet.payload);
    this.#receivedPtime = samples.length / 8;
    this.#jitter.push({
      timestamp: packet.timestamp,
      sequenceNumber: packet.sequenceNumber,
      samples,
    }, now);
  }

  #codecForPayloadType(n: NegotiatedMedia, pt: number): AudioCodec | undefined {
    const name = n.receivePayloadTypes[pt];
    if (name) return codecByName(name);
    // A static payload type of a codec we offered (a peer switching codec early).
    return Object.values(CODECS).find((c) =>
      c.payloadType === pt && pt < 96 && this.#codecs.includes(c.name as CodecName)
    );
  }

  #playTick(): void {
    const n = this.#negotiated;
    if (!n || !receives(n.direction)) return;
    const { samples, status } = this.#jitter.pop(PLAYOUT_MS * 8, this.#clock.now());
    if (status === "idle" && this.#reception.received === 0) return;
    try {
      this.#sink.write(samples);
    } catch (error) {
      console.error(`sipkit: audio sink failed: ${(error as Error).message}`);
    }
  }

  #onRtcp(data: Uint8Array, from: MediaAddress, muxed: boolean): void {
    let packets: RtcpPacket[];
    try {
      packets = decodeRtcp(data);
    } catch {
      return;
    }
    if (!muxed && !sameAddress(from, this.#rtcpTo)) {
      this.#rtcpTo = { ...from };
    }
    const now = this.#clock.now();
    for (const p of packets) {
      if (p.type === "sr" && (this.#remoteSsrc === undefined || p.ssrc === this.#remoteSsrc)) {
        this.#lastSr = { middle: ntpMiddle(p.sender.ntpSeconds, p.sender.ntpFraction), at: now };
      }
      if (p.type === "sr" || p.type === "rr") {
        for (const block of p.reports) {
          if (block.ssrc !== this.#ssrc) continue;
          this.#remoteReport = block;
          const ntp = ntpFromUnixMs(this.#wallClock());
          const rtt = roundTripMs(
            ntpMiddle(ntp.seconds, ntp.fraction),
            block.lastSr,
            block.delaySinceLastSr,
          );
          if (rtt !== undefined) this.#rtt = rtt;
        }
      }
      if (
        p.type === "bye" && (this.#remoteSsrc === undefined || p.ssrcs.includes(this.#remoteSsrc))
      ) {
        this.#emit("bye", { reason: p.reason ?? null });
      }
    }
    this.#emit("rtcp", { packets });
  }

  #scheduleRtcp(first: boolean): void {
    const base = this.#options.rtcpIntervalMs ?? 5000;
    // RFC 3550 6.3.5: randomized between 0.5 and 1.5 times the interval; the first one at half.
    const delay = first ? base / 2 : base * (0.5 + Math.random());
    this.#rtcpTimer = this.#clock.setTimeout(() => {
      if (this.#closed) return;
      this.#sendReport();
      this.#scheduleRtcp(false);
    }, delay);
  }

  #sendReport(byeReason?: string): void {
    const to = this.#rtcpTo;
    const now = this.#clock.now();
    const packets: RtcpPacket[] = [];
    const reports: ReportBlock[] = [];
    if (this.#remoteSsrc !== undefined && this.#reception.started) {
      const lsr = this.#lastSr?.middle ?? 0;
      const dlsr = this.#lastSr ? Math.round((now - this.#lastSr.at) / 1000 * 65536) : 0;
      reports.push(this.#reception.reportBlock(this.#remoteSsrc, lsr, dlsr));
    }
    if (this.#sentSinceReport) {
      const ntp = ntpFromUnixMs(this.#wallClock());
      packets.push({
        type: "sr",
        ssrc: this.#ssrc,
        sender: {
          ntpSeconds: ntp.seconds,
          ntpFraction: ntp.fraction,
          rtpTimestamp: this.#rtpTimestamp(now),
          packetCount: this.#packetsSent >>> 0,
          octetCount: this.#octetsSent >>> 0,
        },
        reports,
      });
    } else {
      packets.push({ type: "rr", ssrc: this.#ssrc, reports });
    }
    this.#sentSinceReport = this.#sender?.running ?? false;
    packets.push({
      type: "sdes",
      chunks: [{ ssrc: this.#ssrc, cname: this.#options.cname ?? `sipkit@${this.#advertised}` }],
    });
    if (byeReason !== undefined) {
      packets.push({ type: "bye", ssrcs: [this.#ssrc], reason: byeReason || undefined });
    }
    if (to && usableAddress(to)) this.#rtcp.send(encodeRtcp(packets), to);
    this.#emit("stats", this.stats());
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
