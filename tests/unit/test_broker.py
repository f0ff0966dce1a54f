# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's OP_TCP_CONNECT rules: where a guest connection may go.

Real sockets, loopback only: an allowed destination gets a socket whose
connect was started (the gateway maps to a listener on 127.0.0.1 / ::1);
a forbidden one gets an errno and no socket at all.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from passt_sep import ipc
from passt_sep.cli import Options
from passt_sep.config import V4, V6, Config
from passt_sep.record import replace
from passt_sep.setup.broker import Broker

GW4, GW6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")


def _config(map_gw: bool = True, **opts: object) -> Config:
    o = Options(mode="pasta", **opts)  # type: ignore[arg-type]
    v4 = V4(addr=IPv4Address("192.0.2.10"), prefix=24, gw=GW4, dns=(), dns_match=IPv4Address("192.0.2.53"),
            dns_host=IPv4Address("127.0.0.1"), ifname="eth0", host_lo=GW4 if map_gw else None, guest_map=None)
    v6 = V6(addr=IPv6Address("2001:db8::10"), prefix=64, gw=GW6, our_ll=IPv6Address("fe80::1"), dns=(),
            dns_match=None, dns_host=None, ifname="eth0", host_lo=GW6 if map_gw else None, guest_map=None)
    return Config(opts=o, mode="pasta", v4=v4, v6=v6, our_mac=b"\x02" * 6, mtu=65520, ns_ifname="eth0",
                  search=())


def _connect(broker: Broker, addr: str, port: int) -> socket.socket | int:
    ip = ip_address(addr)
    fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return broker.tcp_connect(ipc.Request(1, ipc.OP_TCP_CONNECT, fam, port, ip.packed, 0))


@pytest.fixture
def listeners():  # noqa: ANN201 - two loopback listeners on one port number
    s4 = socket.socket(socket.AF_INET)
    s4.bind(("127.0.0.1", 0))
    s4.listen(8)
    port = s4.getsockname()[1]
    s6 = socket.socket(socket.AF_INET6)
    try:
        s6.bind(("::1", port))
    except OSError:
        s6.bind(("::1", 0))
    s6.listen(8)
    yield s4, s6
    s4.close()
    s6.close()


def test_gateway_maps_to_loopback(listeners) -> None:  # noqa: ANN001
    s4, s6 = listeners
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    for gw, lst, loop in ((GW4, s4, "127.0.0.1"), (GW6, s6, "::1")):
        s = _connect(b, str(gw), lst.getsockname()[1])
        assert isinstance(s, socket.socket) and not s.getblocking()
        conn, peer = lst.accept()
        assert s.getpeername()[0] == loop and peer[0] == loop  # connected at once on loopback
        conn.close()
        s.close()


