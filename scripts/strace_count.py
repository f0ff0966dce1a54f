# SPDX-License-Identifier: GPL-2.0-or-later
"""Count the system calls a sandboxed worker made, from an ``strace -f`` log.

Shared by trace_worker.py (pasta) and trace_passt_worker.py (passt): the
worker is the process that loaded a seccomp filter; every call it made
afterwards is counted (a call strace split into "unfinished" and
"resumed" halves counts once).
"""

from __future__ import annotations

import collections
import re
import sys

LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
FILTER = re.compile(r"SECCOMP_SET_MODE_FILTER, \w+, \{len=")


def worker_syscalls(text: str) -> collections.Counter[str] | None:
    """Calls made after the filter was loaded, or None if no process loaded one."""
    worker = None
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, name = m.group(1), m.group(2)
        if worker is None:
            if name == "seccomp" and FILTER.search(line):
                worker = pid
            continue
        if pid == worker and "resumed>" not in line:
            counts[name] += 1
    return counts if worker is not None else None


def report(text: str, prog: str) -> None:
    """Print the counts, most frequent first; exit with a message if none."""
    counts = worker_syscalls(text)
    if counts is None:
        sys.exit(f"{prog}: no process loaded a seccomp filter")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n:8d}  {name}")
    print(f"{len(counts)} distinct system calls after the filter was loaded")
