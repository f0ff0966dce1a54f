# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker as a monitor: zero-length messages, and a busy namespace thread.

A real Broker on a real SOCK_SEQPACKET socketpair. On such a socket a
zero-length record reads like end of stream; from a live worker it is a
protocol violation, while the end of a worker that exited stays the
ordinary end of the run.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from passt_sep import ipc
from passt_sep.errors import ProtocolViolation
from passt_sep.setup.broker import Broker
from tests.unit.test_broker_monitor import _config


@pytest.fixture
def pair() -> Iterator[tuple[Broker, socket.socket]]:
    parent, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(_config(), parent)
    yield b, worker
    parent.close()
    worker.close()


def test_a_zero_length_record_is_a_violation(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    worker.send(b"")
    assert b.sock.recv(256) == b""  # reads like end of stream
    with pytest.raises(ProtocolViolation, match="zero-length message"):
        b.end_of_stream(os.getpid())


def test_a_zero_length_record_then_more_is_a_violation(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    worker.send(b"")
    worker.send(b"x" * 40)
    assert b.sock.recv(256) == b""
    with pytest.raises(ProtocolViolation, match="zero-length message"):
        b.end_of_stream(os.getpid())


def test_a_live_worker_that_closes_its_end_is_a_violation(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    worker.send(b"")
    worker.close()  # then end of stream: two empty reads, and the "worker" (this process) lives on
    assert b.sock.recv(256) == b""
    t0 = time.monotonic()
    with pytest.raises(ProtocolViolation, match="closed its end"):
        b.end_of_stream(os.getpid())
    assert time.monotonic() - t0 < 3


def test_the_end_of_a_worker_that_exited_is_not_a_violation(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # holds the worker's end until it exits
    worker.close()
    try:
        b.sock.settimeout(5)
        assert b.sock.recv(256) == b""
        t0 = time.monotonic()
        b.end_of_stream(pid)  # no exception
        assert time.monotonic() - t0 < 1.0
    finally:
        os.waitpid(pid, 0)


class _Fwd:
    """The Forwarder's part the splice ops use: the namespace thread and the target check."""

    def __init__(self, nst: object) -> None:
        self.ns = nst

    def ns_target_ok(self, port: int) -> bool:
        return True

    def ns_udp_target_ok(self, port: int) -> bool:
        return True


@pytest.fixture
def busy_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, threading.Event]]:
    """An NsThread (setns faked: the test's own netns) busy with a slow job until released."""
    from passt_sep.setup import autofwd
    from sandbox import ns

    monkeypatch.setattr(ns, "setns", lambda fd, kind: None)
    t = autofwd.NsThread(-1)
    release = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(20)

    t.post(slow)
    assert started.wait(5)
    yield t, release
    release.set()
    t.close()
    t.t.join(5)


@pytest.mark.parametrize("op", [ipc.OP_NS_LOOP_CONNECT, ipc.OP_NS_LOOP_UDP])
def test_a_busy_namespace_thread_does_not_stall_supervision(
        pair: tuple[Broker, socket.socket], busy_thread: tuple[object, threading.Event], op: int) -> None:
    """SIGTERM arrives while a request waits on the busy thread: handled within a second.

    The request fails with EAGAIN after SUPERVISE_WAIT (the worker resets
    that flow) and the supervise loop, which checks for signals after
    every request, goes on; the socket the thread makes later is closed.
    """
    from passt_sep.setup.autofwd import SUPERVISE_WAIT

    b, worker = pair
    nst, release = busy_thread
    b.fwd = _Fwd(nst)  # type: ignore[assignment]
    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda s, _f: got.append(s))
    try:
        threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGTERM)).start()
        t0 = time.monotonic()
        b.handle(ipc.pack_request(5, op, socket.AF_INET, 8080))
        elapsed = time.monotonic() - t0
    finally:
        signal.signal(signal.SIGTERM, old)
    assert got == [signal.SIGTERM]
    assert SUPERVISE_WAIT <= elapsed < 1.0, elapsed
    seq, status = ipc.unpack_reply(worker.recv(64)) or (0, 0)
    assert (seq, status) == (5, errno.EAGAIN)
    assert nst.late == 1  # type: ignore[attr-defined]
    before = len(os.listdir("/proc/self/fd"))
    release.set()  # the thread gets to the call now: what it makes is closed, not leaked
    deadline = time.monotonic() + 5
    while nst.q.qsize() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    time.sleep(0.1)
    pool = b.ns_pool if op == ipc.OP_NS_LOOP_CONNECT else b.ns_udp_pool
    assert pool is not None and not pool.pending
    pooled = sum(len(r) for r in pool.ready.values())
    assert len(os.listdir("/proc/self/fd")) == before + pooled  # the late socket was closed
    pool.close()


def test_a_setup_call_still_waits_for_its_answer(busy_thread: tuple[object, threading.Event]) -> None:
    nst, release = busy_thread
    threading.Timer(0.3, release.set).start()
    assert nst.call(lambda: 42) == 42  # type: ignore[attr-defined]
