/**
 * The INVITE session usage (RFC 3261 sections 13-15 with RFC 6026, offer and
 * answer of RFC 3264, PRACK of RFC 3262, UPDATE of RFC 3311, session timers
 * of RFC 4028): one {@linkcode InviteSession} per call, on the UA core's
 * transactions and a {@linkcode Dialog}.
 *
 * ```
 * UAC: calling --1xx with tag--> early --2xx (ACK)--> confirmed --BYE sent/received--> terminated
 *         \_____________\______non-2xx / CANCEL (487) / timeout_______________________/
 * UAS: calling --1xx sent--> early --2xx sent--> confirmed (2xx resent until ACK; none: BYE)
 *         \_____________\______reject / CANCEL (487) / BYE in the early dialog__/
 * ```
 *
 * In a confirmed session either side may modify it (re-INVITE or UPDATE
 * with a new offer; a rejected one rolls back, 491 glare retries after the
 * back-off of 14.1), INFO and OPTIONS are answered, and BYE ends it; once
 * ended, the dialog handler goes and the UA core answers 481.
 *
 * @module
 */

import { Dialog } from "../dialog.ts";
import { SipRequestError } from "../errors.ts";
import {
  cloneMessage,
  createResponse,
  formatUri,
  type NameAddr,
  type SipRequest,
  type SipResponse,
  type Uri,
} from "../message.ts";
import { type AnyServerTransaction, localTagFor } from "../transaction/mod.ts";
import type { IncomingRequest, SendResult, UserAgent } from "../ua.ts";
import {
  type DtmfInfoDetail,
  isOfferRejection,
  type OfferAnswerHandler,
  type ReinviteDetail,
  type RingingDetail,
  type SessionEnd,
  type SessionState,
} from "./types.ts";
import { hasOptionTag, SessionTimerState } from "./session_timer.ts";
import { ReliableProvisionals } from "./reliable.ts";

/** Methods an INVITE session answers in its dialog (Allow). */
export const SESSION_METHODS = [
  "INVITE",
  "ACK",
  "CANCEL",
  "BYE",
  "OPTIONS",
  "INFO",
  "PRACK",
  "UPDATE",
] as const;

const SDP = "application/sdp";

/** What the session owes the peer for an answer it sent in a 2xx to our INVITE (13.2.2.4). */
interface SentAck {
  ack: SipRequest;
  /** The INVITE's CSeq number. */
  seq: number;
}

/**
 * One INVITE session (a call), as caller (`role` "uac", from
 * {@linkcode placeCall}) or callee ("uas", from an {@linkcode InviteAcceptor}).
 * Events (CustomEvent `detail`): "ringing" {@linkcode RingingDetail},
 * "answered" `{status}`, "ended" {@linkcode SessionEnd}, "reinvite"
 * {@linkcode ReinviteDetail}, "dtmf_info" {@linkcode DtmfInfoDetail},
 * "redirected" {@linkcode RedirectedDetail}, "refreshed" `{method}`.
 */
export class InviteSession extends EventTarget {
  /** The UA core. */
  readonly ua: UserAgent;
  /** Caller or callee. */
  readonly role: "uac" | "uas";
  /** The Call-ID. */
  readonly callId: string;
  /** Resolves true once answered (2xx), false when the session ended before. */
  readonly answered: Promise<boolean>;
  /** Resolves when the session ends, with why. */
  readonly finished: Promise<SessionEnd>;
  /** The confirmed dialog (or, before the answer, the early dialog of the last 1xx). */
  dialog?: Dialog;
  /** Our last SDP (offer or answer). */
  localSdp?: string;
  /** The peer's last SDP. */
  remoteSdp?: string;

