# SPDX-License-Identifier: GPL-2.0-or-later
"""A namespace configures itself from pasta: real DHCP, DHCPv6 and SLAAC clients.

pasta runs in a HostNS (192.0.2.10/24 and 2001:db8::10/64 on eth0, gateways
.1 and ::1) without --config-net, so it leaves the tap down and unconfigured;
the command brings eth0 up and lets a client do the rest: busybox udhcpc
(DHCP), ISC dhclient -6 (DHCPv6; Debian's busybox has no udhcpc6) and the
kernel's own SLAAC from our router advertisements. Client scripts print
what they were told as NAME=value lines; pasta's --pcap shows where the
replies went.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.guestcfg import LINK_UP, pasta_sh, script_values, write_script
from tests.netenv import GW_ADDR4, HOST_ADDR4, HOST_ADDR6, HostNS

pytestmark = pytest.mark.integration

DNS4, DNS6 = "192.0.2.53", "2001:db8::53"
SEARCH = "example.org test.example"
MTU = 65520

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc event script: print what the server said; with APPLY set, configure
# the address and the option 121 routes the way a distribution script would.
[ "$1" = bound ] || exit 0
for v in ip subnet mask router dns domain search mtu staticroutes serverid lease; do
    eval "echo DHCP_$v=\$$v"
done
[ -n "$APPLY" ] || exit 0
ip addr add "$ip/$mask" dev "$interface"
set -- $staticroutes
while [ $# -ge 2 ]; do
    if [ "$2" = 0.0.0.0 ]; then
        ip route add "$1" dev "$interface"
    else
        ip route add "$1" via "$2" dev "$interface"
    fi
    shift 2
done
"""

DHCLIENT_SCRIPT = r"""#!/bin/sh
# dhclient-script stand-in: print the DHCPv6 lease, configure nothing.
case "$reason" in BOUND6|REBOOT6)
    echo "DHCP6_reason=$reason"
    echo "DHCP6_addr=$new_ip6_address"
    echo "DHCP6_prefixlen=$new_ip6_prefixlen"
    echo "DHCP6_dns=$new_dhcp6_name_servers"
    echo "DHCP6_search=$new_dhcp6_domain_search"
esac
"""

def _pasta(host: HostNS, args: list[str], script: str, timeout: float = 30,
           ) -> subprocess.CompletedProcess[str]:
    """pasta (no --config-net) around ``sh -c script``, inside the host."""
    return pasta_sh(host, args, script, timeout)


def _udhcpc(script: str, *extra: str, tries: int = 5) -> str:
    return (f"{LINK_UP} busybox udhcpc -i eth0 -n -q -f -t {tries} -T 1 -s {script} "
            f"{' '.join(extra)}")


def _our_link_local(host: HostNS) -> str:
    """The host's link-local address on eth0: pasta's source for RA and DHCPv6."""
    out = host.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
    return out.split()[3].split("/")[0]


def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(w for (w,) in struct.iter_unpack("!H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _dhcp_replies(pcap: Path) -> list[dict[str, object]]:
    """IPv4 UDP frames from port 67 in a pcap file, checksums verified."""
    data = pcap.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4
    assert struct.unpack_from("<I", data, 20)[0] == 1  # LINKTYPE_ETHERNET
    out = []
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<IIII", data, pos)[2]
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 15) * 4
        ip = frame[14 : 14 + ihl]
        udp = frame[14 + ihl :]
        sport, dport, length, csum = struct.unpack_from("!HHHH", udp)
        if sport != 67:
            continue
        assert _ones_sum(ip) == 0xFFFF, "IPv4 header checksum"
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, length)
        assert csum and _ones_sum(pseudo + udp[:length]) == 0xFFFF, "UDP checksum"
        out.append({"dst_mac": frame[0:6].hex(":"), "dst": ".".join(map(str, ip[16:20])),
                    "src": ".".join(map(str, ip[12:16])), "dport": dport})
    return out


def _udhcpc_present() -> None:
    if shutil.which("busybox") is None:
        pytest.skip("busybox (busybox-static) is not installed")


