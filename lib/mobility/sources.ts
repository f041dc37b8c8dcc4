/**
 * Where the address monitor learns about address changes: an event-driven
 * source on Linux (`ip -o monitor address route`, iproute2 as a child process
 * whose lines are parsed), and a polling source over
 * `Deno.networkInterfaces()` for the other platforms. Both cost nothing
 * between changes (the child blocks on netlink; polling sleeps on the clock).
 * Also the kernel's answer to "which source address toward this
 * destination": `ip -o route get`.
 *
 * @module
 */

import { type Clock, systemClock, type TimerId } from "../sip/clock.ts";
import {
  addressKey,
  fromNetworkInterfaces,
  type InterfaceAddress,
  type IpAddressEvent,
  parseIpAddressLine,
  parseRouteGet,
  type RouteInfo,
} from "./addresses.ts";

/**
 * Called with the address events a source saw. An empty list means
 * "something else changed" (a route, a poll tick): look again.
 */
export type AddressChangeHandler = (events: IpAddressEvent[]) => void;

/** A source of address changes. */
export interface AddressSource {
  /** How it learns changes: "netlink" (ip monitor) or "poll". */
  readonly kind: "netlink" | "poll";
  /** Starts watching; resolves with the addresses present now. */
  start(onChange: AddressChangeHandler): Promise<InterfaceAddress[]>;
  /** Stops watching (ends the child process or the timer). */
  close(): Promise<void>;
}

/**
 * An event-driven source that may end by itself (its child process died or
 * was killed): {@linkcode EndingAddressSource.ended} then resolves, and the
 * monitor falls back to polling.
 */
export interface EndingAddressSource extends AddressSource {
  /** Resolves when the source stopped without `close()` being called. */
  readonly ended: Promise<void>;
}

