# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for UDP batching: worker/mmsg.py and its use in worker/udp.py and flowsock.py.

Real sockets on 127.0.0.1 and ::1 of this test process only. What is checked:
recvmmsg hands back every datagram with its sender; a run of one size toward
the guest becomes one GSO_UDP_L4 frame whose virtio-net header, IP and UDP
lengths and pseudo-header checksum are what the kernel's segmentation needs
(the frame is cut here as the kernel would and each piece compared); a USO
frame from the guest is split at its segment size; runs sent with
UDP_SEGMENT arrive as the datagrams they were, sizes mixed, in order; a
GSO frame written through the tap's writev is whole; the fast path for a
known flow's frames (UdpFlows.fast_from_guest) delivers what the full path
would and leaves every odd frame to it.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from passt_sep.proto.checksum import csum_partial
from passt_sep.worker import flowsock, mmsg
from passt_sep.worker import udp as wudp
from tests.unit.test_udp_flows import ADDR4, GW4, FakeWorker, frame

pytestmark = pytest.mark.skipif(not mmsg.AVAILABLE, reason="no recvmmsg through ctypes")


class HeaderTap:
    """Keeps whole frames, virtio-net header included; ``seg`` as the pasta tap's."""

    needs_csum = False

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.seg = 0

    def write_raw(self, buf: memoryview) -> bool:
        self.frames.append(bytes(buf))
        return True


def _worker() -> FakeWorker:
    w = FakeWorker()
    w.tap = HeaderTap()  # type: ignore[assignment]
    return w


def _recv_all(s: socket.socket, n: int) -> list[bytes]:
    s.settimeout(2)
    return [s.recv(65536) for _ in range(n)]


def test_recvmmsg_gives_each_datagram_and_its_sender() -> None:
    rb = mmsg.RecvBatch(names=True, slots=8)
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        r = socket.socket(fam, socket.SOCK_DGRAM)
        r.bind((host, 0))
        a, b = socket.socket(fam, socket.SOCK_DGRAM), socket.socket(fam, socket.SOCK_DGRAM)
        a.bind((host, 0))
        b.bind((host, 0))
        sent = [(a, b"one"), (a, b""), (b, os.urandom(3000)), (a, os.urandom(65000))]
        for s, data in sent:
            s.sendto(data, r.getsockname()[:2])
        n = rb.recv(r.fileno())
        assert n == 4
        for i, (s, data) in enumerate(sent):
            assert bytes(rb.slot(i, rb.length(i))) == data
            f, raw, port = rb.sender(i)
            assert (f, socket.inet_ntop(f, raw), port) == (fam, host, s.getsockname()[1])
        assert rb.same_sender(0, 1) and not rb.same_sender(1, 2)
        assert rb.one_sender(2) and not rb.one_sender(3) and not rb.one_sender(4)
        assert [bytes(x) for x in rb.payloads(0, 4)] == [d for _s, d in sent]
        assert [bytes(x) for x in rb.payloads(2, 3)] == [sent[2][1]]
        assert rb.recv(r.fileno()) == 0 and rb.errno == 11  # EAGAIN
        for s in (r, a, b):
            s.close()


def test_run_of_one_size_to_the_guest_is_one_gso_frame() -> None:
    w = _worker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    port = peer.getsockname()[1]
    flows.from_guest(frame(4, str(GW4), port, b"hello"))
    _d, back = peer.recvfrom(100)
    run = [os.urandom(1400) for _ in range(10)] + [os.urandom(300)]
    for d in run:
        peer.sendto(d, back)
    peer.sendto(os.urandom(2000), back)  # longer: a frame of its own
    w.pump()
    f = w.tap.frames
    assert len(f) == 2, [len(x) for x in f]
    flags, gso_type, hdr_len, gso_size, csum_start, csum_off = struct.unpack_from("<BBHHHH", f[0])
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_off) == (1, 5, 14 + 20 + 8, 1400, 34, 6)
    total = sum(map(len, run))
    ip = f[0][10 + 14 : 10 + 34]
    assert struct.unpack_from("!H", ip, 2)[0] == 20 + 8 + total
    assert csum_partial(ip) == 0xFFFF  # the IPv4 header checksum is complete
    udp = f[0][10 + 34 : 10 + 42]
    sport, dport, ulen, check = struct.unpack("!HHHH", udp)
    assert (sport, dport, ulen) == (port, 40000, 8 + total)
    # NEEDS_CSUM: the field holds the pseudo-header sum over the whole length (the kernel's
    # segmentation adjusts it per segment from there)
    ph = csum_partial(GW4.packed + ADDR4.packed + struct.pack("!BBH", 0, 17, 8 + total))
    assert check == ph
    payload = f[0][10 + 42 :]
    assert [payload[k : k + 1400] for k in range(0, total, 1400)] == run
    assert struct.unpack_from("<BB", f[1]) == (1, 0)  # the 2,000 bytes: no GSO
    assert flows.stats["gso_frames"] == 1 and flows.stats["to_guest"] == 12
    peer.close()


