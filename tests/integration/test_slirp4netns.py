# SPDX-License-Identifier: GPL-2.0-or-later
"""The slirp4netns front end, started as rootlesskit and podman 4.x start slirp4netns.

Real processes in tests/netenv.py namespaces: HostNS plays the host
(192.0.2.10, 2001:db8::10, its loopback), a GuestNS is the container's
namespace. The front end is started with the argv the clients use, the
ready and exit fds on the numbers they use (3 and 4, through a shell's
redirections), and what it did is read back: tap0's address, MTU and
routes from the namespace, "1" from the ready pipe, the exit status. Every
transfer is checked by sha256 (netserve's tcp-send against tcp-sink).

rootlesskit 1.1:  --mtu 65520 -r 3 [--disable-host-loopback] --api-socket S PID tap0
podman 4.x:       --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp
                  --enable-ipv6 -c -r 3 [-e 4] --netns-type=path PATH tap0
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.netenv import (
    HOST_ADDR4,
    HOST_ADDR6,
    PYTHON,
    REPO,
    GuestNS,
    HostNS,
    proc_status,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration

SLIRP = str(REPO / ".venv" / "bin" / "slirp4netns")
PASST_SEP = str(REPO / ".venv" / "bin" / "passt-sep")
BULK = str(2 << 20)
# SIGTERM ends a run with 0 once supervision has begun; right after the
# ready byte it may still kill it, as it kills slirp4netns
STOPPED = (0, -signal.SIGTERM)
API_PORT = 18090  # in HostNS's network namespace only
PODMAN = ["--disable-host-loopback", "--mtu=65520", "--enable-sandbox", "--enable-seccomp",
          "--enable-ipv6", "-c", "-r", "3"]


# dup2 each "TO=FROM" of argv[1] (comma-separated), close FROM, exec argv[2:]
_MOVE_FDS = """import os, sys
for m in sys.argv[1].split(","):
    to, frm = map(int, m.split("="))
    os.dup2(frm, to)
    os.close(frm)
