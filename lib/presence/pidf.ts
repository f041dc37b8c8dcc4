/**
 * PIDF presence documents (RFC 3863) with the data model (RFC 4479) and the
 * rich presence extensions (RFC 4480): parse into a typed model and build
 * documents from it. Lookups go by namespace URI and local name, so any
 * prefix or a default namespace works; unknown extensions are ignored.
 * Depends on XML only, never on SIP.
 *
 * @module
 */

import {
  attr,
  child,
  children,
  type Element,
  expectRoot,
  lang,
  parseXml,
  text,
  XmlBuilder,
} from "./_xml.ts";
import { xpidfToPresence } from "./_xpidf.ts";

/** The PIDF namespace (RFC 3863 section 4.2). */
export const PIDF_NS = "urn:ietf:params:xml:ns:pidf";
/** The data model namespace (RFC 4479 section 4.2). */
export const DATA_MODEL_NS = "urn:ietf:params:xml:ns:pidf:data-model";
/** The RPID namespace (RFC 4480 section 5). */
export const RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid";
/**
 * The instant messaging status extension used in the example of RFC 3863
 * section 6 (`<im:im>busy</im:im>` inside `<status>`), still sent by old clients.
 */
export const PIDF_IM_NS = "urn:ietf:params:xml:ns:pidf:im";
/** The media type of PIDF documents (RFC 3863 section 7). */
export const PIDF_CONTENT_TYPE = "application/pidf+xml";
/** The media type of XPIDF documents, read by {@linkcode parsePresence}. */
export const XPIDF_CONTENT_TYPE = "application/xpidf+xml";

/** Activity names of RFC 4480 section 3.2 (besides `other`, which carries text). */
export const RPID_ACTIVITIES = [
  "appointment",
  "away",
  "breakfast",
  "busy",
  "dinner",
  "holiday",
  "in-transit",
  "looking-for-work",
  "lunch",
  "meal",
  "meeting",
  "on-the-phone",
  "performance",
  "permanent-absence",
  "playing",
  "presentation",
  "shopping",
  "sleeping",
  "spectator",
  "steering",
  "travel",
  "tv",
  "unknown",
  "vacation",
  "working",
  "worship",
] as const;

/** One RFC 4480 activity name. */
export type RpidActivityName = typeof RPID_ACTIVITIES[number];

/** A human-readable note with its language (`xml:lang`), RFC 3863 section 4.1.6. */
export interface Note {
  /** The text. */
  text: string;
  /** The language tag, when given. */
  lang?: string;
}

/** Basic status of a tuple (RFC 3863 section 4.1.4). */
export type BasicStatus = "open" | "closed";

/** A tuple's contact address (RFC 3863 section 4.1.5). */
export interface PidfContact {
  /** The contact URI. */
  uri: string;
  /** Relative priority, 0 to 1 (a qvalue). */
  priority?: number;
}

/**
 * One activity (RFC 4480 section 3.2): an RPID activity name such as
 * `away`, `other` with its text, or an element of another namespace.
 */
export interface Activity {
  /** The element's local name, e.g. "away", "on-the-phone", "other". */
  name: string;
  /** The text of `<other>` (or of an activity element that carries text). */
  text?: string;
  /** The namespace, only when it is not the RPID one. */
  namespace?: string;
}

/** A service (RFC 4479 section 3.1, PIDF `<tuple>`). */
export interface Tuple {
  /** The tuple id ("" when the sender left it out). */
  id: string;
  /** Basic status; undefined when absent or not open/closed. */
  basic?: BasicStatus;
  /** The contact address. */
  contact?: PidfContact;
  /** Notes of the tuple. */
  notes: Note[];
  /** `<timestamp>` as sent (RFC 3339 date-time). */
  timestamp?: string;
  /** `<dm:deviceID>`: the device this service runs on (RFC 4479 section 4.3). */
  deviceId?: string;
  /**
   * RPID activities found inside the tuple, as older clients sent them
   * (RFC 4480 puts them under `<person>`). Empty when none.
   */
  activities: Activity[];
  /** The text of `<im:im>` in `<status>` (RFC 3863 section 6 example), if any. */
  imStatus?: string;
}

