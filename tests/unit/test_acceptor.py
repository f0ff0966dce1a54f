# SPDX-License-Identifier: GPL-2.0-or-later
"""setup/acceptor.py with real sockets on the loopback: what the worker is sent.

The parent's Acceptor, driven by hand (no supervise loop): a listener
stands in for a -T listener (every connection spliced to the loopback at
its target) or a -t twin; a socketpair stands in for the broker's socket,
and what arrives on its other end is decoded as the worker would
(ipc.unpack_accept, SCM_RIGHTS).
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import socket
from collections.abc import Callable, Iterator

import pytest

from passt_sep import ipc
from passt_sep.setup.acceptor import KIND_NS, KIND_T, Acceptor, loopback_peer
from passt_sep.setup.sockpool import SocketPool
from sandbox.fdpass import recv_fds, send_fds


class FakeBroker:
    """What Acceptor uses of Broker: send (with a queue), the host pool, ns_connect."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queue: collections.deque[tuple[bytes, list[int]]] = collections.deque()
        self.host_pool = SocketPool([socket.AF_INET, socket.AF_INET6])
        self.ns_pool = SocketPool([socket.AF_INET, socket.AF_INET6])

    def send(self, msg: bytes, fds: list[int]) -> None:
        if self.queue:
            self.queue.append((msg, [os.dup(fd) for fd in fds]))
            return
        send_fds(self.sock, msg, fds)

    def ns_tcp_pool(self) -> SocketPool:
        return self.ns_pool

    def ns_connect(self, family: int, port: int) -> socket.socket:
        from passt_sep.setup.sockpool import loop_connect

        return loop_connect(family, port, self.ns_pool.take(family))


@pytest.fixture
def rig() -> Iterator[tuple[Acceptor, FakeBroker, socket.socket, dict[int, Callable[[int], object]]]]:
    parent, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    broker = FakeBroker(parent)
    acc = Acceptor(broker)  # type: ignore[arg-type]
    watched: dict[int, Callable[[int], object]] = {}
    acc.start(lambda fd, h: watched.__setitem__(fd, h), lambda fd: watched.pop(fd, None))
    yield acc, broker, worker, watched
    acc.close()
    parent.close()
    worker.close()


def _listener(addr: str = "127.0.0.1") -> socket.socket:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    s.bind((addr, 0))
    s.listen(16)
    return s


def _recv(worker: socket.socket) -> tuple[tuple, list[socket.socket]]:
    data, fds = recv_fds(worker, 64, 2, socket.MSG_DONTWAIT)
    msg = ipc.unpack_accept(data)
    assert msg is not None, data
    return msg, [socket.socket(fileno=fd) for fd in fds]


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"])
def test_spliced_pair_carries_data_both_ways(rig, loop: str) -> None:  # type: ignore[no-untyped-def]
    """A -T connection: the worker gets the accepted socket and one already
    connected to the server at the target; bytes written by the client
    before the parent accepted are there, in order (sha256)."""
    acc, _broker, worker, watched = rig
    server = _listener(loop)
    target = server.getsockname()[1]
    ls = _listener(loop)
    acc.add(ls, ls.getsockname()[1], target, KIND_NS)
    client = socket.create_connection((loop, ls.getsockname()[1]), timeout=5)
    payload = os.urandom(100_000)
    client.sendall(payload[:50_000])  # before the accept
    watched[ls.fileno()](0)
    (tgt, state, kind, family, afam, peer), (a, b) = _recv(worker)
    assert (tgt, state, kind, peer) == (target, ipc.PAIR_CONNECTED, KIND_NS, None)
    assert family == afam == (socket.AF_INET6 if ":" in loop else socket.AF_INET)
    client.sendall(payload[50_000:])
    client.shutdown(socket.SHUT_WR)
    srv, _ = server.accept()
    srv.settimeout(5)
    a.settimeout(5)
    got = b""  # the worker's job, done here by hand: a → b
    while d := a.recv(65536):
        got += d
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    b.sendall(b"reply")
    b.shutdown(socket.SHUT_WR)
    assert srv.recv(10) == b"reply"
    for s in (client, srv, a, b, server):
        s.close()


