# SPDX-License-Identifier: GPL-2.0-or-later
"""Static checks as part of the suite: ruff on the whole tree, mypy as pyproject.toml configures it.

mypy is strict on passt_sep/proto/ (every guest-facing parser) and sandbox/
([tool.mypy] in pyproject.toml). Both tools come with the test extras
(scripts/setup.sh); a missing tool fails the test rather than skipping it,
so CI cannot pass without having checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    assert exe.exists(), f"{exe} not found: run scripts/setup.sh (the test extras bring {tool})"
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff_clean() -> None:
    p = _run("ruff", "check", ".")
    assert p.returncode == 0, p.stdout + p.stderr


def test_mypy_clean() -> None:
    p = _run("mypy")
    assert p.returncode == 0 and "Success: no issues found" in p.stdout, p.stdout + p.stderr


def test_mypy_is_strict_on_proto_and_sandbox() -> None:
    """The configuration the test above runs really checks those packages, strictly."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert {"passt_sep/proto", "sandbox"} <= set(cfg["files"])
    strict = {m for o in cfg["overrides"] if o.get("strict") for m in o["module"]}
    assert {"passt_sep.proto.*", "sandbox", "sandbox.*"} <= strict
