# SPDX-License-Identifier: GPL-2.0-or-later
"""passt mode end to end: the UNIX socket life cycle, then a real qemu guest.

passt always runs inside a HostNS (tests/netenv.py), never in the machine's
own network namespace. The first group drives the socket by hand (an ARP
request in, the reply out) and checks what libvirt and KubeVirt rely on:
exit 0 only once the socket listens, the PID file, one client at a time,
--one-off, SIGTERM, errors as one line. The ``vm`` group boots one qemu
guest (tests/vm/harness.py) and runs several checks in it: the DHCP lease
(address, route, DNS, MTU), ping of the gateway (the host's loopback) and of
a far host, a 50 MiB HTTP download from the host's loopback and an upload
to it, UDP echo both ways (the guest's tool is tests/vm/udpecho.c), -t and
-u forwards into the guest, and IPv6: SLAAC from our RA, ping6, TCP and UDP
over IPv6. Every bulk transfer has its sha256 compared. DHCPv6 is not tried
in the VM: busybox 1.35 has no udhcpc6 (tests/integration/test_dhcp_guest.py
covers DHCPv6 with dhclient -6 through pasta).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netenv import (
    FAR_ADDR4,
    FAR_ADDR6,
    GW_ADDR4,
    GW_ADDR6,
    HOST_ADDR4,
    NETSERVE,
    PASST,
    PYTHON,
    REPO,
    HostNS,
    _readline,
    proc_children,
    proc_status,
    stop_process,
    wait_for,
)
from tests.vm import harness

pytestmark = pytest.mark.integration

GUEST_MAC = bytes.fromhex("525400123456")


def arp_request(target: str = GW_ADDR4) -> bytes:
    """A length-prefixed ARP request from the guest for target."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, GUEST_MAC,
                      socket.inet_aton(HOST_ADDR4), bytes(6), socket.inet_aton(target))
    frame = b"\xff" * 6 + GUEST_MAC + b"\x08\x06" + arp
    return struct.pack("!I", len(frame)) + frame


def recv_frame(s: socket.socket, timeout: float = 5) -> bytes:
    """One length-prefixed frame from s."""
    s.settimeout(timeout)
    hdr = s.recv(4, socket.MSG_WAITALL)
    assert len(hdr) == 4, "connection closed"
    (n,) = struct.unpack("!I", hdr)
    data = s.recv(n, socket.MSG_WAITALL)
    assert len(data) == n
    return data


def check_arp_reply(s: socket.socket) -> None:
    s.sendall(arp_request())
    f = recv_frame(s)
    assert f[:6] == GUEST_MAC and f[12:14] == b"\x08\x06"
    assert f[20:22] == b"\x00\x02"  # ARP reply
    assert f[28:32] == socket.inet_aton(GW_ADDR4)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False



def libvirt_argv(sock: Path, pid: Path, log: Path) -> list[str]:
    """The command line libvirt >= 9.4 builds (src/qemu/qemu_passt.c), verbatim."""
    return [PASST, "--one-off", "--socket", str(sock), "--pid", str(pid), "--mtu", "65520",
            "--address", HOST_ADDR4, "--netmask", "24", "--interface", "eth0",
            "--log-file", str(log), "--tcp-ports", "%eth0/80"]


