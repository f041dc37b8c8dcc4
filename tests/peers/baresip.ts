/**
 * Starts a real baresip (Debian package `baresip`, 1.0.0) on 127.0.0.1 for
 * integration tests and drives it through its ctrl_tcp module (JSON commands
 * and events in netstrings).
 *
 * The config directory is private (config, accounts, contacts written from
 * tests/baresip/config.template). No audio hardware: the audio source is
 * `ausine` (a sine tone) or `aufile` (a WAV file), the player `aubridge` (a
 * sink); codecs g711. With `record`, the `sndfile` module writes what each
 * call sends and receives into the private directory
 * (`dump-<time>-enc.wav` and `dump-<time>-dec.wav`, 8 kHz mono from the
 * codec), read back with {@linkcode Baresip.recordings}.
 * baresip binds SIP on UDP and TCP `sipPort` and TLS on `sipPort + 1`, so the
 * default port comes from `freePortRange(2)`. DNS goes to 127.0.0.1:1 (nothing
 * there) so a test can never query the network; all requests go through the
 * outbound proxy when one is given.
 *
 * What baresip 1.0.0 offers, found by running it here:
 * - ctrl_tcp commands are the menu commands without the slash (`help` lists
 *   them): `dial <uri>`, `accept`, `hangup`, `message <text>` (to the
 *   *current* contact only), `contact_next`, `contact_prev`, `contacts`,
 *   `presence_online`, `presence_offline`, `reginfo`, `listcalls`,
 *   `callstat`, `uanew`, `uadel`, `quit`. Responses are
 *   `{"response":true,"ok":...,"data":"<printed text>","token":...}`.
 * - ctrl_tcp events are UA events only: `REGISTER_OK`/`REGISTER_FAIL`
 *   (class `register`; the first one is emitted before any client can
 *   connect, so start-up polls `reginfo`), `CALL_INCOMING`, `CALL_RINGING`,
 *   `CALL_ESTABLISHED`, `CALL_CLOSED` (class `call`, with `direction`,
 *   `peeruri`, `id`, `param`), `CALL_LOCAL_SDP`/`CALL_REMOTE_SDP` (class
 *   `other`, param `offer`/`answer`).
 * - No event for MESSAGE or presence: an incoming MESSAGE is printed by the
 *   stdio UI as `\r<from>: "<body>"` (so stdio is loaded and stdout read,
 *   line-buffered through stdbuf); contact presence is read from the
 *   `contacts` command (`Unknown`, `Online`, `Offline`, `Busy`...); the result of
 *   a sent MESSAGE is only printed on failure, so it is read from the SIP
 *   trace (`-s`).
 * - Its own presence starts as `<basic>?</basic>` until `presence_online`
 *   or `presence_offline`. It reads PIDF with fixed-prefix patterns
 *   (`<rpid:away/>`, `<rpid:busy/>`, `<rpid:on-the-phone/>`): RPID must use
 *   the `rpid` prefix for baresip to see those activities.
 * - A failed presence subscription is retried only after 30 s: start the
 *   watched party first.
 * - Calls: during a call `help` adds `hold`, `resume`, `reinvite`,
 *   `sndcode <digit>` (DTMF, RFC 4733), `mute`, `transfer`, `callfind`,
 *   `line`. More call events: `CALL_RTCP` (with `rtcp_stats`),
 *   `CALL_RTPESTAB`, `CALL_DTMF_START`/`CALL_DTMF_END`. The codec in use is
 *   only printed in its log (`audio: Set audio encoder: PCMA 8000Hz 1ch`),
 *   see {@linkcode Baresip.encoders}.
 * - `aufile` refuses a WAV whose rate or channels differ from `ausrc_srate`
 *   and `ausrc_channels`: the harness reads them from the file's header.
 *
 * @module
 */

import {
  assertPeer,
  findBinary,
  freePort,
  freePortRange,
  isPortBoundBy,
  waitFor,
} from "./require.ts";
import { isBindFailure, type PeerProcess, spawnPeer } from "./process.ts";

/** A contact of the baresip user (its contacts file). */
export interface BaresipContact {
  /** SIP URI, e.g. `sip:bob@example.test`. */
  uri: string;
  /** Display name. */
  name?: string;
  /** Subscribe to its presence (`;presence=p2p`, default true). */
  presence?: boolean;
}

