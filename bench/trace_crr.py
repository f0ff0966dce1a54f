#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where a short connection's time goes: an ftrace of one crr run (a developer's tool).

Runs ``rr.py connrate`` (../shared/bench) through one pasta-compatible
command in a HostNS (tests/netenv.py: loopback and our namespaces only)
and, for a short window in the middle of the run, records the kernel's
scheduler events (switches, wake-ups) and every system call's entry and
exit through tracefs. The window is bounded (``--window`` seconds, a
20 MiB buffer) and tracing is switched off again whatever happens. Then:

- for passt-sep's worker, per outbound connection (``--dir out``), the
  median time from reading the guest's SYN to the broker request going
  out, from the request to the reply (the parent hop as the worker sees
  it), and from the reply to the SYN-ACK written;
- ``--timeline N``: N events of the trace as a readable timeline (which
  CPU, which process, which call and how long it took, who woke whom),
  the view that showed, in session 6, one connection's FIN being handled
  before the next connection's SYN-ACK.

Needs root (tracefs, mounted at /sys/kernel/tracing if it is not yet).
Tracing costs a few per cent; compare implementations traced alike.

    .venv/bin/python bench/trace_crr.py --dir in --timeline 200
    .venv/bin/python bench/trace_crr.py --pasta '/usr/bin/pasta --runas 0:0' --dir out
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rrserver import RR, start_server  # noqa: E402

from tests.netenv import GW_ADDR4, HOST_ADDR4, PASTA, PYTHON, HostNS, stop_process, wait_for  # noqa: E402

TRACEFS = Path("/sys/kernel/tracing")
PORT_HOST, PORT_NS = 5301, 5302
LINE = re.compile(r"\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+):\s+(\S+):\s*(.*)")


def syscall_names() -> dict[int, str]:
    """x86_64 system call numbers to names, from the kernel headers if present."""
    names: dict[int, str] = {}
    for hdr in ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"):
        try:
            with open(hdr) as f:
                for line in f:
                    m = re.match(r"#define __NR_(\w+) (\d+)", line)
                    if m:
                        names[int(m.group(2))] = m.group(1)
        except OSError:
            continue
        break
    return names


def _w(name: str, value: str) -> None:
    (TRACEFS / name).write_text(value)


