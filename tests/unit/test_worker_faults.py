# SPDX-License-Identifier: GPL-2.0-or-later
"""Fault isolation in the worker (worker/faults.py): one flow's bug ends that flow only.

A real Worker with real epoll and real TCP/UDP sockets on 127.0.0.1 (the
_RealWorker of the TCP tests); the bug is put in by monkeypatching one
handler so that it raises for one flow only. Shown: the faulty flow is
reset (RST to the guest, the host peer sees ECONNRESET; a UDP flow and its
socket are gone), its traceback is logged once, the count goes up, a
concurrent flow goes on, and the rate and total limits end the loop with
EXIT_FAULTS (fail closed).
"""

from __future__ import annotations

import os
import select
import socket
import struct
from collections.abc import Iterator

import pytest

from passt_sep import ipc
from passt_sep.proto import tcp
from passt_sep.proto.packet import ETH_HLEN
from passt_sep.worker import faults
from passt_sep.worker.faults import EXIT_FAULTS, FaultLimit, Faults
from passt_sep.worker.tcp import TcpFlows
from passt_sep.worker.udp import UdpFlows
from tests.unit.test_tcp_proto import _RealWorker, parsed, tcp_frame


class Boom(Exception):
    """The bug put into a handler."""


def _frame(flags: int, sport: int, payload: bytes = b"", seq: int = 1000, ack: int = 0,
           options: bytes = b"") -> memoryview:
    f = bytearray(tcp_frame(flags, payload, options=options, seq=seq, ack=ack))
    struct.pack_into("!H", f, ETH_HLEN + 20, sport)
    return memoryview(f)


def _segs(frames: list[bytes]) -> list[tcp.Segment]:
    out = []
    for b in frames:
        s = tcp.parse_segment(parsed(b[tcp.VNET_HDR_LEN:]))
        assert isinstance(s, tcp.Segment)
        out.append(s)
    return out


class _Conn:
    """One guest connection through the real worker to a server socket on 127.0.0.1."""

    def __init__(self, rw: _RealWorker, sport: int) -> None:
        w = rw.w
        rw.frames.clear()
        n = len(rw.requests)
        w.on_frame(_frame(tcp.SYN, sport, options=tcp.syn_options(1460, 7)))
        s = socket.socket()
        s.connect(rw.ls.getsockname())
        self.srv, _ = rw.ls.accept()
        self.srv.settimeout(2)
        s.setblocking(False)
        rw.requests[n](s.detach(), ipc.STATUS_CONNECTED)
        (synack,) = _segs(rw.frames)
        assert synack.flags == tcp.SYN | tcp.ACK and synack.dport == sport
        self.sport = sport
        self.seq = 1001
        self.ack = (synack.seq + 1) & 0xFFFFFFFF
        w.on_frame(_frame(tcp.ACK, sport, seq=self.seq, ack=self.ack))
        rw.frames.clear()

    def send(self, rw: _RealWorker, data: bytes) -> None:
        rw.w.on_frame(_frame(tcp.ACK | tcp.PSH, self.sport, data, seq=self.seq, ack=self.ack))
        self.seq += len(data)


@pytest.fixture
def rw() -> Iterator[_RealWorker]:
    r = _RealWorker()
    r.ls.listen(8)
    try:
        yield r
    finally:
        r.close()


def _poll(rw: _RealWorker, rounds: int = 10) -> None:
    """The loop's dispatch, guarded as in Worker.run (bounded: rounds of 20 ms)."""
    w = rw.w
    for _ in range(rounds):
        for fd, ev in w.ep.poll(0.02):
            h = w.handlers.get(fd)
            if h is not None:
                try:
                    h(ev)
                except FaultLimit:
                    raise
                except Exception as e:  # noqa: BLE001 - as Worker._run
                    w._fd_fault(fd, e)
        if w.tcp.pending or w.tcp.ending:
            w.tcp.flush()


