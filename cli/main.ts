/**
 * The `sipkit` command: `sipkit <command> [options]`.
 *
 * Start-up is kept short for one-shot use (cron jobs, probes): a command's
 * module, and the library behind it, is loaded only when that command runs
 * (or shows its help). The loaders below are `import()` calls with literal
 * specifiers. deno.json turns on `lazy-dynamic-imports`, so `deno run` reads
 * and loads only the modules that run (by default Deno walks the whole graph
 * behind every literal `import()` before the first line runs). With that
 * flag `deno compile` embeds what only `import()` reaches through deno.json's
 * `compile.include` (cli/ and lib/): `tests/compile_safety_test.ts` checks
 * the file list of a real compile.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { EXIT } from "./_exit.ts";
import { VERSION } from "../lib/version.ts";

/** A command of the program, loaded on demand. */
export interface CommandEntry {
  /** The one line `sipkit --help` shows; the detail is in the command's own help. */
  summary: string;
  /** Loads the command's module and builds the command. */
  load: () => Promise<Command>;
  /**
   * Starts loading the modules that the command runs (beyond its options and
   * help), all at once, while the program is being built; for a command that
   * is going to run, not for its help.
   */
  preload?: () => Promise<unknown>;
}

/**
 * Every command, one entry each: the name, its one-line summary, and a loader
 * with a literal `import()` specifier (never a computed one: `deno compile`
 * embeds only what it can see). The command's module must do nothing on import.
 */
export const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  // deno-fmt-ignore
  register: { summary: "Register an address of record and keep it registered", load: async () => (await import("./register.ts")).registerCommand() },
  // deno-fmt-ignore
  watch: { summary: "Watch buddies' presence (SUBSCRIBE) and print each change", load: async () => (await import("./watch.ts")).watchCommand() },
  // deno-fmt-ignore
  notify: { summary: "Be your own presence agent, or publish your status", load: async () => (await import("./notify.ts")).notifyCommand(), preload: () => import("./_notify_preload.ts") },
  // deno-fmt-ignore
  message: { summary: "Send, receive or chat with instant messages (RFC 3428)", load: async () => (await import("./message.ts")).messageCommand(), preload: () => import("./_message_preload.ts") },
  // deno-fmt-ignore
  call: { summary: "Place or answer an audio call (INVITE, RTP PCMU/PCMA)", load: async () => (await import("./call.ts")).callCommand() },
  // deno-fmt-ignore
  roam: { summary: "Watch the host's addresses and print each change", load: async () => (await import("./roam.ts")).roamCommand() },
};

/**
 * The command that `args` run, if any: the first argument that is not an
 * option (the program's own options take no value), or the one named after
 * `help`.
 */
function invokedCommand(args: readonly string[]): string | undefined {
  const i = args.findIndex((a) => !a.startsWith("-"));
  if (i < 0) return undefined;
  if (args[i] === "help") return args.slice(i + 1).find((a) => !a.startsWith("-"));
  return args[i];
}

/** Whether `args` ask for help (`--help`, `-h` or `help <command>`) rather than a run. */
function asksHelp(args: readonly string[]): boolean {
  return args.includes("--help") || args.includes("-h") ||
    args.find((a) => !a.startsWith("-")) === "help";
}

/**
 * Builds the program for `args`: the command they name is loaded in full
 * (and, when it is going to run, the modules it runs start loading at once);
 * every other command is a stand-in that only carries its name and summary
 * for the command list of `sipkit --help`.
 */
export async function buildProgram(args: readonly string[] = []): Promise<Command> {
  const program = new Command("sipkit")
    .description(
      "Small SIP commands for presence, instant messages, calls and mobility.\n" +
        "Events go to stdout as NDJSON, logs to stderr; NDJSON on stdin drives commands.\n" +
        "Run `sipkit <command> --help` for a command's options, events and exit codes.",
    )
    .version(VERSION, "-V, --version")
    .showHelpAfterError()
    .exitOverride();
  const invoked = invokedCommand(args);
  // A failed preload is not reported here: the command's own import of the
  // same modules fails with the same error, where the command handles it.
  const preloading = invoked !== undefined && !asksHelp(args)
    ? COMMANDS[invoked]?.preload?.().catch(() => {})
    : undefined;
  for (const [name, entry] of Object.entries(COMMANDS)) {
    const cmd = name === invoked ? await entry.load() : new Command(name);
    program.addCommand(cmd.summary(entry.summary));
  }
  await preloading;
  return program;
}

/** Runs the program with arguments (without the program name). */
export async function main(args: string[]): Promise<void> {
  const program = await buildProgram(args);
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    const err = e as { code?: string; exitCode?: number };
    if (err.code === "commander.helpDisplayed" || err.code === "commander.version") {
      Deno.exit(EXIT.OK);
    }
    if (err.code === "commander.help") Deno.exit(EXIT.OK);
    if (typeof err.exitCode === "number") Deno.exit(EXIT.USAGE);
    throw e;
  }
}

if (import.meta.main) await main(Deno.args);
