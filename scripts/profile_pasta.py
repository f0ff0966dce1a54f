#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta with a cProfile of the sandboxed worker (a developer's tool).

py-spy cannot sample the worker (its root is an empty tmpfs), so this
wrapper runs the worker's loop under cProfile instead. The output file is
opened before the fork and kept across the sandbox; the worker writes the
marshalled stats to it when its loop ends (SIGTERM to pasta ends it). The
parent's broker loop is profiled too, into the same name plus ".parent".
Use it as any pasta, e.g. as the shared suite's implementation:

    PASST_SEP_PROFILE_OUT=/tmp/w.prof ../shared/bench/bench.sh \\
        --impl '.venv/bin/python scripts/profile_pasta.py' --cases crr --reps 1
    .venv/bin/python -c "import pstats; pstats.Stats('/tmp/w.prof').sort_stats('tottime').print_stats(30)"
"""

from __future__ import annotations

import cProfile
import marshal
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passt_sep import main as entry  # noqa: E402
from passt_sep.setup import parent  # noqa: E402
from passt_sep.worker import loop  # noqa: E402
from passt_sep.worker import main as wmain  # noqa: E402


def _patch(out: str) -> None:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    real_isolate = wmain.isolate_worker
    real_run = loop.Worker.run

    def isolate(policy, keep_fds=None, **kw):  # type: ignore[no-untyped-def]
        real_isolate(policy, keep_fds=[*(keep_fds or []), fd], **kw)

    def run(self):  # type: ignore[no-untyped-def]
        prof = cProfile.Profile()
        try:
            return prof.runcall(real_run, self)
        finally:
            prof.create_stats()
            data = marshal.dumps(prof.stats)  # type: ignore[attr-defined]
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

    wmain.isolate_worker = isolate
    real_let_go = wmain._let_go_of_the_user  # RLIMIT_FSIZE: 0 without a pcap, room for the stats here
    wmain._let_go_of_the_user = lambda log_sock, fsize: real_let_go(log_sock, max(fsize, 1 << 26))
    loop.Worker.run = run  # type: ignore[method-assign]

    real_supervise = parent.Parent.supervise
    # opened now: the parent drops to nobody and loads its seccomp filter
    # before supervise, after which open() is out of reach
    pfd = os.open(out + ".parent", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def supervise(self, *args):  # type: ignore[no-untyped-def]
        prof = cProfile.Profile()
        try:
            return prof.runcall(real_supervise, self, *args)
        finally:
            prof.create_stats()
            view = memoryview(marshal.dumps(prof.stats))  # type: ignore[attr-defined]
            while view:
                view = view[os.write(pfd, view):]

    parent.Parent.supervise = supervise  # type: ignore[method-assign]


if __name__ == "__main__":
    _patch(os.environ.get("PASST_SEP_PROFILE_OUT", "/tmp/passt-sep-worker.prof"))
    sys.argv[0] = "pasta"
    sys.exit(entry.main())
