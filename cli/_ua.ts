/**
 * Builds the user agent of a command from its common options.
 *
 * @module
 */

import { formatHostPort } from "../lib/sip/_net.ts";
import type { TransportProtocol } from "../lib/sip/transport.ts";
import { UserAgent } from "../lib/sip/ua.ts";
import { type CommandContext, type CommonOptions, uriOption } from "./_common.ts";
import { passwordProvider } from "./_config.ts";
import { usageError } from "./_exit.ts";

/** Options of {@linkcode createUserAgent}. */
export interface CreateUaOptions {
  /** The AOR is required by this command. */
  requireUser?: boolean;
  /** Send compact header names (RFC 3261 7.3.3). Default false. */
  compactHeaders?: boolean;
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
  try {
    return await UserAgent.create({
      aor: common.user,
      bind: common.bind,
      transport: common.transport as TransportProtocol | undefined,
      outboundProxy: common.proxy,
      authUser: common.authUser,
      password: async () => {
        const p = await getPassword();
        if (p !== undefined) ctx.addSecret(p);
        return p;
      },
      tls: { insecure: common.insecure },
      streamLimits: {
        maxConnections: common.tcpMaxConnections,
        maxBuffered: common.tcpMaxBuffered,
        messageTimeout: common.tcpMessageTimeout === undefined
          ? undefined
          : common.tcpMessageTimeout * 1000,
      },
      compactHeaders: options.compactHeaders,
      log: (level, message) => ctx.log.log(level, message),
      trace: common.trace
        ? (dir, data, peer) => {
          const where = `${peer.protocol} ${formatHostPort(peer)}`;
          const head = dir === "send" ? `>>> sent to ${where}` : `<<< received from ${where}`;
          ctx.log.raw(`${head} (${data.length} bytes)\n${decoder.decode(data)}`);
        }
        : undefined,
    });
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw usageError(e.message);
    throw e;
  }
}
