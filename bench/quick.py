#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Quick A/B runs with the CPU each operation costs: for changing the data path.

The shared suite (bench/compare.py) gives the official ratios but takes
minutes and reports rates only. This runs a few cases against one
pasta-compatible command in a HostNS (tests/netenv.py: traffic stays on
loopback and inside our namespaces) and adds what the rate hides: the CPU
time of pasta's processes (parent + worker, from /proc/PID/stat) per
operation, and the parent's share. Alternate two commands in a loop to
compare them in the same minutes:

    .venv/bin/python bench/quick.py --cases crr_out,crr_in,rr_out,rr_in
    .venv/bin/python bench/quick.py --pasta '/usr/bin/pasta --runas 0:0' --cases splice_out

Cases: crr_out / crr_in (connect, 1 byte each way, close; from the
namespace to the gateway address, or from the host's address to -t),
rr_out / rr_in (1-byte round trips on one connection), splice_out /
splice_in (iperf3 through -T / -t between the loopbacks).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

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

RR = str(REPO.parent / "shared" / "bench" / "rr.py")
RR_PORT_HOST, RR_PORT_NS, IPERF_HOST, IPERF_NS = 5301, 5302, 5203, 5202


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta", default=PASTA, help="command (split on spaces) taking pasta's options")
    ap.add_argument("--cases", default="crr_out,crr_in,rr_out,rr_in")
    ap.add_argument("--count", type=int, default=3000, help="connections per crr run (rr: 5x this)")
    ap.add_argument("--time", type=int, default=4, help="iperf3 seconds for the splice cases")
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    cases = a.cases.split(",")
    with HostNS(gateway=False) as host:
        guest = host.guest()
        guest.run("ip link set lo up")
        for ns, addr, port in ((host, "127.0.0.1", RR_PORT_HOST), (guest, "0.0.0.0", RR_PORT_NS)):
            srv = ns.popen([PYTHON, RR, "server", addr, str(port)], stdout=subprocess.PIPE)
            assert srv.stdout is not None
            srv.stdout.readline()  # "ready" (the server exits with the namespace)
        if any(c.startswith("splice") for c in cases):
            host.popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_HOST)], stdout=subprocess.DEVNULL)
            guest.popen(["iperf3", "-s", "-p", str(IPERF_NS)], stdout=subprocess.DEVNULL)
        p = host.popen([*a.pasta.split(), "-f", "-q", "--config-net", "-t", f"{RR_PORT_NS},{IPERF_NS}",
                        "-T", str(IPERF_HOST), "--netns", guest.netns_path])
        if not wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr", check=False).stdout, 10):
            sys.exit("quick: the namespace was not configured")
        time.sleep(0.5)
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            pids = [p.pid, *map(int, f.read().split())]
        res: dict[str, list[str]] = {}
        for _ in range(a.reps):
            for case in cases:
                kind, where = case.split("_")
                c0, p0 = cpu_seconds(pids), cpu_seconds(pids[:1])
                if kind == "splice":
                    ns = guest if where == "out" else host
                    port = IPERF_HOST if where == "out" else IPERF_NS
                    r = ns.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(a.time), "-J"],
                               timeout=a.time + 30)
                    gbit = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
                    c1 = cpu_seconds(pids)
                    res.setdefault(case, []).append(f"{gbit:.2f} Gbit/s, {100 * (c1 - c0) / a.time:.0f}% CPU")
                    continue
                mode = "connrate" if kind == "crr" else "pingpong"
                n = a.count if kind == "crr" else a.count * 5
                if where == "out":
                    r = guest.run([PYTHON, RR, mode, GW_ADDR4, str(RR_PORT_HOST), "--count", str(n)], timeout=60)
                else:
                    r = host.run([PYTHON, RR, mode, HOST_ADDR4, str(RR_PORT_NS), "--count", str(n)], timeout=60)
                c1, p1 = cpu_seconds(pids), cpu_seconds(pids[:1])
                j = json.loads(r.stdout)
                done = j.get("connections") or j.get("round_trips") or 1
                res.setdefault(case, []).append(
                    f"{j['rate']:.0f}/s, {1e6 * (c1 - c0) / done:.0f} µs CPU per op "
                    f"(parent {1e6 * (p1 - p0) / done:.0f})")
        stop_process(p)
    print(json.dumps(res, ensure_ascii=False))


if __name__ == "__main__":
    main()
