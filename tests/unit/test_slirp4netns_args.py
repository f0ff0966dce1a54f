# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns front end's command line and the pasta Options it becomes."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

import pytest

from passt_sep.config import build_config
from passt_sep.errors import UsageError
from passt_sep.setup.destpolicy import DestPolicy, Target
from passt_sep.setup.hostaddr import HostInfo
from passt_sep.slirp4netns import parse, to_options, usage

IP = ipaddress.ip_address


def test_rootlesskit_argv() -> None:
    a = parse(["--mtu", "65520", "-r", "0", "--disable-host-loopback", "--api-socket", "/tmp/s.sock",
               "1234", "tap0"])
    o = to_options(a)
    assert (o.target_pid, o.netns, o.ns_ifname, o.mtu, o.config_net) == (1234, None, "tap0", 65520, False)
    assert a.ready_fd == 0 and o.api_socket == "/tmp/s.sock" and o.foreground
    assert (o.addr4, o.prefix4, o.gw4, o.dns_forward4) == (IP("10.0.2.100"), 24, IP("10.0.2.2"), IP("10.0.2.3"))
    assert not o.map_gw and not o.ipv6
    assert [r.spec for r in o.egress_deny] == ["10.0.2.2"]
    assert o.tcp_in.mode == o.udp_in.mode == o.tcp_out.mode == o.udp_out.mode == "none"


def test_podman_argv_permuted_and_abbreviated(tmp_path) -> None:
    """getopt_long's ways: operands anywhere, --name=value, unique prefixes, clustered flags."""
    ns = tmp_path / "netns"
    ns.touch()
    a = parse(["--disable-host-loop", "--mtu=65520", "--enable-sandbox", "--enable-seccomp",
               "--netns-type=path", str(ns), "-6c", "-r0", "-e", "1", "tap0"])
    o = to_options(a)
    assert (o.netns, o.target_pid, o.config_net, o.ipv6) == (str(ns), None, True, True)
    assert a.exit_fd == 1 and a.ready_fd == 0
    assert (o.addr6, o.gw6, o.dns_forward6) == (IP("fd00::100"), IP("fd00::2"), IP("fd00::3"))
    assert not o.config_net6 and not o.no_ra  # SLAAC from our router advertisements
    assert sorted(r.spec for r in o.egress_deny) == ["10.0.2.2", "fd00::2"]


def test_cidr_and_disable_dns() -> None:
    o = to_options(parse(["--cidr=10.5.0.0/16", "--disable-dns", "1", "tap0"]))
    assert (o.addr4, o.prefix4, o.gw4, o.dns_forward4) == (IP("10.5.0.100"), 16, IP("10.5.0.2"), None)
    assert o.map_gw and [r.spec for r in o.egress_deny] == ["10.5.0.3"]


def _policy(args: list[str], resolver: str = "192.0.2.53") -> DestPolicy:
    host = HostInfo(v4=None, v6=None, mac=None, mtu=None, ifname=None,
                    nameservers=(IP(resolver),), search=())
    return DestPolicy(build_config(to_options(parse([*args, "1", "tap0"])), host))


def _to(p: DestPolicy, addr: str, port: int) -> Target | int:
    return p.resolve(socket.IPPROTO_TCP, socket.AF_INET, socket.inet_aton(addr), port)


def test_addressing_as_the_broker_sees_it() -> None:
    """10.0.2.2 is the host's loopback, 10.0.2.3:53 the host's resolver; with
    --disable-host-loopback and --disable-dns they lead nowhere (refused)."""
    p = _policy([])
    assert _to(p, "10.0.2.2", 8080) == Target("127.0.0.1", 8080, True)
    assert _to(p, "10.0.2.3", 53) == Target("192.0.2.53", 53, False)
    p = _policy(["--disable-host-loopback", "--disable-dns"])
    assert _to(p, "10.0.2.2", 8080) == errno.EACCES
    assert _to(p, "10.0.2.3", 53) == errno.EACCES
    assert _to(p, "192.0.2.80", 80) == Target("192.0.2.80", 80, False)


def test_outbound_addr_and_userns(tmp_path) -> None:
    u = tmp_path / "user"
    u.touch()
    o = to_options(parse(["--outbound-addr=192.0.2.10", "--outbound-addr6", "2001:db8::10",
                          "--userns-path", str(u), "1", "tap0"]))
    assert (o.outbound4, o.outbound6, o.userns) == (IP("192.0.2.10"), IP("2001:db8::10"), str(u))
    assert to_options(parse(["--outbound-addr=lo", "1", "tap0"])).outbound4 == IP("127.0.0.1")


@pytest.mark.parametrize("argv, word", [
    (["--bogus", "1", "tap0"], "'--bogus'"),
    (["--enable", "1", "tap0"], "ambiguous option '--enable'"),
    (["-z", "1", "tap0"], "'z'"),
    (["--configure=1", "1", "tap0"], "--configure"),
    (["--mtu", "67", "1", "tap0"], "--mtu"),
    (["--mtu", "65522", "1", "tap0"], "--mtu"),
    (["--cidr", "10.0.2.0/26", "1", "tap0"], "prefix length"),
    (["--cidr", "10.0.2.1/24", "1", "tap0"], "network address"),
    (["--cidr", "fd00::/64", "1", "tap0"], "invalid CIDR"),
    (["--netns-type", "tapfd", "3"], "--netns-type"),
    (["--target-type", "bess", "/x"], "--target-type"),
    (["--userns-path", "/nonexistent/user", "1", "tap0"], "/nonexistent/user"),
    (["--outbound-addr", "no-such-if0", "1", "tap0"], "--outbound-addr"),
    (["--outbound-addr6", "192.0.2.1", "1", "tap0"], "--outbound-addr6"),
    (["--macaddress", "02:00:00:00:00:01", "1", "tap0"], "--macaddress"),
    (["-c", "--macaddress", "02:00:00:00:00", "1", "tap0"], "--macaddress"),
    (["-e", "x", "1", "tap0"], "exit-fd"),
    (["0", "tap0"], "PID"),
    (["1", "a/b"], "TAPNAME"),
    ([], "PID|PATH"),
])
def test_bad_arguments_name_themselves(argv: list[str], word: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(argv)
    assert word in str(e.value) and "\n" not in str(e.value)


def test_help_version_and_deprecated_spellings() -> None:
    assert parse(["--mtu", "1500", "-h"]).action == "help"
    assert parse(["-v"]).action == "version"
    text = usage("slirp4netns")
    for feature in ("--disable-host-loopback", "--mtu", "--enable-sandbox", "--enable-seccomp",
                    "--cidr", "--outbound-addr", "--enable-ipv6", "--netns-type", "--userns-path",
                    "--api-socket"):
        assert feature in text  # podman's and rootlesskit's feature probes
    a = parse(["--no-host-loopback", "--create-sandbox", "1", "tap0", "extra"])
    assert a.disable_host_loopback and a.enable_sandbox
    assert len(a.warnings) == 3 and "too many arguments" in a.warnings[-1]


def test_fds_must_be_open() -> None:
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(UsageError, match=f"ready-fd {w}"):
            parse(["-r", str(w), "1", "tap0"])
    finally:
        os.close(r)
