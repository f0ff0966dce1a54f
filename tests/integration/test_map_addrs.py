# SPDX-License-Identifier: GPL-2.0-or-later
"""--map-guest-addr and --map-host-loopback, as podman 5 passes them.

Podman 5 starts pasta with ``--no-map-gw --map-guest-addr 169.254.1.2``
(its ``host.containers.internal``) unless told otherwise. The guest shares
the host's address, so without the mapping it could not reach a service
bound to that address. Here pasta runs in a HostNS (eth0 192.0.2.10/24,
2001:db8::10/64); the services listen on the host's own addresses, not on
loopback, and every transfer is checked by sha256 (netserve's tcp-send).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.netenv import GW_ADDR4, HOST_ADDR4, HOST_ADDR6, PYTHON, GuestNS, HostNS, stop_process

pytestmark = pytest.mark.integration

GUEST_MAP4, GUEST_MAP6 = "169.254.1.2", "fd00:1::2"
HOST_LO4 = "169.254.1.3"
# podman 5's arguments for a container without published ports (see
# ../shared/docs/reference/clients.md), before its --netns
PODMAN5 = ["--config-net", "--dns-forward", "169.254.1.1", "-t", "none", "-u", "none", "-T", "none",
           "-U", "none", "--no-map-gw", "--quiet", "--map-guest-addr", GUEST_MAP4]
FWD_PORT = 10480
BULK = str(4 << 20)


def _send(ns: HostNS | GuestNS, addr: str, port: int, *args: str) -> dict:
    return ns.client("tcp-send", addr, port, "--bytes", BULK, "--timeout", "20", *args, timeout=40)


def test_podman5_defaults_reach_the_hosts_own_address(host: HostNS) -> None:
    """TCP, UDP and ping to 169.254.1.2 reach the host's address; the gateway stays itself."""
    guest = host.guest()
    p = host.pasta(guest, *PODMAN5, quiet=False)  # PODMAN5 has --quiet: a second -q is refused, as by passt
    try:
        sink = host.serve("tcp-sink", HOST_ADDR4)
        res = _send(guest, GUEST_MAP4, sink.port)
        assert res["ok"], res
        assert res["peer"] == HOST_ADDR4, res  # from the host's own address, as a local client
        echo = host.serve("udp-echo", HOST_ADDR4)
        res = guest.client("udp-echo-check", GUEST_MAP4, echo.port, "--count", "20")
        assert res["ok"], res  # replies come back from 169.254.1.2 (the socket is connected)
        r = guest.run(["ping", "-c1", "-W3", GUEST_MAP4], check=False)
        assert r.returncode == 0 and f"from {GUEST_MAP4}:" in r.stdout, r.stdout + r.stderr
        # --no-map-gw: the gateway's port is the gateway's, not the host's loopback
        lo = host.serve("tcp-sink", "127.0.0.1")
        res = guest.client("tcp-send", GW_ADDR4, lo.port, "--bytes", "1000", "--timeout", "5", timeout=20)
        assert not res["ok"], res
        assert p.poll() is None
    finally:
        stop_process(p)


def test_map_guest_addr_ipv6_and_inbound_source(host: HostNS) -> None:
    """IPv6 outbound; inbound from the host's own address appears as the mapped address."""
    guest = host.guest()
    p = host.pasta(guest, "--map-guest-addr", GUEST_MAP4, "--map-guest-addr", GUEST_MAP6,
                   "-t", str(FWD_PORT), v6=True)
    try:
        sink6 = host.serve("tcp-sink", HOST_ADDR6)
        res = _send(guest, GUEST_MAP6, sink6.port)
        assert res["ok"] and res["peer"] == HOST_ADDR6, res
        guest.serve("tcp-sink", "0.0.0.0", FWD_PORT)
        guest.serve("tcp-sink", "::", FWD_PORT)  # netserve's IPv6 sockets are v6only
        for addr, seen in ((HOST_ADDR4, GUEST_MAP4), (HOST_ADDR6, GUEST_MAP6)):
            res = _send(host, addr, FWD_PORT, "--bind", addr)
            assert res["ok"], res
            assert res["peer"] == seen, res
    finally:
        stop_process(p)


def test_without_map_guest_addr_the_host_appears_as_the_gateway(host: HostNS) -> None:
    guest = host.guest()
    p = host.pasta(guest, "-t", str(FWD_PORT))
    try:
        guest.serve("tcp-sink", "0.0.0.0", FWD_PORT)
        res = _send(host, HOST_ADDR4, FWD_PORT, "--bind", HOST_ADDR4)
        assert res["ok"] and res["peer"] == GW_ADDR4, res
    finally:
        stop_process(p)


def test_map_host_loopback_moves_the_mapping_not_the_route(host: HostNS) -> None:
    """--map-host-loopback ADDR: ADDR leads to the host's loopback, the gateway stays the router."""
    guest = host.guest()
    p = host.pasta(guest, "--no-map-gw", "--map-host-loopback", HOST_LO4)
    try:
        assert f"default via {GW_ADDR4}" in guest.run("ip -4 route show default").stdout
        sink = host.serve("tcp-sink", "127.0.0.1")
        res = _send(guest, HOST_LO4, sink.port)
        assert res["ok"] and res["peer"] == "127.0.0.1", res
        r = guest.run(["ping", "-c1", "-W3", HOST_LO4], check=False)
        assert r.returncode == 0 and f"from {HOST_LO4}:" in r.stdout, r.stdout + r.stderr
    finally:
        stop_process(p)


def test_gateway_resolver_is_asked_not_the_hosts_loopback(host: HostNS) -> None:
    """-D the gateway, which maps to the host's loopback: DNS to it still reaches the gateway."""
    assert host.gw is not None
    echo = host.gw.serve("udp-echo", GW_ADDR4, 53)  # stands in for the resolver
    guest = host.guest()
    p = host.pasta(guest, "-D", GW_ADDR4)
    try:
        res = guest.client("udp-echo-check", GW_ADDR4, echo.port, "--count", "5")
        assert res["ok"], res
    finally:
        stop_process(p)


# a UDP echo in the guest that prints each sender's address
_ECHO_SOURCES = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(20)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
    print(peer[0], flush=True)
"""


def test_no_map_gw_inbound_udp_from_the_host_appears_as_the_gateway(host: HostNS) -> None:
    """-u with nothing mapped: a datagram from the host's own address reaches
    the guest from the gateway, as passt's fwd_nat_from_host does (it was
    dropped before), and the guest's answer gets back to the sender."""
    guest = host.guest()
    p = host.pasta(guest, "--no-map-gw", "-u", str(FWD_PORT))
    try:
        srv = guest.popen([PYTHON, "-c", _ECHO_SOURCES, str(FWD_PORT), "3"],
                          stdout=subprocess.PIPE, text=True)
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        res = host.client("udp-echo-check", HOST_ADDR4, FWD_PORT, "--count", "3", "--bind", HOST_ADDR4)
        assert res["ok"], res
        srv.wait(timeout=10)
        assert srv.stdout.read().split() == [GW_ADDR4] * 3
    finally:
        stop_process(p)