/** Options of {@linkcode startBaresip}. */
export interface BaresipOptions {
  /** User part of the AOR (default `bob`). */
  user?: string;
  /** Domain of the AOR (default `example.test`). */
  domain?: string;
  /** Digest password (default `<user>-secret`; "" for none). */
  password?: string;
  /**
   * Outbound proxy / registrar as `host:port` (e.g. a Kamailio's `address`).
   * When omitted baresip does not register and sends requests directly.
   */
  proxy?: string;
  /** Register with the proxy (default true when `proxy` is given). */
  register?: boolean;
  /** Registration interval in seconds (default 600). */
  regint?: number;
  /** Publish presence to the proxy (PUBLISH) every this many seconds (default 0: no). */
  pubint?: number;
  /** SIP port on `host` (TLS binds port + 1). Default: a free pair. */
  sipPort?: number;
  /** ctrl_tcp port on 127.0.0.1 (default: a free port). */
  ctrlPort?: number;
  /**
   * The address for SIP and RTP (default 127.0.0.1; with `netns`, an address
   * of that namespace).
   */
  host?: string;
  /**
   * Run inside this network namespace (created by the test; `ip netns
   * exec`). ctrl_tcp then listens on the namespace's own 127.0.0.1 and the
   * harness reaches it through a relay process started in the namespace
   * (`tcp_relay.ts`), so nothing links the namespace to the host's network.
   */
  netns?: string;
  /** Contacts written to the contacts file. */
  contacts?: BaresipContact[];
  /** Answer incoming calls automatically (default false: `manual`). */
  autoAnswer?: boolean;
  /**
   * Audio source as `module,device` (default `ausine,440`, a 440 Hz tone;
   * `aufile,/path/to/file.wav` plays a 16-bit PCM WAV file, whose rate and
   * channels become the source's).
   */
  audioSource?: string;
  /** Record every call's audio with the `sndfile` module (see {@linkcode Baresip.recordings}). */
  record?: boolean;
  /** The account's audio codecs in preference order (`audio_codecs`), e.g. `["PCMU", "PCMA"]`. */
  audioCodecs?: string[];
  /** Presence status to set once started (`presence_online`/`_offline`); baresip's own default is unknown (`<basic>?</basic>`). */
  presence?: "online" | "offline";
  /** Extra lines appended to the config file. */
  extraConfig?: string[];
  /** Start baresip with `-v` (debug output, default false). */
  verbose?: boolean;
  /** Milliseconds to wait for start-up (default 10000). */
  startTimeout?: number;
}

/** One event from baresip's ctrl_tcp (`{"event":true,...}`) as sent. */
export interface BaresipEvent {
  /** Always true for events. */
  event: true;
  /** Event class, e.g. `register`, `call`, `ua`, `application`. */
  class?: string;
  /** Event type, e.g. `REGISTER_OK`, `CALL_INCOMING`, `CALL_ESTABLISHED`, `CALL_CLOSED`. */
  type?: string;
  /** The account's AOR. */
  accountaor?: string;
  /** Call direction (`incoming`/`outgoing`) for call events. */
  direction?: string;
  /** Peer URI for call events. */
  peeruri?: string;
  /** Call id for call events. */
  id?: string;
  /** Free text parameter (status line, reason...). */
  param?: string;
  /** Any other fields. */
  [key: string]: unknown;
}

/** A response to a command (`{"response":true,...}`). */
export interface BaresipResponse {
  /** Whether the command succeeded. */
  ok: boolean;
  /** Text the command printed. */
  data: string;
  /** Token echoed back. */
  token?: string;
}

/** Everything received on ctrl_tcp, in order: events, responses and messages. */
export type BaresipFrame = Record<string, unknown>;

