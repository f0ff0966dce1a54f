# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP datagrams, sans-IO: the header of a guest frame, frames toward the guest.

Nothing here does I/O. ``parse_datagram`` checks the UDP header of a
parsed frame (a bad length is a reason string, never an exception) and
locates the payload. ``fill_frame`` writes the virtio-net, Ethernet, IP and
UDP headers in front of a payload that is already in place in a buffer
(received there with ``recvfrom_into``), so a datagram toward the guest
costs no copy of its payload:

- with ``offload`` (the pasta tap, and passt's stream object, which
  completes such checksums itself), the virtio-net header says NEEDS_CSUM
  with csum_start at the UDP header and csum_offset 6, and the UDP checksum
  field holds the pseudo-header sum only; the receiving kernel never needs
  more for local delivery;
- without it, the whole UDP checksum is computed here (at C speed, see
  ``checksum.csum_partial``), and a result of 0 is sent as 0xFFFF (RFC 768;
  RFC 8200 8.1 forbids a zero UDP checksum over IPv6).

The checksum of a guest's datagram is not verified: in pasta the tap hands
over frames whose checksum is still to be filled in (NEEDS_CSUM), and
passt's peer is qemu, which does not corrupt frames on a local socket; the
host's kernel recomputes the checksum when it sends the payload on.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from .checksum import csum_partial
from .packet import ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, Packet

UDP_HLEN = 8
VNET_HDR_LEN = 10
VNET_NEEDS_CSUM = 1
UDP_CSUM_OFFSET = 6
IP4_HLEN, IP6_HLEN = 20, 40
MAX_FRAME = 65535  # longest Ethernet frame toward the guest (passt's stream limit too)
#: Largest payloads that fit a frame of MAX_FRAME bytes; longer datagrams from
#: the host are dropped and counted (passt's stream could not carry them).
MAX_PAYLOAD4 = MAX_FRAME - ETH_HLEN - IP4_HLEN - UDP_HLEN  # 65493
MAX_PAYLOAD6 = MAX_FRAME - ETH_HLEN - IP6_HLEN - UDP_HLEN  # 65473

_UDP = struct.Struct("!HHHH")
_VNET = struct.Struct("<BBHHHH")
_ETH = struct.Struct("!6s6sH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_U16 = struct.Struct("!H")


TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Datagram(NamedTuple):
        """The UDP header of a guest frame; ``off``/``dlen`` locate the payload."""

        sport: int
        dport: int
        off: int  # payload offset in the frame
        dlen: int  # payload length
else:  # the same class, without importing typing
    Datagram = namedtuple("Datagram", "sport dport off dlen")
    Datagram.__doc__ = 'The UDP header of a guest frame; ``off``/``dlen`` locate the payload.'


def parse_datagram(p: Packet) -> Datagram | str:
    """The UDP header of a parsed IPv4/IPv6 frame, or why it is malformed.

    The UDP length field must cover the header and fit inside the IP
    payload; bytes after it (there should be none) are ignored.
    """
    if p.l4len < UDP_HLEN or p.l4 + p.l4len > len(p.frame):
        return "short udp"
    sport, dport, length, _csum = _UDP.unpack_from(p.frame, p.l4)
    if length < UDP_HLEN or length > p.l4len:
        return "udp length"
    return Datagram(sport, dport, p.l4 + UDP_HLEN, length - UDP_HLEN)


def header_len(version: int, vnet: bool = True) -> int:
    """Bytes of headers in front of the payload in a frame buffer."""
    return (VNET_HDR_LEN if vnet else 0) + ETH_HLEN + (IP4_HLEN if version == 4 else IP6_HLEN) + UDP_HLEN


def max_payload(version: int) -> int:
    """Largest payload a frame toward the guest can carry."""
    return MAX_PAYLOAD4 if version == 4 else MAX_PAYLOAD6


def fill_frame(buf: bytearray, version: int, dst_mac: bytes, src_mac: bytes,
               src: bytes, dst: bytes, sport: int, dport: int, dlen: int,
               vnet: bool = True, offload: bool = True, ident: int = 0) -> int:
    """Write the headers of a frame whose dlen payload bytes sit at ``header_len``.

    ``buf`` starts with the virtio-net header when ``vnet``; ``offload``
    (only with ``vnet``) leaves the UDP checksum to the receiver as
    described in the module docstring. Returns the number of bytes to
    write (virtio-net header included). Raises ValueError when the payload
    cannot fit one frame (the caller drops it; see ``max_payload``).
    """
    if dlen < 0 or dlen > max_payload(version):
        raise ValueError(f"UDP payload of {dlen} bytes does not fit a frame")
    off = VNET_HDR_LEN if vnet else 0
    offload = offload and vnet
    l3 = off + ETH_HLEN
    ulen = UDP_HLEN + dlen
    if version == 4:
        l4 = l3 + IP4_HLEN
        _ETH.pack_into(buf, off, dst_mac, src_mac, ETH_P_IP)
        _IP4.pack_into(buf, l3, 0x45, 0, IP4_HLEN + ulen, ident & 0xFFFF, 0x4000, 64,
                       IPPROTO_UDP, 0, src, dst)
        _U16.pack_into(buf, l3 + 10, ~csum_partial(memoryview(buf)[l3:l4]) & 0xFFFF)
        ph = csum_partial(src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, ulen))
    else:
        l4 = l3 + IP6_HLEN
        _ETH.pack_into(buf, off, dst_mac, src_mac, ETH_P_IPV6)
        _IP6.pack_into(buf, l3, 0x60000000, ulen, IPPROTO_UDP, 64, src, dst)
        ph = csum_partial(src + dst + struct.pack("!IxxxB", ulen, IPPROTO_UDP))
    if vnet:
        if offload:
            _VNET.pack_into(buf, 0, VNET_NEEDS_CSUM, 0, 0, 0, l4 - off, UDP_CSUM_OFFSET)
        else:
            _VNET.pack_into(buf, 0, 0, 0, 0, 0, 0, 0)
    if offload:
        _UDP.pack_into(buf, l4, sport, dport, ulen, ph)  # csum_partial: 1..0xFFFF here
    else:
        _UDP.pack_into(buf, l4, sport, dport, ulen, 0)
        c = ~csum_partial(memoryview(buf)[l4 : l4 + ulen], ph) & 0xFFFF
        _U16.pack_into(buf, l4 + 6, c or 0xFFFF)
    return l4 + ulen
