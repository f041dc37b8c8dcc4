/**
 * `sipkit notify`: be the user's presence agent (edge mode: answer
 * SUBSCRIBE, NOTIFY watchers) or publish the user's status to a presence
 * server (`--publish`, RFC 3903).
 *
 * @module
 */

import { Command, Option } from "@commander-js/extra-typings";
import { SipRequestError } from "../lib/sip/errors.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { subscriptionsMover } from "../lib/sip/move.ts";
import { PresenceAgent } from "../lib/presence/agent.ts";
import { Publication } from "../lib/presence/publish.ts";
import {
  isUserStatus,
  statusToPidf,
  USER_STATUSES,
  type UserStatus,
} from "../lib/presence/status.ts";
import { listBuddies, normalizeBuddyUri } from "../lib/presence/resource_lists.ts";
import {
  addCommonOptions,
  type CommandContext,
  type CommonOptions,
  emitListening,
  intArg,
  runCommand,
} from "./_common.ts";
import { stateDir } from "./_config.ts";
import { EXIT, usageError } from "./_exit.ts";
import type { InputEvent } from "./_io.ts";
import { keepRegistered } from "./_register.ts";
import { defaultToward, Follower } from "./_roam.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";
import { createUserAgent } from "./_ua.ts";
import { defaultBuddyFile, readBuddyFile } from "./watch.ts";

/** How unknown watchers are answered. */
export type UnknownPolicy = "accept" | "pending" | "reject";

/** Options of `sipkit notify` (and of {@linkcode runNotify}). */
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
    await runCommand<NotifyOptions>(cmd, runNotify);
  });
  return cmd as unknown as Command;
}

/**
 * The body of `sipkit notify`: runs until `ctx.signal` aborts (or, with
 * `publish` and `once`, until the PUBLISH is answered) and returns the exit
 * code.
 */
export async function runNotify(opts: NotifyOptions, ctx: CommandContext): Promise<number> {
  const status = opts.status ?? "online";
  if (!isUserStatus(status)) {
    throw usageError(`--status must be one of ${USER_STATUSES.join(", ")}, got "${status}"`);
  }
  if (opts.once && !opts.publish) throw usageError("--once goes with --publish");
  if (opts.noteLang !== undefined && !isLanguageTag(opts.noteLang)) {
    throw usageError(
      `--note-lang must be a language tag such as en or pt-BR, got "${opts.noteLang}"`,
    );
  }
  // Every SIP peer must accept compact header names (RFC 3261 7.3.3): fewer bytes per NOTIFY.
  const ua = await createUserAgent(opts, ctx, {
    requireUser: true,
    compactHeaders: opts.compact ?? true,
    oneShot: Boolean(opts.publish && opts.once),
  });
  // --register: the shared helper keeps the binding (bounded removal on exit,
  // address_changed lines from stdin move it).
  // Mobility (--roam, address_changed lines): the watchers we serve get a
  // NOTIFY with the new Contact, and with --register the binding moves too.
  const served: { agent?: PresenceAgent } = {};
  const subscriptions = subscriptionsMover(ua, () => ({
    served: served.agent?.notifier.subscriptions() ?? [],
  }));
  const kept = opts.register
    ? keepRegistered(ua, ctx, { expires: 600, movers: () => [subscriptions] })
    : undefined;
  const follower = kept?.follower ?? new Follower(ua, ctx, () => [subscriptions]);
  try {
    if (opts.roam) await follower.roam(opts, defaultToward(ua));
    if (opts.publish) return await runPublish(ua, status, opts, ctx, follower);
    return await runEdge(ua, status, opts, ctx, follower, served);
  } finally {
    await follower.stop();
    await kept?.stop();
    await ua.close();
  }
}

