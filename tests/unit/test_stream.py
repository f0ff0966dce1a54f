# SPDX-License-Identifier: GPL-2.0-or-later
"""Framing of passt's stream socket (worker.stream.StreamTap) against socketpairs.

Each test hands the StreamTap a client connection the way the parent does
(a CLIENT message with the fd over the control socket), writes raw bytes
on the peer end and checks which frames come out and that the parser stays
in step with the stream.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

import pytest

from passt_sep.proto.checksum import checksum, csum_partial, pseudo_v4
from passt_sep.worker import stream
from passt_sep.worker.stream import CLIENT, GONE, MAX_FRAME, StreamTap
from sandbox.fdpass import send_fds


class Rig:
    """A StreamTap with a control socket and a connected client peer."""

    def __init__(self) -> None:
        self.ctl, wctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tap = StreamTap(wctl.detach(), None)
        self.peer, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        send_fds(self.ctl, CLIENT, [theirs.fileno()])
        theirs.close()
        self.frames: list[bytes] = []
        self.pump()
        assert self.tap.client >= 0

    def pump(self, rounds: int = 5) -> None:
        """Let the tap handle whatever is ready (bounded)."""
        for _ in range(rounds):
            if not select.select([self.tap.fd], [], [], 0.05)[0]:
                return
            self.tap.readable(lambda f: self.frames.append(bytes(f)), select.EPOLLIN)

    def send(self, data: bytes) -> None:
        self.peer.sendall(data)
        self.pump()

    def close(self) -> None:
        for s in (self.ctl, self.peer):
            s.close()
        if self.tap.client >= 0:
            os.close(self.tap.client)
        self.tap.ep.close()
        self.tap.ctl.close()


def framed(frame: bytes) -> bytes:
    return struct.pack("!I", len(frame)) + frame


def eth(n: int, tag: int = 0) -> bytes:
    """An n-byte frame whose bytes identify it."""
    return bytes([tag & 0xFF]) * n


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def test_many_frames_in_one_read(rig):
    frames = [eth(60 + i, i) for i in range(50)]
    rig.send(b"".join(framed(f) for f in frames))
    assert rig.frames == frames


def test_frame_split_byte_by_byte_across_reads(rig):
    f1, f2 = eth(100, 1), eth(1514, 2)
    data = framed(f1) + framed(f2)
    for i in range(len(data)):
        rig.peer.sendall(data[i : i + 1])
        if i % 97 == 0 or i < 8:
            rig.pump()
    rig.pump()
    assert rig.frames == [f1, f2]


def test_largest_frame_and_split_length_field(rig):
    big = eth(MAX_FRAME, 7)
    data = framed(big) + framed(eth(64, 8))
    rig.send(data[:2])  # half a length field
    rig.send(data[2:40000])
    assert rig.frames == []
    rig.send(data[40000:])
    assert rig.frames == [big, eth(64, 8)]


@pytest.mark.parametrize("length", [0, 1, 13])
def test_short_frames_are_consumed_and_dropped(rig, length):
    rig.send(framed(eth(length, 3)) + framed(eth(60, 4)))
    assert rig.frames == [eth(60, 4)]
    assert rig.tap.stats["short"] == 1


def test_oversized_frame_is_skipped_across_reads_stream_stays_in_sync(rig):
    n = MAX_FRAME + 1000
    data = framed(eth(n, 5)) + framed(eth(60, 6))
    for i in range(0, len(data), 7000):
        rig.send(data[i : i + 7000])
    assert rig.frames == [eth(60, 6)]
    assert rig.tap.stats["oversized"] == 1
    assert rig.tap.client >= 0


def test_absurd_length_closes_the_connection_and_tells_the_parent(rig):
    rig.send(struct.pack("!I", 0xFFFFFFFF) + b"junk" + framed(eth(60)))
    assert rig.frames == []
    assert rig.tap.client < 0
    assert rig.tap.stats["corrupt"] == 1
    assert rig.ctl.recv(16) == GONE
    assert rig.peer.recv(10) == b""  # our end is closed


def test_client_eof_tells_the_parent_and_a_new_client_works(rig):
    rig.peer.close()
    rig.pump()
    assert rig.tap.client < 0
    assert rig.ctl.recv(16) == GONE
    rig.tap.write(eth(60))  # no client: dropped, no exception
    rig.peer, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    send_fds(rig.ctl, CLIENT, [theirs.fileno()])
    theirs.close()
    rig.pump()
    rig.send(framed(eth(70, 9)))
    assert rig.frames == [eth(70, 9)]


def test_partial_frame_is_dropped_with_its_client(rig):
    rig.send(framed(eth(1000))[:500])
    rig.peer.close()
    rig.pump()
    assert rig.frames == [] and rig.tap.have == 0


def test_write_prefixes_the_length(rig):
    rig.tap.write(eth(60, 1))
    rig.tap.write(eth(65535, 2))
    got = b""
    deadline = time.monotonic() + 5
    while len(got) < 8 + 60 + 65535 and time.monotonic() < deadline:
        got += rig.peer.recv(1 << 20)
    assert got == framed(eth(60, 1)) + framed(eth(65535, 2))


def test_write_refuses_bad_sizes(rig):
    rig.tap.write(eth(13))
    rig.tap.write(eth(MAX_FRAME + 1))
    rig.tap.write(eth(60, 1))
    assert rig.peer.recv(100) == framed(eth(60, 1))
    assert rig.tap.stats["out_dropped"] == 2


def test_slow_client_gets_whole_frames_in_order(rig):
    """Writes beyond the socket buffer queue up; nothing interleaves or tears."""
    rig.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frames = [eth(60000, i) for i in range(40)]  # 2.4 MB, below OUT_MAX
    for f in frames:
        rig.tap.write(f)
    assert rig.tap.out  # something had to wait
    want = b"".join(framed(f) for f in frames)
    got = bytearray()
    deadline = time.monotonic() + 10
    while len(got) < len(want) and time.monotonic() < deadline:
        rig.pump(1)
        try:
            got += rig.peer.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
    assert bytes(got) == want
    assert not rig.tap.out


def test_output_queue_is_bounded(rig, monkeypatch):
    monkeypatch.setattr(stream, "OUT_MAX", 200_000)
    rig.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(100):
        rig.tap.write(eth(60000, i))
    assert len(rig.tap.out) <= 200_000
    assert rig.tap.stats["out_dropped"] > 0


def _udp4_frame(payload: bytes) -> bytearray:
    src, dst = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])
    ulen = 8 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, src, dst))
    struct.pack_into("!H", ip, 10, checksum(ip))
    udp = bytearray(struct.pack("!HHHH", 53, 40000, ulen, 0)) + payload
    struct.pack_into("!H", udp, 6, pseudo_v4(src, dst, 17, ulen))  # pseudo-header sum only
    return bytearray(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00") + ip + udp


def test_write_raw_completes_a_needs_csum_checksum(rig):
    frame = _udp4_frame(b"hello, guest" * 10)
    vnet = struct.pack("<BBHHHH", 1, 0, 0, 0, 34, 6)  # NEEDS_CSUM, UDP at 14+20
    assert rig.tap.write_raw(vnet + frame)
    got = rig.peer.recv(4096)[4:]
    udp = got[34:]
    src, dst = got[26:30], got[30:34]
    assert udp[6:8] != b"\0\0"
    assert csum_partial(udp, pseudo_v4(src, dst, 17, len(udp))) == 0xFFFF  # verifies


def test_write_raw_refuses_gso(rig):
    vnet = struct.pack("<BBHHHH", 1, 1, 54, 1460, 34, 16)
    assert not rig.tap.write_raw(vnet + bytes(200))
    assert rig.tap.stats["gso_dropped"] == 1


def test_needs_csum_flag():
    assert StreamTap.needs_csum is True


def test_garbage_on_control_socket_is_ignored(rig):
    rig.ctl.send(b"nonsense")
    rig.pump()
    rig.send(framed(eth(60, 1)))
    assert rig.frames == [eth(60, 1)]
