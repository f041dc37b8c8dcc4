/**
 * Breaks the UDP socket of another process so that its receives fail, for
 * the test of what sipkit does when its UDP receive loop gives up. Linux
 * only, root, inside a network namespace the test created (run with `ip
 * netns exec <ns> deno run -A tests/_udp_break.ts <pid> <port>`).
 *
 * How: it takes a copy of the process's socket (`pidfd_getfd`, glibc 2.36
 * and Linux 5.6) and shuts its reading side (`shutdown(SHUT_RD)`: from then
 * on the socket polls readable, so that each error wakes its reader). Then it
 * sends, through a raw socket to 127.0.0.1, ICMP host unreachable messages
 * about a datagram the socket would have sent to 127.0.0.2 port 9. The
 * kernel (the socket has IP_RECVERR on, as sipkit sets it with --allow-ffi)
 * makes each one a pending EHOSTUNREACH: the owner's next receive fails with
 * it. The socket is bound to 127.0.0.1 (or to all addresses). Prints
 * `broken <n>` after each 100 messages; runs until killed or `<count>`
 * messages (default 50000). Traffic: loopback of the namespace only.
 *
 * @module
 */

const [pidText, portText, countText] = Deno.args;
const pid = Number(pidText);
const port = Number(portText);
const count = Number(countText ?? 50000);

const libc = Deno.dlopen("libc.so.6", {
  pidfd_open: { parameters: ["i32", "u32"], result: "i32" },
  pidfd_getfd: { parameters: ["i32", "i32", "u32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
});

/** The target's fd whose socket is bound to `port` (IPv4 or IPv6 table). */
function findFd(): number {
  const byInode = new Map<string, number>();
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`));
      if (m) byInode.set(m[1], Number(entry.name));
    } catch { /* closed meanwhile */ }
  }
  for (const table of ["udp", "udp6"]) {
    for (const line of Deno.readTextFileSync(`/proc/${pid}/net/${table}`).split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const fd = byInode.get(f[9]);
      if (parseInt(f[1].split(":").at(-1)!, 16) === port && fd !== undefined) return fd;
    }
  }
  throw new Error(`process ${pid} has no UDP socket on port ${port}`);
}

const pidfd = libc.symbols.pidfd_open(pid, 0);
if (pidfd < 0) throw new Error("pidfd_open failed");
const fd = libc.symbols.pidfd_getfd(pidfd, findFd(), 0);
if (fd < 0) throw new Error("pidfd_getfd failed");
const SHUT_RD = 0;
libc.symbols.shutdown(fd, SHUT_RD); // ENOTCONN for an unconnected socket, but done anyway

/** The Internet checksum (RFC 1071) of `bytes`. */
function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) + (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

// ICMP destination unreachable, code 1 (host), about a datagram from
// 127.0.0.1:<port> to 127.0.0.2:9: its IPv4 header and first 8 bytes.
const icmp = new Uint8Array(8 + 20 + 8);
const v = new DataView(icmp.buffer);
icmp.set([3, 1], 0);
icmp.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2], 8);
v.setUint16(8 + 10, checksum(icmp.subarray(8, 28)), false);
v.setUint16(28, port, false);
v.setUint16(30, 9, false);
v.setUint16(32, 8, false);
v.setUint16(2, checksum(icmp), false);
const AF_INET = 2, SOCK_RAW = 3, IPPROTO_ICMP = 1;
const raw = libc.symbols.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
if (raw < 0) throw new Error("raw socket failed (needs root)");
const to = new Uint8Array(16);
new DataView(to.buffer).setUint16(0, AF_INET, true);
to.set([127, 0, 0, 1], 4);
for (let i = 1; i <= count; i++) {
  if (libc.symbols.sendto(raw, icmp, BigInt(icmp.length), 0, to, to.length) < 0) {
    throw new Error("sendto failed");
  }
  if (i % 100 === 0) console.log(`broken ${i}`);
  await new Promise((resolve) => setTimeout(resolve, 1));
}
