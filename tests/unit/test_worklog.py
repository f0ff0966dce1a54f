# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's log channel: what the worker sends, what the parent writes.

The worker's side is a ``log.Log`` switched to the channel (``to_channel``);
the parent's is ``setup.worklog.WorkerLog``, which sanitizes every record
before it reaches a terminal or the log file. Also the worker's pcap cap:
``worker.tap.Pcap`` and the RLIMIT_FSIZE / SIGXFSZ set-up of a forked child.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from passt_sep import log as logmod
from passt_sep.log import Log, log
from passt_sep.setup.worklog import TEXT_MAX, WorkerLog, channel, sanitize
from passt_sep.worker.tap import PCAP_HEADER, Pcap


@pytest.mark.parametrize(("raw", "shown"), [
    (b"plain text: 192.0.2.1:80", "plain text: 192.0.2.1:80"),
    (b"\x1b[2J\x1b]0;title\x07gone", "\\x1b[2J\\x1b]0;title\\x07gone"),  # CSI, OSC, BEL
    (b"two\nlines\rback", "two\\x0alines\\x0dback"),
    (b"tab\there\x00nul\x7fdel", "tab\\x09here\\x00nul\\x7fdel"),
    ("c1 \u009b31m csi".encode(), "c1 \\x9b31m csi"),  # the 8-bit CSI
    ("bidi \u202egnp.exe".encode(), "bidi \\u202egnp.exe"),  # Trojan Source style override
    ("sep\u2028line".encode(), "sep\\u2028line"),
    (b"bad \xff\xfe utf-8", "bad \\xff\\xfe utf-8"),
    ("h\u00e9llo \u4e16\u754c".encode(), "h\u00e9llo \u4e16\u754c"),  # printable text stays
])
def test_sanitize_makes_controls_visible(raw: bytes, shown: str) -> None:
    assert sanitize(raw) == shown


def test_sanitize_caps_the_length() -> None:
    out = sanitize(b"\x1b" * 10_000)
    assert out.endswith(" [cut]") and len(out) <= TEXT_MAX + len(" [cut]")
    assert "\x1b" not in out


@pytest.fixture
def parent_log() -> Iterator[tuple[int, int]]:
    """The process-wide log writing to two pipes: (stderr read end, file read end)."""
    saved = (log.name, log.level, log.stderr_fd, log.file_fd, log.stamp)
    er, ew = os.pipe2(os.O_NONBLOCK)
    fr, fw = os.pipe2(os.O_NONBLOCK)
    log.configure("pasta", logmod.INFO, ew, fw, False)
    try:
        yield er, fr
    finally:
        log.configure(*saved)
        for fd in (er, ew, fr, fw):
            os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.read(fd, 1 << 20).decode()
    except BlockingIOError:
        return ""


def test_worker_lines_are_written_as_the_parents_sanitized(parent_log: tuple[int, int]) -> None:
    er, fr = parent_log
    ours, theirs = channel()
    worker = Log()
    worker.level = logmod.DEBUG  # the worker would send debug lines; the parent is at INFO
    worker.to_channel(theirs.fileno())
    worker.info("tap ready \x1b[31m")
    worker.warn("two\nlines")  # split into two records by the worker
    worker.debug("not shown at INFO")
    theirs.send(b"\x09level nine")  # a record no honest worker sends
    wl = WorkerLog(ours)
    assert wl.on_readable(budget=2) is True  # a budget per wake-up; more is waiting
    assert wl.on_readable() is False  # the rest, and then empty
    assert _read(er).splitlines() == ["tap ready \\x1b[31m", "two", "lines", "level nine"]
    file_lines = _read(fr).splitlines()
    assert [ln.split(": ", 1)[1] for ln in file_lines] == [
        "info: tap ready \\x1b[31m", "WARNING: two", "WARNING: lines", "WARNING: level nine"]
    assert wl.lines == 5 and wl.invalid == 1


