# SPDX-License-Identifier: GPL-2.0-or-later
"""proto/tcp.py on crafted bytes: parsing bounds, options, templates, ISNs, RSTs."""

from __future__ import annotations

import random
import struct

import pytest

from passt_sep.proto import tcp
from passt_sep.proto.packet import ETH_HLEN, Packet, parse_frame

SRC4, DST4 = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 1])
SRC6, DST6 = bytes.fromhex("20010db8" + "00" * 10 + "0010"), bytes.fromhex("20010db8" + "00" * 11 + "01")
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ref_sum(data: bytes) -> int:
    """RFC 1071 reference: 16-bit ones' complement sum, word by word."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_frame(flags: int, payload: bytes = b"", options: bytes = b"", doff: int | None = None,
              seq: int = 1000, ack: int = 0, v6: bool = False) -> bytes:
    """An Ethernet frame with one TCP segment (checksum not filled in)."""
    hl = 20 + len(options)
    off = (hl // 4 if doff is None else doff) << 4
    seg = struct.pack("!HHIIBBHHH", 40000, 80, seq, ack, off, flags, 512, 0, 0) + options + payload
    if v6:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(seg), 6, 64, SRC6, DST6)
        return MAC_A + MAC_B + b"\x86\xdd" + ip + seg
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, SRC4, DST4)
    return MAC_A + MAC_B + b"\x08\x00" + ip + seg


def parsed(frame: bytes) -> Packet:
    p = parse_frame(memoryview(frame))
    assert isinstance(p, Packet), p
    return p


# -- parse_segment --------------------------------------------------------------

def test_parse_segment_fields_and_payload() -> None:
    f = tcp_frame(tcp.ACK | tcp.PSH, b"hello", seq=0xFFFFFFF0, ack=7)
    seg = tcp.parse_segment(parsed(f))
    assert isinstance(seg, tcp.Segment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (40000, 80, 0xFFFFFFF0, 7)
    assert seg.flags == tcp.ACK | tcp.PSH and seg.win == 512 and seg.hlen == 20
    assert f[seg.off : seg.off + seg.dlen] == b"hello"


def test_parse_segment_v6_with_options() -> None:
    f = tcp_frame(tcp.SYN, options=tcp.syn_options(1440, 7), v6=True)
    seg = tcp.parse_segment(parsed(f))
    assert isinstance(seg, tcp.Segment) and seg.hlen == 28 and seg.dlen == 0


@pytest.mark.parametrize("doff,reason", [(0, "tcp header length"), (4, "tcp header length"),
                                         (15, "tcp header length")])
def test_parse_segment_bad_data_offset(doff: int, reason: str) -> None:
    assert tcp.parse_segment(parsed(tcp_frame(tcp.ACK, b"abc", doff=doff))) == reason


def test_parse_segment_short() -> None:
    f = tcp_frame(tcp.ACK)
    ip_total = 20 + 12  # IPv4 datagram claims 12 bytes of TCP only
    f = f[:16] + struct.pack("!H", ip_total) + f[18:ETH_HLEN + ip_total]
    p = parse_frame(memoryview(f))
    assert isinstance(p, Packet)
    assert tcp.parse_segment(p) == "short tcp"


def test_parse_segment_port_zero() -> None:
    f = bytearray(tcp_frame(tcp.SYN))
    f[ETH_HLEN + 20 : ETH_HLEN + 22] = b"\0\0"
    assert tcp.parse_segment(parsed(bytes(f))) == "tcp port 0"


def test_parse_segment_never_raises_on_random_bytes() -> None:
    rnd = random.Random(1)
    for _ in range(2000):
        body = rnd.randbytes(rnd.randrange(0, 80))
        f = tcp_frame(0)[: ETH_HLEN + 20]
        f = f[:16] + struct.pack("!H", 20 + len(body)) + f[18:] + body
        p = parse_frame(memoryview(f))
        if isinstance(p, Packet):
            r = tcp.parse_segment(p)
            if isinstance(r, tcp.Segment):
                assert r.off + r.dlen <= len(f)
                tcp.parse_options(f, p.l4 + 20, r.off)


# -- options ----------------------------------------------------------------------

def test_options_mss_and_ws() -> None:
    opts = tcp.syn_options(1460, 7)
    assert opts == bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 7])
    assert tcp.parse_options(opts, 0, len(opts)) == (1460, 7)
    assert tcp.syn_options(536, None) == bytes([2, 4, 2, 24])


def test_options_linux_syn() -> None:
    # MSS, SACK permitted, timestamps, NOP, window scale: what Linux sends
    opts = bytes([2, 4, 0xFF, 0xC8, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 10])
    assert tcp.parse_options(opts, 0, len(opts)) == (65480, 10)


def test_options_ws_capped_and_malformed() -> None:
    assert tcp.parse_options(bytes([3, 3, 200]), 0, 3) == (None, 14)
    assert tcp.parse_options(bytes([2, 0, 1, 1]), 0, 4) == (None, None)  # length 0 stops
    assert tcp.parse_options(bytes([1, 1, 2, 4, 5]), 0, 5) == (None, None)  # runs past the end
    assert tcp.parse_options(bytes([0, 2, 4, 1, 1]), 0, 5) == (None, None)  # EOL first
    # a wrong-length MSS is skipped, the scan goes on to the window scale after it
    assert tcp.parse_options(bytes([2, 3, 1, 3, 3, 2]), 0, 6) == (None, 2)
    assert tcp.parse_options(bytes([2, 4, 1, 0, 3, 3, 2]), 0, 5) == (256, None)  # end bound honoured
    assert tcp.parse_options(b"", 0, 10) == (None, None)


# -- sequence numbers -----------------------------------------------------------------

def test_seq_diff_wraps() -> None:
    assert tcp.seq_diff(5, 0xFFFFFFFB) == 10
    assert tcp.seq_diff(0xFFFFFFFB, 5) == -10
    assert tcp.seq_diff(7, 7) == 0


def test_isn_keyed_per_tuple_and_clocked() -> None:
    g = tcp.IsnGenerator(b"k" * 32)
    a = g.isn(SRC4, 1, DST4, 2, now_ns=0)
    assert a == g.isn(SRC4, 1, DST4, 2, now_ns=0)
    assert a != g.isn(SRC4, 1, DST4, 3, now_ns=0)
    assert a != tcp.IsnGenerator(b"j" * 32).isn(SRC4, 1, DST4, 2, now_ns=0)
    assert tcp.seq_diff(g.isn(SRC4, 1, DST4, 2, now_ns=4096 * 1000), a) == 1000  # 4 us ticks
    with pytest.raises(ValueError):
        tcp.IsnGenerator(b"short")


def test_rst_for() -> None:
    seg = tcp.Segment(1, 2, 100, 555, tcp.ACK, 0, 20, 0, 10)
    assert tcp.rst_for(seg) == (555, 0, tcp.RST)
    syn = tcp.Segment(1, 2, 100, 0, tcp.SYN, 0, 20, 0, 0)
    assert tcp.rst_for(syn) == (0, 101, tcp.RST | tcp.ACK)
    fin = tcp.Segment(1, 2, 0xFFFFFFFF, 0, tcp.FIN, 0, 20, 0, 3)
    assert tcp.rst_for(fin) == (0, 3, tcp.RST | tcp.ACK)


# -- templates ----------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "full"])
def test_template_frames(v6: bool, offload: bool) -> None:
    version, src, dst = (6, DST6, SRC6) if v6 else (4, DST4, SRC4)
    t = tcp.Template(version, MAC_A, MAC_B, src, dst, 80, 40000, vnet=True, offload=offload)
    buf = bytearray(t.hlen + 2000)
    payload = bytes(range(256)) * 4 + b"x"  # odd length
    buf[t.hlen : t.hlen + len(payload)] = payload
    n = t.fill(buf, 0xDEADBEEF, 0x01020304, tcp.ACK | tcp.PSH, 0x1234, len(payload))
    assert n == t.hlen + len(payload)
    flags, gso, _hl, _gs, cstart, coff = struct.unpack_from("<BBHHHH", buf, 0)
    frame = bytes(buf[tcp.VNET_HDR_LEN : n])
    p = parsed(frame)
    seg = tcp.parse_segment(p)
    assert isinstance(seg, tcp.Segment)
    assert (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.win) == (
        80, 40000, 0xDEADBEEF, 0x01020304, tcp.ACK | tcp.PSH, 0x1234)
    assert frame[seg.off : seg.off + seg.dlen] == payload
    assert p.src == src and p.dst == dst and frame[:12] == MAC_A + MAC_B
    tcpseg = frame[p.l4 : p.l4 + p.l4len]
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(tcpseg), 6)
    else:
        assert ref_sum(frame[ETH_HLEN : ETH_HLEN + 20]) == 0xFFFF  # header checksum valid
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcpseg))
    field = struct.unpack_from("!H", tcpseg, 16)[0]
    if offload:
        assert flags == 1 and gso == 0 and cstart == p.l4 and coff == 16
        # the field holds the pseudo-header sum; what the kernel stores at the end:
        done = bytearray(tcpseg)
        done[16:18] = struct.pack("!H", ~ref_sum(tcpseg) & 0xFFFF)
        assert ref_sum(pseudo + bytes(done)) == 0xFFFF
        assert field == ref_sum(pseudo)
    else:
        assert flags == 0
        assert ref_sum(pseudo + tcpseg) == 0xFFFF


def test_template_syn_options_and_reuse() -> None:
    t = tcp.Template(4, MAC_A, MAC_B, DST4, SRC4, 80, 40000)
    buf = bytearray(t.hlen + 100)
    opts = tcp.syn_options(65480, 8)
    n = t.fill(buf, 1, 2, tcp.SYN | tcp.ACK, 0xFFFF, 0, opts)
    frame = bytes(buf[tcp.VNET_HDR_LEN : n])
    p = parsed(frame)
    seg = tcp.parse_segment(p)
    assert isinstance(seg, tcp.Segment) and seg.hlen == 28 and seg.dlen == 0
    assert tcp.parse_options(frame, p.l4 + 20, seg.off) == (65480, 8)
    # the same buffer reused for a plain ACK: no stale options or lengths
    n2 = t.fill(buf, 2, 2, tcp.ACK, 10, 0)
    seg2 = tcp.parse_segment(parsed(bytes(buf[tcp.VNET_HDR_LEN : n2])))
    assert isinstance(seg2, tcp.Segment) and seg2.hlen == 20 and n2 == n - 8


# -- the worker's connection table, with a fake worker (no I/O) ------------------------

class _FakeWorker:
    """Just what worker/tcp.py touches: frames written, broker requests, drops."""

    def __init__(self) -> None:
        import ipaddress
        from types import SimpleNamespace

        gw = ipaddress.ip_address("192.0.2.1")
        v4 = SimpleNamespace(gw=gw, addr=ipaddress.ip_address("192.0.2.10"), host_lo=gw, guest_map=None)
        self.cfg = SimpleNamespace(v4=v4, v6=None, mtu=65520, our_mac=MAC_B,
                                   opts=SimpleNamespace(no_tcp=False), tcp_peek_off=False)
        self.guest_mac = MAC_A
        self.frames: list[bytes] = []
        self.requests: list[tuple] = []
        self.drops: list[str] = []
        self.tap = SimpleNamespace(write_raw=lambda b: self.frames.append(bytes(b)) or True)
        self.broker = SimpleNamespace(request=lambda *a, **k: self.requests.append((a, k)))

    def now(self) -> float:
        return 0.0

    def drop(self, reason: str) -> None:
        self.drops.append(reason)


def _syn(sport: int) -> Packet:
    f = bytearray(tcp_frame(tcp.SYN, options=tcp.syn_options(65480, 7)))
    struct.pack_into("!H", f, ETH_HLEN + 20, sport)
    return parsed(bytes(f))


def _segs(w: _FakeWorker) -> list[tcp.Segment]:
    out = []
    for b in w.frames:
        s = tcp.parse_segment(parsed(b[tcp.VNET_HDR_LEN:]))
        assert isinstance(s, tcp.Segment)
        out.append(s)
    return out


def test_table_full_refuses_with_rst() -> None:
    from passt_sep.worker.tcp import TcpFlows

    w = _FakeWorker()
    flows = TcpFlows(w, max_conns=2)  # type: ignore[arg-type]
    for port in (1001, 1002, 1003):
        flows.from_guest(_syn(port))
    assert len(flows.conns) == 2 and len(w.requests) == 2  # two connects asked of the broker
    (rst,) = _segs(w)
    assert rst.dport == 1003 and rst.flags == tcp.RST | tcp.ACK and rst.ack == 1001


def test_connect_failure_is_rst_ack_and_garbage_is_rst() -> None:
    import errno

    from passt_sep.worker.tcp import TcpFlows

    w = _FakeWorker()
    flows = TcpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(_syn(1001))
    flows.from_guest(_syn(1001))  # retransmitted SYN: still one request
    assert len(w.requests) == 1
    args, _kw = w.requests[0]
    args[2](None, errno.ECONNREFUSED)  # the broker's answer
    assert not flows.conns
    (rst,) = _segs(w)
    assert rst.flags == tcp.RST | tcp.ACK and rst.ack == 1001  # acks the SYN: "refused"
    w.frames.clear()
    flows.from_guest(parsed(tcp_frame(tcp.ACK, b"junk", ack=77)))
    flows.from_guest(parsed(tcp_frame(tcp.RST)))  # never answered
    (rst2,) = _segs(w)
    assert rst2.flags == tcp.RST and rst2.seq == 77


def test_connect_refused_at_once_is_still_rst_ack() -> None:
    """The request goes out before the connection's template and ISN are
    made; a broker answering within the request (its send failed) must
    still get a well-formed RST+ACK out."""
    import errno
    from types import SimpleNamespace

    from passt_sep.worker.tcp import TcpFlows

    w = _FakeWorker()
    w.broker = SimpleNamespace(request=lambda op, fam, cb, **kw: cb(None, errno.EPIPE))
    flows = TcpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(_syn(1001))
    assert not flows.conns
    (rst,) = _segs(w)
    assert rst.flags == tcp.RST | tcp.ACK and rst.ack == 1001 and rst.dport == 1001


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "connecting"])
def test_broker_fd_that_is_no_socket_resets(connected: bool) -> None:
    """The SYN-ACK goes out before the broker's fd is wrapped; should the
    wrapping fail, the guest gets a RST (after the SYN-ACK: one in its
    sequence space) or, before it, the refusal's RST+ACK."""
    import os

    from passt_sep import ipc
    from passt_sep.worker.tcp import TcpFlows

    w = _FakeWorker()
    flows = TcpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(_syn(1001))
    r, wr = os.pipe()
    os.close(wr)
    (args, _kw), = w.requests
    args[2](r, ipc.STATUS_CONNECTED if connected else 0)
    assert not flows.conns
    with pytest.raises(OSError):
        os.fstat(r)  # closed
    segs = _segs(w)
    if connected:
        assert [s.flags for s in segs] == [tcp.SYN | tcp.ACK, tcp.RST | tcp.ACK]
        assert segs[1].seq == segs[0].seq + 1
    else:
        assert [(s.flags, s.ack) for s in segs] == [(tcp.RST | tcp.ACK, 1001)]


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
@pytest.mark.parametrize("offload", [True, False], ids=["offload", "checksummed"])
def test_template_with_ports_matches_a_new_one(v6: bool, offload: bool) -> None:
    """A connection's template derived from its address pair's (ports
    zero) writes the same frames as one built for its ports."""
    version, src, dst = (6, DST6, SRC6) if v6 else (4, DST4, SRC4)
    base = tcp.Template(version, MAC_A, MAC_B, src, dst, 0, 0, offload=offload)
    own = tcp.Template(version, MAC_A, MAC_B, src, dst, 8080, 40000, offload=offload)
    derived = base.with_ports(8080, 40000)
    for args in ((1, 2, tcp.ACK | tcp.PSH, 300, 5), (7, 9, tcp.SYN | tcp.ACK, 65535, 0)):
        a, b = bytearray(own.hlen + 64), bytearray(own.hlen + 64)
        a[own.hlen : own.hlen + 5] = b[own.hlen : own.hlen + 5] = b"hello"
        opts = tcp.syn_options(1460, 7) if args[2] & tcp.SYN else b""
        na, nb = own.fill(a, *args, opts=opts), derived.fill(b, *args, opts=opts)
        assert na == nb and a[:na] == b[:nb]
    assert base.with_ports(1, 2).hdr != derived.hdr  # ports differ, the base is untouched


