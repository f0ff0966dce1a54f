#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A kernel guest for passt without a VM: relay passt's socket to a tap device.

    streamtap.py SOCKET [IFNAME] [--addr A/P --gw G] [--addr6 A/P --gw6 G]

Run inside the guest's network namespace (root there). Creates the tap
IFNAME (default eth0, no packet information, no offloads), connects to
passt's UNIX socket as qemu's ``-netdev stream`` does (each frame preceded
by its length, 32 bits big-endian), relays frames both ways, and configures
the interface: up, MTU 65520, and the given addresses and default routes
(without them it only brings the link up; a DHCP client can run after).
Prints ``READY`` once the link is up and the socket connected, and runs
until passt closes the socket (exit 0) or an error (exit 1, one line).

The same relay serves C passt and passt-sep alike, so a benchmark through
it compares them under one extra hop.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MTU = 65520


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise SystemExit(f"streamtap: ip {' '.join(args)}: {r.stderr.strip()}")


def relay(tap: int, sock: socket.socket) -> int:
    """Move frames until the socket closes; 0 then, 1 on an error."""
    sock.setblocking(False)
    ep = select.epoll()
    ep.register(tap, select.EPOLLIN)
    ep.register(sock.fileno(), select.EPOLLIN)
    inbuf = bytearray()   # from passt, not yet a whole frame
    outbuf = bytearray()  # to passt, not yet written
    tapq: list[bytes] = []  # frames for the tap that met EAGAIN
    while True:
        for fd, ev in ep.poll(1.0):
            if fd == tap:
                for _ in range(64):
                    try:
                        frame = os.read(tap, 65536)
                    except BlockingIOError:
                        break
                    outbuf += struct.pack("!I", len(frame)) + frame
            elif ev & select.EPOLLIN:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    data = None
                except OSError:  # reset by passt going away: the end, as a close is
                    return 0
                if data == b"":
                    return 0
                if data:
                    inbuf += data
                    while len(inbuf) >= 4:
                        n = struct.unpack_from("!I", inbuf)[0]
                        if n > 65535 + 14:
                            sys.stderr.write(f"streamtap: frame length {n} from passt\n")
                            return 1
                        if len(inbuf) < 4 + n:
                            break
                        tapq.append(bytes(inbuf[4:4 + n]))
                        del inbuf[:4 + n]
            elif ev & (select.EPOLLHUP | select.EPOLLERR):
                return 0
        while tapq:
            try:
                os.write(tap, tapq[0])
            except BlockingIOError:
                break
            tapq.pop(0)
        if outbuf:
            try:
                n = sock.send(outbuf)
                del outbuf[:n]
            except BlockingIOError:
                pass
            except OSError:
                return 0
            if len(outbuf) > 64 << 20:
                sys.stderr.write("streamtap: passt does not read\n")
                return 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("ifname", nargs="?", default="eth0")
    ap.add_argument("--addr")
    ap.add_argument("--gw")
    ap.add_argument("--addr6")
    ap.add_argument("--gw6")
    a = ap.parse_args()
    try:
        tap = open_tap(a.ifname)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(a.socket)
    except OSError as e:
        sys.stderr.write(f"streamtap: {e}\n")
        return 1
    ip("link", "set", a.ifname, "mtu", str(MTU), "up")
    if a.addr:
        ip("addr", "add", a.addr, "dev", a.ifname)
    if a.gw:
        ip("route", "add", "default", "via", a.gw, "dev", a.ifname)
    if a.addr6:
        ip("-6", "addr", "add", a.addr6, "dev", a.ifname, "nodad")
    if a.gw6:
        ip("-6", "route", "add", "default", "via", a.gw6, "dev", a.ifname)
    print("READY", flush=True)
    return relay(tap, sock)


if __name__ == "__main__":
    sys.exit(main())
