# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP in batches (docs/udp.md, "Batching"): bursts of mixed sizes, every datagram once.

The worker receives up to 64 datagrams per recvmmsg, writes runs of one size
to the tap as one GSO_UDP_L4 frame and sends runs from the guest as one
UDP_SEGMENT send(). These tests make such runs happen: a sender pushes
10,000 datagrams in bursts (runs of equal sizes with a shorter tail, single
odd sizes, empty datagrams, a few of 30,000 bytes), kept within a window of
48 unacknowledged datagrams (100 kB: the worker's host socket has the default receive buffer) by a sink that acknowledges every 16th (so a
correct path never overruns a socket buffer, and a lost datagram stalls the
sender, which then gives up and says so). The sink reports the sha256 of
the payloads in arrival order and of the sorted per-datagram digests (every
datagram once, none twice); both must equal the sender's. One sender uses
UDP_SEGMENT itself (a QUIC stack's way of sending), handing its kernel one
buffer for many datagrams.

Paths: namespace to host over the tap (to the gateway), host to namespace
over the tap (-u, from a non-loopback host address), and both splice paths
(-u from the host's loopback, -U from the namespace's), IPv4 and IPv6.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.netenv import (
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    HOST_ADDR6,
    PASTA,
    PYTHON,
    GuestNS,
    HostNS,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

COUNT = 10000

# argv: bind-address port count. Receives count datagrams, acks every 16th (and the
# last, and whatever came before 50 ms of quiet) to its sender with the count so far;
# prints one JSON line.
SINK = r"""
import hashlib, json, socket, struct, sys
addr, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
try:  # room for a whole window (root in the test's namespaces)
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((addr, port))
s.settimeout(0.05)
print("READY", flush=True)
order, digests, n, acked, peer, idle = hashlib.sha256(), [], 0, 0, None, 0
while n < count and idle < 400:  # 20 s without a datagram: give up
    try:
        data, peer = s.recvfrom(65536)
    except (TimeoutError, socket.timeout):
        idle += 1
        if peer is not None and acked != n:  # the sender waits for the rest of a window
            s.sendto(struct.pack("!I", n), peer)
            acked = n
        continue
    idle = 0
    n += 1
    order.update(struct.pack("!I", len(data)) + data)
    digests.append(hashlib.sha256(data).digest())
    if n % 16 == 0 or n == count:
        s.sendto(struct.pack("!I", n), peer)
        acked = n
digests.sort()
print(json.dumps({"n": n, "order": order.hexdigest(), "set": hashlib.sha256(b"".join(digests)).hexdigest()}))
"""

# argv: address port count mode (plain | segment). Sends count datagrams in bursts,
# at most WINDOW (and WINDOW_BYTES) beyond the sink's last ack; prints one JSON line.
SENDER = r"""
import hashlib, json, os, random, socket, struct, sys, time
addr, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
WINDOW, WINDOW_BYTES = 48, 100000
rng = random.Random(19)
def sizes():
    while True:
        kind = rng.randrange(5)
        if kind == 0:  # a run of one size, its tail shorter
            size = rng.choice((1200, 1400, 1472, 512))
            for _ in range(rng.randrange(2, 70)):
                yield size
            yield rng.randrange(1, size)
        elif kind == 1:
            yield 0
        elif kind == 2:
            yield 30000
        else:
            for _ in range(rng.randrange(1, 8)):
                yield rng.randrange(1, 3000)
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((addr, port))
s.settimeout(5)
gen = sizes()
payloads = []
for i in range(count):
    n = next(gen)
    payloads.append(struct.pack("!I", i)[: n] + os.urandom(max(0, n - 4)))
ends = [0]  # ends[i]: bytes of datagrams before i
for p in payloads:
    ends.append(ends[-1] + len(p))
order, digests = hashlib.sha256(), []
for p in payloads:
    order.update(struct.pack("!I", len(p)) + p)
    digests.append(hashlib.sha256(p).digest())
digests.sort()
acked, i, segsends, err = 0, 0, 0, None
t0 = time.monotonic()
while acked < count and time.monotonic() - t0 < 120:
    while i < count and i - acked < WINDOW and ends[i] - ends[acked] < WINDOW_BYTES:
        p = payloads[i]
        if mode == "segment" and len(p) > 0:  # one send() for a run of one size and its tail
            j = i + 1
            while (j < count and j - i < WINDOW - (i - acked) and j - i < 32 and 0 < len(payloads[j]) <= len(p)
                   and (j == i + 1 or len(payloads[j - 1]) == len(p))
                   and sum(len(x) for x in payloads[i : j + 1]) < 60000):
                j += 1
            if j - i > 1 and len(payloads[j - 1]) <= len(p) and all(len(x) == len(p) for x in payloads[i : j - 1]):
                s.setsockopt(17, 103, len(p))  # SOL_UDP, UDP_SEGMENT
                s.send(b"".join(payloads[i:j]))
                s.setsockopt(17, 103, 0)
                segsends += 1
                i = j
                continue
        s.send(p)
        i += 1
    try:
        acked = max(acked, struct.unpack("!I", s.recv(16))[0])
    except (TimeoutError, socket.timeout):
        err = f"stalled at {acked} acknowledged of {i} sent"
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
print(json.dumps({"n": count, "acked": acked, "err": err, "segsends": segsends, "order": order.hexdigest(),
                  "set": hashlib.sha256(b"".join(digests)).hexdigest()}))
"""


def _json(out: str) -> dict:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": out}


def _check(sent: dict, got: dict, mode: str) -> None:
    assert sent.get("err") is None and sent.get("acked") == COUNT, (sent, got)
    assert got.get("n") == COUNT, (sent, got)
    assert got["set"] == sent["set"], "a datagram lost, changed or doubled"
    assert got["order"] == sent["order"], "datagrams out of order"
    if mode == "segment":
        assert sent["segsends"] > 50, sent  # the sender did hand its kernel runs


@pytest.fixture
def pasta_ns(host: HostNS, tmp_path: Path) -> Iterator[tuple[HostNS, GuestNS, Callable[[], str]]]:
    """pasta on a GuestNS with -u 16000 (to the guest over the tap or, from the host's
    loopback, the splice path) and -U 16001 (the namespace's loopback to the host's);
    the third item stops it and returns its debug log (the worker's counters at the end)."""
    guest = host.guest()
    log = tmp_path / "pasta.log"
    p = host.popen([PASTA, "-f", "-d", "--config-net", "-t", "none", "-T", "none",
                    "-u", "16000", "-U", "16001", "--netns", guest.netns_path],
                   stdout=subprocess.DEVNULL, stderr=log.open("w"))
    assert wait_for(lambda: HOST_ADDR6 in guest.run("ip -6 addr show eth0", check=False).stdout
                    and HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout, 15), \
        "pasta did not configure the namespace"

    def stop() -> str:
        stop_process(p)
        return log.read_text()

    yield host, guest, stop
    stop_process(p)


def _run(sink_ns, sink_addr: str, port: int, send_ns, dst: str, dport: int, mode: str) -> None:
    sink = sink_ns.popen([PYTHON, "-c", SINK, sink_addr, str(port), str(COUNT)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None and sink.stdout.readline().startswith("READY")
        # the sender's neighbour entry first: datagrams that wait for ARP or NDP
        # in the sender's kernel are flushed from its queue while later ones
        # pass them (seen: 43 before 0-42), which is no order pasta could keep
        send_ns.run(["ping", "-c1", "-W2", dst], check=False)
        r = send_ns.run([PYTHON, "-c", SENDER, dst, str(dport), str(COUNT), mode], timeout=150, check=False)
        sent = _json(r.stdout + r.stderr)
        out, err = sink.communicate(timeout=40)
        got = _json(out + err)
    finally:
        stop_process(sink)
    _check(sent, got, mode)


def _counter(log: str, name: str) -> int:
    """A counter of the worker's last line of statistics (pasta -d, at exit)."""
    found = re.findall(rf"{name} (\d+)", log)
    assert found, f"no {name} in the log: {log[-2000:]}"
    return int(found[-1])


@pytest.mark.parametrize("mode", ["plain", "segment"])
@pytest.mark.parametrize("family", [4, 6])
def test_namespace_to_host_over_the_tap(pasta_ns, family, mode):
    host, guest, stop = pasta_ns
    lo, gw = ("127.0.0.1", GW_ADDR4) if family == 4 else ("::1", GW_ADDR6)
    _run(host, lo, 16100, guest, gw, 16100, mode)
    log = stop()
    assert _counter(log, "UDP_SEGMENT sends") > 0  # batches went out as such
    if mode == "segment" and "uso4" in log:  # the tap offers USO: the sender's runs came whole
        assert _counter(log, "uso_frames") > 0


@pytest.mark.parametrize("family", [4, 6])
def test_host_to_namespace_over_the_tap(pasta_ns, family):
    host, guest, stop = pasta_ns
    addr, any_ = (HOST_ADDR4, "0.0.0.0") if family == 4 else (HOST_ADDR6, "::")
    _run(guest, any_, 16000, host, addr, 16000, "plain")
    assert _counter(stop(), "gso_frames") > 0  # batches went out as such


@pytest.mark.parametrize("mode", ["plain", "segment"])
def test_host_loopback_to_namespace_loopback_splice(pasta_ns, mode):
    host, guest, stop = pasta_ns
    _run(guest, "127.0.0.1", 16000, host, "127.0.0.1", 16000, mode)
    assert _counter(stop(), "UDP_SEGMENT sends") > 0  # batches went out as such


@pytest.mark.parametrize("mode", ["plain", "segment"])
def test_namespace_loopback_to_host_loopback_splice(pasta_ns, mode):
    host, guest, stop = pasta_ns
    _run(host, "127.0.0.1", 16001, guest, "127.0.0.1", 16001, mode)
    assert _counter(stop(), "UDP_SEGMENT sends") > 0  # batches went out as such
