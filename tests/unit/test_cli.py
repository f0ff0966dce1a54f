# SPDX-License-Identifier: GPL-2.0-or-later
"""Option parsing: passt/pasta spellings, defaults, and one-line errors."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from passt_sep.cli import parse_args
from passt_sep.config import Config, build_config
from passt_sep.errors import SetupError, UsageError
from passt_sep.ports import PortFwd
from passt_sep.setup.hostaddr import FamilyInfo, HostInfo


def test_pasta_defaults_forward_auto_and_keep_dns_private():
    o = parse_args("pasta", [])
    assert o.tcp_in.mode == o.udp_in.mode == o.tcp_out.mode == o.udp_out.mode == "auto"
    assert o.mtu == 65520
    assert not o.dhcp_dns and not o.dhcp_search
    assert o.map_gw


def test_passt_defaults_forward_nothing_and_send_dns():
    o = parse_args("passt", [])
    assert o.tcp_in == PortFwd() and o.udp_in == PortFwd()
    assert o.dhcp_dns and o.dhcp_search


def test_long_short_and_attached_values():
    o = parse_args("pasta", ["-fq", "-m1500", "--address=192.0.2.5", "-a", "2001:db8::5",
                             "--netmask", "255.255.255.0", "-g", "192.0.2.254", "--no-map-gw"])
    assert o.foreground and o.quiet and o.mtu == 1500
    assert o.addr4 == ipaddress.IPv4Address("192.0.2.5")
    assert o.addr6 == ipaddress.IPv6Address("2001:db8::5")
    assert o.prefix4 == 24 and not o.map_gw


def test_unique_prefix_of_long_option():
    assert parse_args("pasta", ["--config"]).config_net


def test_command_after_options_and_double_dash():
    assert parse_args("pasta", ["--config-net", "ip", "-br", "a"]).command == ("ip", "-br", "a")
    assert parse_args("pasta", ["--", "sh", "-c", "true"]).command == ("sh", "-c", "true")
    assert parse_args("pasta", ["1234"]).target_pid == 1234


def test_netns_name_means_run_netns():
    assert parse_args("pasta", ["--netns", "foo"]).netns == "/run/netns/foo"


def test_config_net_disables_ra():
    assert parse_args("pasta", ["--config-net"]).no_ra


def test_podman_style_ports():
    o = parse_args("pasta", ["--config-net", "-t", "8080-8080:80-80", "-u", "none", "-T", "none",
                             "-U", "none", "--no-map-gw", "--netns", "/run/user/1/netns/x"])
    assert o.tcp_in.delta(8080) == 80 and o.udp_in.mode == "none"


def test_libvirt_style_ports_accept_interface_all():
    o = parse_args("passt", ["--one-off", "--socket", "/tmp/x.socket", "--tcp-ports", "%eth0/all",
                             "--udp-ports", "192.0.2.1%eth0/80,~81-82"])
    assert o.tcp_in.mode == "all" and o.tcp_in.ranges[0].ifname == "eth0"
    assert o.udp_in.ranges[0].addr == "192.0.2.1"


def test_exclusions_only_means_all_but():
    o = parse_args("pasta", ["-t", "~20000-20010"])
    assert o.tcp_in.delta(22) == 22 and o.tcp_in.delta(20005) is None
    assert o.tcp_in.delta(49152) is None


@pytest.mark.parametrize("args, word", [
    (["-m", "67"], "--mtu"),
    (["-m", "abc"], "--mtu"),
    (["-a", "127.0.0.1"], "--address"),
    (["-a", "300.1.1.1"], "--address"),
    (["-M", "zz:00:00:00:00:00"], "--mac-addr"),
    (["-t", "70000"], "-t"),
    (["-t", "10-5"], "-t"),
    (["-t", "22-23:30"], "-t"),
    (["-t", "22", "-t", "22"], "-t"),
    (["-t", "none", "-t", "22"], "-t"),
    (["-T", "192.0.2.1/22"], "-T"),
    (["--bogus"], "--bogus"),
    (["-x"], "-x"),
    (["-s", "/tmp/s"], "-s"),
    (["--mtu"], "--mtu"),
    (["-q", "-d"], "--quiet"),
    (["-4", "-6"], "--ipv4-only"),
    (["--netns", "/x", "sh"], "--netns"),
    (["--log-size", "10"], "--log-size"),
    (["--pcap-size", "100"], "--pcap-size"),
    (["--pcap-size", "1G"], "--pcap-size"),
    (["-n", "33"], "--netmask"),
])
def test_bad_option_names_itself(args, word):
    with pytest.raises(UsageError) as e:
        parse_args("pasta", args)
    assert word in str(e.value)
    assert "\n" not in str(e.value)


def test_passt_rejects_positional_and_pasta_only_options():
    with pytest.raises(UsageError, match="Extra non-option"):
        parse_args("passt", ["foo"])
    with pytest.raises(UsageError, match="--config-net"):
        parse_args("passt", ["--config-net"])
    with pytest.raises(UsageError, match="auto"):
        parse_args("passt", ["-t", "auto"])


@pytest.mark.parametrize("args", [["-t", "99999"], ["--mtu", "1"], ["--nonsense"],
                                  ["-a", "not-an-ip"]])
def test_command_line_error_is_one_line_exit_1(args):
    r = subprocess.run([sys.executable, "-m", "passt_sep.main", "pasta", *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pasta: "), r.stderr
    assert "Traceback" not in r.stderr


def test_help_and_version():
    for args, want in ((["--help"], "Usage: pasta"), (["--version"], "pasta ")):
        r = subprocess.run([sys.executable, "-m", "passt_sep.main", "pasta", *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.startswith(want)


# -- address mappings (--map-host-loopback, --map-guest-addr: podman 5) ------------

def _host(nameservers: tuple = ()) -> HostInfo:
    return HostInfo(
        v4=FamilyInfo(2, "eth0", ipaddress.IPv4Address("192.0.2.10"), 24, ipaddress.IPv4Address("192.0.2.1")),
        v6=FamilyInfo(2, "eth0", ipaddress.IPv6Address("2001:db8::10"), 64,
                      ipaddress.IPv6Address("2001:db8::1")),
        mac=b"\x02\x00\x00\x00\x00\x01", mtu=1500, ifname="eth0", nameservers=nameservers, search=())


def _cfg(args: list[str], nameservers: tuple = ()) -> Config:
    return build_config(parse_args("pasta", args), _host(nameservers))


def test_gateway_leads_to_host_loopback_by_default():
    cfg = _cfg([])
    assert cfg.v4 is not None and cfg.v6 is not None
    assert cfg.v4.host_lo == cfg.v4.gw and cfg.v6.host_lo == cfg.v6.gw
    assert cfg.v4.guest_map is None and cfg.v6.guest_map is None


def test_podman5_map_guest_addr_and_no_map_gw():
    cfg = _cfg(["--config-net", "--dns-forward", "169.254.1.1", "-t", "none", "-u", "none", "-T", "none",
                "-U", "none", "--no-map-gw", "--quiet", "--map-guest-addr", "169.254.1.2"])
    assert cfg.v4 is not None and cfg.v6 is not None
    assert cfg.v4.guest_map == ipaddress.IPv4Address("169.254.1.2") and cfg.v6.guest_map is None
    assert cfg.v4.host_lo is None and cfg.v6.host_lo is None
    assert cfg.v4.dns_match == ipaddress.IPv4Address("169.254.1.1")


def test_map_host_loopback_moves_the_mapping_not_the_gateway():
    cfg = _cfg(["--map-host-loopback", "169.254.1.3", "--map-host-loopback", "fd00::3", "--no-map-gw"],
               nameservers=(ipaddress.IPv4Address("127.0.0.53"),))
    assert cfg.v4 is not None and cfg.v6 is not None
    assert cfg.v4.gw == ipaddress.IPv4Address("192.0.2.1")  # routes and DHCP keep the gateway
    assert cfg.v4.host_lo == ipaddress.IPv4Address("169.254.1.3")
    assert cfg.v6.host_lo == ipaddress.IPv6Address("fd00::3")
    # a loopback resolver is advertised as the address that leads to loopback
    assert cfg.v4.dns == (ipaddress.IPv4Address("169.254.1.3"),)
    assert cfg.v4.dns_match == ipaddress.IPv4Address("169.254.1.3")


def test_map_options_last_one_wins_and_none_clears():
    o = parse_args("pasta", ["--map-guest-addr", "169.254.1.2", "--map-guest-addr", "169.254.1.4"])
    assert o.map_guest4 == ipaddress.IPv4Address("169.254.1.4")
    o = parse_args("pasta", ["--map-guest-addr", "169.254.1.2", "--map-guest-addr", "none"])
    assert o.map_guest4 is None and o.map_guest6 is None
    o = parse_args("pasta", ["--map-host-loopback", "none"])
    assert not o.map_gw and o.map_host_lo4 is None
    cfg = build_config(o, _host())
    assert cfg.v4 is not None and cfg.v4.host_lo is None


@pytest.mark.parametrize("value", ["127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "::", "bogus"])
@pytest.mark.parametrize("opt", ["--map-guest-addr", "--map-host-loopback"])
def test_map_options_refuse_unusable_addresses(opt: str, value: str):
    with pytest.raises(UsageError, match=opt):
        parse_args("pasta", [opt, value])


@pytest.mark.parametrize("args, word", [
    (["--map-guest-addr", "192.0.2.1"], "gateway"),  # the gateway already leads to loopback
    (["--map-guest-addr", "169.254.1.2", "--map-host-loopback", "169.254.1.2"], "both"),
    (["--map-guest-addr", "192.0.2.10"], "guest's own address"),
    (["--map-host-loopback", "2001:db8::10"], "guest's own address"),
])
def test_map_conflicts_name_the_step(args: list[str], word: str):
    with pytest.raises(SetupError, match=f"address mapping: .*{word}"):
        _cfg(args)


def test_a_gateway_that_resolves_keeps_its_port_53():
    """The host's resolver is its gateway (most home networks): the guest's
    queries to the gateway go to it, not to the host's loopback."""
    gw = ipaddress.IPv4Address("192.0.2.1")
    cfg = _cfg([], nameservers=(gw,))
    assert cfg.v4 is not None
    assert cfg.v4.dns == (gw,) and cfg.v4.dns_match == gw and cfg.v4.dns_host == gw
