# SPDX-License-Identifier: GPL-2.0-or-later
"""Inbound TCP listeners (-t/--tcp-ports) and UDP sockets (-u), bound by the parent.

Parent only. Each forwarded port gets one listening socket in the host's
network namespace before the worker starts; the worker, which cannot bind
or listen, receives them over the broker socket and only accepts. Without
a bind address, one dual-stack IPv6 socket serves both families when both
are enabled. A spec of which no port could be bound is an error, as in
passt; ``all`` skips the ports it cannot have (in use, privileged).
``auto`` is handled by setup/autofwd.py (scans every second).
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Callable
from typing import NamedTuple

from ..config import Config
from ..errors import SetupError
from ..log import log
from ..ports import PortFwd
from .sockpool import set_peek_off, tcp_peek_off_supported

BACKLOG = 128
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)


def _set_freebind(s: socket.socket, family: int) -> None:
    """--freebind: let s bind an address the host does not have (yet)."""
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)


def _listen(family: int, addr: str, port: int, ifname: str | None, v6only: bool,
            freebind: bool = False, reuseport: bool = False) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:  # a loopback twin will share the port (loopback_twins)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # accepted sockets inherit the peek offset the tap path needs: where
        # the kernel keeps one (Config.tcp_peek_off) the worker relies on it,
        # so a listener without it is not made (peeks would start over)
        try:
            set_peek_off(s)
        except OSError:
            if tcp_peek_off_supported():
                raise
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        if ifname:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        if freebind:
            _set_freebind(s, family)
        s.bind((addr, port))
        s.listen(BACKLOG)
    except OSError:
        s.close()
        raise
    return s


def _bind_forwards(cfg: Config, fwd: PortFwd, proto: str,
                   bind: Callable[[int, str, int, str | None, bool], socket.socket],
                   ) -> list[tuple[socket.socket, int, int]]:
    """Sockets for every port of a -t or -u spec: (socket, port, target port).

    One dual-stack IPv6 socket per port when both families are enabled and
    no address is given, the spec's address and interface otherwise. A
    spec of which no port could be bound is an error; ``all`` skips what it
    cannot have; running out of fds stops with what was bound.
    """
    out: list[tuple[socket.socket, int, int]] = []
    quiet = fwd.mode == "all"
    if cfg.opts.freebind:  # IP_FREEBIND / IPV6_FREEBIND before each bind
        bind = functools.partial(bind, freebind=True)
    for r in fwd.ranges:
        if r.addr is not None:
            fam = socket.AF_INET6 if ":" in r.addr else socket.AF_INET
            binds = [(fam, r.addr, True)]
        elif cfg.v6 is not None:
            binds = [(socket.AF_INET6, "::", cfg.v4 is None)]
        else:
            binds = [(socket.AF_INET, "0.0.0.0", True)]
        for port in r.ports():
            if port in fwd.exclude:
                continue
            target = r.target + (port - r.first)
            for fam, addr, v6only in binds:
                try:
                    out.append((bind(fam, addr, port, r.ifname, v6only), port, target))
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE):
                        log.warn(f"Can't open enough sockets for {proto} port forwarding, "
                                 f"stopping at port {port}")
                        return out
                    if not quiet:
                        log.warn(f"{proto} port {port}: {e.strerror}")
    if not out and fwd.ranges and not quiet:
        spec = ",".join(f"{r.first}-{r.last}" for r in fwd.ranges)
        raise SetupError(f"{proto} forwarding of ports {spec}", "Failed to bind any port")
    return out


def bind_tcp_listeners(cfg: Config, twins: bool = False) -> list[tuple[socket.socket, int, int]]:
    """Listening sockets for the -t forwards: (socket, port, target port);
    ``twins``: with SO_REUSEPORT, so that loopback_twins can bind beside them."""
    fwd = cfg.opts.tcp_in
    if cfg.opts.no_tcp or fwd.mode not in ("spec", "all"):
        return []
    return _bind_forwards(cfg, fwd, "TCP", functools.partial(_listen, reuseport=True) if twins else _listen)


def loopback_twins(listeners: list[tuple[socket.socket, int, int]]) -> list[tuple[socket.socket, int, int]]:
    """For each wildcard -t listener (0.0.0.0 or ::, no interface), listeners
    of the same port on 127.0.0.1 and/or ::1 (whatever the wildcard covers).

    The kernel looks a connection's listener up by its destination address
    first, the wildcard second: what comes to the loopback reaches the twin,
    which the parent keeps and accepts on (setup/acceptor.py: a spliced
    connection in one message), everything else the wildcard listener the
    worker accepts on (the tap path). Two listeners of one port need
    SO_REUSEPORT on both; both are made here, before the parent changes
    user, so only the same user (root, or the user running pasta) could add
    a socket to either port's group (security.md). A twin that cannot be
    bound is skipped: the worker still splices what its listener gets from
    the loopback, asking the broker (OP_NS_LOOP_CONNECT) as before.
    """
    out: list[tuple[socket.socket, int, int]] = []
    for s, port, target in listeners:
        try:
            addr = s.getsockname()[0]
            if addr not in ("0.0.0.0", "::") or s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).strip(b"\0"):
                continue
            if s.family == socket.AF_INET6:
                v6only = bool(s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
                loops = [(socket.AF_INET6, "::1")] + ([] if v6only else [(socket.AF_INET, "127.0.0.1")])
            else:
                loops = [(socket.AF_INET, "127.0.0.1")]
        except OSError:
            continue
        for fam, loop in loops:
            try:
                out.append((_listen(fam, loop, port, None, True, reuseport=True), port, target))
            except OSError as e:
                log.debug(f"TCP port {port}: no {loop} twin: {e.strerror}")
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    return out
    return out


def _udp_bind(family: int, addr: str, port: int, ifname: str | None, v6only: bool,
              freebind: bool = False) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        # bound without SO_REUSEADDR: a port in use is an error, not a
        # silently shared port; set after the bind, so that the reply
        # sockets of this port (udp_reply_socket) can bind beside it
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        if ifname:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        if freebind:
            _set_freebind(s, family)
        s.bind((addr, port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    except OSError:
        s.close()
        raise
    return s


class LocalBind(NamedTuple):
    """Where a forwarded UDP socket (-u, -U) is bound: what its reply sockets copy."""

    family: int
    addr: str
    ifname: bytes  # SO_BINDTODEVICE, b"" for none
    v6only: bool


def local_bind(s: socket.socket) -> LocalBind:
    """Read back how s is bound (before it is handed to the worker)."""
    v6 = s.family == socket.AF_INET6
    v6only = bool(s.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)) if v6 else True
    ifname = s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")
    return LocalBind(s.family, s.getsockname()[0], ifname, v6only)


def note_binds(table: dict[int, list[LocalBind]], socks: list[tuple[socket.socket, int, int]]) -> None:
    """Record in table (port -> bindings) the UDP sockets about to go to the worker."""
    for s, port, _target in socks:
        table.setdefault(port, []).append(local_bind(s))


def pick_bind(binds: list[LocalBind] | None, family: int, peer: bytes) -> LocalBind | None:
    """The forwarded socket of a port a sender of family at peer (packed) reached:
    a v4-mapped sender only on a dual-stack socket. The first that fits."""
    if not binds:
        return None
    mapped = family == socket.AF_INET6 and peer[:12] == bytes(10) + b"\xff\xff"
    for b in binds:
        if b.family == family and not (mapped and b.v6only):
            return b
    return None


def udp_reply_socket(b: LocalBind, port: int, peer: str, peer_port: int) -> socket.socket:
    """A UDP socket of the calling thread's netns bound where b is, at port,
    and connected to peer:peer_port: the only way the worker can answer a
    sender of a forwarded socket (it holds no socket that sends with an
    address). SO_REUSEADDR lets it share the port with the forwarded
    socket (which set it after its own bind); being connected, it is also
    the socket the kernel delivers that sender's next datagrams to."""
    s = socket.socket(b.family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if b.family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if b.v6only else 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if b.ifname:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b.ifname)
        s.bind((b.addr, port))
        s.connect((peer, peer_port))
    except OSError:
        s.close()
        raise
    return s


def bind_udp_listeners(cfg: Config) -> list[tuple[socket.socket, int, int]]:
    """Bound UDP sockets for the -u forwards: (socket, port, target port).

    As for TCP (``_bind_forwards``); ``auto`` (pasta's default) is
    setup/autofwd.py's.
    """
    fwd = cfg.opts.udp_in
    if cfg.opts.no_udp or fwd.mode not in ("spec", "all"):
        return []
    return _bind_forwards(cfg, fwd, "UDP", _udp_bind)
