# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker holds nothing of the user's (issue 17, item 6), read back from /proc.

Real pasta in a HostNS, started on a pseudo-terminal as a user would start
it in the foreground: the worker's fds 0, 1 and 2 are /dev/null, none of
its fds is a terminal or a regular host file other than the pcap, its
RLIMIT_FSIZE is the pcap cap and SIGXFSZ is ignored. Its log lines reach
stderr and the --log-file through the parent. The pcap stops at
--pcap-size with whole records, and the run goes on.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.netenv import (
    GW_ADDR4,
    PASTA,
    HostNS,
    proc_children,
    proc_status,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration


def _fd_links(pid: int) -> dict[int, str]:
    d = f"/proc/{pid}/fd"
    return {int(n): os.readlink(f"{d}/{n}") for n in os.listdir(d)}


def _is_tty(path: str) -> bool:
    """A terminal: a pty slave or master, a virtual console, /dev/tty, /dev/console."""
    st = os.stat(path)
    return stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev) in TTY_MAJORS)


TTY_MAJORS = {4, 5, *range(128, 144)}  # tty/vc, tty/console/ptmx, legacy and Unix98 ptys


def _limit(pid: int, name: str) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                soft, hard = line[len(name):].split()[:2]
                return soft, hard
    raise AssertionError(f"no {name} in /proc/{pid}/limits")


def _on_a_terminal(host: HostNS, *args: str) -> tuple[subprocess.Popen, int, int]:
    """pasta around a long sleep, stdin/stdout/stderr on a new pty; (p, worker, pty master)."""
    master, slave = os.openpty()
    try:
        p = host.popen([PASTA, "--config-net", *args, "--", "sleep", "60"],
                       stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    assert wait_for(lambda: worker_of(p.pid), 15), "worker did not start"
    w = worker_of(p.pid)

    def command_runs() -> bool:  # the command is let go only once set-up is done
        kids = [k for k in proc_children(p.pid) if k != w]
        return bool(kids) and open(f"/proc/{kids[0]}/comm").read().strip() == "sleep"

    assert wait_for(command_runs, 15), "command did not start"
    return p, w, master


def test_worker_holds_no_terminal_and_no_host_file_but_the_pcap(host: HostNS, tmp_path: Path) -> None:
    cap, logf = tmp_path / "x.pcap", tmp_path / "pasta.log"
    p, w, master = _on_a_terminal(host, "-d", "-l", str(logf), "-p", str(cap),
                                  "--pcap-size", "65536")
    try:
        # the test is meaningful: the run itself was given the terminal
        assert _is_tty(f"/proc/{p.pid}/fd/0"), _fd_links(p.pid)
        links = _fd_links(w)
        assert {0, 1, 2} <= links.keys() and len(links) > 4, links
        assert [links[n] for n in (0, 1, 2)] == ["/dev/null"] * 3, links
        for n, target in links.items():
            assert not _is_tty(f"/proc/{w}/fd/{n}"), (n, target)
        regular = {n: t for n, t in links.items()
                   if stat.S_ISREG(os.stat(f"/proc/{w}/fd/{n}").st_mode)}
        assert list(regular.values()) == [str(cap)], links  # not the log file, nothing else
        assert _limit(w, "Max file size") == ("65536", "65536")
        sigign = int(proc_status(w)["SigIgn"], 16)
        assert sigign & (1 << (25 - 1)), "SIGXFSZ is not ignored"
    finally:
        stop_process(p)
        os.close(master)


def test_without_pcap_the_worker_may_write_no_file(host: HostNS) -> None:
    p, w, master = _on_a_terminal(host, "-q")
    try:
        links = _fd_links(w)
        assert [links[n] for n in (0, 1, 2)] == ["/dev/null"] * 3, links
        assert not [n for n in links if stat.S_ISREG(os.stat(f"/proc/{w}/fd/{n}").st_mode)], links
        assert _limit(w, "Max file size") == ("0", "0")
    finally:
        stop_process(p)
        os.close(master)


# The worker's own debug lines at exit, after the parent closed the broker
# socket (so they arrive through the parent's last drain). The parent writes
# neither itself; the worker holds no fd to stderr or the log file.
WORKER_LINES = ("parent went away, worker exiting", "frames from guest:")


@pytest.mark.parametrize("where", ["stderr", "log-file"])
def test_worker_debug_lines_reach_stderr_or_the_log_file_through_the_parent(
        host: HostNS, tmp_path: Path, where: str) -> None:
    logf = tmp_path / "pasta.log"
    extra = ["-l", str(logf)] if where == "log-file" else []
    r = host.run([PASTA, "--config-net", "-d", *extra, "--", "ping", "-c1", "-W3", GW_ADDR4],
                 timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    if where == "stderr":
        lines = r.stderr.splitlines()
        assert all(ln[:1].isdigit() for ln in lines), lines  # -d: seconds since start on each
    else:
        assert r.stderr == ""
        lines = logf.read_text().splitlines()[1:]  # after the header
        assert all(ln.split(": ", 1)[0].replace(".", "").isdigit() for ln in lines), lines
    for marker in WORKER_LINES:
        assert [ln for ln in lines if marker in ln], (marker, lines)
    assert not [ln for ln in lines if "\x1b" in ln or "\r" in ln]


def test_pcap_stops_at_the_cap_and_the_run_goes_on(host: HostNS, tmp_path: Path) -> None:
    cap, logf = tmp_path / "x.pcap", tmp_path / "pasta.log"
    limit = 8192
    # 10 echoes of 1400 bytes each way: about 29 kB of records, more than three times the cap
    r = host.run([PASTA, "--config-net", "-l", str(logf), "-p", str(cap), "--pcap-size", str(limit),
                  "--", "ping", "-c10", "-i0.2", "-s1400", "-W3", GW_ADDR4], timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr  # every echo answered after the capture stopped
    assert " 0% packet loss" in r.stdout, r.stdout
    size = cap.stat().st_size
    assert limit - 1500 < size <= limit, size
    t = subprocess.run(["tcpdump", "-nr", str(cap)], capture_output=True, text=True, timeout=30)
    assert t.returncode == 0 and "truncated" not in t.stderr, t.stderr  # whole records only
    assert "ICMP echo request" in t.stdout
    text = logf.read_text()
    assert text.count(f"pcap: reached --pcap-size ({limit} bytes), capture stopped") == 1, text


def test_pcap_size_is_checked(host: HostNS) -> None:
    r = host.run([PASTA, "--pcap-size", "12", "--", "true"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "pasta: Invalid value for --pcap-size: '12' (must be 4096 to 1099511627776)"], r.stderr
