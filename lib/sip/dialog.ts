/**
 * Dialogs (RFC 3261 section 12): the state two user agents share between an
 * INVITE and its BYE, or for a subscription (RFC 6665 creates dialogs from
 * SUBSCRIBE and NOTIFY). A {@linkcode Dialog} keeps the identifiers, CSeq
 * counters, route set and remote target, builds in-dialog requests and checks
 * inbound ones; a {@linkcode DialogRegistry} finds the dialog of a message.
 *
 * @module
 */

import { cloneUri, formatAddress } from "./uri.ts";
import {
  formatNameAddr,
  type HeadersInit,
  type NameAddr,
  SipHeaders,
  SipRequest,
  type SipResponse,
  type Uri,
} from "./message.ts";
import { type DialogId, dialogKey } from "./dialog_id.ts";

export { type DialogId, dialogKey } from "./dialog_id.ts";

/** Dialog states (12.1): a dialog made by a 1xx is early, by a 2xx (or NOTIFY) confirmed. */
export type DialogState = "early" | "confirmed" | "terminated";

/**
 * Requests that refresh the remote target (12.2; RFC 3311 for UPDATE; RFC
 * 6665 section 4.1 for SUBSCRIBE and NOTIFY).
 */
export const TARGET_REFRESH_METHODS: ReadonlySet<string> = new Set([
  "INVITE",
  "UPDATE",
  "SUBSCRIBE",
  "NOTIFY",
]);

/**
 * The id of the dialog an inbound request belongs to, seen from this UA as
 * the request's UAS (12.2.2): local tag = To tag, remote tag = From tag.
 * Undefined when the To has no tag (not an in-dialog request).
 */
export function dialogIdOfRequest(req: SipRequest): DialogId | undefined {
  const localTag = req.to.params.tag;
  if (!localTag) return undefined;
  return { callId: req.callId, localTag, remoteTag: req.from.params.tag ?? "" };
}

/**
 * The id of the dialog a response to one of our requests belongs to, seen
 * from this UA as UAC (12.1.2): local tag = From tag, remote tag = To tag.
 * Undefined when the To has no tag.
 */
export function dialogIdOfResponse(res: SipResponse): DialogId | undefined {
  const remoteTag = res.to.params.tag;
  if (!remoteTag) return undefined;
  return { callId: res.callId, localTag: res.from.params.tag ?? "", remoteTag };
}

/** Everything a dialog holds (12.1); the constructor's argument. */
export interface DialogInit {
  /** The dialog id. */
  id: DialogId;
  /** Initial state. */
  state: Exclude<DialogState, "terminated">;
  /** Last CSeq number this side used, undefined while empty. */
  localSeq?: number;
  /** Last CSeq number the peer used, undefined while empty. */
  remoteSeq?: number;
  /** Local URI with display name (header parameters other than tag are kept). */
  local: NameAddr;
  /** Remote URI with display name. */
  remote: NameAddr;
  /** The peer's Contact URI. */
  remoteTarget: Uri;
  /** Route set, in the order the Route headers of requests take. */
  routeSet: NameAddr[];
  /** True for a SIPS dialog (12.1.1, 12.1.2). */
  secure: boolean;
  /** Our Contact, put into target refresh requests. */
  localContact?: NameAddr;
  /** The CSeq number of the last INVITE (for ACK and CANCEL). */
  inviteSeq?: number;
}

/** Options of {@linkcode Dialog.createUac} and {@linkcode Dialog.createUas}. */
export interface CreateDialogOptions {
  /**
   * Secure flag. Default: the Request-URI is a SIPS URI (the RFC also asks
   * for TLS on the hop, which a `sips:` target implies for sipkit).
   */
  secure?: boolean;
}

/** Options of {@linkcode Dialog.createRequest}. */
export interface DialogRequestOptions {
  /** More header fields, appended after the dialog's own. */
  headers?: HeadersInit;
  /** Body as bytes or text. */
  body?: Uint8Array | string;
  /** Content-Type of the body. */
  contentType?: string;
  /**
   * CSeq number to use. By default: for ACK and CANCEL the last INVITE's
   * number (13.2.2.4, 9.1), otherwise the local sequence number plus one.
   */
  cseq?: number;
  /**
   * Contact to send: default the dialog's local contact on target refresh
   * requests (12.2.1.1: "A UAC SHOULD include a Contact header field in any
   * target refresh requests within a dialog"); `null` sends none.
   */
  contact?: NameAddr | null;
}

