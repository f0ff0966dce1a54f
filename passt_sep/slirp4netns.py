# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns 1.x front end: slirp4netns's command line on pasta's machinery.

Owns the command line of slirp4netns (1.2.0 as Debian ships it; podman 4.x
and rootlesskit drive it), its addressing and its start-up protocol, and
turns them into pasta Options for an attach run (``pasta --netns PATH`` or
``pasta PID``): the same Parent, worker, broker and sandbox as pasta.

slirp4netns's addressing, from ``--cidr`` (default 10.0.2.0/24): the guest
is .100 (with ``-c`` the tap gets it, /PREFIX, and a default route via the
gateway; without, the tap is made and left alone, as slirp4netns does), the
gateway .2 leads to the host's loopback (pasta's gateway mapping) unless
``--disable-host-loopback`` (then it leads nowhere: refused), and .3 port 53
is the host's resolver (pasta's ``--dns-forward``) unless ``--disable-dns``.
``--enable-ipv6``: fd00::/64 announced by router advertisements (the guest
takes a SLAAC address), gateway fd00::2, DNS fd00::3, the same way.

Start-up protocol: ``-r FD`` gets "1" once the network works, ``-e FD``
ends the run (status 0) when it becomes readable or its writer closes it;
slirp4netns stays in the foreground. ``--help`` prints slirp4netns's help
(podman greps it for option names to probe features).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
import struct
import sys

from . import __version__
from .cli import PASTA, Options, parse_mac
from .egress import EgressRule, parse_egress_spec
from .errors import SetupError, UsageError
from .record import record

PROG = "slirp4netns"
DEFAULT_MTU = 1500
MAX_MTU = 65521  # slirp4netns's limit (the tap's, too)
MIN_MTU = 68  # IPv4's minimum: the kernel refuses less on the tap
DEFAULT_CIDR = "10.0.2.0/24"
GW_OFFSET, DNS_OFFSET, GUEST_OFFSET = 2, 3, 100
PREFIX_MIN, PREFIX_MAX = 1, 25  # slirp4netns: the guest is network + 100
NET6 = ipaddress.IPv6Network("fd00::/64")
GW6, DNS6, GUEST6 = NET6[2], NET6[3], NET6[0x100]
SIOCGIFADDR = 0x8915

# (long name, short name, takes a value); as slirp4netns 1.2.0's getopt_long table
_LONG: dict[str, tuple[str | None, bool]] = {
    "configure": ("c", False),
    "exit-fd": ("e", True),
    "ready-fd": ("r", True),
    "mtu": ("m", True),
    "cidr": (None, True),
    "disable-host-loopback": (None, False),
    "no-host-loopback": (None, False),  # deprecated spelling, as slirp4netns
    "netns-type": (None, True),
    "userns-path": (None, True),
    "api-socket": ("a", True),
    "enable-ipv6": ("6", False),
    "enable-sandbox": (None, False),
    "create-sandbox": (None, False),  # deprecated spelling, as slirp4netns
    "enable-seccomp": (None, False),
    "help": ("h", False),
    "version": ("v", False),
    "outbound-addr": (None, True),
    "outbound-addr6": (None, True),
    "disable-dns": (None, False),
    "macaddress": (None, True),
    "target-type": (None, True),
}
_SHORT = {short: (name, arg) for name, (short, arg) in _LONG.items() if short}

USAGE = """Usage: {argv0} [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces.

-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, max=65521)
-6, --enable-ipv6        enable IPv6 (experimental)
-a, --api-socket=PATH    specify API socket path
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE 	 specify network namespace type ([path|pid], default=pid)
--userns-path=PATH	 specify user namespace path
--enable-sandbox         create a new mount namespace (and drop all caps except CAP_NET_BIND_SERVICE if running as the root)
--enable-seccomp         enable seccomp to limit syscalls (experimental)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (experimental)
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (experimental)
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect (experimental)
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=TYPE       specify the target type ([netns], default=netns)
-h, --help               show this help and exit
-v, --version            show version and exit

passt-sep's slirp4netns front end: pasta's privilege-separated engine behind
slirp4netns's command line. The network is always sandboxed (a worker without
capabilities, in empty namespaces, under a seccomp allow-list), with or
without --enable-sandbox and --enable-seccomp.
"""


def usage(argv0: str = PROG) -> str:
    """slirp4netns's --help text (podman and rootlesskit grep it for option names)."""
    return USAGE.format(argv0=argv0)


