# SPDX-License-Identifier: GPL-2.0-or-later
"""Logging as passt does it, to file descriptors only.

Levels error, warning, info, debug and trace (``--trace``). The parent's
messages go to stderr and/or the log file. The sandboxed worker holds
neither: its ``Log`` has a channel instead (``chan_fd``, one end of a
non-blocking SOCK_SEQPACKET socketpair made before the fork), one record
per line, ``[level byte] + UTF-8 text`` of at most ``LINE_MAX`` bytes; a
full channel drops the line and counts it, the worker never waits. The
parent reads the channel (``setup.worklog``), sanitizes each line and
writes it as its own. With ``--debug`` each line carries the seconds since
start; the log file always does, with a ``PREFIX:`` of the level, and
starts with a header line naming program, version and PID.

``--log-size``: the parent trims the file (``trim_file``, a few times a
second) when it has grown past the limit, keeping the header line and the
newest lines, about 70 % of the limit, as passt cuts about 30 % at the
start. Only the parent writes the file, through an O_APPEND fd, so between
two checks it can overshoot by what was written since.
"""

from __future__ import annotations

import os
import time

ERROR, WARNING, INFO, DEBUG, TRACE = 0, 1, 2, 3, 4
_PREFIX = {ERROR: "ERROR: ", WARNING: "WARNING: ", INFO: "info: ", DEBUG: "", TRACE: ""}
LINE_MAX = 4096  # bytes of one line on the worker's channel (level byte included)


class Log:
    """A process-wide logger writing whole lines to fds."""

    def __init__(self) -> None:
        self.name = "passt-sep"
        self.level = INFO
        self.stderr_fd: int | None = 2
        self.file_fd: int | None = None
        self.stamp = False
        self.t0 = time.monotonic()
        self.chan_fd: int | None = None  # worker: the channel to the parent
        self.dropped = 0  # worker: lines lost to a full channel, not yet reported
        self.file_errors = 0  # lines the log file did not take (full disk, RLIMIT_FSIZE)

    def configure(self, name: str, level: int, stderr_fd: int | None, file_fd: int | None,
                  stamp: bool) -> None:
        """Set where and what to log."""
        self.name, self.level = name, level
        self.stderr_fd, self.file_fd, self.stamp = stderr_fd, file_fd, stamp

    def to_channel(self, fd: int) -> None:
        """Worker: from now on send every line to the parent over fd, and nowhere else."""
        self.stderr_fd = self.file_fd = None
        self.chan_fd = fd

    def _send(self, level: int, msg: str) -> bool:
        """One record per line on the channel; False if it is full (the line is lost)."""
        assert self.chan_fd is not None
        ok = True
        for part in msg.split("\n"):
            try:
                os.write(self.chan_fd, bytes((level,)) + part.encode("utf-8", "replace")[:LINE_MAX - 1])
            except BlockingIOError:
                self.dropped += 1
                ok = False
            except OSError:
                pass
        return ok

    def _emit(self, level: int, msg: str) -> None:
        if level > self.level:
            return
        if self.chan_fd is not None:
            if self.dropped:  # say so once the parent reads again
                n, self.dropped = self.dropped, 0
                if not self._send(WARNING, f"{n} log lines dropped: the parent did not keep up"):
                    self.dropped += n - 1  # this line is one of the drops again
            self._send(level, msg)
            return
        t = time.monotonic() - self.t0
        if self.stderr_fd is not None:
            line = f"{t:.4f}: {msg}\n" if self.stamp else f"{msg}\n"
            _write(self.stderr_fd, line)
        if self.file_fd is not None:
            err = _write(self.file_fd, f"{t:.4f}: {_PREFIX[level]}{msg}\n")
            if err is not None:
                self.file_errors += 1
                if self.file_errors == 1 and self.stderr_fd is None:
                    # once, where someone may see it: the file is full (ENOSPC,
                    # EFBIG past RLIMIT_FSIZE) or broken; the run goes on
                    _write(2, f"{self.name}: WARNING: log file: {err}, lines are lost\n")

    def emit(self, level: int, msg: str) -> None:
        """Log at a level given as a number (the parent, for the worker's lines)."""
        self._emit(level, msg)

    def err(self, msg: str) -> None:
        """Log an error."""
        self._emit(ERROR, msg)

    def warn(self, msg: str) -> None:
        """Log a warning."""
        self._emit(WARNING, msg)

    def info(self, msg: str) -> None:
        """Log an informational message."""
        self._emit(INFO, msg)

    def debug(self, msg: str) -> None:
        """Log a debugging message."""
        self._emit(DEBUG, msg)

    def trace(self, msg: str) -> None:
        """Log a per-packet message (only with --trace)."""
        self._emit(TRACE, msg)

    def enabled(self, level: int) -> bool:
        """Whether messages of this level are written (skip building them otherwise)."""
        return level <= self.level


def _write(fd: int, text: str) -> str | None:
    """Write all of text; None, or why not (the line is lost, nothing is raised)."""
    data = text.encode("utf-8", "replace")
    try:
        while data:
            n = os.write(fd, data)
            if n == 0:
                return "short write"
            data = data[n:]
    except OSError as e:
        return e.strerror or str(e)
    return None


TRIM_CHUNK = 1 << 20  # bytes moved per read/write when trimming


def trim_file(fd: int, limit: int, keep: float = 0.7) -> bool:
    """Cut the oldest lines of the log file behind fd if it is over limit.

    Parent only, on its own read-write fd (the one every process logs
    through is O_APPEND, so writes always land at the end, however the
    file is cut meanwhile). Keeps the first line (the header naming
    program and PID) and the newest whole lines, about ``keep * limit``
    bytes in all: moves them to the start, chunk by chunk, and truncates.
    A line appended while the cut is under way can be lost, no more.
    Returns whether it cut; an error leaves the file as it is or, if it
    comes after some lines moved, cut where the error came.
    """
    try:
        size = os.fstat(fd).st_size
        if size <= limit:
            return False
        head = os.pread(fd, 4096, 0)
        nl = head.find(b"\n")
        header = head[: nl + 1] if 0 <= nl < 1024 else b""
        src = max(len(header), size - int(limit * keep) + len(header))
        first = os.pread(fd, 4096, src)  # start at a whole line
        nl = first.find(b"\n")
        src = src + nl + 1 if nl >= 0 else size
        dst = len(header)  # the header stays where it is
        while src < size:
            chunk = os.pread(fd, min(TRIM_CHUNK, size - src), src)
            if not chunk:
                break
            written = os.pwrite(fd, chunk, dst)
            if written <= 0:
                break
            src += written
            dst += written
        os.ftruncate(fd, dst)
        return True
    except (OSError, MemoryError):
        return False


log = Log()