def test_libvirt_command_line(host, tmp):
    sock, pidf, logf = tmp / "vm-net0.socket", tmp / "vm-net0-passt.pid", tmp / "passt.log"
    r = host.run(libvirt_argv(sock, pidf, logf), timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    pid = int(pidf.read_text())
    assert pidf.read_text() == f"{pid}\n"
    try:
        assert alive(pid), "the PID file names no running process"
        assert "passt" in open(f"/proc/{pid}/cmdline").read()
        assert proc_status(pid)["Uid"].split()[0] == "65534"  # root in the init map: nobody
        workers = [k for k in proc_children(pid) if proc_status(k).get("Seccomp") == "2"]
        assert len(workers) == 1
        assert proc_status(workers[0])["Uid"].split()[0] == "65534"
        # port 80 of the host is forwarded (bound before the launcher exited)
        assert ":0050 " in host.run(["cat", "/proc/net/tcp6"]).stdout
        first = socket.socket(socket.AF_UNIX)
        first.connect(str(sock))  # listening already: the launcher has exited
        check_arp_reply(first)
        second = socket.socket(socket.AF_UNIX)
        second.connect(str(sock))
        second.settimeout(5)
        assert second.recv(16) == b"", "a second client must be closed at once"
        second.close()
        check_arp_reply(first)  # the first client is unaffected
        first.close()
        assert wait_for(lambda: not alive(pid), 10), "--one-off: exit when the client goes"
        log = logf.read_text()
        assert f"UNIX domain socket bound at {sock}" in log
        assert "Client closed connection, exiting" in log
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_one_off_exits_0_when_the_client_goes(host, tmp):
    sock = tmp / "s"
    p = host.popen([PASST, "-f", "-1", "-q", "-s", str(sock)], stderr=subprocess.PIPE)
    assert wait_for(lambda: sock.exists(), 10)
    c = socket.socket(socket.AF_UNIX)
    assert wait_for(lambda: c.connect(str(sock)) is None, 10)
    check_arp_reply(c)
    c.close()
    assert p.wait(10) == 0


def test_parent_is_filtered_and_still_serves(host, tmp):
    """Once supervision starts the passt parent runs under
    policies/passt-parent.policy; it still accepts a client and hands it
    over (the ARP reply comes back), and exits 0 when it goes (--one-off)."""
    sock = tmp / "s"
    p = host.popen([PASST, "-f", "-1", "-q", "-s", str(sock)], stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: proc_status(p.pid).get("Seccomp") == "2", 10)
        assert proc_status(p.pid)["NoNewPrivs"] == "1"
        c = socket.socket(socket.AF_UNIX)
        assert wait_for(lambda: c.connect(str(sock)) is None, 10)
        check_arp_reply(c)
        c.close()
        assert p.wait(10) == 0
    finally:
        stop_process(p)


def test_without_one_off_the_next_client_is_served(host, tmp):
    sock = tmp / "s"
    p = host.popen([PASST, "-f", "-q", "-s", str(sock)], stderr=subprocess.PIPE)
    assert wait_for(lambda: sock.exists(), 10)
    def served() -> bool:
        c = socket.socket(socket.AF_UNIX)
        try:
            c.connect(str(sock))
            check_arp_reply(c)
            return True
        finally:
            c.close()

    for _ in range(3):
        # until the worker has reported the previous client gone, a new one
        # is closed at once ("one client at a time"): retry, bounded
        assert wait_for(served, 10)
    assert p.poll() is None
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0


def test_sigterm_exits_0_with_a_client(host, tmp):
    sock = tmp / "s"
    p = host.popen([PASST, "-f", "-q", "-s", str(sock)], stderr=subprocess.PIPE)
    assert wait_for(lambda: sock.exists(), 10)
    c = socket.socket(socket.AF_UNIX)
    assert wait_for(lambda: c.connect(str(sock)) is None, 10)
    check_arp_reply(c)
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    c.close()


def test_daemon_sigterm_exits_0_and_the_worker_goes_too(host, tmp):
    sock, pidf = tmp / "s", tmp / "pid"
    host.run([PASST, "-q", "-s", str(sock), "-P", str(pidf)], timeout=30)
    pid = int(pidf.read_text())
    worker = proc_children(pid)[0]
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not alive(pid) and not alive(worker), 10)


def test_bad_socket_path_is_one_line_and_exit_1(host, tmp):
    r = host.run([PASST, "-s", str(tmp / "missing" / "s")], check=False, timeout=30)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if not line.startswith(("info", " "))]
    assert errors[-1] == f"passt: UNIX socket {tmp}/missing/s: No such file or directory"
    assert "Traceback" not in r.stderr


