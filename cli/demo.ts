/**
 * `deno task demo`: two local agents, alice and bob, on loopback, no server.
 * Bob runs `sipkit notify` (edge mode: he is his own presence agent), alice
 * runs `sipkit watch` on him; bob changes his status twice and alice sees
 * each change. Both agents run the real command bodies in this process over
 * real UDP sockets on 127.0.0.1; their NDJSON goes to stdout as it happens,
 * each line with an `agent` field. Steps are logged on stderr. Ends by itself
 * with exit 0, or 1 when a step does not happen within its time limit.
 *
 * @module
 */

import type { CommandContext, StopReason } from "./_common.ts";
import { createLogger, type InputEvent, NdjsonWriter } from "./_io.ts";
import { messageDemo } from "./_demo_im.ts";
import { runNotify } from "./_notify.ts";
import { runWatch } from "./_watch.ts";

/** An event as an agent wrote it. */
export interface DemoEvent {
  /** The agent's name. */
  agent: string;
  /** The event type. */
  type: string;
  /** Other fields. */
  [field: string]: unknown;
}

/** Options of {@linkcode runDemo}. */
export interface DemoOptions {
  /** Where labelled NDJSON lines go. Default: stdout. */
  write?: (line: string) => void;
  /** Where step descriptions and agent logs go. Default: stderr. */
  log?: (line: string) => void;
  /** Milliseconds each step may take. Default 10000. */
  stepTimeout?: number;
}

/**
 * A message exchange between the two agents, run after the presence part
 * once instant messages exist (lib/im): it gets both agents' addresses and
 * an `emit` for labelled events, and resolves when the exchange is done.
 */
export type DemoExtension = (agents: {
  alice: { aor: string; contact?: string };
  bob: { aor: string; contact: string };
  emit: (event: DemoEvent) => void;
  log: (line: string) => void;
}) => Promise<void>;

/**
 * The instant-message part: alice and bob exchange a short conversation
 * (lib/im messageDemo: text, CPIM with a subject, a body that goes over TCP).
 * Events are labelled with the agent that sent (`sent`) or received (`message`).
 */
export const imExtension: DemoExtension = async ({ emit, log }) => {
  log("alice and bob exchange instant messages (sipkit message)");
  const result = await messageDemo({
    onEvent: (type, fields) => {
      const { at, from, ...rest } = fields;
      const agent = String(type === "message" ? at : from);
      emit({
        agent,
        type,
        time: new Date().toISOString(),
        ...(type === "message" ? { from, ...rest } : rest),
      });
    },
  });
  if (result.received !== result.sent) {
    throw new Error(`${result.sent} messages sent but ${result.received} received`);
  }
};

/** Extensions run after the presence part, in order. */
export const DEMO_EXTENSIONS: DemoExtension[] = [imExtension];

/** One agent: a command body running with its own context. */
class Agent {
  readonly name: string;
  readonly events: DemoEvent[] = [];
  readonly #controller = new AbortController();
  readonly #input: InputEvent[] = [];
  #inputWake?: () => void;
  #inputDone = false;
  readonly #waiters: Array<{ pred: (e: DemoEvent) => boolean; resolve: (e: DemoEvent) => void }> =
    [];
  readonly ctx: CommandContext;
  done?: Promise<number>;

