# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests of the splice path's pieces: port messages, /proc/net parsing, peers."""

from __future__ import annotations

import socket

import pytest

from passt_sep import ipc
from passt_sep.setup.autofwd import parse_proc_net
from passt_sep.worker.splice import loopback_family

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
