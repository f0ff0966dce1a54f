# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's fd budget (issue 17, item 5), read back from /proc.

Real pasta in a HostNS, started with a hard RLIMIT_NOFILE the test chose
(prlimit): the worker's RLIMIT_NOFILE, soft and hard, is the budget its
tables were sized from (worker/limits.py: the parent's hard limit, at most
FD_BUDGET_MAX), set before isolation, so the kernel holds the worker to it.
"""

from __future__ import annotations

import resource

import pytest

from passt_sep.worker import limits
from tests.netenv import PASTA, HostNS, stop_process, wait_for, worker_of

pytestmark = pytest.mark.integration


def _nofile(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line[len("Max open files"):].split()[:2]
                return soft, hard
    raise AssertionError(f"no Max open files in /proc/{pid}/limits")


@pytest.mark.parametrize("hard", [2048, None])
def test_worker_nofile_is_the_budget(host: HostNS, hard: int | None) -> None:
    """2048, and the test's own hard limit.

    The parent raises its soft limit to the hard one before the fork, so
    where the hard limit is at most FD_BUDGET_MAX the worker would show the
    same numbers without limits.apply(); the second case tells them apart
    where it is above (systemd's default hard limit is 524288).
    """
    if hard is None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard == resource.RLIM_INFINITY:
            pytest.skip("no hard RLIMIT_NOFILE to start from")
    want = min(hard, limits.FD_BUDGET_MAX)
    p = host.popen(["prlimit", f"--nofile=1024:{hard}", "--", PASTA, "--config-net", "-q", "--", "sleep", "60"])
    try:
        assert wait_for(lambda: worker_of(p.pid), 15), "worker did not start"
        w = worker_of(p.pid)
        assert wait_for(lambda: _nofile(w) == (str(want), str(want)), 5), _nofile(w)
        parent_soft, parent_hard = _nofile(p.pid)
        assert parent_hard == str(hard)  # the test set what it meant to: the worker lowered its own
    finally:
        stop_process(p)


def test_apply_sets_soft_and_hard_to_the_budget() -> None:
    """limits.apply() itself, in a forked child whose soft limit is below the budget."""
    import os

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            limits.apply()
            code = 0 if _nofile(os.getpid()) == (str(limits.BUDGET), str(limits.BUDGET)) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
