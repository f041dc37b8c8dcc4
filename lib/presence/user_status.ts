/**
 * The six user statuses of sipkit, as names only (no PIDF, no XML): what a
 * command's options and input checks need without loading the document
 * code. `status.ts` re-exports them with the PIDF mapping.
 *
 * @module
 */

/** The user statuses sipkit sets and reports. */
export const USER_STATUSES = [
  "online",
  "offline",
  "away",
  "busy",
  "on-the-phone",
  "lunch",
] as const;

/** One user status. */
export type UserStatus = typeof USER_STATUSES[number];

/** Type guard for {@linkcode UserStatus}. */
export function isUserStatus(value: unknown): value is UserStatus {
  return typeof value === "string" && (USER_STATUSES as readonly string[]).includes(value);
}
