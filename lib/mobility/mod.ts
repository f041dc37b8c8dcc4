/**
 * Mobility: the host's addresses and their changes. An
 * {@linkcode AddressMonitor} reports addresses added and lost per interface
 * and `address_changed` when the address the host would use toward its
 * registrar or peer changes (debounced, so one move gives one event). It
 * knows nothing of SIP: the commands hand its events to the stack.
 *
 * @module
 */

export * from "./addresses.ts";
export * from "./sources.ts";
export * from "./monitor.ts";
export * from "./routes.ts";
