# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.worker.udp: the flow table outside the sandbox.

A fake worker stands in for the loop: a fake clock, a tap that keeps the
frames written to it, a broker that answers with real UDP sockets on
127.0.0.1 (or refuses), and the fd registry. Only loopback traffic of this
test process is involved. What is checked: the table's bounds and expiry,
the queue while the broker works, refusals, destination translations and
the addresses replies come back from.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest

from passt_sep import ipc
from passt_sep.cli import Options
from passt_sep.config import V4, V6, Config
from passt_sep.proto.packet import Packet, parse_frame
from passt_sep.record import replace
from passt_sep.worker import flowsock
from passt_sep.worker import udp as wudp

OUR_MAC = bytes.fromhex("9a5500aa0001")
GUEST_MAC = bytes.fromhex("5254000012ab")
GW4, ADDR4 = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.10")
GW6, ADDR6 = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::10")
DNS_MATCH = IPv4Address("198.51.100.53")


def config(**opts: object) -> Config:
    o = Options(mode="pasta", **opts)  # type: ignore[arg-type]
    v4 = V4(addr=ADDR4, prefix=24, gw=GW4, dns=(DNS_MATCH,), dns_match=DNS_MATCH,
            dns_host=IPv4Address("127.0.0.1"), ifname="eth0", host_lo=GW4 if o.map_gw else None, guest_map=None)
    v6 = V6(addr=ADDR6, prefix=64, gw=GW6, our_ll=IPv6Address("fe80::1"), dns=(), dns_match=None,
            dns_host=None, ifname="eth0", host_lo=GW6 if o.map_gw else None, guest_map=None)
    return Config(opts=o, mode="pasta", v4=v4, v6=v6, our_mac=OUR_MAC, mtu=65520, ns_ifname="eth0",
                  search=())


class FakeTap:
    needs_csum = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write_raw(self, buf: memoryview) -> bool:
        self.frames.append(bytes(buf[10:]))
        return True


class FakeBroker:
    """Answers the UDP ops as the parent would, at once or when told, on lo only.

    OP_UDP_SOCKET: the destination goes through the real DestPolicy; a
    loopback target (or one in ``redirect``) is connected to, any other
    gets a socket that cannot send (unit tests run in the host's own
    network namespace: nothing may leave over a real link). OP_UDP_PORT:
    an unconnected socket on lo. OP_UDP_REPLY: listeners.udp_reply_socket
    on a dual-stack wildcard binding, as a -u socket without an address.
    """

    def __init__(self, cfg: Config) -> None:
        from passt_sep.setup.destpolicy import DestPolicy

        self.dest = DestPolicy(cfg)
        self.auto = True
        self.refuse = False
        self.redirect: dict[tuple[bytes, int], tuple[str, int]] = {}
        self.requests: list[tuple[int, int, int, bytes, int, Callable[[int | None, int], None]]] = []
        self.log: list[tuple[int, int, int, bytes, int]] = []  # every request, answered or not

    def request(self, op: int, family: int, cb: Callable[[int | None, int], None],
                port: int = 0, addr: bytes = b"", arg: int = 0, reset: object = None) -> None:
        assert op in (ipc.OP_UDP_SOCKET, ipc.OP_UDP_PORT, ipc.OP_UDP_REPLY)
        self.requests.append((op, family, port, addr, arg, cb))
        self.log.append((op, family, port, addr, arg))
        if self.auto:
            self.answer()

    def answer(self) -> None:
        from passt_sep.setup.destpolicy import PROTO_UDP
        from passt_sep.setup.listeners import LocalBind, udp_reply_socket

        while self.requests:
            op, family, port, addr, arg, cb = self.requests.pop(0)
            if self.refuse:
                cb(None, 1)
                continue
            if op == ipc.OP_UDP_REPLY:
                b = LocalBind(socket.AF_INET6, "::", b"", False)
                cb(udp_reply_socket(b, port, socket.inet_ntop(family, addr), arg).detach(), 0)
                continue
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
            s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
            if op == ipc.OP_UDP_SOCKET:
                raw = addr[:4] if family == socket.AF_INET else addr
                target = self.dest.resolve(PROTO_UDP, family, raw, port)
                if isinstance(target, int):
                    s.close()
                    cb(None, target)
                    continue
                if (raw, port) in self.redirect:
                    s.connect(self.redirect[(raw, port)])
                elif target.loopback:
                    s.connect((target.addr, target.port))
            cb(s.detach(), 0)


