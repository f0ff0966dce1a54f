# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's fd budget (issue 17, item 5), read back from /proc.

Real pasta in a HostNS, started with a hard RLIMIT_NOFILE the test chose
(prlimit): the worker's RLIMIT_NOFILE, soft and hard, is the budget its
tables were sized from (worker/limits.py: the parent's hard limit, at most
FD_BUDGET_MAX), set before isolation, so the kernel holds the worker to it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from passt_sep.worker import limits
from tests.netenv import (
    GW_ADDR4,
    HOST_ADDR4,
    PASTA,
    PYTHON,
    HostNS,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration


def _nofile(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line[len("Max open files"):].split()[:2]
                return soft, hard
    raise AssertionError(f"no Max open files in /proc/{pid}/limits")


@pytest.mark.parametrize("hard", [2048, None])
def test_worker_nofile_is_the_budget(host: HostNS, hard: int | None) -> None:
    """2048, and the test's own hard limit.

    The parent raises its soft limit to the hard one before the fork, so
    where the hard limit is at most FD_BUDGET_MAX the worker would show the
    same numbers without limits.apply(); the second case tells them apart
    where it is above (systemd's default hard limit is 524288).
    """
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard == resource.RLIM_INFINITY:
            pytest.skip("no hard RLIMIT_NOFILE to start from")
    want = min(hard, limits.FD_BUDGET_MAX)
    p = host.popen(["prlimit", f"--nofile=1024:{hard}", "--", PASTA, "--config-net", "-q", "--", "sleep", "60"])
    try:
        assert wait_for(lambda: worker_of(p.pid), 15), "worker did not start"
        w = worker_of(p.pid)
        assert wait_for(lambda: _nofile(w) == (str(want), str(want)), 5), _nofile(w)
        parent_soft, parent_hard = _nofile(p.pid)
        assert parent_hard == str(hard)  # the test set what it meant to: the worker lowered its own
    finally:
        stop_process(p)


def test_apply_sets_soft_and_hard_to_the_budget() -> None:
    """limits.apply() itself, in a forked child whose soft limit is below the budget."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            limits.apply()
            code = 0 if _nofile(os.getpid()) == (str(limits.BUDGET), str(limits.BUDGET)) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


UDP_FILL = textwrap.dedent('''
    """udp_fill.py GW COUNT: one datagram from COUNT sockets (COUNT source ports) to COUNT ports of GW."""
    import socket, sys
    gw, count = sys.argv[1], int(sys.argv[2])
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", (gw, 20000 + i))
        socks.append(s)
    print(len(socks))
''')


def test_udp_flows_up_to_their_limit_leave_tcp_its_fds(tmp_path: Path) -> None:
    """The issue's scenario: a guest opens UDP flows far past the UDP table's limit
    at a 1,024 fd budget; the worker stays within its budget, pasta runs on,
    and TCP connections still get through."""
    fill = tmp_path / "udp_fill.py"
    fill.write_text(UDP_FILL)
    with HostNS() as host:
        guest = host.guest()
        p = host.popen(["prlimit", "--nofile=1024:1024", "--", PASTA, "-f", "-q", "--config-net",
                        "--netns", guest.netns_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout, 15)
        w = worker_of(p.pid)
        assert _nofile(w) == ("1024", "1024")
        srv = host.serve("tcp-sink", "127.0.0.1")
        baseline = len(os.listdir(f"/proc/{w}/fd"))
        r = guest.run([PYTHON, str(fill), GW_ADDR4, "1500"], timeout=60)
        assert r.stdout.strip() == "1500", r.stderr
        time.sleep(0.5)  # the worker has asked for (and been refused or given) every flow's socket
        held = len(os.listdir(f"/proc/{w}/fd"))
        udp_share = (1024 - limits.RESERVE) * limits.SHARES["udp"] // limits.SHARES_OF  # as limits.py splits a 1,024 budget
        assert held - baseline <= udp_share, (baseline, held, udp_share)  # the UDP table kept to its share
        assert held - baseline >= udp_share // 4, (baseline, held)  # and the test did fill it
        for _ in range(10):
            res = guest.client("tcp-send", GW_ADDR4, srv.port, "--bytes", "65536", "--timeout", "10", timeout=20)
            assert res["ok"], res
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        print(f"\nworker fds: {baseline}, after 1500 UDP flows: {held} of 1024 (UDP share {udp_share})")
