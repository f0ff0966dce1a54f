# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP translation end to end: pasta attached to a GuestNS inside a HostNS.

One pasta serves the whole module (it forwards -t ports into the guest).
Host-side servers listen on 127.0.0.1 / ::1 in the HostNS; the guest
reaches them through the gateway address, which pasta maps to the host's
loopback. Every bulk transfer is checked by sha256. The guest-side and
host-side programs are the small helper below (written to a temporary
file) and tests/tools/netserve.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netenv import (
    FAR_ADDR4,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    HOST_ADDR6,
    PASTA,
    PYTHON,
    GuestNS,
    HostNS,
)

pytestmark = pytest.mark.integration

MIB = 1 << 20
BULK = 100 * MIB
FWD4, FWD6, FWD_PEER, FWD_HALF, FWD_MANY = 10080, 10081, 10082, 10083, 10084  # -t 10080-10084
FWD_MAPPED, FWD_TARGET = 10085, 10090  # -t 10085:10090

HELPER = textwrap.dedent('''
    """TCP helper for test_tcp.py: servers print READY <port>, clients one JSON line."""
    import hashlib, json, random, resource, selectors, socket, sys, time

    def fam(a):
        return socket.AF_INET6 if ":" in a else socket.AF_INET

    def data(n, seed):
        return random.Random(seed).randbytes(n)

    def listen(addr, port):
        s = socket.socket(fam(addr))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam(addr) == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(1024)
        print("READY", s.getsockname()[1], flush=True)
        return s

    def serve(addr, port, n, seed, wait_eof):
        """Per connection: (optionally read to EOF first, then) send n seeded bytes, close."""
        import threading
        payload = data(n, seed)
        s = listen(addr, port)
        def conn(c):
            with c:
                if wait_eof:
                    while c.recv(65536):
                        pass
                c.sendall(payload)
        while True:
            c, _ = s.accept()
            threading.Thread(target=conn, args=(c,), daemon=True).start()

    def fetch(addr, port, send_first, stall=0.0):
        """Connect, optionally send some bytes and half-close, read to EOF: sha256.

        stall: seconds to wait before reading (the sender's window closes).
        """
        t0 = time.monotonic()
        h, n = hashlib.sha256(), 0
        try:
            with socket.create_connection((addr, port), timeout=20) as c:
                if send_first:
                    c.sendall(b"x" * send_first)
                    c.shutdown(socket.SHUT_WR)
                time.sleep(stall)
                while d := c.recv(1 << 20):
                    h.update(d)
                    n += len(d)
        except OSError as e:
            return {"error": type(e).__name__, "bytes": n, "seconds": round(time.monotonic() - t0, 4)}
        return {"sha": h.hexdigest(), "bytes": n, "seconds": round(time.monotonic() - t0, 4)}

    def stall_sink(addr, port, stall):
        """One connection: wait, then read to EOF and answer "<sha256> <bytes>"."""
        s = listen(addr, port)
        c, _ = s.accept()
        time.sleep(stall)
        h, n = hashlib.sha256(), 0
        while d := c.recv(1 << 20):
            h.update(d)
            n += len(d)
        c.sendall(f"{h.hexdigest()} {n}\\n".encode())
        c.close()

    def reset_peer(addr, port, side):
        """One connection; side "server": accept and close with a RST; side
        "watch": accept and report whether reading ends in a RST or EOF."""
        import struct
        s = listen(addr, port)
        c, _ = s.accept()
        if side == "server":
            time.sleep(0.5)  # let the client see the connection established first
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            return {}
        c.settimeout(10)
        try:
            while c.recv(65536):
                pass
            return {"result": "eof"}
        except OSError as e:
            return {"result": type(e).__name__}

    def send_reset(addr, port):
        """Connect, send a little, close with a RST (SO_LINGER 0)."""
        import struct
        c = socket.create_connection((addr, port), timeout=5)
        c.sendall(b"hello")
        time.sleep(0.2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        return {"ok": True}

    def refused(addr, port):
        t0 = time.monotonic()
        try:
            socket.create_connection((addr, port), timeout=10).close()
            err = "connected"
        except OSError as e:
            err = type(e).__name__
        return {"error": err, "seconds": round(time.monotonic() - t0, 4)}

    def many(addr, port, count):
        """count connections open at once to an echo server, each echoes its own tag."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 64)), hard))
        t0 = time.monotonic()
        socks = []
        for i in range(count):
            s = socket.socket(fam(addr))
            s.setblocking(False)
            s.connect_ex((addr, port))
            socks.append(s)
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_WRITE, i)
        sent = 0
        while sent < count and time.monotonic() - t0 < 30:
            for key, ev in sel.select(1):
                if not ev & selectors.EVENT_WRITE:
                    continue  # already sent, its echo is here early
                i = key.data
                s = socks[i]
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return {"ok": False, "error": f"connection {i} failed"}
                s.send(b"%08d" % i)
                sel.modify(s, selectors.EVENT_READ, i)
                sent += 1
        good = 0
        got = {}
        while good < count and time.monotonic() - t0 < 30:
            for key, _ in sel.select(1):
                i = key.data
                d = got.get(i, b"") + socks[i].recv(64)
                got[i] = d
                if len(d) >= 8:
                    sel.unregister(socks[i])
                    good += d == b"%08d" % i
        for s in socks:
            s.close()
        return {"ok": good == count, "good": good, "seconds": round(time.monotonic() - t0, 3)}

    def peer(addr, port):
        """Accept one connection; report the peer's address."""
        s = listen(addr, port)
        c, a = s.accept()
        c.close()
        return {"peer": a[0], "port": a[1]}

    def garbage(ifname, gw, dport, guest_addr):
        """Raw frames to the gateway: malformed and unexpected TCP; report what came back."""
        import struct
        mac = None
        for line in open("/proc/net/arp").read().splitlines()[1:]:
            f = line.split()
            if f[0] == gw:
                mac = bytes.fromhex(f[3].replace(":", ""))
        r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        r.bind((ifname, 0))
        ours = r.getsockname()[4][:6]
        src = socket.inet_aton(guest_addr)
        dst = socket.inet_aton(gw)
        def csum(b):
            if len(b) % 2:
                b += b"\\0"
            s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            return ~s & 0xFFFF
        def frame(tcp, fix=True):
            if fix and len(tcp) >= 18:
                tcp = bytearray(tcp)
                tcp[16:18] = b"\\0\\0"
                ph = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
                tcp[16:18] = struct.pack("!H", csum(ph + bytes(tcp)))
                tcp = bytes(tcp)
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst))
            ip[10:12] = struct.pack("!H", csum(bytes(ip)))
            return mac + ours + b"\\x08\\x00" + bytes(ip) + tcp
        rnd = random.Random(7)
        def hdr(flags, doff=5, seq=None, ack=None, sport=None, extra=b""):
            return struct.pack("!HHIIBBHHH", sport or rnd.randrange(20000, 60000), dport,
                               rnd.getrandbits(32) if seq is None else seq,
                               rnd.getrandbits(32) if ack is None else ack,
                               doff << 4, flags, 1000, 0, 0) + extra
        frames = [
            frame(hdr(0x10)),  # ACK to nothing
            frame(hdr(0x18, extra=b"data")),  # data to nothing
            frame(hdr(0x01)),  # FIN alone
            frame(hdr(0x04)),  # RST to nothing: no answer
            frame(hdr(0x12)),  # SYN-ACK to nothing
            frame(hdr(0x03)),  # SYN+FIN
            frame(hdr(0x10, doff=15)),  # header longer than the segment
            frame(hdr(0x10, doff=2)),  # header shorter than 20
            frame(hdr(0x02)[:12], fix=False),  # truncated header
            frame(hdr(0x10, doff=7, extra=b"\\x02\\x01\\x03\\x03\\xff\\x08\\x0a\\x00")),  # bad options
            frame(hdr(0x3F)),  # every flag
        ] + [frame(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 60)))) for _ in range(40)]
        r.settimeout(0.05)
        for fr in frames:
            r.send(fr)
        seen = {"rst": 0, "other": 0, "flags": []}
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            try:
                pkt = r.recv(70000)
            except TimeoutError:
                continue
            if len(pkt) < 54 or pkt[23] != 6 or pkt[6:12] == ours:
                continue
            ihl = (pkt[14] & 15) * 4
            if struct.unpack("!H", pkt[14 + ihl : 16 + ihl])[0] != dport:
                continue  # another test's connection still closing: not an answer to ours
            flags = pkt[14 + ihl + 13]
            seen["rst" if flags & 0x04 else "other"] += 1
            seen["flags"].append(flags)
        return seen

    mode = sys.argv[1]
    if mode == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1")
    elif mode == "fetch":
        stall = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
        print(json.dumps(fetch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), stall)))
    elif mode == "stall_sink":
        stall_sink(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    elif mode == "reset_peer":
        print(json.dumps(reset_peer(sys.argv[2], int(sys.argv[3]), sys.argv[4])), flush=True)
    elif mode == "send_reset":
        print(json.dumps(send_reset(sys.argv[2], int(sys.argv[3]))))
    elif mode == "refused":
        print(json.dumps(refused(sys.argv[2], int(sys.argv[3]))))
    elif mode == "many":
        print(json.dumps(many(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    elif mode == "garbage":
        print(json.dumps(garbage(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
    elif mode == "peer":
        print(json.dumps(peer(sys.argv[2], int(sys.argv[3]))), flush=True)
''')


