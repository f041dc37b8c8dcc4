/**
 * The address monitor: reports the host's addresses added and lost, per
 * interface, and `address_changed` when the address that matters changes.
 *
 * The address that matters is the source address the kernel would use
 * toward the destinations given (the registrar, a peer): `ip -o route get`,
 * a route lookup that sends nothing. So a new docker or VPN interface is not
 * a move (the route toward the registrar does not change), and losing the
 * address in use is, even a secondary one. Without destinations, two
 * documentation addresses (192.0.2.1, then 2001:db8::1) stand for "anywhere":
 * the default route's source.
 *
 * Raw changes come from an {@linkcode AddressSource} (ip monitor, or
 * polling); every change re-arms a debounce timer, and the address that
 * matters is looked up when it fires, so that a move that adds the new
 * address before removing the old one, or the reverse, gives one
 * `address_changed`, not three. While no address is usable, nothing is
 * reported; the next usable address gives one `address_changed` from the
 * last address.
 *
 * ```
 *  source ──► address_added / address_lost (at once)
 *     │
 *     └─► debounce (debounceMs, at most maxWaitMs) ──► route lookup ──► address_changed
 * ```
 *
 * @module
 */

import { type Clock, systemClock, type TimerId } from "../sip/clock.ts";
import {
  type AddressFamily,
  addressKey,
  fromNetworkInterfaces,
  type InterfaceAddress,
  type IpAddressEvent,
  isLocalOnly,
  type RouteInfo,
} from "./addresses.ts";
import { type KernelRoutes, kernelRoutes, type RouteLookup } from "./routes.ts";
import {
  type AddressSource,
  type EndingAddressSource,
  IpMonitorSource,
  PollingSource,
} from "./sources.ts";

/** An address appeared on an interface. */
export interface AddressAddedEvent {
  /** Event name. */
  type: "address_added";
  /** Interface name. */
  interface: string;
  /** The address. */
  address: string;
  /** Its family. */
  family: AddressFamily;
}

/** An address went away from an interface. */
export interface AddressLostEvent {
  /** Event name. */
  type: "address_lost";
  /** Interface name. */
  interface: string;
  /** The address. */
  address: string;
  /** Its family. */
  family: AddressFamily;
}

/** The address that matters changed. */
export interface AddressChangedEvent {
  /** Event name. */
  type: "address_changed";
  /** The previous address (null when there was none at start). */
  old: string | null;
  /** The new address. */
  new: string;
  /** The interface of the new address, when known. */
  interface: string | null;
  /** The family of the new address. */
  family: AddressFamily;
}

/** What the monitor reports. */
export type AddressEvent = AddressAddedEvent | AddressLostEvent | AddressChangedEvent;

/** The address that matters, with its interface and family. */
export interface CurrentAddress {
  /** The address. */
  address: string;
  /** Its interface, when known. */
  interface: string | null;
  /** Its family. */
  family: AddressFamily;
}