/** A running baresip. */
export interface Baresip {
  /** `sip:<user>@<domain>`. */
  readonly aor: string;
  /** SIP port (UDP and TCP) on its host address. */
  readonly sipPort: number;
  /** `<host>:<sipPort>` (127.0.0.1 unless `host` was given). */
  readonly address: string;
  /** Its contact URI, `sip:<user>@<host>:<sipPort>`. */
  readonly contact: string;
  /** Label for log dumps. */
  readonly name: string;
  /** Process id of baresip (for CPU measurements). */
  readonly pid: number;
  /** The ctrl_tcp client. */
  readonly ctrl: BaresipCtrl;
  /** Every event received so far (frames with `event: true`). */
  readonly events: BaresipEvent[];
  /** Everything baresip printed (stdout and stderr). */
  logs(): string;
  /** Quits baresip (`/quit`, then signals) and removes its directory. */
  stop(): Promise<void>;
  /** Waits for a ctrl_tcp event (shortcut of `ctrl.waitEvent`; `from` defaults to 0). */
  waitEvent(
    predicate: (event: BaresipEvent) => boolean,
    options?: { from?: number; timeout?: number; message?: string },
  ): Promise<BaresipEvent>;
  /** Sends a command through ctrl_tcp (shortcut of `ctrl.command`). */
  command(name: string, params?: string): Promise<BaresipResponse>;
  /** MESSAGEs received so far (parsed from baresip's output). */
  messages(): BaresipMessage[];
  /** Waits for a received MESSAGE matching `predicate`. */
  waitMessage(
    predicate: (message: BaresipMessage) => boolean,
    options?: { timeout?: number },
  ): Promise<BaresipMessage>;
  /**
   * Sends a MESSAGE with `text` to `uri`, which must be one of the contacts
   * given at start (baresip 1.0.0 can only message its current contact: this
   * selects it first with contact_next). Resolves with the final status
   * line baresip printed for it, e.g. `200 OK` or `404 Not Found`.
   */
  sendMessage(uri: string, text: string, options?: { timeout?: number }): Promise<string>;
  /** SIP messages baresip sent and received so far (its `-s` trace). */
  trace(): SipTraceEntry[];
  /** Sets this user's presence (`presence_online` / `presence_offline`). */
  setPresence(status: "online" | "offline"): Promise<void>;
  /** The contacts list with each contact's presence as baresip shows it. */
  contacts(): Promise<BaresipContactStatus[]>;
  /** Waits until contact `uri` shows `status` (e.g. `Online`, `Offline`, `Busy`, `Unknown`). */
  waitContactStatus(uri: string, status: string, options?: { timeout?: number }): Promise<void>;
  /** Dials `uri` (a call through the outbound proxy); returns the ctrl_tcp response. */
  dial(uri: string): Promise<BaresipResponse>;
  /** Answers the incoming call. */
  accept(): Promise<BaresipResponse>;
  /** Hangs up the current call. */
  hangup(): Promise<BaresipResponse>;
  /** Puts the current call on hold (a re-INVITE with `a=sendonly`). */
  hold(): Promise<BaresipResponse>;
  /** Resumes the current call. */
  resume(): Promise<BaresipResponse>;
  /** Sends a re-INVITE for the current call. */
  reinvite(): Promise<BaresipResponse>;
  /** Sends one DTMF digit on the current call (`sndcode`, RFC 4733 events). */
  sendDtmf(digit: string): Promise<BaresipResponse>;
  /** The private config directory (removed by `stop()`). */
  readonly dir: string;
  /**
   * The WAV files `sndfile` wrote so far (with `record`), oldest first:
   * `dec` holds what baresip received, `enc` what it sent. A file is
   * complete once its call has closed.
   */
  recordings(): Promise<BaresipRecording[]>;
  /**
   * Every audio encoder baresip set, in order, from its log (`Set audio
   * encoder: PCMA 8000Hz 1ch` gives `PCMA`): the codec it sends with.
   */
  encoders(): string[];
}

/** One call's recording by baresip's `sndfile` module. */
export interface BaresipRecording {
  /** The time stamp in the file names. */
  stamp: string;
  /** Path of what baresip decoded (received), if written. */
  dec?: string;
  /** Path of what baresip encoded (sent), if written. */
  enc?: string;
}

/** A MESSAGE baresip received (from its output line `<peer>: "<body>"`). */
export interface BaresipMessage {
  /** The sender's URI as baresip printed it. */
  from: string;
  /** The text (single line: baresip prints the body as is). */
  body: string;
}

/** One SIP message from baresip's trace. */
export interface SipTraceEntry {
  /** `UDP`, `TCP` or `TLS`. */
  transport: string;
  /** Source `host:port`. */
  source: string;
  /** Destination `host:port`. */
  destination: string;
  /** The start line. */
  startLine: string;
  /** Request method, for requests. */
  method?: string;
  /** Status code, for responses. */
  status?: number;
  /** Call-ID header value. */
  callId: string;
  /** Method of the CSeq header. */
  cseqMethod: string;
  /** Raw header lines. */
  headers: string[];
  /** Body text. */
  body: string;
}

/** One line of baresip's `contacts` command. */
export interface BaresipContactStatus {
  /** Contact URI. */
  uri: string;
  /** Display name. */
  name: string;
  /** Presence as baresip shows it: `Unknown`, `Online`, `Offline`, `Busy`... */
  status: string;
  /** True for the current contact (the target of `message`). */
  current: boolean;
}

const TEMPLATE = new URL("../baresip/config.template", import.meta.url);

/** Directories where Debian puts baresip's modules. */
const MODULE_DIRS = ["/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules"];