def test_refused_target(rig) -> None:  # type: ignore[no-untyped-def]
    """Nothing listens on the target: the worker learns it from the socket
    sent along (SO_ERROR, then it resets the accepted one), or gets the
    accepted socket alone if connect() itself failed."""
    acc, _broker, worker, watched = rig
    dead = _listener()
    target = dead.getsockname()[1]
    dead.close()  # nothing listens on the target any more
    ls = _listener()
    acc.add(ls, ls.getsockname()[1], target, KIND_NS)
    client = socket.create_connection(("127.0.0.1", ls.getsockname()[1]), timeout=5)
    watched[ls.fileno()](0)
    (_tgt, state, _kind, _fam, _afam, _peer), socks = _recv(worker)
    if state == ipc.PAIR_PENDING:  # the usual case: a non-blocking connect's refusal comes after it
        assert len(socks) == 2
        assert socks[1].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
    else:  # refused within connect(): the accepted socket alone
        assert state == ipc.PAIR_REFUSED and len(socks) == 1 and acc.stats["refused"] == 1
    for s in (client, *socks):
        s.close()


def test_client_that_resets_before_the_accept(rig) -> None:  # type: ignore[no-untyped-def]
    """The client is gone (RST) before the parent's accept4: whatever the
    kernel makes of it, the parent carries on and the next client is served."""
    acc, _broker, worker, watched = rig
    server = _listener()
    ls = _listener()
    acc.add(ls, ls.getsockname()[1], server.getsockname()[1], KIND_NS)
    c = socket.create_connection(("127.0.0.1", ls.getsockname()[1]), timeout=5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    c.close()  # RST
    good = socket.create_connection(("127.0.0.1", ls.getsockname()[1]), timeout=5)
    for _ in range(3):
        watched[ls.fileno()](0)
    got = []
    while True:
        try:
            got.append(_recv(worker))
        except BlockingIOError:
            break
    assert got and all(m[0][1] in (ipc.PAIR_CONNECTED, ipc.PAIR_PENDING) for m in got), got
    for _m, socks in got:
        for s in socks:
            s.close()
    good.close()
    server.close()


def test_non_loopback_peer_of_a_twin_goes_to_the_tap_path(rig) -> None:  # type: ignore[no-untyped-def]
    """A twin's client from a non-loopback source: the accepted socket alone,
    with its peer address and port, for the worker's tap path."""
    acc, _broker, worker, watched = rig
    # a stand-in: the peer check is loopback_peer on the accepted address
    assert loopback_peer("127.0.0.5") == socket.AF_INET
    assert loopback_peer("::ffff:127.0.0.1") == socket.AF_INET
    assert loopback_peer("::1") == socket.AF_INET6
    assert loopback_peer("192.0.2.1") is None and loopback_peer("::ffff:192.0.2.1") is None
    msg = ipc.unpack_accept(ipc.pack_accept(80, ipc.PAIR_TAP | ipc.ACCEPTED_V6, socket.AF_INET6,
                                            "2001:db8::5", 4242))
    assert msg == (80, ipc.PAIR_TAP, KIND_T, socket.AF_INET6, socket.AF_INET6, ("2001:db8::5", 4242))
    msg = ipc.unpack_accept(ipc.pack_accept(80, ipc.PAIR_TAP, socket.AF_INET, "192.0.2.7", 1))
    assert msg == (80, ipc.PAIR_TAP, KIND_T, socket.AF_INET, socket.AF_INET, ("192.0.2.7", 1))
    assert ipc.unpack_accept(b"TACC" + bytes(21)) is None  # wrong size
    assert ipc.unpack_accept(ipc.pack_accept(80, 0, socket.AF_INET)[:-1] + b"\0") is not None


def test_listeners_pause_while_the_worker_is_behind(rig) -> None:  # type: ignore[no-untyped-def]
    """A queue to the worker stops the accepting (the kernel's backlog holds
    the clients); tick() watches the listeners again once it is empty."""
    acc, broker, worker, watched = rig
    server = _listener()
    ls = _listener()
    acc.add(ls, ls.getsockname()[1], server.getsockname()[1], KIND_NS)
    broker.queue.append((b"x", []))
    client = socket.create_connection(("127.0.0.1", ls.getsockname()[1]), timeout=5)
    watched[ls.fileno()](0)
    assert acc.paused and ls.fileno() not in watched
    with pytest.raises(BlockingIOError):
        recv_fds(worker, 64, 2, socket.MSG_DONTWAIT)
    acc.tick()
    assert acc.paused  # still queued
    broker.queue.clear()
    acc.tick()
    assert not acc.paused and ls.fileno() in watched
    watched[ls.fileno()](0)
    (_t, state, *_rest), socks = _recv(worker)
    assert state == ipc.PAIR_CONNECTED
    for s in (client, server, *socks):
        s.close()
