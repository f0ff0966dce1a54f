# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for tests in which the guest configures itself (DHCP, DHCPv6, RA):
run pasta without --config-net around a shell script, and read back the
NAME=value lines the clients' hook scripts print."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.netenv import PASTA, HostNS

# Bring eth0 up and wait (bounded) until its link-local address is usable.
LINK_UP = ("ip link set eth0 up; i=0; "
           "while ip -6 addr show dev eth0 | grep -q tentative && [ $i -lt 50 ]; "
           "do sleep 0.1; i=$((i+1)); done; ")


def write_script(path: Path, text: str) -> str:
    """An executable script at path; its path as a string."""
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def script_values(out: str, prefix: str) -> dict[str, str]:
    """NAME=value lines printed by a client script, prefix stripped."""
    vals: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith(prefix):
            key, _, value = line[len(prefix):].partition("=")
            vals[key] = value.strip()
    return vals


def pasta_sh(host: HostNS, args: list[str], script: str, timeout: float,
             ) -> subprocess.CompletedProcess[str]:
    """pasta -q ARGS around ``sh -c script``, inside the host.

    ``--runas 0``: started as root, pasta runs the command as root of a user
    namespace mapped to nobody (as C pasta does); these scripts run clients
    that write under root's directories (dhclient's leases, the pytest
    temporary directory, the interpreter), so they keep root.
    """
    return host.run([PASTA, "-q", "--runas", "0", *args, "--", "sh", "-c", script],
                    timeout=timeout, check=False)
