/**
 * Resource lists documents (RFC 4826 section 3, `application/resource-lists+xml`):
 * parse and build, and the buddy list operations sipkit keeps on disk in
 * this format. Functions take and return text; the caller does the file I/O.
 *
 * @module
 */

import {
  attr,
  children,
  type Element,
  expectRoot,
  lang,
  parseXml,
  text,
  XmlBuilder,
} from "./_xml.ts";

/** The resource-lists namespace (RFC 4826 section 3.2). */
export const RESOURCE_LISTS_NS = "urn:ietf:params:xml:ns:resource-lists";
/** The media type (RFC 4826 section 3.1). */
export const RESOURCE_LISTS_CONTENT_TYPE = "application/resource-lists+xml";

/** A display name with its language. */
export interface DisplayName {
  /** The text. */
  text: string;
  /** `xml:lang`, when given. */
  lang?: string;
}

/** An `<entry>`: one resource (RFC 4826 section 3.2.1). */
export interface ListEntry {
  /** The resource URI. */
  uri: string;
  /** The display name, when given. */
  displayName?: string;
  /** Its language. */
  displayNameLang?: string;
}

/** A `<list>`, possibly nested (RFC 4826 section 3.2). */
export interface ResourceList {
  /** The `name` attribute, when given. */
  name?: string;
  /** The list's display name, when given. */
  displayName?: string;
  /** Entries in document order. */
  entries: ListEntry[];
  /** Nested lists in document order. */
  lists: ResourceList[];
  /** `ref` values of `<entry-ref>` (kept, not resolved). */
  entryRefs: string[];
  /** `anchor` values of `<external>` (kept, not resolved). */
  externals: string[];
}

/** A whole resource-lists document. */
export interface ResourceLists {
  /** Top-level lists. */
  lists: ResourceList[];
}

const WHAT = "resource-lists document";

/**
 * Parses a resource-lists document. Throws `SyntaxError` when it is not
 * well-formed, its root is not `<resource-lists>` in the RFC 4826 namespace,
 * or an `<entry>` has no `uri`. `<entry-ref>` and `<external>` are kept as
 * references and never fetched; unknown elements are ignored.
 *
 * @example
 * ```ts
 * import { parseResourceLists } from "./resource_lists.ts";
 * const doc = parseResourceLists(`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
 *   <list name="buddies"><entry uri="sip:bob@example.test"><display-name>Bob</display-name></entry></list>
 * </resource-lists>`);
 * doc.lists[0].entries[0].displayName; // "Bob"
 * ```
 */
export function parseResourceLists(data: string | Uint8Array): ResourceLists {
  const root = expectRoot(parseXml(data, WHAT), RESOURCE_LISTS_NS, "resource-lists", WHAT);
  return { lists: children(root, RESOURCE_LISTS_NS, "list").map(parseList) };
}

function displayNameOf(el: Element): DisplayName | undefined {
  const dn = children(el, RESOURCE_LISTS_NS, "display-name")[0];
  if (!dn) return undefined;
  const l = lang(dn);
  return l ? { text: text(dn), lang: l } : { text: text(dn) };
}

function parseList(el: Element): ResourceList {
  const list: ResourceList = { entries: [], lists: [], entryRefs: [], externals: [] };
  const name = attr(el, "name");
  if (name !== undefined) list.name = name;
  const dn = displayNameOf(el);
  if (dn) list.displayName = dn.text;
  for (const c of children(el, RESOURCE_LISTS_NS)) {
    switch (c.localName) {
      case "entry": {
        const uri = attr(c, "uri")?.trim();
        // RFC 4826 section 3.2: the <entry> element "MUST contain a 'uri' attribute".
        if (!uri) throw new SyntaxError(`Cannot parse ${WHAT}: <entry> without a uri attribute`);
        const entry: ListEntry = { uri };
        const edn = displayNameOf(c);
        if (edn) {
          entry.displayName = edn.text;
          if (edn.lang) entry.displayNameLang = edn.lang;
        }
        list.entries.push(entry);
        break;
      }
      case "list":
        list.lists.push(parseList(c));
        break;
      case "entry-ref": {
        const ref = attr(c, "ref");
        if (ref) list.entryRefs.push(ref);
        break;
      }
      case "external": {
        const anchor = attr(c, "anchor");
        if (anchor) list.externals.push(anchor);
        break;
      }
    }
  }
  return list;
}

