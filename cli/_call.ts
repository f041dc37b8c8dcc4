/**
 * What `sipkit call` does (its options are in `call.ts`): option checks,
 * audio set-up and the mapping of session and media events to NDJSON and of
 * stdin lines to session and media calls. The INVITE session is in
 * lib/sip/invite, the media in lib/rtp.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Uri } from "../lib/sip/message.ts";
import { formatUri } from "../lib/sip/uri.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { isUnspecified, routeLocalAddress } from "../lib/sip/_net.ts";
import {
  callsMover,
  type IncomingCall,
  InviteAcceptor,
  type InviteSession,
  placeCall,
  type SessionEnd,
} from "../lib/sip/invite/mod.ts";
import {
  type AdaptDecision,
  AdaptPolicy,
  type AudioSink,
  type AudioSource,
  codecByName,
  type CodecName,
  MediaSession,
  type MediaStats,
  type NegotiatedMedia,
  NullSink,
  SilenceSource,
  SoxSink,
  SoxSource,
  summarizeSdp,
  ToneSource,
  WavFileSink,
} from "../lib/rtp/mod.ts";
import { type CommandContext, emitListening, runCommand, uriOption } from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import type { InputEvent } from "./_io.ts";
import type { KeptRegistration } from "./_register.ts";
import { defaultToward, Follower } from "./_roam.ts";
import type { Mover } from "../lib/sip/move.ts";
import { createUserAgent } from "./_ua.ts";
import { type CallCommandOptions, floatArg } from "./call.ts";

/** The ptime rungs of --adapt, ms: a call starts on the first. */
const ADAPT_PTIMES = [20, 40, 60];

/** Runs `sipkit call` with the parsed command line, in the command frame; exits. */
export function runCallCommand(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
  target: string | undefined,
): Promise<never> {
  return runCommand<CallCommandOptions>(cmd, (opts, ctx) => runCall(opts, ctx, target));
}

type Opts = CallCommandOptions;

/** What the audio options ask for, checked before anything starts. */
interface AudioPlan {
  source: { kind: "device"; device: string } | { kind: "file"; path: string } | {
    kind: "tone";
    hz: number;
  } | { kind: "silence" };
  sink: { kind: "device"; device: string } | { kind: "wav"; path: string } | { kind: "null" };
}

function audioPlan(opts: Opts): AudioPlan {
  if (!opts.audio) {
    if (opts.play || opts.record || opts.tone !== undefined || opts.device) {
      throw usageError("--no-audio excludes --device, --play, --record and --tone");
    }
    return { source: { kind: "silence" }, sink: { kind: "null" } };
  }
  if (opts.play && opts.tone !== undefined) {
    throw usageError("--play and --tone exclude each other");
  }
  const named = opts.play !== undefined || opts.tone !== undefined || opts.record !== undefined;
  // Without --device, a direction not given by a file or tone is silent when another is.
  const device = opts.device ?? (named ? undefined : "default");
  const source: AudioPlan["source"] = opts.play !== undefined
    ? { kind: "file", path: opts.play }
    : opts.tone !== undefined
    ? { kind: "tone", hz: opts.tone }
    : device !== undefined
    ? { kind: "device", device }
    : { kind: "silence" };
  const sink: AudioPlan["sink"] = opts.record !== undefined
    ? { kind: "wav", path: opts.record }
    : device !== undefined
    ? { kind: "device", device }
    : { kind: "null" };
  return { source, sink };
}

function parseCodecs(list: string): CodecName[] {
  const out: CodecName[] = [];
  for (const name of list.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const codec = codecByName(name);
    if (!codec) throw usageError(`--codec: unknown codec "${name}" (known: PCMU, PCMA)`);
    if (!out.includes(codec.name as CodecName)) out.push(codec.name as CodecName);
  }
  if (out.length === 0) throw usageError("--codec: no codec given");
  return out;
}

