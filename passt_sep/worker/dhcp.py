# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCP and DHCPv6 responders of the worker: the frames around the payloads.

Sandboxed only. ``proto.dhcp`` and ``proto.dhcpv6`` build the UDP payloads;
this module checks the UDP header of what the guest sent, hands the payload
to them and wraps their replies in UDP, IP and Ethernet with complete
checksums (frames to the tap carry a zeroed virtio-net header, so nothing
finishes a checksum for us). ``services(worker)`` gives the loop one
handler per port it serves: "udp4:67" unless --no-dhcp, "udp6:547" unless
--no-dhcpv6. The frame builders are pure functions of a parsed frame and
the server parameters, so they are unit-tested without a worker.

Choices where the references leave room:

- DHCP (RFC 2131 4.1): replies leave from the gateway (our server
  identifier), port 67, to port 68. A NAK, or a reply to a client with no
  'ciaddr' that set the BROADCAST flag, goes to 255.255.255.255 and
  ff:ff:ff:ff:ff:ff; otherwise to 'ciaddr' (if set) or the assigned address,
  at 'chaddr'. Requests through a relay ('giaddr' set) are dropped: the
  guest is the only client on the link, and a relay behind it would want
  addresses of another subnet, which we do not have. Any destination
  address is accepted on port 67 (a renewing client unicasts to the
  server identifier), as in passt.
- DHCPv6 (RFC 8415 13.1, 18.4): only messages to a multicast address are
  served (we send no Server Unicast option, so a client never unicasts to
  us). The reply leaves from our link-local address, port 547, to the
  message's source address, port 546, and the client's MAC. RFC 8415
  requires that source to be link-local; an unspecified or multicast source
  is dropped, any other unicast one is answered.
- The UDP length field must be at least 8 and within the IP payload; a
  shorter field wins over the IP length (trailing bytes are ignored). The
  UDP checksum of requests is not verified: from a tap with offloads on,
  the guest's checksums may be partial.
- Resolvers go out only with --dhcp-dns (pasta; passt's default), search
  domains only with --dhcp-search. A search domain that cannot be encoded
  (non-ASCII, over-long label, from the host's resolv.conf) is left out
  rather than ending the worker; the MTU option is left out when the MTU
  is 0 (not advertised) or below DHCP's minimum of 68.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from ..log import log
from ..proto import dhcp, dhcpv6
from ..proto.checksum import csum_fold, csum_partial, pseudo_v4, pseudo_v6
from ..proto.dnsname import split_name
from ..proto.packet import (
    BROADCAST_MAC,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_UDP,
    Packet,
    eth_header,
    ipv4_header,
    ipv6_header,
)

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from ..config import Config
    from .contract import FlowLoop

DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
DHCPV6_SERVER_PORT, DHCPV6_CLIENT_PORT = 547, 546
UDP_HLEN = 8
BROADCAST4 = b"\xff" * 4
#: Hop limit of DHCPv6 replies: they never leave the link anyway.
DHCPV6_HOP_LIMIT = 255

_UDP = struct.Struct("!HHHH")

#: What a handler gives back: a frame to send, a reason to drop, or None.
Outcome = bytes | str | None


def udp_payload(p: Packet) -> tuple[int, memoryview] | str:
    """Check the UDP header of a parsed frame and find its payload.

    :param p: a parsed IPv4 or IPv6 frame carrying UDP
    :returns: (source port, payload) or the reason to drop the frame
    """
    if p.l4len < UDP_HLEN:
        return "short udp"
    sport, _dport, length, _csum = _UDP.unpack_from(p.frame, p.l4)
    if length < UDP_HLEN or length > p.l4len:
        return "udp length"
    return sport, p.frame[p.l4 + UDP_HLEN : p.l4 + length]


def udp_datagram(sport: int, dport: int, payload: bytes, pseudo: int) -> bytes:
    """A UDP header and payload with a complete checksum.

    :param sport: source port
    :param dport: destination port
    :param payload: the UDP payload
    :param pseudo: sum of the pseudo-header (checksum.pseudo_v4/pseudo_v6)
    :returns: the datagram; a checksum computing to 0 is sent as 0xFFFF
        (RFC 768; RFC 8200 8.1 forbids a zero checksum for IPv6)
    """
    length = UDP_HLEN + len(payload)
    head = _UDP.pack(sport, dport, length, 0)
    csum = csum_fold(csum_partial(head + payload, pseudo)) or 0xFFFF
    return _UDP.pack(sport, dport, length, csum) + payload


def udp4_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes,
               sport: int, dport: int, payload: bytes) -> bytes:
    """A whole Ethernet/IPv4/UDP frame with both checksums complete."""
    length = UDP_HLEN + len(payload)
    udp = udp_datagram(sport, dport, payload, pseudo_v4(src, dst, IPPROTO_UDP, length))
    return (eth_header(dst_mac, src_mac, ETH_P_IP)
            + ipv4_header(src, dst, IPPROTO_UDP, length) + udp)


def udp6_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes,
               sport: int, dport: int, payload: bytes, hlim: int = 64) -> bytes:
    """A whole Ethernet/IPv6/UDP frame with a complete UDP checksum."""
    length = UDP_HLEN + len(payload)
    udp = udp_datagram(sport, dport, payload, pseudo_v6(src, dst, IPPROTO_UDP, length))
    return (eth_header(dst_mac, src_mac, ETH_P_IPV6)
            + ipv6_header(src, dst, IPPROTO_UDP, length, hlim) + udp)


