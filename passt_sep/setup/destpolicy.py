# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the guest may send: one destination policy for TCP, UDP and ICMP.

Parent only. Every socket the broker makes for a guest flow is made for one
destination, decided here and nowhere else, from the address the guest
wrote (bytes, as in the request) and, for TCP and UDP, the port:

1. the address mapping: ``dns_match`` port 53 (TCP and UDP) leads to the
   resolver (``dns_host``), the address mapped to the host's loopback (the
   gateway unless --no-map-gw, or --map-host-loopback) to 127.0.0.1 / ::1,
   --map-guest-addr to the guest's own address on the host;
2. anything not mapped must be a unicast address: unspecified, loopback,
   multicast, link-local, the limited broadcast and IPv4-mapped or
   -compatible IPv6 addresses (which would reach IPv4 loopback around
   these checks) are refused, for every protocol alike;
3. the operator's egress rules (--egress-deny, --egress-allow), matched
   against the destination as the host sees it, after step 1.

A refusal is an errno: EPERM when the protocol or family is off, EACCES
for a destination the guest may not reach (TCP answers it with a RST; UDP
and ICMP drop the datagram). Bytes are compared, not ipaddress objects:
this runs once per new flow, on the path of every new connection.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ..config import Config

PROTO_TCP = socket.IPPROTO_TCP
PROTO_UDP = socket.IPPROTO_UDP
PROTO_ICMP = socket.IPPROTO_ICMP  # ICMPv6 echo too: one name for "echo"
DNS_PORT = 53


@dataclass(frozen=True)
class Target:
    """An approved destination as the host sees it."""

    addr: str  # host-side address, as socket calls take it
    port: int  # host-side port (0 for ICMP)
    loopback: bool  # the host's loopback: --outbound and --outbound-if* do not apply


@dataclass(frozen=True)
class _FamilyRules:
    """The mapping of one family, as bytes and strings."""

    lo_mapped: bytes | None  # the address leading to the host's loopback
    guest_mapped: bytes | None  # --map-guest-addr ...
    guest_addr: str  # ... leads to the guest's own address on the host
    loopback: str
    dns_match: bytes | None  # --dns-forward: this address's port 53 ...
    dns_host: str  # ... goes here
    dns_host_loopback: bool

    @classmethod
    def of(cls, cfg: Config, version: int) -> _FamilyRules | None:
        """The rules of one family; None when the family is off."""
        fam = cfg.v4 if version == 4 else cfg.v6
        if fam is None:
            return None
        dns = fam.dns_match is not None and fam.dns_host is not None
        return cls(lo_mapped=fam.host_lo.packed if fam.host_lo is not None else None,
                   guest_mapped=fam.guest_map.packed if fam.guest_map is not None else None,
                   guest_addr=str(fam.addr),
                   loopback="127.0.0.1" if version == 4 else "::1",
                   dns_match=fam.dns_match.packed if dns and fam.dns_match is not None else None,
                   dns_host=str(fam.dns_host) if dns else "",
                   dns_host_loopback=bool(dns and fam.dns_host is not None and fam.dns_host.is_loopback))


def forbidden(raw: bytes, v4: bool) -> bool:
    """An address no guest flow may go to unless it is mapped: unspecified,
    loopback, multicast, link-local, limited broadcast, IPv4-mapped or
    -compatible IPv6."""
    if v4:
        a = raw[0]
        return (a == 0 or a == 127 or a >= 224 or (a == 169 and raw[1] == 254))
    return (raw[0] == 0xFF or (raw[0] == 0xFE and raw[1] & 0xC0 == 0x80)
            or raw[:10] == bytes(10))  # ::, ::1, ::ffff:a.b.c.d, ::a.b.c.d


class DestPolicy:
    """Decides every destination of every guest flow (see the module doc)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rules = {socket.AF_INET: _FamilyRules.of(cfg, 4), socket.AF_INET6: _FamilyRules.of(cfg, 6)}
        self.refused = 0

    def resolve(self, proto: int, family: int, raw: bytes, port: int) -> Target | int:
        """The host-side destination of a guest flow, or the errno refusing it.

        ``raw``: the destination the guest wrote (4 or 16 bytes; longer is
        cut to the family's length); ``port``: its port (0 for ICMP).
        """
        rules = self.rules.get(family)
        if rules is None:
            return errno.EPERM
        v4 = family == socket.AF_INET
        raw = raw[:4] if v4 else raw[:16]
        if proto != PROTO_ICMP and port == 0:
            return errno.EACCES
        loopback = False
        if proto != PROTO_ICMP and port == DNS_PORT and raw == rules.dns_match:
            dest, loopback = rules.dns_host, rules.dns_host_loopback
        elif raw == rules.lo_mapped:
            dest, loopback = rules.loopback, True
        elif raw == rules.guest_mapped:
            dest = rules.guest_addr
        elif forbidden(raw, v4):
            self.refused += 1
            return errno.EACCES
        else:
            dest = socket.inet_ntop(family, raw)
        return Target(dest, port, loopback)