async function runCall(
  opts: Opts,
  ctx: CommandContext,
  target: string | undefined,
): Promise<number> {
  if (opts.answer && target) throw usageError("--answer takes no target: it waits for a call");
  if (!opts.answer && !target) throw usageError("missing target (or --answer to wait for a call)");
  if (opts.autoAnswer !== undefined && !opts.answer) {
    throw usageError("--auto-answer goes with --answer");
  }
  if (opts.register && !opts.answer) throw usageError("--register goes with --answer");
  const autoAnswer = opts.autoAnswer === undefined
    ? undefined
    : opts.autoAnswer === true
    ? 0
    : floatOrUsage("--auto-answer", String(opts.autoAnswer), 0, 3600);
  const codecs = parseCodecs(opts.codec);
  const plan = audioPlan(opts);
  let targetUri: Uri | undefined;
  if (target) targetUri = uriOption("target", target);
  if (plan.source.kind === "file") {
    try {
      await Deno.stat(plan.source.path);
    } catch {
      throw usageError(`--play: cannot read ${plan.source.path}`);
    }
  }
  const ua = await createUserAgent(opts, ctx, { requireUser: false });
  try {
    const settings: CallSettings = {
      codecs,
      plan,
      duration: opts.duration,
      statsInterval: opts.statsInterval,
      adapt: opts.adapt
        ? { loss: opts.adaptLoss, jitter: opts.adaptJitter, interval: opts.adaptInterval }
        : undefined,
      bind: opts.bind,
    };
    if (targetUri) return await placeAndRun(ctx, ua, targetUri, opts, settings);
    return await answerAndRun(ctx, ua, opts, settings, autoAnswer);
  } finally {
    await ua.close();
  }
}

function floatOrUsage(name: string, value: string, min: number, max: number): number {
  try {
    return floatArg(name, min, max)(value);
  } catch (e) {
    throw usageError((e as Error).message);
  }
}

interface CallSettings {
  codecs: CodecName[];
  plan: AudioPlan;
  duration?: number;
  statsInterval: number;
  adapt?: { loss: number; jitter: number; interval: number };
  bind?: string;
}

/**
 * Opens the media session on the address the UA uses towards `peerHost`
 * (the address written into SDP), with the audio of the plan.
 */
async function openMedia(
  ua: UserAgent,
  settings: CallSettings,
  peerHost: string,
  ctx: CommandContext,
): Promise<MediaSession> {
  const local = ua.transports[0]?.local.host ?? "0.0.0.0";
  const advertised = ua.advertisedHost ?? routeLocalAddress(local, peerHost);
  const media = await MediaSession.open({
    hostname: isUnspecified(local) ? local : advertised,
    advertisedHostname: advertised,
    codecs: settings.codecs,
    // With --adapt the ptime may go up to the policy's last rung: say what we take.
    maxPtime: settings.adapt ? ADAPT_PTIMES[ADAPT_PTIMES.length - 1] : undefined,
  });
  try {
    const source = openSource(settings.plan);
    media.setSource(source);
    const sink = await openSink(settings.plan);
    media.setSink(sink);
    // sox failing (no such device, unreadable file) ends that direction: say why.
    for (const [child, what] of [[source, "audio source"], [sink, "audio output"]] as const) {
      if (child instanceof SoxSource || child instanceof SoxSink) {
        child.exited.then((e) => {
          if (e.code !== 0 && e.code !== null) {
            ctx.log.log("warn", `sox (${what}) exited with ${e.code}: ${e.stderr}`);
          }
        });
      }
    }
  } catch (e) {
    await media.close();
    throw e;
  }
  media.addEventListener(
    "source_ended",
    () => ctx.log.log("info", "audio source ended: sending silence"),
  );
  advertisedHosts.set(media, advertised);
  return media;
}

/** The address each media session writes into SDP (its socket may be bound to 0.0.0.0). */
const advertisedHosts = new WeakMap<MediaSession, string>();

