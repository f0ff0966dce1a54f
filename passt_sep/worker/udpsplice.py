# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's UDP splice path: datagrams between the two loopbacks, never on the tap.

Sandboxed only. Two entries, one mechanism:

- **-U**: sockets the parent bound inside the namespace on 127.0.0.1 and
  ::1 (``ipc.NS_UDP_MAGIC`` announcements). A datagram from a namespace
  process goes to the host's loopback at the target port (port + delta).
- **-u from a host loopback sender**: a datagram arriving on a -u socket
  (worker/udp.py) from 127.0.0.0/8, ::1 or v4-mapped 127/8 goes to the
  namespace's loopback at the target port instead of over the tap.

One **flow** per (receiving socket, sender address and port). The first
datagram asks the broker for a socket of the other side bound to its
loopback and connected to loopback:target (``OP_HOST_LOOP_UDP`` for -U,
``OP_NS_LOOP_UDP`` for -u; the parent refuses any port that is not a
current target of that option). Datagrams wait in a short queue until it
arrives. What that socket receives (the server's replies: it is connected,
so only the target's) goes back to the sender through a **reply socket**,
asked for just before (``OP_UDP_REPLY`` for -u, ``OP_NS_UDP_REPLY`` for
-U): bound by the parent to the receiving socket's address and port and
connected to the sender, so the sender sees its replies come from the
address and port it wrote to, and the worker holds no socket that sends
with an address. The kernel then delivers the sender's next datagrams to
the reply socket (connected beats unconnected); they are relayed the same way.

Flows end after ``FLOW_TIMEOUT`` (180 s, passt's UDP_CONN_TIMEOUT) without
a datagram either way, and the table is bounded (``MAX_FLOWS``; the flow
idle the longest makes room). Dropping a port (``auto``) closes its
sockets and their flows. Payloads are copied once, from the receive buffer
into the other socket's send (no per-datagram allocation on the way out).
"""

from __future__ import annotations

import errno
import os
import socket

from .. import ipc
from ..log import DEBUG, log
from . import mmsg
from .flowsock import FLOW_TIMEOUT as FLOW_TIMEOUT  # re-exported (only flowsock checks it)
from .flowsock import RECV_BUDGET, SockFlow, SockFlows, adopt
from .limits import UDP_SPLICE_FDS

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from .contract import FlowLoop

# FLOW_TIMEOUT (here a datagram either way counts), RETRY_AFTER, QUEUE_MAX and RECV_BUDGET:
# worker/flowsock.py; UDP_SPLICE_FDS: worker/limits.py
MAX_DGRAM = 65535

KIND_NS, KIND_HOST = 0, 1  # -U (namespace sender), -u (host sender)

MAX_FLOWS = max(16, min(4096, UDP_SPLICE_FDS // 2))  # each flow holds two fds


class NsSocket:
    """A -U socket bound inside the namespace by the parent."""

    __slots__ = ("sock", "fd", "port", "target")

    def __init__(self, sock: socket.socket, port: int, target: int) -> None:
        self.sock, self.fd, self.port, self.target = sock, sock.fileno(), port, target


class Flow(SockFlow):
    """One loopback sender on one receiving socket, its socket on the other
    side, and its reply socket (``rsock``, connected to the sender).

    key: (receiving fd, sender); queue: payloads.
    """

    __slots__ = ("kind", "lsock", "lfd", "lport", "sender", "family", "target", "rsock", "rfd")

    def __init__(self, key: tuple[int, tuple], kind: int, lsock: socket.socket, lport: int,
                 sender: tuple, family: int, target: int, now: float) -> None:
        super().__init__(key, now)
        self.kind, self.lsock, self.lfd, self.lport = kind, lsock, key[0], lport
        self.sender, self.family, self.target = sender, family, target
        self.rsock: socket.socket | None = None
        self.rfd = -1

    def __repr__(self) -> str:
        side = "-U" if self.kind == KIND_NS else "-u"
        return f"<udp splice {side} {self.sender[0]}:{self.sender[1]} -> {self.target}>"


class UdpSplicer(SockFlows[Flow]):
    """-U sockets and the loopback-to-loopback UDP flows of -U and -u."""

    DROP_QUEUE_FULL = "udp splice queue full"
    DROP_SEND = "udp splice send failed"
    DROP_FULL = "udp splice table full"

    def __init__(self, w: FlowLoop, max_flows: int | None = None) -> None:
        super().__init__(w, max_flows or MAX_FLOWS, {
            "flows": 0, "to_host": 0, "to_ns": 0, "refused": 0, "send_errors": 0,
            "queue_full": 0, "evicted": 0, "full": 0, "expired": 0, "no_reply_socket": 0})
        self.enabled = w.cfg.opts.mode == "pasta" and not w.cfg.opts.no_udp
        self.ns_socks: dict[int, NsSocket] = {}
        self.buf = bytearray(MAX_DGRAM + 1)
        self.view = memoryview(self.buf)

    # -- -U sockets (port messages) ----------------------------------------------
    def add_ns_socket(self, fd: int, port: int, target: int) -> None:
        """A -U socket bound by the parent inside the namespace."""
        if not self.enabled:
            os.close(fd)
            return
        s = adopt(fd, f"UDP forward of namespace port {port}", log.warn)
        if s is None:
            return
        ns = NsSocket(s, port, target)
        self.ns_socks[ns.fd] = ns
        self.w.add(ns.fd, lambda ev, ns=ns: self._ns_readable(ns))

    def remove_ns_port(self, port: int) -> int:
        """Close the -U sockets of port and their flows; how many sockets."""
        gone = [x for x in self.ns_socks.values() if x.port == port]
        for ns in gone:
            del self.ns_socks[ns.fd]
            self.forget_socket(ns.fd)
            self.w.remove(ns.fd)
            ns.sock.close()
        return len(gone)

    def forget_socket(self, lfd: int) -> None:
        """A receiving socket goes away (-U or -u drop): close its flows."""
        for flow in [f for f in self.flows.values() if f.lfd == lfd]:
            self._close(flow)

    def _ns_readable(self, ns: NsSocket) -> None:
        rb = mmsg.shared(True)
        if rb is not None:
            for _ in range(RECV_BUDGET // rb.slots + 1):
                n = rb.recv(ns.fd)
                if n == 0:
                    if rb.errno in (errno.EAGAIN, errno.EINTR):
                        return
                    continue
                i = 0
                one = rb.one_sender(n)  # the usual batch: no compare per datagram
                while i < n:  # runs of one sender
                    j = n if one else i + 1
                    while j < n and rb.same_sender(i, j):
                        j += 1
                    fam, raw, port = rb.sender(i)
                    self.relay_many(KIND_NS, ns.sock, ns.fd, ns.port, ns.sock.family,
                                    (socket.inet_ntop(fam, raw), port), ns.target, rb.payloads(i, j))
                    i = j
                if n < rb.slots:
                    return
            return
        area = self.view
        for _ in range(RECV_BUDGET):
            try:
                n, addr = ns.sock.recvfrom_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if n > MAX_DGRAM:
                continue
            self.relay(KIND_NS, ns.sock, ns.fd, ns.port, ns.sock.family, addr, ns.target, area[:n])

    # -- both directions -----------------------------------------------------------
    def relay(self, kind: int, lsock: socket.socket, lfd: int, lport: int, family: int, sender: tuple,
              target: int, payload: memoryview) -> None:
        """One datagram from a loopback sender on lsock (bound to lport): to the
        other loopback at target."""
        key = (lfd, sender)
        flow = self.flows.get(key)
        now = self.w.now()
        if flow is None:
            new = self._add_flow(Flow(key, kind, lsock, lport, sender, family, target, now))
            if new is None:  # full of flows in use: dropped and counted
                return
            flow = new
        self._relay(flow, now, payload)

    def relay_many(self, kind: int, lsock: socket.socket, lfd: int, lport: int, family: int,
                   sender: tuple, target: int, payloads: list[memoryview]) -> None:
        """Datagrams of one loopback sender, in order (``relay`` for many)."""
        key = (lfd, sender)
        flow = self.flows.get(key)
        now = self.w.now()
        if flow is None:
            flow = self._add_flow(Flow(key, kind, lsock, lport, sender, family, target, now))
        self._relay_many(flow, now, payloads)

    def _relay_many(self, flow: Flow, now: float, payloads: list[memoryview]) -> None:
        sock = flow.sock
        if sock is None:
            for p in payloads:
                self._relay(flow, now, p)
            return
        flow.last = now
        self.stats["to_host" if flow.kind == KIND_NS else "to_ns"] += self._send_many(flow, sock, payloads)

    def _relay(self, flow: Flow, now: float, payload: memoryview) -> None:
        kind = flow.kind
        flow.last = now
        sock = flow.sock
        if sock is not None:
            try:
                self._send_one(flow, sock, payload)
            except OSError as e:  # EAGAIN included: lost, as on any full queue
                self._send_error(e, flow)
                return
            self.stats["to_host" if kind == KIND_NS else "to_ns"] += 1
            return
        if self._refused(flow, now, "udp splice refused"):
            return
        if self._queue_full(flow):
            return
        flow.queue.append(bytes(payload))

    # -- the flow's socket (worker/flowsock.py does the rest) -------------------------
    def _ask(self, flow: Flow) -> tuple[int, int, int, bytes, int]:
        op = ipc.OP_HOST_LOOP_UDP if flow.kind == KIND_NS else ipc.OP_NS_LOOP_UDP
        return op, flow.family, flow.target, b"", 0

    # -- the reply socket ------------------------------------------------------------
    def _request(self, flow: Flow) -> None:
        """The reply socket first: the broker answers in order, so it is there
        before the other socket, and so before the server can answer."""
        if flow.rsock is None:
            self._ask_reply(flow)
        super()._request(flow)

    def _ask_reply(self, flow: Flow) -> None:
        """Ask for the socket that answers flow's sender (bound beside the receiving socket)."""
        op = ipc.OP_NS_UDP_REPLY if flow.kind == KIND_NS else ipc.OP_UDP_REPLY
        fam = flow.lsock.family
        try:
            raw = socket.inet_pton(fam, flow.sender[0].split("%")[0])
        except OSError:
            return
        self.w.broker.request(op, fam, lambda fd, status, f=flow: self._got_reply(f, fd, status),
                              port=flow.lport, addr=raw, arg=flow.sender[1], reset=lambda f=flow: self.fault_flow(f))

    def _got_reply(self, flow: Flow, fd: int | None, status: int) -> None:
        if self.flows.get(flow.key) is not flow or flow.rsock is not None:  # gone, or asked twice
            if fd is not None:
                os.close(fd)
            return
        if fd is None:
            self.stats["refused"] += 1
            log.debug(f"{flow}: no reply socket ({os.strerror(status) if status else 'refused'})")
            return
        rsock = adopt(fd, str(flow))
        if rsock is None:
            return
        flow.rsock, flow.rfd = rsock, fd
        self.w.add(fd, lambda ev, f=flow: self._reply_readable(f), reset=lambda f=flow: self.fault_flow(f))

    def _reply_readable(self, flow: Flow) -> None:
        """The sender's next datagrams, which the kernel now gives its reply socket."""
        rsock = flow.rsock
        if rsock is None:
            return
        rb = mmsg.shared(False)
        if rb is not None:
            for _ in range(RECV_BUDGET // rb.slots + 1):
                n = rb.recv(flow.rfd)
                if n == 0:
                    if rb.errno in (errno.EAGAIN, errno.EINTR):
                        return
                    continue
                self._relay_many(flow, self.w.now(), rb.payloads(0, n))
                if n < rb.slots or flow.rsock is None:
                    return
            return
        area = self.view
        for _ in range(RECV_BUDGET):
            try:
                n = rsock.recv_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if n > MAX_DGRAM:
                continue
            self._relay(flow, self.w.now(), area[:n])

    def _close(self, flow: Flow) -> None:
        super()._close(flow)
        if flow.rsock is not None:
            self.w.remove(flow.rfd)
            flow.rsock.close()
            flow.rsock = None
            flow.rfd = -1

    def _send_queued(self, sock: socket.socket, flow: Flow, payload: bytes) -> None:
        try:
            self._send_one(flow, sock, payload)
            self.stats["to_host" if flow.kind == KIND_NS else "to_ns"] += 1
        except OSError as e:
            self._send_error(e, flow)

    def _flow_readable(self, flow: Flow, ev: int) -> None:
        """Replies of the server: back to the sender, from the socket it wrote to."""
        sock = flow.sock
        if sock is None:
            return
        area = self.view
        key = "to_ns" if flow.kind == KIND_NS else "to_host"
        for _ in range(RECV_BUDGET):
            try:
                n = sock.recv_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ECONNREFUSED: nobody on the target port (an ICMP error)
                if log.enabled(DEBUG):
                    log.trace(f"{flow}: {e.strerror}")
                continue
            flow.last = self.w.now()
            rsock = flow.rsock
            if rsock is None:  # refused, or not there yet: nothing may answer the sender
                self.stats["no_reply_socket"] += 1
                continue
            try:
                rsock.send(area[:n])
            except OSError as e:
                self._send_error(e, flow)
                continue
            self.stats[key] += 1

    # -- life cycle ------------------------------------------------------------------
    def timer(self, now: float) -> None:
        """Close flows idle for longer than FLOW_TIMEOUT."""
        self.stats["expired"] += self._expire_flows(now)

    def summary(self) -> str:
        """Counters, one line."""
        return (f"udp splice: {len(self.flows)} flows, {len(self.ns_socks)} -U sockets, "
                + ", ".join(f"{k} {v}" for k, v in self.stats.items()))
