# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.proto.udp: header parsing and frames toward the guest.

Frames are taken apart with struct and checked with an independent
checksum (a plain loop over 16-bit words), against RFC 768/791/8200 and
the virtio-net header layout, not against the code under test.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from passt_sep.proto import udp
from passt_sep.proto.packet import Packet, parse_frame

GUEST_MAC = bytes.fromhex("5254000012ab")
OUR_MAC = bytes.fromhex("9a5500aa0001")
A4, B4 = socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.10")
A6, B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::10")


def ones_sum(data: bytes) -> int:
    """RFC 1071 the slow, obvious way."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (word,) in struct.iter_unpack("!H", data):
        s += word
        s = (s & 0xFFFF) + (s >> 16)
    return s


def split(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes]:
    """(version, src, dst, udp bytes, pseudo-header) of an Ethernet frame, lengths checked."""
    dst_mac, src_mac, etype = struct.unpack_from("!6s6sH", frame)
    assert (dst_mac, src_mac) == (GUEST_MAC, OUR_MAC)
    if etype == 0x0800:
        ip = frame[14:34]
        assert ip[0] == 0x45 and ip[9] == 17
        assert struct.unpack_from("!H", ip, 2)[0] == len(frame) - 14
        assert ones_sum(ip) == 0xFFFF, "IPv4 header checksum"
        src, dst, u = ip[12:16], ip[16:20], frame[34:]
        return 4, src, dst, u, src + dst + struct.pack("!BBH", 0, 17, len(u))
    assert etype == 0x86DD
    ip = frame[14:54]
    assert ip[0] >> 4 == 6 and ip[6] == 17
    assert struct.unpack_from("!H", ip, 4)[0] == len(frame) - 54
    src, dst, u = ip[8:24], ip[24:40], frame[54:]
    return 6, src, dst, u, src + dst + struct.pack("!IxxxB", len(u), 17)


def build(version: int, payload: bytes, *, vnet: bool = True, offload: bool = True,
          sport: int = 53, dport: int = 40000) -> bytes:
    """A frame from the builder with payload placed where it expects it."""
    buf = bytearray(udp.header_len(6) + 65536)
    h = udp.header_len(version, vnet)
    buf[h : h + len(payload)] = payload
    src, dst = (A4, B4) if version == 4 else (A6, B6)
    n = udp.fill_frame(buf, version, GUEST_MAC, OUR_MAC, src, dst, sport, dport, len(payload),
                       vnet=vnet, offload=offload)
    return bytes(buf[:n])


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("size", [0, 1, 2, 999, 1472, 60000])
def test_complete_checksums_without_offload(version: int, size: int) -> None:
    payload = os.urandom(size)
    out = build(version, payload, offload=False)
    assert out[:10] == bytes(10), "zero virtio-net header"
    v, src, dst, u, pseudo = split(out[10:])
    sport, dport, length, csum = struct.unpack_from("!HHHH", u)
    assert (v, sport, dport, length, u[8:]) == (version, 53, 40000, 8 + size, payload)
    assert csum != 0 and ones_sum(pseudo + u) == 0xFFFF


@pytest.mark.parametrize("version", [4, 6])
def test_without_vnet_header(version: int) -> None:
    payload = os.urandom(333)
    out = build(version, payload, vnet=False, offload=True)  # offload needs the header: ignored
    _v, _s, _d, u, pseudo = split(out)
    assert ones_sum(pseudo + u) == 0xFFFF and u[8:] == payload


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("size", [0, 7, 1400, 65000])
def test_offload_leaves_pseudo_sum_and_needs_csum(version: int, size: int) -> None:
    payload = os.urandom(size)
    out = build(version, payload)
    flags, gso, _hl, _gs, cstart, coff = struct.unpack_from("<BBHHHH", out)
    frame = bytearray(out[10:])
    _v, _s, _d, u, pseudo = split(bytes(frame))
    assert (flags, gso, coff) == (1, 0, 6)
    assert cstart == (34 if version == 4 else 54)
    field = struct.unpack_from("!H", frame, cstart + 6)[0]
    zeroed = u[:6] + b"\0\0" + u[8:]
    assert field == ones_sum(pseudo), "the field holds the pseudo-header sum only"
    # complete it as a NIC would: sum from csum_start (field included), complement
    struct.pack_into("!H", frame, cstart + coff, (~ones_sum(bytes(frame[cstart:]))) & 0xFFFF)
    assert ones_sum(pseudo + bytes(frame[cstart:])) == 0xFFFF
    assert frame[cstart + 8 :] == payload and zeroed[8:] == payload


@pytest.mark.parametrize("version", [4, 6])
def test_zero_checksum_sent_as_ffff(version: int) -> None:
    out = build(version, b"\0\0", offload=False)
    _v, _s, _d, u, pseudo = split(out[10:])
    s = ones_sum(pseudo + u[:6] + b"\0\0" + u[8:])  # sum with the field zero
    fix = struct.pack("!H", (~s) & 0xFFFF)  # a payload word that makes the sum 0xFFFF
    out = build(version, fix, offload=False)
    _v, _s, _d, u, pseudo = split(out[10:])
    assert struct.unpack_from("!H", u, 6)[0] == 0xFFFF
    assert ones_sum(pseudo + u) == 0xFFFF


def test_payload_limits() -> None:
    assert udp.max_payload(4) == 65493 and udp.max_payload(6) == 65473
    assert len(build(4, bytes(65493), offload=False)) == 10 + 65535
    assert len(build(6, bytes(65473), offload=False)) == 10 + 65535
    with pytest.raises(ValueError):
        build(4, bytes(65494))
    with pytest.raises(ValueError):
        build(6, bytes(65474))


# -- parsing guest frames ------------------------------------------------------------

def guest_frame(version: int, payload: bytes, *, ulen: int | None = None, trailer: bytes = b"") -> Packet:
    u = struct.pack("!HHHH", 40000, 53, 8 + len(payload) if ulen is None else ulen, 0) + payload + trailer
    if version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 0, 0x4000, 64, 17, 0, B4, A4)
        f = OUR_MAC + GUEST_MAC + b"\x08\x00" + ip + u
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(u), 17, 64, B6, A6)
        f = OUR_MAC + GUEST_MAC + b"\x86\xdd" + ip + u
    p = parse_frame(memoryview(f))
    assert isinstance(p, Packet)
    return p


@pytest.mark.parametrize("version", [4, 6])
def test_parse_datagram(version: int) -> None:
    p = guest_frame(version, b"hello")
    d = udp.parse_datagram(p)
    assert not isinstance(d, str)
    assert (d.sport, d.dport, d.dlen) == (40000, 53, 5)
    assert bytes(p.frame[d.off : d.off + d.dlen]) == b"hello"


@pytest.mark.parametrize("version", [4, 6])
def test_parse_zero_length_and_trailer(version: int) -> None:
    d = udp.parse_datagram(guest_frame(version, b""))
    assert not isinstance(d, str) and d.dlen == 0
    d = udp.parse_datagram(guest_frame(version, b"ab", ulen=10, trailer=b"junk"))
    assert not isinstance(d, str) and d.dlen == 2


@pytest.mark.parametrize("ulen,why", [(7, "udp length"), (0, "udp length"), (14, "udp length")])
def test_parse_bad_length(ulen: int, why: str) -> None:
    assert udp.parse_datagram(guest_frame(4, b"abcde", ulen=ulen)) == why


def test_parse_short_header() -> None:
    p = guest_frame(4, b"")
    p.l4len = 7
    assert udp.parse_datagram(p) == "short udp"
    p.l4len = 8
    p.l4 = len(p.frame) - 4
    assert udp.parse_datagram(p) == "short udp"


def test_parse_never_raises_on_random_frames() -> None:
    import random

    rnd = random.Random(7)
    base = bytes(guest_frame(4, b"x" * 20).frame)
    for _ in range(2000):
        f = bytearray(base)
        for _ in range(rnd.randint(1, 6)):
            f[rnd.randrange(len(f))] = rnd.randrange(256)
        f = f[: rnd.randint(0, len(f))]
        p = parse_frame(memoryview(bytes(f)))
        if isinstance(p, Packet) and p.proto == 17:
            d = udp.parse_datagram(p)
            if not isinstance(d, str):
                assert d.off + d.dlen <= len(p.frame)
