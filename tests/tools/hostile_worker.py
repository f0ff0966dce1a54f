# SPDX-License-Identifier: GPL-2.0-or-later
"""The real pasta or passt parent with a stand-in worker that behaves like an exploited one.

Usage (inside a HostNS, by tests/integration/test_hostile_worker.py)::

    python hostile_worker.py [--passt] SCENARIO -- PASTA-OR-PASST-ARGS...

Replaces ``passt_sep.worker.main.worker_main`` (``Parent.fork_worker``
imports it from that module when it forks, so the module attribute is what
it calls) with ``standin``, then runs ``passt_sep.main.main`` as ``pasta``
(or, with --passt, as ``passt``: the parent of passt mode, whose start
message carries one end of its control socketpair where pasta's has the
tap; the stand-in takes it and ignores it). Nothing in the product code
knows about this. The stand-in does what the real worker does up to the
point where a guest could have taken it over: the same signal
dispositions, the same let-go of the user's stdio and RLIMIT_FSIZE, the
same ``isolate_worker`` call with the policy the parent loaded
(policies/pasta.policy or policies/passt.policy; in passt mode the parent's
fork has already dropped the child to the target user, as for the real
worker), the start message and its fds received the same way, ``b"ready"``
sent; then it runs SCENARIO.

It reports over the one channel it has left, the log channel to the parent
(the parent writes each record to its stderr): ``hostile: pid N`` before
isolating, ``hostile: check NAME ok|BAD ...`` per request tried,
``hostile: done ...`` once the scenario is over, after which it waits for
the parent to close the broker socket. Everything it uses after isolation
is imported and computed before it (no file can be opened then).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

import passt_sep.main  # noqa: E402
import passt_sep.worker.main as wmain  # noqa: E402
from passt_sep import ipc  # noqa: E402
from passt_sep.log import log  # noqa: E402
from sandbox.fdpass import recv_fds  # noqa: E402
from sandbox.isolate import isolate_worker  # noqa: E402
from sandbox.seccomp import Policy  # noqa: E402

V4, V6 = socket.AF_INET, socket.AF_INET6
FAR4 = "192.0.2.2"  # the far host (GatewayNS): an allowed destination
GW4 = "192.0.2.1"  # the gateway's own address on the far side: never approved as a send-to target
FWD_PORT = 10201  # the one -t/-u port the test forwards
DENIED_PORT = 9999  # sendto()/connect() targets on the gateway, never approved
LO_OK_PORT, LO_DENIED_PORT = 9995, 9996  # the host's loopback: approved (mapped gateway), not
STDIO_MARK = b"HOSTILE-STDIO-MARK"
OK_MARK = b"HOSTILE-ALLOWED"
DENIED_MARK = b"HOSTILE-DENIED"
ECHO = b"\x08\x00\x00\x00\x00\x00\x00\x01"  # ICMP echo request (ping sockets fill id and checksum)


def _a(family: int, text: str) -> bytes:
    return socket.inet_pton(family, text)


# (name, op, family, port, addr, arg): requests the broker must refuse with
# an errno and no fd. The test runs pasta with -t/-u 10201 and -T/-U none.
REFUSE: list[tuple[str, int, int, int, bytes, int]] = []
for _op, _opname in ((ipc.OP_TCP_CONNECT, "tcp"), (ipc.OP_UDP_SOCKET, "udp")):
    REFUSE += [
        (f"{_opname} 127.0.0.1", _op, V4, 9, _a(V4, "127.0.0.1"), 0),
        (f"{_opname} 127.1.2.3", _op, V4, 9, _a(V4, "127.1.2.3"), 0),
        (f"{_opname} 169.254.1.1", _op, V4, 9, _a(V4, "169.254.1.1"), 0),
        (f"{_opname} 224.0.0.1", _op, V4, 9, _a(V4, "224.0.0.1"), 0),
        (f"{_opname} 255.255.255.255", _op, V4, 9, _a(V4, "255.255.255.255"), 0),
        (f"{_opname} 0.0.0.0", _op, V4, 9, _a(V4, "0.0.0.0"), 0),
        (f"{_opname} ::ffff:127.0.0.1", _op, V6, 9, _a(V6, "::ffff:127.0.0.1"), 0),
        (f"{_opname} ::127.0.0.1", _op, V6, 9, _a(V6, "::127.0.0.1"), 0),
        (f"{_opname} ::1", _op, V6, 9, _a(V6, "::1"), 0),
        (f"{_opname} ::", _op, V6, 9, _a(V6, "::"), 0),
        (f"{_opname} fe80::1", _op, V6, 9, _a(V6, "fe80::1"), 0),
        (f"{_opname} ff02::1", _op, V6, 9, _a(V6, "ff02::1"), 0),
        (f"{_opname} far port 0", _op, V4, 0, _a(V4, FAR4), 0),
        (f"{_opname} family AF_UNIX", _op, socket.AF_UNIX, 9, _a(V4, FAR4), 0),
        (f"{_opname} family 0xffff", _op, 0xFFFF, 9, _a(V4, FAR4), 0),
    ]
REFUSE += [
    ("ping 127.0.0.1", ipc.OP_PING_SOCKET, V4, 0, _a(V4, "127.0.0.1"), 0),
    ("ping 224.0.0.1", ipc.OP_PING_SOCKET, V4, 0, _a(V4, "224.0.0.1"), 0),
    ("ping 169.254.1.1", ipc.OP_PING_SOCKET, V4, 0, _a(V4, "169.254.1.1"), 0),
    ("ping ::1", ipc.OP_PING_SOCKET, V6, 0, _a(V6, "::1"), 0),
    ("ping ::ffff:127.0.0.1", ipc.OP_PING_SOCKET, V6, 0, _a(V6, "::ffff:127.0.0.1"), 0),
    ("ping ff02::1", ipc.OP_PING_SOCKET, V6, 0, _a(V6, "ff02::1"), 0),
    ("ping family AF_UNIX", ipc.OP_PING_SOCKET, socket.AF_UNIX, 0, _a(V4, FAR4), 0),
    ("ns loop connect unforwarded", ipc.OP_NS_LOOP_CONNECT, V4, FWD_PORT + 1, b"", 0),
    ("ns loop connect port 0", ipc.OP_NS_LOOP_CONNECT, V4, 0, b"", 0),
    ("ns loop connect ssh", ipc.OP_NS_LOOP_CONNECT, V6, 22, b"", 0),
    ("ns loop connect family AF_UNIX", ipc.OP_NS_LOOP_CONNECT, socket.AF_UNIX, FWD_PORT, b"", 0),
    ("host loop connect (no -T)", ipc.OP_HOST_LOOP_CONNECT, V4, FWD_PORT, b"", 0),
    ("host loop connect ssh", ipc.OP_HOST_LOOP_CONNECT, V4, 22, b"", 0),
    ("ns loop udp unforwarded", ipc.OP_NS_LOOP_UDP, V4, FWD_PORT + 1, b"", 0),
    ("ns loop udp port 0", ipc.OP_NS_LOOP_UDP, V4, 0, b"", 0),
    ("host loop udp (no -U)", ipc.OP_HOST_LOOP_UDP, V4, FWD_PORT, b"", 0),
    ("host loop udp dns", ipc.OP_HOST_LOOP_UDP, V4, 53, b"", 0),
    ("udp reply unforwarded", ipc.OP_UDP_REPLY, V4, FWD_PORT + 1, _a(V4, "127.0.0.1"), 4000),
    ("udp reply to multicast", ipc.OP_UDP_REPLY, V4, FWD_PORT, _a(V4, "224.0.0.1"), 4000),
    ("udp reply to link-local", ipc.OP_UDP_REPLY, V4, FWD_PORT, _a(V4, "169.254.1.1"), 4000),
    ("udp reply to broadcast", ipc.OP_UDP_REPLY, V4, FWD_PORT, _a(V4, "255.255.255.255"), 4000),
    ("udp reply peer port 0", ipc.OP_UDP_REPLY, V4, FWD_PORT, _a(V4, FAR4), 0),
    ("ns udp reply (no -U)", ipc.OP_NS_UDP_REPLY, V4, FWD_PORT, _a(V4, "127.0.0.1"), 4000),
    ("ns udp reply non-loopback", ipc.OP_NS_UDP_REPLY, V4, FWD_PORT, _a(V4, FAR4), 4000),
]
# (name, op, family, port, addr, arg): requests that must be granted (an fd):
# without them a broker that refused everything would pass
GRANT = [
    ("tcp far host", ipc.OP_TCP_CONNECT, V4, 9, _a(V4, FAR4), 0),
    ("udp far host", ipc.OP_UDP_SOCKET, V4, 9, _a(V4, FAR4), 0),
    ("udp far host v6", ipc.OP_UDP_SOCKET, V6, 9, _a(V6, "2001:db8::2"), 0),
    ("ping far host", ipc.OP_PING_SOCKET, V4, 0, _a(V4, FAR4), 0),
    ("ns loop connect forwarded", ipc.OP_NS_LOOP_CONNECT, V4, FWD_PORT, b"", 0),
]
# passt has no namespace of the guest's: its splice op is refused there, forwarded port or not
PASST_GRANT = [g for g in GRANT if g[1] != ipc.OP_NS_LOOP_CONNECT]
PASST_REFUSE = REFUSE + [(f"{g[0]} (passt: no namespace)", *g[1:]) for g in GRANT
                         if g[1] == ipc.OP_NS_LOOP_CONNECT]
_mode = "pasta"


class Door:
    """The stand-in's side of the broker socket: blocking, no timeouts (poll is
    not in the worker's policy)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    def send(self, op: int, family: int, port: int = 0, addr: bytes = b"", arg: int = 0) -> int:
        """Send one request; returns its seq."""
        self.seq += 1
        self.sock.send(ipc.pack_request(self.seq, op, family, port, addr, arg))
        return self.seq

    def reply(self, seq: int) -> tuple[int, list[int]]:
        """The reply to seq (port announcements and stale replies skipped): (status, fds)."""
        while True:
            data, fds = recv_fds(self.sock, 64, 4)
            if not data and not fds:
                raise EOFError("the parent closed the broker socket")
            r = ipc.unpack_reply(data) if ipc.unpack_port_msg(data) is None else None
            if r is not None and r[0] == seq:
                return r[1], fds
            for fd in fds:
                os.close(fd)

    def ask(self, op: int, family: int, port: int = 0, addr: bytes = b"", arg: int = 0) -> tuple[int, list[int]]:
        """One request and its reply."""
        return self.reply(self.send(op, family, port, addr, arg))

    def socket_for(self, op: int, family: int, port: int = 0, addr: bytes = b"",
                   kind: int = socket.SOCK_DGRAM, proto: int = 0) -> socket.socket:
        """A socket the broker grants (the scenario fails loudly if it does not)."""
        status, fds = self.ask(op, family, port, addr)
        if not fds:
            raise RuntimeError(f"op {op} not granted (status {status})")
        return socket.socket(family, kind, proto, fileno=fds[0])

    def announced(self, magic: bytes) -> socket.socket:
        """The socket of the next port announcement with this magic (the parent
        sends them right after the start message); other messages dropped."""
        while True:
            data, fds = recv_fds(self.sock, 64, 4)
            if not data and not fds:
                raise EOFError("the parent closed the broker socket")
            msg = ipc.unpack_port_msg(data)
            if msg is not None and msg[0] == magic and len(fds) == 1:
                return socket.socket(fileno=fds[0])
            for fd in fds:
                os.close(fd)

    def wait_for_parent(self) -> NoReturn:
        """Read (and drop) whatever comes until the parent closes the socket."""
        while True:
            try:
                data, fds = recv_fds(self.sock, 1 << 16, 8)
            except OSError:
                os._exit(0)
            for fd in fds:
                os.close(fd)
            if not data and not fds:
                os._exit(0)


