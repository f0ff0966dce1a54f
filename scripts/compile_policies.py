# SPDX-License-Identifier: GPL-2.0-or-later
"""Compile the seccomp policies ahead of time: policies/NAME.policy -> NAME.bpf.

    .venv/bin/python scripts/compile_policies.py [--check] [POLICY...]

Writes, beside each policy file (all of policies/*.policy by default), the
compiled file sandbox/bpf.py loads at run time without pyseccomp: the
policy's text and the BPF program libseccomp makes of it on this machine
(sandbox.seccomp.compiled_file). Run it after editing a policy; a policy
whose compiled file is stale still works, compiled at each start as before
(slower). ``--check``: write nothing, exit 1 naming each file that differs
(tests/unit/test_bpf.py does the same check).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.bpf import compiled_path  # noqa: E402
from sandbox.seccomp import compiled_file  # noqa: E402


def main() -> int:
    """Compile (or check) the policies named, or all of policies/."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare, write nothing")
    p.add_argument("policies", nargs="*")
    a = p.parse_args()
    paths = a.policies or sorted(glob.glob(os.path.join(REPO, "policies", "*.policy")))
    stale = []
    for path in paths:
        data = compiled_file(path)
        out = compiled_path(path)
        try:
            with open(out, "rb") as f:
                same = f.read() == data
        except OSError:
            same = False
        if a.check:
            if not same:
                stale.append(out)
            continue
        if not same:
            with open(out + ".tmp", "wb") as f:
                f.write(data)
            os.replace(out + ".tmp", out)
        print(f"{out}: {len(data)} bytes{' (unchanged)' if same else ''}")
    for out in stale:
        print(f"{out}: stale, run scripts/compile_policies.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
