# SPDX-License-Identifier: GPL-2.0-or-later
"""Flows that wait for a socket from the broker: what UDP and the UDP splice share.

Sandboxed only. worker/udp.py (guest datagrams onto host sockets) and
worker/udpsplice.py (pasta's datagrams between the two loopbacks) keep the
same kind of table: one flow per sender, each asking the parent's broker for
a socket of its own and holding its first datagrams until the reply comes.
This module owns that part:

- the flow's socket state (``SockFlow``: socket and fd, the datagrams
  waiting for it, last activity, when the broker refused);
- the table (``SockFlows``): a bounded dict. When it is full, a new flow
  takes the place of one that has no socket yet or has been idle for
  EVICT_IDLE (the longest idle first, up to an eighth of the table in one
  pass, so a flood of new destinations costs one sort per eighth, not a
  scan per datagram: ``evicted``); when every flow is busy and has its
  socket, the new one is refused (``full``, a drop), so a flood of new
  destinations cannot push out the flows that are in use; the request to the broker and its reply
  (``_got_socket``: a late socket for a flow that is gone is closed, a
  refusal is counted as ``refused`` and logged, a socket is registered with
  the worker's loop and the queue sent), the queue bound (``QUEUE_MAX``,
  ``queue_full``), send errors (``send_errors``, logged up to
  ``SEND_ERR_LOG`` times), closing flows and expiring idle ones
  (``FLOW_TIMEOUT``).

What differs stays with the tables: the flow's key and other state, which
request goes to the broker (``_ask``), what its readiness means
(``_flow_readable``), how a queued datagram goes out (``_send_queued``),
when to ask again after a refusal, the stats dict (its keys and their
order are the tables' summaries) and the drop reasons. ``adopt`` wraps
every fd the parent hands over, for the tables and the listeners alike.

Imported at module level by both (which the worker's loop imports before
the sandbox goes up: nothing here may be imported late).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable

from ..log import log
from .mmsg import MAX_SEGMENTS, Segmenter

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar

    from .contract import FlowLoop
else:
    class Generic:
        """typing.Generic's subscription (``SockFlows[Flow]``), without typing."""

        def __class_getitem__(cls, item: object) -> type:
            return cls

    def TypeVar(name: str, bound: object = None) -> None:  # noqa: N802 - typing's name
        """A stand-in: the type variable matters to type checkers only."""

FLOW_TIMEOUT = 180.0  # seconds without activity, as passt's UDP_CONN_TIMEOUT
RETRY_AFTER = 1.0  # seconds before asking the broker again after a refusal
QUEUE_MAX = 64  # datagrams held per flow while the broker makes its socket
EVICT_IDLE = 10.0  # seconds idle after which a flow with a socket may make room for a new one
ROOM_AFTER = 1.0  # seconds before a full table of flows in use is searched for room again
RECV_BUDGET = 64  # datagrams read from one socket per wake-up
SEND_ERR_LOG = 16  # send errors logged at debug level (then only counted)
RUN_BYTES = 65000  # payload bytes per UDP_SEGMENT send (the datagram limit, headers aside)
SEGMENTER = Segmenter()  # one for the worker: its ``ok`` is the kernel's answer




