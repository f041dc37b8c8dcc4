/**
 * The six user statuses of sipkit (online, offline, away, busy,
 * on-the-phone, lunch) mapped to and from PIDF documents with RPID
 * activities. The derivation reads activities wherever a client put them
 * (under `<dm:person>` as RFC 4480 says, or under `<tuple>` as older clients
 * did), whatever the prefixes.
 *
 * @module
 */

import {
  type Activity,
  formatPidf,
  type FormatPidfOptions,
  type Note,
  parsePresence,
  type PidfContact,
  type PresenceDocument,
  type Tuple,
} from "./pidf.ts";
import { isUserStatus, type UserStatus } from "./user_status.ts";

export { isUserStatus, USER_STATUSES, type UserStatus } from "./user_status.ts";

/**
 * The RPID activity each status publishes (RFC 4480 section 3.2); online and
 * offline publish none. RFC 4480 defines both `<lunch>` ("eating his or her
 * midday meal") and the broader `<meal>`: sipkit sends `<lunch/>` and reads
 * either as lunch.
 */
export const STATUS_ACTIVITY = {
  online: undefined,
  offline: undefined,
  away: "away",
  busy: "busy",
  "on-the-phone": "on-the-phone",
  lunch: "lunch",
} as const satisfies Record<UserStatus, string | undefined>;

/** Activity names read as one of the six statuses. */
const ACTIVITY_STATUS: Record<string, UserStatus> = {
  away: "away",
  busy: "busy",
  "on-the-phone": "on-the-phone",
  lunch: "lunch",
  meal: "lunch",
};

/** Options of {@linkcode statusToPresence}. */
export interface StatusToPresenceOptions {
  /** The presentity, e.g. "sip:alice@example.test". Required. */
  entity: string;
  /** A note shown to watchers (put on the person and the tuple). */
  note?: string;
  /** The note's language (`xml:lang`). */
  noteLang?: string;
  /** Contact URI of the service. */
  contact?: string;
  /** Contact priority, 0 to 1. */
  priority?: number;
  /**
   * Timestamp of the tuple and the person (a Date or an RFC 3339 string), so that a
   * server aggregating several publications shows the newest. Default: none.
   */
  timestamp?: Date | string;
  /** Tuple id. Default "t1". */
  tupleId?: string;
  /** Person id. Default "p1". */
  personId?: string;
}

/**
 * Builds the presence model for a user status: offline is basic closed,
 * online is open with no activity, the others are open with their RPID
 * activity under `<dm:person>`.
 *
 * @example
 * ```ts
 * import { statusToPresence } from "./status.ts";
 * const doc = statusToPresence("busy", { entity: "sip:alice@example.test" });
 * doc.persons[0].activities; // [{ name: "busy" }]
 * ```
 */
export function statusToPresence(
  status: UserStatus,
  options: StatusToPresenceOptions,
): PresenceDocument {
  if (!isUserStatus(status)) throw new TypeError(`Unknown user status: ${String(status)}`);
  const notes: Note[] = options.note === undefined
    ? []
    : [options.noteLang ? { text: options.note, lang: options.noteLang } : { text: options.note }];
  const tuple: Tuple = {
    id: options.tupleId ?? "t1",
    basic: status === "offline" ? "closed" : "open",
    notes,
    activities: [],
  };
  if (options.contact !== undefined) {
    tuple.contact = options.priority === undefined
      ? { uri: options.contact }
      : { uri: options.contact, priority: options.priority };
  }
  const timestamp = options.timestamp instanceof Date
    ? options.timestamp.toISOString()
    : options.timestamp;
  if (timestamp !== undefined) tuple.timestamp = timestamp;
  const activity = STATUS_ACTIVITY[status];
  const doc: PresenceDocument = {
    entity: options.entity,
    tuples: [tuple],
    persons: [],
    devices: [],
    notes: [],
  };
  if (activity !== undefined || notes.length > 0) {
    doc.persons.push({
      id: options.personId ?? "p1",
      activities: activity ? [{ name: activity }] : [],
      activityNotes: [],
      mood: [],
      placeType: [],
      notes,
      ...(timestamp === undefined ? {} : { timestamp }),
    });
  }
  return doc;
}

/**
 * Builds the PIDF document text for a user status (see
 * {@linkcode statusToPresence}); `xmlDeclaration: false` makes it shorter.
 *
 * @example
 * ```ts
 * import { statusToPidf } from "./status.ts";
 * statusToPidf("away", { entity: "sip:a@b" }).includes("<rpid:away/>"); // true
 * ```
 */
export function statusToPidf(
  status: UserStatus,
  options: StatusToPresenceOptions & FormatPidfOptions,
): string {
  return formatPidf(statusToPresence(status, options), options);
}

