# SPDX-License-Identifier: GPL-2.0-or-later
"""Command line of passt and pasta: same spellings, same defaults.

The parser is a table of options (short and long names, whether a value
follows, which mode accepts it) walked the way getopt_long(3) walks argv:
``--name=value`` and ``--name value``, unique prefixes of long names,
clustered short flags (``-fq``) and attached short values (``-t80``).
Parsing stops at ``--`` or at the first argument that is not an option:
pasta runs it as the command. Each value is checked here, so a bad value
fails before anything is set up, with one line naming option and value.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd

from . import __version__
from .egress import EgressRule, parse_egress_spec
from .errors import UsageError
from .ports import PortFwd, parse_port_spec
from .record import field, record, replace

PASST, PASTA = "passt", "pasta"
BOTH = (PASST, PASTA)
MTU_DEFAULT = 65520  # 65535 less the Ethernet header, rounded down to 4 bytes
LOG_SIZE_DEFAULT = 1 << 20
LOG_SIZE_MIN = 5 * 4096
PCAP_SIZE_DEFAULT = 1 << 30  # passt-sep extension: the worker's RLIMIT_FSIZE as well
PCAP_SIZE_MIN = 4096


# What a second occurrence of an option does, per option, as passt does it
# (conf.c of 2023: the tree in the mirror is of May 2023, Debian 12 ships
# 0.0~git20230309; both behave alike, checked option by option against
# /usr/bin/pasta). docs/options.md lists the classes.
REPLACE = "replace"  # the later value wins; a flag given twice counts once
REFUSE = "refuse"    # exit 1 with passt's message, "Multiple --NAME options given" by default
FAMILY = "family"    # once per address family; a second one of a family is refused
ADD = "add"          # each occurrence adds: lists, port specifiers, rules


@record(frozen=True)
class Opt:
    """One option: names, whether it takes a value, modes, what a repeat does."""

    long: str
    short: str | None = None
    arg: bool = False
    modes: tuple[str, ...] = BOTH
    again: str = REPLACE  # REPLACE, REFUSE, FAMILY or ADD
    refusal: str | None = None  # passt's message for a refused repeat ({value}: the repeat)

    def refuse(self, value: str | None, family: int | None = None) -> UsageError:
        """The error for a repeat passt refuses: passt's words, naming the option."""
        msg = (self.refusal or "Multiple --{name} options given").format(name=self.long, value=value)
        if f"--{self.long}" not in msg:
            msg += f" (--{self.long} given twice{f' for IPv{family}' if family else ''})"
        return UsageError(msg)


