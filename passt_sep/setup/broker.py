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
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.fdpass import send_fds

from .. import ipc
from ..config import Config
from ..log import log
from .autofwd import loop_udp
from .sockpool import SocketPool, loop_connect, new_socket

if TYPE_CHECKING:
    from collections.abc import Callable

    from .autofwd import Forwarder

_CONNECT_OPS = frozenset({ipc.OP_NS_LOOP_CONNECT, ipc.OP_HOST_LOOP_CONNECT})  # (OP_TCP_CONNECT: STATUS_PENDING)
UDP_BIND_MIN = 1024  # guest source ports below this are not bound on the host (ephemeral instead)


@dataclass(frozen=True)
class _TcpRules:
    """What OP_TCP_CONNECT needs of the Config for one family, as bytes and strings."""

    lo_mapped: bytes | None  # the address leading to the host's loopback (the gateway by default)
    guest_mapped: bytes | None  # --map-guest-addr ...
    guest_addr: str  # ... leads to the guest's own address on the host
    loopback: str
    dns_match: bytes | None  # --dns-forward: this address's port 53 ...
    dns_host: str  # ... goes here
    dns_host_loopback: bool
    ifname: bytes  # --outbound-if4/6 ("" for none)
    src: str | None  # --outbound

    @classmethod
    def of(cls, cfg: Config, version: int) -> _TcpRules | None:
        """The rules of one family; None when the family is off or TCP is."""
        fam = cfg.v4 if version == 4 else cfg.v6
        if fam is None or cfg.opts.no_tcp:
            return None
        o = cfg.opts
        ifname = o.outbound_if4 if version == 4 else o.outbound_if6
        src = o.outbound4 if version == 4 else o.outbound6
        dns = fam.dns_match is not None and fam.dns_host is not None
        return cls(lo_mapped=fam.host_lo.packed if fam.host_lo is not None else None,
                   guest_mapped=fam.guest_map.packed if fam.guest_map is not None else None,
                   guest_addr=str(fam.addr),
                   loopback="127.0.0.1" if version == 4 else "::1",
                   dns_match=fam.dns_match.packed if dns and fam.dns_match is not None else None,
                   dns_host=str(fam.dns_host) if dns else "",
                   dns_host_loopback=bool(dns and fam.dns_host is not None and fam.dns_host.is_loopback),
                   ifname=ifname.encode() if ifname else b"",
                   src=str(src) if src is not None else None)


def _forbidden(raw: bytes, v4: bool) -> bool:
    """An address no guest connection may go to: unspecified, loopback,
    multicast, link-local, limited broadcast, IPv4-mapped or -compatible
    IPv6 (which would reach IPv4 loopback around the checks)."""
    if v4:
        a = raw[0]
        return (a == 0 or a == 127 or a >= 224 or (a == 169 and raw[1] == 254))
    return (raw[0] == 0xFF or (raw[0] == 0xFE and raw[1] & 0xC0 == 0x80)
            or raw[:10] == bytes(10))  # ::, ::1, ::ffff:a.b.c.d, ::a.b.c.d