/**
 * Builds a resource-lists document, indented (it is a file people read).
 * Throws `TypeError` when a value holds a character XML cannot carry.
 *
 * @example
 * ```ts
 * import { formatResourceLists } from "./resource_lists.ts";
 * const xml = formatResourceLists({ lists: [{ name: "buddies", entries: [{ uri: "sip:bob@b" }],
 *   lists: [], entryRefs: [], externals: [] }] });
 * xml.includes(`<entry uri="sip:bob@b"/>`); // true
 * ```
 */
export function formatResourceLists(doc: ResourceLists): string {
  const b = new XmlBuilder(RESOURCE_LISTS_NS, "resource-lists", {}, WHAT);
  for (const list of doc.lists) buildList(b, b.root, list);
  indent(b, b.root, 1);
  return b.toString();
}

function buildList(b: XmlBuilder, parent: Element, list: ResourceList) {
  const el = b.el(parent, RESOURCE_LISTS_NS, "list", { name: list.name });
  if (list.displayName !== undefined) {
    b.textEl(el, RESOURCE_LISTS_NS, "display-name", list.displayName);
  }
  for (const e of list.entries) {
    const entry = b.el(el, RESOURCE_LISTS_NS, "entry", { uri: e.uri });
    if (e.displayName !== undefined) {
      b.textEl(entry, RESOURCE_LISTS_NS, "display-name", e.displayName, {
        "xml:lang": e.displayNameLang,
      });
    }
  }
  for (const ref of list.entryRefs) b.el(el, RESOURCE_LISTS_NS, "entry-ref", { ref });
  for (const anchor of list.externals) b.el(el, RESOURCE_LISTS_NS, "external", { anchor });
  for (const sub of list.lists) buildList(b, el, sub);
}

/** Adds whitespace text nodes so the file reads one element per line. */
function indent(b: XmlBuilder, el: Element, depth: number) {
  const kids = children(el);
  if (kids.length === 0) return;
  for (const k of kids) {
    el.insertBefore(b.doc.createTextNode("\n" + "  ".repeat(depth)), k);
    indent(b, k, depth + 1);
  }
  el.appendChild(b.doc.createTextNode("\n" + "  ".repeat(depth - 1)));
}

/** The default list name of a buddy list sipkit creates. */
export const DEFAULT_BUDDY_LIST = "buddies";

/**
 * Loads a buddy list from file text. Empty or whitespace-only text (a new
 * file) gives an empty list named {@linkcode DEFAULT_BUDDY_LIST}. Throws
 * `SyntaxError` for a file that is not a resource-lists document.
 *
 * @example
 * ```ts
 * import { loadBuddyList } from "./resource_lists.ts";
 * loadBuddyList("").lists[0].name; // "buddies"
 * ```
 */
export function loadBuddyList(text: string | Uint8Array | undefined): ResourceLists {
  const t = typeof text === "string" || text === undefined
    ? text ?? ""
    : new TextDecoder().decode(text);
  if (t.trim() === "") return emptyBuddyList();
  const doc = parseResourceLists(text!);
  if (doc.lists.length === 0) doc.lists.push(emptyBuddyList().lists[0]);
  return doc;
}

/** Serializes a buddy list for saving (same as {@linkcode formatResourceLists}). */
export function saveBuddyList(doc: ResourceLists): string {
  return formatResourceLists(doc);
}

function emptyBuddyList(): ResourceLists {
  return {
    lists: [{ name: DEFAULT_BUDDY_LIST, entries: [], lists: [], entryRefs: [], externals: [] }],
  };
}

/**
 * Normalizes a buddy address: trims it and adds `sip:` when no scheme is
 * given ("bob@example.test" becomes "sip:bob@example.test").
 *
 * @example
 * ```ts
 * import { normalizeBuddyUri } from "./resource_lists.ts";
 * normalizeBuddyUri(" bob@example.test "); // "sip:bob@example.test"
 * ```
 */
