/**
 * Media for calls, with no SIP in it: SDP offer/answer, G.711 codecs, tones
 * and tone detection, WAV files, audio sources and sinks (sox and ALSA), RTP
 * and RTCP, jitter buffer, DTMF, and {@linkcode MediaSession} which ties them
 * together for one call.
 *
 * @module
 */

export * from "./codec.ts";
export * from "./tone.ts";
export * from "./wav.ts";
export * from "./audio.ts";
export * from "./sdp.ts";
export * from "./sdp_summary.ts";
export * from "./adapt.ts";
export * from "./clock.ts";
export * from "./packet.ts";
export * from "./rtcp.ts";
export * from "./jitter_buffer.ts";
export * from "./dtmf.ts";
export * from "./emodel.ts";
export * from "./socket.ts";
export * from "./media_session.ts";
export * from "./audio_sox.ts";