def test_gso_frames_off_one_frame_per_datagram() -> None:
    w = _worker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.gso = False  # as after a refused probe, or passt's stream
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    flows.from_guest(frame(4, str(GW4), peer.getsockname()[1], b"hello"))
    _d, back = peer.recvfrom(100)
    run = [os.urandom(1000) for _ in range(5)]
    for d in run:
        peer.sendto(d, back)
    w.pump()
    assert [fr[10 + 42 :] for fr in w.tap.frames] == run
    assert all(fr[1] == 0 for fr in w.tap.frames)
    peer.close()


def test_uso_frame_from_the_guest_is_split_at_its_segment_size() -> None:
    w = _worker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    port = peer.getsockname()[1]
    runs0 = flowsock.SEGMENTER.runs
    data = os.urandom(2500)
    w.tap.seg = 1000  # the tap said GSO_UDP_L4, gso_size 1000
    flows.from_guest(frame(4, str(GW4), port, data))
    w.tap.seg = 0
    assert _recv_all(peer, 3) == [data[:1000], data[1000:2000], data[2000:]]
    assert flows.stats["uso_frames"] == 1 and flows.stats["to_host"] == 3
    assert flowsock.SEGMENTER.runs == runs0 + 1  # one send() with UDP_SEGMENT
    # a datagram of its own afterwards, longer than that segment size: not cut
    big = os.urandom(1500)
    flows.from_guest(frame(4, str(GW4), port, big))
    assert _recv_all(peer, 1) == [big]
    peer.close()


def test_deferred_runs_of_mixed_sizes_arrive_as_sent() -> None:
    w = _worker()
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.defer = True
    peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    peer.bind(("::1", 0))
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    w.broker.redirect[(socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 9)] = ("::1",
                                                                                      peer.getsockname()[1])
    sizes = [1400] * 5 + [100, 2000, 0, 2000, 2000, 7] + [512] * 70 + [3, 3]
    data = [os.urandom(n) for n in sizes]
    for d in data:
        flows.from_guest(frame(6, "2001:db8::1", 9, d))
    assert flows.out  # held until the loop's pass ends
    flows.flush()
    assert _recv_all(peer, len(data)) == data
    assert flows.stats["to_host"] == len(data)
    peer.close()


def _frame_bytes(version: int, dst: str, dport: int, payload: bytes, sport: int = 40000) -> bytearray:
    return bytearray(frame(version, dst, dport, payload, sport).frame)


