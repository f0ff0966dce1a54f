# SPDX-License-Identifier: GPL-2.0-or-later
"""The broker: the parent's side of the door, one handler per request.

Parent only. The worker asks for sockets in the host's network namespace;
each request is checked completely against the Config before any fd is
made, and a request outside policy is refused (EPERM), logged, and the
worker carries on. The whole attack surface of the privileged side is the
``handle`` function and the handlers it names.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import time
from collections import deque

from sandbox.fdpass import send_fds

from .. import ipc
from ..config import Config
from ..errors import ProtocolViolation
from ..log import log
from .autofwd import SUPERVISE_WAIT, loop_udp
from .destpolicy import PROTO_ICMP, PROTO_TCP, PROTO_UDP, DestPolicy
from .listeners import LocalBind, pick_bind, udp_reply_socket
from .sockpool import SocketPool, loop_connect, new_socket

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable

    from .autofwd import Forwarder

_CONNECT_OPS = frozenset({ipc.OP_NS_LOOP_CONNECT, ipc.OP_HOST_LOOP_CONNECT})  # (OP_TCP_CONNECT: STATUS_PENDING)
UDP_BIND_MIN = 1024  # guest source ports below this are not bound on the host (ephemeral instead)
# Messages to the worker wait here while its socket is full, instead of
# blocking the parent. A worker has at most a few dozen requests in flight
# (worker/loop.py), so only a burst of port announcements (an `auto` scan)
# queues at all; a worker that stops reading is cut off at these bounds.
QUEUE_MAX = 4096
QUEUE_FDS_MAX = 256
EOS_WAIT = 1.0  # seconds for an exiting worker's pidfd to turn readable after its socket closed
_monotonic = time.monotonic


def _alive_after(pid: int, wait: float) -> bool:
    """Whether process pid still runs ``wait`` seconds from now (False as soon as it ends).

    epoll on its pidfd: the parent's seccomp policy has epoll, not poll.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False  # gone (ESRCH)
    ep = select.epoll()
    try:
        ep.register(pidfd, select.EPOLLIN)
        return not ep.poll(wait)
    finally:
        ep.close()
        os.close(pidfd)


