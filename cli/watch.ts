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
  sameBuddy,
  saveBuddyList,
} from "../lib/presence/resource_lists.ts";
import {
  type PresenceEvent,
  PresenceWatcher,
  type PresenceWatcherEvent,
} from "../lib/presence/watcher.ts";
import {
  addCommonOptions,
  type CommandContext,
  type CommonOptions,
  intArg,
  runCommand,
} from "./_common.ts";
import { configDir } from "./_config.ts";
import { EXIT, usageError } from "./_exit.ts";
import { createUserAgent } from "./_ua.ts";
import { defaultToward, Follower } from "./_roam.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";
import { subscriptionsMover } from "../lib/sip/move.ts";

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

/** Options of `sipkit watch` (and of {@linkcode runWatch}). */
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
    await runCommand<WatchOptions>(cmd, (opts, ctx) => runWatch(uris, opts, ctx));
  });
  return cmd as unknown as Command;
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

function presenceFields(e: PresenceEvent, raw: boolean): Record<string, unknown> {
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

function emitWatcherEvent(ctx: CommandContext, e: PresenceWatcherEvent, raw: boolean) {
  if (e.type === "presence") return ctx.out.emit("presence", presenceFields(e, raw));
  return ctx.out.emit("subscription", {
    uri: e.uri,
    state: e.state,
    reason: e.reason,
    status: e.status,
    retry_in: e.retryIn,
    list: e.list,
    name: e.name,
  });
}

/** How long unsubscribing may take at exit. */
const CLOSE_TIMEOUT_MS = 2000;

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
    const watcher = new PresenceWatcher(ua, {
      buddies,
      list: opts.list,
      expires: opts.expires,
      onEvent: (e) => void emitWatcherEvent(ctx, e, raw),
    });
    // Mobility (--roam, address_changed lines): each subscription is
    // refreshed with the new Contact, so NOTIFYs reach the new address.
    const follower = new Follower(ua, ctx, () => [
      subscriptionsMover(ua, () => ({ held: watcher.subscriptions })),
    ]);
    if (opts.roam) {
      const toward = opts.proxy ?? (ua.aor.user ? undefined : buddies[0]);
      await follower.roam(opts, toward ?? defaultToward(ua));
    }
    const started = watcher.start();
    const input = ctx.readInput(async (event, line) => {
      if (await follower.handleInput(event, line)) return;
      if (!["buddy_added", "buddy_removed", "watcher"].includes(event.type)) return;
      let uri: string;
      try {
        uri = normalizeBuddyUri(String(event.uri ?? ""));
      } catch (e) {
        await ctx.skipLine(line, (e as Error).message);
        return;
      }
      if (event.type === "buddy_added") await watcher.add(uri);
      else if (event.type === "buddy_removed") await watcher.remove(uri);
      else if (event.state === "active" || event.state === "pending") {
        // Thesis section 7.3.3: the buddy subscribed to us, so it is online now;
        // a subscription to it that failed is sent again at once.
        if (watcher.buddySubscribedToUs(uri)) {
          ctx.log.log("info", `${uri} subscribed to us: subscribing to it again`);
        }
      }
    }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
    await waitForAbort(ctx.signal);
    await follower.stop();
    await started;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      watcher.close(),
      new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)),
    ]);
    clearTimeout(timer);
    // A peer that sends no final NOTIFY (Kamailio rls): stop waiting for it.
    await watcher.close({ unsubscribe: false });
    await input;
    return EXIT.OK;
  } finally {
    await ua.close();
  }
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
