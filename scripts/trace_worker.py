#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Which system calls the sandboxed worker makes: how policies/ are derived.

Runs pasta under ``strace -f`` inside a HostNS (a namespace playing the
host, tests/netenv.py) around a command that exercises the worker, finds
the process that loaded the seccomp filter, and counts every system call
it made afterwards. Compare the list with policies/pasta.policy:

    .venv/bin/python scripts/trace_worker.py -- sh -c 'ping -c3 192.0.2.1'
    .venv/bin/python scripts/trace_worker.py --full   # every path of the worker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.strace_count import report  # noqa: E402
from tests.netenv import (  # noqa: E402
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    PASTA,
    HostNS,
    stop_process,
    wait_for,
)

MIB = 1 << 20


def full_workload(out: Path) -> None:
    """pasta attached to a namespace, every path of the worker exercised once.

    ICMP both families; TCP out through the gateway (v4, v6) and in over the
    tap and the splice path; -T from the namespace's loopback; UDP echo
    through the gateway and -u; then a pause so the once-a-second timers run.
    """
    with HostNS() as host:
        guest = host.guest()
        sink4, sink6 = host.serve("tcp-sink", "127.0.0.1"), host.serve("tcp-sink", "::1")
        echo = host.serve("tcp-echo", "127.0.0.1")
        uecho = host.serve("udp-echo", "127.0.0.1")
        in_tap = guest.serve("tcp-sink", "0.0.0.0", 10201)
        in_splice = guest.serve("tcp-sink", "127.0.0.1", 10202)
        guest.serve("udp-echo", "0.0.0.0", 10203)
        p = host.popen(["strace", "-f", "-qq", "-o", str(out), PASTA, "-f", "-q", "--config-net",
                        "-t", f"{in_tap.port},{in_splice.port}", "-u", "10203",
                        "-T", f"{echo.port}", "--netns", guest.netns_path])
        try:
            wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 -br addr", check=False).stdout, 30)
            results = [
                guest.run(f"ping -c2 -i0.2 -W2 {GW_ADDR4}; ping -6 -c2 -i0.2 -W2 {GW_ADDR6}",
                          check=False).returncode == 0,
                guest.client("tcp-send", GW_ADDR4, sink4.port, "--bytes", str(20 * MIB))["ok"],
                guest.client("tcp-send", GW_ADDR6, sink6.port, "--bytes", str(20 * MIB))["ok"],
                guest.client("udp-echo-check", GW_ADDR4, uecho.port, "--count", "200")["ok"],
                guest.client("tcp-echo-check", "127.0.0.1", echo.port, "--bytes", str(MIB))["ok"],
                host.client("tcp-send", HOST_ADDR4, in_tap.port, "--bytes", str(20 * MIB))["ok"],
                host.client("tcp-send", "127.0.0.1", in_splice.port, "--bytes", str(20 * MIB))["ok"],
                host.client("udp-echo-check", HOST_ADDR4, 10203, "--count", "200")["ok"],
            ]
            print("workload results:", results, file=sys.stderr)
            time.sleep(2.5)
        finally:
            stop_process(p, grace=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta-args", default="--config-net -q")
    ap.add_argument("--full", action="store_true",
                    help="run the full workload (every path of the worker) instead of a command")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = [c for c in a.command if c != "--"] or ["sh", "-c", "ping -c2 -W2 192.0.2.1"]
    if a.full:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "strace.txt"
            full_workload(out)
            report(out.read_text(), "trace_worker")
        return
    with tempfile.TemporaryDirectory() as d, HostNS() as host:
        out = Path(d) / "strace.txt"
        host.run(["strace", "-f", "-qq", "-o", str(out), PASTA, *a.pasta_args.split(), "--", *cmd],
                 check=False, timeout=300)
        text = out.read_text()
    report(text, "trace_worker")


if __name__ == "__main__":
    main()
