/**
 * Builds the user agent of a command from its common options.
 *
 * @module
 */

import { type TransportProtocol, UserAgent } from "../mod.ts";
import type { CommandContext, CommonOptions } from "./_common.ts";
import { passwordProvider } from "./_config.ts";
import { usageError } from "./_exit.ts";

/** Options of {@linkcode createUserAgent}. */
export interface CreateUaOptions {
  /** The AOR is required by this command. */
  requireUser?: boolean;
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
  const getPassword = passwordProvider(common);
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
      log: (level, message) => ctx.log.log(level, message),
      trace: common.trace
        ? (dir, data, peer) => {
          const where = `${peer.protocol} ${
            peer.host.includes(":") ? `[${peer.host}]` : peer.host
          }:${peer.port}`;
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
