# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests of the UDP splice path: the broker's two ops and the worker's flow table.

Everything runs on this process's loopback: the broker's sockets and the
"servers" are bound to 127.0.0.1 / ::1 only.
"""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from passt_sep import ipc
from passt_sep.setup.autofwd import loop_udp
from passt_sep.setup.broker import Broker
from passt_sep.setup.listeners import LocalBind, udp_reply_socket
from passt_sep.worker import flowsock
from passt_sep.worker import udpsplice as us
from tests.unit.test_udp_flows import config


def _broker(allowed: set[int], **opts: object) -> Broker:
    b = Broker(config(**opts), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    b.fwd = SimpleNamespace(  # type: ignore[assignment]
        host_udp_target_ok=lambda p: p in allowed, ns_udp_target_ok=lambda p: p in allowed,
        ns=SimpleNamespace(call=lambda fn, *_wait: fn(), post=lambda job: job()))
    return b


def _req(op: int, family: int, port: int) -> ipc.Request:
    return ipc.Request(1, op, family, port, bytes(16), 0)


@pytest.mark.parametrize("op", [ipc.OP_HOST_LOOP_UDP, ipc.OP_NS_LOOP_UDP])
@pytest.mark.parametrize("family,loop", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_broker_loop_udp_only_current_targets_and_loopback(op: int, family: int, loop: str) -> None:
    b = _broker({40001})
    handler = b.host_loop_udp if op == ipc.OP_HOST_LOOP_UDP else b.ns_loop_udp
    s = handler(_req(op, family, 40001))
    assert isinstance(s, socket.socket)
    try:
        assert s.getsockname()[0] == loop and s.getpeername()[:2] == (loop, 40001)
    finally:
        s.close()
    assert handler(_req(op, family, 40002)) == errno.EPERM  # not a target
    assert handler(_req(op, family, 0)) == errno.EPERM
    assert handler(_req(op, socket.AF_UNIX, 40001)) == errno.EPERM
    assert _broker({40001}, no_udp=True).host_loop_udp(_req(op, family, 40001)) == errno.EPERM
    b.fwd = None
    assert handler(_req(op, family, 40001)) == errno.EPERM


class FakeBroker:
    """Answers the loopback UDP ops with loop_udp and the reply ops with
    udp_reply_socket on the loopback of the family, as the parent would."""

    def __init__(self) -> None:
        self.ops: list[int] = []

    def request(self, op: int, family: int, cb: Callable[[int | None, int], None],
                port: int = 0, addr: bytes = b"", arg: int = 0) -> None:
        self.ops.append(op)
        if op in (ipc.OP_UDP_REPLY, ipc.OP_NS_UDP_REPLY):
            loop = "127.0.0.1" if family == socket.AF_INET else "::1"
            b = LocalBind(family, loop, b"", True)
            cb(udp_reply_socket(b, port, socket.inet_ntop(family, addr), arg).detach(), 0)
            return
        assert op in (ipc.OP_HOST_LOOP_UDP, ipc.OP_NS_LOOP_UDP)
        cb(loop_udp(family, port).detach(), 0)


class FakeWorker:
    def __init__(self) -> None:
        self.cfg = config()
        self.broker = FakeBroker()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.drops: dict[str, int] = {}
        self.clock = 1000.0

    def now(self) -> float:
        return self.clock

    def add(self, fd: int, handler: Callable[[int], None], events: int = select.EPOLLIN) -> None:
        self.handlers[fd] = handler

    def remove(self, fd: int) -> None:
        self.handlers.pop(fd, None)

    def drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def pump(self, timeout: float = 1.0) -> None:
        ready, _, _ = select.select(list(self.handlers), [], [], timeout)
        for fd in ready:
            self.handlers[fd](select.EPOLLIN)


def _udp(addr: str = "127.0.0.1", port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as listeners._udp_bind
    s.settimeout(2)
    return s


def test_U_socket_relays_and_replies_come_back_from_it() -> None:
    w: Any = FakeWorker()
    sp = us.UdpSplicer(w)
    server = _udp()
    lsock = _udp()  # stands for a -U socket bound inside the namespace
    lport = lsock.getsockname()[1]
    sp.add_ns_socket(lsock.detach(), lport, server.getsockname()[1])
    clients = [_udp() for _ in range(3)]
    for i, c in enumerate(clients):
        c.sendto(f"hello {i}".encode(), ("127.0.0.1", lport))
        w.pump()
        data, peer = server.recvfrom(100)
        assert data == f"hello {i}".encode() and peer[0] == "127.0.0.1"
        server.sendto(b"back " + data, peer)
        w.pump()
        data, frm = c.recvfrom(100)
        assert data == f"back hello {i}".encode() and frm == ("127.0.0.1", lport)
        # the sender's next datagram goes to its reply socket, and on the same way
        c.sendto(b"more", ("127.0.0.1", lport))
        w.pump()
        assert server.recvfrom(100) == (b"more", peer)
    # each flow: its reply socket first, then the socket to the host's loopback
    assert len(sp.flows) == 3 and w.broker.ops == [ipc.OP_NS_UDP_REPLY, ipc.OP_HOST_LOOP_UDP] * 3
    flow = next(iter(sp.flows.values()))
    assert flow.rsock is not None and flow.rsock.getpeername() == clients[0].getsockname()
    assert sp.stats["to_host"] == 6 and sp.stats["to_ns"] == 3
    # idle flows expire after 180 s; then the drop closes the socket itself
    w.clock += us.FLOW_TIMEOUT + 1
    sp.timer(w.clock)
    assert not sp.flows and sp.stats["expired"] == 3
    assert sp.remove_ns_port(lport) == 1 and not w.handlers
    for s in [server, *clients]:
        s.close()


def test_flow_table_bounded_oldest_idle_evicted() -> None:
    """A new sender finds the table full of flows in use: dropped and counted;
    once the oldest has been idle EVICT_IDLE, it makes room."""
    w: Any = FakeWorker()
    sp = us.UdpSplicer(w, max_flows=2)
    server = _udp("::1")
    lsock = _udp("::1")
    lfd = lsock.fileno()
    clients = [_udp("::1") for _ in range(3)]
    def send(i: int, c: socket.socket) -> None:
        sp.relay(us.KIND_HOST, lsock, lfd, lsock.getsockname()[1], socket.AF_INET6, c.getsockname(),
                 server.getsockname()[1], memoryview(b"x%d" % i))

    for i, c in enumerate(clients[:2]):
        w.clock += 1
        send(i, c)
        assert server.recv(10) == b"x%d" % i
    send(2, clients[2])
    assert sp.stats["full"] == 1 and sp.stats["evicted"] == 0 and len(sp.flows) == 2
    w.clock += flowsock.EVICT_IDLE + 1
    send(2, clients[2])
    assert server.recv(10) == b"x2"
    assert len(sp.flows) == 2 and sp.stats["evicted"] == 1
    assert (lfd, clients[0].getsockname()) not in sp.flows
    sp.forget_socket(lfd)
    assert not sp.flows and not w.handlers
    for s in [server, lsock, *clients]:
        s.close()
