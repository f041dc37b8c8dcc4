/**
 * Runs sipsak (Debian package `sipsak`, 0.9.8.1) for tests.
 *
 * Found on these machines: `sipsak -M` (message mode) crashes with SIGSEGV,
 * so {@linkcode sipsakMessage} sends a MESSAGE written to a file with
 * `sipsak -f FILE -L` instead. sipsak resolves the host of `-s` through DNS
 * (SRV/A) even when an outbound proxy is given, so the `-s` URI must name
 * 127.0.0.1 and the port must go in `-r` (a 5-digit port inside the URI is
 * also mangled in usrloc mode); the domain is then only in the file or in the
 * Request-URI of the server's view (Kamailio's config treats
 * `127.0.0.1:5060` as an alias of its domain for this reason).
 *
 * @module
 */

import { assertPeer } from "./require.ts";
import { spawnPeer } from "./process.ts";

/** Result of a sipsak run. */
export interface SipsakResult {
  /** Exit code: 0 a 2xx (or what the mode counts as success), 1 a non-2xx, 2 no answer, 3 other errors. */
  code: number;
  /** stdout and stderr. */
  output: string;
  /** Status codes of the responses sipsak printed (`-vvv` in usrloc mode, `-vv` otherwise). */
  statuses: number[];
}

/** Runs sipsak with `args` (stdin closed) and returns its result. */
export async function runSipsak(args: string[], timeoutMs = 15_000): Promise<SipsakResult> {
  assertPeer("sipsak", "sipsak");
  const proc = spawnPeer("sipsak", args, { name: "sipsak", debianPackage: "sipsak" });
  const guard = setTimeout(() => void proc.stop("SIGKILL"), timeoutMs);
  try {
    const status = await proc.exited;
    const output = proc.logs();
    const statuses = [...output.matchAll(/^\s*SIP\/2\.0 (\d{3}) /gm)].map((m) => Number(m[1]));
    return { code: status.code, output, statuses };
  } finally {
    clearTimeout(guard);
    await proc.stop();
  }
}

/** Options of {@linkcode sipsakRegister}. */
export interface SipsakRegisterOptions {
  /** User part (the AOR is sip:user@127.0.0.1 from sipsak's side). */
  user: string;
  /** Password for digest (`-a`). */
  password?: string;
  /** Registrar port on 127.0.0.1 (`-r`). */
  port: number;
  /** Expires (`-x`, default 60). */
  expires?: number;
}

/**
 * Usrloc mode (`-U`): registers `user` (digest with `password`), checks the
 * binding, and removes it. Exit code 0 when all steps passed.
 */
export function sipsakRegister(options: SipsakRegisterOptions): Promise<SipsakResult> {
  const args = [
    "-vvv",
    "-U",
    "-s",
    `sip:${options.user}@127.0.0.1`,
    "-r",
    String(options.port),
    "-H",
    "127.0.0.1",
    "-x",
    String(options.expires ?? 60),
  ];
  if (options.password !== undefined) args.push("-a", options.password);
  return runSipsak(args);
}

/** Options of {@linkcode sipsakMessage}. */
export interface SipsakMessageOptions {
  /** Request-URI and To, e.g. `sip:bob@example.test`. */
  to: string;
  /** From URI (default `sip:sipsak@127.0.0.1`). */
  from?: string;
  /** Text body. */
  body: string;
  /** Content-Type (default `text/plain;charset=UTF-8`). */
  contentType?: string;
  /** Where to send it: a port on 127.0.0.1 (a proxy or the UA itself). */
  port: number;
}

/** Sends one MESSAGE with sipsak to 127.0.0.1:`port` and returns the result (statuses with -vv). */
export async function sipsakMessage(options: SipsakMessageOptions): Promise<SipsakResult> {
  const body = new TextEncoder().encode(options.body);
  const from = options.from ?? "sip:sipsak@127.0.0.1";
  for (const v of [options.to, from, options.contentType ?? ""]) {
    if (/[\r\n]/.test(v)) throw new TypeError("Cannot build MESSAGE: CR or LF in a header value");
  }
  const head = [
    `MESSAGE ${options.to} SIP/2.0`,
    `From: <${from}>;tag=${crypto.randomUUID().slice(0, 8)}`,
    `To: <${options.to}>`,
    `Call-ID: ${crypto.randomUUID()}@127.0.0.1`,
    `CSeq: 1 MESSAGE`,
    `Max-Forwards: 70`,
    `Content-Type: ${options.contentType ?? "text/plain;charset=UTF-8"}`,
    `Content-Length: ${body.length}`,
    ``,
    ``,
  ].join("\r\n");
  const file = await Deno.makeTempFile({ prefix: "sipkit-sipsak-", suffix: ".sip" });
  try {
    const bytes = new Uint8Array([...new TextEncoder().encode(head), ...body]);
    await Deno.writeFile(file, bytes);
    return await runSipsak([
      "-vv",
      "-f",
      file,
      "-L",
      "-s",
      "sip:127.0.0.1",
      "-r",
      String(options.port),
      "-H",
      "127.0.0.1",
    ]);
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}
