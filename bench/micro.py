#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""In-process cost of the worker's TCP paths (a developer's tool).

No namespaces and no pasta: a real ``Worker`` whose tap writes to
/dev/null (frames toward the guest are kept for the checks) and a real
TCP connection on this process's 127.0.0.1, so what is timed is the
worker's Python plus its real socket calls, without wake-ups. Only
loopback is used.

- ``rr``: the two legs of a 1-byte round trip: a guest data frame until
  the byte is in the socket, and the echoed byte until its frame is built
  and written;
- ``crr``: one whole outbound connection (SYN, handshake, 1 byte each way,
  FIN both ways), including a stand-in for the parent's connect and the
  server's accept, recv, send and close in this process;
- ``splice``: one spliced connection (-T) from the parent's message to
  its close, the worker's handlers alone;
- ``crr_in``: one whole inbound connection through a -t listener on
  127.0.0.1 taken for the tap path, timed leg by leg: accept to the SYN
  for the guest, its SYN-ACK to the client's first byte in a frame, the
  guest's answer to the client's socket, the client's close to our FIN,
  the guest's FIN to the end (each leg ends with the loop's flush).

    .venv/bin/python bench/micro.py rr crr crr_in --count 3000 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import select
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passt_sep import ipc  # noqa: E402
from passt_sep.proto import tcp as ptcp  # noqa: E402
from passt_sep.proto.packet import eth_header, ipv4_header  # noqa: E402
from passt_sep.worker import tcp as wtcp  # noqa: E402
from passt_sep.worker.loop import Worker  # noqa: E402
from passt_sep.worker.tap import Tap  # noqa: E402
from tests.unit.test_udp_flows import ADDR4, GUEST_MAC, GW4, OUR_MAC, config  # noqa: E402


class KeepTap(Tap):
    """A tap on /dev/null that keeps the last frame written."""

    def __init__(self) -> None:
        super().__init__(os.open(os.devnull, os.O_WRONLY), None)
        self.last = b""

    def write_raw(self, buf: bytes | bytearray | memoryview) -> bool:
        self.last = bytes(buf)
        return super().write_raw(buf)


