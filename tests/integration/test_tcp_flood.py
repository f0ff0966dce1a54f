# SPDX-License-Identifier: GPL-2.0-or-later
"""A SYN flood from the guest: pasta stays up, its memory stays bounded.

20,000 SYNs from random source ports, written as raw frames (AF_PACKET) on
the guest's eth0 to the gateway address: to a port where a host loopback
server listens, then 5,000 to a port where nothing does. Each SYN is a
connect request to the parent (at most 32 in flight, the rest queued in the
worker); the connection table is bounded by RLIMIT_NOFILE. The guest's own
kernel answers the SYN-ACKs it did not ask for with RSTs. Checked: only
SYN-ACKs and RSTs come back, the proportional set size (PSS) of pasta and
its children grows by less than 30 MiB, the worker never holds more fds than
its limit, pasta still runs, and a normal connection afterwards carries
1 MiB with the right sha256. (test_tcp.py's garbage test covers bad offsets,
impossible flags and segments to no connection.)
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.netenv import GW_ADDR4, HOST_ADDR4, PYTHON, HostNS

pytestmark = pytest.mark.integration

MIB = 1 << 20
GROWTH_MAX = 30 * MIB

FLOOD = textwrap.dedent('''
    """SYN flood over AF_PACKET: flood.py IF GW SRC DPORT COUNT; prints one JSON line."""
    import json, random, socket, struct, sys, time
    ifname, gw, src_addr, dport, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    mac = None
    for line in open("/proc/net/arp").read().splitlines()[1:]:
        f = line.split()
        if f[0] == gw:
            mac = bytes.fromhex(f[3].replace(":", ""))
    r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    r.bind((ifname, 0))
    r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    ours = r.getsockname()[4][:6]
    src, dst = socket.inet_aton(src_addr), socket.inet_aton(gw)
    def csum(b):
        if len(b) % 2:
            b += b"\\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF
    rnd = random.Random(dport)
    ports = set()
    sent = 0
    t0 = time.monotonic()
    for i in range(count):
        sport = rnd.randrange(1024, 65536)
        ports.add(sport)
        tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, rnd.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0))
        tcp[16:18] = struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + bytes(tcp)))
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0x4000, 64, 6, 0, src, dst))
        ip[10:12] = struct.pack("!H", csum(bytes(ip)))
        for _ in range(1000):
            try:
                r.send(mac + ours + b"\\x08\\x00" + bytes(ip) + bytes(tcp))
                sent += 1
                break
            except BlockingIOError:
                time.sleep(0.001)
    seen = {"synack": 0, "rst": 0, "other": 0}
    r.settimeout(0.2)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        try:
            pkt = r.recv(70000)
        except TimeoutError:
            continue
        if len(pkt) < 54 or pkt[23] != 6 or pkt[6:12] == ours:
            continue
        ihl = (pkt[14] & 15) * 4
        sp, dp = struct.unpack_from("!HH", pkt, 14 + ihl)
        if sp != dport or dp not in ports:
            continue
        flags = pkt[14 + ihl + 13]
        key = "rst" if flags & 0x04 else "synack" if flags & 0x12 == 0x12 else "other"
        seen[key] += 1
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - t0, 2), **seen}))
''')


def _tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(e))
    out, todo = [], [pid]
    while todo and len(out) < 64:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _pss(pids: list[int]) -> int:
    """Sum of Pss over pids, in bytes (smaps_rollup). A process whose Pss
    cannot be read fails the test: a check that cannot measure never passes."""
    total = 0
    for p in pids:
        with open(f"/proc/{p}/smaps_rollup") as f:  # OSError: the test fails, naming the file
            pss = [int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:")]
        assert len(pss) == 1 and pss[0] > 0, f"/proc/{p}/smaps_rollup: no Pss line ({pss})"
        total += pss[0]
    return total


def _fds(pid: int) -> int:
    """Open fds of pid; the test fails if /proc/PID/fd cannot be read."""
    n = len(os.listdir(f"/proc/{pid}/fd"))
    assert n > 0, f"/proc/{pid}/fd: empty"
    return n


def _nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"/proc/{pid}/limits: no 'Max open files' line")


def test_syn_flood_bounded(tmp_path: Path) -> None:
    flood = tmp_path / "flood.py"
    flood.write_text(FLOOD)
    with HostNS() as host:
        guest = host.guest()
        pasta = host.pasta(guest, v6=True)
        srv = host.serve("tcp-sink", "127.0.0.1")
        assert host.client("tcp-send", "127.0.0.1", srv.port)["ok"]
        res = guest.client("tcp-send", GW_ADDR4, srv.port, "--bytes", str(MIB))
        assert res["ok"], res  # warm: the worker's table and buffers exist
        guest.run(["ping", "-c1", "-W2", GW_ADDR4], check=False)  # the gateway's MAC
        pids = _tree(pasta.pid)
        assert len(pids) >= 2, pids  # parent and worker
        before = _pss(pids)
        limits = {p: _nofile(p) for p in pids}
        peak_fds = {p: _fds(p) for p in pids}
        results = {}
        for name, port, count in (("listening", srv.port, 20000), ("closed", 9, 5000)):
            p = guest.popen([PYTHON, str(flood), "eth0", GW_ADDR4, HOST_ADDR4, str(port), str(count)],
                            stdout=subprocess.PIPE, text=True)
            end = time.monotonic() + 40
            while p.poll() is None and time.monotonic() < end:
                for pid in pids:
                    peak_fds[pid] = max(peak_fds[pid], _fds(pid))
                time.sleep(0.05)
            out, _ = p.communicate(timeout=5)
            results[name] = json.loads(out.strip().splitlines()[-1])
            assert pasta.poll() is None, f"pasta exited: {pasta.stderr.read() if pasta.stderr else ''}"
        after = _pss(pids)
        print(f"\nSYN flood: {results}, PSS {before >> 10} KiB -> {after >> 10} KiB, "
              f"peak fds {peak_fds} (limits {limits})")
        for name, r in results.items():
            assert r["sent"] > 0 and r["other"] == 0, (name, r)
        assert results["listening"]["sent"] == 20000 and results["closed"]["rst"] > 0, results
        assert after - before < GROWTH_MAX, (before, after)
        assert all(peak_fds[p] <= limits[p] for p in pids), (peak_fds, limits)
        # afterwards: a normal connection works, the digest checked by tcp-send
        res = {}
        for _ in range(20):  # bounded: the queued connects of the flood drain first
            res = guest.client("tcp-send", GW_ADDR4, srv.port, "--bytes", str(MIB), "--timeout", "10",
                               timeout=20)
            if res["ok"]:
                break
            time.sleep(0.5)
        assert res["ok"], res
        assert pasta.poll() is None
