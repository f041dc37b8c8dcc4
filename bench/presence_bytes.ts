/**
 * Presence traffic benchmark (issue 3): bytes on the wire per hour for one
 * user with 10 buddies.
 *
 * The user agents, their presence agents, watchers and publications are the
 * real library objects; they run over the in-memory loop network on a
 * simulated clock (two hours pass in well under a minute), and every byte
 * counted is a serialized SIP message that went to or came from the user's
 * address (`LoopNetwork.packets`, the datagrams as sent).
 *
 * - Edge mode (the thesis set-up, no server): the user and each buddy run a
 *   presence agent (`sipkit notify`) and watch each other (`sipkit watch`,
 *   mutual subscription), so the user holds 10 outgoing and 10 incoming
 *   subscriptions; the user changes status every 10 minutes.
 *   The thesis measured 745,770 bytes per hour; issue 8's targets are
 *   50,000 per steady hour and 75,000 in hour 1.
 * - Server mode: the user PUBLISHes each change to a presence server and
 *   holds one RFC 4662 subscription to a list of the 10 buddies at that
 *   server (`sipkit notify --publish`, `sipkit watch --list`). The server
 *   is simulated in-process with the library (a Notifier that answers the
 *   list SUBSCRIBE with multipart/related RLMI NOTIFYs and a PUBLISH handler
 *   that keeps the entity-tag); only the user's link is counted.
 *   MSN needed 30,950 bytes per hour.
 *
 * Hour 1 includes start-up (all subscriptions made); hour 2 is the steady
 * state (refreshes, status changes only).
 *
 * Run: `deno run -A --config bench/deno.json bench/presence_bytes.ts` (part
 * of `deno task bench`). `PRESENCE_BYTES_DUMP=<hour>` prints that hour's
 * bytes per message kind (with a sample) and per header on stderr;
 * `PRESENCE_BYTES_TRACE=1` prints every message of the user's link.
 *
 * @module
 */

import { ManualClock } from "../lib/sip/clock.ts";
import { LoopNetwork } from "../lib/sip/transport_loop.ts";
import type { Target } from "../lib/sip/transport_layer.ts";
import type { Uri } from "../lib/sip/message.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { Notifier, type ServerSubscription } from "../lib/sip/events/notifier.ts";
import { PresenceAgent } from "../lib/presence/agent.ts";
import { PresenceWatcher } from "../lib/presence/watcher.ts";
import { Publication } from "../lib/presence/publish.ts";
import { buildListNotify, type ListPartInit } from "../lib/presence/rlmi.ts";
import { statusToPidf, type UserStatus } from "../lib/presence/status.ts";

/** The thesis's edge-mode figure (bytes per hour, 10 buddies). */
export const THESIS_EDGE_BYTES = 745_770;
/** MSN's figure quoted by the thesis (bytes per hour). */
export const MSN_BYTES = 30_950;
/** Issue 8's target for an edge-mode steady hour (issue 3's was 75,000). */
export const EDGE_TARGET = 50_000;
/** Issue 8's target for edge-mode hour 1 (start-up included). */
export const EDGE_HOUR1_TARGET = 75_000;

const BUDDIES = 10;
const HOUR = 3600_000;
const CHANGE_EVERY = 600_000;
const STATUSES: UserStatus[] = ["busy", "away", "online", "lunch", "on-the-phone", "online"];

function loopResolve(uri: Uri): Promise<Target[]> {
  return Promise.resolve([{ protocol: "udp", host: uri.host, port: uri.port ?? 5060 }]);
}

/** Hours simulated: the first includes start-up, the others are the steady state. */
const HOURS = 5;

/** Bytes and messages to and from one host: hour 1, and the average of hours 2 to HOURS. */
export interface HourCounts {
  /** Bytes in hour 1 (start-up included). */
  hour1: number;
  /** Average bytes per hour over hours 2 to 5 (steady state). */
  steady: number;
  /** Messages in hour 1. */
  messages1: number;
  /** Average messages per hour over hours 2 to 5. */
  steadyMessages: number;
}

/** Drives the simulated clock in steps, letting the network settle after each. */
async function run(
  net: LoopNetwork,
  clock: ManualClock,
  until: number,
  onTick: (now: number) => void,
): Promise<void> {
  const step = 250;
  await net.settled();
  while (clock.now() < until) {
    clock.advance(step);
    onTick(clock.now());
    await net.settled();
  }
}

