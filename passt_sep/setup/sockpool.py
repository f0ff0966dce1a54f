# SPDX-License-Identifier: GPL-2.0-or-later
"""Sockets made ahead of need, so that a connect request skips socket().

Parent only. Owns, per network namespace and family, a few unconnected
non-blocking TCP (or UDP) sockets, as passt keeps its TCP socket pools and
refills them outside the path of a new connection. Three uses:

- the host's (``OP_TCP_CONNECT``, ``OP_HOST_LOOP_CONNECT``): made by the
  parent's main thread, one after each reply, while the worker already
  goes on with the socket it got;
- the guest's (``OP_NS_LOOP_CONNECT``, the splice path of ``-t``): made by
  the thread that entered the namespace (autofwd.NsThread), a batch at a
  time, without the main thread waiting for it. A socket belongs to the
  namespace it was made in whichever thread calls ``connect()`` later, so
  taking one costs no hand-off to that thread; before the pool, every
  spliced inbound connection waited for two thread switches;
- the guest's UDP sockets for ``OP_NS_LOOP_UDP`` (a host loopback sender
  on a ``-u`` port), the same way: bound and connected by the main thread.

The sockets never leave the parent unconnected: the broker takes one,
starts its connect and only then hands it over (docs/security.md: an
unconnected TCP socket would let the worker connect anywhere). Pools fill
on first use, after the worker exists. A socket that cannot be made now
(EMFILE, ...) is simply not pooled; the broker then makes one itself and
reports its error as before.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from collections.abc import Callable, Iterable

from ..log import log

POOL_SIZE = 8  # per family (passt's TCP_SOCK_POOL_SIZE is 32 over more uses)
REFILL_AT = 4  # the namespace's pool is topped up in a batch when this low
SO_PEEK_OFF = 42


@functools.cache
def tcp_peek_off_supported() -> bool:
    """Whether this kernel keeps a peek offset on TCP sockets (SO_PEEK_OFF, Linux 6.9).

    When it does, the parent sets the offset on every TCP socket the tap
    path may get (-t listeners, whose accepted sockets inherit it, and the
    sockets of OP_TCP_CONNECT), so the worker need not, once per connection.
    Both families are tried (a kernel without IPv6 counts by IPv4 alone);
    the answer is kept.
    """
    ok = False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no such family here: nothing of it will need the offset
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
            if s.getsockopt(socket.SOL_SOCKET, SO_PEEK_OFF) != 0:
                return False
            ok = True
        except OSError:
            return False
        finally:
            s.close()
    return ok


def set_peek_off(s: socket.socket) -> None:
    """Peek offset 0 on a TCP socket (see tcp_peek_off_supported)."""
    s.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)


def new_socket(family: int, kind: int = socket.SOCK_STREAM, peek_off: bool = False) -> socket.socket:
    """An unconnected non-blocking socket (TCP unless kind says) of the calling thread's netns;
    ``peek_off``: with its peek offset set (a TCP socket for the tap path)."""
    s = socket.socket(family, kind | socket.SOCK_NONBLOCK)
    if peek_off:
        try:
            set_peek_off(s)
        except OSError:
            s.close()
            raise
    return s


def loop_connect(family: int, port: int, s: socket.socket | None = None) -> socket.socket:
    """A TCP socket connecting (non-blocking) to loopback:port: s (from a
    SocketPool, of the namespace it was made in) or a new one of the
    calling thread's netns."""
    if s is None:
        s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        rc = s.connect_ex(("127.0.0.1" if family == socket.AF_INET else "::1", port))
        if rc not in (0, errno.EINPROGRESS):
            raise OSError(rc, os.strerror(rc))
    except OSError:
        s.close()
        raise
    return s


class SocketPool:
    """Ready sockets of one namespace and type (``kind``), per family.

    ``post``: None if the sockets are made by the caller's thread (the
    host's pool), else a function that runs a job later in the thread that
    entered the namespace (NsThread.post).
    """

    def __init__(self, families: Iterable[int], post: Callable[[Callable[[], None]], None] | None = None,
                 size: int = POOL_SIZE, kind: int = socket.SOCK_STREAM, peek_off: bool = False) -> None:
        self.ready: dict[int, list[socket.socket]] = {f: [] for f in families}
        self.kind = kind
        self.peek_off = peek_off  # TCP sockets with their peek offset set (new_socket)
        self.post = post
        self.size = size
        self.pending = False  # a batch job is queued or running (namespace pool)
        self.failed = False  # the last attempt failed (logged once until one succeeds)

    def take(self, family: int) -> socket.socket | None:
        """A ready socket of that family, or None (the caller makes one)."""
        ready = self.ready.get(family)
        if ready:
            try:
                return ready.pop()
            except IndexError:  # taken meanwhile; cannot happen with one taker
                return None
        return None

    def refill(self) -> None:
        """Top the pools up: now (host) or by a job in the namespace (guest)."""
        if self.post is None:
            self._fill(self.size)
            return
        if self.pending or all(len(r) > REFILL_AT for r in self.ready.values()):
            return
        self.pending = True
        try:
            self.post(self._job)
        except Exception as e:  # noqa: BLE001 - the thread is gone: no pool, as before it
            self.pending = False
            log.debug(f"socket pool: cannot queue a refill: {e}")

    def _job(self) -> None:
        try:
            self._fill(self.size)
        finally:
            self.pending = False

    def _fill(self, size: int) -> None:
        for family, ready in self.ready.items():
            while len(ready) < size:
                try:
                    ready.append(new_socket(family, self.kind, self.peek_off))
                except OSError as e:
                    if not self.failed:
                        log.debug(f"socket pool: {e.strerror}; sockets are made on demand")
                    self.failed = True
                    return
        self.failed = False

    def close(self) -> None:
        """Close every ready socket."""
        for ready in self.ready.values():
            while ready:
                ready.pop().close()
