import assert from "node:assert/strict";
import {
  formatPidf,
  parsePidf,
  parsePresence,
  PIDF_NS,
  type PresenceDocument,
  RPID_ACTIVITIES,
} from "../lib/presence/pidf.ts";
import {
  presenceToStatus,
  statusToPidf,
  statusToPresence,
  USER_STATUSES,
} from "../lib/presence/status.ts";

const FIXTURES = new URL("./fixtures/pidf/", import.meta.url);

/** What each implementation-style fixture must derive to. */
const EXPECTED: Record<
  string,
  { status: string; basic?: "open" | "closed"; note?: string; firstContact?: string }
> = {
  // Real NOTIFY bodies of Kamailio 5.6.3 (presence + presence_xml on db_text), captured
  // after sipkit PUBLISHed statusToPidf() documents: one publication, two aggregated
  // publications, and the body sent once the publication was removed.
  "kamailio_publish_away.xml": { status: "away", basic: "open", note: "gone for coffee" },
  "kamailio_aggregated_busy_offline.xml": { status: "busy", basic: "open", note: "probe busy" },
  "kamailio_aggregated_lunch_phone.xml": { status: "lunch", basic: "open", note: "probe lunch" },
  "kamailio_offline.xml": { status: "offline", basic: "closed" },
  // The others are written in the style of each implementation (from its source code).
  "multi_device_cipid_busy.xml": {
    status: "busy",
    basic: "open",
    note: "Writing the report",
    firstContact: "sip:bob@192.0.2.20:5062;transport=tcp",
  },
  // Byte for byte what baresip 1.0.0 (Debian) NOTIFYs: online, offline, and "?" before
  // any status is set (basic stays unknown).
  "baresip_online.xml": { status: "online", basic: "open" },
  "baresip_offline.xml": { status: "offline", basic: "closed" },
  "baresip_unknown.xml": { status: "offline", basic: undefined },
  "jitsi_away.xml": { status: "away", basic: "open", note: "Away" },
  "jitsi_on_the_phone.xml": { status: "on-the-phone", basic: "open", note: "On the phone" },
  "pjsip_busy.xml": { status: "busy", basic: "open", note: "Busy" },
  "oma_default_namespaces_lunch.xml": {
    status: "lunch",
    basic: "open",
    note: "Out for lunch, back at two",
    firstContact: "sip:frank@192.0.2.33;transport=tcp",
  },
  "rpid_under_tuple_on_the_phone.xml": {
    status: "on-the-phone",
    basic: "open",
    note: "Au téléphone",
  },
  "rpid_under_status_away.xml": { status: "away", basic: "open" },
  "prefixed_everything_meal.xml": { status: "lunch", basic: "open", note: "Team lunch" },
  "rfc3863_im_busy.xml": { status: "busy", basic: "open", note: "Don't Disturb Please!" },
  "linphone_meeting.xml": { status: "meeting", basic: "open", note: "Weekly sync" },
  // linphone's own lunch document: <rpid:meal/> and an <rpid:note> right under the person.
  "linphone_pidf_meal.xml": { status: "lunch", basic: "open", note: "Out to lunch" },
  // XPIDF (application/xpidf+xml): linphone's RFCxxxx style, Asterisk's (priority with a
  // comma), and the Microsoft style linphone copies for Windows Messenger.
  "linphone_xpidf_outtolunch.xml": { status: "lunch", basic: "open" },
  "asterisk_xpidf_onthephone.xml": {
    status: "on-the-phone",
    basic: "open",
    firstContact: "sip:6001@192.0.2.50;user=ip",
  },
  "windows_messenger_idle.xml": { status: "away", basic: "open" },
  "person_only_unknown_online.xml": { status: "online", basic: "open" },
};

Deno.test("presenceToStatus() derives the expected status from each implementation's style", async (t) => {
  const files: string[] = [];
  for await (const e of Deno.readDir(FIXTURES)) if (e.name.endsWith(".xml")) files.push(e.name);
  files.sort();
  assert.deepEqual(files, Object.keys(EXPECTED).sort(), "every fixture has an expectation");
  for (const file of files) {
    await t.step(file, async () => {
      const bytes = await Deno.readFile(new URL(file, FIXTURES));
      const summary = presenceToStatus(bytes);
      const want = EXPECTED[file];
      assert.equal(summary.status, want.status);
      assert.equal(summary.basic, want.basic);
      if (want.note !== undefined) assert.equal(summary.note, want.note);
      if (want.firstContact !== undefined) assert.equal(summary.contacts[0].uri, want.firstContact);
      // Rebuilding the parsed model and deriving again gives the same status.
      const again = presenceToStatus(formatPidf(parsePresence(bytes)));
      assert.equal(again.status, want.status);
      assert.equal(again.basic, want.basic);
    });
  }
});