export function normalizeBuddyUri(uri: string): string {
  const u = uri.trim().replace(/^<(.*)>$/, "$1");
  if (u === "") throw new TypeError("Buddy URI is empty");
  if (/[\s<>"]/.test(u)) throw new TypeError(`Buddy URI has a space, quote or angle bracket: ${u}`);
  return /^[A-Za-z][A-Za-z0-9+.-]*:/.test(u) && !/^[^:@]+:\d+$/.test(u) ? u : `sip:${u}`;
}

/**
 * A comparison key: scheme and host are case-insensitive, the user part is
 * not (RFC 3261 section 19.1.4); parameters and headers are ignored.
 */
function uriKey(uri: string): string {
  const u = normalizeBuddyUri(uri);
  const colon = u.indexOf(":");
  const scheme = u.slice(0, colon).toLowerCase();
  const rest = u.slice(colon + 1).split(/[;?]/)[0];
  const at = rest.lastIndexOf("@");
  const user = at >= 0 ? rest.slice(0, at) : "";
  const host = (at >= 0 ? rest.slice(at + 1) : rest).toLowerCase();
  const s = scheme === "sips" ? "sip" : scheme;
  return `${s}:${user}@${host}`;
}

/** The comparison key, or the trimmed text for a URI that does not normalize. */
function safeKey(uri: string): string {
  try {
    return uriKey(uri);
  } catch {
    return uri.trim();
  }
}

/** True when two buddy URIs name the same resource (see {@linkcode addBuddy}). */
export function sameBuddy(a: string, b: string): boolean {
  return safeKey(a) === safeKey(b);
}

function findList(doc: ResourceLists, name: string | undefined): ResourceList | undefined {
  if (name === undefined) return doc.lists[0];
  const walk = (lists: ResourceList[]): ResourceList | undefined => {
    for (const l of lists) {
      if (l.name === name) return l;
      const sub = walk(l.lists);
      if (sub) return sub;
    }
  };
  return walk(doc.lists);
}

function clone(doc: ResourceLists): ResourceLists {
  return structuredClone(doc);
}

/** Options of {@linkcode addBuddy}. */
export interface AddBuddyOptions {
  /** Display name to keep with the entry. */
  displayName?: string;
  /** Name of the list to add to (created at top level if absent). Default: the first list. */
  list?: string;
}

/**
 * Returns a copy of the list with the buddy added (URI normalized). When
 * the buddy is already in the list its entry stays where it is, and its
 * display name is updated when a new one is given.
 *
 * @example
 * ```ts
 * import { addBuddy, listBuddies, loadBuddyList } from "./resource_lists.ts";
 * const doc = addBuddy(loadBuddyList(""), "bob@example.test", { displayName: "Bob" });
 * listBuddies(doc); // [{ uri: "sip:bob@example.test", displayName: "Bob" }]
 * ```
 */
export function addBuddy(
  doc: ResourceLists,
  uri: string,
  options: AddBuddyOptions = {},
): ResourceLists {
  const out = clone(doc);
  const normalized = normalizeBuddyUri(uri);
  const existing = findEntry(out.lists, normalized);
  if (existing) {
    if (options.displayName !== undefined) {
      existing.displayName = options.displayName;
      delete existing.displayNameLang;
    }
    return out;
  }
  let list = findList(out, options.list);
  if (!list) {
    list = { entries: [], lists: [], entryRefs: [], externals: [] };
    list.name = options.list ?? DEFAULT_BUDDY_LIST;
    out.lists.push(list);
  }
  const entry: ListEntry = { uri: normalized };
  if (options.displayName !== undefined) entry.displayName = options.displayName;
  list.entries.push(entry);
  return out;
}

function findEntry(lists: ResourceList[], uri: string): ListEntry | undefined {
  for (const l of lists) {
    const e = l.entries.find((x) => sameBuddy(x.uri, uri));
    if (e) return e;
    const sub = findEntry(l.lists, uri);
    if (sub) return sub;
  }
}

/**
 * Returns a copy of the list without the buddy (in every list and nested
 * list). Use {@linkcode hasBuddy} first to tell "not there" apart.
 *
 * @example
 * ```ts
 * import { addBuddy, hasBuddy, loadBuddyList, removeBuddy } from "./resource_lists.ts";
 * const doc = removeBuddy(addBuddy(loadBuddyList(""), "sip:bob@b"), "bob@b");
 * hasBuddy(doc, "sip:bob@b"); // false
 * ```
 */
export function removeBuddy(doc: ResourceLists, uri: string): ResourceLists {
  const out = clone(doc);
  const walk = (lists: ResourceList[]) => {
    for (const l of lists) {
      l.entries = l.entries.filter((e) => !sameBuddy(e.uri, uri));
      walk(l.lists);
    }
  };
  walk(out.lists);
  return out;
}

/** True when the buddy is in any list. */
export function hasBuddy(doc: ResourceLists, uri: string): boolean {
  return findEntry(doc.lists, uri) !== undefined;
}

/**
 * Every buddy of every list (nested lists included), in document order,
 * each URI once (the first entry's display name wins).
 */
export function listBuddies(doc: ResourceLists): ListEntry[] {
  const out: ListEntry[] = [];
  const seen = new Set<string>();
  const walk = (lists: ResourceList[]) => {
    for (const l of lists) {
      for (const e of l.entries) {
        const key = safeKey(e.uri);
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ ...e });
      }
      walk(l.lists);
    }
  };
  walk(doc.lists);
  return out;
}
