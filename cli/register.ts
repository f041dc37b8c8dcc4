/**
 * `sipkit register`: keep an address of record bound to a contact.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { type Binding, Registration, RegistrationError } from "../lib/sip/registration.ts";
import { parseHostPort } from "../lib/sip/input.ts";
import { formatUri } from "../lib/sip/uri.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import {
  addCommonOptions,
  type CommandContext,
  type CommonOptions,
  intArg,
  runCommand,
  uriOption,
} from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import {
  bindingsFile,
  emitRegistrationEvent,
  keepRegistered,
  recordedBindings,
  updateRecordedBindings,
} from "./_register.ts";
import { createUserAgent } from "./_ua.ts";
import { defaultToward } from "./_roam.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";

/** Builds the `register` command. */
export function registerCommand(): Command {
  const cmd = new Command("register")
    .description(
      "Register an address of record at a registrar and keep it registered. " +
        "Long-running by default: refreshes before expiry, retries failures with back-off, " +
        "follows address_changed events from stdin, removes its binding on exit.",
    )
    .option("--registrar <uri>", "registrar URI (default: the domain of the AOR, RFC 3263)")
    .option("--expires <s>", "requested binding lifetime in seconds", intArg("--expires", 1), 3600)
    .option("--once", "register once, print the result and exit (binding stays)")
    .option(
      "--remove",
      "remove the binding(s) this host left (by --once, --bind or --contact); with --all, every binding; then exit",
    )
    .option("--all", "with --remove: remove every binding of the AOR (Contact: *)")
    .option("--query", "print the current bindings as events and exit")
    .option(
      "--contact <uri>",
      "register this contact instead of our own (third-party registration)",
    )
    .addHelpText(
      "after",
      `
Examples:
  SIPKIT_PASSWORD=secret sipkit register -u alice@example.test
  sipkit register -u alice@example.test --registrar sip:127.0.0.1:5060 --once --password-file ~/.sip-pw
  sipkit register -u alice@example.test --query
  sipkit register -u alice@example.test --remove          # what --once left
  echo '{"type":"address_changed","new":"192.0.2.7"}' | sipkit register -u alice@example.test
  sipkit roam | sipkit register -u alice@example.test
  sipkit register -u alice@example.test --roam

Events (NDJSON on stdout, each with "type" and "time"):
  registered          aor, contact, expires, registrar[, replaced]
  refreshed           aor, contact, expires, registrar
  unregistered        aor, contact ("*" for all), registrar
  registration_failed status, reason[, retry_in]
  binding             aor, contact, expires[, q], registrar   (--query)
  error               source, line, message                   (bad stdin line)
  moved               old, new, redone, duration_ms[, failed] (after an address change)
  address_changed, address_added, address_lost                (--roam: as sipkit roam)

Input (NDJSON on stdin): {"type":"address_changed","new":"192.0.2.7"} ("address" also read)

Exit codes: 0 done, 1 the registrar said no, 2 bad usage, 3 network or timeout,
130 interrupted (after removing the binding).`,
    );
  addCommonOptions(cmd);
  addRoamOptions(cmd, true);
  cmd.action(async () => {
    await runCommand<RegisterOptions & CommonOptions & RoamOptions>(cmd, runRegister);
  });
  return cmd as unknown as Command;
}

type RegisterOptions = {
  registrar?: string;
  expires: number;
  once?: boolean;
  remove?: boolean;
  all?: boolean;
  query?: boolean;
  contact?: string;
  user?: string;
};