def say(msg: str) -> None:
    """A line for the test, through the parent (the only way out)."""
    log.err(f"hostile: {msg}")


def _supervised(d: Door) -> None:
    """One request and its reply: the broker answers from the parent's supervision
    loop only, so once this returns the parent's SIGTERM handler is in place
    (before, during set-up, a SIGTERM ends it by the default action). Scenarios
    after which the test sends SIGTERM call it before they say they are done."""
    d.ask(ipc.OP_TCP_CONNECT, V4, 9, _a(V4, "127.0.0.1"))


# -- scenarios (each gets the broker socket, after b"ready") -------------------
def sc_refuse(d: Door) -> None:
    """Every op with out-of-policy arguments: an errno, no fd; the controls granted."""
    bad = 0
    refuse = PASST_REFUSE if _mode == "passt" else REFUSE
    for name, op, fam, port, addr, arg in refuse:
        status, fds = d.ask(op, fam, port, addr, arg)
        ok = status > 0 and not fds
        bad += not ok
        say(f"check {name}: {'ok' if ok else 'BAD'} status={status} fds={len(fds)}")
        for fd in fds:
            os.close(fd)
    for name, op, fam, port, addr, arg in (PASST_GRANT if _mode == "passt" else GRANT):
        status, fds = d.ask(op, fam, port, addr, arg)
        ok = status <= 0 and len(fds) == 1
        bad += not ok
        say(f"check {name} granted: {'ok' if ok else 'BAD'} status={status} fds={len(fds)}")
        for fd in fds:
            os.close(fd)
    granted = len(PASST_GRANT if _mode == "passt" else GRANT)
    say(f"done refused={len(refuse)} granted={granted} bad={bad}")