/** Returns baresip's module directory, if found. */
export function baresipModuleDir(): string | undefined {
  for (const dir of MODULE_DIRS) {
    try {
      if (Deno.statSync(`${dir}/ctrl_tcp.so`).isFile) return dir;
    } catch {
      // next
    }
  }
  try {
    for (const entry of Deno.readDirSync("/usr/lib")) {
      const dir = `/usr/lib/${entry.name}/baresip/modules`;
      try {
        if (Deno.statSync(`${dir}/ctrl_tcp.so`).isFile) return dir;
      } catch {
        // next
      }
    }
  } catch {
    // none
  }
  return undefined;
}

/** Encodes one netstring (`<length>:<bytes>,`). */
export function encodeNetstring(payload: string): Uint8Array {
  const body = new TextEncoder().encode(payload);
  const head = new TextEncoder().encode(`${body.length}:`);
  const out = new Uint8Array(head.length + body.length + 1);
  out.set(head, 0);
  out.set(body, head.length);
  out[out.length - 1] = 0x2c; // ","
  return out;
}

/** Incremental netstring decoder: push bytes, get complete payloads. */
export class NetstringDecoder {
  #buffer = new Uint8Array(0);

  /** Appends `chunk` and returns every payload now complete. Throws on a malformed frame. */
  push(chunk: Uint8Array): string[] {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer, 0);
    joined.set(chunk, this.#buffer.length);
    this.#buffer = joined;
    const out: string[] = [];
    while (true) {
      const colon = this.#buffer.indexOf(0x3a);
      if (colon < 0) {
        if (this.#buffer.length > 10) throw new SyntaxError("Cannot parse netstring: no length");
        break;
      }
      const lengthText = new TextDecoder().decode(this.#buffer.subarray(0, colon));
      if (!/^\d+$/.test(lengthText)) {
        throw new SyntaxError(`Cannot parse netstring: bad length "${lengthText}"`);
      }
      const length = Number(lengthText);
      const end = colon + 1 + length;
      if (this.#buffer.length < end + 1) break;
      if (this.#buffer[end] !== 0x2c) {
        throw new SyntaxError("Cannot parse netstring: missing comma");
      }
      out.push(new TextDecoder().decode(this.#buffer.subarray(colon + 1, end)));
      this.#buffer = this.#buffer.slice(end + 1);
    }
    return out;
  }
}

/**
 * The byte stream to ctrl_tcp: a TCP connection, or the stdio of a relay
 * process running inside baresip's network namespace.
 */
export interface BaresipCtrlLink {
  /** Bytes from ctrl_tcp. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to ctrl_tcp. */
  readonly writable: WritableStream<Uint8Array>;
  /** Ends the link (the readable then ends). */
  close(): Promise<void>;
  /** What went wrong on the link, for error messages (e.g. the relay's stderr). */
  diagnostics?(): string;
}

const RELAY = new URL("./tcp_relay.ts", import.meta.url).pathname;

/** Client of baresip's ctrl_tcp module. */
export class BaresipCtrl {
  #link: BaresipCtrlLink;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #decoder = new NetstringDecoder();
  #frames: BaresipFrame[] = [];
  #waiters = new Set<() => void>();
  #nextToken = 1;
  #reader: Promise<void>;
  #closed = false;

  private constructor(link: BaresipCtrlLink) {
    this.#link = link;
    this.#writer = link.writable.getWriter();
    this.#reader = this.#read();
  }

  /** Connects to ctrl_tcp at 127.0.0.1:`port`. */
  static async connect(port: number): Promise<BaresipCtrl> {
    const conn = await Deno.connect({ transport: "tcp", hostname: "127.0.0.1", port });
    return new BaresipCtrl({
      readable: conn.readable,
      writable: conn.writable,
      close() {
        try {
          conn.close();
        } catch {
          // already closed
        }
        return Promise.resolve();
      },
    });
  }

  /**
   * Connects to ctrl_tcp at 127.0.0.1:`port` inside network namespace
   * `netns`, through a relay process started there (`tcp_relay.ts`): the
   * host's network stays out of it.
   */
  static connectInNetns(netns: string, port: number): BaresipCtrl {
    const relay = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        netns,
        Deno.execPath(),
        "run",
        "--quiet",
        "--no-config",
        "--allow-net=127.0.0.1",
        RELAY,
        String(port),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let stderr = "";
    const drainingStderr = (async () => {
      for await (const chunk of relay.stderr.pipeThrough(new TextDecoderStream())) {
        stderr = (stderr + chunk).slice(-4000);
      }
    })().catch(() => {});
    return new BaresipCtrl({
      readable: relay.stdout,
      writable: relay.stdin,
      async close() {
        try {
          relay.kill("SIGTERM");
        } catch {
          // gone already
        }
        await relay.status;
        await drainingStderr;
      },
      diagnostics: () => stderr ? `; the ctrl_tcp relay said: ${stderr.trim()}` : "",
    });
  }

  /** Every frame received so far (events, responses, others), in order. */
  get frames(): readonly BaresipFrame[] {
    return this.#frames;
  }

  /** Every event received so far. */
  get events(): BaresipEvent[] {
    return this.#frames.filter((f) => f.event === true) as BaresipEvent[];
  }

  async #read(): Promise<void> {
    const reader = this.#link.readable.getReader();
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const payload of this.#decoder.push(value)) {
          let frame: BaresipFrame;
          try {
            frame = JSON.parse(payload);
          } catch {
            frame = { unparsed: payload };
          }
          this.#frames.push(frame);
        }
        this.#wake();
      }
    } catch {
      // connection closed or reset
    } finally {
      reader.releaseLock();
      this.#closed = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /**
   * Waits for the first frame at or after index `from` matching `predicate`;
   * returns it. Throws after `timeout` ms (default 5000) or when the
   * connection closes.
   */
  waitFrame(
    predicate: (frame: BaresipFrame) => boolean,
    options: { from?: number; timeout?: number; message?: string } = {},
  ): Promise<BaresipFrame> {
    const from = options.from ?? 0;
    const timeout = options.timeout ?? 5000;
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const check = () => {
        for (let i = from; i < this.#frames.length; i++) {
          if (predicate(this.#frames[i])) {
            done();
            resolve(this.#frames[i]);
            return;
          }
        }
        if (this.#closed) {
          done();
          reject(
            new Error(
              `baresip ctrl_tcp closed while waiting for ${options.message ?? "a frame"}${
                this.#link.diagnostics?.() ?? ""
              }`,
            ),
          );
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      timer = setTimeout(() => {
        done();
        const seen = this.#frames.slice(from).map((f) => JSON.stringify(f)).join("\n");
        reject(
          new Error(
            `Timed out after ${timeout} ms waiting for ${
              options.message ?? "a baresip frame"
            }; received:\n${seen}`,
          ),
        );
      }, timeout);
      this.#waiters.add(check);
      check();
    });
  }

  /** Waits for an event matching `predicate` (from index `from` of all frames). */
  async waitEvent(
    predicate: (event: BaresipEvent) => boolean,
    options: { from?: number; timeout?: number; message?: string } = {},
  ): Promise<BaresipEvent> {
    return await this.waitFrame(
      (f) => f.event === true && predicate(f as BaresipEvent),
      options,
    ) as BaresipEvent;
  }

  /** Index of the next frame to arrive (for `from` in waits). */
  mark(): number {
    return this.#frames.length;
  }

  /**
   * Sends a command (a menu command name without the slash, e.g. `dial`,
   * `message`, `presence_online`) with `params`, and returns its response.
   */
  async command(name: string, params = "", timeout = 5000): Promise<BaresipResponse> {
    const token = `t${this.#nextToken++}`;
    const from = this.mark();
    const payload = JSON.stringify({ command: name, params, token });
    await this.#writer.write(encodeNetstring(payload));
    const frame = await this.waitFrame((f) => f.response === true && f.token === token, {
      from,
      timeout,
      message: `response to ${name} ${params}`,
    });
    return { ok: frame.ok === true, data: String(frame.data ?? ""), token };
  }

  /** Closes the connection and waits for the reader to end. */
  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#link.close();
    await this.#reader;
  }
}

/**
 * Starts baresip with a private config directory and connects to ctrl_tcp.
 * When `proxy` is given and `register` is not false, resolves only after
 * REGISTER_OK.
 */
export async function startBaresip(options: BaresipOptions = {}): Promise<Baresip> {
  // Free ports can be taken between picking and binding: retry with others.
  for (let attempt = 1;; attempt++) {
    try {
      return await startBaresipOnce(options);
    } catch (error) {
      const fixed = options.sipPort !== undefined && options.ctrlPort !== undefined;
      if (fixed || attempt >= 3 || !isBindFailure(error)) throw error;
    }
  }
}

async function startBaresipOnce(options: BaresipOptions): Promise<Baresip> {
  const baresipPath = assertPeer("baresip", "baresip");
  const user = options.user ?? "bob";
  const domain = options.domain ?? "example.test";
  const password = options.password ?? `${user}-secret`;
  const host = options.host ?? "127.0.0.1";
  // A namespace the test created has every port free.
  const sipPort = options.sipPort ?? (options.netns ? 5060 : freePortRange(2));
  let ctrlPort = options.ctrlPort ?? (options.netns ? 4444 : freePort());
  while (ctrlPort === sipPort || ctrlPort === sipPort + 1) ctrlPort = freePort();
  const register = options.proxy !== undefined && options.register !== false;
  const moduleDir = baresipModuleDir() ?? MODULE_DIRS[0];
  const audioSource = options.audioSource ?? "ausine,440";
  const source = await sourceFormat(audioSource);
  const dir = await Deno.makeTempDir({ prefix: `sipkit-baresip-${user}-` });
  let proc: PeerProcess | undefined;
  let ctrl: BaresipCtrl | undefined;
  try {
    const template = await Deno.readTextFile(TEMPLATE);
    const values: Record<string, string> = {
      HOST: host,
      SIP_PORT: String(sipPort),
      CTRL_PORT: String(ctrlPort),
      MODULE_DIR: moduleDir,
      DIR: dir,
      ANSWERMODE: options.autoAnswer ? "auto" : "manual",
      AUDIO_SOURCE: audioSource,
      SRC_RATE: String(source.rate),
      SRC_CHANNELS: String(source.channels),
    };
    let config = template.replace(/%%([A-Z_]+)%%/g, (whole, key: string) => {
      if (!(key in values)) throw new Error(`Unknown placeholder ${whole} in baresip config`);
      return values[key];
    });
    if (options.record) config += `module\t\t\tsndfile.so\nsnd_path\t\t${dir}\n`;
    if (options.extraConfig?.length) config += options.extraConfig.join("\n") + "\n";
    await Deno.writeTextFile(`${dir}/config`, config);

    const params = [
      password ? `auth_pass=${password}` : "",
      options.proxy ? `outbound="sip:${options.proxy}"` : "",
      `regint=${register ? options.regint ?? 600 : 0}`,
      `pubint=${options.pubint ?? 0}`,
      `answermode=${options.autoAnswer ? "auto" : "manual"}`,
      options.audioCodecs?.length ? `audio_codecs=${options.audioCodecs.join(",")}` : "",
      "mwi=no",
    ].filter((p) => p !== "");
    await Deno.writeTextFile(
      `${dir}/accounts`,
      `<sip:${user}@${domain}>;${params.join(";")}\n`,
    );
    const contacts = (options.contacts ?? []).map((c) => {
      const name = c.name ? `"${c.name.replaceAll('"', "")}" ` : "";
      const presence = c.presence === false ? "" : ";presence=p2p";
      return `${name}<${c.uri}>${presence}\n`;
    }).join("");
    await Deno.writeTextFile(`${dir}/contacts`, contacts);

    const name = `baresip ${user}@${domain} ${host}:${sipPort}${
      options.netns ? ` in ${options.netns}` : ""
    }`;
    // -s: SIP trace on stdout (how sendMessage learns the final response).
    const args = ["-f", dir, "-s"];
    if (options.verbose) args.push("-v");
    // Line-buffered stdout through stdbuf (coreutils): baresip prints with
    // stdio, which fully buffers a pipe, and the harness reads that output.
    const stdbuf = findBinary("stdbuf");
    const command = stdbuf ? [stdbuf, "-oL", "-eL", baresipPath, ...args] : [baresipPath, ...args];
    // `ip netns exec` execs baresip (through stdbuf, which execs too): the pid is baresip's.
    if (options.netns) command.unshift("ip", "netns", "exec", options.netns);
    proc = spawnPeer(command[0], command.slice(1), {
      name,
      debianPackage: options.netns && command[0] === "ip" ? "iproute2" : "baresip",
      cwd: dir,
      stdin: "piped",
    });
    const p = proc;
    const startTimeout = options.startTimeout ?? 10_000;
    await waitFor(() => {
      if (p.hasExited) throw new Error("baresip exited during start-up");
      return isPortBoundBy(p.pid, "tcp", ctrlPort) && isPortBoundBy(p.pid, "udp", sipPort);
    }, { timeout: startTimeout, message: `${name} to listen` });
    ctrl = options.netns
      ? BaresipCtrl.connectInNetns(options.netns, ctrlPort)
      : await BaresipCtrl.connect(ctrlPort);
    const c = ctrl;
    if (register) {
      // The first REGISTER goes out before ctrl_tcp has a client, so its
      // event is lost: poll /reginfo instead.
      await waitFor(async () => {
        if (p.hasExited) throw new Error("baresip exited during start-up");
        const info = stripAnsi((await c.command("reginfo")).data);
        return /\bOK\b/.test(info);
      }, { timeout: startTimeout, interval: 50, message: `${name} to register` });
    }
    if (options.presence) {
      await c.command(options.presence === "online" ? "presence_online" : "presence_offline");
    }
    let stopping: Promise<void> | undefined;
    const messages = () => parseMessages(p.logs());
    const contactList = async () => parseContacts((await c.command("contacts")).data);
    const selectContact = async (uri: string) => {
      // contact_next / contact_prev move the cursor without wrapping.
      for (let i = 0; i <= 2 * (options.contacts?.length ?? 0); i++) {
        const list = await contactList();
        const target = list.findIndex((e) => sameUri(e.uri, uri));
        if (target < 0) throw new Error(`${uri} is not a contact of ${name}`);
        const current = list.findIndex((e) => e.current);
        if (current === target) return;
        await c.command(current < target ? "contact_next" : "contact_prev");
      }
      throw new Error(`Cannot select contact ${uri}`);
    };
    return {
      aor: `sip:${user}@${domain}`,
      sipPort,
      address: `${host}:${sipPort}`,
      contact: `sip:${user}@${host}:${sipPort}`,
      name,
      pid: p.pid,
      ctrl: c,
      get events() {
        return c.events;
      },
      logs: () => p.logs(),
      stop() {
        stopping ??= (async () => {
          await shutdown(p, c);
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        })();
        return stopping;
      },
      command: (command, params = "") => c.command(command, params),
      waitEvent: (predicate, opts) => c.waitEvent(predicate, opts),
      messages,
      waitMessage: (predicate, opts = {}) =>
        waitFor(() => messages().find(predicate), {
          timeout: opts.timeout ?? 5000,
          message: `a MESSAGE at ${name}`,
        }),
      async sendMessage(uri, text, opts = {}) {
        if (/[\r\n]/.test(text)) throw new TypeError("baresip sends one line per message");
        await selectContact(uri);
        const seen = new Set(
          parseSipTrace(p.logs()).filter((m) => m.method === "MESSAGE").map((m) => m.callId),
        );
        await c.command("message", text);
        // baresip prints nothing on success: find the request and its final
        // response in the SIP trace (-s).
        return await waitFor(() => {
          const trace = parseSipTrace(p.logs());
          const request = trace.find((m) =>
            m.method === "MESSAGE" && !seen.has(m.callId) && m.body === text
          );
          if (!request) return undefined;
          const final = trace.find((m) =>
            m.status !== undefined && m.status >= 200 && m.status !== 401 &&
            m.status !== 407 && m.callId === request.callId && m.cseqMethod === "MESSAGE"
          );
          return final?.startLine.replace(/^SIP\/2\.0 /, "");
        }, { timeout: opts.timeout ?? 10_000, message: `the result of MESSAGE to ${uri}` });
      },
      trace: () => parseSipTrace(p.logs()),
      async setPresence(status) {
        await c.command(status === "online" ? "presence_online" : "presence_offline");
      },
      contacts: contactList,
      async waitContactStatus(uri, status, opts = {}) {
        await waitFor(async () => {
          const entry = (await contactList()).find((e) => sameUri(e.uri, uri));
          return entry?.status.toLowerCase() === status.toLowerCase();
        }, { timeout: opts.timeout ?? 10_000, interval: 100, message: `${uri} to be ${status}` });
      },
      dial: (uri) => c.command("dial", uri),
      accept: () => c.command("accept"),
      hangup: () => c.command("hangup"),
      hold: () => c.command("hold"),
      resume: () => c.command("resume"),
      reinvite: () => c.command("reinvite"),
      sendDtmf: (digit) => c.command("sndcode", digit),
      dir,
      recordings: () => listRecordings(dir),
      encoders: () => parseEncoders(p.logs()),
    };
  } catch (error) {
    if (proc) {
      await shutdown(proc, ctrl);
      const message = error instanceof Error ? error.message : String(error);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw new Error(`${message}\n----- baresip output -----\n${proc.logs()}`);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function shutdown(proc: PeerProcess, ctrl: BaresipCtrl | undefined): Promise<void> {
  if (ctrl) {
    if (!proc.hasExited) {
      // /quit un-registers and exits; fall back to signals if it does not.
      await ctrl.command("quit", "", 1000).catch(() => {});
    }
    await ctrl.close();
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    proc.exited,
    new Promise((resolve) => timer = setTimeout(resolve, 2000)),
  ]);
  clearTimeout(timer);
  await proc.stop("SIGTERM", 3000);
}

/** Sample rate and channels of an audio source: 48 kHz stereo for ausine, the file's for aufile. */
async function sourceFormat(source: string): Promise<{ rate: number; channels: number }> {
  const comma = source.indexOf(",");
  if (source.slice(0, comma) !== "aufile") return { rate: 48000, channels: 2 };
  const path = source.slice(comma + 1);
  const file = await Deno.open(path);
  try {
    const head = new Uint8Array(4096);
    const n = (await file.read(head)) ?? 0;
    const format = wavFormat(head.subarray(0, n));
    if (!format) throw new Error(`baresip aufile: ${path} is not a WAV file`);
    return format;
  } finally {
    file.close();
  }
}

/** Rate and channels from the `fmt ` chunk of a WAV header, if found. */
export function wavFormat(head: Uint8Array): { rate: number; channels: number } | undefined {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const tag = (at: number) => String.fromCharCode(...head.subarray(at, at + 4));
  if (head.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") return undefined;
  let offset = 12;
  while (offset + 16 <= head.length) {
    const size = view.getUint32(offset + 4, true);
    if (tag(offset) === "fmt ") {
      return {
        channels: view.getUint16(offset + 10, true),
        rate: view.getUint32(offset + 12, true),
      };
    }
    offset += 8 + size + (size & 1);
  }
  return undefined;
}

async function listRecordings(dir: string): Promise<BaresipRecording[]> {
  const byStamp = new Map<string, BaresipRecording>();
  for await (const entry of Deno.readDir(dir)) {
    const match = /^dump-(.+)-(enc|dec)\.wav$/.exec(entry.name);
    if (!match) continue;
    const rec = byStamp.get(match[1]) ?? { stamp: match[1] };
    rec[match[2] as "enc" | "dec"] = `${dir}/${entry.name}`;
    byStamp.set(match[1], rec);
  }
  return [...byStamp.values()].sort((a, b) => a.stamp.localeCompare(b.stamp));
}

/** The audio encoders baresip set, in order, from its output (`Set audio encoder: PCMA ...`). */
export function parseEncoders(output: string): string[] {
  return [...stripAnsi(output).matchAll(/Set audio encoder: (\S+)/g)].map((m) => m[1]);
}

/** Removes ANSI colour sequences from baresip's command output. */
export function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

/** Parses incoming MESSAGE lines (`<uri>: "<body>"`) from baresip's output. */
export function parseMessages(output: string): BaresipMessage[] {
  const out: BaresipMessage[] = [];
  for (const line of stripAnsi(output).split("\n")) {
    // menu prints "\r<peer>: \"<body>\"", usually on a line of its own; its
    // -s trace is written apart, so the print can also land inside a trace
    // line ("UDP 127.0.0.1:41046 -> 127.0.0.1:" + print + "45680" on the next).
    const match = /(sips?:[^\s"]+): "(.*)"\r?$/.exec(line);
    if (match) out.push({ from: match[1], body: match[2] });
  }
  return out;
}

/** Parses the output of baresip's `contacts` command. */
export function parseContacts(output: string): BaresipContactStatus[] {
  const out: BaresipContactStatus[] = [];
  for (const line of stripAnsi(output).split("\n")) {
    const match = /^(>)?\s+(\S+)\s+(.*?)\s*<([^>]+)>/.exec(line);
    if (match) {
      out.push({ current: match[1] === ">", status: match[2], name: match[3], uri: match[4] });
    }
  }
  return out;
}

function sameUri(a: string, b: string): boolean {
  const strip = (u: string) => u.replace(/^<|>$/g, "").split(";")[0].toLowerCase();
  return strip(a) === strip(b);
}

/**
 * Parses baresip's SIP trace (`-s`): blocks of `#`, `<TRANSPORT> <src> -> <dst>`,
 * then the message, ended by an ANSI reset.
 */
export function parseSipTrace(output: string): SipTraceEntry[] {
  const out: SipTraceEntry[] = [];
  // deno-lint-ignore no-control-regex
  const block = /#\r?\n(UDP|TCP|TLS) (\S+) -> (\S+)\r?\n([\s\S]*?)\x1b\[;m/g;
  for (const match of output.matchAll(block)) {
    const text = match[4].replace(/\r\n/g, "\n");
    const split = text.indexOf("\n\n");
    const head = split >= 0 ? text.slice(0, split) : text;
    const body = split >= 0 ? text.slice(split + 2) : "";
    const [startLine, ...headers] = head.split("\n");
    const header = (name: string) => {
      const line = headers.find((h) => h.toLowerCase().startsWith(name.toLowerCase() + ":"));
      return line ? line.slice(line.indexOf(":") + 1).trim() : "";
    };
    const response = /^SIP\/2\.0 (\d{3})/.exec(startLine);
    out.push({
      transport: match[1],
      source: match[2],
      destination: match[3],
      startLine,
      method: response ? undefined : startLine.split(" ")[0],
      status: response ? Number(response[1]) : undefined,
      callId: header("Call-ID") || header("i"),
      cseqMethod: (header("CSeq").split(/\s+/)[1] ?? "").toUpperCase(),
      headers,
      body,
    });
  }
  return out;
}