/** Options of {@linkcode AddressMonitor}. */
export interface AddressMonitorOptions {
  /**
   * Destinations (IP literals) whose route gives the address that matters,
   * in order of preference. Default `["192.0.2.1", "2001:db8::1"]` (route
   * lookups only: the default route's source of each family).
   */
  toward?: string[];
  /** Watch only this interface (events and the address that matters). */
  interface?: string;
  /** Quiet time after the last change before looking up the address that matters. Default 20 ms. */
  debounceMs?: number;
  /** Longest delay of that look-up while changes keep coming. Default 500 ms. */
  maxWaitMs?: number;
  /**
   * A fixed source of changes (e.g. a {@linkcode PollingSource} for
   * `--poll`): used as it is, with no fallback. Default: `eventSource`, with
   * polling as the fallback.
   */
  source?: AddressSource;
  /**
   * Creates the event-driven source: started first, and started again after
   * it ended (see `restartMs`). Default `ip -o monitor address route` on
   * Linux ({@linkcode IpMonitorSource}); elsewhere none (polling only).
   */
  eventSource?: () => EndingAddressSource;
  /** Poll interval of the fallback source, in ms. Default 1000. */
  pollMs?: number;
  /** What the fallback source reads at each poll. Default `Deno.networkInterfaces()`. */
  pollRead?: () => InterfaceAddress[];
  /**
   * After the event-driven source ended by itself, the monitor polls and
   * tries to start it again after this many ms, doubling the wait after each
   * failed try (and after each source that lived less than a minute) up to
   * 64 s. Default 1000; 0 never starts it again.
   */
  restartMs?: number;
  /**
   * Route lookup. Default the kernel's answer through a connected UDP socket
   * (Linux with `--allow-ffi`), else through one long-lived `ip -batch`
   * child (see `routes.ts`); when there is no answer, a choice among the
   * known addresses.
   */
  route?: RouteLookup;
  /** Clock for the debounce timer. Default the system clock. */
  clock?: Clock;
  /** Receives every event. */
  onEvent?: (event: AddressEvent) => void;
  /** Diagnostics. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
}

const DEFAULT_TOWARD = ["192.0.2.1", "2001:db8::1"];
/** Longest wait between two tries to start the event-driven source again. */
const MAX_RESTART_MS = 64_000;
/** An event-driven source that lived this long resets the restart wait. */
const STABLE_MS = 60_000;

function familyOf(address: string): AddressFamily {
  return address.includes(":") ? "IPv6" : "IPv4";
}

/**
 * The address monitor.
 *
 * @example
 * ```ts
 * import { AddressMonitor, type AddressEvent } from "./monitor.ts";
 * import type { AddressChangeHandler } from "./sources.ts";
 * import { ManualClock } from "../sip/clock.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * let push: AddressChangeHandler = () => {};
 * let src = "10.0.0.2";
 * const eth0 = (address: string) => ({ interface: "eth0", address, family: "IPv4" as const, prefix: 24 });
 * const events: AddressEvent[] = [];
 * const monitor = new AddressMonitor({
 *   clock,
 *   toward: ["10.0.0.1"],
 *   source: {
 *     kind: "poll",
 *     start: (on) => (push = on, Promise.resolve([eth0("10.0.0.2")])),
 *     close: () => Promise.resolve(),
 *   },
 *   route: () => Promise.resolve({ source: src, interface: "eth0" }),
 *   onEvent: (e) => events.push(e),
 * });
 * await monitor.start();
 * push([{ kind: "added", address: eth0("10.0.0.3"), usable: true }]);
 * src = "10.0.0.3";
 * push([{ kind: "deleted", address: eth0("10.0.0.2"), usable: true }]);
 * clock.advance(50);
 * await monitor.idle();
 * assert.deepEqual(events.map((e) => e.type), ["address_added", "address_lost", "address_changed"]);
 * assert.equal(monitor.current?.address, "10.0.0.3");
 * await monitor.close();
 * ```
 */
export class AddressMonitor {
  #options: AddressMonitorOptions;
  #clock: Clock;
  #toward: string[];
  #debounceMs: number;
  #maxWaitMs: number;
  #source?: AddressSource;
  #addresses = new Map<string, InterfaceAddress>();
  #current?: CurrentAddress;
  #timer?: TimerId;
  #firstChangeAt?: number;
  #evaluating?: Promise<void>;
  #again = false;
  #closed = false;
  #kernel?: KernelRoutes;
  #restartMs: number;
  #restartWait: number;
  #restartTimer?: TimerId;
  #startedAt = 0;
  #listeners: ((event: AddressEvent) => void)[] = [];

  /** Creates a monitor; it watches from {@linkcode AddressMonitor.start}. */
  constructor(options: AddressMonitorOptions = {}) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#toward = options.toward && options.toward.length > 0 ? options.toward : DEFAULT_TOWARD;
    this.#debounceMs = options.debounceMs ?? 20;
    this.#maxWaitMs = options.maxWaitMs ?? 500;
    this.#restartMs = options.restartMs ?? 1000;
    this.#restartWait = this.#restartMs;
    if (options.onEvent) this.#listeners.push(options.onEvent);
  }

  /** The address that matters now (undefined until started, or when none is usable). */
  get current(): CurrentAddress | undefined {
    return this.#current;
  }

  /** How the address that matters is asked: "socket", "ip-batch" or "custom" (the `route` option). */
  get routeMethod(): "socket" | "ip-batch" | "custom" | undefined {
    return this.#options.route ? "custom" : this.#kernel?.method;
  }

  /** How changes are learned: "netlink" or "poll" (undefined before start). */
  get method(): "netlink" | "poll" | undefined {
    return this.#source?.kind;
  }

