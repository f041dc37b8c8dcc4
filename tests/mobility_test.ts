import assert from "node:assert/strict";
import { ManualClock } from "../lib/sip/clock.ts";
import {
  type AddressChangeHandler,
  type AddressEvent,
  AddressMonitor,
  type EndingAddressSource,
  type InterfaceAddress,
  IpBatchRoutes,
  IpMonitorSource,
  ipRouteGet,
  parseIpAddressLine,
  parseRouteGet,
  PollingSource,
  type RouteInfo,
  socketRouteLookup,
} from "../lib/mobility/mod.ts";
import { createNetns, ignoreWithoutNetns } from "./peers/netns.ts";
import { assertPeer, requirePeer } from "./peers/require.ts";

Deno.test("parseIpAddressLine() reads ip -o monitor address lines", async (t) => {
  const cases: [string, string, ReturnType<typeof parseIpAddressLine>][] = [
    [
      "added IPv4",
      "3: va    inet 10.9.0.2/24 scope global va\\       valid_lft forever preferred_lft forever",
      {
        kind: "added",
        address: { interface: "va", address: "10.9.0.2", family: "IPv4", prefix: 24 },
        usable: true,
      },
    ],
    [
      "deleted secondary",
      "Deleted 3: va    inet 10.9.0.3/24 scope global secondary va\\       valid_lft forever",
      {
        kind: "deleted",
        address: {
          interface: "va",
          address: "10.9.0.3",
          family: "IPv4",
          prefix: 24,
          secondary: true,
        },
        usable: true,
      },
    ],
    [
      "IPv6 global, [ADDR] prefix, veth peer suffix",
      "[ADDR]5: eth0@if6    inet6 FD00::5/64 scope global nodad \\       valid_lft forever",
      {
        kind: "added",
        address: { interface: "eth0", address: "fd00::5", family: "IPv6", prefix: 64 },
        usable: true,
      },
    ],
    [
      "IPv6 tentative is not usable yet",
      "3: va    inet6 fd00::6/64 scope global tentative \\       valid_lft forever",
      {
        kind: "added",
        address: { interface: "va", address: "fd00::6", family: "IPv6", prefix: 64 },
        usable: false,
      },
    ],
    [
      "link-local is not usable",
      "3: va    inet6 fe80::c0a6:4fff:fe48:99c3/64 scope link \\       valid_lft forever",
      {
        kind: "added",
        address: {
          interface: "va",
          address: "fe80::c0a6:4fff:fe48:99c3",
          family: "IPv6",
          prefix: 64,
        },
        usable: false,
      },
    ],
    [
      "loopback is not usable",
      "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
      {
        kind: "added",
        address: { interface: "lo", address: "127.0.0.1", family: "IPv4", prefix: 8 },
        usable: false,
      },
    ],
    ["a route line", "10.9.0.0/24 dev va proto kernel scope link src 10.9.0.2", undefined],
    ["garbage", "3: va inet not-an-address/24", undefined],
    ["empty", "", undefined],
  ];
  for (const [name, line, want] of cases) {
    await t.step(name, () => assert.deepEqual(parseIpAddressLine(line), want));
  }
});

Deno.test("parseRouteGet() reads the source and device of ip -o route get", () => {
  assert.deepEqual(parseRouteGet("10.9.0.77 dev va src 10.9.0.3 uid 0 \\    cache "), {
    source: "10.9.0.3",
    interface: "va",
  });
  assert.deepEqual(
    parseRouteGet("fd00::9 from :: dev va proto kernel src FD00::5 metric 256 pref medium"),
    { source: "fd00::5", interface: "va" },
  );
  assert.equal(parseRouteGet("RTNETLINK answers: Network is unreachable"), undefined);
});

const addr = (address: string, name = "eth0", secondary = false): InterfaceAddress => ({
  interface: name,
  address,
  family: address.includes(":") ? "IPv6" : "IPv4",
  prefix: address.includes(":") ? 64 : 24,
  ...(secondary ? { secondary } : {}),
});

