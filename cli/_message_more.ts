/**
 * `sipkit message` batches (NDJSON `send` lines on stdin), listening and
 * chat: loaded by `_message.ts` only when one of them runs, so that a
 * one-shot send starts without this code, the listener or the batches.
 *
 * @module
 */

import {
  type BatchResult,
  MessageBatch,
  MessageListener,
  type ReceivedMessage,
} from "../lib/im/message.ts";
import { type MessageSender, MessageSendError, type OutgoingMessage } from "../lib/im/sender.ts";
import { toSipUri } from "../lib/sip/input.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import type { TimerId } from "../lib/sip/clock.ts";
import { type CommandContext, emitListening } from "./_common.ts";
import { formatHostPort } from "../lib/sip/_net.ts";
import { EXIT, usageError } from "./_exit.ts";
import { type InputEvent, readLines } from "./_io.ts";
import type { Follower } from "./_roam.ts";
import { checkedMessage, emitResult, exitFor, type LineRef, type Opts } from "./_message.ts";

/** Maps one `send` input line to a batch item, or explains what is wrong. */
function itemFromLine(
  event: InputEvent,
  defaults: { to?: string; type: string; cpim?: boolean },
): { to: string; message: OutgoingMessage } | string {
  const to = event.to ?? defaults.to;
  if (typeof to !== "string" || to.trim() === "") return 'missing string field "to"';
  try {
    toSipUri(to);
  } catch (e) {
    return `bad "to": ${(e as Error).message}`;
  }
  let body: string | Uint8Array;
  if (typeof event.body === "string") body = event.body;
  else if (typeof event.body_base64 === "string") {
    try {
      body = Uint8Array.from(atob(event.body_base64), (c) => c.charCodeAt(0));
    } catch {
      return '"body_base64" is not base64';
    }
  } else return 'missing string field "body" (or "body_base64")';
  const contentType = event.content_type ?? defaults.type;
  if (typeof contentType !== "string") return '"content_type" must be a string';
  if (event.subject !== undefined && typeof event.subject !== "string") {
    return '"subject" must be a string';
  }
  try {
    return {
      to,
      message: checkedMessage({
        body,
        contentType,
        cpim: event.cpim === undefined ? defaults.cpim : event.cpim === true,
        subject: event.subject as string | undefined,
      }),
    };
  } catch (e) {
    return (e as Error).message;
  }
}

/** Runs a batch over stdin NDJSON; `defaultTo` fills lines without `to` (chat). */
function startBatch(
  ctx: CommandContext,
  sender: MessageSender,
  opts: Opts,
  defaultTo?: string,
  onResult?: (r: BatchResult) => Promise<void>,
  follower?: Follower,
): { done: Promise<void>; worst: () => number } {
  let worst: number = EXIT.OK;
  const note = (code: number) => {
    // Severity: network (3) over rejection (1) over bad input (2).
    const rank = (c: number) => c === EXIT.NETWORK ? 3 : c === EXIT.PEER_REJECTED ? 2 : c ? 1 : 0;
    if (rank(code) > rank(worst)) worst = code;
  };
  const batch = new MessageBatch(sender, {
    concurrency: opts.concurrency,
    onResult: async (r) => {
      note(r.ok ? EXIT.OK : exitFor(r));
      await (onResult ?? ((x) => emitResult(ctx, x)))(r);
    },
  });
  const done = ctx.readInput(async (event, line) => {
    // address_changed lines (from `sipkit roam`) move the process (and the binding).
    if (follower && await follower.handleInput(event, line)) return;
    if (event.type !== "send") return;
    const ref: LineRef = { line, id: event.id };
    const item = itemFromLine(event, { to: defaultTo, type: opts.type, cpim: opts.cpim });
    if (typeof item === "string") {
      note(EXIT.USAGE);
      ctx.log.log("warn", `<stdin>:${line}: ${item}; line skipped`);
      await ctx.out.emit("send_failed", {
        to: typeof event.to === "string" ? event.to : undefined,
        error: "invalid",
        reason: "Invalid input line",
        message: item,
        line,
        id: event.id,
      });
      return;
    }
    await batch.add({ ...item, ref });
  }).then(() => batch.drain());
  return { done, worst: () => worst };
}

