/**
 * `sipkit watch`'s lasting watcher (subscriptions kept up, stdin's
 * `buddy_added`, `buddy_removed` and `watcher` lines) and what follows the
 * host (`--roam`, stdin's `address_changed` lines): loaded by `_watch.ts`
 * only when it runs, so that a `--once` probe starts without the mobility
 * code.
 *
 * @module
 */

import { subscriptionsMover } from "../lib/sip/move.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { buddyUriOfLine } from "./_buddies.ts";
import { PresenceWatcher, type PresenceWatcherEvent } from "../lib/presence/watcher.ts";
import type { CommandContext } from "./_common.ts";
import { EXIT } from "./_exit.ts";
import { defaultToward, Follower } from "./_roam.ts";
import { presenceFields } from "./_watch.ts";
import type { WatchOptions } from "./watch.ts";

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
 * Runs `sipkit watch` without `--once` on `ua`: watches `buddies` (or
 * `opts.list`) until `ctx.signal` aborts and returns the exit code. The
 * caller closes `ua`.
 */
export async function runWatcher(
  ua: UserAgent,
  buddies: string[],
  opts: WatchOptions,
  ctx: CommandContext,
): Promise<number> {
  const raw = opts.raw ?? false;
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
    const uri = await buddyUriOfLine(ctx, event, line);
    if (uri === undefined) return;
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
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}
