#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Time from exec to "ready for the client": the passt socket, pasta's tap.

A client that looks once, as Debian's libvirt 9.0 makes qemu do (it starts
qemu right after passt, and qemu connects without retrying), needs the
socket to accept connections within a few milliseconds of exec. This
measures, in one run and alternating between implementations:

- passt: from just before exec of ``passt -f -s PATH`` until a connect()
  to PATH succeeds (polled every 0.2 ms);
- pasta: from just before exec of ``pasta -f --netns PATH`` until the tap
  device (named as the host's template interface, eth0) exists in that
  namespace (if_nametoindex, polled every 0.2 ms from a thread that
  entered it), and until the command would be let go is not measured here
  (bench/compare.py's startup row: until a namespace probe connects).

Everything runs inside a HostNS (tests/netenv.py): the timing loop itself
runs in there (``--inner``), so no nsenter sits between the clock and the
exec. C passt and C pasta are /usr/bin/passt and /usr/bin/pasta. Prints a
table and one JSON line per implementation (median, p95, all samples).

    .venv/bin/python bench/ready.py [--reps 20] [--impl ours-passt,c-passt,ours-pasta,c-pasta]
        [--other NAME=DIR]   (DIR/passt and DIR/pasta as NAME-passt, NAME-pasta: an older tree)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# C pasta and passt get --runas 0:0 as in the other bench scripts (as nobody, C
# pasta cannot open the namespace of the test's holder); ours as well, alike
IMPLS = {
    "ours-passt": ("passt", [str(REPO / ".venv" / "bin" / "passt"), "--runas", "0:0"]),
    "c-passt": ("passt", ["/usr/bin/passt", "--runas", "0:0"]),
    "ours-pasta": ("pasta", [str(REPO / ".venv" / "bin" / "pasta"), "--runas", "0:0"]),
    "c-pasta": ("pasta", ["/usr/bin/pasta", "--runas", "0:0"]),
}
POLL = 0.0002  # seconds between looks
GIVE_UP = 5.0  # seconds: a run that is not ready by then counts as this
CLONE_NEWNET = 0x40000000


def _stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(3)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(3)


def one_passt(cmd: list[str], d: str, i: int) -> float:
    """Seconds from exec until the socket accepts a connection."""
    path = f"{d}/s{i}"
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t0 = time.perf_counter()
    p = subprocess.Popen([*cmd, "-f", "-q", "-s", path], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                c.connect(path)
                return time.perf_counter() - t0
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if time.perf_counter() - t0 > GIVE_UP or p.poll() is not None:
                return GIVE_UP
            time.sleep(POLL)
    finally:
        c.close()
        _stop(p)


def one_pasta(cmd: list[str], netns: str, ifname: str) -> float:
    """Seconds from exec until the tap exists in the namespace at netns."""
    libc = ctypes.CDLL(None, use_errno=True)
    out: list[float] = []
    started = threading.Event()
    t0 = [0.0]
    gone = threading.Event()

    def watch() -> None:  # this thread alone enters the guest's netns
        fd = os.open(netns, os.O_RDONLY)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:  # the previous run's tap is gone first
            try:
                socket.if_nametoindex(ifname)
            except OSError:
                break
            time.sleep(0.001)
        gone.set()
        started.wait(10)
        while True:
            try:
                socket.if_nametoindex(ifname)
                out.append(time.perf_counter() - t0[0])
                return
            except OSError:
                pass
            if time.perf_counter() - t0[0] > GIVE_UP:
                out.append(GIVE_UP)
                return
            time.sleep(POLL)

    th = threading.Thread(target=watch)
    th.start()
    gone.wait(10)
    t0[0] = time.perf_counter()
    p = subprocess.Popen([*cmd, "-f", "-q", "--netns", netns], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.set()
    th.join(GIVE_UP + 5)
    _stop(p)
    return out[0] if out else GIVE_UP


def inner(a: argparse.Namespace) -> None:
    """Inside the HostNS: the timing loop, alternating implementations."""
    names = a.impl.split(",")
    res: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="ready-") as d:
        os.chmod(d, 0o755)
        for i in range(a.reps):
            for n in names:
                mode, cmd = IMPLS[n]
                if mode == "passt":
                    res[n].append(one_passt(cmd, d, i))
                else:
                    res[n].append(one_pasta(cmd, a.netns, a.ifname))
    print(json.dumps(res))


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--impl", default=",".join(IMPLS))
    ap.add_argument("--other", action="append", default=[], metavar="NAME=DIR",
                    help="also DIR/passt and DIR/pasta, as NAME-passt and NAME-pasta")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--netns", help=argparse.SUPPRESS)
    ap.add_argument("--ifname", default="eth0", help=argparse.SUPPRESS)
    a = ap.parse_args()
    for spec in a.other:
        name, _, d = spec.partition("=")
        IMPLS[f"{name}-passt"] = ("passt", [f"{d}/passt", "--runas", "0:0"])
        IMPLS[f"{name}-pasta"] = ("pasta", [f"{d}/pasta", "--runas", "0:0"])
        if not a.inner and f"{name}-passt" not in a.impl:
            a.impl += f",{name}-passt,{name}-pasta"
    if a.inner:
        inner(a)
        return
    from tests.netenv import PYTHON, HostNS

    with HostNS() as host:
        guest = host.guest()
        r = host.run([PYTHON, __file__, "--inner", "--reps", str(a.reps), "--impl", a.impl,
                      "--netns", guest.netns_path, *[f"--other={o}" for o in a.other]],
                     timeout=60 + a.reps * 40)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{'implementation':<12} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}  (n={a.reps})")
    for n, xs in res.items():
        what = "socket" if IMPLS[n][0] == "passt" else "tap"
        print(f"{n:<12} {statistics.median(xs) * 1e3:>10.1f} {p95(xs) * 1e3:>8.1f} "
              f"{max(xs) * 1e3:>8.1f}  ({what})")
    for n, xs in res.items():
        print(json.dumps({"impl": n, "median_ms": round(statistics.median(xs) * 1e3, 2),
                          "p95_ms": round(p95(xs) * 1e3, 2),
                          "samples_ms": [round(x * 1e3, 2) for x in xs]}))


if __name__ == "__main__":
    main()