def test_a_guest_frame_fault_resets_that_connection_only(rw: _RealWorker, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    w = rw.w
    good, bad = _Conn(rw, 40001), _Conn(rw, 40002)
    real = TcpFlows._established

    def buggy(self: TcpFlows, c: object, p: object, seg: tcp.Segment) -> None:
        if seg.sport == 40002:
            raise Boom("a bug in the data path")
        real(self, c, p, seg)  # type: ignore[arg-type]

    monkeypatch.setattr(TcpFlows, "_established", buggy)
    bad.send(rw, b"x" * 100)
    rsts = [s for s in _segs(rw.frames) if s.flags & tcp.RST]
    assert len(rsts) == 1 and rsts[0].dport == 40002 and rsts[0].seq == bad.ack
    with pytest.raises(ConnectionResetError):  # the host side is reset too (SO_LINGER 0)
        bad.srv.recv(10)
    assert w.faults.count == 1 and w.tcp.stats["faults"] == 1
    assert len(w.tcp.conns) == 1
    # the other connection goes on, both ways
    rw.frames.clear()
    good.send(rw, b"still here")
    assert good.srv.recv(100) == b"still here"
    good.srv.sendall(b"and back")
    _poll(rw)
    assert any(bytes(f).endswith(b"and back") for f in rw.frames)
    # the traceback, once; a second fault of the same kind is one line
    bad2 = _Conn(rw, 40002)
    bad2.send(rw, b"y")
    err = capfd.readouterr().err
    assert err.count("Traceback (most recent call last)") == 1
    assert "in buggy" in err and "fault 1 in a guest frame of tcp connection" in err
    assert "fault 2 in" in err and "traceback shown before" in err
    assert w.faults.count == 2
    assert w.faults.summary() == "flow faults: 2"


def test_a_host_socket_fault_resets_that_connection(rw: _RealWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    w = rw.w
    good, bad = _Conn(rw, 40011), _Conn(rw, 40012)
    real = TcpFlows._sock_event

    def buggy(self: TcpFlows, c: object, ev: int) -> None:
        if c.key[1] == 40012:  # type: ignore[attr-defined]
            raise Boom("a bug on the host side")
        real(self, c, ev)  # type: ignore[arg-type]

    monkeypatch.setattr(TcpFlows, "_sock_event", buggy)
    # (the registered partials hold the old method: register anew, as a new connection would)
    for conn in list(w.tcp.conns.values()):
        w.handlers[conn.fd] = lambda ev, c=conn: buggy(w.tcp, c, ev)
    bad.srv.sendall(b"data")
    good.srv.sendall(b"more data")
    _poll(rw)
    rsts = [s for s in _segs(rw.frames) if s.flags & tcp.RST]
    assert [s.dport for s in rsts] == [40012]
    assert any(bytes(f).endswith(b"more data") for f in rw.frames)
    with pytest.raises(ConnectionResetError):
        bad.srv.recv(10)
    assert w.faults.count == 1 and list(c.key[1] for c in w.tcp.conns.values()) == [40011]
    assert not w.resets.keys() - {c.fd for c in w.tcp.conns.values()}  # the reset fd is forgotten


def test_a_udp_flow_fault_drops_that_flow(rw: _RealWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_udp_flows import frame

    w = rw.w
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        w.on_frame(memoryview(bytearray(frame(4, "192.0.2.1", peer.getsockname()[1], b"hello", sport=5000).frame)))
        assert len(w.udp.flows) == 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(peer.getsockname())
        sock.setblocking(False)
        cb = rw.requests[-1]
        cb(sock.detach(), 0)
        flow = next(iter(w.udp.flows.values()))
        assert flow.fd in w.resets

        def buggy(self: UdpFlows, f: object, ev: int) -> None:
            raise Boom("a bug in the UDP path")

        monkeypatch.setattr(UdpFlows, "_flow_readable", buggy)
        w.handlers[flow.fd] = lambda ev: buggy(w.udp, flow, ev)
        data, addr = peer.recvfrom(100)
        assert data == b"hello"
        peer.sendto(b"reply", addr)
        _poll(rw, 5)
        assert w.faults.count == 1 and not w.udp.flows and flow.sock is None
        assert w.udp.stats["faults"] == 1
    finally:
        peer.close()


def test_frame_fault_without_connection_answers_rst(rw: _RealWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(self: TcpFlows, p: object, seg: object) -> None:
        raise Boom("a bug in the SYN path")

    monkeypatch.setattr(TcpFlows, "_guest_syn", buggy)
    rw.w.on_frame(_frame(tcp.SYN, 40021, options=tcp.syn_options(1460, 7)))
    (rst,) = _segs(rw.frames)
    assert rst.flags & tcp.RST and rst.dport == 40021 and rst.ack == 1001
    assert rw.w.faults.count == 1 and not rw.w.tcp.conns


def test_rate_and_total_limits() -> None:
    t = [0.0]
    f = Faults(clock=lambda: t[0])
    for i in range(faults.RATE_MAX):
        f.record("x", Boom(str(i)))
    with pytest.raises(FaultLimit, match="in 1 s"):
        f.record("x", Boom("one too many"))
    g = Faults(clock=lambda: t[0])
    for _ in range(faults.TOTAL_MAX):
        t[0] += 0.2  # 5 a second: under the rate
        g.record("x", Boom())
    with pytest.raises(FaultLimit, match=f"{faults.TOTAL_MAX + 1} faults"):
        g.record("x", Boom())


def test_the_rate_limit_ends_the_loop_with_its_status(rw: _RealWorker) -> None:
    """A flow whose handler raises at every wake-up (level-triggered, never reset)
    ends Worker.run with EXIT_FAULTS within a second: fail closed."""
    import time
    from types import SimpleNamespace

    w = rw.w
    r, wr = os.pipe()
    a, b = socket.socketpair()
    try:
        w.tap = SimpleNamespace(fd=r, moved=0, readable=lambda on_frame, ev: None)  # type: ignore[assignment]
        w.broker = SimpleNamespace(sock=rw.pair[0], waiting=0)  # type: ignore[assignment]
        b.send(b"!")  # a stays readable

        def buggy(ev: int) -> None:
            raise Boom("again")

        w.add(a.fileno(), buggy, select.EPOLLIN, reset=lambda: None)
        t0 = time.monotonic()
        assert w.run() == EXIT_FAULTS
        assert time.monotonic() - t0 < 2.0
        assert w.faults.count == faults.RATE_MAX + 1
    finally:
        for fd in (r, wr):
            os.close(fd)
        a.close()
        b.close()


def test_tap_and_broker_faults_still_end_the_worker(rw: _RealWorker) -> None:
    """The tap and the broker socket are no flow: an exception there ends the loop, as before."""
    from types import SimpleNamespace

    w = rw.w
    r, wr = os.pipe()
    try:
        def broken(on_frame: object, ev: int) -> None:
            raise Boom("tap")

        w.tap = SimpleNamespace(fd=r, moved=0, readable=broken)  # type: ignore[assignment]
        w.broker = SimpleNamespace(sock=rw.pair[0], waiting=0)  # type: ignore[assignment]
        os.write(wr, b"!")
        with pytest.raises(Boom):
            w.run()
        assert w.faults.count == 0
    finally:
        os.close(r)
        os.close(wr)


def test_an_icmp_flow_fault_drops_that_flow(rw: _RealWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the echo request path: the frame's flow is dropped and counted;
    the next echo to that destination makes a new flow (a new socket request)."""
    from passt_sep.worker.icmp import PingFlows
    from tests.unit.test_icmp_flows import echo

    w = rw.w
    w.on_frame(echo("192.0.2.1", ident=7).frame)  # a flow, waiting for its socket
    assert len(w.pings.flows) == 1
    n = len(rw.requests)
    real = PingFlows.from_guest

    def buggy(self: PingFlows, p: object) -> None:
        raise Boom("a bug in the echo request path")

    monkeypatch.setattr(PingFlows, "from_guest", buggy)
    w.on_frame(echo("192.0.2.1", ident=7, seq=2).frame)
    assert not w.pings.flows and w.faults.count == 1 and w.pings.stats["faults"] == 1
    monkeypatch.setattr(PingFlows, "from_guest", real)
    w.on_frame(echo("192.0.2.1", ident=7, seq=3).frame)
    assert len(w.pings.flows) == 1 and len(rw.requests) == n + 1


def test_a_flow_reply_callback_fault_resets_that_flow_only() -> None:
    """BrokerClient.request(..., reset=): a callback that raises is a fault of its
    flow (on_fault gets the exception and the flow's reset); the broker goes
    on and the next reply reaches its callback; FaultLimit still passes."""
    from passt_sep.worker.loop import BrokerClient

    ours, parent = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    got: list[tuple[str, object]] = []
    b = BrokerClient(ours)
    b.on_fault = lambda e, reset: (got.append(("fault", str(e))), reset())  # type: ignore[func-returns-value]

    def bad(fd: int | None, status: int) -> None:
        raise Boom("bug in a reply")

    def good(fd: int | None, status: int) -> None:
        got.append(("good", status))

    try:
        b.request(ipc.OP_TCP_CONNECT, socket.AF_INET, bad, port=80, addr=bytes(4),
                  reset=lambda: got.append(("reset", "bad")))
        b.request(ipc.OP_TCP_CONNECT, socket.AF_INET, good, port=80, addr=bytes(4),
                  reset=lambda: got.append(("reset", "good")))
        for _ in range(2):
            req = ipc.unpack_request(parent.recv(64))
            assert req is not None
            parent.send(ipc.pack_reply(req.seq, 111))  # ECONNREFUSED, no fd
        assert b.readable()
        assert got == [("fault", "bug in a reply"), ("reset", "bad"), ("good", 111)]

        def limit(fd: int | None, status: int) -> None:
            raise FaultLimit("too many")

        b.request(ipc.OP_TCP_CONNECT, socket.AF_INET, limit, port=80, addr=bytes(4), reset=lambda: None)
        req = ipc.unpack_request(parent.recv(64))
        assert req is not None
        parent.send(ipc.pack_reply(req.seq, 111))
        with pytest.raises(FaultLimit):
            b.readable()
    finally:
        ours.close()
        parent.close()
