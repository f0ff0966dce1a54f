# SPDX-License-Identifier: GPL-2.0-or-later
"""Read the host's addressing: template interface, addresses, gateway, DNS.

Parent only. The template interface of a family is the one of its first
default route in the main table (for a multipath default route, the first
next hop). Its first address of the family (global scope for IPv6), prefix
length, gateway, MTU and MAC are what the guest gets, as passt does. The
resolvers and search list come from resolv.conf.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from ..errors import SetupError

log = logging.getLogger("passt_sep")


@dataclass(frozen=True)
class FamilyInfo:
    """What one family of the template interface looks like."""

    ifindex: int
    ifname: str
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    prefix: int
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    addr_ll: ipaddress.IPv6Address | None = None  # IPv6: our link-local
    all_addrs: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
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


def _default_route(ipr, family: int, ifname: str | None, ifindex: int | None):
    """First default route of the main table: (oif, gateway) or None."""
    for r in ipr.get_routes(family=family, table=254):
        if r.get("dst_len", 0) != 0 or r.get("type", 1) != 1:
            continue
        oif = r.get_attr("RTA_OIF")
        gw = r.get_attr("RTA_GATEWAY")
        if oif is None:
            mp = r.get_attr("RTA_MULTIPATH")
            if mp:
                hop = mp[0]
                oif = hop.get("oif")
                gw = hop.get_attr("RTA_GATEWAY") if hasattr(hop, "get_attr") else None
        if oif is None:
            continue
        if ifindex is not None and oif != ifindex:
            continue
        return oif, gw
    if ifindex is not None:
        return ifindex, None
    return None


def _family(ipr, family: int, want_if: str | None) -> FamilyInfo | None:
    ifindex = None
    if want_if:
        found = ipr.link_lookup(ifname=want_if)
        if not found:
            raise SetupError("host addressing", f"interface {want_if} not found")
        ifindex = found[0]
    route = _default_route(ipr, family, want_if, ifindex)
    if route is None:
        return None
    oif, gw = route
    links = ipr.get_links(oif)
    ifname = links[0].get_attr("IFLA_IFNAME") if links else str(oif)
    addr = None
    prefix = 0
    addr_ll = None
    all_addrs = []
    for a in ipr.get_addr(family=family, index=oif):
        text = a.get_attr("IFA_ADDRESS")
        if text is None:
            continue
        ip = ipaddress.ip_address(text)
        all_addrs.append((str(ip), a["prefixlen"]))
        if family == socket.AF_INET6 and ip.is_link_local:
            addr_ll = addr_ll or ip
            continue
        if family == socket.AF_INET6 and (a.get("flags", 0) & 0x20 or a.get("scope", 0) != 0):
            continue  # tentative or not global
        if addr is None:
            addr, prefix = ip, a["prefixlen"]
    return FamilyInfo(
        ifindex=oif,
        ifname=ifname,
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
        from pyroute2 import IPRoute
    except ImportError as e:  # pragma: no cover - dependency missing
        raise SetupError("host addressing", f"pyroute2 not available: {e}") from None
    try:
        with IPRoute() as ipr:
            v4 = _family(ipr, socket.AF_INET, ifname or if4)
            v6 = _family(ipr, socket.AF_INET6, ifname or if6)
            mac = mtu = None
            name = None
            tmpl = v4 or v6
            if tmpl is not None:
                link = ipr.get_links(tmpl.ifindex)[0]
                text = link.get_attr("IFLA_ADDRESS")
                if text:
                    mac = bytes.fromhex(text.replace(":", ""))
                mtu = link.get_attr("IFLA_MTU")
                name = tmpl.ifname
    except OSError as e:
        raise SetupError("host addressing: netlink", e) from None
    servers, search = read_resolv_conf(resolv_conf)
    return HostInfo(v4=v4, v6=v6, mac=mac, mtu=mtu, ifname=name,
                    nameservers=servers, search=search)