/** A status change read from stdin, or undefined (after reporting) when the line is bad. */
async function readStatusLine(
  ctx: CommandContext,
  event: InputEvent,
  line: number,
): Promise<{ status: UserStatus; note?: string; noteLang?: string } | undefined> {
  if (!isUserStatus(event.status)) {
    const message = `status must be one of ${USER_STATUSES.join(", ")}`;
    ctx.log.log("warn", `<stdin>:${line}: ${message}; line skipped`);
    await ctx.out.emit("error", { source: "stdin", line, message });
    return undefined;
  }
  if (event.note !== undefined && typeof event.note !== "string") {
    ctx.log.log("warn", `<stdin>:${line}: note must be a string; line skipped`);
    await ctx.out.emit("error", { source: "stdin", line, message: "note must be a string" });
    return undefined;
  }
  if (event.note_lang !== undefined && !isLanguageTag(event.note_lang)) {
    const message = "note_lang must be a language tag such as en or pt-BR";
    ctx.log.log("warn", `<stdin>:${line}: ${message}; line skipped`);
    await ctx.out.emit("error", { source: "stdin", line, message });
    return undefined;
  }
  return {
    status: event.status,
    note: event.note as string | undefined,
    noteLang: event.note_lang as string | undefined,
  };
}

/** A language tag as xml:lang takes it (RFC 5646 shape, loosely: letters, digits, hyphens). */
function isLanguageTag(value: unknown): value is string {
  return typeof value === "string" && /^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$/.test(value);
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

// ---------------------------------------------------------------- publish mode

/** What `--publish --once` keeps between runs. */
interface SavedPublication {
  aor: string;
  etag: string;
  /** Epoch milliseconds when the server forgets it. */
  expires_at: number;
  status: string;
  note?: string;
  note_lang?: string;
}

function publicationFile(aor: string): string {
  return `${stateDir()}/publish-${aor.replace(/[^A-Za-z0-9@._-]/g, "_")}.json`;
}

async function loadPublication(aor: string): Promise<SavedPublication | undefined> {
  try {
    const saved = JSON.parse(await Deno.readTextFile(publicationFile(aor))) as SavedPublication;
    if (saved.aor !== aor || typeof saved.etag !== "string") return undefined;
    if (!(saved.expires_at > Date.now())) return undefined;
    return saved;
  } catch {
    return undefined;
  }
}

async function savePublication(saved: SavedPublication | undefined, aor: string): Promise<void> {
  const file = publicationFile(aor);
  if (!saved) {
    await Deno.remove(file).catch(() => {});
    return;
  }
  await Deno.mkdir(stateDir(), { recursive: true });
  const tmp = `${file}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(saved) + "\n");
  await Deno.rename(tmp, file);
}

async function runPublish(
  ua: UserAgent,
  initial: UserStatus,
  opts: NotifyOptions,
  ctx: CommandContext,
  follower: Follower,
): Promise<number> {
  const aor = `sip:${ua.aor.user ? ua.aor.user + "@" : ""}${ua.aor.host}`;
  const saved = opts.once ? await loadPublication(aor) : undefined;
  const pub = new Publication(ua, {
    expires: opts.expires ?? 3600,
    etag: saved?.etag,
    autoRefresh: !opts.once,
    onEvent: (e) => {
      if (e.type === "published") {
        void ctx.out.emit("published", {
          uri: aor,
          action: e.action,
          etag: e.etag,
          expires: e.expires,
        });
      } else if (e.type === "removed") {
        void ctx.out.emit("unpublished", { uri: aor, etag: e.etag });
      } else {
        void ctx.out.emit("publish_failed", {
          uri: aor,
          status: e.status,
          reason: e.reason,
          retry_in: e.retryIn,
        });
      }
    },
  });
  let current: { status: UserStatus; note?: string; noteLang?: string } = {
    status: initial,
    note: opts.note,
    noteLang: opts.noteLang,
  };
  const body = () =>
    statusToPidf(current.status, {
      entity: aor,
      note: current.note,
      noteLang: current.note === undefined ? undefined : current.noteLang,
      timestamp: new Date(),
    });
  const failed = async (e: unknown): Promise<number> => {
    if (!(e instanceof SipRequestError)) throw e;
    await ctx.out.emit("publish_failed", { uri: aor, status: e.status, reason: e.reason });
    ctx.log.log("error", `PUBLISH failed: ${e.status} ${e.reason}`);
    return e.local ? EXIT.NETWORK : EXIT.PEER_REJECTED;
  };

  if (opts.once) {
    try {
      const work = (async () => {
        if (
          saved && saved.status === current.status && saved.note === current.note &&
          saved.note_lang === current.noteLang
        ) {
          // Same state as the saved publication: a refresh keeps it (RFC 3903 section 4.3).
          try {
            await pub.refresh();
          } catch (e) {
            if (!(e instanceof SipRequestError) || e.status !== 412) throw e;
            await pub.publish(body());
          }
        } else {
          await pub.publish(body());
        }
        return true;
      })();
      // SIGINT/SIGTERM must not wait for a server that never answers (64*T1 = 32 s); the
      // saved state is kept as it was (exit code per stop reason, 130 after SIGINT).
      work.catch(() => {});
      if (!await Promise.race([work, ctx.stopped.then(() => false)])) return EXIT.OK;
      await savePublication({
        aor,
        etag: pub.etag!,
        expires_at: Date.now() + (pub.expires ?? 0) * 1000,
        status: current.status,
        note: current.note,
        note_lang: current.noteLang,
      }, aor);
      return EXIT.OK;
    } catch (e) {
      await savePublication(undefined, aor);
      return await failed(e);
    } finally {
      pub.close();
    }
  }

  try {
    await pub.publish(body());
  } catch (e) {
    pub.close();
    return await failed(e);
  }
  const input = ctx.readInput(async (event, line) => {
    if (await follower.handleInput(event, line)) return;
    if (event.type !== "status") return;
    const next = await readStatusLine(ctx, event, line);
    if (!next) return;
    current = next;
    await pub.publish(body()).catch((e) => {
      if (e instanceof SipRequestError) {
        void ctx.out.emit("publish_failed", { uri: aor, status: e.status, reason: e.reason });
      } else throw e;
    });
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  await waitForAbort(ctx.signal);
  await input;
  pub.close();
  await pub.remove().catch((e) =>
    ctx.log.log("warn", `could not remove the publication: ${(e as Error).message}`)
  );
  return EXIT.OK;
}

// ---------------------------------------------------------------- edge mode

/** How long the final NOTIFYs may take at exit. */
const CLOSE_TIMEOUT_MS = 2000;

async function allowList(opts: NotifyOptions): Promise<string[]> {
  const doc = await readBuddyFile(opts.buddies ?? defaultBuddyFile(), {
    mustExist: opts.buddies !== undefined,
  });
  const uris = listBuddies(doc).map((b) => b.uri);
  for (const a of opts.allow ?? []) {
    try {
      uris.push(normalizeBuddyUri(a));
    } catch (e) {
      throw usageError(`--allow: ${(e as Error).message}`);
    }
  }
  return uris;
}

async function runEdge(
  ua: UserAgent,
  status: UserStatus,
  opts: NotifyOptions,
  ctx: CommandContext,
  follower: Follower,
  served: { agent?: PresenceAgent },
): Promise<number> {
  const agent = new PresenceAgent(ua, {
    status,
    note: opts.note,
    noteLang: opts.noteLang,
    allow: await allowList(opts),
    unknown: opts.unknown ?? "pending",
    minInterval: (opts.minInterval ?? 1) * 1000,
    maxExpires: opts.expires ?? 86400,
    onEvent: (e) =>
      void ctx.out.emit("watcher", {
        uri: e.uri,
        state: e.state,
        change: e.change,
        expires: e.expires,
        reason: e.reason,
      }),
  });
  served.agent = agent;
  await emitListening(ua, ctx);
  const input = ctx.readInput(async (event, line) => {
    if (await follower.handleInput(event, line)) return;
    if (event.type === "status") {
      const next = await readStatusLine(ctx, event, line);
      // A status line sets the whole state: no note clears the note.
      if (next) {
        agent.setStatus(next.status, { note: next.note ?? null, noteLang: next.noteLang ?? null });
      }
    } else if (event.type === "allow" || event.type === "deny") {
      let uri: string;
      try {
        uri = normalizeBuddyUri(String(event.uri ?? ""));
      } catch (e) {
        ctx.log.log("warn", `<stdin>:${line}: ${(e as Error).message}; line skipped`);
        await ctx.out.emit("error", { source: "stdin", line, message: (e as Error).message });
        return;
      }
      if (event.type === "allow") agent.allow(uri);
      else await agent.deny(uri);
    }
  }).catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  await waitForAbort(ctx.signal);
  // Final NOTIFYs (terminated, basic closed) to every watcher; a watcher that is gone
  // must not hold the exit for long.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    agent.close(),
    new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  await input;
  return EXIT.OK;
}
