# SPDX-License-Identifier: GPL-2.0-or-later
"""Inbound TCP listeners (-t/--tcp-ports) and UDP sockets (-u), bound by the parent.

Parent only. Each forwarded port gets one listening socket in the host's
network namespace before the worker starts; the worker, which cannot bind
or listen, receives them over the broker socket and only accepts. Without
a bind address, one dual-stack IPv6 socket serves both families when both
are enabled. A spec of which no port could be bound is an error, as in
passt; ``all`` skips the ports it cannot have (in use, privileged).
``auto`` is handled by setup/autofwd.py (scans every second).

How many: every socket bound here ends up in the worker, whose fds are
one budget (worker/limits.py: the hard RLIMIT_NOFILE, which the parent
raised its soft limit to first); the listeners' share of it is
``LISTENER_FDS``. The -t and -u specs are counted before anything is
bound (``plan_room``): explicit port lists must fit in half the worker's
budget (``EXPLICIT_ROOM``), or the run ends with one line naming the
option and the limit (passt: "Can't open enough sockets for port
specifier"); ``all`` takes what they leave of the listeners' share, split
evenly between -t and -u, lowest ports first, with a warning naming the
first port left out. What the process needs for itself (broker and log
channels, pools, files) is outside the share, so binding can never take
the fds set-up still needs.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections import namedtuple
from collections.abc import Callable

from ..config import Config
from ..errors import SetupError
from ..log import log
from ..ports import PortFwd
from ..worker.limits import BUDGET, LISTENER_FDS, RESERVE
from .sockpool import set_peek_off, tcp_peek_off_supported

BACKLOG = 128
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
# explicit port lists may take up to half the worker's fds after its reserve
EXPLICIT_ROOM = max(0, BUDGET - RESERVE) // 2


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


def _binds(cfg: Config, addr: str | None) -> list[tuple[int, str, bool]]:
    """(family, address, v6only) of the sockets one port of a range gets."""
    if addr is not None:
        return [(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr, True)]
    if cfg.v6 is not None:
        return [(socket.AF_INET6, "::", cfg.v4 is None)]
    return [(socket.AF_INET, "0.0.0.0", True)]


def wanted(cfg: Config, fwd: PortFwd) -> int:
    """How many sockets a -t or -u spec asks for."""
    n = 0
    for r in fwd.ranges:
        ports = sum(1 for p in r.ports() if p not in fwd.exclude)
        n += ports * len(_binds(cfg, r.addr))
    return n


def _spec_text(fwd: PortFwd) -> str:
    if fwd.mode == "all":
        r = fwd.ranges[0]
        pre = (r.addr or "") + (f"%{r.ifname}" if r.ifname else "")
        return f"{pre}/all" if pre else "all"
    return ",".join(f"{r.first}" if r.first == r.last else f"{r.first}-{r.last}" for r in fwd.ranges)


def plan_room(cfg: Config, room: int = LISTENER_FDS,
              explicit_room: int = EXPLICIT_ROOM) -> tuple[int | None, int | None]:
    """How many sockets -t and -u may each bind: (tcp, udp), None for no cap.

    Explicit port lists (pasta's -T and -U included) are counted first and
    must fit in ``explicit_room`` together (half the worker's budget: the
    user asked for each of those ports), otherwise SetupError naming the
    option and the limit (passt exits too). The ``all`` specs share what
    is left of ``room``, the listeners' share, evenly (one may take what
    the other does not need); an ``all`` left without any room at all is
    a SetupError too.
    """
    o = cfg.opts
    specs = []
    if not o.no_tcp and o.tcp_in.mode in ("spec", "all"):
        specs.append(("-t", o.tcp_in))
    if not o.no_udp and o.udp_in.mode in ("spec", "all"):
        specs.append(("-u", o.udp_in))
    need = {opt: wanted(cfg, f) for opt, f in specs}
    # pasta's -T and -U: two sockets a port (127.0.0.1 and ::1 in the namespace,
    # autofwd.py), bound later but out of the same budget: counted as explicit lists
    for opt, f in (("-T", o.tcp_out), ("-U", o.udp_out)):
        if f.mode == "spec" and not (o.no_tcp if opt == "-T" else o.no_udp):
            specs.insert(0, (opt, f))
            need[opt] = 2 * sum(1 for r in f.ranges for p in r.ports() if p not in f.exclude)
    cap: dict[str, int] = {}
    left = explicit_room
    for opt, f in specs:
        if f.mode == "spec":
            if need[opt] > left:
                raise SetupError(f"{opt} {_spec_text(f)}",
                                 f"Can't open enough sockets for port specifier: {need[opt]} wanted, "
                                 f"room for {left} under RLIMIT_NOFILE {BUDGET}")
            left -= need[opt]
    alls = [(opt, f) for opt, f in specs if f.mode == "all"]
    if not alls:
        return None, None
    left = max(0, room - (explicit_room - left))
    if sum(need[opt] for opt, _f in alls) <= left:
        return None, None
    for i, (opt, f) in enumerate(sorted(alls, key=lambda x: need[x[0]])):
        share = left // (len(alls) - i)
        cap[opt] = min(need[opt], share)
        left -= cap[opt]
        if cap[opt] == 0:
            raise SetupError(f"{opt} {_spec_text(f)}",
                             f"Can't open enough sockets for port specifier: no room under "
                             f"RLIMIT_NOFILE {BUDGET}")
    return cap.get("-t"), cap.get("-u")


def _bind_forwards(cfg: Config, fwd: PortFwd, proto: str,
                   bind: Callable[[int, str, int, str | None, bool], socket.socket],
                   cap: int | None = None) -> list[tuple[socket.socket, int, int]]:
    """Sockets for every port of a -t or -u spec: (socket, port, target port).

    One dual-stack IPv6 socket per port when both families are enabled and
    no address is given, the spec's address and interface otherwise. A
    spec of which no port could be bound is an error; ``all`` skips what it
    cannot have; ``cap`` (plan_room) stops ``all`` with a warning naming
    the first port left out; running out of fds all the same (ENFILE, the
    system's) stops with what was bound.
    """
    out: list[tuple[socket.socket, int, int]] = []
    quiet = fwd.mode == "all"
    if cfg.opts.freebind:  # IP_FREEBIND / IPV6_FREEBIND before each bind
        bind = functools.partial(bind, freebind=True)
    for r in fwd.ranges:
        binds = _binds(cfg, r.addr)
        for port in r.ports():
            if port in fwd.exclude:
                continue
            target = r.target + (port - r.first)
            if cap is not None and len(out) + len(binds) > cap:
                log.warn(f"Can't open enough sockets for {proto} port forwarding "
                         f"'{_spec_text(fwd)}' under RLIMIT_NOFILE {BUDGET} "
                         f"(room for {cap}), ports from {port} on are not forwarded")
                return out
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


def bind_tcp_listeners(cfg: Config, cap: int | None = None,
                       twins: bool = False) -> list[tuple[socket.socket, int, int]]:
    """Listening sockets for the -t forwards: (socket, port, target port);
    ``twins``: with SO_REUSEPORT, so that loopback_twins can bind beside them."""
    fwd = cfg.opts.tcp_in
    if cfg.opts.no_tcp or fwd.mode not in ("spec", "all"):
        return []
    return _bind_forwards(cfg, fwd, "TCP", functools.partial(_listen, reuseport=True) if twins else _listen, cap)


TWINS_MAX = 2048  # loopback twins at most (parent fds); ports beyond keep the worker's splice path


def loopback_twins(listeners: list[tuple[socket.socket, int, int]],
                   limit: int = TWINS_MAX) -> list[tuple[socket.socket, int, int]]:
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
    the loopback, asking the broker (OP_NS_LOOP_CONNECT) as before; so
    are the ports past ``limit`` twins (-t with large ranges: the parent's
    fds are not the worker's budget, but not unbounded either).
    """
    out: list[tuple[socket.socket, int, int]] = []
    for s, port, target in listeners:
        if len(out) + 2 > limit:
            break
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


TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NamedTuple

    class LocalBind(NamedTuple):
        """Where a forwarded UDP socket (-u, -U) is bound: what its reply sockets copy."""

        family: int
        addr: str
        ifname: bytes  # SO_BINDTODEVICE, b"" for none
        v6only: bool
else:  # the same class, without importing typing
    LocalBind = namedtuple("LocalBind", "family addr ifname v6only")


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


def bind_udp_listeners(cfg: Config, cap: int | None = None) -> list[tuple[socket.socket, int, int]]:
    """Bound UDP sockets for the -u forwards: (socket, port, target port).

    As for TCP (``_bind_forwards``); ``auto`` (pasta's default) is
    setup/autofwd.py's.
    """
    fwd = cfg.opts.udp_in
    if cfg.opts.no_udp or fwd.mode not in ("spec", "all"):
        return []
    return _bind_forwards(cfg, fwd, "UDP", _udp_bind, cap)
