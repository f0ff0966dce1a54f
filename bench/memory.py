#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Idle memory of passt-sep (parent + worker) beside C pasta, as PSS.

Runs each implementation attached to a fresh namespace inside a HostNS (a
user + network namespace playing the host, see tests/netenv.py), lets it
settle, and sums Pss from /proc/PID/smaps_rollup over the process and its
children. PSS counts pages shared between parent and worker once, which
RSS would count twice. Prints one JSON line per implementation.

    .venv/bin/python bench/memory.py [--reps 3] [--impls passt-sep@main,passt-sep,pasta-c]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netenv import PASTA, HostNS, stop_process, wait_for  # noqa: E402


def _kv(path: str, key: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    """pid and its descendants."""
    out = [pid]
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for kid in f.read().split():
                out += tree(int(kid))
    return out


def measure(cmd: list[str], settle: float) -> dict[str, int]:
    """Start cmd against a fresh guest namespace; PSS and RSS in KiB."""
    with HostNS() as host:
        guest = host.guest()
        p = host.popen(cmd + ["--netns", guest.netns_path])
        try:
            ok = wait_for(lambda: "192.0.2.10" in guest.run("ip -4 -br addr", check=False).stdout, 10)
            if not ok:
                raise RuntimeError(f"{cmd[0]} did not configure the namespace")
            time.sleep(settle)
            pids = tree(p.pid)
            pss = sum(_kv(f"/proc/{q}/smaps_rollup", "Pss") for q in pids)
            rss = sum(_kv(f"/proc/{q}/status", "VmRSS") for q in pids)
            return {"pss_kib": pss, "rss_kib": rss, "processes": len(pids)}
        finally:
            stop_process(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--impls", default="passt-sep,pasta-c",
                    help="passt-sep (this tree), passt-sep@REV (a git revision, bench/compare.py), pasta-c")
    a = ap.parse_args()
    common = ["-f", "-q", "--config-net", "-t", "none", "-u", "none", "-T", "none", "-U", "none"]
    impls = {}
    for name in a.impls.split(","):
        if name == "pasta-c":
            impls[name] = ["/usr/bin/pasta", "--runas", "0:0"] + common
        elif name.startswith("passt-sep@"):
            from bench.compare import frozen

            impls[name] = [frozen(name.split("@", 1)[1])] + common
        else:
            impls[name] = [PASTA] + common
    runs: dict[str, list[dict[str, int]]] = {name: [] for name in impls}
    for _ in range(a.reps):  # alternating, so that a drift of the machine hits all alike
        for name, cmd in impls.items():
            runs[name].append(measure(cmd, a.settle))
    for name, rs in runs.items():
        print(json.dumps({"impl": name, "case": "memory_idle", "unit": "KiB",
                          "pss_median": statistics.median(r["pss_kib"] for r in rs),
                          "rss_median": statistics.median(r["rss_kib"] for r in rs),
                          "processes": rs[0]["processes"]}), flush=True)


if __name__ == "__main__":
    main()
