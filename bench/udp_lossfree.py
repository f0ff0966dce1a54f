#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The highest loss-free UDP rate per path, passt-sep beside C pasta, same run.

Steps the offered rate of the shared suite's UDP case (``../shared/bench/bench.sh
--cases udp --udp-rate R``: iperf3 -u -l 1400 at R bit/s) up a ladder; at each
rung every implementation runs once, alternating, so drifts of the shared
machine hit both alike. A path passes a rung when the loss iperf3's server
reports is under ``--max-loss`` percent (0.5 by default) and the received rate
is at least 90 % of the offered one, in the best of ``--tries`` runs; a path's
figure is the highest rung it passed before ``--patience`` rungs in a row
failed (a machine shared with other work loses a datagram now and then at
any rate: one failed rung does not end a path). The ladder stops once every
path of every implementation has ended (or at its top).

    .venv/bin/python bench/udp_lossfree.py
    .venv/bin/python bench/udp_lossfree.py --rates 200M,500M,1G,2G --time 3 --tries 2
    .venv/bin/python bench/udp_lossfree.py --impls passt-sep@4093552,passt-sep@HEAD,pasta-c

``passt-sep@REV`` runs the code of a git revision (``compare.frozen``): before
and after a change in the same run.

Every JSON line goes to bench/results/lossfree-STAMP.jsonl; the table at the
end gives, per path, each implementation's highest loss-free rate in Mbit/s
and passt-sep's ratio to C pasta's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
from compare import impl_names, run  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_RATES = "50M,100M,150M,200M,300M,400M,500M,700M,1G,1.4G,2G,2.8G,4G"


def mbit(rate: str) -> float:
    """An iperf3 -b figure (100M, 1.4G) in Mbit/s."""
    mult = {"K": 1e-3, "M": 1.0, "G": 1e3}.get(rate[-1].upper())
    return float(rate[:-1]) * mult if mult else float(rate) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impls", default="passt-sep,pasta-c")
    ap.add_argument("--rates", default=DEFAULT_RATES, help="the ladder, iperf3 -b figures, ascending")
    ap.add_argument("--max-loss", type=float, default=0.5, help="percent lost that still counts as loss-free")
    ap.add_argument("--time", type=int, default=3, help="iperf3 seconds per run")
    ap.add_argument("--patience", type=int, default=2, help="failed rungs in a row that end a path")
    ap.add_argument("--tries", type=int, default=2,
                    help="runs per rung and implementation; a path passes if its best run does")
    a = ap.parse_args()
    impls, names = impl_names(a.impls)
    compare.NAMES.update(names)  # the results name each implementation as given
    rates = a.rates.split(",")
    best: dict[tuple[str, str], float] = {}  # (impl, path) -> Mbit/s
    failed: set[tuple[str, str]] = set()  # ended
    misses: dict[tuple[str, str], int] = {}  # failed rungs in a row
    paths: set[str] = set()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (HERE / "results").mkdir(exist_ok=True)
    out = HERE / "results" / f"lossfree-{stamp}.jsonl"
    with out.open("w") as f:
        for rate in rates:
            offered = mbit(rate)
            for impl in impls:
                name = names.get(impl, impl)
                passed: dict[str, bool] = {}
                for _ in range(a.tries):
                    for d in run(impl, ["--cases", "udp", "--udp-rate", rate, "--reps", "1",
                                        "--time", str(a.time)]):
                        if not d.get("case", "").startswith("udp_") or "median" not in d:
                            continue
                        d["offered_mbit"] = offered
                        f.write(json.dumps(d) + "\n")
                        f.flush()
                        path = d["case"][4:]
                        paths.add(path)
                        loss = d.get("loss_pct_median")
                        ok = (loss is not None and loss < a.max_loss
                              and d["median"] * 1e3 >= 0.9 * offered)
                        passed[path] = passed.get(path, False) or ok
                for path, ok in passed.items():
                    key = (name, path)
                    if key in failed:
                        continue
                    if ok:
                        best[key] = offered
                        misses[key] = 0
                    else:
                        misses[key] = misses.get(key, 0) + 1
                        if misses[key] >= a.patience:
                            failed.add(key)
                print(f"{rate:>6} {name:10} " + " ".join(
                    f"{p}:{'ok' if ok else 'LOSS'}" for p, ok in sorted(passed.items())), flush=True)
            if paths and all((names.get(i, i), p) in failed for i in impls for p in paths):
                break
    cols = [names.get(i, i) for i in impls]
    print(f"\nhighest rate with loss < {a.max_loss} % (Mbit/s offered; '>' = passed the top rung)")
    ours_cols = [c for c in cols if c.startswith("passt-sep")]
    print(f"{'path':14}" + "".join(f"{c:>18}" for c in cols) + "".join(f"{c + '/pasta-c':>26}" for c in ours_cols))
    for path in sorted(paths):
        row = []
        for c in cols:
            v = best.get((c, path))
            row.append(("" if (c, path) in failed else ">") + (f"{v:g}" if v else "0"))
        ref = best.get(("pasta-c", path))
        ratios = [f"{best[(c, path)] / ref:26.2f}" if best.get((c, path)) and ref else f"{'-':>26}"
                  for c in ours_cols]
        print(f"{path:14}" + "".join(f"{x:>18}" for x in row) + "".join(ratios))
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
