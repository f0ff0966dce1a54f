# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's adaptive polling end to end (passt_sep/worker/busypoll.py).

pasta attached to a GuestNS in a HostNS; the guest makes 1-byte round
trips with an echo server on the host's loopback through the gateway
address, then uploads 20 MiB (sha256 checked by the sink). What is
checked, from the worker's own counters (logged at exit with -d) and its
CPU time in /proc: during the exchange most waits end by polling,
wake-ups that moved bulk data sleep without polling, once traffic stops
the worker sleeps (it does not keep polling), and
PASST_SEP_BUSY_POLL_US=0 turns polling off.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.netenv import GW_ADDR4, HostNS, cpu_seconds, worker_of

pytestmark = pytest.mark.integration

ROUND_TRIPS = 3000
IDLE = 2.0
BULK = 20 << 20


def _run(host: HostNS, tmp_path: Path, env_value: str | None) -> tuple[dict, float]:
    """Round trips, then an idle spell; (worker counters, worker CPU while idle)."""
    guest = host.guest()
    srv = host.serve("tcp-echo", "127.0.0.1")
    env = dict(os.environ)
    env.pop("PASST_SEP_BUSY_POLL_US", None)
    if env_value is not None:
        env["PASST_SEP_BUSY_POLL_US"] = env_value
    log = tmp_path / "pasta.log"
    with log.open("w") as out:
        p = host.pasta(guest, "-d", quiet=False, stdout=out, stderr=subprocess.STDOUT, env=env)
    r = guest.client("tcp-pingpong", GW_ADDR4, srv.port, "--count", str(ROUND_TRIPS), timeout=120)
    assert r["ok"], r
    sink = host.serve("tcp-sink", "127.0.0.1")
    r = guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(BULK), timeout=120)
    assert r["ok"], r  # the sink's sha256 and length match
    w = worker_of(p.pid)
    time.sleep(0.5)  # the connection's last ACKs and the close
    c0 = cpu_seconds([w])
    time.sleep(IDLE)
    idle_cpu = cpu_seconds([w]) - c0
    p.send_signal(signal.SIGTERM)
    p.wait(10)
    m = re.search(r"busy poll: max (\d+) µs, (\d+) waits ended polling, (\d+) slept, (\d+) after bulk", log.read_text())
    assert m, log.read_text()[-2000:]
    return {"max_us": int(m[1]), "hits": int(m[2]), "sleeps": int(m[3]), "bulk": int(m[4])}, idle_cpu


def test_polls_during_round_trips_and_sleeps_when_idle(host: HostNS, tmp_path: Path) -> None:
    counters, idle_cpu = _run(host, tmp_path, None)
    assert counters["max_us"] == 100
    # each round trip is two waits (for the server, for the guest): a good
    # share of them end by polling when the peers answer within 100 µs
    assert counters["hits"] > ROUND_TRIPS // 10, counters
    # the 20 MiB upload: wake-ups that moved bulk data sleep without polling
    assert counters["bulk"] > 0, counters
    # idle: the 1 s housekeeping timer and nothing else (a worker that kept
    # polling would use the whole IDLE spell)
    assert idle_cpu < 0.2 * IDLE, idle_cpu


def test_zero_turns_polling_off(host: HostNS, tmp_path: Path) -> None:
    counters, _ = _run(host, tmp_path, "0")
    assert counters["max_us"] == 0
    assert counters["hits"] == 0
    assert counters["sleeps"] >= ROUND_TRIPS  # at least one sleep per round trip
