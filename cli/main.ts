/**
 * The `sipkit` command: `sipkit <command> [options]`.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { EXIT } from "./_exit.ts";
import { VERSION } from "../lib/version.ts";
import { registerCommand } from "./register.ts";
import { watchCommand } from "./watch.ts";
import { notifyCommand } from "./notify.ts";
import { messageCommand } from "./message.ts";

/** Builds the program with every command. */
export function buildProgram(): Command {
  const program = new Command("sipkit")
    .description(
      "Small SIP commands for presence, instant messages, calls and mobility.\n" +
        "Events go to stdout as NDJSON, logs to stderr; NDJSON on stdin drives commands.",
    )
    .version(VERSION, "-V, --version")
    .showHelpAfterError()
    .exitOverride();
  program.addCommand(registerCommand());
  program.addCommand(watchCommand());
  program.addCommand(notifyCommand());
  program.addCommand(messageCommand());
  return program;
}

/** Runs the program with arguments (without the program name). */
export async function main(args: string[]): Promise<void> {
  const program = buildProgram();
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
