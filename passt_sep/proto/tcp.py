# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP segments, sans-IO: parsing, options, header templates, ISNs.

Nothing here does I/O. ``parse_segment`` reads the TCP header of a parsed
frame with every length checked (a bad one is a reason string, never an
exception); ``parse_options`` finds MSS and window scale (RFC 7323) and
ignores the rest. ``Template`` prebuilds virtio-net + Ethernet + IP + TCP
headers of one connection, so that a segment toward the guest costs one
slice copy and a few ``struct.pack_into`` calls: with checksum offload the
TCP checksum field gets only the pseudo-header sum (the receiving kernel
completes it if it ever needs to), without it the whole checksum is
computed at C speed. ``isn`` derives initial sequence numbers from a keyed
hash of the 4-tuple plus a 4 us clock (RFC 6528).
"""

from __future__ import annotations

import functools
import struct
import time
from _blake2 import blake2s  # hashlib would load OpenSSL (about 8 ms of start-up) for this one hash
from collections import namedtuple

from .checksum import csum_partial
from .packet import ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, Packet

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
TCP_HLEN = 20
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WS = 0, 1, 2, 3
WS_MAX = 14  # RFC 7323 limit on the shift count
MSS_DEFAULT = 536  # RFC 9293 default when the peer sends no MSS option
VNET_HDR_LEN = 10
VNET_NEEDS_CSUM = 1
VNET_GSO_TCPV4, VNET_GSO_TCPV6 = 1, 4
GSO_MAX = {4: 0xFFFF - 40, 6: 0xFFFF - 20}  # largest payload of one (GSO) frame
SEQ_MASK = 0xFFFFFFFF

_TCP = struct.Struct("!HHIIBBHHH")
_VNET = struct.Struct("<BBHHHH")
_SEQ_ACK = struct.Struct("!II")
_FLAGS_WIN = struct.Struct("!BBH")  # data offset byte, flags, window
_U16 = struct.Struct("!H")
_GSO = struct.Struct("<BHH")  # gso_type, hdr_len, gso_size of the virtio-net header
_PORTS = struct.Struct("!HH")


TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Segment(NamedTuple):
        """One TCP segment of a frame; ``off``/``dlen`` locate its payload."""

        sport: int
        dport: int
        seq: int
        ack: int
        flags: int
        win: int
        hlen: int
        off: int  # payload offset in the frame
        dlen: int  # payload length
else:  # the same class, without importing typing
    Segment = namedtuple("Segment", "sport dport seq ack flags win hlen off dlen")
    Segment.__doc__ = 'One TCP segment of a frame; ``off``/``dlen`` locate its payload.'


def parse_segment(p: Packet) -> Segment | str:
    """The TCP header of a parsed frame, or why it is malformed."""
    if p.l4len < TCP_HLEN or p.l4 + p.l4len > len(p.frame):
        return "short tcp"
    sport, dport, seq, ack, doff, flags, win, _c, _u = _TCP.unpack_from(p.frame, p.l4)
    hlen = (doff >> 4) * 4
    if hlen < TCP_HLEN or hlen > p.l4len:
        return "tcp header length"
    if sport == 0 or dport == 0:
        return "tcp port 0"
    return Segment(sport, dport, seq, ack, flags, win, hlen, p.l4 + hlen, p.l4len - hlen)


def parse_options(buf: bytes | bytearray | memoryview, start: int, end: int) -> tuple[int | None, int | None]:
    """(MSS, window scale) from the options in buf[start:end], None if absent.

    A malformed option list stops the scan; what was found so far counts.
    """
    mss = ws = None
    i = start
    end = min(end, len(buf))
    for _ in range(40):  # at most 40 bytes of options
        if i >= end:
            break
        kind = buf[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            break
        olen = buf[i + 1]
        if olen < 2 or i + olen > end:
            break
        if kind == OPT_MSS and olen == 4:
            mss = (buf[i + 2] << 8) | buf[i + 3]
        elif kind == OPT_WS and olen == 3:
            ws = min(buf[i + 2], WS_MAX)
        i += olen
    return mss, ws


@functools.lru_cache(maxsize=64)
def syn_options(mss: int, ws: int | None) -> bytes:
    """MSS, and NOP + window scale when ws is given: 4 or 8 bytes (the same
    few combinations over and over: kept)."""
    opts = struct.pack("!BBH", OPT_MSS, 4, min(mss, 0xFFFF))
    if ws is not None:
        opts += struct.pack("!BBBB", OPT_NOP, OPT_WS, 3, ws)
    return opts


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, as a signed 32-bit number."""
    d = (a - b) & SEQ_MASK
    return d - 0x100000000 if d & 0x80000000 else d


