/**
 * Media for calls, with no SIP in it: SDP offer/answer, G.711 codecs, tones
 * and tone detection, WAV files, audio sources and sinks.
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
