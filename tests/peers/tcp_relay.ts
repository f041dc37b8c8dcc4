/**
 * Relays stdin and stdout to a TCP server on 127.0.0.1:<port> (the only
 * argument). A test runs it inside a network namespace (`ip netns exec <ns>
 * deno run --allow-net=127.0.0.1 tcp_relay.ts <port>`) to talk to a server
 * that listens on that namespace's own loopback, such as baresip's ctrl_tcp,
 * without any link between the namespace and the host's network. It exits
 * when either side closes.
 *
 * @module
 */

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: tcp_relay.ts <port>");
  Deno.exit(2);
}
const conn = await Deno.connect({ transport: "tcp", hostname: "127.0.0.1", port });
// Either direction ending ends the relay (pipeTo closes the other end).
await Promise.race([
  Deno.stdin.readable.pipeTo(conn.writable).catch(() => {}),
  conn.readable.pipeTo(Deno.stdout.writable).catch(() => {}),
]);
Deno.exit(0);
