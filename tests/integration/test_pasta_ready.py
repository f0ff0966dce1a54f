# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's tap ready before the client looks (issue 20, item 3).

When pasta attaches to an existing namespace (``--netns PATH``, a PID), the
first stage (passt_sep.early) makes the tap there before the rest of the
program loads, and the full run adopts it (setup/tap.py):

- the tap exists within a (generous) bound of exec, and the run then works
  end to end on the adopted fd (ping, TCP with sha256);
- the first stage leaves the process where it was: network, user, mount
  namespaces read back from /proc/self/ns, one thread, the fd CLOEXEC, the
  tap in the target namespace and not in ours;
- where the full parse disagrees (another name, an option it refuses) the
  early tap is closed, and no stray tap is left in the namespace;
- where the first stage is unsure (-i), the full run makes the tap itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.netenv import (
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    PASTA,
    PYTHON,
    REPO,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

ADOPTED = "made by the first stage, adopted"




NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]


def links(ns, pid: int | None = None) -> list[str]:
    """Interface names in a namespace (pid: the network namespace of that
    process, entered with its user namespace, from ns)."""
    cmd = "ip -o link show" if pid is None else ["nsenter", "-t", str(pid), "-U", "-n", "ip", "-o", "link", "show"]
    out = ns.run(cmd, check=False).stdout
    return [ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines() if ":" in ln]


def nobodys_namespace(host: HostNS) -> int:
    """A process of uid 65534 in a user + network namespace of its own: its pid."""
    h = host.popen([*NOBODY, "unshare", "-U", "-r", "-n", "sleep", "120"])
    before = {os.readlink(host.userns_path), os.readlink("/proc/self/ns/user")}  # nsenter's, then ours
    assert wait_for(lambda: os.readlink(f"/proc/{h.pid}/ns/user") not in before, 10)
    return h.pid


def test_the_tap_exists_soon_after_exec(host):
    """bench/ready.py's measurement, in here: exec to the tap in the guest."""
    guest = host.guest()
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.ready import one_pasta; "
            f"print(min(one_pasta([{PASTA!r}, '--runas', '0:0'], {guest.netns_path!r}, 'eth0') "
            "for _ in range(3)))")
    took = float(host.run([PYTHON, "-c", code], timeout=60).stdout.strip().splitlines()[-1])
    # 10-20 ms (docs/performance.md); without the first stage's tap the best
    # of three is 90 ms or more on the same machine, C pasta's 35 ms or more
    assert took < 0.06, took


