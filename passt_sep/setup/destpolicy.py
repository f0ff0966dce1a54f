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
3. the operator's egress rules (--egress-deny, --egress-allow; grammar in
   passt_sep/egress.py), matched against the destination as the host sees
   it, after step 1 (so ``--egress-deny 127.0.0.0/8`` also closes the
   mapped gateway): refused when a deny rule matches; else, when any allow
   rule is given, refused unless one matches. A rule with ports covers TCP
   and UDP to those ports; one without covers every protocol and port.
   Without rules (the default) this step costs one test.

Each refusal is counted (``refused``; ``egress_refused`` for step 3) and
logged once per destination (protocol, host-side address, port) and
LOG_INTERVAL, from a bounded memory of LOG_MEMORY destinations: egress
refusals at info level (the operator asked for them), the others at debug
level (a guest's business, as before).

A refusal is an errno: EPERM when the protocol or family is off, EACCES
for a destination the guest may not reach (TCP answers it with a RST; UDP
and ICMP drop the datagram). Bytes are compared, not ipaddress objects:
this runs once per new flow, on the path of every new connection.
"""

from __future__ import annotations

import errno
import socket
import time
from collections import namedtuple

from ..config import Config
from ..egress import EgressRule
from ..log import log
from ..record import record

PROTO_TCP = socket.IPPROTO_TCP
PROTO_UDP = socket.IPPROTO_UDP
PROTO_ICMP = socket.IPPROTO_ICMP  # ICMPv6 echo too: one name for "echo"
DNS_PORT = 53
PROTO_NAMES = {PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMP: "ICMP echo"}
LOG_INTERVAL = 60.0  # seconds between two log lines about one destination
LOG_MEMORY = 256  # destinations remembered for that; beyond, refusals are only counted


TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Target(NamedTuple):
        """An approved destination as the host sees it (a tuple: made once per
        new flow, where a frozen dataclass costs a few times more)."""

        addr: str  # host-side address, as socket calls take it
        port: int  # host-side port (0 for ICMP)
        loopback: bool  # the host's loopback: --outbound and --outbound-if* do not apply
else:  # the same class, without importing typing
    Target = namedtuple("Target", "addr port loopback")


@record(frozen=True)
class _FamilyRules:
    """The mapping of one family, as bytes and strings."""

    lo_mapped: bytes | None  # the address leading to the host's loopback
    guest_mapped: bytes | None  # --map-guest-addr ...
    guest_addr: str  # ... leads to the guest's own address on the host
    guest_raw: bytes
    loopback: str
    loopback_raw: bytes
    dns_match: bytes | None  # --dns-forward: this address's port 53 ...
    dns_host: str  # ... goes here
    dns_host_raw: bytes
    dns_host_loopback: bool
    deny: tuple[EgressRule, ...]  # --egress-deny rules of this family
    allow: tuple[EgressRule, ...]  # --egress-allow rules of this family

    @classmethod
    def of(cls, cfg: Config, version: int) -> _FamilyRules | None:
        """The rules of one family; None when the family is off."""
        fam = cfg.v4 if version == 4 else cfg.v6
        if fam is None:
            return None
        dns = fam.dns_match is not None and fam.dns_host is not None
        loopback = "127.0.0.1" if version == 4 else "::1"
        o = cfg.opts
        return cls(lo_mapped=fam.host_lo.packed if fam.host_lo is not None else None,
                   guest_mapped=fam.guest_map.packed if fam.guest_map is not None else None,
                   guest_addr=str(fam.addr),
                   guest_raw=fam.addr.packed,
                   loopback=loopback,
                   loopback_raw=socket.inet_pton(socket.AF_INET if version == 4 else socket.AF_INET6, loopback),
                   dns_match=fam.dns_match.packed if dns and fam.dns_match is not None else None,
                   dns_host=str(fam.dns_host) if dns else "",
                   dns_host_raw=fam.dns_host.packed if dns and fam.dns_host is not None else b"",
                   dns_host_loopback=bool(dns and fam.dns_host is not None and fam.dns_host.is_loopback),
                   deny=tuple(r for r in o.egress_deny if r.version == version),
                   allow=tuple(r for r in o.egress_allow if r.version == version))


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
        # any egress rule at all: without, step 3 is this one test
        self.egress = bool(cfg.opts.egress_deny or cfg.opts.egress_allow)
        self.allow_only = bool(cfg.opts.egress_allow)  # with any allow rule, the rest is denied
        self.refused = 0  # every refusal (EACCES)
        self.egress_refused = 0  # of which by --egress-deny/--egress-allow
        self.unlogged = 0  # refusals not logged because LOG_MEMORY was full
        self._logged: dict[tuple[int, bytes, int], list[float]] = {}  # key: [last line, refused since]
        self._pruned = 0.0

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
        if len(raw) != (4 if v4 else 16):
            return errno.EPERM  # (ipc requests always carry 16 bytes)
        if proto != PROTO_ICMP and port == 0:
            return self._refuse(proto, family, raw, port, "port 0", False)
        loopback = False
        if proto != PROTO_ICMP and port == DNS_PORT and raw == rules.dns_match:
            dest, host_raw, loopback = rules.dns_host, rules.dns_host_raw, rules.dns_host_loopback
        elif raw == rules.lo_mapped:
            dest, host_raw, loopback = rules.loopback, rules.loopback_raw, True
        elif raw == rules.guest_mapped:
            dest, host_raw = rules.guest_addr, rules.guest_raw
        elif forbidden(raw, v4):
            return self._refuse(proto, family, raw, port, "not a unicast destination", False)
        else:
            dest, host_raw = socket.inet_ntop(family, raw), raw
        if self.egress:
            why = self._egress_refusal(rules, proto, host_raw, port)
            if why is not None:
                return self._refuse(proto, family, host_raw, port, why, True)
        return Target(dest, port, loopback)

    def _egress_refusal(self, rules: _FamilyRules, proto: int, host_raw: bytes, port: int) -> str | None:
        """Why the operator's rules refuse this destination; None if they let it through."""
        a = int.from_bytes(host_raw, "big")
        p = None if proto == PROTO_ICMP else port
        for r in rules.deny:
            if r.matches(a, p):
                return f"--egress-deny {r.spec}"
        if self.allow_only:
            for r in rules.allow:
                if r.matches(a, p):
                    return None
            return "no --egress-allow rule matches"
        return None

    def _refuse(self, proto: int, family: int, raw: bytes, port: int, why: str, egress: bool) -> int:
        """Count a refusal, log it (rate limited per destination), and return EACCES."""
        self.refused += 1
        if egress:
            self.egress_refused += 1
        key = (proto, raw, port)
        now = time.monotonic()
        seen = self._logged.get(key)
        if seen is not None:
            if now - seen[0] < LOG_INTERVAL:
                seen[1] += 1
                return errno.EACCES
            del self._logged[key]  # re-entered below: the newest go last
        elif len(self._logged) >= LOG_MEMORY and not self._prune(now):
            self.unlogged += 1
            return errno.EACCES
        self._logged[key] = [now, 0.0]
        since = f" ({int(seen[1])} more since the last line)" if seen is not None and seen[1] else ""
        if self.unlogged:
            since += f" ({self.unlogged} other refusals not logged)"
            self.unlogged = 0
        where = socket.inet_ntop(family, raw)
        if family == socket.AF_INET6:
            where = f"[{where}]"
        msg = (f"refused {PROTO_NAMES.get(proto, str(proto))} to {where}"
               f"{f':{port}' if proto != PROTO_ICMP else ''}: {why}{since}")
        if egress:
            log.info(f"egress: {msg}")
        else:
            log.debug(f"destination: {msg}")
        return errno.EACCES

    def _prune(self, now: float) -> bool:
        """Forget destinations last logged LOG_INTERVAL ago (at most once a
        second); whether there is room now."""
        if now - self._pruned >= 1.0:
            self._pruned = now
            for k in [k for k, v in self._logged.items() if now - v[0] >= LOG_INTERVAL]:
                del self._logged[k]
        return len(self._logged) < LOG_MEMORY