@pytest.mark.parametrize("v6", [False, True], ids=["v4", "v6"])
def test_template_gso_fields(v6: bool) -> None:
    version, src, dst = (6, DST6, SRC6) if v6 else (4, DST4, SRC4)
    t = tcp.Template(version, MAC_A, MAC_B, src, dst, 80, 40000)
    buf = bytearray(t.hlen + tcp.GSO_MAX[version])
    n = t.fill(buf, 1, 2, tcp.ACK, 100, tcp.GSO_MAX[version], gso_size=1460)
    flags, gso, hdr_len, gso_size, cstart, coff = struct.unpack_from("<BBHHHH", buf, 0)
    assert (flags, gso, gso_size, coff) == (1, 4 if v6 else 1, 1460, 16)
    assert hdr_len == t.hlen - tcp.VNET_HDR_LEN and cstart == t.l4 - tcp.VNET_HDR_LEN
    p = parsed(bytes(buf[tcp.VNET_HDR_LEN : n]))  # lengths still within 64 KiB
    seg = tcp.parse_segment(p)
    assert isinstance(seg, tcp.Segment) and seg.dlen == tcp.GSO_MAX[version]
    n2 = t.fill(buf, 1, 2, tcp.ACK, 100, 10)  # the next frame is no GSO frame
    assert struct.unpack_from("<BBHH", buf, 0)[1:] == (0, 0, 0) and n2 == t.hlen + 10


