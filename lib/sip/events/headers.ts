/**
 * The header fields of the SIP event framework (RFC 6665 section 8.2):
 * Event and Subscription-State, the termination reasons (section 4.1.3) and
 * the re-subscribe policy that follows from them.
 *
 * @module
 */

import { SipSyntaxError } from "../errors.ts";
import type { IncomingRequest } from "../ua.ts";

/** A parsed Event header (RFC 6665 section 8.2.1). */
export interface EventHeader {
  /** The event package with its template, lower case, e.g. "presence" or "presence.winfo". */
  package: string;
  /** The `id` parameter, when given. */
  id?: string;
  /** Other parameters (names in lower case; `null` for a parameter without value). */
  params: Record<string, string | null>;
}

const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;

function parseParams(
  parts: string[],
  what: string,
): Record<string, string | null> {
  const params: Record<string, string | null> = {};
  for (const raw of parts) {
    const p = raw.trim();
    if (p === "") continue;
    const eq = p.indexOf("=");
    const name = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase();
    if (!TOKEN.test(name)) {
      throw new SipSyntaxError(`Cannot parse ${what} header: invalid parameter "${p}"`, {
        header: what,
      });
    }
    let value: string | null = eq === -1 ? null : p.slice(eq + 1).trim();
    if (value !== null && value.startsWith('"') && value.endsWith('"') && value.length >= 2) {
      value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    }
    params[name] = value;
  }
  return params;
}

/**
 * Parses an Event header value: `presence;id=7`. Package names compare
 * case-insensitively, so the package is returned in lower case. Throws
 * {@linkcode SipSyntaxError} when the package is not a token.
 *
 * @example
 * ```ts
 * import { parseEvent } from "./headers.ts";
 * const e = parseEvent("Presence ; id=abc");
 * e.package; // "presence"
 * e.id; // "abc"
 * ```
 */
export function parseEvent(text: string): EventHeader {
  const [head, ...rest] = text.split(";");
  const pkg = head.trim().toLowerCase();
  if (!TOKEN.test(pkg)) {
    throw new SipSyntaxError(`Cannot parse Event header: invalid event package "${head.trim()}"`, {
      header: "Event",
    });
  }
  const params = parseParams(rest, "Event");
  const out: EventHeader = { package: pkg, params };
  if (params.id != null) {
    out.id = params.id;
    delete params.id;
  }
  return out;
}

/**
 * Formats an Event header value.
 *
 * @example
 * ```ts
 * import { formatEvent } from "./headers.ts";
 * formatEvent({ package: "presence", id: "1", params: {} }); // "presence;id=1"
 * ```
 */
export function formatEvent(event: EventHeader): string {
  let out = event.package;
  if (event.id !== undefined) out += `;id=${event.id}`;
  for (const [k, v] of Object.entries(event.params)) out += v === null ? `;${k}` : `;${k}=${v}`;
  if (/[\r\n]/.test(out)) throw new TypeError("Cannot format Event header: CR or LF in value");
  return out;
}

/**
 * True when two Event headers name the same subscription (RFC 6665 section
 * 8.2.1: same package, and the same `id` or both without one).
 *
 * @example
 * ```ts
 * import { parseEvent, sameEvent } from "./headers.ts";
 * sameEvent(parseEvent("Presence"), parseEvent("presence")); // true
 * sameEvent(parseEvent("presence;id=1"), parseEvent("presence")); // false
 * ```
 */
export function sameEvent(a: EventHeader, b: EventHeader): boolean {
  return a.package === b.package && (a.id ?? "") === (b.id ?? "");
}

/** The subscription states of RFC 6665 section 8.2.3 (extensions are kept as strings). */
export const SUBSCRIPTION_STATES = ["active", "pending", "terminated"] as const;

/** One of {@linkcode SUBSCRIPTION_STATES}. */
export type SubscriptionStateName = typeof SUBSCRIPTION_STATES[number];

