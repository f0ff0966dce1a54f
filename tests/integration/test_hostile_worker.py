# SPDX-License-Identifier: GPL-2.0-or-later
"""A compromised worker against the real parent (issue 17, item 7), in both modes.

Each test runs real pasta, attached to a GuestNS inside a HostNS, or real
passt, listening on a UNIX socket in a HostNS, through
tests/tools/hostile_worker.py: the parent is the product's, unchanged; the
worker is a stand-in isolated exactly as the real one (same isolate_worker
call, same policies/pasta.policy or policies/passt.policy) that, once it
has said ``ready``, does what an exploited worker would. What it learns it
reports over the log channel (``hostile: ...`` lines on the parent's
stderr). Each test asserts the
outcome the issue asks for (refused with an errno, or the worker killed and
pasta ending with 1 and a one-line reason), that the parent still ends on
SIGTERM within a second where it keeps running, and that the worker is
gone afterwards. Sends to unapproved destinations are watched by tcpdump at
the far end of the test network (the gateway namespace) and on the host's
loopback, each with a packet that was allowed as the proof it sees.
"""

from __future__ import annotations

import errno
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netenv import (
    FAR_ADDR4,
    GW_ADDR4,
    HOST_ADDR4,
    PEER_IF,
    PYTHON,
    TOOLS,
    GuestNS,
    HostNS,
    _alive,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration
MODES = ["pasta", "passt"]

HARNESS = str(TOOLS / "hostile_worker.py")
FWD = "10201"  # the -t/-u port; the harness's FWD_PORT
PASTA_ARGS = ["-f", "--config-net", "-t", FWD, "-u", FWD, "-T", "none", "-U", "none"]
PASST_ARGS = ["-f", "-t", FWD, "-u", FWD]
DENIED_PORT, LO_OK_PORT, LO_DENIED_PORT = 9999, 9995, 9996  # the harness's
STDIO_MARK = "HOSTILE-STDIO-MARK"
TERM_WITHIN = 1.0  # seconds the parent may take to end on SIGTERM
KILL_WITHIN = 2.0  # seconds from the worker's misdeed to the parent's exit


@dataclass
class Run:
    """One pasta or passt run with a hostile stand-in worker."""

    p: subprocess.Popen
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_line(self, text: str, timeout: float = 15.0) -> float:
        """Wait for a line of the parent's stderr containing text; the time it was seen."""
        assert wait_for(lambda: text in self.stderr() or self.p.poll() is not None, timeout, 0.01), \
            f"no {text!r} within {timeout} s:\n{self.stderr()}"
        assert text in self.stderr(), f"the parent ended ({self.p.returncode}) before {text!r}:\n{self.stderr()}"
        return time.monotonic()

    def worker_pid(self) -> int:
        m = re.search(r"hostile: pid (\d+)", self.stderr())
        assert m, self.stderr()
        return int(m.group(1))

    def exit_within(self, t0: float, limit: float) -> int:
        """The parent's exit status, asserting it came within limit seconds of t0."""
        try:
            rc = self.p.wait(limit + 5)
        except subprocess.TimeoutExpired:
            stop_process(self.p)
            raise AssertionError(f"the parent still running {limit + 5} s later:\n{self.stderr()}") from None
        took = time.monotonic() - t0
        assert took <= limit, f"the parent took {took:.2f} s to end (limit {limit}):\n{self.stderr()}"
        return rc

    def terminate(self) -> int:
        """SIGTERM to the parent; its exit status, within TERM_WITHIN seconds."""
        assert self.p.poll() is None, f"the parent ended early ({self.p.returncode}):\n{self.stderr()}"
        t0 = time.monotonic()
        self.p.send_signal(signal.SIGTERM)
        return self.exit_within(t0, TERM_WITHIN)

    def assert_clean_end(self) -> None:
        """No process left behind (the worker gone, not even a zombie), no traceback."""
        pid = self.worker_pid()
        assert wait_for(lambda: not _alive(pid), 2), f"worker {pid} still there"
        assert "Traceback" not in self.stderr(), self.stderr()
        assert "hostile: error" not in self.stderr(), self.stderr()


def start(host: HostNS, tmp_path: Path, scenario: str, *extra: str, mode: str = "pasta") -> Run:
    """pasta or passt (the real parent) with the stand-in worker playing scenario.
    pasta is attached to a GuestNS; passt listens on a UNIX socket nobody connects to."""
    out, err = tmp_path / f"{mode}-{scenario}.out", tmp_path / f"{mode}-{scenario}.err"
    if mode == "passt":
        sock = tmp_path / f"passt-{scenario}.socket"
        argv = [PYTHON, HARNESS, "--passt", scenario, "--", *PASST_ARGS, "-s", str(sock), *extra]
    else:
        guest = GuestNS(host).start()
        argv = [PYTHON, HARNESS, scenario, "--", *PASTA_ARGS, *extra, "--netns", guest.netns_path]
    with open(out, "w") as o, open(err, "w") as e:
        p = host.popen(argv, stdout=o, stderr=e)
    return Run(p, out, err)


@pytest.mark.parametrize("mode", MODES)
def test_out_of_policy_requests_are_refused(host: HostNS, tmp_path: Path, mode: str) -> None:
    """Every op with arguments outside policy (loopback, link-local, multicast,
    unspecified, broadcast, v4-mapped/compatible, port 0, bad family, ports
    that are not forwarded, reply peers that are not allowed; in passt, which
    has no namespace, the splice connect even to a forwarded port) gets an
    errno and no fd; the controls (far host, a forwarded port in pasta) get
    their fd; the parent carries on and ends on SIGTERM."""
    run = start(host, tmp_path, "refuse", mode=mode)
    run.wait_line("hostile: done")
    err = run.stderr()
    m = re.search(r"hostile: done refused=(\d+) granted=(\d+) bad=(\d+)", err)
    assert m, err
    refused, granted, bad = map(int, m.groups())
    assert refused >= 50 and granted == (5 if mode == "pasta" else 4), err
    for name in ("tcp 127.0.0.1", "udp 224.0.0.1", "ping 169.254.1.1"):
        assert re.search(rf"hostile: check {name}: ok status=\d+ fds=0$", err, re.M), (name, err)
    if mode == "passt":
        assert "hostile: check ns loop connect forwarded (passt: no namespace): ok" in err, err
    assert bad == 0 and "BAD" not in err, err
    assert len(re.findall(r"hostile: check .*: ok status=\d+ fds=0$", err, re.M)) == refused, err
    assert len(re.findall(r"hostile: check .* granted: ok status=-?\d+ fds=1$", err, re.M)) == granted, err
    assert "protocol violation" not in err, err
    assert run.terminate() == 0, run.stderr()
    run.assert_clean_end()


@pytest.mark.parametrize(("scenario", "reason"), [
    ("short", "malformed request (35 bytes)"),
    ("long", "malformed request (37 bytes)"),
    ("big", "malformed request (49189 bytes)"),  # 64 KiB, cut to the parent's read (ipc.RECV_MAX + 1)
    ("report-unsolicited", "report 7 nobody asked for"),
    ("zero", "zero-length message"),  # not the end of the socket: the worker's end is still open
    ("unknown-op", "unknown request op 48879"),
    ("op-zero", "unknown request op 0"),
])
@pytest.mark.parametrize("mode", MODES)
def test_malformed_message_kills_the_worker(host: HostNS, tmp_path: Path, scenario: str, reason: str,
                                            mode: str) -> None:
    """A message of the wrong size or an unknown op: the parent logs a protocol
    violation, kills the worker and exits 1 within a couple of seconds."""
    run = start(host, tmp_path, scenario, mode=mode)
    t0 = run.wait_line("hostile: isolated")
    rc = run.exit_within(t0, KILL_WITHIN)
    assert rc == 1, run.stderr()
    assert f"worker protocol violation: {reason}, exiting" in run.stderr(), run.stderr()
    run.assert_clean_end()


@pytest.mark.parametrize(("scenario", "reason"), [
    ("report-bad", "report: stats"),
    ("report-twice", "nobody asked for"),
])
@pytest.mark.parametrize("mode", MODES)
def test_a_bad_report_to_the_control_api_kills_the_worker(host: HostNS, tmp_path: Path, scenario: str,
                                                          reason: str, mode: str) -> None:
    """--api-socket's stats: the parent asks the worker for a report; one of the
    wrong shape, or a second one, is a protocol violation (docs/api.md). The
    API client of the bad report gets no reply, only the end of the connection
    (the first of two reports is a good one: that client gets its answer)."""
    api = tmp_path / f"api-{mode}.sock"
    run = start(host, tmp_path, scenario, "--api-socket", str(api), mode=mode)
    run.wait_line("hostile: waiting for a query")
    assert wait_for(api.exists, 5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(str(api))
        c.sendall(b'{"execute": "stats"}')
        t0 = time.monotonic()
        got = b""
        try:
            while chunk := c.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
    assert (got == b"") == (scenario == "report-bad"), got
    rc = run.exit_within(t0, KILL_WITHIN)
    assert rc == 1, run.stderr()
    assert "worker protocol violation: " in run.stderr() and reason in run.stderr(), run.stderr()
    run.assert_clean_end()


@pytest.mark.parametrize(("scenario", "queued"), [
    ("flood-noread", "4096 queued"),  # errno replies: QUEUE_MAX
    ("flood-fds-noread", "256 queued"),  # replies with fds: QUEUE_FDS_MAX
])
@pytest.mark.parametrize("mode", MODES)
def test_flood_without_reading_replies_is_cut_off(host: HostNS, tmp_path: Path, scenario: str,
                                                  queued: str, mode: str) -> None:
    """100,000 requests as fast as the socket takes them, no reply ever read: the
    parent never blocks on the worker; once its bounded queue is full it calls
    that a protocol violation, kills the worker and exits 1 (well within a second
    of the flood's start on this machine; KILL_WITHIN asserted)."""
    run = start(host, tmp_path, scenario, mode=mode)
    t0 = run.wait_line("hostile: flooding")
    assert run.exit_within(t0, KILL_WITHIN) == 1, run.stderr()
    assert f"worker protocol violation: the worker does not read its replies ({queued}), exiting" \
        in run.stderr(), run.stderr()
    run.assert_clean_end()


@pytest.mark.parametrize(("mode", "scenario"), [
    *(("pasta", s) for s in ("flood-read", "flood-read-ns", "log-flood", "ignore")),
    *(("passt", s) for s in ("flood-read", "log-flood", "ignore")),  # passt: no namespace thread
])
def test_busy_parent_still_ends_on_sigterm(host: HostNS, tmp_path: Path, mode: str, scenario: str) -> None:
    """Requests as fast as the worker can send them, replies read (no protocol
    violation): refused connects, or splice connects served through the
    parent's namespace thread; or log lines as fast as the channel takes them;
    or nothing at all, the broker socket never read again (so the parent's close
    of it at the end goes unnoticed and the worker must be killed). The parent
    still ends on SIGTERM within a second, with 0."""
    run = start(host, tmp_path, scenario, mode=mode)
    run.wait_line("hostile: flooding steadily" if scenario != "ignore" else "hostile: done ignoring")
    time.sleep(0.3)  # well into the flood
    assert run.p.poll() is None, run.stderr()
    assert run.terminate() == 0, run.stderr()
    assert "protocol violation" not in run.stderr(), run.stderr()
    run.assert_clean_end()


@pytest.mark.parametrize("mode", MODES)
def test_refusal_flood_is_cut_off_at_its_quota_and_logged_boundedly(host: HostNS, tmp_path: Path,
                                                                    mode: str) -> None:
    """Requests refused with EPERM as fast as the worker can send them, replies
    read: past the op's per-second quota (ipc.QUOTAS, which the real worker's
    client never exceeds) the parent calls it a protocol violation, kills the
    worker and exits 1; until then it wrote at most one refusal line per op
    and second (one request, one line, was about 40,000 lines a second)."""
    run = start(host, tmp_path, "flood-eperm", mode=mode)
    t0 = run.wait_line("hostile: flooding")
    assert run.exit_within(t0, KILL_WITHIN) == 1, run.stderr()
    assert re.search(r"worker protocol violation: over quota: more than \d+ requests of op \d+", run.stderr()), \
        run.stderr()
    run.assert_clean_end()
    lines = run.stderr().count("broker: refused request")
    assert 1 <= lines <= 4, f"{lines} log lines for a refused flood:\n{run.stderr()}"


def _capture(ns: HostNS | GuestNS, ifname: str, filt: str, tmp_path: Path) -> subprocess.Popen:
    out, err = tmp_path / f"{ns.name}-{ifname}.txt", tmp_path / f"{ns.name}-{ifname}.err"
    with open(out, "w") as o, open(err, "w") as e:
        p = ns.popen(["tcpdump", "-n", "-l", "-i", ifname, filt], stdout=o, stderr=e)
    assert wait_for(lambda: "listening on" in err.read_text(), 10), err.read_text()
    return p


def _captured(p: subprocess.Popen, ns: HostNS | GuestNS, ifname: str, tmp_path: Path) -> str:
    time.sleep(0.2)  # the last packets through tcpdump's line buffer
    stop_process(p)
    return (tmp_path / f"{ns.name}-{ifname}.txt").read_text()


KILL_SCENARIOS = ["sendto-udp", "sendto-udp-lo", "sendto-ping", "sendto-u-socket", "sendto-udp-port",
                  "connect", "socket", "fastopen"]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
@pytest.mark.parametrize("mode", MODES)
def test_unapproved_destinations_kill_the_worker_and_nothing_gets_there(host: HostNS, tmp_path: Path,
                                                                       mode: str) -> None:
    """On every socket it is given (a UDP socket connected to the far host, one
    connected to the host's loopback through the gateway mapping, a ping socket,
    a TCP socket), the worker first uses it as allowed (send(): the packet reaches
    the approved destination, which the captures show), then tries another
    destination: sendto() with an address, connect(), a socket() of its own,
    MSG_FASTOPEN. On the unconnected ones (the -u socket announced at start,
    a guest port's receive-only socket) send() has nowhere to go
    (EDESTADDRREQ) and sendto() kills. Each kills it (SIGSYS: pasta exits 1 saying so), and neither
    the gateway's far side nor the host's loopback sees a packet to a denied
    address."""
    assert host.gw is not None
    far = _capture(host.gw, PEER_IF, "ip and (udp or tcp or icmp)", tmp_path)
    lo = _capture(host, "lo", "udp", tmp_path)
    runs: dict[str, tuple[int, str]] = {}
    try:
        for scenario in KILL_SCENARIOS:
            run = start(host, tmp_path, scenario, mode=mode)
            t0 = run.wait_line("hostile: isolated")
            runs[scenario] = (run.exit_within(t0, KILL_WITHIN + 1), run.stderr())
            run.assert_clean_end()
    finally:
        seen_far = _captured(far, host.gw, PEER_IF, tmp_path)
        seen_lo = _captured(lo, host, "lo", tmp_path)
    # the allowed sends got there: the captures see what they should
    assert re.search(rf"{HOST_ADDR4}\.\d+ > {FAR_ADDR4}\.9: UDP", seen_far), seen_far
    assert f"{HOST_ADDR4} > {FAR_ADDR4}: ICMP echo request" in seen_far, seen_far
    assert re.search(rf"{HOST_ADDR4}\.\d+ > {FAR_ADDR4}\.9: Flags \[S\]", seen_far), seen_far
    assert re.search(rf"127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.{LO_OK_PORT}: UDP", seen_lo), seen_lo
    # and nothing else did
    assert f" > {GW_ADDR4}." not in seen_far and f" > {GW_ADDR4}:" not in seen_far, seen_far
    assert f".{DENIED_PORT}:" not in seen_far, seen_far
    assert f"127.0.0.1.{LO_DENIED_PORT}:" not in seen_lo, seen_lo
    # because each attempt killed the worker
    for scenario, (rc, err) in runs.items():
        assert rc == 1, (scenario, err)
        # ("start worker: ..." when the stand-in, which misbehaves right after "ready",
        # died before the parent had sent it every port announcement of set-up)
        assert re.search(r"worker killed by signal SIGSYS \(seccomp policy violation\)(, exiting)?$", err, re.M), \
            (scenario, err)
        assert "BAD" not in err, (scenario, err)
        if scenario in ("sendto-u-socket", "sendto-udp-port"):  # send() without address: nowhere to go
            assert f"errno {errno.EDESTADDRREQ}; now sendto" in err, (scenario, err)


@pytest.mark.parametrize("mode", MODES)
def test_writes_to_stdio_reach_nothing(host: HostNS, tmp_path: Path, mode: str) -> None:
    """The worker writes to fds 0, 1 and 2 (in foreground pasta they were the
    user's terminal): the writes succeed, into /dev/null; pasta's stdout and
    stderr never see the bytes."""
    run = start(host, tmp_path, "stdio", mode=mode)
    run.wait_line("hostile: done stdio")
    n = len(STDIO_MARK) + 1
    assert f"hostile: done stdio wrote={n},{n},{n}" in run.stderr(), run.stderr()
    assert run.terminate() == 0, run.stderr()
    run.assert_clean_end()
    assert STDIO_MARK not in run.stdout() and STDIO_MARK not in run.stderr()