def test_passt_mode_frames_have_complete_checksums() -> None:
    """A tap that says needs_csum (passt's stream) gets no NEEDS_CSUM frames."""
    from passt_sep.worker.tcp import TcpFlows

    w = _FakeWorker()
    w.tap.needs_csum = True  # type: ignore[attr-defined]
    flows = TcpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(parsed(tcp_frame(tcp.ACK, b"junk", ack=77)))
    (raw,) = w.frames
    assert raw[0] == 0  # virtio-net flags: nothing left to complete
    p = parsed(raw[tcp.VNET_HDR_LEN:])
    seg = bytes(p.l4bytes())
    assert ref_sum(p.dst + p.src + b"\0\x06" + struct.pack("!H", len(seg)) + seg) == 0xFFFF


# -- the state machine end to end, a UNIX socket pair standing in for the host socket --

class _LoopWorker(_FakeWorker):
    """A fake worker that also registers fds and has a settable clock."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        super().__init__()
        self.t = 100.0
        self.handlers: dict[int, object] = {}
        self.ep = SimpleNamespace(modify=lambda fd, ev: None)

    def now(self) -> float:
        return self.t

    def add(self, fd: int, handler: object, events: int = 0, reset: object = None) -> None:
        self.handlers[fd] = handler

    def remove(self, fd: int) -> None:
        self.handlers.pop(fd, None)


def _syn_and_socket(status: int) -> tuple:
    """A guest SYN, then the broker's answer: one end of a socket pair, with status."""
    import socket

    from passt_sep.worker.tcp import TcpFlows

    w = _LoopWorker()
    flows = TcpFlows(w)  # type: ignore[arg-type]
    flows.from_guest(parsed(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7), seq=1000)))
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(2)
    fd = ours.detach()
    w.requests[0][0][2](fd, status)
    return w, flows, fd, peer


