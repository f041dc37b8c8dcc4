/**
 * Resource List Meta-Information (RFC 4662 section 5, `application/rlmi+xml`)
 * and the multipart/related NOTIFY bodies that carry it: parse and build
 * RLMI documents, and unpack a whole list NOTIFY body into one state per
 * resource, with the PIDF document its instance points to.
 *
 * @module
 */

import {
  formatMultipart,
  type FormattedMultipart,
  type MediaType,
  type MimePart,
  parseMediaType,
  parseMultipart,
  partContentId,
  partContentType,
  stripAngles,
} from "../sip/multipart.ts";
import {
  attr,
  children,
  type Element,
  expectRoot,
  lang,
  parseBoolean,
  parseUnsigned,
  parseXml,
  text,
  XmlBuilder,
} from "./_xml.ts";
import {
  parsePresence,
  PIDF_CONTENT_TYPE,
  type PresenceDocument,
  XPIDF_CONTENT_TYPE,
} from "./pidf.ts";

/** The RLMI namespace (RFC 4662 section 5.2). */
export const RLMI_NS = "urn:ietf:params:xml:ns:rlmi";
/** The RLMI media type. */
export const RLMI_CONTENT_TYPE = "application/rlmi+xml";

/** Instance states of RFC 4662 section 5.2 (the Subscription-State values). */
export const RLMI_STATES = ["active", "pending", "terminated"] as const;
/** One instance state. */
export type RlmiState = typeof RLMI_STATES[number];

/** A name with its language. */
export interface RlmiName {
  /** The text. */
  text: string;
  /** `xml:lang`, when given. */
  lang?: string;
}

/** An `<instance>`: one subscription to a resource (RFC 4662 section 5.2). */
export interface RlmiInstance {
  /** Instance id, unique within the resource. */
  id: string;
  /** Subscription state. */
  state: RlmiState;
  /** Reason for "terminated" (or "pending"), as in Subscription-State. */
  reason?: string;
  /** Content-ID of the part with this instance's state (without angle brackets). */
  cid?: string;
}

/** A `<resource>` of the list. */
export interface RlmiResource {
  /** The resource URI. */
  uri: string;
  /** Names in several languages. */
  names: RlmiName[];
  /** Instances (none when the server has no state yet). */
  instances: RlmiInstance[];
}

/** An RLMI `<list>` document. */
export interface RlmiList {
  /** The list URI. */
  uri: string;
  /** Version, incremented by one per notification (RFC 4662 section 5.2). */
  version: number;
  /** True when the document holds the full state, false for a partial update. */
  fullState: boolean;
  /** Content-ID when this list is a sublist carried in an enclosing body. */
  cid?: string;
  /** Names of the list. */
  names: RlmiName[];
  /** Resources. */
  resources: RlmiResource[];
}

const WHAT = "RLMI document";

function namesOf(el: Element): RlmiName[] {
  return children(el, RLMI_NS, "name").map((n) => {
    const l = lang(n);
    return l ? { text: text(n), lang: l } : { text: text(n) };
  });
}

/**
 * Parses an RLMI document. Throws `SyntaxError` when it is not well-formed,
 * its root is not `<list>` in the RLMI namespace, or a required attribute
 * (list uri, version, fullState; resource uri; instance id and state) is
 * missing or invalid.
 *
 * @example
 * ```ts
 * import { parseRlmi } from "./rlmi.ts";
 * const list = parseRlmi(`<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:friends@example.test"
 *   version="3" fullState="false"><resource uri="sip:bob@example.test">
 *   <instance id="i1" state="pending"/></resource></list>`);
 * list.resources[0].instances[0].state; // "pending"
 * ```
 */
