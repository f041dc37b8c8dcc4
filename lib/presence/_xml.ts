/**
 * Internal XML helpers for the presence document formats: a strict,
 * namespace-aware parse that throws `SyntaxError`, lookups by namespace URI
 * and local name (never by prefix), and a small builder over the DOM with
 * serialization through `XMLSerializer`. Depends on XML only, never on SIP.
 *
 * @module
 */

import { DOMImplementation, DOMParser, XMLSerializer } from "@xmldom/xmldom";
import type { Document, Element, Node } from "@xmldom/xmldom";

export type { Document, Element };

/** `xmlns` attributes live in this namespace. */
export const XMLNS_NS = "http://www.w3.org/2000/xmlns/";
/** `xml:lang` lives in this namespace. */
export const XML_NS = "http://www.w3.org/XML/1998/namespace";

const ELEMENT_NODE = 1;
const TEXT_NODE = 3;
const CDATA_SECTION_NODE = 4;

/** Decodes bytes as strict UTF-8, or returns the string as it is. */
export function toText(data: string | Uint8Array, what: string): string {
  if (typeof data === "string") return data;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch (cause) {
    throw new SyntaxError(`Cannot parse ${what}: not valid UTF-8`, { cause });
  }
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;

/**
 * Parses XML text into a DOM. Any well-formedness or namespace error
 * (unbound prefix, undefined entity, mismatched tags...) becomes a
 * `SyntaxError` whose message starts with `Cannot parse <what>:`.
 */
export function parseXml(data: string | Uint8Array, what: string): Document {
  const text = toText(data, what);
  if (text.trim() === "") throw new SyntaxError(`Cannot parse ${what}: empty document`);
  // XML 1.0 section 2.2: control characters other than tab, CR and LF are not characters.
  if (CONTROL.test(text)) {
    throw new SyntaxError(`Cannot parse ${what}: control character not allowed in XML`);
  }
  let problem: string | undefined;
  const parser = new DOMParser({
    onError(level: string, message: string) {
      // xmldom only warns about some malformed markup (unquoted or unspaced attributes,
      // bad end tags): those are errors here. A U+FFFD in the text is not.
      if (level === "warning" && message.startsWith("Unicode replacement character")) return;
      problem ??= message;
      throw new Error(message);
    },
  });
  let doc: Document;
  try {
    doc = parser.parseFromString(text, "application/xml");
  } catch (cause) {
    const reason = problem ?? (cause instanceof Error ? cause.message : String(cause));
    throw new SyntaxError(`Cannot parse ${what}: ${firstLine(reason)}`, { cause });
  }
  if (!doc.documentElement) throw new SyntaxError(`Cannot parse ${what}: no root element`);
  return doc;
}

function firstLine(text: string): string {
  return text.split("\n")[0].trim();
}

/** Checks the root element's namespace and local name. */
export function expectRoot(doc: Document, ns: string, local: string, what: string): Element {
  const root = doc.documentElement!;
  if (root.localName !== local || (root.namespaceURI ?? "") !== ns) {
    const got = root.namespaceURI ? `{${root.namespaceURI}}${root.localName}` : root.localName;
    throw new SyntaxError(
      `Cannot parse ${what}: root element is ${got}, expected <${local}> in ${ns}`,
    );
  }
  return root;
}

/** Element children of a node, optionally filtered by namespace and local name. */
export function children(parent: Node, ns?: string, local?: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== ELEMENT_NODE) continue;
    const el = n as Element;
    if (ns !== undefined && (el.namespaceURI ?? "") !== ns) continue;
    if (local !== undefined && el.localName !== local) continue;
    out.push(el);
  }
  return out;
}

/** The first element child with this namespace and local name. */
export function child(parent: Node, ns: string, local: string): Element | undefined {
  return children(parent, ns, local)[0];
}

/** Every descendant element with this namespace and local name, in document order. */
export function descendants(parent: Element | Document, ns: string, local: string): Element[] {
  const list = parent.getElementsByTagNameNS(ns, local);
  const out: Element[] = [];
  for (let i = 0; i < list.length; i++) out.push(list[i] as Element);
  return out;
}

/** The concatenated text of an element (text and CDATA descendants), trimmed. */
export function text(el: Element): string {
  return rawText(el).trim();
}

