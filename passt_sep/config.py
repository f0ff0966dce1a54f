# SPDX-License-Identifier: GPL-2.0-or-later
"""One immutable Config, derived once from the options and the host.

The parent builds it after reading host addressing; the worker receives a
copy before it handles any frame. Nothing in it changes afterwards except
what the worker learns at run time (the guest's MAC and the addresses it
actually uses), which lives in the worker's own state, not here.
"""

from __future__ import annotations

import ipaddress

from .cli import Options
from .errors import SetupError
from .log import log
from .record import record

TYPE_CHECKING = False  # (typing costs start-up; mypy knows the name)
if TYPE_CHECKING:
    from .setup.hostaddr import HostInfo
# (no setup module at import time: the worker loads this module for its
# Config, and setup.hostaddr with netlink and the socket pool cost its
# start-up 0.9 ms; build_config, the parent's, imports what it needs)

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
LOOP4 = IPv4("127.0.0.1")
LOOP6 = IPv6("::1")


@record(frozen=True)
class V4:
    """IPv4 as the guest sees it."""

    addr: IPv4
    prefix: int
    gw: IPv4
    dns: tuple[IPv4, ...]  # advertised through DHCP
    dns_match: IPv4 | None  # address whose port 53 goes to dns_host
    dns_host: IPv4 | None
    ifname: str  # host template interface
    host_lo: IPv4 | None  # leads to the host's loopback (the gateway unless --no-map-gw)
    guest_map: IPv4 | None  # --map-guest-addr: leads to the guest's address on the host

    @property
    def gw_onlink(self) -> bool:
        """Whether the gateway lies inside the guest's subnet."""
        net = ipaddress.IPv4Network(f"{self.addr}/{self.prefix}", strict=False)
        return self.gw in net and self.prefix < 31


@record(frozen=True)
class V6:
    """IPv6 as the guest sees it."""

    addr: IPv6
    prefix: int  # 64 for the RA prefix; DHCPv6 hands out a /128
    gw: IPv6
    our_ll: IPv6  # source of RA/NA and DHCPv6 replies
    dns: tuple[IPv6, ...]
    dns_match: IPv6 | None
    dns_host: IPv6 | None
    ifname: str
    host_lo: IPv6 | None
    guest_map: IPv6 | None


@record(frozen=True)
class Config:
    """Everything the run needs, fixed before the worker starts."""

    opts: Options
    mode: str
    v4: V4 | None
    v6: V6 | None
    our_mac: bytes
    mtu: int  # 0: not advertised
    ns_ifname: str
    search: tuple[str, ...]  # advertised search list (empty: none)
    # the parent sets SO_PEEK_OFF on every TCP socket of the tap path
    # (setup/sockpool.py); False: the worker sets it per connection
    tcp_peek_off: bool = False

    def summary(self) -> list[str]:
        """The start-up summary, as passt/pasta print it."""
        lines = []
        if self.v4:
            lines.append(f"Template interface: {self.v4.ifname} (IPv4)")
        if self.v6:
            lines.append(f"Template interface: {self.v6.ifname} (IPv6)")
        if self.mode == "pasta":
            lines.append(f"Namespace interface: {self.ns_ifname}")
        lines.append(f"MAC:\n    host: {':'.join(f'{b:02x}' for b in self.our_mac)}")
        if self.v4:
            lines.append("DHCP:")
            lines.append(f"    assign: {self.v4.addr}")
            mask = ipaddress.IPv4Network(f"0.0.0.0/{self.v4.prefix}").netmask
            lines.append(f"    mask: {mask}")
            lines.append(f"    router: {self.v4.gw}")
            if self.v4.dns:
                lines.append("DNS:")
                lines.extend(f"    {d}" for d in self.v4.dns)
        if self.search:
            lines.append("DNS search list:")
            lines.extend(f"    {s}" for s in self.search)
        if self.v6:
            lines.append("NDP/DHCPv6:")
            lines.append(f"    assign: {self.v6.addr}")
            lines.append(f"    router: {self.v6.gw}")
            lines.append(f"    our link-local: {self.v6.our_ll}")
            if self.v6.dns:
                lines.append("DNS:")
                lines.extend(f"    {d}" for d in self.v6.dns)
        return lines


def _mac_ll(mac: bytes) -> IPv6:
    """EUI-64 link-local address from a MAC."""
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return IPv6(b"\xfe\x80" + bytes(6) + eui)