def _established() -> tuple:
    import select

    w, flows, fd, peer = _syn_and_socket(0)  # the broker hands over a connecting socket
    w.handlers[fd](select.EPOLLOUT)  # type: ignore[operator]
    (synack,) = _segs(w)
    assert synack.flags == tcp.SYN | tcp.ACK and synack.ack == 1001
    w.frames.clear()
    isn = synack.seq
    flows.from_guest(parsed(tcp_frame(tcp.ACK, b"hello", seq=1001, ack=isn + 1)))
    assert peer.recv(100) == b"hello"
    flows.flush()
    assert not w.frames  # a small segment: its ACK waits for an answer ...
    flows.flush_delayed(w.t + 1)
    (ack,) = _segs(w)  # ... which did not come: the ACK goes alone
    assert ack.flags == tcp.ACK and ack.ack == 1006 and ack.win > 0
    w.frames.clear()
    return w, flows, fd, peer, isn


def _connected_at_once() -> tuple:
    """A connection whose broker reply said the connect had completed."""
    from passt_sep import ipc

    w, flows, fd, peer = _syn_and_socket(ipc.STATUS_CONNECTED)
    (synack,) = _segs(w)  # no EPOLLOUT needed
    assert synack.flags == tcp.SYN | tcp.ACK and synack.ack == 1001
    w.frames.clear()
    flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1001, ack=synack.seq + 1)))
    assert not w.frames
    return w, flows, fd, peer, synack.seq


