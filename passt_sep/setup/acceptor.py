# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's forwarded TCP listeners, accepted by the parent (-t and -T).

Parent only, pasta only (passt hands its -t listeners to the worker as
before). A spliced connection's other side goes to a destination the
parent fixed at start-up (or at an ``auto`` scan): the loopback of the
other namespace at the port's target. Nothing about it is the worker's to
choose, so the parent keeps the listeners and does the whole set-up in one
pass of its loop, instead of the worker accepting, asking
(OP_NS_LOOP_CONNECT / OP_HOST_LOOP_CONNECT) and waiting for the reply:

    accept4 on the listener → a socket of the other side's pool → connect
    it (non-blocking) to loopback:target → one message to the worker with
    both fds (ipc.ACCEPT_MAGIC, state PAIR_CONNECTED or PAIR_PENDING)

- -T (listeners on the namespace's 127.0.0.1 and ::1): every connection
  is spliced to the host's loopback;
- -t, a peer on the host's loopback (127.0.0.0/8, ::1, v4-mapped 127/8 on
  a dual-stack listener): spliced to the namespace's loopback, of the
  peer's family;
- -t, any other peer: the accepted socket alone (PAIR_TAP), with the
  peer's address and port, for the worker's tap path (worker/tcp.py).

A connect that fails at once (nothing listens: ECONNREFUSED on loopback)
sends the accepted socket alone with PAIR_REFUSED; the worker resets it.
Nothing is connected ahead of a client (a server would see phantom
connections): each connect follows its accept.

Flow control: the parent never blocks on the worker (Broker.send queues).
While that queue holds anything, the listeners are not watched: the
kernel's backlog holds the next connections, not the parent's memory.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable

from .. import ipc
from ..log import log
from ..loopback import loopback_family
from .sockpool import loop_connect

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from .broker import Broker
    from .sockpool import SocketPool

# A listener is drained in a burst only (as the worker's Splicer does):
# an event this soon after the last accept takes up to ACCEPT_BUDGET
# connections, otherwise one (a connection per event, the common case,
# costs no accept() that finds the queue empty; the listener is
# level-triggered, so nothing is lost)
BURST_GAP = 100e-6
ACCEPT_BUDGET = 16
# accept() errors that leave the listener ready (out of fds or memory):
# not watched until the worker's queue is empty again, or the loop would spin
_PAUSE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

KIND_T, KIND_NS = 0, 1  # -t (host netns), -T (inside the namespace)

Watch = Callable[[int, Callable[[int], "int | None"]], None]


loopback_peer = loopback_family  # the one rule (setup/sockpool.py)


class Listener:
    """One forwarded TCP listener held by the parent."""

    __slots__ = ("sock", "fd", "port", "target", "family", "kind", "flags", "last")

    def __init__(self, sock: socket.socket, port: int, target: int, kind: int) -> None:
        self.sock, self.fd, self.port, self.target, self.kind = sock, sock.fileno(), port, target, kind
        self.family = int(sock.family)
        # ipc.ACCEPT's state bits that say where the accepted socket comes from
        self.flags = (kind << 4) | (ipc.ACCEPTED_V6 if self.family == socket.AF_INET6 else 0)
        self.last = -1.0


class Acceptor:
    """The forwarded TCP listeners of a pasta run and what the parent does
    when one is ready. ``splice``: loopback peers of -t are spliced (pasta;
    False for slirp4netns's mode, whose worker has no splice path)."""

    def __init__(self, broker: Broker, splice: bool = True) -> None:
        self.broker = broker
        self.splice = splice
        self.listeners: dict[int, Listener] = {}
        self.watch: Watch | None = None
        self.unwatch: Callable[[int], None] | None = None
        self.paused = False  # listeners not watched: the worker's queue is not empty, or out of fds
        self.stats = {"accepted": 0, "spliced": 0, "tap": 0, "refused": 0}

    def start(self, watch: Watch, unwatch: Callable[[int], None]) -> None:
        """The supervise loop runs: watch every listener from now on."""
        self.watch, self.unwatch = watch, unwatch
        for ls in self.listeners.values():
            self._watch(ls)

    def add(self, sock: socket.socket, port: int, target: int, kind: int) -> None:
        """A -t or -T listener (spec, or an auto scan); non-blocking from here on."""
        if sock.getblocking():  # made SOCK_NONBLOCK (listeners.py): no system call
            sock.setblocking(False)
        ls = Listener(sock, port, target, kind)
        self.listeners[ls.fd] = ls
        if self.watch is not None and not self.paused:
            self._watch(ls)

    def drop(self, port: int, kind: int) -> None:
        """Close the listeners of a port (auto: its server went away)."""
        for ls in [x for x in self.listeners.values() if x.port == port and x.kind == kind]:
            del self.listeners[ls.fd]
            if self.unwatch is not None and not self.paused:
                self.unwatch(ls.fd)
            ls.sock.close()

    def _watch(self, ls: Listener) -> None:
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

    def _ready(self, ls: Listener) -> None:
        if self.broker.queue:  # the worker is behind: the kernel's backlog waits, not us
            self._pause()
            return
        now = time.monotonic()
        budget = ACCEPT_BUDGET if now - ls.last < BURST_GAP else 1
        ls.last = now
        refill: SocketPool | None = None
        for _ in range(budget):
            try:
                fd, peer = ls.sock._accept()  # type: ignore[attr-defined]  # accept4 minus socket.accept's wrapping
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in _PAUSE:
                    log.debug(f"forwarded port {ls.port}: accept: {e.strerror}")
                    self._pause()
                    break
                continue  # ECONNABORTED and the like: that client is gone, the next may wait
            self.stats["accepted"] += 1
            try:
                refill = self._one(ls, fd, peer)
            finally:
                _close(fd)
            if self.broker.queue:
                self._pause()
                break
        if refill is not None:
            refill.refill()

    def _one(self, ls: Listener, fd: int, peer: tuple) -> SocketPool | None:
        """Splice or hand over accepted fd; the pool drawn on, if any."""
        if ls.kind == KIND_NS:
            family: int | None = ls.family
            pool = self.broker.host_pool
        else:
            family = loopback_peer(peer[0]) if self.splice else None
            if family is None:
                self.stats["tap"] += 1
                self.broker.send(ipc.pack_accept(ls.target, ipc.PAIR_TAP | ls.flags, ls.family, peer[0], peer[1]), [fd])
                return None
            pool = self.broker.ns_tcp_pool()
        try:
            if ls.kind == KIND_NS:
                b: socket.socket | None = loop_connect(family, ls.target, pool.take(family))
            else:  # made ahead in the namespace, or by its thread (EAGAIN if busy: a reset)
                b = self.broker.ns_connect(family, ls.target)
        except OSError as e:
            log.debug(f"forwarded port {ls.port}: connect to port {ls.target}: {e.strerror}")
            b = None
        if b is None:
            self.stats["refused"] += 1
            self.broker.send(ipc.pack_accept(ls.target, ipc.PAIR_REFUSED | ls.flags, family), [fd])
            return pool
        try:
            try:
                b.getpeername()  # ENOTCONN until the handshake is over (on loopback: done already)
                state = ipc.PAIR_CONNECTED
            except OSError:
                state = ipc.PAIR_PENDING
            self.stats["spliced"] += 1
            self.broker.send(ipc.pack_accept(ls.target, state | ls.flags, family), [fd, b.fileno()])
        finally:
            b.close()
        return pool

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