function count(net: LoopNetwork, host: string, start: number, times: number[]): HourCounts {
  const out = { hour1: 0, steady: 0, messages1: 0, steadyMessages: 0 };
  if (Deno.env.get("PRESENCE_BYTES_TRACE")) {
    const dec = new TextDecoder();
    net.packets.forEach((p, i) => {
      if (p.from.host !== host && p.to.host !== host) return;
      const text = dec.decode(p.data);
      const first = text.slice(0, text.indexOf("\r\n"));
      const cseq = /\r\nCSeq: *(\d+ \w+)/i.exec(text)?.[1] ?? "?";
      const s = Math.round((times[i] - start) / 1000);
      console.error(`${s}\t${p.from.host} -> ${p.to.host}\t${first.slice(0, 40)}\t${cseq}`);
    });
  }
  const dump = Deno.env.get("PRESENCE_BYTES_DUMP");
  if (dump) dumpHour(net, host, start + (Number(dump) - 1) * HOUR, times);
  net.packets.forEach((p, i) => {
    if (p.from.host !== host && p.to.host !== host) return;
    const t = times[i] - start;
    if (t < HOUR) {
      out.hour1 += p.data.length;
      out.messages1++;
    } else if (t < HOURS * HOUR) {
      out.steady += p.data.length;
      out.steadyMessages++;
    }
  });
  out.steady = Math.round(out.steady / (HOURS - 1));
  out.steadyMessages = Math.round(out.steadyMessages / (HOURS - 1));
  return out;
}

/**
 * Prints (stderr) one hour's bytes per message kind with a sample of each,
 * and per header name (start line, each header line with its CRLF, the
 * empty line, the body): `PRESENCE_BYTES_DUMP=<hour>` (1 is start-up).
 */
function dumpHour(net: LoopNetwork, host: string, from: number, times: number[]): void {
  const dec = new TextDecoder();
  const byKind = new Map<string, { n: number; bytes: number; sample: string }>();
  const byHeader = new Map<string, number>();
  const add = (k: string, n: number) => byHeader.set(k, (byHeader.get(k) ?? 0) + n);
  net.packets.forEach((p, i) => {
    if (p.from.host !== host && p.to.host !== host) return;
    if (times[i] < from || times[i] >= from + HOUR) return;
    const text = dec.decode(p.data);
    const headEnd = text.indexOf("\r\n\r\n");
    const lines = text.slice(0, headEnd).split("\r\n");
    const first = lines[0];
    const cseq = /\r\nCSeq: *\d+ (\w+)/i.exec(text)?.[1] ?? "?";
    const kind = first.startsWith("SIP/2.0") ? `${first.split(" ")[1]} ${cseq}` : cseq;
    const k = byKind.get(kind) ?? { n: 0, bytes: 0, sample: text.slice(0, headEnd + 4) };
    k.n++;
    k.bytes += p.data.length;
    byKind.set(kind, k);
    add(`${kind.includes(" ") ? "status" : "request"} line`, first.length + 2);
    for (const line of lines.slice(1)) add(line.slice(0, line.indexOf(":")), line.length + 2);
    add("(empty line)", 2);
    add("(body)", p.data.length - new TextEncoder().encode(text.slice(0, headEnd + 4)).length);
  });
  for (const [k, v] of byKind) {
    console.error(`== ${k}: ${v.n} messages, ${v.bytes} bytes (${Math.round(v.bytes / v.n)} each)`);
    console.error(v.sample);
  }
  console.error("== per header (all messages of the hour):");
  for (const [k, v] of [...byHeader].sort((a, b) => b[1] - a[1])) console.error(`${k}\t${v}`);
}

/** Records the clock time of each packet as it is sent. */
function stampPackets(net: LoopNetwork, clock: ManualClock): number[] {
  const times: number[] = [];
  const packets = net.packets;
  const push = packets.push.bind(packets);
  packets.push = (...items) => {
    for (let i = 0; i < items.length; i++) times.push(clock.now());
    return push(...items);
  };
  return times;
}

