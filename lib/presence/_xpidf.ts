/**
 * Internal: reads XPIDF (`application/xpidf+xml`, the pre-PIDF format of
 * draft-rosenberg-impp-pidf, still sent by Windows Messenger, old linphone,
 * Asterisk and the NIST SIP IM client) into the PIDF model. No namespace;
 * `<presentity uri>`, `<atom id>` holding `<address uri priority>` with
 * `<status status>` and Microsoft's `<msnsubstatus substatus>`.
 *
 * @module
 */

import { attr, children, type Element, text } from "./_xml.ts";
import type { Activity, PresenceDocument, Tuple } from "./pidf.ts";

/**
 * msnsubstatus values and the RPID activity each one means (none for
 * online and offline). "berightback" and "idle" are read as away.
 */
const SUBSTATUS_ACTIVITY: Record<string, string | undefined> = {
  online: undefined,
  offline: undefined,
  away: "away",
  idle: "away",
  berightback: "away",
  busy: "busy",
  onthephone: "on-the-phone",
  outtolunch: "lunch",
};

/** Reads an XPIDF `<presence>` root (no namespace) into the model. */
export function xpidfToPresence(root: Element, what: string): PresenceDocument {
  const presentity = children(root, "", "presentity")[0];
  const uri = presentity ? attr(presentity, "uri")?.trim() : undefined;
  if (!uri) throw new SyntaxError(`Cannot parse ${what}: XPIDF <presentity> has no uri`);
  const doc: PresenceDocument = {
    // The presentity URI carries ";method=SUBSCRIBE" in every known sender.
    entity: uri.replace(/;method=subscribe$/i, ""),
    tuples: [],
    persons: [],
    devices: [],
    notes: [],
  };
  for (const atom of children(root, "", "atom")) {
    const atomId = attr(atom, "id") ?? attr(atom, "atomid") ?? "";
    const addresses = children(atom, "", "address");
    addresses.forEach((address, i) => {
      const tuple: Tuple = {
        id: addresses.length > 1 ? `${atomId}-${i + 1}` : atomId,
        notes: [],
        activities: [],
      };
      const contact = attr(address, "uri")?.trim();
      if (contact) {
        tuple.contact = { uri: contact };
        // Seen as "0.800000" and, from Asterisk, "0,800000".
        const p = Number((attr(address, "priority") ?? "").trim().replace(",", "."));
        if (attr(address, "priority") !== undefined && p >= 0 && p <= 1) {
          tuple.contact.priority = Math.round(p * 1000) / 1000;
        }
      }
      const status = children(address, "", "status")[0];
      const value = status ? attr(status, "status")?.trim().toLowerCase() : undefined;
      // XPIDF status: open, closed, inuse (in a call), inactive (idle).
      if (value === "closed") tuple.basic = "closed";
      else if (value === "open" || value === "inuse" || value === "inactive") tuple.basic = "open";
      const sub = children(address, "", "msnsubstatus")[0];
      const substatus = sub ? attr(sub, "substatus")?.trim().toLowerCase() : undefined;
      let activity: Activity | undefined;
      if (substatus !== undefined && substatus in SUBSTATUS_ACTIVITY) {
        const name = SUBSTATUS_ACTIVITY[substatus];
        if (name) activity = { name };
      } else if (substatus) {
        activity = { name: substatus };
      } else if (value === "inuse") {
        activity = { name: "busy" };
      } else if (value === "inactive") {
        activity = { name: "away" };
      }
      if (activity) tuple.activities.push(activity);
      for (const n of children(address, "", "note")) {
        if (text(n)) tuple.notes.push({ text: text(n) });
      }
      doc.tuples.push(tuple);
    });
  }
  return doc;
}