/** The address_changed event of an IPv4 move from `old` to `now` on `iface`. */
function moved(old: string, now: string, iface: string): AddressEvent {
  return { type: "address_changed", old, new: now, interface: iface, family: "IPv4" };
}

/** A monitor on a scripted source and a scripted route table, on a manual clock. */
class Bed {
  readonly clock = new ManualClock();
  readonly events: AddressEvent[] = [];
  /** Destination -> route answer. */
  routes = new Map<string, RouteInfo | undefined>();
  lookups = 0;
  push: AddressChangeHandler = () => {};
  monitor: AddressMonitor;

  constructor(
    initial: InterfaceAddress[],
    options: { toward?: string[]; interface?: string; route?: boolean } = {},
  ) {
    this.monitor = new AddressMonitor({
      clock: this.clock,
      debounceMs: 50,
      toward: options.toward ?? ["10.0.0.1"],
      interface: options.interface,
      source: {
        kind: "netlink",
        start: (on) => {
          this.push = on;
          return Promise.resolve(initial);
        },
        close: () => Promise.resolve(),
      },
      route: (dest) => {
        this.lookups++;
        return Promise.resolve(options.route === false ? undefined : this.routes.get(dest));
      },
      onEvent: (e) => this.events.push(e),
    });
  }

  add(a: InterfaceAddress): void {
    this.push([{ kind: "added", address: a, usable: true }]);
  }

  remove(a: InterfaceAddress): void {
    this.push([{ kind: "deleted", address: a, usable: true }]);
  }

  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    await this.monitor.idle();
  }

  changed(): AddressEvent[] {
    return this.events.filter((e) => e.type === "address_changed");
  }
}

