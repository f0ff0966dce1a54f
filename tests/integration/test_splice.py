# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's splice path: -t from a loopback peer and -T, without the tap.

One pasta attached to a GuestNS inside a HostNS serves the module, with
``--pcap``: a connection from the host's 127.0.0.1 / ::1 to a -t port is
relayed by splice(2) to the namespace's loopback, so the capture of the
tap must not hold a single TCP frame of that port. -T listeners inside
the namespace reach servers on the host's loopback. Every transfer is
checked by sha256.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from passt_sep.setup.sockpool import POOL_SIZE
from tests.netenv import HOST_ADDR4, PYTHON, GuestNS, HostNS
from tests.pcap import ports_in_pcap

pytestmark = pytest.mark.integration

MIB = 1 << 20
BULK = 100 * MIB
T_PORTS = (10100, 10101, 10102, 10103)  # -t 10100-10103
T_MAPPED, T_TARGET = 10105, 10110  # -t 10105:10110
NS_PORTS = (10200, 10201)  # -T 10200-10201
NS_CLOSED = 10202  # -T 10202, nothing listens on the host

HELPER = textwrap.dedent('''
    """Splice test helper: servers print READY <port>, clients one JSON line."""
    import hashlib, json, random, socket, struct, sys, threading, time

    def fam(a):
        return socket.AF_INET6 if ":" in a else socket.AF_INET

    def listen(addr, port):
        s = socket.socket(fam(addr))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam(addr) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(64)
        print("READY", s.getsockname()[1], flush=True)
        return s

    def serve_each(s, conn):
        """conn(c) in a thread of its own for every connection accepted on s."""
        while True:
            c, _ = s.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()

    def serve(addr, port, n, seed, wait_eof, rst):
        """Per connection: (read to EOF first,) send n seeded bytes, close (with a RST)."""
        payload = random.Random(seed).randbytes(n)
        s = listen(addr, port)
        def conn(c):
            if wait_eof:
                while c.recv(65536):
                    pass
            c.sendall(payload)
            if rst:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        serve_each(s, conn)

    def fetch(addr, port, send_first):
        """Connect, optionally send bytes and half-close, read to EOF: sha256."""
        h, n = hashlib.sha256(), 0
        try:
            with socket.create_connection((addr, port), timeout=20) as c:
                if send_first:
                    c.sendall(b"x" * send_first)
                    c.shutdown(socket.SHUT_WR)
                while d := c.recv(1 << 20):
                    h.update(d)
                    n += len(d)
        except OSError as e:
            return {"error": type(e).__name__, "bytes": n}
        return {"sha": h.hexdigest(), "bytes": n}

    def serve_tail(addr, port, n, seed):
        """Per connection: n seeded bytes, the last 100 after a pause; close when told."""
        payload = random.Random(seed).randbytes(n)
        s = listen(addr, port)
        def conn(c):
            c.sendall(payload[:-100])
            time.sleep(0.3)
            c.sendall(payload[-100:])
            c.settimeout(20)
            c.recv(1)  # the client has it all: only now EOF
            c.close()
        serve_each(s, conn)

    def fetch_n(addr, port, n):
        """Read exactly n bytes (no EOF expected before): sha256, then say so."""
        h, got = hashlib.sha256(), 0
        try:
            with socket.create_connection((addr, port), timeout=10) as c:
                while got < n:
                    d = c.recv(min(1 << 20, n - got))
                    if not d:
                        return {"error": "EOF", "bytes": got}
                    h.update(d)
                    got += len(d)
                c.sendall(b"k")
        except OSError as e:
            return {"error": type(e).__name__, "bytes": got}
        return {"sha": h.hexdigest(), "bytes": got}

    def fetch_many(addr, port, count):
        """count connections one after the other, each read to EOF: their sha256s."""
        shas = [fetch(addr, port, 0).get("sha") for _ in range(count)]
        return {"shas": sorted(set(map(str, shas))), "count": len(shas)}

    def serve_hash(addr, port):
        """Per connection: read to EOF, answer with the sha256 (hex) of what came."""
        s = listen(addr, port)
        def conn(c):
            h = hashlib.sha256()
            while d := c.recv(1 << 20):
                h.update(d)
            c.sendall(h.hexdigest().encode())
            c.close()
        serve_each(s, conn)

    def send_hash(addr, port, n, seed):
        """Connect and send n seeded bytes at once (before any reply), half-close,
        read the server's answer: its sha256 of what it got."""
        payload = random.Random(seed).randbytes(n)
        try:
            with socket.create_connection((addr, port), timeout=20) as c:
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                got = b""
                while d := c.recv(256):
                    got += d
        except OSError as e:
            return {"error": type(e).__name__}
        return {"sha": got.decode(errors="replace")}

    def reset_at_once(addr, port, count):
        """count clients that connect and reset (SO_LINGER 0) at once."""
        done = 0
        for _ in range(count):
            c = socket.socket(fam(addr))
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.settimeout(5)
            try:
                c.connect((addr, port))
                done += 1
            except OSError:
                pass
            c.close()
        return {"reset": done}

    mode = sys.argv[1]
    if mode == "serve-hash":
        serve_hash(sys.argv[2], int(sys.argv[3]))
    elif mode == "send-hash":
        print(json.dumps(send_hash(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    elif mode == "reset-at-once":
        print(json.dumps(reset_at_once(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif mode == "fetch-many":
        print(json.dumps(fetch_many(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif mode == "serve-tail":
        serve_tail(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "fetch-n":
        print(json.dumps(fetch_n(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif mode == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
              sys.argv[6] == "1", sys.argv[7] == "1")
    elif mode == "fetch":
        print(json.dumps(fetch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
''')