/** Batch mode: NDJSON `send` lines on stdin; returns the worst exit code. */
export async function sendBatch(
  ctx: CommandContext,
  sender: MessageSender,
  opts: Opts,
): Promise<number> {
  if (Deno.stdin.isTerminal()) {
    throw usageError("missing recipient (or pipe NDJSON send lines to stdin)");
  }
  const { done, worst } = startBatch(ctx, sender, opts);
  await done;
  return worst();
}

/** The fields of a `message` event. */
export function messageEventFields(m: ReceivedMessage): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    from: m.from,
    from_name: m.fromName,
    to: m.to,
    content_type: m.contentType,
  };
  if (m.text !== undefined) fields.body = m.text;
  else fields.body_base64 = toBase64(m.body);
  if (m.subject !== undefined) fields.subject = m.subject;
  if (m.cpim) {
    fields.cpim = {
      from: m.cpim.from?.uri,
      from_name: m.cpim.from?.name,
      to: m.cpim.to.map((a) => a.uri),
      cc: m.cpim.cc.length ? m.cpim.cc.map((a) => a.uri) : undefined,
      datetime: m.cpim.dateTime,
      subject: m.cpim.subject[0]?.text,
      ns: Object.keys(m.cpim.ns).length ? m.cpim.ns : undefined,
      headers: m.cpim.headers.map((h) => ({ name: h.name, value: h.value })),
    };
  }
  fields.call_id = m.callId;
  fields.transport = m.source.protocol;
  fields.source = formatHostPort(m.source.remote);
  return fields;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Listen mode, and chat mode (a listener plus a sender to one buddy). */
export async function listenAndChat(
  ctx: CommandContext,
  ua: UserAgent,
  sender: MessageSender,
  opts: Opts,
): Promise<number> {
  const chatUri = opts.chat ? formatTarget(opts.chat) : undefined;
  const screen = opts.chat && Deno.stdout.isTerminal() && !opts.pretty
    ? new ChatScreen()
    : undefined;
  let listener: MessageListener;
  try {
    listener = new MessageListener(ua, {
      accept: opts.accept?.split(","),
      onMessage: async (m) => {
        if (screen) {
          screen.incoming(m, chatUri);
          return;
        }
        await ctx.out.emit("message", messageEventFields(m));
        // stdout gone: the message was not written, so it is not acknowledged.
        if (ctx.out.closed) throw new Error("stdout is closed");
      },
      onAnswer: opts.verbose
        ? (req, status, duplicate) =>
          ctx.log.log(
            "debug",
            `MESSAGE ${req.callId} answered ${status}${duplicate ? " (duplicate)" : ""}`,
          )
        : undefined,
    });
  } catch (e) {
    throw usageError(`--accept: ${(e as Error).message}`);
  }
  const local = ua.transports[0].local;
  const address = formatHostPort(local);
  const aor = ua.aor.user ? `sip:${ua.aor.user}@${ua.aor.host}` : undefined;
  if (screen) {
    screen.info(`chatting with ${chatUri} as ${aor} on ${address} (Ctrl-D ends)`);
  } else {
    await emitListening(ua, ctx);
  }
  // Loaded only with --register: a one-shot send starts without the registration code.
  const kept = opts.register
    ? (await import("./_register.ts")).keepRegistered(ua, ctx, {
      registrar: opts.registrar,
      expires: opts.expires,
    })
    : undefined;
  // Mobility: --roam, or address_changed lines on stdin, move the process (and the binding).
  // Loaded here only: a one-shot send starts without it.
  const roaming = await import("./_roam.ts");
  const follower = kept?.follower ?? new roaming.Follower(ua, ctx, () => []);
  if (opts.roam) await follower.roam(opts, roaming.defaultToward(ua, opts.registrar));
  let input: Promise<void>;
  let worst = () => EXIT.OK as number;
  if (chatUri && Deno.stdin.isTerminal()) {
    let failed: number = EXIT.OK;
    input = chatFromTerminal(ctx, sender, chatUri, async (r) => {
      // A network failure outranks a rejection.
      if (!r.ok && failed !== EXIT.NETWORK) failed = exitFor(r);
      if (screen) screen.result(r);
      else await emitResult(ctx, r);
    });
    worst = () => failed;
  } else {
    const batch = startBatch(
      ctx,
      sender,
      opts,
      chatUri,
      screen ? (r) => Promise.resolve(screen.result(r)) : undefined,
      follower,
    );
    input = batch.done;
    worst = batch.worst;
  }
  input = input.catch((e) => ctx.log.log("warn", `stdin: ${(e as Error).message}`));
  // Listen runs until stopped; chat also ends at the end of its input.
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    if (opts.chat) input.then(() => resolve());
  });
  // Answer the messages in flight before the UA closes: when stdout has gone,
  // that answer is the 500 that tells their senders nothing was taken.
  let timer: TimerId | undefined;
  await Promise.race([
    listener.settled(),
    new Promise<void>((resolve) => timer = ua.clock.setTimeout(resolve, 2000)),
  ]);
  if (timer !== undefined) ua.clock.clearTimeout(timer);
  await follower.stop();
  await kept?.stop();
  return opts.chat ? worst() : EXIT.OK;
}