def _raw(data: bytes) -> Callable[[Door], None]:
    def run(d: Door) -> None:
        d.sock.send(data)
        say(f"sent {len(data)} bytes")
    return run


def sc_unknown_op(d: Door) -> None:
    """A well-formed request with an op nobody defined."""
    d.send(0xBEEF, V4, 9, _a(V4, FAR4))
    say("sent op 0xbeef")


def sc_op_zero(d: Door) -> None:
    """Op 0: below every defined op."""
    d.send(0, V4, 9, _a(V4, FAR4))
    say("sent op 0")


def _wait_query(d: Door) -> int:
    """The next control-API query (ipc.QUERY_MAGIC) from the parent: its id."""
    while True:
        data, fds = recv_fds(d.sock, 64, 4)
        for fd in fds:
            os.close(fd)
        if not data:
            raise EOFError("the parent closed the broker socket")
        qid = ipc.unpack_query(data)
        if qid is not None:
            return qid


_GOOD_REPORT = json.dumps({"stats": {}, "flows": [], "truncated": 0}).encode()


def sc_report_bad(d: Door) -> None:
    """Answer the parent's query with a report of the wrong shape."""
    say("waiting for a query")
    qid = _wait_query(d)
    d.sock.send(ipc.pack_report(qid, b'{"stats": 1, "flows": [], "truncated": 0}'))
    say(f"sent a bad report to query {qid}")


