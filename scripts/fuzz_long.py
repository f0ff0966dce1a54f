#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The long fuzz run: millions of inputs across every target, in parallel processes.

    .venv/bin/python scripts/fuzz_long.py [--total 10000000] [--jobs N] [--targets a,b]
                                          [--crashes DIR] [--work DIR] [--max-time SECONDS]

Each target (tests/fuzz/targets.py) gets a share of --total by its weight
below (the fast proto/ parsers most, the whole worker, the stream framing
and the command line, which cost milliseconds an input, less), cut into
shards of at most SHARD inputs; --jobs shards run at once, each an atheris
(libFuzzer) process ``python -m tests.fuzz.run_target`` with its own seed,
starting from the checked-in corpus tests/fuzz/corpus/<target>/ and adding
what it finds to --work/<target>/ (shared by that target's shards, so a
later shard starts from what earlier ones reached). A crash (an exception
out of the code, a bad frame toward the guest, a Finding) is written by
libFuzzer to --crashes/<target>-crash-<sha1>; the shard stops there, the
others go on. Printed at the end, and written to --work/summary.json:
inputs run per target and in total, crashes, seconds.

--max-time bounds the whole run: shards still waiting when it is reached
are not started, running ones are told to stop at it (libFuzzer's
-max_total_time), and the inputs counted are those really run.
Needs atheris (in the test extras; x86_64 CPython 3.11).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: share of the total per target (inputs); they add up to 1
WEIGHTS = {
    "packet": 0.14, "tcp": 0.14, "udp": 0.10, "icmp": 0.10, "arp": 0.10, "ndp": 0.10,
    "dhcp": 0.10, "dhcpv6": 0.10, "dnsname": 0.06, "worker": 0.02, "stream": 0.01,
    "qrap": 0.01, "cli": 0.01, "ports": 0.01,
}
SHARD = 250_000
MAX_LEN = {"worker": 4096, "stream": 8192}
_DONE = re.compile(rb"Done (\d+) runs")
_PROGRESS = re.compile(rb"^#(\d+)\s", re.M)


def run_shard(target: str, runs: int, seed: int, work: Path, crashes: Path, deadline: float | None,
              log_dir: Path) -> tuple[str, int, bool, float]:
    """One libFuzzer process; (target, inputs run, crashed, seconds)."""
    t0 = time.monotonic()
    if deadline is not None and t0 >= deadline:
        return target, 0, False, 0.0
    cmd = [sys.executable, "-m", "tests.fuzz.run_target", target, f"-runs={runs}", f"-seed={seed}",
           f"-artifact_prefix={crashes}/{target}-", "-timeout=20", "-rss_limit_mb=3072",
           f"-max_len={MAX_LEN.get(target, 2048)}", "-print_final_stats=1",
           str(work / target), str(ROOT / "tests" / "fuzz" / "corpus" / target)]
    if deadline is not None:
        cmd.insert(5, f"-max_total_time={max(1, int(deadline - t0))}")
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    out = p.stdout
    (log_dir / f"{target}-{seed}.log").write_bytes(out[-200_000:])
    m = _DONE.search(out)
    if m:
        n = int(m.group(1))
    else:  # stopped by a crash: the last progress line
        marks = _PROGRESS.findall(out)
        n = int(marks[-1]) if marks else 0
    return target, n, p.returncode != 0, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total", type=int, default=10_000_000, help="inputs across all targets")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes at once")
    ap.add_argument("--targets", default=",".join(WEIGHTS), help="comma-separated subset")
    ap.add_argument("--crashes", type=Path, default=ROOT / "fuzz-crashes")
    ap.add_argument("--work", type=Path, default=ROOT / "fuzz-work")
    ap.add_argument("--max-time", type=float, default=None, help="seconds for the whole run")
    a = ap.parse_args()
    targets = [t for t in a.targets.split(",") if t]
    unknown = [t for t in targets if t not in WEIGHTS]
    if unknown:
        sys.stderr.write(f"fuzz_long: unknown targets: {', '.join(unknown)}\n")
        return 1
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.stderr.write("fuzz_long: atheris is not installed (pip install atheris)\n")
        return 1
    a.crashes.mkdir(parents=True, exist_ok=True)
    logs = a.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    wsum = sum(WEIGHTS[t] for t in targets)
    shards = []
    for t in targets:
        (a.work / t).mkdir(exist_ok=True)
        want = int(a.total * WEIGHTS[t] / wsum)
        k = 0
        while want > 0:
            n = min(SHARD, want)
            shards.append((t, n, 1000 + 7919 * k + zlib.crc32(t.encode()) % 1000))
            want -= n
            k += 1
    # interleave targets so a slow one does not hold every process at the end
    shards.sort(key=lambda s: (s[2], s[0]))
    t0 = time.monotonic()
    deadline = t0 + a.max_time if a.max_time else None
    done: dict[str, int] = dict.fromkeys(targets, 0)
    crashed: dict[str, int] = dict.fromkeys(targets, 0)
    secs: dict[str, float] = dict.fromkeys(targets, 0.0)
    print(f"fuzz_long: {len(shards)} shards, {a.total} inputs, {a.jobs} processes", flush=True)
    with ThreadPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(run_shard, t, n, s, a.work, a.crashes, deadline, logs) for t, n, s in shards]
        for f in futs:
            t, n, bad, s = f.result()
            done[t] += n
            secs[t] += s
            crashed[t] += bad
            print(f"  {t:8} +{n:>9} inputs{' CRASH' if bad else ''} ({s:.0f} s); "
                  f"{sum(done.values())} in total, {time.monotonic() - t0:.0f} s", flush=True)
    total = sum(done.values())
    print("\ninputs per target:")
    for t in targets:
        rate = done[t] / secs[t] if secs[t] else 0
        print(f"  {t:8} {done[t]:>10}  crashes {crashed[t]}  ({rate:.0f} inputs/s per process)")
    print(f"  {'total':8} {total:>10}  crashes {sum(crashed.values())}  in {time.monotonic() - t0:.0f} s")
    files = sorted(p.name for p in a.crashes.iterdir())
    if files:
        print(f"crash inputs in {a.crashes}: {', '.join(files)}")
    (a.work / "summary.json").write_text(json.dumps(
        {"inputs": done, "total": total, "crashes": crashed, "seconds": secs, "files": files}, indent=1))
    return 1 if any(crashed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
