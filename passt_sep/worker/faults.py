# SPDX-License-Identifier: GPL-2.0-or-later
"""Fault isolation: an unexpected exception in one flow's handler ends that flow, not the worker.

Sandboxed only. The worker's loop (worker/loop.py) calls every handler
through guards at the per-flow boundary: the dispatch of one guest frame
(``Worker.on_frame``), the call of one host fd's handler (the epoll loop)
and a flow's broker reply callback (``BrokerClient.request(..., reset=)``). An
exception that escapes one is a bug (every expected error, a socket error,
a malformed frame, is handled where it happens); the guard hands it to
``Faults.record``, which

- counts it (``count``, shown in the worker's stats line);
- logs it once: the first exception of each kind (type and innermost
  frame) with its traceback, one line per frame (the log channel carries
  one line per record, worker/main.py); a repeat of a kind already shown
  gets one line with its number;
- fails closed: more than ``RATE_MAX`` faults within ``RATE_WINDOW``
  seconds, or more than ``TOTAL_MAX`` in all, raise ``FaultLimit``, which
  the loop does not catch: the worker ends with exit status
  ``EXIT_FAULTS`` and the parent with 1, naming the cause.

Then the guard resets the flow the frame or the fd belongs to (TCP: RST to
the guest and SO_LINGER 0 close of the host socket; UDP and ICMP: the flow
and its socket dropped; the splice: both sockets closed with RST), through
the reset callback the flow's table registered with its fd
(``Worker.add(..., reset=)``) or, for a guest frame, through the table's
``fault(packet)``.

The traceback is built from the frames alone (file, line, function): the
sandbox cannot open source files, so ``traceback``'s source lines
(linecache) are never looked up.
"""

from __future__ import annotations

import time
from collections import deque
from types import TracebackType

from ..log import log

RATE_MAX = 10  # faults in RATE_WINDOW seconds; one more ends the worker
RATE_WINDOW = 1.0
TOTAL_MAX = 100  # faults in the worker's life; one more ends the worker
SIGNATURES_MAX = 64  # kinds of fault whose traceback was shown, remembered
EXIT_FAULTS = 3  # the worker's exit status when a limit is passed


class FaultLimit(Exception):
    """Too many faults: the worker must end (fail closed)."""


def frames(tb: TracebackType | None, limit: int = 32) -> list[tuple[str, int, str]]:
    """(file, line, function) of each frame of tb, outermost first, at most limit (the innermost)."""
    out: list[tuple[str, int, str]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out[-limit:]


class Faults:
    """The count of faults, their rate and what was logged."""

    def __init__(self, rate_max: int = RATE_MAX, window: float = RATE_WINDOW,
                 total_max: int = TOTAL_MAX, clock: object = time.monotonic) -> None:
        self.rate_max = rate_max
        self.window = window
        self.total_max = total_max
        self.clock = clock
        self.count = 0
        self.recent: deque[float] = deque()
        self.shown: set[tuple[str, str, int]] = set()
        self.reset_failed = 0  # resets that raised in turn

    def record(self, where: str, exc: BaseException) -> None:
        """Count and log one fault in ``where`` (e.g. "tcp flow 10.0.2.15:3 -> ...").

        Raises FaultLimit once the rate or the total is passed.
        """
        self.count += 1
        now = self.clock()  # type: ignore[operator]
        recent = self.recent
        recent.append(now)
        while recent and now - recent[0] > self.window:
            recent.popleft()
        fr = frames(exc.__traceback__)
        inner = fr[-1] if fr else ("?", 0, "?")
        sig = (type(exc).__name__, inner[0], inner[1])
        head = f"fault {self.count} in {where}: {type(exc).__name__}: {exc}"
        if sig not in self.shown:
            if len(self.shown) < SIGNATURES_MAX:
                self.shown.add(sig)
            log.err(f"{head}; the flow is reset. Traceback (most recent call last):")
            for file, line, func in fr:
                log.err(f"  File \"{file}\", line {line}, in {func}")
        else:
            log.err(f"{head} (traceback shown before); the flow is reset")
        if len(recent) > self.rate_max:
            raise FaultLimit(f"{len(recent)} faults in {self.window:g} s (at most {self.rate_max})")
        if self.count > self.total_max:
            raise FaultLimit(f"{self.count} faults (at most {self.total_max})")

    def summary(self) -> str:
        """The counter, for the stats line."""
        return f"flow faults: {self.count}"


__all__ = ["EXIT_FAULTS", "RATE_MAX", "RATE_WINDOW", "TOTAL_MAX", "FaultLimit", "Faults", "frames"]
