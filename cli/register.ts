/**
 * `sipkit register`: keep an address of record bound to a contact.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import {
  type Binding,
  Registration,
  RegistrationError,
  type RegistrationEvent,
  type UserAgent,
} from "../mod.ts";
import {
  addCommonOptions,
  type CommandContext,
  type CommonOptions,
  intArg,
  runCommand,
} from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import { createUserAgent } from "./_ua.ts";

/** Builds the `register` command. */
export function registerCommand(): Command {
  const cmd = new Command("register")
    .description(
      "Register an address of record at a registrar and keep it registered.\n" +
        "Long-running by default: refreshes before expiry, retries failures with back-off,\n" +
        "follows address_changed events from stdin, removes its binding on exit.",
    )
    .option("--registrar <uri>", "registrar URI (default: the domain of the AOR, RFC 3263)")
    .option("--expires <s>", "requested binding lifetime in seconds", intArg("--expires", 0), 3600)
    .option("--once", "register once, print the result and exit (binding stays)")
    .option("--remove", "remove this contact's binding (with --all, every binding) and exit")
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
  sipkit roam | sipkit register -u alice@example.test`,
    );
  addCommonOptions(cmd);
  cmd.action(async () => {
    await runCommand<RegisterOptions & CommonOptions>(cmd, runRegister);
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
  opts: RegisterOptions & CommonOptions,
  ctx: CommandContext,
): Promise<number> {
  const modes = [opts.once, opts.remove, opts.query].filter(Boolean).length;
  if (modes > 1) throw usageError("--once, --remove and --query exclude each other");
  if (opts.all && !opts.remove) throw usageError("--all goes with --remove");
  const ua = await createUserAgent(opts, ctx, { requireUser: true });
  try {
    const reg = new Registration(ua, {
      registrar: opts.registrar,
      contact: opts.contact,
      expires: opts.expires,
      onEvent: (e) => void emitEvent(ctx, e),
    });
    if (opts.query) {
      return await oneShot(ctx, async () => {
        const bindings = await reg.query();
        for (const b of bindings) await emitBinding(ctx, ua, b, reg);
        if (bindings.length === 0) ctx.log.log("info", "no bindings");
      });
    }
    if (opts.remove) return await oneShot(ctx, () => reg.unregister({ all: opts.all }));
    if (opts.once) return await oneShot(ctx, async () => void await reg.register());
    return await longRunning(ctx, reg);
  } finally {
    await ua.close();
  }
}

async function oneShot(ctx: CommandContext, fn: () => Promise<void>): Promise<number> {
  try {
    await fn();
    return EXIT.OK;
  } catch (e) {
    if (e instanceof RegistrationError) {
      await ctx.out.emit("registration_failed", {
        status: e.status,
        reason: e.reason,
      });
      ctx.log.log("error", e.message);
      return e.local ? EXIT.NETWORK : EXIT.PEER_REJECTED;
    }
    throw e;
  }
}

async function longRunning(ctx: CommandContext, reg: Registration): Promise<number> {
  reg.keepAlive();
  const input = ctx.readInput(async (event, line) => {
    if (event.type !== "address_changed") return;
    const address = event.address;
    if (typeof address !== "string" || address === "") {
      ctx.log.log("warn", `<stdin>:${line}: address_changed without "address"; skipped`);
      await ctx.out.emit("error", { source: "stdin", line, message: 'missing "address"' });
      return;
    }
    ctx.log.log("info", `address changed to ${address}: re-registering`);
    await reg.changeAddress(address).catch(() => {});
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  reg.stop();
  if (reg.registered) {
    try {
      await reg.unregister();
    } catch (e) {
      ctx.log.log("warn", `could not remove binding: ${(e as Error).message}`);
    }
  }
  void input;
  return EXIT.OK;
}

function emitEvent(ctx: CommandContext, e: RegistrationEvent): Promise<void> {
  switch (e.type) {
    case "registered":
      return ctx.out.emit(e.refreshed ? "refreshed" : "registered", {
        aor: e.aor,
        contact: e.contact,
        expires: e.expires,
        registrar: e.registrar,
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

function emitBinding(
  ctx: CommandContext,
  ua: UserAgent,
  b: Binding,
  reg: Registration,
): Promise<void> {
  return ctx.out.emit("binding", {
    aor: `sip:${ua.aor.user ? ua.aor.user + "@" : ""}${ua.aor.host}`,
    contact: b.contact,
    expires: b.expires,
    q: b.q,
    registrar: `${reg.registrar.scheme}:${reg.registrar.host}${
      reg.registrar.port ? ":" + reg.registrar.port : ""
    }`,
  });
}
