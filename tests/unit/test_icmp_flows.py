# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.worker.icmp: echo flows per identifier and destination.

A fake worker stands in for the loop (fake clock, frames to the guest kept,
fd registry) and a fake broker stands in for the parent: it records what
the worker asks (the destination included) and answers with a UDP socket
connected to a stand-in echo peer on 127.0.0.1 (ping sockets need
net.ipv4.ping_group_range, which a unit test in the host's namespace may
not set; the broker's real ping sockets are tested in test_broker.py), or
refuses. Only loopback traffic of this test process is involved.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from passt_sep import ipc
from passt_sep.proto.packet import Packet, parse_frame
from passt_sep.record import replace
from passt_sep.worker import flowsock
from passt_sep.worker import icmp as wicmp
from tests.unit.test_udp_flows import ADDR4, GUEST_MAC, GW4, OUR_MAC
from tests.unit.test_udp_flows import FakeWorker as UdpFakeWorker


class FakeBroker:
    """Answers OP_PING_SOCKET with a UDP socket connected to ``peer``, or refuses."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.refuse = 0  # errno to refuse with, 0: answer
        self.connect = True  # False: bound only (a ping socket receives replies from anyone)
        self.asked: list[bytes] = []

    def request(self, op: int, family: int, cb: Callable[[int | None, int], None],
                port: int = 0, addr: bytes = b"", arg: int = 0, reset: object = None) -> None:
        assert op == ipc.OP_PING_SOCKET and family == socket.AF_INET and port == 0
        self.asked.append(addr)
        if self.refuse:
            cb(None, self.refuse)
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        s.bind(("127.0.0.1", 0))
        if self.connect:
            s.connect(self.peer)
        cb(s.detach(), 0)


class FakeWorker(UdpFakeWorker):
    """test_udp_flows' fake loop, with this file's broker and the frames it sends kept."""

    def __init__(self, peer: tuple[str, int], **opts: object) -> None:
        super().__init__(**opts)
        self.broker = FakeBroker(peer)  # type: ignore[assignment]
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def pump(self, timeout: float = 2.0) -> None:
        super().pump(timeout)


def echo(dst: str, ident: int = 0x1234, seq: int = 1, data: bytes = b"ping") -> Packet:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, 1, 0, ADDR4.packed,
                     socket.inet_aton(dst))
    p = parse_frame(memoryview(OUR_MAC + GUEST_MAC + b"\x08\x00" + ip + body))
    assert isinstance(p, Packet)
    return p


def _peer() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2)
    return s


def test_one_flow_per_destination_and_send_without_address() -> None:
    """Two destinations with one identifier: two flows, two requests, each
    naming its destination; the echo goes out on the connected socket."""
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    pings.from_guest(echo(str(GW4)))
    pings.from_guest(echo("192.0.2.2"))
    pings.from_guest(echo("192.0.2.2", seq=2))
    assert w.broker.asked == [GW4.packed, socket.inet_aton("192.0.2.2")]
    assert len(pings.flows) == 2
    got = [peer.recv(100) for _ in range(3)]
    assert sorted(struct.unpack_from("!H", g, 6)[0] for g in got) == [1, 1, 2]
    peer.close()


def test_reply_comes_from_the_destination_and_strangers_are_dropped() -> None:
    """A reply from the flow's host-side peer (the gateway: loopback) goes
    to the guest from the address the guest pinged, with the guest's
    identifier; one from elsewhere reaching the same socket (a ping socket
    is matched by identifier, not by peer: here an unconnected stand-in)
    is dropped."""
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    w.broker.connect = False
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    pings.from_guest(echo(str(GW4), seq=7, data=b"abc"))
    (flow,) = pings.flows.values()
    assert flow.sock is not None
    ours = flow.sock.getsockname()
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    stranger.sendto(struct.pack("!BBHHH", 0, 0, 0, 999, 8), ours)
    peer.sendto(struct.pack("!BBHHH", 0, 0, 0, 999, 7) + b"abc", ours)
    w.pump()
    assert len(w.sent) == 1 and w.drops.get(wicmp.DROP_STRANGER) == 1
    f = w.sent[0]
    assert f[26:30] == GW4.packed and f[30:34] == ADDR4.packed  # from the gateway, to the guest
    assert struct.unpack_from("!HH", f, 38) == (0x1234, 7) and f[42:] == b"abc"  # the guest's identifier
    stranger.close()
    peer.close()


def test_refused_destination_drops_and_counts_without_a_retry_storm() -> None:
    """EACCES from the broker: the queued echo and those of the next second
    are dropped and counted, with no new request; after RETRY_AFTER one
    request, and only one."""
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    w.broker.refuse = errno.EACCES
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    for seq in range(1, 11):
        pings.from_guest(echo("192.0.2.2", seq=seq))
        w.clock += 0.05
    assert len(w.broker.asked) == 1
    assert w.drops[wicmp.DROP_REFUSED] == 10 and pings.stats["refused"] == 1
    w.clock += wicmp.RETRY_AFTER
    pings.from_guest(echo("192.0.2.2", seq=11))
    pings.from_guest(echo("192.0.2.2", seq=12))
    assert len(w.broker.asked) == 2 and w.drops[wicmp.DROP_REFUSED] == 12
    # allowed again (the broker says yes now): the next echo after the pause gets through
    w.broker.refuse = 0
    w.clock += wicmp.RETRY_AFTER
    pings.from_guest(echo("192.0.2.2", seq=13))
    assert struct.unpack_from("!H", peer.recv(100), 6)[0] == 13
    peer.close()


def test_idle_and_refused_flows_expire_and_a_late_socket_is_closed() -> None:
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    w.broker.refuse = errno.EACCES
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    pings.from_guest(echo("192.0.2.2"))
    w.broker.refuse = 0
    pings.from_guest(echo(str(GW4)))
    assert len(pings.flows) == 2 and len(w.handlers) == 1
    pings.expire(w.clock + wicmp.FLOW_TIMEOUT + 1)
    assert not pings.flows and not w.handlers
    # a socket for a flow that has gone meanwhile is closed, not registered
    flow = wicmp.Flow(4, 1, GW4.packed, b"")
    a, b = socket.socketpair()
    pings._got_socket(flow, a.detach(), 0)
    assert not w.handlers
    b.setblocking(False)
    assert b.recv(1) == b""  # the other end was closed
    b.close()
    peer.close()


def test_peer_follows_the_mappings() -> None:
    """Replies are expected from where the broker sends: the host's loopback
    for the loopback-mapped address, the guest's own address on the host for
    --map-guest-addr, the address itself otherwise."""
    w = FakeWorker(("127.0.0.1", 9))
    assert w.cfg.v4 is not None
    mapped = IPv4Address("169.254.1.2")
    w.cfg = replace(w.cfg, v4=replace(w.cfg.v4, guest_map=mapped))
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    assert pings._peer(4, GW4.packed) == socket.inet_aton("127.0.0.1")
    assert pings._peer(4, mapped.packed) == ADDR4.packed
    assert pings._peer(4, socket.inet_aton("192.0.2.2")) == socket.inet_aton("192.0.2.2")
    nomap = wicmp.PingFlows(FakeWorker(("127.0.0.1", 9), map_gw=False))  # type: ignore[arg-type]
    assert nomap._peer(4, GW4.packed) == GW4.packed


def test_table_full_of_flows_in_use_refuses_new_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A guest pinging ever new identifiers cannot push out the flows it uses:
    while every flow has its socket and was used within EVICT_IDLE, a new
    flow's echo is dropped and counted, and the table is sorted at most once
    per ROOM_AFTER; then the longest idle flow makes room (its socket is no
    longer watched)."""
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    pings.max_flows = 4
    sorts = []

    def counting_sorted(*a, **kw):  # type: ignore[no-untyped-def]
        sorts.append(1)
        return sorted(*a, **kw)

    monkeypatch.setattr(flowsock, "sorted", counting_sorted, raising=False)
    for ident in range(4):
        w.clock += 1
        pings.from_guest(echo("192.0.2.2", ident=ident))
    for ident in range(100, 120):  # a flood of new identifiers
        w.clock += 0.01
        pings.from_guest(echo("192.0.2.2", ident=ident))
    assert sorted(k[1] for k in pings.flows) == [0, 1, 2, 3]
    assert pings.stats["full"] == 20 and w.drops.get(wicmp.DROP_FULL) == 20 and pings.stats["evicted"] == 0
    assert len(sorts) == 1, sorts  # once, then not again within ROOM_AFTER
    w.clock += flowsock.EVICT_IDLE + 1
    pings.from_guest(echo("192.0.2.2", ident=3))  # still in use
    pings.from_guest(echo("192.0.2.2", ident=200))
    assert sorted(k[1] for k in pings.flows) == [1, 2, 3, 200]
    assert pings.stats["evicted"] == 1
    assert len(w.handlers) == len(pings.flows)  # the evicted flow's socket is not watched
    # in use again, all of them: after ROOM_AFTER the table is searched once more, and refuses
    for ident in (1, 2, 3, 200):
        pings.from_guest(echo("192.0.2.2", ident=ident, seq=2))
    w.clock += flowsock.ROOM_AFTER + 0.1
    pings.from_guest(echo("192.0.2.2", ident=300))
    assert (4, 300, socket.inet_aton("192.0.2.2")) not in pings.flows and pings.stats["full"] == 21
    assert len(sorts) == 3, sorts  # the eviction's sort, and this one
    peer.close()


def test_flow_without_a_socket_makes_room_first() -> None:
    """Flows the broker refused (no socket) go before any flow in use."""
    peer = _peer()
    w = FakeWorker(peer.getsockname())
    pings = wicmp.PingFlows(w)  # type: ignore[arg-type]
    pings.max_flows = 4
    for ident in range(2):
        w.clock += 1
        pings.from_guest(echo("192.0.2.2", ident=ident))
    w.broker.refuse = errno.EACCES
    for ident in range(2, 4):
        w.clock += 1
        pings.from_guest(echo("192.0.2.2", ident=ident))
    w.broker.refuse = 0
    w.clock += 1
    pings.from_guest(echo("192.0.2.2", ident=50))
    assert sorted(k[1] for k in pings.flows) == [0, 1, 3, 50]
    assert pings.stats["evicted"] == 1 and pings.stats["full"] == 0
    peer.close()
