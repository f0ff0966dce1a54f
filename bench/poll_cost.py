#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What the worker's adaptive polling costs at moderate rates (a developer's tool).

Busy polling (worker/busypoll.py) saves a wake-up when answers come within
its window and spins for nothing when they come a little later. The rr and
crr rows show the first; this shows the second: 1-byte round trips at fixed
rates (paced: one every 1/RATE s, not back to back), from the namespace to
a server on the host's loopback, over the tap (to the gateway address) or
the -T splice, and the CPU of pasta's processes per second of run. Run it
for two trees, or with ``PASST_SEP_BUSY_POLL_US`` set, to compare:

    .venv/bin/python bench/poll_cost.py --rates 500,2000,5000 --paths tap,splice
    .venv/bin/python bench/poll_cost.py --pasta /tmp/passt-sep-REV/pasta

Only loopback and the namespaces made here carry traffic (tests/netenv.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rrserver import start_server  # noqa: E402

from tests.netenv import (  # noqa: E402
    GW_ADDR4,
    HOST_ADDR4,
    PASTA,
    PYTHON,
    HostNS,
    cpu_seconds,
    stop_process,
    wait_for,
)

PORT = 5301

CLIENT = r"""
import socket, sys, time
addr, port, rate, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((addr, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
gap = 1.0 / rate
start = time.monotonic()
nxt = start
n = 0
lat = []
while n < rate * secs * 2:  # bounded: at most twice the planned count
    now = time.monotonic()
    if now - start >= secs:
        break
    if now < nxt:
        time.sleep(nxt - now)
    t0 = time.monotonic()
    s.sendall(b"x")
    if s.recv(1) != b"x":
        break
    lat.append(time.monotonic() - t0)
    n += 1
    nxt += gap
lat.sort()
print(n, time.monotonic() - start, lat[len(lat) // 2] if lat else 0.0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta", default=PASTA, help="command (split on spaces) taking pasta's options")
    ap.add_argument("--rates", default="500,2000,5000", help="round trips per second, comma-separated")
    ap.add_argument("--paths", default="tap,splice")
    ap.add_argument("--time", type=float, default=4.0)
    a = ap.parse_args()
    out: dict[str, str] = {}
    with HostNS(gateway=False) as host:
        guest = host.guest()
        guest.run("ip link set lo up")
        start_server(host, "127.0.0.1", PORT)
        p = host.popen([*a.pasta.split(), "-f", "-q", "--config-net", "-T", str(PORT), "--netns",
                        guest.netns_path])
        if not wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr", check=False).stdout, 10):
            sys.exit("poll_cost: the namespace was not configured")
        time.sleep(0.5)
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            pids = [p.pid, *map(int, f.read().split())]
        for path in a.paths.split(","):
            addr = GW_ADDR4 if path == "tap" else "127.0.0.1"
            for rate in a.rates.split(","):
                c0 = cpu_seconds(pids)
                r = guest.run([PYTHON, "-c", CLIENT, addr, str(PORT), rate, str(a.time)], timeout=a.time + 30)
                c1 = cpu_seconds(pids)
                n, secs, median = r.stdout.split()
                out[f"{path} {rate}/s"] = (f"{int(n) / float(secs):.0f}/s done, median {float(median) * 1e6:.0f} µs, "
                                           f"pasta {100 * (c1 - c0) / float(secs):.0f}% of a CPU")
        stop_process(p)
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
