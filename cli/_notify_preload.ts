/**
 * Every module that `sipkit notify` runs to publish (the static closure of
 * `_notify.ts`: `--publish --once` runs from it alone, and every other mode
 * starts from it too), imported side by side from one module, so that Deno
 * fetches them all at once.
 *
 * As for `_message_preload.ts` (which says why): Deno loads the graph behind
 * an `import()` one import depth per round, and `cli/main.ts` starts this
 * import for a `notify` that runs (not for its help) while commander builds
 * the program.
 *
 * Keep the list equal to the closure: `tests/compile_safety_test.ts` checks
 * it against `deno info` (a module missing here still loads, one round later;
 * a module listed that the command does not use loads for nothing).
 *
 * @module
 */

import "./_common.ts";
import "./_config.ts";
import "./_exit.ts";
import "./_io.ts";
import "./_notify.ts";
import "./_options.ts";
import "./_ua.ts";
import "../lib/presence/_xml.ts";
import "../lib/presence/_xpidf.ts";
import "../lib/presence/pidf.ts";
import "../lib/presence/publish.ts";
import "../lib/presence/status.ts";
import "../lib/presence/user_status.ts";
import "../lib/sip/_net.ts";
import "../lib/sip/_random.ts";
import "../lib/sip/_scan.ts";
import "../lib/sip/clock.ts";
import "../lib/sip/dialog_id.ts";
import "../lib/sip/errors.ts";
import "../lib/sip/events/headers.ts";
import "../lib/sip/header_values.ts";
import "../lib/sip/headers.ts";
import "../lib/sip/input.ts";
import "../lib/sip/message.ts";
import "../lib/sip/outbound.ts";
import "../lib/sip/sockets.ts";
import "../lib/sip/status.ts";
import "../lib/sip/stream_limits.ts";
import "../lib/sip/transaction/_context.ts";
import "../lib/sip/transaction/branch.ts";
import "../lib/sip/transaction/build.ts";
import "../lib/sip/transaction/client_invite.ts";
import "../lib/sip/transaction/client_non_invite.ts";
import "../lib/sip/transaction/client_transaction.ts";
import "../lib/sip/transaction/layer.ts";
import "../lib/sip/transaction/types.ts";
import "../lib/sip/transport_layer.ts";
import "../lib/sip/transport_udp.ts";
import "../lib/sip/ua.ts";
import "../lib/sip/uri.ts";
import "../lib/version.ts";
