# SPDX-License-Identifier: GPL-2.0-or-later
"""The newer passt options podman 5 and libvirt pass, each shown doing what
passt's man page says, in real namespaces (tests/netenv.py):

- ``-H``/``--fqdn``: busybox udhcpc is told the host name (option 12), the
  capture holds option 81; ISC dhclient -6's exchange carries option 39;
- ``--dns-host``: a query to the ``--dns-forward`` address reaches the
  resolver on the host's loopback, not the advertised one that does not
  answer (without the option it times out: the control);
- ``--freebind``: ``-t ADDR/PORT`` for an address the host does not have is
  refused without it, bound with it, and works once the address appears;
- ``--host-lo-to-ns-lo``: a connection to the host's 127.0.0.1 reaches a
  server bound to the namespace's 127.0.0.1, which sees 127.0.0.1 as peer;
- ``--no-copy-routes``/``--no-copy-addrs``: with a second address and an
  extra route on the host, the namespace gets one address and the default
  route (passt-sep's --config-net never copies more).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guestcfg import LINK_UP, pasta_sh, script_values, write_script
from tests.netenv import (
    GW_ADDR4,
    HOST_ADDR4,
    PASTA,
    PYTHON,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

NETSERVE = str(Path(__file__).resolve().parent.parent / "tools" / "netserve.py")

UDHCPC_SCRIPT = r"""#!/bin/sh
[ "$1" = bound ] || exit 0
for v in ip router hostname domain; do eval "echo DHCP_$v=\$$v"; done
"""


def _pcap_has(pcap: Path, needle: bytes) -> bool:
    return needle in pcap.read_bytes()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_hostname_and_fqdn_reach_a_real_dhcp_client(host: HostNS, tmp_path: Path) -> None:
    script = write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT)
    pcap = tmp_path / "dhcp.pcap"
    # -O hostname: ask for option 12 too (passt sends it anyway)
    cmd = f"{LINK_UP} busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -O hostname -s {script}"
    r = pasta_sh(host, ["-H", "box", "--fqdn", "box.example.org", "-p", str(pcap)], cmd, 30)
    assert r.returncode == 0, r.stdout + r.stderr
    v = script_values(r.stdout, "DHCP_")
    assert v["ip"] == HOST_ADDR4 and v["router"] == GW_ADDR4
    assert v["hostname"] == "box"
    # option 81: length 20, flags E, RCODEs 255, the name in wire format
    assert _pcap_has(pcap, b"\x51\x14\x04\xff\xff\x03box\x07example\x03org\x00")
    # without the options, neither is sent
    pcap2 = tmp_path / "plain.pcap"
    r = pasta_sh(host, ["-p", str(pcap2)], cmd, 30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert script_values(r.stdout, "DHCP_")["hostname"] == ""
    assert not _pcap_has(pcap2, b"\x03box\x07example")


DHCLIENT_SCRIPT = r"""#!/bin/sh
case "$reason" in BOUND6|REBOOT6) echo "DHCP6_addr=$new_ip6_address";; esac
"""


@pytest.mark.skipif(shutil.which("dhclient") is None, reason="ISC dhclient is not installed")
def test_fqdn_in_dhcpv6_replies_to_dhclient(host: HostNS, tmp_path: Path) -> None:
    script = write_script(tmp_path / "dhclient.sh", DHCLIENT_SCRIPT)
    pcap = tmp_path / "dhcp6.pcap"
    files = f"-sf {script} -lf {tmp_path / 'leases6'} -pf {tmp_path / 'dhclient6.pid'}"
    cmd = (f"{LINK_UP} timeout 15 dhclient -6 -1 {files} eth0; rc=$?; "
           f"dhclient -6 -x {files} eth0 >/dev/null 2>&1; exit $rc")
    r = pasta_sh(host, ["--fqdn", "box.example.org", "-p", str(pcap)], cmd, 40)
    assert r.returncode == 0, r.stdout + r.stderr
    assert script_values(r.stdout, "DHCP6_")["addr"]
    # option 39, length 18: flags 0 (dhclient does not set S), then the name
    assert _pcap_has(pcap, b"\x00\x27\x00\x12\x00\x03box\x07example\x03org\x00")


DNS_QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((server, 53))
s.send(q)
try:
    r = s.recv(4096)
except TimeoutError:
    print("NO ANSWER", server)
    sys.exit(0)
print("A", server, socket.inet_ntoa(r[-4:]))
"""