function openSource(plan: AudioPlan): AudioSource {
  const s = plan.source;
  try {
    switch (s.kind) {
      case "device":
        return SoxSource.capture(s.device);
      case "file":
        return SoxSource.file(s.path);
      case "tone":
        return new ToneSource(s.hz);
      case "silence":
        return new SilenceSource();
    }
  } catch (e) {
    throw usageError(`cannot open the audio source: ${(e as Error).message}`);
  }
}

function openSink(plan: AudioPlan): Promise<AudioSink> | AudioSink {
  const s = plan.sink;
  try {
    switch (s.kind) {
      case "device":
        return SoxSink.playback(s.device);
      case "wav":
        return WavFileSink.create(s.path);
      case "null":
        return new NullSink();
    }
  } catch (e) {
    throw usageError(`cannot open the audio output: ${(e as Error).message}`);
  }
}

/** The host the UA sends to for `uri`: the outbound proxy's, else the URI's. */
function peerHostFor(ua: UserAgent, uri: Uri, proxy: string | undefined): string {
  if (proxy) {
    try {
      return uriOption("--proxy", proxy).host;
    } catch {
      // checked at start
    }
  }
  return ua.outboundProxy?.host ?? uri.host;
}

async function placeAndRun(
  ctx: CommandContext,
  ua: UserAgent,
  target: Uri,
  opts: Opts,
  settings: CallSettings,
): Promise<number> {
  const media = await openMedia(ua, settings, peerHostFor(ua, target, opts.proxy), ctx);
  let session: InviteSession;
  try {
    session = await placeCall(ua, target, {
      media,
      timers: { noAnswer: opts.ringTimeout * 1000 },
    });
  } catch (e) {
    await media.close();
    throw e;
  }
  await ctx.out.emit("calling", {
    to: formatUri(target),
    from: formatUri(ua.aor),
    call_id: session.callId,
  });
  const call = new LiveCall(ctx, session, media, settings);
  // Mobility (--roam, address_changed lines): the call follows the host.
  const follower = new Follower(ua, ctx, () => [call.mover(ua)]);
  if (opts.roam) await follower.roam(opts, peerHostFor(ua, target, opts.proxy));
  ctx.readInput(async (event, line) => {
    if (await follower.handleInput(event, line)) return;
    await call.handleInput(event, line);
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  try {
    return await call.run();
  } finally {
    await follower.stop();
  }
}

async function answerAndRun(
  ctx: CommandContext,
  ua: UserAgent,
  opts: Opts,
  settings: CallSettings,
  autoAnswer: number | undefined,
): Promise<number> {
  let current: { incoming: IncomingCall; answer: () => Promise<void> } | undefined;
  let live: LiveCall | undefined;
  let resolveCall!: (call: LiveCall) => void;
  const gotCall = new Promise<LiveCall>((resolve) => resolveCall = resolve);
  const acceptor = new InviteAcceptor(ua, {
    onIncoming: async (incoming) => {
      const offer = incoming.remoteOffer ? summarizeSdp(incoming.remoteOffer) : undefined;
      if (current) {
        // One call at a time: a second one, while the first rings or runs, is turned away
        // and the first goes on; the user learns of it from a `busy` event.
        await incoming.reject(486, "Busy Here");
        await ctx.out.emit("busy", {
          from: formatUri(incoming.from.uri),
          to: formatUri(incoming.to.uri),
          call_id: incoming.callId,
          codecs: offer?.codecs ?? [],
          status: 486,
          current_call_id: current.incoming.callId,
        });
        return;
      }
      let answering: Promise<void> | undefined;
      const answer = () =>
        answering ??= (async () => {
          const peer = incoming.request.contact[0]?.uri.host ?? incoming.request.from.uri.host;
          const media = await openMedia(ua, settings, peer, ctx);
          live = new LiveCall(ctx, incoming.session, media, settings);
          resolveCall(live);
          try {
            await incoming.accept(media);
          } catch (e) {
            // A refused offer ends the session (488); the LiveCall reports it.
            ctx.log.log("warn", `cannot answer: ${(e as Error).message}`);
          }
        })();
      current = { incoming, answer };
      // Ended before it was answered (the caller cancelled, or we rejected). Watched through
      // the promise and before the incoming event is out: a reject read from stdin right after
      // that event may end the session before this handler resumes.
      incoming.session.finished.then(() => {
        if (!live) resolveCall(new LiveCall(ctx, incoming.session, undefined, settings));
      });
      await ctx.out.emit("incoming", {
        from: formatUri(incoming.from.uri),
        to: formatUri(incoming.to.uri),
        call_id: incoming.callId,
        codecs: offer?.codecs ?? [],
      });
      incoming.progress(180).catch((e) =>
        ctx.log.log("debug", `progress: ${(e as Error).message}`)
      );
      if (autoAnswer !== undefined) {
        setTimeoutUnlessEnded(incoming.session, autoAnswer * 1000, () => void answer());
      }
    },
  });
  await emitListening(ua, ctx);
  // Mobility (--roam, address_changed lines): the registration and the call follow the host.
  const calls = () => live ? [live.mover(ua)] : [];
  // The registration's code is loaded only for --register.
  const kept: KeptRegistration | undefined = opts.register
    ? (await import("./_register.ts")).keepRegistered(ua, ctx, {
      registrar: opts.registrar,
      expires: opts.expires,
      movers: calls,
    })
    : undefined;
  const follower = kept?.follower ?? new Follower(ua, ctx, calls);
  if (opts.roam) await follower.roam(opts, defaultToward(ua, opts.registrar));
  const input = ctx.readInput(async (event, line) => {
    if (await follower.handleInput(event, line)) return;
    if (live) return await live.handleInput(event, line);
    if (event.type === "answer") {
      if (!current) return await ctx.skipLine(line, "no incoming call to answer");
      await current.answer();
      return;
    }
    if (event.type === "reject") {
      if (!current) return await ctx.skipLine(line, "no incoming call to reject");
      const status = event.status ?? 486;
      if (typeof status !== "number" || !Number.isInteger(status) || status < 300 || status > 699) {
        return await ctx.skipLine(line, "reject: status must be a number from 300 to 699");
      }
      await current.incoming.reject(status);
      return;
    }
    if (event.type === "hangup" && current) {
      await current.incoming.reject(603);
      return;
    }
    await ctx.skipLine(line, `"${event.type}" needs a call in progress`);
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  void input;
  const outcome = await Promise.race([gotCall, ctx.stopped.then(() => undefined)]);
  let code: number;
  if (!outcome) {
    // Stopped while waiting: decline a ringing call.
    if (current && !live) await current.incoming.reject(480).catch(() => {});
    code = EXIT.INTERRUPTED;
  } else {
    code = await outcome.run();
  }
  acceptor.close();
  await follower.stop();
  await kept?.stop();
  return code;
}

function setTimeoutUnlessEnded(session: InviteSession, ms: number, fn: () => void): void {
  const timer = setTimeout(fn, ms);
  session.finished.then(() => clearTimeout(timer));
}

function hostPort(a: { hostname: string; port: number } | undefined): string | undefined {
  if (!a) return undefined;
  return `${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`;
}

/**
 * One call from its first event to its end: maps session and media events to
 * NDJSON, stdin lines to session and media calls, runs the stats and
 * duration timers and --adapt, and returns the exit code.
 */
class LiveCall {
  readonly #ctx: CommandContext;
  readonly #session: InviteSession;
  readonly #media?: MediaSession;
  readonly #settings: CallSettings;
  #answeredAt?: number;
  #mediaReported = false;
  #remoteHeld = false;
  #pendingChange?: "local" | "adapt";
  #statsTimer?: ReturnType<typeof setInterval>;
  #durationTimer?: ReturnType<typeof setTimeout>;
  #adapt?: AdaptPolicy;
  /** An --adapt change is being applied: reports meanwhile are not observed. */
  #adapting = false;
  #busy: Promise<unknown> = Promise.resolve();

  constructor(
    ctx: CommandContext,
    session: InviteSession,
    media: MediaSession | undefined,
    settings: CallSettings,
  ) {
    this.#ctx = ctx;
    this.#session = session;
    this.#media = media;
    this.#settings = settings;
    if (settings.adapt && media) {
      this.#adapt = new AdaptPolicy(settings.codecs, {
        lossThreshold: settings.adapt.loss,
        jitterThresholdMs: settings.adapt.jitter,
        cooldownMs: settings.adapt.interval * 1000,
        ptimes: ADAPT_PTIMES,
      });
    }
    session.addEventListener("ringing", (e) => {
      const d = (e as CustomEvent).detail;
      void ctx.out.emit("ringing", { status: d.status, early_media: d.early_media });
    });
    session.addEventListener("answered", () => this.#onAnswered());
    session.addEventListener("dtmf_info", (e) => {
      const d = (e as CustomEvent).detail;
      void ctx.out.emit("dtmf", { digit: d.digit, duration_ms: d.duration_ms, via: "info" });
    });
    media?.addEventListener("negotiated", (e) => this.#onNegotiated((e as CustomEvent).detail));
    media?.addEventListener("codec_changed", (e) => {
      const d = (e as CustomEvent).detail;
      void ctx.out.emit("codec_changed", {
        codec: d.codec,
        previous: d.previous,
        payload_type: d.payload_type,
        by: this.#pendingChange ?? "remote",
      });
    });
    media?.addEventListener("ptime_changed", (e) => {
      const d = (e as CustomEvent).detail;
      void ctx.out.emit("ptime_changed", {
        ptime: d.ptime,
        previous: d.previous,
        by: this.#pendingChange ?? "remote",
      });
    });
    media?.addEventListener("dtmf", (e) => {
      const d = (e as CustomEvent).detail;
      void ctx.out.emit("dtmf", { digit: d.digit, duration_ms: d.duration_ms, via: "rtp" });
    });
    media?.addEventListener("remote_address_changed", (e) => {
      const d = (e as CustomEvent).detail;
      ctx.log.log("info", `the peer now sends RTP from ${hostPort(d)} (latched)`);
    });
    // Each RTCP packet from the peer may carry a new report about our stream.
    media?.addEventListener("rtcp", () => this.#onReport(media.stats()));
  }

  /** Runs until the session ends (or the command is stopped); returns the exit code. */
  async run(): Promise<number> {
    const stop = this.#ctx.stopped.then(async (reason) => {
      if (this.#session.state === "terminated") return;
      this.#ctx.log.log("info", `${reason}: hanging up`);
      await this.#session.hangup().catch((e) =>
        this.#ctx.log.log("debug", `hangup: ${(e as Error).message}`)
      );
    });
    void stop;
    const end = await this.#session.finished;
    // After a stop request, wait no longer than the BYE or CANCEL needs.
    clearInterval(this.#statsTimer);
    clearTimeout(this.#durationTimer);
    if (this.#media) {
      if (this.#answeredAt !== undefined) await this.#emitStats(true);
      await this.#media.close();
    }
    await this.#ctx.out.emit("ended", {
      reason: end.reason,
      status: end.status,
      phrase: end.phrase,
      duration: this.#answeredAt === undefined
        ? 0
        : Math.round((performance.now() - this.#answeredAt) / 100) / 10,
      call_id: this.#session.callId,
    });
    return exitCodeFor(end, this.#session.role);
  }

  #onAnswered(): void {
    this.#answeredAt = performance.now();
    void this.#ctx.out.emit("answered", { call_id: this.#session.callId });
    this.#reportMedia();
    this.#statsTimer = setInterval(
      () => void this.#emitStats(false),
      this.#settings.statsInterval * 1000,
    );
    if (this.#settings.duration !== undefined) {
      this.#durationTimer = setTimeout(() => {
        this.#ctx.log.log("info", `--duration ${this.#settings.duration} s reached: hanging up`);
        void this.#session.hangup().catch(() => {});
      }, this.#settings.duration * 1000);
    }
  }

  #reportMedia(): void {
    const n = this.#media?.negotiated;
    if (!n || this.#mediaReported) return;
    this.#mediaReported = true;
    void this.#ctx.out.emit("media", {
      codec: n.codec,
      payload_type: n.payloadType,
      ptime: n.ptime,
      local_rtp: hostPort({
        hostname: advertisedHosts.get(this.#media!) ?? this.#media!.localAddress.hostname,
        port: this.#media!.localAddress.port,
      }),
      remote_rtp: hostPort(n.remote),
      direction: n.direction,
      telephone_event: n.telephoneEventPayloadType !== undefined,
    });
  }

  #onNegotiated(n: NegotiatedMedia): void {
    if (this.#answeredAt !== undefined) this.#reportMedia();
    const held = this.#media?.held ?? false;
    const remoteHolds = !held &&
      (n.remoteDirection === "sendonly" || n.remoteDirection === "inactive");
    if (remoteHolds !== this.#remoteHeld) {
      this.#remoteHeld = remoteHolds;
      void this.#ctx.out.emit(remoteHolds ? "held" : "resumed", { by: "remote" });
    }
  }

  async #emitStats(final: boolean): Promise<void> {
    if (!this.#media) return;
    const s = this.#media.stats();
    await this.#ctx.out.emit("stats", { ...s, final: final || undefined });
  }

  #onReport(stats: MediaStats): void {
    const media = this.#media;
    if (!this.#adapt || !media || this.#session.state !== "confirmed" || this.#adapting) return;
    const n = media.negotiated;
    if (!n) return;
    const before = {
      codec: n.codec,
      ptime: n.ptime,
      offeredPtime: media.ptime,
      jitterBufferMs: media.jitterBuffer.targetDelayMs,
    };
    const decision = this.#adapt.observe(
      {
        remote: { lossFraction: stats.remote_loss_fraction, jitterMs: stats.remote_jitter_ms },
        local: { lossFraction: stats.loss_fraction, jitterMs: stats.jitter_ms },
      },
      {
        codec: n.codec,
        ptime: media.ptime,
        jitterBufferMs: before.jitterBufferMs,
        maxPtime: n.remoteMaxptime,
      },
      performance.now(),
    );
    if (!decision) return;
    this.#adapting = true;
    this.#serial(async () => {
      try {
        await this.#applyAdaptation(decision, before, stats);
      } finally {
        this.#adapting = false;
      }
    });
  }

  /** Applies one decision of the --adapt policy and reports it as `adapted`. */
  async #applyAdaptation(
    decision: AdaptDecision,
    before: { codec: string; ptime: number; offeredPtime: number; jitterBufferMs: number },
    stats: MediaStats,
  ): Promise<void> {
    const media = this.#media!;
    if (decision.jitterBufferMs !== undefined) {
      media.jitterBuffer.setTargetDelay(decision.jitterBufferMs);
    }
    const renegotiate = decision.codec !== undefined || decision.ptime !== undefined;
    let ok = true;
    if (renegotiate && this.#session.state === "confirmed") {
      this.#pendingChange = "adapt";
      if (decision.codec) media.preferCodec(decision.codec);
      if (decision.ptime !== undefined) media.setPtime(decision.ptime);
      ok = await this.#session.reinvite().catch(() => false);
      this.#pendingChange = undefined;
      // Refused: our offers go back to the ptime in force (the policy may ask again later).
      if (!ok && decision.ptime !== undefined) media.setPtime(before.offeredPtime);
    }
    const after = media.negotiated;
    const accepted = ok &&
      (decision.codec === undefined || after?.codec === decision.codec) &&
      (decision.ptime === undefined || after?.ptime === decision.ptime);
    await this.#ctx.out.emit("adapted", {
      reason: decision.reason,
      loss_fraction: stats.remote_loss_fraction,
      jitter_ms: stats.remote_jitter_ms,
      local_jitter_ms: stats.jitter_ms,
      codec: after?.codec ?? null,
      previous_codec: before.codec,
      requested: decision.codec ?? null,
      ptime: after?.ptime ?? null,
      previous_ptime: before.ptime,
      requested_ptime: decision.ptime ?? null,
      jitter_buffer_ms: media.jitterBuffer.targetDelayMs,
      previous_jitter_buffer_ms: before.jitterBufferMs,
      renegotiated: renegotiate,
      accepted,
    });
  }

  /**
   * Mid-call mobility (the "calls" mover): after the host moved, the RTP
   * socket is re-bound on the new address and a re-INVITE carries the new
   * Contact and a new SDP (c= the new address, o= version + 1), so the peer
   * sends its media and requests there. If the peer does not accept it, the
   * call is ended with a BYE (an `ended` event follows) and the move reports
   * the failure.
   */
  mover(ua: UserAgent): Mover {
    const calls = callsMover(ua, () => [this.#session], {
      rebindMedia: async (_session, host) => {
        const bound = ua.transports[0]?.local.host ?? "0.0.0.0";
        await this.#media?.rebind(isUnspecified(bound) ? bound : host, {
          advertisedHostname: host,
        });
      },
      endRefused: true,
    });
    return { name: calls.name, move: (change) => this.#serial(() => calls.move(change)) };
  }

  /** Runs session changes one after the other (a re-INVITE at a time). */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#busy.then(fn, fn);
    this.#busy = next.catch((e) => this.#ctx.log.log("warn", (e as Error).message));
    return next;
  }

  /** Handles one stdin line during the call. */
  async handleInput(event: InputEvent, line: number): Promise<void> {
    const ctx = this.#ctx;
    const media = this.#media;
    const session = this.#session;
    switch (event.type) {
      case "hangup":
        await session.hangup().catch((e) => ctx.log.log("warn", `hangup: ${(e as Error).message}`));
        return;
      case "answer":
      case "reject":
        return await ctx.skipLine(line, `${event.type}: the call is already answered`);
    }
    // "method" on codec, hold and resume: "invite" (default, re-INVITE) or "update" (RFC 3311,
    // also in an early dialog once the offer/answer completed in a reliable 1xx).
    const method = event.method ?? "invite";
    const modifies = event.type === "codec" || event.type === "hold" || event.type === "resume";
    if (modifies && method !== "invite" && method !== "update") {
      return await ctx.skipLine(line, `${event.type}: "method" must be "invite" or "update"`);
    }
    const early = modifies && method === "update" && session.state === "early";
    if (!media || (session.state !== "confirmed" && !early)) {
      return await ctx.skipLine(line, `${event.type}: the call is not established`);
    }
    if (modifies && method === "update" && !session.canUpdate) {
      return await ctx.skipLine(
        line,
        `${event.type}: cannot send UPDATE now (the peer must allow it; before the answer, the offer/answer must have completed in a reliable provisional response)`,
      );
    }
    // The session modification the line asks for; false when the peer refused it.
    const modify = (): Promise<boolean> =>
      method === "update" ? session.update() : session.reinvite();
    switch (event.type) {
      case "dtmf": {
        const digits = event.digits;
        if (typeof digits !== "string" || !/^[0-9A-D*#]+$/i.test(digits)) {
          return await ctx.skipLine(line, 'dtmf: "digits" must be a string of 0-9, *, #, A-D');
        }
        const duration = typeof event.duration_ms === "number" ? event.duration_ms : undefined;
        if (media.negotiated?.telephoneEventPayloadType !== undefined) {
          await media.sendDtmf(digits, { durationMs: duration }).catch((e) =>
            ctx.skipLine(line, `dtmf: ${(e as Error).message}`)
          );
        } else {
          // The peer takes no telephone-event: SIP INFO (application/dtmf-relay).
          for (const digit of digits.toUpperCase()) {
            await session.sendInfo(
              `Signal=${digit}\r\nDuration=${duration ?? 100}\r\n`,
              "application/dtmf-relay",
            ).catch((e) => ctx.skipLine(line, `dtmf: ${(e as Error).message}`));
          }
        }
        return;
      }
      case "codec": {
        // {"type":"codec","codec":"PCMA"}, {"type":"codec","ptime":40}, or both.
        const codec = typeof event.codec === "string" ? codecByName(event.codec) : undefined;
        const ptime = event.ptime;
        if (
          event.codec !== undefined &&
          (!codec || !this.#settings.codecs.includes(codec.name as CodecName))
        ) {
          return await ctx.skipLine(
            line,
            `codec: "codec" must be one of ${this.#settings.codecs.join(", ")} (--codec)`,
          );
        }
        if (
          ptime !== undefined &&
          (typeof ptime !== "number" || !Number.isInteger(ptime) || ptime < 10 || ptime > 100 ||
            ptime % 10 !== 0)
        ) {
          return await ctx.skipLine(line, 'codec: "ptime" must be 10, 20, ... 100 (ms)');
        }
        if (!codec && ptime === undefined) {
          return await ctx.skipLine(line, 'codec: give "codec", "ptime" or both');
        }
        await this.#serial(async () => {
          const previousPtime = media.ptime;
          this.#pendingChange = "local";
          if (codec) media.preferCodec(codec.name);
          if (typeof ptime === "number") media.setPtime(ptime);
          const ok = await modify().catch((e) => {
            ctx.log.log("warn", `${method}: ${(e as Error).message}`);
            return false;
          });
          this.#pendingChange = undefined;
          if (!ok) media.setPtime(previousPtime);
          const n = media.negotiated;
          if (!ok || (codec && n?.codec !== codec.name)) {
            await ctx.skipLine(
              line,
              `codec: the peer kept ${n?.codec ?? "its codec"}${
                ok ? "" : ` (${method === "update" ? "UPDATE" : "re-INVITE"} refused)`
              }`,
            );
          }
        });
        return;
      }
      case "hold":
      case "resume": {
        const hold = event.type === "hold";
        if (media.held === hold) {
          return await ctx.skipLine(line, `${event.type}: already ${hold ? "held" : "resumed"}`);
        }
        await this.#serial(async () => {
          if (hold) media.hold();
          else media.resume();
          const ok = await modify().catch((e) => {
            ctx.log.log("warn", `${method}: ${(e as Error).message}`);
            return false;
          });
          if (ok) {
            await ctx.out.emit(hold ? "held" : "resumed", { by: "local" });
          } else {
            if (hold) media.resume();
            else media.hold();
            await ctx.skipLine(
              line,
              `${event.type}: the peer refused the ${method === "update" ? "UPDATE" : "re-INVITE"}`,
            );
          }
        });
        return;
      }
    }
    await ctx.skipLine(line, `unknown input type "${event.type}"`);
  }
}

/** Exit code of a call that ended so (SIGINT's 130 is set by the frame). */
function exitCodeFor(end: SessionEnd, _role: "uac" | "uas"): number {
  switch (end.reason) {
    case "local_bye":
    case "remote_bye":
      return EXIT.OK;
    case "rejected":
      return EXIT.PEER_REJECTED;
    case "failed":
      return end.status !== undefined && end.status >= 300 ? EXIT.PEER_REJECTED : EXIT.NETWORK;
    default:
      // cancelled, no_answer, timeout, no_ack
      return EXIT.NETWORK;
  }
}
