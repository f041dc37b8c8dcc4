/**
 * The buddy list file, shared by `sipkit watch` (the buddies it watches,
 * `watch add|remove|list`) and `sipkit notify`'s edge mode (the watchers it
 * accepts): where it is, reading and writing it. Small on purpose, so that
 * notify's edge mode does not load the watch command.
 *
 * @module
 */

import {
  loadBuddyList,
  normalizeBuddyUri,
  type ResourceLists,
  saveBuddyList,
} from "../lib/presence/resource_lists.ts";
import type { CommandContext } from "./_common.ts";
import type { InputEvent } from "./_io.ts";
import { configDir } from "./_config.ts";
import { usageError } from "./_exit.ts";

/** The default buddy list file: `<configDir>/buddies.xml` (an RFC 4826 document). */
export function defaultBuddyFile(): string {
  return `${configDir()}/buddies.xml`;
}

/**
 * Reads a buddy list file. A missing or empty file is an empty list (unless
 * `options.mustExist`: a file the user named, where a typo must not silently
 * watch nobody); a file that is not a resource-lists document is a usage
 * error naming the file.
 */
export async function readBuddyFile(
  path: string,
  options: { mustExist?: boolean } = {},
): Promise<ResourceLists> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound && !options.mustExist) return loadBuddyList("");
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

/** A buddy address as the buddy list keeps it; a usage error when it is not one. */
export function buddyUri(text: string): string {
  try {
    return normalizeBuddyUri(text);
  } catch (e) {
    throw usageError((e as Error).message);
  }
}

/**
 * The buddy URI of a stdin line's `uri` field, normalized; a line whose
 * `uri` is not one is reported (`ctx.skipLine`) and gives undefined.
 */
export async function buddyUriOfLine(
  ctx: CommandContext,
  event: InputEvent,
  line: number,
): Promise<string | undefined> {
  try {
    return normalizeBuddyUri(String(event.uri ?? ""));
  } catch (e) {
    await ctx.skipLine(line, (e as Error).message);
    return undefined;
  }
}
