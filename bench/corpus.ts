/**
 * A corpus of realistic SIP messages for the parse benchmarks: a presence
 * and IM session and a call through two proxies, as sipkit sees them on the
 * wire (REGISTER with digest credentials, 401, INVITE with SDP, 180/200 with
 * Record-Route and several Via, ACK, BYE, SUBSCRIBE, NOTIFY with PIDF,
 * PUBLISH, MESSAGE, compact forms, folded lines).
 *
 * @module
 */

const encoder = new TextEncoder();

/** One corpus entry. */
export interface CorpusMessage {
  /** Short label. */
  name: string;
  /** The message bytes, as a transport delivers them. */
  bytes: Uint8Array;
  /** What a stack must read from it (for checking every parser agrees). */
  expect: {
    method?: string;
    status?: number;
    callId: string;
    cseq: number;
    fromTag: string;
    toTag?: string;
    branch: string;
    bodyLength: number;
  };
}

function build(
  name: string,
  head: string[],
  body: string,
  expect: Omit<CorpusMessage["expect"], "bodyLength">,
  compactLength = false,
): CorpusMessage {
  const b = encoder.encode(body);
  const text = head.join("\r\n") + "\r\n" + (compactLength ? "l: " : "Content-Length: ") +
    b.length + "\r\n\r\n";
  const h = encoder.encode(text);
  const bytes = new Uint8Array(h.length + b.length);
  bytes.set(h);
  bytes.set(b, h.length);
  return { name, bytes, expect: { ...expect, bodyLength: b.length } };
}

const SDP_OFFER = [
  "v=0",
  "o=alice 2890844526 2890844526 IN IP4 192.0.2.101",
  "s=sipkit",
  "c=IN IP4 192.0.2.101",
  "t=0 0",
  "m=audio 49170 RTP/AVP 0 8 101",
  "a=rtpmap:0 PCMU/8000",
  "a=rtpmap:8 PCMA/8000",
  "a=rtpmap:101 telephone-event/8000",
  "a=fmtp:101 0-16",
  "a=ptime:20",
  "a=sendrecv",
  "",
].join("\r\n");

const SDP_ANSWER = SDP_OFFER.replace(/alice 2890844526 2890844526/, "bob 2808844564 2808844564")
  .replaceAll("192.0.2.101", "192.0.2.201").replace("49170", "3456");

const PIDF = [
  '<?xml version="1.0" encoding="UTF-8"?>',
  '<presence xmlns="urn:ietf:params:xml:ns:pidf"',
  '    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"',
  '    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"',
  '    entity="sip:alice@example.test">',
  '  <tuple id="t8a2b1">',
  "    <status><basic>open</basic></status>",
  '    <contact priority="0.8">sip:alice@192.0.2.101:5060</contact>',
  "    <note>Gone to lunch</note>",
  "  </tuple>",
  '  <dm:person id="p1">',
  "    <rpid:activities><rpid:lunch/></rpid:activities>",
  "  </dm:person>",
  "</presence>",
  "",
].join("\r\n");