/** The person (RFC 4479 section 3.2, `<dm:person>`) with its RPID elements. */
export interface Person {
  /** The person id. */
  id: string;
  /** RPID activities, in document order (empty when none). */
  activities: Activity[];
  /** Notes inside `<rpid:activities>`. */
  activityNotes: Note[];
  /** Local names of the `<rpid:mood>` children (e.g. "happy"), passed through. */
  mood: string[];
  /** Local names or text of `<rpid:place-type>` children, passed through. */
  placeType: string[];
  /** Notes of the person. */
  notes: Note[];
  /** `<dm:timestamp>` as sent. */
  timestamp?: string;
}

/** A device (RFC 4479 section 3.3, `<dm:device>`). */
export interface Device {
  /** The device id attribute. */
  id: string;
  /** `<dm:deviceID>` (a URN). */
  deviceId?: string;
  /** Notes of the device. */
  notes: Note[];
  /** `<dm:timestamp>` as sent. */
  timestamp?: string;
}

/** A parsed or to-be-built PIDF document. */
export interface PresenceDocument {
  /** The presentity URI (`entity` attribute, e.g. "sip:alice@example.test" or "pres:..."). */
  entity: string;
  /** Services. */
  tuples: Tuple[];
  /** Persons (normally at most one). */
  persons: Person[];
  /** Devices. */
  devices: Device[];
  /** Notes directly under `<presence>`. */
  notes: Note[];
}

const WHAT = "PIDF document";

/**
 * Parses a PIDF document (text or UTF-8 bytes). Throws `SyntaxError` when it
 * is not well-formed XML, its root is not `<presence>` in the PIDF namespace,
 * or `entity` is missing. Unknown elements are ignored.
 *
 * @example
 * ```ts
 * import { parsePidf } from "./pidf.ts";
 * const doc = parsePidf(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
 *   <tuple id="t1"><status><basic>open</basic></status></tuple></presence>`);
 * doc.tuples[0].basic; // "open"
 * ```
 */
export function parsePidf(data: string | Uint8Array): PresenceDocument {
  return pidfFromRoot(expectRoot(parseXml(data, WHAT), PIDF_NS, "presence", WHAT));
}

/**
 * Parses a presence document in either format a watcher meets: PIDF
 * (`application/pidf+xml`), or XPIDF (`application/xpidf+xml`, no namespace,
 * as sent by Windows Messenger, old linphone and Asterisk), recognised by
 * its root element rather than by a Content-Type that senders get wrong.
 * XPIDF `<msnsubstatus>` values become RPID activities of the tuple
 * (onthephone is on-the-phone, outtolunch is lunch, idle and berightback
 * are away). Throws `SyntaxError` like {@linkcode parsePidf}.
 *
 * @example
 * ```ts
 * import { parsePresence } from "./pidf.ts";
 * const doc = parsePresence(`<presence><presentity uri="sip:bob@b;method=SUBSCRIBE"/>
 *   <atom id="1"><address uri="sip:bob@h"><status status="inuse"/>
 *   <msnsubstatus substatus="onthephone"/></address></atom></presence>`);
 * doc.tuples[0].activities; // [{ name: "on-the-phone" }]
 * ```
 */
export function parsePresence(data: string | Uint8Array): PresenceDocument {
  const xml = parseXml(data, WHAT);
  const root = xml.documentElement!;
  if (root.localName === "presence" && !root.namespaceURI) return xpidfToPresence(root, WHAT);
  return pidfFromRoot(expectRoot(xml, PIDF_NS, "presence", WHAT));
}

