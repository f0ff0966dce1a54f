# SPDX-License-Identifier: GPL-2.0-or-later
"""The control API (--api-socket, setup/api.py) with real processes in test namespaces.

pasta attached to a GuestNS inside a HostNS serves slirp4netns's JSON API
on a UNIX socket: add_hostfwd makes a forward that carries TCP (sha256 of
a bulk transfer) and UDP from the host's loopback into the namespace,
list_hostfwd shows it, remove_hostfwd makes it stop answering and frees
the port; slirp4netns's error texts; list_flows and stats from the worker;
the ``passt-sep ctl`` client's exit statuses; the socket's mode and owner;
hostile clients do not stall a transfer. One passt-mode test drives a
forward to a guest that is this test speaking frames on passt's socket.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_passt_mode import check_arp_reply
from tests.netenv import (
    GW_ADDR4,
    HOST_ADDR4,
    PASST,
    PASTA,
    PYTHON,
    REPO,
    GuestNS,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

MIB = 1 << 20
PASST_SEP = str(REPO / ".venv" / "bin" / "passt-sep")

BIND_CHECK = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[2] == 'tcp' else socket.SOCK_DGRAM)\n"
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "try:\n"
              "    s.bind(('0.0.0.0', int(sys.argv[1])))\n"
              "    print('free')\n"
              "except OSError as e:\n"
              "    print('busy', e.errno)\n")


def api(path: str | Path, req: bytes | dict, timeout: float = 10) -> bytes:
    """One request, half-close, the whole reply (raw bytes)."""
    raw = req if isinstance(req, bytes) else json.dumps(req).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered (too large) and closed before the rest
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def call(path: str | Path, execute: str, **args: object) -> dict:
    req: dict[str, object] = {"execute": execute}
    if args:
        req["arguments"] = args
    return json.loads(api(path, req))


def port_free(ns: HostNS | GuestNS, port: int, proto: str = "tcp") -> bool:
    return ns.run([PYTHON, "-c", BIND_CHECK, str(port), proto], timeout=10).stdout.strip() == "free"


def send_ok(ns: HostNS | GuestNS, addr: str, port: int, n: int = MIB) -> bool:
    res = ns.client("tcp-send", addr, port, "--bytes", str(n), "--timeout", "5", timeout=30)
    return bool(res.get("ok"))


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[HostNS, GuestNS, subprocess.Popen, Path]]:
    with tempfile.TemporaryDirectory(prefix="passt-api-") as d, HostNS() as host:
        path = Path(d) / "api.sock"
        guest = host.guest()
        pasta = host.pasta(guest, "--runas", "0", "--api-socket", str(path))
        assert wait_for(path.exists, 10)
        yield host, guest, pasta, path
        stop_process(pasta)
        assert not path.exists(), "API socket not removed at exit"


def test_add_list_remove_tcp(env: tuple) -> None:
    host, guest, pasta, path = env
    hport, gport = 10501, 10511
    srv = guest.serve("tcp-sink", "0.0.0.0", gport)
    try:
        raw = api(path, {"execute": "add_hostfwd", "arguments": {
            "proto": "tcp", "host_addr": "0.0.0.0", "host_port": hport, "guest_port": gport}})
        rep = json.loads(raw)
        fid = rep["return"]["id"]
        assert raw == b'{"return":{"id":%d}}' % fid  # slirp4netns's bytes
        assert send_ok(host, "127.0.0.1", hport, 8 * MIB)  # spliced into the namespace's loopback
        assert send_ok(host, HOST_ADDR4, hport, 8 * MIB)  # over the tap, to the guest's address
        listed = call(path, "list_hostfwd")
        entries = listed["return"]["entries"]
        assert listed["entries"] == entries  # slirp4netns's code's shape too
        guest_addr = HOST_ADDR4  # pasta's guest has the host's address
        assert {"id": fid, "proto": "tcp", "host_addr": "0.0.0.0", "host_port": hport,
                "guest_addr": guest_addr, "guest_port": gport} in entries
        assert api(path, {"execute": "remove_hostfwd", "arguments": {"id": fid}}) == b'{"return":{}}'
        assert wait_for(lambda: port_free(host, hport), 5), "port not released"
        assert not send_ok(host, "127.0.0.1", hport, 1000)
        assert all(e["id"] != fid for e in call(path, "list_hostfwd")["return"]["entries"])
    finally:
        srv.stop()
    assert pasta.poll() is None


def test_add_udp(env: tuple) -> None:
    host, guest, pasta, path = env
    hport, gport = 10502, 10512
    srv = guest.serve("udp-echo", "0.0.0.0", gport)
    try:
        fid = call(path, "add_hostfwd", proto="udp", host_port=hport, guest_port=gport,
                   guest_addr="")["return"]["id"]
        res = host.client("udp-echo-check", "127.0.0.1", hport, "--count", "20", timeout=30)
        assert res.get("ok"), res
        assert call(path, "remove_hostfwd", id=fid) == {"return": {}}
        assert wait_for(lambda: port_free(host, hport, "udp"), 5), "UDP port not released"
    finally:
        srv.stop()


def test_remove_then_add_the_same_port_at_once(env: tuple) -> None:
    """remove_hostfwd's drop is a message to the worker; an add_hostfwd of the
    same port right after it waits for the port (retried from the loop), it
    does not fail. 40 rounds while a transfer keeps the worker busy, then the
    last forward carries a transfer (sha256)."""
    host, guest, pasta, path = env
    hport, gport, bport = 10541, 10542, 10543
    srv = guest.serve("tcp-sink", "0.0.0.0", gport)
    busy = call(path, "add_hostfwd", proto="tcp", host_port=bport, guest_port=gport)["return"]["id"]
    results: dict[str, object] = {}
    t = threading.Thread(target=lambda: results.update(ok=send_ok(host, "127.0.0.1", bport, 64 * MIB)))
    try:
        t.start()
        fid = call(path, "add_hostfwd", proto="tcp", host_port=hport, guest_port=gport)["return"]["id"]
        for _ in range(40):
            assert call(path, "remove_hostfwd", id=fid) == {"return": {}}
            rep = call(path, "add_hostfwd", proto="tcp", host_port=hport, guest_port=gport)
            assert "return" in rep, rep
            fid = rep["return"]["id"]
        t.join(60)
        assert results.get("ok"), results
        assert call(path, "stats")["return"]["parent"]["api_add_retries"] >= 0
        assert send_ok(host, "127.0.0.1", hport, 4 * MIB)
        assert call(path, "remove_hostfwd", id=fid) == {"return": {}}
        assert call(path, "remove_hostfwd", id=busy) == {"return": {}}
    finally:
        t.join(60)
        srv.stop()


def test_error_texts(env: tuple) -> None:
    host, guest, pasta, path = env
    desc = lambda raw: json.loads(raw)["error"]["desc"]  # noqa: E731
    assert api(path, b"badjson") == b'{"error":{"desc":"bad request: cannot parse JSON"}}'
    assert desc(api(path, b"[1, 2]")) == "bad request: json_object() failed"
    assert desc(api(path, b'{"unexpectedjson": 42}')) == "bad request: no execute found"
    assert desc(api(path, b'{"execute": "bad"}')) == "bad request: unknown execute"
    assert desc(api(path, b'{"execute": "add_hostfwd", "arguments":{"proto": "bad"}}')) == \
        "bad request: add_hostfwd: bad arguments.proto"
    base = {"proto": "tcp", "host_port": 10503, "guest_port": 80}
    for key, val in (("host_addr", "nonsense"), ("host_port", 0), ("host_port", "80"),
                     ("guest_addr", "10.9.9.9"), ("guest_addr", "x"), ("guest_port", 70000)):
        assert desc(api(path, {"execute": "add_hostfwd", "arguments": base | {key: val}})) == \
            f"bad request: add_hostfwd: bad arguments.{key}"
    assert desc(api(path, b'{"execute": "remove_hostfwd", "arguments": {"id": 999}}')) == \
        "bad request: remove_hostfwd: bad arguments.id"
    assert desc(api(path, b'{"execute": "remove_hostfwd"}')) == "bad request: remove_hostfwd: bad arguments.id"
    # a port in use on the host: slirp4netns's failure text
    busy = host.serve("tcp-sink", "0.0.0.0", 10504)
    try:
        assert desc(api(path, {"execute": "add_hostfwd", "arguments": base | {"host_port": 10504}})) == \
            "bad request: add_hostfwd: slirp_add_hostfwd failed"
    finally:
        busy.stop()
    # the same port twice through the API
    fid = call(path, "add_hostfwd", **base | {"host_port": 10505})["return"]["id"]
    assert desc(api(path, {"execute": "add_hostfwd", "arguments": base | {"host_port": 10505}})) == \
        "bad request: add_hostfwd: slirp_add_hostfwd failed"
    assert call(path, "remove_hostfwd", id=fid) == {"return": {}}
    assert desc(api(path, b"x" * (64 * 1024 + 10))) == "bad request: too large message"
    assert pasta.poll() is None


def test_list_flows_and_stats(env: tuple) -> None:
    host, guest, pasta, path = env
    before = call(path, "stats")["return"]
    assert set(before) >= {"frames_from_guest", "bytes_from_guest", "drops", "tcp", "udp", "icmp",
                           "tcp_splice", "udp_splice", "parent"}
    assert "broker_refused" in before["parent"]
    srv = host.serve("tcp-echo", "127.0.0.1", 10506)
    # a long-lived connection from the guest to the gateway (mapped to the host's loopback): a tap flow
    holder = guest.popen([PYTHON, "-c", (
        "import socket, sys, time\n"
        f"s = socket.create_connection(('{GW_ADDR4}', 10506), timeout=5)\n"
        "s.sendall(b'x'); s.recv(1); print('up', flush=True); time.sleep(20)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"

        def seen() -> bool:
            fl = call(path, "list_flows")["return"]["flows"]
            return any(f["proto"] == "tcp" and f["host"] == f"{GW_ADDR4}:10506"
                       and f["state"].startswith("ESTABLISHED") for f in fl)

        assert wait_for(seen, 5), call(path, "list_flows")
        # and a spliced one: the host's loopback through an API forward to the namespace's
        gsrv = guest.serve("tcp-echo", "0.0.0.0", 10516)
        fid = call(path, "add_hostfwd", proto="tcp", host_port=10526, guest_port=10516)["return"]["id"]
        hold2 = host.popen([PYTHON, "-c", (
            "import socket, time\n"
            "s = socket.create_connection(('127.0.0.1', 10526), timeout=5)\n"
            "s.sendall(b'x'); s.recv(1); print('up', flush=True); time.sleep(20)\n")],
            stdout=subprocess.PIPE, text=True)
        try:
            assert hold2.stdout is not None and hold2.stdout.readline().strip() == "up"
            fl = call(path, "list_flows")["return"]["flows"]
            assert {"proto": "tcp-splice", "guest": "loopback:10516", "host": "loopback",
                    "state": "ESTABLISHED inbound"} in fl, fl
            assert call(path, "stats")["return"]["tcp_splice"]["open"] >= 1
        finally:
            stop_process(hold2)
            gsrv.stop()
            call(path, "remove_hostfwd", id=fid)
        after = call(path, "stats")["return"]
        assert after["frames_from_guest"]["tcp"] > before["frames_from_guest"].get("tcp", 0)
        assert after["frames_from_guest"]["total"] > before["frames_from_guest"]["total"]
        assert after["tcp"]["open"] >= 1
    finally:
        stop_process(holder)
        srv.stop()


def test_ctl_client(env: tuple) -> None:
    host, guest, pasta, path = env

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PASST_SEP, "ctl", *args], capture_output=True, text=True, timeout=30)

    r = ctl(str(path), "add_hostfwd", '{"proto": "tcp", "host_port": 10507, "guest_port": 10517}')
    assert r.returncode == 0, r.stderr
    fid = json.loads(r.stdout)["return"]["id"]
    r = ctl(str(path), "list_hostfwd")
    assert r.returncode == 0 and any(e["id"] == fid for e in json.loads(r.stdout)["return"]["entries"])
    r = ctl(str(path), "remove_hostfwd", json.dumps({"id": fid}))
    assert r.returncode == 0 and json.loads(r.stdout) == {"return": {}}
    r = ctl(str(path), "remove_hostfwd", json.dumps({"id": fid}))
    assert r.returncode == 1
    assert r.stderr.strip() == "passt-sep ctl: bad request: remove_hostfwd: bad arguments.id"
    r = ctl(str(path) + ".missing", "stats")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "No such file or directory" in r.stderr
    r = ctl(str(path), "add_hostfwd", "{not json")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    r = ctl(str(path), "stats")
    assert r.returncode == 0 and "tcp" in json.loads(r.stdout)["return"]


def test_trickled_request_and_nc(env: tuple) -> None:
    """A request that comes a byte at a time, without a half-close, is answered
    once complete; so is nc -U's (echo | nc -U, as slirp4netns's man page shows)."""
    _host, _guest, pasta, path = env
    req = b'{"execute": "list_hostfwd"}'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        t0 = time.monotonic()
        for i in range(len(req)):
            s.send(req[i:i + 1])
            time.sleep(0.005)
        reply = s.recv(65536)
        assert json.loads(reply)["return"]["entries"] is not None
        assert time.monotonic() - t0 < 1.5  # answered at the closing brace, not at the deadline
    if shutil.which("nc"):
        r = subprocess.run(f"echo '{req.decode()}' | nc -U {path}", shell=True, capture_output=True,
                           timeout=15, text=True)
        assert "entries" in json.loads(r.stdout.strip())["return"], r
    assert pasta.poll() is None


def test_socket_mode_and_owner(env: tuple) -> None:
    _host, _guest, _pasta, path = env
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)  # --runas 0: the user the parent runs as


def test_owner_is_the_dropped_user_and_socket_removed(host: HostNS) -> None:
    """Without --runas, root drops to nobody: the socket is nobody's, and nobody removes it at exit."""
    with tempfile.TemporaryDirectory(prefix="passt-api-") as d:
        os.chmod(d, 0o1777)  # sticky, like /tmp: nobody may remove its own file here
        path = Path(d) / "api.sock"
        guest = host.guest()
        pasta = host.pasta(guest, "--api-socket", str(path))
        try:
            assert wait_for(path.exists, 10)
            st = os.lstat(path)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert st.st_uid == 65534, st.st_uid
            assert call(path, "list_hostfwd") == {"return": {"entries": []}, "entries": []}
        finally:
            stop_process(pasta)
        assert pasta.returncode == 0
        assert not path.exists()


