# SPDX-License-Identifier: GPL-2.0-or-later
"""Process limits the worker's tables are sized by, read before the sandbox.

Imported (through worker/loop.py) when the parent loads the worker's
code, before the fork: the sandboxed worker may not call getrlimit. Owns
NOFILE, the soft RLIMIT_NOFILE at that moment, from which the TCP, splice
and UDP tables derive their bounds (so fd passing never runs out of fds).
"""

from __future__ import annotations


def _nofile() -> int:
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024


NOFILE = _nofile()
