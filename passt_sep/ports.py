# SPDX-License-Identifier: GPL-2.0-or-later
"""Port forwarding specifications of -t, -u, -T and -U.

Grammar, as passt(1) documents it::

    none | auto | all | [ADDR][%IFNAME]/SPEC | SPEC
    SPEC := ITEM[,ITEM...]
    ITEM := [~]PORT[-PORT][:PORT[-PORT]]

``~`` items are exclusions; a spec made only of exclusions means every
non-ephemeral port (1-49151) except those. A mapped range ``A-B:C-D`` must
have the same length on both sides. Overlapping ranges are an error. Newer
passt accepts ``ADDR/all`` and ``%IF/all`` (libvirt and KubeVirt generate
them), and so do we. Several options of one kind add up, except that
``none``/``auto``/``all`` cannot be mixed with anything else.
"""

from __future__ import annotations

import ipaddress

from .errors import UsageError
from .record import field, record

EPHEMERAL_MIN = 49152  # first port of the kernel's default ephemeral range
IFNAMSIZ = 16


@record(frozen=True)
class PortRange:
    """Ports first..last forwarded to target_first.. on the other side."""

    first: int
    last: int
    target: int
    addr: str | None = None  # bind address on the listening side
    ifname: str | None = None  # SO_BINDTODEVICE on the listening side

    def ports(self) -> range:
        """The listening ports of this range."""
        return range(self.first, self.last + 1)


@record(frozen=True)
class PortFwd:
    """Forwarding for one protocol and direction."""

    mode: str = "none"  # none, auto, spec, all
    ranges: tuple[PortRange, ...] = ()
    exclude: frozenset[int] = field(default_factory=frozenset)
    explicit_none: bool = False  # 'none' was given, so nothing may follow

    def delta(self, port: int) -> int | None:
        """Target port for a listening port, or None if not forwarded."""
        for r in self.ranges:
            if r.first <= port <= r.last:
                return r.target + (port - r.first)
        return None


def _port(opt: str, spec: str, text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"Invalid port specifier for {opt}: '{spec}'")
    n = int(text)
    if n > 65535:
        raise UsageError(f"Invalid port specifier for {opt}: '{spec}' (port {n} out of range)")
    return n


def _range(opt: str, spec: str, text: str) -> tuple[int, int]:
    a, sep, b = text.partition("-")
    first = _port(opt, spec, a)
    last = _port(opt, spec, b) if sep else first
    if last < first:
        raise UsageError(f"Invalid port specifier for {opt}: '{spec}' (range {text} is reversed)")
    return first, last


def _prefix(opt: str, spec: str, text: str, allow: bool) -> tuple[str | None, str | None]:
    if not allow:
        raise UsageError(f"Address or interface not allowed for {opt}: '{spec}'")
    addr_text, _, ifname = text.partition("%")
    addr = None
    if addr_text:
        try:
            ip = ipaddress.ip_address(addr_text.strip("[]"))
        except ValueError:
            raise UsageError(f"Invalid address for {opt}: '{spec}'") from None
        addr = str(ip)
    if "%" in text and not (0 < len(ifname) < IFNAMSIZ):
        raise UsageError(f"Invalid interface name for {opt}: '{spec}'")
    return addr, (ifname or None)


def parse_port_spec(
    opt: str, spec: str, prev: PortFwd, *, allow_auto: bool, allow_all: bool, allow_prefix: bool
) -> PortFwd:
    """Add one -t/-u/-T/-U argument to what earlier ones gave.

    Raises UsageError naming the option and value for anything malformed.
    """
    if spec in ("none", "auto", "all"):
        if spec == "auto" and not allow_auto:
            raise UsageError(f"'auto' port forwarding is only allowed for pasta: {opt} {spec}")
        if spec == "all" and not allow_all:
            raise UsageError(f"'all' port forwarding is only allowed for passt: {opt} {spec}")
        if prev.mode != "none" or prev.ranges or prev.explicit_none:
            raise UsageError(f"Port forwarding mode '{spec}' conflicts with previous mode for {opt}")
        if spec == "all":
            return PortFwd("all", (PortRange(1, EPHEMERAL_MIN - 1, 1),))
        return PortFwd(spec, explicit_none=spec == "none")
    if prev.mode in ("auto", "all") or prev.explicit_none:
        raise UsageError(f"Port forwarding mode '{spec}' conflicts with previous mode for {opt}")
    addr = ifname = None
    body = spec
    if "/" in spec:
        pre, _, body = spec.rpartition("/")
        addr, ifname = _prefix(opt, spec, pre, allow_prefix)
    if body == "all":
        if not allow_all and not allow_prefix:
            raise UsageError(f"'all' port forwarding is only allowed for passt: {opt} {spec}")
        if prev.ranges:
            raise UsageError(f"Port forwarding mode 'all' conflicts with previous mode for {opt}")
        return PortFwd("all", (PortRange(1, EPHEMERAL_MIN - 1, 1, addr, ifname),))
    if not body:
        raise UsageError(f"Invalid port specifier for {opt}: '{spec}'")
    items = body.split(",")
    exclude: set[int] = set(prev.exclude)
    for item in items:
        if item.startswith("~"):
            a, b = _range(opt, spec, item[1:])
            exclude.update(range(a, b + 1))
    ranges = list(prev.ranges)
    taken: set[int] = set()
    for r in ranges:
        taken.update(r.ports())
    only_excl = all(i.startswith("~") for i in items)
    if only_excl:
        wanted = [(1, EPHEMERAL_MIN - 1, 1)]
    else:
        wanted = []
        for item in items:
            if item.startswith("~"):
                continue
            src, sep, dst = item.partition(":")
            a, b = _range(opt, spec, src)
            if sep:
                c, d = _range(opt, spec, dst)
                if d - c != b - a:
                    raise UsageError(f"Invalid port specifier for {opt}: '{spec}' (mapped ranges differ in length)")
            else:
                c = a
            wanted.append((a, b, c))
    for a, b, c in wanted:
        # split the range around exclusions so each piece keeps its delta
        start = None
        for p in range(a, b + 2):
            inside = p <= b and p not in exclude
            if inside and p in taken:
                raise UsageError(f"Overlapping port specifiers for {opt}: '{spec}' (port {p})")
            if inside and start is None:
                start = p
            elif not inside and start is not None:
                ranges.append(PortRange(start, p - 1, c + (start - a), addr, ifname))
                taken.update(range(start, p))
                start = None
    return PortFwd("spec", tuple(ranges), frozenset(exclude))
