/**
 * What identifies a dialog (RFC 3261 section 12), apart from the rest of
 * `dialog.ts`: the UA core keys its dialog handlers with it, and a one-shot
 * command that never makes a dialog does not load the dialog code.
 *
 * @module
 */

/** What identifies a dialog at one end (12): Call-ID, local tag, remote tag. */
export interface DialogId {
  /** Call-ID. */
  callId: string;
  /** This side's tag. */
  localTag: string;
  /** The peer's tag ("" when an RFC 2543 peer sent none). */
  remoteTag: string;
}

/**
 * A string key for a dialog id, for maps.
 *
 * @example
 * ```ts
 * import { dialogKey } from "./dialog_id.ts";
 * dialogKey({ callId: "c", localTag: "l", remoteTag: "r" }); // "c\nl\nr"
 * ```
 */
export function dialogKey(id: DialogId): string {
  return `${id.callId}\n${id.localTag}\n${id.remoteTag}`;
}