function pidfFromRoot(root: Element): PresenceDocument {
  const entity = attr(root, "entity")?.trim();
  // RFC 3863 section 4.1.1: "The <presence> element MUST have an 'entity' attribute".
  if (!entity) throw new SyntaxError(`Cannot parse ${WHAT}: <presence> has no entity attribute`);
  return {
    entity,
    tuples: children(root, PIDF_NS, "tuple").map(parseTuple),
    persons: children(root, DATA_MODEL_NS, "person").map(parsePerson),
    devices: children(root, DATA_MODEL_NS, "device").map(parseDevice),
    notes: notesOf(root, [PIDF_NS]),
  };
}

function notesOf(el: Element, namespaces: string[]): Note[] {
  const out: Note[] = [];
  for (const n of children(el)) {
    if (n.localName !== "note" || !namespaces.includes(n.namespaceURI ?? "")) continue;
    const l = lang(n);
    out.push(l ? { text: text(n), lang: l } : { text: text(n) });
  }
  return out;
}

function parseTuple(el: Element): Tuple {
  const tuple: Tuple = { id: attr(el, "id") ?? "", notes: notesOf(el, [PIDF_NS]), activities: [] };
  const status = child(el, PIDF_NS, "status");
  if (status) {
    const basic = child(status, PIDF_NS, "basic");
    const value = basic ? text(basic).toLowerCase() : undefined;
    // RFC 3863 section 4.1.4: basic is "open" or "closed"; anything else is left unknown.
    if (value === "open" || value === "closed") tuple.basic = value;
    const im = child(status, PIDF_IM_NS, "im");
    if (im && text(im)) tuple.imStatus = text(im);
  }
  const contact = child(el, PIDF_NS, "contact");
  if (contact && text(contact)) {
    tuple.contact = { uri: text(contact) };
    const priority = parsePriority(attr(contact, "priority"));
    if (priority !== undefined) tuple.contact.priority = priority;
  }
  const timestamp = child(el, PIDF_NS, "timestamp");
  if (timestamp && text(timestamp)) tuple.timestamp = text(timestamp);
  const deviceId = child(el, DATA_MODEL_NS, "deviceID");
  if (deviceId && text(deviceId)) tuple.deviceId = text(deviceId);
  // Older clients put <rpid:activities> in the tuple or inside <status>.
  for (const holder of status ? [el, status] : [el]) {
    for (const acts of children(holder, RPID_NS, "activities")) {
      tuple.activities.push(...parseActivities(acts).activities);
    }
  }
  return tuple;
}

/**
 * RFC 3863 section 4.1.5: priority is a qvalue, 0 to 1 with up to three
 * decimals. Longer decimals ("0.800000", as some clients write) are rounded;
 * anything else is ignored rather than failing the document.
 */
function parsePriority(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (!/^(?:\d+(?:\.\d*)?|\.\d+)$/.test(v)) return undefined;
  const p = Number(v);
  return p >= 0 && p <= 1 ? Math.round(p * 1000) / 1000 : undefined;
}

function parseActivities(el: Element): { activities: Activity[]; notes: Note[] } {
  const activities: Activity[] = [];
  for (const a of children(el)) {
    const ns = a.namespaceURI ?? "";
    if (ns === RPID_NS && a.localName === "note") continue;
    const activity: Activity = { name: a.localName ?? "" };
    const t = text(a);
    if (t) activity.text = t;
    if (ns !== RPID_NS) activity.namespace = ns;
    activities.push(activity);
  }
  return { activities, notes: notesOf(el, [RPID_NS]) };
}

