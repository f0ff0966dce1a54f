# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's loopback splice path, and the worker's forwarded-port table.

Sandboxed only. Every listening socket the parent hands over arrives here
(``ipc`` port messages): -t listeners of the host netns, -T listeners bound
inside the namespace, -u sockets (worker/udp.py), -U sockets bound inside
the namespace (worker/udpsplice.py). What a listener accepts goes one of two
ways:

- a -t connection from a loopback peer (127.0.0.0/8, ::1, or v4-mapped
  127/8 on a dual-stack listener), in pasta, never touches the tap: the
  worker asks the broker for a socket connecting to the namespace's
  loopback of the same family at the target port (``OP_NS_LOOP_CONNECT``);
  every other -t connection goes to the tap path (worker/tcp.py);
- a -T connection (accepted inside the namespace) is spliced to a socket
  the broker connects to the host's loopback (``OP_HOST_LOOP_CONNECT``).

A spliced connection is two sockets and one pipe per direction; the bytes
move socket → pipe → socket with ``splice(2)`` and never enter Python.
EOF one way becomes ``shutdown(SHUT_WR)`` on the other socket once the
pipe is empty (half-close); a reset or error on one side closes the other
with SO_LINGER 0, which sends a RST. The table is bounded (each entry
costs six fds). Drops (``auto``, a server went away) close the listeners
of a port; connections already spliced stay.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct

from .. import ipc
from ..log import DEBUG, log
from ..loopback import loopback_family
from .faults import FaultLimit
from .flowsock import adopt
from .limits import SPLICE_FDS

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from .contract import Tables

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # asked for; the kernel may give less (pipe-max-size, per-user quota)
PIPE_POOL = 16  # empty pipes kept for the next connection
SPLICE_FLAGS = 0x1 | 0x2  # SPLICE_F_MOVE | SPLICE_F_NONBLOCK
MOVE_BUDGET = 64  # splice rounds per direction and wake-up
# A direction that has moved less than SMALL_CONN bytes reads into memory
# first (recv_into, SMALL bytes at most) and sends what it got: a
# request/response connection's messages cost two calls instead of three
# splices (the third finding the socket empty). A full read goes on with
# splice; a bulk transfer is past SMALL_CONN after its first wake-ups.
SMALL = 4096
SMALL_CONN = 1 << 20
# A listener is drained in a burst only: an accept this soon after the
# last one on it takes up to ACCEPT_BUDGET connections, otherwise one (a
# connection per request, the common case, costs no accept() that finds
# the queue empty)
BURST_GAP = 100e-6
ACCEPT_BUDGET = 64
# accept() errors that leave the listener ready (out of fds or memory): it
# is not watched until the next timer pass, or the loop would spin on it
_ACCEPT_PAUSE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
FDS_PER_CONN = 6
MAX_CONNS_CAP = 16384
CONNECT_TIMEOUT = 10.0  # the broker's socket did not connect: reset the accepted one
# Bulk transfers: once one wake-up moved a tenth of the pipe, the source
# socket gets SO_RCVLOWAT of a quarter pipe, so the kernel wakes us for
# large batches only (as passt does). A direction that moved nothing for
# LOWAT_CHECK gets its low-water mark back to 1 byte: the kernel then
# signals whatever waits, so a tail below the mark waits at most twice that.
LOWAT_CHECK = 0.005

EV_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
EV_OUT = EV_IN | select.EPOLLOUT  # only while a write to that socket is blocked
_LINGER0 = struct.pack("ii", 1, 0)

KIND_IN, KIND_OUT = 0, 1  # -t (host → namespace), -T (namespace → host)


class Half:
    """One direction: bytes read from src wait in a pipe until dst takes them."""

    __slots__ = ("rd", "wr", "size", "pending", "eof", "shut", "bytes", "lowat", "act")

    def __init__(self, pipe: tuple[int, int, int]) -> None:
        self.rd, self.wr, self.size = pipe
        self.pending = 0  # bytes in the pipe
        self.eof = False  # src said EOF
        self.shut = False  # dst was shut down for writing
        self.bytes = 0
        self.lowat = False  # SO_RCVLOWAT raised on the source socket
        self.act = False  # bytes moved since the last LOWAT_CHECK