def expected_sha(n: int, seed: int) -> str:
    """sha256 of the helper's seeded payload."""
    return hashlib.sha256(random.Random(seed).randbytes(n)).hexdigest()


def tcp_ports_in_pcap(path: Path) -> set[int]:
    """Every TCP port (source or destination) of the frames in a pcap file."""
    return ports_in_pcap(path, 6)


class Env:
    """HostNS + GuestNS + one pasta with -t, -T and --pcap."""

    def __init__(self, host: HostNS, guest: GuestNS, helper: Path, pasta: subprocess.Popen,
                 pcap: Path) -> None:
        self.host, self.guest, self.helper, self.pasta, self.pcap = host, guest, helper, pasta, pcap

    def serve(self, ns: HostNS | GuestNS, addr: str, port: int, n: int, seed: int,
              wait_eof: bool = False, rst: bool = False) -> subprocess.Popen:
        return self.serve_mode("serve", ns, addr, port, n, seed, "1" if wait_eof else "0",
                               "1" if rst else "0")

    def serve_mode(self, mode: str, ns: HostNS | GuestNS, addr: str, port: int, *args: object) -> subprocess.Popen:
        p = ns.popen([PYTHON, str(self.helper), mode, addr, str(port), *map(str, args)],
                     stdout=subprocess.PIPE)
        assert p.stdout is not None
        line = p.stdout.readline().decode()  # bounded: the helper prints it or dies
        assert line.startswith("READY"), line
        return p

    def fetch(self, ns: HostNS | GuestNS, addr: str, port: int, send_first: int = 0) -> dict[str, Any]:
        r = ns.run([PYTHON, str(self.helper), "fetch", addr, str(port), str(send_first)],
                   timeout=60, check=False)
        try:
            res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res = {"error": f"exit {r.returncode}: {r.stderr.strip()[-2000:]}"}
        return res

    def alive(self) -> None:
        assert self.pasta.poll() is None, f"pasta exited: {self.pasta.stderr.read() if self.pasta.stderr else ''}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("splice")
    helper = d / "splicehelp.py"
    helper.write_text(HELPER)
    pcap = d / "tap.pcap"
    with HostNS() as host:
        guest = host.guest()
        pasta = host.pasta(guest, "--pcap", str(pcap),
                           "-t", f"{T_PORTS[0]}-{T_PORTS[-1]}", "-t", f"{T_MAPPED}:{T_TARGET}",
                           "-T", f"{NS_PORTS[0]}-{NS_PORTS[-1]}", "-T", str(NS_CLOSED),
                           "-u", "none", "-U", "none")
        yield Env(host, guest, helper, pasta, pcap)


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_bulk_both_ways_without_tap(env: Env, loop: str) -> None:
    port = T_PORTS[0] if loop == "127.0.0.1" else T_PORTS[1]
    # host -> namespace: 100 MiB into a sink bound to the namespace's loopback
    sink = env.guest.serve("tcp-sink", loop, port)
    res = env.host.client("tcp-send", loop, port, "--bytes", str(BULK), "--timeout", "30", timeout=60)
    assert res["ok"], res
    sink.stop()
    # namespace -> host: 100 MiB from a server on the namespace's loopback
    srv = env.serve(env.guest, loop, port, BULK, 5)
    res = env.fetch(env.host, loop, port)
    assert res.get("sha") == expected_sha(BULK, 5) and res["bytes"] == BULK, res
    srv.terminate()
    env.alive()
    ports = tcp_ports_in_pcap(env.pcap)
    assert port not in ports, f"TCP frames of port {port} crossed the tap"