/**
 * The termination reasons of RFC 6665 section 4.1.3 (registered in section
 * 7.2), with what a subscriber does after each.
 */
export const TERMINATION_REASONS = {
  /** "The subscriber SHOULD retry immediately with a new subscription." */
  deactivated: "retry",
  /** "The subscriber SHOULD retry at some later time" (retry-after when given). */
  probation: "retry-later",
  /** "The subscriber SHOULD NOT attempt to re-subscribe." */
  rejected: "never",
  /** "The subscriber SHOULD retry immediately with a new subscription." */
  timeout: "retry",
  /** "The subscriber SHOULD retry at some later time" (retry-after when given). */
  giveup: "retry-later",
  /** "The subscriber SHOULD NOT attempt to re-subscribe." */
  noresource: "never",
  /** "The subscriber SHOULD NOT attempt to re-subscribe." */
  invariant: "never",
} as const;

/** A registered termination reason. */
export type TerminationReason = keyof typeof TERMINATION_REASONS;

/** True for one of the reasons of {@linkcode TERMINATION_REASONS}. */
export function isTerminationReason(value: unknown): value is TerminationReason {
  return typeof value === "string" && Object.hasOwn(TERMINATION_REASONS, value);
}

/** A parsed Subscription-State header (RFC 6665 section 8.2.3). */
export interface SubscriptionState {
  /** "active", "pending", "terminated" or an extension value, lower case. */
  state: SubscriptionStateName | string;
  /** `expires` in seconds (active and pending). */
  expires?: number;
  /** `reason` (terminated), lower case. */
  reason?: TerminationReason | string;
  /** `retry-after` in seconds (terminated). */
  retryAfter?: number;
  /** Other parameters. */
  params: Record<string, string | null>;
}

function parseSeconds(value: string | null | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (value === null || !/^\d{1,10}$/.test(value)) {
    throw new SipSyntaxError(`Cannot parse Subscription-State header: invalid ${name} "${value}"`, {
      header: "Subscription-State",
    });
  }
  return Number(value);
}

/**
 * Parses a Subscription-State header value:
 * `terminated;reason=probation;retry-after=30`. Throws
 * {@linkcode SipSyntaxError} for a missing state or a bad number.
 *
 * @example
 * ```ts
 * import { parseSubscriptionState } from "./headers.ts";
 * const s = parseSubscriptionState("active;expires=3599");
 * s.state; // "active"
 * s.expires; // 3599
 * ```
 */
export function parseSubscriptionState(text: string): SubscriptionState {
  const [head, ...rest] = text.split(";");
  const state = head.trim().toLowerCase();
  if (!TOKEN.test(state)) {
    throw new SipSyntaxError(
      `Cannot parse Subscription-State header: invalid state "${head.trim()}"`,
      { header: "Subscription-State" },
    );
  }
  const params = parseParams(rest, "Subscription-State");
  const out: SubscriptionState = { state, params };
  const expires = parseSeconds(params.expires, "expires");
  if (expires !== undefined) out.expires = expires;
  const retryAfter = parseSeconds(params["retry-after"], "retry-after");
  if (retryAfter !== undefined) out.retryAfter = retryAfter;
  if (params.reason != null) out.reason = params.reason.toLowerCase();
  delete params.expires;
  delete params["retry-after"];
  delete params.reason;
  return out;
}

/**
 * Formats a Subscription-State header value.
 *
 * @example
 * ```ts
 * import { formatSubscriptionState } from "./headers.ts";
 * formatSubscriptionState({ state: "terminated", reason: "timeout", params: {} });
 * // "terminated;reason=timeout"
 * ```
 */
