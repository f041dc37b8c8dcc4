/**
 * RFC 3263 server location against a real DNS server: dnsmasq in a network
 * namespace the test creates (with its own /etc/netns/<name>/resolv.conf),
 * sipkit run inside it. The first SRV target is a UDP port where nothing
 * listens; the kernel answers the REGISTER with ICMP port unreachable, and
 * sipkit must fail over to the second SRV target at once (RFC 3261 18.4,
 * RFC 3263 4.3) instead of waiting out timer F (32 s).
 */

import assert from "node:assert/strict";
import { createNetns, ignoreWithoutNetns } from "./peers/netns.ts";
import { type PeerProcess, spawnPeer, withLogsOnFailure } from "./peers/process.ts";
import { requirePeer } from "./peers/require.ts";
import { spawnSipkit, tempSipkitDirs } from "./_sipkit_process.ts";

const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const REGISTRAR = new URL("./peers/mini_registrar.ts", import.meta.url).pathname;

/** Spawns `args` inside `netns` as a peer and waits until its output matches `ready`. */
async function startIn(
  netns: string,
  name: string,
  args: string[],
  ready: RegExp,
): Promise<PeerProcess> {
  let output = "";
  let wake: () => void = () => {};
  const peer = spawnPeer("ip", ["netns", "exec", netns, ...args], {
    name,
    debianPackage: "iproute2",
    onOutput: (text) => {
      output += text;
      wake();
    },
  });
  const deadline = Date.now() + 20_000;
  while (!ready.test(output)) {
    if (peer.hasExited || Date.now() > deadline) {
      await peer.stop();
      throw new Error(`${name} did not start:\n${peer.logs()}`);
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 200);
    });
  }
  return peer;
}

Deno.test({
  name: "register --once fails over from a dead UDP SRV target to the next one at once (dnsmasq)",
  ignore: ignoreWithoutNetns() || !requirePeer("dnsmasq", "dnsmasq-base"),
  fn: async () => {
    const ns = await createNetns("dns");
    const dirs = await tempSipkitDirs();
    const tmp = await Deno.makeTempDir({ prefix: "sipkit-dns-" });
    const peers: PeerProcess[] = [];
    try {
      await ns.writeResolvConf("nameserver 127.0.0.1\n");
      // The namespace is ours alone: fixed ports are free in it.
      const dead = { host: "127.0.0.2", port: 5070 }; // nothing listens here
      const live = { host: "127.0.0.1", port: 5080 };
      peers.push(
        await startIn(ns.name, "dnsmasq", [
          "dnsmasq",
          "--keep-in-foreground",
          "--conf-file=/dev/null",
          "--no-resolv",
          "--no-hosts",
          "--listen-address=127.0.0.1",
          "--bind-interfaces",
          "--port=53",
          `--pid-file=${tmp}/dnsmasq.pid`,
          "--log-queries",
          "--log-facility=-",
          // Names under example.test that are not listed get NXDOMAIN, never forwarded.
          "--local=/example.test/",
          "--naptr-record=example.test,10,10,S,SIP+D2U,,_sip._udp.example.test",
          `--srv-host=_sip._udp.example.test,dead.example.test,${dead.port},10,0`,
          `--srv-host=_sip._udp.example.test,live.example.test,${live.port},20,0`,
          `--host-record=dead.example.test,${dead.host}`,
          `--host-record=live.example.test,${live.host}`,
        ], /started, version/),
      );
      const registrar = await startIn(ns.name, "registrar", [
        Deno.execPath(),
        "run",
        "-A",
        "--config",
        CONFIG,
        REGISTRAR,
        `${live.host}:${live.port}`,
      ], /"type":"listening"/);
      peers.push(registrar);
      const p = spawnSipkit(
        ["register", "-u", "alice@example.test", "--registrar", "sip:example.test", "--once"]
          .concat(["--trace", "-v"]),
        { name: "register", netns: ns.name, env: dirs.env, stdin: false },
      );
      await withLogsOnFailure(peers, async () => {
        // Timer F would take 32 s; this guard fails the test long before.
        const guard = setTimeout(() => p.stop(0), 20_000);
        const code = await p.waitExit();
        clearTimeout(guard);
        const logs = p.logs();
        assert.equal(code, 0, logs);
        const registered = p.events.find((e) => e.type === "registered");
        assert.ok(registered, logs);
        // The REGISTER went to the dead target first, then to the live one,
        // after the transport error that names the ICMP port unreachable.
        const sent = [...logs.matchAll(/>>> sent to udp (\S+) /g)].map((m) => m[1]);
        assert.equal(sent[0], `${dead.host}:${dead.port}`, logs);
        assert.equal(sent.at(-1), `${live.host}:${live.port}`, logs);
        assert.match(logs, /ICMP port unreachable.*trying next target/, logs);
        assert.ok(!/timed out/.test(logs), logs);
        assert.match(registrar.logs(), /"type":"register"/);
        // dnsmasq really answered the NAPTR and SRV queries.
        const dns = peers[0].logs();
        assert.match(dns, /query\[NAPTR\] example\.test/, dns);
        assert.match(dns, /query\[SRV\] _sip\._udp\.example\.test/, dns);
      });
    } finally {
      for (const peer of peers.reverse()) await peer.stop();
      await ns.remove();
      await dirs.cleanup();
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
