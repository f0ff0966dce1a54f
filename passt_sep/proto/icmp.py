# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP and ICMPv6 echo: what the guest asks, and the reply frame back.

Echo requests leave through ping sockets (the kernel writes the ICMP
header's identifier and checksum); replies arrive from those sockets as
bare ICMP messages and become whole frames for the guest here. Other ICMP
types are neither generated nor forwarded, as in passt.
"""

from __future__ import annotations

import struct

from .checksum import checksum, pseudo_v6
from .packet import (
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    Packet,
    eth_header,
    ipv4_header,
    ipv6_header,
)

ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
_ECHO = struct.Struct("!BBHHH")


class Echo:
    """An echo request or reply: identifier, sequence and data (immutable).

    One per echo: written out rather than made by ``dataclasses``, whose
    import start-up would pay (passt_sep/record.py)."""

    __slots__ = ("ident", "seq", "data")
    __match_args__ = __slots__
    ident: int
    seq: int
    data: bytes

    def __init__(self, ident: int, seq: int, data: bytes) -> None:
        object.__setattr__(self, "ident", ident)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "data", data)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        return f"Echo(ident={self.ident!r}, seq={self.seq!r}, data={self.data!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Echo:
            return NotImplemented
        return (self.ident, self.seq, self.data) == (other.ident, other.seq, other.data)

    def __hash__(self) -> int:
        return hash((self.ident, self.seq, self.data))


def parse_echo(p: Packet) -> Echo | str | None:
    """An echo request from the guest; None if it is another ICMP type."""
    if p.l4len < _ECHO.size:
        return "short icmp"
    typ, code, _c, ident, seq = _ECHO.unpack_from(p.frame, p.l4)
    want = ICMP_ECHO_REQUEST if p.version == 4 else ICMPV6_ECHO_REQUEST
    if typ != want:
        return None
    if code != 0:
        return "icmp code"
    return Echo(ident, seq, bytes(p.frame[p.l4 + 8 : p.l4 + p.l4len]))


def parse_reply(version: int, msg: bytes) -> Echo | None:
    """An echo reply as read from a ping socket (ICMP header first)."""
    if len(msg) < _ECHO.size:
        return None
    typ, _code, _c, ident, seq = _ECHO.unpack_from(msg, 0)
    if typ != (ICMP_ECHO_REPLY if version == 4 else ICMPV6_ECHO_REPLY):
        return None
    return Echo(ident, seq, msg[8:])


def echo_request_payload(version: int, e: Echo) -> bytes:
    """The ICMP message to send on a ping socket (the kernel sets id and sum)."""
    typ = ICMP_ECHO_REQUEST if version == 4 else ICMPV6_ECHO_REQUEST
    return _ECHO.pack(typ, 0, 0, e.ident, e.seq) + e.data


def echo_reply_frame(version: int, dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes,
                     e: Echo) -> bytes:
    """A complete echo reply frame from src to the guest at dst."""
    if version == 4:
        icmp = bytearray(_ECHO.pack(ICMP_ECHO_REPLY, 0, 0, e.ident, e.seq) + e.data)
        struct.pack_into("!H", icmp, 2, checksum(icmp))
        return (eth_header(dst_mac, src_mac, ETH_P_IP)
                + ipv4_header(src, dst, IPPROTO_ICMP, len(icmp)) + bytes(icmp))
    icmp = bytearray(_ECHO.pack(ICMPV6_ECHO_REPLY, 0, 0, e.ident, e.seq) + e.data)
    s = pseudo_v6(src, dst, IPPROTO_ICMPV6, len(icmp))
    struct.pack_into("!H", icmp, 2, checksum(icmp, s))
    return (eth_header(dst_mac, src_mac, ETH_P_IPV6)
            + ipv6_header(src, dst, IPPROTO_ICMPV6, len(icmp)) + bytes(icmp))


def icmpv6_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes, body: bytearray,
                 hlim: int = 255) -> bytes:
    """Frame an ICMPv6 message (checksum field at offset 2 filled in here)."""
    struct.pack_into("!H", body, 2, 0)
    s = pseudo_v6(src, dst, IPPROTO_ICMPV6, len(body))
    struct.pack_into("!H", body, 2, checksum(body, s))
    return (eth_header(dst_mac, src_mac, ETH_P_IPV6)
            + ipv6_header(src, dst, IPPROTO_ICMPV6, len(body), hlim) + bytes(body))

