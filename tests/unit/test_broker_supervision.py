# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker as a monitor: zero-length messages, and a busy namespace thread.

A real Broker on a real SOCK_SEQPACKET socketpair. On such a socket a
zero-length record reads like end of stream; from a live worker it is a
protocol violation, while the end of a worker that exited stays the
ordinary end of the run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

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
