# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests of the splice path's pieces: port messages, /proc/net parsing, peers."""

from __future__ import annotations

import socket

import pytest

from passt_sep import ipc
from passt_sep.setup.autofwd import parse_proc_net
from passt_sep.worker.splice import loopback_family
from tests.unit.test_tcp_proto import _LoopWorker

PROC_TCP = (
    b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
    b"   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
    b"   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n"
    b"   3: garbage\n"
    b"   4: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1\n")
PROC_TCP6 = (
    b"  sl  local_address                         remote_address                        st ...\n"
    b"   0: 00000000000000000000000001000000:2710 00000000000000000000000000000000:0000 0A 0\n")
PROC_UDP = (
    b"   sl  local_address rem_address   st ...\n"
    b"  1: 00000000:0035 00000000:0000 07 0\n"
    b"  2: 00000000:D431 00000000:0000 07 0\n"
    b"  3: 0100007F:0050 0100007F:0035 01 0\n")


def test_parse_listening_ports() -> None:
    assert parse_proc_net(PROC_TCP, (b"0A",)) == {8080, 22}
    assert parse_proc_net(PROC_TCP6, (b"0A",)) == {10000}
    assert parse_proc_net(b"", (b"0A",)) == set()


def test_parse_udp_below_ephemeral() -> None:
    assert parse_proc_net(PROC_UDP, (b"07",)) == {53, 0xD431}
    assert parse_proc_net(PROC_UDP, (b"07",), below=32768) == {53}


@pytest.mark.parametrize("magic", sorted(ipc.PORT_MAGICS))
def test_port_messages_round_trip(magic: bytes) -> None:
    msg = ipc.pack_port_msg(magic, 8080, 8081)
    assert ipc.unpack_port_msg(msg) == (magic, 8080, 8081)


def test_port_messages_reject_unknown() -> None:
    with pytest.raises(ValueError):
        ipc.pack_port_msg(b"XXXX", 1)
    assert ipc.unpack_port_msg(b"XXXX\0\0\0\0") is None
    assert ipc.unpack_port_msg(b"TLSN") is None
    # the parent's announcements are port messages the worker decodes as such
    assert ipc.unpack_port_msg(ipc.pack_listener(1, 2)) == (ipc.LISTENER_MAGIC, 1, 2)
    assert ipc.unpack_port_msg(ipc.pack_udp_listener(1, 2)) == (ipc.UDP_LISTENER_MAGIC, 1, 2)


@pytest.mark.parametrize("peer,fam", [
    ("127.0.0.1", socket.AF_INET), ("127.1.2.3", socket.AF_INET), ("::1", socket.AF_INET6),
    ("::ffff:127.0.0.1", socket.AF_INET), ("192.0.2.1", None), ("::ffff:192.0.2.1", None),
    ("2001:db8::1", None), ("fe80::1%eth0", None), ("::", None)])
def test_loopback_family(peer: str, fam: int | None) -> None:
    assert loopback_family(peer) == fam


class _AcceptWorker(_LoopWorker):
    """What Splicer._accept touches: the clock and epoll registration (the
    TCP tests' fake loop), the tap path and the broker, recorded."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from tests.unit.test_udp_flows import config

        super().__init__()
        self.cfg = config()  # type: ignore[assignment]
        self.inbound: list[tuple] = []
        self.tcp = SimpleNamespace(_inbound=lambda fd, fam, peer, target: self.inbound.append((fd, fam, peer)))
        self.broker = SimpleNamespace(request=lambda op, fam, cb, **kw: self.requests.append((op, fam, kw)))


def _listener(w: _AcceptWorker, enabled: bool):  # noqa: ANN202
    """A Splicer with one dual-stack -t listener on :: (a real socket), and its port."""
    import os

    from passt_sep.worker.splice import Splicer

    sp = Splicer(w)  # type: ignore[arg-type]
    sp.enabled = enabled
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    s.listen(16)
    port = s.getsockname()[1]
    sp.port_msg((ipc.LISTENER_MAGIC, port, 8080), [os.dup(s.fileno())])
    s.close()
    (ls,) = sp.listeners.values()
    return sp, ls, port


def test_accept_takes_one_then_drains_a_burst() -> None:
    import os

    w = _AcceptWorker()
    sp, ls, port = _listener(w, enabled=False)  # every peer to the tap path
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    sp._accept(ls)
    assert len(w.inbound) == 1  # one per readiness event ...
    w.t += 50e-6  # ... the listener ready again right away: a burst, drained
    sp._accept(ls)
    assert len(w.inbound) == 5
    fd, fam, peer = w.inbound[0]
    assert fam == socket.AF_INET6 and peer[0] == "::ffff:127.0.0.1"  # the v4-mapped peer as accepted
    for fd, _, _ in w.inbound:
        os.close(fd)
    w.t += 1.0
    clients.append(socket.create_connection(("::1", port)))
    sp._accept(ls)  # long after: one again (there is just one)
    assert len(w.inbound) == 6 and w.inbound[-1][2][0] == "::1"
    os.close(w.inbound[-1][0])
    for c in clients:
        c.close()


def test_accept_splices_loopback_peers_by_their_family() -> None:
    w = _AcceptWorker()
    sp, ls, port = _listener(w, enabled=True)
    c4 = socket.create_connection(("127.0.0.1", port))
    c6 = socket.create_connection(("::1", port))
    sp._accept(ls)
    w.t += 1.0
    sp._accept(ls)
    assert not w.inbound
    assert [(op, fam, kw["port"]) for op, fam, kw in w.requests] == [
        (ipc.OP_NS_LOOP_CONNECT, socket.AF_INET, 8080), (ipc.OP_NS_LOOP_CONNECT, socket.AF_INET6, 8080)]
    c4.close()
    c6.close()


def test_accept_out_of_fds_pauses_the_listener_until_the_timer() -> None:
    """EMFILE leaves the level-triggered listener ready: it is not watched
    (the loop would spin on it) until the next timer pass."""
    import errno

    w = _AcceptWorker()
    sp, ls, port = _listener(w, enabled=False)
    assert ls.fd in w.handlers

    class NoFds:
        def _accept(self) -> tuple:
            raise OSError(errno.EMFILE, "Too many open files")

    real, ls.sock = ls.sock, NoFds()  # type: ignore[assignment]
    sp._accept(ls)
    assert ls.fd not in w.handlers and sp.paused == [ls]
    ls.sock = real
    sp.timer(w.t)
    assert ls.fd in w.handlers and not sp.paused
    real.close()
