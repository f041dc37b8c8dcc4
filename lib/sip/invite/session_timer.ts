/**
 * Session timers of one INVITE session (RFC 4028): the interval and the
 * refresher in force, the Session-Expires and Min-SE headers of requests and
 * answers, the 422 rules, and the timer that either asks for a refresh (we
 * refresh: at half the interval) or gives up on the peer (it refreshes:
 * before the interval runs out). The session sends the refreshes and the BYE;
 * this module only decides and keeps time.
 *
 * @module
 */

import type { SipRequest, SipResponse } from "../message.ts";

/** The smallest session interval we accept (RFC 4028 Min-SE default 90 s). */
export const MIN_SESSION_INTERVAL = 90;

/** A session timer in force (RFC 4028). */
export interface SessionTimer {
  /** Session interval in seconds. */
  interval: number;
  /** Who refreshes: we ("local") or the peer. */
  refresher: "local" | "remote";
}

/** What a {@linkcode SessionTimerState} needs from its session. */
export interface SessionTimerHost {
  /** Runs `fn` after `ms` on the session's clock; returns an id for {@linkcode SessionTimerHost.cancel}. */
  after(ms: number, fn: () => void): number;
  /** Cancels a timer of {@linkcode SessionTimerHost.after}. */
  cancel(id: number | undefined): void;
  /** True once the session ended (no timer starts then). */
  ended(): boolean;
  /** Time for our refresh (we are the refresher). */
  refresh(): void;
  /** The peer did not refresh in time: the session should end. */
  expired(): void;
  /** Logs a line. */
  log(level: "info" | "warn", message: string): void;
}

/**
 * The session timer state of one session.
 *
 * @example
 * ```ts
 * import { SessionTimerState } from "./session_timer.ts";
 * import assert from "node:assert/strict";
 * const fired: string[] = [];
 * const timers = new SessionTimerState({
 *   after: (ms, fn) => { fired.push(`in ${ms}`); return 1; },
 *   cancel: () => {},
 *   ended: () => false,
 *   refresh: () => fired.push("refresh"),
 *   expired: () => fired.push("expired"),
 *   log: () => {},
 * });
 * timers.start({ interval: 90, refresher: "local" });
 * assert.deepEqual(timers.headers(), [["Session-Expires", "90;refresher=uac"]]);
 * assert.deepEqual(fired, ["in 45000"]);
 * ```
 */
export class SessionTimerState {
  readonly #host: SessionTimerHost;
  #timer?: SessionTimer;
  #id?: number;
  /** The largest Min-SE a 422 told us for this session (RFC 4028 7.4: refreshes repeat it). */
  #minSe?: number;

  /** Session timers of a session, timed by `host`. */
  constructor(host: SessionTimerHost) {
    this.#host = host;
  }

  /** The timer in force, if any. */
  get current(): Readonly<SessionTimer> | undefined {
    return this.#timer;
  }

  /** True while a refresh or expiry is scheduled. */
  get scheduled(): boolean {
    return this.#id !== undefined;
  }

