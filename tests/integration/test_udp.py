# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP end to end: echo round trips, bulk without loss, large datagrams, DNS.

pasta and passt always run inside a HostNS (tests/netenv.py); servers
listen on HostNS's loopback (reached from the guest through the gateway
address) or inside the guest namespace (reached from HostNS through -u).
Bulk runs use a windowed echo client (``WINDOW_CLIENT`` below): at most a
window of datagrams is outstanding, so a correct path never overruns a
socket buffer; every datagram is numbered, loss is counted (and must be
zero) and the sha256 of everything sent is compared with what came back.

passt mode is driven without a VM: the test holds the UNIX socket itself,
plays the guest with hand-made frames and checks that the frames passt
sends carry complete UDP checksums (its stream has no virtio-net header).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netenv import (
    FAR_ADDR4,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    HOST_ADDR6,
    PASST,
    PASTA,
    PYTHON,
    GuestNS,
    HostNS,
    Namespace,
    proc_status,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

# A windowed UDP echo client: argv = addr port count size window timeout.
# Prints one JSON line; exit 0 when every datagram came back unchanged.
WINDOW_CLIENT = r"""
import hashlib, json, os, socket, struct, sys, time
addr, port, count, size, window, timeout = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6]), float(sys.argv[6])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((addr, port))
s.settimeout(timeout)
sent, got, out = hashlib.sha256(), [None] * count, {}
nxt = lost = bad = 0
t0 = time.monotonic()
while nxt < count or out:
    while nxt < count and len(out) < window:
        data = struct.pack("!I", nxt) + os.urandom(size - 4)
        sent.update(data)
        out[nxt] = data
        s.send(data)
        nxt += 1
    try:
        data = s.recv(65536)
    except (TimeoutError, socket.timeout):
        lost += len(out)
        out.clear()
        continue
    seq = struct.unpack_from("!I", data)[0] if len(data) >= 4 else -1
    if out.pop(seq, None) != data:
        bad += 1
        continue
    got[seq] = data
back = hashlib.sha256(b"".join(d for d in got if d is not None)).hexdigest()
r = {"sent": count, "lost": lost, "bad": bad, "sha256_sent": sent.hexdigest(), "sha256_back": back,
     "seconds": round(time.monotonic() - t0, 3)}
r["ok"] = lost == 0 and bad == 0 and back == r["sha256_sent"]
print(json.dumps(r))
sys.exit(0 if r["ok"] else 1)
"""


def window_argv(addr: str, port: int, count: int, size: int = 1000, window: int = 32,
                timeout: float = 3.0) -> list[str]:
    """The command line of the windowed echo client."""
    return [PYTHON, "-c", WINDOW_CLIENT, addr, str(port), str(count), str(size), str(window),
            str(timeout)]


def result(r: subprocess.CompletedProcess[str]) -> dict:
    """The JSON line a client printed (or why there is none)."""
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"ok": False, "error": f"exit {r.returncode}: {r.stdout} {r.stderr}"}


def window_run(ns: Namespace, *args: object, timeout: float = 120) -> dict:
    """Run the windowed client in ns."""
    argv = window_argv(*args)  # type: ignore[arg-type]
    return result(ns.run(argv, timeout=timeout, check=False))


# -- pasta: guest to host through the gateway address ---------------------------

