#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""In-process cost of the worker's UDP tap paths (a developer's tool).

No namespaces and no pasta: a real ``Worker`` and real sockets on this
process's 127.0.0.1, so what is timed is the worker's Python plus its real
system calls, without wake-ups and without the kernel's work behind a real
tap. Only loopback is used.

- ``out``: guest datagrams of one flow (1,400 bytes, as iperf3 sends)
  read from a SOCK_SEQPACKET pair standing in for the tap (one frame per
  read, as a tap gives them), through the loop's dispatch and the flush at
  the end of the pass, to a connected socket on 127.0.0.1 (the receiver is
  drained outside the timed part);
- ``in``: datagrams from one sender on a -u socket, read with recvmmsg and
  written to a tap on /dev/null as GSO_UDP_L4 frames (the loopback sender
  is taken for the tap path here, not the splice).

    .venv/bin/python bench/udp_micro.py out in --count 20000 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import select
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passt_sep import ipc  # noqa: E402
from passt_sep.proto.packet import eth_header, ipv4_header  # noqa: E402
from passt_sep.worker.loop import Worker  # noqa: E402
from passt_sep.worker.tap import Tap  # noqa: E402
from tests.unit.test_udp_flows import ADDR4, GUEST_MAC, GW4, OUR_MAC, config  # noqa: E402

SIZE = 1400
PASS = 64  # frames per pass over the tap


class UdpBroker:
    """The parent's part of OP_UDP_PORT and OP_UDP_SOCKET, done at once in this process."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target

    def request(self, op: int, family: int, cb, port: int = 0, addr: bytes = b"", arg: int = 0,
                reset=None) -> None:  # type: ignore[no-untyped-def]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if op == ipc.OP_UDP_SOCKET:
            s.connect(self.target)
        cb(s.detach(), 0)


def _udp_frame(sport: int, dport: int, payload: bytes) -> bytes:
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") \
        + b"\0\0" + payload
    return bytes(10) + eth_header(OUR_MAC, GUEST_MAC, 0x0800) + ipv4_header(ADDR4.packed, GW4.packed, 17, len(udp)) + udp


def _drain(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recv(65536)
            n += 1
        except BlockingIOError:
            return n


def out(count: int, profile: bool) -> None:
    rcv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rcv.bind(("127.0.0.1", 0))
    rcv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rcv.setblocking(False)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    tap = Tap(a.fileno(), None)
    bs, _bs2 = socket.socketpair()
    w = Worker(config(), tap, bs, GUEST_MAC)
    w.broker = UdpBroker(rcv.getsockname())  # type: ignore[assignment]
    w.udp.defer = True
    frame = _udp_frame(40000, 5201, b"x" * SIZE)
    pr = cProfile.Profile() if profile else None
    spent = 0
    got = 0
    passes = count // PASS
    for i in range(passes + 5):
        for _ in range(PASS):
            b.send(frame)
        if pr and i == 5:
            pr.enable()
        t0 = time.perf_counter_ns()
        w._tap_event(select.EPOLLIN)
        t1 = time.perf_counter_ns()
        if i >= 5:
            spent += t1 - t0
        got += _drain(rcv)
    if pr:
        pr.disable()
    assert got == (passes + 5) * PASS, (got, (passes + 5) * PASS)
    print(f"out: {spent / (passes * PASS):.0f} ns per guest datagram ({SIZE} bytes, {PASS} per pass)")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)


class NullTap(Tap):
    """A tap on /dev/null that counts frames."""

    def __init__(self) -> None:
        super().__init__(os.open(os.devnull, os.O_WRONLY), None)
        self.frames = 0

    def write_raw(self, buf: bytes | bytearray | memoryview) -> bool:
        self.frames += 1
        return super().write_raw(buf)


def in_(count: int, profile: bool) -> None:
    tap = NullTap()
    bs, _bs2 = socket.socketpair()
    w = Worker(config(), tap, bs, GUEST_MAC)
    w.udp.splice_loop = False
    ls = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ls.bind(("127.0.0.1", 0))
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    ls.setblocking(False)
    w.udp.add_listener(os.dup(ls.fileno()), ls.getsockname()[1], 5201)
    (ib,) = w.udp.inbound.values()
    snd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    snd.connect(ls.getsockname())
    payload = b"y" * SIZE
    burst = 128
    pr = cProfile.Profile() if profile else None
    spent = 0
    rounds = count // burst
    for i in range(rounds + 5):
        for _ in range(burst):
            snd.send(payload)
        if pr and i == 5:
            pr.enable()
        t0 = time.perf_counter_ns()
        w.udp._inbound_readable(ib, select.EPOLLIN)
        t1 = time.perf_counter_ns()
        if i >= 5:
            spent += t1 - t0
    if pr:
        pr.disable()
    assert w.udp.stats["to_guest"] == (rounds + 5) * burst, w.udp.stats
    print(f"in: {spent / (rounds * burst):.0f} ns per host datagram ({SIZE} bytes, "
          f"{w.udp.stats['gso_frames']} GSO frames for {w.udp.stats['to_guest']})")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=["out", "in"])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--profile", action="store_true", help="cProfile the timed part")
    a = ap.parse_args()
    for case in a.cases:
        {"out": out, "in": in_}[case](a.count, a.profile)


if __name__ == "__main__":
    main()