def trace(window: float) -> str:
    """Record scheduler events and system calls for ``window`` seconds; the trace text."""
    if not (TRACEFS / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    _w("tracing_on", "0")
    _w("trace", "")
    _w("buffer_size_kb", "20000")
    try:
        for ev in ("sched/sched_switch", "sched/sched_wakeup", "raw_syscalls/sys_enter",
                   "raw_syscalls/sys_exit"):
            _w(f"events/{ev}/enable", "1")
        _w("tracing_on", "1")
        time.sleep(window)
    finally:
        _w("tracing_on", "0")
        _w("events/enable", "0")
    return (TRACEFS / "trace").read_text()


def events(text: str, names: dict[int, str]) -> list[tuple[float, str, int, int, str]]:
    """(µs since the first event, comm, pid, cpu, description) of every event."""
    out = []
    t0 = None
    pending: dict[int, float] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        comm, pid_s, cpu, ts_s, ev, rest = m.groups()
        pid, ts = int(pid_s), float(ts_s) * 1e6
        t0 = ts if t0 is None else t0
        rel = ts - t0
        if ev == "sys_enter":
            pending[pid] = rel
            continue
        if ev == "sys_exit":
            nr = int(rest.split("NR ")[1].split()[0])
            ret = rest.rsplit("=", 1)[-1].strip()
            took = rel - pending.pop(pid, rel)
            desc = f"{names.get(nr, str(nr))} = {ret} ({took:.0f})"
        elif ev == "sched_switch":
            mm = re.search(r"prev_comm=(.+?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.+?) next_pid=(\d+)",
                           rest)
            desc = f"SWITCH {mm.group(1)}/{mm.group(2)}[{mm.group(3)}] -> {mm.group(4)}/{mm.group(5)}" if mm else rest
        elif ev == "sched_wakeup":
            mm = re.search(r"comm=(.+?) pid=(\d+).*target_cpu=(\d+)", rest)
            desc = f"WAKEUP {mm.group(1)}/{mm.group(2)} on cpu {int(mm.group(3))}" if mm else rest
        else:
            continue
        out.append((rel, comm, pid, int(cpu), desc))
    return out


def hop_stats(evs: list[tuple[float, str, int, int, str]], worker: int) -> dict[str, float | int | None]:
    """Per outbound connection of passt-sep's worker: SYN read -> request -> reply -> SYN-ACK.

    The worker's calls are recognised by their sizes: the guest's IPv4 SYN
    with its options is an 84-byte readv (virtio-net header included), a
    request 36 bytes, a reply 8, our SYN-ACK a 72-byte write.
    """
    syn = req = rep = None
    a: list[float] = []
    b: list[float] = []
    c: list[float] = []
    for rel, _comm, pid, _cpu, desc in evs:
        if pid != worker:
            continue
        if desc.startswith("readv = 84 "):
            syn = rel
        elif desc.startswith("sendto = 36 "):
            if syn is not None:
                a.append(rel - syn)
            syn, req = None, rel
        elif desc.startswith("recvmsg = 8 ") and req is not None:
            b.append(rel - req)
            req, rep = None, rel
        elif desc.startswith("write = 72 ") and rep is not None:
            c.append(rel - rep)
            rep = None

    def med(v: list[float]) -> float | None:
        return round(statistics.median(v), 1) if v else None
    return {"connections": len(b), "syn_to_request_us": med(a), "request_to_reply_us": med(b),
            "reply_to_synack_us": med(c)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pasta", default=PASTA, help="command (split on spaces) taking pasta's options")
    ap.add_argument("--dir", choices=["out", "in"], default="out")
    ap.add_argument("--window", type=float, default=0.03, help="seconds traced (at most 0.5)")
    ap.add_argument("--timeline", type=int, default=0, help="print this many events")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("trace_crr: needs root (tracefs)")
    window = min(max(a.window, 0.001), 0.5)
    names = syscall_names()
    with HostNS(gateway=False) as host:
        guest = host.guest()
        guest.run("ip link set lo up")
        for ns, addr, port in ((host, "127.0.0.1", PORT_HOST), (guest, "0.0.0.0", PORT_NS)):
            start_server(ns, addr, port)
        p = host.popen([*a.pasta.split(), "-f", "-q", "--config-net", "-t", str(PORT_NS),
                        "--netns", guest.netns_path])
        try:
            if not wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr", check=False).stdout, 10):
                sys.exit("trace_crr: the namespace was not configured")
            time.sleep(0.5)
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
            ns, addr, port = (guest, GW_ADDR4, PORT_HOST) if a.dir == "out" else (host, HOST_ADDR4, PORT_NS)
            client = ns.popen([PYTHON, RR, "connrate", addr, str(port), "--count", "8000", "--max-time", "10"],
                              stdout=subprocess.PIPE)
            time.sleep(0.6)  # well into the run
            text = trace(window)
            out, _ = client.communicate(timeout=60)
        finally:
            stop_process(p)
    evs = events(text, names)
    res: dict[str, object] = {"client": json.loads(out.decode().strip().splitlines()[-1])}
    if kids and a.dir == "out":
        res["worker"] = hop_stats(evs, kids[0])
    print(json.dumps(res))
    for rel, comm, pid, cpu, desc in evs[len(evs) // 3: len(evs) // 3 + a.timeline]:
        if desc.startswith("epoll_wait = 0 "):
            continue  # a busy poll that found nothing
        print(f"{rel:10.1f} cpu{cpu} {comm[:12]:>12}/{pid:<7} {desc}")


if __name__ == "__main__":
    main()