def test_a_full_channel_drops_and_counts_and_never_blocks(parent_log: tuple[int, int]) -> None:
    er, _fr = parent_log
    ours, theirs = channel()
    worker = Log()
    worker.to_channel(theirs.fileno())
    sent = 0
    while not worker.dropped and sent < 100_000:  # bounded: a 1 MiB buffer holds far fewer
        worker.info(f"line {sent}")
        sent += 1
    assert worker.dropped == 1, "the channel never filled"
    for _ in range(9):
        worker.info("lost too")
    assert worker.dropped == 10
    WorkerLog(ours).drain()
    shown = _read(er).splitlines()
    assert len(shown) == sent - 1 and shown[-1] == f"line {sent - 2}"
    worker.info("after")
    WorkerLog(ours).drain()
    assert _read(er).splitlines() == ["10 log lines dropped: the parent did not keep up", "after"]
    assert worker.dropped == 0


def test_over_long_records_are_cut(parent_log: tuple[int, int]) -> None:
    er, _fr = parent_log
    ours, theirs = channel()
    worker = Log()
    worker.to_channel(theirs.fileno())
    worker.info("x" * 10_000)  # the worker cuts its own
    theirs.send(bytes((logmod.INFO,)) + b"y" * 10_000)  # a worker that does not: recv cuts it
    theirs.send(bytes((logmod.INFO,)) + b"z")  # and the next record is whole
    WorkerLog(ours).drain()
    x, y, z = _read(er).splitlines()
    assert x == "x" * (logmod.LINE_MAX - 1)
    assert y == "y" * (logmod.LINE_MAX - 1)
    assert z == "z"


def test_pcap_stops_at_its_limit_with_whole_records(tmp_path: Path,
                                                   parent_log: tuple[int, int]) -> None:
    er, _fr = parent_log
    path = tmp_path / "x.pcap"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    cap = Pcap(fd, 4096)
    for _ in range(10):
        cap.write(bytes(1000))  # 1016 bytes a record: four fit after the header
    assert cap.fd == -1
    data = path.read_bytes()
    assert data[:24] == PCAP_HEADER and len(data) == 24 + 4 * 1016
    for i in range(4):
        assert struct.unpack_from("=II", data, 24 + i * 1016 + 8) == (1000, 1000)
    assert _read(er).splitlines() == ["pcap: reached --pcap-size (4096 bytes), capture stopped"]
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_rlimit_fsize_fails_the_write_and_does_not_kill(tmp_path: Path) -> None:
    """What the worker sets before isolation: past the cap a write gets EFBIG, no SIGXFSZ."""
    from passt_sep.worker.main import _let_go_of_the_user

    path = tmp_path / "big"
    ours, theirs = channel()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        status = 3
        try:
            ours.close()
            _let_go_of_the_user(theirs, 4096)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            n = os.write(fd, bytes(8192))  # a short write up to the limit
            try:
                os.write(fd, b"x")
            except OSError as e:
                log.info(f"wrote {n}, then errno {e.errno}, fd0 {os.readlink('/proc/self/fd/0')}")
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert path.stat().st_size == 4096
    theirs.close()
    got = ours.recv(4096)
    # alive (without SIG_IGN the second write would have raised SIGXFSZ and killed it)
    assert got == bytes((logmod.INFO,)) + f"wrote 4096, then errno {errno.EFBIG}, fd0 /dev/null".encode()


def test_channel_is_one_way_and_nonblocking() -> None:
    ours, theirs = channel()
    assert not theirs.getblocking()
    assert theirs.type == socket.SOCK_SEQPACKET
    with pytest.raises(OSError):
        ours.send(b"x")


def test_the_end_of_the_channel_is_unwatched_once(parent_log: tuple[int, int]) -> None:
    """A worker that closes its end must not make a level-triggered loop spin."""
    er, _fr = parent_log
    ours, theirs = channel()
    theirs.send(bytes((logmod.INFO,)) + b"last words")
    theirs.close()
    wl = WorkerLog(ours)
    ep = select.epoll()
    try:
        ep.register(wl.fd, select.EPOLLIN)
        assert ep.poll(0)
        seen: list[int] = []
        wl.on_readable(lambda fd: (seen.append(fd), ep.unregister(fd)))
        assert seen == [wl.fd] and ep.poll(0) == []
        wl.on_readable(lambda fd: seen.append(fd))  # no second unwatch
        assert seen == [wl.fd]
    finally:
        ep.close()
    assert _read(er) == "last words\n"