function cloneNameAddr(na: NameAddr): NameAddr {
  const out: NameAddr = { uri: cloneUri(na.uri), params: { ...na.params } };
  if (na.displayName !== undefined) out.displayName = na.displayName;
  return out;
}

/** A name-addr without its tag (the local and remote URIs of a dialog). */
function withoutTag(na: NameAddr): NameAddr {
  const out = cloneNameAddr(na);
  delete out.params.tag;
  return out;
}

/**
 * A URI as it may stand in a Request-URI: without URI headers and the
 * `method` parameter, which section 19.1.1 (table 1) does not allow there.
 */
function asRequestUri(uri: Uri): Uri {
  const out = cloneUri(uri);
  out.headers = {};
  delete out.params.method;
  return out;
}

/**
 * The local sequence number of a UAS before its first request, whose CSeq
 * is then 1 (12.2.1.1 lets it choose; 8.1.1.5: any value below 2**31). A
 * random start bought nothing, and every NOTIFY and its 200 carried its
 * digits (issue 8: presence bytes).
 */
function initialSeq(): number {
  return 0;
}

/**
 * A dialog (RFC 3261 section 12), usable by INVITE sessions and
 * subscriptions.
 *
 * @example
 * ```ts
 * import { Dialog } from "./dialog.ts";
 * import { createResponse, parseMessage, type SipRequest } from "./message.ts";
 * import assert from "node:assert/strict";
 * const invite = parseMessage(
 *   "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
 *     "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
 *     "Call-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n" +
 *     "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
 * ) as SipRequest;
 * const ok = createResponse(invite, 200, {
 *   toTag: "b",
 *   headers: { Contact: "<sip:bob@192.0.2.2>", "Record-Route": "<sip:proxy.example.test;lr>" },
 * });
 * const dialog = Dialog.createUac(invite, ok); // the UAC's view
 * assert.equal(dialog.createRequest("ACK").cseq.seq, 7);
 * const bye = dialog.createRequest("BYE");
 * assert.equal(bye.cseq.seq, 8);
 * assert.equal(bye.headers.get("Route"), "<sip:proxy.example.test;lr>");
 * assert.equal(bye.uri.host, "192.0.2.2");
 * ```
 */
export class Dialog {
  /** Call-ID, local tag, remote tag. */
  readonly id: DialogId;
  /** The {@linkcode dialogKey} of the id. */
  readonly key: string;
  /** Local URI (From of our requests) without tag. */
  readonly local: NameAddr;
  /** Remote URI (To of our requests) without tag. */
  readonly remote: NameAddr;
  /** Secure flag: requests in this dialog use SIPS. */
  readonly secure: boolean;
  /** The peer's Contact URI: the Request-URI of our requests (unless strict routing). */
  remoteTarget: Uri;
  /** Route set, in the order of the Route headers our requests carry. */
  routeSet: NameAddr[];
  /** Our Contact for target refresh requests (change it when our address changes). */
  localContact?: NameAddr;
  /** Last CSeq number we used; undefined while empty. */
  localSeq?: number;
  /** Last CSeq number the peer used; undefined while empty. */
  remoteSeq?: number;
  #state: DialogState;
  #inviteSeq?: number;
  #refresh?: { request: SipRequest; previous: Uri };

  /** Creates a dialog from its parts; usually {@linkcode createUac} or {@linkcode createUas} does. */
  constructor(init: DialogInit) {
    this.id = { ...init.id };
    this.key = dialogKey(this.id);
    this.#state = init.state;
    this.localSeq = init.localSeq;
    this.remoteSeq = init.remoteSeq;
    this.local = withoutTag(init.local);
    this.remote = withoutTag(init.remote);
    this.remoteTarget = cloneUri(init.remoteTarget);
    this.routeSet = init.routeSet.map(cloneNameAddr);
    this.secure = init.secure;
    this.localContact = init.localContact && cloneNameAddr(init.localContact);
    this.#inviteSeq = init.inviteSeq;
  }

