/**
 * Instant messages: pager-mode MESSAGE sending and receiving (RFC 3428) and
 * the message/cpim format (RFC 3862).
 *
 * @module
 */

export * from "./message.ts";
export * from "./cpim.ts";
