# SPDX-License-Identifier: GPL-2.0-or-later
"""Floods from the guest of every kind pasta answers itself or translates.

In pasta mode and in passt mode (where the guest is a kernel behind
tests/tools/streambridge.py: passt's socket relayed to a tap device in the
guest namespace, as qemu's stream netdev would), for each kind
(tests/tools/guestflood.py): ARP requests, IPv6 neighbour
solicitations, DHCPDISCOVERs from random MACs, ICMP echo with random
identifiers, UDP to thousands of ports of the gateway, UDP to thousands of
2001:db8:1:: destinations (a prefix made local to the test's gateway
namespace, so that every one of them exists there), and slow readers (connections whose 4 KiB receive
buffer is never drained while the host side sends without pause). While
the flood runs, a 4 MiB transfer from the guest to a host loopback sink must
arrive whole (sha256 checked by the sink); throughout, pasta runs, each
process keeps its fds within its RLIMIT_NOFILE, and the PSS of pasta and
its children grows by less than 30 MiB (read from /proc: a process whose
PSS cannot be read fails the test), and the worker's own counters, read
through the control API (``--api-socket``), show the flood arrived.
Afterwards a fresh transfer and a UDP echo work. Rates under floods are measured in bench/conns.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.test_tcp_flood import GROWTH_MAX, _fds, _nofile, _pss, _tree
from tests.netenv import (
    GW_ADDR4,
    PASST,
    PYTHON,
    REPO,
    TOOLS,
    GuestNS,
    HostNS,
    wait_for,
)

pytestmark = pytest.mark.integration

FLOOD = str(TOOLS / "guestflood.py")
CTL = str(REPO / ".venv" / "bin" / "passt-sep")
MIB = 1 << 20

SOURCE = textwrap.dedent('''
    """Send without pause to every connection, 30 s at most: source.py PORT."""
    import socket, sys, threading, time
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(512)
    print("READY", ls.getsockname()[1], flush=True)
    end = time.monotonic() + 30
    def feed(c):
        c.settimeout(1.0)
        chunk = b"x" * 65536
        while time.monotonic() < end:
            try:
                c.send(chunk)
            except TimeoutError:
                continue
            except OSError:
                break
        c.close()
    ls.settimeout(1.0)
    while time.monotonic() < end:
        try:
            c, _ = ls.accept()
        except TimeoutError:
            continue
        threading.Thread(target=feed, args=(c,), daemon=True).start()
''')

PROTO = {"arp": "arp", "ns": "icmpv6", "dhcp": "udp", "icmp": "icmp", "udp-ports": "udp",
         "udp-dests": "udp", "slowread": "tcp"}  # the frames_from_guest counter a flood moves

KINDS = [
    ("arp", 20000),
    ("ns", 20000),
    ("dhcp", 5000),
    ("icmp", 20000),
    ("udp-ports", 20000),
    ("udp-dests", 20000),
    ("slowread", 200),
]


def _passt(host: HostNS, guest: GuestNS, tmp: Path) -> subprocess.Popen:
    """passt, and the guest's eth0 behind streambridge.py with the host's addresses."""
    sock = tmp / "passt.socket"
    p = host.popen([PASST, "-f", "-q", "-s", str(sock), "--api-socket", str(tmp / "api")],
                   stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, text=True)
    assert wait_for(sock.exists, 15), "no passt socket"
    relay = guest.popen([PYTHON, str(TOOLS / "streambridge.py"), str(sock), "--seconds", "300"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert relay.stdout is not None
    line = relay.stdout.readline()
    assert line.strip() == "READY", (line, relay.stderr.read() if relay.stderr else "")
    return p


@pytest.mark.parametrize("mode", ["pasta", "passt"])
@pytest.mark.parametrize("kind,count", KINDS, ids=[k for k, _ in KINDS])
def test_flood_leaves_other_flows_whole(mode: str, kind: str, count: int, tmp_path: Path) -> None:
    with HostNS() as host:
        guest = host.guest()
        api = tmp_path / "api"
        pasta = (host.pasta(guest, "--api-socket", str(api), v6=True) if mode == "pasta"
                 else _passt(host, guest, tmp_path))
        sink = host.serve("tcp-sink", "127.0.0.1")
        echo = host.serve("udp-echo", "127.0.0.1")
        arg = GW_ADDR4
        assert host.gw is not None
        host.gw.configure(["ip -6 route add local 2001:db8:1::/64 dev lo"])
        if kind == "slowread":
            src = tmp_path / "source.py"
            src.write_text(SOURCE)
            sp = host.popen([PYTHON, str(src)], stdout=subprocess.PIPE, text=True)
            assert sp.stdout is not None
            arg = f"{GW_ADDR4}:{sp.stdout.readline().split()[1]}"
        res = guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(MIB))
        assert res["ok"], res  # warm: buffers and tables exist before the first reading
        guest.run(["ping", "-c1", "-W2", GW_ADDR4], check=False)
        pids = _tree(pasta.pid)
        assert len(pids) >= 2, pids  # parent and worker
        before = _pss(pids)
        limits = {p: _nofile(p) for p in pids}
        peak = {p: _fds(p) for p in pids}
        fl = guest.popen([PYTHON, FLOOD, kind, "eth0", str(count), arg], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        during = guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(4 * MIB), "--timeout", "30",
                              timeout=40)
        end = time.monotonic() + 40
        while fl.poll() is None and time.monotonic() < end:
            for p in pids:
                peak[p] = max(peak[p], _fds(p))
            time.sleep(0.05)
        settle = time.monotonic() + 2.0  # the worker's socket requests drain after the flood
        while time.monotonic() < settle:
            for p in pids:
                peak[p] = max(peak[p], _fds(p))
            time.sleep(0.05)
        out, err = fl.communicate(timeout=5)
        assert fl.returncode == 0, err
        flood = json.loads(out.strip().splitlines()[-1])
        after = _pss(pids)
        print(f"\n{mode} {kind}: {flood}, PSS {before >> 10} -> {after >> 10} KiB, peak fds {peak} (limits {limits})")
        assert pasta.poll() is None, pasta.stderr.read() if pasta.stderr else ""
        assert flood["sent"] >= count * 9 // 10, flood
        assert during["ok"], during  # the transfer beside the flood arrived whole
        assert after - before < GROWTH_MAX, (before, after)
        assert all(peak[p] <= limits[p] for p in pids), (peak, limits)
        # the flood did reach the worker: its own counters, through the control API
        r = subprocess.run([CTL, "ctl", str(api), "stats"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        stats = json.loads(r.stdout)["return"]
        seen = stats["frames_from_guest"][PROTO[kind]]
        print(f"{mode} {kind}: frames from the guest {stats['frames_from_guest']}, drops {stats['drops']}")
        # (a pasta flood outruns the worker's reads: the namespace's tap queue
        # drops the rest, in the guest's kernel)
        assert seen >= (count if kind == "slowread" else count // 10), (seen, stats)
        if kind == "icmp":  # the gateway is an allowed destination: only the quota refuses
            assert "icmp destination refused" not in stats["drops"], stats["drops"]
            # the flood's flows (most without a socket: the quota) make room for a new one
            r = guest.run(["ping", "-c1", "-W5", GW_ADDR4], check=False, timeout=15)
            assert r.returncode == 0, (r.stdout, r.stderr)
        again = guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(MIB), "--timeout", "15",
                             timeout=25)
        assert again["ok"], again
        udp = guest.client("udp-echo-check", GW_ADDR4, echo.port, "--count", "20", timeout=20)
        assert udp["ok"], udp
