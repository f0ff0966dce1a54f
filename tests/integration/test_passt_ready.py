# SPDX-License-Identifier: GPL-2.0-or-later
"""passt ready before the client looks, whoever started it (issue 20, item 3).

- The socket listens before the rest of the program is loaded
  (passt_sep.early): a client that connects while set-up still runs waits
  in the backlog and is served once set-up is done.
- stderr closed by the caller (a pipe whose read end is gone: EPIPE on
  every write) never kills the process, and the log file keeps every line.
- Debian's libvirt 9.0 shape: the launcher daemonizes passt itself, writes
  the PID file with the PID it exec'd (passt's own launcher, which exits),
  closes passt's stderr pipe at once and lets qemu connect without waiting.
- libvirt 9.4 and later: ``--pid``: the PID file names the process that
  stays, and it is written before the launcher exits
  (test_passt_mode.test_libvirt_command_line checks the rest).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.test_passt_mode import alive, check_arp_reply
from tests.netenv import PASST, PYTHON, proc_children, proc_status, stop_process, wait_for

pytestmark = pytest.mark.integration




def connect_soon(path: Path, timeout: float = 10) -> socket.socket:
    c = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + timeout
    while True:
        try:
            c.connect(str(path))
            return c
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def test_launcher_is_python_without_site():
    """The installed passt is setup.sh's launcher: python -IS, the first stage first."""
    head = Path(PASST).read_text().splitlines()
    assert head[0].endswith(" -IS"), head[0]
    assert "from passt_sep.early import boot" in head


def test_the_socket_listens_before_set_up_is_done(host, tmp):
    """The first connect is accepted long before the worker is ready; it is
    served once set-up is done (ARP reply), and the log says so in order."""
    sock, logf = tmp / "s", tmp / "log"
    t0 = time.monotonic()
    p = host.popen([PASST, "-f", "-1", "-d", "-s", str(sock), "-l", str(logf)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = connect_soon(sock)
        took = time.monotonic() - t0
        log_then = logf.read_text() if logf.exists() else ""
        check_arp_reply(c)  # served after set-up
        # the socket listened before the parent even read its options: the log
        # file (opened by the parent) says nothing of the socket yet
        assert "UNIX domain socket bound at" not in log_then, (took, log_then)
        log = logf.read_text()
        assert log.index("UNIX domain socket bound at") < log.index("You can now start qemu")
        c.close()
        assert p.wait(10) == 0
    finally:
        stop_process(p)


@pytest.mark.parametrize("with_log", [True, False], ids=["log-file", "stderr-only"])
def test_stderr_closed_by_the_caller_is_no_reason_to_die(host, tmp, with_log):
    sock, logf = tmp / "s", tmp / "log"
    r, w = os.pipe()
    os.close(r)  # every write to stderr now fails with EPIPE
    argv = [PASST, "-f", "-1", "-d", "-s", str(sock)] + (["-l", str(logf)] if with_log else [])
    try:
        p = host.popen(argv, stdout=subprocess.DEVNULL, stderr=w)
    finally:
        os.close(w)
    try:
        c = connect_soon(sock)
        check_arp_reply(c)
        assert p.poll() is None
        c.close()
        assert p.wait(10) == 0, "--one-off: exit 0 when the client goes"
        if with_log:
            log = logf.read_text()
            for line in ("UNIX domain socket bound at", "You can now start qemu", "accepted connection",
                         "Client closed connection, exiting"):
                assert line in log, (line, log)
    finally:
        stop_process(p)


LIBVIRT90 = textwrap.dedent("""
    import os, sys, time
    sock, pidf, logf, passt = sys.argv[1:5]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # virCommandDaemonize: an intermediate process, setsid, fork, exit
        os.setsid()
        if os.fork():
            os._exit(0)
        os.close(r)
        os.dup2(w, 2)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0); os.dup2(null, 1)
        with open(pidf, "w") as f:  # libvirt writes the PID it exec'd
            f.write(f"{os.getpid()}\\n")
        os.execv(passt, [passt, "--one-off", "--socket", sock, "--mac-addr", "52:54:00:12:34:56",
                         "--log-file", logf])
    os.close(w)
    os.close(r)  # passt's stderr pipe: closed at once
    os.waitpid(pid, 0)
    print("started", flush=True)
""")


def test_libvirt_9_0_daemonizes_passt_itself(host, tmp):
    sock, pidf, logf = tmp / "s", tmp / "pid", tmp / "log"
    script = tmp / "libvirt90.py"
    script.write_text(LIBVIRT90)
    r = host.run([PYTHON, str(script), str(sock), str(pidf), str(logf), PASST], timeout=20)
    assert r.stdout.strip() == "started"
    # qemu is started right away: the socket is there, or nearly
    c = connect_soon(sock, timeout=10)
    launcher = int(pidf.read_text())
    daemon = None
    try:
        check_arp_reply(c)  # served, though nobody reads its stderr
        # passt's own launcher (the PID libvirt wrote) exits once set-up is done;
        # the daemon it forked stays and serves
        assert wait_for(lambda: not alive(launcher), 10)
        ours = [int(d) for d in os.listdir("/proc") if d.isdigit() and _is_passt_for(int(d), sock)]
        daemons = [q for q in ours if int(proc_status(q)["PPid"]) not in ours]  # not the worker
        assert len(daemons) == 1 and len(ours) == 2, ours
        daemon = daemons[0]
        assert proc_status(daemon)["Uid"].split()[0] == "65534"  # root: nobody, as passt
        c.close()
        assert wait_for(lambda: not alive(daemon), 10), "--one-off: exit when qemu goes"
        log = logf.read_text()
        assert "Client closed connection, exiting" in log, log
    finally:
        c.close()
        if daemon is not None and alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def _is_passt_for(pid: int, sock: Path) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return str(sock).encode() in argv and b"--one-off" in argv and alive(pid)
    except OSError:
        return False


def test_pid_file_names_the_process_that_stays_before_the_launcher_exits(host, tmp):
    """libvirt 9.4+: the launcher exits 0 only once the socket listens and the
    PID file holds the daemon's PID (checked the moment the launcher is gone)."""
    sock, pidf = tmp / "s", tmp / "pid"
    r = host.run([PASST, "--one-off", "-q", "--socket", str(sock), "--pid", str(pidf)], timeout=20)
    assert r.returncode == 0 and r.stderr == ""
    text = pidf.read_text()
    assert text.endswith("\n") and text.strip().isdigit()
    pid = int(text)
    try:
        assert alive(pid)
        assert len(proc_children(pid)) == 1  # the parent (its child: the worker)
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(sock))  # no retry: it listens
        check_arp_reply(c)
        c.close()
        assert wait_for(lambda: not alive(pid), 10)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_bad_option_leaves_no_socket_behind(host, tmp):
    """The first stage listened already; a run that ends at the full parse removes it."""
    sock = tmp / "s"
    r = host.run([PASST, "-f", "-s", str(sock), "--mtu", "nonsense"], check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not sock.exists()
