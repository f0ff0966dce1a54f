# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's UDP splice path: -U, and -u from a host loopback sender, without the tap.

One pasta attached to a GuestNS inside a HostNS serves the module, with
``--pcap``. -U sockets inside the namespace (127.0.0.1, ::1) relay to
udp-echo servers on the host's loopback; -u sockets on the host relay a
loopback sender's datagrams to udp-echo servers on the namespace's
loopback. Bulk runs use test_udp's windowed echo client: every datagram is
numbered, loss is counted and must be 0, and the sha256 of what came back
must equal that of what was sent. The capture of the tap must not hold one
UDP frame of these ports.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_udp import window_run
from tests.netenv import HOST_ADDR4, PYTHON, GuestNS, HostNS, stop_process
from tests.pcap import ports_in_pcap

pytestmark = pytest.mark.integration

U_OUT = 10300  # -U 10300: same port on the host
U_OUT_MAPPED, U_OUT_TARGET = 10305, 10310  # -U 10305:10310
U_IN = 10400  # -u 10400
U_IN_MAPPED, U_IN_TARGET = 10405, 10410  # -u 10405:10410
U_IN_TAP = 10420  # -u 10420: reached from the host's own address, over the tap
COUNT = 10_000


def udp_ports_in_pcap(path: Path) -> set[int]:
    """Every UDP port (source or destination) of the frames in a pcap file."""
    return ports_in_pcap(path, 17)


class Env:
    """HostNS + GuestNS + one pasta with -U, -u and --pcap."""

    def __init__(self, host: HostNS, guest: GuestNS, pasta: subprocess.Popen, pcap: Path) -> None:
        self.host, self.guest, self.pasta, self.pcap = host, guest, pasta, pcap

    def alive(self) -> None:
        assert self.pasta.poll() is None, f"pasta exited: {self.pasta.stderr.read() if self.pasta.stderr else ''}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("udpsplice")
    pcap = d / "tap.pcap"
    with HostNS() as host:
        guest = host.guest()
        pasta = host.pasta(guest, "--pcap", str(pcap), "-t", "none", "-T", "none",
                           "-U", str(U_OUT), "-U", f"{U_OUT_MAPPED}:{U_OUT_TARGET}",
                           "-u", str(U_IN), "-u", f"{U_IN_MAPPED}:{U_IN_TARGET}", "-u", str(U_IN_TAP))
        yield Env(host, guest, pasta, pcap)
        stop_process(pasta)


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
@pytest.mark.parametrize("port,target", [(U_OUT, U_OUT), (U_OUT_MAPPED, U_OUT_TARGET)],
                         ids=["same", "mapped"])
def test_U_echo_namespace_to_host_loopback(env: Env, loop: str, port: int, target: int) -> None:
    """-U: a namespace client on its loopback reaches an echo server on the host's."""
    srv = env.host.serve("udp-echo", loop, target)
    try:
        r = window_run(env.guest, loop, port, COUNT)
        assert r["ok"] and r["lost"] == 0 and r["bad"] == 0, r
        r = window_run(env.guest, loop, port, 5, 60000, 1)  # large datagrams, whole
        assert r["ok"], r
    finally:
        srv.stop()
    env.alive()
    assert not {port, target} & udp_ports_in_pcap(env.pcap), "-U datagrams crossed the tap"


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
@pytest.mark.parametrize("port,target", [(U_IN, U_IN), (U_IN_MAPPED, U_IN_TARGET)],
                         ids=["same", "mapped"])
def test_u_echo_host_loopback_to_namespace_loopback(env: Env, loop: str, port: int, target: int) -> None:
    """-u from a host loopback sender: to the namespace's loopback, not over the tap."""
    srv = env.guest.serve("udp-echo", loop, target)  # bound to loopback only: no tap could reach it
    try:
        r = window_run(env.host, loop, port, COUNT)
        assert r["ok"] and r["lost"] == 0 and r["bad"] == 0, r
        r = window_run(env.host, loop, port, 5, 60000, 1)
        assert r["ok"], r
    finally:
        srv.stop()
    env.alive()
    assert not {port, target} & udp_ports_in_pcap(env.pcap), "-u loopback datagrams crossed the tap"


SENDER_SEEN = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
s.settimeout(10)
d, a = s.recvfrom(100)
print(a[0], d.decode(), flush=True)
s.sendto(b"reply", a)
"""


def test_u_sender_address_is_loopback_and_reply_reaches_it(env: Env) -> None:
    """The namespace server sees a loopback sender; its reply goes back to the host client."""
    obs = env.guest.popen([PYTHON, "-c", SENDER_SEEN, "127.0.0.1", str(U_IN)],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert obs.stdout is not None and obs.stdout.readline().startswith("READY")
        client = ("import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                  f"s.settimeout(10);s.sendto(b'hello',('127.0.0.1',{U_IN}));print(s.recv(100).decode())")
        r = env.host.run([PYTHON, "-c", client], timeout=20, check=False)
        line = obs.stdout.readline().split()
    finally:
        stop_process(obs)
    assert line[:1] == ["127.0.0.1"] and line[1:] == ["hello"], line
    assert r.stdout.strip() == "reply", r.stdout + r.stderr


def test_u_from_host_address_still_crosses_the_tap(env: Env) -> None:
    """A sender on the host's own address is not loopback: the tap path, as before."""
    srv = env.guest.serve("udp-echo", "0.0.0.0", U_IN_TAP)
    try:
        r = window_run(env.host, HOST_ADDR4, U_IN_TAP, 100)
        assert r["ok"], r
    finally:
        srv.stop()
    assert U_IN_TAP in udp_ports_in_pcap(env.pcap)


def test_U_no_server_on_host(env: Env) -> None:
    """Nothing on the host's port: datagrams are lost (counted), pasta carries on."""
    r = window_run(env.guest, "127.0.0.1", U_OUT, 3, 100, 1, 0.5)
    assert r["lost"] == 3, r
    env.alive()


MANY_SENDERS = r"""
import json, os, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
ok = 0
for i in range(n):
    with socket.socket(fam, socket.SOCK_DGRAM) as s:  # a new source port: a new flow
        s.settimeout(5)
        payload = os.urandom(64) + str(i).encode()
        s.sendto(payload, (addr, port))
        try:
            ok += s.recv(200) == payload
        except OSError:
            pass
print(json.dumps({"ok": ok, "n": n}))
"""


@pytest.mark.parametrize("loop", ["127.0.0.1", "::1"], ids=["v4", "v6"])
def test_u_more_senders_than_the_socket_pool_holds(env: Env, loop: str) -> None:
    """Each new host loopback sender gets a namespace socket from the
    parent's pool (setup/sockpool.py, made by its namespace thread, bound
    and connected by the main thread): 3 x POOL_SIZE senders in a row each
    get their own datagram echoed back by the namespace's server."""
    from passt_sep.setup.sockpool import POOL_SIZE

    n = 3 * POOL_SIZE
    srv = env.guest.serve("udp-echo", loop, U_IN)
    try:
        r = env.host.run([PYTHON, "-c", MANY_SENDERS, loop, str(U_IN), str(n)], timeout=60, check=False)
    finally:
        srv.stop()
    assert r.stdout.strip() and json.loads(r.stdout) == {"ok": n, "n": n}, r.stdout + r.stderr
    env.alive()
