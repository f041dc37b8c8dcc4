/**
 * What `sipkit message` does (its options are in `message.ts`): option
 * checks and NDJSON mapping only; the protocol is in lib/im. A one-shot
 * send runs from this module alone; batches, listening and chat are in
 * `_message_more.ts`, loaded when one of them runs.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { BatchResult } from "../lib/im/message.ts";
import type { SipRequest } from "../lib/sip/message.ts";
import {
  DEFAULT_MESSAGE_TYPE,
  MessageSender,
  MessageSendError,
  type OutgoingMessage,
} from "../lib/im/sender.ts";
import { type CommandContext, type CommonOptions, runCommand } from "./_common.ts";
import { EXIT, usageError } from "./_exit.ts";
import type { RoamOptions } from "./_roam.ts";
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

/** The parsed options of `sipkit message`. */
export type Opts = MessageOptions & CommonOptions & RoamOptions;

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
  const sender = new MessageSender(ua, {
    timeout: opts.timeout === undefined ? undefined : opts.timeout * 1000,
  });
  // A one-shot send exits as soon as its transaction has a final response
  // (or fails): the process ends right after (runCommand), which closes the
  // socket and drops the timers. What is left is the transaction in
  // Completed, whose timer K (T4, 5 s over UDP, RFC 3261 17.1.2.2) only
  // absorbs copies of that response; nothing is sent in that state, so a
  // process that goes away loses nothing (a copy that comes later meets a
  // closed port). Over UDP the UA is not closed first (that cost some 0.65
  // ms); a TCP or TLS connection that the request opened is closed properly
  // (TLS sends its close_notify) before the process ends.
  if (mode === "send") {
    const code = await sendOne(ctx, sender, to!, outgoing!);
    if (ua.transport.transports.some((t) => t.reliable)) await ua.close();
    return code;
  }
  try {
    const more = await import("./_message_more.ts");
    if (mode === "batch") return await more.sendBatch(ctx, sender, opts);
    return await more.listenAndChat(ctx, ua, sender, opts);
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

/** Checks a message's subject and media type (a usage error otherwise). */
export function checkedMessage(m: OutgoingMessage): OutgoingMessage {
  if (m.subject !== undefined && /[\r\n]/.test(m.subject)) {
    throw usageError("the subject must be one line");
  }
  if (
    m.contentType !== undefined && m.contentType !== DEFAULT_MESSAGE_TYPE &&
    !/^[^\s/;]+\/[^\s/;]+\s*(;.*)?$/.test(m.contentType)
  ) {
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
  const target = to;
  await sender.prepare(message); // the CPIM code, for --cpim
  let req: SipRequest;
  try {
    req = sender.buildRequest(target, message);
  } catch (e) {
    throw usageError((e as Error).message);
  }
  try {
    const result = await sender.sendRequest(req);
    await emitResult(ctx, { item: { to: target, message }, ok: true, result });
    return EXIT.OK;
  } catch (e) {
    const result: BatchResult = { item: { to: target, message }, ok: false, error: e as Error };
    await emitResult(ctx, result);
    ctx.log.log("error", (e as Error).message);
    return exitFor(result);
  }
}

/** Where a batch item came from: its stdin line and `id`. */
export interface LineRef {
  /** The 1-based stdin line. */
  line: number;
  /** The line's `id` field, echoed in its result. */
  id?: unknown;
}

/** The exit code of a message's result. */
export function exitFor(r: BatchResult): number {
  if (r.ok) return EXIT.OK;
  const e = r.error;
  if (e instanceof MessageSendError) {
    return e.kind === "rejected" || e.kind === "auth" ? EXIT.PEER_REJECTED : EXIT.NETWORK;
  }
  // Input the request could not be built from (a bad URI or header value).
  if (e instanceof SyntaxError || e instanceof TypeError) return EXIT.USAGE;
  return EXIT.INTERNAL;
}

/** Emits `sent` or `send_failed` for a message's result. */
export function emitResult(ctx: CommandContext, r: BatchResult): Promise<void> {
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
