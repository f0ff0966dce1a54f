# SPDX-License-Identifier: GPL-2.0-or-later
"""The first stage (passt_sep.early): its option walk agrees with cli.OPTIONS,
it finds -s/--socket where getopt_long would, gives up where it cannot be
sure, and its socket is passt_socket's (in use, stale, not a socket)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import pytest

from passt_sep import cli, early
from passt_sep.cli import PASST, parse_args


def test_option_names_match_the_option_table():
    passt = [o for o in cli.OPTIONS if PASST in o.modes]
    assert early.LONG_ARG == {o.long for o in passt if o.arg}
    assert early.LONG_FLAG == {o.long for o in passt if not o.arg}
    assert early.SHORT_ARG == {o.short for o in passt if o.short and o.arg}
    assert early.SHORT_FLAG == {o.short for o in passt if o.short and not o.arg}


@pytest.mark.parametrize("args", [
    [], ["-f"], ["-s", "/x/s"], ["--socket", "/x/s"], ["--socket=/x/s"], ["-s/x/s"],
    ["-1fs", "/x/s"], ["-1fs/x/s"], ["--sock", "/x/s"], ["-l", "-s", "-s", "/x/s"],
    ["--log-file", "-s", "--socket", "/x/s"], ["-l", "/tmp/l", "-P", "/tmp/p", "-s", "/x/s", "-1"],
    ["--one-off", "--pid=/p", "--mtu", "65520", "-t", "%eth0/80", "--socket", "/x/s"],
])
def test_finds_the_socket_path_as_the_full_parse_does(args):
    sure, path = early.socket_option(args)
    assert sure
    assert path == parse_args(PASST, args).socket_path


@pytest.mark.parametrize("args", [
    ["-F", "3"], ["--fd", "3"], ["-h"], ["--help"], ["--version"], ["--vers"], ["-s", "/a", "-s", "/b"],
    ["--bogus"], ["-Z"], ["--no"], ["-s"], ["--one-off=1"], ["--socket="],
])
def test_gives_up_where_it_cannot_be_sure(args):
    assert early.socket_option(args) == (False, None)


def test_mode_of():
    assert early.mode_of(["/usr/bin/passt", "-f"]) == ("passt", ["-f"])
    assert early.mode_of(["pasta", "-f"]) == ("pasta", ["-f"])
    assert early.mode_of(["passt-sep", "passt", "-1"]) == ("passt", ["-1"])
    assert early.mode_of(["passt-sep"]) is None
    assert early.listen(["pasta", "-s", "/tmp/x"]) is None  # pasta: no socket


def test_listens_takes_and_discards():
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/s"
        e = early.listen(["passt", "-f", "-s", path])
        assert e is not None and e.explicit
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)  # listening: the connection waits in the backlog
        c.close()
        assert e.take(f"{d}/other") is None  # the full parse wants another: ours is gone
        assert not os.path.exists(path)
        e = early.listen(["passt", "-s", path])
        assert e is not None
        fd = e.take(path)
        assert fd is not None
        s = socket.socket(fileno=fd)
        assert s.getsockname() == path and s.type == socket.SOCK_STREAM
        assert early.listen(["passt", "-s", path]) is None  # in use: the full run says so
        s.close()
        e = early.listen(["passt", "-s", path])  # stale socket file: replaced
        assert e is not None
        e.discard()
        open(path, "w").close()
        assert early.listen(["passt", "-s", path]) is None  # not a socket: left alone
        assert os.path.isfile(path)


def test_first_stage_imports_only_builtins():
    """What early imports must not pull the program in: no socket, enum, re, dataclasses."""
    code = ("import sys; sys.path.insert(0, {!r}); before = set(sys.modules); import passt_sep.early; "
            "print(' '.join(sorted(set(sys.modules) - before)))").format(os.path.dirname(
                os.path.dirname(early.__file__)))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert "passt_sep.early" in out
    heavy = {"socket", "enum", "re", "dataclasses", "passt_sep.cli", "ipaddress", "site", "pathlib"}
    assert not heavy & set(out), out


def test_launcher_runs_without_site(tmp_path):
    """The launchers passt_sep.launcher writes: python -IS, site-packages and the
    prefix written in (site never runs), boot(True); they run, and answer --version
    and a bad option as the program does. A launcher of the old kind (boot()
    without the flag) still runs site itself."""
    from passt_sep import launcher

    paths = launcher.write(str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["passt", "pasta", "passt-sep"]
    text = (tmp_path / "pasta").read_text().splitlines()
    assert text[0].endswith(" -IS") and text[-1] == "boot(True)"
    assert any(line.startswith("sys.path += [") and "site-packages" in line for line in text)
    assert f"sys.prefix = sys.exec_prefix = {sys.prefix!r}" in text
    r = subprocess.run([str(tmp_path / "pasta"), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("pasta "), r
    r = subprocess.run([str(tmp_path / "pasta"), "--no-such-option"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--no-such-option" in r.stderr, r
    # what the launcher leaves out: run its lines up to boot, then look
    probe = "\n".join(text[1:-2]) + "\nprint('site' in sys.modules, sys.prefix)\n"
    r = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", sys.prefix]
    old = tmp_path / "old-pasta"
    old.write_text(launcher.script(sys.executable, text[3].split("'")[1]))
    old.chmod(0o755)
    assert "boot()" in old.read_text()
    r = subprocess.run([str(old), "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("pasta "), r
