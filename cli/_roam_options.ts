/**
 * The address monitor options (`sipkit roam`, and `--roam` of the
 * long-running commands). Only commander is imported here, so that a
 * command's definition stays quick to load; the monitor is in `_roam.ts`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { intArg } from "./_options.ts";

/** Values of the address monitor options (`roam`, and `--roam` commands). */
export interface RoamOptions {
  /** Run the monitor in-process (long-running commands). */
  roam?: boolean;
  /** Destination whose route gives the address that matters. */
  toward?: string;
  /** Watch only this interface. */
  interface?: string;
  /** Debounce in ms. */
  debounce?: number;
  /** Poll instead of ip monitor, every this many ms. */
  poll?: number;
}

/** Adds the monitor options; with `flag`, also `--roam` (for long-running commands). */
// deno-lint-ignore no-explicit-any
export function addRoamOptions<C extends Command<any, any, any>>(cmd: C, flag: boolean): C {
  if (flag) {
    cmd.option(
      "--roam",
      "watch the host's address and follow it (re-bind, re-register, refresh subscriptions)",
    );
  }
  cmd
    .option(
      "--toward <uri-or-host>",
      flag
        ? "with --roam: the address that matters is the one used toward this (default: the registrar or proxy)"
        : "the address that matters is the one used toward this (default: the default route)",
    )
    .option("--interface <name>", "watch only this interface")
    .option("--debounce <ms>", "quiet time before a change counts", intArg("--debounce", 0, 60000))
    .option(
      "--poll <ms>",
      "poll the interface list every <ms> instead of listening to ip monitor",
      intArg("--poll", 10, 3600000),
    );
  return cmd;
}