  /**
   * The dialog a UAC gets from a 1xx with a To tag (early) or a 2xx
   * (confirmed; a 2xx without To tag from an RFC 2543 peer gives an empty
   * remote tag) to its request (12.1.2): route set from the response's
   * Record-Route in reverse order, remote target from its Contact, local CSeq
   * from the request, remote CSeq empty.
   */
  static createUac(req: SipRequest, res: SipResponse, options: CreateDialogOptions = {}): Dialog {
    if (res.status < 101 || res.status >= 300) {
      throw new RangeError(`Cannot create a dialog from a ${res.status} response`);
    }
    if (res.status < 200 && !res.to.params.tag) {
      // 12.1: "Dialogs are created through the generation of non-failure
      // responses to requests with specific methods ... 1xx with a To tag".
      throw new TypeError(`Cannot create an early dialog: the ${res.status} has no To tag`);
    }
    const contact = res.contact[0];
    return new Dialog({
      id: {
        callId: req.callId,
        localTag: req.from.params.tag ?? "",
        // "The remote tag MUST be set to the tag in the To field of the
        // response. If a response ... does not contain a tag, the remote tag
        // MUST be set to the null value" (RFC 2543 peers).
        remoteTag: res.to.params.tag ?? "",
      },
      state: res.status < 200 ? "early" : "confirmed",
      localSeq: req.cseq.seq,
      // "The route set MUST be set to the list of URIs in the Record-Route
      // header field from the response, taken in reverse order".
      routeSet: [...res.recordRoute].reverse(),
      // "The remote target MUST be set to the URI from the Contact header field
      // of the response." A 1xx may lack one: keep the Request-URI until a 2xx.
      remoteTarget: contact ? contact.uri : req.uri,
      local: req.from,
      remote: req.to,
      secure: options.secure ?? req.uri.scheme === "sips",
      localContact: req.contact[0],
      inviteSeq: req.method === "INVITE" ? req.cseq.seq : undefined,
    });
  }

  /**
   * The dialog a UAS gets from a request and the 1xx (early) or 2xx
   * (confirmed) it answers with, which carries its To tag and Contact
   * (12.1.1): route set from the request's Record-Route in order, remote
   * target from the request's Contact, remote CSeq from the request, local
   * CSeq empty.
   */
  static createUas(req: SipRequest, res: SipResponse, options: CreateDialogOptions = {}): Dialog {
    if (res.status < 101 || res.status >= 300) {
      throw new RangeError(`Cannot create a dialog from a ${res.status} response`);
    }
    const localTag = res.to.params.tag;
    if (!localTag) {
      throw new TypeError("Cannot create a UAS dialog: the response's To header has no tag");
    }
    const contact = req.contact[0];
    if (!contact) {
      throw new TypeError(`Cannot create a UAS dialog: the ${req.method} has no Contact`);
    }
    return new Dialog({
      id: { callId: req.callId, localTag, remoteTag: req.from.params.tag ?? "" },
      state: res.status < 200 ? "early" : "confirmed",
      remoteSeq: req.cseq.seq,
      // "The route set MUST be set to the list of URIs in the Record-Route
      // header field from the request, taken in order".
      routeSet: req.recordRoute,
      remoteTarget: contact.uri,
      local: req.to,
      remote: req.from,
      secure: options.secure ?? req.uri.scheme === "sips",
      localContact: res.contact[0],
    });
  }

  /**
   * The subscriber's dialog created by a NOTIFY for its SUBSCRIBE (RFC 6665
   * section 4.1.2.4: a NOTIFY may arrive before the 2xx and establishes the
   * dialog). The subscriber is the NOTIFY's UAS: route set from the NOTIFY's
   * Record-Route in order, remote target from its Contact, remote tag its
   * From tag; local CSeq from the SUBSCRIBE.
   */
  static createFromNotify(
    subscribe: SipRequest,
    notify: SipRequest,
    options: CreateDialogOptions = {},
  ): Dialog {
    const contact = notify.contact[0];
    if (!contact) throw new TypeError("Cannot create a dialog: the NOTIFY has no Contact");
    return new Dialog({
      id: {
        callId: notify.callId,
        localTag: subscribe.from.params.tag ?? "",
        remoteTag: notify.from.params.tag ?? "",
      },
      state: "confirmed",
      localSeq: subscribe.cseq.seq,
      remoteSeq: notify.cseq.seq,
      routeSet: notify.recordRoute,
      remoteTarget: contact.uri,
      local: subscribe.from,
      remote: notify.from,
      secure: options.secure ?? subscribe.uri.scheme === "sips",
      localContact: subscribe.contact[0],
    });
  }

