/**
 * A tiny raw SIP OPTIONS prober used by the harness to know when a peer is
 * ready. It does not depend on sipkit's own stack (lib/sip), so the harness
 * can test the stack without trusting it.
 *
 * @module
 */

/** Options of {@linkcode sipOptionsPing}. */
export interface SipPingOptions {
  /** Request-URI (default `sip:<host>:<port>`). */
  uri?: string;
  /** Milliseconds to wait for a response (default 300). */
  timeout?: number;
}

/**
 * Sends one OPTIONS over UDP from 127.0.0.1 to `host:port` and returns the
 * status code of the first response, or undefined when none arrives in time.
 *
 * @example
 * ```ts ignore
 * const status = await sipOptionsPing("127.0.0.1", 5070); // 200
 * ```
 */
export async function sipOptionsPing(
  host: string,
  port: number,
  options: SipPingOptions = {},
): Promise<number | undefined> {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const local = conn.addr as Deno.NetAddr;
  const uri = options.uri ?? `sip:${host}:${port}`;
  const branch = "z9hG4bK" + crypto.randomUUID().replaceAll("-", "");
  const callId = crypto.randomUUID() + "@sipkit-probe";
  const request = [
    `OPTIONS ${uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${local.port};branch=${branch};rport`,
    `Max-Forwards: 70`,
    `From: <sip:probe@127.0.0.1:${local.port}>;tag=${crypto.randomUUID().slice(0, 8)}`,
    `To: <${uri}>`,
    `Call-ID: ${callId}`,
    `CSeq: 1 OPTIONS`,
    `Contact: <sip:probe@127.0.0.1:${local.port}>`,
    `Accept: application/sdp`,
    `Content-Length: 0`,
    ``,
    ``,
  ].join("\r\n");
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await conn.send(new TextEncoder().encode(request), { transport: "udp", hostname: host, port });
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), options.timeout ?? 300);
    });
    const receive = (async () => {
      while (true) {
        const [data] = await conn.receive();
        const text = new TextDecoder().decode(data);
        if (!text.includes(callId)) continue;
        const match = /^SIP\/2\.0 (\d{3}) /.exec(text);
        if (match) return Number(match[1]);
      }
    })();
    return await Promise.race([receive, timeout]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}