  constructor(name: string, write: (line: string) => void, log: (line: string) => void) {
    this.name = name;
    const dec = new TextDecoder();
    const out = new NdjsonWriter({
      write: (p) => {
        for (const line of dec.decode(p).split("\n")) {
          if (line === "") continue;
          const event = { agent: name, ...JSON.parse(line) } as DemoEvent;
          write(JSON.stringify(event));
          this.#onEvent(event);
        }
        return Promise.resolve(p.length);
      },
    });
    const logger = createLogger({ level: "warn", write: (text) => log(`[${name}] ${text}`) });
    this.ctx = {
      out,
      log: logger,
      signal: this.#controller.signal,
      stopReason: (): StopReason | undefined =>
        this.#controller.signal.aborted ? "sigterm" : undefined,
      stopped: new Promise<StopReason>((resolve) =>
        this.#controller.signal.addEventListener("abort", () => resolve("sigterm"), { once: true })
      ),
      addSecret: () => {},
      fail: (error) => {
        logger.log("error", error.message);
        this.#controller.abort();
      },
      skipLine: async (line, message) => {
        logger.log("warn", `<stdin>:${line}: ${message}; line skipped`);
        await out.emit("error", { source: "stdin", line, message });
      },
      readInput: async (handler) => {
        let line = 0;
        for (;;) {
          while (this.#input.length > 0) await handler(this.#input.shift()!, ++line);
          if (this.#inputDone || this.#controller.signal.aborted) return;
          await new Promise<void>((resolve) => {
            this.#inputWake = resolve;
            this.#controller.signal.addEventListener("abort", () => resolve(), { once: true });
          });
          this.#inputWake = undefined;
        }
      },
    };
  }

  #onEvent(event: DemoEvent) {
    this.events.push(event);
    for (const w of [...this.#waiters]) {
      if (w.pred(event)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(event);
      }
    }
  }

  /** Feeds one stdin line to the agent. */
  send(event: InputEvent) {
    this.#input.push(event);
    this.#inputWake?.();
  }

  /** Waits for an event matching `pred`. */
  wait(pred: (e: DemoEvent) => boolean, what: string, timeout: number): Promise<DemoEvent> {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (e: DemoEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`${this.name} did not report ${what} within ${timeout} ms`));
      }, timeout);
      this.#waiters.push(waiter);
    });
  }

  /** Asks the agent to stop (like SIGTERM) and waits for its command body to return. */
  async stop(): Promise<number> {
    this.#inputDone = true;
    this.#controller.abort("sigterm");
    return await (this.done ?? Promise.resolve(0));
  }
}

/**
 * Runs the demo and resolves with the exit code (0 when every step happened).
 *
 * @example
 * ```ts ignore
 * const code = await runDemo({ write: (line) => console.log(line) });
 * ```
 */
export async function runDemo(options: DemoOptions = {}): Promise<number> {
  const enc = new TextEncoder();
  const write = options.write ??
    ((line: string) => void Deno.stdout.writeSync(enc.encode(line + "\n")));
  const log = options.log ??
    ((line: string) =>
      void Deno.stderr.writeSync(enc.encode(line.endsWith("\n") ? line : line + "\n")));
  const timeout = options.stepTimeout ?? 10_000;
  const step = (text: string) => log(`demo: ${text}`);
  const bob = new Agent("bob", write, log);
  const alice = new Agent("alice", write, log);
  const agents = [alice, bob];
  try {
    step("bob starts his presence agent (sipkit notify --status online) on 127.0.0.1");
    bob.done = runNotify({
      user: "bob@example.test",
      bind: "127.0.0.1:0",
      status: "online",
      note: "at my desk",
      unknown: "accept",
      minInterval: 1,
    }, bob.ctx);
    const listening = await bob.wait((e) => e.type === "listening", "its address", timeout);
    const bobContact = String(listening.contact);

    step(`alice watches bob at ${bobContact} (sipkit watch ${bobContact})`);
    alice.done = runWatch([bobContact], {
      user: "alice@example.test",
      bind: "127.0.0.1:0",
    }, alice.ctx);
    const isPresence = (status: string) => (e: DemoEvent) =>
      e.type === "presence" && e.status === status;
    await alice.wait(isPresence("online"), "bob online", timeout);

    step('bob changes his status: {"type":"status","status":"busy","note":"in a meeting"}');
    bob.send({ type: "status", status: "busy", note: "in a meeting" });
    await alice.wait(isPresence("busy"), "bob busy", timeout);

    step('bob changes his status again: {"type":"status","status":"away"}');
    bob.send({ type: "status", status: "away" });
    await alice.wait(isPresence("away"), "bob away", timeout);

    for (const extension of DEMO_EXTENSIONS) {
      await extension({
        alice: { aor: "sip:alice@example.test" },
        bob: { aor: "sip:bob@example.test", contact: bobContact },
        emit: (e) => write(JSON.stringify(e)),
        log: step,
      });
    }

    step("both agents stop: alice unsubscribes, bob ends his watchers' subscriptions");
    const codes = [await alice.stop(), await bob.stop()];
    if (codes.some((c) => c !== 0)) {
      step(`an agent ended with exit code ${codes.join(", ")}`);
      return 1;
    }
    step("done");
    return 0;
  } catch (e) {
    log(`demo: failed: ${(e as Error).message}`);
    await Promise.allSettled(agents.map((a) => a.stop()));
    return 1;
  }
}

if (import.meta.main) Deno.exit(await runDemo());
