# SPDX-License-Identifier: GPL-2.0-or-later
"""A real Worker driven by fuzz input: frames of every protocol, in sequences.

Owns the ``worker`` fuzz target. One input is a small program: each step
either hands the worker a frame (a raw one straight from the input, or one
built here with valid checksums around fuzzed fields: TCP with any flags,
sequence and acknowledgement numbers near the ones the connection expects,
options and payload; UDP to the DHCP, DHCPv6 and any other port; ICMP and
ICMPv6 echo; ARP; NDP with fuzzed options), or plays the other side:
the broker answers a pending socket request (refused, connected,
connecting, pending), a host client connects to a forwarded port (the
worker sends the guest a SYN), a host peer sends, half-closes or resets, the epoll
loop runs once, the clock jumps and the housekeeping timer runs.

What is real: the Worker, its flow tables, its epoll, and the sockets it
gets (TCP and UDP on 127.0.0.1 to peers this process owns, an AF_UNIX
datagram pair for ping). What is fake: the tap (frames are collected and
each one is verified by ``frames.check_to_guest``) and the broker client
(it answers from the input; nothing reaches the parent or the network:
every socket handed over is connected to a peer of this process on the
loopback). An exception out of the worker, or a bad frame toward the guest,
is a finding.
"""

from __future__ import annotations

import errno
import gc
import os
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from types import SimpleNamespace

from passt_sep import ipc
from passt_sep.cli import Options
from passt_sep.config import V4, V6, Config
from passt_sep.worker.loop import Worker

from . import frames as F

OUR_MAC = bytes.fromhex("9a5500aa0001")
GUEST_MAC = bytes.fromhex("5254000012ab")
GW4, ADDR4 = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.10")
GW6, ADDR6 = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::10")
LL6 = IPv6Address("fe80::1")
GUEST_LL = bytes.fromhex("fe800000000000005054 00fffe0012ab".replace(" ", ""))
DNS4 = IPv4Address("192.0.2.53")
#: remote addresses a guest may name: the gateway (host loopback), a far
#: one (documentation range: the fake broker never routes it anywhere), multicast
REMOTE4 = [GW4.packed, bytes([198, 51, 100, 7]), DNS4.packed, bytes([224, 0, 0, 1]),
           bytes([192, 0, 2, 255]), bytes([255, 255, 255, 255])]
REMOTE6 = [GW6.packed, bytes.fromhex("20010db8000100000000000000000007"), LL6.packed,
           bytes.fromhex("ff020000000000000000000000000001"), bytes.fromhex("ff020000000000000000000000000002")]
PORTS = [80, 443, 53, 67, 68, 546, 547, 7, 0, 65535]
TCP_FLAGS = [0x02, 0x10, 0x18, 0x11, 0x04, 0x14, 0x12, 0x01, 0x19, 0x03, 0x06, 0x00, 0x3F, 0x29]
MAX_STEPS = 48


class Reader:
    """Bytes of the input, consumed front to back; zeros once exhausted."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.u8() << 8 | self.u8()

    def u32(self) -> int:
        return self.u16() << 16 | self.u16()

    def take(self, n: int) -> bytes:
        b = self.data[self.pos : self.pos + n]
        self.pos += len(b)
        return b

    def pick(self, seq: list) -> object:
        return seq[self.u8() % len(seq)]


def config(mode: str, **opts: object) -> Config:
    o = Options(mode=mode, **opts)  # type: ignore[arg-type]
    v4 = V4(addr=ADDR4, prefix=24, gw=GW4, dns=(DNS4,), dns_match=DNS4,
            dns_host=IPv4Address("127.0.0.1"), ifname="eth0", host_lo=GW4 if o.map_gw else None,
            guest_map=None)
    v6 = V6(addr=ADDR6, prefix=64, gw=GW6, our_ll=LL6, dns=(GW6,), dns_match=None,
            dns_host=None, ifname="eth0", host_lo=GW6 if o.map_gw else None, guest_map=None)
    return Config(opts=o, mode=mode, v4=v4, v6=v6, our_mac=OUR_MAC, mtu=65520 if mode == "pasta" else 1500,
                  ns_ifname="eth0", search=("example.org",))


class Peers:
    """Loopback endpoints of this process, made once: what the broker's sockets connect to."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.listener.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.fds = {self.listener.fileno(), self.udp.fileno()}


_peers: Peers | None = None


