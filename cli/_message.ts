/**
 * What `sipkit message` does (its options are in `message.ts`): option
 * checks and NDJSON mapping only; the protocol is in lib/im.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import {
  type BatchResult,
  MessageBatch,
  MessageListener,
  MessageSender,
  MessageSendError,
  type OutgoingMessage,
  type ReceivedMessage,
} from "../lib/im/message.ts";
import { toSipUri } from "../lib/sip/input.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import type { TimerId } from "../lib/sip/clock.ts";
import { type CommandContext, type CommonOptions, emitListening, runCommand } from "./_common.ts";
import { formatHostPort } from "../lib/sip/_net.ts";
import { EXIT, usageError } from "./_exit.ts";
import type { InputEvent } from "./_io.ts";
import type { Follower, RoamOptions } from "./_roam.ts";
import { createUserAgent } from "./_ua.ts";

type MessageOptions = {
  file?: string;
  type: string;
  cpim?: boolean;
  subject?: string;
  concurrency: number;
  timeout?: number;
  listen?: boolean;
  accept?: string;
  chat?: string;
  registrar?: string;
  expires: number;
  register?: boolean;
};

type Opts = MessageOptions & CommonOptions & RoamOptions;

/** Runs `sipkit message` with the parsed command line, in the command frame; exits. */
export function runMessageCommand(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
  to: string | undefined,
  body: string | undefined,
): Promise<never> {
  return runCommand<Opts>(cmd, (opts, ctx) => runMessage(opts, ctx, to, body));
}

async function runMessage(
  opts: Opts,
  ctx: CommandContext,
  to: string | undefined,
  body: string | undefined,
): Promise<number> {
  const mode = opts.listen ? "listen" : opts.chat ? "chat" : to ? "send" : "batch";
  if (opts.listen && opts.chat) throw usageError("--listen and --chat exclude each other");
  if ((opts.listen || opts.chat) && to) {
    throw usageError(`--${mode} takes no recipient argument`);
  }
  if (body !== undefined && opts.file) throw usageError("give the body as an argument or --file");
  if (opts.file && mode !== "send") throw usageError("--file goes with a recipient argument");
  if (opts.register && mode !== "listen" && mode !== "chat") {
    throw usageError("--register goes with --listen or --chat");
  }
  if (opts.accept !== undefined && mode !== "listen" && mode !== "chat") {
    throw usageError("--accept goes with --listen or --chat");
  }
  let outgoing: OutgoingMessage | undefined;
  if (mode === "send") outgoing = await oneMessage(opts, body);

  const ua = await createUserAgent(opts, ctx, {
    requireUser: mode !== "listen",
    oneShot: mode === "send",
  });
  try {
    const sender = new MessageSender(ua, {
      timeout: opts.timeout === undefined ? undefined : opts.timeout * 1000,
    });
    // A one-shot send exits as soon as its transaction has a final response
    // (or fails): closing the UA drops the transaction in Completed, whose
    // timer K (T4, 5 s over UDP, RFC 3261 17.1.2.2) only absorbs copies of
    // that response; nothing is sent in that state, so a process that goes
    // away loses nothing (a copy that comes later meets a closed port).
    if (mode === "send") return await sendOne(ctx, sender, to!, outgoing!);
    if (mode === "batch") return await sendBatch(ctx, sender, opts);
    return await listenAndChat(ctx, ua, sender, opts);
  } finally {
    await ua.close();
  }
}

/** The single message of send mode: argument, --file, or all of stdin. */
async function oneMessage(opts: Opts, body: string | undefined): Promise<OutgoingMessage> {
  let content: string | Uint8Array;
  if (body !== undefined) content = body;
  else if (opts.file) {
    try {
      content = await Deno.readFile(opts.file);
    } catch (e) {
      throw usageError(`Cannot read --file ${opts.file}: ${(e as Error).message}`);
    }
  } else if (!Deno.stdin.isTerminal()) {
    content = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  } else {
    throw usageError("missing message body (an argument, --file, or stdin)");
  }
  return checkedMessage({
    body: content,
    contentType: opts.type,
    cpim: opts.cpim,
    subject: opts.subject,
  });
}