class FakeWorker:
    def __init__(self, **opts: object) -> None:
        self.cfg = config(**opts)
        self.tap = FakeTap()
        self.broker = FakeBroker(self.cfg)
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.drops: dict[str, int] = {}
        self.guest_mac = GUEST_MAC
        self.clock = 1000.0

    def now(self) -> float:
        return self.clock

    def add(self, fd: int, handler: Callable[[int], None], events: int = select.EPOLLIN,
            reset: Callable[[], None] | None = None) -> None:
        self.handlers[fd] = handler

    def remove(self, fd: int) -> None:
        self.handlers.pop(fd, None)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def pump(self, timeout: float = 1.0) -> None:
        """Run the handlers of the fds that are readable (what the loop does)."""
        ready, _, _ = select.select(list(self.handlers), [], [], timeout)
        for fd in ready:
            self.handlers[fd](select.EPOLLIN)


def frame(version: int, dst: str, dport: int, payload: bytes, sport: int = 40000) -> Packet:
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 0, 0x4000, 64, 17, 0, ADDR4.packed,
                         socket.inet_aton(dst))
        f = OUR_MAC + GUEST_MAC + b"\x08\x00" + ip + u
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(u), 17, 64, ADDR6.packed,
                         socket.inet_pton(socket.AF_INET6, dst))
        f = OUR_MAC + GUEST_MAC + b"\x86\xdd" + ip + u
    p = parse_frame(memoryview(f))
    assert isinstance(p, Packet)
    return p


def reply_of(f: bytes) -> tuple[str, int, str, int, bytes]:
    """(src, sport, dst, dport, payload) of a frame to the guest."""
    if f[12:14] == b"\x08\x00":
        src, dst, u = socket.inet_ntoa(f[26:30]), socket.inet_ntoa(f[30:34]), f[34:]
    else:
        src = socket.inet_ntop(socket.AF_INET6, f[22:38])
        dst = socket.inet_ntop(socket.AF_INET6, f[38:54])
        u = f[54:]
    sport, dport, _l, _c = struct.unpack_from("!HHHH", u)
    return src, sport, dst, dport, u[8:]


@pytest.fixture
def echo4() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    yield s
    s.close()


def test_gateway_goes_to_loopback_and_reply_comes_from_gateway(echo4: socket.socket) -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    port = echo4.getsockname()[1]
    flows.from_guest(frame(4, str(GW4), port, b"hello"))
    data, peer = echo4.recvfrom(100)
    assert data == b"hello"
    echo4.sendto(b"world", peer)
    w.pump()
    assert [reply_of(f) for f in w.tap.frames] == [(str(GW4), port, str(ADDR4), 40000, b"world")]


def test_zero_length_both_ways(echo4: socket.socket) -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, str(GW4), echo4.getsockname()[1], b""))
    data, peer = echo4.recvfrom(100)
    assert data == b""
    echo4.sendto(b"", peer)
    w.pump()
    assert reply_of(w.tap.frames[0])[4] == b""


def test_datagram_too_big_for_a_frame_is_dropped_and_counted(echo4: socket.socket) -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, str(GW4), echo4.getsockname()[1], b"x"))
    _d, peer = echo4.recvfrom(10)
    echo4.sendto(bytes(65494), peer)
    echo4.sendto(bytes(65493), peer)
    w.pump()
    assert flows.stats["too_big"] == 1 and len(w.tap.frames) == 1
    assert len(w.tap.frames[0]) == 65535


