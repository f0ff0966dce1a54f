# SPDX-License-Identifier: GPL-2.0-or-later
"""Inputs the fuzzers (tests/fuzz/) found crashing, each replayed where it failed.

Each test names the target and carries the crashing input; the same input
is in tests/fuzz/corpus/<target>/regress-* so every fuzz run replays it too.
"""

from __future__ import annotations

import pytest

from passt_sep.cli import parse_args
from passt_sep.errors import UsageError
from passt_sep.main import error_line, run


def _argv(data: bytes) -> list[str]:
    """The cli target's argv: data[1:] split at NUL, as a shell passes bytes."""
    return [a.decode("utf-8", "surrogateescape") for a in data[1:].split(b"\0")]


def test_cli_control_character_in_an_argument_stays_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    """cli target, input 36190a: `passt $'\\x19\\n'` printed the argument raw, so
    the error was two lines (and a terminal got the control character)."""
    argv = _argv(bytes.fromhex("36190a"))
    assert argv == ["\x19\n"]
    assert run("passt", argv) == 1
    err = capfd.readouterr().err
    assert err == "passt: Extra non-option argument: '\\x19\\n'\n"


def test_cli_socket_path_that_is_not_utf8() -> None:
    """cli target, input 002d73002f746d702fd37873012e936f6e00: a --socket path
    with bytes that are not UTF-8 (a valid file name) raised
    UnicodeEncodeError in parse_args; its length is now counted in bytes
    as the file system sees them."""
    argv = _argv(bytes.fromhex("002d73002f746d702fd37873012e936f6e00"))
    assert argv[:2] == ["-s", "/tmp/\udcd3xs\x01.\udc93on"]
    o = parse_args("passt", argv[:2])
    assert o.socket_path == argv[1]
    long = "/tmp/" + "\udcff" * 103  # 108 bytes: one too many for sun_path
    with pytest.raises(UsageError) as e:
        parse_args("passt", ["-s", long])
    line = error_line("passt", e.value)
    assert line.count("\n") == 1 and "\\udcff" in line
    line.encode()  # printable: no surrogate reaches stderr