/** Edge mode: the user and 10 buddies watch each other; the user changes status every 10 min. */
export async function edgeMode(
  options: { expires?: number; compact?: boolean } = {},
): Promise<HourCounts> {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const net = new LoopNetwork();
  const times = stampPackets(net, clock);
  const start = clock.now();
  const host = (i: number) => i < 0 ? "192.0.2.1" : `192.0.2.${10 + i}`;
  const uri = (i: number) => `sip:${i < 0 ? "user" : `buddy${i}`}@${host(i)}`;
  const uas: UserAgent[] = [];
  const closers: Array<() => Promise<void>> = [];
  const mk = async (i: number) => {
    const ua = await UserAgent.create({
      aor: uri(i),
      transports: [net.transport({ host: host(i) })],
      clock,
      resolve: loopResolve,
      compactHeaders: options.compact,
    });
    uas.push(ua);
    return ua;
  };
  const user = await mk(-1);
  const userAgent = new PresenceAgent(user, { status: "online", unknown: "accept" });
  const buddyIdx = [...Array(BUDDIES).keys()];
  const buddies = await Promise.all(buddyIdx.map(mk));
  const buddyAgents = buddies.map((ua) => new PresenceAgent(ua, { unknown: "accept" }));
  const expires = options.expires;
  const userWatch = new PresenceWatcher(user, { buddies: buddyIdx.map(uri), expires });
  const buddyWatches = buddies.map((ua) =>
    new PresenceWatcher(ua, { buddies: [uri(-1)], expires })
  );
  closers.push(() => userWatch.close({ unsubscribe: false }));
  for (const w of buddyWatches) closers.push(() => w.close({ unsubscribe: false }));
  void userWatch.start();
  for (const w of buddyWatches) void w.start();
  let next = start + CHANGE_EVERY / 2;
  let n = 0;
  await run(net, clock, start + HOURS * HOUR, (now) => {
    if (now >= next) {
      userAgent.setStatus(STATUSES[n++ % STATUSES.length]);
      next += CHANGE_EVERY;
    }
  });
  for (const c of closers) await c();
  void buddyAgents;
  for (const ua of uas) await ua.close();
  return count(net, host(-1), start, times);
}

/**
 * Server mode: the user PUBLISHes each change and holds one list
 * subscription; the server (simulated with the library) sends one list
 * NOTIFY per buddy change. Buddies change status every 10 minutes too,
 * spread over the period (one NOTIFY to the user each).
 */