def expected_sha(n: int, seed: int) -> str:
    """sha256 of the helper's seeded payload."""
    return hashlib.sha256(random.Random(seed).randbytes(n)).hexdigest()


class Env:
    """HostNS + GuestNS + one pasta attached to the guest."""

    def __init__(self, host: HostNS, guest: GuestNS, helper: Path, pasta: subprocess.Popen) -> None:
        self.host, self.guest, self.helper, self.pasta = host, guest, helper, pasta
        self.started: set[tuple[str, int]] = set()

    def json(self, ns: HostNS | GuestNS, *args: str, timeout: float = 60) -> dict[str, Any]:
        r = ns.run([PYTHON, str(self.helper), *args], timeout=timeout, check=False)
        try:
            res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res = {"error": f"exit {r.returncode}: {r.stderr.strip()[-2000:]}"}
        return res

    def serve(self, ns: HostNS | GuestNS, addr: str, port: int, n: int, seed: int,
              wait_eof: bool = False) -> int:
        p = ns.popen([PYTHON, str(self.helper), "serve", addr, str(port), str(n), str(seed),
                      "1" if wait_eof else "0"], stdout=subprocess.PIPE)
        assert p.stdout is not None
        line = p.stdout.readline().decode()  # bounded: the helper prints it or dies
        assert line.startswith("READY"), line
        return int(line.split()[1])

    def alive(self) -> None:
        assert self.pasta.poll() is None, f"pasta exited: {self.pasta.stderr.read() if self.pasta.stderr else ''}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    helper = tmp_path_factory.mktemp("tcp") / "tcphelp.py"
    helper.write_text(HELPER)
    with HostNS() as host:
        guest = host.guest()
        pasta = host.pasta(guest, "-t", f"{FWD4}-{FWD_MANY}", "-t", f"{FWD_MAPPED}:{FWD_TARGET}", v6=True)
        yield Env(host, guest, helper, pasta)


