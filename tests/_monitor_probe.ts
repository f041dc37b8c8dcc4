/**
 * A library {@linkcode AddressMonitor} as a process, for tests that run it
 * inside a network namespace they create (`ip netns exec <ns> deno run -A
 * tests/_monitor_probe.ts ...`): prints its events as NDJSON on stdout, a
 * `method` line whenever its source changes (netlink or poll), and its logs
 * on stderr. Runs until SIGTERM.
 *
 * Arguments: `--toward <ip>`, `--poll <ms>` (the fallback's interval),
 * `--restart <ms>` (see `AddressMonitorOptions.restartMs`), `--no-ffi` (gives up
 * the FFI permission first, so routes are asked through `ip -batch`).
 *
 * @module
 */

import { AddressMonitor } from "../lib/mobility/mod.ts";

function arg(name: string): number | undefined {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : undefined;
}

const encoder = new TextEncoder();
const print = (o: Record<string, unknown>) =>
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(o) + "\n"));

if (Deno.args.includes("--no-ffi")) await Deno.permissions.revoke({ name: "ffi" });
const towardAt = Deno.args.indexOf("--toward");
const monitor = new AddressMonitor({
  toward: towardAt >= 0 ? [Deno.args[towardAt + 1]] : undefined,
  pollMs: arg("--poll"),
  restartMs: arg("--restart"),
  onEvent: (e) => print({ ...e }),
  log: (level, message) => console.error(`${level}: ${message}`),
});
await monitor.start();
print({
  type: "ready",
  address: monitor.current?.address ?? null,
  method: monitor.method,
  route_method: monitor.routeMethod,
});
let method = monitor.method;
const timer = setInterval(() => {
  if (monitor.method === method) return;
  method = monitor.method;
  print({ type: "method", method });
}, 20);
const stop = Promise.withResolvers<void>();
Deno.addSignalListener("SIGTERM", () => stop.resolve());
await stop.promise;
clearInterval(timer);
await monitor.close();