function parsePerson(el: Element): Person {
  const person: Person = {
    id: attr(el, "id") ?? "",
    activities: [],
    activityNotes: [],
    mood: [],
    placeType: [],
    // RFC 4479 puts <dm:note> here; some clients (old linphone) write <rpid:note>.
    notes: notesOf(el, [DATA_MODEL_NS, PIDF_NS, RPID_NS]),
  };
  for (const acts of children(el, RPID_NS, "activities")) {
    const parsed = parseActivities(acts);
    person.activities.push(...parsed.activities);
    person.activityNotes.push(...parsed.notes);
  }
  for (const mood of children(el, RPID_NS, "mood")) {
    for (const m of children(mood)) if (m.localName !== "note") person.mood.push(m.localName!);
  }
  for (const place of children(el, RPID_NS, "place-type")) {
    for (const p of children(place)) {
      if (p.localName === "note") continue;
      person.placeType.push(p.localName === "other" && text(p) ? text(p) : p.localName!);
    }
  }
  const timestamp = child(el, DATA_MODEL_NS, "timestamp");
  if (timestamp && text(timestamp)) person.timestamp = text(timestamp);
  return person;
}

function parseDevice(el: Element): Device {
  const device: Device = { id: attr(el, "id") ?? "", notes: notesOf(el, [DATA_MODEL_NS]) };
  const deviceId = child(el, DATA_MODEL_NS, "deviceID");
  if (deviceId && text(deviceId)) device.deviceId = text(deviceId);
  const timestamp = child(el, DATA_MODEL_NS, "timestamp");
  if (timestamp && text(timestamp)) device.timestamp = text(timestamp);
  return device;
}

/** Options of {@linkcode formatPidf}. */
export interface FormatPidfOptions {
  /**
   * Start with `<?xml version="1.0" encoding="UTF-8"?>`. Default true; false
   * saves 39 bytes per NOTIFY or PUBLISH (the declaration is optional in XML 1.0).
   */
  xmlDeclaration?: boolean;
  /**
   * Declare the data-model and RPID namespaces as default namespaces on the
   * elements that use them (`<person xmlns="...data-model">`) instead of
   * `dm:` and `rpid:` prefixes on the root: the same document in XML
   * Namespaces terms, some 10 bytes shorter once deflated. Default false:
   * simple peers (baresip) look for the literal `<rpid:away/>`.
   */
  inlineNamespaces?: boolean;
}

/**
 * Builds a PIDF document (`application/pidf+xml`) from the model, compact
 * (no indentation: it travels in every NOTIFY and PUBLISH). PIDF is the
 * default namespace; `dm` and `rpid` prefixes are declared only when used,
 * so simple peers that look for `<basic>` and `<rpid:away/>` understand it.
 * Throws `TypeError` when a value holds a character XML cannot carry.
 *
 * @example
 * ```ts
 * import { formatPidf } from "./pidf.ts";
 * const xml = formatPidf({
 *   entity: "sip:alice@example.test",
 *   tuples: [{ id: "t1", basic: "open", notes: [], activities: [] }],
 *   persons: [], devices: [], notes: [],
 * });
 * xml.includes("<basic>open</basic>"); // true
 * ```
 */