Deno.test("parsePidf() reads tuples, contacts with priority, notes with language, timestamps", async () => {
  const doc = parsePidf(await Deno.readTextFile(new URL("rfc3863_im_busy.xml", FIXTURES)));
  assert.equal(doc.entity, "pres:judy@example.test");
  assert.equal(doc.tuples.length, 1);
  const t = doc.tuples[0];
  assert.equal(t.id, "bs35r9");
  assert.equal(t.basic, "open");
  assert.deepEqual(t.contact, { uri: "im:judy@example.test", priority: 0.8 });
  assert.deepEqual(t.notes, [
    { text: "Don't Disturb Please!", lang: "en" },
    { text: "Ne dérangez pas, s'il vous plait", lang: "fr" },
  ]);
  assert.equal(t.timestamp, "2026-11-27T16:49:29Z");
  assert.equal(t.imStatus, "busy");
  assert.deepEqual(doc.notes, [{ text: "I'll be in Tokyo next week", lang: "en" }]);
});

Deno.test("parsePidf() reads persons, activity notes, mood and devices in any prefix", async () => {
  const meal = parsePidf(
    await Deno.readTextFile(new URL("prefixed_everything_meal.xml", FIXTURES)),
  );
  assert.deepEqual(meal.persons[0].activities, [{ name: "meal" }]);
  assert.deepEqual(meal.persons[0].activityNotes, [{ text: "Team lunch", lang: "en" }]);
  assert.deepEqual(meal.persons[0].mood, ["hungry"]);
  const dev = parsePidf(
    await Deno.readTextFile(new URL("person_only_unknown_online.xml", FIXTURES)),
  );
  assert.deepEqual(dev.devices, [{
    id: "d1",
    deviceId: "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
    notes: [],
  }]);
  assert.deepEqual(dev.persons[0].activities, [{ name: "unknown" }]);
});

Deno.test("parsePidf() ignores the OMA <basic> that is not in the PIDF namespace", async () => {
  const doc = parsePidf(
    await Deno.readTextFile(new URL("oma_default_namespaces_lunch.xml", FIXTURES)),
  );
  assert.equal(doc.tuples[0].basic, "open");
  assert.equal(doc.persons[0].timestamp, "2026-11-27T12:30:00+01:00");
});

Deno.test("parsePidf() keeps <other> text and foreign activity namespaces", () => {
  const doc = parsePidf(`<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:v="urn:example:vendor" entity="sip:a@example.test">
    <tuple id="t"><status><basic>open</basic></status></tuple>
    <dm:person id="p"><r:activities><r:other>Gone fishing</r:other><v:coding/></r:activities></dm:person>
  </presence>`);
  assert.deepEqual(doc.persons[0].activities, [
    { name: "other", text: "Gone fishing" },
    { name: "coding", namespace: "urn:example:vendor" },
  ]);
  const s = presenceToStatus(doc);
  assert.equal(s.status, "other");
  assert.deepEqual(s.activities, ["other", "coding"]);
});

Deno.test("parsePidf() leaves basic unknown for values other than open and closed", () => {
  const doc = parsePidf(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
    <tuple id="t"><status><basic>?</basic></status><contact priority="7">sip:a@b</contact></tuple>
  </presence>`);
  assert.equal(doc.tuples[0].basic, undefined);
  assert.deepEqual(doc.tuples[0].contact, { uri: "sip:a@b" });
  assert.equal(presenceToStatus(doc).status, "offline");
  assert.equal(presenceToStatus(doc).basic, undefined);
});

Deno.test("parsePidf() rejects malformed input with a SyntaxError", async (t) => {
  const cases: Record<string, string | Uint8Array> = {
    "empty": "",
    "not xml": "hello world",
    "unclosed tag": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple>`,
    "wrong root": `<foo xmlns="urn:ietf:params:xml:ns:pidf"/>`,
    "presence without namespace": `<presence entity="sip:a@b"/>`,
    "missing entity": `<presence xmlns="urn:ietf:params:xml:ns:pidf"/>`,
    "unbound prefix": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"><x:y/></presence>`,
    "undefined entity":
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a">&nope;</presence>`,
    "two roots": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"/><presence/>`,
    "invalid utf-8": new Uint8Array([0x3c, 0xff, 0xfe, 0x3e]),
    "unquoted attribute": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity=sip:a@b/>`,
    "attributes without space": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"id="b"/>`,
    "control character":
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a">\u0007</presence>`,
    "duplicate attribute":
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a" entity="b"></presence>`,
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.throws(() => parsePidf(input), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, `got ${e}`);
        assert.match(e.message, /^Cannot parse PIDF document: /);
        return true;
      });
    });
  }
});

