/**
 * Presence documents: PIDF with RPID and the data model (RFC 3863, 4479,
 * 4480), the six user statuses, resource lists (RFC 4826, the buddy list),
 * RLMI and list NOTIFY bodies (RFC 4662) and watcher information (RFC 3857,
 * 3858). These depend on XML and MIME only, never on the SIP stack.
 * On top of the SIP stack and its event framework: PUBLISH (RFC 3903), the
 * edge presence agent and the presence watcher.
 *
 * @module
 */

export * from "./pidf.ts";
export * from "./status.ts";
export * from "./resource_lists.ts";
export * from "./rlmi.ts";
export * from "./watcherinfo.ts";
export * from "./publish.ts";
export * from "./agent.ts";
export * from "./watcher.ts";
