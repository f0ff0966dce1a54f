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
rr_out / rr_in (1-byte round trips on one connection), crr_loout /
crr_loin and rr_loout / rr_loin (the same between the loopbacks, through
-T and a spliced -t), splice_out / splice_in (iperf3 through -T / -t
between the loopbacks), udp_out / udp_in / udp_loout / udp_loin (iperf3
-u -l 1400 at ``--udp-rate``, 0: no limit: over the tap to the gateway
address or from the host's address to -u, and between the loopbacks
through -U / a spliced -u; the rate the server received, its loss, and
the CPU time of pasta's processes per datagram received).

``--split`` adds, for the rr and crr cases, where all the CPU of an
operation went (for udp: as % of one CPU, and the share of the run each
process spent runnable but waiting for a CPU, from /proc/PID/schedstat):
user and system time per operation of pasta's parent and
worker, of the loopback server and of the client (from /proc and the
client's rusage), and how busy the machine's CPUs were (/proc/stat). That
is the budget docs/performance.md ("Session 5") reasons with.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rrserver import RR, start_server  # noqa: E402

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

RR_PORT_HOST, RR_PORT_NS, IPERF_HOST, IPERF_NS = 5301, 5302, 5203, 5202


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta", default=PASTA, help="command (split on spaces) taking pasta's options")
    ap.add_argument("--cases", default="crr_out,crr_in,rr_out,rr_in")
    ap.add_argument("--count", type=int, default=3000, help="connections per crr run (rr: 5x this)")
    ap.add_argument("--time", type=int, default=4, help="iperf3 seconds for the splice cases")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--udp-rate", default="0", help="iperf3 -b of the udp cases (0: no limit)")
    ap.add_argument("--split", action="store_true", help="user/system CPU of every process, per operation")
    a = ap.parse_args()
    cases = a.cases.split(",")
    with HostNS(gateway=False) as host:
        guest = host.guest()
        guest.run("ip link set lo up")
        servers = {}
        for ns, addr, port in ((host, "127.0.0.1", RR_PORT_HOST), (guest, "0.0.0.0", RR_PORT_NS)):
            servers[port] = _python_child(start_server(ns, addr, port).pid)
        if any(c.startswith(("splice", "udp")) for c in cases):
            hs = host.popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(IPERF_HOST)], stdout=subprocess.DEVNULL)
            gs = guest.popen(["iperf3", "-s", "-p", str(IPERF_NS)], stdout=subprocess.DEVNULL)
            time.sleep(0.2)
            iperf_servers = {"host": _python_child(hs.pid), "ns": _python_child(gs.pid)}
        p = host.popen([*a.pasta.split(), "-f", "-q", "--config-net", "-t", f"{RR_PORT_NS},{IPERF_NS}",
                        "-T", f"{IPERF_HOST},{RR_PORT_HOST}", "-u", str(IPERF_NS), "-U", str(IPERF_HOST),
                        "--netns", guest.netns_path])
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
                if kind == "udp":
                    drops0 = _udp_drops(host), _udp_drops(guest)
                    outbound = where in ("out", "loout")
                    udp_server = iperf_servers["host" if outbound else "ns"]
                    before = (_times([*pids, udp_server]), resource.getrusage(resource.RUSAGE_CHILDREN),
                              _cpu_busy())
                    waited = _waits([*pids, udp_server])
                    ns = guest if outbound else host
                    port = IPERF_HOST if outbound else IPERF_NS
                    addr = "127.0.0.1" if where.startswith("lo") else GW_ADDR4 if outbound else HOST_ADDR4
                    r = ns.run(["iperf3", "-c", addr, "-p", str(port), "-t", str(a.time), "-J", "-u",
                                "-b", a.udp_rate, "-l", "1400"], timeout=a.time + 30)
                    c1 = cpu_seconds(pids)
                    end = json.loads(r.stdout)["end"]
                    rcv = end["sum_received"]
                    got = max(1, end["sum"]["packets"] - end["sum"]["lost_packets"])
                    dh, dg = _udp_drops(host) - drops0[0], _udp_drops(guest) - drops0[1]
                    res.setdefault(case, []).append(
                        f"{rcv['bits_per_second'] / 1e9:.2f} Gbit/s, loss {end['sum']['lost_percent']:.1f}%, "
                        f"{1e6 * (c1 - c0) / got:.2f} µs CPU per datagram, "
                        f"full receive buffers: host {dh}, namespace {dg}")
                    if a.split:
                        after = (_times([*pids, udp_server]), resource.getrusage(resource.RUSAGE_CHILDREN),
                                 _cpu_busy())
                        # each process's share of one CPU over the run, in percent
                        res.setdefault(case + " split", []).append(
                            _split(before, after, len(pids), a.time * 10_000, "%") + " (% of one CPU); "
                            "waiting for a CPU: " + ", ".join(
                                f"{name} {100 * (w1 - w0) / 1e9 / a.time:.0f}%" for name, w0, w1 in
                                zip([*_names(len(pids)), "server"], waited, _waits([*pids, udp_server]),
                                    strict=True)))
                    continue
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
                outbound = where in ("out", "loout")
                watched = [*pids, servers[RR_PORT_HOST if outbound else RR_PORT_NS]]
                before = (_times(watched), resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_busy())
                # "lo": between the loopbacks, through -T / a spliced -t
                ns, port = (guest, RR_PORT_HOST) if outbound else (host, RR_PORT_NS)
                addr = "127.0.0.1" if where.startswith("lo") else GW_ADDR4 if outbound else HOST_ADDR4
                r = ns.run([PYTHON, RR, mode, addr, str(port), "--count", str(n)], timeout=60)
                c1, p1 = cpu_seconds(pids), cpu_seconds(pids[:1])
                j = json.loads(r.stdout)
                done = j.get("connections") or j.get("round_trips") or 1
                res.setdefault(case, []).append(
                    f"{j['rate']:.0f}/s, {1e6 * (c1 - c0) / done:.0f} µs CPU per op "
                    f"(parent {1e6 * (p1 - p0) / done:.0f})")
                if a.split:
                    after = (_times(watched), resource.getrusage(resource.RUSAGE_CHILDREN), _cpu_busy())
                    res.setdefault(case + " split", []).append(_split(before, after, len(pids), done))
        stop_process(p)
    print(json.dumps(res, ensure_ascii=False))


