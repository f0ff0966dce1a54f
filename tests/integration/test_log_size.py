# SPDX-License-Identifier: GPL-2.0-or-later
"""--log-size: the log file stays bounded under floods of debug lines.

As upstream's test of the option: after each of three floods of connection
logs the file is smaller than the limit but not nearly empty. Here each
flood is guest connections to port 9 of the gateway address, which leads
to the host's loopback where nothing listens: each is refused, and pasta
-d logs one line for each.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.netenv import GW_ADDR4, PYTHON, HostNS, stop_process, wait_for

pytestmark = pytest.mark.integration

LIMIT = 48 * 1024
CONNECTS = 1200  # per flood; each logs a "connect: Connection refused" line (about 90 bytes)

FLOOD = """
import socket, sys
refused = 0
for i in range(int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        refused += 1
    except OSError:
        pass
    s.close()
print(refused)
"""


def test_log_size_keeps_the_file_bounded(host: HostNS, tmp_path: Path) -> None:
    guest = host.guest()
    log = tmp_path / "pasta.log"
    p = host.pasta(guest, "-d", "-l", str(log), "--log-size", str(LIMIT), quiet=False,
                   stderr=subprocess.DEVNULL)
    try:
        header = log.read_bytes().split(b"\n", 1)[0]
        assert b"pasta" in header
        for flood in range(3):
            r = guest.run([PYTHON, "-c", FLOOD, GW_ADDR4, str(CONNECTS)], timeout=120)
            assert int(r.stdout) == CONNECTS, r.stdout + r.stderr
            # the parent checks the size a few times a second
            assert wait_for(lambda: log.stat().st_size <= LIMIT, 5), f"flood {flood}: {log.stat().st_size}"
            data = log.read_bytes()
            assert LIMIT // 2 < len(data) <= LIMIT, (flood, len(data))
            lines = data.split(b"\n")
            assert lines[0] == header and lines[-1] == b""  # the header stays, no torn last line
            assert b"\x00" not in data
            assert all(line[:1].isdigit() for line in lines[1:-1]), "a line was cut in the middle"
            assert b"connect: Connection refused" in lines[-2] or b"Connection refused" in data[-4096:]
        assert p.poll() is None
    finally:
        stop_process(p)
