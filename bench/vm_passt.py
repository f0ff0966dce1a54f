# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP throughput through passt with a qemu guest: C passt and passt-sep side by side.

One boot per (implementation, repetition), the implementations alternating
within each repetition so both see the same machine load. Each boot runs,
with iperf3 from the host copied into the guest (tests/vm/harness.py
``host_binary``):

- ``vm_to_host``: the guest's iperf3 client sends to an iperf3 server on
  HostNS's 127.0.0.1 through the gateway address (192.0.2.1);
- ``host_to_vm_reverse``: the same connection direction, ``-R`` (the host
  sends);
- ``host_to_vm_fwd``: an iperf3 client on HostNS's loopback sends to the
  guest's iperf3 server through ``-t``.

passt and qemu run inside a HostNS (tests/netenv.py), nothing leaves it.
Both passt implementations get ``--runas 0:0`` (root of HostNS): Debian 12's
C passt, left to drop to ``nobody`` there, reports "Client closed
connection, exiting" within a second, before any client.
The guest runs under TCG unless PASST_SEP_VM_ACCEL=kvm: the emulated CPU,
not the network path, is then the ceiling, so compare the ratios. iperf3
carries no checksum of its data; correctness of bulk transfers is what the
VM tests check (sha256).

    .venv/bin/python bench/vm_passt.py [--reps 3] [--time 5] [--impl c,sep]

Prints one JSON line per measurement and a summary (medians) at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netenv import (  # noqa: E402
    GW_ADDR4,
    HOST_ADDR4,
    PASST,
    PYTHON,
    HostNS,
    stop_process,
    wait_for,
)
from tests.vm import harness  # noqa: E402

IMPLS = {"c": "/usr/bin/passt", "sep": PASST}
SERVER_PORT, FWD_PORT, DONE_PORT = 5201, 5202, 5203
RECEIVER = re.compile(r"([\d.]+) Mbits/sec\s+receiver")

GUEST = """
step link 10 ip link set eth0 up
ip link set eth0 mtu 65520
ip addr add {addr}/24 dev eth0
ip route add default via {gw}
sleep 1
step vm_to_host {limit} iperf3 -c {gw} -p {port} -t {secs} -f m --connect-timeout 5000
step host_to_vm_reverse {limit} iperf3 -c {gw} -p {port} -t {secs} -f m -R --connect-timeout 5000
iperf3 -s -1 -p {fwd} >/dev/null 2>&1 &
sleep 1
echo FWD-READY
step host_wait {wait} nc -l -p {done}
"""


def rss_sampler(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Sum of VmRSS (KiB) of pid and its children, sampled every 0.5 s; max kept."""
    while not stop.is_set():
        total = 0
        pids = [pid]
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
        for p in pids:
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        if total:
            out.append(total)
        stop.wait(0.5)


def one_boot(impl: str, secs: int) -> dict[str, object]:
    """Boot once behind ``impl``; Mbit/s of the three cases, passt's peak RSS."""
    limit = secs + 30
    script = GUEST.format(addr=HOST_ADDR4, gw=GW_ADDR4, port=SERVER_PORT, secs=secs, limit=limit,
                          fwd=FWD_PORT, done=DONE_PORT, wait=limit + 30)
    res: dict[str, object] = {"impl": impl}
    with tempfile.TemporaryDirectory(prefix="passt-bench-") as d, HostNS() as host:
        work = Path(d)
        os.chmod(work, 0o755)
        host.popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(SERVER_PORT)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = work / "passt.socket"
        passt = host.popen([IMPLS[impl], "-f", "-q", "--runas", "0:0", "-1", "-s", str(sock),
                            "-t", f"{FWD_PORT},{DONE_PORT}", "-u", "none"],
                           stdout=subprocess.DEVNULL, stderr=open(work / "passt.err", "wb"))
        if not wait_for(sock.exists, 20):
            raise RuntimeError(f"{impl}: no socket: {(work / 'passt.err').read_text()}")
        time.sleep(0.5)  # the -t listeners (bound before "ready" in passt-sep)
        rss: list[int] = []
        stop = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(passt.pid, stop, rss), daemon=True)
        sampler.start()
        boot = harness.Boot(work, script, harness.host_binary("/usr/bin/iperf3"))
        fwd: dict[str, str] = {}

        def host_side() -> None:
            if wait_for(lambda: "FWD-READY" in boot.text(), 2 * limit + 60, 0.2):
                r = host.run(["iperf3", "-c", "127.0.0.1", "-p", str(FWD_PORT), "-t", str(secs),
                              "-f", "m", "--connect-timeout", "5000"], timeout=limit, check=False)
                fwd["out"] = r.stdout + r.stderr
            poke = (f"import socket, time\nfor _ in range(40):\n    try:\n"
                    f"        socket.create_connection(('127.0.0.1', {DONE_PORT}), 2).close()\n"
                    f"        break\n    except OSError:\n        time.sleep(0.5)\n")
            host.run([PYTHON, "-c", poke], timeout=30, check=False)

        t = threading.Thread(target=host_side, daemon=True)
        t.start()
        boot.run(host.popen, str(sock), timeout=3 * limit + 60)
        t.join(limit + 40)
        stop.set()
        sampler.join(2)
        stop_process(passt)
        steps = boot.steps()
        outputs = {name: steps[name].output if name in steps else "" for name in
                   ("vm_to_host", "host_to_vm_reverse")}
        outputs["host_to_vm_fwd"] = fwd.get("out", "")
        for name, text in outputs.items():
            m = RECEIVER.search(text)
            res[name] = float(m.group(1)) if m else None
            if not m:
                res[f"{name}_error"] = text[-500:] or boot.text()[-500:]
        res["passt_rss_max_kib"] = max(rss) if rss else None
        res["boot_s"] = round(boot.boot_seconds or 0, 1)
    return res


def main() -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--time", type=int, default=5, help="iperf3 seconds per case")
    ap.add_argument("--impl", default="c,sep", help="comma list of: " + ",".join(IMPLS))
    a = ap.parse_args()
    why = harness.available()
    if why:
        print(f"vm_passt: {why}", file=sys.stderr)
        return 1
    impls = a.impl.split(",")
    results: list[dict[str, object]] = []
    for rep in range(a.reps):
        for impl in impls:
            r = one_boot(impl, a.time)
            r["rep"] = rep
            print(json.dumps(r), flush=True)
            results.append(r)
    summary: dict[str, dict[str, float | None]] = {}
    for impl in impls:
        summary[impl] = {}
        for case in ("vm_to_host", "host_to_vm_reverse", "host_to_vm_fwd", "passt_rss_max_kib"):
            vals = [float(v) for r in results if r["impl"] == impl
                    and isinstance(v := r.get(case), (int, float))]
            summary[impl][case] = statistics.median(vals) if vals else None
    print(json.dumps({"summary_median": summary, "accel": os.environ.get("PASST_SEP_VM_ACCEL", "tcg"),
                      "reps": a.reps, "seconds": a.time}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
