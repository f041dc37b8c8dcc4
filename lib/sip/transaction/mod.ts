/**
 * SIP transactions (RFC 3261 section 17, with RFC 6026): the transaction
 * layer, the four state machines, branch matching and message builders.
 *
 * @module
 */

export * from "./types.ts";
export * from "./branch.ts";
export * from "./build.ts";
export * from "./client_transaction.ts";
export * from "./client_invite.ts";
export * from "./client_non_invite.ts";
export * from "./server_transaction.ts";
export * from "./server_invite.ts";
export * from "./server_non_invite.ts";
export * from "./layer.ts";