def test_request_carries_the_destination_as_written_and_replies_come_from_it(echo4: socket.socket) -> None:
    """One flow per destination: OP_UDP_SOCKET names it as the guest wrote it
    (the parent maps it), arg is the source port; the reply on the connected
    socket reaches the guest from that very address and port."""
    w = FakeWorker()
    w.broker.redirect[(DNS_MATCH.packed, 53)] = echo4.getsockname()  # the parent's mapping, faked
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, str(DNS_MATCH), 53, b"query"))
    assert w.broker.log == [(ipc.OP_UDP_PORT, socket.AF_INET, 40000, b"", 0),
                            (ipc.OP_UDP_SOCKET, socket.AF_INET, 53, DNS_MATCH.packed, 40000)]
    data, peer = echo4.recvfrom(100)
    assert data == b"query"
    echo4.sendto(b"answer", peer)
    w.pump()
    assert [reply_of(f) for f in w.tap.frames] == [(str(DNS_MATCH), 53, str(ADDR4), 40000, b"answer")]


def test_one_source_port_two_destinations_two_flows() -> None:
    """The same guest port to two destinations: two flows, two sockets, one port socket."""
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s_ in (a, b):
        s_.bind(("127.0.0.1", 0))
        s_.settimeout(2)
    w.broker.redirect[(socket.inet_aton("192.0.2.2"), 7)] = a.getsockname()
    w.broker.redirect[(socket.inet_aton("192.0.2.3"), 7)] = b.getsockname()
    flows.from_guest(frame(4, "192.0.2.2", 7, b"to-a"))
    flows.from_guest(frame(4, "192.0.2.3", 7, b"to-b"))
    assert len(flows.flows) == 2 and list(flows.ports.flows) == [(4, 40000)]
    da, pa = a.recvfrom(10)
    db, pb = b.recvfrom(10)
    assert (da, db) == (b"to-a", b"to-b")
    b.sendto(b"from-b", pb)
    a.sendto(b"from-a", pa)
    w.pump()
    w.pump(0.2)
    got = sorted(reply_of(f) for f in w.tap.frames)
    assert got == [("192.0.2.2", 7, str(ADDR4), 40000, b"from-a"), ("192.0.2.3", 7, str(ADDR4), 40000, b"from-b")]
    a.close()
    b.close()


def test_port_socket_takes_senders_no_flow_is_connected_to() -> None:
    """A reply from another port (TFTP) reaches the guest through the port socket, as itself."""
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, str(GW4), 9, b"x"))
    ps = flows.ports.flows[(4, 40000)].sock
    assert ps is not None
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.sendto(b"new port", ps.getsockname())
    w.pump()
    assert [reply_of(f) for f in w.tap.frames] == [(str(GW4), other.getsockname()[1], str(ADDR4), 40000,
                                                    b"new port")]
    other.close()
    w.clock += wudp.FLOW_TIMEOUT + 1
    flows.timer(w.clock)  # no flow of the port left: its port socket goes too
    assert not flows.flows and not flows.ports.flows and not w.handlers


def test_no_map_gw_sends_to_the_gateway_itself() -> None:
    w = FakeWorker(map_gw=False)
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    # nothing leads to the host's loopback: such a sender appears as the
    # gateway, as in passt (our_tap_addr), instead of being dropped
    assert flows._visible(4, socket.inet_aton("127.0.0.1")) == GW4.packed
    assert flows._visible(4, ADDR4.packed) == GW4.packed


def test_sources_seen_by_the_guest() -> None:
    flows = wudp.UdpFlows(FakeWorker())  # type: ignore[arg-type]
    assert flows._visible(4, socket.inet_aton("127.0.0.5")) == GW4.packed
    assert flows._visible(4, ADDR4.packed) == GW4.packed  # the host's own address
    assert flows._visible(6, IPv6Address("::1").packed) == GW6.packed
    assert flows._visible(4, socket.inet_aton("198.51.100.7")) == socket.inet_aton("198.51.100.7")


@pytest.mark.parametrize("version,dst,why", [
    (4, "224.0.0.251", "udp to multicast or broadcast"),
    (4, "255.255.255.255", "udp to multicast or broadcast"),
    (4, "127.0.0.1", "udp to loopback or unspecified"),
    (4, "0.0.0.0", "udp to loopback or unspecified"),
    (6, "ff02::fb", "udp to multicast"),
    (6, "::1", "udp to loopback or unspecified"),
])
def test_destinations_refused(version: int, dst: str, why: str) -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(version, dst, 5353, b"x"))
    assert w.drops == {why: 1} and not flows.flows


