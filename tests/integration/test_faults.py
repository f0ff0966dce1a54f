# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults, each with its documented exit status and nothing left behind (docs/faults.md).

pasta attached to a GuestNS (``--netns``) inside a HostNS, or passt on a
socket in a temporary directory. After each fault the test reads back
that nothing stayed: no process of the run (/proc), no tap in the guest
(``ip link``), no forwarded port still bound (/proc/net/tcp of the
HostNS), and the files as documented (PID file, socket file).

The fault isolation tests (worker/faults.py) put a bug into a real flow's
handler with no hook in the product: pasta runs from a runner script that
wraps ``TcpFlows._established`` (or ``Splicer._event``) to raise for one
port, then calls ``passt_sep.main.main`` as ``pasta``. The worker is
forked from that process, so it carries the wrapped method. (The installed
launchers run ``python -I -S``: PYTHONPATH or a sitecustomize could not
put anything into a real pasta.)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netenv import (
    GW_ADDR4,
    PASST,
    PASTA,
    PYTHON,
    GuestNS,
    HostNS,
    cpu_seconds,
    proc_children,
    proc_status,
    stop_process,
    wait_for,
    worker_of,
)

pytestmark = pytest.mark.integration

MIB = 1 << 20
FWD = 10180  # -t FWD: a port the run binds in the HostNS, gone after it

HELPER = textwrap.dedent('''
    """Fault helper: servers print READY <port>; clients print one JSON line."""
    import hashlib, json, random, socket, struct, sys, threading, time

    def data(n, seed):
        return random.Random(seed).randbytes(n)

    def listen(port):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1024)
        print("READY", s.getsockname()[1], flush=True)
        return s

    def serve_reset(port, n, seed, cut):
        """Per connection: send the first `cut` of n seeded bytes, then RST."""
        payload = data(n, seed)
        s = listen(port)
        while True:
            c, _ = s.accept()
            c.sendall(payload[:cut])
            time.sleep(0.3)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()

    def serve(port, n, seed):
        """Per connection: send n seeded bytes, then close."""
        payload = data(n, seed)
        s = listen(port)
        def send(c):
            with c:
                c.sendall(payload)
        while True:
            c, _ = s.accept()
            threading.Thread(target=send, args=(c,), daemon=True).start()

    def hold(port):
        """Accept and keep every connection; echo what comes (threads)."""
        s = listen(port)
        def echo(c):
            while d := c.recv(65536):
                c.sendall(d)
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    def fetch(addr, port, pace=0.0):
        """Read to EOF or error: sha256 of what came, how much, the error
        (pace: seconds to sleep after each read, for a download that lasts)."""
        h, n, err, longest = hashlib.sha256(), 0, None, 0.0
        try:
            # 20 s: session 11 saw the download stop for good after a reconnect
            # (frames refused while no client was there moved SO_PEEK_OFF and
            # left nothing in flight; tests/unit/test_tcp_link_up.py);
            # "longest" is the longest wait for data, for the log
            with socket.create_connection((addr, port), timeout=20) as c:
                t = time.monotonic()
                while d := c.recv(1 << 16):
                    now = time.monotonic()
                    longest, t = max(longest, now - t), now
                    h.update(d)
                    n += len(d)
                    if pace:
                        time.sleep(pace)
                        t = time.monotonic()
        except OSError as e:
            err = type(e).__name__
        print(json.dumps({"sha": h.hexdigest(), "bytes": n, "error": err, "longest": round(longest, 2)}),
              flush=True)

    def many(addr, port, count, keep_bytes):
        """Open `count` connections and keep them; then echo `keep_bytes` seeded
        bytes over the first one and check them (sha256)."""
        conns, refused = [], {}
        for _ in range(count):
            try:
                c = socket.create_connection((addr, port), timeout=5)
                c.sendall(b"x")
                c.settimeout(5)
                if c.recv(1) != b"x":
                    raise OSError("no echo")
                conns.append(c)
            except OSError as e:
                refused[type(e).__name__] = refused.get(type(e).__name__, 0) + 1
        payload = data(keep_bytes, 7)
        first = conns[0]
        threading.Thread(target=first.sendall, args=(payload,), daemon=True).start()
        got = bytearray()
        first.settimeout(20)
        while len(got) < keep_bytes:
            d = first.recv(1 << 16)
            if not d:
                break
            got += d
        ok = hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
        print(json.dumps({"open": len(conns), "refused": refused, "first_ok": ok}), flush=True)

    def burst(addr, port, count):
        """`count` connections that each send a little: how each ended."""
        out = {}
        for _ in range(count):
            try:
                with socket.create_connection((addr, port), timeout=5) as c:
                    c.sendall(b"trigger")
                    c.settimeout(5)
                    c.recv(100)
                    r = "eof"
            except OSError as e:
                r = type(e).__name__
            out[r] = out.get(r, 0) + 1
        print(json.dumps(out), flush=True)

    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(*map(int, args))
    elif cmd == "serve_reset":
        serve_reset(*map(int, args))
    elif cmd == "hold":
        hold(int(args[0]))
    elif cmd == "fetch":
        fetch(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 0.0)
    elif cmd == "many":
        many(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "burst":
        burst(args[0], int(args[1]), int(args[2]))
''')

