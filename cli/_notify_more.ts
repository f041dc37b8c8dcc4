/**
 * `sipkit notify`'s modes that run for long (its edge mode, a lasting
 * `--publish`) and what follows the host (`--register`, `--roam`, stdin's
 * `address_changed` lines): loaded by `_notify.ts` only when one of them
 * runs, so that a `--publish --once` starts without the presence agent, the
 * buddy list, the registration and the mobility code.
 *
 * @module
 */

import { subscriptionsMover } from "../lib/sip/move.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { PresenceAgent } from "../lib/presence/agent.ts";
import { listBuddies, normalizeBuddyUri } from "../lib/presence/resource_lists.ts";
import type { UserStatus } from "../lib/presence/status.ts";
import { type CommandContext, emitListening } from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import { keepRegistered } from "./_register.ts";
import { defaultToward, Follower } from "./_roam.ts";
import { buddyUriOfLine, defaultBuddyFile, readBuddyFile } from "./_buddies.ts";
import { readStatusLine, runPublish, waitForAbort } from "./_notify.ts";
import type { NotifyOptions } from "./notify.ts";

/**
 * Runs `sipkit notify` (edge mode, or `--publish` without `--once` or with
 * `--register` or `--roam`) on `ua` with what follows the host's address:
 * until `ctx.signal` aborts (or a `--once` publication is answered); returns
 * the exit code. The caller closes `ua`.
 */
export async function runFollowing(
  ua: UserAgent,
  status: UserStatus,
  opts: NotifyOptions,
  ctx: CommandContext,
): Promise<number> {
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
  }
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
      const uri = await buddyUriOfLine(ctx, event, line);
      if (uri === undefined) return;
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
