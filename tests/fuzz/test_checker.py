# SPDX-License-Identifier: GPL-2.0-or-later
"""The fuzz harness's own checks can fail: frames.check_to_guest on good and
broken frames, the stream model, and the worker harness on a worker that
misbehaves (a planted exception, a corrupted checksum, a leaked fd)."""

from __future__ import annotations

import os
import struct

import pytest

from passt_sep.proto import icmp
from passt_sep.proto import tcp as ptcp
from passt_sep.worker.loop import Worker

from . import frames as F
from . import worker_harness as H
from .seeds import worker_seeds
from .targets import _model

A4, B4 = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 10])
A6, B6 = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "10")
MAC = H.OUR_MAC


def good_frames() -> list[bytes]:
    return [
        F.frame(4, MAC, H.GUEST_MAC, A4, B4, F.TCP, F.tcp_seg(4, A4, B4, 80, 4000, 1, 2, 0x18, 9, b"", b"abc")),
        F.frame(6, MAC, H.GUEST_MAC, A6, B6, F.TCP, F.tcp_seg(6, A6, B6, 80, 4000, 1, 2, 0x12, 9,
                                                            ptcp.syn_options(1440, 7))),
        F.frame(4, MAC, H.GUEST_MAC, A4, B4, F.UDP, F.udp_dgram(4, A4, B4, 53, 5353, b"x" * 33)),
        F.frame(6, MAC, H.GUEST_MAC, A6, B6, F.UDP, F.udp_dgram(6, A6, B6, 53, 5353, b"y" * 7)),
        F.frame(4, MAC, H.GUEST_MAC, A4, B4, F.ICMP, F.icmp_msg(4, A4, B4, 0, 0, b"\0\1\0\2data")),
        F.frame(6, MAC, H.GUEST_MAC, A6, B6, F.ICMPV6, F.icmp_msg(6, A6, B6, 129, 0, b"\0\1\0\2")),
        F.arp_request(MAC, A4, B4, op=2),
    ]


def test_good_frames_pass() -> None:
    for f in good_frames():
        F.check_to_guest(f, False, MAC)
        F.check_to_guest(bytes(10) + f, True, MAC)  # behind a zero virtio-net header


@pytest.mark.parametrize("index", range(6))
def test_any_flipped_bit_past_the_ethernet_header_is_caught(index: int) -> None:
    """Every single-bit error in an IP frame breaks a checksum or a length (the TTL/hop
    limit and IPv6 traffic class/flow label aside, which no checksum covers)."""
    f = good_frames()[index]
    skip = {14 + 8} if f[14] >> 4 == 4 else {14, 15, 16, 17, 14 + 7}
    for i in range(14, len(f)):
        if i in skip:
            continue
        for bit in (0, 5):
            bad = bytearray(f)
            bad[i] ^= 1 << bit
            with pytest.raises(F.BadFrame):
                F.check_to_guest(bad, False, MAC)


def test_needs_csum_is_completed_and_wrong_offsets_caught() -> None:
    f = bytearray(good_frames()[0])
    struct.pack_into("!H", f, 14 + 20 + 16, F.pseudo4(A4, B4, F.TCP, len(f) - 34))  # partial sum only
    hdr = struct.pack("<BBHHHH", 1, 0, 0, 0, 34, 16)
    F.check_to_guest(hdr + bytes(f), True, MAC)
    with pytest.raises(F.BadFrame):
        F.check_to_guest(bytes(f), False, MAC)  # without the header the sum is not complete
    with pytest.raises(F.BadFrame):
        F.check_to_guest(struct.pack("<BBHHHH", 1, 0, 0, 0, 34, 4000) + bytes(f), True, MAC)


def test_other_source_mac_and_lengths_are_caught() -> None:
    f = good_frames()[2]
    with pytest.raises(F.BadFrame):
        F.check_to_guest(f, False, H.GUEST_MAC)
    with pytest.raises(F.BadFrame):
        F.check_to_guest(f + b"\0\0", False, MAC)  # IPv4 total length short of the frame
    with pytest.raises(F.BadFrame):
        F.check_to_guest(f[:-1], False, MAC)


def test_stream_model() -> None:
    fr = b"e" * 14
    s = struct.pack("!I", 14) + fr + struct.pack("!I", 3) + b"abc" + struct.pack("!I", 70000) + bytes(70000)
    assert _model(s + struct.pack("!I", 14) + fr) == ([fr, fr], False)
    assert _model(s + struct.pack("!I", 1 << 30) + struct.pack("!I", 14) + fr) == ([fr], True)


def test_worker_harness_catches_a_planted_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = worker_seeds()[0]
    H.run_input(seed)

    def boom(self: object, p: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(Worker, "on_udp", boom)
    H.run_input(seed)  # TCP only: not reached
    udp_seed = next(s for s in worker_seeds() if s[1] == 4)
    with pytest.raises(RuntimeError, match="planted"):
        H.run_input(udp_seed)


def test_worker_harness_catches_a_bad_checksum() -> None:
    """A frame the worker sends with one bit wrong fails the run's verify()."""
    run = H.Run("pasta", False)
    try:
        f = bytearray(icmp.echo_reply_frame(4, H.GUEST_MAC, MAC, A4, B4, icmp.Echo(1, 2, b"data")))
        run.w.send(bytes(f))
        run.verify()
        f[-1] ^= 0x40
        run.w.send(bytes(f))
        with pytest.raises(F.BadFrame, match="icmp checksum"):
            run.verify()
    finally:
        run.close()
        run.w.ep.close()


def test_worker_harness_catches_a_leaked_fd(monkeypatch: pytest.MonkeyPatch) -> None:
    real = H.Run.loop

    def leak(self: H.Run, r: H.Reader | None = None) -> None:
        os.dup(0)
        real(self, r)

    monkeypatch.setattr(H.Run, "loop", leak)
    with pytest.raises(F.BadFrame, match="fds left open"):
        H.run_input(worker_seeds()[0])
