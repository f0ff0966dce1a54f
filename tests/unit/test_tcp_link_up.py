# SPDX-License-Identifier: GPL-2.0-or-later
"""passt's client connects again (qemu ``reconnect=``): TCP resends at once.

What went toward the guest while no client was connected is lost. A
fresh-clone CI run once saw a download stop for good after a 1 s gap; the
cause: each frame the stream refused had been peeked, which moved
SO_PEEK_OFF past bytes the guest never got (the next send would have
carried later bytes under the old sequence number), and a rewind during the
gap left nothing in flight, so no timer and, with the host's data sitting
in a full socket buffer, no EPOLLIN edge sent it again. Now a refused frame
puts the peek offset back, the timer sends what waits when nothing is in
flight, and, not to wait for a timer that has backed off by then (1, 2,
4, 8 s), ``TcpFlows.link_up`` (called when the stream gets a client again)
rewinds every connection to the guest's last acknowledgement with its
back-off cleared, or sends what waits, and sends a window update and three
duplicate ACKs so the guest resends its own lost data.

A real Worker with real epoll and a real TCP connection on 127.0.0.1
(tests/unit/test_worker_faults.py's set-up); the lost frames are simply
not acknowledged. Also shown: StreamTap calls its ``on_attach`` hook for a
second client, not for the first.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from passt_sep.proto import tcp
from passt_sep.worker.stream import StreamTap
from tests.unit import test_worker_faults
from tests.unit.test_tcp_proto import _RealWorker
from tests.unit.test_worker_faults import _Conn, _poll, _segs

rw = test_worker_faults.rw  # the fixture: a real Worker with a listener on 127.0.0.1


def _data(rw: _RealWorker, sport: int) -> list[tuple[tcp.Segment, bytes]]:
    """(segment, payload) of each data frame toward the guest's port sport."""
    out = []
    for f in rw.frames:
        (s,) = _segs([f])
        if s.dport == sport and s.dlen:
            body = f[tcp.VNET_HDR_LEN:]
            out.append((s, bytes(body[s.off:s.off + s.dlen])))
    return out


def test_link_up_resends_from_the_last_ack_with_the_backoff_cleared(rw: _RealWorker) -> None:
    w = rw.w
    c = _Conn(rw, 40011)
    payload = os.urandom(3000)
    c.srv.sendall(payload)
    _poll(rw)
    lost = _data(rw, 40011)
    assert b"".join(d for _s, d in lost) == payload  # sent, never acknowledged
    conn = next(iter(w.tcp.conns.values()))
    conn.retrans = 3  # as after three timeouts during the gap: the next one 8 s away
    rw.frames.clear()
    w.tcp.timer(time.monotonic())
    assert not _data(rw, 40011), "the backed-off timer fired early: the test shows nothing"
    w.tcp.link_up(time.monotonic())
    again = _data(rw, 40011)
    assert again and again[0][0].seq == c.ack, "not resent from the guest's last ACK"
    assert b"".join(d for _s, d in again) == payload
    assert conn.retrans == 0
    acks = [s for s in _segs(rw.frames) if s.dport == 40011 and not s.dlen and s.flags == tcp.ACK]
    assert len(acks) >= 4 and all(s.ack == c.seq for s in acks)  # a window update + 3 duplicates
    # the guest acknowledges it all: nothing more to resend
    from tests.unit.test_worker_faults import _frame

    w.on_frame(_frame(tcp.ACK, 40011, seq=c.seq, ack=(c.ack + len(payload)) & 0xFFFFFFFF))
    rw.frames.clear()
    w.tcp.link_up(time.monotonic())
    assert not _data(rw, 40011)


def test_stream_calls_on_attach_for_a_returning_client() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    st = StreamTap(a.detach(), None)
    calls: list[int] = []
    st.on_attach = lambda: calls.append(st.client)
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        st.attach(pairs[0][0].detach())
        assert calls == []  # the first client: nothing was in flight toward it
        st.attach(pairs[1][0].detach())
        assert calls == [st.client]
    finally:
        st._close(notify=False)
        for p in pairs:
            p[1].close()
        b.close()
        st.ctl.close()
        st.ep.close()


@pytest.mark.parametrize("resume", ["link_up", "timer"])
def test_data_refused_by_the_tap_is_sent_once_it_takes_frames(rw: _RealWorker, resume: str) -> None:
    """The stall a fresh-clone CI run hit: frames written while passt had no
    client were refused, a rewind during the gap left nothing in flight,
    and the host's data sat in a full socket buffer (no new EPOLLIN edge):
    nothing sent it again. Now link_up sends it, and the timer does so too
    (for any tap write that fails)."""
    w = rw.w
    c = _Conn(rw, 40021)
    take = rw.tap.write_raw
    rw.tap.write_raw = lambda b: False  # no client: every frame toward the guest refused
    payload = os.urandom(5000)
    c.srv.sendall(payload)
    _poll(rw)
    conn = next(iter(w.tcp.conns.values()))
    w.tcp.timer(time.monotonic())
    assert not rw.frames and conn.seq_to_tap == conn.seq_ack_from_tap  # nothing in flight
    rw.tap.write_raw = take
    _poll(rw, rounds=3)
    assert not _data(rw, 40021), "an event sent it after all: the test shows nothing"
    if resume == "link_up":
        w.tcp.link_up(time.monotonic())
    else:
        w.tcp.timer(time.monotonic())
    got = _data(rw, 40021)
    assert got and got[0][0].seq == c.ack
    assert b"".join(d for _s, d in got) == payload
