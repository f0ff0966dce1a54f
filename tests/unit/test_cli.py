# SPDX-License-Identifier: GPL-2.0-or-later
"""Option parsing: passt/pasta spellings, defaults, and one-line errors."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from passt_sep.cli import ADD, FAMILY, OPTIONS, REFUSE, REPLACE, parse_args
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


# --- A repeated option does what passt does with it (cli.OPTIONS, "again") ---
# The messages are the ones Debian's C pasta 0.0~git20230309 prints for the
# same command lines (checked by hand in an empty network namespace), plus,
# where passt's line does not name the option, the option in brackets.

def test_podman_containers_conf_then_cli_later_ns_mac_wins():
    # podman 4.7: containers.conf's pasta_options first, --net=pasta: options after
    o = parse_args("pasta", ["--config-net", "-I", "myname", "--ns-mac-addr", "9a:dd:31:ea:92:98",
                             "--ns-mac-addr", "aa:bb:cc:dd:ee:ff"])
    assert o.ns_mac == bytes.fromhex("aabbccddeeff") and o.ns_ifname == "myname"


@pytest.mark.parametrize("args, attr, want", [
    (["-M", "02:00:00:00:00:01", "-M", "02:00:00:00:00:02"], "our_mac", bytes.fromhex("020000000002")),
    (["-n", "24", "-n", "255.255.0.0"], "prefix4", 16),
    (["--netns", "a", "--netns", "/b"], "netns", "/b"),
    (["--userns", "/a", "--userns", "/b", "--netns", "/n"], "userns", "/b"),
    (["--map-guest-addr", "192.0.2.7", "--map-guest-addr", "192.0.2.8"], "map_guest4",
     ipaddress.IPv4Address("192.0.2.8")),
    (["--no-tcp", "--no-tcp"], "no_tcp", True),
    (["-4", "-4"], "ipv6", False),
    (["--config-net", "--config-net"], "config_net", True),
    (["--dhcp-dns", "--dhcp-dns"], "dhcp_dns", True),
    (["--no-netns-quit", "--no-netns-quit", "--netns-only", "--netns-only"], "no_netns_quit", True),
])
def test_replace_class_later_value_wins(args, attr, want):
    assert getattr(parse_args("pasta", args), attr) == want


@pytest.mark.parametrize("mode, args, msg", [
    ("pasta", ["-m", "1500", "-m", "1400"], "Multiple --mtu options given"),
    ("pasta", ["-I", "a", "-I", "b"], "Multiple --ns-ifname options given"),
    ("pasta", ["-p", "/tmp/x", "-p", "/tmp/y"], "Multiple --pcap options given"),
    ("pasta", ["--pcap-size", "8192", "--pcap-size", "8192"], "Multiple --pcap-size options given"),
    ("pasta", ["-P", "/tmp/x", "-P", "/tmp/y"], "Multiple --pid options given"),
    ("pasta", ["--runas", "0", "--runas", "0"], "Multiple --runas options given"),
    ("pasta", ["--log-size", "100000", "--log-size", "100000"], "Multiple --log-size options given"),
    ("pasta", ["-l", "/tmp/x", "-l", "/tmp/y"], "Multiple --log-file options given"),
    ("pasta", ["-d", "-d"], "Multiple --debug options given"),
    ("pasta", ["-dd"], "Multiple --debug options given"),
    ("pasta", ["--trace", "--trace"], "Multiple --trace options given"),
    ("pasta", ["-q", "-q"], "Multiple --quiet options given"),
    ("pasta", ["-e", "-e"], "Multiple --stderr options given"),
    ("pasta", ["-f", "-f"], "Multiple --foreground options given"),
    ("passt", ["-F", "3", "-F", "4"], "Multiple --fd options given"),
    ("passt", ["-s", "/tmp/a", "-s", "/tmp/b"], "Multiple --socket options given"),
    ("passt", ["-1", "-1"], "Redundant --one-off option"),
    ("pasta", ["-i", "lo", "-i", "lo"], "Redundant interface: lo (--interface given twice)"),
    ("pasta", ["--outbound-if4", "lo", "--outbound-if4", "lo"],
     "Redundant outbound interface: lo (--outbound-if4 given twice)"),
    ("pasta", ["--outbound-if6", "lo", "--outbound-if6", "eth0"],
     "Redundant outbound interface: eth0 (--outbound-if6 given twice)"),
])
def test_refuse_class_says_what_passt_says(mode, args, msg):
    with pytest.raises(UsageError) as e:
        parse_args(mode, args)
    assert str(e.value) == msg


@pytest.mark.parametrize("opt, first4, second4, first6, second6, msg", [
    ("-a", "192.0.2.5", "192.0.2.6", "2001:db8::5", "2001:db8::6", "Invalid address: {v} (--address"),
    ("-g", "192.0.2.5", "192.0.2.6", "2001:db8::5", "2001:db8::6", "Invalid gateway address: {v} (--gateway"),
    ("-o", "192.0.2.5", "192.0.2.6", "2001:db8::5", "2001:db8::6",
     "Invalid or redundant outbound address: {v} (--outbound"),
    ("--dns-forward", "192.0.2.5", "192.0.2.6", "2001:db8::5", "2001:db8::6",
     "Invalid DNS forwarding address: {v} (--dns-forward"),
])
def test_family_class_once_per_family(opt, first4, second4, first6, second6, msg):
    parse_args("pasta", [opt, first4, opt, first6])  # one of each family: fine
    for a, b, fam in ((first4, second4, 4), (first6, second6, 6)):
        with pytest.raises(UsageError) as e:
            parse_args("pasta", [opt, a, opt, b])
        assert str(e.value).startswith(msg.format(v=b)) and f"for IPv{fam})" in str(e.value)


def test_add_class_collects_every_occurrence():
    o = parse_args("pasta", ["-D", "192.0.2.5", "-D", "2001:db8::5", "-D", "192.0.2.6",
                             "-S", "a.example", "-S", "b.example c.example",
                             "-t", "80", "-t", "81", "-T", "90", "-T", "91"])
    assert [str(a) for a in o.dns] == ["192.0.2.5", "2001:db8::5", "192.0.2.6"]
    assert o.search == ("a.example", "b.example", "c.example")
    assert (o.tcp_in.delta(80), o.tcp_in.delta(81), o.tcp_in.delta(82)) == (80, 81, None)
    assert (o.tcp_out.delta(90), o.tcp_out.delta(91)) == (90, 91)
    assert parse_args("pasta", ["-D", "none", "-S", "none"]).dns == ()
    assert parse_args("pasta", ["-S", "none"]).search == ()


@pytest.mark.parametrize("args, msg", [
    (["-D", "none", "-D", "none"], "Redundant DNS options (--dns none given twice)"),
    (["-D", "none", "-D", "192.0.2.5"], "Conflicting DNS options (--dns none and addresses)"),
    (["-D", "192.0.2.5", "-D", "none"], "Conflicting DNS options (--dns none and addresses)"),
    (["-S", "none", "-S", "none"], "Redundant DNS search options (--search none given twice)"),
    (["-S", "a.example", "-S", "none"], "Conflicting DNS search options (--search none and domains)"),
    (["-S", "none", "-S", "a.example"], "Conflicting DNS search options (--search none and domains)"),
])
def test_add_class_none_stands_alone_as_in_passt(args, msg):
    with pytest.raises(UsageError) as e:
        parse_args("pasta", args)
    assert str(e.value) == msg


def test_every_option_has_a_repeat_class():
    assert {o.again for o in OPTIONS} == {ADD, FAMILY, REFUSE, REPLACE}
    for o in OPTIONS:
        assert (o.again == FAMILY) <= o.arg  # per family needs an address value
        assert o.refusal is None or o.again in (REFUSE, FAMILY)


def test_podman_shape_through_the_console_entry_is_not_refused(tmp_path):
    # the same command line through main: parsing passes, the run stops at the
    # missing namespace, not at the option
    r = subprocess.run([sys.executable, "-m", "passt_sep.main", "pasta", "--config-net",
                        "--ns-mac-addr", "9a:dd:31:ea:92:98", "--ns-mac-addr", "aa:bb:cc:dd:ee:ff",
                        "--netns", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=30)
    assert "Multiple" not in r.stderr and "Traceback" not in r.stderr
    assert r.returncode == 1 and str(tmp_path / "none") in r.stderr, r.stderr


# --- newer passt options (podman 5, libvirt): each works or is refused -------

def test_newer_options_parse_to_their_meaning():
    o = parse_args("pasta", ["--config-net", "--no-copy-routes", "--no-copy-addrs",
                             "-H", "box", "--fqdn", "box.example.org.", "--freebind",
                             "--host-lo-to-ns-lo", "--dns-host", "127.0.0.1",
                             "--dns-host", "::1", "--dns-host", "127.0.0.2"])
    assert (o.no_copy_routes, o.no_copy_addrs, o.freebind, o.host_lo_to_ns_lo) == (True,) * 4
    assert (o.hostname, o.fqdn) == ("box", "box.example.org.")
    # per family, the last one wins (passt's code overwrites)
    assert (str(o.dns_host4), str(o.dns_host6)) == ("127.0.0.2", "::1")
    p = parse_args("passt", ["--hostname", "vm", "--fqdn", "vm.example", "--freebind",
                             "--dns-host", "192.0.2.53"])
    assert (p.hostname, p.fqdn, p.freebind, str(p.dns_host4)) == ("vm", "vm.example", True, "192.0.2.53")


def test_dns_host_is_where_forwarded_queries_go_not_what_is_advertised():
    ns = (ipaddress.IPv4Address("192.0.2.200"),)
    cfg = _cfg(["--dns-forward", "198.51.100.53", "--dns-host", "127.0.0.1"], nameservers=ns)
    assert cfg.v4 is not None
    assert cfg.v4.dns_match == ipaddress.IPv4Address("198.51.100.53")
    assert cfg.v4.dns_host == ipaddress.IPv4Address("127.0.0.1")
    assert cfg.v4.dns == (ipaddress.IPv4Address("198.51.100.53"),)
    plain = _cfg(["--dns-forward", "198.51.100.53"], nameservers=ns)
    assert plain.v4 is not None and plain.v4.dns_host == ns[0]


@pytest.mark.parametrize("mode, args, msg", [
    ("pasta", ["-F", "3"],
     "Option '-F' is not supported by pasta (a pre-opened tap fd: passt-sep opens the tap itself)"),
    ("pasta", ["--fd=3"],
     "Option '--fd' is not supported by pasta (a pre-opened tap fd: passt-sep opens the tap itself)"),
    ("passt", ["--host-lo-to-ns-lo"], "Option '--host-lo-to-ns-lo' is not supported by passt"),
    ("passt", ["--no-copy-routes"], "Option '--no-copy-routes' is not supported by passt"),
    ("passt", ["--no-copy-addrs"], "Option '--no-copy-addrs' is not supported by passt"),
    ("pasta", ["--no-copy-routes"], "--no-copy-routes needs --config-net"),
    ("pasta", ["--no-copy-addrs"], "--no-copy-addrs needs --config-net"),
    ("pasta", ["--dns-host", "0.0.0.0"], "Invalid host nameserver address: 0.0.0.0 (--dns-host)"),
    ("pasta", ["--dns-host", "::"], "Invalid host nameserver address: :: (--dns-host)"),
    ("pasta", ["--dns-host", "dns"], "Invalid address for --dns-host: 'dns'"),
    ("pasta", ["-H", "a..b"], "Invalid hostname for --hostname: 'a..b'"),
    ("pasta", ["--fqdn", "x" * 64 + ".example"], f"Invalid FQDN for --fqdn: '{'x' * 64}.example'"),
])
def test_newer_options_refused_with_one_line_naming_them(mode, args, msg):
    with pytest.raises(UsageError) as e:
        parse_args(mode, args)
    assert str(e.value) == msg


def test_pasta_fd_is_refused_through_the_console_entry():
    r = subprocess.run([sys.executable, "-m", "passt_sep.main", "pasta", "-F", "0", "true"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "pasta: Option '-F' is not supported by pasta (a pre-opened tap fd: passt-sep opens the tap itself)"]


# --- libvirt's and KubeVirt's command lines (docs/libvirt.md) -----------------

LIBVIRT_CURRENT = [  # qemu_passt.c of 2025: --pid, --hostname/--fqdn from <backend>
    "--one-off", "--socket", "/run/libvirt/qemu/passt/1-vm-net0.socket",
    "--pid", "/run/libvirt/qemu/passt/1-vm-net0-passt.pid", "--mtu", "1500",
    "--interface", "eth0", "--log-file", "/var/run/kubevirt/passt.log",
    "--hostname", "vm1", "--fqdn", "vm1.example.org",
    "--address", "192.0.2.5", "--netmask", "24", "--address", "2001:db8::5",
    "--tcp-ports", "2022:22", "--udp-ports", "1.2.3.4/5000-5020:6000-6020,~5010-5015",
    "--tcp-ports", "2001:db8:ac10:fd01::1:10%eth0/8080,4433:3444",
]


def test_libvirt_command_lines_parse_to_what_they_mean():
    o = parse_args("passt", LIBVIRT_CURRENT)
    assert (o.one_off, o.hostname, o.fqdn, o.mtu, o.ifname) == (True, "vm1", "vm1.example.org", 1500, "eth0")
    assert (o.tcp_in.delta(2022), o.tcp_in.delta(8080), o.tcp_in.delta(4433)) == (22, 8080, 3444)
    assert o.udp_in.delta(5001) == 6001 and o.udp_in.delta(5012) is None
    # libvirt 9.0-9.3: no --pid, the guest's MAC as --mac-addr (taken as ours, as passt does)
    old = parse_args("passt", ["--one-off", "--socket", "/run/s", "--mac-addr", "52:54:00:b4:5b:1e"])
    assert old.our_mac == bytes.fromhex("525400b45b1e")
    # KubeVirt's binding: <portForward dev='eth0'> without ranges, and Istio's exclusions
    k = parse_args("passt", ["--one-off", "--socket", "/run/s", "--tcp-ports", "%eth0/all",
                             "--udp-ports", "%eth0/all"])
    assert k.tcp_in.mode == "all" and k.udp_in.mode == "all"
    i = parse_args("passt", ["--tcp-ports", "%eth0/~15000,~15001,~15020-15021"])
    assert i.tcp_in.delta(22) == 22 and i.tcp_in.delta(15001) is None and i.tcp_in.delta(49152) is None


def test_libvirt_vhost_user_backend_is_refused_with_one_line():
    with pytest.raises(UsageError) as e:
        parse_args("passt", ["--vhost-user", "--one-off", "--socket", "/run/s"])
    assert str(e.value) == "Unrecognized option '--vhost-user'"
