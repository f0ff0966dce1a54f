#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Which system calls the sandboxed worker makes: how policies/ are derived.

Runs pasta under ``strace -f`` inside a HostNS (a namespace playing the
host, tests/netenv.py) around a command that exercises the worker, finds
the process that loaded the seccomp filter, and counts every system call
it made afterwards. Compare the list with policies/pasta.policy:

    .venv/bin/python scripts/trace_worker.py -- sh -c 'ping -c3 192.0.2.1'
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.strace_count import report  # noqa: E402
from tests.netenv import PASTA, HostNS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta-args", default="--config-net -q")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = [c for c in a.command if c != "--"] or ["sh", "-c", "ping -c2 -W2 192.0.2.1"]
    with tempfile.TemporaryDirectory() as d, HostNS() as host:
        out = Path(d) / "strace.txt"
        host.run(["strace", "-f", "-qq", "-o", str(out), PASTA, *a.pasta_args.split(), "--", *cmd],
                 check=False, timeout=300)
        text = out.read_text()
    report(text, "trace_worker")


if __name__ == "__main__":
    main()