@pytest.fixture
def dnsmasq(host: HostNS) -> Iterator[HostNS]:
    """A resolver on the host's 127.0.0.1 and ::1 answering example.test."""
    p = host.popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--user=root",
                    "--listen-address=127.0.0.1", "--listen-address=::1", "--port=53",
                    "--bind-interfaces", "--address=/example.test/192.0.2.99"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert wait_for(lambda: "A 127.0.0.1 192.0.2.99" in host.run(
        [PYTHON, "-c", DNS_QUERY, "127.0.0.1", "example.test"], check=False).stdout, 10), \
        "dnsmasq did not answer"
    yield host
    stop_process(p)


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="dnsmasq is not installed")
def test_dns_host_is_where_forwarded_queries_go(dnsmasq: HostNS) -> None:
    host = dnsmasq
    # the advertised resolver, 192.0.2.200, does not exist: without
    # --dns-host, forwarded queries go there and get no answer
    script = "; ".join(shlex.join([PYTHON, "-c", DNS_QUERY, a, "example.test"])
                       for a in ("198.51.100.53", "2001:db8:53::3"))
    common = ["--config-net", "-D", "192.0.2.200", "-D", "2001:db8::200",
              "--dns-forward", "198.51.100.53", "--dns-forward", "2001:db8:53::3"]
    r = pasta_sh(host, [*common, "--dns-host", "127.0.0.1", "--dns-host", "::1"], script, 60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "A 198.51.100.53 192.0.2.99" in r.stdout, r.stdout + r.stderr
    assert "A 2001:db8:53::3 192.0.2.99" in r.stdout, r.stdout + r.stderr
    r = pasta_sh(host, common, script, 60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("NO ANSWER") == 2, r.stdout + r.stderr


def _sha256_send(host: HostNS, addr: str, port: int, nbytes: int) -> dict:
    res = host.client("tcp-send", addr, port, "--bytes", str(nbytes))
    assert res.get("ok"), res
    return res


FREE_ADDR = "192.0.2.77"
FREE_PORT = 10377


def test_freebind_binds_an_address_the_host_does_not_have_yet(host: HostNS) -> None:
    guest = host.guest()
    sink = guest.serve("tcp-sink", "0.0.0.0", FREE_PORT)
    spec = ["-t", f"{FREE_ADDR}/{FREE_PORT}", "-u", "none", "-T", "none", "-U", "none"]
    # without --freebind: nothing to bind, exit 1 with one line
    r = host.run([PASTA, "-f", "-q", "--config-net", *spec, "--netns", guest.netns_path],
                 check=False, timeout=30)
    assert r.returncode == 1 and "Failed to bind any port" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    p = host.pasta(guest, "--freebind", *spec)
    try:
        assert p.poll() is None
        held = host.run(["ss", "-Htln", f"sport = :{FREE_PORT}"]).stdout
        assert f"{FREE_ADDR}:{FREE_PORT}" in held, held
        host.run(["ip", "addr", "add", f"{FREE_ADDR}/32", "dev", "eth0"])
        res = _sha256_send(host, FREE_ADDR, FREE_PORT, 1 << 20)
        assert res["peer"] == FREE_ADDR, res  # the tap path: the namespace sees the host's peer
    finally:
        stop_process(p)
        sink.stop()


def test_host_lo_to_ns_lo_reaches_the_namespace_loopback(host: HostNS) -> None:
    guest = host.guest()
    port = 10378
    sink = guest.serve("tcp-sink", "127.0.0.1", port)
    p = host.pasta(guest, "--host-lo-to-ns-lo", "-t", str(port), "-u", "none",
                   "-T", "none", "-U", "none")
    try:
        # the server bound only to the namespace's loopback got the bytes
        # (sha256 compared by tcp-send), from 127.0.0.1
        res = _sha256_send(host, "127.0.0.1", port, 1 << 20)
        assert res["peer"] == "127.0.0.1", res
    finally:
        stop_process(p)
        sink.stop()


def test_no_copy_routes_and_addrs_one_address_and_the_default_route(host: HostNS) -> None:
    host.run(["ip", "addr", "add", "192.0.2.11/24", "dev", "eth0"])
    host.run(["ip", "route", "add", "198.51.100.0/24", "via", GW_ADDR4, "dev", "eth0"])
    show = "ip -4 -o addr show dev eth0; ip -4 route show dev eth0"
    outs = []
    for extra in (["--no-copy-routes", "--no-copy-addrs"], []):
        r = pasta_sh(host, ["--config-net", *extra], show, 30)
        assert r.returncode == 0, r.stdout + r.stderr
        outs.append(r.stdout)
        assert r.stdout.count(" inet ") == 1 and f"inet {HOST_ADDR4}/24" in r.stdout, r.stdout
        assert "192.0.2.11" not in r.stdout and "198.51.100.0/24" not in r.stdout, r.stdout
        assert f"default via {GW_ADDR4}" in r.stdout, r.stdout
    assert outs[0] == outs[1]
    # pasta only, and only with --config-net: one line each
    for args, msg in ((["--no-copy-routes"], "--no-copy-routes needs --config-net"),
                      (["--no-copy-addrs", "true"], "--no-copy-addrs needs --config-net")):
        r = host.run([PASTA, *args], check=False, timeout=30)
        assert r.returncode == 1 and r.stderr.strip() == f"pasta: {msg}", r.stderr


def test_pasta_fd_refused_before_anything_is_set_up(host: HostNS) -> None:
    """pasta -F is refused at once (passt -F: tests/integration/test_passt_mode.py)."""
    r = host.run([PASTA, "-F", "0", "true"], check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip() == ("pasta: Option '-F' is not supported by pasta "
                                "(a pre-opened tap fd: passt-sep opens the tap itself)")
