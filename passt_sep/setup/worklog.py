# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's end of the worker's log channel.

Parent only. The worker holds no terminal and no log file: it sends each
line over a SOCK_SEQPACKET socketpair made before the fork (``log.Log``,
``to_channel``). This module owns the other end: it reads records without
blocking, a bounded number per wake-up so a flooding worker cannot starve
supervision, treats each as untrusted bytes (``sanitize``: control
characters, escape sequences, bidirectional overrides and invalid UTF-8
become visible ``\\xNN``/``\\uNNNN`` text, the length is capped), and
writes it through the parent's ``log`` exactly as the parent's own lines
are written (stderr and/or ``--log-file``, levels and prefixes as today).
"""

from __future__ import annotations

import socket
import unicodedata
from collections.abc import Callable

from .. import log as logmod
from ..log import LINE_MAX, log

READ_BUDGET = 256  # records per on_readable() call; the loop comes back for more
DRAIN_MAX = 8192  # records read by drain() (at exit, after set-up failures)
TEXT_MAX = LINE_MAX  # characters of a sanitized line (escapes widen it); longer ones are cut


def sanitize(raw: bytes) -> str:
    """The worker's bytes as one printable line: nothing a terminal would act on.

    Invalid UTF-8 becomes ``\\xNN``; every character in a Unicode "C"
    category (controls, format characters such as U+202E, surrogates,
    private use, unassigned) and the line/paragraph separators become
    ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN``. Longer than TEXT_MAX characters,
    the line is cut and ends with `` [cut]``.
    """
    text = raw.decode("utf-8", "backslashreplace")
    out: list[str] = []
    n = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] != "C" and cat not in ("Zl", "Zp"):
            piece = ch
        else:
            o = ord(ch)
            piece = f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
        n += len(piece)
        if n > TEXT_MAX:
            out.append(" [cut]")
            break
        out.append(piece)
    return "".join(out)


class WorkerLog:
    """Reads the worker's log records and writes them as the parent's lines."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.lines = 0  # records read
        self.invalid = 0  # records of an unknown level (written as warnings)
        self.closed = False  # the end was seen and the fd unwatched

    def on_readable(self, unwatch: Callable[[int], object] | None = None,
                    budget: int = READ_BUDGET) -> bool:
        """Write up to ``budget`` waiting lines; True if the channel may hold more.

        At the end of the channel (the worker closed its end, or died, and
        everything is read) ``unwatch(fd)`` is called, so a level-triggered
        loop does not wake up for it again and again.
        """
        for _ in range(budget):
            try:
                rec = self.sock.recv(LINE_MAX)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                rec = b""
            if not rec:
                if unwatch is not None and not self.closed:
                    self.closed = True
                    unwatch(self.fd)
                return False
            self.lines += 1
            level = rec[0]
            if not logmod.ERROR <= level <= logmod.TRACE:
                self.invalid += 1
                level = logmod.WARNING
            if log.enabled(level):
                log.emit(level, sanitize(rec[1:]))
        return True

    def drain(self) -> None:
        """Everything still waiting, up to DRAIN_MAX lines (the worker's last words)."""
        left = DRAIN_MAX
        while left > 0 and self.on_readable(budget=min(left, READ_BUDGET)):
            left -= READ_BUDGET

    def close(self) -> None:
        """Close the parent's end."""
        try:
            self.sock.close()
        except OSError:
            pass


def channel() -> tuple[socket.socket, socket.socket]:
    """(parent's end, worker's end), made before the fork. The worker's end is
    non-blocking and its send buffer as large as the system allows, so lines
    written during set-up wait there until the parent reads them."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    try:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    except OSError:
        pass
    ours.shutdown(socket.SHUT_WR)  # nothing goes to the worker this way
    return ours, theirs


__all__ = ["WorkerLog", "channel", "sanitize"]
