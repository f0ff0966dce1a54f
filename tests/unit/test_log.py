# SPDX-License-Identifier: GPL-2.0-or-later
"""log.trim_file (--log-size): what is kept, and where the next line goes."""

from __future__ import annotations

import os
from pathlib import Path

from passt_sep.log import trim_file


def _file(tmp_path: Path, lines: int) -> tuple[int, bytes]:
    fd = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    data = b"pasta passt-sep: /bin/pasta (1)\n" + b"".join(b"%06d: line %d\n" % (i, i) for i in range(lines))
    os.write(fd, data)
    return fd, data


def test_under_the_limit_nothing_moves(tmp_path: Path) -> None:
    fd, data = _file(tmp_path, 10)
    assert not trim_file(fd, len(data))
    assert os.pread(fd, len(data) + 1, 0) == data


def test_over_the_limit_keeps_header_and_newest_whole_lines(tmp_path: Path) -> None:
    fd, data = _file(tmp_path, 5000)
    limit = 20000
    assert trim_file(fd, limit)
    kept = os.pread(fd, len(data), 0)
    lines = kept.split(b"\n")
    assert lines[0] == data.split(b"\n")[0]
    assert limit // 2 < len(kept) <= int(limit * 0.7)
    assert lines[-2] == b"004999: line 4999" and lines[-1] == b""
    first = int(lines[1].split(b":")[0])  # a whole line, and all after it in order
    assert lines[1:-1] == [b"%06d: line %d" % (i, i) for i in range(first, 5000)]
    os.write(fd, b"next\n")  # the offset moved to the new end
    assert os.pread(fd, len(data), 0) == kept + b"next\n"


def test_a_file_it_cannot_read_is_left_alone(tmp_path: Path) -> None:
    fd, data = _file(tmp_path, 5000)
    wfd = os.open(tmp_path / "log", os.O_WRONLY)
    assert not trim_file(wfd, 1000)
    assert os.pread(fd, len(data) + 1, 0) == data
