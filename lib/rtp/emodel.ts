/**
 * A mean opinion score estimate from the ITU-T G.107 E-model, reduced to what
 * a call can measure: codec impairment, packet loss (with its burstiness) and
 * one-way delay.
 *
 * @module
 */

/** Inputs of {@linkcode estimateMos}. */
export interface EModelInput {
  /** Packet loss in percent (0 to 100). */
  lossPercent: number;
  /** Mouth-to-ear one-way delay, ms (network + jitter buffer + packetization). */
  delayMs: number;
  /** Equipment impairment Ie of the codec (G.113 appendix I: 0 for G.711). */
  ie?: number;
  /** Packet-loss robustness Bpl (G.113: 25.1 for G.711 with concealment, 4.3 without). */
  bpl?: number;
  /** Burst ratio BurstR (1 for random loss). */
  burstRatio?: number;
}

/**
 * The transmission rating factor R (G.107): 93.2 minus the delay impairment
 * Id and the effective equipment impairment Ie-eff.
 */
export function rFactor(input: EModelInput): number {
  const ie = input.ie ?? 0;
  const bpl = input.bpl ?? 4.3;
  const burst = input.burstRatio ?? 1;
  const ppl = Math.max(0, Math.min(100, input.lossPercent));
  const ieEff = ie + (95 - ie) * ppl / (ppl / burst + bpl);
  const d = Math.max(0, input.delayMs);
  // Simplified Id (Cole and Rosenbluth's fit of G.107 for the default parameters).
  const id = 0.024 * d + (d > 177.3 ? 0.11 * (d - 177.3) : 0);
  return 93.2 - id - ieEff;
}

/** MOS from R (G.107 annex B): 1 below 0, 4.5 above 100. */
export function mosFromR(r: number): number {
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6;
}

/**
 * The estimated MOS (1 to 4.5) for `input`.
 *
 * @example
 * ```ts
 * import { estimateMos } from "./emodel.ts";
 * import assert from "node:assert/strict";
 * assert.equal(estimateMos({ lossPercent: 0, delayMs: 0 }).toFixed(2), "4.41");
 * assert.ok(estimateMos({ lossPercent: 5, delayMs: 100 }) < 3.5);
 * ```
 */
export function estimateMos(input: EModelInput): number {
  return mosFromR(rFactor(input));
}