export function parseRlmi(data: string | Uint8Array): RlmiList {
  const root = expectRoot(parseXml(data, WHAT), RLMI_NS, "list", WHAT);
  const required = (el: Element, name: string, where: string): string => {
    const v = attr(el, name)?.trim();
    if (!v) throw new SyntaxError(`Cannot parse ${WHAT}: <${where}> has no ${name} attribute`);
    return v;
  };
  const list: RlmiList = {
    uri: required(root, "uri", "list"),
    version: parseUnsigned(required(root, "version", "list"), WHAT, "version")!,
    fullState: parseBoolean(required(root, "fullState", "list"), WHAT, "fullState")!,
    names: namesOf(root),
    resources: [],
  };
  const cid = attr(root, "cid");
  if (cid) list.cid = stripAngles(cid);
  for (const r of children(root, RLMI_NS, "resource")) {
    const resource: RlmiResource = {
      uri: required(r, "uri", "resource"),
      names: namesOf(r),
      instances: [],
    };
    for (const i of children(r, RLMI_NS, "instance")) {
      const state = required(i, "state", "instance");
      if (!(RLMI_STATES as readonly string[]).includes(state)) {
        throw new SyntaxError(
          `Cannot parse ${WHAT}: instance state "${state}" is not one of ${RLMI_STATES.join(", ")}`,
        );
      }
      const instance: RlmiInstance = {
        id: required(i, "id", "instance"),
        state: state as RlmiState,
      };
      const reason = attr(i, "reason");
      if (reason) instance.reason = reason;
      const icid = attr(i, "cid");
      if (icid) instance.cid = stripAngles(icid);
      resource.instances.push(instance);
    }
    list.resources.push(resource);
  }
  return list;
}

/**
 * Builds an RLMI document (compact). Throws `TypeError` for characters XML
 * cannot carry.
 *
 * @example
 * ```ts
 * import { formatRlmi } from "./rlmi.ts";
 * formatRlmi({ uri: "sip:l@x", version: 0, fullState: true, names: [], resources: [] })
 *   .includes(`fullState="true"`); // true
 * ```
 */
export function formatRlmi(list: RlmiList): string {
  const b = new XmlBuilder(RLMI_NS, "list", {}, WHAT);
  b.root.setAttribute("uri", list.uri);
  b.root.setAttribute("version", String(list.version));
  b.root.setAttribute("fullState", String(list.fullState));
  if (list.cid) b.root.setAttribute("cid", list.cid);
  for (const n of list.names) b.textEl(b.root, RLMI_NS, "name", n.text, { "xml:lang": n.lang });
  for (const r of list.resources) {
    const res = b.el(b.root, RLMI_NS, "resource", { uri: r.uri });
    for (const n of r.names) b.textEl(res, RLMI_NS, "name", n.text, { "xml:lang": n.lang });
    for (const i of r.instances) {
      b.el(res, RLMI_NS, "instance", { id: i.id, state: i.state, reason: i.reason, cid: i.cid });
    }
  }
  return b.toString();
}

/** The state of one resource of a list notification. */
export interface ListResourceState {
  /** The resource URI. */
  uri: string;
  /** Its first name, when given. */
  name?: string;
  /**
   * active when any instance is active, else pending when any is pending
   * (or when there is no instance yet), else terminated.
   */
  state: RlmiState;
  /** The reason of the chosen instance, when given. */
  reason?: string;
  /** The id of the chosen instance. */
  instanceId?: string;
  /** Media type of the chosen instance's part, e.g. "application/pidf+xml". */
  contentType?: string;
  /** The part's bytes. */
  body?: Uint8Array;
  /** The parsed document, when the part is `application/pidf+xml` (or xpidf+xml) and parses. */
  presence?: PresenceDocument;
  /** The nested list, when the resource is itself a list (a multipart/related part). */
  list?: ListNotification;
  /** Why the part is missing or could not be read (the other resources are still given). */
  error?: string;
}

/** An unpacked RFC 4662 NOTIFY body. */
export interface ListNotification {
  /** The RLMI document. */
  list: RlmiList;
  /** One state per resource, in RLMI order. */
  resources: ListResourceState[];
}

/**
 * Unpacks the body of an RFC 4662 NOTIFY (`multipart/related` with
 * `type="application/rlmi+xml"`): finds the RLMI root part (the `start`
 * parameter, or the first part, RFC 2387 section 3.2), then each resource's
 * part through its instance's `cid`. A PIDF part is parsed; a nested
 * `multipart/related` part is unpacked as a sublist. A resource whose part
 * is missing or unparsable gets an `error` but does not fail the rest.
 * Throws `SyntaxError` when the body or the RLMI root cannot be parsed.
 *
 * @example
 * ```ts
 * import { buildListNotify, unpackListNotify } from "./rlmi.ts";
 * const { contentType, body } = buildListNotify(
 *   { uri: "sip:l@x", version: 1, fullState: true, names: [], resources: [
 *     { uri: "sip:bob@x", names: [], instances: [{ id: "1", state: "pending" }] }] },
 *   {},
 * );
 * unpackListNotify(contentType, body).resources[0].state; // "pending"
 * ```
 */
