/**
 * Exit codes of every sipkit command (documented in README.md).
 *
 * @module
 */

/** Exit codes as a table. */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The peer said no: a final non-2xx response, including failed authentication. */
  PEER_REJECTED: 1,
  /** Bad usage or input. */
  USAGE: 2,
  /** Network failure or timeout. */
  NETWORK: 3,
  /** An internal error (a bug in sipkit). */
  INTERNAL: 70,
  /** Interrupted by SIGINT, after clean-up. */
  INTERRUPTED: 130,
} as const;

/** One of the exit codes. */
export type ExitCode = typeof EXIT[keyof typeof EXIT];

/** An error that ends a command with a given exit code and a message for stderr. */
export class CommandError extends Error {
  /** The process exit code. */
  readonly code: ExitCode;

  /** Creates the error. */
  constructor(code: ExitCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CommandError";
    this.code = code;
  }
}

/** A usage error (exit 2). */
export function usageError(message: string): CommandError {
  return new CommandError(EXIT.USAGE, message);
}
