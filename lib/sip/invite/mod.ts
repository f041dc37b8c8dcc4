/**
 * INVITE sessions (calls): {@linkcode placeCall} for the caller,
 * {@linkcode InviteAcceptor} for the callee, {@linkcode InviteSession} for
 * both, and the {@linkcode OfferAnswerHandler} a media layer implements.
 *
 * @module
 */

export * from "./types.ts";
export * from "./session.ts";
export * from "./session_timer.ts";
export * from "./reliable.ts";
export * from "./uac.ts";
export * from "./uas.ts";
export * from "./move.ts";