class SpliceConn:
    """Two sockets and a pipe per direction."""

    __slots__ = ("a", "b", "afd", "bfd", "ab", "ba", "kind", "port", "connected", "closed",
                 "created", "out_armed")

    def __init__(self, a: socket.socket, kind: int, port: int, now: float) -> None:
        self.a = a  # accepted
        self.afd = a.fileno()
        self.b: socket.socket | None = None  # from the broker, connecting
        self.bfd = -1
        self.ab: Half | None = None
        self.ba: Half | None = None
        self.kind = kind
        self.port = port
        self.connected = False
        self.closed = False
        self.created = now
        self.out_armed: set[int] = set()  # fds watched for EPOLLOUT


class Listener:
    """A listening or bound socket handed over by the parent."""

    __slots__ = ("sock", "fd", "port", "target", "kind", "family", "last_accept")

    def __init__(self, sock: socket.socket, port: int, target: int, kind: int) -> None:
        self.sock, self.fd, self.port, self.target, self.kind = sock, sock.fileno(), port, target, kind
        self.family = int(sock.family)
        self.last_accept = -1.0  # monotonic time of the last accept (BURST_GAP)


class Splicer:
    """Forwarded-port listeners and the table of spliced connections."""

    def __init__(self, w: Tables, max_conns: int | None = None) -> None:
        self.w = w
        self.enabled = w.cfg.opts.mode == "pasta"
        self.listeners: dict[int, Listener] = {}
        self.conns: set[SpliceConn] = set()
        self.max_conns = max_conns or max(8, min(MAX_CONNS_CAP, SPLICE_FDS // FDS_PER_CONN))
        self.pipes: list[tuple[int, int, int]] = []
        self.stats = {"spliced": 0, "refused": 0, "full": 0, "resets": 0, "to_ns": 0, "to_host": 0,
                      "dropped_ports": 0, "lowat_set": 0}
        # directions whose source socket has a raised SO_RCVLOWAT, and when
        # to look at them next (the loop's poll timeout honours it)
        self.lowat: dict[Half, socket.socket] = {}
        self.moved = 0  # bytes spliced; the loop reads and clears it (busy polling)
        self.buf = bytearray(SMALL)  # the small-message path's (_move)
        self.view = memoryview(self.buf)
        self.paused: list[Listener] = []  # not watched until the next timer pass (_ACCEPT_PAUSE)
        self.lowat_due = 0.0

    # -- port messages from the parent -----------------------------------------
    def port_msg(self, msg: tuple[bytes, int, int], fds: list[int]) -> None:
        """A listener announcement or a drop from the parent (ipc.PORT_MAGICS)."""
        magic, port, target = msg
        fd = fds[0] if fds else None
        for extra in fds[1:]:
            os.close(extra)
        if magic == ipc.LISTENER_MAGIC and fd is not None:
            self._add(fd, port, target, KIND_IN)
        elif magic == ipc.NS_LISTENER_MAGIC and fd is not None:
            if self.enabled:
                self._add(fd, port, target, KIND_OUT)
            else:
                os.close(fd)
        elif magic == ipc.UDP_LISTENER_MAGIC and fd is not None:
            self.w.udp.add_listener(fd, port, target)
        elif magic == ipc.DROP_TCP_MAGIC:
            self._drop(port, KIND_IN)
        elif magic == ipc.DROP_NS_MAGIC:
            self._drop(port, KIND_OUT)
        elif magic == ipc.DROP_UDP_MAGIC:
            self.stats["dropped_ports"] += self.w.udp.remove_listener(port)
        elif magic == ipc.NS_UDP_MAGIC and fd is not None:
            self.w.udpsplice.add_ns_socket(fd, port, target)
        elif magic == ipc.DROP_NS_UDP_MAGIC:
            self.stats["dropped_ports"] += self.w.udpsplice.remove_ns_port(port)
        elif fd is not None:
            os.close(fd)

    def _add(self, fd: int, port: int, target: int, kind: int) -> None:
        s = adopt(fd, f"TCP listener for port {port}", log.warn)
        if s is None:
            return
        ls = Listener(s, port, target, kind)
        self.listeners[ls.fd] = ls
        self._watch(ls)

    def _watch(self, ls: Listener) -> None:
        self.w.add(ls.fd, lambda ev, ls=ls: self._accept(ls))  # level-triggered: see _accept

    def _drop(self, port: int, kind: int) -> None:
        for ls in [x for x in self.listeners.values() if x.port == port and x.kind == kind]:
            del self.listeners[ls.fd]
            self.w.remove(ls.fd)
            ls.sock.close()
            self.stats["dropped_ports"] += 1

    # -- accepting ---------------------------------------------------------------
    def _accept(self, ls: Listener) -> None:
        """One connection a readiness event, or a burst's worth.

        The listener is level-triggered: epoll reports it again while more
        connections wait, so taking one per event loses nothing and spares
        the accept() that finds the queue empty; an event within BURST_GAP
        of the last accept drains up to ACCEPT_BUDGET at once.
        """
        now = self.w.now()
        budget = ACCEPT_BUDGET if now - ls.last_accept < BURST_GAP else 1
        ls.last_accept = now
        for _ in range(budget):
            try:
                fd, peer = ls.sock._accept()  # type: ignore[attr-defined]  # socket.accept() minus its wrapping
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug(f"accept on port {ls.port}: {e.strerror}")
                if e.errno in _ACCEPT_PAUSE:
                    self.w.remove(ls.fd)
                    self.paused.append(ls)
                return
            self._take(ls, fd, peer)

    def _take(self, ls: Listener, fd: int, peer: tuple) -> None:
        """An accepted connection: to the tap path or spliced."""
        fam_or_none = ls.family if ls.kind == KIND_OUT else (  # -T: bound to 127.0.0.1 or ::1 (v6only)
            loopback_family(peer[0]) if self.enabled else None)
        if fam_or_none is None:
            self.w.tcp._inbound(fd, ls.family, peer, ls.target)  # the tap path
            return
        try:
            cs = socket.socket(ls.family, socket.SOCK_STREAM, 0, fileno=fd)
        except OSError as e:
            log.debug(f"accepted on port {ls.port}: {e.strerror}")
            os.close(fd)
            return
        self._splice(cs, fam_or_none, ls.target, ls.kind)

    def _splice(self, cs: socket.socket, family: int, target: int, kind: int) -> None:
        if len(self.conns) >= self.max_conns:
            self.stats["full"] += 1
            _abort(cs)
            return
        cs.setblocking(False)
        c = SpliceConn(cs, kind, target, self.w.now())
        self.conns.add(c)
        op = ipc.OP_NS_LOOP_CONNECT if kind == KIND_IN else ipc.OP_HOST_LOOP_CONNECT
        self.w.broker.request(op, family, lambda fd, err, c=c: self._got_socket(c, family, fd, err),
                              port=target, reset=lambda c=c: self.fault_conn(c))

    def accepted(self, data: bytes, fds: list[int]) -> None:
        """A connection the parent accepted on a forwarded listener
        (setup/acceptor.py, ipc.ACCEPT): for the tap path, or spliced with
        the socket the parent connected to the other side's loopback at
        target (no request: the destination was the parent's to fix)."""
        msg = ipc.unpack_accept(data)
        want = 2 if msg is not None and msg[1] in (ipc.PAIR_PENDING, ipc.PAIR_CONNECTED) else 1
        if msg is None or len(fds) != want or msg[1] > ipc.PAIR_TAP:
            for fd in fds:
                os.close(fd)
            return
        target, state, kind, family, afam, peer = msg
        if state == ipc.PAIR_TAP:
            if peer is None:
                os.close(fds[0])
                return
            self.w.tcp._inbound(fds[0], family, peer, target)
            return
        try:  # afam: a v4 peer on a dual-stack -t listener is an AF_INET6 socket
            a = socket.socket(afam, socket.SOCK_STREAM, 0, fileno=fds[0])
        except OSError:
            for fd in fds:
                os.close(fd)
            return
        if not self.enabled or len(self.conns) >= self.max_conns:
            self.stats["full"] += 1
            _abort(a)
            if want == 2:
                _abort(socket.socket(family, socket.SOCK_STREAM, 0, fileno=fds[1]))
            return
        a.setblocking(False)
        c = SpliceConn(a, kind, target, self.w.now())
        self.conns.add(c)
        try:  # the per-flow boundary (worker/faults.py): the broker's message loop is not one
            if state == ipc.PAIR_REFUSED:
                self._got_socket(c, family, None, errno.ECONNREFUSED)
            else:
                self._got_socket(c, family, fds[1], ipc.STATUS_CONNECTED if state == ipc.PAIR_CONNECTED else 0)
        except FaultLimit:
            raise
        except Exception as e:  # noqa: BLE001 - reset this connection only, and go on
            self.w.faults.record(f"spliced connection to port {c.port}", e)
            self.fault_conn(c)

    def _got_socket(self, c: SpliceConn, family: int, fd: int | None, err: int) -> None:
        if c.closed:
            if fd is not None:
                os.close(fd)
            return
        if fd is None:
            self.stats["refused"] += 1
            log.debug(f"splice to port {c.port}: errno {err}")
            self._close(c, reset=True)
            return
        try:  # the broker's sockets are non-blocking: saying so spares CPython's own queries
            b = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0, fileno=fd)
        except OSError:
            os.close(fd)
            self._close(c, reset=True)
            return
        c.b, c.bfd = b, b.fileno()
        if err == ipc.STATUS_CONNECTED:  # the usual case on loopback: the parent saw it connected
            # the client's first bytes go now (the client speaks first, and
            # usually has by now); the server's, if any, when epoll reports
            # them (a registration finds the readiness already there)
            self.w.add(c.bfd, lambda ev, c=c: self._b_event(c, ev), EV_IN, reset=lambda c=c: self.fault_conn(c))
            if self._connected(c, checked=True):
                self._event(c, c.ab, c.ba, select.EPOLLIN)
            return
        # wait for the connect to complete before touching the accepted side
        self.w.add(c.bfd, lambda ev, c=c: self._b_event(c, ev), EV_OUT, reset=lambda c=c: self.fault_conn(c))
        c.out_armed.add(c.bfd)

    def _pipe(self) -> tuple[int, int, int] | None:
        if self.pipes:
            return self.pipes.pop()
        try:
            rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            log.debug(f"splice: pipe: {e.strerror}")
            return None
        size = 65536
        try:
            size = fcntl.fcntl(wr, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        return rd, wr, size

    def _connected(self, c: SpliceConn, checked: bool = False) -> bool:
        """b's connect completed: pipes, and watch a; False if it failed
        (``checked``: the parent already saw it connected, no SO_ERROR)."""
        assert c.b is not None
        err = 0 if checked else c.b.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.stats["refused"] += 1
            log.debug(f"splice to port {c.port}: connect: {os.strerror(err)}")
            self._close(c, reset=True)
            return False
        p1 = self._pipe()
        p2 = self._pipe() if p1 is not None else None
        if p1 is None or p2 is None:
            if p1 is not None:
                self._release_pipe(p1, 0)
            self._close(c, reset=True)
            return False
        c.ab, c.ba = Half(p1), Half(p2)
        c.connected = True
        self.stats["spliced"] += 1
        self._watch_out(c, c.bfd, False)
        self.w.add(c.afd, lambda ev, c=c: self._a_event(c, ev), EV_IN, reset=lambda c=c: self.fault_conn(c))
        return True

    # -- the data path -------------------------------------------------------------
    def _b_event(self, c: SpliceConn, ev: int) -> None:
        if not c.connected:
            if not ev & (select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP):
                return
            if not self._connected(c):
                return
            ev |= select.EPOLLIN  # anything that came with the connect
        self._event(c, c.ba, c.ab, ev)

    def _a_event(self, c: SpliceConn, ev: int) -> None:
        self._event(c, c.ab, c.ba, ev)

    def _event(self, c: SpliceConn, out: Half | None, into: Half | None, ev: int) -> None:
        """Socket s ready: out is the direction reading s, into the one writing s."""
        if c.closed or out is None or into is None:
            return
        a, b = c.a, c.b
        assert b is not None
        if out is c.ab:
            src, dst = a, b
        else:
            src, dst = b, a
        if ev & select.EPOLLERR:
            self._reset(c)
            return
        if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP):
            if not self._move(c, out, src, dst, not ev & (select.EPOLLRDHUP | select.EPOLLHUP)):
                return
        if ev & (select.EPOLLOUT | select.EPOLLHUP):
            if not self._move(c, into, dst, src, False):
                return
        if c.ab is not None and c.ba is not None and c.ab.shut and c.ba.shut:
            self._close(c)

    def _watch_out(self, c: SpliceConn, fd: int, on: bool) -> None:
        if (fd in c.out_armed) == on:
            return
        try:
            self.w.ep.modify(fd, EV_OUT if on else EV_IN)
        except OSError:
            return
        if on:
            c.out_armed.add(fd)
        else:
            c.out_armed.discard(fd)

    def _move(self, c: SpliceConn, h: Half, src: socket.socket, dst: socket.socket,
              no_eof: bool = False) -> bool:
        """Move what src has to dst through h's pipe; False if c ended.

        ``no_eof``: the event that brought us said nothing of src's end
        (no EPOLLRDHUP or EPOLLHUP), so a short read leaves nothing behind
        that epoll will not report again (edge-triggered: every arrival
        after the read is a new edge).
        """
        splice = os.splice
        sfd, dfd, rd, wr, size = src.fileno(), dst.fileno(), h.rd, h.wr, h.size
        moved = 0
        if not h.pending and not h.eof and h.bytes < SMALL_CONN:
            # a young connection's message: recv and send (two calls, no
            # pipe); a read that fills the buffer goes on with splice
            try:
                got = src.recv_into(self.buf, SMALL)
            except BlockingIOError:
                got = -1
            except OSError:
                self._reset(c)
                return False
            if got == 0:
                h.eof = True
            elif got > 0:
                moved = got
                try:
                    put = dst.send(self.view[:got])
                except BlockingIOError:
                    put = 0
                except OSError:
                    self._reset(c)
                    return False
                h.bytes += put
                if put < got:  # dst full: the rest waits in the (empty) pipe for EPOLLOUT
                    try:
                        h.pending = os.write(wr, self.view[put:got])
                    except OSError:
                        self._reset(c)
                        return False
                    self._watch_out(c, dfd, True)
                    self.moved += moved
                    return True
            if got < 0 or (got < SMALL and no_eof) or h.eof:
                return self._moved(c, h, src, dst, moved)
        for _ in range(MOVE_BUDGET):
            got = 0
            if not h.eof and h.pending < size:
                try:
                    got = splice(sfd, wr, size - h.pending, flags=SPLICE_FLAGS)
                    if got == 0:
                        h.eof = True
                    h.pending += got
                    moved += got
                except BlockingIOError:
                    pass
                except OSError:
                    self._reset(c)
                    return False
            put = 0
            if h.pending:
                try:
                    put = splice(rd, dfd, h.pending, flags=SPLICE_FLAGS)
                    h.pending -= put
                    h.bytes += put
                except BlockingIOError:
                    self._watch_out(c, dfd, True)  # dst full: its EPOLLOUT brings us back
                    return True
                except OSError:
                    self._reset(c)
                    return False
            if got == 0 and put == 0:
                break
        else:  # budget spent with data still flowing: let epoll bring us back
            try:
                self.w.ep.modify(sfd, EV_OUT if sfd in c.out_armed else EV_IN)
            except OSError:
                pass
        return self._moved(c, h, src, dst, moved)

    def _moved(self, c: SpliceConn, h: Half, src: socket.socket, dst: socket.socket, moved: int) -> bool:
        """After a move: counters, the low-water mark, EPOLLOUT off, the half-close."""
        dfd = dst.fileno()
        size = h.size
        if moved:
            self.moved += moved
            if h.lowat:
                h.act = True
            elif moved >= size // 10 and not h.eof:
                self._raise_lowat(h, src, size // 4)
        if not h.pending and dfd in c.out_armed:
            self._watch_out(c, dfd, False)
        if h.eof and not h.pending and not h.shut:
            h.shut = True
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return True

    def _raise_lowat(self, h: Half, src: socket.socket, lowat: int) -> None:
        try:
            src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
        except OSError:
            return
        h.lowat, h.act = True, True
        self.stats["lowat_set"] += 1
        if not self.lowat:
            self.lowat_due = self.w.now() + LOWAT_CHECK
        self.lowat[h] = src

    def check_lowat(self, now: float) -> None:
        """Every LOWAT_CHECK while some direction has a raised low-water mark."""
        for h, src in list(self.lowat.items()):
            if h.act:
                h.act = False
                continue
            del self.lowat[h]
            h.lowat = False
            try:  # the kernel signals EPOLLIN at once if anything waits
                src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            except OSError:
                pass
        self.lowat_due = now + LOWAT_CHECK

    # -- ends ----------------------------------------------------------------------
    def _reset(self, c: SpliceConn) -> None:
        self.stats["resets"] += 1
        self._close(c, reset=True)

    def fault_conn(self, c: SpliceConn) -> None:
        """A handler of c raised (worker/faults.py): both sockets closed with RST."""
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        if c.closed:  # closed half-way: what is left of it goes
            for s, fd in ((c.a, c.afd), (c.b, c.bfd)):
                if s is not None and fd >= 0:
                    self.w.remove(fd)
            return
        self._reset(c)

    def _release_pipe(self, pipe: tuple[int, int, int], pending: int) -> None:
        if pending == 0 and len(self.pipes) < PIPE_POOL:
            self.pipes.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])

    def _close(self, c: SpliceConn, reset: bool = False) -> None:
        if c.closed:
            return
        c.closed = True
        self.conns.discard(c)
        for h in (c.ab, c.ba):
            if h is not None:
                self.lowat.pop(h, None)
                self._release_pipe((h.rd, h.wr, h.size), h.pending)
        if c.ab is not None and c.ba is not None:
            key = "to_ns" if c.kind == KIND_IN else "to_host"
            self.stats[key] += c.ab.bytes
            self.stats["to_host" if key == "to_ns" else "to_ns"] += c.ba.bytes
        c.ab = c.ba = None
        for s, fd in ((c.a, c.afd), (c.b, c.bfd)):
            if s is None:
                continue
            if fd >= 0:
                self.w.remove(fd)
            if reset:
                _abort(s)
            else:
                s.close()
        c.b = None

    def timer(self, now: float) -> None:
        """Reset connections whose broker socket never connected; watch
        paused listeners again."""
        paused, self.paused = self.paused, []
        for ls in paused:
            if self.listeners.get(ls.fd) is ls:  # not dropped meanwhile
                self._watch(ls)
        for c in [x for x in self.conns if not x.connected and now - x.created > CONNECT_TIMEOUT]:
            self.stats["refused"] += 1
            self._close(c, reset=True)
        if log.enabled(DEBUG) and self.conns:
            log.trace(f"splice: {len(self.conns)} connections, {self.stats}")

    def summary(self) -> str:
        """Counters for the worker's final statistics."""
        return (f"splice: {len(self.conns)} open, {len(self.listeners)} listeners, "
                + ", ".join(f"{k} {v}" for k, v in self.stats.items()))


def _abort(s: socket.socket) -> None:
    """Close with a RST (SO_LINGER 0)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    except OSError:
        pass
    s.close()

