# SPDX-License-Identifier: GPL-2.0-or-later
"""log.trim_file (--log-size): what is kept, and where the next line goes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from passt_sep import log as plog
from passt_sep.log import trim_file


def _file(tmp_path: Path, lines: int) -> tuple[int, int, bytes]:
    """(appending fd as every process logs through, the parent's read-write fd, content)."""
    path = tmp_path / "log"
    afd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
    data = b"pasta passt-sep: /bin/pasta (1)\n" + b"".join(b"%06d: line %d\n" % (i, i) for i in range(lines))
    os.write(afd, data)
    return afd, os.open(path, os.O_RDWR), data


def test_under_the_limit_nothing_moves(tmp_path: Path) -> None:
    _afd, fd, data = _file(tmp_path, 10)
    assert not trim_file(fd, len(data))
    assert os.pread(fd, len(data) + 1, 0) == data


@pytest.mark.parametrize("chunk", [plog.TRIM_CHUNK, 1000])  # one read, or many
def test_over_the_limit_keeps_header_and_newest_whole_lines(tmp_path: Path, chunk: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plog, "TRIM_CHUNK", chunk)
    afd, fd, data = _file(tmp_path, 5000)
    limit = 20000
    assert trim_file(fd, limit)
    kept = os.pread(fd, len(data), 0)
    lines = kept.split(b"\n")
    assert lines[0] == data.split(b"\n")[0]
    assert limit // 2 < len(kept) <= int(limit * 0.7)
    assert lines[-2] == b"004999: line 4999" and lines[-1] == b""
    first = int(lines[1].split(b":")[0])  # a whole line, and all after it in order
    assert lines[1:-1] == [b"%06d: line %d" % (i, i) for i in range(first, 5000)]
    os.write(afd, b"next\n")  # appended right after what was kept: no hole
    assert os.pread(fd, len(data), 0) == kept + b"next\n"


def test_a_file_it_cannot_read_is_left_alone(tmp_path: Path) -> None:
    afd, fd, data = _file(tmp_path, 5000)
    assert not trim_file(afd, 1000)  # write-only
    assert os.pread(fd, len(data) + 1, 0) == data
