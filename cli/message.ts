/**
 * `sipkit message`: send pager-mode instant messages (RFC 3428), one or a
 * batch from NDJSON on stdin; listen for them; chat with one buddy.
 * The command's options and help; what it does is in `_message.ts`, loaded
 * when it runs (so that `--help` does not load the library).
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { addCommonOptions, intArg } from "./_options.ts";
import { addRoamOptions } from "./_roam_options.ts";

/** Builds the `message` command. */
export function messageCommand(): Command {
  const cmd = new Command("message")
    .description(
      "Send instant messages (SIP MESSAGE, RFC 3428), listen for them, or chat.\n" +
        'Send one:   sipkit message -u alice@example.test bob@example.test "Hello"\n' +
        "            (body from --file, or from stdin when no body argument is given)\n" +
        'Batch:      NDJSON {"type":"send","to":...,"body":...} lines on stdin, no recipient argument\n' +
        "Listen:     sipkit message --listen [--bind host:port] [--register]\n" +
        "Chat:       sipkit message --chat bob@example.test (lines typed are sent)",
    )
    .argument("[to]", "recipient, e.g. bob@example.test or sip:bob@127.0.0.1:5070")
    .argument("[body]", "the message text")
    .option("--file <path>", "read the body from a file")
    .option("--type <mime>", "media type of the body", "text/plain;charset=UTF-8")
    .option("--cpim", "wrap the body in message/cpim (RFC 3862)")
    .option("--subject <text>", "subject (CPIM Subject with --cpim, else a SIP Subject header)")
    .option(
      "--concurrency <n>",
      "batch: messages in flight at once",
      intArg("--concurrency", 1, 1000),
      8,
    )
    .option(
      "--timeout <s>",
      "give up on a message after this many seconds (default: 32, the SIP timer)",
      intArg("--timeout", 1, 3600),
    )
    .option("--listen", "answer MESSAGE requests and print them as `message` events")
    .option("--accept <types>", "listen: comma-separated media types taken (others get 415)")
    .option("--chat <aor>", "chat with one buddy: lines typed are sent, its messages shown")
    .option("--registrar <uri>", "with --register: registrar URI (default: the AOR's domain)")
    .option(
      "--expires <s>",
      "with --register: binding lifetime in seconds",
      intArg("--expires", 60),
      600,
    )
    .addHelpText(
      "after",
      `
Events: sent (to, status, reason, delivered, call_id, id), send_failed (to, status, reason,
error, call_id, id), message (from, to, body or body_base64, content_type, cpim, call_id),
listening, registered, registration_failed.
Exit codes: 0 every message got a 2xx, 1 a final failure, 2 bad usage or input,
3 timeout or network failure.

Examples:
  sipkit message -u alice@example.test bob@example.test "Lunch?"
  sipkit message -u alice@example.test --cpim --subject hi bob@example.test < note.txt
  jq -c '{type:"send",to:.uri,body:"welcome back"}' | sipkit message -u alice@example.test
  sipkit message -u bob@example.test --proxy sip:127.0.0.1:5060 --listen --register`,
    );
  addCommonOptions(cmd, { listens: true });
  addRoamOptions(cmd, true);
  cmd.action(async (to, body) => {
    await (await import("./_message.ts")).runMessageCommand(cmd, to, body);
  });
  return cmd as unknown as Command;
}
