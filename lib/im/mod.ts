/**
 * Instant messages: the message/cpim format (RFC 3862).
 *
 * @module
 */

export * from "./cpim.ts";
export * from "./message.ts";
