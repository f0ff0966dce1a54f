# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's own seccomp filter, loaded once set-up is over.

Parent only. This module owns which policy file the parent of each mode
runs under (policies/pasta-parent.policy, policies/passt-parent.policy)
and the one call that loads it into every thread of the parent (the
namespace thread included) just before supervision starts. After that
call the parent can still serve the broker, supervise its children and
trim its log, and can no longer execute a program, trace a process,
mount, change namespaces or open a file (docs/security.md, "The parent's
filter").

Everything the parent runs during supervision must be imported before
apply(): an import reads files, and openat is not in either policy.
"""

from __future__ import annotations

import os

from sandbox.bpf import Program, install, load_program

from ..errors import SetupError
from ..worker.main import POLICY_DIR

_cache: dict[str, Program] = {}


def policy_path(mode: str) -> str:
    """The seccomp policy file of a mode's parent."""
    return os.path.join(POLICY_DIR, f"{mode}-parent.policy")


def prepare(mode: str) -> Program:
    """Read the mode's parent policy now, for apply() to use later: its
    compiled program (policies/NAME.bpf) when current, else the policy
    parsed and compiled (sandbox.bpf.load_program).

    Called at start-up, before any set-up step, so that a policy that cannot
    be read is reported before the guest's network exists (and while the
    file is still readable: later the parent may have changed user).
    """
    if mode not in _cache:
        try:
            _cache[mode] = load_program(policy_path(mode))
        except (OSError, ValueError) as e:
            raise SetupError("parent seccomp policy", e) from None
    return _cache[mode]


def apply(mode: str) -> None:
    """Load the mode's parent policy into every thread of this process, irrevocably.

    Raises SetupError with a one-line reason if the policy cannot be read
    or the kernel refuses the filter.
    """
    program = prepare(mode)
    try:
        install(program, tsync=True)
    except OSError as e:
        raise SetupError("parent seccomp filter", e) from None