def test_mapped_port(env: Env) -> None:
    srv = env.serve(env.guest, "127.0.0.1", T_TARGET, MIB, 9)
    res = env.fetch(env.host, "127.0.0.1", T_MAPPED)
    assert res.get("sha") == expected_sha(MIB, 9), res
    srv.terminate()


def test_half_close(env: Env) -> None:
    """The client shuts its write side first; the server still sends 1 MiB."""
    srv = env.serve(env.guest, "127.0.0.1", T_PORTS[2], MIB, 3, wait_eof=True)
    res = env.fetch(env.host, "127.0.0.1", T_PORTS[2], send_first=100_000)
    assert res.get("sha") == expected_sha(MIB, 3) and res["bytes"] == MIB, res
    srv.terminate()
    env.alive()


def test_reset_propagated(env: Env) -> None:
    """A server closing with a RST: the host client sees a reset, not a clean EOF."""
    srv = env.serve(env.guest, "127.0.0.1", T_PORTS[3], 10 * MIB, 4, wait_eof=False, rst=True)
    res = env.fetch(env.host, "127.0.0.1", T_PORTS[3])
    assert res.get("error") == "ConnectionResetError" or res.get("bytes", 0) < 10 * MIB, res
    srv.terminate()
    env.alive()


@pytest.mark.parametrize("direction", ["to-host", "to-ns"])
def test_tail_after_bulk_is_not_held_back(env: Env, direction: str) -> None:
    """A bulk burst raises SO_RCVLOWAT on the source socket; the 100 bytes
    sent 0.3 s later (and whatever was left below the mark) must still come
    without waiting for EOF: the server closes only after the client has it all."""
    n = 8 * MIB
    if direction == "to-host":  # namespace server, host client through -t
        srv = env.serve_mode("serve-tail", env.guest, "127.0.0.1", T_PORTS[2], n, 11)
        ns: HostNS | GuestNS = env.host
        port = T_PORTS[2]
    else:  # host server, namespace client through -T
        srv = env.serve_mode("serve-tail", env.host, "127.0.0.1", NS_PORTS[0], n, 12)
        ns, port = env.guest, NS_PORTS[0]
    r = ns.run([PYTHON, str(env.helper), "fetch-n", "127.0.0.1", str(port), str(n)], timeout=30, check=False)
    res = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"error": r.stderr}
    assert res.get("sha") == expected_sha(n, 11 if direction == "to-host" else 12), res
    srv.terminate()
    env.alive()


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_more_connections_than_the_socket_pools_hold(env: Env, loop: str) -> None:
    """The parent connects sockets it made ahead (setup/sockpool.py), the
    namespace's ones made by its namespace thread: 3 x POOL_SIZE connections
    in a row each way drain and refill the pools, and every one must reach
    the server on the right side (its seeded bytes, by sha256), never the
    other side's listener of the same port."""
    count, n = 3 * POOL_SIZE, 64 * 1024
    for ns_srv, ns_cli, port, seed in ((env.guest, env.host, T_PORTS[0] if loop == "127.0.0.1" else T_PORTS[1], 31),
                                       (env.host, env.guest, NS_PORTS[0] if loop == "127.0.0.1" else NS_PORTS[1], 32)):
        srv = env.serve(ns_srv, loop, port, n, seed)
        r = ns_cli.run([PYTHON, str(env.helper), "fetch-many", loop, str(port), str(count)], timeout=60, check=False)
        srv.terminate()
        res = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"error": r.stderr}
        assert res == {"shas": [expected_sha(n, seed)], "count": count}, res
    env.alive()