  #state: SessionState = "calling";
  #media?: OfferAnswerHandler;
  #end?: SessionEnd;
  #resolveAnswered!: (v: boolean) => void;
  #resolveFinished!: (end: SessionEnd) => void;
  #registered = new Set<string>();
  /** Our offer waits for its answer (initial INVITE, re-INVITE, UPDATE, reliable 1xx). */
  #offerOut = false;
  /** A peer's offer waits for our answer. */
  #offerIn = false;
  /** Our offer in an UPDATE waits for its answer (RFC 3311). */
  #updateOut = false;
  /** update() runs (with its 491 back-off). */
  #updating = false;
  /**
   * Before the 2xx: the initial offer/answer completed in a reliable 1xx and
   * its PRACK, so an UPDATE with an offer may go in the early dialog (RFC 3311 5.1).
   */
  #earlyExchangeDone = false;
  /** reinvite() runs (with its 491 back-off). */
  #reinviting = false;
  /** Our re-INVITE transaction is in progress (14.2: then a peer's INVITE gets 491). */
  #reinviteTx = false;
  /** A re-INVITE from the peer is in progress (until its ACK). */
  #peerReinvite?: { seq: number; offeredInAnswer: boolean };
  #byeSent = false;
  #timers: number[] = [];
  readonly #sessionTimers = new SessionTimerState({
    after: (ms, fn) => this.#after(ms, fn),
    cancel: (id) => this.#cancelTimer(id),
    ended: () => this.#end !== undefined,
    refresh: () =>
      void this.#refresh().catch((e) => this.ua.log("warn", `session refresh failed: ${e}`)),
    expired: () => void this.bye("timeout").catch(() => {}),
    log: (level, message) => this.ua.log(level, message),
  });
  /** ACKs we sent for 2xx to our INVITEs, by To tag and CSeq: re-sent for every retransmission. */
  readonly #acks = new Map<string, SentAck>();

  // --- UAC state ---
  /** The INVITE as last sent (after auth and redirects): ACKs copy its credentials. */
  #invite?: SipRequest;
  #abort = new AbortController();
  #cancelReason?: "cancelled" | "no_answer";
  #earlyDialogs = new Map<string, Dialog>();
  #rseqSeen = new Map<string, number>();
  #earlyAnswerApplied = false;
  /** The fork (To tag) whose SDP the media layer follows before the answer. */
  #earlyAnswerTag?: string;
  /**
   * Each fork's early SDP, by To tag: its answer to the offer of our INVITE
   * (a 1xx with SDP), or, for an INVITE without SDP, its offer in a reliable
   * 1xx (answered in our PRACK). When a fork answers, media follows it.
   */
  #forkSdp = new Map<string, string>();

  // --- UAS state ---
  #request?: SipRequest;
  #transaction?: AnyServerTransaction;
  readonly #reliable = new ReliableProvisionals({
    after: (ms, fn) => void this.#after(ms, fn),
    t1: () => this.ua.transactions.timers.t1,
    open: () => !this.#end && !this.#finalSent,
    resend: (res) => void this.ua.transport.sendResponse(res, this.#uasInfo).catch(() => {}),
    gaveUp: () => void this._reject(504, "No PRACK").catch(() => {}),
  });
  #earlyAnswer?: string;
  #earlyAnswerReliable = false;
  #offerInReliable?: string;
  #finalSent = false;
  #remoteOffer?: string;
  #uasInfo?: IncomingRequest["info"];

  /** @internal Use {@linkcode placeCall} or an {@linkcode InviteAcceptor}. */
  constructor(ua: UserAgent, role: "uac" | "uas", callId: string, media?: OfferAnswerHandler) {
    super();
    this.ua = ua;
    this.role = role;
    this.callId = callId;
    this.#media = media;
    this.answered = new Promise((resolve) => (this.#resolveAnswered = resolve));
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
  }

  /** The current state. */
  get state(): SessionState {
    return this.#state;
  }

  /** How the session ended, once it did. */
  get end(): SessionEnd | undefined {
    return this.#end;
  }

  /** The media layer (set by accept() on the callee side). */
  get media(): OfferAnswerHandler | undefined {
    return this.#media;
  }

  /** The session interval in force (RFC 4028), seconds, or undefined. */
  get sessionExpires(): number | undefined {
    return this.#sessionTimers.current?.interval;
  }

  // ------------------------------------------------------------------
  // Common machinery
  // ------------------------------------------------------------------

  #emit<T>(type: string, detail: T): void {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    } catch (e) {
      this.ua.log("error", `session event ${type} listener failed: ${(e as Error).stack ?? e}`);
    }
  }

  #after(ms: number, fn: () => void): number {
    const id = this.ua.clock.setTimeout(() => {
      this.#timers = this.#timers.filter((t) => t !== id);
      fn();
    }, ms) as unknown as number;
    this.#timers.push(id);
    return id;
  }

  #cancelTimer(id: number | undefined): void {
    if (id === undefined) return;
    this.ua.clock.clearTimeout(id as never);
    this.#timers = this.#timers.filter((t) => t !== id);
  }

  /** @internal Ends the session once: event, promises, handlers go. */
  _finish(end: SessionEnd, keepDialogHandlers = false): void {
    if (this.#end) return;
    this.#end = end;
    this.#state = "terminated";
    for (const id of this.#timers) this.ua.clock.clearTimeout(id as never);
    this.#timers = [];
    this.#sessionTimers.forget();
    if (!keepDialogHandlers) this.#unregisterAll();
    // Whoever waits for a PRACK or for their turn to send a reliable 1xx learns it is over.
    this.#reliable.abort(new Error(`The call ended (${end.reason})`));
    this.dialog?.terminate();
    for (const d of this.#earlyDialogs.values()) d.terminate();
    if (this.#invite) {
      this.ua.removeResponseLeg(this.callId, this.#invite.from.params.tag ?? "");
    }
    this.#resolveAnswered(false);
    this.#resolveFinished(end);
    this.#emit("ended", end);
  }

  #unregisterAll(): void {
    for (const key of this.#registered) {
      const [callId, localTag, remoteTag] = key.split("\n");
      this.ua.removeDialog({ callId, localTag, remoteTag });
    }
    this.#registered.clear();
  }

  #register(dialog: Dialog): void {
    if (this.#registered.has(dialog.key)) return;
    this.#registered.add(dialog.key);
    this.ua.addDialog(dialog.id, (incoming) => this.#onRequest(dialog, incoming));
  }

  #unregister(dialog: Dialog): void {
    if (!this.#registered.delete(dialog.key)) return;
    this.ua.removeDialog(dialog.id);
  }

  #confirmed(status: number): void {
    this.#state = "confirmed";
    this.#resolveAnswered(true);
    this.#emit("answered", { status });
  }

  /** The headers every INVITE and its 2xx carry: what we allow and support. */
  #capabilities(): [string, string][] {
    return [
      ["Allow", SESSION_METHODS.join(", ")],
      ["Supported", "100rel, timer"],
    ];
  }

  /** Builds and sends a response on a server transaction; returns it. */
  #respond(
    incoming: IncomingRequest,
    status: number,
    options: {
      body?: string;
      headers?: [string, string][];
      contact?: NameAddr;
      reason?: string;
    } = {},
  ): SipResponse {
    const req = incoming.request;
    const headers: [string, string][] = [];
    if (options.contact) headers.push(["Contact", `<${formatUri(options.contact.uri)}>`]);
    headers.push(...(options.headers ?? []));
    const res = createResponse(req, status, {
      toTag: localTagFor(req),
      reason: options.reason,
      headers,
      body: options.body,
      contentType: options.body !== undefined ? SDP : undefined,
    });
    incoming.transaction?.respond(res);
    return res;
  }

  /** Sends a request in the dialog and keeps the dialog up to date with its answer. */
  async #send(
    method: string,
    options: {
      body?: string;
      contentType?: string;
      headers?: [string, string][];
      dialog?: Dialog;
      onFinal?: (res: SipResponse, req: SipRequest) => void;
    } = {},
  ): Promise<SendResult> {
    const dialog = options.dialog ?? this.dialog;
    if (!dialog) throw new TypeError(`Cannot send ${method}: the session has no dialog`);
    const req = dialog.createRequest(method, {
      body: options.body,
      contentType: options.body !== undefined ? options.contentType ?? SDP : undefined,
      headers: options.headers,
    });
    const result = await this.ua.send(req, { dialog, onFinal: options.onFinal });
    dialog.receiveResponse(result.response);
    return result;
  }

  /**
   * The ACK for a 2xx to one of our INVITEs (13.2.2.4): built by the dialog
   * (route set, remote target) with the INVITE's CSeq number and the same
   * credentials as the INVITE; kept so that each retransmission of the 2xx
   * gets it again.
   */
  async #ack(dialog: Dialog, invite: SipRequest, res: SipResponse, body?: string): Promise<void> {
    const key = `${res.to.params.tag ?? ""}|${res.cseq.seq}`;
    const known = this.#acks.get(key);
    if (known) {
      await this.#sendAck(known.ack, true);
      return;
    }
    const ack = dialog.createRequest("ACK", {
      cseq: res.cseq.seq,
      body,
      contentType: body !== undefined ? SDP : undefined,
    });
    for (const name of ["Authorization", "Proxy-Authorization"]) {
      for (const value of invite.headers.getAll(name)) ack.headers.append(name, value);
    }
    this.#acks.set(key, { ack, seq: res.cseq.seq });
    await this.#sendAck(ack, false);
  }

  async #sendAck(ack: SipRequest, again: boolean): Promise<void> {
    try {
      const [target] = await this.ua.targetsFor(ack);
      await this.ua.transactions.sendAck(ack, target, { keepVia: again });
    } catch (e) {
      this.ua.log("warn", `cannot send ACK: ${(e as Error).message}`);
    }
  }

  /** A 2xx to an INVITE we do not keep (another fork, a cancelled call): ACK, then BYE (13.2.2.4, 15). */
  async #ackAndBye(invite: SipRequest, res: SipResponse): Promise<void> {
    let dialog: Dialog;
    try {
      dialog = Dialog.createUac(invite, res);
    } catch (e) {
      this.ua.log("warn", `cannot ACK a 2xx: ${(e as Error).message}`);
      return;
    }
    const key = `${res.to.params.tag ?? ""}|${res.cseq.seq}`;
    const seen = this.#acks.has(key);
    await this.#ack(dialog, invite, res);
    if (seen) return; // a retransmission: the BYE went already
    // Not awaited: responses to the INVITE that come meanwhile are handled at once.
    this.ua.send(dialog.createRequest("BYE"), { dialog }).catch((e) =>
      this.ua.log("debug", `BYE to an extra fork failed: ${(e as Error).message}`)
    );
  }

  // ------------------------------------------------------------------
  // Public operations
  // ------------------------------------------------------------------

  /**
   * Cancels an outgoing call that has no final answer yet (9.1): CANCEL
   * once a provisional response came; "ended" follows with reason
   * "cancelled" when the 487 arrives (or 64*T1 later). A 2xx that crosses
   * the CANCEL is acknowledged and the call hung up with BYE.
   */
  cancel(reason: "cancelled" | "no_answer" = "cancelled"): void {
    if (this.role !== "uac" || this.#end || this.#state === "confirmed") return;
    this.#cancelReason ??= reason;
    this.#abort.abort();
  }

  /**
   * Ends a confirmed session with BYE (15.1.1): the session counts as ended
   * as soon as the BYE is sent ("ended" reason "local_bye"); resolves when
   * its transaction completes. Before the answer, a caller cancels instead
   * and a callee rejects with 480... use {@linkcode hangup} for either.
   */
  async bye(reason: SessionEnd["reason"] = "local_bye"): Promise<void> {
    if (this.#end || this.#byeSent) return;
    if (this.#state !== "confirmed" || !this.dialog) {
      this.hangup();
      return;
    }
    this.#byeSent = true;
    const dialog = this.dialog;
    const request = dialog.createRequest("BYE");
    // 15.1.1: the session ends as the BYE goes; a crossing BYE still finds
    // the dialog until the BYE completes.
    this._finish({ reason }, true);
    try {
      // 15: "the callee's UA MUST NOT send a BYE on a confirmed dialog until
      // it has received an ACK for its 2xx response or until the server
      // transaction times out."
      if (this.#awaitingAck) await new Promise<void>((resolve) => this.#ackWaiters.push(resolve));
      await this.ua.send(request, { dialog });
    } catch (e) {
      this.ua.log("debug", `BYE failed: ${(e as Error).message}`);
    } finally {
      this.#unregisterAll();
    }
  }

  /** Hangs up in whatever state: cancel while calling, reject 480 an unanswered incoming call, BYE once answered. */
  hangup(): Promise<void> {
    if (this.#end) return Promise.resolve();
    if (this.#state === "confirmed") return this.bye();
    if (this.role === "uac") {
      this.cancel();
      return Promise.resolve();
    }
    return this._reject(480, "Temporarily Unavailable");
  }

  /**
   * Modifies the session with a re-INVITE carrying a new offer from the
   * media layer (14.1). Resolves true when the peer accepted it, false when
   * it rejected it (the media layer rolled back, the dialog unchanged). A
   * 491 (glare) is retried after the back-off of 14.1, at most 3 times.
   */
  async reinvite(options: { headers?: [string, string][] } = {}): Promise<boolean> {
    if (this.#state !== "confirmed" || !this.dialog || this.#end) {
      throw new TypeError("Cannot re-INVITE: the session is not established");
    }
    // 14.1: "a UAC MUST NOT initiate a re-INVITE while another INVITE
    // transaction is in progress in either direction": wait for it (its ACK).
    await this.#whenIdle();
    if (this.#state !== "confirmed" || this.#end) {
      throw new TypeError("Cannot re-INVITE: the session ended");
    }
    this.#reinviting = true;
    try {
      for (let attempt = 1, raised = 0;; attempt++) {
        const status = await this.#reinviteOnce(options.headers ?? []);
        if (status === "ok") return true;
        if (status === "raised") {
          // 422 with a larger Min-SE (RFC 4028): at once again with the larger interval.
          if (++raised > 2 || this.#end || this.#state !== "confirmed") return false;
          attempt--;
          continue;
        }
        if (status !== 491 || attempt >= 3 || this.#end) return false;
        await this.#glareBackoff();
        if (this.#end || this.#state !== "confirmed") return false;
      }
    } finally {
      this.#reinviting = false;
    }
  }

  #busy(): boolean {
    // 14.1: no new INVITE while one is in progress in either direction, and a callee's INVITE
    // is in progress until the ACK of its 2xx (RFC 6026 Accepted): a re-INVITE sent before it
    // would take that ACK for the answer to the re-INVITE's offer.
    return this.#reinviting || !!this.#peerReinvite || this.#offerIn || this.#offerOut ||
      this.#awaitingAck || this.#updating || this.#updateOut;
  }

  /** Resolves once no offer/answer exchange or INVITE transaction is in progress (at most 64*T1). */
  async #whenIdle(): Promise<void> {
    const limit = 64 * this.ua.transactions.timers.t1;
    for (let waited = 0; this.#busy(); waited += 50) {
      if (waited >= limit || this.#end) {
        throw new TypeError("Cannot re-INVITE: an offer/answer exchange is in progress");
      }
      // Not #after: a session that ends meanwhile must still wake this up.
      await new Promise<void>((resolve) => this.ua.clock.setTimeout(resolve, 50));
    }
  }

  /**
   * 14.1: "If the UAC is the owner of the Call-ID of the dialog ID ..., T
   * has a randomly chosen value between 2.1 and 4 seconds in units of 10 ms.
   * If the UAC is not the owner of the Call-ID ..., T has a randomly chosen
   * value of between 0 and 2 seconds in units of 10 ms."
   */
  #glareBackoff(): Promise<void> {
    const tens = crypto.getRandomValues(new Uint32Array(1))[0];
    const ms = this.role === "uac" ? 2100 + (tens % 191) * 10 : (tens % 201) * 10;
    return new Promise((resolve) => this.ua.clock.setTimeout(resolve, ms));
  }

  async #reinviteOnce(extra: [string, string][]): Promise<"ok" | "raised" | number> {
    this.#reinviteTx = true;
    try {
      return await this.#reinviteTransaction(extra);
    } finally {
      this.#reinviteTx = false;
    }
  }

  async #reinviteTransaction(extra: [string, string][]): Promise<"ok" | "raised" | number> {
    const dialog = this.dialog!;
    const media = this.#media;
    const offer = media ? await media.createOffer() : undefined;
    this.#offerOut = offer !== undefined;
    let result: SendResult;
    const headers: [string, string][] = [
      ...this.#capabilities(),
      ...this.#sessionTimers.headers(),
      ...extra,
    ];
    try {
      result = await this.#send("INVITE", {
        body: offer,
        headers,
        // 2xx retransmissions of the re-INVITE get the same ACK again.
        onFinal: (res, req) => {
          if (res.status >= 200 && res.status < 300 && this.#acks.has(ackKey(res))) {
            this.#ack(dialog, req, res).catch(() => {});
          }
        },
      });
    } catch (e) {
      this.#offerOut = false;
      media?.rollback();
      // 12.2.1.2 / 14.1: a timeout or transport failure of a re-INVITE ends the dialog only on 408/481.
      if (e instanceof SipRequestError && e.status === 408) {
        this.bye("timeout").catch(() => {});
      }
      this.ua.log("warn", `re-INVITE failed: ${(e as Error).message}`);
      return e instanceof SipRequestError ? e.status : 500;
    }
    const { response, request } = result;
    if (response.status >= 200 && response.status < 300) {
      this.#offerOut = false;
      const body = response.body.length > 0 ? response.text : undefined;
      let failed: unknown;
      if (offer !== undefined) {
        if (body === undefined) {
          failed = new Error("2xx to a re-INVITE with an offer has no answer");
        } else {
          try {
            await media!.applyAnswer(body);
            this.remoteSdp = body;
            this.localSdp = offer;
          } catch (e) {
            failed = e;
          }
        }
      }
      await this.#ack(dialog, request, response);
      this.#sessionTimers.fromResponse(response);
      if (failed !== undefined) {
        // RFC 3264 / 3261 13.2.2.4: an unacceptable answer: ACK, then end the session.
        this.ua.log("warn", `answer to our re-INVITE unusable: ${(failed as Error).message}`);
        media?.rollback();
        await this.bye("failed");
        return 488;
      }
      return "ok";
    }
    this.#offerOut = false;
    media?.rollback();
    if (this.#sessionTimers.raiseMinSe(response)) return "raised";
    if (response.status === 481 || response.status === 408) {
      // 12.2.1.2 and 14.1: "If the response ... is a 481 ... or a 408 ..., the UAC SHOULD terminate the dialog".
      this._finish({ reason: "failed", status: response.status, phrase: response.reason });
    }
    return response.status;
  }

  /**
   * Moves our end of the session to a new Contact (mobility, RFC 3261
   * target refresh): a re-INVITE with the new Contact and a new offer from
   * the media layer (which moved its RTP socket already). When the peer
   * rejects it, the old Contact stays. Resolves as {@linkcode reinvite}.
   */
  async updateLocalContact(uri: Uri): Promise<boolean> {
    if (!this.dialog) throw new TypeError("Cannot update the Contact: the session has no dialog");
    const previous = this.dialog.localContact;
    this.dialog.localContact = { uri: structuredClone(uri), params: {} };
    const ok = await this.reinvite();
    if (!ok && this.dialog) this.dialog.localContact = previous;
    return ok;
  }

  /**
   * Why an UPDATE with an offer cannot go now (RFC 3311 5.1), or undefined
   * when it can: the peer must list UPDATE in its Allow; before the answer,
   * the initial offer/answer must have completed in a reliable provisional
   * response and its PRACK.
   */
  #updateRefusal(): string | undefined {
    if (this.#end) return "the session ended";
    if (!this.#media) return "the session has no media layer";
    if (!this.#peerAllows.has("UPDATE")) return "the peer does not allow UPDATE";
    if (this.#state === "confirmed") return this.dialog ? undefined : "the session has no dialog";
    if (this.#state !== "early" || !this.#updateDialog()) return "there is no early dialog";
    if (!this.#earlyExchangeDone) {
      return "the initial offer/answer has not completed in a reliable provisional response";
    }
    return undefined;
  }

  /**
   * True when {@linkcode update} can send an UPDATE with an offer now: in a
   * confirmed session when the peer allows UPDATE, or in an early dialog once
   * the initial offer/answer completed in a reliable 1xx and its PRACK.
   */
  get canUpdate(): boolean {
    return this.#updateRefusal() === undefined;
  }

  /** The dialog an early UPDATE goes in: the callee's, or the fork whose answer is in force. */
  #updateDialog(): Dialog | undefined {
    if (this.role === "uas") return this.dialog;
    return this.#earlyAnswerTag !== undefined
      ? this.#earlyDialogs.get(this.#earlyAnswerTag)
      : undefined;
  }

  /**
   * Modifies the session with an UPDATE carrying a new offer from the media
   * layer (RFC 3311): in a confirmed session (no ACK round, and allowed
   * while the peer's INVITE transaction is still open), or in an early
   * dialog before the answer. Waits while another offer/answer is in
   * progress. Resolves true when the peer accepted it; false when it
   * refused it (the media layer rolled back). A 491 (glare) is retried after
   * the back-off of RFC 3261 14.1 (RFC 3311 5.2), at most 3 times. Throws
   * when UPDATE cannot be used (see {@linkcode canUpdate}).
   */
  async update(options: { headers?: [string, string][] } = {}): Promise<boolean> {
    let why = this.#updateRefusal();
    if (why) throw new TypeError(`Cannot send UPDATE: ${why}`);
    // RFC 3311 5.1: no offer while one of ours waits for an answer or one of the peer's for ours.
    await this.#whenOfferIdle();
    why = this.#updateRefusal();
    if (why) throw new TypeError(`Cannot send UPDATE: ${why}`);
    this.#updating = true;
    try {
      for (let attempt = 1, raised = 0;; attempt++) {
        const status = await this.#updateTransaction(options.headers ?? []);
        if (status === "ok") return true;
        if (status === "raised") {
          if (++raised > 2 || this.#end) return false;
          attempt--;
          continue;
        }
        if (status !== 491 || attempt >= 3 || this.#end) return false;
        await this.#glareBackoff();
        if (this.#updateRefusal()) return false;
        await this.#whenOfferIdle();
      }
    } finally {
      this.#updating = false;
    }
  }

  /** Resolves once no offer/answer exchange is in progress in either direction (at most 64*T1). */
  async #whenOfferIdle(): Promise<void> {
    const limit = 64 * this.ua.transactions.timers.t1;
    const busy = () =>
      this.#reinviting || this.#offerIn || this.#offerOut || this.#updateOut ||
      (this.#peerReinvite?.offeredInAnswer ?? false);
    for (let waited = 0; busy(); waited += 50) {
      if (waited >= limit || this.#end) {
        throw new TypeError("Cannot send UPDATE: an offer/answer exchange is in progress");
      }
      await new Promise<void>((resolve) => this.ua.clock.setTimeout(resolve, 50));
    }
  }

  async #updateTransaction(extra: [string, string][]): Promise<"ok" | "raised" | number> {
    const early = this.#state !== "confirmed";
    const dialog = early ? this.#updateDialog()! : this.dialog!;
    const media = this.#media!;
    const offer = await media.createOffer();
    this.#updateOut = true;
    let response: SipResponse;
    try {
      ({ response } = await this.#send("UPDATE", {
        dialog,
        body: offer,
        headers: [
          ...this.#capabilities(),
          ...(early ? [] : this.#sessionTimers.headers()),
          ...extra,
        ],
      }));
    } catch (e) {
      this.#updateOut = false;
      media.rollback();
      this.ua.log("warn", `UPDATE failed: ${(e as Error).message}`);
      return e instanceof SipRequestError ? e.status : 500;
    }
    this.#updateOut = false;
    if (response.status >= 200 && response.status < 300) {
      const body = response.body.length > 0 ? response.text : undefined;
      try {
        if (body === undefined) throw new Error("the 2xx to an UPDATE with an offer has no answer");
        await media.applyAnswer(body);
        this.remoteSdp = body;
        this.localSdp = offer;
      } catch (e) {
        // The peer thinks its answer is in force and we cannot use it: end the call.
        this.ua.log("warn", `answer to our UPDATE unusable: ${(e as Error).message}`);
        media.rollback();
        await this.hangup();
        return 488;
      }
      if (!early) this.#sessionTimers.fromResponse(response);
      return "ok";
    }
    media.rollback();
    if (!early && this.#sessionTimers.raiseMinSe(response)) return "raised";
    if (!early && (response.status === 481 || response.status === 408)) {
      // 12.2.1.2: a 481 or 408 to a request in the dialog ends it.
      this._finish({ reason: "failed", status: response.status, phrase: response.reason });
    }
    return response.status;
  }

  /** Sends an INFO in the session (e.g. application/dtmf-relay) and resolves with its final response. */
  async sendInfo(body: string, contentType: string): Promise<SipResponse> {
    if (this.#state !== "confirmed" || this.#end) {
      throw new TypeError("Cannot send INFO: the session is not established");
    }
    const { response } = await this.#send("INFO", { body, contentType });
    return response;
  }

  // ------------------------------------------------------------------
  // In-dialog requests from the peer
  // ------------------------------------------------------------------

  #onRequest(dialog: Dialog, incoming: IncomingRequest): void | Promise<void> {
    const req = incoming.request;
    if (req.method === "ACK") return this.#onAck(dialog, req);
    if (this.#end && req.method !== "BYE") {
      // Our BYE is on its way: the dialog is over for everything but a crossing BYE.
      return void this.#respond(incoming, 481);
    }
    if (!dialog.receiveRequest(req)) {
      // 12.2.2: out of order.
      return void this.#respond(incoming, 500, { reason: "Out Of Order CSeq" });
    }
    switch (req.method) {
      case "BYE":
        return this.#onBye(incoming);
      case "INVITE":
        return this.#onReinvite(dialog, incoming);
      case "UPDATE":
        return this.#onUpdate(dialog, incoming);
      case "PRACK":
        return this.#onPrack(incoming);
      case "INFO":
        return this.#onInfo(incoming);
      case "OPTIONS":
        this.#respond(incoming, 200, {
          headers: [...this.#capabilities(), ["Accept", `${SDP}, application/dtmf-relay`]],
        });
        return;
      default:
        this.#respond(incoming, 405, { headers: [["Allow", SESSION_METHODS.join(", ")]] });
    }
  }

  #onBye(incoming: IncomingRequest): void {
    this.#respond(incoming, 200);
    if (this.#end) return; // BYE crossing our BYE: both sides are done
    if (this.role === "uas" && !this.#finalSent) {
      // 15.1.2: a BYE in an early dialog from the caller; "the UAS MUST
      // still respond to any pending requests received for that dialog ...
      // with a 487 (Request Terminated)".
      this.#sendFinal(487);
    }
    this._finish({ reason: "remote_bye" });
  }

  async #onAck(dialog: Dialog, ack: SipRequest): Promise<void> {
    // The ACK of a 2xx to an INVITE (initial or re-INVITE) we answered.
    const body = ack.body.length > 0 ? ack.text : undefined;
    const pending = this.#peerReinvite;
    if (pending && ack.cseq.seq === pending.seq) {
      this.#peerReinvite = undefined;
      if (pending.offeredInAnswer) await this.#answerInAck(body);
      return;
    }
    if (this.role === "uas" && this.#awaitingAck && ack.cseq.seq === this.#request?.cseq.seq) {
      this.#acked();
      if (this.#offerOut && !this.#end) await this.#answerInAck(body);
    }
    void dialog;
  }

  #awaitingAck = false;
  #ackWaiters: (() => void)[] = [];

  #acked(): void {
    this.#awaitingAck = false;
    for (const wake of this.#ackWaiters.splice(0)) wake();
  }

  /** The answer to the offer we put in a 2xx comes in the ACK (13.3.1.4 with RFC 3264). */
  async #answerInAck(body: string | undefined): Promise<void> {
    this.#offerOut = false;
    if (body === undefined) {
      this.#media?.rollback();
      this.ua.log("warn", "the ACK carries no answer to our offer; ending the session");
      await this.bye("failed");
      return;
    }
    try {
      await this.#media!.applyAnswer(body);
      this.remoteSdp = body;
    } catch (e) {
      this.ua.log("warn", `answer in ACK unusable: ${(e as Error).message}`);
      this.#media?.rollback();
      await this.bye("failed");
    }
  }

  async #onReinvite(dialog: Dialog, incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    if (this.#state !== "confirmed") {
      // 14.2: no re-INVITE before the initial INVITE completed.
      dialog.refreshRejected(req);
      this.#respond(incoming, 491);
      return;
    }
    if (this.#reinviteTx || this.#offerOut || this.#updateOut) {
      // 14.2 and RFC 3311 5.2: "A UAS that receives a second INVITE before it sends the final
      // response to a first INVITE with a lower CSeq sequence number on the
      // same dialog MUST return a 500 ... A UAS that receives an INVITE on a
      // dialog while an INVITE it had sent on that dialog is in progress MUST
      // return a 491 (Request Pending)".
      dialog.refreshRejected(req);
      this.#respond(incoming, 491);
      return;
    }
    if (this.#peerReinvite || this.#offerIn) {
      dialog.refreshRejected(req);
      this.#respond(incoming, 500, {
        headers: [["Retry-After", String(1 + (crypto.getRandomValues(new Uint8Array(1))[0] % 10))]],
      });
      return;
    }
    const tooSmall = this.#checkSessionExpires(incoming);
    if (tooSmall) {
      dialog.refreshRejected(req);
      return;
    }
    const media = this.#media;
    const offer = req.body.length > 0 ? req.text : undefined;
    let body: string | undefined;
    this.#offerIn = offer !== undefined;
    try {
      if (offer !== undefined) body = await media!.createAnswer(offer);
      else if (media) body = await media.createOffer();
    } catch (e) {
      this.#offerIn = false;
      dialog.refreshRejected(req);
      const status = isOfferRejection(e) ? 488 : 500;
      this.ua.log("info", `re-INVITE refused (${status}): ${(e as Error).message}`);
      this.#respond(incoming, status);
      return;
    }
    this.#offerIn = false;
    if (this.#end) return;
    if (offer !== undefined) {
      this.remoteSdp = offer;
      this.localSdp = body;
    } else if (body !== undefined) {
      this.#offerOut = true;
      this.localSdp = body;
    }
    this.#peerReinvite = { seq: req.cseq.seq, offeredInAnswer: offer === undefined && !!body };
    const timer = this.#sessionTimers.fromRequest(req);
    this.#respond(incoming, 200, {
      body,
      contact: dialog.localContact,
      headers: [...this.#capabilities(), ...timer],
    });
    const tx = incoming.transaction;
    if (tx && "retransmit2xxUntilAck" in tx) {
      tx.user.onAckTimeout = () => {
        if (this.#peerReinvite?.seq === req.cseq.seq) {
          this.#peerReinvite = undefined;
          this.bye("no_ack").catch(() => {});
        }
      };
      tx.retransmit2xxUntilAck();
    }
    this.#emit<ReinviteDetail>("reinvite", { offer, method: "INVITE" });
  }

  async #onUpdate(dialog: Dialog, incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    const offer = req.body.length > 0 ? req.text : undefined;
    if (
      offer !== undefined &&
      (this.#offerOut || this.#offerIn || this.#reinviteTx || this.#updateOut)
    ) {
      // RFC 3311 5.2: "If an UPDATE is received that contains an offer, and
      // the UAS has generated an offer (in an UPDATE, PRACK or INVITE) to
      // which it has not yet received an answer, the UAS MUST reject the
      // UPDATE with a 491 response."
      dialog.refreshRejected(req);
      this.#respond(incoming, 491);
      return;
    }
    if (this.#checkSessionExpires(incoming)) {
      dialog.refreshRejected(req);
      return;
    }
    let answer: string | undefined;
    if (offer !== undefined) {
      try {
        answer = await this.#mediaFor(incoming).createAnswer(offer);
      } catch (e) {
        dialog.refreshRejected(req);
        this.#respond(incoming, isOfferRejection(e) ? 488 : 500);
        return;
      }
      this.remoteSdp = offer;
      this.localSdp = answer;
    }
    const timer = this.#sessionTimers.fromRequest(req);
    this.#respond(incoming, 200, {
      body: answer,
      contact: dialog.localContact,
      headers: [...this.#capabilities(), ...timer],
    });
    if (offer !== undefined) this.#emit<ReinviteDetail>("reinvite", { offer, method: "UPDATE" });
  }

  #mediaFor(incoming: IncomingRequest): OfferAnswerHandler {
    if (!this.#media) {
      throw Object.assign(new Error(`No media layer to answer ${incoming.request.method}`), {
        name: "OfferRejectedError",
      });
    }
    return this.#media;
  }

  #onInfo(incoming: IncomingRequest): void {
    const req = incoming.request;
    const type = req.contentType;
    if (type === "application/dtmf-relay" || type === "application/dtmf") {
      const digit = parseDtmfInfo(req.text);
      if (digit) this.#emit<DtmfInfoDetail>("dtmf_info", digit);
    }
    this.#respond(incoming, 200);
  }

  // ------------------------------------------------------------------
  // Session timers (RFC 4028)
  // ------------------------------------------------------------------

  /** 422 when a request asks for a session interval below our minimum (RFC 4028 8.1). */
  #checkSessionExpires(incoming: IncomingRequest): boolean {
    const minSe = this.#sessionTimers.tooSmall(incoming.request);
    if (minSe === undefined) return false;
    this.#respond(incoming, 422, { headers: [["Min-SE", String(minSe)]] });
    return true;
  }

  /** A session refresh (RFC 4028 7.4): UPDATE without a body when the peer allows it, else re-INVITE. */
  async #refresh(): Promise<void> {
    if (this.#end || this.#state !== "confirmed") return;
    const t = this.#sessionTimers.current;
    if (!t) return;
    if (
      this.#reinviting || this.#peerReinvite || this.#offerIn || this.#offerOut || this.#updating ||
      this.#updateOut
    ) {
      // Busy with an offer: try again a little later.
      this.#sessionTimers.retryRefresh(2_000);
      return;
    }
    if (this.#peerAllows.has("UPDATE")) {
      let response: SipResponse;
      for (let raised = 0;; raised++) {
        response = (await this.#send("UPDATE", {
          headers: [...this.#capabilities(), ...this.#sessionTimers.headers()],
        })).response;
        // 422: again at once with the peer's larger Min-SE (at most twice).
        if (raised >= 2 || this.#end || !this.#sessionTimers.raiseMinSe(response)) break;
      }
      if (this.#end) return;
      if (response.status >= 200 && response.status < 300) {
        this.#sessionTimers.fromResponse(response);
        this.#emit("refreshed", { method: "UPDATE" });
        return;
      }
      if (response.status === 481 || response.status === 408) {
        this._finish({ reason: "failed", status: response.status, phrase: response.reason });
        return;
      }
      if (response.status === 491) {
        // Glare with the peer's own UPDATE or re-INVITE: again after the 14.1 back-off.
        await this.#glareBackoff();
        if (!this.#end && this.#sessionTimers.current && !this.#sessionTimers.scheduled) {
          await this.#refresh();
        }
        return;
      }
      if (!this.#sessionTimers.current) return;
    }
    const ok = await this.reinvite();
    if (ok) this.#emit("refreshed", { method: "INVITE" });
    else if (!this.#end && !this.#sessionTimers.scheduled && this.#sessionTimers.current) {
      // Not accepted: the session would expire; RFC 4028 10 has the refresher end it.
      await this.bye("timeout");
    }
  }

  /** Methods the peer said it allows (Allow of its INVITE or 2xx). */
  #peerAllows = new Set<string>();

  #notePeerAllow(msg: SipRequest | SipResponse): void {
    for (const m of msg.headers.values("Allow")) this.#peerAllows.add(m.trim().toUpperCase());
  }

  // ------------------------------------------------------------------
  // UAC side
  // ------------------------------------------------------------------

  /** @internal Sends the initial INVITE (placeCall does this). */
  _startUac(
    invite: SipRequest,
    media: OfferAnswerHandler,
    offer: string | undefined,
    options: { followRedirects: boolean; maxRedirects: number; noAnswer: number },
  ): void {
    this.#media = media;
    this.#invite = invite;
    this.localSdp = offer;
    this.#offerOut = offer !== undefined;
    const fromTag = invite.from.params.tag ?? "";
    // 2xx after timer M (retransmissions, late forks) still get their ACK.
    this.ua.addResponseLeg(this.callId, fromTag, (res) => {
      const invite = this.#invite;
      if (invite) this.#inOrder(() => this.#on2xx(res, invite)).catch(() => {});
    });
    if (options.noAnswer > 0) this.#after(options.noAnswer, () => this.cancel("no_answer"));
    this.#sendInvite(invite, options, 0);
  }

  #sendInvite(
    invite: SipRequest,
    options: { followRedirects: boolean; maxRedirects: number },
    intervalRetries: number,
  ): void {
    this.#invite = invite;
    this.ua.send(invite, {
      followRedirects: options.followRedirects,
      maxRedirects: options.maxRedirects,
      signal: this.#abort.signal,
      onRequest: (req) => (this.#invite = req),
      onProvisional: (res) => this.#inOrder(() => this.#on1xx(res)).catch((e) => this.#failed(e)),
      onFinal: (res, req) => {
        if (res.status >= 200 && res.status < 300) {
          this.#inOrder(() => this.#on2xx(res, req)).catch((e) => {
            this.#failed(e);
            // A 2xx we cannot process (a broken Contact...): do not leave the call hanging.
            if (this.#state === "confirmed") this.bye("failed").catch(() => {});
            else this._finish({ reason: "failed", status: res.status, phrase: String(e) });
          });
        }
      },
      onRedirect: (from, to, res) =>
        this.#emit("redirected", { from: formatUri(from), to: formatUri(to), status: res.status }),
    }).then(({ response, request }) => {
      const minSe = Number(response.headers.get("Min-SE")?.split(";")[0].trim());
      if (
        response.status === 422 && Number.isInteger(minSe) && minSe > 0 && intervalRetries < 2 &&
        !this.#cancelReason && !this.#end
      ) {
        // RFC 4028 7.4: "the UAC MUST ... retry the request with a
        // Session-Expires value ... at least as large as the value in the Min-SE".
        this.#sessionTimers.rememberMinSe(minSe);
        const retry = cloneMessage(request);
        retry.headers.set("CSeq", `${request.cseq.seq + 1} INVITE`);
        retry.headers.set("Session-Expires", String(minSe));
        retry.headers.set("Min-SE", String(minSe));
        retry.headers.delete("Via");
        this.#sendInvite(retry, options, intervalRetries + 1);
        return;
      }
      if (response.status >= 300) this.#onFailure(response);
    }, (e) => {
      if (this.#end || this.#state === "confirmed") return;
      this.#media?.rollback();
      const status = e instanceof SipRequestError ? e.status : (e as { status?: number }).status;
      const phrase = (e as Error).message;
      if (this.#cancelReason) this._finish({ reason: this.#cancelReason, status, phrase });
      else if (status === 408) this._finish({ reason: "timeout", status, phrase });
      else this._finish({ reason: "failed", status, phrase });
    });
  }

  /** Responses to the INVITE are handled one after the other, in the order they came. */
  #inOrder(fn: () => Promise<void>): Promise<void> {
    const run = this.#responseChain.then(fn);
    this.#responseChain = run.catch(() => {});
    return run;
  }

  #responseChain: Promise<void> = Promise.resolve();

  #failed(e: unknown): void {
    this.ua.log("error", `call ${this.callId}: ${(e as Error).stack ?? e}`);
  }

  async #on1xx(res: SipResponse): Promise<void> {
    const invite = this.#invite!;
    if (res.status === 100 || this.#end || this.#state === "confirmed") return;
    const tag = res.to.params.tag;
    let dialog: Dialog | undefined;
    if (tag) {
      dialog = this.#earlyDialogs.get(tag);
      if (!dialog) {
        try {
          dialog = Dialog.createUac(invite, res);
        } catch (e) {
          this.ua.log("warn", `1xx cannot make an early dialog: ${(e as Error).message}`);
        }
        if (dialog) {
          this.#earlyDialogs.set(tag, dialog);
          this.#register(dialog);
        }
      } else {
        // RFC 6141 / 12.1.2: a later 1xx may carry a Contact.
        const contact = safeContact(res);
        if (contact) dialog.remoteTarget = structuredClone(contact.uri);
      }
      if (dialog) this.dialog = dialog;
      if (this.#state === "calling") this.#state = "early";
      this.#notePeerAllow(res);
    }
    const body = res.body.length > 0 ? res.text : undefined;
    const reliable = hasOptionTag(res, "Require", "100rel") && res.headers.has("RSeq");
    if (reliable && dialog && tag) {
      const rseq = Number(res.headers.get("RSeq"));
      const last = this.#rseqSeen.get(tag);
      // RFC 3262 4: retransmissions "MUST be discarded"; out of order ones are not PRACKed.
      if (last !== undefined && rseq <= last) return;
      this.#rseqSeen.set(tag, rseq);
      let prackBody: string | undefined;
      if (body !== undefined) {
        if (invite.body.length > 0) {
          // This fork's answer to our offer; media plays from the first fork that answered.
          if (!this.#forkSdp.has(tag)) this.#forkSdp.set(tag, body);
          if (this.#offerOut) await this.#applyEarlyAnswer(body, tag);
        } else if (!this.#forkSdp.has(tag)) {
          // Empty INVITE: this fork's reliable 1xx has its offer, our PRACK the answer (RFC
          // 3262 5); each fork's offer is answered, and early media follows the latest one.
          try {
            prackBody = await this.#media!.createAnswer(body);
            this.remoteSdp = body;
            this.localSdp = prackBody;
            this.#forkSdp.set(tag, body);
            this.#earlyAnswerApplied = true;
            this.#earlyAnswerTag = tag;
          } catch (e) {
            this.ua.log("warn", `offer in reliable 1xx refused: ${(e as Error).message}`);
            this.cancel("cancelled");
          }
        }
      }
      this.#emit<RingingDetail>("ringing", {
        status: res.status,
        reason: res.reason,
        early_media: body !== undefined,
      });
      const prack = await this.#send("PRACK", {
        dialog,
        body: prackBody,
        headers: [["RAck", `${rseq} ${res.cseq.seq} ${res.cseq.method}`]],
      }).catch((e) => this.ua.log("warn", `PRACK failed: ${(e as Error).message}`));
      // RFC 3311 5.1: with this fork's answer (or our answer in the PRACK) in force and the
      // PRACK accepted, an UPDATE with an offer may go in this early dialog.
      if (
        prack && prack.response.status < 300 && this.#earlyAnswerApplied &&
        this.#earlyAnswerTag === tag && !this.#offerOut
      ) {
        this.#earlyExchangeDone = true;
      }
      return;
    }
    if (body !== undefined && tag && invite.body.length > 0 && !this.#forkSdp.has(tag)) {
      this.#forkSdp.set(tag, body); // a preview of this fork's answer (RFC 6337)
    }
    if (body !== undefined && this.#offerOut) await this.#applyEarlyAnswer(body, tag ?? undefined);
    this.#emit<RingingDetail>("ringing", {
      status: res.status,
      reason: res.reason,
      early_media: body !== undefined,
    });
  }

  /** An answer in a 1xx (reliable, or the preview RFC 6337 allows in an unreliable one). */
  async #applyEarlyAnswer(body: string, tag: string | undefined): Promise<void> {
    if (this.#earlyAnswerApplied) return;
    try {
      await this.#media!.applyAnswer(body);
      this.#earlyAnswerApplied = true;
      this.#earlyAnswerTag = tag;
      this.#offerOut = false;
      this.remoteSdp = body;
    } catch (e) {
      this.ua.log("warn", `early answer unusable: ${(e as Error).message}`);
    }
  }

  async #on2xx(res: SipResponse, invite: SipRequest): Promise<void> {
    const tag = res.to.params.tag ?? "";
    const key = ackKey(res);
    const known = this.#acks.get(key);
    if (known) {
      // 13.2.2.4: a retransmission of a 2xx we acknowledged: the same ACK again.
      await this.#sendAck(known.ack, true);
      return;
    }
    if (
      res.cseq.seq !== (this.#invite?.cseq.seq ?? invite.cseq.seq) && this.#state === "confirmed"
    ) {
      return; // a late 2xx to an earlier attempt: the re-INVITE path handles its own
    }
    if (this.#end || this.#state === "confirmed" || this.#cancelReason) {
      // Another fork answered too, or the 2xx crossed our CANCEL: ACK, then BYE (13.2.2.4, 15).
      await this.#ackAndBye(invite, res);
      if (this.#cancelReason && !this.#end) this._finish({ reason: this.#cancelReason });
      return;
    }
    // The first 2xx: this fork is the call.
    this.#notePeerAllow(res);
    let dialog = this.#earlyDialogs.get(tag);
    if (dialog) dialog.receiveResponse(res);
    else {
      dialog = Dialog.createUac(invite, res);
    }
    this.dialog = dialog;
    for (const [t, d] of this.#earlyDialogs) {
      if (t !== tag) {
        d.terminate();
        this.#unregister(d);
      }
    }
    this.#earlyDialogs.clear();
    this.#register(dialog);
    this.#state = "confirmed";
    const body = res.body.length > 0 ? res.text : undefined;
    let ackBody: string | undefined;
    let failure: string | undefined;
    if (this.#offerOut) {
      if (body === undefined) failure = "the 2xx has no answer to our offer";
      else {
        try {
          await this.#media!.applyAnswer(body);
          this.remoteSdp = body;
          this.#offerOut = false;
        } catch (e) {
          failure = (e as Error).message;
        }
      }
    } else if (invite.body.length > 0) {
      // Our offer was answered in a 1xx. When early media came from another
      // fork than the one that answers, this fork's answer (in its 2xx, or
      // in its own 1xx: a 2xx after a reliable 1xx need not repeat it) is the
      // one that counts now, and media follows it.
      const answer = body ?? this.#forkSdp.get(tag);
      if (
        answer !== undefined && this.#earlyAnswerTag !== undefined && this.#earlyAnswerTag !== tag
      ) {
        try {
          await this.#media!.applyAnswer(answer);
          this.remoteSdp = answer;
          this.#earlyAnswerTag = tag;
        } catch (e) {
          failure = `the answer of the fork that answered is unusable: ${(e as Error).message}`;
        }
      }
    } else if (this.#forkSdp.has(tag)) {
      // Empty INVITE, and this fork's offer came in its reliable 1xx (answered
      // in our PRACK): when media follows another fork's offer, back to this one.
      if (this.#earlyAnswerTag !== tag) {
        const offer = this.#forkSdp.get(tag)!;
        try {
          this.localSdp = await this.#media!.createAnswer(offer);
          this.remoteSdp = offer;
          this.#earlyAnswerTag = tag;
        } catch (e) {
          failure = (e as Error).message;
        }
      }
    } else if (body !== undefined) {
      // An empty INVITE: the 2xx has the offer, the ACK carries our answer.
      try {
        ackBody = await this.#media!.createAnswer(body);
        this.remoteSdp = body;
        this.localSdp = ackBody;
      } catch (e) {
        failure = (e as Error).message;
      }
    }
    await this.#ack(dialog, invite, res, ackBody);
    if (failure !== undefined) {
      // RFC 3261 13.2.2.4 / RFC 3264: ACK the 2xx, then BYE.
      this.ua.log("warn", `call ${this.callId}: ${failure}; hanging up`);
      this.#media?.rollback();
      this.#resolveAnswered(false);
      this.bye("failed").catch(() => {}); // not awaited: later 2xx copies still get their ACK
      return;
    }
    this.#sessionTimers.fromResponse(res);
    this.#confirmed(res.status);
  }

  #onFailure(res: SipResponse): void {
    if (this.#end || this.#state === "confirmed") return;
    this.#media?.rollback();
    const end = { status: res.status, phrase: res.reason };
    if (this.#cancelReason) this._finish({ reason: this.#cancelReason, ...end });
    else if ([408, 480, 487].includes(res.status)) this._finish({ reason: "no_answer", ...end });
    else this._finish({ reason: "rejected", ...end });
  }

  // ------------------------------------------------------------------
  // UAS side
  // ------------------------------------------------------------------

  /** @internal Takes the initial INVITE (the acceptor does this). */
  _startUas(incoming: IncomingRequest, noAnswer = 0): void {
    if (noAnswer > 0) {
      this.#after(noAnswer, () => {
        if (this.#end || this.#finalSent) return;
        this.#sendFinal(480);
        this.#media?.rollback();
        this._finish({ reason: "no_answer", status: 480, phrase: "Temporarily Unavailable" });
      });
    }
    this.#request = incoming.request;
    this.#transaction = incoming.transaction;
    this.#uasInfo = incoming.info;
    this.#incoming = incoming;
    const req = incoming.request;
    this.#remoteOffer = req.body.length > 0 ? req.text : undefined;
    this.#offerIn = this.#remoteOffer !== undefined;
    this.remoteSdp = this.#remoteOffer;
    this.#notePeerAllow(req);
    const tx = incoming.transaction;
    if (tx) {
      tx.user.onCancel = () => {
        this.#finalSent = true;
        this.#media?.rollback();
        this._finish({ reason: "cancelled" });
      };
      tx.user.onExpired = (status) => {
        this.#finalSent = true;
        this._finish({ reason: "timeout", status });
      };
    }
  }

  #incoming?: IncomingRequest;

  /** The peer's offer in the initial INVITE. */
  get remoteOffer(): string | undefined {
    return this.#remoteOffer;
  }

  async #uasContact(): Promise<NameAddr> {
    const info = this.#uasInfo!;
    const uri = await this.ua.contactFor({
      protocol: info.protocol,
      host: info.remote.host,
      port: info.remote.port,
    });
    return { uri, params: {} };
  }

  #checkUasOpen(what: string): void {
    if (this.#end) throw new Error(`Cannot ${what}: the call ended (${this.#end.reason})`);
    if (this.#finalSent) throw new Error(`Cannot ${what}: the call was answered already`);
  }

  /** @internal IncomingCall.progress(). */
  async _progress(
    status: number,
    options: { media?: OfferAnswerHandler; reliable?: boolean } = {},
  ): Promise<void> {
    if (status <= 100 || status >= 200) throw new RangeError(`Not a provisional status: ${status}`);
    this.#checkUasOpen("send a provisional response");
    const req = this.#request!;
    const peerRequires = hasOptionTag(req, "Require", "100rel");
    const peerSupports = peerRequires || hasOptionTag(req, "Supported", "100rel");
    const reliable = peerRequires || (options.reliable === true && peerSupports);
    if (options.media) this.#media = options.media;
    let body: string | undefined;
    if (options.media) {
      if (this.#remoteOffer !== undefined) {
        if (this.#earlyAnswer === undefined) {
          try {
            this.#earlyAnswer = await options.media.createAnswer(this.#remoteOffer);
          } catch (e) {
            if (isOfferRejection(e)) await this._reject(488);
            throw e;
          }
          this.#earlyAnswerReliable = reliable;
          this.#offerIn = false;
          this.localSdp = this.#earlyAnswer;
        }
        body = this.#earlyAnswer;
      } else if (reliable && this.#offerInReliable === undefined) {
        // RFC 3262 5: an INVITE without offer: the first reliable 1xx has ours, the PRACK the answer.
        this.#offerInReliable = await options.media.createOffer();
        this.#offerOut = true;
        this.localSdp = this.#offerInReliable;
        body = this.#offerInReliable;
      }
    }
    this.#checkUasOpen("send a provisional response");
    if (reliable) {
      // "The UAS MUST NOT send a second reliable provisional response until the first is acknowledged."
      await this.#reliable.turn();
      this.#checkUasOpen("send a provisional response");
    }
    const contact = await this.#uasContact();
    const headers: [string, string][] = [];
    let rseq = 0;
    if (reliable) {
      rseq = this.#reliable.nextRseq();
      headers.push(["Require", "100rel"], ["RSeq", String(rseq)]);
    }
    headers.push(...this.#capabilities());
    const res = this.#respond(this.#incoming!, status, { body, contact, headers });
    this.#earlyDialog(res, contact);
    this.#state = "early";
    if (!reliable) return;
    await this.#reliable.awaitPrack(res, rseq, body !== undefined);
  }

  #earlyDialog(res: SipResponse, contact: NameAddr): void {
    if (this.dialog) return;
    const dialog = Dialog.createUas(this.#request!, res);
    dialog.localContact = contact;
    this.dialog = dialog;
    this.#register(dialog);
  }

  async #onPrack(incoming: IncomingRequest): Promise<void> {
    const req = incoming.request;
    const pending = this.#reliable.match(req.headers.get("RAck"), this.#request?.cseq.seq);
    if (!pending) {
      // RFC 3262 3: a PRACK that matches no unacknowledged reliable 1xx gets 481.
      this.#respond(incoming, 481);
      return;
    }
    const body = req.body.length > 0 ? req.text : undefined;
    if (body !== undefined && this.#offerOut && this.#offerInReliable !== undefined) {
      try {
        await this.#media!.applyAnswer(body);
        this.remoteSdp = body;
        this.#offerOut = false;
      } catch (e) {
        this.#respond(incoming, 488);
        this.#reliable.settled();
        pending.failed(e as Error);
        await this._reject(488);
        return;
      }
    }
    this.#respond(incoming, 200);
    // RFC 3311 5.1: the PRACK of the reliable 1xx with our answer (or with our offer, answered
    // in this PRACK) completes the initial offer/answer: an UPDATE may go in the early dialog.
    if (pending.hasSdp && !this.#offerIn && !this.#offerOut) this.#earlyExchangeDone = true;
    this.#reliable.settled();
    pending.done();
  }

  /** @internal IncomingCall.accept(). */
  async _accept(media: OfferAnswerHandler): Promise<void> {
    this.#checkUasOpen("accept");
    this.#media = media;
    let body: string | undefined;
    if (this.#remoteOffer !== undefined) {
      if (this.#earlyAnswer !== undefined) {
        // 13.2.1: the answer of an unreliable 1xx is repeated in the 2xx;
        // after a reliable one the offer/answer exchange is complete.
        if (!this.#earlyAnswerReliable) body = this.#earlyAnswer;
      } else {
        try {
          body = await media.createAnswer(this.#remoteOffer);
        } catch (e) {
          if (isOfferRejection(e) && !this.#end && !this.#finalSent) await this._reject(488);
          throw e;
        }
        this.#offerIn = false;
        this.localSdp = body;
      }
    } else if (this.#offerInReliable === undefined) {
      // 13.2.1: no offer in the INVITE: ours goes in the 2xx, the answer comes in the ACK.
      body = await media.createOffer();
      this.#offerOut = true;
      this.localSdp = body;
    }
    // RFC 3262 3: no 2xx while a reliable 1xx with SDP waits for its PRACK.
    while (this.#reliable.pending?.hasSdp) await this.#reliable.turn();
    this.#checkUasOpen("accept");
    const contact = await this.#uasContact();
    this.#checkUasOpen("accept");
    const req = this.#request!;
    const timer = this.#sessionTimers.fromRequest(req);
    this.#finalSent = true;
    const res = this.#respond(this.#incoming!, 200, {
      body,
      contact,
      headers: [...this.#capabilities(), ...timer],
    });
    if (this.dialog) {
      this.dialog.confirm();
      this.dialog.localContact = contact;
    } else {
      const dialog = Dialog.createUas(req, res);
      dialog.localContact = contact;
      this.dialog = dialog;
      this.#register(dialog);
    }
    this.#awaitingAck = true;
    const tx = this.#transaction;
    if (tx && "retransmit2xxUntilAck" in tx) {
      // 13.3.1.4 with RFC 6026: the 2xx goes again until the ACK comes; none
      // after 64*T1: "the dialog is confirmed, but the session SHOULD be
      // terminated. This is accomplished with a BYE".
      tx.user.onAckTimeout = () => {
        if (this.#awaitingAck) {
          this.#acked(); // a BYE waiting for the ACK goes now
          if (!this.#end) this.bye("no_ack").catch(() => {});
        }
      };
      tx.retransmit2xxUntilAck();
    }
    this.#confirmed(200);
  }

  /** @internal IncomingCall.reject(). */
  _reject(status: number, reason?: string): Promise<void> {
    if (this.#end || this.#finalSent) return Promise.resolve();
    if (status < 300 || status > 699) throw new RangeError(`Not a rejection status: ${status}`);
    this.#sendFinal(status, reason);
    this.#media?.rollback();
    this._finish({ reason: "rejected", status, phrase: reason });
    return Promise.resolve();
  }

  #sendFinal(status: number, reason?: string): void {
    if (this.#finalSent || !this.#incoming) return;
    this.#finalSent = true;
    const headers: [string, string][] = [];
    if (status === 488) headers.push(["Accept", SDP]);
    this.#respond(this.#incoming, status, { reason, headers });
  }
}

function ackKey(res: SipResponse): string {
  return `${res.to.params.tag ?? ""}|${res.cseq.seq}`;
}

function safeContact(res: SipResponse): NameAddr | undefined {
  try {
    return res.contact[0];
  } catch {
    return undefined;
  }
}

/**
 * Reads a DTMF INFO body: `Signal=5\r\nDuration=160` (application/dtmf-relay)
 * or a bare digit (application/dtmf).
 *
 * @example
 * ```ts
 * import { parseDtmfInfo } from "./session.ts";
 * parseDtmfInfo("Signal=#\r\nDuration=100\r\n"); // { digit: "#", duration_ms: 100 }
 * ```
 */
export function parseDtmfInfo(body: string): DtmfInfoDetail | undefined {
  const signal = /^\s*Signal\s*=\s*(\S)/im.exec(body)?.[1] ??
    (/^\s*([0-9*#A-Da-d])\s*$/.exec(body)?.[1]);
  if (!signal || !/^[0-9*#A-Da-d]$/.test(signal)) return undefined;
  const duration = Number(/^\s*Duration\s*=\s*(\d+)/im.exec(body)?.[1] ?? 250);
  return { digit: signal.toUpperCase(), duration_ms: duration };
}
