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
    .venv/bin/python bench/compare.py --impls passt-sep,pasta-c,slirp4netns,loopback \
        --rounds 2 --reps 5 --plot docs/performance.png
    .venv/bin/python bench/compare.py --from bench/results/compare-STAMP.jsonl --plot out.png
    .venv/bin/python bench/compare.py --impls passt-sep@main,passt-sep,pasta-c --cases udp

``passt-sep@REV`` runs a git revision's code (``frozen``) beside this tree's.

``--plot FILE.png`` draws the table (matplotlib, ``pip install -e '.[bench]'``):
one bar group per case, one bar per implementation, each bar the ratio to
C pasta's median (drawn so that higher is better: for milliseconds and KiB
the inverse), on a log scale; where the ``loopback`` implementation ran, its
ceiling for the case's kind (tcp, udp, rr, crr) is marked as a line across
the group. ``--from`` tabulates and plots a results file instead of running.
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
NAMES: dict[str, str] = {OURS: "passt-sep"}  # command prefix -> name in the results


def frozen(rev: str) -> str:
    """A command running passt-sep as of git revision rev: its passt_sep, sandbox and
    policies unpacked under /tmp, and a launcher there that puts them first on
    sys.path (the venv's editable finder comes after the path; the worker is forked,
    so it runs that code too; PYTHONPATH would not do: the venv's own launchers run
    ``python -I``). A revision with passt_sep/launcher.py gets the launcher it would
    write itself (``python -IS``; site, or not, as that revision does). A before and an after in the same run."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", rev], capture_output=True,
                            text=True, check=True).stdout.strip()
    dest = Path(f"/tmp/passt-sep-{commit}")
    launcher = dest / "pasta"
    if not launcher.exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "passt_sep", "sandbox",
                                  "policies"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        python = REPO / ".venv" / "bin" / "python"
        if (dest / "passt_sep" / "launcher.py").exists():
            # the revision's own launcher (passt_sep/launcher.py writes it), pointed at the copy
            code = ("import sys; sys.path.insert(0, sys.argv[1]); from passt_sep import launcher as l\n"
                    "args = [sys.argv[2], sys.argv[1]]\n"
                    "if hasattr(l, 'site_paths'): args += list(l.site_paths())\n"
                    "sys.stdout.write(l.script(*args))\n")
            text = subprocess.run([str(python), "-c", code, str(dest), str(python)], capture_output=True,
                                  text=True, check=True).stdout
            launcher.write_text(text)
        else:
            launcher.write_text(f"#!{python} -I\nimport sys\nsys.path.insert(0, {str(dest)!r})\n"
                                "from passt_sep.main import main\nsys.exit(main())\n")
        launcher.chmod(0o755)
    return str(launcher)


def impl_names(spec: str) -> tuple[list[str], dict[str, str]]:
    """--impls: the command prefixes to run and the name each is shown as
    (``passt-sep`` this tree, ``passt-sep@REV`` a git revision's code)."""
    impls, names = [], {OURS: "passt-sep"}
    for i in spec.split(","):
        if i.startswith("passt-sep@"):
            cmd = frozen(i.split("@", 1)[1])
            names[cmd] = i
            impls.append(cmd)
        else:
            impls.append(OURS if i == "passt-sep" else i)
    return impls, names


def run(impl: str, extra: list[str]) -> list[dict]:
    """One invocation of the shared suite; its JSON lines."""
    r = subprocess.run([str(SHARED), "--impl", impl, *extra], capture_output=True, text=True,
                       timeout=1000)
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            d["impl"] = NAMES.get(impl, impl)
            out.append(d)
    if r.returncode != 0:
        sys.stderr.write(f"compare: {impl} exited {r.returncode}: {r.stderr[-500:]}\n")
    return out


def tabulate(results: list[dict]) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Per case, per implementation, the medians of every run; and each case's unit."""
    table: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    units = {}
    for d in results:
        if "median" in d:
            table[d["case"]][d["impl"]].append(d["median"])
            units[d["case"]] = d["unit"]
    return table, units


LOWER_IS_BETTER = ("ms", "KiB")
REFERENCE = "pasta-c"


def plot(table: dict[str, dict[str, list[float]]], units: dict[str, str], names: list[str],
         out: str) -> None:
    """Bar groups of each implementation's ratio to C pasta, higher is better, log scale."""
    import matplotlib  # only here: the suite itself needs no plotting library

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def med(case: str, impl: str) -> float | None:
        v = table.get(case, {}).get(impl)
        return statistics.median(v) if v else None

    cases = [c for c in sorted(table) if not c.endswith("_direct") and med(c, REFERENCE)]
    bars = [n for n in names if n not in (REFERENCE, "loopback")]
    if not cases or not bars:
        raise SystemExit(f"compare: nothing to plot (need {REFERENCE} and another implementation)")
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(cases) + 2), 5.0))
    width = 0.8 / len(bars)
    for k, impl in enumerate(bars):
        xs, ys = [], []
        for i, case in enumerate(cases):
            ours, ref = med(case, impl), med(case, REFERENCE)
            if ours and ref:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(ref / ours if units[case] in LOWER_IS_BETTER else ours / ref)
        ax.bar(xs, ys, width, label=impl)
    for i, case in enumerate(cases):
        ceiling = med(case.split("_")[0] + "_direct", "loopback")
        ref = med(case, REFERENCE)
        if ceiling and ref and units[case] not in LOWER_IS_BETTER:
            ax.hlines(ceiling / ref, i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                      label="loopback ceiling" if i == 0 or "loopback ceiling" not in
                      ax.get_legend_handles_labels()[1] else None)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(cases, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"ratio to {REFERENCE} (higher is better; ms and KiB inverted)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impls", default="passt-sep,pasta-c,slirp4netns")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--plot", metavar="FILE.png", help="draw the ratios to C pasta into FILE.png")
    ap.add_argument("--from", dest="source", metavar="JSONL",
                    help="tabulate (and plot) this results file instead of running the suite")
    a, extra = ap.parse_known_args()
    impls, names_of = impl_names(a.impls)
    NAMES.update(names_of)
    results: list[dict] = []
    if a.source:
        path = Path(a.source).resolve()
        with path.open() as f:
            results = [json.loads(line) for line in f if line.startswith("{")]
        seen = list(dict.fromkeys(d["impl"] for d in results))
        impls = [i for i in ("passt-sep", "pasta-c", "slirp4netns", "loopback") if i in seen] \
            + [i for i in seen if i not in ("passt-sep", "pasta-c", "slirp4netns", "loopback")]
    else:
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
    table, units = tabulate(results)
    names = [NAMES.get(i, i) for i in impls]
    print(f"{'case':24} {'unit':14} " + " ".join(f"{n:>12}" for n in names)
          + "   ours/" + "  ours/".join(names[1:]))
    for case in sorted(table):
        row = {n: statistics.median(v) for n, v in table[case].items()}
        ours = row.get("passt-sep")
        ratios = [f"{ours / row[n]:7.2f}" if ours and row.get(n) else "      -" for n in names[1:]]
        print(f"{case:24} {units[case]:14} "
              + " ".join(f"{row.get(n, float('nan')):12.3f}" for n in names) + "  " + "  ".join(ratios))
    print(f"raw results: {path}")
    if a.plot:
        plot(table, units, names, a.plot)
        print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
