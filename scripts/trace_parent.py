#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Which system calls the parent makes once supervision starts: how the
parent policies (policies/pasta-parent.policy, passt-parent.policy) are derived.

Runs the real parent (pasta or passt) under ``strace -f`` inside a HostNS
(tests/netenv.py) through every path its supervision serves, with one
change made here and nowhere else: ``parentfilter.apply`` loads an
allow-everything filter (still with SECCOMP_FILTER_FLAG_TSYNC, so the
strace log shows the moment) instead of the mode's policy, so that a call
the policy lacks is seen rather than refused. Every call any thread of the
parent makes after that moment is counted, and the list is compared with
the policy file: "not in policy" calls would be refused (EPERM) or kill
the parent (@kill); "not seen" ones are listed for paths no run reached.

    .venv/bin/python scripts/trace_parent.py pasta   # attach, auto, spawn
    .venv/bin/python scripts/trace_parent.py passt   # clients, frames, --one-off

Paths, pasta: ICMP, TCP (tap and splice, both families), UDP through the
gateway, -t, -u, -T, -U with their splice paths, --log-size trimming under
-d, SIGTERM; auto in every direction (sock_diag scans, ports bound and
released) with the netns watch on a bind-mounted file that then goes; a
spawned command that exits. passt: ARP, ping, UDP and a TCP SYN through
the socket (the broker's three requests), a second client refused, a
client leaving and the next one served, SIGTERM, --one-off. Both: the
control API (--api-socket: add, list, remove, stats, list_flows, errors,
an idle client dropped, the socket removed at exit).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passt_sep.cli import LOG_SIZE_MIN  # noqa: E402
from passt_sep.setup.parentfilter import policy_path  # noqa: E402
from sandbox.seccomp import load_policy  # noqa: E402
from tests.netenv import (  # noqa: E402
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    PYTHON,
    REPO,
    HostNS,
    proc_children,
    stop_process,
    wait_for,
)

MIB = 1 << 20

# Run as the program, with parentfilter.apply replaced: it records the
# parent's threads and loads an allow-all filter on all of them.
WRAPPER = r"""
import json, os, sys
import pyseccomp
from passt_sep.setup import parentfilter

def apply(mode):
    with open(sys.argv[1], "w") as f:
        json.dump(sorted(int(t) for t in os.listdir("/proc/self/task")), f)
    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    flt.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    flt.load()
    parentfilter._traced = flt  # kept alive

parentfilter.apply = apply
from passt_sep.main import main
main(sys.argv[2:])
"""

LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
TSYNC = re.compile(r"seccomp\(SECCOMP_SET_MODE_FILTER, [^,]*SECCOMP_FILTER_FLAG_TSYNC[^,]*, \{len=")
RESULT = re.compile(r"= (\d+)(?: |$)")


def parent_syscalls(text: str, tids: set[int]) -> collections.Counter[str]:
    """Calls made by the given threads after the TSYNC filter load (threads
    they start afterwards included); a call strace split in two counts once."""
    counts: collections.Counter[str] = collections.Counter()
    started = False
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        tid, name = int(m.group(1)), m.group(2)
        if not started:
            started = tid in tids and TSYNC.search(line) is not None
            continue
        if tid not in tids:
            continue
        if "resumed>" not in line:
            counts[name] += 1
        if name in ("clone", "clone3") and "CLONE_THREAD" in line or (
                "resumed>" in line and name in ("clone", "clone3")):
            r = RESULT.search(line)
            if r:
                tids.add(int(r.group(1)))
    if not started:
        sys.exit("trace_parent: the parent never loaded its filter")
    return counts


class Traced:
    """The parent started under strace through the wrapper."""

    def __init__(self, ns: HostNS, argv: list[str], d: Path, tag: str) -> None:
        self.out = d / f"{tag}.strace"
        self.tids = d / f"{tag}.tids"
        self.tids.touch(0o666)  # passt writes it after changing to nobody
        self.tids.chmod(0o666)
        self.p = ns.popen(["strace", "-f", "-qq", "-o", str(self.out), PYTHON, "-c", WRAPPER,
                           str(self.tids), *argv], cwd=str(REPO),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def filtered(self, timeout: float = 30) -> bool:
        """Whether the parent reached supervision (its stderr is shown if it ended first)."""
        if wait_for(lambda: self.tids.stat().st_size > 0 or self.p.poll() is not None, timeout) and (
                self.tids.stat().st_size > 0):
            return True
        if self.p.poll() is not None and self.p.stderr:
            print(self.p.stderr.read(), file=sys.stderr)
        return False

    def term(self, timeout: float = 15) -> None:
        """SIGTERM to the parent itself (strace would only detach), then wait for its end."""
        kids = proc_children(self.p.pid)
        if kids and self.p.poll() is None:
            os.kill(kids[0], signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, grace: float = 10) -> None:
        stop_process(self.p, grace=grace)

    def counts(self) -> collections.Counter[str]:
        if not self.tids.stat().st_size:
            err = self.p.stderr.read() if self.p.stderr else ""
            sys.exit(f"trace_parent: the parent never reached supervision: {err.strip()}")
        return parent_syscalls(self.out.read_text(), set(json.loads(self.tids.read_text())))


def _api(path: Path, req: bytes, half_close: bool = True) -> bytes:
    """One control-API request (--api-socket): the whole reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        try:
            s.sendall(req)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def exercise_api(path: Path, host: HostNS, port: int) -> list[bool]:
    """Every path of the control API: add (TCP, UDP) with traffic from the host's
    loopback, list, stats, list_flows, remove, errors, a request without a
    half-close, a too-large one, an idle client past its deadline."""
    def call(req: dict) -> dict:
        return json.loads(_api(path, json.dumps(req).encode()) or b"{}")

    ok = []
    t = call({"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 10601, "guest_port": port}})
    u = call({"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_port": 10602, "guest_port": port}})
    ok.append("return" in t and "return" in u)
    host.client("tcp-send", "127.0.0.1", 10601, "--bytes", "100000", "--timeout", "3", timeout=10)
    host.client("udp-echo-check", "127.0.0.1", 10602, "--count", "3", "--timeout", "2", timeout=10)
    ok.append("return" in call({"execute": "list_hostfwd"}))
    ok.append("return" in call({"execute": "stats"}))
    ok.append("return" in call({"execute": "list_flows"}))
    for r in (t, u):
        if "return" in r:
            ok.append(call({"execute": "remove_hostfwd", "arguments": r["return"]}) == {"return": {}})
    ok.append(b"error" in _api(path, b"garbage"))
    ok.append(b"error" in _api(path, b'{"execute": "remove_hostfwd"}', half_close=False))
    ok.append(b"too large" in _api(path, b"{" * (70 * 1024)))
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(str(path))
    time.sleep(2.5)  # past the client deadline: dropped
    idle.close()
    return ok


def pasta_runs(d: Path) -> list[collections.Counter[str]]:
    """The three pasta runs: ports given, auto with the netns watch, a spawned command."""
    results = []
    with HostNS() as host:
        guest = host.guest()
        sink4, sink6 = host.serve("tcp-sink", "127.0.0.1"), host.serve("tcp-sink", "::1")
        echo = host.serve("tcp-echo", "127.0.0.1")
        uecho = host.serve("udp-echo", "127.0.0.1")
        uecho_lo = host.serve("udp-echo", "127.0.0.1")
        in_tap = guest.serve("tcp-sink", "0.0.0.0", 10201)
        in_splice = guest.serve("tcp-sink", "127.0.0.1", 10202)
        guest.serve("udp-echo", "0.0.0.0", 10203)
        guest.serve("udp-echo", "127.0.0.1", 10204)
        log = d / "pasta.log"
        apidir = d / "api"
        apidir.mkdir(mode=0o1777)
        apidir.chmod(0o1777)  # the parent, nobody by then, removes the socket at exit
        t = Traced(host, ["pasta", "-f", "-d", "-l", str(log), "--log-size", str(LOG_SIZE_MIN),
                          "--api-socket", str(apidir / "pasta.api"),
                          "--config-net", "-t", f"{in_tap.port},{in_splice.port}",
                          "-u", "10203,10204", "-T", f"{echo.port}", "-U", f"{uecho_lo.port}",
                          "--netns", guest.netns_path], d, "pasta-ports")
        try:
            assert t.filtered(), "pasta did not reach supervision"
            wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 -br addr", check=False).stdout, 30)
            results_ok = [
                guest.run(f"ping -c2 -i0.2 -W2 {GW_ADDR4}; ping -6 -c2 -i0.2 -W2 {GW_ADDR6}",
                          check=False).returncode == 0,
                guest.client("tcp-send", GW_ADDR4, sink4.port, "--bytes", str(4 * MIB))["ok"],
                guest.client("tcp-send", GW_ADDR6, sink6.port, "--bytes", str(4 * MIB))["ok"],
                guest.client("udp-echo-check", GW_ADDR4, uecho.port, "--count", "50")["ok"],
                guest.client("tcp-echo-check", "127.0.0.1", echo.port, "--bytes", str(MIB))["ok"],
                guest.client("udp-echo-check", "127.0.0.1", uecho_lo.port, "--count", "50")["ok"],
                host.client("tcp-send", HOST_ADDR4, in_tap.port, "--bytes", str(4 * MIB))["ok"],
                host.client("tcp-send", "127.0.0.1", in_splice.port, "--bytes", str(4 * MIB))["ok"],
                host.client("udp-echo-check", HOST_ADDR4, 10203, "--count", "50")["ok"],
                host.client("udp-echo-check", "127.0.0.1", 10204, "--count", "50")["ok"],
            ]
            # connections refused at the host's loopback: one debug line each, for --log-size
            flood = ("import socket\nfor i in range(1200):\n s = socket.socket(); s.settimeout(2)\n"
                     f" try: s.connect(('{GW_ADDR4}', 9))\n except OSError: pass\n s.close()\n")
            guest.run([PYTHON, "-c", flood], timeout=120, check=False)
            print("pasta, ports given:", results_ok, "log", log.stat().st_size, file=sys.stderr)
            print("pasta, --api-socket:", exercise_api(apidir / "pasta.api", host, in_tap.port), file=sys.stderr)
            time.sleep(2.5)
            t.term()
        finally:
            t.stop()
        results.append(t.counts())

    with HostNS() as host:
        guest = host.guest()
        nsfile = d / "netns"
        nsfile.touch()
        subprocess.run(["mount", "--bind", guest.netns_path, str(nsfile)], check=True, timeout=10)
        t = Traced(host, ["pasta", "-f", "-q", "--config-net", "--netns", str(nsfile)], d, "pasta-auto")
        try:
            assert t.filtered(), "pasta did not reach supervision"
            wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 -br addr", check=False).stdout, 30)
            srv = guest.serve("tcp-sink", "0.0.0.0", 10301)
            guest.serve("udp-echo", "0.0.0.0", 10302)
            hsrv = host.serve("tcp-echo", "127.0.0.1", 10303)
            host.serve("udp-echo", "127.0.0.1", 10304)
            def ok(ns: HostNS, mode: str, addr: str, port: int, *args: str) -> bool:
                return wait_for(lambda: ns.client(mode, addr, port, *args, "--timeout", "2",
                                                  timeout=10)["ok"], 12, interval=0.5)

            results_ok = [
                ok(host, "tcp-send", HOST_ADDR4, srv.port, "--bytes", str(MIB)),
                ok(host, "udp-echo-check", HOST_ADDR4, 10302, "--count", "20"),
                ok(guest, "tcp-echo-check", "127.0.0.1", hsrv.port, "--bytes", str(MIB)),
                ok(guest, "udp-echo-check", "127.0.0.1", 10304, "--count", "20"),
            ]
            print("pasta, auto:", results_ok, file=sys.stderr)
            srv.stop()  # a port that goes: released at the next scan
            time.sleep(2.5)
        finally:
            subprocess.run(["umount", "-l", str(nsfile)], timeout=10)  # the watch: pasta exits 0
            nsfile.unlink()
        try:
            t.p.wait(15)
        finally:
            t.stop()
        print("pasta, auto: exit status", t.p.returncode, file=sys.stderr)
        results.append(t.counts())

        t = Traced(host, ["pasta", "-q", "--config-net", "--", "sh", "-c",
                          f"ping -c1 -W2 {GW_ADDR4}; sleep 1; exit 3"], d, "pasta-spawn")
        try:
            t.p.wait(60)
        finally:
            t.stop()
        print("pasta, spawned command: exit status", t.p.returncode, file=sys.stderr)
        results.append(t.counts())

        t = Traced(host, ["pasta", "-q", "--config-net", "--", "sleep", "60"], d, "pasta-term")
        try:
            assert t.filtered(), "pasta did not reach supervision"
            time.sleep(1)
            t.term()  # the command is ended (SIGTERM, reaped)
        finally:
            t.stop()
        print("pasta, SIGTERM with a command: exit status", t.p.returncode, file=sys.stderr)
        results.append(t.counts())
    return results


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


GUEST_MAC = bytes.fromhex("525400123456")


def _ip_frame(proto: int, payload: bytes, dst: str) -> bytes:
    """A length-prefixed Ethernet + IPv4 frame from the guest (to the broadcast MAC:
    the worker answers whatever the destination MAC)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                      socket.inet_aton(HOST_ADDR4), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    frame = b"\xff" * 6 + GUEST_MAC + b"\x08\x00" + hdr + payload
    return struct.pack("!I", len(frame)) + frame


def _l4_csum(proto: int, seg: bytes, dst: str) -> int:
    pseudo = socket.inet_aton(HOST_ADDR4) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return _csum(pseudo + seg)


def guest_frames(port: int) -> list[bytes]:
    """ICMP echo, a UDP datagram and a TCP SYN to the gateway (the host's loopback)."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"x" * 16
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    udp = struct.pack("!HHHH", 40000, port, 8 + 4, 0) + b"ping"
    udp = udp[:6] + struct.pack("!H", _l4_csum(17, udp, GW_ADDR4)) + udp[8:]
    tcp = struct.pack("!HHIIBBHHH", 40001, port, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", _l4_csum(6, tcp, GW_ADDR4)) + tcp[18:]
    return [_ip_frame(1, icmp, GW_ADDR4), _ip_frame(17, udp, GW_ADDR4), _ip_frame(6, tcp, GW_ADDR4)]


def _client(sock: Path, frames: list[bytes]) -> socket.socket | None:
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    try:
        c.connect(str(sock))
        for f in frames:
            c.sendall(f)
            time.sleep(0.2)
        return c
    except OSError:
        c.close()
        return None


def passt_runs(d: Path) -> list[collections.Counter[str]]:
    """Two passt runs: clients one after another then SIGTERM; --one-off."""
    results = []
    with HostNS() as host:
        echo = host.serve("udp-echo", "127.0.0.1")
        tcp = host.serve("tcp-echo", "127.0.0.1")
        sock = d / "passt.sock"
        apidir = d / "api"
        apidir.mkdir(mode=0o1777)
        apidir.chmod(0o1777)
        t = Traced(host, ["passt", "-f", "-q", "-s", str(sock), "-l", str(d / "passt.log"),
                          "--log-size", str(64 * 1024), "-t", "10401",
                          "--api-socket", str(apidir / "passt.api")], d, "passt")
        try:
            assert t.filtered(), "passt did not reach supervision"
            first = _client(sock, guest_frames(echo.port) + guest_frames(tcp.port)[2:])
            second = _client(sock, [])  # closed at once: one client at a time
            time.sleep(1)
            for c in (second, first):
                if c is not None:
                    c.close()
            time.sleep(1)
            third = None
            for _ in range(20):  # served once the worker reported the first one gone
                third = _client(sock, guest_frames(echo.port)[:1])
                if third is not None:
                    break
                time.sleep(0.2)
            time.sleep(1.5)
            if third is not None:
                third.close()
            print("passt: clients", [c is not None for c in (first, second, third)], file=sys.stderr)
            print("passt, --api-socket:", exercise_api(apidir / "passt.api", host, 10403), file=sys.stderr)
            t.term()
        finally:
            t.stop()
        results.append(t.counts())

        sock1 = d / "passt1.sock"
        t = Traced(host, ["passt", "-f", "-q", "-1", "-s", str(sock1)], d, "passt-oneoff")
        try:
            assert t.filtered(), "passt did not reach supervision"
            c = _client(sock1, guest_frames(echo.port)[:2])
            time.sleep(1)
            if c is not None:
                c.close()
            t.p.wait(10)
            print("passt --one-off: exit status", t.p.returncode, file=sys.stderr)
        finally:
            t.stop()
        results.append(t.counts())
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("pasta", "passt"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        d.chmod(0o755)
        runs = pasta_runs(d) if a.mode == "pasta" else passt_runs(d)
    total: collections.Counter[str] = collections.Counter()
    for c in runs:
        total.update(c)
    policy = load_policy(policy_path(a.mode)) if os.path.exists(policy_path(a.mode)) else None
    allowed = set(policy.syscalls) if policy else set()
    for name, n in sorted(total.items(), key=lambda kv: -kv[1]):
        note = "" if policy is None or name in allowed else "   <- not in policy"
        print(f"{n:8d}  {name}{note}")
    print(f"{len(total)} distinct system calls after the filter was loaded")
    if policy is not None:
        unseen = sorted(allowed - set(total))
        print(f"in {os.path.basename(policy_path(a.mode))} but not seen: {', '.join(unseen) or 'none'}")


if __name__ == "__main__":
    main()