function formatTarget(aor: string): string {
  try {
    return aor.includes(":") && /^(sips?|tel):/i.test(aor) ? aor : `sip:${aor}`;
  } catch {
    throw usageError(`Invalid --chat address: ${aor}`);
  }
}

/** Reads lines typed in the terminal and sends each to the buddy, reporting results inline. */
async function chatFromTerminal(
  ctx: CommandContext,
  sender: MessageSender,
  to: string,
  onResult: (r: BatchResult) => void | Promise<void>,
): Promise<void> {
  const pending = new Set<Promise<void>>();
  // Each line starts its send and returns at once: sends run concurrently.
  await readLines(Deno.stdin.readable, (line) => {
    if (line.trim() === "") return;
    const p = sender.send(to, { body: line }).then(
      (result) => onResult({ item: { to, message: { body: line } }, ok: true, result }),
      (error) => onResult({ item: { to, message: { body: line } }, ok: false, error }),
    );
    pending.add(p);
    p.finally(() => pending.delete(p));
  }, { signal: ctx.signal });
  await Promise.allSettled([...pending]);
}

/** Friendly chat lines on a terminal. */
class ChatScreen {
  #enc = new TextEncoder();

  #write(text: string): void {
    const bytes = this.#enc.encode(text + "\n");
    let off = 0;
    while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
  }

  info(text: string): void {
    this.#write(`-- ${text}`);
  }

  incoming(m: ReceivedMessage, buddy?: string): void {
    const who = m.fromName ? `${m.fromName} <${m.from}>` : m.from;
    const text = m.text ?? `[${m.contentType}, ${m.body.length} bytes]`;
    const time = new Date().toTimeString().slice(0, 5);
    if (buddy && sameAor(m.from, buddy)) this.#write(`${time} ${who}: ${text}`);
    else this.#write(`${time} (from ${who}) ${text}`);
  }

  result(r: BatchResult): void {
    if (r.ok) {
      if (!r.result.delivered) this.#write(`  … accepted for later delivery (${r.result.status})`);
      return;
    }
    const e = r.error;
    const why = e instanceof MessageSendError ? `${e.status} ${e.reason}` : e.message;
    const body = typeof r.item.message.body === "string" ? r.item.message.body : "";
    this.#write(`  ✗ not delivered (${why}): ${body}`);
  }
}

function sameAor(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/^sips?:/i, "").replace(/[;?].*$/, "").toLowerCase();
  return norm(a) === norm(b);
}
