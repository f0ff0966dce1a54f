# SPDX-License-Identifier: GPL-2.0-or-later
"""Frames for the fuzz targets: builders of guest frames and the checker of ours.

Owns two things. Builders make well-formed Ethernet/IPv4/IPv6 frames with
TCP, UDP, ICMP, ICMPv6, ARP and NDP inside, checksums complete, so that a
fuzzer's few bytes of choice reach deep state instead of the first length
check. ``check_to_guest`` verifies a frame the worker sent toward the
guest: Ethernet and IP lengths consistent, the IPv4 header checksum, the
TCP/UDP/ICMP/ICMPv6 checksums, ARP fields. Its checksum is its own
(array of 16-bit words, summed and folded), not ``proto.checksum``'s, so
a bug there cannot hide itself.
"""

from __future__ import annotations

import array
import struct
import sys

ETH_HLEN = 14
VNET_HDR_LEN = 10
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
_VNET = struct.Struct("<BBHHHH")
_LITTLE = sys.byteorder == "little"


class BadFrame(AssertionError):
    """A frame toward the guest that a real guest would reject or misread."""


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """16-bit ones' complement sum (RFC 1071), folded, independent of proto.checksum."""
    b = bytes(data)
    if len(b) & 1:
        b += b"\0"
    a = array.array("H", b)
    if _LITTLE:
        a.byteswap()
    s = sum(a) + initial
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum field value over data (plus a pseudo-header sum)."""
    return (~ones_sum(data, initial)) & 0xFFFF


def pseudo4(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return ones_sum(src + dst + struct.pack("!BBH", 0, proto, length))


def pseudo6(src: bytes, dst: bytes, proto: int, length: int) -> int:
    return ones_sum(src + dst + struct.pack("!IxxxB", length, proto))


# -- builders ----------------------------------------------------------------------

def eth(dst: bytes, src: bytes, etype: int) -> bytes:
    return dst + src + struct.pack("!H", etype)


def ip4(src: bytes, dst: bytes, proto: int, payload: bytes, ttl: int = 64, frag: int = 0x4000,
        ihl: int = 5, tot: int | None = None) -> bytes:
    opts = bytes((ihl - 5) * 4) if ihl > 5 else b""
    hl = 20 + len(opts)
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 15), 0,
                              (hl + len(payload)) if tot is None else tot & 0xFFFF,
                              0x1234, frag, ttl, proto, 0, src, dst) + opts)
    struct.pack_into("!H", h, 10, csum(h))
    return bytes(h) + payload


def ip6(src: bytes, dst: bytes, nh: int, payload: bytes, hlim: int = 64, plen: int | None = None) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload) if plen is None else plen & 0xFFFF,
                       nh, hlim, src, dst) + payload


def l4_pseudo(version: int, src: bytes, dst: bytes, proto: int, length: int) -> int:
    return (pseudo4 if version == 4 else pseudo6)(src, dst, proto, length)


def tcp_seg(version: int, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
            flags: int, win: int, options: bytes = b"", payload: bytes = b"",
            good_sum: bool = True, doff: int | None = None) -> bytes:
    options += bytes(-len(options) % 4)
    hl = 20 + len(options)
    off = (hl // 4 if doff is None else doff) & 15
    h = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                              off << 4, flags & 0xFF, win & 0xFFFF, 0, 0) + options + payload)
    c = csum(h, l4_pseudo(version, src, dst, TCP, len(h)))
    struct.pack_into("!H", h, 16, c if good_sum else c ^ 0x5A5A)
    return bytes(h)


def udp_dgram(version: int, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes,
              good_sum: bool = True, length: int | None = None) -> bytes:
    n = 8 + len(payload)
    h = bytearray(struct.pack("!HHHH", sport, dport, n if length is None else length & 0xFFFF, 0) + payload)
    c = csum(h, l4_pseudo(version, src, dst, UDP, n)) or 0xFFFF
    struct.pack_into("!H", h, 6, c if good_sum else c ^ 0x5A5A)
    return bytes(h)


def icmp_msg(version: int, src: bytes, dst: bytes, typ: int, code: int, body: bytes) -> bytes:
    h = bytearray(struct.pack("!BBH", typ, code, 0) + body)
    init = 0 if version == 4 else pseudo6(src, dst, ICMPV6, len(h))
    struct.pack_into("!H", h, 2, csum(h, init))
    return bytes(h)


def frame(version: int, src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, proto: int,
          l4: bytes, **ipkw: int) -> bytes:
    if version == 4:
        return eth(dst_mac, src_mac, ETH_P_IP) + ip4(src, dst, proto, l4, **ipkw)
    return eth(dst_mac, src_mac, ETH_P_IPV6) + ip6(src, dst, proto, l4, **ipkw)


def arp_request(src_mac: bytes, sender_ip: bytes, target_ip: bytes, op: int = 1) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, src_mac, sender_ip, bytes(6), target_ip)
    return eth(b"\xff" * 6, src_mac, ETH_P_ARP) + body


# -- the checker -------------------------------------------------------------------

def _fail(why: str, buf: bytes | bytearray | memoryview) -> BadFrame:
    return BadFrame(f"{why}: {bytes(buf[:96]).hex()}")


def complete_vnet(buf: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """The frame behind a virtio-net header, its NEEDS_CSUM checksum filled
    in as the kernel does; also the GSO type (0: none)."""
    if len(buf) < VNET_HDR_LEN + ETH_HLEN:
        raise _fail("vnet frame too short", buf)
    flags, gso, _hl, gso_size, cstart, coff = _VNET.unpack_from(buf, 0)
    f = bytearray(buf[VNET_HDR_LEN:])
    if flags & ~1:
        raise _fail(f"vnet flags {flags:#x}", buf)
    if gso not in (0, 1, 4) and gso & 0x7F not in (0, 1, 3, 4):
        raise _fail(f"vnet gso type {gso}", buf)
    if gso and not gso_size:
        raise _fail("vnet gso without a size", buf)
    if flags & 1:
        if cstart < ETH_HLEN or cstart + coff + 2 > len(f):
            raise _fail(f"vnet csum_start {cstart} csum_offset {coff} past the frame", buf)
        c = csum(f[cstart:])
        if c == 0 and coff == 6:
            c = 0xFFFF
        struct.pack_into("!H", f, cstart + coff, c)
    return bytes(f), gso


def check_to_guest(buf: bytes | bytearray | memoryview, vnet: bool, our_mac: bytes | None = None) -> None:
    """Raise BadFrame unless buf is a frame a guest would take as it is meant.

    vnet: buf starts with a virtio-net header (pasta's tap); otherwise it
    is the bare frame (passt's stream), all checksums complete. The MTU
    is not checked: TCP segments follow the guest's MSS, and C passt too
    sends a host's large UDP datagram whole.
    """
    gso = 0
    if vnet:
        f, gso = complete_vnet(buf)
    else:
        f = bytes(buf)
    n = len(f)
    if n < ETH_HLEN:
        raise _fail("short ethernet", f)
    if n > ETH_HLEN + 65535:
        raise _fail(f"frame of {n} bytes", f)
    if our_mac is not None and f[6:12] != our_mac:
        raise _fail("source mac is not ours", f)
    if f[6] & 1:
        raise _fail("multicast source mac", f)
    (etype,) = struct.unpack_from("!H", f, 12)
    if etype == ETH_P_ARP:
        if n < ETH_HLEN + 28:
            raise _fail("short arp", f)
        ht, pt, hl, pl, op = struct.unpack_from("!HHBBH", f, ETH_HLEN)
        if (ht, pt, hl, pl) != (1, ETH_P_IP, 6, 4) or op not in (1, 2):
            raise _fail("arp fields", f)
        return
    if etype == ETH_P_IP:
        if n < ETH_HLEN + 20:
            raise _fail("short ipv4", f)
        vihl, _tos, tot, _id, frag, _ttl, proto, _c, src, dst = struct.unpack_from(
            "!BBHHHBBH4s4s", f, ETH_HLEN)
        ihl = (vihl & 15) * 4
        if vihl >> 4 != 4 or ihl < 20:
            raise _fail("ipv4 version/ihl", f)
        if not (tot == n - ETH_HLEN or (n == 60 and tot < n - ETH_HLEN)):
            raise _fail(f"ipv4 total length {tot} in a frame of {n}", f)
        if tot < ihl:
            raise _fail("ipv4 total length below the header", f)
        if ones_sum(f[ETH_HLEN : ETH_HLEN + ihl]) != 0xFFFF:
            raise _fail("ipv4 header checksum", f)
        if frag & 0x3FFF:
            raise _fail("ipv4 fragment toward the guest", f)
        _check_l4(4, proto, src, dst, f[ETH_HLEN + ihl : ETH_HLEN + tot], f)
        return
    if etype == ETH_P_IPV6:
        if n < ETH_HLEN + 40:
            raise _fail("short ipv6", f)
        vtf, plen, nh, _hlim, src, dst = struct.unpack_from("!IHBB16s16s", f, ETH_HLEN)
        if vtf >> 28 != 6:
            raise _fail("ipv6 version", f)
        if plen != n - ETH_HLEN - 40:
            raise _fail(f"ipv6 payload length {plen} in a frame of {n}", f)
        _check_l4(6, nh, src, dst, f[ETH_HLEN + 40 :], f)
        return
    raise _fail(f"ethertype {etype:#06x}", f)


def _check_l4(version: int, proto: int, src: bytes, dst: bytes, seg: bytes, f: bytes) -> None:
    n = len(seg)
    if proto == TCP:
        if n < 20:
            raise _fail("short tcp", f)
        doff = (seg[12] >> 4) * 4
        if doff < 20 or doff > n:
            raise _fail(f"tcp data offset {doff} in {n} bytes", f)
        if ones_sum(seg, l4_pseudo(version, src, dst, TCP, n)) != 0xFFFF:
            raise _fail("tcp checksum", f)
        _check_tcp_options(seg[20:doff], f)
    elif proto == UDP:
        if n < 8:
            raise _fail("short udp", f)
        (length, c) = struct.unpack_from("!HH", seg, 4)
        if length != n:
            raise _fail(f"udp length {length} in {n} bytes", f)
        if c == 0 and version == 6:
            raise _fail("zero udp checksum over ipv6", f)
        if c and ones_sum(seg, l4_pseudo(version, src, dst, UDP, n)) != 0xFFFF:
            raise _fail("udp checksum", f)
    elif proto == ICMP and version == 4:
        if n < 8:
            raise _fail("short icmp", f)
        if ones_sum(seg) != 0xFFFF:
            raise _fail("icmp checksum", f)
    elif proto == ICMPV6 and version == 6:
        if n < 4:
            raise _fail("short icmpv6", f)
        if ones_sum(seg, pseudo6(src, dst, ICMPV6, n)) != 0xFFFF:
            raise _fail("icmpv6 checksum", f)
        if seg[0] in (134, 136) and n >= 16:  # RA, NA: options must be whole
            _check_ndp_options(seg[16 if seg[0] == 134 else 24 :], f)
    else:
        raise _fail(f"protocol {proto} over ipv{version} toward the guest", f)


def _check_tcp_options(opts: bytes, f: bytes) -> None:
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            raise _fail("tcp option length", f)
        i += opts[i + 1]


def _check_ndp_options(opts: bytes, f: bytes) -> None:
    i = 0
    while i < len(opts):
        if i + 2 > len(opts) or opts[i + 1] == 0 or i + opts[i + 1] * 8 > len(opts):
            raise _fail("ndp option length", f)
        i += opts[i + 1] * 8