def test_hostile_clients_do_not_stall_a_transfer(env: tuple) -> None:
    host, guest, pasta, path = env
    hport, gport = 10508, 10518
    srv = guest.serve("tcp-sink", "0.0.0.0", gport)
    fid = call(path, "add_hostfwd", proto="tcp", host_port=hport, guest_port=gport)["return"]["id"]
    idle: list[socket.socket] = []
    results: dict[str, object] = {}
    try:
        for _ in range(12):  # more than MAX_CLIENTS, idle: dropped after the timeout
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(path))
            idle.append(s)

        def transfer() -> None:
            results["ok"] = send_ok(host, "127.0.0.1", hport, 32 * MIB)

        t = threading.Thread(target=transfer)
        t.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as big:  # 1 MiB request
            big.settimeout(10)
            try:
                big.connect(str(path))
                big.sendall(b"{" * MIB)
            except OSError:
                pass  # cut off: that is allowed
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as junk:
            junk.settimeout(10)
            try:
                junk.connect(str(path))
                junk.sendall(os.urandom(4096))
            except OSError:
                pass
        t.join(60)
        assert not t.is_alive() and results.get("ok"), results
        # idle clients were dropped (EOF), and the API still answers
        t0 = time.monotonic()
        for s in idle:
            s.settimeout(5)
            try:
                assert s.recv(1) == b""
            except OSError:
                pass
        assert time.monotonic() - t0 < 10
        assert call(path, "remove_hostfwd", id=fid) == {"return": {}}
    finally:
        for s in idle:
            s.close()
        srv.stop()
    assert pasta.poll() is None


