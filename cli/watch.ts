/**
 * `sipkit watch`: subscribe to buddies' presence and report every change;
 * `sipkit watch add|remove|list`: edit the buddy list.
 * The command's options and help; what it does is in `_watch.ts` (and the
 * buddy list's editing in `_watch_buddies.ts`), loaded when it runs (so that
 * `--help` does not load the library).
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { addCommonOptions, type CommonOptions, intArg } from "./_options.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";

/** Options of `watch add|remove|list`: the buddy list file. */
export type BuddyFileOptions = { buddies?: string };

function buddySubcommands(): Command[] {
  const add = new Command("add")
    .description("Add a buddy to the buddy list (kept in place when already there).")
    .argument("<uri>", "buddy address, e.g. bob@example.test")
    .option("--name <display name>", "display name kept with the entry")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  add.action(async (uri) => {
    await (await import("./_watch_buddies.ts")).runBuddyAdd(add, uri);
  });

  const remove = new Command("remove")
    .description("Remove a buddy from the buddy list (no error when it is not there).")
    .argument("<uri>", "buddy address")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  remove.action(async (uri) => {
    await (await import("./_watch_buddies.ts")).runBuddyRemove(remove, uri);
  });

  const list = new Command("list")
    .description("Print the buddy list, one buddy event per entry.")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  list.action(async () => {
    await (await import("./_watch_buddies.ts")).runBuddyList(list);
  });
  return [add, remove, list] as unknown as Command[];
}

/** Options of `sipkit watch` (and of `runWatch` in `_watch.ts`). */
export interface WatchOptions extends CommonOptions, RoamOptions {
  /** Also watch the buddy list: true for the default file, or a file. */
  buddies?: string | boolean;
  /** One RFC 4662 list subscription to this URI at a presence server. */
  list?: string;
  /** Fetch each buddy's state once (SUBSCRIBE Expires: 0), print it, exit. */
  once?: boolean;
  /** Add the PIDF document as `raw` to presence events. */
  raw?: boolean;
  /** Subscription duration asked for, seconds. Default 3600. */
  expires?: number;
  /** Compact header names on the wire (`--no-compact` turns them off). Default true. */
  compact?: boolean;
}

/** Builds the `watch` command with its `add`, `remove` and `list` subcommands. */
export function watchCommand(): Command {
  const cmd = new Command("watch")
    .description(
      "Subscribe to buddies' presence (SUBSCRIBE Event: presence) and report every\n" +
        "change as a presence event; subscription life comes as subscription events.\n" +
        "Without URIs and without --list it watches the buddy list. Reads buddy_added\n" +
        "and buddy_removed lines on stdin, and the watcher lines of `sipkit notify`: a\n" +
        "buddy that subscribes to us is online, so a failed subscription to it is\n" +
        "re-sent at once. Edit the buddy list with `watch add|remove|list`.",
    )
    .argument("[uri...]", "buddies to watch, e.g. bob@example.test")
    .option("--buddies [file]", "also watch the buddy list (default <config dir>/buddies.xml)")
    .option("--list <uri>", "one RFC 4662 subscription to this resource list URI")
    .option("--once", "fetch each buddy's current state, print it and exit")
    .option("--raw", "add the PIDF document as raw to presence events")
    .option("--expires <s>", "subscription duration to ask for", intArg("--expires", 1), 3600)
    .option(
      "--no-compact",
      "send full header names and Content-Length (default: compact forms, RFC 3261 7.3.3)",
    )
    .enablePositionalOptions()
    .addHelpText(
      "after",
      `
Examples:
  sipkit watch add bob@example.test --name Bob
  sipkit watch -u alice@example.test
  sipkit watch -u alice@example.test --once sip:bob@192.0.2.7:5070
  sipkit watch -u alice@example.test --proxy sip:pres.example.test --list sip:buddies-alice@example.test
  sipkit notify -u alice@example.test | sipkit watch -u alice@example.test --buddies`,
    );
  addCommonOptions(cmd);
  addRoamOptions(cmd, true);
  for (const sub of buddySubcommands()) cmd.addCommand(sub);
  // The root program does not use positional options, so `watch list --buddies f`
  // reaches `watch` with --buddies already parsed as its own option: hand the
  // options the subcommand also has down to it.
  cmd.hook("preSubcommand", (parent, sub) => {
    for (const option of sub.options) {
      const attr = option.attributeName();
      if (parent.getOptionValueSource(attr) !== "cli") continue;
      const value = parent.getOptionValue(attr);
      if (value === true && option.required) continue; // `--buddies` alone: the default file
      sub.setOptionValueWithSource(attr, value, "cli");
    }
  });
  cmd.action(async (uris) => {
    await (await import("./_watch.ts")).runWatchCommand(cmd, uris);
  });
  return cmd as unknown as Command;
}