OPTIONS: tuple[Opt, ...] = (
    Opt("debug", "d", again=REFUSE),
    Opt("trace", again=REFUSE),
    Opt("quiet", "q", again=REFUSE),
    Opt("foreground", "f", again=REFUSE),
    Opt("stderr", "e", again=REFUSE),
    Opt("log-file", "l", True, again=REFUSE),
    Opt("log-size", None, True, again=REFUSE),
    Opt("runas", None, True, again=REFUSE),
    Opt("help", "h"),
    Opt("version"),
    Opt("pcap", "p", True, again=REFUSE),
    Opt("pcap-size", None, True, again=REFUSE),  # ours; as --pcap
    Opt("pid", "P", True, again=REFUSE),
    Opt("mtu", "m", True, again=REFUSE),
    Opt("address", "a", True, again=FAMILY, refusal="Invalid address: {value}"),
    Opt("netmask", "n", True),
    Opt("mac-addr", "M", True),
    Opt("gateway", "g", True, again=FAMILY, refusal="Invalid gateway address: {value}"),
    Opt("interface", "i", True, again=REFUSE, refusal="Redundant interface: {value}"),
    Opt("outbound", "o", True, again=FAMILY, refusal="Invalid or redundant outbound address: {value}"),
    Opt("outbound-if4", None, True, again=REFUSE, refusal="Redundant outbound interface: {value}"),
    Opt("outbound-if6", None, True, again=REFUSE, refusal="Redundant outbound interface: {value}"),
    Opt("dns", "D", True, again=ADD),
    Opt("search", "S", True, again=ADD),
    Opt("no-dhcp-dns", None, False, (PASST,)),
    Opt("dhcp-dns", None, False, (PASTA,)),
    Opt("no-dhcp-search", None, False, (PASST,)),
    Opt("dhcp-search", None, False, (PASTA,)),
    Opt("dns-forward", None, True, again=FAMILY, refusal="Invalid DNS forwarding address: {value}"),
    Opt("ipv4-only", "4"),
    Opt("ipv6-only", "6"),
    Opt("no-tcp"),
    Opt("no-udp"),
    Opt("no-icmp"),
    Opt("no-dhcp"),
    Opt("no-ndp"),
    Opt("no-dhcpv6"),
    Opt("no-ra"),
    Opt("no-map-gw"),
    Opt("map-host-loopback", None, True),  # per family, the last one wins; "none" clears
    Opt("map-guest-addr", None, True),
    # newer passt (2024-2025) options that podman 5 and libvirt pass
    Opt("dns-host", None, True),  # per family, the last one wins (as passt's code)
    Opt("hostname", "H", True),
    Opt("fqdn", None, True),
    Opt("freebind"),
    Opt("host-lo-to-ns-lo", None, False, (PASTA,)),
    Opt("no-copy-routes", None, False, (PASTA,)),
    Opt("no-copy-addrs", None, False, (PASTA,)),
    Opt("socket", "s", True, (PASST,), again=REFUSE),
    Opt("fd", "F", True, (PASST,), again=REFUSE),  # pasta's tap fd: not supported
    Opt("one-off", "1", False, (PASST,), again=REFUSE, refusal="Redundant --one-off option"),
    Opt("tcp-ports", "t", True, again=ADD),
    Opt("udp-ports", "u", True, again=ADD),
    Opt("ns-ifname", "I", True, (PASTA,), again=REFUSE),
    Opt("tcp-ns", "T", True, (PASTA,), again=ADD),
    Opt("udp-ns", "U", True, (PASTA,), again=ADD),
    Opt("userns", None, True, (PASTA,)),
    Opt("netns", None, True, (PASTA,)),
    Opt("netns-only", None, False, (PASTA,)),
    Opt("no-netns-quit", None, False, (PASTA,)),
    Opt("config-net", None, False, (PASTA,)),
    Opt("ns-mac-addr", None, True, (PASTA,)),
    Opt("egress-deny", None, True, again=ADD),
    Opt("egress-allow", None, True, again=ADD),
    Opt("api-socket", None, True, again=REFUSE),  # ours: slirp4netns's JSON API (setup/api.py)
)
_BY_LONG = {o.long: o for o in OPTIONS}
_BY_SHORT = {o.short: o for o in OPTIONS if o.short}


@record(frozen=True)
class Options:
    """What the command line says, values checked, nothing looked up yet."""

    mode: str
    debug: bool = False
    trace: bool = False
    quiet: bool = False
    foreground: bool = False
    stderr: bool = False
    log_file: str | None = None
    log_size: int = LOG_SIZE_DEFAULT
    runas: tuple[int, int] | None = None
    pcap: str | None = None
    pcap_size: int = PCAP_SIZE_DEFAULT
    pid_file: str | None = None
    mtu: int = MTU_DEFAULT  # 0: don't advertise
    addr4: ipaddress.IPv4Address | None = None
    addr6: ipaddress.IPv6Address | None = None
    prefix4: int | None = None
    our_mac: bytes | None = None
    gw4: ipaddress.IPv4Address | None = None
    gw6: ipaddress.IPv6Address | None = None
    ifname: str | None = None
    outbound4: ipaddress.IPv4Address | None = None
    outbound6: ipaddress.IPv6Address | None = None
    outbound_if4: str | None = None
    outbound_if6: str | None = None
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] | None = None  # None: resolv.conf
    search: tuple[str, ...] | None = None  # None: resolv.conf
    dhcp_dns: bool = True
    dhcp_search: bool = True
    dns_forward4: ipaddress.IPv4Address | None = None
    dns_forward6: ipaddress.IPv6Address | None = None
    ipv4: bool = True
    ipv6: bool = True
    no_tcp: bool = False
    no_udp: bool = False
    no_icmp: bool = False
    no_dhcp: bool = False
    no_ndp: bool = False
    no_dhcpv6: bool = False
    no_ra: bool = False
    map_gw: bool = True  # the gateway address leads to the host's loopback, unless given below
    map_host_lo4: ipaddress.IPv4Address | None = None  # --map-host-loopback, per family
    map_host_lo6: ipaddress.IPv6Address | None = None
    map_guest4: ipaddress.IPv4Address | None = None  # --map-guest-addr, per family
    map_guest6: ipaddress.IPv6Address | None = None
    dns_host4: ipaddress.IPv4Address | None = None  # --dns-host: where --dns-forward queries go
    dns_host6: ipaddress.IPv6Address | None = None
    hostname: str | None = None  # -H: DHCP option 12
    fqdn: str | None = None  # --fqdn: DHCP option 81, DHCPv6 option 39
    freebind: bool = False  # IP_FREEBIND / IPV6_FREEBIND on -t/-u sockets
    host_lo_to_ns_lo: bool = False  # what passt-sep's splice always does (splice.md)
    no_copy_routes: bool = False  # what --config-net always does: one default route
    no_copy_addrs: bool = False  # ... and one address per family
    socket_path: str | None = None
    fd: int | None = None
    one_off: bool = False
    tcp_in: PortFwd = field(default_factory=PortFwd)
    udp_in: PortFwd = field(default_factory=PortFwd)
    tcp_out: PortFwd = field(default_factory=PortFwd)
    udp_out: PortFwd = field(default_factory=PortFwd)
    ns_ifname: str | None = None
    userns: str | None = None
    netns: str | None = None
    netns_only: bool = False
    no_netns_quit: bool = False
    config_net: bool = False
    config_net6: bool = True  # --config-net gives IPv6 its address and route too (the slirp4netns front end: SLAAC only)
    ns_mac: bytes | None = None
    egress_deny: tuple[EgressRule, ...] = ()  # --egress-deny, in the order given
    egress_allow: tuple[EgressRule, ...] = ()  # --egress-allow: with any, everything else is denied
    api_socket: str | None = None  # --api-socket: the control API's UNIX socket (setup/api.py)
    command: tuple[str, ...] = ()
    target_pid: int | None = None
    action: str = "run"  # run, help, version


