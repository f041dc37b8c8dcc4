/**
 * The instant-message part of `deno task demo`: alice and bob, two user
 * agents on loopback, exchange a short conversation (plain text, a CPIM
 * message with a subject, and a body too large for UDP that goes over TCP).
 * CLI demo code (it prints and paces a scripted conversation), so it lives in
 * cli/ beside cli/demo.ts, not in the library.
 *
 * @module
 */

import { formatUri } from "../lib/sip/message.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { formatHostPort } from "../lib/sip/_net.ts";
import { MessageListener, MessageSender, type OutgoingMessage } from "../lib/im/message.ts";

/** One line of the demo conversation. */
export interface DemoLine {
  /** Who sends it. */
  from: "alice" | "bob";
  /** What is sent. */
  message: OutgoingMessage;
}

/** Options of {@linkcode messageDemo}. */
export interface MessageDemoOptions {
  /** Loopback address to bind. Default "127.0.0.1". */
  host?: string;
  /** Receives each event as the CLI would print it (`sent`, `message`). */
  onEvent?: (type: string, fields: Record<string, unknown>) => void | Promise<void>;
  /** The conversation. Default: {@linkcode DEFAULT_CONVERSATION}. */
  conversation?: DemoLine[];
}

/** What {@linkcode messageDemo} reports. */
export interface MessageDemoResult {
  /** Messages sent and answered 2xx. */
  sent: number;
  /** Messages the listeners took. */
  received: number;
  /** alice's and bob's addresses. */
  addresses: { alice: string; bob: string };
}

/** The default conversation. */
export const DEFAULT_CONVERSATION: DemoLine[] = [
  { from: "alice", message: { body: "Hi Bob, lunch at noon?" } },
  { from: "bob", message: { body: "Sure. The usual place?" } },
  { from: "alice", message: { body: "Yes, see you there.", cpim: true, subject: "lunch" } },
  {
    from: "bob",
    message: { body: `Menu attached: ${"soup, salad, pasta; ".repeat(100)}`.trim() },
  },
];

/**
 * Runs the demo: starts alice and bob on `host` (ephemeral UDP and TCP
 * ports), each listening for MESSAGE, plays the conversation, closes both.
 *
 * @example
 * ```ts ignore
 * const r = await messageDemo({ onEvent: (type, f) => console.log(type, f) });
 * r.received; // 4
 * ```
 */
export async function messageDemo(options: MessageDemoOptions = {}): Promise<MessageDemoResult> {
  const host = options.host ?? "127.0.0.1";
  const emit = options.onEvent ?? (() => {});
  const conversation = options.conversation ?? DEFAULT_CONVERSATION;
  const alice = await UserAgent.create({ aor: "alice@example.test", bind: `${host}:0` });
  let bob: UserAgent | undefined;
  try {
    bob = await UserAgent.create({ aor: "bob@example.test", bind: `${host}:0` });
    const agents = { alice, bob };
    const addr = (ua: UserAgent) => formatHostPort(ua.transports[0].local);
    const addresses = { alice: addr(alice), bob: addr(bob) };
    let received = 0;
    for (const [name, ua] of Object.entries(agents)) {
      new MessageListener(ua, {
        onMessage: async (m) => {
          received++;
          await emit("message", {
            at: name,
            from: m.from,
            to: m.to,
            content_type: m.contentType,
            body: m.text,
            subject: m.cpim?.subject[0]?.text ?? m.subject,
            transport: m.source.protocol,
            call_id: m.callId,
          });
        },
      });
    }
    let sent = 0;
    for (const line of conversation) {
      const from = agents[line.from];
      const to = line.from === "alice" ? "bob" : "alice";
      const target = formatUri({
        scheme: "sip",
        user: to,
        host: agents[to].transports[0].local.host,
        port: agents[to].transports[0].local.port,
        params: {},
        headers: {},
      });
      const result = await new MessageSender(from).send(target, line.message);
      sent++;
      await emit("sent", {
        from: line.from,
        to: result.to,
        status: result.status,
        reason: result.reason,
        delivered: result.delivered,
        call_id: result.callId,
      });
    }
    return { sent, received, addresses };
  } finally {
    await alice.close();
    await bob?.close();
  }
}
