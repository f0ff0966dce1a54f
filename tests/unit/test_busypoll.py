# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.worker.busypoll: the adaptive poll window.

A fake clock and a fake epoll stand in for time and the kernel: events
"arrive" at scripted instants, a poll(0) costs one microsecond, a blocking
poll advances the clock to the arrival or the timeout. What is checked:
the window grows only when a poll would have caught the event, shrinks to
nothing when waits are long, never outlasts the loop's timeout, is
bounded in calls, and is off when the environment says 0.
"""

from __future__ import annotations

import pytest

from passt_sep.worker import busypoll as bp

US = 1e-6
EV = [(7, 1)]


class FakeEpoll:
    """Events arrive at scripted times; the clock moves with the calls."""

    def __init__(self, poll_cost: float = 1 * US) -> None:
        self.now = 0.0
        self.arrivals: list[float] = []
        self.poll_cost = poll_cost
        self.calls: list[float] = []  # the timeout of each call

    def clock(self) -> float:
        return self.now

    def poll(self, timeout: float, maxevents: int = -1) -> list[tuple[int, int]]:
        self.calls.append(timeout)
        if timeout == 0:
            self.now += self.poll_cost
        elif self.arrivals and self.arrivals[0] <= self.now + timeout:
            self.now = max(self.now, self.arrivals[0])
        else:
            self.now += timeout
        if self.arrivals and self.arrivals[0] <= self.now:
            self.arrivals.pop(0)
            return EV
        return []

    def answer_in(self, delay: float) -> None:
        self.arrivals.append(self.now + delay)


def make(window_max: float = 50 * US) -> tuple[FakeEpoll, bp.BusyPoll]:
    ep = FakeEpoll()
    return ep, bp.BusyPoll(ep.poll, window_max=window_max, clock=ep.clock)


def test_quick_answers_open_the_window_step_by_step() -> None:
    ep, b = make()
    seen = []
    for _ in range(6):
        ep.answer_in(30 * US)
        assert b.wait(1.0, 64) == EV
        seen.append(round(b.window / US))
    # 10, 20, 40: each sleep ended within the maximum (+ a wake-up); from
    # then on the 40 µs window catches the 30 µs answers: no more sleeps
    assert seen == [10, 20, 40, 40, 40, 40]
    assert b.hits == 3 and b.sleeps == 3
    assert ep.calls[-1] == 0  # the last answer came to a poll, not a sleep


def test_answer_inside_window_is_caught_without_sleeping() -> None:
    ep, b = make()
    b.window = 50 * US
    ep.answer_in(20 * US)
    assert b.wait(1.0, 64) == EV
    assert all(t == 0 for t in ep.calls)
    assert b.hits == 1 and b.sleeps == 0
    assert 19 * US <= ep.now <= 22 * US


def test_long_waits_close_the_window() -> None:
    ep, b = make()
    b.window = 50 * US
    widths = []
    for _ in range(4):
        ep.answer_in(5e-3)  # a slow peer: 5 ms
        assert b.wait(1.0, 64) == EV
        widths.append(round(b.window / US, 1))
    assert widths == [25, 12.5, 0, 0]
    # with the window shut a wait is one sleeping epoll_wait
    n = len(ep.calls)
    ep.answer_in(5e-3)
    b.wait(1.0, 64)
    assert ep.calls[n:] == [1.0]


def test_timer_wake_up_is_not_an_answer() -> None:
    ep, b = make()
    b.window = 40 * US
    assert b.wait(2e-3, 64) == []  # nothing came: the loop's timer is due
    assert b.window == 20 * US


def test_polling_never_outlasts_the_timeout() -> None:
    ep, b = make()
    b.window = 50 * US
    assert b.wait(5 * US, 64) == []
    assert ep.now <= 7 * US
    assert sum(ep.calls) <= 5 * US  # the sleep got only what was left


def test_zero_timeout_is_one_poll() -> None:
    ep, b = make()
    b.window = 50 * US
    assert b.wait(0, 64) == []
    assert ep.calls == [0]
    assert b.window == 50 * US


def test_polls_are_bounded_even_if_the_clock_stands_still() -> None:
    ep = FakeEpoll(poll_cost=0.0)
    b = bp.BusyPoll(ep.poll, window_max=50 * US, clock=ep.clock)
    b.window = 50 * US
    ep.arrivals.append(1.0)
    assert b.wait(2.0, 64) == EV
    polls = [t for t in ep.calls if t == 0]
    assert len(polls) == bp.MAX_POLLS


def test_after_bulk_it_sleeps_at_once_and_keeps_the_window() -> None:
    ep, b = make()
    b.window = 40 * US
    ep.answer_in(10 * US)
    assert b.wait(1.0, 64, bulk=True) == EV
    assert ep.calls == [1.0]
    assert b.window == 40 * US and b.bulk == 1 and b.hits == 0


def test_off_never_polls() -> None:
    ep, b = make(window_max=0.0)
    for _ in range(5):
        ep.answer_in(10 * US)
        assert b.wait(1.0, 64) == EV
    assert b.window == 0
    assert all(t == 1.0 for t in ep.calls)


@pytest.mark.parametrize(("raw", "want"), [
    (None, bp.WINDOW_DEFAULT), ("0", 0.0), ("30", 30 * US), ("abc", bp.WINDOW_DEFAULT),
    ("-5", bp.WINDOW_DEFAULT), ("5000", bp.WINDOW_DEFAULT),
])
def test_environment_sets_the_maximum(monkeypatch: pytest.MonkeyPatch, raw: str | None, want: float) -> None:
    if raw is None:
        monkeypatch.delenv("PASST_SEP_BUSY_POLL_US", raising=False)
    else:
        monkeypatch.setenv("PASST_SEP_BUSY_POLL_US", raw)
    assert bp.window_max_from_env() == pytest.approx(want)