function checkedMessage(m: OutgoingMessage): OutgoingMessage {
  if (m.subject !== undefined && /[\r\n]/.test(m.subject)) {
    throw usageError("the subject must be one line");
  }
  if (m.contentType !== undefined && !/^[^\s/;]+\/[^\s/;]+\s*(;.*)?$/.test(m.contentType)) {
    throw usageError(`Invalid media type "${m.contentType}"`);
  }
  return m;
}

async function sendOne(
  ctx: CommandContext,
  sender: MessageSender,
  to: string,
  message: OutgoingMessage,
): Promise<number> {
  let target: string;
  try {
    target = to;
    sender.buildRequest(target, message);
  } catch (e) {
    throw usageError((e as Error).message);
  }
  try {
    const result = await sender.send(target, message);
    await emitResult(ctx, { item: { to: target, message }, ok: true, result });
    return EXIT.OK;
  } catch (e) {
    const result: BatchResult = { item: { to: target, message }, ok: false, error: e as Error };
    await emitResult(ctx, result);
    ctx.log.log("error", (e as Error).message);
    return exitFor(result);
  }
}

interface LineRef {
  line: number;
  id?: unknown;
}

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

async function sendBatch(ctx: CommandContext, sender: MessageSender, opts: Opts): Promise<number> {
  if (Deno.stdin.isTerminal()) {
    throw usageError("missing recipient (or pipe NDJSON send lines to stdin)");
  }
  const { done, worst } = startBatch(ctx, sender, opts);
  await done;
  return worst();
}

function exitFor(r: BatchResult): number {
  if (r.ok) return EXIT.OK;
  const e = r.error;
  if (e instanceof MessageSendError) {
    return e.kind === "rejected" || e.kind === "auth" ? EXIT.PEER_REJECTED : EXIT.NETWORK;
  }
  // Input the request could not be built from (a bad URI or header value).
  if (e instanceof SyntaxError || e instanceof TypeError) return EXIT.USAGE;
  return EXIT.INTERNAL;
}

function emitResult(ctx: CommandContext, r: BatchResult): Promise<void> {
  const ref = r.item.ref as LineRef | undefined;
  if (r.ok) {
    return ctx.out.emit("sent", {
      to: r.result.to,
      status: r.result.status,
      reason: r.result.reason,
      delivered: r.result.delivered,
      call_id: r.result.callId,
      id: ref?.id,
      line: ref?.line,
    });
  }
  const e = r.error;
  const fields = e instanceof MessageSendError
    ? { to: e.to, status: e.status, reason: e.reason, error: e.kind, call_id: e.callId }
    : {
      to: r.item.to,
      reason: e instanceof SyntaxError || e instanceof TypeError ? "Invalid input" : e.message,
      error: e instanceof SyntaxError || e instanceof TypeError ? "invalid" : "internal",
    };
  if (!ref) return ctx.out.emit("send_failed", { ...fields, message: e.message });
  ctx.log.log("warn", `<stdin>:${ref.line}: ${e.message}`);
  return ctx.out.emit("send_failed", { ...fields, message: e.message, id: ref.id, line: ref.line });
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
async function listenAndChat(
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
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  const pending = new Set<Promise<void>>();
  let buffer = "";
  const sendLine = (text: string) => {
    const line = text.replace(/\r$/, "");
    if (line.trim() === "") return;
    const p = sender.send(to, { body: line }).then(
      (result) => onResult({ item: { to, message: { body: line } }, ok: true, result }),
      (error) => onResult({ item: { to, message: { body: line } }, ok: false, error }),
    );
    pending.add(p);
    p.finally(() => pending.delete(p));
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        sendLine(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
    }
    sendLine(buffer);
  } catch (e) {
    if (!ctx.signal.aborted) throw e;
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
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
