/**
 * Watcher information documents (RFC 3858, `application/watcherinfo+xml`),
 * the body of the `presence.winfo` event template package (RFC 3857):
 * parse and build.
 *
 * @module
 */

import {
  attr,
  children,
  type Element,
  expectRoot,
  lang,
  parseUnsigned,
  parseXml,
  text,
  XmlBuilder,
} from "./_xml.ts";

/** The watcherinfo namespace (RFC 3858 section 4). */
export const WATCHERINFO_NS = "urn:ietf:params:xml:ns:watcherinfo";
/** The media type (RFC 3858 section 6). */
export const WATCHERINFO_CONTENT_TYPE = "application/watcherinfo+xml";

/** Watcher subscription statuses (RFC 3857 section 5.2). */
export const WATCHER_STATUSES = ["pending", "active", "waiting", "terminated"] as const;
/** One watcher status. */
export type WatcherStatus = typeof WATCHER_STATUSES[number];

/** Events that moved a watcher to its status (RFC 3857 section 5.2). */
export const WATCHER_EVENTS = [
  "subscribe",
  "approved",
  "deactivated",
  "probation",
  "rejected",
  "timeout",
  "giveup",
  "noresource",
] as const;
/** One watcher event. */
export type WatcherEvent = typeof WATCHER_EVENTS[number];

/** One `<watcher>` (RFC 3858 section 4). */
export interface Watcher {
  /** Unique id of this watcher's subscription. */
  id: string;
  /** The watcher URI (element content). */
  uri: string;
  /** Subscription status. */
  status: WatcherStatus;
  /** The event that caused the status (a WatcherEvent, or an extension value as sent). */
  event: WatcherEvent | string;
  /** Display name of the watcher, when given. */
  displayName?: string;
  /** Language of the display name. */
  lang?: string;
  /** Seconds until the subscription expires, when given. */
  expiration?: number;
  /** Seconds the watcher has been subscribed, when given. */
  durationSubscribed?: number;
}

/** A `<watcher-list>`: the watchers of one resource and event package. */
export interface WatcherList {
  /** The watched resource URI. */
  resource: string;
  /** The event package, e.g. "presence". */
  package: string;
  /** Watchers. */
  watchers: Watcher[];
}

/** A whole watcherinfo document. */
export interface WatcherInfo {
  /** Version, incremented per notification. */
  version: number;
  /** "full" state or a "partial" update. */
  state: "full" | "partial";
  /** Watcher lists. */
  lists: WatcherList[];
}

const WHAT = "watcherinfo document";

/**
 * Parses a watcherinfo document. Throws `SyntaxError` when it is not
 * well-formed, the root is not `<watcherinfo>` in the RFC 3858 namespace,
 * or a required attribute (version, state, resource, package, watcher id
 * and status) is missing or invalid.
 *
 * @example
 * ```ts
 * import { parseWatcherInfo } from "./watcherinfo.ts";
 * const w = parseWatcherInfo(`<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"
 *   version="0" state="full"><watcher-list resource="sip:me@x" package="presence">
 *   <watcher id="1" status="pending" event="subscribe">sip:bob@x</watcher></watcher-list></watcherinfo>`);
 * w.lists[0].watchers[0].uri; // "sip:bob@x"
 * ```
 */
export function parseWatcherInfo(data: string | Uint8Array): WatcherInfo {
  const root = expectRoot(parseXml(data, WHAT), WATCHERINFO_NS, "watcherinfo", WHAT);
  const state = required(root, "state", "watcherinfo");
  if (state !== "full" && state !== "partial") {
    throw new SyntaxError(`Cannot parse ${WHAT}: state "${state}" is not full or partial`);
  }
  return {
    version: parseUnsigned(required(root, "version", "watcherinfo"), WHAT, "version")!,
    state,
    lists: children(root, WATCHERINFO_NS, "watcher-list").map((l) => ({
      resource: required(l, "resource", "watcher-list"),
      package: required(l, "package", "watcher-list"),
      watchers: children(l, WATCHERINFO_NS, "watcher").map(parseWatcher),
    })),
  };
}

function required(el: Element, name: string, where: string): string {
  const v = attr(el, name)?.trim();
  if (!v) throw new SyntaxError(`Cannot parse ${WHAT}: <${where}> has no ${name} attribute`);
  return v;
}

function parseWatcher(el: Element): Watcher {
  const status = required(el, "status", "watcher");
  if (!(WATCHER_STATUSES as readonly string[]).includes(status)) {
    throw new SyntaxError(
      `Cannot parse ${WHAT}: watcher status "${status}" is not one of ${
        WATCHER_STATUSES.join(", ")
      }`,
    );
  }
  const uri = text(el);
  if (!uri) throw new SyntaxError(`Cannot parse ${WHAT}: <watcher> has no URI`);
  const w: Watcher = {
    id: required(el, "id", "watcher"),
    uri,
    status: status as WatcherStatus,
    event: required(el, "event", "watcher"),
  };
  const dn = attr(el, "display-name");
  if (dn !== undefined) w.displayName = dn;
  const l = lang(el);
  if (l) w.lang = l;
  const exp = parseUnsigned(attr(el, "expiration"), WHAT, "expiration");
  if (exp !== undefined) w.expiration = exp;
  const dur = parseUnsigned(attr(el, "duration-subscribed"), WHAT, "duration-subscribed");
  if (dur !== undefined) w.durationSubscribed = dur;
  return w;
}

/**
 * Builds a watcherinfo document. Throws `TypeError` for characters XML
 * cannot carry.
 *
 * @example
 * ```ts
 * import { formatWatcherInfo } from "./watcherinfo.ts";
 * formatWatcherInfo({ version: 0, state: "full", lists: [] }).includes(`state="full"`); // true
 * ```
 */
export function formatWatcherInfo(info: WatcherInfo): string {
  const b = new XmlBuilder(WATCHERINFO_NS, "watcherinfo", {}, WHAT);
  b.root.setAttribute("version", String(info.version));
  b.root.setAttribute("state", info.state);
  for (const l of info.lists) {
    const list = b.el(b.root, WATCHERINFO_NS, "watcher-list", {
      resource: l.resource,
      package: l.package,
    });
    for (const w of l.watchers) {
      b.textEl(list, WATCHERINFO_NS, "watcher", w.uri, {
        id: w.id,
        status: w.status,
        event: w.event,
        "display-name": w.displayName,
        expiration: w.expiration === undefined ? undefined : String(w.expiration),
        "duration-subscribed": w.durationSubscribed === undefined
          ? undefined
          : String(w.durationSubscribed),
        "xml:lang": w.lang,
      });
    }
  }
  return b.toString();
}
