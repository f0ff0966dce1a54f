# SPDX-License-Identifier: GPL-2.0-or-later
"""--egress-deny and --egress-allow end to end, with a real pasta and a real passt.

Everything runs in a HostNS: servers on its loopback (where the guest's
gateway address leads) and on the far host (192.0.2.2 / 2001:db8::2, in
the gateway namespace); the guest is the namespace pasta creates around a
shell script, which reports what it could reach. A refused TCP connect must
be refused (RST) quickly, not time out; a refused echo gets no reply; the
refusal shows once in pasta's log whatever the number of attempts. In
passt mode the test plays the guest itself on passt's UNIX socket, with
hand-made frames (a TCP SYN, an ICMP echo request).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.netenv import (
    FAR_ADDR4,
    FAR_ADDR6,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    PASST,
    PASTA,
    PYTHON,
    HostNS,
    proc_status,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration

# In the guest: connect to ADDR PORT (N times), print "tcp ADDR PORT ok|refused|timeout|error SECONDS"
CONNECT = """
import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    t = time.monotonic()
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((addr, port))
        what = "ok"
    except (ConnectionRefusedError, ConnectionResetError):
        what = "refused"
    except TimeoutError:
        what = "timeout"
    except OSError as e:
        what = f"error:{e.errno}"
    s.close()
    print(f"tcp {addr} {port} {what} {time.monotonic() - t:.2f}", flush=True)
"""


def _tcp(addr: str, port: int, n: int = 1) -> str:
    return f"{PYTHON} -c '{CONNECT}' {addr} {port} {n}; "


def _ping(addr: str) -> str:
    six = "-6 " if ":" in addr else ""
    return f"ping {six}-c1 -W2 {addr} >/dev/null 2>&1 && echo ping {addr} ok || echo ping {addr} none; "


def _pasta(host: HostNS, args: list[str], script: str) -> subprocess.CompletedProcess:
    """pasta (not quiet: its log lines are checked) around script; --runas 0:
    the script runs the test's interpreter, under root's 0700 home."""
    return host.run([PASTA, "--config-net", "--runas", "0", *args, "--", "sh", "-c", script],
                    timeout=90, check=False)


def _results(out: str) -> dict[tuple[str, ...], tuple[str, float]]:
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["tcp"] and len(parts) == 5:
            res[("tcp", parts[1], parts[2])] = (parts[3], float(parts[4]))
        elif parts[:1] == ["ping"] and len(parts) == 3:
            res[("ping", parts[1])] = (parts[2], 0.0)
    return res


def test_deny_loopback_closes_the_mapped_gateway(host: HostNS) -> None:
    """--egress-deny 127.0.0.0/8 and ::1: a TCP connect to the gateway (which
    leads to a server on the host's loopback) is refused at once, its ping
    gets no reply; the far host still answers both. Without the rules the
    same gateway connect and ping work (the control)."""
    lo = host.serve("tcp-sink", "127.0.0.1")
    assert host.gw is not None
    far = host.gw.serve("tcp-sink", FAR_ADDR4)
    script = (_tcp(GW_ADDR4, lo.port, 3) + _tcp(FAR_ADDR4, far.port) + _ping(GW_ADDR4) + _ping(GW_ADDR6)
              + _ping(FAR_ADDR4) + _ping(FAR_ADDR6))
    r = _pasta(host, ["--egress-deny", "127.0.0.0/8", "--egress-deny", "::1"], script)
    res = _results(r.stdout)
    assert res[("tcp", GW_ADDR4, str(lo.port))][0] == "refused", r.stdout + r.stderr
    assert res[("tcp", GW_ADDR4, str(lo.port))][1] < 2.0, r.stdout  # a RST, not a timeout
    assert res[("tcp", FAR_ADDR4, str(far.port))][0] == "ok", r.stdout + r.stderr
    assert res[("ping", GW_ADDR4)][0] == "none" and res[("ping", GW_ADDR6)][0] == "none", r.stdout
    assert res[("ping", FAR_ADDR4)][0] == "ok" and res[("ping", FAR_ADDR6)][0] == "ok", r.stdout
    # each refused destination logged once (three connects, one line), and named
    lines = [ln for ln in r.stderr.splitlines() if "egress: refused" in ln]
    assert lines.count(f"egress: refused TCP to 127.0.0.1:{lo.port}: --egress-deny 127.0.0.0/8") == 1, r.stderr
    assert "egress: refused ICMP echo to 127.0.0.1: --egress-deny 127.0.0.0/8" in lines, r.stderr
    assert "egress: refused ICMP echo to [::1]: --egress-deny ::1" in lines, r.stderr
    control = _pasta(host, ["-q"], _tcp(GW_ADDR4, lo.port) + _ping(GW_ADDR4) + _ping(GW_ADDR6))
    res = _results(control.stdout)
    assert res[("tcp", GW_ADDR4, str(lo.port))][0] == "ok", control.stdout + control.stderr
    assert res[("ping", GW_ADDR4)][0] == "ok" and res[("ping", GW_ADDR6)][0] == "ok", control.stdout


def test_allow_one_port_refuses_the_rest(host: HostNS) -> None:
    """--egress-allow 127.0.0.1:PORT: the gateway's PORT gets through, another
    port of the same address is refused at once, and so is every echo (a rule
    with ports covers TCP and UDP only) and every other host."""
    ok = host.serve("tcp-sink", "127.0.0.1")
    other = host.serve("tcp-sink", "127.0.0.1")
    assert host.gw is not None
    far = host.gw.serve("tcp-sink", FAR_ADDR4)
    script = (_tcp(GW_ADDR4, ok.port) + _tcp(GW_ADDR4, other.port) + _tcp(FAR_ADDR4, far.port)
              + _ping(GW_ADDR4) + _ping(FAR_ADDR4))
    r = _pasta(host, ["-q", "--egress-allow", f"127.0.0.1:{ok.port}"], script)
    res = _results(r.stdout)
    assert res[("tcp", GW_ADDR4, str(ok.port))][0] == "ok", r.stdout + r.stderr
    got, took = res[("tcp", GW_ADDR4, str(other.port))]
    assert got == "refused" and took < 2.0, r.stdout + r.stderr
    assert res[("tcp", FAR_ADDR4, str(far.port))][0] == "refused", r.stdout
    assert res[("ping", GW_ADDR4)][0] == "none" and res[("ping", FAR_ADDR4)][0] == "none", r.stdout


def test_bad_spec_exits_1_before_anything_starts(host: HostNS) -> None:
    r = host.run([PASTA, "--config-net", "--egress-allow", "[2001:db8::1", "--", "true"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["pasta: Invalid --egress-allow rule '[2001:db8::1': missing ']'"]


# -- passt mode: the test plays the guest on passt's UNIX socket ----------------------

GUEST_MAC = bytes.fromhex("525400abcd01")


def _csum(data: bytes) -> int:
    """RFC 1071 checksum (independent of passt_sep)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s


def _ip4_frame(proto: int, dst: str, l4: bytes) -> bytes:
    """A length-prefixed IPv4 frame from the guest (HOST_ADDR4, as passt gives it) to dst."""
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
                               socket.inet_aton(HOST_ADDR4), socket.inet_aton(dst)))
    struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    frame = b"\xff" * 6 + GUEST_MAC + b"\x08\x00" + bytes(ip) + l4
    return struct.pack("!I", len(frame)) + frame