  /** Session-Expires and Min-SE for requests we send while a timer runs. */
  headers(): [string, string][] {
    const t = this.#timer;
    if (!t) return [];
    // RFC 4028 7.4 / 9: the parameter names a side of this request's
    // transaction, whose UAC we are: "uac" when we keep refreshing.
    const refresher = t.refresher === "local" ? "uac" : "uas";
    const headers: [string, string][] = [[
      "Session-Expires",
      `${t.interval};refresher=${refresher}`,
    ]];
    if (this.#minSe !== undefined) headers.push(["Min-SE", String(this.#minSe)]);
    return headers;
  }

  /** Remembers a Min-SE a 422 named (the initial INVITE's retry): later refreshes repeat it. */
  rememberMinSe(minSe: number): void {
    this.#minSe = Math.max(this.#minSe ?? 0, minSe);
  }

  /**
   * A 422 to a refresh or re-INVITE of ours (RFC 4028 7.4 and 7.1): "the UAC
   * ... MAY retry the request ... the Session-Expires ... MUST be ... at
   * least as large as the Min-SE" of the 422, and the retry's Min-SE is the
   * largest seen. Raises the interval in force and returns true when a retry
   * makes sense (a Min-SE above the interval we asked for).
   */
  raiseMinSe(res: SipResponse): boolean {
    if (res.status !== 422) return false;
    const minSe = Number(res.headers.get("Min-SE")?.split(";")[0].trim());
    const t = this.#timer;
    if (!t || !Number.isInteger(minSe) || minSe <= t.interval) return false;
    this.rememberMinSe(minSe);
    t.interval = minSe;
    this.#host.log("info", `422: session interval raised to the peer's Min-SE ${minSe} s`);
    return true;
  }

  /**
   * The Min-SE to answer 422 with when `req` asks for a session interval
   * below our minimum (RFC 4028 8.1), else undefined.
   */
  tooSmall(req: SipRequest): number | undefined {
    const se = parseSessionExpires(req.headers.get("Session-Expires"));
    return se && se.interval < MIN_SESSION_INTERVAL ? MIN_SESSION_INTERVAL : undefined;
  }

  /**
   * The Session-Expires of our 2xx to a request that asks for session
   * timers (RFC 4028 9): the interval asked for, the refresher asked for or,
   * when the UAC said none, the UAC if it supports timers (else us); and the
   * timer starts. A refresh without Session-Expires stops it.
   */
  fromRequest(req: SipRequest): [string, string][] {
    const se = parseSessionExpires(req.headers.get("Session-Expires"));
    if (!se) {
      // A refresh without Session-Expires: the peer no longer wants timers.
      if (this.#timer && req.method !== "PRACK") this.stop();
      return [];
    }
    const uacSupports = hasOptionTag(req, "Supported", "timer") ||
      hasOptionTag(req, "Require", "timer");
    // The request's UAC is the peer here.
    const refresher = se.refresher ?? (uacSupports ? "uac" : "uas");
    this.start({ interval: se.interval, refresher: refresher === "uac" ? "remote" : "local" });
    const headers: [string, string][] = [[
      "Session-Expires",
      `${se.interval};refresher=${refresher}`,
    ]];
    if (uacSupports) headers.push(["Require", "timer"]);
    return headers;
  }

  /** Applies the Session-Expires of a 2xx to a request we sent (RFC 4028 7.2); none stops the timer. */
  fromResponse(res: SipResponse): void {
    const se = parseSessionExpires(res.headers.get("Session-Expires"));
    if (!se) {
      if (this.#timer) this.stop();
      return;
    }
    // We sent the request: "uac" is us.
    this.start({
      interval: se.interval,
      refresher: (se.refresher ?? "uac") === "uac" ? "local" : "remote",
    });
  }

  /** No more session timer. */
  stop(): void {
    this.#host.cancel(this.#id);
    this.#id = undefined;
    this.#timer = undefined;
  }

  /** The session's timers were all cleared (it ended): nothing is scheduled any more. */
  forget(): void {
    this.#id = undefined;
  }

  /** Asks for the refresh again in `ms` (the session was busy with an offer). */
  retryRefresh(ms: number): void {
    this.#host.cancel(this.#id);
    this.#id = this.#host.after(ms, () => {
      this.#id = undefined;
      this.#host.refresh();
    });
  }

  /** Puts `timer` in force and schedules our refresh or the peer's deadline. */
  start(timer: SessionTimer): void {
    this.#host.cancel(this.#id);
    this.#id = undefined;
    this.#timer = timer;
    if (this.#host.ended()) return;
    const ms = timer.interval * 1000;
    if (timer.refresher === "local") {
      // RFC 4028 10: the refresher sends a refresh at half the interval.
      this.#id = this.#host.after(ms / 2, () => {
        this.#id = undefined;
        this.#host.refresh();
      });
    } else {
      // "If the side not performing refreshes does not receive a session
      // refresh request before the session expiration, it SHOULD send a BYE
      // ... at ... the session interval minus the minimum of 32 seconds and
      // one third of the session interval."
      this.#id = this.#host.after(ms - Math.min(32_000, ms / 3), () => {
        this.#id = undefined;
        this.#host.log("info", "session expired without refresh (RFC 4028); sending BYE");
        this.#host.expired();
      });
    }
  }
}

/** True when an option-tag header (Require, Supported) lists `tag`. */
export function hasOptionTag(msg: SipRequest | SipResponse, header: string, tag: string): boolean {
  return msg.headers.values(header).some((t) => t.trim().toLowerCase() === tag);
}

/**
 * Parses a Session-Expires value (RFC 4028 4): `1800;refresher=uac`.
 *
 * @example
 * ```ts
 * import { parseSessionExpires } from "./session_timer.ts";
 * parseSessionExpires("1800;refresher=uas"); // { interval: 1800, refresher: "uas" }
 * ```
 */
export function parseSessionExpires(
  value: string | null | undefined,
): { interval: number; refresher?: "uac" | "uas" } | undefined {
  if (!value) return undefined;
  const [first, ...params] = value.split(";");
  const interval = Number(first.trim());
  if (!Number.isInteger(interval) || interval <= 0) return undefined;
  let refresher: "uac" | "uas" | undefined;
  for (const p of params) {
    const [k, v] = p.split("=").map((s) => s.trim().toLowerCase());
    if (k === "refresher" && (v === "uac" || v === "uas")) refresher = v;
  }
  return { interval, refresher };
}