os.execv(sys.argv[2], sys.argv[2:])
"""


class Slirp:
    """A running front end: its process, the ready pipe's read end, the exit pipe's write end."""

    def __init__(self, host: HostNS, args: list[str], exit_fd: bool = False,
                 resolv: Path | None = None) -> None:
        ready_r, ready_w = os.pipe()
        self.ready_r = ready_r
        self.exit_w: int | None = None
        fds = [ready_w]
        moves = [f"3={ready_w}"]
        if exit_fd:
            exit_r, self.exit_w = os.pipe()
            fds.append(exit_r)
            moves.append(f"4={exit_r}")
        # the fds on 3 and 4, as podman's ExtraFiles and rootlesskit put them
        argv = [PYTHON, "-c", _MOVE_FDS, ",".join(moves), SLIRP, *args]
        if resolv:  # that file is the host's resolv.conf, in a private mount namespace
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                    f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh", *argv]
        self.proc = host.popen(argv, pass_fds=fds, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for fd in fds:
            os.close(fd)

    def ready(self, timeout: float = 20) -> bytes:
        """What the ready fd got (b"" if it was closed without a word, or nothing in time);
        its stderr instead if it ended first."""
        if not select.select([self.ready_r], [], [], timeout)[0]:
            return b""
        got = os.read(self.ready_r, 16)
        if not got and wait_for(lambda: self.proc.poll() is not None, 5) and self.proc.stderr:
            return self.proc.stderr.read().encode()
        return got

    def close_exit_fd(self) -> None:
        """Close the exit pipe's write end, as conmon's exit does."""
        assert self.exit_w is not None
        os.close(self.exit_w)
        self.exit_w = None

    def stop(self) -> tuple[int | None, str, str]:
        """Stop it if still running; (exit status, stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            out, err = "", ""
        os.close(self.ready_r)
        if self.exit_w is not None:
            os.close(self.exit_w)
        return self.proc.returncode, out, err


def _api(path: str, req: dict) -> dict:
    """One request on the API socket, as rootlesskit and podman send it (JSON, then EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(10)
        c.connect(path)
        c.sendall(json.dumps(req).encode())
        c.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    reply: dict = json.loads(data)
    return reply


def _send(ns: GuestNS, addr: str, port: int) -> dict:
    return ns.client("tcp-send", addr, port, "--bytes", BULK, "--timeout", "20", timeout=40)


def _slaac(guest: GuestNS) -> bool:
    """tap0 has a usable (DAD done: not tentative) address in fd00::/64."""
    out = guest.run("ip -6 addr show dev tap0 scope global").stdout
    return "inet6 fd00::" in out and "tentative" not in out


def _configured(guest: GuestNS) -> str:
    return guest.run("ip -4 addr show dev tap0", check=False).stdout


def test_rootlesskit_argv(host: HostNS) -> None:
    """No -c: tap0 made, left alone; configured as rootlesskit's child does, it
    works, --disable-host-loopback keeps 10.0.2.2 off the host's loopback, and
    the API socket forwards a port in (add, list, remove_hostfwd)."""
    guest = host.guest()
    api = f"/tmp/passt-sep-test-{os.getpid()}.s4nn.sock"
    s = Slirp(host, ["--mtu", "65520", "-r", "3", "--disable-host-loopback", "--api-socket", api,
                     str(guest.pid), "tap0"])
    try:
        assert s.ready() == b"1"
        link = guest.run("ip -o link show dev tap0").stdout
        assert "state DOWN" in link and "mtu 1500" in link, link  # untouched: no -c
        assert "inet " not in _configured(guest)
        guest.configure(["ip link set tap0 mtu 65520 up", "ip addr add 10.0.2.100/24 dev tap0",
                         "ip route add default via 10.0.2.2"])
        sink = host.serve("tcp-sink", HOST_ADDR4)
        res = _send(guest, HOST_ADDR4, sink.port)
        assert res["ok"] and res["peer"] == HOST_ADDR4, res
        lo = host.serve("tcp-sink", "127.0.0.1")
        res = guest.client("tcp-send", "10.0.2.2", lo.port, "--bytes", "1000", "--timeout", "5", timeout=20)
        assert not res["ok"] and "refused" in res["error"], res
        # rootlessctl add-ports / list-ports / remove-ports, as rootlesskit's slirp4netns port driver asks
        inner = guest.serve("tcp-sink", "0.0.0.0", 80)
        add = _api(api, {"execute": "add_hostfwd", "arguments": {
            "proto": "tcp", "host_addr": "127.0.0.1", "host_port": API_PORT,
            "guest_addr": "10.0.2.100", "guest_port": inner.port}})
        fid = add["return"]["id"]
        entries = _api(api, {"execute": "list_hostfwd"})["return"]["entries"]
        assert [(e["id"], e["host_port"], e["guest_port"]) for e in entries] == [(fid, API_PORT, 80)], entries
        res = host.client("tcp-send", "127.0.0.1", API_PORT, "--bytes", BULK, "--timeout", "20", timeout=40)
        assert res["ok"], res
        assert _api(api, {"execute": "remove_hostfwd", "arguments": {"id": fid}}) == {"return": {}}
        res = host.client("tcp-send", "127.0.0.1", API_PORT, "--bytes", "1000", "--timeout", "5", timeout=20)
        assert not res["ok"], res
        assert s.proc.poll() is None
    finally:
        rc, out, err = s.stop()
    assert rc in STOPPED, err
    assert "WARNING: 127.0.0.1:* on the host" not in out
    assert not os.path.exists(api)  # removed at exit, as by slirp4netns


def test_podman_argv_with_exit_fd(host: HostNS) -> None:
    """podman's container argv: -c configures tap0 (10.0.2.100/24, MTU, default
    route), IPv6 by SLAAC in fd00::/64, the host's loopback refused, and the
    exit fd ends the run with status 0; the worker is sandboxed all the same."""
    guest = host.guest()
    s = Slirp(host, [*PODMAN, "-e", "4", "--netns-type=path", guest.netns_path, "tap0"], exit_fd=True)
    try:
        assert s.ready() == b"1"
        addr = _configured(guest)
        assert "inet 10.0.2.100/24 " in addr, addr
        link = guest.run("ip -o link show dev tap0").stdout
        assert "mtu 65520" in link and ",UP" in link, link
        assert "default via 10.0.2.2 dev tap0" in guest.run("ip -4 route").stdout
        # IPv6: a SLAAC address in fd00::/64 from our router advertisements, no static one
        assert wait_for(lambda: _slaac(guest) and "default via fe80::" in guest.run("ip -6 route").stdout, 15)
        assert "fd00::100" not in guest.run("ip -6 addr show dev tap0").stdout
        sink = host.serve("tcp-sink", HOST_ADDR4)
        res = _send(guest, HOST_ADDR4, sink.port)
        assert res["ok"] and res["peer"] == HOST_ADDR4, res
        sink6 = host.serve("tcp-sink", HOST_ADDR6)
        res = _send(guest, HOST_ADDR6, sink6.port)
        assert res["ok"] and res["peer"] == HOST_ADDR6, res
        lo = host.serve("tcp-sink", "127.0.0.1")
        res = guest.client("tcp-send", "10.0.2.2", lo.port, "--bytes", "1000", "--timeout", "5", timeout=20)
        assert not res["ok"] and "refused" in res["error"], res
        # --enable-sandbox/--enable-seccomp or not: the worker has no capabilities, a filter
        st = proc_status(worker_of(s.proc.pid))
        assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1" and int(st["CapEff"], 16) == 0, st
        s.close_exit_fd()
        assert wait_for(lambda: s.proc.poll() is not None, 10), "exit fd closed, still running"
    finally:
        rc, out, err = s.stop()
    assert rc == 0, err
    assert "exitfd event" in err


def test_host_loopback_and_dns(host: HostNS, tmp_path: Path) -> None:
    """Without --disable-host-loopback, 10.0.2.2 is the host's 127.0.0.1 (and
    fd00::2 its ::1); 10.0.2.3:53 is the host's resolver; default MTU 1500."""
    guest = host.guest()
    dns = host.serve("udp-echo", HOST_ADDR4, 53)  # stands in for the host's resolver
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {HOST_ADDR4}\n")
    s = Slirp(host, ["-c", "-r", "3", "--enable-ipv6", str(guest.pid), "tap0"], resolv=resolv)
    try:
        assert s.ready() == b"1"
        assert "mtu 1500" in guest.run("ip -o link show dev tap0").stdout
        lo = host.serve("tcp-sink", "127.0.0.1")
        res = _send(guest, "10.0.2.2", lo.port)
        assert res["ok"] and res["peer"] == "127.0.0.1", res
        assert wait_for(lambda: _slaac(guest), 15)
        lo6 = host.serve("tcp-sink", "::1")
        res = _send(guest, "fd00::2", lo6.port)
        assert res["ok"] and res["peer"] == "::1", res
        res = guest.client("udp-echo-check", "10.0.2.3", 53, "--count", "5")
        assert res["ok"], res
        assert dns.proc.poll() is None
    finally:
        rc, out, err = s.stop()
    assert rc in STOPPED, err
    assert "WARNING: 127.0.0.1:* on the host is accessible as 10.0.2.2" in out


