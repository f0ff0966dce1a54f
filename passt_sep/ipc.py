# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker's messages: the whole door between worker and parent.

Parent and worker share one SOCK_SEQPACKET socketpair. Apart from the
start-up message (parent to worker: the Config and the fds the worker
starts with), every message is one fixed-layout request from the worker
and one reply from the parent, which may carry one fd over SCM_RIGHTS.

Request (worker to parent), 36 bytes::

    u32 seq     echoed in the reply, so the worker can match it
    u16 op      OP_* below
    u16 family  AF_INET or AF_INET6
    u16 port    meaning per op (e.g. the TCP destination port)
    u16 pad
    16s addr    address, IPv4 in the first 4 bytes
    u32 arg     meaning per op
    u32 pad

Reply (parent to worker), 8 bytes: ``u32 seq, i32 status`` (0, or a
positive errno), with the fd attached when status is 0, or when it is
STATUS_CONNECTED: a connect that completed before the reply went out (on
loopback the kernel finishes the handshake within connect()), so the
worker need not wait for EPOLLOUT; or STATUS_PENDING (OP_TCP_CONNECT): a
socket the parent connects right after this reply. Its outcome shows on
the socket (EPOLLOUT when connected, EPOLLERR and SO_ERROR when refused;
until the connect starts the socket is closed: EPOLLHUP without an
error). When connect() itself fails, one more reply follows at once, with
the same seq, the errno and no fd: it comes before any other reply, so the
worker need remember only the last pending seq.

Worker to parent also: OP_LOG-free; the worker logs to an fd it was given.

Parent to worker, unsolicited (after the start message, any time): port
announcements, each a ``LISTENER`` layout (4-byte magic, port, target):

    TLSN + fd   a -t listener in the host netns (loopback peers are spliced)
    ULSN + fd   a -u socket in the host netns
    TNSL + fd   a -T listener bound inside the namespace (127.0.0.1 or ::1);
                everything it accepts is spliced to the host's loopback
                (not sent by pasta's parent any more: it accepts on its -T
                listeners itself and sends ACCEPT, below)
    TDRP        close every -t listener of ``port`` (auto: the namespace's
                server went away); ``target`` unused
    UDRP        the same for the -u sockets of ``port``
    TNDR        the same for the -T listeners of ``port``
    UNSL + fd   a -U socket bound inside the namespace (127.0.0.1 or ::1);
                every datagram it receives is relayed to the host's loopback
    UNDR        close the -U sockets of ``port`` (and their flows)
    TACC + fds  (ACCEPT layout) a connection the parent accepted on a -T
                listener or a -t listener's loopback twin, and the socket
                it connected to the other side (setup/acceptor.py)
    QRPT        (not a port message) the control API asks for a report:
                ``port`` is the query id; answered with OP_REPORT

