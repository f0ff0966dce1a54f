# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's ``auto`` port forwarding (its default for -t, -u, -T and -U).

pasta runs with no port option at all, attached to a GuestNS inside a
HostNS. A server started in the namespace after pasta becomes reachable
from the host within two seconds, and its port is released on the host
within two seconds after it stops; a server started on the host's
loopback becomes reachable from the namespace's loopback (-T auto). Every
transfer is checked by sha256.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.netenv import HOST_ADDR4, PYTHON, GuestNS, HostNS, wait_for

pytestmark = pytest.mark.integration

MIB = 1 << 20
DETECT = 2.0  # seconds: passt rescans every second

BIND_CHECK = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET6)\n"
              "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "try:\n"
              "    s.bind(('::', int(sys.argv[1]))); s.listen(1); print('free')\n"
              "except OSError as e:\n"
              "    print('busy', e.errno)\n")


def port_free(ns: HostNS | GuestNS, port: int) -> bool:
    """Whether a dual-stack listener could be bound to port in ns right now."""
    return ns.run([PYTHON, "-c", BIND_CHECK, str(port)], timeout=10).stdout.strip() == "free"


def send_ok(ns: HostNS | GuestNS, addr: str, port: int, n: int = MIB) -> bool:
    res = ns.client("tcp-send", addr, port, "--bytes", str(n), "--timeout", "5", timeout=20)
    return bool(res.get("ok"))


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[HostNS, GuestNS, subprocess.Popen]]:
    with HostNS() as host:
        guest = host.guest()
        pasta = host.pasta(guest)
        yield host, guest, pasta


@pytest.mark.parametrize("bind,via", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                      ("::", "::1"), ("0.0.0.0", HOST_ADDR4)],
                         ids=["ns-loopback", "ns-any", "ns-any6", "over-tap"])
def test_t_auto_follows_namespace_servers(env: tuple[HostNS, GuestNS, subprocess.Popen],
                                          bind: str, via: str) -> None:
    host, guest, pasta = env
    port = 10300 + ["127.0.0.1", "0.0.0.0", "::"].index(bind) + (3 if via == HOST_ADDR4 else 0)
    assert port_free(host, port)
    srv = guest.serve("tcp-sink", bind, port)
    assert wait_for(lambda: send_ok(host, via, port), DETECT + 3), "not forwarded"
    assert send_ok(host, via, port, 10 * MIB)
    srv.stop()
    assert wait_for(lambda: port_free(host, port), DETECT + 1), "port not released"
    assert pasta.poll() is None


def test_T_auto_follows_host_servers(env: tuple[HostNS, GuestNS, subprocess.Popen]) -> None:
    host, guest, pasta = env
    port = 10310
    srv = host.serve("tcp-sink", "127.0.0.1", port)
    assert wait_for(lambda: send_ok(guest, "127.0.0.1", port), DETECT + 3), "not forwarded"
    assert send_ok(guest, "127.0.0.1", port, 10 * MIB)
    srv.stop()
    assert wait_for(lambda: port_free(guest, port), DETECT + 1), "namespace port not released"
    assert pasta.poll() is None


def test_no_loop_between_directions(env: tuple[HostNS, GuestNS, subprocess.Popen]) -> None:
    """A namespace server forwarded by -t auto is not forwarded back by -T auto, and the
    reverse: the namespace keeps the host's port free and the host keeps the namespace's."""
    host, guest, pasta = env
    srv = guest.serve("tcp-sink", "0.0.0.0", 10320)
    assert wait_for(lambda: send_ok(host, "127.0.0.1", 10320), DETECT + 3)
    hsrv = host.serve("tcp-sink", "127.0.0.1", 10321)
    assert wait_for(lambda: send_ok(guest, "127.0.0.1", 10321), DETECT + 3)
    ns_out = guest.run(["ss", "-Htln"], timeout=10).stdout
    host_out = host.run(["ss", "-Htln"], timeout=10).stdout
    assert ns_out.count(":10320 ") == 1, ns_out  # the server itself, nothing of ours
    assert host_out.count(":10321 ") == 1, host_out
    srv.stop()
    hsrv.stop()
    assert pasta.poll() is None


def test_u_auto_follows_namespace_servers(env: tuple[HostNS, GuestNS, subprocess.Popen]) -> None:
    host, guest, pasta = env
    srv = guest.serve("udp-echo", "0.0.0.0", 10330)

    def echo() -> bool:
        res = host.client("udp-echo-check", HOST_ADDR4, 10330, "--count", "3", "--timeout", "1", timeout=10)
        return bool(res.get("ok"))

    assert wait_for(echo, DETECT + 3), "UDP port not forwarded"
    srv.stop()
    assert pasta.poll() is None



UDP_BIND_CHECK = ("import socket, sys\n"
                  "s = socket.socket(socket.AF_INET)\n"
                  "try:\n"
                  "    s.bind(('127.0.0.1', int(sys.argv[1]))); print('free')\n"
                  "except OSError as e:\n"
                  "    print('busy', e.errno)\n")


def udp_port_free(ns: HostNS | GuestNS, port: int) -> bool:
    """Whether a UDP socket could be bound to 127.0.0.1:port in ns right now."""
    return ns.run([PYTHON, "-c", UDP_BIND_CHECK, str(port)], timeout=10).stdout.strip() == "free"


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_U_auto_follows_host_servers(env: tuple[HostNS, GuestNS, subprocess.Popen], loop: str) -> None:
    """-U auto: a UDP server on the host's loopback is reachable from the namespace's,
    is not forwarded back by -u auto, and its namespace port is released after it stops."""
    host, guest, pasta = env
    port = 10340 if loop == "127.0.0.1" else 10341
    srv = host.serve("udp-echo", loop, port)

    def echo() -> bool:
        res = guest.client("udp-echo-check", loop, port, "--count", "3", "--timeout", "1", timeout=10)
        return bool(res.get("ok"))

    assert wait_for(echo, DETECT + 3), "UDP port not forwarded from the namespace"
    res = guest.client("udp-echo-check", loop, port, "--count", "500", "--timeout", "2", timeout=60)
    assert res["ok"], res
    host_out = host.run(["ss", "-Huln"], timeout=10).stdout
    assert host_out.count(f":{port} ") == 1, host_out  # the server itself, no -u auto socket of ours
    srv.stop()
    assert wait_for(lambda: udp_port_free(guest, port), DETECT + 1), "namespace port not released"
    assert pasta.poll() is None
