# SPDX-License-Identifier: GPL-2.0-or-later
"""A qemu stand-in for passt mode: a tap in this namespace, bridged to passt's socket.

Run inside a test's GuestNS: ``streambridge.py SOCKET [--gap S] [--seconds N]``.
It creates the tap ``eth0`` (IFF_TAP | IFF_NO_PI), gives it the addresses
passt hands out (192.0.2.10/24, 2001:db8::10/64, default routes via the
gateway), connects to passt's UNIX socket and moves frames both ways: a
frame read from the tap goes to passt with its 4-byte big-endian length in
front (the qemu stream format), and frames from passt go to the tap. The
namespace's own kernel is then the guest: its TCP stack, netfilter, tc.

SIGUSR1 makes it behave as qemu with ``reconnect=``: it closes the
connection (mid-transfer if one runs), waits ``--gap`` seconds and connects
again, retrying (bounded) while passt still refuses a second client. Frames
the guest sends meanwhile are lost, as with qemu. It prints ``READY`` once
connected and the tap configured, ``RECONNECTED n`` after each reconnection,
and exits after ``--seconds``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
MAC = "52:54:00:12:34:56"
SETUP = [
    "ip link set lo up",
    f"ip link set eth0 address {MAC} mtu 1500",
    "sysctl -qw net.ipv6.conf.eth0.accept_dad=0",
    "ip addr add 192.0.2.10/24 dev eth0",
    "ip -6 addr add 2001:db8::10/64 dev eth0 nodad",
    "ip link set eth0 up",
    "ip route add default via 192.0.2.1",
    "ip -6 route add default via 2001:db8::1",
]


def make_tap() -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"eth0", IFF_TAP | IFF_NO_PI))
    for cmd in SETUP:
        subprocess.run(cmd.split(), check=True, timeout=10)
    return fd


def connect(path: str, deadline: float) -> socket.socket:
    """Connect and wait until passt keeps the connection (a refused one is closed at once)."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            # a refused client is closed at once: EOF within 0.2 s means "again"
            if not select.select([s], [], [], 0.2)[0] or s.recv(1, socket.MSG_PEEK):
                return s
        except OSError:
            pass
        s.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"passt at {path} did not take a client")
        time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--gap", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=300.0)
    a = ap.parse_args()
    end = time.monotonic() + a.seconds
    tap = make_tap()
    s = connect(a.socket, time.monotonic() + 10)
    print("READY", flush=True)
    reconnect = [False]
    signal.signal(signal.SIGUSR1, lambda *_: reconnect.__setitem__(0, True))
    buf = bytearray()
    n = 0
    while time.monotonic() < end:
        if reconnect[0]:
            reconnect[0] = False
            s.close()
            time.sleep(a.gap)
            while True:  # what the guest sent meanwhile is lost, as with qemu
                try:
                    os.read(tap, 65536)
                except BlockingIOError:
                    break
            s = connect(a.socket, time.monotonic() + 10)
            buf.clear()
            n += 1
            print("RECONNECTED", n, flush=True)
        try:
            ready = select.select([tap, s], [], [], 0.5)[0]
        except InterruptedError:
            continue
        if tap in ready:
            for _ in range(64):
                try:
                    frame = os.read(tap, 65536)
                except BlockingIOError:
                    break
                try:
                    s.sendall(struct.pack("!I", len(frame)) + frame)
                except OSError:
                    break
        if s in ready:
            try:
                data = s.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                print("CLOSED by passt", flush=True)
                return 1
            buf += data
            while len(buf) >= 4:
                ln = struct.unpack_from("!I", buf)[0]
                if len(buf) < 4 + ln:
                    break
                try:
                    os.write(tap, bytes(buf[4:4 + ln]))
                except BlockingIOError:
                    pass  # the tap's queue is full: the frame is lost (TCP recovers)
                del buf[:4 + ln]
    return 0


if __name__ == "__main__":
    sys.exit(main())
