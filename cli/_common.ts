/**
 * What every running command shares: the run frame that wires stdout,
 * stderr, stdin, signals and exit codes, and URI options. The common options
 * themselves are in `_options.ts` (re-exported here).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Uri } from "../lib/sip/message.ts";
import { toSipUri } from "../lib/sip/input.ts";
import type { UserAgent } from "../lib/sip/ua.ts";
import { formatHostPort, isUnspecified, routeLocalAddress } from "../lib/sip/_net.ts";
import { applyConfig } from "./_config.ts";
import type { CommonOptions } from "./_options.ts";
import { CommandError, EXIT, type ExitCode } from "./_exit.ts";
import {
  createLogger,
  type InputEvent,
  type Logger,
  type LogLevel,
  NdjsonWriter,
  readNdjson,
} from "./_io.ts";

export { addCommonOptions, type CommonOptions, intArg } from "./_options.ts";

/** URI schemes that are not SIP but could be mistaken for a user part. */
const OTHER_SCHEMES = new Set([
  "tel",
  "mailto",
  "http",
  "https",
  "im",
  "pres",
  "urn",
  "xmpp",
  "h323",
]);

/**
 * Parses a URI given on the command line (`alice@example.test` or a full
 * `sip:`/`sips:` URI); a bad one is a usage error naming the option.
 * With `needUser`, the URI must have a user part (an address of record).
 */
export function uriOption(name: string, value: string, options: { needUser?: boolean } = {}): Uri {
  // "mailto:x@y" would otherwise read as sip:mailto:x@y (user "mailto:x").
  const text = value.trim();
  const colon = text.indexOf(":");
  if (colon > 0 && OTHER_SCHEMES.has(text.slice(0, colon).toLowerCase())) {
    throw new CommandError(EXIT.USAGE, `${name}: "${value}" is not a sip: or sips: URI`);
  }
  let uri: Uri;
  try {
    uri = toSipUri(value);
  } catch (e) {
    throw new CommandError(EXIT.USAGE, `${name}: ${(e as Error).message}`);
  }
  if (uri.scheme !== "sip" && uri.scheme !== "sips") {
    throw new CommandError(EXIT.USAGE, `${name}: "${value}" is not a sip: or sips: URI`);
  }
  if (options.needUser && !uri.user) {
    throw new CommandError(
      EXIT.USAGE,
      `${name}: "${value}" has no user part (expected user@domain, e.g. alice@example.test)`,
    );
  }
  return uri;
}

/** Why a command was asked to stop ("failed": see {@linkcode CommandContext.fail}). */
export type StopReason = "sigint" | "sigterm" | "stdout-closed" | "failed";

/** What a running command gets from the frame. */
export interface CommandContext {
  /** Events on stdout. */
  out: NdjsonWriter;
  /** Logs on stderr. */
  log: Logger;
  /** Aborted on SIGINT, SIGTERM or when stdout closes; the command cleans up and returns. */
  signal: AbortSignal;
  /** Why `signal` was aborted. */
  stopReason(): StopReason | undefined;
  /** Resolves when `signal` aborts (never rejects): race one-shot work against it. */
  stopped: Promise<StopReason>;
  /** Registers a secret to mask in logs and traces. */
  addSecret(secret: string): void;
  /**
   * Ends the command because something it needs broke under it (e.g. its
   * UDP socket): `signal` aborts with the reason "failed", the command cleans
   * up as after SIGTERM, and the process exits with the error's code (its
   * message goes to stderr). The first call counts; a stop already asked
   * keeps its own exit code.
   */
  fail(error: CommandError): void;
  /**
   * Reads NDJSON commands from stdin when stdin is not a terminal; bad lines
   * are reported on stderr and as `error` events. Resolves at end of input
   * (at once when stdin is a terminal).
   */
  readInput(handler: (event: InputEvent, line: number) => void | Promise<void>): Promise<void>;
  /**
   * Reports a stdin line that is skipped: a warning on stderr
   * (`<stdin>:LINE: MESSAGE; line skipped`) and an `error` event with
   * `source` "stdin", `line` and `message`.
   */
  skipLine(line: number, message: string): Promise<void>;
}

/**
 * Runs a command body inside the frame and exits the process with the right
 * code: the body's own code; 130 after SIGINT; 0 after SIGTERM or a closed
 * stdout; the code of a {@linkcode CommandError}; 3 for network errors.
 * The body gets the options after config and environment were applied.
 */