def test_socket_in_use_is_refused_and_stale_socket_replaced(host, tmp):
    sock, pidf = tmp / "s", tmp / "pid"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on
    stale.close()
    host.run([PASST, "-q", "-s", str(sock), "-P", str(pidf)], timeout=30)
    pid = int(pidf.read_text())
    try:
        r = host.run([PASST, "-s", str(sock)], check=False, timeout=30)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines()[-1] == f"passt: Socket path {sock} already in use"
        c = socket.socket(socket.AF_UNIX)
        c.connect(str(sock))
        check_arp_reply(c)  # the first instance still serves
        c.close()
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), 10)


def test_default_path_skips_a_busy_one(host):
    """In a private /tmp: /tmp/passt_1.socket is taken, so passt takes _2."""
    # a tree checked out under /tmp stays visible through the private tmpfs
    keep = textwrap.dedent(f"""\
        keep=$(mktemp -d /dev/shm/passt-sep-tree.XXXXXX)
        mount --bind {REPO} "$keep"
        mount -t tmpfs none /tmp
        mkdir -p {REPO}
        mount --bind "$keep" {REPO}
        umount "$keep" && rmdir "$keep"
        """) if str(REPO).startswith("/tmp/") else "mount -t tmpfs none /tmp\n"
    script = "set -e\n" + keep + textwrap.dedent(f"""\
        {PYTHON} -c 'import socket,time; s=socket.socket(socket.AF_UNIX); s.bind("/tmp/passt_1.socket"); s.listen(); time.sleep(30)' &
        busy=$!
        for i in $(seq 50); do [ -S /tmp/passt_1.socket ] && break; sleep 0.1; done
        {PASST} -P /tmp/pid 2>&1
        kill $(cat /tmp/pid) $busy
        """)
    r = host.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], timeout=60)
    assert "Probing path /tmp/passt_1.socket" in r.stdout
    assert "UNIX domain socket bound at /tmp/passt_2.socket" in r.stdout


