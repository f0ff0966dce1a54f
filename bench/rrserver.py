# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared suite's request/response tool (../shared/bench/rr.py) for the bench scripts.

Owns where rr.py is (``RR``) and how its server is started in one of our
namespaces and waited for (``start_server``): quick.py, poll_cost.py,
floor_relay.py and trace_crr.py run its clients (``connrate``,
``pingpong``) against that server, as the shared suite does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.netenv import PYTHON, Namespace, _readline

RR = str(Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "rr.py")
READY_WAIT = 10.0  # seconds for the server's "ready" line


def start_server(ns: Namespace, addr: str, port: int) -> subprocess.Popen:
    """rr.py's server on addr:port inside ns, once it has said "ready" (it
    exits with the namespace; TimeoutError or EOFError if it never says so)."""
    p = ns.popen([PYTHON, RR, "server", addr, str(port)], stdout=subprocess.PIPE)
    _readline(p, READY_WAIT)
    return p
