# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.setup.sockdiag: bound ports through sock_diag.

Against the real kernel: sockets of this test process bound on 127.0.0.1
and ::1 (no traffic leaves loopback) must show up in the right dump and
state, and the dump must agree with /proc/net. Crafted netlink replies
check the fallbacks: an error or a malformed message is None, never an
exception or a partial answer.
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from passt_sep.setup import sockdiag
from passt_sep.setup.autofwd import parse_proc_net


@pytest.fixture
def diag():
    s = sockdiag.open_socket()
    yield s
    s.close()


def _bound(kind: int, family: int, listen: bool) -> socket.socket:
    s = socket.socket(family, kind)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    if listen:
        s.listen()
    return s


def test_listening_tcp_ports_and_only_those(diag: socket.socket) -> None:
    l4 = _bound(socket.SOCK_STREAM, socket.AF_INET, True)
    l6 = _bound(socket.SOCK_STREAM, socket.AF_INET6, True)
    idle = _bound(socket.SOCK_STREAM, socket.AF_INET, False)  # bound, not listening
    c = socket.create_connection(l4.getsockname())  # an established pair
    a, _ = l4.accept()
    with l4, l6, idle, c, a:
        v4 = sockdiag.ports(diag, socket.AF_INET, socket.IPPROTO_TCP, sockdiag.TCP_LISTEN)
        v6 = sockdiag.ports(diag, socket.AF_INET6, socket.IPPROTO_TCP, sockdiag.TCP_LISTEN)
        assert v4 is not None and v6 is not None
        assert l4.getsockname()[1] in v4 and l6.getsockname()[1] in v6
        assert l6.getsockname()[1] not in v4
        for other in (idle.getsockname()[1], c.getsockname()[1]):
            assert other not in v4
        with open("/proc/net/tcp", "rb") as f:
            proc = parse_proc_net(f.read(), (b"0A",))
        assert l4.getsockname()[1] in proc
        # both list the same listeners (the test's and any the machine has)
        assert proc == sockdiag.ports(diag, socket.AF_INET, socket.IPPROTO_TCP, sockdiag.TCP_LISTEN)


def test_unconnected_udp_ports_below_a_limit(diag: socket.socket) -> None:
    u = _bound(socket.SOCK_DGRAM, socket.AF_INET, False)
    peer = _bound(socket.SOCK_DGRAM, socket.AF_INET, False)
    conn = _bound(socket.SOCK_DGRAM, socket.AF_INET, False)
    conn.connect(peer.getsockname())
    with u, peer, conn:
        got = sockdiag.ports(diag, socket.AF_INET, socket.IPPROTO_UDP, sockdiag.TCP_CLOSE)
        if got is None:
            pytest.skip("no udp_diag in this kernel: the caller reads /proc (covered below)")
        assert u.getsockname()[1] in got and peer.getsockname()[1] in got
        assert conn.getsockname()[1] not in got
        port = u.getsockname()[1]
        below = sockdiag.ports(diag, socket.AF_INET, socket.IPPROTO_UDP, sockdiag.TCP_CLOSE, below=port)
        assert below is not None and port not in below


class Canned:
    """A netlink socket that answers with prepared bytes."""

    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, n: int) -> bytes:
        return self.replies.pop(0) if self.replies else b""


def _msg(mtype: int, body: bytes) -> bytes:
    m = struct.pack("=IHHII", 16 + len(body), mtype, 2, 1, 0) + body
    return m + bytes(-len(m) % 4)


def _entry(port: int) -> bytes:
    return struct.pack("=BBBB", 2, 10, 0, 0) + struct.pack("!HH", port, 0) + bytes(44) + bytes(20)


def test_parses_a_multi_part_dump() -> None:
    s = Canned(_msg(20, _entry(80)) + _msg(20, _entry(8080)), _msg(20, _entry(22)) + _msg(3, bytes(4)))
    assert sockdiag.ports(s, socket.AF_INET, socket.IPPROTO_TCP, 10) == {80, 8080, 22}  # type: ignore[arg-type]
    family, proto, _ext, states = struct.unpack_from("=BBBxI", s.sent[0], 16)
    assert (family, proto, states) == (socket.AF_INET, socket.IPPROTO_TCP, 1 << 10)


@pytest.mark.parametrize("reply", [
    _msg(2, struct.pack("=i", -errno.ENOENT) + bytes(16)),  # no diag module for the protocol
    struct.pack("=IHHII", 4000, 20, 2, 1, 0) + _entry(80),  # a length past the data
    struct.pack("=IHHII", 8, 20, 2, 1, 0),  # a length below the header
    b"",  # the socket closed
])
def test_errors_and_garbage_mean_fall_back(reply: bytes) -> None:
    assert sockdiag.ports(Canned(reply), socket.AF_INET, socket.IPPROTO_UDP, 7) is None  # type: ignore[arg-type]
