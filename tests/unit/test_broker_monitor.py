# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker as a monitor: what a misbehaving worker gets.

A real Broker on a real SOCK_SEQPACKET socketpair, the test holding the
worker's end: a malformed or unknown request ends the run (ProtocolViolation),
a worker that never reads its replies cannot block the parent, and once it
reads again every queued message arrives in order with its fd.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from passt_sep import ipc
from passt_sep.cli import Options
from passt_sep.config import V4, V6, Config
from passt_sep.errors import ProtocolViolation
from passt_sep.setup import broker as brokermod
from passt_sep.setup.broker import Broker
from passt_sep.setup.parent import Parent
from sandbox.fdpass import recv_fds


def _config() -> Config:
    gw4, gw6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")
    v4 = V4(addr=IPv4Address("192.0.2.10"), prefix=24, gw=gw4, dns=(), dns_match=None, dns_host=None,
            ifname="eth0", host_lo=gw4, guest_map=None)
    v6 = V6(addr=IPv6Address("2001:db8::10"), prefix=64, gw=gw6, our_ll=IPv6Address("fe80::1"), dns=(),
            dns_match=None, dns_host=None, ifname="eth0", host_lo=gw6, guest_map=None)
    return Config(opts=Options(mode="pasta"), mode="pasta", v4=v4, v6=v6, our_mac=b"\x02" * 6, mtu=65520,
                  ns_ifname="eth0", search=())


@pytest.fixture
def pair() -> Iterator[tuple[Broker, socket.socket]]:
    parent, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(_config(), parent)
    yield b, worker
    parent.close()
    worker.close()


def _serving_parent(b: Broker) -> Parent:
    """A Parent with only what _serve_broker uses: the broker and its socket."""
    p = Parent.__new__(Parent)
    p.sock, p.broker = b.sock, b
    p.worker_pid = 0  # no worker process to ask: the record, not the process, decides
    return p


def test_a_zero_length_request_is_a_protocol_violation(pair: tuple[Broker, socket.socket]) -> None:
    """On SOCK_SEQPACKET a zero-length message reads as b"" like the end of the
    socket; with the worker's end still open it is a message, and a violation."""
    b, worker = pair
    worker.send(b"")
    unwatched: list[int] = []
    with pytest.raises(ProtocolViolation, match="zero-length"):
        _serving_parent(b)._serve_broker(unwatched.append)
    assert unwatched == []


@pytest.mark.parametrize("zero_first", [False, True])
def test_the_end_of_the_broker_socket_is_not_a_violation(pair: tuple[Broker, socket.socket],
                                                         zero_first: bool) -> None:
    """The worker closed its end (it is leaving): the parent stops watching the
    socket, the worker's exit is reported by its pidfd; a zero-length message
    just before the close reads as the end too (the worker is gone either way)."""
    b, worker = pair
    if zero_first:
        worker.send(b"")
    worker.close()
    unwatched: list[int] = []
    _serving_parent(b)._serve_broker(unwatched.append)
    assert unwatched == [b.sock.fileno()]


@pytest.mark.parametrize("data", [b"\0" * (ipc.REQ.size - 1), b"\0" * (ipc.REQ.size + 1), b"x", b"\0" * 4096])
def test_a_malformed_request_is_a_protocol_violation(pair: tuple[Broker, socket.socket], data: bytes) -> None:
    b, worker = pair
    with pytest.raises(ProtocolViolation, match=f"malformed request \\({len(data)} bytes\\)"):
        b.handle(data)
    worker.setblocking(False)
    with pytest.raises(BlockingIOError):  # and nothing was answered
        worker.recv(64)


@pytest.mark.parametrize("op", [0, 99, 0xFFFF])
def test_an_unknown_op_is_a_protocol_violation(pair: tuple[Broker, socket.socket], op: int) -> None:
    b, _worker = pair
    with pytest.raises(ProtocolViolation, match=f"unknown request op {op}"):
        b.handle(ipc.pack_request(1, op, socket.AF_INET, 80, IPv4Address("192.0.2.99").packed))


def test_a_request_out_of_policy_is_refused_not_fatal(pair: tuple[Broker, socket.socket]) -> None:
    """A guest can make the worker ask for a forbidden destination: that is a refusal, not a violation."""
    b, worker = pair
    b.handle(ipc.pack_request(7, ipc.OP_TCP_CONNECT, socket.AF_INET, 80, IPv4Address("127.0.0.1").packed))
    seq, status = struct.unpack("=Ii", worker.recv(64))
    assert (seq, status) != (7, 0) and seq == 7 and status > 0


def test_a_worker_that_never_reads_cannot_block_the_parent(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    r, w = os.pipe()
    try:
        sent = 0
        with pytest.raises(ProtocolViolation, match="does not read its replies"):
            for i in range(brokermod.QUEUE_MAX * 4):  # each call returns at once or raises
                b.send(ipc.pack_reply(i, 0), [r] if i % 64 == 0 else [])
                sent += 1
        assert b.queue, "the socket never filled: nothing was tested"
        assert sent < brokermod.QUEUE_MAX * 4
    finally:
        os.close(r)
        os.close(w)


def test_queued_messages_arrive_in_order_with_their_fds(pair: tuple[Broker, socket.socket]) -> None:
    b, worker = pair
    r, w = os.pipe()
    n = 0
    while not b.queue and n < 100_000:  # fill the socket, then queue a few with an fd each
        b.send(ipc.pack_reply(n, 0), [])
        n += 1
    assert b.queue, "the socket never filled"
    first_queued = n - 1
    for _ in range(5):
        b.send(ipc.pack_reply(n, 0), [r])
        n += 1
    os.close(r)  # the queue holds its own duplicates
    got, fds = [], 0
    worker.setblocking(False)
    for _ in range(n + 10):
        b.flush()
        try:
            msg, rfds = recv_fds(worker, 64, 4)
        except BlockingIOError:
            if not b.queue:
                break
            continue
        got.append(struct.unpack("=Ii", msg)[0])
        for fd in rfds:
            os.write(w, b"x")
            assert os.read(fd, 1) == b"x"  # the very pipe we queued
            os.close(fd)
            fds += 1
    os.close(w)
    assert got == list(range(n)), (len(got), n, first_queued)
    assert fds == 5 and not b.queue and b.queued_fds == 0
