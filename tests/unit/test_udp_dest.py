# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's UDP sockets: each one the worker gets can reach one approved peer.

The real Broker answers over a real SOCK_SEQPACKET socketpair, as it does
the worker, and the test reads the handed-over sockets back: a flow's socket
is connected to exactly the destination the policy chose (the mapping
applied), a refused destination gets an errno and no fd, a reply socket of
a -u port is bound beside it and connected to the sender. Loopback only:
the sockets are connected (no datagram needs to be sent for getpeername),
and the ones that do send stay on 127.0.0.1 / ::1.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from passt_sep import ipc
from passt_sep.record import replace
from passt_sep.setup.broker import UDP_BIND_MIN, Broker
from passt_sep.setup.listeners import _udp_bind, note_binds
from sandbox.fdpass import recv_fds
from tests.unit.test_udp_flows import DNS_MATCH, GW4, GW6, config

LOOP4 = "127.0.0.1"


@pytest.fixture
def pair() -> Iterator[tuple[Broker, socket.socket]]:
    """A Broker on one end of a socketpair, the worker's end returned beside it."""
    parent, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield Broker(config(), parent), worker
    parent.close()
    worker.close()


def ask(b: Broker, w: socket.socket, op: int, family: int, port: int = 0, addr: bytes = b"",
        arg: int = 0) -> socket.socket | int:
    """One request through the socketpair: the socket handed over, or the errno."""
    b.handle(ipc.pack_request(7, op, family, port, addr, arg))
    data, fds = recv_fds(w, 64, 1)
    reply = ipc.unpack_reply(data)
    assert reply is not None and reply[0] == 7
    if reply[1] > 0:
        assert not fds
        return reply[1]
    assert reply[1] == 0 and len(fds) == 1
    return socket.socket(fileno=fds[0])


def free_port() -> int:
    """A UDP port free on the wildcard of both families right now (>= 1024)."""
    for _ in range(50):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s4.bind(("0.0.0.0", 0))
        port = s4.getsockname()[1]
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s6.bind(("::", port))
        except OSError:
            continue
        finally:
            s4.close()
            s6.close()
        assert port >= UDP_BIND_MIN
        return port
    raise AssertionError("no free port")


@pytest.mark.parametrize("family,gw,loop", [(socket.AF_INET, GW4, LOOP4), (socket.AF_INET6, GW6, "::1")])
def test_flow_socket_is_connected_to_the_mapped_destination_only(pair, family, gw, loop) -> None:  # noqa: ANN001
    b, w = pair
    gport = free_port()
    s = ask(b, w, ipc.OP_UDP_SOCKET, family, 9999, gw.packed, gport)
    assert isinstance(s, socket.socket)
    try:
        assert s.getpeername()[:2] == (loop, 9999)  # the gateway means the host's loopback
        assert s.getsockname()[1] == gport  # the guest's own source port
        assert s.type == socket.SOCK_DGRAM and not os.get_blocking(s.fileno())
    finally:
        s.close()


def test_dns_match_is_connected_to_the_resolver(pair) -> None:  # noqa: ANN001
    b, w = pair
    s = ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_INET, 53, DNS_MATCH.packed, 555)
    assert isinstance(s, socket.socket)
    assert s.getpeername() == (LOOP4, 53)  # dns_host of the config
    assert s.getsockname()[1] >= UDP_BIND_MIN  # a privileged guest port is never bound
    s.close()


@pytest.mark.parametrize("family,dst", [
    (socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "224.0.0.251"),
    (socket.AF_INET, "255.255.255.255"), (socket.AF_INET, "169.254.1.1"),
    (socket.AF_INET6, "::1"), (socket.AF_INET6, "ff02::fb"), (socket.AF_INET6, "fe80::1"),
    (socket.AF_INET6, "::ffff:127.0.0.1"),
])
def test_forbidden_destinations_get_no_socket(pair, family, dst) -> None:  # noqa: ANN001
    b, w = pair
    assert ask(b, w, ipc.OP_UDP_SOCKET, family, 7, socket.inet_pton(family, dst), 40000) == errno.EACCES


def test_map_guest_addr_is_connected_to_the_guests_address() -> None:
    cfg = config()
    assert cfg.v4 is not None
    # the guest's address is loopback here, so that the socket stays on this machine
    cfg = replace(cfg, v4=replace(cfg.v4, addr=IPv4Address("127.0.0.2"), guest_map=IPv4Address("169.254.1.2")))
    parent, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(cfg, parent)
    s = ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_INET, 7, IPv4Address("169.254.1.2").packed, 600)
    assert isinstance(s, socket.socket) and s.getpeername() == ("127.0.0.2", 7)
    s.close()
    parent.close()
    w.close()


def test_one_guest_port_two_destinations_share_the_host_port(pair) -> None:  # noqa: ANN001
    """The port socket and two flows of one guest port: one host port, each
    flow connected to its own peer, and each peer's datagrams on its flow."""
    b, w = pair
    gport = free_port()
    port_sock = ask(b, w, ipc.OP_UDP_PORT, socket.AF_INET, gport)
    assert isinstance(port_sock, socket.socket)
    with pytest.raises(OSError):
        port_sock.getpeername()  # unconnected: the worker cannot send on it at all
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    flows = []
    for p in peers:
        p.bind((LOOP4, 0))
        p.settimeout(2)
        s = ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_INET, p.getsockname()[1], GW4.packed, gport)
        assert isinstance(s, socket.socket)
        assert s.getsockname()[1] == gport and s.getpeername() == p.getsockname()
        flows.append(s)
    for i, p in enumerate(peers):
        p.sendto(b"to %d" % i, (LOOP4, gport))
    for i, s in enumerate(flows):
        s.settimeout(2)
        assert s.recv(10) == b"to %d" % i
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.sendto(b"new", (LOOP4, gport))
    port_sock.settimeout(2)
    assert port_sock.recvfrom(10) == (b"new", (LOOP4, stranger.getsockname()[1]))
    for s in [port_sock, stranger, *peers, *flows]:
        s.close()