  /** The usable addresses known now. */
  get addresses(): InterfaceAddress[] {
    return [...this.#addresses.values()].filter((a) => this.#watched(a));
  }

  /** Adds a listener for every event. */
  addListener(listener: (event: AddressEvent) => void): void {
    this.#listeners.push(listener);
  }

  /** Starts the source, reads the current addresses and the address that matters. */
  async start(): Promise<void> {
    let first: InterfaceAddress[] | undefined;
    if (!this.#options.route) this.#kernel = kernelRoutes({ log: this.#options.log });
    if (this.#options.source) {
      this.#source = this.#options.source;
      first = await this.#source.start(this.#onChange);
    } else if (this.#eventSource) {
      try {
        const source = this.#eventSource();
        first = await source.start(this.#onChange);
        this.#adopt(source);
      } catch (e) {
        // Not there at all (no `ip`): polling for good, no restarts.
        this.#restartMs = 0;
        this.#log("info", `ip monitor unavailable (${(e as Error).message}); polling`);
      }
    }
    if (!this.#source) {
      this.#source = this.#polling();
      first = await this.#source.start(this.#onChange);
    }
    for (const a of first ?? []) this.#addresses.set(addressKey(a), a);
    this.#current = await this.#lookup();
    this.#log(
      "debug",
      `watching addresses (${this.#source.kind}); current ${this.#current?.address ?? "none"}`,
    );
  }

  #onChange = (events: IpAddressEvent[]) => this.#changed(events);

  /** The factory of the event-driven source, when there is one. */
  get #eventSource(): (() => EndingAddressSource) | undefined {
    if (this.#options.eventSource) return this.#options.eventSource;
    if (Deno.build.os !== "linux") return undefined;
    return () => new IpMonitorSource({ log: this.#options.log });
  }

  #polling(): PollingSource {
    return new PollingSource({
      intervalMs: this.#options.pollMs,
      clock: this.#clock,
      read: this.#options.pollRead,
    });
  }

  /** Makes `source` the current one and watches for its end. */
  #adopt(source: EndingAddressSource): void {
    this.#source = source;
    this.#startedAt = this.#clock.now();
    source.ended.then(() => this.#ended(source));
  }

  /** The event-driven source ended by itself: poll at once, and try it again later. */
  async #ended(source: EndingAddressSource): Promise<void> {
    if (this.#closed || this.#source !== source) return;
    const poll = this.#polling();
    this.#source = poll;
    const again = this.#restartMs > 0
      ? `; trying it again in ${Math.round(this.#restartWaitAfter() / 100) / 10} s`
      : "";
    this.#log(
      "warn",
      `ip monitor ended; polling the interface list every ${this.#options.pollMs ?? 1000} ms` +
        again,
    );
    await source.close().catch(() => {});
    const now = await poll.start(this.#onChange);
    if (this.#closed) return void await poll.close();
    this.#resync(now);
    if (this.#restartMs > 0) this.#scheduleRestart();
  }

  /** The wait before the next restart try, after a source ended now. */
  #restartWaitAfter(): number {
    // A source that died soon after starting backs off; a long-lived one starts over.
    if (this.#clock.now() - this.#startedAt >= STABLE_MS) this.#restartWait = this.#restartMs;
    return this.#restartWait;
  }

  #scheduleRestart(): void {
    const wait = this.#restartWait;
    this.#restartWait = Math.min(this.#restartWait * 2, MAX_RESTART_MS);
    this.#restartTimer = this.#clock.setTimeout(() => {
      this.#restartTimer = undefined;
      void this.#restart();
    }, wait);
  }

  /** Tries to start the event-driven source again; on success it replaces polling. */
  async #restart(): Promise<void> {
    if (this.#closed) return;
    const factory = this.#eventSource!;
    let source: EndingAddressSource;
    let now: InterfaceAddress[];
    try {
      source = factory();
      now = await source.start(this.#onChange);
    } catch (e) {
      this.#log("debug", `ip monitor still unavailable: ${(e as Error).message}`);
      if (!this.#closed) this.#scheduleRestart();
      return;
    }
    if (this.#closed) return void await source.close();
    const poll = this.#source;
    this.#adopt(source);
    await poll?.close();
    this.#resync(now);
    this.#log("info", "ip monitor running again; polling stopped");
  }

  /** Reports the difference between what is known and `now` (after a change of source). */
  #resync(now: InterfaceAddress[]): void {
    const next = new Map(now.map((a) => [addressKey(a), a]));
    const diff: IpAddressEvent[] = [];
    for (const [k, a] of this.#addresses) {
      if (!next.has(k)) diff.push({ kind: "deleted", address: a, usable: true });
    }
    for (const [k, a] of next) {
      if (!this.#addresses.has(k)) diff.push({ kind: "added", address: a, usable: true });
    }
    // Always look again: a route may have changed while nobody listened.
    this.#changed(diff);
  }

  #watched(a: InterfaceAddress): boolean {
    return this.#options.interface === undefined || a.interface === this.#options.interface;
  }

  #emit(event: AddressEvent): void {
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (e) {
        this.#log("warn", `address listener threw: ${e}`);
      }
    }
  }

  #changed(events: IpAddressEvent[]): void {
    if (this.#closed) return;
    // A bare "look again" (a poll tick, a route line) never postpones a look
    // already planned: polling faster than the debounce would otherwise
    // push every look to maxWaitMs.
    if (events.length === 0 && this.#timer !== undefined) return;
    for (const e of events) {
      const key = addressKey(e.address);
      const known = this.#addresses.get(key);
      if (e.kind === "added" && e.usable) {
        this.#addresses.set(key, e.address);
        if (!known && this.#watched(e.address)) {
          const { interface: name, address, family } = e.address;
          this.#emit({ type: "address_added", interface: name, address, family });
        }
      } else if (known) {
        // Deleted, or no longer usable (e.g. "dadfailed", "deprecated" kept as usable).
        this.#addresses.delete(key);
        if (this.#watched(known)) {
          const { interface: name, address, family } = known;
          this.#emit({ type: "address_lost", interface: name, address, family });
        }
      }
    }
    this.#arm();
  }

  /** (Re)arms the debounce timer. */
  #arm(): void {
    const now = this.#clock.now();
    this.#firstChangeAt ??= now;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    const wait = Math.min(this.#debounceMs, this.#firstChangeAt + this.#maxWaitMs - now);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#firstChangeAt = undefined;
      this.check();
    }, Math.max(0, wait));
  }