def test_delayed_ack_rides_on_the_answer() -> None:
    import select

    w, flows, fd, peer, isn = _connected_at_once()
    flows.from_guest(parsed(tcp_frame(tcp.ACK | tcp.PSH, b"ping", seq=1001, ack=isn + 1)))
    flows.flush()
    assert peer.recv(10) == b"ping" and not w.frames
    peer.sendall(b"pong")
    w.handlers[fd](select.EPOLLIN)  # type: ignore[operator]
    (data,) = _segs(w)  # the answer acknowledges the request
    assert data.ack == 1005 and w.frames[0][-4:] == b"pong"
    w.frames.clear()
    flows.flush_delayed(w.t + 1)
    assert not w.frames and flows.stats["acks_piggybacked"] == 1
    peer.close()


def test_unanswered_segments_are_acknowledged_at_once_afterwards() -> None:
    from passt_sep.worker.tcp import ACK_DELAY

    w, flows, fd, peer, isn = _connected_at_once()
    flows.from_guest(parsed(tcp_frame(tcp.ACK | tcp.PSH, b"a", seq=1001, ack=isn + 1)))
    flows.flush()
    flows.flush_delayed(w.t + ACK_DELAY / 2)
    assert not w.frames  # not yet due
    flows.flush_delayed(w.t + ACK_DELAY)
    (ack,) = _segs(w)
    assert ack.ack == 1002
    w.frames.clear()
    # no answer came: the connection no longer counts as interactive
    flows.from_guest(parsed(tcp_frame(tcp.ACK | tcp.PSH, b"b", seq=1002, ack=isn + 1)))
    flows.flush()
    (ack,) = _segs(w)
    assert ack.ack == 1003
    assert peer.recv(10) == b"ab"
    peer.close()


def test_full_segments_are_acknowledged_at_once() -> None:
    w, flows, fd, peer, isn = _connected_at_once()
    flows.from_guest(parsed(tcp_frame(tcp.ACK, b"x" * 1460, seq=1001, ack=isn + 1)))
    flows.flush()
    (ack,) = _segs(w)  # a full segment (MSS 1460): bulk data, no delay
    assert ack.ack == 1001 + 1460
    assert len(peer.recv(2000)) == 1460
    peer.close()


def test_data_both_ways_and_close() -> None:
    import select
    import socket

    w, flows, fd, peer, isn = _established()
    peer.sendall(b"world")
    w.handlers[fd](select.EPOLLIN)  # type: ignore[operator]
    (data,) = _segs(w)
    assert data.seq == isn + 1 and w.frames[0][-5:] == b"world"
    w.frames.clear()
    flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1006, ack=isn + 6)))  # acknowledged: discarded
    assert not w.frames
    peer.shutdown(socket.SHUT_WR)
    w.handlers[fd](select.EPOLLIN | select.EPOLLRDHUP)  # type: ignore[operator]
    (fin,) = _segs(w)
    assert fin.flags == tcp.FIN | tcp.ACK and fin.seq == isn + 6
    w.frames.clear()
    flows.from_guest(parsed(tcp_frame(tcp.FIN | tcp.ACK, seq=1006, ack=isn + 7)))
    assert not flows.conns  # both FINs acknowledged: the 4-tuple is free at once
    assert not w.frames and fd in w.handlers  # the rest waits for the end of the batch
    flows.flush()
    assert peer.recv(10) == b""  # the guest's FIN became shutdown(SHUT_WR)
    (last,) = _segs(w)
    assert last.flags == tcp.ACK and last.ack == 1007  # the guest's FIN acknowledged
    assert fd not in w.handlers
    peer.close()


def test_retransmission_after_ack_timeout() -> None:
    import select

    w, flows, fd, peer, isn = _established()
    peer.sendall(b"x" * 3000)
    w.handlers[fd](select.EPOLLIN)  # type: ignore[operator]
    first = _segs(w)
    assert sum(s.dlen for s in first) == 3000 and first[0].seq == isn + 1
    w.frames.clear()
    w.t += 1.5
    flows.timer(w.t)  # no ACK within a second: sent again from the socket
    again = _segs(w)
    assert [(s.seq, s.dlen) for s in again] == [(s.seq, s.dlen) for s in first]
    w.frames.clear()
    for _ in range(3):  # duplicate ACKs caused by that resend itself:
        flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1006, ack=isn + 1)))
    assert not _segs(w)  # no second rewind below RFC 6582's "recover" point
    peer.close()


