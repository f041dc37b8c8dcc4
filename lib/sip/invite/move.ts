/**
 * Calls follow the host (mid-call mobility): the mover that
 * {@linkcode moveUserAgent} runs for INVITE sessions.
 *
 * @module
 */

import { movedContact, type Mover } from "../move.ts";
import type { UserAgent } from "../ua.ts";
import type { InviteSession } from "./session.ts";

/** Options of {@linkcode callsMover}. */
export interface CallsMoverOptions {
  /**
   * Moves a session's media to the new address before its re-INVITE (e.g.
   * `MediaSession.rebind(host)`): the new offer must name the new address.
   */
  rebindMedia?: (session: InviteSession, host: string) => Promise<void>;
  /**
   * Hang up a call whose peer refused (or never answered) the re-INVITE,
   * rather than let it go on with a Contact that may no longer reach us.
   * Default false.
   */
  endRefused?: boolean;
}

/**
 * The calls mover (name "calls"): every established session gets a target
 * refresh re-INVITE with our Contact on the new address and a new offer from
 * its media layer ({@linkcode InviteSession.updateLocalContact}), after
 * `rebindMedia`. Rejects when a peer refused the refresh or it failed; the
 * call then goes on with the old Contact, which may no longer reach us, or
 * is hung up with `endRefused`.
 *
 * @example
 * ```ts ignore
 * const result = await moveUserAgent(ua, "192.0.2.9", [
 *   callsMover(ua, () => [call], { rebindMedia: (_s, host) => media.rebind(host) }),
 * ]);
 * ```
 */
export function callsMover(
  ua: UserAgent,
  sessions: () => InviteSession[],
  options: CallsMoverOptions = {},
): Mover {
  return {
    name: "calls",
    async move(change) {
      const refused: string[] = [];
      await Promise.all(
        sessions().map(async (session) => {
          const contact = session.dialog?.localContact?.uri;
          if (session.state !== "confirmed" || !contact) return;
          await options.rebindMedia?.(session, change.new);
          const ok = await session.updateLocalContact(movedContact(ua, contact, change.new))
            .catch(() => false);
          if (ok) return;
          refused.push(session.callId);
          if (options.endRefused) await session.hangup().catch(() => {});
        }),
      );
      if (refused.length > 0) {
        const ended = options.endRefused ? ": call ended" : "";
        throw new Error(
          `Cannot move call ${refused.join(", ")}: the peer did not accept the re-INVITE${ended}`,
        );
      }
    },
  };
}
