import assert from "node:assert/strict";
import {
  _setInterfaceReader,
  invalidateLocalAddresses,
  routeLocalAddress,
} from "../lib/sip/_net.ts";

function iface(address: string): Deno.NetworkInterfaceInfo {
  return {
    family: "IPv4",
    name: "eth0",
    address,
    netmask: "255.255.255.0",
    scopeid: null,
    cidr: `${address}/24`,
    mac: "00:00:00:00:00:00",
  };
}

Deno.test("routeLocalAddress() reads the interfaces once, then again after invalidateLocalAddresses()", () => {
  let address = "192.0.2.10";
  let reads = 0;
  _setInterfaceReader(() => {
    reads++;
    return [iface(address)];
  });
  try {
    for (let i = 0; i < 100; i++) {
      assert.equal(routeLocalAddress("0.0.0.0", "198.51.100.7"), "192.0.2.10");
    }
    assert.equal(reads, 1);
    // A bound address or a loopback target needs no interface list at all.
    assert.equal(routeLocalAddress("192.0.2.99", "198.51.100.7"), "192.0.2.99");
    assert.equal(routeLocalAddress("0.0.0.0", "127.0.0.1"), "127.0.0.1");
    assert.equal(reads, 1);
    address = "203.0.113.20"; // the host moved
    assert.equal(routeLocalAddress("0.0.0.0", "198.51.100.7"), "192.0.2.10"); // still cached
    invalidateLocalAddresses();
    assert.equal(routeLocalAddress("0.0.0.0", "198.51.100.7"), "203.0.113.20");
    assert.equal(reads, 2);
  } finally {
    _setInterfaceReader();
  }
});

Deno.test("routeLocalAddress() does not cache a failed read (no --allow-sys)", () => {
  let reads = 0;
  _setInterfaceReader(() => {
    reads++;
    throw new Deno.errors.NotCapable("Requires sys access");
  });
  try {
    assert.equal(routeLocalAddress("0.0.0.0", "198.51.100.7"), "0.0.0.0");
    assert.equal(routeLocalAddress("0.0.0.0", "198.51.100.7"), "0.0.0.0");
    assert.equal(reads, 2);
  } finally {
    _setInterfaceReader();
  }
});