async function runRegister(
  opts: RegisterOptions & CommonOptions & RoamOptions,
  ctx: CommandContext,
): Promise<number> {
  const modes = [opts.once, opts.remove, opts.query].filter(Boolean).length;
  if (modes > 1) throw usageError("--once, --remove and --query exclude each other");
  if (opts.all && !opts.remove) throw usageError("--all goes with --remove");
  if (opts.registrar) uriOption("--registrar", opts.registrar);
  if (opts.contact) uriOption("--contact", opts.contact);
  const ua = await createUserAgent(opts, ctx, {
    requireUser: true,
    oneShot: Boolean(opts.once || opts.remove || opts.query),
  });
  try {
    if (!opts.once && !opts.remove && !opts.query) return await longRunning(ctx, ua, opts);
    const reg = new Registration(ua, {
      registrar: opts.registrar,
      contact: opts.contact,
      expires: opts.expires,
      onEvent: (e) => void emitRegistrationEvent(ctx, e),
    });
    if (opts.query) {
      return await oneShot(ctx, ua, async () => {
        const bindings = await reg.query();
        for (const b of bindings) await emitBinding(ctx, ua, b, reg);
        if (bindings.length === 0) ctx.log.log("info", "no bindings");
      });
    }
    const aor = formatUri(ua.aor);
    const registrar = formatUri(reg.registrar);
    if (opts.remove) {
      return await oneShot(ctx, ua, async () => {
        const contacts = await contactsToRemove(opts, reg, aor, registrar);
        await reg.unregister(opts.all ? { all: true } : { contacts });
        await remember(ctx, aor, registrar, { removed: opts.all ? ["*"] : contacts });
      });
    }
    return await oneShot(ctx, ua, async () => {
      const granted = await reg.register();
      // Remembered so that a later --remove (a new process, another port) finds it.
      if (granted > 0 && reg.contact) {
        await remember(ctx, aor, registrar, { added: [reg.contact] });
      }
    });
  } finally {
    await ua.close();
  }
}

/**
 * What `--remove` removes: the `--contact` given; else the bindings earlier
 * `--once` runs left (recorded in the state directory) and our own contact
 * when `--bind` fixes the port (an ephemeral port cannot match an old binding).
 */
async function contactsToRemove(
  opts: RegisterOptions & CommonOptions,
  reg: Registration,
  aor: string,
  registrar: string,
): Promise<string[]> {
  if (opts.all) return [];
  if (opts.contact) return [await reg.localContact()];
  const contacts = await recordedBindings(aor, registrar);
  if (opts.bind !== undefined && parseHostPort(opts.bind).port !== 0) {
    contacts.push(await reg.localContact());
  }
  if (contacts.length === 0) {
    throw usageError(
      `no binding of ${aor} at ${registrar} is known to this host (none left by --once): ` +
        "give --contact <uri>, --bind <host:port> of the registered process, or --all",
    );
  }
  return contacts.filter((c, i, a) => a.indexOf(c) === i);
}

async function remember(
  ctx: CommandContext,
  aor: string,
  registrar: string,
  change: { added?: string[]; removed?: string[] },
): Promise<void> {
  try {
    await updateRecordedBindings(aor, registrar, change);
  } catch (e) {
    ctx.log.log("warn", `cannot update ${bindingsFile()}: ${(e as Error).message}`);
  }
}

/**
 * Runs one transaction's worth of work; a SIGINT/SIGTERM (or a closed stdout)
 * ends it at once: the UA is closed, which ends its transactions, and the
 * frame exits with 130 (SIGINT) or 0.
 */
async function oneShot(
  ctx: CommandContext,
  ua: UserAgent,
  fn: () => Promise<void>,
): Promise<number> {
  const work = fn();
  const outcome = await Promise.race([
    work.then(() => "done" as const, (e: unknown) => e),
    ctx.stopped.then(() => "stopped" as const),
  ]);
  if (outcome === "stopped") {
    work.catch(() => {}); // ends with a local error once the UA is closed
    await ua.close();
    return EXIT.INTERRUPTED;
  }
  if (outcome === "done") return EXIT.OK;
  const e = outcome;
  if (e instanceof RegistrationError) {
    await ctx.out.emit("registration_failed", { status: e.status, reason: e.reason });
    ctx.log.log("error", e.message);
    return e.local ? EXIT.NETWORK : EXIT.PEER_REJECTED;
  }
  throw e;
}

async function longRunning(
  ctx: CommandContext,
  ua: UserAgent,
  opts: RegisterOptions & RoamOptions,
): Promise<number> {
  const kept = keepRegistered(ua, ctx, {
    registrar: opts.registrar,
    contact: opts.contact,
    expires: opts.expires,
  });
  if (opts.roam) await kept.follower.roam(opts, defaultToward(ua, opts.registrar));
  // Input ends (EOF) without ending the command: it runs until a signal or a closed stdout.
  ctx.readInput(async (event, line) => {
    await kept.handleInput(event, line);
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  await ctx.stopped;
  await kept.stop();
  return EXIT.OK;
}

function emitBinding(
  ctx: CommandContext,
  ua: UserAgent,
  b: Binding,
  reg: Registration,
): Promise<void> {
  return ctx.out.emit("binding", {
    aor: formatUri(ua.aor),
    contact: b.contact,
    expires: b.expires,
    q: b.q,
    registrar: formatUri(reg.registrar),
  });
}