def sc_report_twice(d: Door) -> None:
    """Answer the parent's query twice: the second report was not asked for."""
    say("waiting for a query")
    qid = _wait_query(d)
    d.sock.send(ipc.pack_report(qid, _GOOD_REPORT))
    d.sock.send(ipc.pack_report(qid, _GOOD_REPORT))
    say(f"sent two reports to query {qid}")


FLOOD = 100_000
FLOOD_EPERM_SECONDS = 1.0


def _send_flood(d: Door, req: bytes) -> None:
    """FLOOD copies of req as fast as the socket takes them, no reply ever read."""
    say("flooding")
    n = 0
    try:
        while n < FLOOD:
            d.sock.send(req)
            n += 1
    except OSError as e:
        say(f"flood stopped after {n}: errno {e.errno}")
    say(f"done flood sent={n}")


def sc_flood_noread(d: Door) -> None:
    """Refused connects (errno replies, no fd)."""
    _send_flood(d, ipc.pack_request(1, ipc.OP_TCP_CONNECT, V4, 9, _a(V4, "127.0.0.1")))


def sc_flood_fds_noread(d: Door) -> None:
    """Granted UDP sockets (each reply carries an fd)."""
    _send_flood(d, ipc.pack_request(1, ipc.OP_UDP_SOCKET, V4, 9, _a(V4, FAR4)))