def test_privileged_guest_port_keeps_one_ephemeral_host_port(pair) -> None:  # noqa: ANN001
    b, w = pair
    first = ask(b, w, ipc.OP_UDP_PORT, socket.AF_INET, 123)
    second = ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_INET, 7, GW4.packed, 123)
    assert isinstance(first, socket.socket) and isinstance(second, socket.socket)
    assert first.getsockname()[1] >= UDP_BIND_MIN
    assert second.getsockname()[1] == first.getsockname()[1]
    first.close()
    second.close()


def test_a_port_held_by_another_program_is_not_shared(pair) -> None:  # noqa: ANN001
    """Even a socket with SO_REUSEADDR of another program: its port is left alone."""
    b, w = pair
    gport = free_port()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("0.0.0.0", gport))
    s = ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_INET, 7, GW4.packed, gport)
    assert isinstance(s, socket.socket) and s.getsockname()[1] != gport
    s.close()
    other.close()


def test_no_udp_and_bad_families_are_refused() -> None:
    parent, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(config(no_udp=True), parent)
    for op in (ipc.OP_UDP_SOCKET, ipc.OP_UDP_PORT, ipc.OP_UDP_REPLY):
        assert ask(b, w, op, socket.AF_INET, 7, GW4.packed, 40000) == errno.EPERM
    b = Broker(config(), parent)
    assert ask(b, w, ipc.OP_UDP_SOCKET, socket.AF_UNIX, 7, GW4.packed, 40000) == errno.EPERM
    parent.close()
    w.close()


# -- reply sockets of -u (OP_UDP_REPLY) and -U (OP_NS_UDP_REPLY) -----------------------------

def test_reply_socket_is_bound_beside_the_u_socket_and_connected_to_the_sender(pair) -> None:  # noqa: ANN001
    b, w = pair
    usock = _udp_bind(socket.AF_INET6, "::1", 0, None, True)  # a -u socket on ::1
    port = usock.getsockname()[1]
    note_binds(b.udp_local, [(usock, port, port)])
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.bind(("::1", 0))
    sender.settimeout(2)
    raw = socket.inet_pton(socket.AF_INET6, "::1")
    r = ask(b, w, ipc.OP_UDP_REPLY, socket.AF_INET6, port, raw, sender.getsockname()[1])
    assert isinstance(r, socket.socket)
    assert r.getsockname()[:2] == ("::1", port) and r.getpeername()[:2] == sender.getsockname()[:2]
    r.send(b"reply")
    assert sender.recvfrom(10)[0] == b"reply"
    # a port that is not a -u forward, a multicast or link-local sender, port 0: refused
    assert ask(b, w, ipc.OP_UDP_REPLY, socket.AF_INET6, port + 1 if port < 65535 else 1024, raw, 9) == errno.EPERM
    for bad in ("ff02::1", "fe80::1"):
        assert ask(b, w, ipc.OP_UDP_REPLY, socket.AF_INET6, port,
                   socket.inet_pton(socket.AF_INET6, bad), 9) == errno.EACCES
    assert ask(b, w, ipc.OP_UDP_REPLY, socket.AF_INET6, port, raw, 0) == errno.EPERM
    for s in (r, usock, sender):
        s.close()


def test_ns_reply_socket_only_for_loopback_senders_of_a_U_port() -> None:
    from types import SimpleNamespace

    from passt_sep.setup.listeners import LocalBind

    parent, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b = Broker(config(), parent)
    usock = _udp_bind(socket.AF_INET, LOOP4, 0, None, True)  # stands for a -U socket
    port = usock.getsockname()[1]
    bind = LocalBind(socket.AF_INET, LOOP4, b"", True)
    b.fwd = SimpleNamespace(  # type: ignore[assignment]
        ns_udp_bind=lambda fam, p, peer: bind if p == port and fam == socket.AF_INET else None,
        ns=SimpleNamespace(call=lambda fn, *_wait: fn()))
    r = ask(b, w, ipc.OP_NS_UDP_REPLY, socket.AF_INET, port, socket.inet_aton("127.0.0.1"), 4000)
    assert isinstance(r, socket.socket) and r.getpeername() == (LOOP4, 4000) and r.getsockname() == (LOOP4, port)
    r.close()
    assert ask(b, w, ipc.OP_NS_UDP_REPLY, socket.AF_INET, port, socket.inet_aton("192.0.2.7"), 4000) == errno.EPERM
    assert ask(b, w, ipc.OP_NS_UDP_REPLY, socket.AF_INET, port + 1, socket.inet_aton("127.0.0.1"), 4000) == errno.EPERM
    usock.close()
    parent.close()
    w.close()


def test_u_socket_shares_its_port_only_after_its_own_bind() -> None:
    """listeners._udp_bind: a port in use (even with SO_REUSEADDR) is still an error."""
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind((LOOP4, 0))
    with pytest.raises(OSError):
        _udp_bind(socket.AF_INET, LOOP4, other.getsockname()[1], None, True)
    other.close()
    u = _udp_bind(socket.AF_INET, LOOP4, 0, None, True)
    assert u.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    u.close()
