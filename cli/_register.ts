/**
 * Keeping a command's own contact registered while it runs: `sipkit register`
 * in its long-running mode, and `--register` of the listening commands
 * (message, watch, notify). Reports `registered`, `refreshed`,
 * `registration_failed` and `unregistered` events, follows `address_changed`
 * events read from stdin, and removes the binding on exit within a bounded
 * time.
 *
 * @module
 */

import {
  Registration,
  type RegistrationEvent,
  type RegistrationOptions,
} from "../lib/sip/registration.ts";
import { type Mover, registrationMover } from "../lib/sip/move.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import type { CommandContext } from "./_common.ts";
import { stateDir } from "./_config.ts";
import type { InputEvent } from "./_io.ts";
import { Follower } from "./_roam.ts";

/** Options of {@linkcode keepRegistered}. */
export interface KeepRegisteredOptions {
  /** Registrar URI; default the domain of the AOR (RFC 3263). */
  registrar?: string;
  /** Requested binding lifetime in seconds. Default 3600. */
  expires?: number;
  /** Register this contact instead of our own (third-party registration). */
  contact?: string;
  /** Longest wait for the removal REGISTER on stop, in ms. Default 5000. */
  removeTimeoutMs?: number;
  /** What else follows the host besides the registration (subscriptions, calls). */
  movers?: () => Mover[];
  /** Back-off settings, passed to {@linkcode Registration}. */
  backoff?: Pick<RegistrationOptions, "backoffBase" | "backoffMax">;
}

/** A registration kept alive by {@linkcode keepRegistered}. */
export interface KeptRegistration {
  /** The registration itself. */
  readonly registration: Registration;
  /**
   * Follows the host (`--roam`, and `address_changed` input): moves the UA,
   * re-registers the new contact removing the old one, and runs the other
   * movers.
   */
  readonly follower: Follower;
  /**
   * Handles an `address_changed` input event (`{"type":"address_changed",
   * "new":"192.0.2.7"}`) through {@linkcode KeptRegistration.follower}.
   * Returns false for other event types, so a command can pass every stdin
   * event through it first.
   */
  handleInput(event: InputEvent, line: number): Promise<boolean>;
  /**
   * Stops refreshing and removes the binding (when one exists), waiting at
   * most `removeTimeoutMs`. Safe to call twice.
   */
  stop(): Promise<void>;
}

/**
 * Registers the UA's contact now and keeps it registered until
 * {@linkcode KeptRegistration.stop}: refreshes before expiry, and after a
 * failure retries with growing back-off instead of giving up. Events go to
 * `ctx.out`, warnings to `ctx.log`.
 *
 * @example
 * ```ts ignore
 * const kept = opts.register ? keepRegistered(ua, ctx, { registrar: opts.registrar }) : undefined;
 * ctx.readInput(async (event, line) => {
 *   if (await kept?.handleInput(event, line)) return;
 *   // the command's own events
 * });
 * await ctx.stopped;
 * await kept?.stop();
 * ```
 */
export function keepRegistered(
  ua: UserAgent,
  ctx: CommandContext,
  options: KeepRegisteredOptions = {},
): KeptRegistration {
  const registration = new Registration(ua, {
    registrar: options.registrar,
    contact: options.contact,
    expires: options.expires,
    ...options.backoff,
    onEvent: (e) => void emitRegistrationEvent(ctx, e),
  });
  registration.keepAlive();
  const follower = new Follower(ua, ctx, () => [
    registrationMover(registration),
    ...(options.movers?.() ?? []),
  ]);
  let stopping: Promise<void> | undefined;
  return {
    registration,
    follower,
    handleInput: (event, line) => follower.handleInput(event, line),
    stop() {
      stopping ??= (async () => {
        await follower.stop();
        registration.stop();
        if (!registration.registered) return;
        const limit = options.removeTimeoutMs ?? 5000;
        ctx.log.log(
          "info",
          `removing binding ${registration.contact ?? ""} (interrupt again to quit at once)`,
        );
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), limit);
        });
        try {
          const result = await Promise.race([registration.unregister(), timeout]);
          if (result === "timeout") {
            ctx.log.log("warn", `could not remove binding: no answer within ${limit} ms`);
          }
        } catch (e) {
          ctx.log.log("warn", `could not remove binding: ${(e as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      })();
      return stopping;
    },
  };
}

/** Writes a {@linkcode RegistrationEvent} as the documented NDJSON event. */
export function emitRegistrationEvent(ctx: CommandContext, e: RegistrationEvent): Promise<void> {
  switch (e.type) {
    case "registered":
      return ctx.out.emit(e.refreshed ? "refreshed" : "registered", {
        aor: e.aor,
        contact: e.contact,
        expires: e.expires,
        registrar: e.registrar,
        replaced: e.replaced,
      });
    case "unregistered":
      return ctx.out.emit("unregistered", {
        aor: e.aor,
        contact: e.contact,
        registrar: e.registrar,
      });
    case "failed":
      ctx.log.log(
        "warn",
        `registration failed: ${e.status} ${e.reason}` +
          (e.retryIn !== undefined ? `; retrying in ${e.retryIn} s` : ""),
      );
      return ctx.out.emit("registration_failed", {
        status: e.status,
        reason: e.reason,
        retry_in: e.retryIn,
      });
  }
}

/** Where `--once` remembers the contacts it left registered, for a later `--remove`. */
export function bindingsFile(): string {
  return `${stateDir()}/bindings.json`;
}

interface BindingsState {
  /** `<aor> <registrar>` -> contacts left registered by `--once`. */
  bindings: Record<string, string[]>;
}

function stateKey(aor: string, registrar: string): string {
  return `${aor} ${registrar}`;
}

async function readState(): Promise<BindingsState> {
  try {
    const parsed = JSON.parse(await Deno.readTextFile(bindingsFile()));
    if (parsed && typeof parsed.bindings === "object" && parsed.bindings !== null) {
      return { bindings: parsed.bindings };
    }
  } catch {
    // missing or broken: nothing known
  }
  return { bindings: {} };
}

async function writeState(state: BindingsState): Promise<void> {
  const file = bindingsFile();
  await Deno.mkdir(stateDir(), { recursive: true });
  const tmp = `${file}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state, null, 2) + "\n");
  await Deno.rename(tmp, file);
}

/**
 * The contacts of `aor` at `registrar` that earlier `--once` runs left
 * registered (empty when none, or when the state file cannot be read).
 */
export async function recordedBindings(aor: string, registrar: string): Promise<string[]> {
  const state = await readState();
  const list = state.bindings[stateKey(aor, registrar)];
  return Array.isArray(list) ? list.filter((c) => typeof c === "string") : [];
}

/**
 * Updates the record of bindings left registered: adds `added`, drops
 * `removed` ("*" drops every contact of the AOR at that registrar).
 */
export async function updateRecordedBindings(
  aor: string,
  registrar: string,
  change: { added?: string[]; removed?: string[] },
): Promise<void> {
  const state = await readState();
  const key = stateKey(aor, registrar);
  let list = state.bindings[key] ?? [];
  const removed = change.removed ?? [];
  list = removed.includes("*") ? [] : list.filter((c) => !removed.includes(c));
  for (const c of change.added ?? []) if (!list.includes(c)) list.push(c);
  if (list.length > 0) state.bindings[key] = list;
  else delete state.bindings[key];
  await writeState(state);
}