def version_text() -> str:
    """slirp4netns-shaped --version lines (runc-style, machine-parsable)."""
    return (f"slirp4netns version 1.2.0+passt-sep-{__version__}\n"
            f"commit: passt-sep {__version__}\n"
            "libslirp: none (passt-sep: pasta's engine)\n"
            "SLIRP_CONFIG_VERSION_MAX: 4\n")


@record(frozen=True)
class SlirpArgs:
    """slirp4netns's command line, values checked."""

    configure: bool = False
    exit_fd: int | None = None
    ready_fd: int | None = None
    mtu: int = DEFAULT_MTU
    network: ipaddress.IPv4Network = ipaddress.IPv4Network(DEFAULT_CIDR)
    disable_host_loopback: bool = False
    netns_type: str = "pid"
    userns_path: str | None = None
    api_socket: str | None = None
    enable_ipv6: bool = False
    enable_sandbox: bool = False
    enable_seccomp: bool = False
    outbound4: ipaddress.IPv4Address | None = None
    outbound6: ipaddress.IPv6Address | None = None
    disable_dns: bool = False
    macaddress: bytes | None = None
    target_pid: int | None = None
    netns_path: str | None = None
    tapname: str = ""
    action: str = "run"  # run, help, version
    warnings: tuple[str, ...] = ()  # printed on stdout, as slirp4netns does

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The gateway (network + 2): the host's loopback unless --disable-host-loopback."""
        return self.network[GW_OFFSET]

    @property
    def dns(self) -> ipaddress.IPv4Address:
        """The DNS address (network + 3): the host's resolver unless --disable-dns."""
        return self.network[DNS_OFFSET]

    @property
    def guest(self) -> ipaddress.IPv4Address:
        """The guest's recommended address (network + 100)."""
        return self.network[GUEST_OFFSET]