def test_udhcpc_gets_host_addressing_dns_search_mtu(host: HostNS, tmp_path: Path) -> None:
    _udhcpc_present()
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    pcap = tmp_path / "dhcp.pcap"
    r = _pasta(host, ["--dhcp-dns", "--dhcp-search", "-D", DNS4, "-S", SEARCH, "-p", str(pcap)],
               _udhcpc(script) + "; ip -o link show dev eth0")
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == HOST_ADDR4
    assert v["subnet"] == "255.255.255.0" and v["mask"] == "24"
    assert v["router"] == GW_ADDR4 and v["serverid"] == GW_ADDR4
    assert v["dns"] == DNS4
    assert v["search"] == SEARCH and v["domain"] == ""
    assert v["mtu"] == str(MTU)
    assert v["lease"] == str(0xFFFFFFFF)
    assert v["staticroutes"] == ""  # the gateway is on link: no option 121
    # udhcpc leaves the broadcast flag clear: OFFER and ACK go to yiaddr and
    # chaddr, from the gateway's port 67 to port 68, checksums complete.
    guest_mac = r.stdout.split("link/ether ", 1)[1].split()[0]
    replies = _dhcp_replies(pcap)
    assert len(replies) == 2, replies
    for rep in replies:
        assert rep == {"dst_mac": guest_mac, "dst": HOST_ADDR4, "src": GW_ADDR4, "dport": 68}


def test_udhcpc_broadcast_flag_and_pasta_defaults(host: HostNS, tmp_path: Path) -> None:
    """-B asks for broadcast replies; pasta passes no DNS or search list by default."""
    _udhcpc_present()
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    pcap = tmp_path / "dhcp.pcap"
    r = _pasta(host, ["-D", DNS4, "-S", SEARCH, "-p", str(pcap)], _udhcpc(script, "-B"))
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == HOST_ADDR4 and v["router"] == GW_ADDR4
    assert v["dns"] == "" and v["search"] == ""
    replies = _dhcp_replies(pcap)
    assert len(replies) == 2, replies
    for rep in replies:
        assert rep == {"dst_mac": "ff:ff:ff:ff:ff:ff", "dst": "255.255.255.255",
                       "src": GW_ADDR4, "dport": 68}


