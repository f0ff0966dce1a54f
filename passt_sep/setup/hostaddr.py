# SPDX-License-Identifier: GPL-2.0-or-later
"""Read the host's addressing: template interface, addresses, gateway, DNS.

Parent only, through the small rtnetlink client in ``rtnl`` (start-up
time: see there). The template interface of a family is the one of its first
default route in the main table (for a multipath default route, the first
next hop). Its first address of the family (global scope for IPv6), prefix
length, gateway, MTU and MAC are what the guest gets, as passt does. The
resolvers and search list come from resolv.conf.
"""

from __future__ import annotations

import ipaddress
import socket

from ..errors import SetupError
from ..record import record
from .rtnl import IFA_F_TENTATIVE, RT_TABLE_MAIN, RTN_UNICAST, Rtnl


@record(frozen=True)
class FamilyInfo:
    """What one family of the template interface looks like."""

    ifindex: int
    ifname: str
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    prefix: int
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    addr_ll: ipaddress.IPv6Address | None = None  # IPv6: our link-local
    all_addrs: tuple[tuple[str, int], ...] = ()


@record(frozen=True)
class HostInfo:
    """Host addressing per family (None: no usable default route)."""

    v4: FamilyInfo | None
    v6: FamilyInfo | None
    mac: bytes | None
    mtu: int | None
    ifname: str | None
    nameservers: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
    search: tuple[str, ...]


def read_resolv_conf(path: str = "/etc/resolv.conf") -> tuple[tuple, tuple[str, ...]]:
    """Nameservers (with any %scope dropped) and the first search line."""
    servers: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    search: tuple[str, ...] = ()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(65536).splitlines()
    except OSError:
        return (), ()
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append(ipaddress.ip_address(words[1].split("%")[0]))
            except ValueError:
                continue
        elif words and words[0] == "search" and not search:
            search = tuple(words[1:])
    return tuple(servers), search


def _family(nl: Rtnl, family: int, want_if: str | None) -> FamilyInfo | None:
    """The template interface of one family, or None if it has no default route."""
    ifindex = None
    links = {lk.index: lk for lk in nl.links()}
    if want_if:
        found = [lk for lk in links.values() if lk.name == want_if]
        if not found:
            raise SetupError("host addressing", f"interface {want_if} not found")
        ifindex = found[0].index
    oif = gw = None
    for r in nl.routes(family):
        if r.table != RT_TABLE_MAIN or r.dst_len != 0 or r.type != RTN_UNICAST or r.oif is None:
            continue
        if ifindex is not None and r.oif != ifindex:
            continue
        oif, gw = r.oif, r.gateway
        break
    if oif is None:
        if ifindex is None:
            return None
        oif = ifindex
    addr = None
    prefix = 0
    addr_ll = None
    all_addrs = []
    for a in nl.addrs(family):
        if a.index != oif:
            continue
        ip = ipaddress.ip_address(a.address)
        all_addrs.append((str(ip), a.prefixlen))
        if family == socket.AF_INET6 and ip.is_link_local:
            addr_ll = addr_ll or ip
            continue
        if family == socket.AF_INET6 and (a.flags & IFA_F_TENTATIVE or a.scope != 0):
            continue
        if addr is None:
            addr, prefix = ip, a.prefixlen
    link = links.get(oif)
    return FamilyInfo(
        ifindex=oif,
        ifname=link.name if link else str(oif),
        addr=addr,
        prefix=prefix,
        gateway=ipaddress.ip_address(gw) if gw else None,
        addr_ll=addr_ll,
        all_addrs=tuple(all_addrs),
    )


def read_host(ifname: str | None = None, if4: str | None = None, if6: str | None = None,
              resolv_conf: str = "/etc/resolv.conf") -> HostInfo:
    """Read the template interface of each family in the current netns."""
    try:
        with Rtnl() as nl:
            v4 = _family(nl, socket.AF_INET, ifname or if4)
            v6 = _family(nl, socket.AF_INET6, ifname or if6)
            mac = mtu = None
            name = None
            tmpl = v4 or v6
            if tmpl is not None:
                link = next((lk for lk in nl.links() if lk.index == tmpl.ifindex), None)
                if link is not None:
                    mac = link.mac if link.mac and len(link.mac) == 6 else None
                    mtu = link.mtu
                name = tmpl.ifname
    except OSError as e:
        raise SetupError("host addressing: netlink", e) from None
    servers, search = read_resolv_conf(resolv_conf)
    return HostInfo(v4=v4, v6=v6, mac=mac, mtu=mtu, ifname=name,
                    nameservers=servers, search=search)
