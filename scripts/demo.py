#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The main job on a sensible default: pasta --config-net in a test host.

Creates a HostNS (tests/netenv.py: a user + network namespace with eth0
192.0.2.10/24, 2001:db8::10/64, default routes via 192.0.2.1 and 2001:db8::1,
and a gateway namespace answering on 192.0.2.1/.2 and 2001:db8::1/::2), runs
pasta inside it with a command that shows the namespace's addressing and
pings the gateway and a far host, and exits with pasta's exit status.

    scripts/demo.sh                       # .venv/bin/pasta (passt-sep)
    scripts/demo.sh --pasta /usr/bin/pasta -- --runas 0:0
                                          # the C implementation, to compare

Nothing leaves the namespaces this creates.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netenv import PASTA, HostNS  # noqa: E402

SCRIPT = ("ip -br addr; ip route; ip -6 route; "
          "ping -c1 -W2 192.0.2.1; ping -6 -c1 -W2 2001:db8::1; ping -c1 -W2 192.0.2.2")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return pasta's exit status."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pasta", default=PASTA, help="pasta binary (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60, help="seconds (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="pass --debug to pasta")
    p.add_argument("options", nargs="*", help="more pasta options (after --)")
    a = p.parse_args(argv)
    cmd = [a.pasta, "--config-net", *a.options] + (["--debug"] if a.debug else [])
    cmd += ["--", "sh", "-c", SCRIPT]
    with HostNS() as host:
        print(f"# in HostNS (pid {host.pid}): {' '.join(cmd[:-1])} '{SCRIPT}'", flush=True)
        proc = host.popen(cmd, stdin=subprocess.DEVNULL)
        try:
            rc = proc.wait(a.timeout)
        except subprocess.TimeoutExpired:
            print(f"# pasta did not finish within {a.timeout:g}s", file=sys.stderr)
            return 124
    print(f"# pasta exited with status {rc}", flush=True)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
