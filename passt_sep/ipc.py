# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker's messages: the whole door between worker and parent.

Parent and worker share one SOCK_SEQPACKET socketpair. Apart from the
start-up message (parent to worker: the Config and the fds the worker
starts with), every message is one fixed-layout request from the worker
and one reply from the parent, which may carry one fd over SCM_RIGHTS.

Request (worker to parent), 40 bytes::

    u32 seq     echoed in the reply, so the worker can match it
    u16 op      OP_* below
    u16 family  AF_INET or AF_INET6
    u16 port    meaning per op (e.g. ICMP echo identifier)
    u16 pad
    16s addr    address, IPv4 in the first 4 bytes
    u32 arg     meaning per op
    u32 pad

Reply (parent to worker), 8 bytes: ``u32 seq, i32 status`` (0, or a
positive errno), with the fd attached when status is 0.

Worker to parent also: OP_LOG-free; the worker logs to an fd it was given.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

REQ = struct.Struct("=IHHHH16sII")
REPLY = struct.Struct("=Ii")

OP_PING_SOCKET = 1  # ICMP/ICMPv6 echo ("ping") socket in the host netns
OP_TCP_CONNECT = 2  # TCP socket connecting (non-blocking) to addr:port in the host netns
OP_UDP_SOCKET = 3  # UDP socket in the host netns, bound to port (the guest's source port) if possible
OP_NAMES = {OP_PING_SOCKET: "ping socket", OP_TCP_CONNECT: "tcp connect", OP_UDP_SOCKET: "udp socket"}

# Parent to worker, right after the start message: one inbound TCP listener
# (-t) per message, its fd attached: magic, listening port, target port.
LISTENER = struct.Struct("=4sHH")
LISTENER_MAGIC = b"TLSN"
UDP_LISTENER_MAGIC = b"ULSN"  # the same for an inbound UDP socket (-u)

START_MAX = 1 << 20  # largest start-up message (pickled Config)
MAX_START_FDS = 16


@dataclass(frozen=True)
class Request:
    """One decoded request from the worker."""

    seq: int
    op: int
    family: int
    port: int
    addr: bytes
    arg: int


def pack_request(seq: int, op: int, family: int, port: int = 0, addr: bytes = b"", arg: int = 0) -> bytes:
    """Encode a request."""
    return REQ.pack(seq, op, family, port, 0, addr.ljust(16, b"\0"), arg, 0)


def unpack_request(data: bytes) -> Request | None:
    """Decode a request; None if its size is wrong."""
    if len(data) != REQ.size:
        return None
    seq, op, family, port, _, addr, arg, _ = REQ.unpack(data)
    return Request(seq, op, family, port, addr, arg)


def pack_reply(seq: int, status: int) -> bytes:
    """Encode a reply."""
    return REPLY.pack(seq, status)


def pack_listener(port: int, target: int) -> bytes:
    """Encode a listener announcement (its fd travels with it)."""
    return LISTENER.pack(LISTENER_MAGIC, port, target)


def unpack_listener(data: bytes) -> tuple[int, int] | None:
    """Decode a listener announcement: (port, target), or None."""
    if len(data) != LISTENER.size:
        return None
    magic, port, target = LISTENER.unpack(data)
    return (port, target) if magic == LISTENER_MAGIC else None


def pack_udp_listener(port: int, target: int) -> bytes:
    """Encode an inbound UDP socket announcement (its fd travels with it)."""
    return LISTENER.pack(UDP_LISTENER_MAGIC, port, target)


def unpack_udp_listener(data: bytes) -> tuple[int, int] | None:
    """Decode an inbound UDP socket announcement: (port, target), or None."""
    if len(data) != LISTENER.size:
        return None
    magic, port, target = LISTENER.unpack(data)
    return (port, target) if magic == UDP_LISTENER_MAGIC else None


def unpack_reply(data: bytes) -> tuple[int, int] | None:
    """Decode a reply: (seq, status), or None if its size is wrong."""
    if len(data) != REPLY.size:
        return None
    seq, status = REPLY.unpack(data)
    return seq, status