SLIRP_REQUESTS = [
    b"badjson",
    b"[1, 2]",
    b'{"unexpectedjson": 42}',
    b'{"execute": "bad"}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "bad"}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "nonsense", "host_port": 10531}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 0, "guest_port": 80}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 10531}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 10531, "guest_port": 80, "guest_addr": "x"}}',
    b'{"execute": "remove_hostfwd", "arguments": {"id": 7}}',
    b'{"execute": "list_hostfwd"}',
    # rootlesskit's request, newline included (Go's json.Encoder)
    b'{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":10531,'
    b'"guest_addr":"10.0.2.100","guest_port":80}}\n',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_port": 10532, "guest_port": 53}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_port": 10531, "guest_port": 81}}',
    b'{"execute": "add_hostfwd", "arguments": {"proto": "tcp", "host_addr": "127.0.0.1", "host_port": 10533,'
    b' "guest_port": 82.7}}',
    b'{"execute": "list_hostfwd"}',
    b'{"execute": "remove_hostfwd", "arguments": {"id": 1}}',
    b'{"execute": "remove_hostfwd", "arguments": {"id": 1}}',
    b'{"execute": "list_hostfwd"}',
]


def _slirp_replies(host: HostNS, d: Path, argv: list[str], path: Path) -> list[bytes]:
    p = host.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(path.exists, 15), argv
        return [api(path, r) for r in SLIRP_REQUESTS]
    finally:
        stop_process(p)


