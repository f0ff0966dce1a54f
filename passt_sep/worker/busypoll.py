# SPDX-License-Identifier: GPL-2.0-or-later
"""Adaptive polling before the worker's loop sleeps (docs/performance.md).

Sandboxed only. Owns one decision: after a wake-up that did work, does
the loop ask epoll again without sleeping, and for how long? A sleeping
worker costs a wake-up when the next frame or answer arrives, and on this
kind of machine (a VM whose idle vCPUs halt at once) a wake-up across
CPUs takes about 25 µs before the worker runs, with cold caches after.
When a peer answers within tens of µs (a request/response exchange
through loopback), polling for that long is cheaper in both time and CPU
than sleeping. When answers come later it is pure waste, so the window
adapts per wait, in the manner of Linux's cpuidle-haltpoll:

- a wait that the poll ended: the window stays;
- a sleep that an event ended soon after the window would have closed
  (within the window's maximum plus a wake-up's latency): grow it
  (doubling from WINDOW_START up to the maximum);
- a longer sleep, or one that only a timer ended: halve it, to 0 below
  WINDOW_START.

So an idle worker or one whose peers answer slowly does not poll at all,
and at most one window is spent per wake-up. ``PASST_SEP_BUSY_POLL_US``
sets the maximum (µs, 0 turns polling off; default 100).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

WINDOW_DEFAULT = 100e-6  # session 13: crr 4-26 % above 50 µs, CPU level at paced rates (performance.md)
WINDOW_LIMIT = 1e-3  # the largest maximum the environment may ask for
WINDOW_START = 10e-6
WAKE_ALLOWANCE = 25e-6  # a sleeping worker learns of an event this much late
MAX_POLLS = 2000  # epoll_wait(0) calls per window, whatever the clock says


def window_max_from_env(default: float = WINDOW_DEFAULT) -> float:
    """PASST_SEP_BUSY_POLL_US as seconds; the default if unset or invalid."""
    raw = os.environ.get("PASST_SEP_BUSY_POLL_US")
    if raw is None:
        return default
    try:
        v = float(raw) * 1e-6
    except ValueError:
        return default
    return v if 0.0 <= v <= WINDOW_LIMIT else default


Events = list[tuple[int, int]]


class BusyPoll:
    """epoll_wait that polls for an adaptive window before it sleeps."""

    def __init__(self, poll: Callable[..., Events], window_max: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.poll = poll
        self.clock = clock
        self.max = window_max_from_env() if window_max is None else window_max
        self.window = 0.0
        self.hits = 0  # waits a poll ended
        self.sleeps = 0  # waits that slept
        self.bulk = 0  # waits after bulk wake-ups (no polling)

    def wait(self, timeout: float, maxevents: int, bulk: bool = False) -> Events:
        """Events within timeout seconds, polling first if the window is open.

        ``bulk``: the last wake-up moved bulk data; sleep at once and leave
        the window as it is (the processes at both ends of a transfer need
        the CPU more than we need a quick wake-up).
        """
        if timeout <= 0:
            return self.poll(0, maxevents)
        if bulk:
            self.bulk += 1
            return self.poll(timeout, maxevents)
        clock = self.clock
        window = self.window
        start = clock()
        if window:
            end = start + (window if window < timeout else timeout)
            poll = self.poll
            for _ in range(MAX_POLLS):
                events = poll(0, maxevents)
                if events:
                    self.hits += 1
                    return events
                if clock() >= end:
                    break
            timeout -= clock() - start
            if timeout < 0:
                timeout = 0.0
        events = self.poll(timeout, maxevents)
        if self.max:
            self._adapt(bool(events), clock() - start)
        self.sleeps += 1
        return events

    def _adapt(self, woken_by_event: bool, waited: float) -> None:
        if woken_by_event and waited <= self.max + WAKE_ALLOWANCE:
            w = self.window * 2
            self.window = self.max if w > self.max else (w if w >= WINDOW_START else WINDOW_START)
        elif self.window:
            w = self.window / 2
            self.window = w if w >= WINDOW_START else 0.0

    def summary(self) -> str:
        """Counters for the worker's final statistics."""
        return (f"busy poll: max {self.max * 1e6:.0f} µs, {self.hits} waits ended polling, "
                f"{self.sleeps} slept, {self.bulk} after bulk")