@pytest.mark.parametrize("gw,loop", [(GW_ADDR4, "127.0.0.1"), (GW_ADDR6, "::1")], ids=["v4", "v6"])
def test_bulk_ns_to_host(env: Env, gw: str, loop: str) -> None:
    srv = env.host.serve("tcp-sink", loop)
    res = env.guest.client("tcp-send", gw, srv.port, "--bytes", str(BULK), "--timeout", "30", timeout=60)
    assert res["ok"], res
    env.alive()


@pytest.mark.parametrize("gw,loop", [(GW_ADDR4, "127.0.0.1"), (GW_ADDR6, "::1")], ids=["v4", "v6"])
def test_bulk_host_to_ns(env: Env, gw: str, loop: str) -> None:
    port = env.serve(env.host, loop, 0, BULK, 1)
    res = env.json(env.guest, "fetch", gw, str(port), "0")
    assert res.get("sha") == expected_sha(BULK, 1), res
    env.alive()


# From the host's own address the connection goes over the tap; from loopback
# it takes the splice path (once it exists; before that, the tap too).
@pytest.mark.parametrize("loop,addr", [("127.0.0.1", "0.0.0.0"), ("::1", "::"),
                                       (HOST_ADDR4, "0.0.0.0"), (HOST_ADDR6, "::")],
                         ids=["v4-loopback", "v6-loopback", "v4-tap", "v6-tap"])
