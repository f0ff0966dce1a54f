# SPDX-License-Identifier: GPL-2.0-or-later
"""worker/splice.py's small-message path (recv and send while a direction is
young), on real loopback sockets in this process: bytes arrive whole and in
order (sha256), a blocked destination keeps the rest in the pipe, and an EOF
that comes with the last bytes is not lost."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable

from passt_sep import ipc
from passt_sep.worker.loop import Worker
from passt_sep.worker.tap import Tap
from tests.unit.test_udp_flows import GUEST_MAC, config


class _Pair:
    """A -T connection as the parent hands it over: client, server, and the worker between."""

    def __init__(self, sndbuf: int = 0) -> None:
        self.front = socket.socket()
        self.front.bind(("127.0.0.1", 0))
        self.front.listen(8)
        self.back = socket.socket()
        self.back.bind(("127.0.0.1", 0))
        self.back.listen(8)
        a, self.peer = socket.socketpair()
        self.w = Worker(config(), Tap(os.open(os.devnull, os.O_WRONLY), None), a, GUEST_MAC)
        self.w.splice.enabled = True
        self.cli = socket.create_connection(self.front.getsockname())
        afd, _ = self.front._accept()  # type: ignore[attr-defined]
        b = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        if sndbuf:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.connect_ex(self.back.getsockname())
        self.srv, _ = self.back.accept()
        msg = ipc.pack_accept(self.back.getsockname()[1], ipc.PAIR_CONNECTED | (1 << 4), socket.AF_INET)
        self.w.splice.accepted(msg, [afd, b.detach()])
        self.cli.setblocking(False)
        self.srv.setblocking(False)

    def pump(self, until: Callable[[], bool], limit: float = 10.0) -> None:
        end = time.monotonic() + limit
        while not until():
            assert time.monotonic() < end, "no progress"
            for fd, ev in self.w.ep.poll(0.01):
                self.w.handlers[fd](ev)

    def close(self) -> None:
        for s in (self.cli, self.srv, self.front, self.back, self.peer):
            s.close()
        for c in list(self.w.splice.conns):
            self.w.splice._close(c, reset=True)


def _drain(s: socket.socket, into: bytearray) -> bool:
    """Read what s has; True once it said EOF."""
    while True:
        try:
            d = s.recv(65536)
        except BlockingIOError:
            return False
        if not d:
            return True
        into += d


def test_messages_both_ways_then_eof_with_the_last_bytes() -> None:
    p = _Pair()
    try:
        got = bytearray()
        for i in range(50):
            msg = f"request {i:04}".encode()  # 12 bytes each
            p.cli.send(msg)
            p.pump(lambda: _drain(p.srv, got) or len(got) >= 12)
            assert bytes(got) == msg
            got.clear()
            p.srv.send(msg.upper())
            p.pump(lambda: _drain(p.cli, got) or len(got) >= 12)
            assert bytes(got) == msg.upper()
            got.clear()
        # the last bytes and the FIN in one wake-up: the EOF must still reach the server
        p.cli.send(b"last")
        p.cli.shutdown(socket.SHUT_WR)
        eof = [False]

        def srv_done() -> bool:
            eof[0] = eof[0] or _drain(p.srv, got)
            return eof[0]

        p.pump(srv_done)
        assert bytes(got) == b"last"
        assert p.w.splice.stats["spliced"] == 1
    finally:
        p.close()


def test_blocked_destination_keeps_the_rest_in_order() -> None:
    """A server that does not read: the first MiB takes the small path, whose
    partial sends leave the rest in the pipe; all of it arrives in order."""
    p = _Pair(sndbuf=4096)
    try:
        data = os.urandom(3 << 20)
        sent = 0
        got = bytearray()
        end = time.monotonic() + 30
        eof = False
        while not eof:
            assert time.monotonic() < end, f"stalled at {len(got)} of {len(data)}"
            if sent < len(data):
                try:
                    sent += p.cli.send(data[sent:sent + 1500])  # small writes: many small reads
                except BlockingIOError:
                    pass
                if sent == len(data):
                    p.cli.shutdown(socket.SHUT_WR)
            for fd, ev in p.w.ep.poll(0.001):
                p.w.handlers[fd](ev)
            if len(got) < 64 << 10 or sent == len(data):  # the server reads late: the worker blocks first
                eof = _drain(p.srv, got)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        p.close()
