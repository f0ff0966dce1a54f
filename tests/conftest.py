# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared pytest set-up: markers, the namespace fixtures, integration gating.

Integration tests (everything under tests/integration, or marked
``integration``) need root, /dev/net/tun and user namespaces; without them
they are skipped with the reason. Set PASST_SEP_REQUIRE_INTEGRATION=1 to make
that an error instead (CI runs as root and must run them).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.netenv import HostNS  # noqa: E402

INTEGRATION_DIR = REPO / "tests" / "integration"


def pytest_configure(config: pytest.Config) -> None:
    """Register the project's markers."""
    config.addinivalue_line(
        "markers", "integration: needs root, user + network namespaces and /dev/net/tun")
    config.addinivalue_line("markers", "vm: boots a qemu guest (needs qemu-system-x86)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@functools.cache
def integration_unavailable() -> str | None:
    """Why integration tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "integration tests need root (they create user and network namespaces)"
    if not os.path.exists("/dev/net/tun"):
        return "integration tests need /dev/net/tun"
    for tool in ("unshare", "nsenter", "setpriv", "ip", "sysctl"):
        if shutil.which(tool) is None:
            return f"integration tests need {tool} (run scripts/setup.sh)"
    try:
        r = subprocess.run(["unshare", "--user", "--net", "--", "true"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create user + network namespaces: {e}"
    if r.returncode != 0:
        return f"cannot create user + network namespaces: {r.stderr.strip()}"
    return None


def _vm_unavailable() -> str | None:
    if shutil.which("qemu-system-x86_64") is None:
        return "vm tests need qemu-system-x86_64"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests/integration as integration; skip (or fail) what cannot run."""
    require = os.environ.get("PASST_SEP_REQUIRE_INTEGRATION", "") not in ("", "0")
    for item in items:
        if INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)
        vm = item.get_closest_marker("vm") is not None
        if item.get_closest_marker("integration") or vm:
            reason = integration_unavailable()
            if reason and require:
                raise pytest.UsageError(
                    f"PASST_SEP_REQUIRE_INTEGRATION is set but {item.nodeid}: {reason}")
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
                continue
        if vm and (reason := _vm_unavailable()):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def host() -> Iterator[HostNS]:
    """A HostNS with its gateway namespace (192.0.2.1/.2, 2001:db8::1/::2)."""
    with HostNS() as h:
        yield h


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A directory others may enter (0755): the parent drops to nobody, and a
    socket or PID file it makes there must be reachable by it and by clients."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="passt-sep-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.fixture
def host_nogw() -> Iterator[HostNS]:
    """A HostNS without gateway namespace: eth0 has carrier, nothing answers."""
    with HostNS(gateway=False) as h:
        yield h
