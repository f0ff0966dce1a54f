# SPDX-License-Identifier: GPL-2.0-or-later
"""Addressing options of pasta, each shown by its effect inside the namespace.

pasta runs in a HostNS (eth0: 192.0.2.10/24, 2001:db8::10/64, gateways .1
and ::1, a far host .2 and ::2 behind them). What the namespace sees is read
with ``ip``, with real DHCP (busybox udhcpc), DHCPv6 (ISC dhclient) and the
kernel's SLAAC, and from pasta's --pcap; what leaves the host is seen with
tcpdump in the namespace at the far end of the link. Several options share
one pasta run where their effects do not interfere.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from tests.guestcfg import LINK_UP, pasta_sh, script_values, write_script
from tests.netenv import (
    FAR_ADDR4,
    FAR_ADDR6,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    HOST_ADDR6,
    NETSERVE,
    PASST,
    PASTA,
    PYTHON,
    GuestNS,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

OUR_MAC = "02:11:22:33:44:55"
NS_MAC = "02:aa:bb:cc:dd:ee"
DNS4, DNS6 = "192.0.2.53", "2001:db8::53"
SEARCH = "a.example b.example"
ECHO_REQUESTS = "icmp[0] == 8 or (ip6 and ip6[40] == 128)"

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc event script: print what the server said, then configure the address
[ "$1" = bound ] || exit 0
for v in ip subnet mask router dns search mtu serverid; do
    eval "echo DHCP_$v=\$$v"
done
ip addr add "$ip/$mask" dev "$interface"
"""

DHCLIENT_SCRIPT = r"""#!/bin/sh
# dhclient-script stand-in: print the DHCPv6 lease, configure nothing.
case "$reason" in BOUND6|REBOOT6)
    echo "DHCP6_addr=$new_ip6_address"
    echo "DHCP6_dns=$new_dhcp6_name_servers"
    echo "DHCP6_search=$new_dhcp6_domain_search"
esac
"""

# Wait (bounded, 10 s) for a default route learnt from a router advertisement.
WAIT_RA = ("i=0; while [ $i -lt 100 ]; do ip -6 route show default | grep -q 'proto ra' "
           "&& ip -6 addr show dev eth0 scope global | grep -q 2001:db8: && break; "
           "sleep 0.1; i=$((i+1)); done; ")


def _pasta(host: HostNS, args: list[str], script: str, timeout: float = 60,
           ) -> subprocess.CompletedProcess[str]:
    """pasta around ``sh -c script``, inside the host."""
    return pasta_sh(host, args, script, timeout)


def _clients(tmp_path: Path) -> str:
    """Shell: udhcpc (configures the address), then dhclient -6 (prints only)."""
    if shutil.which("busybox") is None or shutil.which("dhclient") is None:
        pytest.skip("busybox and ISC dhclient are needed")
    udhcpc = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    files = (f"-sf {write_script(tmp_path / 'dhclient.sh', DHCLIENT_SCRIPT)} "
             f"-lf {tmp_path / 'leases6'} -pf {tmp_path / 'dhclient6.pid'}")
    return (f"{LINK_UP} busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s {udhcpc}; "
            f"timeout 15 dhclient -6 -1 {files} eth0; "
            f"dhclient -6 -x {files} eth0 >/dev/null 2>&1; ")


def _router_adverts(pcap: Path) -> list[tuple[bytes, dict[int, list[bytes]]]]:
    """(IPv6 source, options by type) of each router advertisement in a pcap."""
    data = pcap.read_bytes()
    out = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<IIII", data, pos)[2]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 134:
            continue
        opts: dict[int, list[bytes]] = {}
        off = 54 + 16
        while off + 2 <= len(frame) and frame[off + 1]:
            opts.setdefault(frame[off], []).append(frame[off + 2 : off + 8 * frame[off + 1]])
            off += 8 * frame[off + 1]
        out.append((frame[22:38], opts))
    return out


def _mac_of(ns: HostNS, ifname: str) -> str:
    """MAC of an interface (sysfs is the machine's, so ask ip)."""
    return ns.run(["ip", "-o", "link", "show", ifname]).stdout.split("link/ether ")[1].split()[0]


