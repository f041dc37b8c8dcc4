import assert from "node:assert/strict";
import { type SipkitEvent, spawnSipkit } from "./_sipkit_process.ts";
import { createMobilityNet, ignoreWithoutNetns, SERVER_ADDRESS } from "./peers/mobility_net.ts";

const skip = ignoreWithoutNetns();

const changed = (events: SipkitEvent[]) => events.filter((e) => e.type === "address_changed");

for (const mode of ["netlink", "poll"] as const) {
  Deno.test({
    name: `sipkit roam (${mode}) in a namespace: a docker interface is no move, ` +
      "add-then-remove is one address_changed, and a link going down moves to the other interface",
    ignore: skip,
    sanitizeResources: false,
    fn: async () => {
      const net = await createMobilityNet();
      const args = [
        "roam",
        "--toward",
        SERVER_ADDRESS,
        ...(mode === "poll" ? ["--poll", "100"] : []),
      ];
      const roam = spawnSipkit(args, { netns: net.mobile, stdin: false });
      try {
        const start = await roam.waitEvent((e) => e.type === "roaming");
        assert.equal(start.address, "10.77.1.2");
        assert.equal(start.interface, "ma");
        assert.equal(start.method, mode);

        // A container bridge appears: an address is added, the host did not move.
        await net.inMobile(["link", "add", "dk0", "type", "veth", "peer", "name", "dk1"]);
        await net.inMobile(["addr", "add", "172.30.0.1/24", "dev", "dk0"]);
        await net.inMobile(["link", "set", "dev", "dk0", "up"]);
        await roam.waitEvent((e) => e.type === "address_added" && e.address === "172.30.0.1");

        // Make before break on the same link: new address first, then the old one goes.
        await net.inMobile(["addr", "add", "10.77.1.3/24", "dev", "ma"]);
        await net.inMobile(["addr", "del", "10.77.1.2/24", "dev", "ma"]);
        const moved = await roam.waitEvent((e) => e.type === "address_changed");
        assert.deepEqual(
          [moved.old, moved.new, moved.interface, moved.family],
          ["10.77.1.2", "10.77.1.3", "ma", "IPv4"],
        );
        await roam.waitEvent((e) => e.type === "address_lost" && e.address === "10.77.1.2");
        await roam.waitEvent((e) => e.type === "address_added" && e.address === "10.77.1.3");

        // The wired link goes down: the route to the servers now leaves by mb.
        await net.inMobile(["link", "set", "dev", "ma", "down"]);
        const second = await roam.waitEvent((e) =>
          e.type === "address_changed" && e.new === "10.77.2.2"
        );
        assert.deepEqual([second.old, second.interface], ["10.77.1.3", "mb"]);
        assert.equal(changed(roam.events).length, 2, roam.logs());
        assert.deepEqual(roam.badLines, []);
        assert.equal(await roam.stop(), 0);
      } catch (e) {
        console.error(roam.logs());
        throw e;
      } finally {
        await roam.stop();
        await net.destroy();
      }
    },
  });
}