export async function serverMode(
  options: { buddyChanges?: boolean } = {},
): Promise<HourCounts> {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const net = new LoopNetwork();
  const times = stampPackets(net, clock);
  const start = clock.now();
  const userHost = "192.0.2.1";
  const serverHost = "192.0.2.100";
  const server = await UserAgent.create({
    aor: `sip:pres@${serverHost}`,
    // A full-state list NOTIFY is larger than UDP allows (RFC 3261 18.1.1): TCP too.
    transports: [
      net.transport({ host: serverHost }),
      net.transport({ host: serverHost, protocol: "tcp" }),
    ],
    clock,
    resolve: loopResolve,
  });
  const user = await UserAgent.create({
    aor: `sip:user@${serverHost}`,
    compactHeaders: true,
    transports: [
      net.transport({ host: userHost }),
      net.transport({ host: userHost, protocol: "tcp" }),
    ],
    clock,
    resolve: loopResolve,
  });
  // The presence server: keeps the publication's entity-tag, serves one list.
  let etagSeq = 0;
  server.handle("PUBLISH", async (inc) => {
    const expires = Number(inc.request.headers.get("Expires") ?? "3600");
    await inc.respond(200, {
      headers: [["SIP-ETag", `e${++etagSeq}`], ["Expires", String(expires)]],
    } as never);
  });
  const listUri = `sip:buddies@${serverHost}`;
  const buddyUris = [...Array(BUDDIES).keys()].map((i) => `sip:buddy${i}@${serverHost}`);
  const state = new Map<string, UserStatus>(buddyUris.map((u) => [u, "online"]));
  let changed: string[] | undefined;
  let version = 0;
  const notifier = new Notifier(server);
  notifier.addPackage({
    event: "presence",
    contentTypes: ["multipart/related", "application/rlmi+xml", "application/pidf+xml"],
    authorize: () => "active",
    content: (_sub: ServerSubscription) => {
      const full = changed === undefined;
      const uris = changed ?? buddyUris;
      const parts: Record<string, ListPartInit> = {};
      const resources = uris.map((u, i) => {
        const cid = `r${version}.${i}@server`;
        parts[cid] = {
          contentType: "application/pidf+xml",
          body: statusToPidf(state.get(u)!, { entity: u }),
        };
        return { uri: u, names: [], instances: [{ id: `i${i}`, state: "active" as const, cid }] };
      });
      const built = buildListNotify(
        { uri: listUri, version: version++, fullState: full, names: [], resources },
        parts,
      );
      return { body: built.body, contentType: built.contentType };
    },
  });
  const pub = new Publication(user, { target: `sip:user@${serverHost}` });
  const watch = new PresenceWatcher(user, { list: listUri });
  void watch.start();
  void pub.publish(statusToPidf("online", { entity: `sip:user@${serverHost}` }));
  let nextUser = start + CHANGE_EVERY / 2;
  let nextBuddy = start + CHANGE_EVERY / BUDDIES / 2;
  let n = 0;
  let b = 0;
  await run(net, clock, start + HOURS * HOUR, (now) => {
    if (now >= nextUser) {
      void pub.publish(
        statusToPidf(STATUSES[n++ % STATUSES.length], { entity: `sip:user@${serverHost}` }),
      );
      nextUser += CHANGE_EVERY;
    }
    if (options.buddyChanges !== false && now >= nextBuddy) {
      const u = buddyUris[b % BUDDIES];
      state.set(u, STATUSES[b % STATUSES.length]);
      b++;
      changed = [u];
      notifier.notifyAll("presence");
      changed = undefined;
      nextBuddy += CHANGE_EVERY / BUDDIES;
    }
  });
  pub.close();
  await watch.close({ unsubscribe: false });
  await user.close();
  await server.close();
  if (Deno.env.get("PRESENCE_BYTES_ALL")) {
    for (const p of net.packets) {
      const t = new TextDecoder().decode(p.data);
      console.error(p.fate, p.from.host, "->", p.to.host, t.slice(0, t.indexOf("\r\n")));
    }
  }
  return count(net, userHost, start, times);
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

if (import.meta.main) {
  // sipkit's defaults: compact header names, 3600 s subscriptions.
  const edge = await edgeMode({ compact: true });
  const edgeFull = await edgeMode({ compact: false });
  const edgeLong = await edgeMode({ compact: true, expires: 14400 });
  const server = await serverMode({ buddyChanges: false });
  const serverBuddies = await serverMode();
  const rows: [string, number, number, "thesis" | "msn"][] = [
    ["edge, hour 1 (start-up: 20 subscriptions)", edge.hour1, edge.messages1, "thesis"],
    ["edge, steady hour", edge.steady, edge.steadyMessages, "thesis"],
    ["edge, steady hour, --no-compact", edgeFull.steady, edgeFull.steadyMessages, "thesis"],
    ["edge, steady hour, --expires 14400", edgeLong.steady, edgeLong.steadyMessages, "thesis"],
    ["edge, hour 1, --expires 14400", edgeLong.hour1, edgeLong.messages1, "thesis"],
    ["server, hour 1 (PUBLISH + list SUBSCRIBE)", server.hour1, server.messages1, "msn"],
    ["server, steady hour", server.steady, server.steadyMessages, "msn"],
    [
      "server, steady hour, each buddy also changes /10 min",
      serverBuddies.steady,
      serverBuddies.steadyMessages,
      "msn",
    ],
  ];
  console.log(
    `Presence traffic of one user with ${BUDDIES} buddies, own status change every 10 min ` +
      `(bytes per hour at the user's link, both directions; steady = mean of hours 2-${HOURS};\n` +
      `sipkit's defaults: compact header names, 3600 s subscriptions)\n`,
  );
  console.log(
    "| scenario | bytes/hour | messages | reference | ratio | target |\n" +
      "| --- | ---: | ---: | --- | ---: | --- |",
  );
  for (const [name, bytes, messages, ref] of rows) {
    const refValue = ref === "thesis" ? THESIS_EDGE_BYTES : MSN_BYTES;
    const refText = ref === "thesis" ? `thesis ${fmt(THESIS_EDGE_BYTES)}` : `MSN ${fmt(MSN_BYTES)}`;
    const limit = name.includes("hour 1") ? EDGE_HOUR1_TARGET : EDGE_TARGET;
    const target = ref === "thesis"
      ? `${bytes <= limit ? "meets" : "MISSES"} <= ${fmt(limit)}`
      : "";
    console.log(
      `| ${name} | ${fmt(bytes)} | ${messages} | ${refText} | ${
        (bytes / refValue).toFixed(3)
      } | ${target} |`,
    );
  }
}