def test_cidr(host: HostNS) -> None:
    """--cidr moves everything: guest .100, gateway .2 (the host's loopback)."""
    guest = host.guest()
    s = Slirp(host, ["-c", "-r", "3", "--cidr=10.5.0.0/16", str(guest.pid), "tap0"])
    try:
        assert s.ready() == b"1"
        assert "inet 10.5.0.100/16 " in _configured(guest)
        assert "default via 10.5.0.2 dev tap0" in guest.run("ip -4 route").stdout
        lo = host.serve("tcp-sink", "127.0.0.1")
        res = _send(guest, "10.5.0.2", lo.port)
        assert res["ok"] and res["peer"] == "127.0.0.1", res
    finally:
        rc, _out, err = s.stop()
    assert rc in STOPPED, err


@pytest.mark.parametrize("args, word", [
    (["--bogus", "1", "tap0"], "--bogus"),
    (["-x", "1", "tap0"], "-- 'x'"),
    (["--mtu", "99999", "1", "tap0"], "--mtu"),
    (["--cidr=10.0.2.100/24", "1", "tap0"], "--cidr"),
    (["--netns-type=tapfd", "3"], "--netns-type"),
    (["--netns-type=path", "/nonexistent/netns", "tap0"], "/nonexistent/netns"),
    (["--macaddress=02:00:00:00:00:01", "1", "tap0"], "--macaddress"),
    (["-r", "999", "1", "tap0"], "ready-fd"),
    (["1"], "TAPNAME"),
])
def test_bad_command_line_is_one_line(args: list[str], word: str) -> None:
    """Exit 1, one line on stderr naming what is wrong, nothing started."""
    r = subprocess.run([SLIRP, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and word in lines[0] and lines[0].startswith("slirp4netns: "), r.stderr


def test_help_and_version() -> None:
    """--help names every option podman and rootlesskit probe for; --version as slirp4netns's."""
    out = subprocess.run([SLIRP, "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    for opt in ("--configure", "--exit-fd", "--ready-fd", "--mtu", "--enable-ipv6", "--api-socket",
                "--cidr", "--disable-host-loopback", "--netns-type", "--userns-path",
                "--enable-sandbox", "--enable-seccomp", "--outbound-addr", "--outbound-addr6",
                "--disable-dns", "--macaddress"):
        assert opt in out, opt
    assert out.startswith("Usage: ")
    for argv in ([SLIRP, "--version"], [SLIRP, "-v"], [PASST_SEP, "slirp4netns", "--version"]):
        v = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
        assert v.splitlines()[0].startswith("slirp4netns version 1.2.0"), v
        assert "SLIRP_CONFIG_VERSION_MAX:" in v


def test_started_by_root_drops_to_nobody(host: HostNS) -> None:
    """Started as root in the initial user namespace, the parent ends up as nobody (as pasta)."""
    guest = host.guest()
    ready_r, ready_w = os.pipe()
    # HostNS's network namespace, but the initial user namespace: root as podman's rootful side is
    p = subprocess.Popen(["nsenter", "-t", str(host.pid), "-n", "--", SLIRP, "-c", "-r", str(ready_w),
                          str(guest.pid), "tap0"], pass_fds=[ready_w],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    os.close(ready_w)
    try:
        assert select.select([ready_r], [], [], 20)[0] and os.read(ready_r, 4) == b"1"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc_status(p.pid)["Uid"].split()[0] == "0":
            time.sleep(0.05)
        uids = proc_status(p.pid)["Uid"].split()
        assert uids[0] != "0" and len(set(uids)) == 1, uids
    finally:
        os.close(ready_r)
        p.send_signal(signal.SIGTERM)
        try:
            _out, err = p.communicate(timeout=10)
        finally:
            stop_process(p)
    assert p.returncode in STOPPED, err
