# SPDX-License-Identifier: GPL-2.0-or-later
"""ARP (RFC 826): answer every request with our MAC.

We stand in for every IPv4 neighbour of the guest, so any request for an
address other than the guest's own is answered with our MAC. Gratuitous
announcements (sender and target address equal) and requests for the
guest's own address (duplicate address checks) get no answer.
"""

from __future__ import annotations

import struct

from .packet import ETH_P_ARP, ETH_P_IP, Packet, eth_header

_ARP = struct.Struct("!HHBBH6s4s6s4s")
ARP_REQUEST, ARP_REPLY = 1, 2


def arp_reply(p: Packet, our_mac: bytes, guest_addr: bytes | None) -> bytes | str | None:
    """The reply frame for an ARP request, None to stay silent, str if malformed."""
    if len(p.frame) < p.l3 + _ARP.size:
        return "short arp"
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(p.frame, p.l3)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return "arp format"
    if op != ARP_REQUEST:
        return None
    if spa == tpa or (guest_addr is not None and tpa == guest_addr):
        return None
    return eth_header(sha, our_mac, ETH_P_ARP) + _ARP.pack(
        1, ETH_P_IP, 6, 4, ARP_REPLY, our_mac, tpa, sha, spa)