Deno.test("AddressMonitor: add-then-remove within the debounce gives one address_changed", async () => {
  const bed = new Bed([addr("10.0.0.2")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  assert.equal(bed.monitor.current?.address, "10.0.0.2");
  bed.lookups = 0;
  bed.add(addr("10.0.0.3", "eth0", true));
  await bed.advance(10);
  bed.routes.set("10.0.0.1", { source: "10.0.0.3", interface: "eth0" });
  bed.remove(addr("10.0.0.2"));
  await bed.advance(49);
  assert.equal(bed.changed().length, 0, "still debouncing");
  await bed.advance(1);
  assert.deepEqual(bed.events, [
    { type: "address_added", interface: "eth0", address: "10.0.0.3", family: "IPv4" },
    { type: "address_lost", interface: "eth0", address: "10.0.0.2", family: "IPv4" },
    moved("10.0.0.2", "10.0.0.3", "eth0"),
  ]);
  assert.equal(bed.lookups, 1, "one route look-up for the whole move");
  await bed.monitor.close();
});

Deno.test("AddressMonitor: add, wait, remove (slower than the debounce) still gives one address_changed", async () => {
  const bed = new Bed([addr("10.0.0.2")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.add(addr("10.0.0.3", "eth0", true));
  await bed.advance(1000); // the secondary does not take the route: no change
  assert.equal(bed.changed().length, 0);
  bed.routes.set("10.0.0.1", { source: "10.0.0.3", interface: "eth0" }); // promoted
  bed.remove(addr("10.0.0.2"));
  await bed.advance(50);
  assert.equal(bed.changed().length, 1);
  assert.equal(bed.monitor.current?.address, "10.0.0.3");
  await bed.monitor.close();
});

Deno.test("AddressMonitor: remove-then-add reports one change from the old address, none while without", async () => {
  const bed = new Bed([addr("10.0.0.2")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.routes.delete("10.0.0.1"); // network unreachable
  bed.remove(addr("10.0.0.2"));
  await bed.advance(2000);
  assert.equal(bed.changed().length, 0, "no usable address: nothing to move to yet");
  bed.routes.set("10.0.0.1", { source: "10.0.1.9", interface: "eth1" });
  bed.add(addr("10.0.1.9", "eth1"));
  await bed.advance(50);
  assert.deepEqual(bed.changed(), [
    moved("10.0.0.2", "10.0.1.9", "eth1"),
  ]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: a new docker or VPN interface is not a move", async () => {
  const bed = new Bed([addr("10.0.0.2")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.add(addr("172.17.0.1", "docker0"));
  bed.add(addr("10.8.0.6", "tun0"));
  await bed.advance(100);
  assert.deepEqual(bed.events.map((e) => e.type), ["address_added", "address_added"]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: losing the secondary address in use is a move", async () => {
  const bed = new Bed([addr("10.0.0.2"), addr("10.0.5.7", "eth0", true)]);
  // A more specific route uses the secondary address toward the registrar.
  bed.routes.set("10.0.0.1", { source: "10.0.5.7", interface: "eth0" });
  await bed.monitor.start();
  assert.equal(bed.monitor.current?.address, "10.0.5.7");
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  bed.remove(addr("10.0.5.7", "eth0", true));
  await bed.advance(50);
  assert.deepEqual(bed.changed(), [
    moved("10.0.5.7", "10.0.0.2", "eth0"),
  ]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: a route change alone (link down) is looked at too", async () => {
  const bed = new Bed([addr("10.0.0.2"), addr("10.0.1.2", "wlan0")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.routes.set("10.0.0.1", { source: "10.0.1.2", interface: "wlan0" });
  bed.push([]); // a route line from ip monitor
  await bed.advance(50);
  assert.deepEqual(bed.changed(), [
    moved("10.0.0.2", "10.0.1.2", "wlan0"),
  ]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: a move between IPv4 and IPv6 is like any other", async () => {
  const bed = new Bed([addr("10.0.0.2")], { toward: ["10.0.0.1", "fd00::1"] });
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.routes.delete("10.0.0.1");
  bed.routes.set("fd00::1", { source: "fd00::5", interface: "eth0" });
  bed.add(addr("fd00::5"));
  bed.remove(addr("10.0.0.2"));
  await bed.advance(50);
  assert.deepEqual(bed.changed(), [
    { type: "address_changed", old: "10.0.0.2", new: "fd00::5", interface: "eth0", family: "IPv6" },
  ]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: --interface limits the events and the address that matters", async () => {
  const bed = new Bed([addr("10.0.0.2"), addr("10.0.1.2", "wlan0")], { interface: "wlan0" });
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  assert.equal(
    bed.monitor.current?.address,
    "10.0.1.2",
    "the route uses eth0: wlan0's own address",
  );
  bed.add(addr("10.0.0.3", "eth0"));
  bed.add(addr("10.0.1.3", "wlan0", true));
  bed.remove(addr("10.0.1.2", "wlan0"));
  await bed.advance(50);
  assert.deepEqual(bed.events, [
    { type: "address_added", interface: "wlan0", address: "10.0.1.3", family: "IPv4" },
    { type: "address_lost", interface: "wlan0", address: "10.0.1.2", family: "IPv4" },
    moved("10.0.1.2", "10.0.1.3", "wlan0"),
  ]);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: without route answers, keeps the current address while it exists", async () => {
  const bed = new Bed([addr("10.0.0.2")], { route: false, toward: ["10.0.0.1"] });
  // The route lookup answers nothing (no `ip`): the monitor chooses among its addresses.
  await bed.monitor.start();
  assert.ok(bed.monitor.current);
  const first = bed.monitor.current.address;
  bed.add(addr("172.17.0.1", "docker0"));
  await bed.advance(50);
  assert.equal(bed.monitor.current?.address, first);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: changes that never stop are looked at after maxWaitMs", async () => {
  const bed = new Bed([addr("10.0.0.2")]);
  bed.routes.set("10.0.0.1", { source: "10.0.0.2", interface: "eth0" });
  await bed.monitor.start();
  bed.routes.set("10.0.0.1", { source: "10.0.0.9", interface: "eth0" });
  for (let i = 0; i < 20; i++) {
    bed.add(addr(`10.0.3.${i}`, "flap0"));
    await bed.advance(40);
  }
  assert.equal(bed.changed().length, 1, "looked at within 500 ms despite the churn");
  await bed.monitor.close();
});

Deno.test("AddressMonitor on a PollingSource notices a move between polls", async () => {
  const clock = new ManualClock();
  let now = [addr("10.0.0.2")];
  let src = "10.0.0.2";
  const events: AddressEvent[] = [];
  const monitor = new AddressMonitor({
    clock,
    toward: ["10.0.0.1"],
    source: new PollingSource({ clock, intervalMs: 200, read: () => now }),
    route: () => Promise.resolve({ source: src, interface: "eth0" }),
    onEvent: (e) => events.push(e),
  });
  await monitor.start();
  now = [addr("10.0.0.7")];
  src = "10.0.0.7";
  clock.advance(199);
  await monitor.idle();
  assert.equal(events.length, 0);
  clock.advance(1);
  clock.advance(50);
  await monitor.idle();
  assert.deepEqual(events.map((e) => e.type), ["address_lost", "address_added", "address_changed"]);
  await monitor.close();
  assert.equal(clock.pending, 0, "no timer left after close");
});

/** An event-driven source the test ends at will, as `ip monitor` when its child dies. */
class FakeEventSource implements EndingAddressSource {
  readonly kind = "netlink" as const;
  push: AddressChangeHandler = () => {};
  closed = false;
  #ended = Promise.withResolvers<void>();
  #initial: () => InterfaceAddress[];

  constructor(initial: () => InterfaceAddress[]) {
    this.#initial = initial;
  }

  get ended(): Promise<void> {
    return this.#ended.promise;
  }

  start(on: AddressChangeHandler): Promise<InterfaceAddress[]> {
    this.push = on;
    return Promise.resolve(this.#initial());
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** The child died. */
  die(): void {
    this.#ended.resolve();
  }
}

/**
 * A monitor whose event-driven source is a {@linkcode FakeEventSource} (one
 * per start), whose fallback polls a scripted interface list, on a manual clock.
 */
class FallbackBed {
  readonly clock = new ManualClock();
  readonly events: AddressEvent[] = [];
  readonly logs: [string, string][] = [];
  readonly sources: FakeEventSource[] = [];
  /** The interface list polling reads; also what a new event source starts with. */
  now: InterfaceAddress[];
  /** The route's source address toward the registrar. */
  src: string;
  reads = 0;
  /** Makes the next starts of the event source fail (as a missing `ip`). */
  failStarts = false;
  starts: number[] = [];
  monitor: AddressMonitor;

  constructor(first: string, options: { pollMs: number; restartMs?: number }) {
    this.now = [addr(first)];
    this.src = first;
    this.monitor = new AddressMonitor({
      clock: this.clock,
      debounceMs: 20,
      toward: ["10.0.0.1"],
      pollMs: options.pollMs,
      restartMs: options.restartMs,
      pollRead: () => (this.reads++, this.now),
      eventSource: () => {
        this.starts.push(this.clock.now());
        if (this.failStarts) throw new Error("ip: not found");
        const s = new FakeEventSource(() => this.now);
        this.sources.push(s);
        return s;
      },
      route: () => Promise.resolve({ source: this.src, interface: "eth0" }),
      onEvent: (e) => this.events.push(e),
      log: (level, message) => this.logs.push([level, message]),
    });
  }

  /** Moves the host: the new address in the list and in the route. */
  move(to: string): void {
    this.now = [addr(to)];
    this.src = to;
  }

  async advance(ms: number): Promise<void> {
    this.clock.advance(ms);
    await settle();
    await this.monitor.idle();
  }

  changed(): string[] {
    return this.events.filter((e) => e.type === "address_changed").map((e) =>
      `${(e as { old: string }).old}->${(e as { new: string }).new}`
    );
  }

  warnings(): string[] {
    return this.logs.filter(([l]) => l === "warn").map(([, m]) => m);
  }
}

/** Lets pending promise callbacks run (the monitor's switch of source is asynchronous). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("AddressMonitor: when ip monitor ends it polls at once, says so once, and keeps reporting moves", async () => {
  const bed = new FallbackBed("10.0.0.2", { pollMs: 200, restartMs: 0 });
  await bed.monitor.start();
  assert.equal(bed.monitor.method, "netlink");
  assert.equal(bed.reads, 0, "no polling while ip monitor runs");
  bed.sources[0].die();
  await settle();
  assert.equal(bed.monitor.method, "poll");
  assert.ok(bed.sources[0].closed, "the dead source is closed");
  assert.equal(bed.warnings().length, 1, JSON.stringify(bed.logs));
  assert.match(bed.warnings()[0], /ip monitor ended; polling the interface list every 200 ms/);

  bed.move("10.0.0.3");
  await bed.advance(200); // the next poll sees it
  await bed.advance(20); // the debounce
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.3"]);
  bed.move("10.0.0.4");
  await bed.advance(220);
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.3", "10.0.0.3->10.0.0.4"]);

  // No busy loop: one poll per interval, one timer pending, nothing more said.
  const reads = bed.reads;
  await bed.advance(10_000);
  assert.equal(bed.reads - reads, 50, "one read per 200 ms");
  assert.equal(bed.clock.pending, 1, "only the poll timer");
  assert.equal(bed.warnings().length, 1, "said once");
  assert.equal(bed.starts.length, 1, "restartMs 0: never started again");
  await bed.monitor.close();
  assert.equal(bed.clock.pending, 0, "no timer left after close");
});

Deno.test("AddressMonitor: ip monitor is started again after restartMs; what changed meanwhile is reported", async () => {
  const bed = new FallbackBed("10.0.0.2", { pollMs: 5000, restartMs: 1000 });
  await bed.monitor.start();
  bed.sources[0].die();
  await settle();
  assert.equal(bed.monitor.method, "poll");
  assert.match(bed.warnings()[0], /trying it again in 1 s/);
  await bed.advance(20); // the look after the switch: nothing changed
  assert.equal(bed.events.length, 0);
  // A move the (slow) poll has not seen yet when ip monitor comes back.
  bed.move("10.0.0.9");
  await bed.advance(979);
  assert.equal(bed.sources.length, 1);
  await bed.advance(1);
  assert.equal(bed.sources.length, 2, "started again");
  assert.equal(bed.monitor.method, "netlink");
  await bed.advance(20);
  assert.deepEqual(bed.events.map((e) => e.type), [
    "address_lost",
    "address_added",
    "address_changed",
  ]);
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.9"]);
  assert.ok(bed.logs.some(([l, m]) => l === "info" && /ip monitor running again/.test(m)));
  assert.equal(bed.clock.pending, 0, "polling stopped, no restart pending");
  const reads = bed.reads;
  await bed.advance(20_000);
  assert.equal(bed.reads, reads, "no polling once ip monitor runs again");

  // The new source reports moves as the first did.
  bed.src = "10.0.0.10";
  bed.sources[1].push([{ kind: "added", address: addr("10.0.0.10"), usable: true }]);
  await bed.advance(20);
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.9", "10.0.0.9->10.0.0.10"]);
  await bed.monitor.close();
  assert.ok(bed.sources[1].closed);
});

Deno.test("AddressMonitor: tries to start ip monitor again back off while it cannot start", async () => {
  const bed = new FallbackBed("10.0.0.2", { pollMs: 1000, restartMs: 1000 });
  await bed.monitor.start();
  bed.failStarts = true;
  const diedAt = bed.clock.now();
  bed.sources[0].die();
  await settle();
  await bed.advance(70_000);
  assert.deepEqual(
    bed.starts.slice(1).map((t) => t - diedAt),
    [1000, 3000, 7000, 15000, 31000, 63000],
    "1, 2, 4, 8, 16, 32 s apart",
  );
  assert.equal(bed.monitor.method, "poll");
  assert.equal(bed.warnings().length, 1, "the failed tries are not warnings");
  // Polling goes on meanwhile.
  bed.move("10.0.0.5");
  await bed.advance(1020);
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.5"]);
  bed.failStarts = false;
  await bed.advance(64_000);
  assert.equal(bed.monitor.method, "netlink", "running again once it can");
  await bed.advance(20);
  assert.equal(bed.clock.pending, 0);
  await bed.monitor.close();
});

Deno.test("AddressMonitor: a source that ends again soon after its restart backs off; close stops everything", async () => {
  const bed = new FallbackBed("10.0.0.2", { pollMs: 1000, restartMs: 500 });
  await bed.monitor.start();
  bed.sources[0].die();
  await settle();
  await bed.advance(500);
  assert.equal(bed.monitor.method, "netlink");
  bed.sources[1].die(); // ends again at once: the next wait is doubled
  await settle();
  assert.equal(bed.monitor.method, "poll");
  assert.match(bed.warnings()[1], /trying it again in 1 s/);
  await bed.advance(999);
  assert.equal(bed.sources.length, 2);
  await bed.advance(1);
  assert.equal(bed.sources.length, 3);
  assert.equal(bed.monitor.method, "netlink");
  bed.sources[2].die();
  await settle();
  await bed.monitor.close();
  assert.equal(bed.clock.pending, 0, "neither the poll timer nor a restart left");
  await bed.advance(10_000);
  assert.equal(bed.sources.length, 3, "nothing started after close");
});

Deno.test("AddressMonitor: without ip at all it polls from the start and never tries again", async () => {
  const bed = new FallbackBed("10.0.0.2", { pollMs: 300, restartMs: 1000 });
  bed.failStarts = true;
  await bed.monitor.start();
  assert.equal(bed.monitor.method, "poll");
  assert.equal(bed.monitor.current?.address, "10.0.0.2");
  bed.move("10.0.0.3");
  await bed.advance(320);
  assert.deepEqual(bed.changed(), ["10.0.0.2->10.0.0.3"]);
  await bed.advance(120_000);
  assert.equal(bed.starts.length, 1);
  assert.deepEqual(bed.logs.filter(([l]) => l !== "debug").map(([l]) => l), ["info"]);
  await bed.monitor.close();
});

Deno.test({
  name: "IpMonitorSource: its ended promise resolves when the ip monitor child is killed",
  ignore: !requirePeer("ip", "iproute2"),
  fn: async () => {
    assertPeer("ip", "iproute2");
    // Only watches the host's addresses (netlink), sends nothing.
    const source = new IpMonitorSource();
    const first = await source.start(() => {});
    assert.ok(Array.isArray(first));
    assert.ok(source.pid !== undefined);
    let ended = false;
    source.ended.then(() => ended = true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(ended, false);
    Deno.kill(source.pid, "SIGKILL");
    await source.ended;
    await source.close();
    // A source closed on purpose does not report an end.
    const other = new IpMonitorSource();
    await other.start(() => {});
    let otherEnded = false;
    other.ended.then(() => otherEnded = true);
    await other.close();
    await settle();
    assert.equal(otherEnded, false);
  },
});

Deno.test({
  name:
    "socketRouteLookup(): the kernel's source address, as ip route get gives it (nothing is sent)",
  ignore: !requirePeer("ip", "iproute2"),
  fn: async () => {
    assertPeer("ip", "iproute2");
    const lookup = socketRouteLookup();
    assert.ok(lookup, "Linux with --allow-ffi: the socket lookup is available");
    // Route lookups only: connecting a UDP socket sends no packet.
    for (const destination of ["127.0.0.1", "127.9.8.7", "::1", "192.0.2.1", "2001:db8::1"]) {
      const want = await ipRouteGet(destination);
      const got = await lookup(destination);
      assert.equal(got?.source, want?.source, destination);
    }
    assert.equal(await lookup("not-an-address"), undefined);
    assert.equal(await lookup("300.1.2.3"), undefined);
  },
});

Deno.test({
  name: "IpBatchRoutes in a namespace: answers, no route, IPv6, only addresses reach ip, " +
    "and a killed child is replaced",
  ignore: ignoreWithoutNetns(),
  sanitizeResources: false,
  fn: async () => {
    const ns = await createNetns("rtb");
    const routes = new IpBatchRoutes({ netns: ns.name });
    try {
      const inNs = (args: string[]) =>
        new Deno.Command("ip", { args: ["-n", ns.name, ...args] }).output();
      await inNs(["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
      await inNs(["addr", "add", "10.99.0.2/24", "dev", "v0"]);
      await inNs(["addr", "add", "fd99::2/64", "dev", "v0", "nodad"]);
      await inNs(["link", "set", "v0", "up"]);
      await inNs(["link", "set", "v1", "up"]);

      assert.deepEqual(await routes.lookup("10.99.0.7"), { source: "10.99.0.2", interface: "v0" });
      const pid = routes.pid;
      assert.ok(pid !== undefined, "one child");
      // No route: ip prints only an error (on stderr); the next answer is still right.
      assert.equal(await routes.lookup("10.98.0.1"), undefined);
      assert.deepEqual(await routes.lookup("fd99::7"), { source: "fd99::2", interface: "v0" });
      assert.deepEqual(await routes.lookup("127.0.0.1"), { source: "127.0.0.1", interface: "lo" });
      // Side by side, as the monitor asks for several destinations.
      const both = await Promise.all([routes.lookup("10.99.0.9"), routes.lookup("10.98.0.1")]);
      assert.deepEqual(both, [{ source: "10.99.0.2", interface: "v0" }, undefined]);
      // Only an address reaches the child's stdin.
      assert.equal(await routes.lookup("10.99.0.7\nlink del v0"), undefined);
      assert.equal(routes.pid, pid, "the same child answered every question");
      assert.match(
        await new Deno.Command("ip", { args: ["-n", ns.name, "link"] }).output()
          .then((o) => new TextDecoder().decode(o.stdout)),
        /v0@v1/,
      );

      Deno.kill(pid, "SIGKILL");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(await routes.lookup("10.99.0.7"), { source: "10.99.0.2", interface: "v0" });
      assert.ok(routes.pid !== undefined && routes.pid !== pid, "a new child");
      await routes.close();
      assert.equal(await routes.lookup("10.99.0.7"), undefined, "closed");
      assert.equal(routes.pid, undefined);
    } finally {
      await routes.close();
      await ns.remove();
    }
  },
});

Deno.test("AddressMonitor: polling faster than the debounce still looks after the debounce, not maxWaitMs", async () => {
  const clock = new ManualClock();
  let now = [addr("10.0.0.2")];
  let src = "10.0.0.2";
  const events: AddressEvent[] = [];
  const monitor = new AddressMonitor({
    clock,
    debounceMs: 20,
    toward: ["10.0.0.1"],
    source: new PollingSource({ clock, intervalMs: 10, read: () => now }),
    route: () => Promise.resolve({ source: src, interface: "eth0" }),
    onEvent: (e) => events.push(e),
  });
  await monitor.start();
  now = [addr("10.0.0.7")];
  src = "10.0.0.7";
  for (let t = 0; t < 40; t += 10) {
    clock.advance(10);
    await monitor.idle();
  }
  // Seen at the tick of 10 ms, looked at 20 ms later, although ticks kept coming.
  assert.deepEqual(events.map((e) => e.type), ["address_lost", "address_added", "address_changed"]);
  await monitor.close();
});

Deno.test("AddressMonitor: a route source the poll has not read yet is named from a fresh read", async () => {
  const clock = new ManualClock();
  const polled = [addr("10.0.0.2")];
  let kernel = [addr("10.0.0.2")];
  let src = "10.0.0.2";
  const events: AddressEvent[] = [];
  const monitor = new AddressMonitor({
    clock,
    toward: ["10.0.0.1"],
    // The poll read the list just before the kernel changed it...
    source: new PollingSource({ clock, intervalMs: 200, read: () => polled }),
    pollRead: () => kernel,
    // ...and the route answer (a connected socket's) names no interface.
    route: () => Promise.resolve({ source: src }),
    onEvent: (e) => events.push(e),
  });
  await monitor.start();
  kernel = [addr("10.0.0.7")];
  src = "10.0.0.7";
  clock.advance(200);
  clock.advance(50);
  await monitor.idle();
  const changed = events.find((e) => e.type === "address_changed");
  assert.ok(changed, JSON.stringify(events));
  assert.deepEqual([changed.old, changed.new, changed.interface], ["10.0.0.2", "10.0.0.7", "eth0"]);
  await monitor.close();
});
