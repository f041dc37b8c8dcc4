// Internal plumbing shared by the four transaction state machines.

import type { Clock, TimerId } from "../clock.ts";
import type { SipResponse } from "../message.ts";
import type { ServerTransaction } from "./server_transaction.ts";
import type { Timers, TransactionLog, TransactionTransport } from "./types.ts";

/** What every transaction gets from the layer that created it. */
export interface TransactionContext {
  transport: TransactionTransport;
  clock: Clock;
  timers: Timers;
  log: TransactionLog;
  /** Called once when a transaction terminates, so that the layer forgets it. */
  remove(key: string, tx: unknown): void;
  /**
   * A non-INVITE server transaction over UDP has answered `res` (final): the
   * layer sends it and, for timer J, keeps only the key and the response
   * bytes to answer retransmissions with, not the transaction. `onError`
   * receives a failure of that first send.
   */
  complete(tx: ServerTransaction, res: SipResponse, onError: (e: unknown) => void): void;
}

/** Named timers (A, B, D...) of one transaction, on the injected clock. */
export class TimerSet {
  #clock: Clock;
  #ids = new Map<string, TimerId>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** (Re)starts timer `name`. */
  start(name: string, ms: number, fn: () => void): void {
    this.stop(name);
    const id = this.#clock.setTimeout(() => {
      this.#ids.delete(name);
      fn();
    }, ms);
    this.#ids.set(name, id);
  }

  /** Stops timer `name` when it runs. */
  stop(name: string): void {
    const id = this.#ids.get(name);
    if (id !== undefined) {
      this.#clock.clearTimeout(id);
      this.#ids.delete(name);
    }
  }

  /** Names of the running timers. */
  get running(): string[] {
    return [...this.#ids.keys()];
  }

  /** Stops every timer. */
  stopAll(): void {
    for (const id of this.#ids.values()) this.#clock.clearTimeout(id);
    this.#ids.clear();
  }
}

/** Calls a TU callback; an exception in the TU never breaks the state machine. */
export function callUser(log: TransactionLog, what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    log(`transaction user threw in ${what}: ${e instanceof Error ? e.stack ?? e.message : e}`);
  }
}

/** Turns whatever a rejected send gave into an Error. */
export function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