def test_adopted_tap_carries_traffic(host, tmp):
    """The run goes on with the first stage's tap: --config-net, ping, TCP out with sha256."""
    guest = host.guest()
    sink = host.serve("tcp-sink", "127.0.0.1")
    logf = tmp / "log"
    p = host.pasta(guest, "-d", "-l", str(logf), quiet=False)
    try:
        r = guest.run(f"ping -c1 -W3 {GW_ADDR4} && ping -6 -c1 -W3 {GW_ADDR6}", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        res = guest.client("tcp-send", GW_ADDR4, sink.port, "--bytes", str(1 << 20))
        assert res["ok"], res
        assert ADOPTED in logf.read_text()
        assert links(guest) == ["lo", "eth0"]
    finally:
        stop_process(p)
    assert wait_for(lambda: "eth0" not in links(guest), 5)  # gone with the run



def test_daemon_mode_adopts(host, tmp):
    """Without -f, as podman starts it: the launcher exits 0 once set-up is
    done, the daemon goes on with the first stage's tap."""
    guest = host.guest()
    logf = tmp / "log"
    r = host.run([PASTA, "-d", "-l", str(logf), "--config-net", "--netns", guest.netns_path], timeout=30)
    assert r.returncode == 0
    r = guest.run(f"ping -c1 -W3 {GW_ADDR4}", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ADOPTED in logf.read_text()
    assert links(guest) == ["lo", "eth0"]


PROBE = textwrap.dedent("""
    import fcntl, json, os, socket, sys, time
    sys.path.insert(0, sys.argv[1])
    from passt_sep import early
    netns, other = sys.argv[2], sys.argv[3]
    NS = ("net", "user", "mnt", "uts", "ipc", "pid")
    def where():
        return {n: os.readlink(f"/proc/self/ns/{n}") for n in NS}
    def threads():
        for _ in range(200):  # the thread has released its lock; it ends at once
            with open("/proc/self/status") as f:
                n = int(next(ln for ln in f if ln.startswith("Threads:")).split()[1])
            if n == 1:
                break
            time.sleep(0.005)
        return n
    userns = sys.argv[4:]  # the child path: join this user namespace first
    before = where()
    e = early.early_tap(["-f", "-I", "tq0", *(["--userns", userns[0]] if userns else []), "--netns", netns])
    try:
        os.waitpid(-1, os.WNOHANG)
        children = True
    except ChildProcessError:
        children = False
    try:
        socket.if_nametoindex("tq0")
        here = True
    except OSError:
        here = False
    print(json.dumps({"made": e is not None, "before": before, "after": where(), "threads": threads(),
                      "cloexec": bool(e and fcntl.fcntl(e.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
                      "here": here, "children": children}), flush=True)
    sys.stdin.readline()
    fd = os.open(other, os.O_RDONLY)
    wrong_ns = e.take(fd, "tq0")  # another namespace: not ours to hand over, closed
    print(json.dumps({"taken": wrong_ns is not None, "fd": e.fd}), flush=True)
""")


def test_first_stage_leaves_the_process_where_it_was(host, tmp):
    guest = host.guest()
    other = host.guest()
    script = tmp / "probe.py"
    script.write_text(PROBE)
    p = host.popen([PYTHON, "-I", str(script), str(REPO), guest.netns_path, other.netns_path],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        assert first["made"], p.stderr.read() if p.poll() is not None else first
        assert first["after"] == first["before"]
        assert first["before"]["net"] != os.readlink(guest.netns_path)  # it did go somewhere else
        assert first["threads"] == 1
        assert first["cloexec"] and not first["here"] and not first["children"]
        assert "tq0" in links(guest) and "tq0" not in links(other)
        p.stdin.write("\n")
        p.stdin.flush()
        second = json.loads(p.stdout.readline())
        assert second == {"taken": False, "fd": None}
        assert wait_for(lambda: "tq0" not in links(guest), 5), links(guest)  # closed: the tap is gone
        assert p.wait(10) == 0
    finally:
        stop_process(p)



def test_child_joins_the_user_namespace_the_process_stays(host, tmp):
    """As uid 65534 (no CAP_SYS_ADMIN) with --userns: a forked child joins
    the user namespace and makes the tap; the process's own namespaces are
    as before, the child is reaped, the fd arrives CLOEXEC."""
    pid = nobodys_namespace(host)
    script = tmp / "probe.py"
    script.write_text(PROBE)
    p = host.popen([*NOBODY, PYTHON, "-I", str(script), str(REPO), f"/proc/{pid}/ns/net",
                    f"/proc/{pid}/ns/net", f"/proc/{pid}/ns/user"],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(p.stdout.readline())
        assert first["made"], first
        assert first["after"] == first["before"]
        assert first["before"]["user"] != os.readlink(f"/proc/{pid}/ns/user")
        assert first["threads"] == 1 and first["cloexec"] and not first["here"] and not first["children"]
        assert "tq0" in links(host, pid)
        p.stdin.write("\n")
        p.stdin.flush()
        # "other" is the same namespace here: the name decides, tq0 is what it asked for
        assert json.loads(p.stdout.readline()) == {"taken": True, "fd": None}
        assert p.wait(10) == 0
        assert wait_for(lambda: "tq0" not in links(host, pid), 5)  # its last fd went with the probe
    finally:
        stop_process(p)


def test_unprivileged_userns_run_adopts_and_works(host, tmp):
    """pasta --userns U --netns N as uid 65534: adopted, configured, ping through it."""
    pid = nobodys_namespace(host)
    logf = tmp / "log"
    tmp.chmod(0o777)
    p = host.popen([*NOBODY, PASTA, "-f", "-d", "-l", str(logf), "--config-net",
                    "--userns", f"/proc/{pid}/ns/user", "--netns", f"/proc/{pid}/ns/net"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        inside = ["nsenter", "-t", str(pid), "-U", "-n", "--"]
        assert wait_for(lambda: HOST_ADDR4 in host.run([*inside, "ip", "-4", "addr"], check=False).stdout, 15)
        r = host.run([*inside, "ping", "-c1", "-W3", GW_ADDR4], check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ADOPTED in logf.read_text()
        assert links(host, pid) == ["lo", "eth0"]
    finally:
        stop_process(p)


DISAGREE = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from passt_sep import early, main
    netns, log = sys.argv[2], sys.argv[3]
    e = early.early_tap(["-I", "wr0", "--netns", netns])  # what a first stage might have made
    assert e is not None
    main.main(["pasta", "-f", "-d", "-l", log, "--config-net", "--netns", netns], e)
""")


def test_early_tap_discarded_when_the_full_parse_disagrees(host, tmp):
    """The full run wants eth0 (the template's name): the early wr0 is closed,
    eth0 is made and works, and no wr0 is left behind."""
    guest = host.guest()
    script, logf = tmp / "disagree.py", tmp / "log"
    script.write_text(DISAGREE)
    p = host.popen([PYTHON, "-I", str(script), str(REPO), guest.netns_path, str(logf)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout, 15), \
            p.stderr.read() if p.poll() is not None else "not configured"
        assert links(guest) == ["lo", "eth0"]
        r = guest.run(f"ping -c1 -W3 {GW_ADDR4}", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ADOPTED not in logf.read_text()
    finally:
        stop_process(p)


SPAWN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from passt_sep import early, main
    e = early.early_tap(["-I", "sp0", "--netns", sys.argv[2]])
    assert e is not None
    print("made", flush=True)
    sys.stdin.readline()
    main.main(["pasta", "-q", "--config-net", "--", "sleep", "6"], e)
""")


def test_early_tap_discarded_when_the_full_run_spawns(host, tmp):
    """The full parse says: a command of its own. The early tap is closed
    at once, not left for the length of the run."""
    guest = host.guest()
    script = tmp / "spawn.py"
    script.write_text(SPAWN)
    p = host.popen([PYTHON, "-I", str(script), str(REPO), guest.netns_path],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline() == "made\n"
        assert "sp0" in links(guest)
        p.stdin.write("\n")
        p.stdin.flush()
        assert wait_for(lambda: "sp0" not in links(guest), 4)
        assert p.poll() is None  # while the run goes on
    finally:
        stop_process(p)


def test_full_parse_refuses_no_tap_left(host):
    """The first stage is sure (it does not check values); the full parse
    refuses -m 99999: one line, exit 1, and the early tap went with the process."""
    guest = host.guest()
    r = host.run([PASTA, "-f", "-m", "99999", "--netns", guest.netns_path], check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "--mtu" in r.stderr, r.stderr
    assert links(guest) == ["lo"]


def test_unsure_first_stage_leaves_it_to_the_full_run(host, tmp):
    """-i steers the template interface: the first stage does nothing, the run makes the tap."""
    guest = host.guest()
    logf = tmp / "log"
    p = host.pasta(guest, "-d", "-l", str(logf), "-i", "eth0", quiet=False)
    try:
        r = guest.run(f"ping -c1 -W3 {GW_ADDR4}", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        log = logf.read_text()
        assert ADOPTED not in log and "tap device eth0 ready" in log
    finally:
        stop_process(p)


TEMPLATE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from passt_sep import early
    from passt_sep.cli import PASTA, parse_args
    from passt_sep.config import build_config
    from passt_sep.errors import SetupError
    from passt_sep.setup.hostaddr import read_host
    try:
        full = build_config(parse_args(PASTA, []), read_host()).ns_ifname
    except SetupError:
        full = None
    print(json.dumps([early.template_ifname(), full]))
""")


@pytest.mark.parametrize("commands, sure", [
    ([], True),
    (["ip route del default"], True),  # no IPv4 default route: IPv6's
    (["ip route del default", "ip -6 route del default"], False),
    (["ip route add default via 192.0.2.2 metric 500"], False),  # two: not sure
    (["ip route replace default dev eth0"], False),  # no gateway: the full run skips IPv4
    (["ip route del default", "ip -6 route replace default dev eth0"], False),
])
def test_template_name_agrees_with_the_full_run(host, tmp, commands, sure):
    """The first stage's name is the full run's, or it says it is not sure."""
    host.configure(commands)
    script = tmp / "template.py"
    script.write_text(TEMPLATE)
    ours, full = json.loads(host.run([PYTHON, "-I", str(script), str(REPO)]).stdout)
    if sure:
        assert ours == full == "eth0"
    else:
        assert ours is None, (ours, full)



def test_a_fifo_as_netns_fails_the_full_run_with_one_line(host: HostNS, tmp: Path) -> None:
    """--netns naming a FIFO: the full run opens it without blocking too
    (O_NONBLOCK), sees it is no namespace (NS_GET_NSTYPE) and exits 1 with
    a line naming it, not hanging."""
    fifo = tmp / "ns"
    os.mkfifo(fifo)
    r = host.run([PASTA, "-f", "--netns", str(fifo)], timeout=20, check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, r.stderr
    assert lines and lines[-1] == f"pasta: network namespace {fifo}: not a network namespace file", r.stderr
    assert "Traceback" not in r.stderr
