/**
 * Registration (RFC 3261 section 10): bind an address of record to a contact
 * at a registrar, keep the binding refreshed, follow address changes, query
 * and remove bindings.
 *
 * @module
 */

import type { TimerId } from "./clock.ts";
import { DigestAuthError } from "./errors.ts";
import { SipRequestError } from "./errors.ts";
import { formatUri, type NameAddr, type SipResponse, type Uri } from "./message.ts";
import { generateCallId } from "./transaction/mod.ts";
import { toSipUri, type UserAgent } from "./ua.ts";

/** One binding the registrar reported. */
export interface Binding {
  /** The contact URI. */
  contact: string;
  /** Seconds left. */
  expires: number;
  /** The q value, when given. */
  q?: number;
}

/** What {@linkcode Registration} reports. */
export type RegistrationEvent =
  | {
    /** Registered, or refreshed (`refreshed` true). */
    type: "registered";
    /** True for a refresh of an existing binding. */
    refreshed: boolean;
    /** The AOR. */
    aor: string;
    /** Our contact. */
    contact: string;
    /** Seconds granted. */
    expires: number;
    /** The registrar URI. */
    registrar: string;
    /** Every binding of the AOR the registrar listed. */
    bindings: Binding[];
    /** Contacts removed in the same REGISTER (the old address after an address change). */
    replaced?: string[];
  }
  | {
    /** The binding was removed. */
    type: "unregistered";
    /** The AOR. */
    aor: string;
    /** The removed contact, or "*" for all. */
    contact: string;
    /** The registrar URI. */
    registrar: string;
  }
  | {
    /** A REGISTER failed. */
    type: "failed";
    /** Status (408 timeout, 503 transport, 401/403 auth...). */
    status: number;
    /** Reason. */
    reason: string;
    /** Seconds until the next try, when retrying. */
    retryIn?: number;
    /** True when no response came (network). */
    local: boolean;
  };

/** Options of {@linkcode Registration}. */
export interface RegistrationOptions {
  /** Registrar URI; default `sip:<domain of the AOR>`. */
  registrar?: string;
  /** Contact to register instead of our own (third-party registration). */
  contact?: string;
  /** Requested expiry in seconds. Default 3600. */
  expires?: number;
  /** First back-off delay in seconds after a failure (RFC 5626 4.5 style). Default 30. */
  backoffBase?: number;
  /** Largest back-off delay in seconds. Default 1800. */
  backoffMax?: number;
  /** Source of randomness for back-off jitter; default Math.random. */
  random?: () => number;
  /** Receives events. */
  onEvent?: (event: RegistrationEvent) => void;
}

/** A REGISTER that failed for good (the registrar said no, or nobody answered). */
export class RegistrationError extends Error {
  /** SIP status, or 408/503 for local failures. */
  readonly status: number;
  /** Reason phrase. */
  readonly reason: string;
  /** True when no response arrived. */
  readonly local: boolean;

  /** Creates the error. */
  constructor(status: number, reason: string, local: boolean, options?: { cause?: unknown }) {
    super(`Registration failed: ${status} ${reason}`, options);
    this.name = "RegistrationError";
    this.status = status;
    this.reason = reason;
    this.local = local;
  }
}

/**
 * A registration of one contact for the UA's AOR.
 *
 * @example
 * ```ts
 * import { LoopNetwork } from "./transport_loop.ts";
 * import { Registration } from "./registration.ts";
 * import { UserAgent } from "./ua.ts";
 * import assert from "node:assert/strict";
 * const net = new LoopNetwork();
 * const registrar = await UserAgent.create({ transports: [net.transport({ host: "192.0.2.5" })] });
 * registrar.handle("REGISTER", (i) =>
 *   i.respond(200, { headers: i.request.headers.getAll("Contact").map((value) => ({ name: "Contact", value })) })
 * );
 * const ua = await UserAgent.create({
 *   aor: "alice@example.test",
 *   transports: [net.transport({ host: "192.0.2.1" })],
 * });
 * const reg = new Registration(ua, { registrar: "sip:192.0.2.5", expires: 600 });
 * assert.equal(await reg.register(), 600);
 * assert.equal(reg.contact, "sip:alice@192.0.2.1");
 * await reg.unregister();
 * assert.equal(reg.registered, false);
 * await ua.close();
 * await registrar.close();
 * ```
 */