# A bug put into the product from outside it (module doc): TCP segments with
# data toward PASST_SEP_TEST_FAULT_PORT make the tap path's handler raise;
# events of spliced connections to PASST_SEP_TEST_SPLICE_FAULT_PORT, the
# splice path's.
INJECT = textwrap.dedent('''
    import os
    _port = int(os.environ.get("PASST_SEP_TEST_FAULT_PORT") or 0)
    if _port:
        from passt_sep.worker import tcp as _tcp
        _real = _tcp.TcpFlows._established

        def _established(self, c, p, seg):
            if c.key[3] == _port and seg.dlen:
                raise RuntimeError("injected by the test")
            return _real(self, c, p, seg)

        _tcp.TcpFlows._established = _established
    _sport = int(os.environ.get("PASST_SEP_TEST_SPLICE_FAULT_PORT") or 0)
    if _sport:
        from passt_sep.worker import splice as _splice
        _real_event = _splice.Splicer._event

        def _event(self, c, out, into, ev):
            if c.port == _sport:
                raise RuntimeError("injected by the test (splice)")
            return _real_event(self, c, out, into, ev)

        _splice.Splicer._event = _event
''')


@pytest.fixture
def helper(tmp_path: Path) -> str:
    path = tmp_path / "faults_helper.py"
    path.write_text(HELPER)
    return str(path)



