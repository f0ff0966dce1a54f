# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's socket pools (setup/sockpool.py) and the broker's use of them.

Real sockets, loopback only. A pooled socket is unconnected until the
broker takes it, connects it and only then replies with it; the pools
top up after the reply, the namespace's through a job it posts.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from passt_sep import ipc
from passt_sep.setup import sockpool
from passt_sep.setup.broker import Broker
from passt_sep.setup.sockpool import REFILL_AT, SocketPool
from tests.unit.test_broker import _config

FAMS = [socket.AF_INET, socket.AF_INET6]


def _enotconn(s: socket.socket) -> bool:
    try:
        s.getpeername()
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


def test_host_pool_fills_on_refill_and_hands_out_unconnected_sockets() -> None:
    pool = SocketPool(FAMS, size=3)
    assert pool.take(socket.AF_INET) is None  # nothing made before first use
    pool.refill()
    assert [len(pool.ready[f]) for f in FAMS] == [3, 3]
    for fam in FAMS:
        s = pool.take(fam)
        assert s is not None and s.family == fam and s.type == socket.SOCK_STREAM
        assert not s.getblocking() and not s.get_inheritable() and _enotconn(s)
        s.close()
    assert pool.take(socket.AF_UNIX) is None  # a family it does not keep
    pool.refill()
    assert [len(pool.ready[f]) for f in FAMS] == [3, 3]
    pool.close()
    assert [len(pool.ready[f]) for f in FAMS] == [0, 0]


def test_namespace_pool_refills_in_batches_through_posted_jobs() -> None:
    jobs: list[Callable[[], None]] = []
    pool = SocketPool([socket.AF_INET], post=jobs.append, size=8)
    pool.refill()
    assert len(jobs) == 1 and pool.pending
    pool.refill()
    assert len(jobs) == 1  # one job at a time
    jobs.pop()()
    assert len(pool.ready[socket.AF_INET]) == 8 and not pool.pending
    for _ in range(8 - REFILL_AT - 1):
        pool.take(socket.AF_INET).close()  # type: ignore[union-attr]
        pool.refill()
    assert not jobs  # still above the mark: no wake-up of the thread
    pool.take(socket.AF_INET).close()  # type: ignore[union-attr]
    pool.refill()
    assert len(jobs) == 1
    jobs.pop()()
    assert len(pool.ready[socket.AF_INET]) == 8
    pool.close()


def test_a_dead_namespace_thread_or_no_fds_leaves_the_pool_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(job: Callable[[], None]) -> None:
        raise OSError(errno.ESRCH, "namespace thread is gone")

    pool = SocketPool([socket.AF_INET], post=gone)
    pool.refill()  # no exception, and it may try again later
    assert not pool.pending and pool.take(socket.AF_INET) is None

    def no_fds(family: int, kind: int = 0, peek_off: bool = False) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(sockpool, "new_socket", no_fds)
    host = SocketPool([socket.AF_INET])
    host.refill()
    assert host.failed and host.take(socket.AF_INET) is None


def test_broker_connects_a_pooled_socket_and_tops_the_pool_up() -> None:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    port = lst.getsockname()[1]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    broker = Broker(_config(), a)
    try:
        req = ipc.pack_request(1, ipc.OP_TCP_CONNECT, socket.AF_INET, port, IPv4Address("192.0.2.1").packed)
        broker.handle(req)  # the pool is empty: a socket made on demand
        ready = broker.host_pool.ready[socket.AF_INET]
        assert len(ready) == sockpool.POOL_SIZE  # filled after the reply
        pooled = ready[-1]
        broker.handle(req)
        assert len(ready) == sockpool.POOL_SIZE  # one taken, one made
        assert all(s is not pooled for s in ready) and pooled.fileno() == -1  # taken, handed over, closed
        for _ in range(2):
            conn, peer = lst.accept()  # both connections reached the listener
            assert peer[0] == "127.0.0.1"
            conn.close()
        b.setblocking(False)
        for _ in range(2):
            _, fds, _, _ = socket.recv_fds(b, 64, 4)
            assert len(fds) == 1
            with socket.socket(fileno=fds[0]) as s:
                assert s.getpeername() == ("127.0.0.1", port)  # handed over connected
    finally:
        broker.host_pool.close()
        lst.close()
        a.close()
        b.close()


def test_udp_pool_hands_out_unbound_datagram_sockets() -> None:
    pool = SocketPool([socket.AF_INET], size=2, kind=socket.SOCK_DGRAM)
    pool.refill()
    s = pool.take(socket.AF_INET)
    assert s is not None and s.type == socket.SOCK_DGRAM and not s.getblocking()
    assert s.getsockname() == ("0.0.0.0", 0) and _enotconn(s)  # loop_udp binds and connects it
    s.close()
    pool.close()


PEEK_OFF = sockpool.SO_PEEK_OFF


def _peek_off(s: socket.socket) -> int:
    return s.getsockopt(socket.SOL_SOCKET, PEEK_OFF)


def test_tap_path_sockets_come_with_their_peek_offset() -> None:
    """With Config.tcp_peek_off the worker does not set SO_PEEK_OFF per
    connection, so every TCP socket the parent makes for the tap path must
    have it: pooled and fallback connect sockets, and -t listeners, whose
    accepted sockets inherit it. Without the flag the broker leaves it."""
    if not sockpool.tcp_peek_off_supported():
        pytest.skip("this kernel keeps no peek offset on TCP sockets")
    from passt_sep.record import replace
    from passt_sep.setup.listeners import _listen

    ls = _listen(socket.AF_INET, "127.0.0.1", 0, None, False)
    port = ls.getsockname()[1]
    try:
        assert _peek_off(ls) == 0
        b = Broker(replace(_config(), tcp_peek_off=True), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        req = ipc.Request(1, ipc.OP_TCP_CONNECT, socket.AF_INET, port, IPv4Address("192.0.2.1").packed, 0)
        fallback = b.tcp_connect(req)  # the pool is empty before first use
        b.host_pool.refill()
        pooled = b.tcp_connect(req)
        plain = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)).tcp_connect(req)
        assert isinstance(fallback, socket.socket) and isinstance(pooled, socket.socket)
        assert isinstance(plain, socket.socket)
        assert _peek_off(fallback) == 0 and _peek_off(pooled) == 0
        assert _peek_off(plain) == -1  # the worker sets it itself
        accepted = [ls.accept()[0] for _ in range(3)]
        assert [_peek_off(a) for a in accepted] == [0, 0, 0]
        # and it works as the worker relies on: consecutive peeks move on
        fallback.setblocking(True)
        fallback.sendall(b"abcdef")
        a0 = accepted[0]
        a0.settimeout(2)
        assert a0.recv(3, socket.MSG_PEEK) == b"abc" and a0.recv(3, socket.MSG_PEEK) == b"def"
        for s in (fallback, pooled, plain, *accepted):
            s.close()
        b.host_pool.close()
    finally:
        ls.close()