def test_no_server_in_namespace(env: Env) -> None:
    """Nothing listens on the namespace's loopback: the host client is reset at once."""
    res = env.fetch(env.host, "127.0.0.1", T_PORTS[3])
    assert "error" in res or res["bytes"] == 0, res


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_tcp_ns_to_host_loopback(env: Env, loop: str) -> None:
    """-T: a namespace client reaches a server on the host's loopback."""
    port = NS_PORTS[0] if loop == "127.0.0.1" else NS_PORTS[1]
    sink = env.host.serve("tcp-sink", loop, port)
    res = env.guest.client("tcp-send", loop, port, "--bytes", str(20 * MIB), "--timeout", "30", timeout=60)
    assert res["ok"], res
    sink.stop()
    srv = env.serve(env.host, loop, port, 20 * MIB, 8)
    res = env.fetch(env.guest, loop, port)
    assert res.get("sha") == expected_sha(20 * MIB, 8), res
    srv.terminate()
    env.alive()


def test_tcp_ns_closed_host_port(env: Env) -> None:
    res = env.fetch(env.guest, "127.0.0.1", NS_CLOSED)
    assert "error" in res or res["bytes"] == 0, res
    env.alive()


def test_tap_path_still_used_for_non_loopback(env: Env) -> None:
    """A host client using the host's own address goes over the tap, as before."""
    srv = env.serve(env.guest, "0.0.0.0", T_PORTS[2], MIB, 6)
    res = env.fetch(env.host, HOST_ADDR4, T_PORTS[2])
    assert res.get("sha") == expected_sha(MIB, 6), res
    srv.terminate()
    assert T_PORTS[2] in tcp_ports_in_pcap(env.pcap)


def _run_json(ns: HostNS | GuestNS, env: Env, *args: object) -> dict[str, Any]:
    r = ns.run([PYTHON, str(env.helper), *map(str, args)], timeout=60, check=False)
    try:
        res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        res = {"error": f"exit {r.returncode}: {r.stderr.strip()[-2000:]}"}
    return res


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
@pytest.mark.parametrize("direction", ["to-ns", "to-host"])
def test_data_sent_before_the_splice_is_set_up(env: Env, direction: str, loop: str) -> None:
    """The client writes 4 MiB the moment connect() returns, before the
    other side exists (-T: the parent has not accepted yet; -t: the broker
    has not answered): every byte arrives, in order (the server's sha256 of
    what it read), and the answer comes back. -T connections are accepted
    by the parent, which hands the worker both sockets (setup/nssplice.py)."""
    n, seed = 4 * MIB, 41 if direction == "to-ns" else 42
    if direction == "to-ns":  # host client, -t, server on the namespace's loopback
        srv_ns, cli_ns = env.guest, env.host
        port = T_PORTS[0] if loop == "127.0.0.1" else T_PORTS[1]
    else:  # namespace client, -T, server on the host's loopback
        srv_ns, cli_ns = env.host, env.guest
        port = NS_PORTS[0] if loop == "127.0.0.1" else NS_PORTS[1]
    srv = env.serve_mode("serve-hash", srv_ns, loop, port)
    try:
        for _ in range(3):
            res = _run_json(cli_ns, env, "send-hash", loop, port, n, seed)
            assert res.get("sha") == expected_sha(n, seed), res
    finally:
        srv.terminate()
    env.alive()


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_ns_clients_that_reset_at_once(env: Env, loop: str) -> None:
    """-T: 200 namespace clients reset their connection as soon as it is
    made, so the parent's accept4 (or its connect, or the worker's first
    splice) meets a dead socket. pasta carries on, and the next
    connections are spliced whole (sha256)."""
    port = NS_PORTS[0] if loop == "127.0.0.1" else NS_PORTS[1]
    n, seed = 64 * 1024, 43
    srv = env.serve(env.host, loop, port, n, seed)
    try:
        res = _run_json(env.guest, env, "reset-at-once", loop, port, 200)
        assert res.get("reset") == 200, res
        env.alive()
        res = _run_json(env.guest, env, "fetch-many", loop, port, 20)
        assert res == {"shas": [expected_sha(n, seed)], "count": 20}, res
    finally:
        srv.terminate()
    env.alive()


