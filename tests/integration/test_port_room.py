# SPDX-License-Identifier: GPL-2.0-or-later
"""``all`` and large port sets under a small RLIMIT_NOFILE (issue 20, item 2).

Real passt and pasta in a HostNS, started under a hard RLIMIT_NOFILE the
test sets with prlimit (libvirtd runs with 8192; 1024 is the common
default). The process must run, with a warning naming the first port left
out, or exit 1 with one line naming the option and the limit; never die of
EMFILE half-way (before: "internal error: OSError: [Errno 24] Too many open
files" from socket.socketpair()). A port that was bound forwards: TCP from
the gateway through ``-t %eth0/all`` into the guest, sha256 checked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_passt_mode import check_arp_reply
from tests.netenv import (
    HOST_ADDR4,
    PASST,
    PASTA,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

LEFT_OUT = re.compile(r"Can't open enough sockets for (TCP|UDP) port forwarding '([^']*)' under "
                      r"RLIMIT_NOFILE (\d+) \(room for (\d+)\), ports from (\d+) on are not forwarded")




def limited(hard: int, argv: list[str]) -> list[str]:
    return ["prlimit", f"--nofile={hard}:{hard}", "--", *argv]


def listening(host: HostNS, proto: str) -> str:
    return host.run(["ss", "-Hln", f"-{proto}"]).stdout


def left_out(text: str) -> dict[str, tuple[int, int, int]]:
    """proto -> (limit, room, first port left out), from the warnings."""
    return {m[1]: (int(m[3]), int(m[4]), int(m[5])) for m in LEFT_OUT.finditer(text)}


def _passt_runs(host: HostNS, tmp: Path, hard: int, spec: str) -> None:
    sock, logf = tmp / "s", tmp / "log"
    p = host.popen(limited(hard, [PASST, "-f", "-1", "-s", str(sock), "-l", str(logf),
                                  "-t", spec, "-u", spec]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        c = socket.socket(socket.AF_UNIX)
        assert wait_for(lambda: p.poll() is not None or c.connect(str(sock)) is None, 20), "no socket"
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        check_arp_reply(c)  # set-up finished and the worker serves
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        log = logf.read_text()
        assert "Too many open files" not in log and "internal error" not in log, log
        found = left_out(log)
        assert set(found) == {"TCP", "UDP"}, log
        for proto, (limit, room, first) in found.items():
            assert limit == hard
            # ports 1..first-1 went in (those taken by something else are skipped)
            assert 1 < first <= room + 1, (proto, room, first)
        tcp, udp = listening(host, "t"), listening(host, "u")
        dev = "%eth0" if spec.startswith("%eth0") else ""
        last = found["TCP"][2] - 1
        assert re.search(rf"[\]*]{re.escape(dev)}:{last}\s", tcp), tcp  # the last port bound
        assert not re.search(rf":{found['TCP'][2]}\s", tcp), "the port left out is bound"
        assert re.search(rf"{re.escape(dev)}:{found['UDP'][2] - 1}\s", udp), udp
        c.close()
        assert p.wait(10) == 0  # --one-off
    finally:
        stop_process(p)


@pytest.mark.parametrize("spec", ["all", "%eth0/all"])
def test_passt_all_under_8192_runs_and_names_the_first_port_left_out(host, tmp, spec):
    _passt_runs(host, tmp, 8192, spec)


def test_passt_all_under_1024_runs(host, tmp):
    _passt_runs(host, tmp, 1024, "all")


def test_explicit_ports_past_the_room_exit_1_with_one_line(host):
    r = host.run(limited(1024, [PASST, "-f", "-t", "1-20000"]), check=False, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("passt: -t 1-20000: Can't open enough sockets for port specifier")
    assert "RLIMIT_NOFILE 1024" in lines[-1], lines
    assert "Traceback" not in r.stderr


def test_no_room_at_all_is_one_line(host):
    r = host.run(limited(200, [PASST, "-f", "-t", "all", "-u", "all"]), check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == \
        "passt: -t all: Can't open enough sockets for port specifier: no room under RLIMIT_NOFILE 200"


def test_pasta_all_is_refused_with_one_line(host):
    """pasta takes no bare 'all', as passt's pasta (only %IF/all, ADDR/all)."""
    r = host.run([PASTA, "-f", "-t", "all", "--", "true"], check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip() == "pasta: 'all' port forwarding is only allowed for passt: -t all"


@pytest.mark.parametrize("hard", [8192, 1024])
def test_pasta_eth0_all_runs_and_forwards_tcp(host, hard):
    """pasta -t %eth0/all -u %eth0/all: runs, warns, and a bound port forwards
    TCP from the gateway (through eth0: SO_BINDTODEVICE) into the guest, sha256."""
    guest = host.guest()
    assert host.gw is not None
    p = host.popen(limited(hard, [PASTA, "-f", "--config-net", "-t", "%eth0/all", "-u", "%eth0/all",
                                  "--netns", guest.netns_path]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout
                        or p.poll() is not None, 20)
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        srv = guest.serve("tcp-sink", "0.0.0.0", 22)
        res = host.gw.client("tcp-send", HOST_ADDR4, 22, "--bytes", str(4 << 20), "--timeout", "30",
                             timeout=60)
        assert res["ok"], res  # the sink's sha256 matched what was sent
        srv.stop()
        assert p.poll() is None
        os.kill(p.pid, signal.SIGTERM)
        _out, err = p.communicate(timeout=10)
        assert "Too many open files" not in err and "internal error" not in err, err
        found = left_out(err)
        assert set(found) == {"TCP", "UDP"}, err
        assert all(limit == hard and first > 22 for limit, _room, first in found.values()), found
    finally:
        stop_process(p)