def _udp_drops(ns) -> int:  # type: ignore[no-untyped-def]
    """Datagrams a full receive buffer dropped in ns (UDP and UDP6 RcvbufErrors)."""
    out = ns.run(["cat", "/proc/net/snmp", "/proc/net/snmp6"], check=False).stdout
    lines = out.splitlines()
    total = 0
    for a, b in zip(lines, lines[1:], strict=False):
        if a.startswith("Udp: ") and b.startswith("Udp: ") and "RcvbufErrors" in a:
            total += int(b.split()[a.split().index("RcvbufErrors")])
    for line in lines:
        if line.startswith("Udp6RcvbufErrors"):
            total += int(line.split()[1])
    return total


def _python_child(pid: int) -> int:
    """The server itself: the process nsenter runs (its only child), else pid."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return pid
    return int(kids[0]) if kids else pid


def _times(pids: list[int]) -> list[tuple[float, float]]:
    """(user, system) seconds of each process."""
    tck = os.sysconf("SC_CLK_TCK")
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append((int(fields[11]) / tck, int(fields[12]) / tck))
        except (OSError, IndexError, ValueError):
            out.append((0.0, 0.0))
    return out


def _names(npasta: int) -> list[str]:
    """The names of pasta's processes: C pasta's one, or our parent and worker(s)."""
    return ["pasta"] if npasta == 1 else ["parent"] + [f"worker{i or ''}" for i in range(npasta - 1)]


def _waits(pids: list[int]) -> list[int]:
    """Nanoseconds each process has spent runnable but waiting for a CPU (schedstat)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                out.append(int(f.read().split()[1]))
        except (OSError, IndexError, ValueError):
            out.append(0)
    return out


def _cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs; idle and iowait are not busy."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)


def _split(before, after, npasta: int, done: int, unit: str = "") -> str:  # type: ignore[no-untyped-def]
    """'name u.. s..' in µs per operation (done: operations; with done = seconds *
    10,000 and unit "%": percent of one CPU), for pasta's processes, the server
    and the client."""
    names = [*_names(npasta), "server"]
    parts = []
    for name, (u0, s0), (u1, s1) in zip(names, before[0], after[0], strict=True):
        parts.append(f"{name} u{1e6 * (u1 - u0) / done:.0f}{unit} s{1e6 * (s1 - s0) / done:.0f}{unit}")
    r0, r1 = before[1], after[1]
    parts.append(f"client u{1e6 * (r1.ru_utime - r0.ru_utime) / done:.0f}{unit} "
                 f"s{1e6 * (r1.ru_stime - r0.ru_stime) / done:.0f}{unit}")
    (b0, t0), (b1, t1) = before[2], after[2]
    parts.append(f"CPUs {100 * (b1 - b0) / max(t1 - t0, 1):.0f}% busy")
    return ", ".join(parts)


if __name__ == "__main__":
    main()
