/**
 * What `sipkit watch add|remove|list` do (their options are in `watch.ts`):
 * edit or print the buddy list file. Loaded only when one of them runs.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { addBuddy, hasBuddy, listBuddies, removeBuddy } from "../lib/presence/resource_lists.ts";
import { buddyUri, defaultBuddyFile, readBuddyFile, writeBuddyFile } from "./_buddies.ts";
import { type CommonOptions, runCommand } from "./_common.ts";
import { EXIT } from "./_exit.ts";
import type { BuddyFileOptions } from "./watch.ts";

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

/** Runs `sipkit watch add <uri>` with the parsed command line, in the command frame; exits. */
export function runBuddyAdd(cmd: AnyCommand, uri: string): Promise<never> {
  return runCommand<BuddyFileOptions & { name?: string } & CommonOptions>(
    cmd,
    async (opts, ctx) => {
      const file = opts.buddies ?? defaultBuddyFile();
      const normalized = buddyUri(uri);
      const doc = await readBuddyFile(file);
      const existed = hasBuddy(doc, normalized);
      await writeBuddyFile(file, addBuddy(doc, normalized, { displayName: opts.name }));
      await ctx.out.emit("buddy_added", {
        uri: normalized,
        name: opts.name,
        existed,
        file,
      });
      return EXIT.OK;
    },
  );
}

/** Runs `sipkit watch remove <uri>` with the parsed command line, in the command frame; exits. */
export function runBuddyRemove(cmd: AnyCommand, uri: string): Promise<never> {
  return runCommand<BuddyFileOptions & CommonOptions>(cmd, async (opts, ctx) => {
    const file = opts.buddies ?? defaultBuddyFile();
    const normalized = buddyUri(uri);
    const doc = await readBuddyFile(file);
    const existed = hasBuddy(doc, normalized);
    if (existed) await writeBuddyFile(file, removeBuddy(doc, normalized));
    await ctx.out.emit("buddy_removed", { uri: normalized, existed, file });
    return EXIT.OK;
  });
}

/** Runs `sipkit watch list` with the parsed command line, in the command frame; exits. */
export function runBuddyList(cmd: AnyCommand): Promise<never> {
  return runCommand<BuddyFileOptions & CommonOptions>(cmd, async (opts, ctx) => {
    const file = opts.buddies ?? defaultBuddyFile();
    const doc = await readBuddyFile(file);
    for (const b of listBuddies(doc)) {
      await ctx.out.emit("buddy", { uri: b.uri, name: b.displayName });
    }
    return EXIT.OK;
  });
}