class ConnectBroker:
    """The parent's part of OP_TCP_CONNECT, done at once in this process."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, op: int, family: int, cb, port: int = 0, addr: bytes = b"", arg: int = 0,
                reset=None) -> None:  # type: ignore[no-untyped-def]
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        cb(s.detach(), ipc.STATUS_CONNECTED)


def _frame(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
           opts: bytes = b"") -> memoryview:
    hl = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (hl // 4) << 4, flags, 512, 0, 0) + opts + payload
    return memoryview(bytearray(eth_header(OUR_MAC, GUEST_MAC, 0x0800)
                                + ipv4_header(ADDR4.packed, GW4.packed, 6, len(tcp)) + tcp))


def _seg(frame: bytes) -> tuple[int, int, int]:
    seq, ack, _off, flags = struct.unpack_from("!IIBB", frame, 10 + 14 + 20 + 4)
    return seq, ack, flags


SYN_OPTS = struct.pack("!BBHBBBB", 2, 4, 65495, 1, 3, 3, 7) + b"\x01"


def setup() -> tuple[Worker, KeepTap, socket.socket]:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    tap = KeepTap()
    a, _b = socket.socketpair()
    w = Worker(config(), tap, a, GUEST_MAC)
    w.broker = ConnectBroker(ls.getsockname()[1])  # type: ignore[assignment]
    return w, tap, ls


def crr_once(w: Worker, tap: KeepTap, ls: socket.socket, sport: int) -> None:
    """One outbound connection from SYN to the last ACK."""
    port = ls.getsockname()[1]
    w.on_frame(_frame(sport, port, 1000, 0, ptcp.SYN, opts=SYN_OPTS))
    seq, _, flags = _seg(tap.last)
    assert flags == ptcp.SYN | ptcp.ACK, flags
    srv, _ = ls.accept()
    w.on_frame(_frame(sport, port, 1001, seq + 1, ptcp.ACK))
    w.on_frame(_frame(sport, port, 1001, seq + 1, ptcp.ACK | ptcp.PSH, b"x"))
    assert srv.recv(1) == b"x"
    srv.send(b"y")
    c = w.tcp.conns[(ADDR4.packed, sport, GW4.packed, port)]
    w.tcp._sock_event(c, select.EPOLLIN)
    assert _seg(tap.last)[2] & ptcp.PSH
    w.on_frame(_frame(sport, port, 1002, seq + 2, ptcp.ACK | ptcp.FIN))
    w.tcp.flush()  # the end of the loop's batch: the half-close
    assert srv.recv(1) == b""
    srv.close()
    w.tcp._sock_event(c, select.EPOLLIN | select.EPOLLRDHUP)
    fin_seq, _, flags = _seg(tap.last)
    assert flags & ptcp.FIN, flags
    w.on_frame(_frame(sport, port, 1003, fin_seq + 1, ptcp.ACK))
    w.tcp.flush()
    assert c.closed and c.sock is None
    if w.tcp.delayed:
        w.tcp.flush_delayed(float("inf"))


def crr(n: int, profile: bool) -> None:
    w, tap, ls = setup()
    for i in range(200):
        crr_once(w, tap, ls, 20000 + i)
    pr = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if pr:
        pr.enable()
    for i in range(n):
        crr_once(w, tap, ls, 30000 + i % 30000)
    if pr:
        pr.disable()
    dt = time.perf_counter() - t0
    print(f"crr: {dt / n * 1e6:.1f} µs per connection (worker path + server side, no wake-ups)")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


def crr_in(n: int, profile: bool) -> None:
    from passt_sep.worker.splice import KIND_IN, Listener

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.setblocking(False)
    ls.setsockopt(socket.SOL_SOCKET, wtcp.SO_PEEK_OFF, 0)  # as the parent sets it
    tap = KeepTap()
    a, _b = socket.socketpair()
    w = Worker(config(), tap, a, GUEST_MAC)
    w.splice.enabled = False  # a loopback peer to the tap path, as a non-loopback one goes
    w.tcp.peek_preset = True  # Config.tcp_peek_off: the parent set it on the listener (above)
    lst = Listener(ls, ls.getsockname()[1], 8080, KIND_IN)
    legs = [0] * 5
    pc = time.perf_counter_ns

    def once(timed: bool) -> None:
        cli = socket.create_connection(ls.getsockname())
        cli.send(b"x")
        # connections here come closer together than splice.BURST_GAP (in a
        # real crr run they are ~170 µs apart): time the lone-connection path
        lst.last_accept = -1.0
        t0 = pc()
        w.splice._accept(lst)
        t1 = pc()
        seq, _, flags = _seg(tap.last)
        assert flags == ptcp.SYN, flags
        rport = struct.unpack_from("!H", tap.last, 10 + 14 + 20)[0]
        synack = _frame(8080, rport, 7000, seq + 1, ptcp.SYN | ptcp.ACK, opts=SYN_OPTS)
        t2 = pc()
        w.on_frame(synack)
        w.tcp.flush()
        t3 = pc()
        s2 = _seg(tap.last)[0]
        assert tap.last[-1:] == b"x"
        answer = _frame(8080, rport, 7001, s2 + 1, ptcp.ACK | ptcp.PSH, b"y")
        t4 = pc()
        w.on_frame(answer)
        w.tcp.flush()
        t5 = pc()
        assert cli.recv(1) == b"y"
        cli.close()
        (c,) = w.tcp.conns.values()
        select.select([c.fd], [], [], 1.0)  # the client's FIN has reached the socket
        t6 = pc()
        w.tcp._sock_event(c, select.EPOLLIN | select.EPOLLRDHUP)
        w.tcp.flush()
        t7 = pc()
        fin_seq, _, flags = _seg(tap.last)
        assert flags & ptcp.FIN, flags
        fin = _frame(8080, rport, 7002, fin_seq + 1, ptcp.ACK | ptcp.FIN)
        t8 = pc()
        w.on_frame(fin)
        w.tcp.flush()
        t9 = pc()
        assert not w.tcp.conns and c.sock is None
        if w.tcp.delayed:
            w.tcp.flush_delayed(float("inf"))
        if timed:
            for i, d in enumerate((t1 - t0, t3 - t2, t5 - t4, t7 - t6, t9 - t8)):
                legs[i] += d

    for _ in range(200):
        once(False)
    pr = cProfile.Profile() if profile else None
    if pr:
        pr.enable()
    for _ in range(n):
        once(True)
    if pr:
        pr.disable()
    names = ("accept to SYN", "SYN-ACK to data", "answer to socket", "EOF to FIN", "FIN to end")
    print("crr_in: " + ", ".join(f"{k} {v / n / 1000:.2f} µs" for k, v in zip(names, legs, strict=True))
          + f"; {sum(legs) / n / 1000:.1f} µs in all")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


def splice(n: int, profile: bool) -> None:
    """A spliced connection as the parent hands it over (ipc.ACCEPT, both
    fds), 1 byte each way, EOF both ways: only the worker's handlers are
    timed (the client's and the server's calls, and epoll_wait, are not)."""
    front = socket.socket()  # the -T listener (the parent's)
    front.bind(("127.0.0.1", 0))
    front.listen(4096)
    back = socket.socket()  # the server on the other side's loopback
    back.bind(("127.0.0.1", 0))
    back.listen(4096)
    a, _b = socket.socketpair()
    w = Worker(config(), KeepTap(), a, GUEST_MAC)
    sp = w.splice
    sp.enabled = True
    msg = ipc.pack_accept(back.getsockname()[1], ipc.PAIR_CONNECTED | (1 << 4), socket.AF_INET)
    pc = time.perf_counter_ns
    spent = [0]

    def pump(until) -> None:  # type: ignore[no-untyped-def]
        for _ in range(1000):
            if until():
                return
            for fd, ev in w.ep.poll(0.01):
                t0 = pc()
                w.handlers[fd](ev)
                spent[0] += pc() - t0
        raise AssertionError("no progress")

    def once() -> None:
        cli = socket.create_connection(front.getsockname())
        afd, _ = front._accept()  # type: ignore[attr-defined]
        b = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        b.connect_ex(back.getsockname())
        srv, _ = back.accept()
        cli.send(b"x")  # in a crr run the client has spoken before the parent's message comes
        t0 = pc()
        sp.accepted(msg, [afd, b.detach()])
        spent[0] += pc() - t0
        srv.setblocking(False)
        got: list[bytes] = []

        def srv_has() -> bool:
            try:
                got.append(srv.recv(1))
            except BlockingIOError:
                return False
            return True

        pump(srv_has)
        assert got == [b"x"]
        srv.send(b"y")
        cli.setblocking(False)
        got.clear()

        def cli_has() -> bool:
            try:
                got.append(cli.recv(1))
            except BlockingIOError:
                return False
            return True

        pump(cli_has)
        assert got == [b"y"]
        cli.close()
        got.clear()
        pump(srv_has)
        assert got == [b""]
        srv.close()
        pump(lambda: not sp.conns)

    for _ in range(200):
        once()
    spent[0] = 0
    pr = cProfile.Profile() if profile else None
    if pr:
        pr.enable()
    for _ in range(n):
        once()
    if pr:
        pr.disable()
    print(f"splice: the worker's handlers {spent[0] / n / 1000:.1f} µs per connection")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


def rr(n: int, profile: bool) -> None:
    w, tap, ls = setup()
    cli = socket.create_connection(ls.getsockname())
    srv, _ = ls.accept()
    cli.setblocking(False)
    t = w.tcp
    c = t._new_conn(4, ADDR4.packed, 40000, GW4.packed, 80)
    c.sock, c.fd = cli, cli.fileno()
    t.by_fd[c.fd] = c
    w.add(c.fd, functools.partial(t._sock_event, c), wtcp.EV_DATA)
    c.ev_data = True
    c.seq_from_tap, c.ws_from_tap, c.ws_to_tap, c.wnd_from_tap, c.isn = 1000, 7, 8, 65535 << 7, 5000
    t._establish(c)
    frame = bytearray(_frame(40000, 80, 0, 0, ptcp.ACK | ptcp.PSH, b"x"))
    pr = cProfile.Profile() if profile else None
    legs = [0, 0]
    pc = time.perf_counter_ns
    for i in range(n + 100):
        struct.pack_into("!II", frame, 14 + 20 + 4, c.seq_from_tap, c.seq_to_tap)
        if pr and i == 100:
            pr.enable()
        t0 = pc()
        w.on_frame(memoryview(frame))
        t1 = pc()
        assert srv.recv(1) == b"x"
        srv.send(b"y")
        t2 = pc()
        t._sock_event(c, select.EPOLLIN)
        t3 = pc()
        if i >= 100:
            legs[0] += t1 - t0
            legs[1] += t3 - t2
    if pr:
        pr.disable()
    print(f"rr: guest frame to socket {legs[0] / n / 1000:.2f} µs, "
          f"socket to guest frame {legs[1] / n / 1000:.2f} µs")
    if pr:
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("cases", nargs="+", choices=["rr", "crr", "crr_in", "splice"])
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--profile", action="store_true", help="cProfile the timed part")
    a = ap.parse_args()
    for case in a.cases:
        {"rr": rr, "crr": crr, "crr_in": crr_in, "splice": splice}[case](a.count, a.profile)


if __name__ == "__main__":
    main()