def _ip(opt: str, value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"Invalid address for --{opt}: '{value}'") from None


def _assignable(opt: str, value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = _ip(opt, value)
    bad = ip.is_unspecified or ip.is_loopback or ip.is_multicast
    if isinstance(ip, ipaddress.IPv4Address):
        bad = bad or ip == ipaddress.IPv4Address("255.255.255.255")
    else:
        bad = bad or ip.ipv4_mapped is not None or ip.packed[:12] == bytes(12)
    if bad:
        raise UsageError(f"Invalid address for --{opt}: '{value}'")
    return ip


def _dhcp_name(opt: str, value: str) -> str:
    """-H / --fqdn: a DNS name that fits one DHCP option (at most 253 characters)."""
    labels = value.rstrip(".").split(".")
    if (not value or len(value) > 253 or not value.isascii()
            or any(not 0 < len(lbl) < 64 for lbl in labels)):
        raise UsageError(f"Invalid {'hostname' if opt == 'hostname' else 'FQDN'} for --{opt}: '{value}'")
    return value


def parse_mac(opt: str, value: str) -> bytes:
    """Parse aa:bb:cc:dd:ee:ff; raise UsageError naming the option."""
    parts = value.split(":")
    try:
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise UsageError(f"Invalid MAC address for --{opt}: '{value}'") from None


def _int(opt: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise UsageError(f"Invalid value for --{opt}: '{value}'") from None
    if not lo <= n <= hi:
        raise UsageError(f"Invalid value for --{opt}: '{value}' (must be {lo} to {hi})")
    return n


def _runas(value: str) -> tuple[int, int]:
    user, sep, group = value.partition(":")
    try:
        if user.isdigit():
            uid = int(user)
            gid = uid
        else:
            pw = pwd.getpwnam(user)
            uid, gid = pw.pw_uid, pw.pw_gid
        if sep:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise UsageError(f"Invalid user or group for --runas: '{value}'") from None
    return uid, gid


def _netmask(value: str) -> int:
    if value.isdigit():
        n = int(value)
        if n <= 32:
            return n
    else:
        try:
            return ipaddress.IPv4Network(f"0.0.0.0/{value}").prefixlen
        except ValueError:
            pass
    raise UsageError(f"Invalid netmask for --netmask: '{value}'")


def _ifname(opt: str, value: str) -> str:
    if not 0 < len(value) < 16 or "/" in value or value.strip() != value:
        raise UsageError(f"Invalid interface name for --{opt}: '{value}'")
    return value


def _split_argv(mode: str, argv: list[str]) -> tuple[list[tuple[Opt, str, str | None]], list[str]]:
    """Walk argv like getopt_long: return (option, spelling, value) and the rest."""
    out: list[tuple[Opt, str, str | None]] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return out, argv[i + 1 :]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            opt = _BY_LONG.get(name)
            if opt is None:
                cands = [o for o in OPTIONS if o.long.startswith(name)] if name else []
                if len(cands) != 1:
                    what = "Ambiguous" if cands else "Unrecognized"
                    raise UsageError(f"{what} option '{a}'")
                opt = cands[0]
            spelling = "--" + opt.long
            if opt.arg:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"Option '{spelling}' requires an argument")
                    value = argv[i]
            elif eq:
                raise UsageError(f"Option '{spelling}' doesn't allow an argument")
            else:
                value = None
            out.append((opt, spelling, value))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                opt = _BY_SHORT.get(a[j])
                if opt is None:
                    raise UsageError(f"Invalid option '-{a[j]}'")
                if opt.arg:
                    value = a[j + 1 :]
                    if not value:
                        i += 1
                        if i >= len(argv):
                            raise UsageError(f"Option '-{a[j]}' requires an argument")
                        value = argv[i]
                    out.append((opt, "-" + a[j], value))
                    break
                out.append((opt, "-" + a[j], None))
                j += 1
        else:
            return out, argv[i:]
        i += 1
    return out, []


def parse_args(mode: str, argv: list[str]) -> Options:
    """Parse the arguments after the program name for passt or pasta."""
    pairs, rest = _split_argv(mode, argv)
    o = Options(mode=mode)
    kw: dict[str, object] = {}
    seen: set[str] = set()
    seen_family: set[tuple[str, int]] = set()
    tcp_in, udp_in, tcp_out, udp_out = PortFwd(), PortFwd(), PortFwd(), PortFwd()
    addrs: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    dns_none = search_none = False
    search: list[str] = []
    egress: dict[str, list[EgressRule]] = {"egress-deny": [], "egress-allow": []}
    for opt, spelling, value in pairs:
        name = opt.long
        if mode not in opt.modes:
            why = " (a pre-opened tap fd: passt-sep opens the tap itself)" if name == "fd" else ""
            raise UsageError(f"Option '{spelling}' is not supported by {mode}{why}")
        v = value or ""
        if opt.again == REFUSE and name in seen:
            raise opt.refuse(value)
        if opt.again == FAMILY:
            try:
                fam = (name, ipaddress.ip_address(v).version)
            except ValueError:
                fam = None  # the handler names the bad value
            if fam in seen_family:
                raise opt.refuse(value, fam[1])  # type: ignore[index]
            if fam:
                seen_family.add(fam)
        seen.add(name)
        if name in ("debug", "trace", "quiet", "foreground", "stderr", "no-tcp", "no-udp",
                    "no-icmp", "no-dhcp", "no-ndp", "no-dhcpv6", "no-ra", "one-off",
                    "netns-only", "no-netns-quit", "config-net", "freebind",
                    "host-lo-to-ns-lo", "no-copy-routes", "no-copy-addrs"):
            kw[name.replace("-", "_")] = True
        elif name == "help":
            return replace(o, action="help")
        elif name == "version":
            return replace(o, action="version")
        elif name == "log-file":
            kw["log_file"] = v
        elif name == "log-size":
            kw["log_size"] = _int(name, v, LOG_SIZE_MIN, 1 << 40)
        elif name == "runas":
            kw["runas"] = _runas(v)
        elif name == "pcap":
            kw["pcap"] = v
        elif name == "pcap-size":
            kw["pcap_size"] = _int(name, v, PCAP_SIZE_MIN, 1 << 40)
        elif name == "pid":
            kw["pid_file"] = v
        elif name == "api-socket":
            if not v or len(os.fsencode(v)) >= 108:
                raise UsageError(f"Invalid --api-socket path (empty, or 108 bytes or more): {v}")
            kw["api_socket"] = v
        elif name == "mtu":
            kw["mtu"] = 0 if v == "0" else _int(name, v, 68, 65535)
        elif name == "address":
            addrs.append(_assignable(name, v))
        elif name == "netmask":
            kw["prefix4"] = _netmask(v)
        elif name == "mac-addr":
            kw["our_mac"] = parse_mac(name, v)
        elif name == "ns-mac-addr":
            kw["ns_mac"] = parse_mac(name, v)
        elif name == "gateway":
            ip = _ip(name, v)
            key = f"gw{ip.version}"
            if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
                raise UsageError(f"Invalid address for --gateway: '{v}'")
            kw[key] = ip
        elif name == "outbound":
            ip = _ip(name, v)
            kw[f"outbound{ip.version}"] = ip
        elif name in ("interface", "outbound-if4", "outbound-if6", "ns-ifname"):
            kw[{"interface": "ifname", "outbound-if4": "outbound_if4",
                "outbound-if6": "outbound_if6", "ns-ifname": "ns_ifname"}[name]] = _ifname(name, v)
        elif name == "dns":  # as passt: each adds one; "none" alone, once
            if v == "none":
                if dns_none:
                    raise UsageError("Redundant DNS options (--dns none given twice)")
                if dns:
                    raise UsageError("Conflicting DNS options (--dns none and addresses)")
                dns_none = True
            elif dns_none:
                raise UsageError("Conflicting DNS options (--dns none and addresses)")
            else:
                dns.append(_ip(name, v))
        elif name == "search":  # as passt: each adds; "none" alone, once
            if v == "none":
                if search_none:
                    raise UsageError("Redundant DNS search options (--search none given twice)")
                if search:
                    raise UsageError("Conflicting DNS search options (--search none and domains)")
                search_none = True
            elif search_none:
                raise UsageError("Conflicting DNS search options (--search none and domains)")
            elif not v.split():
                raise UsageError(f"Invalid search domain for --search: '{v}'")
            for d in v.split() if v != "none" else ():
                if len(d) > 253 or any(not 0 < len(lbl) < 64 for lbl in d.rstrip(".").split(".")):
                    raise UsageError(f"Invalid search domain for --search: '{d}'")
                search.append(d)
        elif name in ("no-dhcp-dns", "dhcp-dns"):
            kw["dhcp_dns"] = name == "dhcp-dns"
        elif name in ("no-dhcp-search", "dhcp-search"):
            kw["dhcp_search"] = name == "dhcp-search"
        elif name == "dns-forward":
            ip = _assignable(name, v)
            kw[f"dns_forward{ip.version}"] = ip
        elif name == "ipv4-only":
            kw["ipv6"] = False
        elif name == "ipv6-only":
            kw["ipv4"] = False
        elif name == "no-map-gw":
            kw["map_gw"] = False
        elif name in ("map-host-loopback", "map-guest-addr"):
            # as in passt: one address per family, the last one given wins;
            # "none" clears both (and, for the loopback, the gateway default)
            prefix = "map_host_lo" if name == "map-host-loopback" else "map_guest"
            if v == "none":
                kw[f"{prefix}4"] = kw[f"{prefix}6"] = None
                if name == "map-host-loopback":
                    kw["map_gw"] = False
            else:
                ip = _assignable(name, v)
                kw[f"{prefix}{ip.version}"] = ip
        elif name == "socket":
            if not v or len(os.fsencode(v)) >= 108:
                raise UsageError(f"Invalid socket path for --socket: '{v}'")
            kw["socket_path"] = v
        elif name == "fd":
            kw["fd"] = _int(name, v, 0, (1 << 31) - 1)
            kw["one_off"] = True
        elif name in ("tcp-ports", "udp-ports", "tcp-ns", "udp-ns"):
            common = {"allow_auto": mode == PASTA, "allow_all": mode == PASST}
            if name == "tcp-ports":
                tcp_in = parse_port_spec(spelling, v, tcp_in, allow_prefix=True, **common)
            elif name == "udp-ports":
                udp_in = parse_port_spec(spelling, v, udp_in, allow_prefix=True, **common)
            elif name == "tcp-ns":
                tcp_out = parse_port_spec(spelling, v, tcp_out, allow_prefix=False, **common)
            else:
                udp_out = parse_port_spec(spelling, v, udp_out, allow_prefix=False, **common)
        elif name in ("egress-deny", "egress-allow"):
            egress[name].append(parse_egress_spec(spelling, v))
        elif name == "dns-host":
            ip = _ip(name, v)
            if ip.is_unspecified or ip == ipaddress.IPv4Address("255.255.255.255"):
                raise UsageError(f"Invalid host nameserver address: {v} (--dns-host)")
            kw[f"dns_host{ip.version}"] = ip
        elif name in ("hostname", "fqdn"):
            kw[name] = _dhcp_name(name, v)
        elif name == "userns":
            kw["userns"] = v
        elif name == "netns":
            kw["netns"] = v if "/" in v else f"/run/netns/{v}"
        else:  # pragma: no cover - table and handlers out of step
            raise UsageError(f"Option '{spelling}' is not handled")
    if kw.get("quiet") and (kw.get("debug") or kw.get("trace")):
        raise UsageError("Options --quiet and --debug/--trace are mutually exclusive")
    if kw.get("trace"):
        kw["debug"] = True
    if kw.get("log_file") and kw.get("stderr"):
        raise UsageError("Options --log-file and --stderr are mutually exclusive")
    if kw.get("ipv4") is False and kw.get("ipv6") is False:
        raise UsageError("Options --ipv4-only and --ipv6-only are mutually exclusive")
    if "socket_path" in kw and "fd" in kw:
        raise UsageError("Options --socket and --fd are mutually exclusive")
    if (kw.get("no_copy_routes") or kw.get("no_copy_addrs")) and not kw.get("config_net"):
        which = "routes" if kw.get("no_copy_routes") else "addrs"
        raise UsageError(f"--no-copy-{which} needs --config-net")
    if kw.get("netns_only") and "userns" in kw:
        raise UsageError("Options --netns-only and --userns are mutually exclusive")
    for ip in addrs:
        kw[f"addr{ip.version}"] = ip
    kw["egress_deny"] = tuple(egress["egress-deny"])
    kw["egress_allow"] = tuple(egress["egress-allow"])
    if dns_none or dns:
        kw["dns"] = tuple(dns)
    if search_none or search:
        kw["search"] = tuple(search)
    if mode == PASTA:
        # pasta sends resolvers and search list only when asked to
        kw.setdefault("dhcp_dns", False)
        kw.setdefault("dhcp_search", False)
        # pasta forwards nothing inbound by default only when told; its
        # default for every direction is 'auto'
        tcp_in = tcp_in if "tcp-ports" in seen else PortFwd("auto")
        udp_in = udp_in if "udp-ports" in seen else PortFwd("auto")
        tcp_out = tcp_out if "tcp-ns" in seen else PortFwd("auto")
        udp_out = udp_out if "udp-ns" in seen else PortFwd("auto")
        if "netns" in kw and rest:
            raise UsageError("Both --netns and a PID or command given")
        if len(rest) == 1 and rest[0].isdigit():
            kw["target_pid"] = int(rest[0])
        elif rest:
            kw["command"] = tuple(rest)
        if kw.get("userns") and not (kw.get("netns") or kw.get("target_pid")):
            raise UsageError("Option --userns needs --netns or a PID")
        if kw.get("config_net"):
            kw["no_ra"] = True
    elif rest:
        raise UsageError(f"Extra non-option argument: '{rest[0]}'")
    return replace(o, tcp_in=tcp_in, udp_in=udp_in, tcp_out=tcp_out, udp_out=udp_out, **kw)  # type: ignore[arg-type]


def usage(mode: str) -> str:
    """The --help text."""
    common = f"""Usage: {mode} [OPTION]...{' [COMMAND [ARG]...]' if mode == PASTA else ''}
{'       pasta [OPTION]... PID' + chr(10) + '       pasta [OPTION]... --netns [PATH|NAME]' + chr(10) if mode == PASTA else ''}
  -d, --debug           Be verbose
      --trace           Be extra verbose, implies --debug
  -q, --quiet           Don't print informational messages
  -f, --foreground      Don't run in background
  -e, --stderr          Log to stderr too
  -l, --log-file PATH   Log (only) to given file
  --log-size BYTES      Maximum size of log file (default: 1 MiB)
  --runas UID|UID:GID   Run as given UID, GID, which can be numeric or names
  -h, --help            Display this help message and exit
  --version             Show version and exit
  -p, --pcap FILE       Log tap-facing traffic to pcap file
  --pcap-size BYTES     Stop capturing once the pcap file would pass BYTES
                          (passt-sep extension; default: 1 GiB)
  -P, --pid FILE        Write own PID to the given file
  -m, --mtu MTU         Assign MTU via DHCP/NDP (default: 65520; 0: don't assign)
  -a, --address ADDR    Assign IPv4 or IPv6 address ADDR
  -n, --netmask MASK    Assign IPv4 MASK, dot-decimal or bits
  -M, --mac-addr ADDR   Use source MAC address ADDR
  -g, --gateway ADDR    Pass IPv4 or IPv6 address as gateway
  -i, --interface NAME  Interface for addresses and routes
  -o, --outbound ADDR   Bind to address as outbound source
  --outbound-if4 NAME   Bind to outbound interface for IPv4
  --outbound-if6 NAME   Bind to outbound interface for IPv6
  -D, --dns ADDR        Use IPv4 or IPv6 address as DNS ('none': no DNS)
  -S, --search LIST     Space-separated list, search domains ('none': none)
  --{'dhcp-dns' if mode == PASTA else 'no-dhcp-dns'}  {'Pass' if mode == PASTA else "Don't pass"} DNS list via DHCP/DHCPv6/NDP
  --{'dhcp-search' if mode == PASTA else 'no-dhcp-search'}  {'Pass' if mode == PASTA else "Don't pass"} search list via DHCP/DHCPv6/NDP
  --dns-forward ADDR    Forward DNS queries sent to ADDR
  --dns-host ADDR       Host nameserver to direct queries to ADDR (per family)
  -4, --ipv4-only       Enable IPv4 operation only
  -6, --ipv6-only       Enable IPv6 operation only
  --no-tcp, --no-udp, --no-icmp        Disable that protocol
  --no-dhcp, --no-ndp, --no-dhcpv6, --no-ra   Disable that service
  --no-map-gw           Don't map gateway address to host
  --map-host-loopback ADDR  Translate ADDR to refer to host (default: gateway)
  --map-guest-addr ADDR     Translate ADDR to guest's address (default: none)
  -H, --hostname NAME   Hostname to send the client (DHCP option 12)
  --fqdn NAME           FQDN to send the client (DHCP option 81, DHCPv6 option 39)
  --freebind            Bind -t/-u addresses the host does not have (yet)
  --egress-deny SPEC    Refuse guest traffic to SPEC: ADDR[/PREFIX][:PORTS]
                        (IPv6 with ports: [ADDR[/PREFIX]]:PORTS), as the host
                        sees the destination (the mapped gateway is 127.0.0.1
                        or ::1); with PORTS: TCP and UDP to those ports only,
                        without: every protocol, ICMP echo too. Repeatable
  --egress-allow SPEC   Refuse guest traffic to anything no --egress-allow SPEC
                        matches (deny rules still apply first). Repeatable
  --api-socket PATH     Serve slirp4netns's JSON API (add_hostfwd, list_hostfwd,
                        remove_hostfwd) and list_flows, stats on UNIX socket
                        PATH (passt-sep extension; client: passt-sep ctl)
"""
    if mode == PASST:
        return common + """  -s, --socket PATH     UNIX domain socket path (default: probe free path /tmp/passt_N.socket)
  -F, --fd FD           Use FD as pre-opened connected socket (passt only)
  -1, --one-off         Quit after handling one single client
  -t, --tcp-ports SPEC  TCP port forwarding to guest (none, all, or [ADDR[%IF]/]PORTS)
  -u, --udp-ports SPEC  UDP port forwarding to guest
"""
    return common + """  -I, --ns-ifname NAME  Namespace interface name (default: host's template interface)
  -t, --tcp-ports SPEC  TCP port forwarding to namespace (none, auto, or [ADDR[%IF]/]PORTS)
  -u, --udp-ports SPEC  UDP port forwarding to namespace
  -T, --tcp-ns SPEC     TCP port forwarding to init namespace (none, auto, PORTS)
  -U, --udp-ns SPEC     UDP port forwarding to init namespace
  --userns NSPATH       Target user namespace to join
  --netns PATH|NAME     Target network namespace to join
  --netns-only          Don't join existing user namespace
  --no-netns-quit       Don't quit if filesystem-bound target namespace is gone
  --config-net          Configure tap interface in namespace
  --ns-mac-addr ADDR    Set MAC address on tap interface
  --host-lo-to-ns-lo    Host loopback forwards reach the namespace's loopback
                          (what passt-sep always does)
  --no-copy-routes      With --config-net: only the default route (always so)
  --no-copy-addrs       With --config-net: a single address (always so)
"""


def version_text(mode: str) -> str:
    """The --version text."""
    return (f"{mode} {__version__} (passt-sep)\n"
            "Copyright the passt-sep authors.\n"
            "License GPLv2+: GNU GPL version 2 or later <https://www.gnu.org/licenses/gpl-2.0.html>.\n"
            "This is free software: you are free to change and redistribute it.\n"
            "There is NO WARRANTY, to the extent permitted by law.\n")