def _flood_read(d: Door, op: int, family: int, port: int, addr: bytes = b"") -> None:
    """Requests in batches of 64, each batch's replies read (fds closed): a worker
    that keeps the parent as busy as it can without breaking the protocol, for
    up to 30 s (the test ends it sooner)."""
    quota = ipc.QUOTAS[op]
    batch = quota.inflight  # as many in flight as the quota allows, and no more per second
    sent = 0
    t_end = time.monotonic() + 30.0
    window, in_window = int(time.monotonic()), 0
    say("flooding")
    try:
        while sent < 10 * FLOOD and time.monotonic() < t_end:
            now = int(time.monotonic())
            if now != window:
                window, in_window = now, 0
            if in_window + batch > quota.per_second:
                while int(time.monotonic()) == window:  # no sleep: the worker's policy has none
                    pass
                continue
            last = 0
            for _ in range(batch):
                last = d.send(op, family, port, addr)
            sent += batch
            in_window += batch
            _status, fds = d.reply(last)
            for fd in fds:
                os.close(fd)
            if sent == 20 * batch:
                say(f"flooding steadily sent={sent}")
    except (OSError, EOFError):
        os._exit(0)  # the parent went away
    say(f"done flood sent={sent}")


def sc_flood_read(d: Door) -> None:
    """Connects the policy refuses (EACCES, no fd)."""
    _flood_read(d, ipc.OP_TCP_CONNECT, V4, 9, _a(V4, "127.0.0.1"))


def sc_flood_read_ns(d: Door) -> None:
    """Splice connects to the forwarded port: each made by (or with a socket
    from) the parent's thread inside the guest's namespace, each reply an fd."""
    _flood_read(d, ipc.OP_NS_LOOP_CONNECT, V4, FWD_PORT)


def sc_log_flood(d: Door) -> None:
    """Log records as fast as the channel takes them (dropped when it is full),
    for up to 30 s: the parent reads a bounded number per wake-up."""
    _supervised(d)
    t_end = time.monotonic() + 30.0
    say("flooding")
    n = 0
    while n < 100 * FLOOD and time.monotonic() < t_end:
        log.err(f"hostile: log flood line {n}")
        n += 1
        if n == 1000:
            say("flooding steadily")


def _clear_error(s: socket.socket) -> None:
    """Take the ICMP port unreachable of the allowed datagram off the socket (or
    the sendto below would fail with it before sending, were it allowed)."""
    time.sleep(0.05)
    s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def sc_sendto_udp(d: Door) -> None:
    """A UDP socket connected to the far host: send() goes there; sendto() elsewhere kills."""
    s = d.socket_for(ipc.OP_UDP_SOCKET, V4, 9, _a(V4, FAR4))
    s.send(OK_MARK)
    say(f"sent on the granted udp socket; now sendto {GW4}:{DENIED_PORT}")
    _clear_error(s)
    s.sendto(DENIED_MARK, (GW4, DENIED_PORT))
    say("BAD: sendto returned")


def sc_sendto_udp_lo(d: Door) -> None:
    """The gateway's mapping to the host's loopback approves 127.0.0.1:LO_OK_PORT;
    a sendto() to another loopback port kills."""
    s = d.socket_for(ipc.OP_UDP_SOCKET, V4, LO_OK_PORT, _a(V4, GW4))
    s.send(OK_MARK)
    say(f"sent on the granted loopback udp socket; now sendto 127.0.0.1:{LO_DENIED_PORT}")
    _clear_error(s)
    s.sendto(DENIED_MARK, ("127.0.0.1", LO_DENIED_PORT))
    say("BAD: sendto returned")