def test_inherited_fd(host):
    """-F: an already connected socket, one-off implied."""
    code = textwrap.dedent(f"""\
        import socket, struct, subprocess, sys
        a, b = socket.socketpair()
        p = subprocess.Popen([{PASST!r}, "-f", "-q", "-F", str(b.fileno())], pass_fds=[b.fileno()])
        b.close()
        a.sendall({arp_request()!r})
        a.settimeout(10)
        n = struct.unpack("!I", a.recv(4, socket.MSG_WAITALL))[0]
        f = a.recv(n, socket.MSG_WAITALL)
        print("reply", f[20:22].hex(), flush=True)
        a.close()
        print("exit", p.wait(10))
        """)
    r = host.run([PYTHON, "-c", code], timeout=60)
    assert "reply 0002" in r.stdout and "exit 0" in r.stdout


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(dst_mac: bytes, ident: int = 0x1234, seq: int = 1) -> bytes:
    """A length-prefixed ICMP echo request from the guest to the gateway."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"pcap-test" * 4
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0x4000, 64, 1, 0,
                     socket.inet_aton(HOST_ADDR4), socket.inet_aton(GW_ADDR4))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    frame = dst_mac + GUEST_MAC + b"\x08\x00" + ip + icmp
    return struct.pack("!I", len(frame)) + frame


def pcap_records(path: Path) -> tuple[int, list[bytes]]:
    """(link type, frames) of a classic pcap file."""
    data = path.read_bytes()
    linktype = struct.unpack_from("=I", data, 20)[0]
    out, off = [], 24
    while off + 16 <= len(data):
        caplen, origlen = struct.unpack_from("=II", data, off + 8)
        assert caplen == origlen
        out.append(data[off + 16 : off + 16 + caplen])
        off += 16 + caplen
    return linktype, out


def test_pcap_records_frames_both_ways_without_the_length_prefix(host, tmp):
    """--pcap in passt mode: what goes through the stream, as Ethernet frames,
    without the 4-byte length; tcpdump reads it."""
    sock, cap = tmp / "s", tmp / "cap.pcap"
    p = host.popen([PASST, "-f", "-q", "-1", "-s", str(sock), "-p", str(cap)],
                   stderr=subprocess.PIPE)
    assert wait_for(lambda: sock.exists(), 10)
    c = socket.socket(socket.AF_UNIX)
    assert wait_for(lambda: c.connect(str(sock)) is None, 10)
    c.sendall(arp_request())
    arp_reply = recv_frame(c)
    c.sendall(echo_request(arp_reply[6:12]))
    for _ in range(10):  # an RA or other unsolicited frame may come first
        f = recv_frame(c, 10)
        if f[12:14] == b"\x08\x00" and f[23] == 1 and f[34] == 0:
            echo_reply = f
            break
    else:
        raise AssertionError("no echo reply")
    c.close()
    assert p.wait(10) == 0
    linktype, frames = pcap_records(cap)
    assert linktype == 1  # Ethernet
    sent_arp, sent_echo = arp_request()[4:], echo_request(arp_reply[6:12])[4:]
    for frame in (sent_arp, arp_reply, sent_echo, echo_reply):
        assert frame in frames, f"frame of {len(frame)} bytes not recorded as such"
    assert len(frames[0]) == 42  # the first frame is the ARP request, no prefix
    r = host.run(["tcpdump", "-nn", "-r", str(cap)], timeout=30)
    assert f"ARP, Request who-has {GW_ADDR4} tell {HOST_ADDR4}" in r.stdout, r.stdout
    assert f"ARP, Reply {GW_ADDR4} is-at" in r.stdout, r.stdout
    assert f"{HOST_ADDR4} > {GW_ADDR4}: ICMP echo request" in r.stdout, r.stdout
    assert f"{GW_ADDR4} > {HOST_ADDR4}: ICMP echo reply" in r.stdout, r.stdout


# -- the VM ----------------------------------------------------------------------------
BLOB_BYTES, BLOB6_BYTES, UPLOAD_MIB = 50 << 20, 16 << 20, 16
# -t forwards (host loopback to the guest): HTTP, "done", and -u: UDP echo
INBOUND_PORT, INBOUND_DONE_PORT, INBOUND_UDP_PORT = 8080, 8081, 8082
DNS4 = "192.0.2.53"  # -D: what the lease must carry (not the machine's resolv.conf)

# Host side of the inbound checks: download the guest's file through the -t
# forward over IPv4 and IPv6, UDP echo through -u over both, then poke the
# guest's "done" port so its script carries on. One JSON line.
INBOUND_CLIENT = f"""
import hashlib, json, socket, subprocess, sys, time, urllib.request
out = {{}}
try:
    for name, host in (("tcp4", "127.0.0.1"), ("tcp6", "[::1]")):
        try:
            with urllib.request.urlopen(f"http://{{host}}:{INBOUND_PORT}/blob", timeout=60) as r:
                out[name] = hashlib.sha256(r.read()).hexdigest()
        except OSError as e:
            out[name] = repr(e)
    for name, addr in (("udp4", "127.0.0.1"), ("udp6", "::1")):
        r = subprocess.run([sys.executable, {NETSERVE!r},
                            "udp-echo-check", addr, "{INBOUND_UDP_PORT}", "--count", "20",
                            "--size", "1200"], capture_output=True, text=True, timeout=60)
        out[name] = r.stdout.strip() or r.stderr.strip()
finally:
    print(json.dumps(out), flush=True)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", {INBOUND_DONE_PORT}), timeout=5).close()
            break
        except OSError:
            time.sleep(0.2)
