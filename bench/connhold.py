#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Hold many TCP connections: an echo server and a client driven over stdin.

    connhold.py server ADDR PORT      prints "READY PORT", echoes on every connection
    connhold.py client ADDR PORT      reads commands on stdin, one JSON line per answer:
        open N     open N more connections (non-blocking, 256 in flight), each
                   completed or failed within 20 s
        check      on every connection: send 32 bytes unique to it, read them back;
                   reports the count that matched and a sha256 over all sent and
                   over all received (equal when every byte came back)
        rate SECS  connect-send-receive-close loops for SECS seconds: new connections/s
        quit

Only standard library; raises RLIMIT_NOFILE to its hard limit. Every wait is
bounded in time. Used by bench/conns.py; the addresses are loopback or inside
the benchmark's namespaces.
"""

from __future__ import annotations

import hashlib
import json
import resource
import select
import socket
import sys
import time


def _raise_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server(addr: str, port: int) -> None:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(4096)
    ls.setblocking(False)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns: dict[int, socket.socket] = {}
    print(f"READY {ls.getsockname()[1]}", flush=True)
    while True:
        for fd, _ev in ep.poll(1.0):
            if fd == ls.fileno():
                for _ in range(512):
                    try:
                        c, _peer = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns[fd]
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                del conns[fd]
                c.close()
                continue
            try:
                c.sendall(data)
            except OSError:
                pass


class Client:
    """The held connections of one client process."""

    def __init__(self, addr: str, port: int) -> None:
        self.dest = (addr, port)
        self.fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.socks: list[socket.socket] = []

    def open(self, n: int) -> dict[str, object]:
        t0 = time.monotonic()
        failed, todo = 0, n
        while todo > 0:
            batch: dict[int, socket.socket] = {}
            ep = select.epoll()
            for _ in range(min(256, todo)):
                s = socket.socket(self.fam, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.connect(self.dest)
                except BlockingIOError:
                    pass
                except OSError:
                    failed += 1
                    s.close()
                    continue
                batch[s.fileno()] = s
                ep.register(s.fileno(), select.EPOLLOUT)
            todo -= min(256, todo)
            end = time.monotonic() + 20
            while batch and time.monotonic() < end:
                for fd, _ev in ep.poll(0.5):
                    s = batch.pop(fd)
                    ep.unregister(fd)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        failed += 1
                        s.close()
                    else:
                        self.socks.append(s)
            failed += len(batch)
            for s in batch.values():
                s.close()
            ep.close()
        return {"open": len(self.socks), "failed": failed, "secs": round(time.monotonic() - t0, 3)}

    def check(self) -> dict[str, object]:
        sent, got = hashlib.sha256(), hashlib.sha256()
        ok = bad = 0
        for i, s in enumerate(self.socks):
            token = f"{i:010d}-{id(s):021d}".encode()[:32].ljust(32, b".")
            sent.update(token)
            s.setblocking(True)
            s.settimeout(5)
            buf = b""
            try:
                s.sendall(token)
                while len(buf) < 32:
                    part = s.recv(32 - len(buf))
                    if not part:
                        break
                    buf += part
            except OSError:
                pass
            got.update(buf)
            if buf == token:
                ok += 1
            else:
                bad += 1
        return {"ok": ok, "bad": bad, "sha_sent": sent.hexdigest(), "sha_recv": got.hexdigest()}

    def rate(self, secs: float) -> dict[str, object]:
        n = fail = 0
        end = time.monotonic() + secs
        while time.monotonic() < end:
            try:
                with socket.create_connection(self.dest, timeout=2) as s:
                    s.sendall(b"x")
                    if s.recv(1) == b"x":
                        n += 1
                    else:
                        fail += 1
            except OSError:
                fail += 1
        return {"per_s": round(n / secs, 1), "done": n, "failed": fail}


def client(addr: str, port: int) -> None:
    c = Client(addr, port)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "open":
            res = c.open(int(arg))
        elif cmd == "check":
            res = c.check()
        elif cmd == "rate":
            res = c.rate(float(arg))
        elif cmd == "quit":
            return
        else:
            res = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    _raise_nofile()
    role, a, p = sys.argv[1], sys.argv[2], int(sys.argv[3])
    (server if role == "server" else client)(a, p)