  /**
   * Looks up the address that matters now and reports `address_changed`
   * when it differs from the last one. Serialised: a call during a look-up
   * runs once more after it.
   */
  check(): Promise<void> {
    if (this.#evaluating) {
      this.#again = true;
      return this.#evaluating;
    }
    this.#evaluating = (async () => {
      do {
        this.#again = false;
        const next = await this.#lookup();
        if (this.#closed) return;
        if (next && next.address !== this.#current?.address) {
          const old = this.#current?.address ?? null;
          this.#current = next;
          this.#emit({
            type: "address_changed",
            old,
            new: next.address,
            interface: next.interface,
            family: next.family,
          });
        } else if (next) {
          this.#current = next;
        }
      } while (this.#again && !this.#closed);
    })().finally(() => this.#evaluating = undefined);
    return this.#evaluating;
  }

  /** Resolves when no look-up is pending or running (for tests after a clock advance). */
  async idle(): Promise<void> {
    while (this.#evaluating) await this.#evaluating;
  }

  async #route(destination: string): Promise<RouteInfo | undefined> {
    if (this.#options.route) return await this.#options.route(destination);
    return await this.#kernel?.lookup(destination);
  }

  /** The address that matters: the route source toward the first destination that routes. */
  async #lookup(): Promise<CurrentAddress | undefined> {
    for (const destination of this.#toward) {
      let r: RouteInfo | undefined;
      try {
        r = await this.#route(destination);
      } catch (e) {
        this.#log("debug", `route lookup toward ${destination} failed: ${e}`);
      }
      if (!r || isLocalOnly(r.source) && !isLocalOnly(destination)) continue;
      const known = [...this.#addresses.values()].find((a) => a.address === r!.source);
      const name = r.interface ?? known?.interface ?? this.#interfaceNow(r.source);
      if (this.#options.interface !== undefined && name !== this.#options.interface) {
        const own = this.#fromList(familyOf(destination));
        if (own) return own;
        continue;
      }
      return { address: r.source, interface: name, family: familyOf(r.source) };
    }
    // No route answer: choose among the known addresses.
    for (const destination of this.#toward) {
      const own = this.#fromList(familyOf(destination));
      if (own) return own;
    }
    return undefined;
  }

  /**
   * The interface of `address`, read from the system now. The route answer
   * of a connected socket names no interface, and the kernel may already use
   * an address that the address source has not reported yet (a poll that read
   * the list just before the change, then a tick's look-up just after it).
   */
  #interfaceNow(address: string): string | null {
    try {
      const read = this.#options.pollRead ??
        (() => fromNetworkInterfaces(Deno.networkInterfaces()));
      return read().find((a) => a.address === address)?.interface ?? null;
    } catch {
      return null;
    }
  }

  /** The current address when it is still there, else the first primary address of a family. */
  #fromList(family: AddressFamily): CurrentAddress | undefined {
    const list = this.addresses.filter((a) => a.family === family);
    const keep = list.find((a) => a.address === this.#current?.address);
    const pick = keep ?? list.find((a) => !a.secondary) ?? list[0];
    return pick && { address: pick.address, interface: pick.interface, family: pick.family };
  }

  #log(level: "debug" | "info" | "warn", message: string): void {
    this.#options.log?.(level, message);
  }

  /** Stops watching. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    if (this.#restartTimer !== undefined) this.#clock.clearTimeout(this.#restartTimer);
    await this.#source?.close();
    await this.idle();
    await this.#kernel?.close();
  }
}
