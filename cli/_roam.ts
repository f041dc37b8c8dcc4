/**
 * The address monitor as the commands use it: `sipkit roam` prints its
 * events, and `--roam` runs it inside a long-running command, which then
 * moves its user agent (and what runs on it) to the new address.
 *
 * @module
 */

import { type AddressEvent, AddressMonitor } from "../lib/mobility/monitor.ts";
import { PollingSource } from "../lib/mobility/sources.ts";
import { type Mover, type MoveResult, moveUserAgent } from "../lib/sip/move.ts";
import { isIpAddress, resolveSipUri } from "../lib/sip/resolver.ts";
import { formatUri } from "../lib/sip/uri.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { type CommandContext, uriOption } from "./_common.ts";
import { CommandError, EXIT } from "./_exit.ts";
import type { InputEvent } from "./_io.ts";
import type { RoamOptions } from "./_roam_options.ts";

export type { RoamOptions };

/**
 * The IP addresses `value` (a SIP URI, `host`, `host:port` or an IP literal)
 * leads to: the literal, or the servers RFC 3263 locates for it.
 */
export async function towardAddresses(value: string): Promise<string[]> {
  const text = value.trim();
  const bare = text.replace(/^\[(.*)\](:\d+)?$/, "$1").replace(/^([^:]+):\d+$/, "$1");
  if (isIpAddress(bare)) return [bare];
  const uri = uriOption("--toward", text);
  if (isIpAddress(uri.host)) return [uri.host];
  try {
    const targets = await resolveSipUri(uri);
    const hosts = targets.map((t) => t.host).filter((h, i, a) => a.indexOf(h) === i);
    if (hosts.length > 0) return hosts;
  } catch (e) {
    throw new CommandError(
      EXIT.NETWORK,
      `--toward: cannot locate ${formatUri(uri)}: ${(e as Error).message}`,
    );
  }
  throw new CommandError(EXIT.NETWORK, `--toward: cannot locate ${formatUri(uri)}`);
}

/** Where the address that matters is measured toward: the registrar, else the proxy, else the AOR's domain. */
export function defaultToward(ua: UserAgent, registrar?: string): string {
  if (registrar) return registrar;
  if (ua.outboundProxy) return formatUri(ua.outboundProxy);
  return `sip:${ua.aor.host}`;
}

/** Starts an address monitor with the options; its events go to `onEvent`. */
export async function startMonitor(
  ctx: CommandContext,
  opts: RoamOptions,
  toward: string[] | undefined,
  onEvent: (event: AddressEvent) => void,
): Promise<AddressMonitor> {
  const monitor = new AddressMonitor({
    toward,
    interface: opts.interface,
    debounceMs: opts.debounce,
    source: opts.poll !== undefined ? new PollingSource({ intervalMs: opts.poll }) : undefined,
    onEvent,
    log: (level, message) => ctx.log.log(level, message),
  });
  await monitor.start();
  return monitor;
}

/** Writes a monitor event as NDJSON (`address_added`, `address_lost`, `address_changed`). */
export async function emitAddressEvent(ctx: CommandContext, event: AddressEvent): Promise<void> {
  const { type, ...fields } = event;
  await ctx.out.emit(type, fields);
}

/**
 * Makes a command follow the host: address changes come from `--roam` (an
 * address monitor in-process) or from `address_changed` lines on stdin (from
 * `sipkit roam` in a pipeline). Each change moves the UA
 * ({@linkcode moveUserAgent}: transports, then the movers: registration,
 * subscriptions, calls) and writes a `moved` event telling what was redone.
 * Moves run one after the other, in the order the changes came.
 *
 * The hook for calls: a command passes its movers as a function, called at
 * each move, so that a `call` command can include a mover named "calls"
 * that re-INVITEs with the new Contact and re-binds its media.
 */
export class Follower {
  #ua: UserAgent;
  #ctx: CommandContext;
  #movers: () => Mover[];
  #chain: Promise<void> = Promise.resolve();
  #monitor?: AddressMonitor;
  #stopped = false;

  /** Creates a follower for `ua`; `movers` is asked at each move. */
  constructor(ua: UserAgent, ctx: CommandContext, movers: () => Mover[]) {
    this.#ua = ua;
    this.#ctx = ctx;
    this.#movers = movers;
  }

  /** The address monitor of `--roam`, once started. */
  get monitor(): AddressMonitor | undefined {
    return this.#monitor;
  }

  /**
   * Starts `--roam`: the monitor, with the address that matters taken
   * toward `--toward`, else `defaultToward` (the registrar or proxy).
   */
  async roam(opts: RoamOptions, defaultToward?: string): Promise<void> {
    const towardText = opts.toward ?? defaultToward;
    const toward = towardText ? await towardAddresses(towardText) : undefined;
    this.#monitor = await startMonitor(this.#ctx, opts, toward, (event) => {
      void emitAddressEvent(this.#ctx, event);
      if (event.type === "address_changed") void this.move(event.new);
    });
    const current = this.#monitor.current;
    this.#ctx.log.log(
      "info",
      `roaming: address ${current?.address ?? "none"} (${this.#monitor.method}; ` +
        `routes asked by ${this.#monitor.routeMethod ?? "nobody: from the interface list"})`,
    );
    // Start from the address that matters (not a guess from the interface list).
    if (current) this.#ua.transport.setLocalHost(current.address);
  }

  /**
   * Handles an `address_changed` input line (`{"type":"address_changed",
   * "new":"192.0.2.7"}`, or `"address"` for the new address). Returns false
   * for other types, so a command can pass every stdin event through it first.
   */
  async handleInput(event: InputEvent, line: number): Promise<boolean> {
    if (event.type !== "address_changed") return false;
    const given = event.new ?? event.address;
    const address = typeof given === "string" ? given.replace(/^\[(.*)\]$/, "$1") : given;
    if (typeof address !== "string" || !isIpAddress(address)) {
      const message = typeof address === "string"
        ? `address_changed: "${address}" is not an IP address`
        : 'address_changed without a string "new" (or "address")';
      await this.#ctx.skipLine(line, message);
      return true;
    }
    await this.move(address);
    return true;
  }

  /** Moves to `host` after the moves already queued; resolves when done. */
  move(host: string): Promise<void> {
    const run = async () => {
      if (this.#stopped) return;
      this.#ctx.log.log("info", `address changed to ${host}: moving`);
      const result = await moveUserAgent(this.#ua, host, this.#movers(), {
        log: (level, message) => this.#ctx.log.log(level, message),
      });
      await emitMoved(this.#ctx, result);
    };
    this.#chain = this.#chain.then(run).catch((e) =>
      this.#ctx.log.log("warn", `move to ${host} failed: ${(e as Error).message}`)
    );
    return this.#chain;
  }

  /** Stops the monitor; a move under way finishes first. */
  async stop(): Promise<void> {
    await this.#monitor?.close();
    await this.#chain;
    this.#stopped = true;
  }
}

/** Writes a `moved` event. */
export async function emitMoved(ctx: CommandContext, result: MoveResult): Promise<void> {
  await ctx.out.emit("moved", {
    old: result.old,
    new: result.new,
    redone: result.redone,
    failed: result.failed.length > 0 ? result.failed : undefined,
    duration_ms: Math.round(result.durationMs),
  });
}