def _fd(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise UsageError(f"{name} must be a non-negative integer")
    fd = int(value)
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as e:
        raise UsageError(f"{name} {fd}: {e.strerror}") from None
    return fd


def parse_cidr(value: str) -> ipaddress.IPv4Network:
    """--cidr as slirp4netns checks it: a network address, prefix 1 to 25."""
    m = re.fullmatch(r"((?:[0-9]{1,3}\.){3}[0-9]{1,3})/([0-9]{1,2})", value)
    if m is None:
        raise UsageError(f"invalid CIDR: {value} (--cidr)")
    try:
        addr = ipaddress.IPv4Address(m.group(1))
    except ValueError:
        raise UsageError(f"invalid network address: {m.group(1)} (--cidr)") from None
    prefix = int(m.group(2))
    if not PREFIX_MIN <= prefix <= PREFIX_MAX:
        raise UsageError(f"prefix length needs to be {PREFIX_MIN}-{PREFIX_MAX} (--cidr {value})")
    net = ipaddress.IPv4Network(f"{addr}/{prefix}", strict=False)
    if net.network_address != addr:
        raise UsageError(f"CIDR needs to be a network address like 10.0.2.0/24, "
                         f"not like 10.0.2.100/24 (--cidr {value})")
    return net


def _iface_addr4(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address of interface ``name`` (SIOCGIFADDR), or None."""
    if not 0 < len(name) < 16:
        return None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("16s16x", name.encode()))
    except OSError:
        return None
    finally:
        s.close()
    return ipaddress.IPv4Address(res[20:24])


def _iface_addr6(name: str) -> ipaddress.IPv6Address | None:
    """The first global IPv6 address of interface ``name`` (/proc/net/if_inet6), or None."""
    try:
        with open("/proc/net/if_inet6") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return None
    for line in lines:
        words = line.split()
        if len(words) == 6 and words[5] == name and words[3] == "00":
            return ipaddress.IPv6Address(bytes.fromhex(words[0]))
    return None


def _outbound(opt: str, value: str, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """--outbound-addr[6]: an address of the family, or an interface name (its address)."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = _iface_addr4(value) if version == 4 else _iface_addr6(value)
        if ip is None:
            raise UsageError(f"{opt} has to be a valid IPv{version} address or interface name: "
                             f"'{value}'") from None
    if ip.version != version:
        raise UsageError(f"{opt} has to be a valid IPv{version} address or interface name: '{value}'")
    return ip


def _split(argv: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Walk argv as GNU getopt_long does (permuting): (name, value) pairs and operands."""
    out: list[tuple[str, str | None]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            rest.extend(argv[i:])
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name not in _LONG:
                cands = [n for n in _LONG if n.startswith(name)] if name else []
                if len(cands) != 1:
                    raise UsageError(f"{'ambiguous' if cands else 'unrecognized'} option '{a}'")
                name = cands[0]
            arg = _LONG[name][1]
            if arg and not eq:
                if i >= len(argv):
                    raise UsageError(f"option '--{name}' requires an argument")
                value = argv[i]
                i += 1
            elif not arg and eq:
                raise UsageError(f"option '--{name}' doesn't allow an argument")
            out.append((name, value if arg else None))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                found = _SHORT.get(a[j])
                if found is None:
                    raise UsageError(f"invalid option -- '{a[j]}'")
                name, arg = found
                if arg:
                    value = a[j + 1:]
                    if not value:
                        if i >= len(argv):
                            raise UsageError(f"option requires an argument -- '{a[j]}'")
                        value = argv[i]
                        i += 1
                    out.append((name, value))
                    break
                out.append((name, None))
                j += 1
        else:
            rest.append(a)
    return out, rest


def parse(argv: list[str]) -> SlirpArgs:
    """Parse the arguments after the program name; UsageError names what is wrong."""
    pairs, rest = _split(argv)
    kw: dict[str, object] = {}
    warnings: list[str] = []
    out4 = out6 = mac = None
    for name, value in pairs:
        v = value or ""
        if name == "help":
            return SlirpArgs(action="help")
        if name == "version":
            return SlirpArgs(action="version")
        if name == "configure":
            kw["configure"] = True
        elif name in ("exit-fd", "ready-fd"):
            kw[name.replace("-", "_")] = _fd(name, v)
        elif name == "mtu":
            if not re.fullmatch(r"[0-9]+", v) or not MIN_MTU <= int(v) <= MAX_MTU:
                raise UsageError(f"MTU must be an integer from {MIN_MTU} to {MAX_MTU} (--mtu {v})")
            kw["mtu"] = int(v)
        elif name == "cidr":
            kw["network"] = parse_cidr(v)
        elif name in ("disable-host-loopback", "no-host-loopback"):
            if name == "no-host-loopback":
                warnings.append("WARNING: --no-host-loopback is deprecated and will be removed in "
                                "future releases, please use --disable-host-loopback instead.")
            kw["disable_host_loopback"] = True
        elif name == "netns-type":
            if v not in ("pid", "path"):
                raise UsageError(f"--netns-type must be \"pid\" or \"path\", not '{v}'")
            kw["netns_type"] = v
        elif name == "userns-path":
            if not os.path.exists(v):
                raise UsageError(f"userns path doesn't exist: {v} (--userns-path)")
            kw["userns_path"] = os.path.abspath(v)
        elif name == "api-socket":
            if not v or len(v.encode()) >= 108:
                raise UsageError(f"invalid API socket path for --api-socket: '{v}'")
            kw["api_socket"] = v
        elif name == "enable-ipv6":
            kw["enable_ipv6"] = True
        elif name in ("enable-sandbox", "create-sandbox"):
            if name == "create-sandbox":
                warnings.append("WARNING: --create-sandbox is deprecated and will be removed in "
                                "future releases, please use --enable-sandbox instead.")
            kw["enable_sandbox"] = True
        elif name == "enable-seccomp":
            kw["enable_seccomp"] = True
        elif name == "outbound-addr":
            out4 = v
        elif name == "outbound-addr6":
            out6 = v
        elif name == "disable-dns":
            kw["disable_dns"] = True
        elif name == "macaddress":
            mac = v
        elif name == "target-type":
            if v != "netns":
                raise UsageError(f"--target-type must be \"netns\" (passt-sep has no BESS mode), not '{v}'")
    if mac is not None:
        if not kw.get("configure"):
            raise UsageError("--macaddress cannot be specified when --configure or -c is not specified")
        kw["macaddress"] = parse_mac("macaddress", mac)
    if out4 is not None:
        kw["outbound4"] = _outbound("--outbound-addr", out4, 4)
    if out6 is not None:
        kw["outbound6"] = _outbound("--outbound-addr6", out6, 6)
    if not rest:
        raise UsageError("missing PID|PATH and TAPNAME")
    if kw.get("netns_type", "pid") == "pid":
        if not re.fullmatch(r"[0-9]+", rest[0]) or int(rest[0]) <= 0:
            raise UsageError(f"PID must be a positive integer: '{rest[0]}'")
        kw["target_pid"] = int(rest[0])
    else:
        if not os.path.exists(rest[0]):
            raise UsageError(f"existing path expected when --netns-type=path: {rest[0]}")
        kw["netns_path"] = os.path.abspath(rest[0])
    if len(rest) < 2:
        raise UsageError("missing TAPNAME")
    tap = rest[1]
    if not 0 < len(tap.encode()) < 16 or "/" in tap or tap.strip() != tap:
        raise UsageError(f"invalid TAPNAME: '{tap}'")
    kw["tapname"] = tap
    if len(rest) > 2:
        warnings.append("WARNING: too many arguments")
    return SlirpArgs(warnings=tuple(warnings), **kw)  # type: ignore[arg-type]


def to_options(a: SlirpArgs) -> Options:
    """pasta Options for an attach run with slirp4netns's addressing."""
    deny: list[EgressRule] = []

    def refuse(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        deny.append(parse_egress_spec("--egress-deny", str(addr)))

    # an address slirp4netns keeps virtual must not lead to the host's
    # network when it is not mapped: refused, as by slirp4netns
    if a.disable_host_loopback:
        refuse(a.gateway)
        if a.enable_ipv6:
            refuse(GW6)
    if a.disable_dns:
        refuse(a.dns)
        if a.enable_ipv6:
            refuse(DNS6)
    return Options(
        mode=PASTA,
        foreground=True,  # slirp4netns never daemonizes: podman and rootlesskit wait on it
        mtu=a.mtu,
        addr4=a.guest,
        prefix4=a.network.prefixlen,
        gw4=a.gateway,
        dns_forward4=None if a.disable_dns else a.dns,
        ipv6=a.enable_ipv6,
        addr6=GUEST6 if a.enable_ipv6 else None,
        gw6=GW6 if a.enable_ipv6 else None,
        dns_forward6=DNS6 if a.enable_ipv6 and not a.disable_dns else None,
        config_net6=False,  # IPv6: the guest takes its address from our RAs (SLAAC), as with slirp4netns
        map_gw=not a.disable_host_loopback,
        outbound4=a.outbound4,
        outbound6=a.outbound6,
        search=(),  # slirp4netns announces no search list
        dhcp_search=False,
        ns_ifname=a.tapname,
        ns_mac=a.macaddress,
        config_net=a.configure,
        no_dhcpv6=True,  # slirp4netns has none (a namespace has no client anyway)
        target_pid=a.target_pid,
        netns=a.netns_path,
        userns=a.userns_path,
        no_netns_quit=True,  # slirp4netns runs until killed or its exit fd says so
        egress_deny=tuple(deny),
        api_socket=a.api_socket,  # slirp4netns's JSON API, served by the parent (setup/api.py)
    )


def banner(a: SlirpArgs) -> str:
    """What slirp4netns prints on stdout when it starts."""
    lines = ["Starting slirp (passt-sep)",
             f"* MTU:             {a.mtu}",
             f"* Network:         {a.network.network_address}",
             f"* Netmask:         {a.network.netmask}",
             f"* Gateway:         {a.gateway}",
             f"* DNS:             {a.dns}" + (" (disabled)" if a.disable_dns else ""),
             f"* Recommended IP:  {a.guest}"]
    if a.api_socket:
        lines.append(f"* API Socket:      {a.api_socket}")
    if a.outbound4:
        lines.append(f"* Outbound IPv4:    {a.outbound4}")
    if a.outbound6:
        lines.append(f"* Outbound IPv6:    {a.outbound6}")
    if a.macaddress:
        lines.append(f"* MAC address:     {':'.join(f'{b:02x}' for b in a.macaddress)}")
    if not a.disable_host_loopback:
        lines.append(f"WARNING: 127.0.0.1:* on the host is accessible as {a.gateway} (set "
                     "--disable-host-loopback to prohibit connecting to 127.0.0.1:*)")
    return "\n".join(lines) + "\n"


def main(argv: list[str], argv0: str = PROG) -> int:
    """Run slirp4netns's command line; returns the exit status."""
    try:
        a = parse(argv)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    if a.action == "help":
        sys.stdout.write(usage(argv0))
        return 0
    if a.action == "version":
        sys.stdout.write(version_text())
        return 0
    for w in a.warnings:
        sys.stdout.write(w + "\n")
    sys.stdout.write(banner(a))
    sys.stdout.flush()
    from .setup.slirpparent import SlirpParent  # not before: --help is probed before every start

    try:
        return SlirpParent(to_options(a), PROG, a.ready_fd, a.exit_fd).run()
    except SetupError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    except KeyboardInterrupt:
        return 130