class Broker:
    """Validates and serves the worker's requests."""

    def __init__(self, cfg: Config, sock: socket.socket) -> None:
        self.cfg = cfg
        self.sock = sock
        sock.setblocking(False)  # the parent never waits on the worker (send, flush)
        self.refused = 0
        self.fwd: Forwarder | None = None  # pasta: forwarded ports, for the splice ops
        self.handlers = {ipc.OP_PING_SOCKET: self.ping_socket, ipc.OP_TCP_CONNECT: self._tcp_connect_early,
                         ipc.OP_UDP_SOCKET: self.udp_socket, ipc.OP_NS_LOOP_CONNECT: self.ns_loop_connect,
                         ipc.OP_HOST_LOOP_CONNECT: self.host_loop_connect,
                         ipc.OP_NS_LOOP_UDP: self.ns_loop_udp, ipc.OP_HOST_LOOP_UDP: self.host_loop_udp,
                         ipc.OP_UDP_REPLY: self.udp_reply, ipc.OP_NS_UDP_REPLY: self.ns_udp_reply,
                         ipc.OP_UDP_PORT: self.udp_port}
        # every destination of TCP, UDP and ICMP: mappings, forbidden
        # addresses, --egress-deny/--egress-allow (destpolicy.py)
        self.dest = DestPolicy(cfg)
        self.no_tcp = cfg.opts.no_tcp
        # --outbound-if4/6 (b"": none) and --outbound (None), per family: for
        # every socket but those to the host's loopback
        o = cfg.opts
        self.outbound = {
            socket.AF_INET: ((o.outbound_if4 or "").encode(), str(o.outbound4) if o.outbound4 is not None else None),
            socket.AF_INET6: ((o.outbound_if6 or "").encode(), str(o.outbound6) if o.outbound6 is not None else None)}
        self.ping_warned = False
        # -u spec sockets handed to the worker: port -> how they are bound
        # (listeners.note_binds; auto ones are the Forwarder's)
        self.udp_local: dict[int, list[LocalBind]] = {}
        # (family, host port) the broker has bound for the guest: a port the
        # next flows may share (SO_REUSEADDR), see _bind_guest_port; and
        # which host port stands for which guest source port
        self.udp_ports: set[tuple[int, int]] = set()
        self.udp_host_port: dict[tuple[int, int], int] = {}
        # sockets made ahead of need (sockpool.py): the host's now, the
        # namespace's once the splice path first asks
        self.families = [f for f in (socket.AF_INET, socket.AF_INET6) if self._family_ok(f)]
        # the tap path's sockets come with their peek offset set (Config.tcp_peek_off)
        self.host_pool = SocketPool(self.families, peek_off=cfg.tcp_peek_off)
        self.ns_pool: SocketPool | None = None
        self.ns_udp_pool: SocketPool | None = None
        self.after_reply: Callable[[], None] | None = None  # a pool to top up once the reply is out
        self.refused_log: dict[int, tuple[int, int]] = {}  # op -> (second of its last warning, held back)
        self.queue: deque[tuple[bytes, list[int]]] = deque()  # waiting for room (fds: our duplicates)
        self.queued_fds = 0
        # ipc.QUOTAS: requests received per op in the current window
        # (int(time.monotonic())), checked against ipc.parent_limit
        self.quota_window = 0
        self.quota_count = [0] * (ipc.OP_MAX + 1)
        self.quota_limit = [ipc.parent_limit(op) if op in ipc.QUOTAS else 0 for op in range(ipc.OP_MAX + 1)]
        # the control API (setup/api.py): the report queries not yet answered
        # (ids; a query the API gave up on stays until answered, so a slow
        # worker's late answer is not a violation)
        # and who takes the validated answer
        self.reports_expected: deque[int] = deque()  # at most QUOTAS[OP_REPORT].inflight (api.py)
        self.on_report: Callable[[dict], None] | None = None

    def _family_ok(self, family: int) -> bool:
        return (family == socket.AF_INET and self.cfg.v4 is not None) or (
            family == socket.AF_INET6 and self.cfg.v6 is not None)

    def ping_socket(self, req: ipc.Request) -> socket.socket | int:
        """An unprivileged ICMP echo socket connected to one destination.

        ``addr`` is the destination the worker means to ping, as the guest
        wrote it. The destination policy (destpolicy.py, PROTO_ICMP) maps
        it to the host side or refuses it (EACCES: the worker drops the
        echo); the socket is then connect()ed there, so that what the
        worker sends with send() goes to that destination only. The address
        mapped to the host's loopback (the gateway unless --no-map-gw, or
        --map-host-loopback) gets a socket bound to the loopback device and
        to 127.0.0.1 / ::1 and connected to it: --outbound-if* and
        --outbound do not apply (as in tcp_connect: a socket bound to eth1
        cannot reach 127.0.0.1). Every other destination's socket is bound
        to --outbound-if* and --outbound when given. (A connected ping
        socket still takes an address in sendto(): that the worker never
        gives one is its seccomp policy's to enforce.)
        """
        if self.cfg.opts.no_icmp:
            return errno.EPERM
        target = self.dest.resolve(PROTO_ICMP, req.family, req.addr, 0)
        if isinstance(target, int):
            return target
        proto = socket.IPPROTO_ICMP if req.family == socket.AF_INET else socket.IPPROTO_ICMPV6
        try:
            s = socket.socket(req.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
        except OSError as e:
            if not self.ping_warned:
                self.ping_warned = True
                log.warn(f"ICMP echo: no ping socket ({e.strerror}); check net.ipv4.ping_group_range")
            raise
        try:
            if target.loopback:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
                s.bind((target.addr, 0))
            else:
                ifname, src = self.outbound[req.family]
                if ifname:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname)
                if src is not None:  # --outbound: the source of echo requests
                    s.bind((src, 0))
            s.connect((target.addr, 0))
        except OSError:
            s.close()
            raise
        return s

    def tcp_connect(self, req: ipc.Request) -> socket.socket | int:
        """A TCP socket of the host netns, non-blocking connect to addr:port started.

        (The handler of OP_TCP_CONNECT is ``_tcp_connect_early``: the same
        socket, handed over before the connect. This variant, connecting
        here and returning the socket, is for the tests of the policy.)
        """
        target = self._tcp_target(req)
        if isinstance(target, int):
            return target
        s, dest = target
        try:
            rc = s.connect_ex((dest, req.port))
        except OSError:
            s.close()
            raise
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            return rc
        return s

    def _tcp_connect_early(self, req: ipc.Request) -> int | None:
        """OP_TCP_CONNECT: the reply and its fd first, then the connect.

        The worker learns the outcome from the socket itself (EPOLLOUT, or
        EPOLLERR and SO_ERROR), so nothing that connect() sets running (on
        loopback: the server's accept, which this CPU may run before the
        parent gets it back) sits between the handshake and the guest's
        SYN-ACK. A connect() that fails at once gets a second reply with
        the same seq and its errno (ipc.STATUS_PENDING). The worker cannot
        connect the socket elsewhere meanwhile, nor after a failed connect:
        connect, bind, listen, sendmsg and sendmmsg are not in its seccomp
        allow-list, and sendto is allowed only without MSG_FASTOPEN
        (policies/*.policy; tests/unit/test_sandbox.py shows the kill).
        Returns an errno to answer with, or None once answered.
        """
        target = self._tcp_target(req)
        if isinstance(target, int):
            return target
        s, dest = target
        try:
            self.send(ipc.pack_reply(req.seq, ipc.STATUS_PENDING), [s.fileno()])
            try:
                rc = s.connect_ex((dest, req.port))
            except OSError as e:
                rc = e.errno or errno.EIO
        finally:
            s.close()  # the worker's copy is the connection now
        if rc not in (0, errno.EINPROGRESS):
            log.debug(f"broker: tcp connect: errno {rc}")
            self.send(ipc.pack_reply(req.seq, rc), [])
        return None

    def _tcp_target(self, req: ipc.Request) -> tuple[socket.socket, str] | int:
        """OP_TCP_CONNECT's policy: a socket ready to connect, and where to; or an errno.

        Where to is the destination policy's (destpolicy.py, PROTO_TCP:
        the address mappings, forbidden destinations, --egress-deny and
        --egress-allow); EACCES from it makes the worker answer the guest's
        SYN with a RST. --outbound and --outbound-if* apply to everything
        but loopback. Runs once per guest SYN: bytes compared in the
        policy, the binding precomputed here.
        """
        if self.no_tcp:
            return errno.EPERM
        target = self.dest.resolve(PROTO_TCP, req.family, req.addr, req.port)
        if target.__class__ is int:
            return target  # type: ignore[return-value]
        dest, _port, loopback = target  # type: ignore[misc]
        pool = self.host_pool
        self.after_reply = pool.refill
        s = pool.take(req.family) or new_socket(req.family, peek_off=self.cfg.tcp_peek_off)
        if not loopback:
            ifname, src = self.outbound[req.family]
            try:
                if ifname:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname)
                if src is not None:
                    s.bind((src, 0))
            except OSError:
                s.close()
                raise
        return s, dest

    def udp_socket(self, req: ipc.Request) -> socket.socket | int:
        """OP_UDP_SOCKET: a UDP socket of the host netns for one outbound flow.

        One flow is (family, guest source port, destination as the guest
        wrote it, destination port): ``addr``:``port`` of the request is
        that destination, ``arg`` the source port. The destination policy
        (setup/destpolicy.py) maps it (the loopback-mapped address to the
        host's loopback, ``dns_match``:53 to the resolver, --map-guest-addr
        to the guest's address on the host) or refuses it (EACCES: the
        worker drops the flow's datagrams); the socket is then
        **connected** to the host-side destination, so whatever the worker
        sends on it (it may only use send(), the seccomp policy kills a
        sendto with an address) goes there and nowhere else, and only that
        peer's datagrams come back on it.

        Bound to the guest's own source port when it is 1024 or above
        (``_bind_guest_port``), an ephemeral one otherwise: privileged
        ports are never bound on the guest's behalf. --outbound and
        --outbound-if* apply unless the destination is the host's loopback
        (a socket bound to eth1 could not reach 127.0.0.1).
        """
        if self.cfg.opts.no_udp or not self._family_ok(req.family):
            return errno.EPERM
        target = self.dest.resolve(PROTO_UDP, req.family, req.addr, req.port)
        if isinstance(target, int):
            return target
        s = self._guest_udp_socket(req.family, req.arg, outbound=not target.loopback)
        try:
            s.connect((target.addr, target.port))
        except OSError:
            s.close()
            raise
        return s

    def udp_port(self, req: ipc.Request) -> socket.socket | int:
        """OP_UDP_PORT: the receive-only socket of guest source port ``port``.

        Unconnected, bound like the flows of that port (``_bind_guest_port``:
        the same host port, --outbound and --outbound-if*), so that a sender
        no flow is connected to (a TFTP server answers from a new port)
        still reaches the guest. The worker cannot send on it: it is not
        connected, and a sendto with an address kills the worker.
        """
        if self.cfg.opts.no_udp or not self._family_ok(req.family):
            return errno.EPERM
        return self._guest_udp_socket(req.family, req.port, outbound=True)

    def _guest_udp_socket(self, family: int, gport: int, outbound: bool) -> socket.socket:
        """A UDP socket of the host netns for guest source port gport, bound
        (``_bind_guest_port``), not connected. ``outbound``: --outbound-if*
        and --outbound apply (not on the way to the host's loopback, which a
        socket bound to eth1 could not reach)."""
        s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            ifname, src = self.outbound[family] if outbound else (b"", None)
            if ifname:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname)
            any_addr = "0.0.0.0" if family == socket.AF_INET else "::"
            self._bind_guest_port(s, family, src if src is not None else any_addr, gport)
        except OSError:
            s.close()
            raise
        return s

    def _bind_guest_port(self, s: socket.socket, family: int, addr: str, gport: int) -> None:
        """Bind a socket of guest source port gport to its host port.

        The host port is the guest's own when it is UDP_BIND_MIN or above
        and free, an ephemeral one otherwise (privileged ports are never
        bound on the guest's behalf); once chosen, the next sockets of
        gport (its receive-only socket, its flows to other destinations)
        get the same (``udp_host_port``), so that peers see one source
        port. A free port is bound plainly and SO_REUSEADDR is set after
        the bind, so that those next sockets can bind it too: each flow is
        connected to its own peer, and the kernel delivers a datagram to
        the socket connected to its sender, else to the unconnected one. A
        port in use is shared that way only if the broker itself bound it
        for the guest before (``udp_ports``); a port another program holds,
        even with SO_REUSEADDR, or a -u forward, gets an ephemeral port
        instead.
        """
        if not 0 <= gport <= 0xFFFF:
            raise OSError(errno.EINVAL, "port out of range")
        key = (family, gport)
        port = self.udp_host_port.get(key, gport if gport >= UDP_BIND_MIN else 0)
        bound = False
        if port:
            try:
                s.bind((addr, port))
                bound = True
            except OSError as e:
                if e.errno == errno.EADDRINUSE and (family, port) in self.udp_ports:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((addr, port))
                        bound = True
                    except OSError:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
                if not bound:
                    log.debug(f"broker: udp port {port}: {e.strerror}, using an ephemeral port")
        if not bound:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp_ports.add((family, port))
        self.udp_host_port[key] = port

    def _reply_peer(self, req: ipc.Request, loopback_only: bool) -> str | int:
        """The sender a reply socket connects to, as a string, or the errno refusing it.

        Loopback senders (127.0.0.0/8, ::1, v4-mapped 127/8) are allowed:
        they are the local programs a forwarded port serves (pasta splices
        them). Any other goes through the destination policy as a UDP
        destination of its own family (EACCES: multicast, link-local...);
        it is connected to as it is, never mapped.
        """
        if req.family not in (socket.AF_INET, socket.AF_INET6) or not 0 < req.arg <= 0xFFFF:
            return errno.EPERM
        v4 = req.family == socket.AF_INET
        raw = req.addr[:4] if v4 else req.addr
        fam, inner = req.family, raw
        if not v4 and raw[:12] == bytes(10) + b"\xff\xff":
            fam, inner = socket.AF_INET, raw[12:]
        loop = inner[0] == 127 if fam == socket.AF_INET else inner == bytes(15) + b"\x01"
        if not loop:
            if loopback_only:
                return errno.EPERM
            verdict = self.dest.resolve(PROTO_UDP, fam, inner, req.arg)
            if isinstance(verdict, int):
                return verdict
        return socket.inet_ntop(req.family, raw)

    def udp_reply(self, req: ipc.Request) -> socket.socket | int:
        """OP_UDP_REPLY: a socket to answer one sender of a -u socket with.

        ``port``: the -u socket's own port, which must be a current -u
        forward (spec, or bound by auto); ``addr``/``arg``: the sender, as
        that socket saw it (``_reply_peer`` checks it). The socket is bound
        where that -u socket is (same address, port, device, dual-stack or
        not) and connected to the sender (listeners.udp_reply_socket).
        """
        if self.cfg.opts.no_udp:
            return errno.EPERM
        peer = self._reply_peer(req, loopback_only=False)
        if isinstance(peer, int):
            return peer
        b = pick_bind(self.udp_local.get(req.port), req.family, req.addr)
        if b is None and self.fwd is not None:
            b = self.fwd.udp_auto_bind(req.family, req.port, req.addr)
        if b is None:
            return errno.EPERM
        return udp_reply_socket(b, req.port, peer, req.arg)

    def ns_udp_reply(self, req: ipc.Request) -> socket.socket | int:
        """OP_NS_UDP_REPLY: the same for a sender of a -U socket, inside the namespace.

        Only loopback senders (the -U sockets are bound to the namespace's
        loopback, nothing else can reach them); made by the namespace thread.
        """
        fwd = self.fwd
        if fwd is None or self.cfg.opts.no_udp:
            return errno.EPERM
        peer = self._reply_peer(req, loopback_only=True)
        if isinstance(peer, int):
            return peer
        b = fwd.ns_udp_bind(req.family, req.port, req.addr)
        if b is None:
            return errno.EPERM
        return fwd.ns.call(lambda: udp_reply_socket(b, req.port, peer, req.arg),  # type: ignore[no-any-return]
                           SUPERVISE_WAIT)

    def ns_loop_connect(self, req: ipc.Request) -> socket.socket | int:
        """Splice path of -t: a TCP socket connecting to the namespace's loopback.

        Only a port that is a current -t target (spec, or bound by auto) may
        be reached; the socket is made by the thread inside the namespace.
        """
        fwd = self.fwd
        if (fwd is None or self.cfg.opts.no_tcp or req.port == 0
                or req.family not in (socket.AF_INET, socket.AF_INET6) or not fwd.ns_target_ok(req.port)):
            return errno.EPERM
        self.after_reply = self.ns_tcp_pool().refill
        return self.ns_connect(req.family, req.port)

    def ns_tcp_pool(self) -> SocketPool:
        """The namespace's pool of TCP sockets (made on first use)."""
        pool = self.ns_pool
        if pool is None:
            assert self.fwd is not None
            pool = self.ns_pool = SocketPool(self.families, post=self.fwd.ns.post)
        return pool

    def ns_connect(self, family: int, port: int) -> socket.socket:
        """A TCP socket of the namespace connecting to its loopback:port (the
        caller checked port is a -t target); OSError if it cannot be had."""
        fwd = self.fwd
        assert fwd is not None
        s = self.ns_tcp_pool().take(family)
        if s is not None:  # made in the namespace: connects there from this thread
            return loop_connect(family, port, s)
        # the thread busy: EAGAIN after SUPERVISE_WAIT (the loop must not stall), the flow is reset
        return fwd.ns.call(lambda: loop_connect(family, port), SUPERVISE_WAIT)  # type: ignore[no-any-return]

    def host_loop_connect(self, req: ipc.Request) -> socket.socket | int:
        """Splice path of -T: a TCP socket connecting to the host's loopback.

        Only a port that is a current -T target (spec, or bound by auto) may
        be reached.
        """
        fwd = self.fwd
        if (fwd is None or self.cfg.opts.no_tcp or req.port == 0
                or req.family not in (socket.AF_INET, socket.AF_INET6) or not fwd.host_target_ok(req.port)):
            return errno.EPERM
        self.after_reply = self.host_pool.refill
        return loop_connect(req.family, req.port, self.host_pool.take(req.family))

    def ns_loop_udp(self, req: ipc.Request) -> socket.socket | int:
        """UDP splice path of -u: a socket in the namespace, loopback to loopback:port.

        For one host loopback sender on a -u socket. Only a current -u target
        (spec, or bound by auto) may be named; the socket is bound to the
        namespace's loopback and connected to the target there.
        """
        fwd = self.fwd
        if (fwd is None or self.cfg.opts.no_udp or req.port == 0
                or req.family not in (socket.AF_INET, socket.AF_INET6) or not fwd.ns_udp_target_ok(req.port)):
            return errno.EPERM
        pool = self.ns_udp_pool
        if pool is None:
            pool = self.ns_udp_pool = SocketPool(self.families, post=fwd.ns.post, kind=socket.SOCK_DGRAM)
        self.after_reply = pool.refill
        s = pool.take(req.family)
        if s is not None:  # made in the namespace: binds and connects there from this thread
            return loop_udp(req.family, req.port, s)
        return fwd.ns.call(lambda: loop_udp(req.family, req.port), SUPERVISE_WAIT)  # type: ignore[no-any-return]

    def host_loop_udp(self, req: ipc.Request) -> socket.socket | int:
        """UDP splice path of -U: a socket in the host netns, loopback to loopback:port.

        For one namespace loopback sender on a -U socket. Only a current -U
        target (spec, or bound by auto) may be named.
        """
        fwd = self.fwd
        if (fwd is None or self.cfg.opts.no_udp or req.port == 0
                or req.family not in (socket.AF_INET, socket.AF_INET6) or not fwd.host_udp_target_ok(req.port)):
            return errno.EPERM
        return loop_udp(req.family, req.port)

    def handle(self, data: bytes) -> None:
        """Answer one request message, then top up the socket pool it drew on."""
        self._answer(data)
        after, self.after_reply = self.after_reply, None
        if after is not None:
            after()

    def _answer(self, data: bytes) -> None:
        req = ipc.unpack_request(data)
        if req is None:
            rep = ipc.unpack_report(data)
            if rep is None:
                raise ProtocolViolation(f"malformed request ({len(data)} bytes)")
            self._report(*rep)
            return
        op = req.op
        handler = self.handlers.get(op)
        if handler is None:
            raise ProtocolViolation(f"unknown request op {op}")
        self._count(op)
        try:
            result = handler(req)  # None: it has answered itself
        except OSError as e:
            result = e.errno or errno.EIO
        if result is None:
            return
        if isinstance(result, int):
            if result == errno.EPERM:
                self.refused += 1
                self._warn_refused(req)
            else:
                log.debug(f"broker: {ipc.OP_NAMES.get(req.op, req.op)}: errno {result}")
            self.send(ipc.pack_reply(req.seq, result), [])
            return
        status = 0
        if req.op in _CONNECT_OPS:
            try:
                result.getpeername()  # ENOTCONN until the handshake is over
                status = ipc.STATUS_CONNECTED
            except OSError:
                pass
        try:
            self.send(ipc.pack_reply(req.seq, status), [result.fileno()])
        finally:
            result.close()

    def _count(self, op: int) -> None:
        """The op's quota (ipc.QUOTAS), before any handler runs: a few integer operations."""
        now = int(_monotonic())
        if now != self.quota_window:
            self.quota_window = now
            self.quota_count = [0] * (ipc.OP_MAX + 1)
        n = self.quota_count[op] + 1
        self.quota_count[op] = n
        if n > self.quota_limit[op]:
            raise ProtocolViolation(f"over quota: more than {self.quota_limit[op]} requests of op {op} "
                                    f"({ipc.OP_NAMES[op]}) in one second")

    def expect_report(self, qid: int) -> None:
        """The control API sends query qid: the worker may answer it, once."""
        self.reports_expected.append(qid)

    def _report(self, req: ipc.Request, payload: bytes) -> None:
        """OP_REPORT: the answer to the outstanding query, validated, or a violation."""
        self._count(ipc.OP_REPORT)
        if req.port not in self.reports_expected:
            raise ProtocolViolation(f"report {req.port} nobody asked for")
        # only the control API expects reports, so setup/api.py is loaded (with
        # --api-socket, before set-up ended: nothing can be imported after)
        from .api import validate_report

        self.reports_expected.remove(req.port)
        try:
            rep = validate_report(payload)
        except ValueError as e:
            raise ProtocolViolation(str(e)) from None
        if self.on_report is not None:
            self.on_report(rep)

    def counters(self) -> dict[str, int]:
        """The parent's own counters for the control API's stats."""
        return {"broker_refused": self.refused, "destination_refused": self.dest.refused,
                "egress_refused": self.dest.egress_refused, "queued_to_worker": len(self.queue)}

    def end_of_stream(self, worker_pid: int) -> None:
        """recv() gave b"": the worker's end closed, or a zero-length record.

        On SOCK_SEQPACKET the two read alike. A zero-length record is a
        protocol violation (the worker never sends one); end of stream is
        the end of the run, as before. Told apart by what follows: after a
        record, a non-blocking peek finds nothing (EAGAIN) or the next
        record; at end of stream it gives b"" again, and then the worker
        has exited (a live worker never closes its end), which its pidfd
        shows within EOS_WAIT (the fds of an exiting process are closed
        a moment before its pidfd turns readable).
        """
        try:
            more = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            raise ProtocolViolation("zero-length message") from None
        except OSError:
            return
        if more:
            raise ProtocolViolation("zero-length message")
        if worker_pid and _alive_after(worker_pid, EOS_WAIT):
            raise ProtocolViolation("zero-length message, or the worker closed its end of the broker socket")

    def _warn_refused(self, req: ipc.Request) -> None:
        """One warning per op and second at most: a worker cannot make the
        parent write a line per request; the lines it held back are counted
        in the next one. (The second is the quota's, just counted in _answer.)"""
        now = self.quota_window
        last, held = self.refused_log.get(req.op, (-1, 0))
        if last == now:
            self.refused_log[req.op] = (last, held + 1)
            return
        self.refused_log[req.op] = (now, 0)
        more = f" ({held} more refused since the last line)" if held else ""
        log.warn(f"broker: refused request op {req.op} "
                 f"({ipc.OP_NAMES.get(req.op, 'unknown')}), family {req.family}{more}")

    def send(self, msg: bytes, fds: list[int]) -> None:
        """Send one message to the worker without ever blocking.

        The socket is non-blocking; while it is full, messages queue (in
        order, the fds duplicated) until ``flush`` can send them. A queue
        past QUEUE_MAX messages or QUEUE_FDS_MAX fds is a worker that does
        not read: ProtocolViolation.
        """
        if not self.queue:
            try:
                send_fds(self.sock, msg, fds)  # a plain send when fds is empty
                return
            except BlockingIOError:
                pass
            except OSError as e:
                log.debug(f"broker: message to worker failed: {e.strerror}")
                return
        if len(self.queue) >= QUEUE_MAX or self.queued_fds + len(fds) > QUEUE_FDS_MAX:
            raise ProtocolViolation(f"the worker does not read its replies ({len(self.queue)} queued)")
        dups = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0) for fd in fds]
        self.queued_fds += len(dups)
        self.queue.append((msg, dups))

    def flush(self) -> None:
        """Send what the queue holds, as far as the socket takes it."""
        while self.queue:
            msg, fds = self.queue[0]
            try:
                send_fds(self.sock, msg, fds)
            except BlockingIOError:
                return
            except OSError as e:
                log.debug(f"broker: message to worker failed: {e.strerror}")
            self.queue.popleft()
            self.queued_fds -= len(fds)
            for fd in fds:
                os.close(fd)