/** What a watcher reports about a presentity. */
export interface PresenceSummary {
  /** The presentity URI. */
  entity: string;
  /**
   * One of the six statuses, or the raw RPID activity name for other
   * activities (e.g. "meeting", "vacation", "other").
   */
  status: UserStatus | string;
  /** Basic status: open when any tuple is open, closed when all are; undefined when none says. */
  basic?: "open" | "closed";
  /** Every activity name, person ones first, without duplicates. */
  activities: string[];
  /** The first note (person, then open tuples, then other tuples, then document). */
  note?: string;
  /** The note's language. */
  noteLang?: string;
  /** Contacts, open tuples first, then by priority (highest first). */
  contacts: PidfContact[];
}

/**
 * Derives the user status of a presence document (model, or PIDF or XPIDF
 * text or bytes, see {@linkcode parsePresence}).
 * The rules, in order:
 * 1. the first activity that maps to a status (away, busy, on-the-phone,
 *    lunch or meal) gives it, wherever the activity sits (person or tuple);
 *    persons are read newest first when they carry timestamps, then in
 *    document order, then tuples (open ones first);
 * 2. otherwise the first other activity passes through by name (`unknown`
 *    does not count: RFC 4480 section 3.2 uses it for "not known");
 * 3. otherwise open gives online and anything else offline.
 * The legacy `<im:im>` status text (RFC 3863 section 6) counts as an
 * activity when no RPID activity is present.
 * Throws `SyntaxError` for text that is not a PIDF document.
 *
 * @example
 * ```ts
 * import { presenceToStatus } from "./status.ts";
 * const s = presenceToStatus(`<presence xmlns="urn:ietf:params:xml:ns:pidf"
 *   xmlns:x="urn:ietf:params:xml:ns:pidf:rpid" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model"
 *   entity="sip:bob@b"><tuple id="t"><status><basic>open</basic></status></tuple>
 *   <d:person id="p"><x:activities><x:lunch/></x:activities></d:person></presence>`);
 * s.status; // "lunch"
 * ```
 */
export function presenceToStatus(doc: PresenceDocument | string | Uint8Array): PresenceSummary {
  const model = typeof doc === "string" || doc instanceof Uint8Array ? parsePresence(doc) : doc;
  const open = model.tuples.filter((t) => t.basic === "open");
  const basic = open.length > 0
    ? "open"
    : model.tuples.some((t) => t.basic === "closed")
    ? "closed"
    : undefined;

  // RFC 4479 section 3.2 allows several person elements (e.g. one per publication, as a
  // presence server aggregates them): those with a timestamp come first, newest first.
  const persons = model.persons
    .map((p, i) => ({ p, i, t: p.timestamp ? Date.parse(p.timestamp) : NaN }))
    .sort((a, b) =>
      Number.isNaN(a.t) || Number.isNaN(b.t)
        ? Number(Number.isNaN(a.t)) - Number(Number.isNaN(b.t)) || a.i - b.i
        : b.t - a.t || a.i - b.i
    )
    .map((x) => x.p);
  const all: Activity[] = [];
  for (const p of persons) all.push(...p.activities);
  // Tuples that are open speak first among tuples.
  const ordered = [...open, ...model.tuples.filter((t) => t.basic !== "open")];
  for (const t of ordered) all.push(...t.activities);
  if (all.length === 0) {
    for (const t of ordered) if (t.imStatus) all.push({ name: t.imStatus.toLowerCase() });
  }
  const activities = [...new Set(all.map((a) => a.name))];

  let status: string | undefined;
  for (const name of activities) {
    if (ACTIVITY_STATUS[name]) {
      status = ACTIVITY_STATUS[name];
      break;
    }
  }
  status ??= activities.find((name) => name !== "unknown");
  status ??= basic === "open" ? "online" : "offline";

  const summary: PresenceSummary = {
    entity: model.entity,
    status,
    activities,
    contacts: ordered
      .filter((t) => t.contact !== undefined)
      .map((t) => ({ open: t.basic === "open", contact: t.contact! }))
      .sort((a, b) =>
        Number(b.open) - Number(a.open) ||
        (b.contact.priority ?? 0) - (a.contact.priority ?? 0)
      )
      .map((c) => c.contact),
  };
  if (basic) summary.basic = basic;
  const notes: Note[] = [
    ...persons.flatMap((p) => [...p.notes, ...p.activityNotes]),
    ...ordered.flatMap((t) => t.notes),
    ...model.notes,
  ].filter((n) => n.text !== "");
  if (notes.length > 0) {
    summary.note = notes[0].text;
    if (notes[0].lang) summary.noteLang = notes[0].lang;
  }
  return summary;
}
