# SPDX-License-Identifier: GPL-2.0-or-later
"""qrap: connect to a passt socket and run qemu with it on a file descriptor.

For qemu older than 7.2 (no ``-netdev stream``), which can only take an
already connected socket: ``-net socket,fd=N`` or
``-netdev socket,id=n,fd=N``. Usage::

    qrap [--socket PATH] FDNUM QEMU_CMD [ARG]...

Without --socket, ``/tmp/passt_1.socket`` .. ``_99`` are tried in order. A
passt instance serves one client at a time and closes any other at once,
so a successful connect is not enough: qrap sends one ARP request and
takes the socket only if a frame comes back within a second. The socket
is then placed on FDNUM and qrap becomes QEMU_CMD (execvp); qemu inherits
the connection. Unlike the original, qrap never edits qemu's arguments:
pass the -net/-netdev options yourself.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys

PROBE_TIMEOUT = 1.0
SOCKET_MAX = 99
USAGE = "Usage: qrap [--socket PATH] FDNUM QEMU_CMD [ARG]...\n"


def _probe_frame() -> bytes:
    """A broadcast ARP request from a locally administered MAC, length prefixed."""
    mac = b"\x02\x00\x00\x00\x00\x01"
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, bytes([169, 254, 1, 1]),
                      bytes(6), bytes([169, 254, 1, 2]))
    frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
    frame += bytes(max(0, 60 - len(frame)))
    return struct.pack("!I", len(frame)) + frame


def connect(path: str, timeout: float = PROBE_TIMEOUT) -> socket.socket | None:
    """A connection to a passt that answers, or None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(_probe_frame())
        if not select.select([s], [], [], timeout)[0]:
            raise TimeoutError
        if not s.recv(4, socket.MSG_PEEK):  # closed at once: passt is busy
            raise ConnectionResetError
        hdr = s.recv(4, socket.MSG_WAITALL)
        (n,) = struct.unpack("!I", hdr)
        left = n
        while left > 0:  # consume the reply so qemu starts on a frame boundary
            chunk = s.recv(min(left, 65536))
            if not chunk:
                raise ConnectionResetError
            left -= len(chunk)
        s.settimeout(None)
        return s
    except (OSError, struct.error):
        s.close()
        return None


def main(argv: list[str]) -> int:
    """Entry: returns an exit status, or does not return (exec)."""
    path = None
    if argv[:1] == ["--socket"] and len(argv) > 1:
        path, argv = argv[1], argv[2:]
    if len(argv) < 2 or not argv[0].isdigit():
        sys.stderr.write(USAGE)
        return 1
    fdnum = int(argv[0])
    if fdnum < 3:
        sys.stderr.write("qrap: FDNUM must be 3 or more\n")
        return 1
    paths = [path] if path else [f"/tmp/passt_{n}.socket" for n in range(1, SOCKET_MAX + 1)]
    for p in paths:
        s = connect(p)
        if s is None:
            continue
        fd = s.detach()
        if fd != fdnum:
            os.dup2(fd, fdnum, inheritable=True)
            os.close(fd)
        else:
            os.set_inheritable(fd, True)
        try:
            os.execvp(argv[1], argv[1:])
        except OSError as e:
            sys.stderr.write(f"qrap: {argv[1]}: {e.strerror}\n")
            return 1
    sys.stderr.write("qrap: no passt instance answered on " + (path or "/tmp/passt_*.socket") + "\n")
    return 1