def sc_sendto_ping(d: Door) -> None:
    """A ping socket connected to the far host: an echo there; one to the gateway kills."""
    s = d.socket_for(ipc.OP_PING_SOCKET, V4, 0, _a(V4, FAR4), proto=socket.IPPROTO_ICMP)
    s.send(ECHO + OK_MARK)
    say("sent on the granted ping socket; now sendto 192.0.2.1")
    s.sendto(ECHO + DENIED_MARK, (GW4, 0))
    say("BAD: sendto returned")


def _unconnected_then_sendto(s: socket.socket, what: str) -> None:
    try:
        s.send(DENIED_MARK)
        say(f"BAD: send() without an address on the {what} went somewhere")
    except OSError as e:
        say(f"send() on the {what}: errno {e.errno}; now sendto {GW4}:{DENIED_PORT}")
    dest = GW4 if s.family == V4 else f"::ffff:{GW4}"  # a dual-stack -u socket: v4-mapped
    s.sendto(DENIED_MARK, (dest, DENIED_PORT))
    say("BAD: sendto returned")


def sc_sendto_u_socket(d: Door) -> None:
    """The -u socket the parent announced (bound on the host, not connected)."""
    _unconnected_then_sendto(d.announced(ipc.UDP_LISTENER_MAGIC), "-u socket")


def sc_sendto_udp_port(d: Door) -> None:
    """The receive-only socket of a guest source port (OP_UDP_PORT, not connected)."""
    status, fds = d.ask(ipc.OP_UDP_PORT, V4, 40000)
    if not fds:
        raise RuntimeError(f"OP_UDP_PORT not granted (status {status})")
    _unconnected_then_sendto(socket.socket(V4, socket.SOCK_DGRAM, 0, fileno=fds[0]), "udp port socket")


def sc_connect(d: Door) -> None:
    """connect() a granted UDP socket elsewhere."""
    s = d.socket_for(ipc.OP_UDP_SOCKET, V4, 9, _a(V4, FAR4))
    say(f"now connect to {GW4}:{DENIED_PORT}")
    s.connect((GW4, DENIED_PORT))
    s.send(DENIED_MARK)
    say("BAD: connect returned")


def sc_socket(d: Door) -> None:
    """A socket of its own."""
    say("now socket()")
    s = socket.socket(V4, socket.SOCK_DGRAM)
    s.send(DENIED_MARK)
    say("BAD: socket returned")


def sc_fastopen(d: Door) -> None:
    """MSG_FASTOPEN on a granted TCP socket (would connect it past the broker)."""
    s = d.socket_for(ipc.OP_TCP_CONNECT, V4, 9, _a(V4, FAR4), kind=socket.SOCK_STREAM)
    say("now send with MSG_FASTOPEN")
    s.send(DENIED_MARK, socket.MSG_FASTOPEN)
    say("BAD: send returned")


def sc_flood_eperm(d: Door) -> None:
    """Requests refused with EPERM (each logged by the broker as a warning), replies
    read, for FLOOD_EPERM_SECONDS: how many lines can a worker make the parent write?"""
    sent = 0
    t_end = time.monotonic() + FLOOD_EPERM_SECONDS
    say("flooding")
    while sent < 10 * FLOOD and time.monotonic() < t_end:
        last = 0
        for _ in range(64):
            last = d.send(ipc.OP_HOST_LOOP_CONNECT, V4, 22)
        sent += 64
        d.reply(last)
    say(f"done flood sent={sent}")


def sc_ignore(d: Door) -> None:
    """Say so, then spin (up to 30 s) without ever reading the broker socket: the
    parent's close of it goes unnoticed."""
    _supervised(d)
    say("done ignoring")
    t_end = time.monotonic() + 30.0
    while time.monotonic() < t_end:
        pass