@pytest.mark.skipif(shutil.which("slirp4netns") is None, reason="slirp4netns not installed")
def test_same_replies_as_slirp4netns(host: HostNS) -> None:
    """The same requests to the real slirp4netns and to pasta with slirp4netns's
    addressing (10.0.2.100/24), one after the other in the same run: the same
    bytes, but for list_hostfwd, whose entries are the same (passt-sep adds
    the documented return level, docs/api.md)."""
    with tempfile.TemporaryDirectory(prefix="passt-api-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        ref_guest, our_guest = host.guest(), host.guest()
        ref = _slirp_replies(host, d, ["slirp4netns", "--configure", "--netns-type=path", "--api-socket",
                                       str(d / "slirp.api"), ref_guest.netns_path, "tap0"], d / "slirp.api")
        ours = _slirp_replies(host, d, [PASTA, "-f", "-q", "--runas", "0", "--config-net", "-a", "10.0.2.100",
                                        "-n", "24", "-g", "10.0.2.2", "-t", "none", "-u", "none", "-T", "none",
                                        "-U", "none", "--api-socket", str(d / "ours.api"),
                                        "--netns", our_guest.netns_path], d / "ours.api")
    for req, a, b in zip(SLIRP_REQUESTS, ref, ours, strict=True):
        if b"list_hostfwd" in req:
            ja, jb = json.loads(a), json.loads(b)
            assert jb["entries"] == ja["entries"] == jb["return"]["entries"], (req, a, b)
        else:
            assert a == b, (req, a, b)
    # the run did what it says: three forwards made, the first removed
    assert ref[14] == b'{"return":{"id":3}}' and b'"id":1,' not in ref[-1] and b'"id":3,' in ref[-1]


def test_bad_api_socket_paths_are_one_line_and_exit_1(host: HostNS) -> None:
    """A missing directory, a regular file in the way, a socket someone serves:
    one line naming the socket, exit 1; a stale socket file is replaced."""
    with tempfile.TemporaryDirectory(prefix="passt-api-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        (d / "file").write_text("x")
        busy = socket.socket(socket.AF_UNIX)
        busy.bind(str(d / "busy"))
        busy.listen(1)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(d / "stale"))
        stale.close()
        cases = [(d / "missing" / "api", "No such file or directory"), (d / "file", "File exists"),
                 (d / "busy", "Address already in use")]
        for i, (path, why) in enumerate(cases):
            r = host.run([PASST, "-f", "-s", str(d / f"s{i}"), "--api-socket", str(path)], check=False, timeout=30)
            assert r.returncode == 1, r
            assert r.stderr.strip().splitlines()[-1] == f"passt: API socket {path}: {why}", r.stderr
            assert "Traceback" not in r.stderr
        busy.close()
        p = host.popen([PASST, "-f", "-q", "-s", str(d / "s"), "--api-socket", str(d / "stale")],
                       stderr=subprocess.PIPE)
        try:
            assert wait_for(lambda: call(d / "stale", "list_hostfwd")["entries"] == [], 10)
        finally:
            stop_process(p)


def _frame_client(sock: Path) -> socket.socket:
    c = socket.socket(socket.AF_UNIX)
    assert wait_for(lambda: c.connect_ex(str(sock)) == 0, 10)
    return c


def test_passt_mode_forward(host: HostNS) -> None:
    """passt: add_hostfwd makes a listener whose connections reach the guest
    (a SYN to guest_port arrives on passt's socket); remove frees the port;
    stats counts the guest's frames."""
    with tempfile.TemporaryDirectory(prefix="passt-api-") as d:
        os.chmod(d, 0o755)
        sock, apis = Path(d) / "s", Path(d) / "api.sock"
        p = host.popen([PASST, "-f", "-q", "--runas", "0", "-s", str(sock), "--api-socket", str(apis)],
                       stderr=subprocess.PIPE)
        try:
            c = _frame_client(sock)
            assert wait_for(apis.exists, 10)
            st = os.lstat(apis)
            assert stat.S_IMODE(st.st_mode) == 0o600
            check_arp_reply(c)  # the guest's MAC known, and one ARP frame to count
            fid = call(apis, "add_hostfwd", proto="tcp", host_port=10521, guest_port=10522)["return"]["id"]
            hc = host.popen([PYTHON, "-c", (
                "import socket\n"
                "try:\n"
                "    socket.create_connection(('127.0.0.1', 10521), timeout=3).recv(1)\n"
                "except OSError:\n"
                "    pass\n")])
            c.settimeout(5)
            got_syn = False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not got_syn:
                n = struct.unpack("!I", c.recv(4, socket.MSG_WAITALL))[0]
                f = c.recv(n, socket.MSG_WAITALL)
                if len(f) >= 54 and f[12:14] == b"\x08\x00" and f[23] == 6:
                    ihl = (f[14] & 15) * 4
                    dport = int.from_bytes(f[14 + ihl + 2:14 + ihl + 4], "big")
                    flags = f[14 + ihl + 13]
                    got_syn = dport == 10522 and bool(flags & 0x02)
            assert got_syn, "no SYN to the guest port"
            stop_process(hc)
            stats = call(apis, "stats")["return"]
            assert stats["frames_from_guest"]["arp"] == 1
            assert any(f["proto"] == "tcp" and f["state"].endswith("inbound") and f["guest"].endswith(":10522")
                       for f in call(apis, "list_flows")["return"]["flows"])
            assert call(apis, "remove_hostfwd", id=fid) == {"return": {}}
            assert wait_for(lambda: port_free(host, 10521), 5)
            c.close()
        finally:
            stop_process(p)
        assert not apis.exists()