Deno.test("parsePidf() never throws anything but SyntaxError on mutated documents", async () => {
  const bases = [
    await Deno.readTextFile(new URL("multi_device_cipid_busy.xml", FIXTURES)),
    await Deno.readTextFile(new URL("asterisk_xpidf_onthephone.xml", FIXTURES)),
  ];
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = `<>/"'=&;:x \n`;
  for (let i = 0; i < 2000; i++) {
    const chars = [...bases[i % 2]];
    for (let k = 0; k < 1 + rand(4); k++) {
      const at = rand(chars.length);
      const op = rand(3);
      if (op === 0) chars.splice(at, 1);
      else if (op === 1) chars.splice(at, 0, alphabet[rand(alphabet.length)]);
      else chars[at] = alphabet[rand(alphabet.length)];
    }
    const input = chars.join("");
    try {
      presenceToStatus(input);
    } catch (e) {
      assert.ok(e instanceof SyntaxError, `mutation ${i} threw ${e}`);
    }
  }
});

Deno.test("statusToPresence() and presenceToStatus() round-trip the six statuses", async (t) => {
  for (const status of USER_STATUSES) {
    await t.step(status, () => {
      const xml = statusToPidf(status, {
        entity: "sip:alice@example.test",
        note: `note for ${status}`,
        contact: "sip:alice@192.0.2.1:5060",
        priority: 0.8,
      });
      const summary = presenceToStatus(xml);
      assert.equal(summary.status, status);
      assert.equal(summary.basic, status === "offline" ? "closed" : "open");
      assert.equal(summary.note, `note for ${status}`);
      assert.deepEqual(summary.contacts, [{ uri: "sip:alice@192.0.2.1:5060", priority: 0.8 }]);
      assert.equal(summary.entity, "sip:alice@example.test");
    });
  }
});

Deno.test("statusToPidf() writes RPID under dm:person with the data-model namespace", () => {
  const xml = statusToPidf("lunch", { entity: "sip:alice@example.test" });
  assert.match(xml, /^<\?xml version="1\.0" encoding="UTF-8"\?>/);
  assert.ok(xml.includes(`xmlns="${PIDF_NS}"`));
  assert.ok(xml.includes(`xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"`));
  assert.ok(xml.includes(`xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"`));
  assert.ok(xml.includes(`<dm:person id="p1"><rpid:activities><rpid:lunch/>`));
  // Simple peers (baresip) look for these exact strings.
  assert.ok(statusToPidf("away", { entity: "sip:a@b" }).includes("<rpid:away/>"));
  assert.ok(statusToPidf("online", { entity: "sip:a@b" }).includes("<basic>open</basic>"));
  const offline = statusToPidf("offline", { entity: "sip:a@b" });
  assert.ok(offline.includes("<basic>closed</basic>"));
  assert.ok(!offline.includes("rpid"), "no RPID namespace when there is no activity");
});

Deno.test("statusToPresence() puts no activity for online and closed basic for offline", () => {
  const online = statusToPresence("online", { entity: "sip:a@b", note: "hi" });
  assert.equal(online.tuples[0].basic, "open");
  assert.deepEqual(online.persons[0].activities, []);
  const offline = statusToPresence("offline", { entity: "sip:a@b" });
  assert.equal(offline.tuples[0].basic, "closed");
  assert.deepEqual(offline.persons, []);
  assert.throws(() => statusToPresence("sleepy" as "away", { entity: "sip:a@b" }), TypeError);
});

Deno.test("formatPidf() escapes text and attributes and stays well-formed", () => {
  const doc: PresenceDocument = {
    entity: `sip:"odd"<&>@example.test`,
    tuples: [{
      id: "t&1",
      basic: "open",
      notes: [{ text: `5 < 6 & "quotes" ]]> done`, lang: "en" }],
      contact: { uri: "sip:a@b;x=<y>", priority: 0.333 },
      activities: [],
      timestamp: "2026-11-27T21:00:00Z",
      deviceId: "urn:uuid:1",
    }],
    persons: [{
      id: "p",
      activities: [{ name: "other", text: "a & b" }, { name: "busy" }],
      activityNotes: [],
      mood: ["happy"],
      placeType: ["home"],
      notes: [{ text: "é ü 漢字 🙂" }],
      timestamp: "2026-11-27T21:00:00Z",
    }],
    devices: [{ id: "d", deviceId: "urn:uuid:1", notes: [{ text: "phone" }] }],
    notes: [{ text: "top <note>" }],
  };
  const xml = formatPidf(doc);
  assert.ok(!xml.includes("<note>>"));
  const back = parsePidf(xml);
  assert.deepEqual(back, doc);
});

