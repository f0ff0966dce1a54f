# SPDX-License-Identifier: GPL-2.0-or-later
"""The test harness itself (tests/netenv.py): namespaces, addressing, clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.netenv import (
    FAR_ADDR4,
    FAR_ADDR6,
    REPO,
    CommandError,
    GuestNS,
    HostNS,
    ns_id,
    wait_for,
)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_eth0_addresses(host: HostNS) -> None:
    out = host.run(["ip", "-4", "addr", "show", "eth0"]).stdout
    assert "inet 192.0.2.10/24" in out
    out = host.run(["ip", "-6", "addr", "show", "eth0"]).stdout
    assert "inet6 2001:db8::10/64" in out
    assert "tentative" not in out
    assert "mtu 1500" in host.run(["ip", "link", "show", "eth0"]).stdout


def test_default_routes(host: HostNS) -> None:
    assert "default via 192.0.2.1 dev eth0" in host.run("ip -4 route show default").stdout
    assert "default via 2001:db8::1 dev eth0" in host.run("ip -6 route show default").stdout


def test_ping_group_range(host: HostNS) -> None:
    out = host.run(["cat", "/proc/sys/net/ipv4/ping_group_range"]).stdout
    assert out.split() == ["0", "2147483647"]


def test_gateway_answers_ping(host: HostNS) -> None:
    host.run(["ping", "-c1", "-W2", FAR_ADDR4], timeout=10)
    host.run(["ping", "-6", "-c1", "-W2", FAR_ADDR6], timeout=10)
    host.run(["ping", "-c1", "-W2", "192.0.2.1"], timeout=10)


def test_namespaces_differ(host: HostNS) -> None:
    assert host.gw is not None
    mine = ns_id("/proc/self/ns/net")
    assert host.netns_id != mine
    assert host.userns_id != ns_id("/proc/self/ns/user")
    assert host.gw.netns_id not in (mine, host.netns_id)
    assert host.gw.userns_id == host.userns_id
    assert os.readlink(host.netns_path) != os.readlink("/proc/self/ns/net")


def test_root_inside(host: HostNS) -> None:
    out = host.run("id -u; grep CapEff /proc/self/status").stdout.split()
    assert out[0] == "0"
    assert int(out[-1], 16) & (1 << 12)  # CAP_NET_ADMIN


def test_run_check_and_timeout(host: HostNS) -> None:
    with pytest.raises(CommandError) as e:
        host.run("echo oops >&2; exit 3")
    assert e.value.returncode == 3 and "oops" in str(e.value)
    assert host.run("exit 4", check=False).returncode == 4
    assert host.run(["cat"], input="hello").stdout == "hello"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        host.run(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_without_gateway(host_nogw: HostNS) -> None:
    assert host_nogw.gw is None
    assert "192.0.2.10/24" in host_nogw.run("ip -4 addr show eth0").stdout
    assert "default via 192.0.2.1" in host_nogw.run("ip -4 route").stdout
    assert "default via 2001:db8::1" in host_nogw.run("ip -6 route").stdout
    assert "linkdown" not in host_nogw.run("ip route; ip -6 route").stdout
    r = host_nogw.run(["ping", "-c1", "-W1", FAR_ADDR4], check=False, timeout=10)
    assert r.returncode != 0


def test_loopback_servers(host: HostNS) -> None:
    sink = host.serve("tcp-sink", "127.0.0.1")
    assert host.client("tcp-send", "127.0.0.1", sink.port, "--bytes", "300000")["ok"]
    echo = host.serve("tcp-echo", "::1")
    assert host.client("tcp-echo-check", "::1", echo.port)["ok"]
    udp = host.serve("udp-echo", "127.0.0.1")
    assert host.client("udp-echo-check", "127.0.0.1", udp.port, "--count", "5")["ok"]
    # the servers live in HostNS only: not on the test's own loopback
    r = subprocess.run([sys.executable, str(REPO / "tests/tools/netserve.py"), "tcp-send",
                        "127.0.0.1", str(sink.port), "--timeout", "2"],
                       capture_output=True, text=True, timeout=10)
    assert not json.loads(r.stdout)["ok"]


def test_guest_namespace(host: HostNS) -> None:
    with GuestNS(host) as guest:
        assert guest.userns_id == host.userns_id
        assert guest.netns_id != host.netns_id
        assert guest.run("ip -br link").stdout.split()[:2] == ["lo", "DOWN"]
        caps = guest.run(["grep", "CapPrm", f"/proc/{guest.pid}/status"]).stdout
        assert caps.split()[1] == "0" * 16
        proc = guest.popen(["sleep", "60"])
        pid = guest.pid
    assert _gone(pid) and _gone(proc.pid)


def test_configure_extra() -> None:
    extra = ["ip link add x7 type veth peer name y7", "ip addr add 198.51.100.7/24 dev x7"]
    with HostNS(extra=extra, mtu=9000) as host:
        assert "198.51.100.7/24" in host.run("ip -4 addr show x7").stdout
        assert "mtu 9000" in host.run("ip link show eth0").stdout
        host.configure(["ip link set y7 up", "ip link set x7 up"])
        assert "UP" in host.run("ip -br link show x7").stdout


def test_cleanup_kills_everything() -> None:
    with HostNS() as host:
        assert host.gw is not None
        guest = host.guest()
        pids = [host.pid, host.gw.pid, guest.pid]
        proc = host.popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE,
                          text=True)
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        # started by run(), but left behind in the background: swept too
        orphan = int(host.run("setsid sleep 300 >/dev/null 2>&1 & echo $!").stdout)
        pids += [proc.pid, grandchild, orphan]
        assert not any(_gone(p) for p in pids)
    assert wait_for(lambda: all(_gone(p) for p in pids), 5), \
        [p for p in pids if not _gone(p)]


def test_holders_die_with_test_process(tmp_path: os.PathLike) -> None:
    """PR_SET_PDEATHSIG: a harness user killed by SIGKILL leaves nothing behind."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from tests.netenv import HostNS
        h = HostNS().start()
        g = h.guest()
        print(h.pid, h.gw.pid, g.pid, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 3 and not any(_gone(x) for x in pids)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(5)
    assert wait_for(lambda: all(_gone(x) for x in pids), 5)