def _in_pasta(host: HostNS, script: str, *opts: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # --runas 0: the script runs the test's interpreter, under root's 0700 home
    return host.run([PASTA, "--config-net", "-q", "--runas", "0", *opts, "--", "sh", "-c", script],
                    timeout=timeout, check=False)


def _echo_lines(script_parts: list[list[str]]) -> str:
    import shlex

    return "; ".join(shlex.join(p) for p in script_parts)


def test_echo_through_gateway_both_families_small_zero_and_large(host):
    s4 = host.serve("udp-echo", "127.0.0.1")
    s6 = host.serve("udp-echo", "::1")
    netserve = [PYTHON, str(Path(__file__).resolve().parent.parent / "tools" / "netserve.py")]
    parts = []
    for gw, port in ((GW_ADDR4, s4.port), (GW_ADDR6, s6.port)):
        parts.append(netserve + ["udp-echo-check", gw, str(port), "--count", "20", "--size", "100"])
        parts.append(netserve + ["udp-echo-check", gw, str(port), "--count", "3", "--size", "0"])
        parts.append(window_argv(gw, port, 5, size=60000, window=1))
    r = _in_pasta(host, _echo_lines(parts))
    lines = [json.loads(x) for x in r.stdout.split("\n") if x.startswith("{")]
    assert len(lines) == 6 and all(x["ok"] for x in lines), r.stdout + r.stderr


def test_10000_datagrams_through_gateway_without_loss(host):
    s4 = host.serve("udp-echo", "127.0.0.1")
    s6 = host.serve("udp-echo", "::1")
    parts = [window_argv(GW_ADDR4, s4.port, 10000), window_argv(GW_ADDR6, s6.port, 10000)]
    r = _in_pasta(host, _echo_lines(parts), timeout=180)
    lines = [json.loads(x) for x in r.stdout.split("\n") if x.startswith("{")]
    assert len(lines) == 2, r.stdout + r.stderr
    for x in lines:
        assert x["ok"] and x["lost"] == 0, x


def test_reply_from_far_host_keeps_its_address(host):
    """A datagram to a real address goes out as addressed; the reply's source is the peer."""
    assert host.gw is not None
    srv = host.gw.serve("udp-echo", FAR_ADDR4)
    r = _in_pasta(host, _echo_lines([window_argv(FAR_ADDR4, srv.port, 50, size=200, window=4)]))
    assert result(r)["ok"], r.stdout + r.stderr


TWO_DEST = r"""
import socket, sys
gw, gport, far, fport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
s.settimeout(3)
got = {}
for _ in range(3):  # a lost datagram is tried again, never waited for forever
    for dst in ((gw, gport), (far, fport)):
        if dst not in got:
            s.sendto(b"to " + dst[0].encode(), dst)
    try:
        while len(got) < 2:
            data, src = s.recvfrom(100)
            got[src] = data.decode()
    except (TimeoutError, socket.timeout):
        pass
print(sorted((f"{a}:{p}", d) for (a, p), d in got.items()))
"""


def test_one_source_port_two_destinations_replies_from_each(host):
    """One guest socket to the gateway (the host's loopback) and to a far host:
    two flows, each on its own connected socket; each reply comes back from
    the address and port the guest wrote to."""
    assert host.gw is not None
    lo = host.serve("udp-echo", "127.0.0.1")
    far = host.gw.serve("udp-echo", FAR_ADDR4)
    r = _in_pasta(host, _echo_lines([[PYTHON, "-c", TWO_DEST, GW_ADDR4, str(lo.port), FAR_ADDR4,
                                      str(far.port)]]))
    want = sorted([(f"{GW_ADDR4}:{lo.port}", f"to {GW_ADDR4}"), (f"{FAR_ADDR4}:{far.port}", f"to {FAR_ADDR4}")])
    assert r.stdout.strip() == str(want), r.stdout + r.stderr


# -- pasta: host to guest through -u ---------------------------------------------

@pytest.fixture
def pasta_u(host) -> Iterator[tuple[HostNS, GuestNS]]:
    """pasta attached to a GuestNS with -u 15000:5000 (delta) and -u 15002 (none);
    udp-echo servers in the guest on 5000 and 15002, both families."""
    guest = host.guest()
    p = host.popen([PASTA, "-f", "-q", "--config-net", "-t", "none", "-T", "none", "-U", "none",
                    "-u", "15000:5000", "-u", "15002", "-u", "15003:5003", "--netns", guest.netns_path],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert wait_for(lambda: HOST_ADDR6 in guest.run("ip -6 addr show eth0", check=False).stdout
                    and HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout, 15), \
        "pasta did not configure the namespace"
    for port in (5000, 15002):
        guest.serve("udp-echo", "0.0.0.0", port)
        guest.serve("udp-echo", "::", port)
    yield host, guest
    stop_process(p)


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1", HOST_ADDR4, HOST_ADDR6])
def test_inbound_echo_with_port_delta(pasta_u, addr):
    host, _guest = pasta_u
    r = host.client("udp-echo-check", addr, 15000, "--count", "20", "--size", "500", "--timeout", "3")
    assert r["ok"], r
    r = host.client("udp-echo-check", addr, 15002, "--count", "3", "--size", "0", "--timeout", "3")
    assert r["ok"], r


def test_inbound_10000_datagrams_without_loss_and_large(pasta_u):
    host, _guest = pasta_u
    for addr in ("127.0.0.1", "::1"):
        r = window_run(host, addr, 15000, 10000)
        assert r["ok"] and r["lost"] == 0, r
        r = window_run(host, addr, 15000, 5, 60000, 1)
        assert r["ok"], r


OBSERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5003))
print("READY", flush=True)
for _ in range(2):
    d, a = s.recvfrom(100)
    print(a[0], d.decode(), flush=True)
