# SPDX-License-Identifier: GPL-2.0-or-later
"""The one door to guest bytes: a bounds-checked parse of a frame.

``parse_frame`` reads Ethernet, then IPv4 or IPv6 (extension headers
skipped within bounds) and returns a ``Packet`` with offsets into the
frame, or a short reason string when the frame is malformed. It never
raises on any input: a length that points past the end is a reason, not
an exception. Builders for Ethernet, IPv4 and IPv6 headers live here too.

Simplifications: IP fragments are dropped and counted (as passt does);
IPv4 options are skipped; trailing bytes after the IP datagram (Ethernet
padding) are ignored.
"""

from __future__ import annotations

import struct

from .checksum import checksum

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
ETH_HLEN = 14
BROADCAST_MAC = b"\xff" * 6
_EXT_HEADERS = {0, 43, 60, 51}  # hop-by-hop, routing, destination options, AH
_MAX_EXT = 8  # extension headers followed before giving up on a packet

_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")


class Packet:
    """Offsets and addresses of one parsed frame; data stays in ``frame``.

    One per frame: written out (slots, one __init__) rather than made by
    ``dataclasses``, whose import start-up would pay (passt_sep/record.py)."""

    __slots__ = ("frame", "dst_mac", "src_mac", "ethertype", "l3", "version", "src", "dst",
                 "proto", "l4", "l4len", "ttl")
    __match_args__ = __slots__

    def __init__(self, frame: memoryview, dst_mac: bytes, src_mac: bytes, ethertype: int, l3: int,
                 version: int = 0, src: bytes = b"", dst: bytes = b"", proto: int = 0,
                 l4: int = 0, l4len: int = 0, ttl: int = 0) -> None:
        self.frame = frame
        self.dst_mac = dst_mac
        self.src_mac = src_mac
        self.ethertype = ethertype
        self.l3 = l3
        self.version = version  # 4, 6, or 0 for non-IP (ARP)
        self.src = src
        self.dst = dst
        self.proto = proto
        self.l4 = l4
        self.l4len = l4len
        self.ttl = ttl

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "Packet(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Packet:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def l4bytes(self) -> memoryview:
        """The transport header and payload."""
        return self.frame[self.l4 : self.l4 + self.l4len]


def parse_frame(frame: memoryview) -> Packet | str:
    """Parse a frame; a str is the reason it is malformed."""
    n = len(frame)
    if n < ETH_HLEN:
        return "short ethernet"
    dst, src, etype = _ETH.unpack_from(frame, 0)
    p = Packet(frame, dst, src, etype, ETH_HLEN)
    if etype == ETH_P_IP:
        if n < ETH_HLEN + 20:
            return "short ipv4"
        vihl, _tos, tot, _id, frag, ttl, proto, _c, s, d = _IP4.unpack_from(frame, ETH_HLEN)
        if vihl >> 4 != 4:
            return "ipv4 version"
        ihl = (vihl & 15) * 4
        if ihl < 20 or tot < ihl or ETH_HLEN + tot > n:
            return "ipv4 length"
        if frag & 0x3FFF:
            return "ipv4 fragment"
        p.version, p.src, p.dst, p.proto, p.ttl = 4, s, d, proto, ttl
        p.l4 = ETH_HLEN + ihl
        p.l4len = tot - ihl
        return p
    if etype == ETH_P_IPV6:
        if n < ETH_HLEN + 40:
            return "short ipv6"
        vtf, plen, nh, hlim, s, d = _IP6.unpack_from(frame, ETH_HLEN)
        if vtf >> 28 != 6:
            return "ipv6 version"
        end = ETH_HLEN + 40 + plen
        if end > n:
            return "ipv6 length"
        off = ETH_HLEN + 40
        for _ in range(_MAX_EXT):
            if nh not in _EXT_HEADERS:
                break
            if off + 8 > end:
                return "ipv6 extension header"
            nxt, hl = frame[off], frame[off + 1]
            size = (hl + 2) * 4 if nh == 51 else (hl + 1) * 8
            if off + size > end:
                return "ipv6 extension header"
            nh, off = nxt, off + size
        else:
            return "ipv6 extension chain"
        if nh == 44:
            return "ipv6 fragment"
        p.version, p.src, p.dst, p.proto, p.ttl = 6, s, d, nh, hlim
        p.l4, p.l4len = off, end - off
        return p
    if etype == ETH_P_ARP:
        return p
    return "ethertype"


def eth_header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """An Ethernet header."""
    return _ETH.pack(dst, src, ethertype)


def ipv4_header(src: bytes, dst: bytes, proto: int, payload_len: int, ttl: int = 64,
                ident: int = 0) -> bytes:
    """An IPv4 header (no options, DF set) with its checksum."""
    h = bytearray(_IP4.pack(0x45, 0, 20 + payload_len, ident, 0x4000, ttl, proto, 0, src, dst))
    struct.pack_into("!H", h, 10, checksum(h))
    return bytes(h)


def ipv6_header(src: bytes, dst: bytes, nh: int, payload_len: int, hlim: int = 64) -> bytes:
    """An IPv6 header."""
    return _IP6.pack(0x60000000, payload_len, nh, hlim, src, dst)