/** The corpus, in the order a session produces it. */
export const CORPUS: CorpusMessage[] = [
  build(
    "REGISTER with credentials",
    [
      "REGISTER sip:example.test SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;rport;branch=z9hG4bK-524287-1---d8754z-",
      "Max-Forwards: 70",
      "Contact: <sip:alice@192.0.2.101:5060;rinstance=8f9b1c2e7a>;expires=3600",
      'To: "Alice" <sip:alice@example.test>',
      'From: "Alice" <sip:alice@example.test>;tag=a73kszlfl',
      "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.101",
      "CSeq: 2 REGISTER",
      "Expires: 3600",
      "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO",
      "User-Agent: sipkit/0.1.0",
      'Authorization: Digest username="alice",realm="example.test",nonce="ZxQ3mWVZ0a7f3b9c1d4e5f60718293a4b5c6d7e8f9",uri="sip:example.test",response="6629fae49393a05397450978507c4ef1",algorithm=MD5,cnonce="0a4f113b",qop=auth,nc=00000001',
    ],
    "",
    {
      method: "REGISTER",
      callId: "1j9FpLxk3uxtm8tn@192.0.2.101",
      cseq: 2,
      fromTag: "a73kszlfl",
      branch: "z9hG4bK-524287-1---d8754z-",
    },
  ),
  build(
    "401 Unauthorized",
    [
      "SIP/2.0 401 Unauthorized",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;rport=5060;branch=z9hG4bK-524287-1---d8754z-;received=198.51.100.7",
      'To: "Alice" <sip:alice@example.test>;tag=b27e1a1d33761e85846fc98f5f3a7e58.f1a2',
      'From: "Alice" <sip:alice@example.test>;tag=a73kszlfl',
      "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.101",
      "CSeq: 1 REGISTER",
      'WWW-Authenticate: Digest realm="example.test", nonce="ZxQ3mWVZ0a7f3b9c1d4e5f60718293a4b5c6d7e8f9", qop="auth", algorithm=MD5',
      'WWW-Authenticate: Digest realm="example.test", nonce="ZxQ3mWVZ0a7f3b9c1d4e5f60718293a4b5c6d7e8f9", qop="auth", algorithm=SHA-256',
      "Server: kamailio (5.7.4 (x86_64/linux))",
    ],
    "",
    {
      status: 401,
      callId: "1j9FpLxk3uxtm8tn@192.0.2.101",
      cseq: 1,
      fromTag: "a73kszlfl",
      toTag: "b27e1a1d33761e85846fc98f5f3a7e58.f1a2",
      branch: "z9hG4bK-524287-1---d8754z-",
    },
  ),
  build(
    "INVITE with SDP",
    [
      "INVITE sip:bob@example.test SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776asdhds;rport",
      "Max-Forwards: 70",
      'To: "Bob" <sip:bob@example.test>',
      'From: "Alice" <sip:alice@example.test>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.example.test",
      "CSeq: 314159 INVITE",
      "Contact: <sip:alice@192.0.2.101:5060;transport=udp>",
      "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, UPDATE, MESSAGE",
      "Supported: replaces, timer",
      "User-Agent: sipkit/0.1.0",
      "Content-Type: application/sdp",
    ],
    SDP_OFFER,
    {
      method: "INVITE",
      callId: "a84b4c76e66710@pc33.example.test",
      cseq: 314159,
      fromTag: "1928301774",
      branch: "z9hG4bK776asdhds",
    },
  ),
  build(
    "180 Ringing, 3 Via, Record-Route",
    [
      "SIP/2.0 180 Ringing",
      "Via: SIP/2.0/UDP proxy2.example.org:5060;branch=z9hG4bK4b43c2ff8.1;received=203.0.113.2",
      "Via: SIP/2.0/UDP proxy1.example.test:5060;branch=z9hG4bK77ef4c2312983.1;received=198.51.100.1",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776asdhds;rport=5060;received=198.51.100.7",
      "Record-Route: <sip:proxy2.example.org;lr>",
      "Record-Route: <sip:proxy1.example.test;lr;ftag=1928301774>",
      'To: "Bob" <sip:bob@example.test>;tag=a6c85cf',
      'From: "Alice" <sip:alice@example.test>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.example.test",
      "CSeq: 314159 INVITE",
      "Contact: <sip:bob@192.0.2.201:5060>",
    ],
    "",
    {
      status: 180,
      callId: "a84b4c76e66710@pc33.example.test",
      cseq: 314159,
      fromTag: "1928301774",
      toTag: "a6c85cf",
      branch: "z9hG4bK4b43c2ff8.1",
    },
  ),
  build(
    "200 OK with SDP, 3 Via, Record-Route",
    [
      "SIP/2.0 200 OK",
      "Via: SIP/2.0/UDP proxy2.example.org:5060;branch=z9hG4bK4b43c2ff8.1;received=203.0.113.2",
      "Via: SIP/2.0/UDP proxy1.example.test:5060;branch=z9hG4bK77ef4c2312983.1;received=198.51.100.1",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776asdhds;rport=5060;received=198.51.100.7",
      "Record-Route: <sip:proxy2.example.org;lr>, <sip:proxy1.example.test;lr;ftag=1928301774>",
      'To: "Bob" <sip:bob@example.test>;tag=a6c85cf',
      'From: "Alice" <sip:alice@example.test>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.example.test",
      "CSeq: 314159 INVITE",
      "Contact: <sip:bob@192.0.2.201:5060>",
      "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE",
      "Content-Type: application/sdp",
    ],
    SDP_ANSWER,
    {
      status: 200,
      callId: "a84b4c76e66710@pc33.example.test",
      cseq: 314159,
      fromTag: "1928301774",
      toTag: "a6c85cf",
      branch: "z9hG4bK4b43c2ff8.1",
    },
  ),
  build(
    "ACK with Route",
    [
      "ACK sip:bob@192.0.2.201:5060 SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds9;rport",
      "Route: <sip:proxy1.example.test;lr;ftag=1928301774>, <sip:proxy2.example.org;lr>",
      "Max-Forwards: 70",
      'To: "Bob" <sip:bob@example.test>;tag=a6c85cf',
      'From: "Alice" <sip:alice@example.test>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.example.test",
      "CSeq: 314159 ACK",
    ],
    "",
    {
      method: "ACK",
      callId: "a84b4c76e66710@pc33.example.test",
      cseq: 314159,
      fromTag: "1928301774",
      toTag: "a6c85cf",
      branch: "z9hG4bKnashds9",
    },
  ),
  build(
    "SUBSCRIBE presence",
    [
      "SUBSCRIBE sip:bob@example.test SIP/2.0",
      "Via: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bKnashds7;rport",
      "Max-Forwards: 70",
      "To: <sip:bob@example.test>",
      "From: <sip:alice@example.test>;tag=xfg9",
      "Call-ID: 2010b3cde-7734@192.0.2.101",
      "CSeq: 17766 SUBSCRIBE",
      "Contact: <sip:alice@192.0.2.101:5060;transport=tcp>",
      "Event: presence",
      "Accept: application/pidf+xml, application/rlmi+xml, multipart/related",
      "Supported: eventlist",
      "Expires: 600",
    ],
    "",
    {
      method: "SUBSCRIBE",
      callId: "2010b3cde-7734@192.0.2.101",
      cseq: 17766,
      fromTag: "xfg9",
      branch: "z9hG4bKnashds7",
    },
  ),
  build(
    "NOTIFY with PIDF",
    [
      "NOTIFY sip:alice@192.0.2.101:5060;transport=tcp SIP/2.0",
      "Via: SIP/2.0/TCP proxy1.example.test:5060;branch=z9hG4bK3f5d.a1b2c3d4.0",
      "Via: SIP/2.0/TCP 192.0.2.201:5060;branch=z9hG4bKnasaij22;received=203.0.113.9;rport=40221",
      "Max-Forwards: 69",
      "To: <sip:alice@example.test>;tag=xfg9",
      "From: <sip:bob@example.test>;tag=ffd2",
      "Call-ID: 2010b3cde-7734@192.0.2.101",
      "CSeq: 8775 NOTIFY",
      "Contact: <sip:bob@192.0.2.201:5060;transport=tcp>",
      "Event: presence",
      "Subscription-State: active;expires=599",
      "Content-Type: application/pidf+xml",
    ],
    PIDF,
    {
      method: "NOTIFY",
      callId: "2010b3cde-7734@192.0.2.101",
      cseq: 8775,
      fromTag: "ffd2",
      toTag: "xfg9",
      branch: "z9hG4bK3f5d.a1b2c3d4.0",
    },
  ),
  build(
    "PUBLISH with PIDF",
    [
      "PUBLISH sip:alice@example.test SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK652hsge;rport",
      "Max-Forwards: 70",
      "To: <sip:alice@example.test>",
      "From: <sip:alice@example.test>;tag=1234wxyz",
      "Call-ID: 81818181@192.0.2.101",
      "CSeq: 1 PUBLISH",
      "Expires: 3600",
      "Event: presence",
      "SIP-If-Match: dx200xyz",
      "Content-Type: application/pidf+xml",
    ],
    PIDF,
    {
      method: "PUBLISH",
      callId: "81818181@192.0.2.101",
      cseq: 1,
      fromTag: "1234wxyz",
      branch: "z9hG4bK652hsge",
    },
  ),
  build(
    "MESSAGE text/plain",
    [
      "MESSAGE sip:bob@example.test SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776sgdkse;rport",
      "Max-Forwards: 70",
      "From: <sip:alice@example.test>;tag=49583",
      "To: <sip:bob@example.test>",
      "Call-ID: asd88asd77a@192.0.2.101",
      "CSeq: 1 MESSAGE",
      "Content-Type: text/plain;charset=UTF-8",
    ],
    "Watson, come here. I want to see you. ☎",
    {
      method: "MESSAGE",
      callId: "asd88asd77a@192.0.2.101",
      cseq: 1,
      fromTag: "49583",
      branch: "z9hG4bK776sgdkse",
    },
  ),
  build(
    "200 OK for MESSAGE, 2 Via",
    [
      "SIP/2.0 200 OK",
      "Via: SIP/2.0/UDP proxy1.example.test;branch=z9hG4bK123dsghds.1",
      "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK776sgdkse;rport=5060;received=198.51.100.7",
      "From: <sip:alice@example.test>;tag=49583",
      "To: <sip:bob@example.test>;tag=ab8asdasd9",
      "Call-ID: asd88asd77a@192.0.2.101",
      "CSeq: 1 MESSAGE",
    ],
    "",
    {
      status: 200,
      callId: "asd88asd77a@192.0.2.101",
      cseq: 1,
      fromTag: "49583",
      toTag: "ab8asdasd9",
      branch: "z9hG4bK123dsghds.1",
    },
  ),
  build(
    "compact-form OPTIONS",
    [
      "OPTIONS sip:carol@example.test SIP/2.0",
      "v: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKhjhs8ass877;rport",
      "Max-Forwards: 70",
      "t: <sip:carol@example.test>",
      "f: <sip:alice@example.test>;tag=1928301774",
      "i: a84b4c76e66710",
      "CSeq: 63104 OPTIONS",
      "m: <sip:alice@192.0.2.101:5060>",
      "Accept: application/sdp",
    ],
    "",
    {
      method: "OPTIONS",
      callId: "a84b4c76e66710",
      cseq: 63104,
      fromTag: "1928301774",
      branch: "z9hG4bKhjhs8ass877",
    },
    true,
  ),
  build(
    "BYE with folded lines",
    [
      "BYE sip:alice@192.0.2.101:5060 SIP/2.0",
      "Via: SIP/2.0/UDP 192.0.2.201:5060",
      "  ;branch=z9hG4bKnashds10;rport",
      "Max-Forwards: 70",
      'From: "Bob" <sip:bob@example.test>',
      " ;tag=a6c85cf",
      'To: "Alice" <sip:alice@example.test>;tag=1928301774',
      "Call-ID: a84b4c76e66710@pc33.example.test",
      "CSeq: 231 BYE",
      "Reason: Q.850;cause=16;",
      ' text="Normal call clearing"',
    ],
    "",
    {
      method: "BYE",
      callId: "a84b4c76e66710@pc33.example.test",
      cseq: 231,
      fromTag: "a6c85cf",
      toTag: "1928301774",
      branch: "z9hG4bKnashds10",
    },
  ),
];
