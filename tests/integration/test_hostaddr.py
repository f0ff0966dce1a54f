# SPDX-License-Identifier: GPL-2.0-or-later
"""Host addressing as read at start: simple and not-so-simple hosts.

Each test builds the host situation inside a HostNS, reads it with our
rtnetlink client, and cross-checks the raw dumps against pyroute2's.
"""

from __future__ import annotations

import json

import pytest

from tests.netenv import PASTA, PYTHON, REPO, HostNS

pytestmark = pytest.mark.integration

READ = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from passt_sep.setup.hostaddr import read_host
h = read_host()
def fam(f):
    return None if f is None else dict(ifname=f.ifname, addr=str(f.addr), prefix=f.prefix,
                                        gw=str(f.gateway), ll=str(f.addr_ll))
print(json.dumps(dict(v4=fam(h.v4), v6=fam(h.v6), mtu=h.mtu,
                      mac=h.mac.hex() if h.mac else None)))
"""

CROSS = f"""
import json, socket, sys
sys.path.insert(0, {str(REPO)!r})
from passt_sep.setup.rtnl import Rtnl
from pyroute2 import IPRoute
with Rtnl() as nl, IPRoute() as ipr:
    ours = sorted((a.index, socket.inet_ntop(a.family, a.address), a.prefixlen) for a in nl.addrs())
    theirs = sorted((a["index"], a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"),
                     a["prefixlen"]) for a in ipr.get_addr())
    r_ours = sorted((r.family, r.dst_len, r.oif or 0) for f in (2, 10) for r in nl.routes(f)
                    if r.table == 254)
    r_theirs = sorted((r["family"], r["dst_len"], r.get_attr("RTA_OIF") or 0)
                      for f in (2, 10) for r in ipr.get_routes(family=f, table=254))
    l_ours = sorted((lk.index, lk.name, lk.mtu) for lk in nl.links())
    l_theirs = sorted((lk["index"], lk.get_attr("IFLA_IFNAME"), lk.get_attr("IFLA_MTU"))
                      for lk in ipr.get_links())
print(json.dumps(dict(addrs=ours == theirs, routes=r_ours == r_theirs, links=l_ours == l_theirs,
                      detail=[r_ours, r_theirs] if r_ours != r_theirs else None)))
"""


def _read(host: HostNS) -> dict:
    return json.loads(host.run([PYTHON, "-c", READ]).stdout)


def test_simple_host(host):
    h = _read(host)
    assert h["v4"] == {"ifname": "eth0", "addr": "192.0.2.10", "prefix": 24, "gw": "192.0.2.1",
                       "ll": "None"}
    assert h["v6"]["addr"] == "2001:db8::10" and h["v6"]["prefix"] == 64
    assert h["v6"]["gw"] == "2001:db8::1" and h["v6"]["ll"].startswith("fe80::")
    assert h["mtu"] == 1500 and len(h["mac"]) == 12


def test_our_netlink_dumps_match_pyroute2(host):
    host.configure(["ip addr add 198.51.100.7/25 dev eth0", "ip -6 addr add 2001:db8:1::7/64 dev eth0 nodad"])
    got = json.loads(host.run([PYTHON, "-c", CROSS]).stdout)
    assert got["addrs"] and got["routes"] and got["links"], got


def test_no_ipv6_default_route_disables_ipv6_with_one_warning(host):
    host.configure(["ip -6 route del default"])
    assert _read(host)["v6"] is None
    r = host.run([PASTA, "--config-net", "--", "sh", "-c", "ip -6 route; ping -c1 -W3 192.0.2.1"],
                 check=False, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "IPv6" in ln and "disabled" in ln]
    assert len(warnings) == 1, r.stderr
    assert "default" not in r.stdout


def test_no_default_route_at_all_is_a_clear_error(host):
    host.configure(["ip route del default", "ip -6 route del default"])
    r = host.run([PASTA, "--config-net", "--", "true"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "pasta: host addressing: External interface not usable"), r.stderr


def test_multipath_default_route_uses_first_hop(host):
    host.configure(["ip route del default",
                    "ip route add default nexthop via 192.0.2.1 dev eth0 nexthop via 192.0.2.3 dev eth0"])
    h = _read(host)
    assert h["v4"]["ifname"] == "eth0" and h["v4"]["gw"] == "192.0.2.1"
    r = host.run([PASTA, "--config-net", "-q", "--", "ping", "-c1", "-W3", "192.0.2.1"],
                 check=False, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_slash_32_with_off_link_gateway(host):
    host.configure(["ip addr flush dev eth0 scope global", "ip addr add 192.0.2.10/32 dev eth0",
                    "ip -6 addr add 2001:db8::10/64 dev eth0 nodad",
                    "ip route add 192.0.2.1/32 dev eth0", "ip route add default via 192.0.2.1 dev eth0"])
    h = _read(host)
    assert h["v4"]["prefix"] == 32 and h["v4"]["gw"] == "192.0.2.1"
    r = host.run([PASTA, "--config-net", "-q", "--", "sh", "-c",
                  "ip -4 route; ping -c1 -W3 192.0.2.1"], check=False, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "192.0.2.1 dev eth0" in r.stdout and "default via 192.0.2.1" in r.stdout


def test_several_addresses_first_one_is_used(host):
    host.configure(["ip addr add 192.0.2.20/24 dev eth0", "ip -6 addr add 2001:db8::20/64 dev eth0 nodad"])
    h = _read(host)
    assert h["v4"]["addr"] == "192.0.2.10"
    # as passt: the first global address in the kernel's dump order
    first6 = host.run("ip -6 -o addr show dev eth0 scope global").stdout.split()[3].split("/")[0]
    assert h["v6"]["addr"] == first6
