# SPDX-License-Identifier: GPL-2.0-or-later
"""Exceptions that end a run with a one-line message and exit status 1.

Everything a user can get wrong (an option, a host that cannot be used, a
set-up step that fails) is raised as one of these and printed as a single
line by ``passt_sep.main``; no traceback reaches the user.
"""


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
