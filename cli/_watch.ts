/**
 * What `sipkit watch [uri...]` does (its options are in `watch.ts`): option
 * checks, the buddies to watch and NDJSON mapping; the protocol is in
 * lib/presence. A `--once` probe runs from this module alone; the lasting
 * watcher (stdin's buddy and watcher lines, `--roam`, `address_changed`
 * lines) is in `_watch_more.ts`, loaded when it runs.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { listBuddies, sameBuddy } from "../lib/presence/resource_lists.ts";
import { type PresenceEvent, PresenceWatcher } from "../lib/presence/watcher.ts";
import { buddyUri, defaultBuddyFile, readBuddyFile } from "./_buddies.ts";
import { type CommandContext, runCommand } from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import { createUserAgent } from "./_ua.ts";
import type { WatchOptions } from "./watch.ts";

/** Runs `sipkit watch [uri...]` with the parsed command line, in the command frame; exits. */
export function runWatchCommand(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
  uris: string[],
): Promise<never> {
  return runCommand<WatchOptions>(cmd, (opts, ctx) => runWatch(uris, opts, ctx));
}

/** The buddies to watch: the named ones, then the buddy list when asked (or when nothing else is). */
async function buddiesToWatch(uris: string[], opts: WatchOptions): Promise<string[]> {
  const out = uris.map(buddyUri);
  const useList = opts.buddies !== undefined && opts.buddies !== false ||
    (uris.length === 0 && opts.list === undefined);
  if (useList) {
    const named = typeof opts.buddies === "string";
    const file = named ? opts.buddies as string : defaultBuddyFile();
    for (const b of listBuddies(await readBuddyFile(file, { mustExist: named }))) {
      if (!out.some((u) => sameBuddy(u, b.uri))) out.push(b.uri);
    }
  }
  return out;
}

/** The fields of a `presence` event. */
export function presenceFields(e: PresenceEvent, raw: boolean): Record<string, unknown> {
  return {
    uri: e.uri,
    basic: e.basic,
    status: e.status,
    activities: e.activities,
    note: e.note,
    note_lang: e.noteLang,
    contacts: e.contacts,
    list: e.list,
    name: e.name,
    raw: raw ? e.raw : undefined,
  };
}

/**
 * The body of `sipkit watch [uri...]`: runs until `ctx.signal` aborts (or,
 * with `once`, until every fetch is answered) and returns the exit code.
 */
export async function runWatch(
  uris: string[],
  opts: WatchOptions,
  ctx: CommandContext,
): Promise<number> {
  const buddies = await buddiesToWatch(uris, opts);
  if (opts.once && opts.list) throw usageError("--once does not go with --list");
  if (opts.once && buddies.length === 0) throw usageError("--once needs at least one buddy");
  if (buddies.length === 0 && !opts.list) {
    ctx.log.log("info", "no buddies yet: waiting for buddy_added lines on stdin");
  }
  const raw = opts.raw ?? false;
  // Every SIP peer must accept compact header names (RFC 3261 7.3.3): fewer bytes per NOTIFY.
  const ua = await createUserAgent(opts, ctx, { compactHeaders: opts.compact ?? true });
  try {
    if (opts.once) {
      // SIGINT/SIGTERM must not wait for a buddy that never answers (64*T1 = 32 s).
      const results = await Promise.race([
        PresenceWatcher.fetch(ua, buddies),
        ctx.stopped.then(() => undefined),
      ]);
      if (!results) return EXIT.OK; // the exit code follows the stop reason (130 after SIGINT)
      let rejected = 0;
      let network = 0;
      for (const r of results) {
        if (r.presence) await ctx.out.emit("presence", presenceFields(r.presence, raw));
        else {
          // No response at all (timeout, transport error) is a network failure (exit 3).
          if ((r.error as { local?: boolean } | undefined)?.local) network++;
          else rejected++;
          await ctx.out.emit("subscription", {
            uri: r.uri,
            state: "failed",
            status: r.error?.status,
            reason: r.error?.reason,
          });
        }
      }
      return network > 0 ? EXIT.NETWORK : rejected > 0 ? EXIT.PEER_REJECTED : EXIT.OK;
    }
    // The lasting watcher, and what follows the host, load only when they run.
    return await (await import("./_watch_more.ts")).runWatcher(ua, buddies, opts, ctx);
  } finally {
    await ua.close();
  }
}
