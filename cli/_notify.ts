/**
 * What `sipkit notify` does (its options are in `notify.ts`): option checks,
 * publishing and NDJSON mapping; the protocol is in lib/presence. A
 * `--publish --once` runs from this module alone; edge mode (the presence
 * agent and the buddy list), a lasting publication, `--register` and
 * `--roam` are in `_notify_more.ts`, loaded when one of them runs.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { SipRequestError } from "../lib/sip/errors.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { Publication } from "../lib/presence/publish.ts";
import {
  isUserStatus,
  statusToPidf,
  USER_STATUSES,
  type UserStatus,
} from "../lib/presence/status.ts";
import { type CommandContext, runCommand } from "./_common.ts";
import { stateDir } from "./_config.ts";
import { EXIT, usageError } from "./_exit.ts";
import type { InputEvent } from "./_io.ts";
import type { Follower } from "./_roam.ts";
import { createUserAgent } from "./_ua.ts";
import type { NotifyOptions } from "./notify.ts";

/** Runs `sipkit notify` with the parsed command line, in the command frame; exits. */
export function runNotifyCommand(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
): Promise<never> {
  return runCommand<NotifyOptions>(cmd, runNotify);
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
  try {
    // Publishing once follows no address and keeps no binding: the modules
    // that do (and edge mode's) are loaded only when needed.
    if (opts.publish && opts.once && !opts.register && !opts.roam) {
      return await runPublish(ua, status, opts, ctx);
    }
    return await (await import("./_notify_more.ts")).runFollowing(ua, status, opts, ctx);
  } finally {
    await ua.close();
  }
}

/** A status change read from stdin, or undefined (after reporting) when the line is bad. */
export async function readStatusLine(
  ctx: CommandContext,
  event: InputEvent,
  line: number,
): Promise<{ status: UserStatus; note?: string; noteLang?: string } | undefined> {
  if (!isUserStatus(event.status)) {
    await ctx.skipLine(line, `status must be one of ${USER_STATUSES.join(", ")}`);
    return undefined;
  }
  if (event.note !== undefined && typeof event.note !== "string") {
    await ctx.skipLine(line, "note must be a string");
    return undefined;
  }
  if (event.note_lang !== undefined && !isLanguageTag(event.note_lang)) {
    await ctx.skipLine(line, "note_lang must be a language tag such as en or pt-BR");
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

/** Resolves when `signal` aborts. */
export function waitForAbort(signal: AbortSignal): Promise<void> {
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

/**
 * The file that keeps the publication of `aor` in the state directory: its
 * characters other than ASCII letters, digits and `@._-` become `_`. A loop
 * rather than a regular expression, which costs a one-shot some 0.3 ms the
 * first time it runs.
 */
export function publicationFile(aor: string): string {
  let name = "";
  for (let i = 0; i < aor.length; i++) {
    const c = aor.charCodeAt(i);
    const kept = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) ||
      c === 64 || c === 46 || c === 95 || c === 45;
    name += kept ? aor[i] : "_";
  }
  return `${stateDir()}/publish-${name}.json`;
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

/**
 * `--publish`: publishes the status and, without `once`, keeps the
 * publication up to date until `ctx.signal` aborts. `follower` takes stdin's
 * `address_changed` lines (not used with `once`, which reads no stdin).
 */
export async function runPublish(
  ua: UserAgent,
  initial: UserStatus,
  opts: NotifyOptions,
  ctx: CommandContext,
  follower?: Follower,
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
    if (await follower?.handleInput(event, line)) return;
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
