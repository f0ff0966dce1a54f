# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's half of the -T splice path: it accepts, connects, hands over both.

Parent only. Every -T connection (a process inside the namespace connects
to a -T listener on its 127.0.0.1 or ::1) is spliced to the host's
loopback at a target fixed by the parent (the -T spec, or an ``auto``
scan). Nothing about it is the worker's to choose, so the parent keeps the
-T listeners itself and does the whole set-up in one pass of its loop:

    accept4 on the listener → take a socket of the host pool → connect it
    (non-blocking) to loopback:target → one message to the worker,
    ipc.SPLICE_PAIR_MAGIC, both fds attached

The worker then only moves bytes (worker/splice.py). Before, the worker
accepted, asked (OP_HOST_LOOP_CONNECT) and waited for the reply: two
messages and two wake-ups of the parent's loop per connection instead of
one message. Nothing is connected ahead of a client (a server would see
phantom connections): the connect follows an accept.

Flow control: the parent never blocks on the worker (Broker.send queues).
While that queue holds anything, the listeners are not watched: the
kernel's backlog holds the next connections, not the parent's memory, and
a namespace process cannot make the parent queue without bound.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import ipc
from ..log import log
from .sockpool import loop_connect

if TYPE_CHECKING:
    from .broker import Broker

# A listener is drained in a burst only (as the worker's Splicer does):
# an event this soon after the last accept takes up to ACCEPT_BUDGET
# connections, otherwise one (a connection per event, the common case,
# costs no accept() that finds the queue empty; the listener is
# level-triggered, so nothing is lost)
BURST_GAP = 100e-6
ACCEPT_BUDGET = 16
# accept() errors that leave the listener ready (out of fds or memory):
# not watched until the next tick, or the loop would spin on it
_PAUSE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Watch = Callable[[int, Callable[[int], "int | None"]], None]


class NsListener:
    """One -T listener held by the parent."""

    __slots__ = ("sock", "fd", "port", "target", "family", "flag", "last")

    def __init__(self, sock: socket.socket, port: int, target: int) -> None:
        self.sock, self.fd, self.port, self.target = sock, sock.fileno(), port, target
        self.family = int(sock.family)
        self.flag = ipc.PAIR_V6 if self.family == socket.AF_INET6 else 0
        self.last = -1.0


class NsSplice:
    """The -T listeners and what the parent does when one is ready."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.listeners: dict[int, NsListener] = {}
        self.watch: Watch | None = None
        self.unwatch: Callable[[int], None] | None = None
        self.paused = False  # listeners not watched: the worker's queue is not empty, or out of fds
        self.stats = {"accepted": 0, "refused": 0}

    def start(self, watch: Watch, unwatch: Callable[[int], None]) -> None:
        """The supervise loop runs: watch every listener from now on."""
        self.watch, self.unwatch = watch, unwatch
        for ls in self.listeners.values():
            self._watch(ls)

    def add(self, sock: socket.socket, port: int, target: int) -> None:
        """A -T listener (spec, or an auto scan); non-blocking from here on."""
        sock.setblocking(False)
        ls = NsListener(sock, port, target)
        self.listeners[ls.fd] = ls
        if self.watch is not None and not self.paused:
            self._watch(ls)

    def drop(self, port: int) -> None:
        """Close the listeners of a port (auto: its server went away)."""
        for ls in [x for x in self.listeners.values() if x.port == port]:
            del self.listeners[ls.fd]
            if self.unwatch is not None:
                self.unwatch(ls.fd)
            ls.sock.close()

    def _watch(self, ls: NsListener) -> None:
        assert self.watch is not None
        self.watch(ls.fd, lambda _ev, ls=ls: self._ready(ls))

    def _pause(self) -> None:
        if self.paused or self.unwatch is None:
            return
        self.paused = True
        for fd in self.listeners:
            self.unwatch(fd)

    def tick(self) -> None:
        """Between polls: watch the listeners again once the worker has read its queue."""
        if self.paused and not self.broker.queue and self.watch is not None:
            self.paused = False
            for ls in self.listeners.values():
                self._watch(ls)

    def _ready(self, ls: NsListener) -> None:
        if self.broker.queue:  # the worker is behind: the kernel's backlog waits, not us
            self._pause()
            return
        now = time.monotonic()
        budget = ACCEPT_BUDGET if now - ls.last < BURST_GAP else 1
        ls.last = now
        pool = self.broker.host_pool
        for _ in range(budget):
            try:
                fd, _peer = ls.sock._accept()  # type: ignore[attr-defined]  # accept4 minus socket.accept's wrapping
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in _PAUSE:
                    log.debug(f"-T port {ls.port}: accept: {e.strerror}")
                    self._pause()
                    break
                continue  # ECONNABORTED and the like: that client is gone, the next may wait
            self._pair(ls, fd, pool.take(ls.family))
            if self.broker.queue:
                self._pause()
                break
        pool.refill()

    def _pair(self, ls: NsListener, fd: int, s: socket.socket | None) -> None:
        """Connect the other side of accepted fd and hand the worker both."""
        self.stats["accepted"] += 1
        try:
            b: socket.socket | None = loop_connect(ls.family, ls.target, s)
        except OSError as e:
            log.debug(f"-T port {ls.port}: connect to port {ls.target}: {e.strerror}")
            self.stats["refused"] += 1
            b = None
        if b is None:
            state, fds = ipc.PAIR_REFUSED, [fd]
        else:
            try:
                b.getpeername()  # ENOTCONN until the handshake is over (on loopback: done already)
                state = ipc.PAIR_CONNECTED
            except OSError:
                state = ipc.PAIR_PENDING
            fds = [fd, b.fileno()]
        try:
            self.broker.send(ipc.pack_port_msg(ipc.SPLICE_PAIR_MAGIC, ls.target, state | ls.flag), fds)
        finally:
            _close(fd)
            if b is not None:
                b.close()

    def close(self) -> None:
        """End of the run."""
        for ls in self.listeners.values():
            ls.sock.close()
        self.listeners.clear()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