Deno.test("formatPidf() refuses characters XML cannot carry", () => {
  const doc = statusToPresence("online", { entity: "sip:a@b", note: "bell \u0007" });
  assert.throws(() => formatPidf(doc), TypeError);
});

Deno.test("RPID_ACTIVITIES lists lunch and meal from RFC 4480 section 3.2", () => {
  assert.ok(RPID_ACTIVITIES.includes("lunch"));
  assert.ok(RPID_ACTIVITIES.includes("meal"));
  assert.ok(RPID_ACTIVITIES.includes("on-the-phone"));
});

Deno.test("parsePidf() rounds long priorities and ignores invalid ones", () => {
  const prio = (p: string) =>
    parsePidf(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
      <tuple id="t"><contact priority="${p}">sip:a@b</contact></tuple></presence>`).tuples[0]
      .contact!.priority;
  assert.equal(prio("0.800000"), 0.8);
  assert.equal(prio("1"), 1);
  assert.equal(prio(".5"), 0.5);
  assert.equal(prio("0.12345"), 0.123);
  assert.equal(prio("1.5"), undefined);
  assert.equal(prio("-0.1"), undefined);
  assert.equal(prio("high"), undefined);
});

Deno.test("presenceToStatus() prefers an open tuple's contact and the highest priority", () => {
  const s = presenceToStatus(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
    <tuple id="1"><status><basic>closed</basic></status><contact priority="1">sip:old@b</contact></tuple>
    <tuple id="2"><status><basic>open</basic></status><contact priority="0.2">sip:low@b</contact></tuple>
    <tuple id="3"><status><basic>open</basic></status><contact priority="0.7">sip:high@b</contact></tuple>
  </presence>`);
  assert.deepEqual(s.contacts.map((c) => c.uri), ["sip:high@b", "sip:low@b", "sip:old@b"]);
  assert.equal(s.status, "online");
});

Deno.test("formatPidf() can leave out the XML declaration to save bytes", () => {
  const withDecl = statusToPidf("busy", { entity: "sip:a@b" });
  const without = statusToPidf("busy", { entity: "sip:a@b", xmlDeclaration: false });
  assert.ok(without.startsWith("<presence "));
  assert.equal(withDecl.length - without.length, 39);
  assert.equal(presenceToStatus(without).status, "busy");
});

Deno.test("presenceToStatus() reads the newest person first when persons carry timestamps", () => {
  const doc = (t1: string, t2: string) =>
    `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
      xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b">
      <tuple id="t"><status><basic>open</basic></status></tuple>
      <dm:person id="p1"><r:activities><r:lunch/></r:activities><dm:timestamp>${t1}</dm:timestamp></dm:person>
      <dm:person id="p2"><r:activities><r:busy/></r:activities><dm:timestamp>${t2}</dm:timestamp></dm:person>
    </presence>`;
  assert.equal(
    presenceToStatus(doc("2026-11-27T12:00:00Z", "2026-11-27T13:00:00Z")).status,
    "busy",
  );
  assert.equal(
    presenceToStatus(doc("2026-11-27T14:00:00Z", "2026-11-27T13:00:00Z")).status,
    "lunch",
  );
  const stamped = statusToPresence("away", {
    entity: "sip:a@b",
    timestamp: new Date("2026-11-27T12:00:00Z"),
  });
  assert.equal(stamped.persons[0].timestamp, "2026-11-27T12:00:00.000Z");
  assert.equal(stamped.tuples[0].timestamp, "2026-11-27T12:00:00.000Z");
});

Deno.test("parsePresence() reads XPIDF atoms, addresses, priorities and substatus", async () => {
  const doc = parsePresence(
    await Deno.readFile(new URL("asterisk_xpidf_onthephone.xml", FIXTURES)),
  );
  assert.deepEqual(doc, {
    entity: "sip:6001@pbx.example.test",
    tuples: [{
      id: "6001",
      basic: "open",
      contact: { uri: "sip:6001@192.0.2.50;user=ip", priority: 0.8 },
      notes: [],
      activities: [{ name: "on-the-phone" }],
    }],
    persons: [],
    devices: [],
    notes: [],
  });
  const closed = parsePresence(`<presence><presentity uri="sip:a@b;method=SUBSCRIBE"/>
    <atom id="1"><address uri="sip:a@h"><status status="closed"/>
    <msnsubstatus substatus="offline"/></address></atom></presence>`);
  assert.equal(presenceToStatus(closed).status, "offline");
  assert.throws(
    () => parsePresence("<presence><atom/></presence>"),
    /XPIDF <presentity> has no uri/,
  );
  // parsePidf() itself stays strict about the namespace.
  assert.throws(
    () => parsePidf(`<presence><presentity uri="sip:a@b"/></presence>`),
    /root element is presence, expected <presence> in urn:ietf:params:xml:ns:pidf/,
  );
});