export class Registration {
  /** The registrar. */
  readonly registrar: Uri;
  readonly #ua: UserAgent;
  readonly #options: RegistrationOptions;
  readonly #callId = generateCallId();
  #cseq = 0;
  #expires: number;
  #contact?: string;
  /** Old contacts (after an address change) still to remove, with the next REGISTER. */
  #toRemove: string[] = [];
  /** Clock time (ms) until which our binding exists, as last granted; 0 when none. */
  #boundUntil = 0;
  #timer?: TimerId;
  #failures = 0;
  #running = false;
  #queue: Promise<unknown> = Promise.resolve();

  /** Creates the registration; nothing is sent yet. */
  constructor(ua: UserAgent, options: RegistrationOptions = {}) {
    this.#ua = ua;
    this.#options = options;
    this.registrar = options.registrar ? toSipUri(options.registrar) : {
      scheme: ua.aor.scheme === "sips" ? "sips" : "sip",
      host: ua.aor.host,
      params: {},
      headers: {},
    };
    this.#expires = options.expires ?? 3600;
    this.#contact = options.contact ? formatUri(toSipUri(options.contact)) : undefined;
  }

  /** The registered contact, once known. */
  get contact(): string | undefined {
    return this.#contact;
  }

  /**
   * True while a binding is believed to exist: granted and not yet expired
   * (a failed refresh leaves the old binding in place until it expires, so it
   * is still removed on exit).
   */
  get registered(): boolean {
    return this.#boundUntil > this.#ua.clock.now();
  }

  /** The expiry requested in the next REGISTER (after a 423, the registrar's minimum). */
  get expires(): number {
    return this.#expires;
  }

  /**
   * Sends one REGISTER for our contact (a refresh when already registered),
   * handling 423 Interval Too Brief, and resolves with the granted expiry.
   * Throws {@linkcode RegistrationError} on failure.
   */
  register(): Promise<number> {
    return this.#serial(() => this.#register());
  }

