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
from passt_sep.cli import PASST, PASTA, parse_args


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


# -- pasta: the tap ------------------------------------------------------------

def test_pasta_option_names_match_the_option_table():
    pasta = [o for o in cli.OPTIONS if PASTA in o.modes]
    assert early.PASTA_LONG_ARG == {o.long for o in pasta if o.arg}
    assert early.PASTA_LONG_FLAG == {o.long for o in pasta if not o.arg}
    assert early.PASTA_SHORT_ARG == {o.short for o in pasta if o.short and o.arg}
    assert early.PASTA_SHORT_FLAG == {o.short for o in pasta if o.short and not o.arg}
    assert early.SHORT_NAMES == {o.short: o.long for o in cli.OPTIONS if o.short}
    assert early.ALL_LONG == {o.long for o in cli.OPTIONS}
    assert early.NAMING <= early.ALL_LONG


def _full_target(args: list[str]) -> tuple[str, str | None, bool, str | None]:
    """What the full parse and Parent._run make of the same args."""
    o = parse_args(PASTA, args)
    assert o.netns is not None or o.target_pid is not None
    path = o.netns or f"/proc/{o.target_pid}/ns/net"
    userns = o.userns or (f"/proc/{o.target_pid}/ns/user" if o.target_pid else None)
    return path, userns, o.netns_only, o.ns_ifname


@pytest.mark.parametrize("args", [
    ["--netns", "/x/ns"], ["--netns", "podns"], ["--netns=/x/ns"], ["-f", "-q", "--config-net", "--netns", "/x"],
    ["--userns", "/u", "--netns", "/x"], ["--netns-only", "1234"], ["1234"], ["--", "1234"],
    ["-I", "tap0", "--netns", "/x"], ["-Itap0", "--netns", "/x"], ["--ns-if", "tap0", "1234"],
    ["-t", "80", "-u", "none", "-T", "auto", "--runas", "0:0", "--netns", "/x"],
    ["--netns", "/a", "--netns", "/b"], ["--userns", "/u", "--userns", "/v", "7"],
    ["-4", "-I", "t0", "--netns", "/x"], ["-a", "192.0.2.9", "-I", "t0", "1"],
    ["-dfm", "1500", "--no-map-gw", "--ns-mac-addr", "02:00:00:00:00:01", "--netns", "/x"],
])
def test_tap_target_agrees_with_the_full_parse(args):
    target = early.tap_target(args)
    assert target is not None
    assert target == _full_target(args)


@pytest.mark.parametrize("args", [
    [], ["sh"], ["--", "sh", "-c", "true"], ["-f", "ip", "link"], ["12a"], ["1", "2"], ["١٢"],
    ["--netns", "/x", "sh"], ["--netns", "/x", "1"], ["-h"], ["--help"], ["--version"], ["--bogus"],
    ["-s", "/x", "--netns", "/x"], ["-1", "1"], ["--no", "1"], ["--netns"], ["--netns="], ["-Z", "1"],
    ["--netns-only", "--userns", "/u", "1"], ["-I", "a", "-I", "b", "--netns", "/x"],
    ["-i", "eth0", "--netns", "/x"], ["--outbound-if4", "eth0", "1"], ["-4", "--netns", "/x"],
    ["-6", "1"], ["-a", "192.0.2.2", "1234"], ["-g", "192.0.2.1", "1234"],
    ["-I", "a%d", "--netns", "/x"], ["-I", "sixteen-chars-xx", "--netns", "/x"], ["-I", "a/b", "1"],
    ["-I", " a", "1"], ["--config-net=1", "1"],
])
def test_tap_target_gives_up_where_it_cannot_be_sure(args):
    assert early.tap_target(args) is None


def test_pasta_first_stage_without_a_target_is_nothing():
    """The spawned-command form: no first-stage tap (the command waits for it anyway)."""
    assert early.listen(["pasta", "--config-net", "--", "sh", "-c", "true"]) is None
    assert early.listen(["passt-sep", "pasta", "-f"]) is None


def test_early_tap_imports_stay_small():
    """The pasta first stage loads _ctypes (not ctypes: ~5 ms), fcntl, nothing heavy;
    its namespace thread fails quietly on an fd that is no namespace."""
    code = ("import os, sys; sys.path.insert(0, {!r}); import passt_sep.early as e; before = set(sys.modules)\n"
            "assert e.tap_in_netns(os.open('/dev/null', os.O_RDONLY), 'x') is None\n"
            "e.template_ifname(); e.cap_sys_admin()\n"
            "print(' '.join(sorted(set(sys.modules) - before)))").format(os.path.dirname(
                os.path.dirname(early.__file__)))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True)
    loaded = set(out.stdout.split())
    assert "_ctypes" in loaded and "fcntl" in loaded, loaded
    heavy = {"ctypes", "socket", "enum", "re", "struct", "threading", "site", "pathlib"}
    assert not heavy & loaded, loaded
    assert out.stderr == ""  # nothing printed by the thread


def test_a_fifo_as_netns_does_not_hang_the_first_stage():
    """--netns naming a FIFO: opened O_NONBLOCK, setns refuses it, no tap, no wait."""
    with tempfile.TemporaryDirectory() as d:
        fifo = f"{d}/ns"
        os.mkfifo(fifo)
        repo = os.path.dirname(os.path.dirname(early.__file__))
        code = (f"import sys, time; sys.path.insert(0, {repo!r}); from passt_sep import early; "
                f"t = time.monotonic(); print(early.early_tap(['-I', 'fifo0', '--netns', {fifo!r}]), "
                "time.monotonic() - t)")
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                             check=True, timeout=20)
        made, took = out.stdout.split()
        assert made == "None" and float(took) < 2.5, out
        assert out.stderr == ""


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