def _resolvers(dns_all: tuple, cls: type, host_lo, forward, explicit: bool, dns_host=None):
    """Resolvers of one family: (advertised, dns_match, dns_host).

    dns_host is the first resolver (where forwarded queries go, even on
    loopback); a loopback resolver is advertised as the address mapped to
    the host's loopback (the gateway by default), whose port 53 then leads
    to it (only while such an address is mapped), and so is a resolver that
    is that very address (a gateway that is also the resolver, as on most
    home networks): its port 53 must lead to the resolver, not to the
    host's loopback; with
    --dns-forward, that address is what port 53 matches, and it is what is
    advertised unless resolvers were given with -D. ``dns_host``
    (--dns-host) replaces the first resolver as the place forwarded
    queries go; what is advertised does not change.
    """
    match = host = None
    adv = []
    for d in dns_all:
        if not isinstance(d, cls):
            continue
        if host is None:
            host = d
        if d.is_loopback or d == host_lo:
            if host_lo is not None and match is None:
                match = host_lo
                adv.append(host_lo)
        else:
            adv.append(d)
    if forward:
        match = forward
        adv = [forward] if not adv or not explicit else adv
    return adv, match, dns_host or host


def _check_maps(version: int, host_lo, explicit_lo, guest_map, addr) -> None:
    """One address cannot lead to two places, and a mapped one is not the guest's own."""
    if guest_map is not None and guest_map == host_lo:
        raise SetupError("address mapping", f"IPv{version}: {guest_map} would lead both to the host's "
                         "loopback (--map-host-loopback, or the gateway) and to --map-guest-addr")
    for a, opt in ((explicit_lo, "--map-host-loopback"), (guest_map, "--map-guest-addr")):
        if a is not None and a == addr:
            raise SetupError("address mapping", f"IPv{version}: {opt} {a} is the guest's own address")


def build_config(o: Options, host: HostInfo) -> Config:
    """Combine options and host addressing; raise SetupError if unusable."""
    from .setup.sockpool import tcp_peek_off_supported

    dns_all = o.dns if o.dns is not None else host.nameservers
    v4 = v6 = None
    if o.ipv4:
        f = host.v4
        addr = o.addr4 or (f.addr if f else None)
        gw = o.gw4 or (f.gateway if f else None)
        if addr is None or gw is None:
            if o.ipv6 and (host.v6 or o.addr6):
                log.warn("IPv4: no usable default route or address, IPv4 disabled")
        else:
            prefix = o.prefix4 if o.prefix4 is not None else (f.prefix if f and f.addr == addr else 0)
            if prefix == 0:  # classful fallback, as passt does
                first = addr.packed[0]
                prefix = 8 if first < 128 else 16 if first < 192 else 24 if first < 224 else 32
            host_lo = o.map_host_lo4 or (gw if o.map_gw else None)
            _check_maps(4, host_lo, o.map_host_lo4, o.map_guest4, addr)
            adv, match, host_ns = _resolvers(dns_all, IPv4, host_lo, o.dns_forward4, o.dns is not None,
                                            o.dns_host4)
            v4 = V4(addr=addr, prefix=prefix, gw=gw, dns=tuple(adv[:3]),
                    dns_match=match, dns_host=host_ns,
                    ifname=f.ifname if f else (o.ifname or "eth0"),
                    host_lo=host_lo, guest_map=o.map_guest4)
    if o.ipv6:
        f = host.v6
        addr = o.addr6 or (f.addr if f else None)
        gw = o.gw6 or (f.gateway if f else None)
        if addr is None or gw is None:
            if o.ipv4 and v4 is not None:
                log.warn("IPv6: no usable default route or global address, IPv6 disabled")
        else:
            mac = o.our_mac or host.mac or b"\x02\x00\x00\x00\x00\x01"
            our_ll = gw if gw.is_link_local else ((f.addr_ll if f else None) or _mac_ll(mac))
            host_lo6 = o.map_host_lo6 or (gw if o.map_gw else None)
            _check_maps(6, host_lo6, o.map_host_lo6, o.map_guest6, addr)
            adv6, match6, host6 = _resolvers(dns_all, IPv6, host_lo6, o.dns_forward6, o.dns is not None,
                                           o.dns_host6)
            v6 = V6(addr=addr, prefix=64, gw=gw, our_ll=our_ll, dns=tuple(adv6[:3]),
                    dns_match=match6, dns_host=host6,
                    ifname=f.ifname if f else (o.ifname or "eth0"),
                    host_lo=host_lo6, guest_map=o.map_guest6)
    if v4 is None and v6 is None:
        raise SetupError("host addressing", "External interface not usable")
    our_mac = o.our_mac or host.mac or b"\x9a\x55\x9a\x55\x9a\x55"
    tmpl = (v4.ifname if v4 else v6.ifname) if (v4 or v6) else "eth0"  # type: ignore[union-attr]
    search = o.search if o.search is not None else host.search
    return Config(
        opts=o,
        mode=o.mode,
        v4=v4,
        v6=v6,
        our_mac=our_mac,
        mtu=o.mtu,
        ns_ifname=o.ns_ifname or tmpl,
        search=tuple(search) if o.dhcp_search else (),
        tcp_peek_off=tcp_peek_off_supported(),
    )
