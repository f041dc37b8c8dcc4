/**
 * Builds the user agent of a command from its common options.
 *
 * @module
 */

import { formatHostPort } from "../lib/sip/_net.ts";
import { openTransports } from "../lib/sip/sockets.ts";
import type { Transport, TransportProtocol } from "../lib/sip/transport.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { type CommandContext, type CommonOptions, uriOption } from "./_common.ts";
import { passwordProvider } from "./_config.ts";
import { CommandError, EXIT, usageError } from "./_exit.ts";

/** Options of {@linkcode createUserAgent}. */
export interface CreateUaOptions {
  /** The AOR is required by this command. */
  requireUser?: boolean;
  /** Send compact header names (RFC 3261 7.3.3). Default false. */
  compactHeaders?: boolean;
  /**
   * A one-shot command (send a request or a few, await the answers, exit):
   * its sockets are set up for that (`oneShot` of `openTransports`: no large
   * receive buffer, ICMP errors heard only when an answer is slow). Default
   * false.
   */
  oneShot?: boolean;
}

/** Creates and starts the UA for a command; the caller closes it. */
export async function createUserAgent(
  common: CommonOptions,
  ctx: CommandContext,
  options: CreateUaOptions = {},
): Promise<UserAgent> {
  if (options.requireUser && !common.user) {
    throw usageError('missing --user <aor> (or SIPKIT_USER, or a profile with "user")');
  }
  if (common.user) uriOption("--user", common.user, { needUser: true });
  if (common.proxy) uriOption("--proxy", common.proxy);
  const getPassword = passwordProvider(common);
  // A password named by a flag or the environment is read now, so that a
  // missing file or variable is a usage error at start rather than at the
  // first challenge, and so that it is masked in every log line from the start.
  // Only the terminal prompt waits until a challenge needs it.
  if (common.passwordFile || common.passwordEnv || Deno.env.get("SIPKIT_PASSWORD") !== undefined) {
    const p = await getPassword();
    if (p) ctx.addSecret(p);
  }
  const decoder = new TextDecoder();
  const log = (level: "debug" | "info" | "warn" | "error", message: string) =>
    ctx.log.log(level, message);
  let ua: UserAgent | undefined;
  let transports: Transport[] = [];
  try {
    transports = await openTransports({
      bind: common.bind,
      tls: { insecure: common.insecure },
      streamLimits: {
        maxConnections: common.tcpMaxConnections,
        maxBuffered: common.tcpMaxBuffered,
        messageTimeout: common.tcpMessageTimeout === undefined
          ? undefined
          : common.tcpMessageTimeout * 1000,
      },
      log,
      onUdpFailure: udpFailureHandler(ctx, () => ua?.transport.transports ?? []),
      oneShot: options.oneShot,
    });
    ua = await UserAgent.create({
      oneShot: options.oneShot,
      transports,
      aor: common.user,
      transport: common.transport as TransportProtocol | undefined,
      outboundProxy: common.proxy,
      authUser: common.authUser,
      password: async () => {
        const p = await getPassword();
        if (p !== undefined) ctx.addSecret(p);
        return p;
      },
      compactHeaders: options.compactHeaders,
      log,
      trace: common.trace
        ? (dir, data, peer) => {
          const where = `${peer.protocol} ${formatHostPort(peer)}`;
          const head = dir === "send" ? `>>> sent to ${where}` : `<<< received from ${where}`;
          ctx.log.raw(`${head} (${data.length} bytes)\n${decoder.decode(data)}`);
        }
        : undefined,
    });
    return ua;
  } catch (e) {
    await Promise.all(transports.map((t) => t.close().catch(() => {})));
    if (e instanceof RangeError || e instanceof TypeError) throw usageError(e.message);
    throw e;
  }
}

/**
 * What a command does when a UDP socket of its user agent is given up (1,000
 * receive errors in a row: `UdpTransport`'s `onFailure`): an `error` event
 * (`source` "udp", `address` of the socket, `message`), then
 * {@linkcode CommandContext.fail} with exit code 3, rather than going on
 * deaf. A socket the UA no longer uses (left behind by a move, receiving its
 * last retransmissions) is only logged. `current` gives the UA's transports.
 */
export function udpFailureHandler(
  ctx: CommandContext,
  current: () => readonly Transport[],
): (error: Error) => void {
  return (error) => {
    const socket = current().find((t) =>
      t.protocol === "udp" && (t as { failure?: Error }).failure === error
    );
    if (!socket) {
      ctx.log.log("warn", `${error.message} (a socket no longer in use: going on)`);
      return;
    }
    const address = formatHostPort(socket.local);
    void ctx.out.emit("error", { source: "udp", address, message: error.message })
      .catch(() => {})
      .finally(() => ctx.fail(new CommandError(EXIT.NETWORK, error.message)));
  };
}