class IsnGenerator:
    """RFC 6528 initial sequence numbers: M + F(4-tuple, secret)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("ISN secret must be at least 16 bytes")
        self.secret = secret[:32]

    def isn(self, laddr: bytes, lport: int, raddr: bytes, rport: int, now_ns: int | None = None) -> int:
        """The ISN of one connection; ``now_ns`` for tests (monotonic clock)."""
        h = blake2s(laddr + raddr + struct.pack("!HH", lport, rport),
                    key=self.secret, digest_size=4).digest()
        t = (time.monotonic_ns() if now_ns is None else now_ns) >> 12  # ~4 us ticks
        return (int.from_bytes(h, "big") + t) & SEQ_MASK


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


class Template:
    """Prebuilt headers of one connection's frames toward the guest.

    Layout in a frame buffer: [virtio-net header if vnet] Ethernet, IPv4
    (20 bytes) or IPv6 (40), TCP (20, plus options only in SYNs).
    ``fill`` writes the headers of one segment whose payload is already in
    place after ``hlen`` bytes and returns the frame's total length.
    """

    __slots__ = ("version", "hdr", "hlen", "l3", "l4", "vnet", "ip_base", "ph_base", "offload")

    def __init__(self, version: int, dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes,
                 sport: int, dport: int, vnet: bool = True, offload: bool = True) -> None:
        self.version = version
        self.vnet = VNET_HDR_LEN if vnet else 0
        self.offload = offload and vnet
        self.l3 = self.vnet + ETH_HLEN
        iph = 20 if version == 4 else 40
        self.l4 = self.l3 + iph
        self.hlen = self.l4 + TCP_HLEN
        h = bytearray(self.hlen)
        if self.offload:
            _VNET.pack_into(h, 0, VNET_NEEDS_CSUM, 0, 0, 0, ETH_HLEN + iph, 16)
        struct.pack_into("!6s6sH", h, self.vnet, dst_mac, src_mac,
                         ETH_P_IP if version == 4 else ETH_P_IPV6)
        if version == 4:
            struct.pack_into("!BBHHHBBH4s4s", h, self.l3, 0x45, 0, 0, 0, 0x4000, 64,
                             IPPROTO_TCP, 0, src, dst)
            self.ip_base = csum_partial(h[self.l3 : self.l4])
            self.ph_base = csum_partial(src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, 0))
        else:
            struct.pack_into("!IHBB16s16s", h, self.l3, 0x60000000, 0, IPPROTO_TCP, 64, src, dst)
            self.ip_base = 0
            self.ph_base = csum_partial(src + dst + struct.pack("!IxxxB", 0, IPPROTO_TCP))
        _PORTS.pack_into(h, self.l4, sport, dport)
        self.hdr = bytes(h)

    def with_ports(self, sport: int, dport: int) -> Template:
        """The same headers for other ports: a connection's template from
        one made once for its pair of addresses (ports do not enter either
        checksum base), for a fraction of the cost of building it."""
        t = Template.__new__(Template)
        t.version, t.hlen, t.l3, t.l4, t.vnet = self.version, self.hlen, self.l3, self.l4, self.vnet
        t.ip_base, t.ph_base, t.offload = self.ip_base, self.ph_base, self.offload
        h = bytearray(self.hdr)
        _PORTS.pack_into(h, self.l4, sport, dport)
        t.hdr = bytes(h)
        return t

    def fill(self, buf: bytearray, seq: int, ack: int, flags: int, win: int,
             dlen: int, opts: bytes = b"", gso_size: int = 0) -> int:
        """Headers for a segment with dlen payload bytes already at hlen+len(opts).

        Options (SYN only) are written between the TCP header and payload.
        ``gso_size`` (offload only): the frame is a GSO super-segment the
        receiving kernel treats as segments of that size (it never needs to
        cut it for local delivery). Returns the frame length including the
        virtio-net header.
        """
        hlen = self.hlen
        buf[:hlen] = self.hdr
        l4 = self.l4
        olen = len(opts)
        if olen:
            buf[hlen : hlen + olen] = opts
        tcplen = TCP_HLEN + olen + dlen
        _SEQ_ACK.pack_into(buf, l4 + 4, seq, ack)
        _FLAGS_WIN.pack_into(buf, l4 + 12, (5 + (olen >> 2)) << 4, flags, win)
        if self.version == 4:
            tot = 20 + tcplen
            _U16.pack_into(buf, self.l3 + 2, tot)
            _U16.pack_into(buf, self.l3 + 10, ~_fold(self.ip_base + tot) & 0xFFFF)
        else:
            _U16.pack_into(buf, self.l3 + 4, tcplen)
        ph = _fold(self.ph_base + tcplen)
        if self.offload:
            _U16.pack_into(buf, l4 + 16, ph)
            if gso_size:
                _GSO.pack_into(buf, 1, VNET_GSO_TCPV4 if self.version == 4 else VNET_GSO_TCPV6,
                               hlen - self.vnet, gso_size)
        else:
            _U16.pack_into(buf, l4 + 16, ~csum_partial(memoryview(buf)[l4 : l4 + tcplen], ph) & 0xFFFF)
        return hlen + olen + dlen


def rst_for(seg: Segment) -> tuple[int, int, int]:
    """(seq, ack, flags) of the RST answering an unacceptable segment (RFC 9293 3.10.7.1)."""
    if seg.flags & ACK:
        return seg.ack, 0, RST
    n = seg.dlen + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN else 0)
    return 0, (seg.seq + n) & SEQ_MASK, RST | ACK
