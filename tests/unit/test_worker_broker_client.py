# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's broker client (worker/loop.py BrokerClient) under fd exhaustion and floods.

Real SOCK_SEQPACKET socket pairs, the test playing the parent. Out of fds,
a reply's fd is lost in transit (MSG_CTRUNC): the request it answers must
still complete (with an error) and free its in-flight slot, or after a few
dozen such losses every new flow would wait in the backlog for good. The
fd exhaustion is real: a forked child with a low RLIMIT_NOFILE, filled up.
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import socket
import time
from typing import Any

import pytest

from passt_sep import ipc
from passt_sep.worker import loop as loopmod
from passt_sep.worker.loop import BrokerClient as Client


def _in_child(fn: Any) -> None:
    """Run fn() in a forked child; fail with what it wrote if it did not exit 0."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 1
        try:
            fn()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the test
            os.write(w, f"{type(e).__name__}: {e}".encode()[:4000])
        os._exit(code)
    os.close(w)
    msg = b""
    while chunk := os.read(r, 4096):
        msg += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, msg.decode()


def _exhaust_fds() -> list[int]:
    """Lower RLIMIT_NOFILE to a little above what is open, then open /dev/null until EMFILE.

    The garbage of earlier tests is collected first and the collector
    stopped: a socket object freed later would give an fd back.
    """
    gc.collect()
    gc.disable()
    opened = len(os.listdir("/proc/self/fd"))
    highest = max(int(n) for n in os.listdir("/proc/self/fd"))
    lim = max(opened, highest + 1) + 8
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
    held = []
    for _ in range(lim + 1):
        try:
            held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as e:
            assert e.errno == errno.EMFILE
            return held
    raise AssertionError("RLIMIT_NOFILE did not bite")


def _serve(parent: socket.socket, n: int, fd: int) -> None:
    """Answer n requests, each with status 0 and a copy of fd."""
    for _ in range(n):
        data = parent.recv(64)
        req = ipc.unpack_request(data)
        assert req is not None
        parent.sendmsg([ipc.pack_reply(req.seq, 0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little"))])


def test_replies_whose_fd_was_lost_complete_their_request() -> None:
    """Out of fds: every reply arrives truncated, yet no request stays pending."""

    def body() -> None:
        parent, wsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        r, w = os.pipe()
        c = Client(wsock)
        results: list[tuple[int | None, int]] = []
        n = 40  # more than the in-flight limit of the op
        held = _exhaust_fds()
        for _ in range(n):
            c.request(ipc.OP_UDP_SOCKET, socket.AF_INET, lambda fd, st: results.append((fd, st)),
                      port=53, addr=bytes([192, 0, 2, 1]))
        deadline = time.monotonic() + 5
        while len(results) < n and time.monotonic() < deadline:
            parent.setblocking(False)
            try:
                while True:
                    data = parent.recv(64)
                    req = ipc.unpack_request(data)
                    assert req is not None
                    parent.sendmsg([ipc.pack_reply(req.seq, 0)],
                                   [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))])
            except BlockingIOError:
                pass
            assert c.readable()
        assert len(results) == n, f"{len(results)} of {n} requests completed, {len(c.pending)} pending"
        assert all(fd is None and st == errno.EMFILE for fd, st in results), [x for x in results if x[1] != errno.EMFILE]
        assert not c.pending
        for fd in held:
            os.close(fd)
        # and the client is not wedged: the next request goes out at once
        got: list[tuple[int | None, int]] = []
        c.request(ipc.OP_UDP_SOCKET, socket.AF_INET, lambda fd, st: got.append((fd, st)),
                  port=53, addr=bytes([192, 0, 2, 1]))
        parent.setblocking(True)
        parent.settimeout(2)
        _serve(parent, 1, r)
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            c.readable()
        assert got and got[0][0] is not None and got[0][1] == 0, got
        os.close(got[0][0])
        assert c.lost_fds == n

    _in_child(body)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _parent_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Client, socket.socket, _Clock]:
    from passt_sep.setup import broker as brokermod
    from tests.unit.test_broker_monitor import _config

    clock = _Clock()
    monkeypatch.setattr(loopmod, "_monotonic", clock)
    monkeypatch.setattr(brokermod, "_monotonic", clock)
    psock, wsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    return brokermod.Broker(_config(), psock), Client(wsock), psock, clock


def _parent_reads(b: Any, psock: socket.socket) -> int:
    """The parent answers every request waiting (as its supervise loop does); returns how many."""
    n = 0
    while True:
        try:
            data = psock.recv(256)
        except BlockingIOError:
            return n
        b.handle(data)
        n += 1


def test_a_syn_flood_stays_within_the_quota_the_parent_enforces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A legitimate worker under a flood of guest SYNs: throttled by its client, never killed.

    The worst case for the parent's exact check: a full window's worth sent
    in one second, its last requests still in flight when the window turns,
    then a full window's worth again.
    """
    b, c, psock, clock = _parent_pair(monkeypatch)
    op, q = ipc.OP_TCP_CONNECT, ipc.QUOTAS[ipc.OP_TCP_CONNECT]
    done: list[int] = []
    loopback = bytes([127, 0, 0, 1])  # refused by the destination policy: an errno reply, no socket

    def flood(n: int) -> None:
        for _ in range(n):
            c.request(op, socket.AF_INET, lambda _fd, st: done.append(st), port=80, addr=loopback)

    flood(3 * q.per_second)  # far more than one window's worth, at once
    assert c.inflight[op] == q.inflight and len(c.backlog[op]) == q.per_second
    assert c.refused == 3 * q.per_second - q.inflight - q.per_second
    received = 0
    for _ in range(10 * q.per_second):  # bounded: each round moves at least one request
        received += _parent_reads(b, psock)
        c.readable()
        if c.sent[op] >= q.per_second:
            break
    assert c.sent[op] == q.per_second and c.inflight[op] > 0
    in_flight_at_turn = c.inflight[op]
    clock.t = 101.0  # the window turns with requests unread by the parent
    flood(q.per_second)
    for _ in range(10 * q.per_second):
        got = _parent_reads(b, psock)
        received += got
        c.readable()
        if c.sent[op] >= q.per_second and not c.inflight[op]:
            break
    assert b.quota_count[op] == ipc.parent_limit(op) - q.inflight + in_flight_at_turn
    assert b.quota_count[op] <= ipc.parent_limit(op)
    assert not c.pending and received == 2 * q.per_second
    assert done.count(errno.EACCES) == received and done.count(errno.EAGAIN) == c.refused > 0