def test_table_full_of_flows_in_use_refuses_new_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A flood of new destinations cannot push out flows in use: while every
    flow has its socket and was active within EVICT_IDLE, a new one is
    dropped and counted, the table sorted at most once per ROOM_AFTER; then
    the longest idle makes room, and its socket is no longer watched."""
    sorts = []

    def counting_sorted(*a, **kw):  # type: ignore[no-untyped-def]
        sorts.append(1)
        return sorted(*a, **kw)

    monkeypatch.setattr(flowsock, "sorted", counting_sorted, raising=False)
    w = FakeWorker()
    flows = wudp.UdpFlows(w, max_flows=8)  # type: ignore[arg-type]
    for i in range(8):
        w.clock += 1
        flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30000 + i))
    ports = dict(flows.ports.flows)
    for i in range(8, 12):
        w.clock += 0.1
        flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30000 + i))
    assert sorted(k[1] for k in flows.flows) == list(range(30000, 30008))
    assert flows.ports.flows == ports  # no port socket asked (or evicted) for a flow refused
    assert flows.stats["full"] == 4 and w.drops.get("udp table full") == 4 and flows.stats["evicted"] == 0
    assert len(sorts) == 1, sorts  # not again within ROOM_AFTER
    w.clock += flowsock.EVICT_IDLE + 1
    flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30007))  # still in use
    flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30100))
    ports = sorted(k[1] for k in flows.flows)
    assert 30100 in ports and 30007 in ports and 30000 not in ports, ports
    assert flows.stats["evicted"] == 1 and len(flows.flows) == 8
    # no socket of a closed flow is still watched
    assert len(w.handlers) == len(flows.flows) + len(flows.ports.flows)
    assert wudp.MAX_FLOWS >= 16


def test_flows_without_a_socket_make_room_first() -> None:
    """Flows the broker refused (no socket) go before any flow in use."""
    w = FakeWorker()
    flows = wudp.UdpFlows(w, max_flows=8)  # type: ignore[arg-type]
    for i in range(4):
        w.clock += 1
        flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30000 + i))
    w.broker.refuse = True
    for i in range(4, 8):
        w.clock += 1
        flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30000 + i))
    w.broker.refuse = False
    assert len(flows.flows) == 8
    flows.from_guest(frame(4, "192.0.2.2", 9, b"x", sport=30200))
    ports = sorted(k[1] for k in flows.flows)
    assert ports[:4] == [30000, 30001, 30002, 30003] and 30200 in ports, ports
    assert flows.stats["evicted"] == 1 and flows.stats["full"] == 0

def test_flows_expire_after_180s_without_guest_activity(echo4: socket.socket) -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    port = echo4.getsockname()[1]
    flows.from_guest(frame(4, str(GW4), port, b"a"))
    sock = flows.flows[(4, 40000, GW4.packed, port)].sock
    assert sock is not None
    _d, peer = echo4.recvfrom(10)
    w.clock += 100
    echo4.sendto(b"reply", peer)  # replies do not keep the flow alive
    w.pump()
    w.clock += wudp.FLOW_TIMEOUT - 100 + 0.5
    flows.timer(w.clock)
    assert not flows.flows and not w.handlers and sock.fileno() == -1


def test_guest_activity_keeps_a_flow() -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    for _ in range(5):
        flows.from_guest(frame(4, "192.0.2.2", 9, b"x"))
        w.clock += wudp.FLOW_TIMEOUT - 1
        flows.timer(w.clock)
    assert (4, 40000, socket.inet_aton("192.0.2.2"), 9) in flows.flows


def test_datagrams_wait_for_the_socket_in_order_bounded(echo4: socket.socket) -> None:
    w = FakeWorker()
    w.broker.auto = False
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    port = echo4.getsockname()[1]
    for i in range(wudp.QUEUE_MAX + 5):
        flows.from_guest(frame(4, str(GW4), port, str(i).encode()))
    assert w.drops == {"udp queue full": 5} and len(w.broker.requests) == 2  # port socket, flow
    w.broker.answer()
    got = [echo4.recv(10) for _ in range(wudp.QUEUE_MAX)]
    assert got == [str(i).encode() for i in range(wudp.QUEUE_MAX)]


def test_refused_socket_is_retried_later() -> None:
    w = FakeWorker()
    w.broker.refuse = True
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, str(GW4), 9, b"x"))
    flows.from_guest(frame(4, str(GW4), 9, b"x"))
    assert w.drops == {"udp socket refused": 2} and flows.stats["refused"] == 1
    w.clock += flowsock.RETRY_AFTER
    w.broker.refuse = False
    flows.from_guest(frame(4, str(GW4), 9, b"x"))
    assert flows.flows[(4, 40000, GW4.packed, 9)].sock is not None


def test_late_socket_for_an_expired_flow_is_closed() -> None:
    w = FakeWorker()
    w.broker.auto = False
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, "192.0.2.2", 9, b"x"))
    w.clock += wudp.FLOW_TIMEOUT + 1
    flows.timer(w.clock)
    w.broker.answer()
    assert not flows.flows and not w.handlers


def test_no_udp_drops_everything() -> None:
    w = FakeWorker(no_udp=True)
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(frame(4, "192.0.2.2", 9, b"x"))
    assert w.drops == {"udp disabled": 1} and not w.broker.requests


def test_inbound_peers_bounded_and_replies_reach_the_sender() -> None:
    w = FakeWorker()
    flows = wudp.UdpFlows(w, max_peers=4)  # type: ignore[arg-type]
    flows.splice_loop = False  # loopback senders over the tap, as in passt (pasta splices them)
    lsock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    lsock.bind(("::", 0))
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as listeners._udp_bind
    lport = lsock.getsockname()[1]
    flows.add_listener(lsock.detach(), lport, 5000)
    clients = []
    for i in range(6):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(2)
        c.sendto(f"c{i}".encode(), ("127.0.0.1", lport))
        clients.append(c)
        w.clock += 1
        w.pump()
        assert len(flows.peers) <= 4
    assert len(w.tap.frames) == 6
    src, sport, dst, dport, data = reply_of(w.tap.frames[-1])
    assert (src, dst, dport, data) == (str(GW4), str(ADDR4), 5000, b"c5")
    assert sport == clients[-1].getsockname()[1]
    flows.from_guest(frame(4, str(GW4), sport, b"back", sport=5000))
    assert clients[-1].recv(10) == b"back"
    # through a socket bound beside the -u socket and connected to the sender
    assert w.broker.log[-1] == (ipc.OP_UDP_REPLY, socket.AF_INET6, lport,
                                socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"), sport)
    reply = flows.flows[(4, 5000, GW4.packed, sport)].sock
    assert reply is not None and reply.getpeername()[:2] == ("::ffff:127.0.0.1", sport)
    assert reply.getsockname()[1] == lport
    clients[-1].sendto(b"again", ("127.0.0.1", lport))  # now the reply socket's
    w.pump()
    assert reply_of(w.tap.frames[-1])[1:] == (sport, str(ADDR4), 5000, b"again")
    for c in clients:
        c.close()
    # closed through the objects that own them (closing the fds by number left those
    # objects to close the same numbers again when collected: another test's sockets)
    for f in list(flows.flows.values()):
        flows._close(f)
    for ps in list(flows.ports.flows.values()):
        flows.ports._close(ps)
    for ib in flows.inbound.values():
        ib.sock.close()


# the broker's side (OP_UDP_SOCKET, OP_UDP_PORT, OP_UDP_REPLY): tests/unit/test_udp_dest.py


def test_map_guest_addr_targets_and_sources() -> None:
    """--map-guest-addr: the host's own address appears as it (datagrams to it
    are mapped by the parent: test_udp_dest.py); loopback senders still
    appear as the loopback-mapped address (here the gateway)."""
    w = FakeWorker()
    assert w.cfg.v4 is not None
    mapped = IPv4Address("169.254.1.2")
    w.cfg = replace(w.cfg, v4=replace(w.cfg.v4, guest_map=mapped))
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    assert flows._visible(4, ADDR4.packed) == mapped.packed
    assert flows._visible(4, socket.inet_aton("127.0.0.1")) == GW4.packed
    assert flows._visible(6, ADDR6.packed) == GW6.packed  # no IPv6 mapping: the gateway
