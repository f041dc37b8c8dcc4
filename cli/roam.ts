/**
 * `sipkit roam`: watch the host's addresses and report their changes as
 * NDJSON, for pipelines such as `sipkit roam | sipkit register -u alice@example.test`.
 *
 * @module
 */

import { Command } from "@commander-js/extra-typings";
import { type CommandContext, type CommonOptions, runCommand } from "./_common.ts";
import { EXIT } from "./_exit.ts";
import { emitAddressEvent, startMonitor, towardAddresses } from "./_roam.ts";
import { addRoamOptions, type RoamOptions } from "./_roam_options.ts";

/** Builds the `roam` command. */
export function roamCommand(): Command {
  const cmd = new Command("roam")
    .description(
      "Watch the host's addresses and print address_changed (the address used toward the " +
        "registrar or peer changed), address_added and address_lost as NDJSON, until interrupted.",
    );
  addRoamOptions(cmd, false);
  cmd
    .option("--pretty", "human-readable lines on stdout instead of NDJSON")
    .option("-v, --verbose", "more logs on stderr")
    .option("-q, --quiet", "only errors on stderr")
    .addHelpText(
      "after",
      `
Examples:
  sipkit roam
  sipkit roam --toward sip:example.test | sipkit register -u alice@example.test
  sipkit roam --interface wlan0 --toward 192.0.2.10

Events (NDJSON on stdout, each with "type" and "time"):
  roaming          address, interface, family, method ("netlink" or "poll"), toward   (at start)
  address_changed  old, new, interface, family     (the address that matters changed)
  address_added    interface, address, family
  address_lost     interface, address, family

Exit codes: 0 stopped by SIGTERM or a closed stdout, 2 bad usage,
3 --toward cannot be located, 130 interrupted.`,
    )
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)");
  cmd.action(async () => {
    await runCommand<RoamOptions & CommonOptions>(cmd, runRoam);
  });
  return cmd as unknown as Command;
}

async function runRoam(opts: RoamOptions & CommonOptions, ctx: CommandContext): Promise<number> {
  const toward = opts.toward ? await towardAddresses(opts.toward) : undefined;
  const monitor = await startMonitor(ctx, opts, toward, (event) => {
    void emitAddressEvent(ctx, event);
  });
  try {
    const current = monitor.current;
    await ctx.out.emit("roaming", {
      address: current?.address ?? null,
      interface: current?.interface ?? null,
      family: current?.family ?? null,
      method: monitor.method,
      toward: toward ?? null,
    });
    await ctx.stopped;
  } finally {
    await monitor.close();
  }
  return EXIT.OK;
}
