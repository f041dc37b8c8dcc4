/**
 * The test bed of the mobility tests: the two namespaces of
 * `tests/peers/mobility_net.ts` (a mobile host and a server namespace joined
 * by two veth pairs), optionally Kamailio in the server namespace, a private
 * directory, and lists of what the test starts (sipkit processes, baresips,
 * captures). Whatever happens, everything is stopped and the namespaces and
 * the directory are removed; on failure the logs are printed first.
 *
 * @module
 */

import type { SipkitProcess } from "./_sipkit_process.ts";
import { type Baresip, type BaresipOptions, startBaresip } from "./peers/baresip.ts";
import type { Capture } from "./peers/capture.ts";
import { type Kamailio, type KamailioOptions, startKamailio } from "./peers/kamailio.ts";
import { createMobilityNet, type MobilityNet, SERVER_ADDRESS } from "./peers/mobility_net.ts";

/** baresip's SIP port in the server namespace (Kamailio has 5060 there). */
export const BARESIP_PORT = 5070;

/** What a mobility test runs in. */
export interface MobilityBed {
  /** The namespaces. */
  net: MobilityNet;
  /** Kamailio at SERVER_ADDRESS:5060 in the server namespace, unless the bed was made without. */
  k?: Kamailio;
  /** Environment for sipkit processes (private config and state directories). */
  env: Record<string, string>;
  /** A private directory, removed at the end. */
  dir: string;
  /** sipkit processes to stop at the end (and whose logs to print on failure). */
  procs: SipkitProcess[];
  /** baresips to stop at the end. */
  baresips: Baresip[];
  /** Captures to stop at the end. */
  captures: Capture[];
}

/**
 * Runs `fn` in a new bed; `kamailio` (default `{}`: a registrar) gives the
 * options of the Kamailio started in the server namespace, `false` none.
 */
export async function withMobilityBed(
  kamailio: Omit<KamailioOptions, "netns" | "host"> | false,
  fn: (bed: MobilityBed) => Promise<void>,
): Promise<void> {
  const net = await createMobilityNet();
  const dir = await Deno.makeTempDir({ prefix: "sipkit-mobility-" });
  const bed: MobilityBed = {
    net,
    env: { SIPKIT_CONFIG_DIR: `${dir}/config`, SIPKIT_STATE_DIR: `${dir}/state` },
    dir,
    procs: [],
    baresips: [],
    captures: [],
  };
  try {
    if (kamailio) {
      bed.k = await startKamailio({ netns: net.server, host: SERVER_ADDRESS, ...kamailio });
    }
    await fn(bed);
  } catch (e) {
    for (const p of bed.procs) console.error(`----- ${p.name} -----\n${p.logs().slice(-8000)}`);
    for (const b of bed.baresips) console.error(`----- ${b.name} -----\n${b.logs().slice(-12000)}`);
    if (bed.k) console.error(`----- ${bed.k.name} -----\n${bed.k.logs().slice(-6000)}`);
    throw e;
  } finally {
    for (const p of bed.procs) await p.stop();
    for (const b of bed.baresips) await b.stop();
    for (const c of bed.captures) await c.stop().catch(() => {});
    await bed.k?.stop();
    await net.destroy();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * bob as a baresip in the server namespace at SERVER_ADDRESS:BARESIP_PORT
 * (no password, PCMU), stopped with the bed.
 */
export async function baresipInServer(
  bed: MobilityBed,
  options: BaresipOptions = {},
): Promise<Baresip> {
  const b = await startBaresip({
    netns: bed.net.server,
    host: SERVER_ADDRESS,
    sipPort: BARESIP_PORT,
    user: "bob",
    password: "",
    audioCodecs: ["PCMU"],
    ...options,
  });
  bed.baresips.push(b);
  return b;
}