"""

# Wait (bounded) for SLAAC: a global address in 2001:db8::/64 past DAD and a
# default route; then show both.
SLAAC = ("for i in $(seq 60); do ip -6 addr show dev eth0 scope global | grep -v tentative "
         "| grep -q inet6.2001:db8: && ip -6 route | grep -q ^default && break; "
         "sleep 0.5; done; ip -6 addr show dev eth0; ip -6 route")

GUEST_SCRIPT = f"""
step link 10 ip link set eth0 up
step dhcp 30 udhcpc -i eth0 -n -q -t 5 -T 2 -O mtu -s /usr/share/udhcpc/default.script
step addr 5 sh -c 'ip addr show eth0; ip route; cat /sys/class/net/eth0/mtu'
step ping_gw 20 ping -c 2 -W 5 {GW_ADDR4}
step ping_far 20 ping -c 2 -W 5 {FAR_ADDR4}
step wget 150 sh -c 'wget -q -O - http://{GW_ADDR4}:HTTP_PORT/blob | sha256sum'
step upload 120 sh -c 'dd if=/dev/urandom of=/up bs=1M count={UPLOAD_MIB} 2>/dev/null && sha256sum /up && nc {GW_ADDR4} SINK_PORT < /up; rm -f /up'
step udp_out 30 udpecho send {GW_ADDR4} UDP_PORT 50 1200
step udp_out_large 30 udpecho send {GW_ADDR4} UDP_PORT 5 60000
step slaac 40 sh -c '{SLAAC}'
step ping6_gw 20 ping6 -c 2 -W 5 {GW_ADDR6}
step ping6_far 20 ping6 -c 2 -W 5 {FAR_ADDR6}
step wget6 120 sh -c 'wget -q -O - http://[{GW_ADDR6}]:HTTP6_PORT/blob6 | sha256sum'
step upload6 60 sh -c 'dd if=/dev/urandom of=/up bs=1M count=4 2>/dev/null && sha256sum /up && nc {GW_ADDR6} SINK6_PORT < /up; rm -f /up'
step udp6_out 30 udpecho send {GW_ADDR6} UDP6_PORT 20 1200
step inbound_prep 30 sh -c 'mkdir -p /www && dd if=/dev/urandom of=/www/blob bs=1M count=8 2>/dev/null && sha256sum /www/blob && httpd -p {INBOUND_PORT} -h /www'
udpecho serve {INBOUND_UDP_PORT} 120 &
echo INBOUND-READY
step inbound_wait 150 nc -l -p {INBOUND_DONE_PORT}
"""

HTTP_SERVER = """
import functools, http.server, socket, socketserver, sys, threading
class V6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):  # without getfqdn: ::1 is no name in /etc/hosts here
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.server_address[1]
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s4 = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
s6 = V6(("::1", 0), h)
threading.Thread(target=s6.serve_forever, daemon=True).start()
print("READY", s4.server_address[1], s6.server_address[1], flush=True)
s4.serve_forever()
"""


@pytest.fixture(scope="module")
def vm_run() -> Iterator[tuple[harness.Boot, dict[str, harness.Step], dict[str, str], str]]:
    """One boot shared by the VM checks: (boot, steps, sha256 by name, passt log)."""
    why = harness.available()
    if why:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix="passt-vm-") as d, HostNS() as host:
        work = Path(d)
        os.chmod(work, 0o755)
        www = work / "www"
        www.mkdir()
        digests = {}
        for name, size in (("blob", BLOB_BYTES), ("blob6", BLOB6_BYTES)):
            data = os.urandom(size)
            (www / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
            del data
        srv = host.popen([PYTHON, "-u", "-c", HTTP_SERVER, str(www)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        port4, port6 = _readline(srv, 10).split()[1:3]
        sink4, sink6 = host.serve("tcp-sink", "127.0.0.1"), host.serve("tcp-sink", "::1")
        echo4, echo6 = host.serve("udp-echo", "127.0.0.1"), host.serve("udp-echo", "::1")
        sock, logf = work / "passt.socket", work / "passt.log"
        host.run([PASST, "--one-off", "-s", str(sock), "-l", str(logf), "-P", str(work / "pid"),
                  "-D", DNS4, "-t", f"{INBOUND_PORT},{INBOUND_DONE_PORT}",
                  "-u", str(INBOUND_UDP_PORT)], timeout=30)
        script = GUEST_SCRIPT
        for key, val in (("HTTP_PORT", port4), ("HTTP6_PORT", port6), ("SINK_PORT", sink4.port),
                         ("SINK6_PORT", sink6.port), ("UDP_PORT", echo4.port),
                         ("UDP6_PORT", echo6.port)):
            script = script.replace(key, str(val))
        boot = harness.Boot(work, script, harness.guest_tools())
        inbound: dict[str, str] = {}

        def host_side() -> None:  # once the guest serves: download through -t, echo through -u
            if wait_for(lambda: "INBOUND-READY" in boot.text(), 200, 0.2):
                r = host.run([PYTHON, "-c", INBOUND_CLIENT], timeout=150, check=False)
                inbound.update(json.loads(r.stdout.strip() or "{}"))
                inbound["stderr"] = r.stderr

        t = threading.Thread(target=host_side, daemon=True)
        t.start()
        boot.run(host.popen, str(sock), timeout=300)
        t.join(160)
        stop_process(srv)
        steps = boot.steps()
        boot.inbound = inbound  # type: ignore[attr-defined]
        yield boot, steps, digests, logf.read_text()


def _step(vm_run, name: str, ok: bool = True) -> harness.Step:
    boot, steps, _digest, log = vm_run
    assert name in steps, (f"step {name} did not run; boot {boot.boot_seconds}s\n"
                           f"console tail:\n{boot.text()[-3000:]}\nqemu: {boot.qemu_errors()}\n"
                           f"passt log tail:\n{log[-2000:]}")
    if ok:
        assert steps[name].rc == 0, steps[name].output
    return steps[name]


@pytest.mark.vm
def test_vm_boots_and_links(vm_run):
    boot = vm_run[0]
    assert boot.boot_seconds is not None, boot.text()[-3000:]
    _step(vm_run, "link")


@pytest.mark.vm
def test_vm_dhcp_lease_address_route_dns_mtu(vm_run):
    s = _step(vm_run, "dhcp")
    assert (f"LEASE ip={HOST_ADDR4} subnet=255.255.255.0 mask=24 router={GW_ADDR4} "
            f"mtu=65520 dns={DNS4}") in s.output, s.output
    a = _step(vm_run, "addr").output
    assert f"inet {HOST_ADDR4}/24" in a and f"default via {GW_ADDR4}" in a
    assert a.strip().splitlines()[-1] == "65520"


@pytest.mark.vm
def test_vm_ping_gateway_is_host_loopback(vm_run):
    s = _step(vm_run, "ping_gw")
    assert f"64 bytes from {GW_ADDR4}" in s.output, s.output


@pytest.mark.vm
def test_vm_ping_far_host(vm_run):
    s = _step(vm_run, "ping_far")
    assert f"64 bytes from {FAR_ADDR4}" in s.output, s.output


@pytest.mark.vm
def test_vm_wget_50mib_from_host_loopback(vm_run):
    s = _step(vm_run, "wget")
    assert s.output.split()[0] == vm_run[2]["blob"], "sha256 of the download differs"


@pytest.mark.vm
@pytest.mark.parametrize("name,mib", [("upload", UPLOAD_MIB), ("upload6", 4)])
def test_vm_upload_to_host_loopback(vm_run, name, mib):
    """The guest sends a file to a sink on the host's loopback (v4, then v6);
    the sink's sha256 and byte count must match the guest's."""
    out = _step(vm_run, name).output.split()
    guest_sha, sink_sha, count = out[0], out[2], out[3]
    assert (sink_sha, count) == (guest_sha, str(mib << 20)), out


@pytest.mark.vm
@pytest.mark.parametrize("name,count", [("udp_out", 50), ("udp_out_large", 5), ("udp6_out", 20)])
def test_vm_udp_echo_from_guest_to_host_loopback(vm_run, name, count):
    assert f"echoed {count}/{count}" in _step(vm_run, name).output


@pytest.mark.vm
@pytest.mark.parametrize("family", ["4", "6"])
def test_vm_inbound_tcp_forward_to_guest(vm_run, family):
    """-t: the host's loopback port (127.0.0.1 and ::1) reaches the guest's
    server (8 MiB, sha256)."""
    guest_sha = _step(vm_run, "inbound_prep").output.split()[0]
    got = vm_run[0].inbound
    assert got.get(f"tcp{family}") == guest_sha, got
    _step(vm_run, "inbound_wait")


@pytest.mark.vm
@pytest.mark.parametrize("family", ["4", "6"])
def test_vm_inbound_udp_forward_to_guest_echo(vm_run, family):
    """-u: datagrams to the host's loopback port come back from the guest's echo."""
    _step(vm_run, "inbound_prep")
    got = vm_run[0].inbound.get(f"udp{family}", "{}")
    res = json.loads(got) if got.startswith("{") else {"error": got}
    assert res.get("ok") and res.get("echoed") == 20, res


@pytest.mark.vm
def test_vm_slaac_address_and_default_route(vm_run):
    """The guest kernel configures itself from our RA: an EUI-64 address in
    2001:db8::/64 and a default route via our link-local address."""
    out = _step(vm_run, "slaac").output
    assert "inet6 2001:db8::5054:ff:fe12:3456/64 scope global dynamic" in out, out
    # busybox ip shows no "proto ra": an expiry tells the route came from an RA
    assert re.search(r"^default via fe80::\S+ dev eth0 .*expires", out, re.M), out


@pytest.mark.vm
def test_vm_ping6_gateway_and_far_host(vm_run):
    for name, addr in (("ping6_gw", GW_ADDR6), ("ping6_far", FAR_ADDR6)):
        s = _step(vm_run, name)
        assert f"from {addr}" in s.output, s.output


@pytest.mark.vm
def test_vm_wget6_from_host_loopback(vm_run):
    """TCP over IPv6: [2001:db8::1] is the host's ::1 (16 MiB, sha256)."""
    s = _step(vm_run, "wget6")
    assert s.output.split()[0] == vm_run[2]["blob6"], "sha256 of the download differs"


