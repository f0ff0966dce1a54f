# SPDX-License-Identifier: GPL-2.0-or-later
"""Exceptions that end a run with a one-line message and exit status 1.

Everything a user can get wrong (an option, a host that cannot be used, a
set-up step that fails) is raised as one of these and printed as a single
line by ``passt_sep.main``; no traceback reaches the user.
"""

import signal
import sys


class UsageError(Exception):
    """A bad option or option value; the message names the option."""


class SetupError(Exception):
    """A set-up step failed; the message names the step and the reason."""

    def __init__(self, step: str, why: str | BaseException) -> None:
        if isinstance(why, OSError) and why.strerror:
            why = why.strerror
        super().__init__(f"{step}: {why}")
        self.step = step


class ProtocolViolation(Exception):
    """The worker broke the broker protocol: the run ends (as OpenSSH's monitor does).

    A malformed or unknown request is something no worker of ours sends:
    only an exploited one does. The parent logs the reason, kills the
    worker and exits 1; it never tries to make sense of the message.
    """


SETUP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGINT)


class Interrupted(BaseException):
    """One of SETUP_SIGNALS arrived during set-up (a BaseException: no
    ``except Exception`` of a set-up step may swallow it). The run cleans
    up what set-up made and exits 0 (docs/faults.md)."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.sig = sig


_pending: list[int] = []  # the signal that interrupted set-up, once one has


def _interrupt(sig: int, _frame: object) -> None:
    if _pending:  # once: a second signal must not interrupt the clean-up
        return
    _pending.append(sig)
    raise Interrupted(sig)


def _unraisable(u: "sys.UnraisableHookArgs") -> None:
    if isinstance(u.exc_value, Interrupted):
        return  # raised where Python ignores exceptions: check_interrupted() raises it again
    sys.__unraisablehook__(u)


def interrupt_setup() -> None:
    """From now until supervision installs its own handlers, SETUP_SIGNALS raise Interrupted."""
    sys.unraisablehook = _unraisable
    for s in SETUP_SIGNALS:
        signal.signal(s, _interrupt)


def check_interrupted() -> None:
    """Raise Interrupted if a signal came and its exception was lost (Python
    ignores exceptions raised in some places, os.fork's at-fork hooks)."""
    if _pending:
        raise Interrupted(_pending[0])


class signals_held:  # noqa: N801 (used as a function: ``with signals_held():``)
    """SETUP_SIGNALS wait until the block ends (then Interrupted is raised as usual).

    For a set-up step that makes a file and records it for the clean-up:
    a signal that fell between the two would leave the file behind. (A
    class, not contextlib: that import costs 5 ms of start-up.)"""

    def __enter__(self) -> None:
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, SETUP_SIGNALS)

    def __exit__(self, *_exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
