# SPDX-License-Identifier: GPL-2.0-or-later
"""Who the parent and the worker are once set-up is over, read back from /proc.

Started by root (HostNS maps every id, so root there is root of an initial
user namespace as far as passt-sep can tell), passt and pasta switch to
nobody or --runas; so must both our processes, with no capability left in
that namespace. Started by anybody else, nothing changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.netenv import (
    GW_ADDR4,
    PASST,
    PASTA,
    HostNS,
    proc_children,
    proc_status,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration

NOBODY = "65534"
CAP_FIELDS = ("CapEff", "CapPrm", "CapInh", "CapAmb")
CAP_NET_BIND_SERVICE = 10


def proc_status_task(pid: int, tid: int) -> dict[str, str]:
    """/proc/PID/task/TID/status as a dict (capabilities are per thread)."""
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _ids(st: dict[str, str], field: str) -> set[str]:
    return set(st[field].split())


def _userns(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/user").st_ino


def _uid_map(pid: int) -> list[str]:
    with open(f"/proc/{pid}/uid_map") as f:
        return f.read().split()


def _spawned(host: HostNS, *extra: str) -> tuple[subprocess.Popen, int, int]:
    """pasta around a long sleep: (pasta, worker pid, command pid) once the command runs."""
    p = host.popen([PASTA, "--config-net", "-q", *extra, "--", "sleep", "60"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: worker_of(p.pid), 15), "worker did not start"
    w = worker_of(p.pid)

    def command() -> int:
        kids = [k for k in proc_children(p.pid) if k != w]
        if kids and open(f"/proc/{kids[0]}/comm").read().strip() == "sleep":
            return kids[0]
        return 0

    assert wait_for(command, 15), "command did not start"
    return p, w, command()


def test_root_pasta_with_a_command_runs_as_nobody_in_a_user_namespace_of_its_own(host: HostNS) -> None:
    p, w, cmd = _spawned(host)
    try:
        host_userns = os.stat(host.userns_path).st_ino
        st = proc_status(p.pid)
        assert _ids(st, "Uid") == {NOBODY} and _ids(st, "Gid") == {NOBODY}, st
        assert st["Groups"].strip() == "", st["Groups"]
        # whatever it holds, it holds over its own user namespace (mapped to nobody), not the host's
        assert _userns(p.pid) != host_userns
        assert _uid_map(p.pid) == ["0", NOBODY, "1"]
        # and even there it keeps only what it needs: nothing in the main thread,
        # CAP_NET_BIND_SERVICE in the thread inside the guest's namespace
        for field in (*CAP_FIELDS, "CapBnd"):
            assert int(st[field], 16) == 0, (field, st[field])
        threads = [t for t in os.listdir(f"/proc/{p.pid}/task") if int(t) != p.pid]
        assert threads, "no namespace thread"
        eff = {int(proc_status_task(p.pid, int(t))["CapEff"], 16) for t in threads}
        assert eff == {1 << CAP_NET_BIND_SERVICE}, [hex(x) for x in eff]
        # the worker, too, is nobody outside its own namespaces
        wst = proc_status(w)
        assert _ids(wst, "Uid") == {NOBODY}, wst
        assert _uid_map(w) == ["0", NOBODY, "1"]
        # the command is root of pasta's user namespace, i.e. nobody on the host (as with C pasta)
        cst = proc_status(cmd)
        assert _ids(cst, "Uid") == {NOBODY}, cst
        assert _userns(cmd) == _userns(p.pid)
    finally:
        stop_process(p)


def test_root_pasta_attached_to_a_namespace_holds_no_capability(host: HostNS) -> None:
    guest = host.guest()
    p = host.pasta(guest)
    try:
        assert wait_for(lambda: proc_status(p.pid)["Uid"].split()[0] == NOBODY, 10)
        st = proc_status(p.pid)
        assert _ids(st, "Uid") == {NOBODY} and _ids(st, "Gid") == {NOBODY}, st
        for field in CAP_FIELDS:
            assert int(st[field], 16) == 0, (field, st[field])
        assert _userns(p.pid) == os.stat(host.userns_path).st_ino  # no namespace to hide caps in
        # and it still serves the guest after the switch: a ping goes through the broker
        r = guest.run(["ping", "-c1", "-W3", GW_ADDR4], check=False, timeout=15)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        stop_process(p)


def test_runas_applies_to_pasta(host: HostNS) -> None:
    p, w, cmd = _spawned(host, "--runas", "1000:1001")
    try:
        assert _ids(proc_status(p.pid), "Uid") == {"1000"}
        assert _ids(proc_status(p.pid), "Gid") == {"1001"}
        assert _ids(proc_status(w), "Uid") == {"1000"}
        assert _uid_map(p.pid) == ["0", "1000", "1"]
    finally:
        stop_process(p)


def test_root_passt_runs_as_nobody_without_capabilities(host: HostNS, tmp_path: Path) -> None:
    sock = tmp_path / "s"
    p = host.popen([PASST, "-f", "-q", "-s", str(sock)], stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: sock.exists(), 10)
        # the socket listens before set-up ends: wait for the switch (bounded), then read
        assert wait_for(lambda: proc_status(p.pid)["Uid"].split()[0] == NOBODY, 10), proc_status(p.pid)["Uid"]
        c = socket.socket(socket.AF_UNIX)
        assert wait_for(lambda: c.connect(str(sock)) is None, 10)
        c.close()
        st = proc_status(p.pid)
        assert _ids(st, "Uid") == {NOBODY}, st
        for field in CAP_FIELDS:
            assert int(st[field], 16) == 0, (field, st[field])
        assert _ids(proc_status(worker_of(p.pid)), "Uid") == {NOBODY}
    finally:
        stop_process(p)


def test_files_are_opened_before_the_switch_and_never_through_a_link(host: HostNS, tmp_path: Path) -> None:
    """The PID file and the pcap land in root's 0700 directory; a symlink is refused."""
    tmp_path.chmod(0o700)
    pidf, cap = tmp_path / "pid", tmp_path / "cap.pcap"
    r = host.run([PASTA, "--config-net", "-q", "-P", str(pidf), "-p", str(cap), "--",
                  "ping", "-c1", "-W3", GW_ADDR4], check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(pidf.read_text()) > 1
    assert cap.stat().st_size > 24  # a pcap header and records
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    r = host.run([PASTA, "--config-net", "-q", "-p", str(link), "--", "true"], check=False, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"pasta: pcap file {link}: Too many levels of symbolic links"], r.stderr
    assert not (tmp_path / "elsewhere").exists()