def dhcp_frame(p: Packet, params: dhcp.DhcpParams) -> Outcome:
    """The reply frame to a DHCP request, per RFC 2131 4.1.

    :param p: a parsed IPv4 frame carrying UDP to port 67
    :param params: what the server hands out
    :returns: the reply frame, a reason to drop the request, or None when
        the request deserves no answer (RELEASE, DECLINE, another server's)
    """
    found = udp_payload(p)
    if isinstance(found, str):
        return found
    req = dhcp.parse_request(found[1])
    if req is None:
        return "dhcp malformed"
    if req.giaddr.packed != bytes(4):
        return "dhcp relayed"
    built = dhcp.build_reply(req, params)
    if built is None:
        return None
    payload, broadcast = built
    if broadcast:
        dst_mac, dst = BROADCAST_MAC, BROADCAST4
    else:
        dst_mac, dst = req.chaddr, dhcp.unicast_destination(req, params).packed
    return udp4_frame(dst_mac, params.our_mac, params.gateway.packed, dst,
                      DHCP_SERVER_PORT, DHCP_CLIENT_PORT, payload)


def dhcpv6_frame(p: Packet, params: dhcpv6.Dhcpv6Params, our_ll: bytes) -> Outcome:
    """The reply frame to a DHCPv6 client message.

    :param p: a parsed IPv6 frame carrying UDP to port 547
    :param params: what the server hands out
    :param our_ll: our link-local address, the source of replies
    :returns: the reply frame, a reason to drop the message, or None when
        it deserves no answer (see dhcpv6.build_reply)
    """
    if p.dst[0] != 0xFF:
        return "dhcpv6 not multicast"
    if p.src == bytes(16) or p.src[0] == 0xFF:
        return "dhcpv6 source"
    found = udp_payload(p)
    if isinstance(found, str):
        return found
    msg = dhcpv6.parse_message(found[1])
    if msg is None:
        return "dhcpv6 malformed"
    payload = dhcpv6.build_reply(msg, params)
    if payload is None:
        return None
    return udp6_frame(p.src_mac, params.our_mac, our_ll, p.src, DHCPV6_SERVER_PORT,
                      DHCPV6_CLIENT_PORT, payload, DHCPV6_HOP_LIMIT)


def usable_search(names: Iterable[str]) -> tuple[str, ...]:
    """The search domains that can be put on the wire, in order.

    :param names: configured search domains
    :returns: those dnsname.encode_names() accepts; the others are logged
        and left out
    """
    out = []
    for name in names:
        try:
            split_name(name)
        except ValueError as e:
            log.warn(f"search domain left out of DHCP/DHCPv6/NDP: {e}")
            continue
        out.append(name)
    return tuple(out)


def dhcp_params(cfg: Config) -> dhcp.DhcpParams | None:
    """DHCP server parameters from the configuration; None if IPv4 is off."""
    v4 = cfg.v4
    if v4 is None:
        return None
    return dhcp.DhcpParams(
        our_mac=cfg.our_mac,
        addr=v4.addr,
        prefix_len=v4.prefix,
        gateway=v4.gw,
        dns=v4.dns if cfg.opts.dhcp_dns else (),
        search=usable_search(cfg.search) if cfg.opts.dhcp_search else (),
        mtu=cfg.mtu if cfg.mtu >= dhcp.MIN_MTU else None,
        hostname=cfg.opts.hostname or "",
        fqdn=cfg.opts.fqdn or "",
    )


def dhcpv6_params(cfg: Config) -> dhcpv6.Dhcpv6Params | None:
    """DHCPv6 server parameters from the configuration; None if IPv6 is off."""
    v6 = cfg.v6
    if v6 is None:
        return None
    return dhcpv6.Dhcpv6Params(
        our_mac=cfg.our_mac,
        addr=v6.addr,
        dns=v6.dns if cfg.opts.dhcp_dns else (),
        search=usable_search(cfg.search) if cfg.opts.dhcp_search else (),
        fqdn=cfg.opts.fqdn or "",
    )


def _responder(w: FlowLoop, build: Callable[[Packet], Outcome]) -> Callable[[Packet], None]:
    """A loop handler: build the reply, then send it or count the drop."""

    def handle(p: Packet) -> None:
        r = build(p)
        if isinstance(r, str):
            w.drop(r)
        elif r is not None:
            w.send(r)

    return handle


def services(w: FlowLoop) -> dict[str, Callable[[Packet], None]]:
    """The UDP services of the worker, keyed "udp<version>:<port>".

    :param w: the worker; its cfg decides what is served
    :returns: handlers for DHCP (unless --no-dhcp) and DHCPv6 (unless
        --no-dhcpv6), for the families that are enabled
    """
    cfg = w.cfg
    out: dict[str, Callable[[Packet], None]] = {}
    p4 = dhcp_params(cfg)
    if p4 is not None and not cfg.opts.no_dhcp:
        out[f"udp4:{DHCP_SERVER_PORT}"] = _responder(w, lambda p: dhcp_frame(p, p4))
    p6 = dhcpv6_params(cfg)
    if p6 is not None and cfg.v6 is not None and not cfg.opts.no_dhcpv6:
        our_ll = cfg.v6.our_ll.packed
        out[f"udp6:{DHCPV6_SERVER_PORT}"] = _responder(w, lambda p: dhcpv6_frame(p, p6, our_ll))
    return out