def test_three_duplicate_acks_rewind() -> None:
    import select

    w, flows, fd, peer, isn = _established()
    peer.sendall(b"x" * 3000)
    w.handlers[fd](select.EPOLLIN)  # type: ignore[operator]
    assert sum(s.dlen for s in _segs(w)) == 3000
    w.frames.clear()
    for _ in range(2):
        flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1006, ack=isn + 1)))
    assert not _segs(w)
    flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1006, ack=isn + 1)))
    again = _segs(w)
    assert sum(s.dlen for s in again) == 3000 and again[0].seq == isn + 1  # fast retransmit
    peer.close()


def test_half_closed_timeout_resets() -> None:
    w, flows, fd, peer, isn = _established()
    flows.from_guest(parsed(tcp_frame(tcp.FIN | tcp.ACK, seq=1006, ack=isn + 1)))
    flows.flush()  # the loop's end of the batch: the half-close goes out
    assert peer.recv(10) == b""
    w.frames.clear()
    w.t += 30
    flows.timer(w.t)
    assert flows.conns and not w.frames
    w.t += 31
    flows.timer(w.t)
    (rst,) = _segs(w)
    assert rst.flags & tcp.RST and not flows.conns and fd not in w.handlers
    peer.close()


def test_guest_rst_closes_socket() -> None:
    w, flows, fd, peer, isn = _established()
    flows.from_guest(parsed(tcp_frame(tcp.RST, seq=1006)))
    assert not flows.conns and fd not in w.handlers and not w.frames
    peer.close()


@pytest.mark.parametrize("early_data", [False, True], ids=["quiet-peer", "peer-spoke-first"])
def test_inbound_handshake_ack_rides_on_waiting_data(early_data: bool) -> None:
    """-t: the guest's SYN-ACK is acknowledged by the data frame when the peer
    already sent something, else by a pure ACK."""
    import socket

    from passt_sep.worker.tcp import TcpFlows

    w = _LoopWorker()
    flows = TcpFlows(w)  # type: ignore[arg-type]
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    client = socket.create_connection(lst.getsockname(), timeout=2)
    cs, peer = lst.accept()
    if early_data:
        client.sendall(b"hi")
    flows._inbound(cs.detach(), socket.AF_INET, ("192.0.2.1", 40000), 8080)  # a peer seen as DST4 of tcp_frame
    (syn,) = _segs(w)
    assert syn.flags == tcp.SYN and syn.dport == 8080 and syn.sport == 40000
    w.frames.clear()
    f = bytearray(tcp_frame(tcp.SYN | tcp.ACK, seq=5000, ack=syn.seq + 1, options=tcp.syn_options(1460, 7)))
    struct.pack_into("!HH", f, ETH_HLEN + 20, 8080, 40000)
    flows.from_guest(parsed(bytes(f)))
    segs = _segs(w)
    assert len(segs) == 1 and segs[0].ack == 5001
    if early_data:
        assert segs[0].dlen == 2 and w.frames[0][-2:] == b"hi"
    else:
        assert segs[0].dlen == 0 and segs[0].flags == tcp.ACK
    client.close()
    lst.close()


class _RealWorker:
    """A real Worker with real epoll, its tap writes collected in frames,
    its broker requests' callbacks in requests, and a listener on
    127.0.0.1 to connect to. close() releases what it opened."""

    def __init__(self) -> None:
        import os
        import socket
        from types import SimpleNamespace

        from passt_sep.worker.loop import Worker
        from tests.unit.test_udp_flows import GUEST_MAC, config

        self.frames: list[bytes] = []
        self.tap = SimpleNamespace(fd=os.open(os.devnull, os.O_WRONLY), moved=0, needs_csum=False,
                                   write_raw=lambda b: self.frames.append(bytes(b)) or True)
        self.pair = socket.socketpair()
        self.w = Worker(config(), self.tap, self.pair[0], GUEST_MAC)  # type: ignore[arg-type]
        self.requests: list = []
        self.w.broker = SimpleNamespace(  # type: ignore[assignment]
            request=lambda op, fam, cb, **kw: self.requests.append(cb))
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)

    def run_loop(self, polls: int) -> None:
        """Poll (bounded: polls of 50 ms) until a frame goes out."""
        for _ in range(polls):
            for fd, ev in self.w.ep.poll(0.05):
                self.w.handlers[fd](ev)
            if self.frames:
                return

    def close(self) -> None:
        import os

        self.ls.close()
        for sock in self.pair:
            sock.close()
        os.close(self.tap.fd)


@pytest.mark.parametrize("connected", [True, False], ids=["connected-at-once", "connecting"])
def test_server_that_speaks_first_reaches_the_guest(connected: bool) -> None:
    """An outbound connection starts with nothing to peek and relies on its
    edge-triggered registration: data the server sent before the guest's
    ACK (added at the reply, or re-armed by EPOLL_CTL_MOD at the ACK for a
    connect that was still under way) must still reach the guest. A real
    Worker and epoll, a real TCP connection on 127.0.0.1."""
    import socket

    from passt_sep import ipc

    rw = _RealWorker()
    w, frames = rw.w, rw.frames
    try:
        w.on_frame(memoryview(bytearray(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7)))))
        s = socket.socket()
        s.connect(rw.ls.getsockname())
        srv, _ = rw.ls.accept()
        srv.sendall(b"hello")  # before the guest's ACK, and before the reply if connecting
        s.setblocking(False)
        rw.requests[0](s.detach(), ipc.STATUS_CONNECTED if connected else 0)
        rw.run_loop(20)  # connecting: EPOLLOUT, then the SYN-ACK
        synack = tcp.parse_segment(parsed(frames[-1][tcp.VNET_HDR_LEN:]))
        assert isinstance(synack, tcp.Segment) and synack.flags == tcp.SYN | tcp.ACK
        frames.clear()
        w.on_frame(memoryview(bytearray(tcp_frame(tcp.ACK, seq=1001, ack=synack.seq + 1))))
        rw.run_loop(20)
        assert frames and frames[-1].endswith(b"hello")
        srv.close()
    finally:
        rw.close()


