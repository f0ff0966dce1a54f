#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run ../shared/bench side by side: passt-sep, C pasta, slirp4netns.

The shared suite (../shared/bench/bench.sh) builds its own sandbox host in
a user + network namespace and runs every case against one implementation
per invocation when the implementation is a command. This script runs it
for each implementation back to back, in rounds (so slow drifts of the
machine hit all of them alike), keeps every JSON line in bench/results/,
and prints medians side by side with passt-sep's ratio to each peer.

    .venv/bin/python bench/compare.py --cases tcp,rr,crr,mtu1500 --reps 5 --rounds 1
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "bench" / "bench.sh"
OURS = str(REPO / ".venv" / "bin" / "pasta")


def run(impl: str, extra: list[str]) -> list[dict]:
    """One invocation of the shared suite; its JSON lines."""
    r = subprocess.run([str(SHARED), "--impl", impl, *extra], capture_output=True, text=True,
                       timeout=1000)
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            d["impl"] = "passt-sep" if impl == OURS else impl
            out.append(d)
    if r.returncode != 0:
        sys.stderr.write(f"compare: {impl} exited {r.returncode}: {r.stderr[-500:]}\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impls", default="passt-sep,pasta-c,slirp4netns")
    ap.add_argument("--rounds", type=int, default=1)
    a, extra = ap.parse_known_args()
    impls = [OURS if i == "passt-sep" else i for i in a.impls.split(",")]
    results: list[dict] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results").mkdir(exist_ok=True)
    path = HERE / "results" / f"compare-{stamp}.jsonl"
    with path.open("w") as f:
        for _ in range(a.rounds):
            for impl in impls:
                for d in run(impl, extra):
                    results.append(d)
                    f.write(json.dumps(d) + "\n")
                    f.flush()
    table: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    units = {}
    for d in results:
        if "median" in d:
            table[d["case"]][d["impl"]].append(d["median"])
            units[d["case"]] = d["unit"]
    names = ["passt-sep" if i == OURS else i for i in impls]
    print(f"{'case':24} {'unit':14} " + " ".join(f"{n:>12}" for n in names)
          + "   ours/" + "  ours/".join(names[1:]))
    for case in sorted(table):
        row = {n: statistics.median(v) for n, v in table[case].items()}
        ours = row.get("passt-sep")
        ratios = [f"{ours / row[n]:7.2f}" if ours and row.get(n) else "      -" for n in names[1:]]
        print(f"{case:24} {units[case]:14} "
              + " ".join(f"{row.get(n, float('nan')):12.3f}" for n in names) + "  " + "  ".join(ratios))
    print(f"raw results: {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
