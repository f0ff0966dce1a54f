# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta end to end: connectivity, the worker's sandbox, failure handling.

Every run happens inside a HostNS (a namespace playing the host); the guest
is the namespace pasta creates around its command, or a GuestNS it attaches
to. Evidence about the worker is read back from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.netenv import (
    FAR_ADDR4,
    FAR_ADDR6,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    HOST_ADDR6,
    PASTA,
    PYTHON,
    REPO,
    HostNS,
    proc_children,
    proc_status,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration


def _start_sleeping(host: HostNS, *extra: str) -> subprocess.Popen:
    """pasta around a long sleep; returns once its worker is sandboxed."""
    p = host.popen([PASTA, "--config-net", "-q", *extra, "--", "sleep", "60"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: worker_of(p.pid), 15), "worker did not start"

    def command_runs() -> bool:  # the command is let go only once set-up is done
        kids = [k for k in proc_children(p.pid) if k != worker_of(p.pid)]
        return bool(kids) and open(f"/proc/{kids[0]}/comm").read().strip() == "sleep"

    assert wait_for(command_runs, 15), "command did not start"
    return p


def test_ping_gateway_and_far_host_both_families(host):
    script = (f"ip -br addr show eth0; ip route; ip -6 route; "
              f"ping -c1 -W3 {GW_ADDR4} && ping -6 -c1 -W3 {GW_ADDR6} && "
              f"ping -c1 -W3 {FAR_ADDR4} && ping -6 -c1 -W3 {FAR_ADDR6}")
    r = host.run([PASTA, "--config-net", "-q", "--", "sh", "-c", script], timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"{HOST_ADDR4}/24" in out and f"{HOST_ADDR6}/64" in out
    assert f"default via {GW_ADDR4} dev eth0" in out
    assert f"default via {GW_ADDR6} dev eth0" in out
    for addr in (GW_ADDR4, GW_ADDR6, FAR_ADDR4, FAR_ADDR6):
        assert f"64 bytes from {addr}" in out


def test_gateway_ping_is_answered_by_host_loopback_not_the_gateway(host):
    """With the gateway namespace's link down, only the mapping can answer."""
    host.gw.run(["ip", "link", "set", "gw0", "down"])
    r = host.run([PASTA, "--config-net", "-q", "--", "ping", "-c1", "-W3", GW_ADDR4],
                 timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    r = host.run([PASTA, "--config-net", "-q", "--no-map-gw", "--", "ping", "-c1", "-W2",
                  GW_ADDR4], timeout=30, check=False)
    assert r.returncode != 0


def test_exit_status_of_command_is_passed_through(host):
    r = host.run([PASTA, "--config-net", "-q", "--", "sh", "-c", "exit 7"], check=False)
    assert r.returncode == 7


def test_worker_is_sandboxed(host):
    p = _start_sleeping(host)
    try:
        w = worker_of(p.pid)
        st = proc_status(w)
        assert st["Seccomp"] == "2"
        assert st["NoNewPrivs"] == "1"
        for field in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
            assert int(st[field], 16) == 0, (field, st[field])
        assert os.listdir(f"/proc/{w}/root") == []
        cmd = [k for k in proc_children(p.pid) if k != w][0]
        wnet = os.stat(f"/proc/{w}/ns/net").st_ino
        assert wnet != os.stat(host.netns_path).st_ino
        assert wnet != os.stat(f"/proc/{cmd}/ns/net").st_ino
        for ns in ("user", "mnt", "ipc", "uts"):
            assert os.stat(f"/proc/{w}/ns/{ns}").st_ino != os.stat(f"/proc/{p.pid}/ns/{ns}").st_ino
    finally:
        stop_process(p)


def _task_status(pid: int) -> dict[int, dict[str, str]]:
    """/proc/PID/task/*/status of every thread of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            out[int(tid)] = {k: v.strip() for k, v in (ln.split(":", 1) for ln in f if ":" in ln)}
    return out


def test_parent_is_filtered_and_still_forwards(host):
    """Once set-up is over the parent runs under policies/pasta-parent.policy
    on every thread (main and namespace thread), and TCP out through the
    gateway, -t in, the splice path (which the namespace thread serves) and
    ping still work afterwards; SIGTERM still ends it with 0."""
    guest = host.guest()
    sink = host.serve("tcp-sink", "127.0.0.1")
    in_tap = guest.serve("tcp-sink", "0.0.0.0", 10211)
    in_splice = guest.serve("tcp-sink", "127.0.0.1", 10212)
    p = host.pasta(guest, "-t", "10211,10212", "-T", "none", "-u", "none", "-U", "none")
    try:
        assert wait_for(lambda: all(st["Seccomp"] == "2" for st in _task_status(p.pid).values()), 10)
        tasks = _task_status(p.pid)
        assert len(tasks) == 2, tasks  # the main thread and the namespace thread
        for st in tasks.values():
            assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1", st
        r = guest.run(f"ping -c1 -W3 {GW_ADDR4} && ping -6 -c1 -W3 {GW_ADDR6}", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(1 << 20))["ok"]
        assert host.client("tcp-send", HOST_ADDR4, in_tap.port, "--bytes", str(1 << 20))["ok"]
        assert host.client("tcp-send", "127.0.0.1", in_splice.port, "--bytes", str(1 << 20))["ok"]
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        stop_process(p)


def _isolated_child_does(action: str) -> int:
    """Fork a child that isolates with the real pasta policy, then tries action."""
    code = f"""
import os, socket, sys
sys.path.insert(0, {str(REPO)!r})
from sandbox.isolate import isolate_worker
isolate_worker({str(REPO / 'policies' / 'pasta.policy')!r}, keep_fds=[0, 1, 2])
try:
    {action}
except OSError:
    os._exit(3)
os._exit(0)
"""
    r = subprocess.run([PYTHON, "-c", code], timeout=30, capture_output=True)
    return r.returncode


@pytest.mark.parametrize("action", [
    "os.open('/etc/hostname', os.O_RDONLY)",
    "socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    "os.execv('/bin/true', ['true'])",
])
def test_pasta_policy_kills_forbidden_calls(action):
    assert _isolated_child_does(action) == -signal.SIGSYS


def test_pasta_policy_allows_the_workers_own_calls():
    assert _isolated_child_does("os.write(1, b'')") == 0


def test_killed_worker_ends_the_run_and_the_command(host):
    p = _start_sleeping(host)
    w = worker_of(p.pid)
    cmd = [k for k in proc_children(p.pid) if k != w][0]
    os.kill(w, signal.SIGKILL)
    try:
        _out, err = p.communicate(timeout=15)
    finally:
        stop_process(p)
    assert p.returncode != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["worker killed by signal SIGKILL, exiting"], err
    assert wait_for(lambda: not os.path.exists(f"/proc/{cmd}"), 5)


MALFORMED = r"""
import socket, struct, subprocess, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = s.getsockname()[4]
gw = b"\x02\x00\x00\x00\x00\x01"
eth4 = gw + mac + b"\x08\x00"
eth6 = gw + mac + b"\x86\xdd"
frames = [
    gw + mac + b"\x08\x00" + b"\x45",                       # truncated IPv4 header
    eth4 + bytes([0x45, 0, 0xff, 0xff]) + bytes(16),        # total length past the end
    eth4 + bytes([0x65]) + bytes(19),                       # wrong IP version
    eth4 + bytes([0x43]) + bytes(19),                       # IHL below 5
    eth6 + bytes([0x60, 0, 0, 0, 0xff, 0xff, 58, 64]) + bytes(32),   # payload length past the end
    eth6 + bytes([0x40]) + bytes(39),                       # wrong version in an IPv6 frame
    eth6 + bytes([0x60, 0, 0, 0, 0, 8, 0, 64]) + bytes(32) + bytes([0, 200]) + bytes(6),  # ext hdr past end
    gw + mac + b"\x08\x06" + bytes(10),                     # truncated ARP
    eth4 + bytes([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0]) + bytes(8) + bytes([8, 0]),  # short ICMP
]
for _ in range(20):
    for f in frames:
        s.send(f)
print("sent", 20 * len(frames), flush=True)
sys.exit(subprocess.call(["ping", "-c1", "-W3", sys.argv[1]]))
"""


def test_malformed_frames_are_dropped_counted_and_loop_survives(host, tmp_path):
    log = tmp_path / "pasta.log"
    r = host.run([PASTA, "--config-net", "-d", "-l", str(log), "--runas", "0", "--", PYTHON, "-c", MALFORMED,
                  GW_ADDR4], timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sent 180" in r.stdout
    text = log.read_text()
    counts = [ln for ln in text.splitlines() if "frames dropped:" in ln]
    assert counts, text
    total = int(counts[-1].split("frames dropped:")[1].split()[0])
    assert total >= 180, counts[-1]
    for reason in ("short ipv4", "ipv4 length", "ipv4 version", "ipv6 length", "short arp"):
        assert reason in counts[-1], counts[-1]


def test_pcap_records_both_directions(host, tmp_path):
    cap = tmp_path / "x.pcap"
    r = host.run([PASTA, "--config-net", "-q", "-p", str(cap), "--", "ping", "-c2", "-W3",
                  GW_ADDR4], timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    data = cap.read_bytes()
    assert data[:4] == (0xA1B2C3D4).to_bytes(4, "little")
    t = subprocess.run(["tcpdump", "-nr", str(cap)], capture_output=True, text=True, timeout=30)
    assert "ICMP echo request" in t.stdout and "ICMP echo reply" in t.stdout, t.stdout + t.stderr


def test_attach_to_netns_path_and_daemonize_with_pid_file(host, tmp_path):
    guest = host.guest()
    pidfile = tmp_path / "pasta.pid"
    r = host.run([PASTA, "--config-net", "-q", "-P", str(pidfile), "-t", "none", "-u", "none",
                  "-T", "none", "-U", "none", "--netns", guest.netns_path], timeout=30)
    assert r.returncode == 0
    pid = int(pidfile.read_text())
    try:
        assert os.path.exists(f"/proc/{pid}")
        out = guest.run(f"ping -c1 -W3 {GW_ADDR4}", check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{HOST_ADDR4}/24" in guest.run("ip -br addr show eth0").stdout
    finally:
        os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)


def test_exits_zero_when_bound_netns_file_disappears(host, tmp_path):
    guest = host.guest()
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["mount", "--bind", guest.netns_path, str(nsfile)], check=True, timeout=10)
    try:
        p = host.popen([PASTA, "-f", "--config-net", "-q", "--netns", str(nsfile)],
                       stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
    finally:
        subprocess.run(["umount", "-l", str(nsfile)], timeout=10)  # as podman: MNT_DETACH
        nsfile.unlink()
    try:
        assert p.wait(timeout=10) == 0
    finally:
        stop_process(p)


def test_setup_failure_names_the_step(host):
    r = host.run([PASTA, "--config-net", "-q", "--netns", "/nonexistent/netns"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "pasta: network namespace /nonexistent/netns: No such file or directory"], r.stderr


def test_unprivileged_user_gets_a_namespace_too(host):
    """Without CAP_SYS_ADMIN pasta makes its own user namespace first."""
    r = host.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", PASTA,
                  "--config-net", "-q", "--", "sh", "-c",
                  f"ip -br addr show eth0; ping -c1 -W3 {GW_ADDR4} && ping -6 -c1 -W3 {FAR_ADDR6}"],
                 check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{HOST_ADDR4}/24" in r.stdout
    assert f"64 bytes from {GW_ADDR4}" in r.stdout and f"64 bytes from {FAR_ADDR6}" in r.stdout


def test_deleted_tap_ends_the_run_at_once(host):
    """`ip link del` of the namespace's interface: the tap fd polls EPOLLERR for
    ever (it made the worker spin, nearly a CPU, until the command ended);
    now the worker says so and leaves, and pasta exits 1 within a second."""
    guest = host.guest()
    p = host.pasta(guest)
    try:
        w = worker_of(p.pid)
        t0 = time.monotonic()
        guest.run(["ip", "link", "del", "eth0"])
        rc = p.wait(10)
        took = time.monotonic() - t0
        err = p.stderr.read() if p.stderr else ""
        assert rc == 1, err
        assert took < 1.0, (took, err)
        assert "tap device gone, exiting" in err, err
        assert wait_for(lambda: not os.path.exists(f"/proc/{w}"), 5)
    finally:
        stop_process(p)
