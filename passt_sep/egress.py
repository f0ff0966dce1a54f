# SPDX-License-Identifier: GPL-2.0-or-later
"""The operator's egress rules: --egress-deny and --egress-allow SPEC.

Owns the grammar of SPEC and the parsed rule; setup/destpolicy.py applies
the rules (to the destination as the host sees it, after the address
mappings). Grammar::

    SPEC  := ADDR[/PREFIX][:PORTS]            IPv4
           | ADDR[/PREFIX]                      IPv6, no ports
           | '[' ADDR[/PREFIX] ']'[:PORTS]      IPv6 (or IPv4), ports allowed
    PORTS := RANGE[,RANGE...]
    RANGE := PORT[-PORT]                        1 to 65535

PREFIX defaults to the full length (one address); host bits below the
prefix are ignored (``192.0.2.7/24`` is ``192.0.2.0/24``). A rule with
PORTS matches TCP and UDP to those ports only; a rule without matches
every protocol (TCP, UDP, ICMP echo) and every port. Port ranges take the
-t grammar's ranges and lists, not its ``none``/``auto``/``all``,
exclusions (``~``) or remapping (``:``), which mean nothing here.
"""

from __future__ import annotations

import ipaddress

from .errors import UsageError
from .record import record


@record(frozen=True)
class EgressRule:
    """One --egress-deny or --egress-allow rule, ready for integer matching."""

    spec: str  # as given, for log lines
    version: int  # 4 or 6
    net: int  # network address as an integer, host bits cleared
    mask: int
    ports: tuple[tuple[int, int], ...] = ()  # inclusive ranges; empty: every port and protocol

    def matches(self, addr: int, port: int | None) -> bool:
        """Whether the rule covers addr (an int of the rule's family) and port
        (None: ICMP, which only a rule without ports covers)."""
        if addr & self.mask != self.net:
            return False
        if not self.ports:
            return True
        if port is None:
            return False
        for lo, hi in self.ports:
            if lo <= port <= hi:
                return True
        return False


def _bad(opt: str, spec: str, why: str) -> UsageError:
    return UsageError(f"Invalid {opt} rule '{spec}': {why}")


def _ports(opt: str, spec: str, text: str) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        a, sep, b = item.partition("-")
        for t in (a, b) if sep else (a,):
            if not t.isdigit() or not t.isascii():
                raise _bad(opt, spec, f"bad port range '{item}'")
        first = int(a)
        last = int(b) if sep else first
        if not 1 <= first <= 65535 or not 1 <= last <= 65535:
            raise _bad(opt, spec, f"port out of range in '{item}' (1 to 65535)")
        if last < first:
            raise _bad(opt, spec, f"port range '{item}' is reversed")
        out.append((first, last))
    return tuple(sorted(out))


def parse_egress_spec(opt: str, spec: str) -> EgressRule:
    """Parse one SPEC of ``opt`` (``--egress-deny``/``--egress-allow``).

    Raises UsageError naming the option and the value for anything malformed.
    """
    text, ports_text = spec, None
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise _bad(opt, spec, "missing ']'")
        text, rest = spec[1:close], spec[close + 1:]
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                raise _bad(opt, spec, "expected ':PORTS' after ']'")
            ports_text = rest[1:]
    elif spec.count(":") == 1:  # IPv4 with ports (IPv6 has two colons or more)
        text, _, ports_text = spec.partition(":")
        if not ports_text:
            raise _bad(opt, spec, "empty port list")
    addr_text, slash, prefix_text = text.partition("/")
    try:
        ip = ipaddress.ip_address(addr_text)
    except ValueError:
        raise _bad(opt, spec, f"bad address '{addr_text}'") from None
    bits = 32 if ip.version == 4 else 128
    if slash:
        if not prefix_text.isdigit() or not prefix_text.isascii() or int(prefix_text) > bits:
            raise _bad(opt, spec, f"bad prefix length '{prefix_text}' (0 to {bits})")
        prefix = int(prefix_text)
    else:
        prefix = bits
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    ports = _ports(opt, spec, ports_text) if ports_text is not None else ()
    return EgressRule(spec=spec, version=ip.version, net=int(ip) & mask, mask=mask, ports=ports)
