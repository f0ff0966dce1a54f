# SPDX-License-Identifier: GPL-2.0-or-later
"""NDP (RFC 4861, RFC 8106): neighbour and router advertisements.

We are every IPv6 neighbour of the guest and its router. A neighbour
solicitation for any target but the guest's own address gets an
advertisement with our MAC (Router, Solicited and Override set); DAD
probes (unspecified source) get none. A router solicitation gets a router
advertisement carrying the /64 prefix of the guest's address (on-link,
autonomous), the MTU, and, when allowed, RDNSS and DNSSL; the same
advertisement is sent periodically to all nodes.
"""

from __future__ import annotations

import struct

from ..record import record
from .icmp import icmpv6_frame
from .packet import Packet

NS, NA, RS, RA = 135, 136, 133, 134
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
UNSPECIFIED = bytes(16)
ROUTER_LIFETIME = 9000  # seconds, as passt
PREFIX_LIFETIME = 3600
DNS_LIFETIME = 60


@record(frozen=True)
class RaParams:
    """What router advertisements announce."""

    our_mac: bytes
    our_ll: bytes  # source address of our RAs
    prefix: bytes  # the guest's address; the first 64 bits are announced
    mtu: int  # 0: no MTU option
    dns: tuple[bytes, ...] = ()
    search: bytes = b""  # DNSSL body: encoded domain names, unpadded
    managed: bool = True  # M flag: addresses through DHCPv6 too


def _mac_for(dst: bytes, fallback: bytes) -> bytes:
    if dst[0] == 0xFF:
        return b"\x33\x33" + dst[12:16]
    return fallback


def neighbour_advert(p: Packet, our_mac: bytes, guest_addr: bytes | None) -> bytes | str | None:
    """Answer a neighbour solicitation; None to stay silent."""
    if p.l4len < 24:
        return "short ns"
    if p.ttl != 255:
        return "ns hop limit"
    target = bytes(p.frame[p.l4 + 8 : p.l4 + 24])
    if target == UNSPECIFIED or target[0] == 0xFF:
        return "ns target"  # RFC 4861 7.1.1: not a unicast address
    if p.src == UNSPECIFIED:
        return None  # duplicate address detection: nothing to defend
    if guest_addr is not None and target == guest_addr:
        return None
    body = bytearray(struct.pack("!BBHI16sBB6s", NA, 0, 0, 0xE0000000, target, 2, 1, our_mac))
    return icmpv6_frame(p.src_mac, our_mac, target, p.src, body)


def router_advert(params: RaParams, dst: bytes, dst_mac: bytes) -> bytes:
    """A router advertisement to dst (a solicitor, or all nodes)."""
    flags = 0x80 if params.managed else 0
    body = bytearray(struct.pack("!BBHBBHII", RA, 0, 0, 64, flags, ROUTER_LIFETIME, 0, 0))
    prefix = params.prefix[:8] + bytes(8)
    body += struct.pack("!BBBBIII16s", 3, 4, 64, 0xC0, PREFIX_LIFETIME, PREFIX_LIFETIME, 0, prefix)
    if params.mtu:
        body += struct.pack("!BBHI", 5, 1, 0, params.mtu)
    if params.dns:
        body += struct.pack("!BBHI", 25, 1 + 2 * len(params.dns), 0, DNS_LIFETIME)
        body += b"".join(params.dns)
        if params.search:
            pad = (-(8 + len(params.search))) % 8
            data = params.search + bytes(pad)
            body += struct.pack("!BBHI", 31, (8 + len(data)) // 8, 0, DNS_LIFETIME) + data
    body += struct.pack("!BB6s", 1, 1, params.our_mac)
    return icmpv6_frame(dst_mac, params.our_mac, params.our_ll, dst, body)


def handle(p: Packet, params: RaParams, guest_addr: bytes | None, ra: bool) -> bytes | str | None:
    """Dispatch an NDP message from the guest (ICMPv6 type 133-136)."""
    if p.l4len < 4:
        return "short icmpv6"
    typ = p.frame[p.l4]
    if typ in (NS, RS) and (p.frame[p.l4 + 1] != 0 or p.src[0] == 0xFF):
        return "ndp code or source"  # invalid per RFC 4861 6.1.1, 7.1.1
    if typ == NS:
        return neighbour_advert(p, params.our_mac, guest_addr)
    if typ == RS:
        if not ra:
            return None
        if p.ttl != 255:
            return "rs hop limit"
        dst = ALL_NODES if p.src == UNSPECIFIED else p.src
        return router_advert(params, dst, _mac_for(dst, p.src_mac))
    return None