@pytest.mark.vm
def test_vm_one_off_passt_exits_when_qemu_powers_off(vm_run):
    assert "Client closed connection, exiting" in vm_run[3]


# -- as an unprivileged user, and through qrap -------------------------------------------
QRAP = str(Path(PASST).with_name("qrap"))

# Run by qrap with the passt connection on fd 5: one ARP exchange.
FD5_CLIENT = f"""
import socket, struct
s = socket.socket(fileno=5)
s.sendall({arp_request()!r})
s.settimeout(5)
n = struct.unpack("!I", s.recv(4, socket.MSG_WAITALL))[0]
print("op", s.recv(n, socket.MSG_WAITALL)[20:22].hex())
"""


def test_unprivileged_user_and_qrap(host, tmp):
    """passt as uid 65534 (no capabilities at all); qrap execs a client with the socket on fd 5."""
    os.chmod(tmp, 0o777)
    sock = tmp / "s"
    p = host.popen(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                    PASST, "-f", "-q", "-1", "-s", str(sock)], stderr=subprocess.PIPE)
    assert wait_for(sock.exists, 10), p.poll()
    r = host.run([QRAP, "--socket", str(sock), "5", PYTHON, "-c", FD5_CLIENT], timeout=30)
    assert "op 0002" in r.stdout
    assert p.wait(10) == 0  # qrap's client was the one-off client


def test_qrap_usage_errors(host, tmp):
    r = host.run([QRAP, "x"], check=False)
    assert r.returncode == 1 and r.stderr.startswith("Usage: qrap")
    r = host.run([QRAP, "--socket", str(tmp / "none"), "5", "true"], check=False)
    assert r.returncode == 1 and "no passt instance answered" in r.stderr