def test_slash32_off_link_gateway_gets_option_121_and_works(host: HostNS,
                                                            tmp_path: Path) -> None:
    _udhcpc_present()
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    cmd = (f"export APPLY=1; {_udhcpc(script)} && ip -4 addr show dev eth0 && ip -4 route && "
           f"ping -c1 -W3 {GW_ADDR4}")
    r = _pasta(host, ["-a", HOST_ADDR4, "-n", "32", "-g", GW_ADDR4], cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == HOST_ADDR4 and v["mask"] == "32" and v["subnet"] == "255.255.255.255"
    assert v["staticroutes"] == f"{GW_ADDR4}/32 0.0.0.0 0.0.0.0/0 {GW_ADDR4}"
    assert v["router"] == GW_ADDR4  # for clients without RFC 3442
    assert f"inet {HOST_ADDR4}/32" in r.stdout
    assert f"default via {GW_ADDR4} dev eth0" in r.stdout
    assert f"{GW_ADDR4} dev eth0 scope link" in r.stdout
    assert f"64 bytes from {GW_ADDR4}" in r.stdout


@pytest.mark.skipif(shutil.which("dhclient") is None,
                    reason="ISC dhclient (Debian isc-dhcp-client) is not installed")
def test_dhclient6_gets_address_and_dns(host: HostNS, tmp_path: Path) -> None:
    script = write_script(tmp_path / "dhclient.sh", DHCLIENT_SCRIPT)
    files = f"-sf {script} -lf {tmp_path / 'leases6'} -pf {tmp_path / 'dhclient6.pid'}"
    # -1: one try, then exit 2; after a lease it goes to the background, so -x
    # stops it (without a RELEASE) before pasta and its namespace go away.
    cmd = (f"{LINK_UP} timeout 15 dhclient -6 -1 {files} eth0; rc=$?; "
           f"dhclient -6 -x {files} eth0 >/dev/null 2>&1; exit $rc")
    r = _pasta(host, ["--dhcp-dns", "--dhcp-search", "-D", DNS6, "-S", SEARCH], cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP6_")
    assert v["reason"] == "BOUND6"
    assert v["addr"] == HOST_ADDR6 and v["prefixlen"] == "128"
    assert v["dns"] == DNS6
    assert v["search"] == "example.org. test.example."


def _router_adverts(pcap: Path) -> list[dict[int, list[bytes]]]:
    """Options (type -> bodies) of each router advertisement in a pcap file."""
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
        while off + 2 <= len(frame):
            typ, units = frame[off], frame[off + 1]
            assert units, "zero-length NDP option"
            opts.setdefault(typ, []).append(frame[off + 2 : off + 8 * units])
            off += 8 * units
        out.append(opts)
    return out


def _dns_names(body: bytes) -> list[str]:
    """Uncompressed DNS names back to back, zero padding at the end ignored."""
    names, labels, i = [], [], 0
    while i < len(body):
        n = body[i]
        if n == 0:
            if labels:
                names.append(".".join(labels))
            labels = []
            i += 1
            continue
        labels.append(body[i + 1 : i + 1 + n].decode("ascii"))
        i += 1 + n
    return names


def test_kernel_slaac_from_router_advert(host: HostNS, tmp_path: Path) -> None:
    our_ll = _our_link_local(host)
    pcap = tmp_path / "ra.pcap"
    cmd = ("ip link set eth0 up; i=0; while [ $i -lt 100 ]; do "
           "ip -6 route show default | grep -q 'proto ra' && "
           "ip -6 addr show dev eth0 scope global | grep -q 2001:db8: && "
           "! ip -6 addr show dev eth0 | grep -q tentative && break; "
           "sleep 0.1; i=$((i+1)); done; ip -6 addr show dev eth0 scope global; ip -6 route")
    r = _pasta(host, ["--dhcp-dns", "--dhcp-search", "-D", DNS6, "-S", SEARCH,
                      "-p", str(pcap)], cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    # EUI-64 (or stable-privacy) address in the advertised /64
    assert "inet6 2001:db8::" in r.stdout and "/64 scope global" in r.stdout
    assert "tentative" not in r.stdout.split("inet6 2001:db8::", 1)[1].splitlines()[0]
    assert "2001:db8::/64 dev eth0 proto kernel" in r.stdout
    assert f"default via {our_ll} dev eth0 proto ra" in r.stdout
    # What the kernel does not act on: resolvers (RDNSS) and search list (DNSSL)
    ras = _router_adverts(pcap)
    assert ras, "no router advertisement captured"
    for opts in ras:
        assert opts[25] == [struct.pack("!HI", 0, 60) + ipaddress.IPv6Address(DNS6).packed]
        (dnssl,) = opts[31]
        assert _dns_names(dnssl[6:]) == SEARCH.split()
        assert struct.unpack_from("!I", opts[5][0], 2)[0] == MTU


def test_no_dhcp_and_no_dhcpv6_get_no_answer(host: HostNS, tmp_path: Path) -> None:
    _udhcpc_present()
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    v6 = ""
    if shutil.which("dhclient") is not None:
        files = (f"-sf {write_script(tmp_path / 'dhclient.sh', DHCLIENT_SCRIPT)} "
                 f"-lf {tmp_path / 'leases6'} -pf {tmp_path / 'dhclient6.pid'}")
        v6 = f"; timeout 3 dhclient -6 -1 {files} eth0; echo dhclient=$?"
    cmd = _udhcpc(script, tries=2) + "; echo udhcpc=$?" + v6
    r = _pasta(host, ["--no-dhcp", "--no-dhcpv6"], cmd)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "udhcpc=1" in r.stdout
    assert script_values(r.stdout, "DHCP_") == {}
    if v6:
        assert "dhclient=124" in r.stdout  # killed by timeout: never bound
        assert script_values(r.stdout, "DHCP6_") == {}