  async #register(): Promise<number> {
    // A refresh is a REGISTER for the contact already bound (section 10.2.1).
    const previous = this.registered ? this.#contact : undefined;
    let intervalRetried = false;
    for (;;) {
      const contacts: string[] = [];
      if (this.#contact) contacts.push(`<${this.#contact}>`);
      // Section 10.2.2: an expires parameter of 0 on a Contact removes that binding.
      const removing = [...this.#toRemove];
      for (const c of removing) contacts.push(`<${c}>;expires=0`);
      const res = await this.#send(contacts, this.#expires, this.#contact === undefined);
      if (res.response.status === 423 && !intervalRetried) {
        // Section 10.2.8: retry with the Min-Expires of the 423.
        const min = Number(res.response.headers.get("Min-Expires"));
        if (Number.isInteger(min) && min > this.#expires) {
          this.#expires = min;
          intervalRetried = true;
          continue;
        }
      }
      if (res.response.status < 200 || res.response.status >= 300) {
        throw new RegistrationError(res.response.status, res.response.reason, false);
      }
      const sent = res.contact;
      if (sent) this.#contact = sent;
      this.#toRemove = this.#toRemove.filter((c) => !removing.includes(c));
      // A binding listed without expiry was granted what we asked (nothing says otherwise).
      const bindings = readBindings(res.response, this.#expires);
      const mine = bindings.find((b) => sameContact(b.contact, this.#contact ?? ""));
      const granted = mine?.expires ?? safeExpires(res.response) ?? this.#expires;
      this.#boundUntil = granted > 0 ? this.#ua.clock.now() + granted * 1000 : 0;
      this.#failures = 0;
      this.#options.onEvent?.({
        type: "registered",
        refreshed: previous !== undefined && previous === this.#contact,
        aor: formatUri(this.#ua.aor),
        contact: this.#contact ?? "",
        expires: granted,
        registrar: formatUri(this.registrar),
        bindings,
        replaced: removing.length > 0 ? removing : undefined,
      });
      return granted;
    }
  }

  /**
   * Keeps the binding alive: registers now, refreshes before expiry, and
   * after a failure retries with growing back-off (never giving up).
   */
  keepAlive(): void {
    if (this.#running) return;
    this.#running = true;
    this.#cycle();
  }

  #cycle(): void {
    this.#serial(() => this.#register()).then((granted) => {
      if (!this.#running) return;
      this.#schedule(refreshDelay(granted));
    }).catch((e) => {
      if (!this.#running) return;
      this.#failures++;
      const retryIn = backoff(this.#failures, this.#options);
      const { status, reason, local } = describe(e);
      this.#options.onEvent?.({ type: "failed", status, reason, retryIn, local });
      this.#schedule(retryIn);
    });
  }

  #schedule(seconds: number): void {
    if (this.#timer !== undefined) this.#ua.clock.clearTimeout(this.#timer);
    this.#timer = this.#ua.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#cycle();
    }, seconds * 1000);
  }

  /**
   * Moves the binding to a new local address (after `address_changed`): the
   * new contact is registered and the old one removed in one REGISTER.
   */
  changeAddress(host: string): Promise<number> {
    return this.#serial(async () => {
      const old = this.#contact;
      this.#ua.advertisedHost = host;
      // A third-party contact does not move with us: just refresh it.
      if (!this.#options.contact) {
        this.#contact = undefined;
        if (old && this.registered && !this.#toRemove.includes(old)) this.#toRemove.push(old);
      }
      try {
        const granted = await this.#register();
        if (this.#running) this.#schedule(refreshDelay(granted));
        return granted;
      } catch (e) {
        if (this.#running) {
          this.#failures++;
          const retryIn = backoff(this.#failures, this.#options);
          const { status, reason, local } = describe(e);
          this.#options.onEvent?.({ type: "failed", status, reason, retryIn, local });
          this.#schedule(retryIn);
        }
        throw e;
      }
    });
  }

  /** Stops refreshing (without removing the binding). */
  stop(): void {
    this.#running = false;
    if (this.#timer !== undefined) this.#ua.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Removes our binding (Expires 0), or every binding of the AOR with
   * `all` (`Contact: *`, section 10.2.2), or exactly the `contacts` given
   * (bindings a previous process left). Stops refreshing. Reports one
   * `unregistered` event per removed contact ("*" for all).
   */
  unregister(options: { all?: boolean; contacts?: string[] } = {}): Promise<void> {
    this.stop();
    return this.#serial(async () => {
      let contacts: string[];
      if (options.all) contacts = ["*"];
      else if (options.contacts) contacts = options.contacts.map((c) => formatUri(toSipUri(c)));
      else contacts = [this.#contact ?? await this.localContact(), ...this.#toRemove];
      contacts = contacts.filter((c, i, a) => a.indexOf(c) === i);
      if (contacts.length === 0) throw new TypeError("Cannot unregister: no contact given");
      const lines = contacts[0] === "*" ? ["*"] : contacts.map((c) => `<${c}>`);
      const res = await this.#send(lines, 0, false);
      if (res.response.status < 200 || res.response.status >= 300) {
        throw new RegistrationError(res.response.status, res.response.reason, false);
      }
      if (options.all || !options.contacts || contacts.includes(this.#contact ?? "")) {
        this.#boundUntil = 0;
        this.#toRemove = [];
      }
      for (const contact of contacts) {
        this.#options.onEvent?.({
          type: "unregistered",
          aor: formatUri(this.#ua.aor),
          contact,
          registrar: formatUri(this.registrar),
        });
      }
    });
  }

  /**
   * The contact a REGISTER of this UA would bind: `--contact` when given,
   * else our address as seen from the registrar's first target.
   */
  async localContact(): Promise<string> {
    if (this.#options.contact) return formatUri(toSipUri(this.#options.contact));
    const probe = this.#ua.createRequest("REGISTER", this.registrar);
    if (this.#ua.outboundProxy) {
      probe.headers.prepend("Route", `<${formatUri(this.#ua.outboundProxy)};lr>`);
    }
    const [target] = await this.#ua.targetsFor(probe);
    try {
      return formatUri(await this.#ua.contactFor(target));
    } catch (e) {
      // On TCP/TLS learning the local address means connecting: a failure
      // there is a transport error (section 8.1.3.1: treated as 503).
      const message = e instanceof Error ? e.message : String(e);
      throw new RegistrationError(503, `Transport error: ${message}`, true, { cause: e });
    }
  }

  /** Asks the registrar for the current bindings (a REGISTER without Contact, 10.2.3). */
  query(): Promise<Binding[]> {
    return this.#serial(async () => {
      const res = await this.#send([], undefined, false);
      if (res.response.status < 200 || res.response.status >= 300) {
        throw new RegistrationError(res.response.status, res.response.reason, false);
      }
      return readBindings(res.response);
    });
  }

  async #send(
    contacts: string[],
    expires: number | undefined,
    ownContact: boolean,
  ): Promise<{ response: SipResponse; contact?: string }> {
    const headers: [string, string][] = [];
    for (const c of contacts) headers.push(["Contact", c]);
    if (expires !== undefined) headers.push(["Expires", String(expires)]);
    const aor = { uri: this.#ua.aor, params: {} };
    const req = this.#ua.createRequest("REGISTER", this.registrar, {
      to: aor,
      callId: this.#callId,
      cseq: ++this.#cseq,
      headers,
    });
    try {
      const result = await this.#ua.send(req, {
        contact: ownContact,
        // Retries after 401/407 take new CSeq numbers: the next REGISTER must go above them.
        onRequest: (r) => void (this.#cseq = Math.max(this.#cseq, r.cseq.seq)),
      });
      const sent = result.request.contact[0];
      return {
        response: result.response,
        contact: ownContact && sent ? formatUri(sent.uri) : undefined,
      };
    } catch (e) {
      if (e instanceof DigestAuthError) {
        throw new RegistrationError(e.status, e.message, false, { cause: e });
      }
      if (e instanceof SipRequestError) {
        throw new RegistrationError(e.status, e.reason, e.local, { cause: e });
      }
      throw e;
    }
  }

  /** Runs registration operations one at a time (CSeq order, section 10.2). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }
}

/**
 * Reads the bindings of a 2xx to REGISTER (section 10.2.4): each Contact with
 * its expires parameter, else the Expires header, else `defaultExpires`.
 */
export function readBindings(res: SipResponse, defaultExpires = 3600): Binding[] {
  const out: Binding[] = [];
  const headerExpires = safeExpires(res);
  let contacts: NameAddr[];
  try {
    contacts = res.contact;
  } catch {
    return out; // a registrar's unparsable Contact list tells us nothing
  }
  for (const c of contacts) {
    if (c.uri.scheme === "*") continue;
    const e = c.params.expires;
    const expires = e != null && /^\d+$/.test(e) ? Number(e) : headerExpires ?? defaultExpires;
    const q = c.params.q != null ? Number(c.params.q) : undefined;
    out.push({ contact: formatUri(c.uri), expires, q: Number.isFinite(q) ? q : undefined });
  }
  return out;
}

/** The Expires header of a response, or undefined when absent or unparsable. */
function safeExpires(res: SipResponse): number | undefined {
  try {
    return res.expires;
  } catch {
    return undefined;
  }
}

/** When to refresh a binding granted for `expires` seconds. */
export function refreshDelay(expires: number): number {
  // Never a tight loop, even if a registrar grants 0 or 1 second.
  if (expires <= 2) return 1;
  return expires > 120 ? expires - 60 : expires / 2;
}

function backoff(failures: number, options: RegistrationOptions): number {
  const base = options.backoffBase ?? 30;
  const max = options.backoffMax ?? 1800;
  const random = options.random ?? Math.random;
  // RFC 5626 section 4.5: min(max-time, base-time * 2^failures), then a random 50% to 100%.
  const ceiling = Math.min(max, base * 2 ** (failures - 1));
  return Math.max(1, Math.round(ceiling * (0.5 + random() * 0.5)));
}

function describe(e: unknown): { status: number; reason: string; local: boolean } {
  if (e instanceof RegistrationError) return { status: e.status, reason: e.reason, local: e.local };
  return { status: 500, reason: e instanceof Error ? e.message : String(e), local: true };
}

/** Compares contact URIs the way registrars do (section 10.3 step 6.b, 19.1.4), loosely. */
function sameContact(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = toSipUri(a);
    const y = toSipUri(b);
    return x.scheme === y.scheme && (x.user ?? "") === (y.user ?? "") &&
      x.host.toLowerCase() === y.host.toLowerCase() &&
      (x.port ?? 5060) === (y.port ?? 5060) &&
      String(x.params.transport ?? "udp").toLowerCase() ===
        String(y.params.transport ?? "udp").toLowerCase();
  } catch {
    return false;
  }
}
