/**
 * `sipkit notify`: be the user's presence agent (edge mode: answer
 * SUBSCRIBE, NOTIFY watchers) or publish the user's status to a presence
 * server (`--publish`, RFC 3903).
 * The command's options and help; what it does is in `_notify.ts`, loaded
 * when it runs (so that `--help` does not load the library).
 *
 * @module
 */

import { Command, Option } from "@commander-js/extra-typings";
import { USER_STATUSES } from "../lib/presence/user_status.ts";
import { addCommonOptions, type CommonOptions, intArg } from "./_options.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";

/** How unknown watchers are answered. */
export type UnknownPolicy = "accept" | "pending" | "reject";

/** Options of `sipkit notify` (and of `runNotify` in `_notify.ts`). */
export interface NotifyOptions extends CommonOptions, RoamOptions {
  /** The status to start with. Default "online". */
  status?: string;
  /** A note shown to watchers. */
  note?: string;
  /** The note's language (xml:lang), e.g. "fr". */
  noteLang?: string;
  /** Publish to a presence server instead of answering SUBSCRIBE. */
  publish?: boolean;
  /** Publish once and exit (with `publish`). */
  once?: boolean;
  /** Publication lifetime / largest subscription duration granted, seconds. */
  expires?: number;
  /** Watchers accepted besides the buddy list. */
  allow?: string[];
  /** Policy for other watchers. Default "pending". */
  unknown?: UnknownPolicy;
  /** Seconds between two NOTIFYs to one watcher. Default 1. */
  minInterval?: number;
  /** Buddy list file (watchers in it are accepted). Default the config directory's. */
  buddies?: string;
  /** Keep the contact registered. */
  register?: boolean;
  /** Compact header names on the wire (`--no-compact` turns them off). Default true. */
  compact?: boolean;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Builds the `notify` command. */
export function notifyCommand(): Command {
  const cmd = new Command("notify")
    .description(
      "Be your own presence agent: answer SUBSCRIBE (Event: presence) and NOTIFY every\n" +
        "watcher at once and on every status change (edge mode, the default); or publish\n" +
        "your status to a presence server (--publish). Status changes come from flags and\n" +
        'from {"type":"status","status":"busy","note":"...","note_lang":"en"} lines on\n' +
        'stdin; a {"type":"allow","uri":"..."} line authorizes a pending watcher.',
    )
    .addOption(
      new Option("--status <status>", "your status").choices(USER_STATUSES).default("online"),
    )
    .option("--note <text>", "a note shown to watchers")
    .option("--note-lang <tag>", "the note's language (xml:lang), e.g. fr")
    .option("--publish", "publish to the presence server (PUBLISH) instead of answering SUBSCRIBE")
    .option("--once", "with --publish: publish (or refresh the saved publication) and exit")
    .option(
      "--expires <s>",
      "publication lifetime (default 3600); in edge mode the longest subscription granted " +
        "(default 86400)",
      intArg("--expires", 1),
    )
    .option(
      "--allow <uri>",
      "accept this watcher (repeatable; the buddy list is accepted)",
      collect,
    )
    .addOption(
      new Option("--unknown <policy>", "answer to other watchers")
        .choices(["accept", "pending", "reject"] as const)
        .default("pending" as const),
    )
    .option(
      "--min-interval <s>",
      "at most one NOTIFY per watcher per this many seconds (the last state always follows)",
      intArg("--min-interval", 0, 3600),
      1,
    )
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option(
      "--no-compact",
      "send full header names and Content-Length (default: compact forms, RFC 3261 7.3.3)",
    )
    .addHelpText(
      "after",
      `
Examples:
  sipkit notify -u alice@example.test --bind 127.0.0.1:5070 --status online
  echo '{"type":"status","status":"lunch"}' | sipkit notify -u alice@example.test
  sipkit notify --publish --once -u alice@example.test --proxy sip:pres.example.test --status busy
  sipkit notify -u alice@example.test | sipkit watch -u alice@example.test --buddies`,
    );
  addCommonOptions(cmd, { listens: true });
  addRoamOptions(cmd, true);
  cmd.action(async () => {
    await (await import("./_notify.ts")).runNotifyCommand(cmd);
  });
  return cmd as unknown as Command;
}