def test_the_client_holds_back_a_ping_flood(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held back, not lost: what waits goes out in the next window; past the backlog, EAGAIN at once."""
    b, c, psock, clock = _parent_pair(monkeypatch)
    op, q = ipc.OP_PING_SOCKET, ipc.QUOTAS[ipc.OP_PING_SOCKET]
    sts: list[int] = []
    for _ in range(2 * q.per_second):
        c.request(op, socket.AF_INET, lambda _fd, st: sts.append(st), addr=bytes([169, 254, 0, 1]))
    assert _parent_reads(b, psock) == q.inflight  # only the in-flight quota reached the parent
    assert sts.count(errno.EAGAIN) == 2 * q.per_second - q.inflight - q.per_second
    for _ in range(q.per_second):
        if not _parent_reads(b, psock):
            c.readable()
    assert c.sent[op] == q.per_second and c.waiting == q.inflight  # the window's quota is spent
    clock.t = 101.0
    c.pump()
    while _parent_reads(b, psock) or c.pending:
        c.readable()
    assert c.waiting == 0 and len(sts) == 2 * q.per_second
    # one more request of another op is not held back by the ping backlog
    assert c.inflight[ipc.OP_TCP_CONNECT] == 0


def test_the_parent_kills_a_worker_over_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests sent raw, around the client: the one past parent_limit is a protocol violation."""
    from passt_sep.errors import ProtocolViolation

    b, _c, psock, clock = _parent_pair(monkeypatch)
    op = ipc.OP_PING_SOCKET
    limit = ipc.parent_limit(op)
    req = ipc.pack_request(1, op, socket.AF_INET, 0, bytes([169, 254, 0, 1]))
    for _ in range(limit):
        b.handle(req)
    with pytest.raises(ProtocolViolation, match=f"over quota: more than {limit} requests of op {op}"):
        b.handle(req)
    clock.t = 101.0  # a new window counts from zero, per op
    b.handle(req)
    assert b.quota_count[op] == 1
    psock.close()


def test_one_message_per_wake_up_and_epoll_reports_the_rest() -> None:
    """readable(one=True), as the loop calls it, handles the first waiting
    reply only; the socket is watched level-triggered, so epoll still says
    it is readable while the others wait, and each comes in turn."""
    import select

    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        client = Client(child)
        done: list[int] = []
        for i in range(3):
            client.request(ipc.OP_UDP_SOCKET, socket.AF_INET, lambda fd, st, i=i: done.append(i), port=53,
                           addr=bytes(16))
        for _ in range(3):
            req = ipc.unpack_request(parent.recv(64))
            assert req is not None
            parent.send(ipc.pack_reply(req.seq, errno.EACCES))
        ep = select.epoll()
        ep.register(child.fileno(), select.EPOLLIN)
        for n in (1, 2, 3):
            assert ep.poll(1.0) == [(child.fileno(), select.EPOLLIN)]
            assert client.readable(one=True)
            assert done == list(range(n))
        assert ep.poll(0) == []
        ep.close()
    finally:
        parent.close()
        child.close()