/** Runs `ip` with arguments and returns its stdout, or undefined when it fails. */
async function runIp(args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** The usable addresses `ip -o address show` lists now, or undefined when `ip` fails. */
export async function ipAddressSnapshot(): Promise<InterfaceAddress[] | undefined> {
  const text = await runIp(["-o", "address", "show"]);
  if (text === undefined) return undefined;
  const out: InterfaceAddress[] = [];
  for (const line of text.split("\n")) {
    const e = parseIpAddressLine(line);
    if (e && e.usable) out.push(e.address);
  }
  return out;
}

/**
 * The kernel's route toward `destination` (an IP literal): its source
 * address and interface, from `ip -o route get` (a child process per call:
 * see `routes.ts` for cheaper ways). A route lookup only: no packet is sent.
 * Undefined when there is no route or `ip` is missing. `netns` asks in that
 * named network namespace (`ip -n`).
 *
 * @example
 * ```ts ignore
 * const route = await ipRouteGet("192.0.2.1"); // { source: "10.0.0.5", interface: "eth0" }
 * ```
 */
export async function ipRouteGet(
  destination: string,
  netns?: string,
): Promise<RouteInfo | undefined> {
  const text = await runIp([...(netns ? ["-n", netns] : []), "-o", "route", "get", destination]);
  return text === undefined ? undefined : parseRouteGet(text);
}

/** Options of {@linkcode IpMonitorSource}. */
export interface IpMonitorSourceOptions {
  /** Receives diagnostics. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
}

/**
 * Event-driven source on Linux: `ip -o monitor address route` as a child
 * process; each address line becomes an event, each route line a "look
 * again". When the child ends unexpectedly, {@linkcode IpMonitorSource.ended}
 * resolves (the monitor then falls back to polling).
 */
export class IpMonitorSource implements EndingAddressSource {
  /** Always "netlink". */
  readonly kind = "netlink" as const;
  #child?: Deno.ChildProcess;
  #closed = false;
  #reading?: Promise<void>;
  #log?: IpMonitorSourceOptions["log"];
  #ended: PromiseWithResolvers<void> = Promise.withResolvers<void>();

  /** Creates the source; nothing runs before {@linkcode IpMonitorSource.start}. */
  constructor(options: IpMonitorSourceOptions = {}) {
    this.#log = options.log;
  }

  /** The process id of the `ip monitor` child, once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Resolves when the child process has ended without {@linkcode IpMonitorSource.close}. */
  get ended(): Promise<void> {
    return this.#ended.promise;
  }

  /** Spawns `ip -o monitor address route`, then reads the current list. Throws when `ip` cannot run. */
  async start(onChange: AddressChangeHandler): Promise<InterfaceAddress[]> {
    this.#child = new Deno.Command("ip", {
      args: ["-o", "monitor", "address", "route"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#reading = this.#read(this.#child.stdout, onChange);
    // The snapshot comes after the child started, so no change falls in between.
    const now = await ipAddressSnapshot();
    if (now === undefined) {
      await this.close();
      throw new Error("Cannot list addresses: `ip -o address show` failed");
    }
    return now;
  }

  async #read(stream: ReadableStream<Uint8Array>, onChange: AddressChangeHandler): Promise<void> {
    const decoder = new TextDecoderStream();
    let buffer = "";
    try {
      for await (const chunk of stream.pipeThrough(decoder)) {
        buffer += chunk;
        const lines = buffer.split("\n");
        buffer = lines.pop() ?? "";
        const events: IpAddressEvent[] = [];
        let other = false;
        for (const line of lines) {
          if (line.trim() === "") continue;
          const e = parseIpAddressLine(line);
          if (e) events.push(e);
          else other = true;
        }
        if (events.length > 0 || other) onChange(events);
      }
    } catch (e) {
      if (!this.#closed) this.#log?.("debug", `ip monitor: ${e}`);
    }
    // The monitor says it once, with what it does instead.
    if (!this.#closed) this.#ended.resolve();
  }

  /** Ends the child process. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#child?.kill("SIGTERM");
    } catch { /* already gone */ }
    await this.#child?.status.catch(() => {});
    await this.#reading;
  }
}

/** Options of {@linkcode PollingSource}. */
export interface PollingSourceOptions {
  /** Poll interval in ms. Default 1000. */
  intervalMs?: number;
  /** Clock for the poll timer. Default the system clock. */
  clock?: Clock;
  /** Reads the current addresses. Default `Deno.networkInterfaces()` (needs --allow-sys). */
  read?: () => InterfaceAddress[];
}

/**
 * Polling source: reads the interface list every `intervalMs` (sleeping in
 * between) and reports the difference, plus a "look again" on every tick so
 * that route changes are noticed too.
 *
 * @example
 * ```ts
 * import { PollingSource } from "./sources.ts";
 * import { ManualClock } from "../sip/clock.ts";
 * import assert from "node:assert/strict";
 * const clock = new ManualClock();
 * let now = [{ interface: "eth0", address: "192.0.2.7", family: "IPv4" as const, prefix: 24 }];
 * const source = new PollingSource({ clock, intervalMs: 100, read: () => now });
 * const seen: string[] = [];
 * await source.start((events) => events.forEach((e) => seen.push(`${e.kind} ${e.address.address}`)));
 * now = [{ interface: "eth0", address: "192.0.2.8", family: "IPv4", prefix: 24 }];
 * clock.advance(100);
 * assert.deepEqual(seen, ["deleted 192.0.2.7", "added 192.0.2.8"]);
 * await source.close();
 * ```
 */
export class PollingSource implements AddressSource {
  /** Always "poll". */
  readonly kind = "poll" as const;
  #clock: Clock;
  #intervalMs: number;
  #read: () => InterfaceAddress[];
  #timer?: TimerId;
  #closed = false;
  #last = new Map<string, InterfaceAddress>();

  /** Creates the source; nothing runs before {@linkcode PollingSource.start}. */
  constructor(options: PollingSourceOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#intervalMs = options.intervalMs ?? 1000;
    this.#read = options.read ?? (() => fromNetworkInterfaces(Deno.networkInterfaces()));
  }

  /** Reads the list now and starts the poll timer. */
  start(onChange: AddressChangeHandler): Promise<InterfaceAddress[]> {
    const first = this.#read();
    this.#last = new Map(first.map((a) => [addressKey(a), a]));
    const tick = () => {
      if (this.#closed) return;
      let now: InterfaceAddress[];
      try {
        now = this.#read();
      } catch {
        now = [...this.#last.values()];
      }
      const next = new Map(now.map((a) => [addressKey(a), a]));
      const events: IpAddressEvent[] = [];
      for (const [k, a] of this.#last) {
        if (!next.has(k)) events.push({ kind: "deleted", address: a, usable: true });
      }
      for (const [k, a] of next) {
        if (!this.#last.has(k)) events.push({ kind: "added", address: a, usable: true });
      }
      this.#last = next;
      onChange(events);
      this.#timer = this.#clock.setTimeout(tick, this.#intervalMs);
    };
    this.#timer = this.#clock.setTimeout(tick, this.#intervalMs);
    return Promise.resolve(first);
  }

  /** Stops the poll timer. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    return Promise.resolve();
  }
}