def test_peek_offset_set_by_the_parent_carries_data_rewinds_and_discards() -> None:
    """With Config.tcp_peek_off the worker never sets SO_PEEK_OFF itself:
    over a real TCP connection whose listener had it set (as the parent's
    -t listeners do), new data, a rewind and discarded bytes must all come
    out at the right offsets (without the inherited offset every peek
    would start at the head of the queue and resend old bytes)."""
    import select
    import socket

    from passt_sep import ipc
    from passt_sep.setup.sockpool import SO_PEEK_OFF, tcp_peek_off_supported
    from passt_sep.worker.tcp import TcpFlows

    if not tcp_peek_off_supported():
        pytest.skip("this kernel keeps no peek offset on TCP sockets")
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    peer = socket.create_connection(lst.getsockname(), timeout=2)
    ours, _ = lst.accept()
    lst.close()
    ours.setblocking(False)
    w = _LoopWorker()
    w.cfg.tcp_peek_off = True
    flows = TcpFlows(w)  # type: ignore[arg-type]
    assert flows.peek_preset
    flows.from_guest(parsed(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7), seq=1000)))
    fd = ours.detach()
    w.requests[0][0][2](fd, ipc.STATUS_CONNECTED)
    (synack,) = _segs(w)
    isn = synack.seq
    w.frames.clear()
    flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1001, ack=isn + 1)))

    def data_now(size: int) -> bytes:
        """Let `size` bytes reach our socket, signal it, return the payload sent to the guest."""
        select.select([fd], [], [], 2)
        w.frames.clear()
        w.handlers[fd](select.EPOLLIN)  # type: ignore[operator]
        return b"".join(f[len(f) - s.dlen:] for f, s in zip(w.frames, _segs(w), strict=True))

    peer.sendall(b"A" * 1000)
    assert data_now(1000) == b"A" * 1000
    peer.sendall(b"B" * 1000)
    assert data_now(1000) == b"B" * 1000  # the second peek starts after the first
    w.frames.clear()
    for _ in range(4):  # the guest has only the first 500: its ACK, three duplicates, a rewind
        flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1001, ack=isn + 501)))
    again = _segs(w)
    payload = b"".join(f[len(f) - s.dlen:] for f, s in zip(w.frames, again, strict=True))
    assert again[0].seq == isn + 501 and payload == b"A" * 500 + b"B" * 1000
    flows.from_guest(parsed(tcp_frame(tcp.ACK, seq=1001, ack=isn + 2001)))  # all of it: discarded
    peer.sendall(b"C" * 10)
    assert data_now(10) == b"C" * 10
    peer.close()


def test_guest_rst_after_its_fin_in_the_same_batch_closes_once() -> None:
    """The guest's FIN leaves its shutdown for the flush; a RST in the same
    batch closes the socket at once (RST to the peer), and the flush then
    finds nothing left to do."""
    w, flows, fd, peer, isn = _established()
    flows.from_guest(parsed(tcp_frame(tcp.FIN | tcp.ACK, seq=1006, ack=isn + 1)))
    assert flows.ending and fd in w.handlers
    flows.from_guest(parsed(tcp_frame(tcp.RST, seq=1007)))
    assert not flows.conns and fd not in w.handlers
    w.frames.clear()
    flows.flush()
    assert not w.frames and not flows.ending
    assert peer.recv(10) == b""  # closed once, by the RST's path
    peer.close()


def test_a_new_syn_for_a_4_tuple_that_just_ended_gets_a_new_connection() -> None:
    """A connection that ended (both FINs acknowledged) leaves the table at
    once; a SYN for the same 4-tuple later in the same batch is a new
    connection, untouched by the old one's flush."""
    import select
    import socket

    w, flows, fd, peer, isn = _established()
    peer.shutdown(socket.SHUT_WR)
    w.handlers[fd](select.EPOLLIN | select.EPOLLRDHUP)  # type: ignore[operator]
    (fin,) = _segs(w)
    flows.from_guest(parsed(tcp_frame(tcp.FIN | tcp.ACK, seq=1006, ack=fin.seq + 1)))
    assert not flows.conns
    flows.from_guest(parsed(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7), seq=5000)))
    (new,) = flows.conns.values()
    flows.flush()
    assert fd not in w.handlers and (new.key, new.closed) == (((SRC4, 40000, DST4, 80)), False)
    assert len(w.requests) == 2  # a second connect for the new one
    peer.close()