Announcements only ever hand the worker sockets that it may accept or
receive on, and drops only take them away: no message makes the worker
create, bind or connect anything, and the drop of a port the worker does
not hold is ignored. Which port an accepted connection is spliced to is
re-checked by the parent on the OP_*_LOOP_CONNECT and OP_*_LOOP_UDP
requests (docs/splice.md).
"""

from __future__ import annotations

import struct
from collections import namedtuple

REQ = struct.Struct("=IHHHH16sII")
REPLY = struct.Struct("=Ii")
STATUS_CONNECTED = -1  # fd attached, and its connect has already completed
STATUS_PENDING = -2  # fd attached, connect() follows the reply; a failure of it comes as a second reply

# ICMP/ICMPv6 echo ("ping") socket in the host netns, connected to the host
# side of ``addr`` (the destination as the guest wrote it, decided by the
# parent's destination policy: EACCES when refused); the mapped gateway gets
# one bound to lo and 127.0.0.1 / ::1 (no --outbound-if*). The worker sends
# on it with send(), one socket per echo identifier and destination
OP_PING_SOCKET = 1
OP_TCP_CONNECT = 2  # TCP socket connecting (non-blocking) to addr:port in the host netns
# UDP socket in the host netns for one outbound flow: ``addr``:``port`` the
# destination as the guest wrote it, ``arg`` the guest's source port (bound
# when possible); the parent maps and checks the destination and connects
# the socket to it, so the worker sends with send() only
OP_UDP_SOCKET = 3
# pasta splice path: a TCP socket connecting (non-blocking) to the loopback
# address of ``family`` at ``port``, in the namespace (for -t) or in the host
# netns (for -T); the port must be a current forwarding target
OP_NS_LOOP_CONNECT = 4
OP_HOST_LOOP_CONNECT = 5
# pasta UDP splice path: a UDP socket bound to the loopback address of
# ``family`` (port chosen by the kernel) and connected to that loopback at
# ``port``, in the namespace (a current -u target) or in the host netns (a
# current -U target); one per loopback sender
OP_NS_LOOP_UDP = 6
OP_HOST_LOOP_UDP = 7
# replies to a sender on a forwarded UDP socket: a UDP socket bound to the
# same local address and ``port`` as the -u socket (host netns,
# OP_UDP_REPLY) or the -U socket (namespace, OP_NS_UDP_REPLY) of that port,
# connected to the sender ``addr`` (in ``family``; v4-mapped on a dual-stack
# socket), port ``arg``; the port must be a current forward
OP_UDP_REPLY = 8
OP_NS_UDP_REPLY = 9
# the receive-only UDP socket of one guest source port (``port``) in the
# host netns: unconnected, on the host port the flows from that guest port
# use, it takes datagrams from senders no flow is connected to (a TFTP
# server answers from a new port); the worker cannot send on it
OP_UDP_PORT = 10
# not a request: the worker's answer to a QUERY_MAGIC message from the
# parent (the control API's list_flows and stats, setup/api.py): the
# header (``port``: the query id), then a JSON payload of at most
# REPORT_MAX bytes in the same record. No reply. The parent sends at most
# per_second queries a second and has at most inflight of them unanswered
# (it sends no more until the worker catches up), so a report it did not
# ask for, a second one to a query, or one over the quota is a protocol
# violation, as is a payload the parent's validation refuses.
OP_REPORT = 11
REPORT_MAX = 48 << 10
OP_NAMES = {OP_PING_SOCKET: "ping socket", OP_TCP_CONNECT: "tcp connect", OP_UDP_SOCKET: "udp socket",
            OP_NS_LOOP_CONNECT: "namespace loopback connect",
            OP_HOST_LOOP_CONNECT: "host loopback connect",
            OP_NS_LOOP_UDP: "namespace loopback udp", OP_HOST_LOOP_UDP: "host loopback udp",
            OP_UDP_REPLY: "udp reply", OP_NS_UDP_REPLY: "namespace udp reply",
            OP_UDP_PORT: "udp port", OP_REPORT: "report"}

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NamedTuple

    class Quota(NamedTuple):
        """What the worker may ask of one op: at most ``inflight`` requests
        without their reply, at most ``per_second`` sent in one second of
        CLOCK_MONOTONIC (the window is ``int(time.monotonic())``, the same in
        both processes: the worker has no time namespace of its own)."""

        inflight: int
        per_second: int
else:  # the same class, without importing typing
    Quota = namedtuple("Quota", "inflight per_second")


# Quotas per op (docs/security.md, "The broker as a monitor"). The worker's
# client (worker/loop.py) keeps under them: past a quota a request waits in
# that op's backlog (at most ``per_second`` of them), past that it is
# refused with EAGAIN (the flow is dropped, the guest retries). The parent
# (setup/broker.py) counts what it receives per op and window, and a count
# above ``parent_limit`` is a protocol violation. That check is exact: a
# request received in window k was either sent in window k (at most
# per_second) or sent earlier and still unanswered when k began, holding an
# in-flight slot then (at most inflight). Sizes: OP_TCP_CONNECT runs once
# per new connection (crr reaches ~5,000/s, docs/performance.md), so a SYN
# flood is cut at 16,384/s in the worker; UDP flows, splices and echo
# sockets are rarer. The in-flight sum of the requests (120) keeps the
# requests of one burst well inside the socket pair's buffer, so neither
# side ever blocks on them. (OP_REPORT, the answer to a query of the
# parent's own, is apart: its send may wait for the parent to read, and
# the parent never waits for the worker.)
QUOTAS: dict[int, Quota] = {
    OP_PING_SOCKET: Quota(4, 256),
    OP_TCP_CONNECT: Quota(32, 16384),
    OP_UDP_SOCKET: Quota(16, 4096),
    OP_NS_LOOP_CONNECT: Quota(16, 8192),
    OP_HOST_LOOP_CONNECT: Quota(16, 8192),
    OP_NS_LOOP_UDP: Quota(8, 2048),
    OP_HOST_LOOP_UDP: Quota(8, 2048),
    OP_UDP_REPLY: Quota(8, 2048),
    OP_NS_UDP_REPLY: Quota(4, 1024),
    OP_UDP_PORT: Quota(8, 1024),
    OP_REPORT: Quota(16, 16),
}
OP_MAX = max(QUOTAS)


def parent_limit(op: int) -> int:
    """Requests of ``op`` the parent accepts in one window: per_second + inflight."""
    q = QUOTAS[op]
    return q.per_second + q.inflight


# Parent to worker, right after the start message: one inbound TCP listener
# (-t) per message, its fd attached: magic, listening port, target port.
LISTENER = struct.Struct("=4sHH")
LISTENER_MAGIC = b"TLSN"
UDP_LISTENER_MAGIC = b"ULSN"  # the same for an inbound UDP socket (-u)
NS_LISTENER_MAGIC = b"TNSL"  # a -T listener bound inside the namespace
DROP_TCP_MAGIC = b"TDRP"  # close the -t listeners of a port (no fd)
DROP_UDP_MAGIC = b"UDRP"  # close the -u sockets of a port (no fd)
DROP_NS_MAGIC = b"TNDR"  # close the -T listeners of a port (no fd)
NS_UDP_MAGIC = b"UNSL"  # a -U socket bound inside the namespace
DROP_NS_UDP_MAGIC = b"UNDR"  # close the -U sockets of a port (no fd)
# A connection the parent accepted on a forwarded listener of pasta
# (setup/acceptor.py). ACCEPT: magic, target port, state (PAIR_* | kind <<
# 4, kind 0: -t, 1: -T | ACCEPTED_V6: the accepted socket is AF_INET6),
# family (4 or 6: of the spliced side, or of the listener for PAIR_TAP), the peer's address (PAIR_TAP; 4 or 16 bytes,
# zero-padded) and port. fds: [accepted, connecting] (PAIR_CONNECTED,
# PAIR_PENDING: spliced), or [accepted] alone: PAIR_TAP (the tap path),
# PAIR_REFUSED (the connect failed at once: the worker resets it)
ACCEPT = struct.Struct("=4sHBB16sH")
ACCEPT_MAGIC = b"TACC"
PAIR_PENDING, PAIR_CONNECTED, PAIR_REFUSED, PAIR_TAP = 0, 1, 2, 3
ACCEPTED_V6 = 0x20
PORT_MAGICS = frozenset({LISTENER_MAGIC, UDP_LISTENER_MAGIC, NS_LISTENER_MAGIC,
                         DROP_TCP_MAGIC, DROP_UDP_MAGIC, DROP_NS_MAGIC,
                         NS_UDP_MAGIC, DROP_NS_UDP_MAGIC})

# Parent to worker: a query for the control API (LISTENER layout, port:
# the query id, target unused, no fd); the worker answers with OP_REPORT
QUERY_MAGIC = b"QRPT"
RECV_MAX = 36 + REPORT_MAX  # the largest record the parent reads (REQ.size + REPORT_MAX)

START_MAX = 1 << 20  # largest start-up message (pickled Config)
MAX_START_FDS = 16


if TYPE_CHECKING:
    class Request(NamedTuple):
        """One decoded request from the worker (a tuple: made once per new
        connection on the parent's side of the hop, where a frozen dataclass
        cost more than the rest of the decoding)."""

        seq: int
        op: int
        family: int
        port: int
        addr: bytes
        arg: int
else:  # the same class, without importing typing
    Request = namedtuple("Request", "seq op family port addr arg")


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


def pack_udp_listener(port: int, target: int) -> bytes:
    """Encode an inbound UDP socket announcement (its fd travels with it)."""
    return LISTENER.pack(UDP_LISTENER_MAGIC, port, target)


def pack_port_msg(magic: bytes, port: int, target: int = 0) -> bytes:
    """Encode any port announcement or drop (magic from PORT_MAGICS)."""
    if magic not in PORT_MAGICS:
        raise ValueError(f"unknown port message {magic!r}")
    return LISTENER.pack(magic, port, target)


def unpack_port_msg(data: bytes) -> tuple[bytes, int, int] | None:
    """Decode a port announcement or drop: (magic, port, target), or None."""
    if len(data) != LISTENER.size:
        return None
    magic, port, target = LISTENER.unpack(data)
    return (magic, port, target) if magic in PORT_MAGICS else None


_AF_INET, _AF_INET6 = 2, 10  # Linux's; socket is not imported here (see unpack_accept)


def pack_accept(target: int, state: int, family: int, peer: str = "", peer_port: int = 0) -> bytes:
    """Encode an accepted connection (ACCEPT); peer: the -t peer's address, for PAIR_TAP."""
    raw = b""
    if peer:
        from socket import inet_pton  # the parent has it loaded already

        raw = inet_pton(_AF_INET6 if ":" in peer else _AF_INET, peer.split("%")[0])
    return ACCEPT.pack(ACCEPT_MAGIC, target, state, 6 if family == _AF_INET6 else 4, raw, peer_port)