function rawText(node: Node): string {
  let out = "";
  for (let n = node.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === TEXT_NODE || n.nodeType === CDATA_SECTION_NODE) out += n.nodeValue ?? "";
    else if (n.nodeType === ELEMENT_NODE) out += rawText(n);
  }
  return out;
}

/** An attribute without namespace, or undefined when absent. */
export function attr(el: Element, name: string): string | undefined {
  return el.hasAttribute(name) ? el.getAttribute(name) ?? undefined : undefined;
}

/** The `xml:lang` in scope for an element (inherited from ancestors), if any. */
export function lang(el: Element): string | undefined {
  for (let n: Node | null = el; n && n.nodeType === ELEMENT_NODE; n = n.parentNode) {
    const e = n as Element;
    if (e.hasAttributeNS(XML_NS, "lang")) return e.getAttributeNS(XML_NS, "lang") ?? undefined;
  }
  return undefined;
}

// XML 1.0 Char production: tab, LF, CR, U+0020-U+D7FF, U+E000-U+FFFD, U+10000-U+10FFFF.
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** Throws a TypeError when a value holds a character XML 1.0 cannot carry. */
export function checkXmlText(value: string, what: string): string {
  if (NOT_XML_CHAR.test(value)) {
    throw new TypeError(`Cannot build ${what}: text contains a character not allowed in XML`);
  }
  return value;
}

/** A document being built: the root and helpers that create namespaced elements. */
export class XmlBuilder {
  /** The document. */
  readonly doc: Document;
  /** The root element. */
  readonly root: Element;
  readonly #what: string;
  readonly #prefixes = new Map<string, string>();

  /**
   * Creates a document whose root is `local` in `ns` (default namespace),
   * declaring `prefixes` (prefix -> namespace URI) on the root.
   */
  constructor(ns: string, local: string, prefixes: Record<string, string>, what: string) {
    this.#what = what;
    this.doc = new DOMImplementation().createDocument(ns, local, null);
    this.root = this.doc.documentElement!;
    this.root.setAttributeNS(XMLNS_NS, "xmlns", ns);
    this.#prefixes.set(ns, "");
    for (const [prefix, uri] of Object.entries(prefixes)) {
      this.root.setAttributeNS(XMLNS_NS, `xmlns:${prefix}`, uri);
      this.#prefixes.set(uri, prefix);
    }
  }

  /** Appends an element in `ns` (using the declared prefix) to `parent`. */
  el(parent: Element, ns: string, local: string, attrs: Record<string, string | undefined> = {}) {
    const prefix = this.#prefixes.get(ns);
    const qname = prefix ? `${prefix}:${local}` : local;
    const el = this.doc.createElementNS(ns, qname);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined) continue;
      checkXmlText(value, this.#what);
      if (name === "xml:lang") el.setAttributeNS(XML_NS, "xml:lang", value);
      else el.setAttribute(name, value);
    }
    parent.appendChild(el);
    return el;
  }

  /** Appends an element holding text. */
  textEl(
    parent: Element,
    ns: string,
    local: string,
    value: string,
    attrs: Record<string, string | undefined> = {},
  ): Element {
    const el = this.el(parent, ns, local, attrs);
    el.appendChild(this.doc.createTextNode(checkXmlText(value, this.#what)));
    return el;
  }

  /**
   * Serializes, with an XML declaration unless `declaration` is false, and a
   * final newline unless `newline` is false.
   */
  toString(declaration = true, newline = true): string {
    const xml = new XMLSerializer().serializeToString(this.doc) + (newline ? "\n" : "");
    return declaration ? `<?xml version="1.0" encoding="UTF-8"?>\n${xml}` : xml;
  }
}

/** Parses an xs:boolean ("true", "false", "1", "0"). */
export function parseBoolean(
  value: string | undefined,
  what: string,
  field: string,
): boolean | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new SyntaxError(`Cannot parse ${what}: ${field} "${value}" is not a boolean`);
}

/** Parses a non-negative xs:integer-like value. */
export function parseUnsigned(
  value: string | undefined,
  what: string,
  field: string,
): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (!/^\+?\d{1,15}$/.test(v)) {
    throw new SyntaxError(
      `Cannot parse ${what}: ${field} "${value}" is not a non-negative integer`,
    );
  }
  return Number(v);
}