def _raise_fault(where: str, exc: BaseException) -> None:
    """Faults.record in the harness: the caught exception escapes again."""
    raise exc


class FakeBroker:
    """The worker's broker client: requests wait here until the input answers them."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, int, Callable[[int | None, int], None]]] = []
        self.refused = 0
        self.waiting = 0

    def request(self, op: int, family: int, cb: Callable[[int | None, int], None],
                port: int = 0, addr: bytes = b"", arg: int = 0,
                reset: Callable[[], None] | None = None) -> None:
        self.pending.append((op, family, cb))

    def pump(self) -> None:
        pass


class Run:
    """One input: a fresh Worker, the program run, everything closed after."""

    def __init__(self, mode: str, offload_off: bool) -> None:
        global _peers
        if _peers is None:
            _peers = Peers()
        self.peers = _peers
        self.mode = mode
        self.cfg = config(mode)
        self.out: list[tuple[bytes, bool]] = []
        needs_csum = mode == "passt" or offload_off
        self.tap = SimpleNamespace(fd=-1, moved=0, needs_csum=needs_csum,
                                   write_raw=self._write_raw, write=self._write,
                                   write_parts=lambda parts: self._write_raw(b"".join(parts)))
        self.bsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.w = Worker(self.cfg, self.tap, self.bsock[0], GUEST_MAC)  # type: ignore[arg-type]
        self.w.udp.defer = True  # as the loop runs it: guest datagrams held until the pass ends
        self.broker = FakeBroker()
        self.w.broker = self.broker  # type: ignore[assignment]
        self.clock = 1000.0
        self.w.now = lambda: self.clock  # type: ignore[method-assign]
        # the worker's per-flow fault guard (worker/faults.py) would reset the
        # flow and go on: for the fuzzer every fault it catches is a finding
        self.w.faults.record = _raise_fault  # type: ignore[method-assign]
        self.servers: list[socket.socket] = []  # host ends of the worker's TCP connections
        self.others: list[socket.socket] = []  # ping pair ends, connecting sockets
        # the guest's view of up to 4 connections: (version, sport, dport, remote)
        # -> [next seq to send, next seq expected from us]
        self.conns: dict[int, list[int]] = {}
        self.stats: dict[str, int] = {}  # the worker's counters at the end (run_input)

    # -- the tap -------------------------------------------------------------------
    def _write_raw(self, buf: bytes | bytearray | memoryview) -> bool:
        self.out.append((bytes(buf), True))
        return True

    def _write(self, frame: bytes | bytearray | memoryview) -> None:
        self.out.append((bytes(frame), False))

    def verify(self) -> None:
        """Check every frame sent since the last call; learn our sequence numbers from TCP ones."""
        for buf, vnet in self.out:
            F.check_to_guest(buf, vnet, OUR_MAC)
            f, gso = F.complete_vnet(buf) if vnet else (buf, 0)
            if gso and self.tap.needs_csum:
                raise F.BadFrame("a GSO frame toward a tap that takes none")
            self._learn(f)
        self.out.clear()

    def _learn(self, f: bytes) -> None:
        etype = struct.unpack_from("!H", f, 12)[0]
        if etype == F.ETH_P_IP and f[23] == F.TCP:
            l4 = 14 + (f[14] & 15) * 4
            tot = struct.unpack_from("!H", f, 16)[0] + 14
        elif etype == F.ETH_P_IPV6 and f[14 + 6] == F.TCP:
            l4, tot = 54, len(f)
        else:
            return
        sport, dport, seq = struct.unpack_from("!HHI", f, l4)
        flags = f[l4 + 13]
        dlen = tot - l4 - (f[l4 + 12] >> 4) * 4
        st = self.conns.setdefault(dport << 16 | sport, [0, 0])  # (our SYN of an inbound one: new)
        st[1] = (seq + dlen + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF

    # -- the program ---------------------------------------------------------------
    def run(self, r: Reader) -> None:
        for _ in range(MAX_STEPS):
            if r.left() <= 0:
                break
            op = r.u8() % 16
            STEPS[op](self, r)
            self.verify()
        self.loop()
        self.verify()

    def _frame(self, f: bytes) -> None:
        """One frame from the guest, then the end of the loop's pass over the tap
        (worker/loop.py ``_tap_event``: the UDP datagrams it held go out)."""
        self.w.on_frame(memoryview(bytearray(f)))
        if self.w.udp.out:
            self.w.udp.flush()

    def frame_raw(self, r: Reader) -> None:
        n = r.u16() % 1600
        self._frame(r.take(n))

    def _addrs(self, r: Reader, version: int) -> tuple[bytes, bytes]:
        sel = r.u8()
        if version == 4:
            src = ADDR4.packed if sel & 0x80 == 0 else bytes([192, 0, 2, sel & 0x7F])
            return src, REMOTE4[sel % len(REMOTE4)]
        src = ADDR6.packed if sel & 0x80 == 0 else (GUEST_LL if sel & 1 else bytes(16))
        return src, REMOTE6[sel % len(REMOTE6)]

    def _send(self, version: int, src: bytes, dst: bytes, proto: int, l4: bytes, r: Reader,
              dst_mac: bytes = OUR_MAC) -> None:
        tweak = r.u8()
        kw: dict[str, int] = {}
        if tweak & 0xC0 == 0xC0:  # an IP header that lies
            if version == 4:
                kw = {"tot": len(l4) + 20 + (tweak & 0x1F) - 16} if tweak & 0x20 else {"frag": tweak & 0x3F}
            else:
                kw = {"plen": len(l4) + (tweak & 0x1F) - 16}
        f = F.frame(version, GUEST_MAC, dst_mac, src, dst, proto, l4, **kw)
        if tweak & 0xC0 == 0x80:  # truncated or padded on the wire
            cut = (tweak & 0x3F)
            f = f[:-cut] if tweak & 0x20 and cut < len(f) else f + bytes(cut)
        self._frame(f)

    def tcp(self, r: Reader) -> None:
        k = r.u8()
        version = 6 if k & 4 else 4
        src, dst = (ADDR4.packed, GW4.packed) if version == 4 else (ADDR6.packed, GW6.packed)
        if k & 8:
            src, dst = self._addrs(r, version)
        sport, dport = 40000 + (k & 3), (80 if not k & 16 else PORTS[k >> 5 % len(PORTS)])
        key = sport << 16 | dport
        st = self.conns.setdefault(key, [r.u32(), 0])
        flags = int(r.pick(TCP_FLAGS)) if not k & 0x80 else r.u8()
        mode = r.u8()
        seq = st[0] + ((mode & 0x0F) - 4 if mode & 0x0F < 12 else r.u32())
        ack = st[1] + ((mode >> 4) - 4 if mode >> 4 < 12 else r.u32())
        win = r.u16()
        o = r.u8()
        options = b""
        if o & 3 == 1:
            options = struct.pack("!BBHBBBB", 2, 4, 536 + r.u16() % 9000, 1, 3, 3, r.u8() % 16)
        elif o & 3 == 2:
            options = r.take(o >> 2 & 0x3F % 41)
        payload = r.take(r.u8() * (1 + (o >> 6) * 8))
        seg = F.tcp_seg(version, src, dst, sport, dport, seq, ack, flags, win, options, payload,
                        good_sum=not (o & 4 and o & 0x80 and o & 3 == 3))
        if mode & 0x0F == 4:  # in order: the next one follows this one
            st[0] = (seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        self._send(version, src, dst, F.TCP, seg, r)

    def udp(self, r: Reader) -> None:
        k = r.u8()
        version = 6 if k & 1 else 4
        src, dst = self._addrs(r, version)
        if k & 2:
            dst = GW4.packed if version == 4 else GW6.packed
        sport = int(r.pick(PORTS)) if k & 4 else 30000 + (k >> 4)
        dport = int(r.pick(PORTS)) if not k & 8 else r.u16()
        payload = r.take(r.u16() % 2048)
        dg = F.udp_dgram(version, src, dst, sport, dport, payload, good_sum=bool(k & 0x80) or True,
                         length=None if k & 0x60 != 0x60 else r.u16())
        self._send(version, src, dst, F.UDP, dg, r, OUR_MAC if k & 0x10 else b"\xff" * 6)

    def dhcp(self, r: Reader) -> None:
        """A BOOTP request with fuzzed fields and options, to port 67."""
        typ = r.u8() % 9
        flags, xid, ciaddr = r.u16(), r.u32(), r.take(4).ljust(4, b"\0")
        bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, flags, ciaddr,
                            bytes(4), bytes(4), bytes(4), GUEST_MAC, b"", b"")
        opts = b"\x63\x82\x53\x63" + bytes([53, 1, typ]) + r.take(r.u8()) + b"\xff"
        dst = b"\xff" * 4 if r.u8() & 1 else GW4.packed
        src = bytes(4) if typ == 1 else ADDR4.packed
        self._send(4, src, dst, F.UDP, F.udp_dgram(4, src, dst, 68, 67, bootp + opts), r,
                   b"\xff" * 6)

    def dhcpv6(self, r: Reader) -> None:
        typ = r.u8() % 14
        msg = bytes([typ]) + r.take(3).ljust(3, b"\0")
        msg += struct.pack("!HH", 1, 10) + b"\x00\x03\x00\x01" + GUEST_MAC  # client id (DUID-LL)
        msg += r.take(r.u8())
        dst = bytes.fromhex("ff020000000000000000000000010002")
        self._send(6, GUEST_LL, dst, F.UDP, F.udp_dgram(6, GUEST_LL, dst, 546, 547, msg), r,
                   bytes.fromhex("333300010002"))

    def icmp(self, r: Reader) -> None:
        k = r.u8()
        version = 6 if k & 1 else 4
        src, dst = self._addrs(r, version)
        typ = (8 if version == 4 else 128) if not k & 2 else r.u8()
        body = struct.pack("!HH", r.u16(), r.u16()) + r.take(r.u8())
        proto = F.ICMP if version == 4 else F.ICMPV6
        self._send(version, src, dst, proto, F.icmp_msg(version, src, dst, typ, r.u8() if k & 4 else 0, body), r)

    def arp(self, r: Reader) -> None:
        k = r.u8()
        target = GW4.packed if k & 1 else bytes([192, 0, 2, r.u8()])
        sender = ADDR4.packed if k & 2 else r.take(4).ljust(4, b"\0")
        f = F.arp_request(GUEST_MAC, sender, target, op=1 if k & 4 else r.u16())
        if k & 8:
            f = f[: 14 + r.u8() % 28]
        self._frame(f)

    def ndp(self, r: Reader) -> None:
        k = r.u8()
        typ = 133 + k % 5
        if typ == 135:
            body = bytes(4) + (GW6.packed if k & 8 else LL6.packed if k & 16 else r.take(16).ljust(16, b"\0"))
        else:
            body = r.take(4 if typ == 133 else 12 if typ == 134 else 20).ljust(4, b"\0")
        body += (struct.pack("!BB", 1, 1) + GUEST_MAC) if k & 32 else b""
        body += r.take(r.u8() % 64)
        src = GUEST_LL if k & 64 else bytes(16)
        dst = LL6.packed if k & 128 else bytes.fromhex("ff0200000000000000000001ff000001")
        self._send(6, src, dst, F.ICMPV6, F.icmp_msg(6, src, dst, typ, 0, body), r)

    # -- the other side ------------------------------------------------------------
    def answer(self, r: Reader) -> None:
        if not self.broker.pending:
            return
        i = r.u8() % len(self.broker.pending)
        op, family, cb = self.broker.pending.pop(i)
        how = r.u8() % 5
        if how == 0:
            return cb(None, int(r.pick([errno.ECONNREFUSED, errno.EACCES, errno.EAGAIN, errno.EMFILE,
                                        errno.ENETUNREACH])))
        if op == ipc.OP_TCP_CONNECT:
            return self._answer_tcp(cb, how)
        if op == ipc.OP_PING_SOCKET:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            a.setblocking(False)
            self.others.append(b)
            return cb(a.detach(), 0)
        if op in (ipc.OP_UDP_SOCKET, ipc.OP_UDP_PORT, ipc.OP_UDP_REPLY):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.connect(self.peers.udp.getsockname())
            s.setblocking(False)
            self.others.append(socket.socket(fileno=os.dup(s.fileno())))
            return cb(s.detach(), 0)
        return cb(None, errno.EPERM)

    def _answer_tcp(self, cb: Callable[[int | None, int], None], how: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        if how == 4:  # STATUS_PENDING, never connected: connect refused later (socket closed)
            self.others.append(socket.socket(fileno=os.dup(s.fileno())))
            return cb(s.detach(), ipc.STATUS_PENDING)
        s.connect_ex(self.peers.listener.getsockname())
        try:
            srv, _ = self.peers.listener.accept()
        except BlockingIOError:
            srv = None
        if srv is not None:
            srv.setblocking(False)
            self.servers.append(srv)
        status = {1: ipc.STATUS_CONNECTED, 2: 0, 3: ipc.STATUS_PENDING}[how]
        cb(s.detach(), status)

    def inbound(self, r: Reader) -> None:
        """A host client connects to a -t port: the worker gets the accepted socket (SYN to the guest).

        It appears as the gateway's port 80 (the guest's connection step
        then answers on the same 4-tuple), toward guest port 40000-40003.
        """
        k = r.u8()
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        client.connect_ex(self.peers.listener.getsockname())
        try:
            acc, _ = self.peers.listener.accept()
        except BlockingIOError:
            client.close()
            return
        self.servers.append(client)
        v6 = bool(k & 1)
        self.w.tcp._inbound(acc.detach(), socket.AF_INET6 if v6 else socket.AF_INET,
                            ("::1" if v6 else "127.0.0.1", 80), 40000 + (k >> 1 & 3))

    def host(self, r: Reader) -> None:
        if not self.servers:
            return
        srv = self.servers[r.u8() % len(self.servers)]
        if srv.fileno() < 0:
            return
        what = r.u8() % 5
        try:
            if what == 0:
                srv.send(r.take(r.u8()) * (1 + r.u8() % 64))
            elif what == 1:
                srv.shutdown(socket.SHUT_WR)
            elif what == 2:
                srv.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                srv.close()
            elif what == 3:
                srv.recv(65536)
            else:
                srv.close()
        except OSError:
            pass

    def udp_peer(self, r: Reader) -> None:
        """The UDP peer answers the last datagram it got (host to guest)."""
        try:
            data, addr = self.peers.udp.recvfrom(65536)
            self.peers.udp.sendto(r.take(r.u8()) or data, addr)
        except OSError:
            pass

    def loop(self, r: Reader | None = None) -> None:
        w = self.w
        for _ in range(2):
            for fd, ev in w.ep.poll(0, 64):
                h = w.handlers.get(fd)
                if h is not None:
                    h(ev)
            if w.tcp.pending or w.tcp.ending:
                w.tcp.flush()
            if w.tcp.delayed:
                w.tcp.flush_delayed(self.clock)

    def tick(self, r: Reader) -> None:
        self.clock += float(r.pick([0.001, 0.2, 1.0, 3.0, 30.0, 200.0, 7200.0]))
        self.w.timer(self.clock)

    # -- teardown ------------------------------------------------------------------
    def close(self) -> None:
        for s in self.servers + self.others + list(self.bsock):
            s.close()
        try:
            while True:
                self.peers.listener.accept()[0].close()
        except OSError:
            pass
        try:
            while True:
                self.peers.udp.recv(65536)
        except OSError:
            pass


STEPS: list[Callable[[Run, Reader], None]] = [
    Run.frame_raw, Run.tcp, Run.tcp, Run.tcp, Run.udp, Run.dhcp, Run.dhcpv6, Run.icmp,
    Run.arp, Run.ndp, Run.answer, Run.inbound, Run.host, Run.udp_peer, Run.loop, Run.tick,
]

def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def run_input(data: bytes) -> Run:
    """Run one input; raise on an exception out of the worker, a bad frame, or an fd leak.

    Every fd the input made is gone once the worker's objects are: the
    worker keeps each in a socket object that closes it, so an fd still open
    was lost as a bare number (a leak in a long-running worker).
    """
    global _peers
    if _peers is None:
        _peers = Peers()
    before = _open_fds()
    r = Reader(data)
    k = r.u8()
    run = Run("passt" if k & 1 else "pasta", bool(k & 2))
    try:
        run.run(r)
    finally:
        run.stats = dict(run.w.tcp.stats, drops=sum(run.w.drops.values()),
                         conns=len(run.w.tcp.conns))
        run.close()
        # the worker's sockets and epoll close when its objects go: all of them now
        w = run.w
        w.ep.close()
        del w
        run.w = None  # type: ignore[assignment]
        run.broker.pending.clear()  # unanswered requests' callbacks hold the flows
        # the young generations hold the run's objects, mostly; what an
        # automatic collection moved to the old one goes in a full collection
        # every 50 runs (manual young ones never trigger it: memory would grow)
        gc.collect(1)
        leaked = _open_fds() - before
        if leaked or gc.get_count()[2] > 50:
            gc.collect()
            leaked = _open_fds() - before
        for fd in leaked:
            try:
                os.close(fd)
            except OSError:
                pass
    if leaked:  # (not raised from finally: an exception of the run goes first)
        raise F.BadFrame(f"fds left open once the worker's objects were gone: {len(leaked)}")
    return run
