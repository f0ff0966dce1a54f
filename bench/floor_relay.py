#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The floor of a Python splice path: crr through bare relays beside pasta's.

A measurement, not a product: it answers how fast a spliced connection
(the shared suite's crr_out_splice: a client in the namespace connects to
its loopback, a server on the host's loopback answers) can be in Python
at all, whatever passt-sep does around it. Owns two bare relays, run in
the same HostNS (tests/netenv.py: loopback and our namespaces only) and
alternated with C pasta's and passt-sep's -T:

- ``one``: one process, one epoll loop: accept4 on a listener in the
  namespace's loopback, connect a socket of the host's netns to the
  server, then recv/send between them (no pipes, no book-keeping, no
  checks): the least Python a relay can run per connection;
- ``two``: the same split as passt-sep's: a process accepts and connects
  and hands both fds in one SCM_RIGHTS message to a second process that
  relays them: the least the privilege separation can cost;
- ``one-poll`` / ``two-poll``: the same, with the relaying loop asking
  epoll again without sleeping for up to 100 µs after a wake-up that
  found work (passt-sep's worker does the same, worker/busypoll.py): the
  floor with the one trick a Python loop has against wake-up latency.
  ``FLOOR_ACCEPT_SPIN_US=N`` in the environment makes the accepting
  process of ``two``/``two-poll`` spin for N µs after a connection before
  it sleeps (the same trick in the parent: it loses, the CPUs are full).

Each case is ``rr.py connrate`` (connect, 1 byte each way, close) with
the rate and the relay's CPU per connection (every process of it).

    .venv/bin/python bench/floor_relay.py --rounds 3 --count 2000
"""

from __future__ import annotations

import argparse
import array
import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SERVER_PORT, LISTEN_PORT = 5311, 5312
EV = select.EPOLLIN | select.EPOLLRDHUP
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    """setns(2) into a network namespace (os.setns is Python 3.12's)."""
    if _libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _listener_in(netns: str, port: int) -> socket.socket:
    """A listener on 127.0.0.1:port of netns, made there; this process's netns stays."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen(1024)
    finally:
        _setns(home)
        os.close(home)
        os.close(target)
    return ls


def _connect(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    s.connect_ex(("127.0.0.1", port))
    return s


POLL_WINDOW = 100e-6  # the -poll relays: as passt-sep's worker (busypoll.WINDOW_DEFAULT)


class Relay:
    """recv/send between pairs of sockets; a pair ends when both sides said EOF."""

    def __init__(self, polling: bool = False) -> None:
        self.ep = select.epoll()
        self.polling = polling
        self.peer: dict[int, socket.socket] = {}
        self.socks: dict[int, socket.socket] = {}
        self.eof: dict[int, bool] = {}

    def add(self, a: socket.socket, b: socket.socket) -> None:
        for x, y in ((a, b), (b, a)):
            fd = x.fileno()
            self.peer[fd], self.socks[fd], self.eof[fd] = y, x, False
            self.ep.register(fd, EV)

    def wait(self) -> list[tuple[int, int]]:
        """The next events; the -poll relays ask again without sleeping for up to POLL_WINDOW."""
        if self.polling:
            end = time.monotonic() + POLL_WINDOW
            while time.monotonic() < end:
                events = self.ep.poll(0)
                if events:
                    return events
        return self.ep.poll()

    def event(self, fd: int) -> None:
        s = self.socks.get(fd)
        if s is None:
            return
        other = self.peer[fd]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            try:
                other.send(data)
            except OSError:
                pass
            return
        if self.eof[fd]:
            return
        self.eof[fd] = True
        self.ep.modify(fd, 0)
        try:
            other.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        ofd = other.fileno()
        if self.eof.get(ofd):
            for x in (fd, ofd):
                del self.peer[x], self.eof[x]
                self.socks.pop(x).close()


def relay_one(netns: str, target: int, port: int, polling: bool = False) -> None:
    """Accept, connect and relay in one process."""
    ls = _listener_in(netns, port)
    r = Relay(polling)
    r.ep.register(ls.fileno(), select.EPOLLIN)
    lfd = ls.fileno()
    print("ready", flush=True)
    while True:
        for fd, _ev in r.wait():
            if fd == lfd:
                try:
                    a, _ = ls.accept()
                except BlockingIOError:
                    continue
                a.setblocking(False)
                r.add(a, _connect(target))
            else:
                r.event(fd)


def relay_two(netns: str, target: int, port: int, polling: bool = False) -> None:
    """A process accepts and connects, another relays (fds in one message)."""
    ls = _listener_in(netns, port)
    p, c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        _libc.prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM: ends with the accepting process
        p.close()
        ls.close()
        r = Relay(polling)
        cfd = c.fileno()
        r.ep.register(cfd, select.EPOLLIN)
        while True:
            for fd, _ev in r.wait():
                if fd == cfd:
                    msg, anc, _f, _a = c.recvmsg(16, socket.CMSG_SPACE(8))
                    if not anc:  # the accepting process is gone
                        os._exit(0)
                    fds = array.array("i")
                    fds.frombytes(anc[0][2][:8])
                    r.add(socket.socket(fileno=fds[0]), socket.socket(fileno=fds[1]))
                else:
                    r.event(fd)
    c.close()
    print("ready", flush=True)
    spin = float(os.environ.get("FLOOR_ACCEPT_SPIN_US", "0")) * 1e-6
    idle_since = time.monotonic()
    while True:
        try:
            fd, _peer = ls._accept()  # type: ignore[attr-defined]
        except BlockingIOError:
            if time.monotonic() - idle_since > spin:
                select.select([ls], [], [])
                idle_since = time.monotonic()
            continue
        idle_since = time.monotonic()
        b = _connect(target)
        p.sendmsg([b"A"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd, b.fileno()]))])
        os.close(fd)
        b.close()


RELAYS = ("one", "two", "one-poll", "two-poll")


def _cpu(pids: list[int]) -> float:
    tck = os.sysconf("SC_CLK_TCK")
    t = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += (int(v[11]) + int(v[12])) / tck
        except (OSError, IndexError, ValueError):
            pass
    return t


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += map(int, f.read().split())
        except OSError:
            pass
    return out


def main() -> None:
    from rrserver import RR, start_server

    from tests.netenv import HOST_ADDR4, PASTA, PYTHON, HostNS, stop_process, wait_for

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--impls", default="one,two,pasta-c,passt-sep",
                    help="one, two, one-poll, two-poll, pasta-c, passt-sep, passt-sep-nopoll, "
                         "or the path of a pasta command")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=2000)
    a = ap.parse_args()
    cmds = {"pasta-c": ["/usr/bin/pasta", "--runas", "0:0"], "passt-sep": [PASTA],
            "passt-sep-nopoll": ["env", "PASST_SEP_BUSY_POLL_US=0", PASTA]}
    res: dict[str, list[str]] = {}
    with HostNS(gateway=False) as host:
        guest = host.guest()
        guest.run("ip link set lo up")
        start_server(host, "127.0.0.1", SERVER_PORT)
        for _ in range(a.rounds):
            for impl in a.impls.split(","):
                if impl in RELAYS:
                    p = host.popen([PYTHON, __file__, "--relay", impl, guest.netns_path], stdout=subprocess.PIPE)
                    assert p.stdout is not None
                    p.stdout.readline()
                else:  # a name above, or a pasta command's path (bench/compare.py's frozen trees)
                    p = host.popen([*cmds.get(impl, [impl]), "-f", "-q", "--config-net", "-T",
                                    f"{LISTEN_PORT}:{SERVER_PORT}", "--netns", guest.netns_path])
                    if not wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr", check=False).stdout, 10):
                        sys.exit(f"floor: {impl}: the namespace was not configured")
                time.sleep(0.5)
                pids = _tree(p.pid)
                c0 = _cpu(pids)
                r = guest.run([PYTHON, RR, "connrate", "127.0.0.1", str(LISTEN_PORT), "--count", str(a.count)],
                              timeout=120)
                c1 = _cpu(pids)
                j = json.loads(r.stdout)
                done = j.get("connections") or 1
                res.setdefault(impl, []).append(f"{j['rate']:.0f}/s {1e6 * (c1 - c0) / done:.0f}µs")
                stop_process(p)
                time.sleep(0.3)
    print(json.dumps(res, ensure_ascii=False))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--relay" and sys.argv[2] in RELAYS:
        kind = sys.argv[2]
        relay = relay_one if kind.startswith("one") else relay_two
        relay(sys.argv[3], SERVER_PORT, LISTEN_PORT, kind.endswith("-poll"))
    else:
        main()
