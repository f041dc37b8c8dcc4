/**
 * The SIP event framework (RFC 6665): the Event and Subscription-State
 * headers, the subscriber ({@linkcode Subscription}) and the notifier
 * ({@linkcode Notifier}) into which event packages such as presence plug,
 * and the content codings of their bodies (deflate, gzip).
 *
 * @module
 */

export * from "./headers.ts";
export * from "./subscriber.ts";
export * from "./notifier.ts";
export * from "./encoding.ts";