def room(table: Any, now: float, force: bool = False) -> bool:
    """Whether a table (SockFlows, icmp.PingFlows: ``flows`` of objects with
    ``sock`` and ``last``, ``max_flows``, ``room_after``, ``stats``, ``w``,
    ``DROP_FULL``, ``_close``) has room for one more flow, made if need be.

    A full table closes up to an eighth of itself in one sort: flows without
    a socket or idle for EVICT_IDLE, the longest idle first (``force``: the
    longest idle at least; ``evicted``). If none could go, the new flow is
    dropped and counted (``full``, the table's DROP_FULL), and the table is
    not sorted again for ROOM_AFTER seconds: a flood of new flows against a
    table of flows in use costs a dict lookup per datagram, not a sort."""
    flows = table.flows
    if len(flows) < table.max_flows:
        return True
    gone = 0
    if force or now >= table.room_after:
        batch = max(1, table.max_flows // 8)
        for f in sorted(flows.values(), key=lambda f: f.last):
            if gone >= batch:
                break
            if f.sock is None or now - f.last > EVICT_IDLE or (force and not gone):
                table._close(f)
                gone += 1
        table.stats["evicted"] += gone
        if not gone:
            table.room_after = now + ROOM_AFTER
    if gone:
        return True
    table.stats["full"] += 1
    table.w.drop(table.DROP_FULL)
    return False


def adopt(fd: int, what: str, report: Callable[[str], None] = log.debug) -> socket.socket | None:
    """A non-blocking socket object around an fd the parent handed over.

    None if that fails: the fd is closed and ``report`` says why, naming
    ``what``. (Every table takes its sockets through here: flows, reply
    sockets, listeners.)
    """
    try:
        s = socket.socket(fileno=fd)
        s.setblocking(False)
    except OSError as e:
        report(f"{what}: {e.strerror}")
        os.close(fd)
        return None
    return s

class SockFlow:
    """A flow's socket from the broker, and what waits for it."""

    __slots__ = ("key", "sock", "fd", "queue", "last", "failed", "seg")

    def __init__(self, key: Any, now: float) -> None:
        self.key = key  # where the flow sits in its table
        self.sock: socket.socket | None = None
        self.fd = -1
        self.queue: list[Any] = []  # what to send once the socket is there
        self.last = now
        self.failed = 0.0  # when the broker refused; asked again after RETRY_AFTER
        self.seg = 0  # the socket's UDP_SEGMENT size (0: none, -1: refused, never again)


F = TypeVar("F", bound=SockFlow)


class SockFlows(Generic[F]):
    """A bounded table of flows that get their sockets from the broker.

    stats must hold the counters used here: flows, refused, send_errors,
    queue_full, evicted and full.
    """

    DROP_QUEUE_FULL = "queue full"  # the tables' drop reasons
    DROP_SEND = "send failed"
    DROP_FULL = "table full"

    def __init__(self, w: FlowLoop, max_flows: int, stats: dict[str, int]) -> None:
        self.w = w
        self.max_flows = max_flows
        self.flows: dict[Any, F] = {}
        self.stats = stats
        self.room_after = 0.0  # a full table of flows in use: when to look for room again (room)

    # -- what the tables fill in ----------------------------------------------------
    def _ask(self, flow: F) -> tuple[int, int, int, bytes, int]:
        """The broker request for flow's socket: (op, family, port, addr, arg)."""
        raise NotImplementedError

    def _flow_readable(self, flow: F, ev: int) -> None:
        """flow's socket is readable."""
        raise NotImplementedError

    def _send_queued(self, sock: socket.socket, flow: F, item: Any) -> None:
        """Send one datagram that waited in flow's queue."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def _add_flow(self, flow: F, force: bool = False) -> F | None:
        """Enter a new flow and ask for its socket; None if the table is full
        of flows in use (counted, and the caller's datagram dropped).

        ``force``: the flow idle the longest always makes room (for entries
        other flows depend on, such as udp.py's port sockets)."""
        if not room(self, flow.last, force):
            return None
        self.flows[flow.key] = flow
        self.stats["flows"] += 1
        self._request(flow)
        return flow

    def _refused(self, flow: F, now: float, reason: str) -> bool:
        """Whether a datagram for flow, which has no socket yet, is dropped.

        Only while the broker's last refusal is younger than RETRY_AFTER;
        after that the socket is asked for again and the datagram waits
        in the queue like the first ones did.
        """
        if not flow.failed:
            return False
        if now - flow.failed < RETRY_AFTER:
            self.w.drop(reason)
            return True
        self._request(flow)
        return False

    def _request(self, flow: F) -> None:
        flow.failed = 0.0
        op, family, port, addr, arg = self._ask(flow)
        self.w.broker.request(op, family, lambda fd, status, f=flow: self._got_socket(f, fd, status),
                              port=port, addr=addr, arg=arg, reset=lambda f=flow: self.fault_flow(f))

    def _got_socket(self, flow: F, fd: int | None, status: int) -> None:
        """The broker's answer: an fd, or None (status: an errno, or 0) when refused."""
        if self.flows.get(flow.key) is not flow:  # expired, evicted or dropped meanwhile
            if fd is not None:
                os.close(fd)
            return
        if fd is None:
            self.stats["refused"] += 1
            log.debug(f"{flow}: no socket ({os.strerror(status) if status else 'refused'})")
            flow.failed = self.w.now() or 1e-9
            flow.queue.clear()
            return
        sock = adopt(fd, str(flow))
        if sock is None:
            flow.failed = self.w.now() or 1e-9
            return
        flow.sock, flow.fd = sock, fd
        self.w.add(fd, lambda ev, f=flow: self._flow_readable(f, ev), reset=lambda f=flow: self.fault_flow(f))
        for item in flow.queue:
            self._send_queued(sock, flow, item)
        flow.queue.clear()

    def _queue_full(self, flow: F) -> bool:
        """True (counted and dropped) when flow's queue has no room for one more datagram."""
        if len(flow.queue) < QUEUE_MAX:
            return False
        self.stats["queue_full"] += 1
        self.w.drop(self.DROP_QUEUE_FULL)
        return True

    def _send_error(self, e: OSError, subject: object, target: tuple | None = None) -> None:
        """A datagram lost on send (EAGAIN included, as on any full queue): count and drop.

        Logged as "subject: send: error", or with target "subject: send to host:port: error".
        """
        n = self.stats["send_errors"] = self.stats["send_errors"] + 1
        if n <= SEND_ERR_LOG:
            if target is None:
                log.debug(f"{subject}: send: {e.strerror}")
            else:
                log.debug(f"{subject}: send to {target[0]}:{target[1]}: {e.strerror}")
        self.w.drop(self.DROP_SEND)

    @staticmethod
    def _send_one(flow: F, sock: socket.socket, payload: bytes | memoryview) -> None:
        """send() one datagram; a socket left with a smaller UDP_SEGMENT size by a run
        gets it turned off first (it would cut the datagram). Raises OSError."""
        if 0 < flow.seg < len(payload):
            SEGMENTER.set_size(sock, 0)
            flow.seg = 0
        sock.send(payload)

    def _send_many(self, flow: F, sock: socket.socket, payloads: list) -> int:
        """Send payloads in order on flow's socket; how many left (the rest are counted lost).

        Runs of equal size (the last of a run may be shorter, at most
        ``mmsg.MAX_SEGMENTS``, at most ``RUN_BYTES`` together) go as one
        ``send()`` with the socket's UDP_SEGMENT size (``mmsg``); a
        single datagram longer than that size first turns it off. When
        the kernel refuses segmentation the run goes one by one, and that
        flow (or, without UDP_SEGMENT at all, every flow) stops trying.
        """
        seg = SEGMENTER
        sent, i, n = 0, 0, len(payloads)
        sizes = list(map(len, payloads))
        size = sizes[0] if n else 0
        step = 1
        if seg.ok and flow.seg >= 0 and size > 0 and sizes.count(size) == n:
            step = min(MAX_SEGMENTS, RUN_BYTES // size)  # the usual list: one size, cut in runs
        while i < n:
            first = payloads[i]
            size = sizes[i]
            j, total = i + 1, size
            if step > 1 and flow.seg >= 0 and seg.ok:
                j = min(n, i + step)
            elif seg.ok and flow.seg >= 0 and size > 0:
                while j < n and j - i < MAX_SEGMENTS:
                    m = sizes[j]
                    if m > size or m == 0 or total + m > RUN_BYTES:
                        break
                    total += m
                    j += 1
                    if m < size:
                        break
            try:
                if j - i > 1:
                    if flow.seg != size and not seg.set_size(sock, size):
                        flow.seg = -1
                        j = i + 1  # this one alone, the rest on the next turns
                        sock.send(first)
                    else:
                        flow.seg = size
                        try:
                            sock.send(b"".join(payloads[i:j]))
                            seg.runs += 1
                            seg.segments += j - i
                        except OSError as e:
                            if e.errno not in (errno.EINVAL, errno.EIO, errno.EMSGSIZE):
                                raise
                            log.debug(f"{flow}: UDP_SEGMENT send refused ({e.strerror}): one by one")
                            seg.set_size(sock, 0)
                            flow.seg = -1
                            j = i + 1
                            sock.send(first)
                else:
                    if 0 < flow.seg < size:
                        seg.set_size(sock, 0)
                        flow.seg = 0
                    sock.send(first)
                sent += j - i
            except OSError as e:  # EAGAIN included: lost, as on any full queue
                self._send_error(e, flow)
            i = j
        return sent

    def _close(self, flow: F) -> None:
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
        if flow.sock is not None:
            self.w.remove(flow.fd)
            flow.sock.close()
            flow.sock = None
            flow.fd = -1
        flow.queue.clear()

    def fault_flow(self, flow: F) -> None:
        """A handler of flow raised (worker/faults.py): drop the flow and its socket."""
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        self._close(flow)

    def _expire_flows(self, now: float) -> int:
        """Close the flows idle for longer than FLOW_TIMEOUT; how many."""
        idle = [f for f in self.flows.values() if now - f.last > FLOW_TIMEOUT]
        for flow in idle:
            self._close(flow)
        return len(idle)
