# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests of the destination policy (setup/destpolicy.py) and of the
--egress-deny / --egress-allow SPEC grammar (passt_sep/egress.py).

No sockets: DestPolicy.resolve is a pure decision from bytes. What is
checked: the mappings, the forbidden destinations for every protocol
alike, the egress rules matched after the mapping (deny first, then allow
as an allow-list), ports only for TCP and UDP, the refusal log's rate
limit and its bounded memory, and SPEC parsing with its errors.
"""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from passt_sep.cli import Options, parse_args
from passt_sep.config import V4, V6, Config
from passt_sep.egress import EgressRule, parse_egress_spec
from passt_sep.errors import UsageError
from passt_sep.setup import destpolicy
from passt_sep.setup.destpolicy import PROTO_ICMP, PROTO_TCP, PROTO_UDP, DestPolicy, Target

GW4, GW6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")
ADDR4 = IPv4Address("192.0.2.10")


def _policy(deny: tuple[str, ...] = (), allow: tuple[str, ...] = (), map_gw: bool = True) -> DestPolicy:
    o = Options(mode="pasta", egress_deny=tuple(parse_egress_spec("--egress-deny", d) for d in deny),
                egress_allow=tuple(parse_egress_spec("--egress-allow", a) for a in allow))
    v4 = V4(addr=ADDR4, prefix=24, gw=GW4, dns=(), dns_match=IPv4Address("192.0.2.53"),
            dns_host=IPv4Address("198.51.100.53"), ifname="eth0", host_lo=GW4 if map_gw else None,
            guest_map=IPv4Address("169.254.1.2"))
    v6 = V6(addr=IPv6Address("2001:db8::10"), prefix=64, gw=GW6, our_ll=IPv6Address("fe80::1"), dns=(),
            dns_match=None, dns_host=None, ifname="eth0", host_lo=GW6 if map_gw else None, guest_map=None)
    return DestPolicy(Config(opts=o, mode="pasta", v4=v4, v6=v6, our_mac=b"\x02" * 6, mtu=65520,
                             ns_ifname="eth0", search=()))


def _resolve(p: DestPolicy, proto: int, addr: str, port: int = 0) -> Target | int:
    ip = ip_address(addr)
    fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return p.resolve(proto, fam, ip.packed.ljust(16, b"\0"), port)


# -- the mappings and forbidden destinations, every protocol alike -------------

@pytest.mark.parametrize("proto,port", [(PROTO_TCP, 80), (PROTO_UDP, 80), (PROTO_ICMP, 0)])
def test_mappings_and_forbidden_destinations_agree_across_protocols(proto: int, port: int) -> None:
    p = _policy()
    assert _resolve(p, proto, str(GW4), port) == Target("127.0.0.1", port, True)
    assert _resolve(p, proto, str(GW6), port) == Target("::1", port, True)
    assert _resolve(p, proto, "169.254.1.2", port) == Target(str(ADDR4), port, False)  # --map-guest-addr
    assert _resolve(p, proto, "192.0.2.2", port) == Target("192.0.2.2", port, False)
    for bad in ("127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "169.254.1.1", "::1", "::",
                "ff02::1", "fe80::1", "::ffff:127.0.0.1", "::127.0.0.1"):
        assert _resolve(p, proto, bad, port) == errno.EACCES, bad
    assert p.egress_refused == 0 and p.refused == 11


def test_dns_forward_only_for_tcp_and_udp_port_53() -> None:
    p = _policy()
    assert _resolve(p, PROTO_UDP, "192.0.2.53", 53) == Target("198.51.100.53", 53, False)
    assert _resolve(p, PROTO_TCP, "192.0.2.53", 53) == Target("198.51.100.53", 53, False)
    assert _resolve(p, PROTO_TCP, "192.0.2.53", 54) == Target("192.0.2.53", 54, False)
    assert _resolve(p, PROTO_ICMP, "192.0.2.53") == Target("192.0.2.53", 0, False)


def test_port_zero_family_off_and_short_address() -> None:
    p = _policy()
    assert _resolve(p, PROTO_TCP, "192.0.2.2", 0) == errno.EACCES
    assert _resolve(p, PROTO_ICMP, "192.0.2.2", 0) != errno.EACCES
    p.rules[socket.AF_INET6] = None
    assert _resolve(p, PROTO_TCP, "2001:db8::2", 80) == errno.EPERM
    assert p.resolve(PROTO_TCP, socket.AF_INET, b"\xc0\x00", 80) == errno.EPERM


# -- egress rules ----------------------------------------------------------------

def test_deny_loopback_closes_the_mapped_gateway() -> None:
    """Matched as the host sees the destination: the gateway is 127.0.0.1 there."""
    p = _policy(deny=("127.0.0.0/8", "::1"))
    for proto, port in ((PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_ICMP, 0)):
        assert _resolve(p, proto, str(GW4), port) == errno.EACCES
        assert _resolve(p, proto, str(GW6), port) == errno.EACCES
        assert _resolve(p, proto, "192.0.2.2", port) == Target("192.0.2.2", port, False)
    assert p.egress_refused == 6
    # the gateway itself, unmapped, is another address: not covered by 127/8
    q = _policy(deny=("127.0.0.0/8",), map_gw=False)
    assert _resolve(q, PROTO_TCP, str(GW4), 80) == Target(str(GW4), 80, False)


def test_deny_with_ports_covers_tcp_and_udp_on_those_ports_only() -> None:
    p = _policy(deny=("192.0.2.0/24:22,8000-8080",))
    assert _resolve(p, PROTO_TCP, "192.0.2.2", 22) == errno.EACCES
    assert _resolve(p, PROTO_UDP, "192.0.2.200", 8080) == errno.EACCES
    assert _resolve(p, PROTO_TCP, "192.0.2.2", 8000) == errno.EACCES
    assert isinstance(_resolve(p, PROTO_TCP, "192.0.2.2", 8081), Target)
    assert isinstance(_resolve(p, PROTO_TCP, "192.0.3.2", 22), Target)
    assert isinstance(_resolve(p, PROTO_ICMP, "192.0.2.2"), Target)  # ports: no ICMP


def test_allow_is_an_allow_list_and_deny_wins() -> None:
    p = _policy(allow=("192.0.2.0/24", "127.0.0.1:8080", "[2001:db8::/64]:443"),
                deny=("192.0.2.66",))
    assert isinstance(_resolve(p, PROTO_TCP, "192.0.2.2", 80), Target)
    assert isinstance(_resolve(p, PROTO_ICMP, "192.0.2.2"), Target)
    assert _resolve(p, PROTO_TCP, "192.0.2.66", 80) == errno.EACCES  # deny first
    assert _resolve(p, PROTO_ICMP, "192.0.2.66") == errno.EACCES
    assert _resolve(p, PROTO_TCP, "198.51.100.1", 80) == errno.EACCES  # no allow matches
    assert isinstance(_resolve(p, PROTO_TCP, str(GW4), 8080), Target)  # the gateway, as 127.0.0.1:8080
    assert _resolve(p, PROTO_TCP, str(GW4), 8081) == errno.EACCES
    assert _resolve(p, PROTO_ICMP, str(GW4)) == errno.EACCES  # a rule with ports allows no echo
    assert isinstance(_resolve(p, PROTO_TCP, "2001:db8::2", 443), Target)
    assert _resolve(p, PROTO_UDP, "2001:db8::2", 444) == errno.EACCES
    assert _resolve(p, PROTO_TCP, "2001:db9::2", 443) == errno.EACCES
    assert p.egress_refused == 7


def test_allow_of_one_family_refuses_the_other() -> None:
    p = _policy(allow=("0.0.0.0/0",))
    assert isinstance(_resolve(p, PROTO_TCP, "198.51.100.1", 80), Target)
    assert _resolve(p, PROTO_TCP, "2001:db8::2", 80) == errno.EACCES


def test_refusals_are_logged_once_per_destination_and_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    monkeypatch.setattr(destpolicy.log, "info", lines.append)
    now = [100.0]
    monkeypatch.setattr(destpolicy.time, "monotonic", lambda: now[0])
    p = _policy(deny=("198.51.100.0/24",))
    for _ in range(50):
        assert _resolve(p, PROTO_TCP, "198.51.100.1", 80) == errno.EACCES
    _resolve(p, PROTO_TCP, "198.51.100.1", 81)  # another destination: its own line
    assert len(lines) == 2 and p.egress_refused == 51
    assert lines[0] == "egress: refused TCP to 198.51.100.1:80: --egress-deny 198.51.100.0/24"
    now[0] += destpolicy.LOG_INTERVAL
    _resolve(p, PROTO_TCP, "198.51.100.1", 80)
    assert len(lines) == 3 and "(49 more since the last line)" in lines[2]
    # a bounded memory: past LOG_MEMORY fresh destinations, refusals are only counted
    for i in range(destpolicy.LOG_MEMORY + 100):
        _resolve(p, PROTO_UDP, "198.51.100.2", 1 + i)
    assert len(p._logged) <= destpolicy.LOG_MEMORY
    # (the line about port 81 is LOG_INTERVAL old: forgotten when the memory
    # first fills; the one about port 80 is not)
    assert len(lines) == 3 + destpolicy.LOG_MEMORY - 1 and p.unlogged == 101
    now[0] += destpolicy.LOG_INTERVAL  # old entries forgotten: logging resumes, with the count
    _resolve(p, PROTO_ICMP, "198.51.100.3")
    assert lines[-1].startswith("egress: refused ICMP echo to 198.51.100.3: --egress-deny")
    assert "(101 other refusals not logged)" in lines[-1] and p.unlogged == 0


def test_no_rules_costs_one_test() -> None:
    p = _policy()
    assert not p.egress and p.rules[socket.AF_INET] is not None and not p.rules[socket.AF_INET].deny


# -- SPEC ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec,version,net,prefix,ports", [
    ("192.0.2.1", 4, "192.0.2.1", 32, ()),
    ("192.0.2.7/24", 4, "192.0.2.0", 24, ()),  # host bits ignored
    ("0.0.0.0/0:443", 4, "0.0.0.0", 0, ((443, 443),)),
    ("10.0.0.0/8:80,1000-2000,22", 4, "10.0.0.0", 8, ((22, 22), (80, 80), (1000, 2000))),
    ("[192.0.2.1]:53", 4, "192.0.2.1", 32, ((53, 53),)),
    ("2001:db8::/64", 6, "2001:db8::", 64, ()),
    ("::1", 6, "::1", 128, ()),
    ("[2001:db8::/64]:443", 6, "2001:db8::", 64, ((443, 443),)),
    ("[fe80::1]", 6, "fe80::1", 128, ()),
    ("::/0", 6, "::", 0, ()),
])
def test_spec_parses(spec: str, version: int, net: str, prefix: int, ports: tuple) -> None:
    r = parse_egress_spec("--egress-deny", spec)
    bits = 32 if version == 4 else 128
    assert r == EgressRule(spec, version, int(ip_address(net)), ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1),
                           ports)


@pytest.mark.parametrize("spec,why", [
    ("", "bad address ''"),
    ("example.com", "bad address"),
    ("192.0.2.256", "bad address"),
    ("192.0.2.1/33", "bad prefix length '33'"),
    ("192.0.2.1/", "bad prefix length ''"),
    ("192.0.2.1/-1", "bad prefix length"),
    ("2001:db8::/129", "bad prefix length '129'"),
    ("192.0.2.1:", "empty port list"),
    ("192.0.2.1:0", "port out of range"),
    ("192.0.2.1:65536", "port out of range"),
    ("192.0.2.1:80-22", "reversed"),
    ("192.0.2.1:80,", "bad port range ''"),
    ("192.0.2.1:all", "bad port range 'all'"),
    ("192.0.2.1:~22", "bad port range"),
    ("192.0.2.1:80:8080", "bad address"),  # two colons: not IPv4 with ports
    ("[2001:db8::1", "missing ']'"),
    ("[2001:db8::1]443", "expected ':PORTS'"),
    ("[2001:db8::1]:", "expected ':PORTS'"),
    ("2001:db8::1:443x", "bad address"),
    ("192.0.2.1:８０", "bad port range"),  # non-ASCII digits
])
def test_bad_spec_is_a_clear_usage_error(spec: str, why: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_egress_spec("--egress-allow", spec)
    msg = str(e.value)
    assert msg.startswith(f"Invalid --egress-allow rule '{spec}': ") and why in msg and "\n" not in msg, msg


def test_options_in_both_modes_repeatable() -> None:
    for mode in ("passt", "pasta"):
        o = parse_args(mode, ["--egress-deny", "127.0.0.0/8", "--egress-deny=::1",
                              "--egress-allow", "192.0.2.0/24:80"])
        assert [r.spec for r in o.egress_deny] == ["127.0.0.0/8", "::1"]
        assert [r.spec for r in o.egress_allow] == ["192.0.2.0/24:80"]
    assert parse_args("pasta", []).egress_deny == () == parse_args("pasta", []).egress_allow


@pytest.mark.parametrize("mode", ["passt", "pasta"])
def test_bad_spec_exits_1_with_one_line(mode: str) -> None:
    r = subprocess.run([sys.executable, "-m", "passt_sep.main", mode, "--egress-deny", "192.0.2.1:99999"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"{mode}: Invalid --egress-deny rule '192.0.2.1:99999': port out of range in '99999' (1 to 65535)"]


def test_help_names_the_options() -> None:
    for mode in ("passt", "pasta"):
        r = subprocess.run([sys.executable, "-m", "passt_sep.main", mode, "--help"],
                           capture_output=True, text=True, timeout=30)
        assert "--egress-deny SPEC" in r.stdout and "--egress-allow SPEC" in r.stdout