  /** The current state. */
  get state(): DialogState {
    return this.#state;
  }

  /** The CSeq number of the last INVITE sent in this dialog (ACK and CANCEL reuse it). */
  get inviteSeq(): number | undefined {
    return this.#inviteSeq;
  }

  /** Moves an early dialog to confirmed (a UAS that sent its 2xx). */
  confirm(): void {
    if (this.#state === "early") this.#state = "confirmed";
  }

  /** Ends the dialog (BYE, non-2xx final on an early dialog, 481/408, subscription end). */
  terminate(): void {
    this.#state = "terminated";
  }

  /** True when the first route is a strict router (no `lr` parameter, 12.2.1.1). */
  get strictRouting(): boolean {
    return this.routeSet.length > 0 && !("lr" in this.routeSet[0].uri.params);
  }

  /**
   * Where the next request goes: the URI of the first Route when there is a
   * route set, else the remote target (section 8.1.2 with 12.2.1.1). Resolve
   * it with RFC 3263 to get a transport target.
   */
  nextHop(): Uri {
    return cloneUri(this.routeSet.length > 0 ? this.routeSet[0].uri : this.remoteTarget);
  }

  /**
   * Builds a request within the dialog (12.2.1.1): To with the remote tag,
   * From with the local tag, Call-ID, CSeq (local sequence number plus one;
   * ACK and CANCEL reuse the INVITE's), Request-URI and Route from the remote
   * target and route set (strict routers handled), Contact on target refresh
   * requests, Max-Forwards 70. The transaction layer adds the Via.
   */
  createRequest(method: string, options: DialogRequestOptions = {}): SipRequest {
    if (this.#state === "terminated") {
      throw new TypeError(`Cannot create ${method} request: the dialog is terminated`);
    }
    if (method === "CANCEL") {
      // 9.1: a CANCEL copies the Request-URI, Call-ID, To, From, CSeq number
      // and top Via of the request it cancels; only its transaction knows them.
      throw new TypeError(
        "Cannot create CANCEL request in a dialog: build it from the INVITE (createCancel)",
      );
    }
    let seq: number;
    if (method === "ACK") {
      const invite = options.cseq ?? this.#inviteSeq;
      if (invite === undefined) {
        throw new TypeError(`Cannot create ${method} request: no INVITE was sent in this dialog`);
      }
      seq = invite;
    } else {
      // 12.2.1.1: "The CSeq header field value MUST be ... incremented by one"
      // (a UAS whose local sequence number is empty picks one).
      seq = options.cseq ?? (this.localSeq ?? initialSeq()) + 1;
      this.localSeq = seq;
      if (method === "INVITE") this.#inviteSeq = seq;
    }

    let requestUri: Uri;
    let routes: NameAddr[];
    if (this.strictRouting) {
      // "If the route set is not empty, and its first URI does not contain the
      // lr parameter, the UAC MUST place the first URI from the route set into
      // the Request-URI, stripping any parameters that are not allowed in a
      // Request-URI. The UAC MUST add a Route header field containing the
      // remainder of the route set values in order, including all parameters.
      // The UAC MUST then place the remote target URI into the Route header
      // field as the last value."
      requestUri = asRequestUri(this.routeSet[0].uri);
      routes = [...this.routeSet.slice(1), { uri: this.remoteTarget, params: {} }];
    } else {
      // "If the route set is empty, the UAC MUST place the remote target URI
      // into the Request-URI ... If the route set is not empty, and the first
      // URI in the route set contains the lr parameter, the UAC MUST place the
      // remote target URI into the Request-URI and MUST include a Route header
      // field containing the route set values in order, including all parameters."
      requestUri = asRequestUri(this.remoteTarget);
      routes = this.routeSet;
    }

    const headers = new SipHeaders();
    for (const route of routes) headers.append("Route", formatNameAddr(route));
    headers.append("Max-Forwards", "70");
    headers.append(
      "From",
      formatAddress({ ...this.local, params: this.#tagged(this.local, this.id.localTag) }),
    );
    headers.append(
      "To",
      formatAddress({ ...this.remote, params: this.#tagged(this.remote, this.id.remoteTag) }),
    );
    headers.append("Call-ID", this.id.callId);
    headers.append("CSeq", `${seq} ${method}`);
    const contact = options.contact === undefined
      ? (TARGET_REFRESH_METHODS.has(method) ? this.localContact : undefined)
      : options.contact ?? undefined;
    if (contact) headers.append("Contact", formatAddress(contact));
    if (options.headers) {
      for (const f of SipHeaders.from(options.headers).fields) headers.append(f.name, f.value);
    }
    let body: Uint8Array | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === "string"
        ? new TextEncoder().encode(options.body)
        : options.body;
    }
    if (options.contentType !== undefined) headers.set("Content-Type", options.contentType);
    return new SipRequest(method, requestUri, headers, body);
  }

  /**
   * Records a request sent in this dialog with a CSeq number chosen outside
   * {@linkcode createRequest} (a retry after 401/407): the local sequence
   * number follows, and for INVITE so does the number its ACK reuses.
   */
  noteSent(method: string, seq: number): void {
    if (this.localSeq === undefined || seq > this.localSeq) this.localSeq = seq;
    if (method === "INVITE") this.#inviteSeq = seq;
  }

  /**
   * Undoes the remote target change of a target refresh request we
   * received and then rejected (a re-INVITE or UPDATE answered with a
   * non-2xx final): only a successful refresh changes the target (RFC 6141
   * section 3.4). Does nothing when a later request changed it again.
   */
  refreshRejected(req: SipRequest): void {
    const pending = this.#refresh;
    if (!pending || pending.request !== req) return;
    this.#refresh = undefined;
    this.remoteTarget = pending.previous;
  }

  #tagged(na: NameAddr, tag: string): NameAddr["params"] {
    const params = { ...na.params };
    if (tag) params.tag = tag;
    return params;
  }

  /**
   * Checks an inbound request of this dialog (12.2.2) and updates the dialog.
   * Returns false when the request is out of order: "If the remote sequence
   * number was not empty, but the sequence number of the request is lower
   * than the remote sequence number, the request is out of order and MUST be
   * rejected with a 500 (Server Internal Error) response" (an equal number on
   * a new request is refused too: retransmissions never get here). ACK and
   * CANCEL carry the INVITE's number and are not checked. A target refresh
   * request with a Contact replaces the remote target.
   */
  receiveRequest(req: SipRequest): boolean {
    if (req.method !== "ACK" && req.method !== "CANCEL") {
      const seq = req.cseq.seq;
      if (this.remoteSeq !== undefined && seq <= this.remoteSeq) return false;
      // "If the remote sequence number is empty, it MUST be set to the value
      // of the sequence number in the CSeq header field value in the request."
      this.remoteSeq = seq;
    }
    if (TARGET_REFRESH_METHODS.has(req.method)) {
      // "When a UAS receives a target refresh request, it MUST replace the
      // dialog's remote target URI with the URI from the Contact header field
      // in that request, if present."
      const contact = req.contact[0];
      if (contact && contact.uri.scheme !== "*") {
        this.#refresh = { request: req, previous: this.remoteTarget };
        this.remoteTarget = cloneUri(contact.uri);
      }
    }
    return true;
  }

  /**
   * Updates the dialog from a response to a request we sent in it (as UAC):
   * - a 2xx to a target refresh request replaces the remote target with its
   *   Contact (12.2.1.2);
   * - a 2xx to the INVITE of an early dialog confirms it and recomputes the
   *   route set from the 2xx (13.2.2.4);
   * - a non-2xx final to that INVITE ends the early dialog (12.3);
   * - 481 or 408 ends the dialog (12.2.1.2: "If the response for a request
   *   within a dialog is a 481 ... or a 408 ... the UAC SHOULD terminate the dialog").
   */
  receiveResponse(res: SipResponse): void {
    if (this.#state === "terminated") return;
    const method = res.cseq.method;
    const status = res.status;
    if (status === 481 || status === 408) {
      this.terminate();
      return;
    }
    if (status >= 200 && status < 300) {
      if (this.#state === "early" && method === "INVITE") {
        // 13.2.2.4: "the dialog MUST be transitioned to the 'confirmed' state,
        // and the route set for the dialog MUST be recomputed based on the 2xx
        // response using the procedures of Section 12.2.1.2."
        this.#state = "confirmed";
        this.routeSet = [...res.recordRoute].reverse();
      }
      if (TARGET_REFRESH_METHODS.has(method)) {
        const contact = res.contact[0];
        if (contact && contact.uri.scheme !== "*") this.remoteTarget = cloneUri(contact.uri);
      }
    } else if (status >= 300 && this.#state === "early" && method === "INVITE") {
      this.terminate();
    }
  }
}

/**
 * The dialogs of a user agent, keyed by {@linkcode dialogKey}, to find the
 * dialog of an inbound request or response. The UA core answers 481 to an
 * in-dialog request (To with tag) that matches none (12.2.2).
 *
 * @example
 * ```ts
 * import { Dialog, DialogRegistry } from "./dialog.ts";
 * import { createResponse, parseMessage, type SipRequest } from "./message.ts";
 * import assert from "node:assert/strict";
 * const invite = parseMessage(
 *   "INVITE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
 *     "From: <sip:alice@example.test>;tag=a\r\nTo: <sip:bob@example.test>\r\n" +
 *     "Call-ID: c\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\n" +
 *     "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
 * ) as SipRequest;
 * const ok = createResponse(invite, 200, { toTag: "b", headers: { Contact: "<sip:bob@192.0.2.2>" } });
 * const dialogs = new DialogRegistry();
 * const mine = dialogs.add(Dialog.createUas(invite, ok)); // the UAS's view
 * const peer = Dialog.createUac(invite, ok); // what the caller builds
 * assert.equal(dialogs.matchRequest(peer.createRequest("BYE")), mine);
 * ```
 */
export class DialogRegistry<D extends Dialog = Dialog> {
  #byKey = new Map<string, D>();

  /** Number of live dialogs. */
  get size(): number {
    this.#prune();
    return this.#byKey.size;
  }

  /** Adds a dialog (replacing one with the same id). */
  add(dialog: D): D {
    this.#byKey.set(dialog.key, dialog);
    return dialog;
  }

  /** The live dialog with this id, if any. */
  get(id: DialogId): D | undefined {
    const key = dialogKey(id);
    const d = this.#byKey.get(key);
    if (d && d.state === "terminated") {
      this.#byKey.delete(key);
      return undefined;
    }
    return d;
  }

  /** Removes a dialog. */
  delete(dialog: D | DialogId): boolean {
    const key = dialog instanceof Dialog ? dialog.key : dialogKey(dialog);
    return this.#byKey.delete(key);
  }

  /** The dialog of an inbound in-dialog request (local tag = To tag), if any. */
  matchRequest(req: SipRequest): D | undefined {
    const id = dialogIdOfRequest(req);
    return id && this.get(id);
  }

  /** The dialog of a response to a request we sent (local tag = From tag), if any. */
  matchResponse(res: SipResponse): D | undefined {
    const id = dialogIdOfResponse(res);
    return id && this.get(id);
  }

  /** Every live dialog of one call leg (Call-ID and local tag): the forks of one INVITE. */
  forks(callId: string, localTag: string): D[] {
    this.#prune();
    return [...this.#byKey.values()].filter((d) =>
      d.id.callId === callId && d.id.localTag === localTag
    );
  }

  /** The live dialogs. */
  values(): D[] {
    this.#prune();
    return [...this.#byKey.values()];
  }

  #prune(): void {
    for (const [key, d] of this.#byKey) if (d.state === "terminated") this.#byKey.delete(key);
  }
}