def test_worker_broker_routes_a_late_connect_failure() -> None:
    """The worker's side of STATUS_PENDING: the reply's fd goes to the
    callback, and a failure that follows at once (same seq, errno, no fd)
    reaches the same callback; once another reply has come, a stray errno
    for the old seq reaches nobody."""
    import errno
    import os
    import socket

    from passt_sep import ipc
    from passt_sep.worker.loop import BrokerClient
    from sandbox.fdpass import send_fds

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = BrokerClient(ours)
    got: list[tuple[str, int | None, int]] = []
    for name in ("a", "b"):
        b.request(ipc.OP_TCP_CONNECT, socket.AF_INET, lambda fd, st, n=name: got.append((n, fd, st)),
                  port=80, addr=b"\xc0\x00\x02\x01")
    seqs = [ipc.unpack_request(theirs.recv(64)).seq for _ in range(2)]  # type: ignore[union-attr]
    r, w = os.pipe()
    send_fds(theirs, ipc.pack_reply(seqs[0], ipc.STATUS_PENDING), [r])
    send_fds(theirs, ipc.pack_reply(seqs[0], errno.ENETUNREACH), [])
    send_fds(theirs, ipc.pack_reply(seqs[1], errno.EACCES), [])
    send_fds(theirs, ipc.pack_reply(seqs[0], errno.ENETUNREACH), [])  # stray: dropped
    assert b.readable()
    assert [(n, st) for n, _fd, st in got] == [("a", ipc.STATUS_PENDING), ("a", errno.ENETUNREACH),
                                               ("b", errno.EACCES)]
    assert got[0][1] is not None and got[1][1] is None and got[2][1] is None
    assert b.late is None and not b.pending
    os.close(got[0][1])
    os.close(w)
    ours.close()
    theirs.close()


def test_socket_handed_over_before_its_connect() -> None:
    """STATUS_PENDING with a real Worker and epoll: the socket arrives
    closed (the parent has not called connect() yet), which epoll reports
    as EPOLLHUP; that is no refusal. When the connect completes (done here
    on our copy of the socket, as the parent does on its own), the guest
    gets its SYN-ACK; a refusal after the hand-over is a RST+ACK."""
    import os
    import socket

    from passt_sep import ipc

    rw = _RealWorker()
    w, frames, ls = rw.w, rw.frames, rw.ls
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connecting to it is refused
    try:
        for sport, dest in ((1001, ls.getsockname()), (1002, closed_port.getsockname())):
            frames.clear()
            f = bytearray(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7)))
            struct.pack_into("!H", f, ETH_HLEN + 20, sport)
            w.on_frame(memoryview(f))
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            rw.requests[-1](os.dup(s.fileno()), ipc.STATUS_PENDING)
            rw.run_loop(3)
            assert not frames and len(w.tcp.conns) == 1 + (sport == 1002)  # EPOLLHUP: still waiting
            s.connect_ex(dest)
            s.close()
            rw.run_loop(20)
            seg = tcp.parse_segment(parsed(frames[-1][tcp.VNET_HDR_LEN:]))
            assert isinstance(seg, tcp.Segment) and seg.dport == sport
            if sport == 1001:
                assert seg.flags == tcp.SYN | tcp.ACK
                ls.accept()[0].close()
            else:
                assert seg.flags == tcp.RST | tcp.ACK and w.tcp.stats["refused"] == 1
    finally:
        closed_port.close()
        rw.close()


@pytest.mark.parametrize("server_closed", [False, True], ids=["established", "close-wait"])
def test_pending_socket_already_connected_gets_its_synack_at_the_reply(server_closed: bool) -> None:
    """STATUS_PENDING for a socket whose connect has completed by the time
    the reply is read (on loopback the parent's connect() finishes within
    the call): the SYN-ACK goes out from the reply itself, before any
    epoll event, also when the server has already sent and closed
    (CLOSE_WAIT); what it sent then reaches the guest, and its FIN after."""
    import errno
    import os
    import socket

    from passt_sep import ipc
    from passt_sep.worker.tcp import SYNACK_SENT

    rw = _RealWorker()
    w, frames, ls = rw.w, rw.frames, rw.ls
    try:
        w.on_frame(memoryview(bytearray(tcp_frame(tcp.SYN, options=tcp.syn_options(1460, 7)))))
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        assert s.connect_ex(ls.getsockname()) in (0, errno.EINPROGRESS)
        srv, _ = ls.accept()
        if server_closed:
            srv.sendall(b"bye")
            srv.close()
        rw.requests[-1](os.dup(s.fileno()), ipc.STATUS_PENDING)
        s.close()
        assert len(frames) == 1  # no loop ran: the reply alone sent it
        synack = tcp.parse_segment(parsed(frames[0][tcp.VNET_HDR_LEN:]))
        assert isinstance(synack, tcp.Segment) and synack.flags == tcp.SYN | tcp.ACK
        (c,) = w.tcp.conns.values()
        assert c.state == SYNACK_SENT
        frames.clear()
        w.on_frame(memoryview(bytearray(tcp_frame(tcp.ACK, seq=1001, ack=synack.seq + 1))))
        if not server_closed:
            srv.sendall(b"hello")
        rw.run_loop(20)
        assert frames and frames[0].endswith(b"bye" if server_closed else b"hello")
        if server_closed:
            fin = tcp.parse_segment(parsed(frames[-1][tcp.VNET_HDR_LEN:]))
            assert isinstance(fin, tcp.Segment) and fin.flags & tcp.FIN
        else:
            srv.close()
    finally:
        rw.close()
