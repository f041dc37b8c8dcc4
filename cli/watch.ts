/**
 * `sipkit watch`: subscribe to buddies' presence and report every change;
 * `sipkit watch add|remove|list`: edit the buddy list.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import {
  addBuddy,
  hasBuddy,
  listBuddies,
  loadBuddyList,
  normalizeBuddyUri,
  removeBuddy,
  type ResourceLists,
  saveBuddyList,
} from "../lib/presence/resource_lists.ts";
import { type CommandContext, type CommonOptions, runCommand } from "./_common.ts";
import { configDir } from "./_config.ts";
import { CommandError, EXIT, usageError } from "./_exit.ts";

/** The default buddy list file: `<configDir>/buddies.xml` (an RFC 4826 document). */
export function defaultBuddyFile(): string {
  return `${configDir()}/buddies.xml`;
}

/**
 * Reads a buddy list file. A missing or empty file is an empty list; a file
 * that is not a resource-lists document is a usage error naming the file.
 */
export async function readBuddyFile(path: string): Promise<ResourceLists> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return loadBuddyList("");
    throw usageError(`Cannot read buddy list ${path}: ${(e as Error).message}`);
  }
  try {
    return loadBuddyList(text);
  } catch (e) {
    throw usageError(`Cannot parse buddy list ${path}: ${(e as Error).message}`);
  }
}

/** Writes a buddy list file atomically (a temporary file renamed over it), creating its directory. */
export async function writeBuddyFile(path: string, doc: ResourceLists): Promise<void> {
  const slash = path.lastIndexOf("/");
  if (slash > 0) await Deno.mkdir(path.slice(0, slash), { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, saveBuddyList(doc) + "\n");
  await Deno.rename(tmp, path);
}

function buddyUri(text: string): string {
  try {
    return normalizeBuddyUri(text);
  } catch (e) {
    throw usageError((e as Error).message);
  }
}

type BuddyFileOptions = { buddies?: string };

function buddySubcommands(): Command[] {
  const add = new Command("add")
    .description("Add a buddy to the buddy list (kept in place when already there).")
    .argument("<uri>", "buddy address, e.g. bob@example.test")
    .option("--name <display name>", "display name kept with the entry")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  add.action(async (uri) => {
    await runCommand<BuddyFileOptions & { name?: string } & CommonOptions>(
      add,
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
  });

  const remove = new Command("remove")
    .description("Remove a buddy from the buddy list (no error when it is not there).")
    .argument("<uri>", "buddy address")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  remove.action(async (uri) => {
    await runCommand<BuddyFileOptions & CommonOptions>(remove, async (opts, ctx) => {
      const file = opts.buddies ?? defaultBuddyFile();
      const normalized = buddyUri(uri);
      const doc = await readBuddyFile(file);
      const existed = hasBuddy(doc, normalized);
      if (existed) await writeBuddyFile(file, removeBuddy(doc, normalized));
      await ctx.out.emit("buddy_removed", { uri: normalized, existed, file });
      return EXIT.OK;
    });
  });

  const list = new Command("list")
    .description("Print the buddy list, one buddy event per entry.")
    .option("--buddies <file>", "buddy list file (default <config dir>/buddies.xml)")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON");
  list.action(async () => {
    await runCommand<BuddyFileOptions & CommonOptions>(list, async (opts, ctx) => {
      const file = opts.buddies ?? defaultBuddyFile();
      const doc = await readBuddyFile(file);
      for (const b of listBuddies(doc)) {
        await ctx.out.emit("buddy", { uri: b.uri, name: b.displayName });
      }
      return EXIT.OK;
    });
  });
  return [add, remove, list] as unknown as Command[];
}

/** Builds the `watch` command with its `add`, `remove` and `list` subcommands. */
export function watchCommand(): Command {
  const cmd = new Command("watch")
    .description(
      "Subscribe to buddies' presence and report every change (presence events),\n" +
        "and manage the buddy list (watch add|remove|list).",
    )
    .enablePositionalOptions();
  for (const sub of buddySubcommands()) cmd.addCommand(sub);
  return cmd as unknown as Command;
}

/** @internal Placeholder until the watch body lands. */
export async function _runWatch(_opts: CommonOptions, _ctx: CommandContext): Promise<number> {
  await Promise.resolve();
  throw new CommandError(EXIT.INTERNAL, "not implemented");
}