def _listener_pids(ns: HostNS | GuestNS, port: int) -> dict[str, set[int]]:
    """Local address -> pids holding a TCP listener of port (ss -ltnp)."""
    out = ns.run(["ss", "-Htlnp", f"sport = :{port}"]).stdout
    got: dict[str, set[int]] = {}
    for line in out.splitlines():
        fields = line.split()
        local = fields[3].rsplit(":", 1)[0]
        got.setdefault(local, set()).update(int(m) for m in re.findall(r"pid=(\d+)", line))
    return got


def test_who_accepts_what(env: Env) -> None:
    """-T listeners (the namespace's loopback) and the loopback twins of a
    -t listener belong to the parent, which accepts on them; the -t
    wildcard listener (everything not sent to the loopback: the tap path)
    to the worker alone. Read back from the kernel (ss -p)."""
    parent = env.pasta.pid
    worker = set(map(int, Path(f"/proc/{parent}/task/{parent}/children").read_text().split()))
    assert len(worker) == 1, worker
    t = _listener_pids(env.host, T_PORTS[0])
    assert t == {"127.0.0.1": {parent}, "[::1]": {parent}, "*": worker}, t
    ns_t = _listener_pids(env.guest, NS_PORTS[0])
    assert ns_t == {"127.0.0.1": {parent}, "[::1]": {parent}}, ns_t


JOIN = textwrap.dedent('''
    import errno, json, os, socket, sys
    uid, port = int(sys.argv[1]), int(sys.argv[2])
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    res = {}
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((addr, port))  # never listen(): a bind is enough to tell, and steals nothing
            res[addr] = "bound"
        except OSError as e:
            res[addr] = errno.errorcode.get(e.errno, str(e.errno))
        s.close()
    print(json.dumps(res))
''')


def test_other_users_cannot_join_the_twins(env: Env, tmp_path: Path) -> None:
    """The -t listener and its loopback twins share their port through
    SO_REUSEPORT. The kernel lets a socket join such a port only for the
    user that made them: pasta runs as root here and made them before it
    changed to nobody, so nobody (what the parent runs as afterwards, and
    what many daemons run as) gets EADDRINUSE on the loopback and the
    wildcard address alike. The control: root, the owner, may bind beside
    them (only bind, never listen: no connection is taken)."""
    script = tmp_path / "join.py"
    script.write_text(JOIN)

    def attempt(uid: int) -> dict[str, str]:
        r = env.host.run([PYTHON, str(script), str(uid), str(T_PORTS[0])], check=False)
        return json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {"error": r.stderr}

    assert attempt(65534) == {"127.0.0.1": "EADDRINUSE", "0.0.0.0": "EADDRINUSE", "::1": "EADDRINUSE"}
    assert attempt(0) == {"127.0.0.1": "bound", "0.0.0.0": "bound", "::1": "bound"}
    res = env.fetch(env.host, "127.0.0.1", T_PORTS[0])  # still served: nothing was taken
    assert "error" in res or res["bytes"] == 0, res  # no server in the namespace: reset (as test_no_server...)
    env.alive()