def unpack_accept(data: bytes) -> tuple[int, int, int, int, int, tuple[str, int] | None] | None:
    """Decode ACCEPT: (target, state, kind, family, the accepted socket's
    family, peer or None), or None if malformed. Families are AF_INET (2) or
    AF_INET6 (10) as ints: ipc is imported by processes that keep the
    socket module out (worker start-up)."""
    if len(data) != ACCEPT.size or data[:4] != ACCEPT_MAGIC:
        return None
    _magic, target, state, fam, raw, port = ACCEPT.unpack(data)
    if fam not in (4, 6):
        return None
    family = _AF_INET6 if fam == 6 else _AF_INET
    peer = None
    if state & 0xF == PAIR_TAP:
        from _socket import inet_ntop

        peer = (inet_ntop(family, raw[:16 if fam == 6 else 4]), port)
    afam = _AF_INET6 if state & ACCEPTED_V6 else _AF_INET
    return target, state & 0xF, (state >> 4) & 1, family, afam, peer


def pack_query(qid: int) -> bytes:
    """Encode a report query (parent to worker)."""
    return LISTENER.pack(QUERY_MAGIC, qid, 0)


def unpack_query(data: bytes) -> int | None:
    """Decode a report query: its id, or None."""
    if len(data) != LISTENER.size or data[:4] != QUERY_MAGIC:
        return None
    return LISTENER.unpack(data)[1]


def pack_report(qid: int, payload: bytes) -> bytes:
    """Encode a report (worker to parent): header, then the payload."""
    return pack_request(0, OP_REPORT, 0, qid) + payload


def unpack_report(data: bytes) -> tuple[Request, bytes] | None:
    """Decode a report: (header, payload), or None if it is not one or its size is wrong."""
    if not REQ.size < len(data) <= REQ.size + REPORT_MAX:
        return None
    req = unpack_request(data[:REQ.size])
    if req is None or req.op != OP_REPORT:
        return None
    return req, data[REQ.size:]


def unpack_reply(data: bytes) -> tuple[int, int] | None:
    """Decode a reply: (seq, status), or None if its size is wrong."""
    if len(data) != REPLY.size:
        return None
    seq, status = REPLY.unpack(data)
    return seq, status