"""


def test_inbound_sender_address_loopback_spliced_far_host_as_itself(pasta_u):
    """A host loopback sender takes the splice path (test_udp_splice.py): the guest
    sees 127.0.0.1; a far host's datagram crosses the tap with its own address."""
    host, guest = pasta_u
    assert host.gw is not None
    obs = guest.popen([PYTHON, "-c", OBSERVER], stdout=subprocess.PIPE, text=True)
    assert obs.stdout is not None and obs.stdout.readline().startswith("READY")
    send = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.bind((sys.argv[3],0));s.sendto(sys.argv[2].encode(),(sys.argv[1],15003))")
    host.run([PYTHON, "-c", send, "127.0.0.1", "from-loopback", "127.0.0.1"])
    line1 = obs.stdout.readline().split()
    host.gw.run([PYTHON, "-c", send, HOST_ADDR4, "from-far", FAR_ADDR4])
    line2 = obs.stdout.readline().split()
    stop_process(obs)
    assert line1 == ["127.0.0.1", "from-loopback"]
    assert line2 == [FAR_ADDR4, "from-far"]


# -- --dns-forward and loopback resolvers ----------------------------------------

DNS_QUERY = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((server, 53))
s.send(q)
r = s.recv(4096)
assert r[:2] == b"\x12\x34" and struct.unpack_from("!H", r, 6)[0] >= 1, r
print("A", socket.inet_ntoa(r[-4:]))
"""


@pytest.fixture
def dnsmasq(host) -> Iterator[HostNS]:
    """A real resolver on HostNS's loopback (both families) answering example.test."""
    p = host.popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--user=root",
                    "--listen-address=127.0.0.1", "--listen-address=::1", "--port=53",
                    "--bind-interfaces", "--address=/example.test/192.0.2.99",
                    "--address=/example.test/2001:db8::99"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert wait_for(lambda: "192.0.2.99" in host.run(
        [PYTHON, "-c", DNS_QUERY, "127.0.0.1", "example.test"], check=False).stdout, 10), \
        "dnsmasq did not answer"
    yield host
    stop_process(p)