class Broker:
    """Validates and serves the worker's requests."""

    def __init__(self, cfg: Config, sock: socket.socket) -> None:
        self.cfg = cfg
        self.sock = sock
        self.refused = 0
        self.fwd: Forwarder | None = None  # pasta: forwarded ports, for the splice ops
        self.handlers = {ipc.OP_PING_SOCKET: self.ping_socket, ipc.OP_TCP_CONNECT: self._tcp_connect_early,
                         ipc.OP_UDP_SOCKET: self.udp_socket, ipc.OP_NS_LOOP_CONNECT: self.ns_loop_connect,
                         ipc.OP_HOST_LOOP_CONNECT: self.host_loop_connect,
                         ipc.OP_NS_LOOP_UDP: self.ns_loop_udp, ipc.OP_HOST_LOOP_UDP: self.host_loop_udp}
        # TCP connect, once per guest SYN: its rules precomputed per family
        self.tcp_rules = {socket.AF_INET: _TcpRules.of(cfg, 4), socket.AF_INET6: _TcpRules.of(cfg, 6)}
        # sockets made ahead of need (sockpool.py): the host's now, the
        # namespace's once the splice path first asks
        self.families = [f for f in (socket.AF_INET, socket.AF_INET6) if self._family_ok(f)]
        # the tap path's sockets come with their peek offset set (Config.tcp_peek_off)
        self.host_pool = SocketPool(self.families, peek_off=cfg.tcp_peek_off)
        self.ns_pool: SocketPool | None = None
        self.ns_udp_pool: SocketPool | None = None
        self.after_reply: Callable[[], None] | None = None  # a pool to top up once the reply is out

    def _family_ok(self, family: int) -> bool:
        return (family == socket.AF_INET and self.cfg.v4 is not None) or (
            family == socket.AF_INET6 and self.cfg.v6 is not None)

    def ping_socket(self, req: ipc.Request) -> socket.socket | int:
        """An unprivileged ICMP echo socket of the requested family.

        ``addr`` is the destination the worker means to ping with it, as the
        guest wrote it (all zeroes: unknown). The parent decides from it
        alone: when it is the address mapped to the host's loopback (the
        gateway unless --no-map-gw, or --map-host-loopback), the socket is for the host's
        loopback: --outbound-if* and --outbound do not apply (as in
        tcp_connect: a socket bound to eth1 cannot reach 127.0.0.1), and it
        is instead bound to the loopback device and to 127.0.0.1 / ::1, so
        that nothing sent on it can leave the host whatever the worker asks
        (the kernel refuses or keeps on lo any other destination). Every
        other address gets the socket it always got: bound to
        --outbound-if* and --outbound when given; the address is only a
        hint there, as a ping socket reaches any destination.
        """
        if self.cfg.opts.no_icmp or not self._family_ok(req.family):
            return errno.EPERM
        v4 = req.family == socket.AF_INET
        proto = socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6
        fam = self.cfg.v4 if v4 else self.cfg.v6
        raw = req.addr[:4] if v4 else req.addr
        loopback = fam is not None and fam.host_lo is not None and raw == fam.host_lo.packed
        s = socket.socket(req.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK, proto)
        try:
            if loopback:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
                s.bind(("127.0.0.1" if v4 else "::1", 0))
                return s
            ifname = self.cfg.opts.outbound_if4 if v4 else self.cfg.opts.outbound_if6
            src = self.cfg.opts.outbound4 if v4 else self.cfg.opts.outbound6
            if ifname:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            if src is not None:  # --outbound: the source of echo requests
                s.bind((str(src), 0))
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
            self._send(ipc.pack_reply(req.seq, ipc.STATUS_PENDING), [s.fileno()])
            try:
                rc = s.connect_ex((dest, req.port))
            except OSError as e:
                rc = e.errno or errno.EIO
        finally:
            s.close()  # the worker's copy is the connection now
        if rc not in (0, errno.EINPROGRESS):
            log.debug(f"broker: tcp connect: errno {rc}")
            self._send(ipc.pack_reply(req.seq, rc), [])
        return None

    def _tcp_target(self, req: ipc.Request) -> tuple[socket.socket, str] | int:
        """OP_TCP_CONNECT's policy: a socket ready to connect, and where to; or an errno.

        The destination must be a unicast address of an enabled family; the
        address mapped to the host's loopback (the gateway unless
        --no-map-gw, or --map-host-loopback) means the host's loopback
        (other loopback destinations are refused, IPv4-mapped IPv6 ones
        too); --map-guest-addr means the guest's own address on the host;
        the --dns-forward address on port 53 means the resolver UDP uses.
        --outbound and --outbound-if* apply to everything but loopback.
        Bytes are compared, not ipaddress objects: this runs once per guest
        SYN, on the path of every new connection.
        """
        rules = self.tcp_rules.get(req.family)
        if rules is None or req.port == 0:
            return errno.EPERM
        v4 = req.family == socket.AF_INET
        raw = req.addr[:4] if v4 else req.addr
        loopback = False
        if req.port == 53 and raw == rules.dns_match:
            dest = rules.dns_host  # --dns-forward: DNS over TCP goes where UDP goes
            loopback = rules.dns_host_loopback
        elif raw == rules.lo_mapped:
            dest, loopback = rules.loopback, True
        elif raw == rules.guest_mapped:
            dest = rules.guest_addr
        elif _forbidden(raw, v4):
            return errno.EACCES  # not a destination the guest may reach: a RST
        else:
            dest = socket.inet_ntop(req.family, raw)
        pool = self.host_pool
        self.after_reply = pool.refill
        s = pool.take(req.family) or new_socket(req.family, peek_off=self.cfg.tcp_peek_off)
        if not loopback:
            try:
                if rules.ifname:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, rules.ifname)
                if rules.src is not None:
                    s.bind((rules.src, 0))
            except OSError:
                s.close()
                raise
        return s, dest

    def udp_socket(self, req: ipc.Request) -> socket.socket | int:
        """A UDP socket of the host netns for one source port of the guest.

        Bound to the guest's own source port, so that peers see the port
        the guest chose (as passt does), when that port is 1024 or above
        and free; otherwise (a privileged port, or one in use on the host,
        such as a -u forward) to an ephemeral port the kernel picks: the
        flow still works, peers just see another port. Privileged ports are
        never bound on the guest's behalf, so a guest cannot squat a
        service port of the host. --outbound and --outbound-if* apply (as
        in passt, also to datagrams the worker then sends to the host's
        loopback through the gateway address).
        """
        cfg = self.cfg
        if cfg.opts.no_udp or not self._family_ok(req.family):
            return errno.EPERM
        v4 = req.family == socket.AF_INET
        s = socket.socket(req.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if not v4:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            ifname = cfg.opts.outbound_if4 if v4 else cfg.opts.outbound_if6
            if ifname:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            src = cfg.opts.outbound4 if v4 else cfg.opts.outbound6
            addr = str(src) if src is not None else ("0.0.0.0" if v4 else "::")
            port = req.port if req.port >= UDP_BIND_MIN else 0
            try:
                s.bind((addr, port))
            except OSError as e:
                if port == 0:
                    raise
                log.debug(f"broker: udp port {port}: {e.strerror}, using an ephemeral port")
                s.bind((addr, 0))
        except OSError:
            s.close()
            raise
        return s

    def ns_loop_connect(self, req: ipc.Request) -> socket.socket | int:
        """Splice path of -t: a TCP socket connecting to the namespace's loopback.

        Only a port that is a current -t target (spec, or bound by auto) may
        be reached; the socket is made by the thread inside the namespace.
        """
        fwd = self.fwd
        if (fwd is None or self.cfg.opts.no_tcp or req.port == 0
                or req.family not in (socket.AF_INET, socket.AF_INET6) or not fwd.ns_target_ok(req.port)):
            return errno.EPERM
        pool = self.ns_pool
        if pool is None:
            pool = self.ns_pool = SocketPool(self.families, post=fwd.ns.post)
        self.after_reply = pool.refill
        s = pool.take(req.family)
        if s is not None:  # made in the namespace: connects there from this thread
            return loop_connect(req.family, req.port, s)
        return fwd.ns.call(lambda: loop_connect(req.family, req.port))  # type: ignore[no-any-return]

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
        return fwd.ns.call(lambda: loop_udp(req.family, req.port))  # type: ignore[no-any-return]

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
            self.refused += 1
            log.warn(f"broker: refused malformed request ({len(data)} bytes)")
            return
        handler = self.handlers.get(req.op)
        if handler is None:
            result: socket.socket | int | None = errno.EPERM
        else:
            try:
                result = handler(req)  # None: it has answered itself
            except OSError as e:
                result = e.errno or errno.EIO
        if result is None:
            return
        if isinstance(result, int):
            if result == errno.EPERM:
                self.refused += 1
                log.warn(f"broker: refused request op {req.op} "
                         f"({ipc.OP_NAMES.get(req.op, 'unknown')}), family {req.family}")
            else:
                log.debug(f"broker: {ipc.OP_NAMES.get(req.op, req.op)}: errno {result}")
            self._send(ipc.pack_reply(req.seq, result), [])
            return
        status = 0
        if req.op in _CONNECT_OPS:
            try:
                result.getpeername()  # ENOTCONN until the handshake is over
                status = ipc.STATUS_CONNECTED
            except OSError:
                pass
        try:
            self._send(ipc.pack_reply(req.seq, status), [result.fileno()])
        finally:
            result.close()

    def _send(self, msg: bytes, fds: list[int]) -> None:
        try:
            send_fds(self.sock, msg, fds)  # a plain send when fds is empty
        except OSError as e:
            log.debug(f"broker: reply to worker failed: {e.strerror}")
