// The parsers compared by the benchmarks, behind one shape: `parse` is
// workload 1 (parse only), `read` is workload 2 (parse, then read what a stack
// needs: method or status, Call-ID, CSeq, From/To tags, top Via branch, body).
// Every parser starts from the bytes a transport delivers (a Node Buffer for
// the npm parsers, which is a Uint8Array); decoding is part of its cost.

import { Buffer } from "node:buffer";
import sip from "sip";
import drachtio from "drachtio-sip";
import jssipParser from "jssip/lib/Parser.js";
import { parseMessage } from "../lib/sip/message.ts";

/** What workload 2 extracts, to check that every parser reads the same values. */
export interface Extract {
  method?: string;
  status?: number;
  callId: string;
  cseq: number;
  cseqMethod: string;
  fromTag: string;
  toTag?: string;
  branch: string;
  bodyLength: number;
}

/** One parser under test. */
export interface Contender {
  name: string;
  /** Workload 1: parse only. Returns the parsed object. */
  parse(input: Buffer): unknown;
  /** Workload 2: parse and read the fields a stack needs. */
  read(input: Buffer): Extract;
}

const utf8 = new TextDecoder();

/** sipkit's parser (lib/sip/message.ts). */
export const sipkit: Contender = {
  name: "sipkit",
  parse: (input) => parseMessage(input),
  read(input) {
    const m = parseMessage(input);
    const cseq = m.cseq;
    return {
      method: m.kind === "request" ? m.method : undefined,
      status: m.kind === "response" ? m.status : undefined,
      callId: m.callId,
      cseq: cseq.seq,
      cseqMethod: cseq.method,
      fromTag: m.from.params.tag ?? "",
      toTag: m.to.params.tag ?? undefined,
      branch: m.topVia.params.branch ?? "",
      bodyLength: m.body.length,
    };
  },
};

// deno-lint-ignore no-explicit-any
type Any = any;

/** npm:sip (kirm/sip.js): eager regex parser, `sip.parse(buffer)`. */
export const sipJs: Contender = {
  name: "sip",
  parse: (input) => (sip as Any).parse(input),
  read(input) {
    const m = (sip as Any).parse(input);
    const h = m.headers;
    return {
      method: m.method,
      status: m.status,
      callId: h["call-id"],
      cseq: h.cseq.seq,
      cseqMethod: h.cseq.method,
      fromTag: h.from.params.tag,
      toTag: h.to.params.tag,
      branch: h.via[0].params.branch,
      bodyLength: Buffer.byteLength(m.content, "binary"),
    };
  },
};

const DrachtioMessage = (drachtio as Any).SipMessage;

/** npm:drachtio-sip: lazy parser, `new SipMessage(string)` then `getParsedHeader()`. */
export const drachtioSip: Contender = {
  name: "drachtio-sip",
  parse: (input) => new DrachtioMessage(input.toString("utf8")),
  read(input) {
    const m = new DrachtioMessage(input.toString("utf8"));
    const cseq = m.getParsedHeader("cseq");
    return {
      method: m.method,
      status: m.status,
      callId: m.get("call-id"),
      cseq: cseq.seq,
      cseqMethod: cseq.method,
      fromTag: m.getParsedHeader("from").params.tag,
      toTag: m.getParsedHeader("to").params.tag,
      branch: m.getParsedHeader("via")[0].params.branch,
      bodyLength: Buffer.byteLength(m.body, "utf8"),
    };
  },
};

/** npm:jssip: PEG grammar parser, `Parser.parseMessage(string)`. */
export const jssip: Contender = {
  name: "jssip",
  parse: (input) => (jssipParser as Any).parseMessage(input.toString("utf8"), undefined),
  read(input) {
    const m = (jssipParser as Any).parseMessage(input.toString("utf8"), undefined);
    const isResponse = m.status_code !== undefined;
    return {
      method: isResponse ? undefined : m.method,
      status: isResponse ? m.status_code : undefined,
      callId: m.call_id,
      cseq: m.cseq,
      cseqMethod: m.method,
      fromTag: m.from_tag,
      toTag: m.to_tag ?? undefined,
      branch: m.via_branch,
      bodyLength: Buffer.byteLength(m.body, "utf8"),
    };
  },
};

/**
 * The floor: decode the bytes, split them into lines and header name/value
 * pairs, nothing else (no folding, no validation, no typed values).
 */
export const bareSplit: Contender = {
  name: "bare split",
  parse(input) {
    const s = utf8.decode(input);
    const end = s.indexOf("\r\n\r\n");
    const lines = s.slice(0, end).split("\r\n");
    const pairs: [string, string][] = [];
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i];
      const c = l.indexOf(":");
      pairs.push([l.slice(0, c), l.slice(c + 1)]);
    }
    return pairs;
  },
  read() {
    throw new Error("bare split does not read values");
  },
};

/** The npm parsers, in the order they are listed. */
export const PEERS: Contender[] = [sipJs, drachtioSip, jssip];