export function unpackListNotify(
  contentType: string | MediaType,
  body: Uint8Array,
): ListNotification {
  const mt = typeof contentType === "string" ? parseMediaType(contentType) : contentType;
  if (mt.type !== "multipart/related") {
    throw new SyntaxError(`Cannot parse list notification: ${mt.type} is not multipart/related`);
  }
  if (mt.params.type && mt.params.type.toLowerCase() !== RLMI_CONTENT_TYPE) {
    throw new SyntaxError(
      `Cannot parse list notification: root type is ${mt.params.type}, expected ${RLMI_CONTENT_TYPE}`,
    );
  }
  const mp = parseMultipart(body, mt);
  const byCid = new Map<string, MimePart>();
  for (const p of mp.parts) {
    const id = partContentId(p);
    if (id !== undefined) byCid.set(id, p);
  }
  const start = mt.params.start ? stripAngles(mt.params.start) : undefined;
  const root = start !== undefined ? byCid.get(start) : mp.parts[0];
  if (!root) {
    throw new SyntaxError(
      `Cannot parse list notification: no part has the start Content-ID <${start}>`,
    );
  }
  const list = parseRlmi(root.body);
  const resources = list.resources.map((r) => resourceState(r, byCid));
  return { list, resources };
}

function resourceState(r: RlmiResource, byCid: Map<string, MimePart>): ListResourceState {
  const chosen = r.instances.find((i) => i.state === "active" && i.cid) ??
    r.instances.find((i) => i.state === "active") ??
    r.instances.find((i) => i.state === "pending") ??
    r.instances[0];
  const out: ListResourceState = {
    uri: r.uri,
    state: chosen ? chosen.state : "pending",
  };
  if (r.names.length > 0) out.name = r.names[0].text;
  if (!chosen) return out;
  out.instanceId = chosen.id;
  if (chosen.reason) out.reason = chosen.reason;
  if (!chosen.cid) return out;
  const part = byCid.get(chosen.cid);
  if (!part) {
    out.error = `no part has Content-ID <${chosen.cid}>`;
    return out;
  }
  out.body = part.body;
  try {
    const ct = partContentType(part);
    out.contentType = ct.type;
    if (ct.type === PIDF_CONTENT_TYPE || ct.type === XPIDF_CONTENT_TYPE) {
      out.presence = parsePresence(part.body);
    } else if (ct.type === "multipart/related") out.list = unpackListNotify(ct, part.body);
  } catch (e) {
    out.error = e instanceof Error ? e.message : String(e);
  }
  return out;
}

/** One resource document to pack: its media type and bytes (or text). */
export interface ListPartInit {
  /** Content-Type value, e.g. "application/pidf+xml;charset=UTF-8". */
  contentType: string;
  /** The document. */
  body: Uint8Array | string;
}

/**
 * Builds an RFC 4662 NOTIFY body: the RLMI document as root part (with a
 * generated Content-ID, named by `start`), then one part per Content-ID in
 * `parts` (keys are the instance `cid` values, without angle brackets), each
 * with Content-Transfer-Encoding binary. Used by tests and a local list server.
 */
export function buildListNotify(
  list: RlmiList,
  parts: Record<string, ListPartInit>,
  options: { boundary?: string; rootCid?: string } = {},
): FormattedMultipart {
  const enc = new TextEncoder();
  const rootCid = options.rootCid ??
    `rlmi-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}@sipkit`;
  const mime: MimePart[] = [{
    headers: [
      { name: "Content-Transfer-Encoding", value: "binary" },
      { name: "Content-ID", value: `<${rootCid}>` },
      { name: "Content-Type", value: `${RLMI_CONTENT_TYPE};charset=UTF-8` },
    ],
    body: enc.encode(formatRlmi(list)),
  }];
  for (const [cid, p] of Object.entries(parts)) {
    mime.push({
      headers: [
        { name: "Content-Transfer-Encoding", value: "binary" },
        { name: "Content-ID", value: `<${cid}>` },
        { name: "Content-Type", value: p.contentType },
      ],
      body: typeof p.body === "string" ? enc.encode(p.body) : p.body,
    });
  }
  return formatMultipart(mime, {
    type: "multipart/related",
    params: { type: RLMI_CONTENT_TYPE, start: `<${rootCid}>` },
    boundary: options.boundary,
  });
}