def test_map_guest_addr_leads_to_the_guests_address(listeners) -> None:  # noqa: ANN001
    """--map-guest-addr: connect to the guest's assigned address on the host.

    The guest's address here is loopback, so that the connection stays on
    this machine; the mapped address itself (link-local) is otherwise refused.
    """
    s4, _s6 = listeners
    cfg = _config(map_gw=False)
    assert cfg.v4 is not None
    v4 = replace(cfg.v4, addr=IPv4Address("127.0.0.1"), guest_map=IPv4Address("169.254.1.2"))
    b = Broker(replace(cfg, v4=v4), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    port = s4.getsockname()[1]
    s = _connect(b, "169.254.1.2", port)
    assert isinstance(s, socket.socket)
    conn, _peer = s4.accept()
    assert s.getpeername() == ("127.0.0.1", port)
    conn.close()
    s.close()
    assert _connect(b, "169.254.1.3", port) == errno.EACCES  # other link-local: refused
    rules = b.dest.rules[socket.AF_INET]
    assert rules is not None and rules.lo_mapped is None  # --no-map-gw: the gateway is not loopback


MSG_FASTOPEN = 0x20000000


def test_fastopen_cannot_redirect_a_handed_over_socket(listeners) -> None:  # noqa: ANN001
    """The worker may sendto() (UDP needs it): on a socket the broker hands
    over, MSG_FASTOPEN with another address must not reach that address.
    The control shows why the broker never hands over unconnected TCP
    sockets: on one of those, the same call connects wherever it says."""
    s4, _s6 = listeners
    other = socket.socket(socket.AF_INET)
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    other.settimeout(0.3)
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    s = _connect(b, str(GW4), s4.getsockname()[1])
    assert isinstance(s, socket.socket)
    try:
        s.sendto(b"x", MSG_FASTOPEN, other.getsockname())
    except OSError:
        pass
    with pytest.raises(TimeoutError):
        other.accept()
    conn, _ = s4.accept()
    assert s.getpeername() == s4.getsockname()
    for x in (conn, s):
        x.close()
    if not int(Path("/proc/sys/net/ipv4/tcp_fastopen").read_text()) & 1:
        return  # client Fast Open off on this kernel: no control possible
    control = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        control.sendto(b"x", MSG_FASTOPEN, other.getsockname())
    except BlockingIOError:
        pass
    got, _ = other.accept()
    for x in (got, control, other):
        x.close()


def test_dns_forward_rules() -> None:
    """Port 53 of the --dns-forward address goes to the resolver UDP uses.

    (Connecting is covered end to end by tests/integration/test_options.py,
    DNS over TCP to a dnsmasq; port 53 is not bound here.)
    """
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    r4, r6 = b.dest.rules[socket.AF_INET], b.dest.rules[socket.AF_INET6]
    assert r4 is not None and r4.dns_match == IPv4Address("192.0.2.53").packed
    assert r4.dns_host == "127.0.0.1" and r4.dns_host_loopback
    assert r6 is not None and r6.dns_match is None


@pytest.mark.parametrize("addr", [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "224.0.0.1", "239.1.1.1", "255.255.255.255", "240.0.0.1",
    "169.254.1.1", "::1", "::", "ff02::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:192.0.2.1",
    "::127.0.0.1",
])
def test_forbidden_destinations_get_no_socket(addr: str) -> None:
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert _connect(b, addr, 80) == errno.EACCES


def test_without_map_gw_the_gateway_is_not_mapped() -> None:
    # (no connect here: without the mapping it would leave for 192.0.2.1)
    b = Broker(_config(map_gw=False), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert all(r is not None and r.lo_mapped is None for r in b.dest.rules.values())
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert [r.lo_mapped for r in b.dest.rules.values() if r] == [GW4.packed, GW6.packed]


def test_no_tcp_and_port_zero_are_refused() -> None:
    b = Broker(_config(no_tcp=True), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert _connect(b, str(GW4), 80) == errno.EPERM
    b = Broker(_config(), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert _connect(b, str(GW4), 0) == errno.EACCES  # a guest's SYN to port 0: a RST


def test_connect_reply_comes_before_the_connect(listeners) -> None:  # noqa: ANN001
    """OP_TCP_CONNECT through handle(): the reply (STATUS_PENDING) carries the
    socket, and the connect follows it: the worker's copy ends up connected
    to the listener the gateway maps to, with no second reply."""
    import select

    from sandbox.fdpass import recv_fds

    s4, _ = listeners
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(_config(), ours)
    b.handle(ipc.pack_request(7, ipc.OP_TCP_CONNECT, socket.AF_INET, s4.getsockname()[1], GW4.packed))
    data, fds = recv_fds(theirs, 64, 1)
    assert ipc.unpack_reply(data) == (7, ipc.STATUS_PENDING) and len(fds) == 1
    s = socket.socket(fileno=fds[0])
    assert select.select([], [s], [], 2)[1]
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert s.getpeername() == s4.getsockname()
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(64)  # nothing more: the connect did not fail
    s.close()
    s4.accept()[0].close()
    ours.close()
    theirs.close()


def test_connect_that_fails_at_once_gets_a_second_reply(listeners, monkeypatch) -> None:  # noqa: ANN001
    """A connect() that fails when it is called (here: made to return
    ENETUNREACH, as a destination without a route would) follows the
    STATUS_PENDING reply with a second one: same seq, the errno, no fd."""
    from sandbox.fdpass import recv_fds

    s4, _ = listeners
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(_config(), ours)

    class Unreachable(socket.socket):
        def connect_ex(self, _addr: object) -> int:  # type: ignore[override]
            return errno.ENETUNREACH

    def take(family: int) -> socket.socket:
        return Unreachable(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)

    monkeypatch.setattr(b.host_pool, "take", take)
    b.handle(ipc.pack_request(9, ipc.OP_TCP_CONNECT, socket.AF_INET, s4.getsockname()[1], GW4.packed))
    data, fds = recv_fds(theirs, 64, 1)
    assert ipc.unpack_reply(data) == (9, ipc.STATUS_PENDING) and len(fds) == 1
    os.close(fds[0])
    data, fds = recv_fds(theirs, 64, 1)
    assert ipc.unpack_reply(data) == (9, errno.ENETUNREACH) and not fds
    ours.close()
    theirs.close()


def test_refused_destination_gets_one_reply_and_no_socket() -> None:
    """Outside policy: one errno reply, no fd, nothing connected."""
    from sandbox.fdpass import recv_fds

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(_config(), ours)
    b.handle(ipc.pack_request(3, ipc.OP_TCP_CONNECT, socket.AF_INET, 80, IPv4Address("127.0.0.1").packed))
    data, fds = recv_fds(theirs, 64, 1)
    assert ipc.unpack_reply(data) == (3, errno.EACCES) and not fds
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(64)
    ours.close()
    theirs.close()


# OP_PING_SOCKET: a socket connected to the one destination the worker
# named, as the destination policy maps it; the mapped gateway gets a
# loopback-only socket. Ping sockets need net.ipv4.ping_group_range, so the
# broker runs in a network namespace of its own (unshare --net, root), where
# it may be set and where the echo requests below go to that namespace's
# loopback only; eth1 is one end of a veth pair there, with an address of
# the test network so that connect() finds a route (nothing is sent on it).

_PING_CHILD = """
import sys
sys.path.insert(0, {repo!r})
from tests.unit.test_broker import _ping_child
_ping_child()
"""


def _bound_to(s: socket.socket) -> bytes:
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")


def _ping_peer(s: socket.socket) -> str:
    """The destination a ping socket is connected to, read back from
    /proc/net/icmp(6) by its inode (getpeername() says ENOTCONN on a
    connected ping socket: it wants a port, and ICMP has none)."""
    import struct

    v4 = s.family == socket.AF_INET
    ino = str(os.fstat(s.fileno()).st_ino)
    for line in Path("/proc/net/icmp" if v4 else "/proc/net/icmp6").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[9] == ino:
            rem = parts[2].split(":")[0]
            words = [int(rem[i:i + 8], 16) for i in range(0, len(rem), 8)]
            return str(ip_address(b"".join(struct.pack("<I", w) for w in words)))
    raise AssertionError(f"socket inode {ino} not in /proc/net/icmp{'' if v4 else '6'}")


def _ping_child() -> None:
    """In the fresh namespace: the broker's ping sockets, checked; an AssertionError fails the test."""
    from passt_sep.egress import parse_egress_spec
    from sandbox.fdpass import recv_fds

    subprocess.run("ip link set lo up && ip link add eth1 type veth peer name peer1 && ip link set eth1 up && "
                   "ip addr add 192.0.2.100/24 dev eth1 && ip -6 addr add 2001:db8::100/64 dev eth1 nodad",
                   shell=True, check=True)
    with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
        f.write("0 2147483647")
    opts = {"outbound_if4": "eth1", "outbound_if6": "eth1"}
    b = Broker(_config(**opts), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    unmapped = Broker(_config(map_gw=False, **opts), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    deny_lo = Broker(_config(egress_deny=(parse_egress_spec("--egress-deny", "127.0.0.0/8"),
                                          parse_egress_spec("--egress-deny", "::1")), **opts),
                     socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    allow_far = Broker(_config(egress_allow=(parse_egress_spec("--egress-allow", "192.0.2.2"),
                                             parse_egress_spec("--egress-allow", "[2001:db8::2]")), **opts),
                       socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    allow_port = Broker(_config(egress_allow=(parse_egress_spec("--egress-allow", "192.0.2.2:7"),
                                              parse_egress_spec("--egress-allow", "[2001:db8::2]:7")), **opts),
                        socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    for fam, gw, far, loop, echo in (
            (socket.AF_INET, GW4, "192.0.2.2", "127.0.0.1", b"\x08\0\0\0\0\0\0\1ping"),
            (socket.AF_INET6, GW6, "2001:db8::2", "::1", b"\x80\0\0\0\0\0\0\1ping")):
        def req(addr: bytes, fam: int = fam) -> ipc.Request:
            return ipc.Request(1, ipc.OP_PING_SOCKET, fam, 0, addr, 0)

        def ping(broker: Broker, addr: bytes) -> socket.socket:
            s = broker.ping_socket(req(addr))
            assert isinstance(s, socket.socket), s
            return s

        # the gateway, handed over as the worker gets it: loopback, not eth1,
        # not --outbound, and connected to the host's loopback
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        b.sock = ours
        b.handle(ipc.pack_request(5, ipc.OP_PING_SOCKET, fam, 0, gw.packed))
        data, fds = recv_fds(theirs, 64, 1)
        assert ipc.unpack_reply(data) == (5, 0) and len(fds) == 1, (data, fds)
        s = socket.socket(fam, socket.SOCK_DGRAM,
                          socket.IPPROTO_ICMP if fam == socket.AF_INET else socket.IPPROTO_ICMPV6, fds[0])
        assert _bound_to(s) == b"lo" and s.getsockname()[0] == loop, (_bound_to(s), s.getsockname())
        assert _ping_peer(s) == loop
        s.send(echo)  # no address: the connected destination
        s.settimeout(5)
        assert s.recvfrom(100)[1][0] == loop  # the echo reply, from loopback
        for x in (s, ours, theirs):
            x.close()
        # the control: an unconnected ping socket has no destination to send to
        c = socket.socket(fam, socket.SOCK_DGRAM, s.proto)
        try:
            c.send(echo)
            raise AssertionError("an unconnected ping socket sent without an address")
        except OSError as e:
            assert e.errno == errno.EDESTADDRREQ, e
        assert _ping_peer(c) in ("0.0.0.0", "::")
        c.close()
        s = ping(b, ip_address(far).packed)  # anything else: eth1, connected to it
        assert _bound_to(s) == b"eth1" and _ping_peer(s) == far, (_bound_to(s), _ping_peer(s))
        s.close()
        for addr in (bytes(16), ip_address(loop).packed, ip_address("ff02::1" if ":" in far else "224.0.0.1").packed):
            assert b.ping_socket(req(addr)) == errno.EACCES, addr  # unmapped loopback, unspecified, multicast
        s = ping(unmapped, gw.packed)  # --no-map-gw: the gateway is just another host
        assert _bound_to(s) == b"eth1" and _ping_peer(s) == str(gw)
        s.close()
        # --egress-deny 127.0.0.0/8 (::1): the mapped gateway is closed, the far host not
        assert deny_lo.ping_socket(req(gw.packed)) == errno.EACCES
        ping(deny_lo, ip_address(far).packed).close()
        # --egress-allow of the far host only: the gateway is refused
        assert allow_far.ping_socket(req(gw.packed)) == errno.EACCES
        ping(allow_far, ip_address(far).packed).close()
        # a rule with ports covers TCP and UDP only: no echo matches it
        assert allow_port.ping_socket(req(ip_address(far).packed)) == errno.EACCES
    assert deny_lo.dest.egress_refused == 2 and allow_port.dest.egress_refused == 2
    assert b.ping_socket(ipc.Request(1, ipc.OP_PING_SOCKET, socket.AF_INET, 0, GW4.packed, 0)) != errno.EPERM
    b = Broker(_config(no_icmp=True), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET))
    assert b.ping_socket(ipc.Request(1, ipc.OP_PING_SOCKET, socket.AF_INET, 0, GW4.packed, 0)) == errno.EPERM


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
                    reason="needs root, unshare and ip (a network namespace of its own)")
def test_ping_socket_is_connected_to_its_destination() -> None:
    """Each ping socket is connected to the destination the worker named, as
    the policy maps it. With --outbound-if4/6, the gateway's is bound to lo
    and 127.0.0.1 / ::1 (so it reaches the host's loopback and nothing off
    the host); every other destination's to the outbound interface;
    forbidden and egress-refused destinations get EACCES and no socket."""
    repo = str(Path(__file__).resolve().parents[2])
    r = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", _PING_CHILD.format(repo=repo)],
                       capture_output=True, text=True, timeout=60, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