def _neigh(out: str, addr: str) -> str:
    """The `ip neigh` line of addr."""
    return next((ln for ln in out.splitlines() if ln.startswith(addr + " ")), "")


# -- --config-net ----------------------------------------------------------------


def test_config_net_address_netmask_macs_ifname_mtu(host: HostNS) -> None:
    """-a (both families), -n dotted, -M, --ns-mac-addr, -I and -m with --config-net."""
    script = ("ip -o link show ens9; ip -o addr show ens9; ip route; ip -6 route; "
              f"ping -c1 -W3 {GW_ADDR4} && ping -6 -c1 -W3 {GW_ADDR6} && "
              f"ping -c1 -W3 {FAR_ADDR4} && ip neigh")
    r = _pasta(host, ["--config-net", "-a", "192.0.2.77", "-n", "255.255.255.128",
                      "-a", "2001:db8::77", "-M", OUR_MAC, "--ns-mac-addr", NS_MAC,
                      "-I", "ens9", "-m", "9000"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    link = out.splitlines()[0]
    assert " ens9: " in link and " mtu 9000 " in link and f"link/ether {NS_MAC} " in link
    assert "inet 192.0.2.77/25 " in out and "inet6 2001:db8::77/64 " in out
    assert "eth0" not in out
    assert f"default via {GW_ADDR4} dev ens9" in out
    assert f"default via {GW_ADDR6} dev ens9" in out
    # our MAC is what the namespace resolves the gateways to
    assert f"lladdr {OUR_MAC}" in _neigh(out, GW_ADDR4)
    assert f"lladdr {OUR_MAC}" in _neigh(out, GW_ADDR6)
    assert f"lladdr {OUR_MAC}" in _neigh(out, FAR_ADDR4)  # on link in the /25


def test_config_net_gateway_and_prefix_netmask(host: HostNS) -> None:
    """-g (both families) and -n as a prefix length with --config-net."""
    host.configure(["ip addr add 192.0.2.254/24 dev eth0"])
    r = _pasta(host, ["--config-net", "-a", "192.0.2.99", "-n", "26", "-g", "192.0.2.126",
                      "-g", "2001:db8::fe"],
               "ip -o addr show eth0; ip route; ip -6 route")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "inet 192.0.2.99/26 " in r.stdout
    assert "default via 192.0.2.126 dev eth0" in r.stdout
    assert "default via 2001:db8::fe dev eth0" in r.stdout


def test_config_net_mtu_beyond_what_the_link_takes(host: HostNS) -> None:
    """-m 65535: the tap gets its maximum; -m 1279: IPv4 only on the link, with a warning."""
    script = f"ip -o link show eth0; ip -6 addr show dev eth0; ping -c1 -W3 {FAR_ADDR4}"
    r = _pasta(host, ["--config-net", "-m", "65535"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " mtu 65521 " in r.stdout and f"inet6 {HOST_ADDR6}/64" in r.stdout
    r = host.run([PASTA, "--config-net", "-m", "1279", "--", "sh", "-c", script],
                 check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " mtu 1279 " in r.stdout and "inet6" not in r.stdout
    assert "below IPv6's minimum of 1280" in r.stderr


def test_default_mac_is_the_template_interfaces(host: HostNS) -> None:
    """Without -M the gateway resolves to the host interface's MAC."""
    mac = _mac_of(host, "eth0")
    r = _pasta(host, ["--config-net"], f"ping -c1 -W3 {GW_ADDR4} >/dev/null && ip neigh")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"lladdr {mac}" in _neigh(r.stdout, GW_ADDR4)


# -- DHCP, DHCPv6, router advertisements -----------------------------------------


def test_dhcp_dhcpv6_ra_carry_addressing_options(host: HostNS, tmp_path: Path) -> None:
    """-a, -n, -g, -M, -m, -D, -S as DHCP, DHCPv6 and SLAAC clients see them."""
    pcap = tmp_path / "a.pcap"
    script = (_clients(tmp_path) + WAIT_RA
              + "ping -c1 -W3 192.0.2.126 >/dev/null; ip neigh; ip -6 route; "
              "echo MTU6=$(cat /proc/sys/net/ipv6/conf/eth0/mtu)")
    r = _pasta(host, ["-a", "192.0.2.99", "-n", "26", "-g", "192.0.2.126", "-a", "2001:db8::99",
                      "-g", "fe80::1", "-M", OUR_MAC, "-m", "1400", "--dhcp-dns",
                      "--dhcp-search", "-D", DNS4, "-D", DNS6, "-S", SEARCH, "-p", str(pcap)],
               script)
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == "192.0.2.99" and v["mask"] == "26"
    assert v["router"] == "192.0.2.126" and v["serverid"] == "192.0.2.126"
    assert v["dns"] == DNS4 and v["search"] == SEARCH and v["mtu"] == "1400"
    v6 = script_values(r.stdout, "DHCP6_")
    assert v6["addr"] == "2001:db8::99" and v6["dns"] == DNS6
    assert v6["search"] == "a.example. b.example."
    # the router is -g's link-local address; RA's MTU option applied
    assert "default via fe80::1 dev eth0 proto ra" in r.stdout
    assert "MTU6=1400" in r.stdout
    assert f"lladdr {OUR_MAC}" in _neigh(r.stdout, "192.0.2.126")
    ras = _router_adverts(pcap)
    assert ras
    for src, opts in ras:
        assert src == bytes.fromhex("fe80" + "0" * 27 + "1")
        assert struct.unpack_from("!I", opts[5][0], 2)[0] == 1400
        assert opts[1] == [bytes.fromhex(OUR_MAC.replace(":", ""))]
        assert 25 in opts and 31 in opts


def test_dns_none_search_none_mtu_zero(host: HostNS, tmp_path: Path) -> None:
    """-D none, -S none and -m 0 leave resolvers, search list and MTU out."""
    pcap = tmp_path / "b.pcap"
    script = _clients(tmp_path) + WAIT_RA + "echo MTU6=$(cat /proc/sys/net/ipv6/conf/eth0/mtu)"
    r = _pasta(host, ["--dhcp-dns", "--dhcp-search", "-D", "none", "-S", "none", "-m", "0",
                      "-p", str(pcap)], script)
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == HOST_ADDR4
    assert v["dns"] == "" and v["search"] == "" and v["mtu"] == ""
    v6 = script_values(r.stdout, "DHCP6_")
    assert v6["addr"] == HOST_ADDR6 and v6["dns"] == "" and v6["search"] == ""
    assert "MTU6=1500" in r.stdout  # the tap's own MTU: nothing advertised
    ras = _router_adverts(pcap)
    assert ras
    for _src, opts in ras:
        assert 5 not in opts and 25 not in opts and 31 not in opts


def test_dns_and_search_off_by_default_in_pasta(host: HostNS, tmp_path: Path) -> None:
    """Without --dhcp-dns/--dhcp-search, -D and -S reach nobody."""
    pcap = tmp_path / "c.pcap"
    script = _clients(tmp_path) + WAIT_RA
    r = _pasta(host, ["-D", DNS4, "-D", DNS6, "-S", SEARCH, "-p", str(pcap)], script)
    assert r.returncode == 0, r.stdout + r.stderr
    v, v6 = script_values(r.stdout, "DHCP_"), script_values(r.stdout, "DHCP6_")
    assert v["ip"] == HOST_ADDR4 and v["dns"] == "" and v["search"] == ""
    assert v6["addr"] == HOST_ADDR6 and v6["dns"] == "" and v6["search"] == ""
    for _src, opts in _router_adverts(pcap):
        assert 25 not in opts and 31 not in opts


def test_dhcp_dns_options_belong_to_one_mode(host: HostNS) -> None:
    """--dhcp-dns/--dhcp-search are pasta's, --no-dhcp-* passt's: the other exits 1."""
    for prog, opt in ((PASTA, "--no-dhcp-dns"), (PASTA, "--no-dhcp-search"),
                      (PASST, "--dhcp-dns"), (PASST, "--dhcp-search")):
        r = host.run([prog, opt, "-f"] + (["--", "true"] if prog == PASTA else []),
                     check=False, timeout=20)
        assert r.returncode == 1, (opt, r.stderr)
        assert opt in r.stderr


def _dhcp_discover(mac: bytes) -> bytes:
    """A length-prefixed (passt stream) DHCPDISCOVER from mac, asking for 6 and 119."""
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0, bytes(4),
                        bytes(4), bytes(4), bytes(4), mac, bytes(64), bytes(128))
    opts = bytes([99, 130, 83, 99, 53, 1, 1, 55, 3, 1, 6, 119, 255])
    udp_len = 8 + len(bootp) + len(opts)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + bootp + opts
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0,
                               bytes(4), b"\xff" * 4))
    frame = b"\xff" * 6 + mac + b"\x08\x00" + bytes(ip) + udp
    return struct.pack("!I", len(frame)) + frame


def _offer_options(sock: socket.socket) -> dict[int, bytes]:
    """Options of the first DHCP reply (UDP from port 67) read from a passt stream."""
    sock.settimeout(5)
    for _ in range(20):
        (n,) = struct.unpack("!I", sock.recv(4, socket.MSG_WAITALL))
        f = sock.recv(n, socket.MSG_WAITALL)
        if f[12:14] != b"\x08\x00" or f[23] != 17 or f[34:36] != b"\x00\x43":
            continue
        opts, off = {}, 14 + 20 + 8 + 240
        while off < len(f) and f[off] != 255:
            if f[off] == 0:
                off += 1
                continue
            opts[f[off]] = f[off + 2 : off + 2 + f[off + 1]]
            off += 2 + f[off + 1]
        return opts
    raise AssertionError("no DHCP reply")


def test_passt_sends_dns_and_search_by_default(host: HostNS, tmp_path: Path) -> None:
    """passt: resolvers and search list go out unless --no-dhcp-dns/--no-dhcp-search."""
    mac = bytes.fromhex("525400123456")
    for extra, want in (([], True), (["--no-dhcp-dns", "--no-dhcp-search"], False)):
        sock_path = tmp_path / f"s{len(extra)}"
        p = host.popen([PASST, "-f", "-1", "-q", "-s", str(sock_path), "-D", DNS4,
                        "-S", SEARCH, *extra], stderr=subprocess.PIPE)
        c = socket.socket(socket.AF_UNIX)
        try:
            assert wait_for(lambda s=sock_path, c=c: c.connect(str(s)) is None, 10)
            c.sendall(_dhcp_discover(mac))
            opts = _offer_options(c)
        finally:
            c.close()
        assert p.wait(10) == 0
        assert opts[53] == b"\x02"  # OFFER
        assert (opts.get(6) == socket.inet_aton(DNS4)) is want, opts
        assert (b"\x01a\x07example\x00" in opts.get(119, b"")) is want, opts


def test_no_dhcp_and_no_dhcpv6_each_alone(host: HostNS, tmp_path: Path) -> None:
    """--no-dhcp silences DHCP only, --no-dhcpv6 DHCPv6 only."""
    clients = _clients(tmp_path).replace("-t 5", "-t 2").replace("timeout 15", "timeout 4")
    r = _pasta(host, ["--no-dhcp"], clients)
    assert r.returncode == 0, r.stdout + r.stderr
    assert script_values(r.stdout, "DHCP_") == {}
    assert script_values(r.stdout, "DHCP6_")["addr"] == HOST_ADDR6
    r = _pasta(host, ["--no-dhcpv6"], clients)
    assert r.returncode == 0, r.stdout + r.stderr
    assert script_values(r.stdout, "DHCP_")["ip"] == HOST_ADDR4
    assert script_values(r.stdout, "DHCP6_") == {}


# -- services switched off -------------------------------------------------------


def test_no_ra_leaves_slaac_without_prefix(host: HostNS) -> None:
    """--no-ra: no RA, so no SLAAC address or route; NDP still answers."""
    script = (LINK_UP + "sleep 3; ip -6 addr show dev eth0 scope global; ip -6 route; "
              "echo ---; ip -6 addr add 2001:db8::10/64 dev eth0 nodad && "
              f"ip -6 route add default via {GW_ADDR6} && ping -6 -c1 -W3 {FAR_ADDR6}")
    r = _pasta(host, ["--no-ra"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    before = r.stdout.split("---", 1)[0]
    assert "2001:db8" not in before and "default" not in before


def test_no_ndp_leaves_neighbours_unresolved(host: HostNS) -> None:
    """--no-ndp: no NA, the gateway stays unresolved; IPv4 unaffected."""
    script = (f"ping -c1 -W3 {GW_ADDR4} >/dev/null && echo v4=ok; "
              f"ping -6 -c1 -W2 {GW_ADDR6} >/dev/null || echo v6=fail; ip -6 neigh")
    r = _pasta(host, ["--config-net", "--no-ndp"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "v4=ok" in r.stdout and "v6=fail" in r.stdout
    line = _neigh(r.stdout, GW_ADDR6)
    assert ("FAILED" in line or "INCOMPLETE" in line) and "lladdr" not in line, r.stdout


def test_ipv4_only(host: HostNS) -> None:
    """-4: no IPv6 address or route; IPv6 the guest sets up itself goes nowhere."""
    script = ("ip -6 addr show dev eth0 scope global; ip -6 route show default; echo ---; "
              f"ping -c1 -W3 {FAR_ADDR4} >/dev/null && echo v4=ok; "
              f"ip -6 addr add {HOST_ADDR6}/64 dev eth0 nodad; "
              f"ip -6 route add default via {GW_ADDR6}; "
              f"ping -6 -c1 -W2 {FAR_ADDR6} >/dev/null || echo v6=fail; ip -6 neigh")
    r = _pasta(host, ["--config-net", "-4"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    before, after = r.stdout.split("---", 1)
    assert before.strip() == ""
    assert "v4=ok" in after and "v6=fail" in after
    assert "lladdr" not in _neigh(after, GW_ADDR6)


def test_ipv6_only(host: HostNS) -> None:
    """-6: no IPv4 address or route; IPv4 the guest sets up itself goes nowhere."""
    script = ("ip -4 addr show dev eth0; ip -4 route; echo ---; "
              f"ping -6 -c1 -W3 {FAR_ADDR6} >/dev/null && echo v6=ok; "
              f"ip addr add {HOST_ADDR4}/24 dev eth0; "
              f"ping -c1 -W2 {FAR_ADDR4} >/dev/null || echo v4=fail; ip -4 neigh")
    r = _pasta(host, ["--config-net", "-6"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    before, after = r.stdout.split("---", 1)
    assert before.strip() == ""
    assert "v6=ok" in after and "v4=fail" in after
    assert "lladdr" not in _neigh(after, FAR_ADDR4)


def test_no_map_gw_sends_gateway_pings_to_the_gateway(host: HostNS) -> None:
    """The gateway ignores echo: mapped pings are answered (loopback), unmapped not."""
    assert host.gw is not None
    host.gw.configure(["sysctl -qw net.ipv4.icmp_echo_ignore_all=1",
                       "sysctl -qw net.ipv6.icmp.echo_ignore_all=1"])
    script = (f"ping -c1 -W2 {GW_ADDR4} >/dev/null && echo v4=answered; "
              f"ping -6 -c1 -W2 {GW_ADDR6} >/dev/null && echo v6=answered; true")
    r = _pasta(host, ["--config-net"], script)
    assert "v4=answered" in r.stdout and "v6=answered" in r.stdout, r.stdout + r.stderr
    r = _pasta(host, ["--config-net", "--no-map-gw"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "answered" not in r.stdout


# -- template and outbound interfaces --------------------------------------------


def _second_link(host: HostNS) -> GuestNS:
    """eth1 on the host (198.51.100.10/24, 2001:db8:1::10/64, a default route
    with a worse metric), its peer in a namespace of its own with .1 and ::1."""
    far = host.guest("far")
    host.configure([
        "ip link add eth1 type veth peer name peer1",
        "sysctl -qw net.ipv6.conf.eth1.accept_dad=0",
        f"ip link set peer1 netns {far.pid}",
        "ip addr add 198.51.100.10/24 dev eth1",
        "ip -6 addr add 2001:db8:1::10/64 dev eth1 nodad",
        "ip link set eth1 up",
        "ip route add default via 198.51.100.1 dev eth1 metric 200",
        "ip -6 route add default via 2001:db8:1::1 dev eth1 metric 200",
    ])
    far.configure([
        "ip link set lo up",
        "sysctl -qw net.ipv6.conf.peer1.accept_dad=0",
        "ip addr add 198.51.100.1/24 dev peer1",
        "ip -6 addr add 2001:db8:1::1/64 dev peer1 nodad",
        "ip link set peer1 up",
    ])
    return far


def test_interface_picks_the_template(host: HostNS) -> None:
    """-i eth1: addresses, gateways and MAC of eth1 instead of eth0's."""
    _second_link(host)
    mac1 = _mac_of(host, "eth1")
    script = ("ip -o addr show eth1; ip route; ip -6 route; ping -c1 -W3 198.51.100.1 "
              ">/dev/null; ip neigh")
    r = _pasta(host, ["--config-net", "-i", "eth1"], script)
    assert r.returncode == 0, r.stdout + r.stderr
    # the namespace interface is named after the template
    assert "inet 198.51.100.10/24 " in r.stdout and "inet6 2001:db8:1::10/64 " in r.stdout
    assert HOST_ADDR4 not in r.stdout
    assert "default via 198.51.100.1 dev eth1" in r.stdout
    assert "default via 2001:db8:1::1 dev eth1" in r.stdout
    assert f"lladdr {mac1}" in _neigh(r.stdout, "198.51.100.1")


class Capture:
    """tcpdump in a namespace, text output to a file, stopped to read it."""

    def __init__(self, ns: HostNS | GuestNS, ifname: str, filt: str, tmp_path: Path) -> None:
        self.out = tmp_path / f"{ns.name}-{ifname}.txt"
        err = tmp_path / f"{ns.name}-{ifname}.err"
        with open(self.out, "w") as o, open(err, "w") as e:
            self.p = ns.popen(["tcpdump", "-n", "-l", "-i", ifname, filt], stdout=o, stderr=e)
        assert wait_for(lambda: "listening on" in err.read_text(), 10), err.read_text()

    def stop(self) -> str:
        """Stop tcpdump (bounded) and return what it printed."""
        stop_process(self.p)
        return self.out.read_text()


def _traffic(ns: HostNS | GuestNS, addr4: str, addr6: str) -> tuple[str, list[str]]:
    """Echo servers on addr4/addr6 in ns; a script pinging and using each from the guest."""
    cmds = []
    for addr in (addr4, addr6):
        tcp, udp = ns.serve("tcp-echo", addr), ns.serve("udp-echo", addr)
        ping = "ping -6" if ":" in addr else "ping"
        cmds += [f"{ping} -c1 -W3 {addr} >/dev/null && echo ping={addr}",
                 f"{PYTHON} {NETSERVE} tcp-echo-check {addr} {tcp.port} --bytes 1000 --timeout 5",
                 f"{PYTHON} {NETSERVE} udp-echo-check {addr} {udp.port} --count 1 --timeout 5"]
    return "; ".join(cmds), [f"> {addr4}", f"> {addr6}"]


def _sources(seen: str, dests: list[str]) -> set[str]:
    """Source addresses (ports stripped) of what tcpdump saw going to dests."""
    out = set()
    for line in seen.splitlines():
        if any(d + "." in line or d + ":" in line for d in dests) and "neighbor" not in line:
            src = line.split(" IP6 " if " IP6 " in line else " IP ", 1)[1].split(" > ")[0]
            out.add(src.rsplit(".", 1)[0] if src.count(".") in (1, 4) else src)
    return out


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_outbound_address_is_the_source(host: HostNS, tmp_path: Path) -> None:
    """-o ADDR (both families): echo requests, TCP and UDP reach the far host from ADDR."""
    assert host.gw is not None
    host.configure(["ip addr add 192.0.2.11/24 dev eth0",
                    "ip -6 addr add 2001:db8::11/64 dev eth0 nodad"])
    script, dests = _traffic(host.gw, FAR_ADDR4, FAR_ADDR6)
    cap = Capture(host.gw, "gw0", f"host {FAR_ADDR4} or host {FAR_ADDR6}", tmp_path)
    r = _pasta(host, ["--config-net", "-a", HOST_ADDR4, "-a", HOST_ADDR6,
                      "-o", "192.0.2.11", "-o", "2001:db8::11"], script)
    seen = cap.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count('"ok": true') == 4, r.stdout
    assert f"ping={FAR_ADDR4}" in r.stdout and f"ping={FAR_ADDR6}" in r.stdout
    assert "echo request" in seen and "UDP" in seen and "Flags [S]" in seen, seen
    assert _sources(seen, dests) == {"192.0.2.11", "2001:db8::11"}, seen


# Echo requests with one identifier to each address given, in turn, through
# a raw socket (the guest's own identifier, so that the worker sees the same
# one for the gateway and for a far host); prints echo=ADDR,SEQ per reply.
SAME_ID_PING = """\
import socket, struct, sys, time
IDENT = 0x5e5e

def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

for seq, addr in enumerate(sys.argv[1:], 1):
    v6 = ":" in addr
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                      socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    msg = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, IDENT, seq) + b"same-id!"
    if not v6:  # the kernel sums ICMPv6 itself
        msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    s.sendto(msg, (addr, 0))
    end = time.monotonic() + 3
    while time.monotonic() < end:
        s.settimeout(max(end - time.monotonic(), 0.01))
        try:
            data, peer = s.recvfrom(2048)
        except OSError:
            break
        if not v6:
            data = data[(data[0] & 15) * 4:]
        typ, _, _, ident, got = struct.unpack_from("!BBHHH", data)
        if typ == (129 if v6 else 0) and ident == IDENT and got == seq and peer[0] == addr:
            print(f"echo={addr},{seq}", flush=True)
            break
    s.close()
"""


def _echo_requests_to(seen: str, addrs: tuple[str, ...]) -> list[str]:
    """tcpdump lines of echo requests to any of addrs."""
    return [line for line in seen.splitlines()
            if "echo request" in line and any(f"> {a}:" in line for a in addrs)]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_outbound_interface_carries_the_traffic(host: HostNS, tmp_path: Path) -> None:
    """--outbound-if4/6 eth1: echo requests, TCP and UDP leave through eth1, not eth0.

    The far addresses exist behind both links (on the far namespace's
    loopback too), so everything is answered whichever way it goes. Pings
    of the gateway still work: it is the host's loopback (--map-gw), which
    the broker reaches with a ping socket not bound to eth1; one echo
    identifier used for the gateway and for a far host gets two sockets.
    """
    assert host.gw is not None
    far = _second_link(host)
    far.configure([f"ip addr add {FAR_ADDR4}/32 dev lo",
                   f"ip -6 addr add {FAR_ADDR6}/128 dev lo"])
    script, dests = _traffic(far, FAR_ADDR4, FAR_ADDR6)
    same_id = write_script(tmp_path / "same_id_ping.py", SAME_ID_PING)
    order = [GW_ADDR4, FAR_ADDR4, GW_ADDR4, GW_ADDR6, FAR_ADDR6, GW_ADDR6]
    script += (f"; ping -c1 -W3 {GW_ADDR4} >/dev/null && echo ping={GW_ADDR4}"
               f"; ping -6 -c1 -W3 {GW_ADDR6} >/dev/null && echo ping={GW_ADDR6}"
               f"; {PYTHON} {same_id} {' '.join(order)}")
    gws = (GW_ADDR4, GW_ADDR6)
    cap1 = Capture(far, "peer1", "ip or ip6", tmp_path)
    cap0 = Capture(host.gw, "gw0", f"host {FAR_ADDR4} or host {FAR_ADDR6} or icmp or icmp6", tmp_path)
    # -i eth0 keeps eth0's addressing for the namespace
    r = _pasta(host, ["--config-net", "-i", "eth0", "--outbound-if4", "eth1",
                      "--outbound-if6", "eth1"], script)
    seen1, seen0 = cap1.stop(), cap0.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count('"ok": true') == 4, r.stdout
    assert f"ping={FAR_ADDR4}" in r.stdout and f"ping={FAR_ADDR6}" in r.stdout
    assert f"ping={GW_ADDR4}" in r.stdout and f"ping={GW_ADDR6}" in r.stdout, r.stdout + r.stderr
    echoed = [line for line in r.stdout.splitlines() if line.startswith("echo=")]
    assert echoed == [f"echo={a},{i}" for i, a in enumerate(order, 1)], r.stdout + r.stderr
    assert "echo request" in seen1 and "UDP" in seen1 and "Flags [S]" in seen1, seen1
    assert _sources(seen1, dests) == {"198.51.100.10", "2001:db8:1::10"}, seen1
    assert _sources(seen0, dests) == set(), seen0
    # answered by the host's loopback: no echo request to the real gateway on either link
    assert _echo_requests_to(seen0, gws) == [] and _echo_requests_to(seen1, gws) == [], seen0 + seen1