def sc_stdio(d: Door) -> None:
    """Write to fds 0, 1 and 2 (the user's terminal, if the worker still held it)."""
    wrote = []
    for fd in (0, 1, 2):
        try:
            wrote.append(str(os.write(fd, STDIO_MARK + b"\n")))
        except OSError as e:
            wrote.append(f"errno{e.errno}")
    _supervised(d)
    say(f"done stdio wrote={','.join(wrote)}")


SCENARIOS: dict[str, Callable[[Door], None]] = {
    "refuse": sc_refuse,
    "short": _raw(b"\0" * (ipc.REQ.size - 1)),
    "long": _raw(b"\0" * (ipc.REQ.size + 1)),
    "zero": _raw(b""),
    "big": _raw(b"\x01" * 65536),
    # a control-API report nobody asked for (ipc.OP_REPORT): a violation like any other
    "report-bad": sc_report_bad,
    "report-twice": sc_report_twice,
    "report-unsolicited": _raw(ipc.pack_report(7, b'{"stats":{},"flows":[],"truncated":0}')),
    "unknown-op": sc_unknown_op,
    "op-zero": sc_op_zero,
    "flood-noread": sc_flood_noread,
    "flood-fds-noread": sc_flood_fds_noread,
    "flood-read": sc_flood_read,
    "flood-read-ns": sc_flood_read_ns,
    "log-flood": sc_log_flood,
    "sendto-udp": sc_sendto_udp,
    "sendto-udp-lo": sc_sendto_udp_lo,
    "sendto-ping": sc_sendto_ping,
    "sendto-u-socket": sc_sendto_u_socket,
    "sendto-udp-port": sc_sendto_udp_port,
    "connect": sc_connect,
    "socket": sc_socket,
    "fastopen": sc_fastopen,
    "flood-eperm": sc_flood_eperm,
    "ignore": sc_ignore,
    "stdio": sc_stdio,
}
_scenario: Callable[[Door], None] = sc_refuse


def standin(sock: socket.socket, mode: str, policy: Policy, log_sock: socket.socket,
            fsize: int) -> NoReturn:
    """worker_main's stand-in: isolated as the real worker is, then hostile."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        wmain._let_go_of_the_user(log_sock, fsize)
        say(f"pid {os.getpid()}")
        isolate_worker(policy, keep_fds=[0, 1, 2, sock.fileno(), log_sock.fileno()])
        data, fds = recv_fds(sock, ipc.START_MAX, ipc.MAX_START_FDS)
        if not data:
            os._exit(0)
        start = pickle.loads(data)
        say(f"isolated, start message with {len(fds)} fds, v6={start['cfg'].v6 is not None}")
        sock.send(b"ready")
        door = Door(sock)
        _scenario(door)
        door.wait_for_parent()
    except BaseException as e:  # noqa: BLE001 - like the real worker: never unwind
        try:
            say(f"error {type(e).__name__}: {e}")
        except BaseException:  # noqa: BLE001, S110
            pass
        os._exit(2)


def main() -> None:
    """hostile_worker.py [--passt] SCENARIO -- PASTA-OR-PASST-ARGS..."""
    global _scenario, _mode
    argv = sys.argv[1:]
    if argv[:1] == ["--passt"]:
        _mode = "passt"
        argv = argv[1:]
    if len(argv) < 2 or argv[1] != "--" or argv[0] not in SCENARIOS:
        sys.stderr.write(f"usage: hostile_worker.py [--passt] {{{'|'.join(SCENARIOS)}}} -- ARGS...\n")
        sys.exit(2)
    _scenario = SCENARIOS[argv[0]]
    struct.calcsize("=I")  # (struct and everything else used later is imported now)
    wmain.worker_main = standin  # type: ignore[assignment]
    passt_sep.main.main([_mode, *argv[2:]])


if __name__ == "__main__":
    main()