def test_dns_forward_address_reaches_the_loopback_resolver(dnsmasq):
    host = dnsmasq
    script = _echo_lines([[PYTHON, "-c", DNS_QUERY, "198.51.100.53", "example.test"],
                          [PYTHON, "-c", DNS_QUERY, "2001:db8:53::3", "example.test"],
                          ["busybox", "nslookup", "example.test", "198.51.100.53"]])
    r = _in_pasta(host, script, "-D", "127.0.0.1", "-D", "::1",
                  "--dns-forward", "198.51.100.53", "--dns-forward", "2001:db8:53::3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("A 192.0.2.99") == 2, r.stdout
    assert "192.0.2.99" in r.stdout.split("Server:")[-1], r.stdout


DNS_QUERY_TCP = r"""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x4321, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.create_connection((server, 53), timeout=3)
s.sendall(struct.pack("!H", len(q)) + q)
n = struct.unpack("!H", s.recv(2))[0]
r = b""
while len(r) < n:
    chunk = s.recv(n - len(r))
    if not chunk:
        break
    r += chunk
assert r[:2] == b"\x43\x21" and struct.unpack_from("!H", r, 6)[0] >= 1, r
print("TCP A", socket.inet_ntoa(r[-4:]))
"""


def test_dns_forward_over_tcp_reaches_the_loopback_resolver(dnsmasq):
    """DNS over TCP to the --dns-forward address is the host's resolver too."""
    host = dnsmasq
    script = _echo_lines([[PYTHON, "-c", DNS_QUERY_TCP, "198.51.100.53", "example.test"],
                          [PYTHON, "-c", DNS_QUERY_TCP, "2001:db8:53::3", "example.test"]])
    r = _in_pasta(host, script, "-D", "127.0.0.1", "-D", "::1",
                  "--dns-forward", "198.51.100.53", "--dns-forward", "2001:db8:53::3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("TCP A 192.0.2.99") == 2, r.stdout


def test_loopback_resolver_is_reached_through_the_gateway(dnsmasq):
    """-D 127.0.0.1: the gateway is advertised, and its port 53 is the host's resolver."""
    host = dnsmasq
    script = _echo_lines([[PYTHON, "-c", DNS_QUERY, GW_ADDR4, "example.test"],
                          [PYTHON, "-c", DNS_QUERY, GW_ADDR6, "example.test"]])
    r = _in_pasta(host, script, "-D", "127.0.0.1", "-D", "::1")
    assert r.returncode == 0 and r.stdout.count("A 192.0.2.99") == 2, r.stdout + r.stderr


def test_no_udp_drops_datagrams(host):
    s4 = host.serve("udp-echo", "127.0.0.1")
    r = _in_pasta(host, _echo_lines([window_argv(GW_ADDR4, s4.port, 1, size=100, window=1,
                                                  timeout=1)]), "--no-udp")
    assert result(r)["lost"] == 1, r.stdout + r.stderr


# -- passt mode: the test plays the guest on the UNIX socket -------------------------

GUEST_MAC = bytes.fromhex("525400abcdef")


def _sum16(data: bytes) -> int:
    """RFC 1071 ones'-complement sum, word by word (independent of passt_sep)."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _udp_frame(version: int, src: str, dst: str, sport: int, dport: int, payload: bytes,
               our_mac: bytes = b"\xff" * 6) -> bytes:
    fam = socket.AF_INET if version == 4 else socket.AF_INET6
    s, d = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    ulen = 8 + len(payload)
    if version == 4:
        pseudo = s + d + struct.pack("!BBH", 0, 17, ulen)
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0x4000, 64, 17, 0, s, d))
        struct.pack_into("!H", ip, 10, 0xFFFF - _sum16(bytes(ip)))
        eth = our_mac + GUEST_MAC + b"\x08\x00"
    else:
        pseudo = s + d + struct.pack("!IxxxB", ulen, 17)
        ip = bytearray(struct.pack("!IHBB16s16s", 0x60000000, ulen, 17, 64, s, d))
        eth = our_mac + GUEST_MAC + b"\x86\xdd"
    udp = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    c = (0xFFFF - _sum16(pseudo + udp)) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    frame = eth + bytes(ip) + udp
    return struct.pack("!I", len(frame)) + frame


def _recv_frame(s: socket.socket, deadline: float) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(n - len(buf))
            assert chunk, "passt closed the connection"
            buf += chunk
        return buf

    (n,) = struct.unpack("!I", exact(4))
    return exact(n)


def _next_udp(s: socket.socket, dport: int, timeout: float = 5) -> tuple[int, bytes, int, bytes]:
    """The next UDP frame to dport: (version, src, sport, payload), checksums verified."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        f = _recv_frame(s, deadline)
        etype = struct.unpack_from("!H", f, 12)[0]
        if etype == 0x0800 and f[23] == 17:
            ihl = (f[14] & 15) * 4
            ip = f[14 : 14 + ihl]
            assert _sum16(ip) == 0xFFFF, "IPv4 header checksum"
            src, dst = f[26:30], f[30:34]
            udp = f[14 + ihl :]
            pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
            version = 4
        elif etype == 0x86DD and f[20] == 17:
            src, dst = f[22:38], f[38:54]
            udp = f[54:]
            pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
            version = 6
        else:
            continue
        sport, dp, ulen, csum = struct.unpack_from("!HHHH", udp)
        if dp != dport:
            continue
        assert ulen == len(udp) and csum != 0, "UDP length/checksum field"
        assert _sum16(pseudo + udp) == 0xFFFF, "UDP checksum incomplete"
        return version, src, sport, udp[8:]
    raise AssertionError(f"no UDP frame to port {dport} within {timeout}s")


@pytest.fixture
def passt_sock(host, tmp_path) -> Iterator[tuple[HostNS, socket.socket]]:
    """passt with -u 16000:6000 in a HostNS; the test is its guest."""
    os.chmod(tmp_path, 0o777)
    sock = tmp_path / "passt.socket"
    p = host.popen([PASST, "-f", "-q", "-s", str(sock), "-u", "16000:6000"], stderr=subprocess.PIPE)
    assert wait_for(sock.exists, 15), "passt did not listen"
    # the socket listens from the first milliseconds (passt_sep.early), the -u
    # socket only once set-up is done: the parent under its filter means it is
    assert wait_for(lambda: proc_status(p.pid).get("Seccomp") == "2", 15), "passt set-up did not finish"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    yield host, s
    s.close()
    stop_process(p)


def test_passt_echo_through_gateway_with_complete_checksums(passt_sock):
    host, s = passt_sock
    s4 = host.serve("udp-echo", "127.0.0.1")
    s6 = host.serve("udp-echo", "::1")
    for version, src, gw, port in ((4, HOST_ADDR4, GW_ADDR4, s4.port), (6, HOST_ADDR6, GW_ADDR6, s6.port)):
        for size in (0, 1, 1000, 60000):
            payload = os.urandom(size)
            s.sendall(_udp_frame(version, src, gw, 40000 + version, port, payload))
            v, fsrc, sport, data = _next_udp(s, 40000 + version)
            fam = socket.AF_INET if v == 4 else socket.AF_INET6
            assert (v, socket.inet_ntop(fam, fsrc), sport) == (version, gw, port)
            assert data == payload, f"payload of {size} bytes changed"


PEER_PORTS = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print("READY", s.getsockname()[1], flush=True)
for _ in range(2):
    d, a = s.recvfrom(100)
    s.sendto(d, a)
    print(a[1], flush=True)
"""


def test_passt_guest_source_port_kept_unless_privileged(passt_sock):
    """Peers see the guest's own source port; a port below 1024 becomes an ephemeral one."""
    host, s = passt_sock
    obs = host.popen([PYTHON, "-c", PEER_PORTS], stdout=subprocess.PIPE, text=True)
    assert obs.stdout is not None
    port = int(obs.stdout.readline().split()[1])
    seen = []
    for sport in (41234, 123):
        s.sendall(_udp_frame(4, HOST_ADDR4, GW_ADDR4, sport, port, b"which port"))
        _v, _src, _sp, data = _next_udp(s, sport)  # the echo reaches the guest's port either way
        assert data == b"which port"
        seen.append(int(obs.stdout.readline()))
    stop_process(obs)
    assert seen[0] == 41234
    assert seen[1] >= 1024


def test_passt_inbound_forward_and_reply_to_the_sender(passt_sock):
    host, s = passt_sock
    s.sendall(_udp_frame(4, HOST_ADDR4, GW_ADDR4, 6000, 9, b"mac"))  # passt learns our MAC
    client = ("import socket,sys;a=sys.argv[1];s=socket.socket(socket.AF_INET6 if ':' in a else "
              "socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5);s.connect((a,16000));"
              "s.send(b'ping-'+a.encode());print(s.recv(100).decode())")
    for version, addr, gw in ((4, "127.0.0.1", GW_ADDR4), (6, "::1", GW_ADDR6)):
        proc = host.popen([PYTHON, "-c", client, addr], stdout=subprocess.PIPE, text=True)
        v, fsrc, sport, data = _next_udp(s, 6000)
        fam = socket.AF_INET if v == 4 else socket.AF_INET6
        assert (v, socket.inet_ntop(fam, fsrc), data) == (version, gw, b"ping-" + addr.encode())
        me = HOST_ADDR4 if v == 4 else HOST_ADDR6
        s.sendall(_udp_frame(v, me, gw, 6000, sport, b"pong-" + data))
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "pong-ping-" + addr, out


# -- passt mode with a real guest (tests/vm) ---------------------------------------------

VM_SCRIPT = f"""
step link 10 ip link set eth0 up
step dhcp 30 udhcpc -i eth0 -n -q -t 5 -T 2 -s /usr/share/udhcpc/default.script
step dns_gw 20 nslookup example.test {GW_ADDR4}
step dns_fwd 20 nslookup example.test 198.51.100.53
step tftp_small 120 sh -c 'tftp -g -r small -l /small {GW_ADDR4} && sha256sum /small'
step tftp_large 120 sh -c 'tftp -g -b 60000 -r large -l /large {GW_ADDR4} && sha256sum /large'
"""
SMALL_BYTES, LARGE_BYTES = 1 << 20, 8 << 20  # 2048 datagrams of 512 bytes; 140 of 60000


@pytest.fixture(scope="module")
def vm_udp() -> Iterator[dict]:
    """One qemu boot behind passt: DNS through the gateway and --dns-forward, TFTP downloads."""
    from tests.vm import harness

    why = harness.available()
    if why:
        pytest.skip(why)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="passt-vm-udp-") as d, HostNS() as host:
        work = Path(d)
        os.chmod(work, 0o755)
        tftp = work / "tftp"
        tftp.mkdir()
        digests = {}
        for name, size in (("small", SMALL_BYTES), ("large", LARGE_BYTES)):
            data = os.urandom(size)
            (tftp / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
        os.chmod(tftp, 0o755)
        # DNS on port 53 and TFTP on port 69 of HostNS's loopback (TFTP answers
        # from a new port per transfer: replies from a port the guest never used);
        # dnsmasq caps TFTP blocks at its packet buffer, hence --edns-packet-max
        host.popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--user=root",
                    "--listen-address=127.0.0.1", "--port=53", "--bind-interfaces",
                    "--address=/example.test/192.0.2.99", "--address=/example.test/2001:db8::99",
                    "--enable-tftp", f"--tftp-root={tftp}", "--edns-packet-max=65535"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock, logf = work / "passt.socket", work / "passt.log"
        host.run([PASST, "--one-off", "-s", str(sock), "-l", str(logf), "-P", str(work / "pid"),
                  "-D", "127.0.0.1", "--dns-forward", "198.51.100.53", "-p", str(work / "cap.pcap")],
                 timeout=30)
        boot = harness.Boot(work, VM_SCRIPT)
        boot.run(host.popen, str(sock), timeout=300)
        yield {"boot": boot, "steps": boot.steps(), "log": logf.read_text(), "sha256": digests,
               "frames": _pcap_lengths(work / "cap.pcap")}


def _pcap_lengths(path: Path) -> list[int]:
    """Lengths of the frames in a classic pcap file."""
    data = path.read_bytes()
    out, off = [], 24
    while off + 16 <= len(data):
        n = struct.unpack_from("=I", data, off + 8)[0]
        out.append(n)
        off += 16 + n
    return out


def _vm_step(vm: dict, name: str) -> str:
    steps = vm["steps"]
    assert name in steps, f"step {name} did not run:\n{vm['boot'].text()[-3000:]}\n{vm['log'][-2000:]}"
    assert steps[name].rc == 0, steps[name].output
    return steps[name].output


@pytest.mark.vm
def test_vm_dns_through_gateway_and_dns_forward(vm_udp):
    assert "192.0.2.99" in _vm_step(vm_udp, "dns_gw")
    assert "192.0.2.99" in _vm_step(vm_udp, "dns_fwd")


@pytest.mark.vm
@pytest.mark.parametrize("name", ["small", "large"])
def test_vm_tftp_download_from_host_loopback(vm_udp, name):
    """Bulk UDP in a real guest: 512-byte blocks, then 60000-byte datagrams; sha256 compared."""
    out = _vm_step(vm_udp, f"tftp_{name}")
    assert out.split()[0] == vm_udp["sha256"][name], out
    if name == "large":  # the blocks really travelled as single large frames
        assert max(vm_udp["frames"]) >= 60000 + 4 + 42