export function formatSubscriptionState(
  state: Omit<SubscriptionState, "params"> & { params?: SubscriptionState["params"] },
): string {
  let out = state.state;
  if (state.reason !== undefined) out += `;reason=${state.reason}`;
  if (state.expires !== undefined) out += `;expires=${Math.max(0, Math.floor(state.expires))}`;
  if (state.retryAfter !== undefined) {
    out += `;retry-after=${Math.max(0, Math.floor(state.retryAfter))}`;
  }
  for (const [k, v] of Object.entries(state.params ?? {})) {
    out += v === null ? `;${k}` : `;${k}=${v}`;
  }
  if (/[\r\n]/.test(out)) {
    throw new TypeError("Cannot format Subscription-State header: CR or LF in value");
  }
  return out;
}

/** Options of {@linkcode resubscribeDelay}. */
export interface ResubscribeDelayOptions {
  /** `retry-after` of the terminating NOTIFY (or Retry-After of a failure), seconds. */
  retryAfter?: number;
  /** Consecutive failures so far (0 for the first); the back-off doubles with each. */
  failures?: number;
  /** First back-off delay in seconds. Default 30. */
  backoffBase?: number;
  /** Largest back-off delay in seconds. Default 1800. */
  backoffMax?: number;
  /** Randomness in [0, 1) for jitter (50% to 100% of the delay). Default Math.random. */
  random?: () => number;
}

/**
 * The back-off delay in seconds after `failures` consecutive failures:
 * `min(max, base * 2^failures)`, jittered down to as little as half of it
 * (the RFC 5626 section 4.5 style that the registration usage uses too).
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./headers.ts";
 * backoffDelay(0, { random: () => 1 }); // 30
 * backoffDelay(3, { random: () => 1 }); // 240
 * backoffDelay(20, { random: () => 0 }); // 900: half of the 1800 cap
 * ```
 */
export function backoffDelay(failures: number, options: ResubscribeDelayOptions = {}): number {
  const base = options.backoffBase ?? 30;
  const max = options.backoffMax ?? 1800;
  const full = Math.min(max, base * 2 ** Math.max(0, Math.min(failures, 30)));
  const r = (options.random ?? Math.random)();
  return Math.max(1, Math.round(full * (0.5 + r / 2)));
}

/**
 * How many seconds a subscriber waits before it subscribes again after a
 * termination with `reason` (RFC 6665 section 4.1.3), or `undefined` when it
 * must not:
 * - deactivated, timeout (and no reason): at once (0), unless failures piled
 *   up, then the back-off;
 * - probation, giveup: `retry-after` when given, else the back-off;
 * - rejected, noresource, invariant: never;
 * - no reason or an unknown one: "the client MAY attempt to re-subscribe at
 *   any time (unless a 'retry-after' parameter is present ...)", so as for
 *   deactivated.
 * A `retry-after` always wins where re-subscribing is allowed.
 *
 * @example
 * ```ts
 * import { resubscribeDelay } from "./headers.ts";
 * resubscribeDelay("timeout"); // 0
 * resubscribeDelay("probation", { retryAfter: 90 }); // 90
 * resubscribeDelay("rejected"); // undefined
 * ```
 */
export function resubscribeDelay(
  reason: string | undefined,
  options: ResubscribeDelayOptions = {},
): number | undefined {
  const failures = options.failures ?? 0;
  const policy = isTerminationReason(reason) ? TERMINATION_REASONS[reason] : "retry";
  if (policy === "never") return undefined;
  if (options.retryAfter !== undefined) return options.retryAfter;
  if (policy === "retry" && failures === 0) return 0;
  return backoffDelay(Math.max(0, failures - (policy === "retry" ? 1 : 0)), options);
}

/**
 * Reads the Event header of an incoming SUBSCRIBE or NOTIFY; answers 400
 * and returns undefined when it is missing or malformed (RFC 6665 sections
 * 8.2.1 and 7.2.4: Event is mandatory in both).
 */
export async function readEventHeader(incoming: IncomingRequest): Promise<EventHeader | undefined> {
  const text = incoming.request.headers.get("Event");
  try {
    if (text !== undefined) return parseEvent(text);
  } catch {
    // answered below
  }
  await incoming.respond(400, { reason: "Missing or bad Event header" });
  return undefined;
}
