# SPDX-License-Identifier: GPL-2.0-or-later
"""Bound ports of a network namespace through NETLINK_SOCK_DIAG.

Parent only (``auto`` port forwarding, setup/autofwd.py). The kernel
filters by socket state, so a dump of listening TCP sockets costs the
same however many connections sit in TIME_WAIT; /proc/net/tcp lists them
all, and under connection churn reading and parsing it every second took
up to half a CPU. A netlink socket answers for the namespace it was made
in: the namespace's is made by the thread inside it.

``ports`` returns None when the kernel has no diag module for the
protocol (``udp_diag`` may be missing); the caller then reads /proc.
"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
TCP_CLOSE = 7  # an unconnected UDP socket

_NLMSG = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zero sockid
_REQ = struct.Struct("=BBBxI48x")
_SPORT = struct.Struct("!H")
_ERR = struct.Struct("=i")
MSG_MIN = 4 + 48  # inet_diag_msg up to and including its sockid
MAX_REPLY_BYTES = 64 << 20  # bounded read of one dump
RECV_SIZE = 1 << 16


def open_socket() -> socket.socket:
    """A sock_diag socket of the calling thread's network namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)


def ports(sock: socket.socket, family: int, proto: int, state: int, below: int = 65536) -> set[int] | None:
    """Local ports of the family/proto sockets in state, or None if the kernel cannot say."""
    seq = 1
    req = _REQ.pack(family, proto, 0, 1 << state)
    sock.send(_NLMSG.pack(_NLMSG.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + req)
    out: set[int] = set()
    total = 0
    while total < MAX_REPLY_BYTES:
        data = sock.recv(RECV_SIZE)
        if not data:
            return None
        total += len(data)
        off = 0
        while off + _NLMSG.size <= len(data):
            length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
            if length < _NLMSG.size or off + length > len(data):
                return None  # malformed: let the caller fall back
            body = off + _NLMSG.size
            if mtype == NLMSG_DONE:
                return out
            if mtype == NLMSG_ERROR:
                err = -_ERR.unpack_from(data, body)[0] if length >= _NLMSG.size + 4 else errno.EIO
                if err:
                    return None
            elif mtype == SOCK_DIAG_BY_FAMILY and length - _NLMSG.size >= MSG_MIN:
                p = _SPORT.unpack_from(data, body + 4)[0]
                if 0 < p < below:
                    out.add(p)
            off += (length + 3) & ~3
    return None
