#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Tiny traffic servers and clients for the integration tests (stdlib only).

Servers (print ``READY <port>`` once listening, then serve until killed):

    netserve.py tcp-echo ADDR PORT     echo every byte back, per connection
    netserve.py tcp-sink ADDR PORT     read to EOF, answer "<sha256> <bytes> <peer address>\\n"
    netserve.py udp-echo ADDR PORT     send every datagram back

Clients (print one JSON line, exit 0 on success, 1 on mismatch or error):

    netserve.py tcp-send ADDR PORT --bytes N [--bind A]   against tcp-sink
    netserve.py tcp-echo-check ADDR PORT --bytes N
    netserve.py udp-echo-check ADDR PORT --count N [--size S] [--bind A]
    netserve.py tcp-pingpong ADDR PORT --count N  1-byte round trips with tcp-echo

PORT 0 lets the kernel choose; the READY line tells which. Every client
operation is bounded by ``--timeout`` seconds (default 10). ``--bind``
picks the client's source address; tcp-send reports the address the sink
saw as ``peer``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _listen(kind: int, addr: str, port: int) -> socket.socket:
    s = socket.socket(_family(addr), kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _family(addr) == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    print(f"READY {s.getsockname()[1]}", flush=True)
    return s


def _echo_conn(c: socket.socket) -> None:
    with c:
        while data := c.recv(65536):
            c.sendall(data)


def _sink_conn(c: socket.socket) -> None:
    h, n = hashlib.sha256(), 0
    with c:
        peer = c.getpeername()[0]
        while data := c.recv(65536):
            h.update(data)
            n += len(data)
        c.sendall(f"{h.hexdigest()} {n} {peer}\n".encode())


def serve_tcp(addr: str, port: int, handler: object) -> None:
    """Accept forever, one thread per connection."""
    s = _listen(socket.SOCK_STREAM, addr, port)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def serve_udp_echo(addr: str, port: int) -> None:
    """Send every datagram back to where it came from."""
    s = _listen(socket.SOCK_DGRAM, addr, port)
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def _payload(n: int) -> bytes:
    return os.urandom(n)


def _connect(addr: str, port: int, timeout: float, bind: str | None = None) -> socket.socket:
    return socket.create_connection((addr, port), timeout=timeout,
                                    source_address=(bind, 0) if bind else None)


def tcp_send(addr: str, port: int, nbytes: int, timeout: float, bind: str | None = None) -> dict:
    """Send N bytes to a tcp-sink and compare its digest with ours."""
    data = _payload(nbytes)
    t0 = time.monotonic()
    with _connect(addr, port, timeout, bind) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := c.recv(4096):
            reply += chunk
    fields = reply.decode().split()
    ok = fields[:2] == [hashlib.sha256(data).hexdigest(), str(nbytes)]
    return {"ok": ok, "bytes": nbytes, "reply": reply.decode().strip(),
            "peer": fields[2] if len(fields) > 2 else None,
            "seconds": round(time.monotonic() - t0, 6)}


def tcp_echo_check(addr: str, port: int, nbytes: int, timeout: float) -> dict:
    """Send N bytes to a tcp-echo (from a thread) and read them back."""
    data = _payload(nbytes)
    got = bytearray()
    t0 = time.monotonic()
    with _connect(addr, port, timeout) as c:
        def writer() -> None:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        while len(got) < nbytes and (chunk := c.recv(65536)):
            got += chunk
        t.join(timeout)
    return {"ok": bytes(got) == data, "bytes": nbytes, "received": len(got),
            "seconds": round(time.monotonic() - t0, 6)}


def tcp_pingpong(addr: str, port: int, count: int, timeout: float) -> dict:
    """COUNT round trips of one byte each with a tcp-echo; every byte must come back."""
    good = 0
    data = _payload(count)
    with _connect(addr, port, timeout) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            c.sendall(data[i : i + 1])
            if c.recv(1) != data[i : i + 1]:
                break
            good += 1
    return {"ok": good == count, "round_trips": good}


def udp_echo_check(addr: str, port: int, count: int, size: int, timeout: float,
                   bind: str | None = None) -> dict:
    """Send COUNT datagrams one at a time, each must come back unchanged
    (and from addr:port: the socket is connected)."""
    good = 0
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        if bind:
            s.bind((bind, 0))
        s.connect((addr, port))
        for _ in range(count):
            data = _payload(size)
            s.send(data)
            try:
                if s.recv(65536) == data:
                    good += 1
            except TimeoutError:
                pass
    return {"ok": good == count, "sent": count, "echoed": good}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["tcp-echo", "tcp-sink", "udp-echo", "tcp-send",
                                    "tcp-echo-check", "udp-echo-check", "tcp-pingpong"])
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--bind", default=None, help="client source address")
    a = p.parse_args(argv)
    if a.mode == "tcp-echo":
        serve_tcp(a.addr, a.port, _echo_conn)
    elif a.mode == "tcp-sink":
        serve_tcp(a.addr, a.port, _sink_conn)
    elif a.mode == "udp-echo":
        serve_udp_echo(a.addr, a.port)
    try:
        if a.mode == "tcp-send":
            r = tcp_send(a.addr, a.port, a.bytes, a.timeout, a.bind)
        elif a.mode == "tcp-echo-check":
            r = tcp_echo_check(a.addr, a.port, a.bytes, a.timeout)
        elif a.mode == "tcp-pingpong":
            r = tcp_pingpong(a.addr, a.port, a.count, a.timeout)
        else:
            r = udp_echo_check(a.addr, a.port, a.count, a.size, a.timeout, a.bind)
    except OSError as e:
        r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(r), flush=True)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