def test_fast_path_takes_a_known_flows_frames_and_nothing_odd() -> None:
    """A flow's later frames skip parse_frame (UdpFlows.fast_from_guest) and arrive as sent;
    a frame of the same flow with a bad length, fragment bits, a USO header, or after the
    flow closed goes the slow way (which drops and counts it)."""
    w = _worker()
    w.frames_in, w.proto_frames, w.proto_bytes = 0, {}, {}  # type: ignore[attr-defined]
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    flows.defer = True
    peers = {}
    for version, host, dst in ((4, "127.0.0.1", str(GW4)), (6, "::1", "2001:db8::1")):
        peer = socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
        peer.bind((host, 0))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        port = peer.getsockname()[1]
        if version == 6:
            w.broker.redirect[(socket.inet_pton(socket.AF_INET6, dst), port)] = (host, port)
        peers[version] = (peer, dst, port)
        first = os.urandom(100)
        flows.from_guest(frame(version, dst, port, first))  # the slow path: checked, then cached
        flows.flush()
        assert _recv_all(peer, 1) == [first]
        data = [os.urandom(n) for n in [1400] * 50 + [7, 0, 3000]]
        for d in data:
            assert flows.fast_from_guest(memoryview(_frame_bytes(version, dst, port, d)))
        padded = _frame_bytes(version, dst, port, b"pad") + bytes(20)  # Ethernet padding: ignored
        assert flows.fast_from_guest(memoryview(padded))
        flows.flush()
        assert _recv_all(peer, len(data) + 1) == data + [b"pad"]
    assert w.frames_in == 2 * 54 and w.proto_frames[17] == 2 * 54  # type: ignore[attr-defined]
    assert flows.stats["to_host"] == 2 * 55

    peer, dst, port = peers[4]
    good = _frame_bytes(4, dst, port, b"x" * 100)
    odd = []
    f = bytearray(good)
    struct.pack_into("!H", f, 38, 8 + 101)  # UDP length past the IP payload
    odd.append(f)
    f = bytearray(good)
    struct.pack_into("!H", f, 16, len(good) - 14 + 1)  # IP length past the frame
    odd.append(f)
    f = bytearray(good)
    struct.pack_into("!H", f, 38, 7)  # UDP length under its header
    odd.append(f)
    f = bytearray(good)
    struct.pack_into("!H", f, 20, 0x2000)  # more fragments
    odd.append(f)
    odd.append(bytearray(good[:41]))
    f = bytearray(good)
    f[0] ^= 1  # another destination MAC: another key
    odd.append(f)
    for f in odd:
        assert not flows.fast_from_guest(memoryview(f))
    p6, dst6, port6 = peers[6]
    f = _frame_bytes(6, dst6, port6, b"y" * 10)
    struct.pack_into("!H", f, 18, 8 + 10 + 1)  # IPv6 payload length past the frame
    assert not flows.fast_from_guest(memoryview(f))
    w.tap.seg = 50  # the tap said GSO_UDP_L4: from_guest splits it
    assert not flows.fast_from_guest(memoryview(bytearray(good)))
    w.tap.seg = 0
    (flow4,) = [fl for fl in flows.flows.values() if fl.version == 4]
    flows._close(flow4)
    assert not flows.fast_from_guest(memoryview(bytearray(good)))
    flows.flush()
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)
    for peer, _d, _p in peers.values():
        peer.close()


def test_gso_frame_through_writev() -> None:
    """The pasta tap's write_parts (the headers, then each payload where recvmmsg put it,
    in one writev) writes whole GSO frames: header, lengths and payloads in order."""
    from passt_sep.worker.tap import Tap

    w = _worker()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    w.tap = Tap(a.fileno(), None)  # type: ignore[assignment]
    flows = wudp.UdpFlows(w)  # type: ignore[arg-type]
    assert flows.write_parts is not None
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    port = peer.getsockname()[1]
    flows.from_guest(frame(4, str(GW4), port, b"hello"))
    _d, back = peer.recvfrom(100)
    payloads = [os.urandom(1400) for _ in range(60)] + [os.urandom(500)]
    for d in payloads:
        peer.sendto(d, back)
    w.pump()
    b.setblocking(False)
    got = []
    while True:
        try:
            got.append(b.recv(70000))
        except BlockingIOError:
            break
    # a run is at most one frame's 65,493 bytes: 46 of 1,400, then the other 15
    assert [len(x) - 52 for x in got] == [46 * 1400, 14 * 1400 + 500]
    for f, part in zip(got, (payloads[:46], payloads[46:]), strict=True):
        assert struct.unpack_from("<BBHHHH", f) == (1, 5, 42, 1400, 34, 6)
        assert struct.unpack_from("!H", f, 10 + 16)[0] == 28 + len(f) - 52
        sport, dport, ulen = struct.unpack_from("!HHH", f, 10 + 34)
        assert (sport, dport, ulen) == (port, 40000, 8 + len(f) - 52)
        assert f[52:] == b"".join(part)
    assert flows.stats["gso_frames"] == 2 and flows.stats["to_guest"] == 61
    peer.close()
    a.close()
    b.close()