def _syn(dst: str, sport: int, dport: int) -> bytes:
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0))
    pseudo = socket.inet_aton(HOST_ADDR4) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    struct.pack_into("!H", tcp, 16, _csum(pseudo + bytes(tcp)))
    return _ip4_frame(6, dst, bytes(tcp))


def _echo(dst: str, ident: int) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"egress-passt")
    struct.pack_into("!H", icmp, 2, _csum(bytes(icmp)))
    return _ip4_frame(1, dst, bytes(icmp))


def _frames(s: socket.socket, seconds: float) -> list[bytes]:
    """Every IPv4 frame passt sends the guest within seconds (bounded by time)."""
    out, buf = [], b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            break
        assert chunk, "passt closed the connection"
        buf += chunk
        while len(buf) >= 4 and len(buf) >= 4 + (n := struct.unpack_from("!I", buf)[0]):
            f, buf = buf[4 : 4 + n], buf[4 + n :]
            if f[12:14] == b"\x08\x00":
                out.append(f)
    return out


def _passt_answers(host: HostNS, tmp_path: Path, port: int, *args: str) -> tuple[set[str], str]:
    """passt (with args) and a guest on its socket that sends a TCP SYN to the
    gateway's port and an echo request to the gateway; what came back:
    'rst', 'synack', 'echo-reply'; and passt's stderr."""
    os.chmod(tmp_path, 0o777)  # passt started by root runs as nobody
    sock, err = tmp_path / "passt.socket", tmp_path / "passt.err"
    with open(err, "w") as e:
        p = host.popen([PASST, "-f", "-s", str(sock), *args], stderr=e)
    try:
        assert wait_for(sock.exists, 15), err.read_text()
        # listening since the first stage; set-up is done once the parent is under its filter
        assert wait_for(lambda: p.poll() is not None or proc_status(p.pid).get("Seccomp") == "2", 15), \
            err.read_text()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(sock))
            s.sendall(_syn(GW_ADDR4, 40001, port) + _echo(GW_ADDR4, 0x4242))
            got = set()
            for f in _frames(s, 1.5):
                l4 = f[14 + (f[14] & 15) * 4 :]
                if f[23] == 6 and struct.unpack_from("!H", l4, 2)[0] == 40001:
                    flags = l4[13]
                    got.add("rst" if flags & 0x04 else "synack" if flags & 0x12 == 0x12 else f"tcp{flags:#x}")
                elif f[23] == 1 and l4[0] == 0 and struct.unpack_from("!H", l4, 4)[0] == 0x4242:
                    got.add("echo-reply")
    finally:
        stop_process(p)
    return got, err.read_text()


def test_passt_deny_loopback_closes_the_mapped_gateway(host: HostNS, tmp_path: Path) -> None:
    """passt mode, the guest played over the UNIX socket: with --egress-deny
    127.0.0.0/8 a SYN to the gateway (the host's loopback, a server listening
    there) gets an RST and an echo to the gateway no reply; without the rule
    (the control) a SYN-ACK and an echo reply."""
    lo = host.serve("tcp-sink", "127.0.0.1")
    (tmp_path / "deny").mkdir()
    (tmp_path / "allow").mkdir()
    got, err = _passt_answers(host, tmp_path / "deny", lo.port, "--egress-deny", "127.0.0.0/8")
    assert got == {"rst"}, (got, err)
    assert f"egress: refused TCP to 127.0.0.1:{lo.port}: --egress-deny 127.0.0.0/8" in err, err
    assert "egress: refused ICMP echo to 127.0.0.1: --egress-deny 127.0.0.0/8" in err, err
    got, err = _passt_answers(host, tmp_path / "allow", lo.port)
    assert got == {"synack", "echo-reply"}, (got, err)
