/**
 * sipkit: a SIP toolkit for Deno. The library behind the `sipkit` commands:
 * messages, transports, transactions, dialogs, digest authentication, the UA
 * core and its usages.
 *
 * @module
 */

export * from "./lib/sip/clock.ts";
export * from "./lib/sip/errors.ts";
export * from "./lib/sip/message.ts";
export * from "./lib/sip/transport.ts";
export * from "./lib/sip/transport_udp.ts";
export * from "./lib/sip/transport_tcp.ts";
export * from "./lib/sip/transport_loop.ts";
export * from "./lib/sip/transport_layer.ts";
export * from "./lib/sip/resolver.ts";
export * from "./lib/sip/digest.ts";
export * from "./lib/sip/dialog.ts";
export * from "./lib/sip/multipart.ts";
export * from "./lib/sip/events/mod.ts";
export * from "./lib/sip/invite/mod.ts";
export * from "./lib/sip/status.ts";
export * from "./lib/sip/transaction/mod.ts";
export * from "./lib/sip/input.ts";
export * from "./lib/sip/sockets.ts";
export * from "./lib/sip/outbound.ts";
export * from "./lib/sip/ua.ts";
export * from "./lib/sip/registration.ts";
export * from "./lib/sip/move.ts";
export * from "./lib/im/mod.ts";
export * from "./lib/presence/mod.ts";
export * from "./lib/mobility/mod.ts";
export * from "./lib/rtp/mod.ts";
export { VERSION } from "./lib/version.ts";