def test_inbound_bulk_both_directions(env: Env, loop: str, addr: str) -> None:
    port = FWD4 if addr == "0.0.0.0" else FWD6
    if (addr, port) not in env.started:  # guest servers stay up for the next variant
        env.guest.serve("tcp-sink", addr, port)
        env.serve(env.guest, addr, FWD_TARGET, BULK, 2)
        env.started.add((addr, port))
    res = env.host.client("tcp-send", loop, port, "--bytes", str(BULK), "--timeout", "30", timeout=60)
    assert res["ok"], res
    res = env.json(env.host, "fetch", loop, str(FWD_MAPPED), "0")
    assert res.get("sha") == expected_sha(BULK, 2), res
    env.alive()


# loopback peers take the splice path (test_splice.py): the guest sees its own loopback
@pytest.mark.parametrize("src,seen", [("127.0.0.1", "127.0.0.1"), (HOST_ADDR4, GW_ADDR4),
                                      ("::1", "::1"), (FAR_ADDR4, FAR_ADDR4)],
                         ids=["loopback4", "host-addr", "loopback6", "far-host"])
def test_inbound_source_address(env: Env, src: str, seen: str) -> None:
    """The guest sees the real peer; loopback and the host's own address appear as the gateway."""
    addr = "::" if ":" in seen else "0.0.0.0"
    p = env.guest.popen([PYTHON, str(env.helper), "peer", addr, str(FWD_PEER)], stdout=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline().startswith(b"READY")
    ns = env.host.gw if src == FAR_ADDR4 else env.host
    assert ns is not None
    target = HOST_ADDR4 if src == FAR_ADDR4 else src
    ns.run([PYTHON, "-c", f"import socket; socket.create_connection(({target!r}, {FWD_PEER}), "
            f"timeout=5{', source_address=(' + repr(src) + ', 0)' if '.' in src else ''}).close()"],
           timeout=10)
    out, _ = p.communicate(timeout=10)
    assert json.loads(out.decode().splitlines()[-1])["peer"] == seen, out


def test_half_close_with_1mib_response(env: Env) -> None:
    """The guest sends and half-closes; the host answers 1 MiB after seeing EOF."""
    for gw, loop in ((GW_ADDR4, "127.0.0.1"), (GW_ADDR6, "::1")):
        port = env.serve(env.host, loop, 0, MIB, 3, wait_eof=True)
        res = env.json(env.guest, "fetch", gw, str(port), "100000")
        assert res.get("sha") == expected_sha(MIB, 3), res
    # and the other way round: the host client half-closes toward the guest
    env.serve(env.guest, "0.0.0.0", FWD_HALF, MIB, 4, wait_eof=True)
    res = env.json(env.host, "fetch", "127.0.0.1", str(FWD_HALF), "100000")
    assert res.get("sha") == expected_sha(MIB, 4), res


@pytest.mark.parametrize("gw", [GW_ADDR4, GW_ADDR6], ids=["v4", "v6"])
def test_connection_refused_fast(env: Env, gw: str) -> None:
    res = env.json(env.guest, "refused", gw, "9")
    assert res.get("error") == "ConnectionRefusedError", res
    assert res["seconds"] < 1.0, res


def test_thousand_concurrent_connections(env: Env) -> None:
    srv = env.host.serve("tcp-echo", "127.0.0.1")
    res = env.json(env.guest, "many", GW_ADDR4, str(srv.port), "1000", timeout=90)
    assert res.get("ok"), res
    env.alive()


def test_inbound_burst_of_connections(env: Env) -> None:
    """300 connections to a -t port at once (the tap path: from the host's
    own address): the worker takes one accept per readiness event of the
    level-triggered listener, so a full accept queue drains over many."""
    srv = env.guest.serve("tcp-echo", "0.0.0.0", FWD_MANY)
    try:
        res = env.json(env.host, "many", HOST_ADDR4, str(FWD_MANY), "300", timeout=90)
    finally:
        srv.stop()
    assert res.get("ok"), res
    env.alive()


def test_garbage_gets_only_rsts(env: Env) -> None:
    srv = env.host.serve("tcp-echo", "127.0.0.1")
    env.guest.run(["ping", "-c1", "-W2", GW_ADDR4], check=False)  # resolve the gateway's MAC
    res = env.json(env.guest, "garbage", "eth0", GW_ADDR4, str(srv.port), HOST_ADDR4)
    assert res.get("other") == 0 and res.get("rst", 0) > 0, res
    env.alive()
    res = env.guest.client("tcp-echo-check", GW_ADDR4, srv.port, "--bytes", str(MIB))
    assert res["ok"], res


def test_stalled_readers_both_directions(env: Env) -> None:
    """A reader that stops for a second: windows close and reopen, nothing is lost."""
    n = 20 * MIB
    p = env.host.popen([PYTHON, str(env.helper), "stall_sink", "127.0.0.1", "10070", "1.0"],
                       stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().startswith(b"READY")
    res = env.guest.client("tcp-send", GW_ADDR4, 10070, "--bytes", str(n), "--timeout", "20", timeout=40)
    assert res["ok"], res
    assert res["seconds"] < 5, res
    port = env.serve(env.host, "::1", 0, n, 6)
    res = env.json(env.guest, "fetch", GW_ADDR6, str(port), "0", "1.0")
    assert res.get("sha") == expected_sha(n, 6), res
    assert res["seconds"] < 5, res


def test_reset_both_directions(env: Env) -> None:
    """A RST from the host peer reaches the guest application, and the other way round."""
    p = env.host.popen([PYTHON, str(env.helper), "reset_peer", "127.0.0.1", "10071", "server"],
                       stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().startswith(b"READY")
    res = env.json(env.guest, "fetch", GW_ADDR4, "10071", "0", "0.3")
    assert res.get("error") == "ConnectionResetError", res
    w = env.host.popen([PYTHON, str(env.helper), "reset_peer", "::1", "10072", "watch"],
                       stdout=subprocess.PIPE)
    assert w.stdout is not None and w.stdout.readline().startswith(b"READY")
    assert env.json(env.guest, "send_reset", GW_ADDR6, "10072").get("ok")
    out, _ = w.communicate(timeout=15)
    assert json.loads(out.decode().splitlines()[-1])["result"] == "ConnectionResetError", out


def test_inbound_to_closed_guest_port_resets(env: Env) -> None:
    """Nothing listens in the guest: the host client is reset, quickly."""
    res = env.json(env.host, "fetch", "127.0.0.1", str(FWD_PEER), "0")
    assert res.get("error") == "ConnectionResetError" and res["seconds"] < 1.0, res


@pytest.mark.parametrize("addr", ["192.0.2.3", "2001:db8::3"], ids=["v4", "v6"])
def test_unreachable_is_reset_not_hang(env: Env, addr: str) -> None:
    """No neighbour answers on the host's link: the host's connect fails, the guest gets a RST."""
    res = env.json(env.guest, "refused", addr, "80")
    assert res.get("error") == "ConnectionRefusedError", res
    assert res["seconds"] < 8, res


def test_mtu_1500_gso_frames(env: Env) -> None:
    """A second pasta with MTU 1500: 64 KiB GSO frames toward the guest, still byte-exact."""
    n = 20 * MIB
    port = env.serve(env.host, "127.0.0.1", 0, n, 8)
    sink = env.host.serve("tcp-sink", "::1")
    script = (f"ip link show eth0 | grep -q 'mtu 1500' || exit 3; "
              f"{PYTHON} {env.helper} fetch {GW_ADDR4} {port} 0 && "
              f"{PYTHON} {Path(__file__).resolve().parents[1] / 'tools' / 'netserve.py'} "
              f"tcp-send {GW_ADDR6} {sink.port} --bytes {n}")
    r = env.host.run([PASTA, "--config-net", "-q", "-m", "1500", "--runas", "0", "--", "sh", "-c", script],
                     timeout=60, check=False)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert r.returncode == 0 and len(lines) == 2, (r.returncode, r.stdout, r.stderr)
    assert lines[0]["sha"] == expected_sha(n, 8), lines
    assert lines[1]["ok"], lines
