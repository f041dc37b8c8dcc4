/**
 * The options every command shares, and option parsers. Only commander is
 * imported here: a command's definition (its options and help) loads this,
 * never the library, so that `sipkit <command> --help` starts quickly.
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { DEFAULT_STREAM_LIMITS } from "../lib/sip/stream_limits.ts";

/** Values of the options every command has. */
export interface CommonOptions {
  /** Address of record, e.g. alice@example.test. */
  user?: string;
  /** Outbound proxy URI. */
  proxy?: string;
  /** Local address host:port. */
  bind?: string;
  /** Transport for outgoing requests. */
  transport?: string;
  /** Authentication user name (default: the AOR's user part). */
  authUser?: string;
  /** Environment variable holding the password. */
  passwordEnv?: string;
  /** File holding the password. */
  passwordFile?: string;
  /** Dump SIP messages on stderr. */
  trace?: boolean;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** Profile name in the config file. */
  profile?: string;
  /** Human-readable lines instead of NDJSON. */
  pretty?: boolean;
  /** More logging on stderr. */
  verbose?: boolean;
  /** Only errors on stderr. */
  quiet?: boolean;
  /** Most TCP/TLS connections open at once (listening commands). */
  tcpMaxConnections?: number;
  /** Most bytes of incomplete TCP/TLS messages held, all connections together. */
  tcpMaxBuffered?: number;
  /** Seconds an incomplete TCP/TLS message may take to arrive (0: no limit). */
  tcpMessageTimeout?: number;
}

/**
 * Parses an integer option, with bounds. A bad value is a usage error (exit
 * 2): commander reports it with the option's name.
 */
export function intArg(
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): (value: string) => number {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) {
      throw new InvalidArgumentError(`${name} must be a whole number, got "${value}"`);
    }
    const n = Number(value);
    if (n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    }
    return n;
  };
}

/** Adds the shared options to a command. `listens` adds `--register`. */
// deno-lint-ignore no-explicit-any
export function addCommonOptions<C extends Command<any, any, any>>(
  cmd: C,
  options: { listens?: boolean } = {},
): C {
  cmd
    .option("-u, --user <aor>", "your address of record, e.g. alice@example.test")
    .option("--proxy <uri>", "outbound proxy, e.g. sip:proxy.example.test;transport=tcp")
    .option("--bind <host:port>", "local address (default: all interfaces, ephemeral port)")
    .addOption(
      new Option("--transport <name>", "transport for requests").choices(["udp", "tcp", "tls"]),
    )
    .option("--auth-user <name>", "authentication user name (default: user part of the AOR)")
    .option(
      "--password-env <var>",
      "environment variable with the password (default SIPKIT_PASSWORD)",
    )
    .option("--password-file <path>", "file whose first line is the password")
    .option("--trace", "print every SIP message sent and received on stderr")
    .option("--insecure", "do not verify TLS certificates")
    .option("--profile <name>", "profile of the config file to use")
    .option("--pretty", "human-readable lines on stdout instead of NDJSON")
    .option("-v, --verbose", "more logs on stderr")
    .option("-q, --quiet", "only errors on stderr");
  if (options.listens) {
    cmd.option("--register", "keep this process's contact registered while it runs");
    cmd.option(
      "--tcp-max-connections <n>",
      `most TCP/TLS connections open at once; more are closed (default ${DEFAULT_STREAM_LIMITS.maxConnections})`,
      intArg("--tcp-max-connections", 1, 1_000_000),
    );
    cmd.option(
      "--tcp-max-buffered <bytes>",
      "most bytes of incomplete TCP/TLS messages held, all connections together " +
        `(default ${DEFAULT_STREAM_LIMITS.maxBuffered})`,
      intArg("--tcp-max-buffered", 65_536),
    );
    cmd.option(
      "--tcp-message-timeout <s>",
      "close a TCP/TLS connection whose message is still incomplete after this many seconds; " +
        `0 never (default ${DEFAULT_STREAM_LIMITS.messageTimeout / 1000})`,
      intArg("--tcp-message-timeout", 0, 3600),
    );
  }
  // Commander does not pass exitOverride() on to commands added with
  // addCommand(): without it a bad option would exit 1 instead of 2.
  cmd.exitOverride().showHelpAfterError("(run with --help for usage)");
  return cmd;
}
