/**
 * A minimal registrar on sipkit's own stack, for tests that need a live
 * registrar where Kamailio's harness cannot go (inside a network namespace):
 * `deno run -A tests/peers/mini_registrar.ts <host:port>` binds UDP there,
 * answers every REGISTER with 200 (the request's contacts, `expires=60`),
 * and prints one JSON line per event on stdout: `{"type":"listening"}`, then
 * `{"type":"register","contact":[...]}` for each REGISTER.
 *
 * @module
 */

import { formatNameAddr } from "../../lib/sip/message.ts";
import { UserAgent } from "../../lib/sip/ua.ts";

if (import.meta.main) {
  const bind = Deno.args[0];
  if (!bind) {
    console.error("usage: mini_registrar.ts <host:port>");
    Deno.exit(2);
  }
  const ua = await UserAgent.create({ bind, listen: ["udp"], aor: "registrar@example.test" });
  const print = (event: Record<string, unknown>) => console.log(JSON.stringify(event));
  ua.handle("REGISTER", (incoming) => {
    const contacts = incoming.request.contact.map((c) =>
      formatNameAddr({ ...c, params: { ...c.params, expires: "60" } })
    );
    print({ type: "register", contact: contacts });
    return incoming.respond(200, {
      headers: contacts.map((c) => ["Contact", c] as [string, string]),
    });
  });
  print({ type: "listening", port: ua.transports[0].local.port });
  Deno.addSignalListener("SIGTERM", () => ua.close().then(() => Deno.exit(0)));
}