export function formatPidf(doc: PresenceDocument, options: FormatPidfOptions = {}): string {
  const usesRpid =
    doc.persons.some((p) =>
      p.activities.length > 0 || p.mood.length > 0 || p.placeType.length > 0
    ) || doc.tuples.some((t) => t.activities.length > 0);
  const usesDm = doc.persons.length > 0 || doc.devices.length > 0 ||
    doc.tuples.some((t) => t.deviceId !== undefined);
  const prefixes: Record<string, string> = {};
  if (usesDm && !options.inlineNamespaces) prefixes.dm = DATA_MODEL_NS;
  if (usesRpid && !options.inlineNamespaces) prefixes.rpid = RPID_NS;
  if (doc.tuples.some((t) => t.imStatus !== undefined)) prefixes.im = PIDF_IM_NS;
  const b = new XmlBuilder(PIDF_NS, "presence", prefixes, WHAT);
  b.root.setAttribute("entity", doc.entity);
  // RFC 3863 section 4.1: tuples, then notes, then elements of other namespaces.
  for (const t of doc.tuples) {
    const tuple = b.el(b.root, PIDF_NS, "tuple", { id: t.id });
    const status = b.el(tuple, PIDF_NS, "status");
    if (t.basic) b.textEl(status, PIDF_NS, "basic", t.basic);
    if (t.imStatus !== undefined) b.textEl(status, PIDF_IM_NS, "im", t.imStatus);
    // RFC 3863 section 4.1.2: extension elements come after <status>, before <contact>.
    if (t.deviceId !== undefined) b.textEl(tuple, DATA_MODEL_NS, "deviceID", t.deviceId);
    if (t.activities.length > 0) buildActivities(b, tuple, t.activities, []);
    if (t.contact) {
      const priority = t.contact.priority;
      b.textEl(tuple, PIDF_NS, "contact", t.contact.uri, {
        priority: priority === undefined ? undefined : formatPriority(priority),
      });
    }
    for (const n of t.notes) b.textEl(tuple, PIDF_NS, "note", n.text, { "xml:lang": n.lang });
    if (t.timestamp) b.textEl(tuple, PIDF_NS, "timestamp", t.timestamp);
  }
  for (const n of doc.notes) b.textEl(b.root, PIDF_NS, "note", n.text, { "xml:lang": n.lang });
  for (const p of doc.persons) {
    const person = b.el(b.root, DATA_MODEL_NS, "person", { id: p.id });
    if (p.activities.length > 0 || p.activityNotes.length > 0) {
      buildActivities(b, person, p.activities, p.activityNotes);
    }
    if (p.mood.length > 0) {
      const mood = b.el(person, RPID_NS, "mood");
      for (const m of p.mood) b.el(mood, RPID_NS, m);
    }
    if (p.placeType.length > 0) {
      const place = b.el(person, RPID_NS, "place-type");
      for (const pt of p.placeType) {
        if (/^[a-z][a-z0-9-]*$/.test(pt)) b.el(place, RPID_NS, pt);
        else b.textEl(place, RPID_NS, "other", pt);
      }
    }
    for (const n of p.notes) {
      b.textEl(person, DATA_MODEL_NS, "note", n.text, { "xml:lang": n.lang });
    }
    if (p.timestamp) b.textEl(person, DATA_MODEL_NS, "timestamp", p.timestamp);
  }
  for (const d of doc.devices) {
    const device = b.el(b.root, DATA_MODEL_NS, "device", { id: d.id });
    if (d.deviceId !== undefined) b.textEl(device, DATA_MODEL_NS, "deviceID", d.deviceId);
    for (const n of d.notes) {
      b.textEl(device, DATA_MODEL_NS, "note", n.text, { "xml:lang": n.lang });
    }
    if (d.timestamp) b.textEl(device, DATA_MODEL_NS, "timestamp", d.timestamp);
  }
  // The lean form (for watchers that take deflate) drops the final newline too.
  return b.toString(options.xmlDeclaration ?? true, !options.inlineNamespaces);
}

function buildActivities(b: XmlBuilder, parent: Element, list: Activity[], notes: Note[]) {
  const acts = b.el(parent, RPID_NS, "activities");
  for (const n of notes) b.textEl(acts, RPID_NS, "note", n.text, { "xml:lang": n.lang });
  for (const a of list) {
    if (a.namespace !== undefined && a.namespace !== RPID_NS) continue; // cannot rebuild foreign ones
    if (!/^[A-Za-z_][A-Za-z0-9._-]*$/.test(a.name)) {
      throw new TypeError(`Cannot build ${WHAT}: "${a.name}" is not an activity name`);
    }
    if (a.text !== undefined && a.text !== "") b.textEl(acts, RPID_NS, a.name, a.text);
    else b.el(acts, RPID_NS, a.name);
  }
}

function formatPriority(p: number): string {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`Cannot build ${WHAT}: priority ${p} not in 0..1`);
  return String(Math.round(p * 1000) / 1000);
}