export async function runCommand<O extends CommonOptions>(
  // deno-lint-ignore no-explicit-any
  cmd: Command<any, any, any>,
  body: (opts: O, ctx: CommandContext) => Promise<ExitCode | number>,
): Promise<never> {
  try {
    applyConfig(cmd);
  } catch (e) {
    createLogger().log("error", errorMessage(e));
    Deno.exit(exitCodeFor(e));
  }
  const opts = cmd.opts() as O;
  const secrets: string[] = [];
  const level: LogLevel = opts.verbose ? "debug" : opts.quiet ? "error" : "info";
  const log = createLogger({ level, secrets: () => secrets });
  const controller = new AbortController();
  const stopped = Promise.withResolvers<StopReason>();
  let reason: StopReason | undefined;
  let failure: CommandError | undefined;
  const stop = (r: StopReason) => {
    if (reason) {
      if (r !== "stdout-closed") Deno.exit(EXIT.INTERRUPTED);
      return;
    }
    reason = r;
    controller.abort(r);
    stopped.resolve(r);
  };
  const out = new NdjsonWriter(Deno.stdout, {
    pretty: opts.pretty,
    onClosed: (error) => {
      if (error !== undefined) log.log("warn", `cannot write to stdout: ${errorMessage(error)}`);
      stop("stdout-closed");
    },
  });
  const onInt = () => stop("sigint");
  const onTerm = () => stop("sigterm");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let code: number;
  try {
    const ctx: CommandContext = {
      out,
      log,
      signal: controller.signal,
      stopReason: () => reason,
      stopped: stopped.promise,
      addSecret: (s) => {
        if (s) secrets.push(s);
      },
      fail: (error) => {
        if (reason) return;
        failure = error;
        log.log("error", error.message);
        stop("failed");
      },
      readInput: (handler) => {
        if (Deno.stdin.isTerminal()) return Promise.resolve();
        return readNdjson(Deno.stdin.readable, handler, {
          signal: controller.signal,
          onInvalid: (line, message) => ctx.skipLine(line, message),
        });
      },
      skipLine: async (line, message) => {
        log.log("warn", `<stdin>:${line}: ${message}; line skipped`);
        await out.emit("error", { source: "stdin", line, message });
      },
    };
    code = await body(opts, ctx);
  } catch (e) {
    code = exitCodeFor(e);
    // After a stop request, errors of the interrupted work are expected.
    if (!reason) log.log("error", errorMessage(e));
    else log.log("debug", `after ${reason}: ${errorMessage(e)}`);
  }
  if (failure) code = failure.code;
  else if (reason === "sigint") code = EXIT.INTERRUPTED;
  else if (reason === "sigterm" || reason === "stdout-closed") code = EXIT.OK;
  // Every event written before exit: Deno.exit does not wait for pending writes.
  await out.flush();
  // The signal listeners stay: Deno.exit ends the process at once (removing
  // them first cost about 0.3 ms of every one-shot command).
  Deno.exit(code);
}

function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Maps an error to an exit code. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof CommandError) return e.code;
  if (e instanceof Error && e.name === "SipRequestError") {
    return (e as Error & { local?: boolean }).local ? EXIT.NETWORK : EXIT.PEER_REJECTED;
  }
  if (
    e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.TimedOut ||
    e instanceof Deno.errors.NetworkUnreachable || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.AddrNotAvailable || e instanceof Deno.errors.AddrInUse
  ) {
    return EXIT.NETWORK;
  }
  return EXIT.INTERNAL;
}

/**
 * Emits `listening` once a listening command is ready: `address` (host:port
 * of its sockets), `contact` (a SIP URI peers can send to directly, no proxy
 * needed), `transports` (the protocols it accepts) and `aor`.
 */
export async function emitListening(ua: UserAgent, ctx: CommandContext): Promise<void> {
  const listening = ua.transports.filter((t) => t.local.port !== 0);
  const first = listening.find((t) => t.protocol === "udp") ?? listening[0];
  if (!first) return;
  const host = ua.advertisedHost ?? first.local.host;
  // Sockets on all interfaces (0.0.0.0, ::): the contact names one of them
  // (an interface address, as in the Contact of our requests), never 0.0.0.0.
  const reachable = isUnspecified(host) ? routeLocalAddress(host, "192.0.2.1") : host;
  const user = ua.aor.user ? `${ua.aor.user}@` : "";
  await ctx.out.emit("listening", {
    address: formatHostPort({ host, port: first.local.port }),
    contact: `sip:${user}${formatHostPort({ host: reachable, port: first.local.port })}`,
    transports: listening.map((t) => t.protocol),
    aor: ua.aor.user ? `sip:${ua.aor.user}@${ua.aor.host}` : undefined,
  });
}