def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _start(host: HostNS, helper: str, *args: str) -> tuple[subprocess.Popen, int]:
    """A helper server in the HostNS; (process, port) once it listens."""
    p = host.popen([PYTHON, helper, *args], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("READY"), line
    return p, int(line.split()[1])


def _json(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"no result: {r.stdout!r} {r.stderr!r}") from None
    return out


def _fwd_bound(host: HostNS) -> bool:
    """Whether the HostNS has a socket listening on FWD (the run's -t port)."""
    text = host.run("cat /proc/net/tcp /proc/net/tcp6").stdout
    return f":{FWD:04X} " in text


def _tap_exists(guest: GuestNS) -> bool:
    return guest.run("ip link show eth0", check=False).returncode == 0


def _nothing_left(host: HostNS, guest: GuestNS | None, pids: list[int]) -> None:
    """No process of the run, no tap in the guest, no forwarded port (read back)."""
    assert wait_for(lambda: not any(alive(p) for p in pids), 5), [p for p in pids if alive(p)]
    if guest is not None:
        assert wait_for(lambda: not _tap_exists(guest), 5), "the tap is still in the guest"
    assert wait_for(lambda: not _fwd_bound(host), 5), "the forwarded port is still bound"


def _pasta(host: HostNS, guest: GuestNS, *args: str, **kw: Any) -> tuple[subprocess.Popen, int]:
    p = host.pasta(guest, "-t", str(FWD), *args, **kw)
    assert wait_for(lambda: worker_of(p.pid), 10)
    w = worker_of(p.pid)
    assert _tap_exists(guest) and _fwd_bound(host)
    return p, w


def _sha_send(guest: GuestNS, port: int, nbytes: int) -> dict[str, Any]:
    from tests.netenv import NETSERVE

    r = guest.run([PYTHON, NETSERVE, "tcp-send", GW_ADDR4, str(port), "--bytes", str(nbytes),
                   "--timeout", "30"], timeout=60, check=False)
    return _json(r)


# -- item 2: fault isolation ---------------------------------------------------------


def _pasta_injected(host: HostNS, guest: GuestNS, tmp_path: Path, *args: str, port: int = 0,
                    splice_port: int = 0) -> tuple[subprocess.Popen, int]:
    """pasta as host.pasta starts it, from a runner script that puts the bug
    in (INJECT) and then calls passt_sep.main.main as ``pasta``."""
    runner = tmp_path / "run_pasta_with_a_bug.py"
    runner.write_text(INJECT + "\nimport sys\nfrom passt_sep.main import main\n"
                      "main(['pasta', *sys.argv[1:]])\n")
    env = dict(os.environ, PASST_SEP_TEST_FAULT_PORT=str(port),
               PASST_SEP_TEST_SPLICE_FAULT_PORT=str(splice_port))
    p = host.popen([PYTHON, str(runner), "-f", "-q", "--config-net", "-t", str(FWD), *args,
                    "--netns", guest.netns_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True, env=env)
    if not wait_for(lambda: "192.0.2.10" in guest.run("ip -4 addr show eth0", check=False).stdout, 15):
        p.terminate()
        raise AssertionError(f"guest not configured: {p.communicate(timeout=10)[1]}")
    assert wait_for(lambda: worker_of(p.pid), 10)
    return p, worker_of(p.pid)


def test_a_faulty_spliced_connection_is_reset_and_another_completes(host: HostNS, tmp_path: Path,
                                                                     helper: str) -> None:
    """The splice path (host loopback to the guest's, -t): the faulty
    connection's both sockets are reset, a 20 MiB spliced transfer at the
    same time arrives whole (sha256)."""
    from tests.netenv import NETSERVE

    good, bad = FWD + 1, FWD + 2
    guest = host.guest()
    guest.serve("tcp-sink", "127.0.0.1", good)
    guest.serve("tcp-sink", "127.0.0.1", bad)
    p, w = _pasta_injected(host, guest, tmp_path, "-t", f"{good},{bad}", splice_port=bad)
    try:
        transfer = host.popen([PYTHON, NETSERVE, "tcp-send", "127.0.0.1", str(good), "--bytes",
                               str(20 * MIB), "--timeout", "30"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.1)
        faulty = _json(host.run([PYTHON, helper, "burst", "127.0.0.1", str(bad), "2"], timeout=60))
        out, _ = transfer.communicate(timeout=60)
        assert json.loads(out.strip().splitlines()[-1])["ok"], out
        assert faulty == {"ConnectionResetError": 2}, faulty
        assert alive(w) and p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=15)
        stop_process(p)
    assert p.returncode == 0, err
    assert err.count("Traceback (most recent call last)") == 1, err
    # (the bug is met first in the broker's reply, which moves what either side sent meanwhile)
    assert "fault 1 in " in err and "fault 2 in " in err and "fault 3 in " not in err, err
    assert "injected by the test (splice)" in err
    _nothing_left(host, guest, [p.pid, w])


def test_a_faulty_flow_is_reset_and_a_concurrent_transfer_completes(host: HostNS, tmp_path: Path,
                                                                     helper: str) -> None:
    """The bug resets its own connection (the guest sees ECONNRESET), its
    traceback is logged once with the count, a 20 MiB transfer running at
    the same time arrives whole (sha256), and the run goes on."""
    from tests.netenv import NETSERVE

    good = host.serve("tcp-sink")
    bad = host.serve("tcp-sink")
    guest = host.guest()
    p, w = _pasta_injected(host, guest, tmp_path, port=bad.port)
    try:
        transfer = guest.popen([PYTHON, NETSERVE, "tcp-send", GW_ADDR4, str(good.port), "--bytes",
                                str(20 * MIB), "--timeout", "30"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.2)  # the transfer is under way
        faulty = _json(guest.run([PYTHON, helper, "burst", GW_ADDR4, str(bad.port), "2"], timeout=60))
        out, _ = transfer.communicate(timeout=60)
        res = json.loads(out.strip().splitlines()[-1])
        assert res["ok"], res
        assert faulty == {"ConnectionResetError": 2}, faulty
        assert _sha_send(guest, good.port, MIB)["ok"]  # a new connection after the faults
        assert alive(w) and p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=15)
        stop_process(p)
    assert p.returncode == 0, err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert "fault 1 in a guest frame of tcp connection" in err, err
    assert "fault 2 in a guest frame of tcp connection" in err and "traceback shown before" in err, err
    assert "RuntimeError: injected by the test" in err
    assert 'in _established' in err
    _nothing_left(host, guest, [p.pid, w])


def test_faults_past_the_rate_end_the_worker(host: HostNS, tmp_path: Path, helper: str) -> None:
    """More than 10 faults in a second: the worker ends with status 3 (fail
    closed), pasta exits 1 saying why."""
    bad = host.serve("tcp-sink")
    guest = host.guest()
    p, w = _pasta_injected(host, guest, tmp_path, port=bad.port)
    try:
        r = guest.run([PYTHON, helper, "burst", GW_ADDR4, str(bad.port), "30"], timeout=120, check=False)
        rc = p.wait(15)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 1, err
    assert "too many faults in flow handlers: 11 faults in 1 s (at most 10); worker exiting" in err, err
    assert "worker exited with status 3, exiting" in err, err
    assert _json(r).get("ConnectionResetError", 0) >= 10, r.stdout  # the 11th fault ends the worker
    _nothing_left(host, guest, [p.pid, w])


# -- item 4: faults ---------------------------------------------------------------------


def test_worker_killed(host: HostNS) -> None:
    guest = host.guest()
    p, w = _pasta(host, guest)
    os.kill(w, signal.SIGKILL)
    try:
        rc = p.wait(10)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 1 and "worker killed by signal SIGKILL, exiting" in err, err
    _nothing_left(host, guest, [p.pid, w])


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "worker-stopped"])
def test_parent_killed_the_worker_dies_too(host: HostNS, stopped: bool) -> None:
    """SIGKILL of the parent: the worker goes too. With the worker stopped
    (SIGSTOP) first it cannot notice its broker socket close: only
    PR_SET_PDEATHSIG (SIGKILL) ends it."""
    guest = host.guest()
    p, w = _pasta(host, guest)
    if stopped:
        os.kill(w, signal.SIGSTOP)
        assert wait_for(lambda: proc_status(w)["State"].startswith("T"), 5)
    os.kill(p.pid, signal.SIGKILL)
    try:
        assert p.wait(10) == -signal.SIGKILL
    finally:
        stop_process(p)
    _nothing_left(host, guest, [p.pid, w])


SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]


@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_signal_while_running_exits_0(host: HostNS, sig: signal.Signals, tmp_path: Path) -> None:
    guest = host.guest()
    pidf = tmp_path / "pid"
    p, w = _pasta(host, guest, "-P", str(pidf))
    assert int(pidf.read_text()) == p.pid
    p.send_signal(sig)
    try:
        rc = p.wait(10)
    finally:
        stop_process(p)
    assert rc == 0
    _nothing_left(host, guest, [p.pid, w])
    assert pidf.exists()  # as passt: the PID file of a run that was set up stays


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b"?"


def _signal_in_setup(p: subprocess.Popen, sig: int) -> int:
    """Send sig as soon as the worker is forked (the first set-up step); the worker's pid."""
    w = 0
    deadline = time.monotonic() + 10
    while not w and time.monotonic() < deadline:
        try:
            kids = proc_children(p.pid)
        except OSError:
            kids = []
        w = next((k for k in kids if _cmdline(k) == _cmdline(p.pid)), 0)  # a fork, not ldconfig
        if not w:
            time.sleep(0.001)
    assert w, "no worker was forked"
    p.send_signal(sig)
    return w


@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_signal_during_setup_pasta(host: HostNS, sig: signal.Signals, tmp_path: Path) -> None:
    """During set-up: exit 0, saying so; no worker, no tap, no port, no PID file."""
    guest = host.guest()
    pidf = tmp_path / "pid"
    p = host.popen([PASTA, "-f", "--config-net", "-t", str(FWD), "-P", str(pidf),
                    "--netns", guest.netns_path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   text=True)
    w = _signal_in_setup(p, sig)
    try:
        rc = p.wait(15)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 0, err
    assert f"{sig.name} during set-up, exiting" in err, err
    assert "Traceback" not in err
    _nothing_left(host, guest, [p.pid, w])
    assert not pidf.exists()


@pytest.mark.parametrize("sig", SIGNALS, ids=[s.name for s in SIGNALS])
def test_signal_during_setup_passt(host: HostNS, sig: signal.Signals, tmp_path: Path) -> None:
    """passt during set-up: exit 0; no worker, no socket file, no PID file."""
    tmp_path.chmod(0o755)
    sock, pidf = tmp_path / "s", tmp_path / "pid"
    p = host.popen([PASST, "-f", "-s", str(sock), "-P", str(pidf), "-t", str(FWD)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    w = _signal_in_setup(p, sig)
    try:
        _out, err = p.communicate(timeout=15)
        rc = p.returncode
    finally:
        stop_process(p)
    assert rc == 0, err
    assert f"{sig.name} during set-up, exiting" in err, err
    _nothing_left(host, None, [p.pid, w])
    assert not sock.exists() and not pidf.exists()


def test_netns_file_deleted(host: HostNS, tmp_path: Path) -> None:
    """As pasta: the bound namespace file goes, the run exits 0 ("Namespace ... is gone")."""
    guest = host.guest()
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["mount", "--bind", guest.netns_path, str(nsfile)], check=True, timeout=10)
    try:
        p = host.popen([PASTA, "-f", "--config-net", "-t", str(FWD), "--netns", str(nsfile)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert wait_for(lambda: _tap_exists(guest) and _fwd_bound(host), 15)
        w = worker_of(p.pid)
    finally:
        subprocess.run(["umount", "-l", str(nsfile)], timeout=10)
        nsfile.unlink()
    try:
        rc = p.wait(10)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 0 and f"Namespace {nsfile} is gone, exiting" in err, err
    _nothing_left(host, guest, [p.pid, w])


@pytest.mark.parametrize("form", ["pid", "netns"])
def test_target_process_ended(host: HostNS, form: str) -> None:
    """As pasta: attached to a process's namespace (``pasta PID``, ``--netns
    /proc/PID/ns/net``), the run exits 0 once that process has ended, though the
    namespace lives on (our tap holds it)."""
    guest = host.guest()
    target = [str(guest.pid)] if form == "pid" else ["--netns", guest.netns_path]
    path = guest.netns_path
    p = host.popen([PASTA, "-f", "--config-net", "-t", str(FWD), *target],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _tap_exists(guest) and _fwd_bound(host), 15)
        w = worker_of(p.pid)
        assert w and p.poll() is None
        guest.close()  # the holder: the namespace's only process
        rc = p.wait(10)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 0 and f"Namespace {path} is gone, exiting" in err, err
    assert "Traceback" not in err
    _nothing_left(host, None, [p.pid, w])


def test_target_process_ended_no_netns_quit(host: HostNS) -> None:
    """--no-netns-quit: the run outlives the namespace's process (until a signal)."""
    guest = host.guest()
    p = host.popen([PASTA, "-f", "--config-net", "--no-netns-quit", "-t", str(FWD), str(guest.pid)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _tap_exists(guest) and _fwd_bound(host), 15)
        w = worker_of(p.pid)
        guest.close()
        time.sleep(2.5)  # past two of the parent's one-second ticks
        assert p.poll() is None and alive(w) and _fwd_bound(host)
        p.terminate()
        rc = p.wait(10)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 0 and "is gone" not in err, err
    _nothing_left(host, None, [p.pid, w])


def test_tap_deleted(host: HostNS) -> None:
    guest = host.guest()
    p, w = _pasta(host, guest)
    guest.run("ip link del eth0")
    try:
        rc = p.wait(10)
        err = p.stderr.read() if p.stderr else ""
    finally:
        stop_process(p)
    assert rc == 1 and "tap device gone, exiting" in err, err
    _nothing_left(host, guest, [p.pid, w])


def test_tap_set_down_then_up(host: HostNS) -> None:
    """Down is not gone (as pasta): the run stays, the worker does not spin
    while the link is down, and once it is up again (the guest restores
    its default route, which the kernel removed) transfers work."""
    server = host.serve("tcp-sink")
    guest = host.guest()
    p, w = _pasta(host, guest)
    try:
        assert _sha_send(guest, server.port, MIB)["ok"]
        guest.run("ip link set eth0 down")
        c0 = cpu_seconds([w])
        time.sleep(2.0)
        assert cpu_seconds([w]) - c0 < 0.3, "the worker spins while the tap is down"
        assert p.poll() is None and alive(w)
        guest.run(f"ip link set eth0 up && ip route replace default via {GW_ADDR4}")
        assert _sha_send(guest, server.port, 4 * MIB)["ok"]
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        stop_process(p)
    assert rc == 0
    _nothing_left(host, guest, [p.pid, w])


def test_download_across_tap_down_and_up(host: HostNS, helper: str) -> None:
    """A download running while the tap is set down for 1.5 s and up again
    goes on and arrives whole: writes to a tap that is down fail (EIO) and
    what they carried is sent again once it is up, from the right place
    (SO_PEEK_OFF put back after a refused frame: tests/unit/test_tcp_link_up.py
    shows that case exactly; whether a write fails here depends on timing)."""
    n = 24 * MIB
    _srv, port = _start(host, helper, "serve", "0", str(n), "13")
    guest = host.guest()
    p, w = _pasta(host, guest)
    try:  # paced: 64 KiB per 5 ms, about 2 s in all, so the gap falls inside it
        down = guest.popen([PYTHON, helper, "fetch", GW_ADDR4, str(port), "0.005"], stdout=subprocess.PIPE,
                           text=True)
        time.sleep(0.3)
        assert down.poll() is None, "the download ended before the tap went down"
        guest.run("ip link set eth0 down")
        time.sleep(1.5)
        guest.run(f"ip link set eth0 up && ip route replace default via {GW_ADDR4}")
        out, _ = down.communicate(timeout=120)
        res = json.loads(out.strip().splitlines()[-1])
        payload = random.Random(13).randbytes(n)
        assert res["bytes"] == n and res["sha"] == hashlib.sha256(payload).hexdigest(), res
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        stop_process(p)
    _nothing_left(host, guest, [p.pid, w])


def test_host_server_resets_mid_transfer(host: HostNS, helper: str) -> None:
    """The guest sees the reset; what it got before is the sent prefix, byte for byte."""
    n, cut = 8 * MIB, 3 * MIB
    _srv, port = _start(host, helper, "serve_reset", "0", str(n), "11", str(cut))
    guest = host.guest()
    p, w = _pasta(host, guest)
    try:
        r = guest.run([PYTHON, helper, "fetch", GW_ADDR4, str(port)], timeout=60, check=False)
        res = _json(r)
        payload = random.Random(11).randbytes(n)
        assert res["error"] == "ConnectionResetError", res
        assert 0 < res["bytes"] <= cut, res
        assert res["sha"] == hashlib.sha256(payload[:res["bytes"]]).hexdigest(), "data invented or lost"
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        stop_process(p)
    _nothing_left(host, guest, [p.pid, w])


def _pasta_wrapped(host: HostNS, guest: GuestNS, prefix: list[str], *args: str) -> tuple[subprocess.Popen, int]:
    """pasta attached to guest, started through ``prefix`` (which must exec it:
    prlimit, unshare + sh -c "... exec"), once the guest is configured."""
    p = host.popen([*prefix, PASTA, "-f", "--config-net", "-t", str(FWD), *args, "--netns", guest.netns_path]
                   if prefix[:1] != ["unshare"] else prefix,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ok = wait_for(lambda: "192.0.2.10" in guest.run("ip -4 addr show eth0", check=False).stdout, 15)
    if not ok:
        p.terminate()
        err = p.communicate(timeout=10)[1]
        raise AssertionError(f"guest not configured: {err}")
    assert wait_for(lambda: worker_of(p.pid), 10)
    return p, worker_of(p.pid)


def test_fds_exhausted_new_flows_reset_existing_go_on(host: HostNS, helper: str) -> None:
    """A budget of 256 fds (RLIMIT_NOFILE of both processes): connections past
    what the tables hold are refused with RST; those open go on (sha256)."""
    _srv, port = _start(host, helper, "hold", "0")
    guest = host.guest()
    p, w = _pasta_wrapped(host, guest, ["prlimit", "--nofile=256:256", "--"])
    try:
        r = guest.run([PYTHON, helper, "many", GW_ADDR4, str(port), "80", str(4 * MIB)], timeout=120,
                      check=False)
        res = _json(r)
        assert res["first_ok"], res
        assert 0 < res["open"] < 80, res
        assert res["refused"].get("ConnectionRefusedError", 0) >= 1, res  # RST to the SYN
        nfds = len(os.listdir(f"/proc/{w}/fd"))  # read back: fails (no pass) if unreadable
        assert nfds <= 256, nfds
        assert p.poll() is None and alive(w)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
        stop_process(p)
    assert rc == 0
    _nothing_left(host, guest, [p.pid, w])


@pytest.mark.parametrize("what", ["log", "pcap"])
def test_disk_full(host: HostNS, tmp_path: Path, what: str) -> None:
    """--log-file or --pcap on a full file system (a 64 KiB tmpfs mounted in
    the run's own mount namespace, 63 KiB of it filled first): one warning on
    stderr, the data path goes on (8 MiB transfers, sha256), the run ends 0."""
    server = host.serve("tcp-sink")
    guest = host.guest()
    d = tmp_path / "small"
    d.mkdir()
    out = ["-l", str(d / "log"), "-d"] if what == "log" else ["-p", str(d / "pcap")]
    cmd = " ".join([PASTA, "-f", "--config-net", "-t", str(FWD), *out, "--netns", guest.netns_path])
    p, w = _pasta_wrapped(host, guest, ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                                        f"mount -t tmpfs -o size=64k none {d} && head -c 63k /dev/zero > {d}/fill && exec {cmd}"])
    try:
        for _ in range(2):
            assert _sha_send(guest, server.port, 8 * MIB)["ok"]
        assert p.poll() is None and alive(w)
    finally:
        p.send_signal(signal.SIGTERM)
        _o, err = p.communicate(timeout=10)
        stop_process(p)
    assert p.returncode == 0, err
    if what == "log":
        warn = [ln for ln in err.splitlines() if "log file: No space left on device, lines are lost" in ln]
    else:
        warn = [ln for ln in err.splitlines() if "pcap: No space left on device, capture stopped" in ln]
    assert len(warn) == 1, err
    assert not os.path.exists(d / "log") and not os.path.exists(d / "pcap")  # the tmpfs was the run's own
    _nothing_left(host, guest, [p.pid, w])


def test_passt_client_reconnects_mid_transfer(host: HostNS, tmp_path: Path) -> None:
    """qemu with reconnect=: the client goes mid-transfer and comes back; passt
    (without --one-off) takes the new connection, its flows were kept, and the
    transfers running across the gap (64 MiB each way) arrive whole (sha256)."""
    from tests.netenv import NETSERVE, TOOLS

    tmp_path.chmod(0o755)
    sock = tmp_path / "s"
    p = host.popen([PASST, "-f", "-s", str(sock), "-t", str(FWD)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: sock.exists() and worker_of(p.pid), 15)
    w = worker_of(p.pid)
    guest = host.guest()
    bridge = guest.popen([PYTHON, str(TOOLS / "streambridge.py"), str(sock), "--gap", "1"],
                         stdout=subprocess.PIPE, text=True)
    assert bridge.stdout is not None
    assert bridge.stdout.readline().startswith("READY")
    helper = tmp_path / "h.py"
    helper.write_text(HELPER)
    n = 64 * MIB
    _srv, port = _start(host, str(helper), "serve", "0", str(n), "5")
    sink = host.serve("tcp-sink")
    try:
        down = guest.popen([PYTHON, str(helper), "fetch", GW_ADDR4, str(port)], stdout=subprocess.PIPE,
                           text=True)
        up = guest.popen([PYTHON, NETSERVE, "tcp-send", GW_ADDR4, str(sink.port), "--bytes", str(n),
                          "--timeout", "60"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        assert down.poll() is None and up.poll() is None, "the transfers ended before the gap"
        bridge.send_signal(signal.SIGUSR1)
        assert bridge.stdout.readline().split() == ["RECONNECTED", "1"]
        out_up, _ = up.communicate(timeout=90)
        assert json.loads(out_up.strip().splitlines()[-1])["ok"], out_up
        out_down, _ = down.communicate(timeout=120)
        res = json.loads(out_down.strip().splitlines()[-1])
        payload = random.Random(5).randbytes(n)
        assert res["bytes"] == n and res["sha"] == hashlib.sha256(payload).hexdigest(), res
        print(f"download: longest wait for data {res['longest']} s")
        assert p.poll() is None and alive(w)
    finally:
        stop_process(bridge)
        p.send_signal(signal.SIGTERM)
        _o, err = p.communicate(timeout=10)
        stop_process(p)
    assert p.returncode == 0, err
    _nothing_left(host, None, [p.pid, w])
    assert sock.exists()  # as passt: the socket file stays (libvirt removes it)


@pytest.mark.parametrize("victim", ["worker", "parent"])
def test_passt_process_killed(host: HostNS, tmp_path: Path, victim: str) -> None:
    """passt: the worker killed ends the run with 1; the parent killed takes
    the worker with it (stopped first: only PR_SET_PDEATHSIG can end it)."""
    tmp_path.chmod(0o755)
    sock = tmp_path / "s"
    p = host.popen([PASST, "-f", "-s", str(sock), "-t", str(FWD)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: sock.exists() and worker_of(p.pid) and _fwd_bound(host), 15)
        w = worker_of(p.pid)
        if victim == "worker":
            os.kill(w, signal.SIGKILL)
            _o, err = p.communicate(timeout=10)
            assert p.returncode == 1 and "worker killed by signal SIGKILL, exiting" in err, err
        else:
            os.kill(w, signal.SIGSTOP)
            assert wait_for(lambda: proc_status(w)["State"].startswith("T"), 5)
            os.kill(p.pid, signal.SIGKILL)
            assert p.wait(10) == -signal.SIGKILL
    finally:
        stop_process(p)
    _nothing_left(host, None, [p.pid, w])
