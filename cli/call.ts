/**
 * `sipkit call`: place a call or answer one, with audio from and to an ALSA
 * device through sox, files, a tone or nothing; NDJSON events out, NDJSON
 * commands in (DTMF, codec change, hold, resume, hang-up).
 * The command's options and help; what it does is in `_call.ts`, loaded
 * when it runs (so that `--help` does not load the SIP stack, the INVITE
 * sessions, RTP or SDP).
 *
 * @module
 */

import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { addCommonOptions, type CommonOptions, intArg } from "./_options.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";

/** Builds the `call` command. */
export function callCommand(): Command {
  const cmd = new Command("call")
    .summary("Place or answer an audio call (INVITE, RTP PCMU/PCMA) through sox/ALSA or files.")
    .description(
      "Place an audio call, or answer one: RTP G.711 (PCMU/PCMA) to and from\n" +
        "an ALSA device through sox, audio files, a tone, or nothing.\n" +
        "Call:    sipkit call [-u alice@example.test] bob@example.test\n" +
        "Answer:  sipkit call --answer [--register] [--auto-answer [s]]",
    )
    .argument("[target]", "who to call, e.g. bob@example.test or sip:bob@127.0.0.1:5070")
    .option("--answer", "wait for a call and answer it (from stdin, or with --auto-answer)")
    .option(
      "--auto-answer [s]",
      "with --answer: answer by itself after this many seconds of ringing (default 0)",
    )
    .option(
      "--device <alsa>",
      "ALSA device for both directions, through sox (default: default, unless --play, --tone or --record is given)",
    )
    .option("--play <file>", "send this audio file (any format sox reads) instead of the device")
    .option("--record <file.wav>", "write what is received to this WAV file instead of the device")
    .option(
      "--tone <Hz>",
      "send a sine tone of this frequency instead of the device",
      floatArg("--tone", 1, 3999),
    )
    .option("--no-audio", "send silence and drop what is received (no sox, no device)")
    .option("--codec <list>", "codecs in preference order", "PCMU,PCMA")
    .option("--duration <s>", "hang up this many seconds after the answer", intArg("--duration", 1))
    .option(
      "--ring-timeout <s>",
      "give up (CANCEL) when the call is not answered within this many seconds",
      intArg("--ring-timeout", 1, 3600),
      180,
    )
    .option(
      "--stats-interval <s>",
      "seconds between stats events",
      intArg("--stats-interval", 1, 3600),
      5,
    )
    .option(
      "--adapt",
      "watch RTCP: sustained loss or jitter changes codec and ptime by re-INVITE, and the jitter buffer",
    )
    .option(
      "--adapt-loss <fraction>",
      "with --adapt: loss fraction that counts as bad (0-1)",
      floatArg("--adapt-loss", 0, 1),
      0.05,
    )
    .option(
      "--adapt-jitter <ms>",
      "with --adapt: jitter in ms that counts as bad",
      floatArg("--adapt-jitter", 0, 10_000),
      40,
    )
    .option(
      "--adapt-interval <s>",
      "with --adapt: least seconds between two changes (of the session, of the jitter buffer)",
      floatArg("--adapt-interval", 0, 3600),
      15,
    )
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
Events: listening, incoming (from, to, call_id, codecs), busy (a second call turned away
with 486: from, to, call_id, codecs, status, current_call_id), calling (to, from, call_id),
ringing (status, early_media), answered (call_id), media (codec, payload_type, ptime,
local_rtp, remote_rtp, direction), codec_changed (codec, previous, payload_type, by),
ptime_changed (ptime, previous, by),
held (by), resumed (by), dtmf (digit, duration_ms, via), stats (packets_sent,
packets_received, lost, loss_fraction, jitter_ms, rtt_ms, mos, ...; final), adapted
(reason, loss_fraction, jitter_ms, local_jitter_ms, codec, previous_codec, ptime,
previous_ptime, jitter_buffer_ms, previous_jitter_buffer_ms, accepted, ...), moved (old, new, redone),
ended (reason, status, phrase, duration, call_id), error; with --roam also
address_changed, address_added, address_lost.
Input (NDJSON on stdin): {"type":"answer"}, {"type":"reject","status":486},
{"type":"dtmf","digits":"12#"}, {"type":"codec","codec":"PCMA","ptime":40}, {"type":"hold"},
{"type":"resume"}, {"type":"hangup"}, {"type":"address_changed","new":"192.0.2.7"}
(the call moves: new RTP socket, re-INVITE with the new Contact and c= line);
codec, hold and resume take "method":"update" to send an UPDATE instead of a re-INVITE.
Exit codes: 0 the call happened and ended normally, 1 rejected (486, 603...),
2 bad usage, 3 no answer or network failure, 130 interrupted (after BYE or CANCEL).

Examples:
  sipkit call -u alice@example.test --proxy sip:pbx.example.test bob@example.test
  sipkit call --answer --register -u bob@example.test --auto-answer 2 --no-audio
  echo '{"type":"dtmf","digits":"1"}' | sipkit call ivr@example.test --play prompt.wav \\
    --record reply.wav --duration 20`,
    );
  addCommonOptions(cmd, { listens: true });
  addRoamOptions(cmd, true);
  cmd.action(async (target) => {
    await (await import("./_call.ts")).runCallCommand(cmd, target);
  });
  return cmd as unknown as Command;
}

/** A parser of a number option between `min` and `max` (a usage error otherwise). */
export function floatArg(name: string, min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n)) {
      throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    }
    if (n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    }
    return n;
  };
}

/** Options of `sipkit call` (besides the common and --roam ones), as commander parses them. */
export type CallOptions = {
  answer?: boolean;
  autoAnswer?: boolean | string;
  device?: string;
  play?: string;
  record?: string;
  tone?: number;
  audio: boolean;
  codec: string;
  duration?: number;
  ringTimeout: number;
  statsInterval: number;
  adapt?: boolean;
  adaptLoss: number;
  adaptJitter: number;
  adaptInterval: number;
  registrar?: string;
  expires: number;
  register?: boolean;
};

/** Every option of `sipkit call` (and of `runCallCommand` in `_call.ts`). */
export type CallCommandOptions = CallOptions & CommonOptions & RoamOptions;
