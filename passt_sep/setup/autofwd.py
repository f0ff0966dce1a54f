# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's forwarded ports on the parent's side: -T listeners, ``auto``, splice targets.

Parent only. Three jobs:

- ``NsThread``: one long-lived thread that has entered the guest's network
  namespace (``setns`` is per thread). Sockets that must live in the
  namespace are made there: the -T listeners (bound to 127.0.0.1 and ::1)
  and, on the worker's request, the namespace side of a spliced -t
  connection (a non-blocking connect to the namespace's loopback), the -U
  sockets (bound to 127.0.0.1 and ::1) and, on request, the namespace side
  of a -u datagram flow from a host loopback sender. Using
  one thread instead of one per request keeps a splice set-up at a queue
  round trip (tens of microseconds).
- ``Forwarder``: which ports are forwarded right now in each direction,
  so the broker can check a loopback request against them (only a current
  target port of -t, or of -u for UDP, may be reached on the namespace's
  loopback; only one of -T, or of -U, on the host's).
  The same tables say how each -u (auto) and -U socket is bound, for the
  reply sockets of their senders (``udp_auto_bind``, ``ns_udp_bind``).
- ``auto`` (pasta's default for -t, -u, -T and -U): every second the
  listening TCP and unconnected UDP ports of both namespaces are dumped
  through sock_diag (setup/sockdiag.py; the namespace's socket is made by
  the thread inside it and stays bound to its namespace). Where a dump
  fails (no diag module) the /proc/net/tcp, tcp6, udp or udp6 file, opened
  once the same way, is re-read with lseek + read. -t auto binds a host
  listener for every port listening in the namespace, -T auto a namespace
  listener (127.0.0.1, ::1) for every port listening on the host, -u auto a host UDP socket for every UDP port
  bound in the namespace (and, as passt, every TCP listening port) below
  the namespace's ephemeral range, -U auto namespace UDP sockets (127.0.0.1,
  ::1) for every UDP port bound (unconnected) on the host and every TCP
  listening port there, below the host's ephemeral range. Ports forwarded
  the other way are excluded (otherwise each direction would see the
  other's listeners and loop). New sockets go to the worker as port
  announcements, ports that went away as drops (``ipc``); the parent keeps
  no copy, so the worker's close releases the port.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import threading
import time
from _queue import SimpleQueue  # queue.SimpleQueue itself; queue.py would load heapq and more
from collections.abc import Callable

from sandbox import ns

from .. import ipc
from ..config import Config
from ..errors import SetupError
from ..log import log
from ..ports import PortFwd
from . import sockdiag
from .listeners import LocalBind, _listen, _udp_bind, note_binds, pick_bind

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from .acceptor import Acceptor

SCAN_INTERVAL = 1.0
TCP_LISTEN = b"0A"
UDP_UNCONNECTED = b"07"
EPHEMERAL_DEFAULT = 32768
READ_CHUNK = 1 << 16
MAX_PROC_BYTES = 64 << 20  # a /proc/net file larger than this is cut (bounded read)
SETUP_WAIT = 30.0  # seconds a set-up step waits for the namespace thread
# seconds a call made during supervision waits (a broker request finding
# its pool empty, an auto scan binding new ports): then EAGAIN, and the
# supervise loop goes on (SIGTERM, the netns watch, log trimming)
SUPERVISE_WAIT = 0.1


class _Call:
    """One call() into the thread: its result, or the caller gone (``abandoned``)."""

    __slots__ = ("abandoned", "discard", "done", "lock", "out")

    def __init__(self, discard: Callable[[Any], None] | None) -> None:
        self.out: list[Any] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.abandoned = False
        self.discard = discard

    def finish(self, ok: bool, val: Any) -> None:
        """In the thread: hand the result over, or discard it if the caller gave up."""
        with self.lock:
            if not self.abandoned:
                self.out.append((ok, val))
                self.done.set()
                return
        if ok:
            _discard(val, self.discard)


def _discard(val: Any, discard: Callable[[Any], None] | None) -> None:
    """Close what an abandoned call made: a socket, or what ``discard`` says."""
    try:
        if discard is not None:
            discard(val)
        elif isinstance(val, socket.socket):
            val.close()
    except Exception as e:  # noqa: BLE001 - the thread serves on
        log.debug(f"namespace thread: discarding a late result: {e}")


class NsThread:
    """A thread inside the guest's netns that runs functions for the parent.

    ``call`` waits for the result; during supervision (the broker's
    requests, the auto scans) it waits at most ``SUPERVISE_WAIT`` and then
    fails with EAGAIN, so that a busy thread cannot stall the loop that
    handles SIGTERM, the netns watch and log trimming: the call still runs
    later, and what it made is closed (``discard``).
    """

    def __init__(self, netns_fd: int) -> None:
        self.q: SimpleQueue[tuple[Callable[[], Any], _Call | None] | None] = SimpleQueue()
        self.late = 0  # calls given up on (EAGAIN)
        ready: list[BaseException | None] = []
        started = threading.Event()

        def body() -> None:
            try:
                ns.setns(netns_fd, ns.CLONE_NEWNET)
                ready.append(None)
            except BaseException as e:  # noqa: BLE001 - reported to the caller
                ready.append(e)
            started.set()
            if ready[0] is not None:
                return
            while True:
                item = self.q.get()
                if item is None:
                    return
                fn, call = item
                if call is None:  # post(): nobody waits for the result
                    try:
                        fn()
                    except Exception as e:  # noqa: BLE001 - the thread serves on
                        log.debug(f"namespace thread: {e}")
                    continue
                try:
                    result = fn()
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    call.finish(False, e)
                else:
                    call.finish(True, result)

        self.t = threading.Thread(target=body, name="netns", daemon=True)
        self.t.start()
        started.wait(10)
        if not ready or ready[0] is not None:
            raise SetupError("enter the namespace", ready[0] if ready else "timeout")

    def call(self, fn: Callable[[], Any], wait: float = SETUP_WAIT,
             discard: Callable[[Any], None] | None = None) -> Any:
        """Run fn inside the namespace; return its result or raise its exception.

        After ``wait`` seconds without an answer: OSError (ETIMEDOUT, or
        EAGAIN for a wait below SETUP_WAIT, i.e. during supervision); fn
        still runs, and its result then goes to ``discard`` (default: a
        socket is closed).
        """
        call = _Call(discard)
        self.q.put((fn, call))
        if not call.done.wait(wait):
            with call.lock:
                if not call.out:
                    call.abandoned = True
                    self.late += 1
                    log.debug(f"namespace thread busy, call given up after {wait * 1000:.0f} ms")
                    raise OSError(errno.EAGAIN if wait < SETUP_WAIT else errno.ETIMEDOUT,
                                  "namespace thread did not answer")
        ok, val = call.out[0]
        if not ok:
            raise val
        return val

    def post(self, fn: Callable[[], Any]) -> None:
        """Run fn inside the namespace later, without waiting for it (errors are logged)."""
        if not self.t.is_alive():
            raise OSError(errno.ESRCH, "namespace thread is gone")
        self.q.put((fn, None))

    def close(self) -> None:
        """Let the thread end."""
        self.q.put(None)


def loop_udp(family: int, port: int, s: socket.socket | None = None) -> socket.socket:
    """A UDP socket bound to loopback (kernel's port), connected to loopback:port:
    s (unbound, from a socket pool, of the namespace it was made in) or a
    new one of the calling thread's netns.

    One per loopback sender of the UDP splice path: its source port is the
    sender's identity for the server, and being connected it receives only
    the server's replies.
    """
    loop = "127.0.0.1" if family == socket.AF_INET else "::1"
    if s is None:
        s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((loop, 0))
        s.connect((loop, port))
    except OSError:
        s.close()
        raise
    return s


def _ephemeral_low() -> int:
    """The first port of this netns's ephemeral range (ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_DEFAULT


def _targets(fwd: PortFwd) -> dict[int, int]:
    """Listening port -> target port of a spec."""
    out: dict[int, int] = {}
    if fwd.mode not in ("spec", "all"):
        return out
    for r in fwd.ranges:
        for p in r.ports():
            if p not in fwd.exclude:
                out[p] = r.target + (p - r.first)
    return out


def parse_proc_net(data: bytes, states: tuple[bytes, ...], below: int = 65536) -> set[int]:
    """Local ports of the lines of a /proc/net/{tcp,udp}[6] dump in one of states."""
    ports: set[int] = set()
    for line in data.split(b"\n")[1:]:
        f = line.split()
        if len(f) < 4 or f[3] not in states:
            continue
        _, _, port = f[1].rpartition(b":")
        try:
            p = int(port, 16)
        except ValueError:
            continue
        if 0 < p < below:
            ports.add(p)
    return ports


def _diag_socket() -> socket.socket | None:
    """A sock_diag socket of the calling thread's namespace; None: /proc only."""
    try:
        return sockdiag.open_socket()
    except OSError as e:
        log.debug(f"auto: sock_diag: {e.strerror}, reading /proc/net instead")
        return None


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    parts: list[bytes] = []
    total = 0
    while total < MAX_PROC_BYTES:
        chunk = os.read(fd, READ_CHUNK)
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


class Forwarder:
    """Forwarded ports of a pasta run, as the parent sees them."""

    def __init__(self, cfg: Config, nst: NsThread) -> None:
        self.cfg = cfg
        self.ns = nst
        o = cfg.opts
        self.send: Callable[[bytes, list[int]], None] | None = None  # Broker.send, from start()
        self.acceptor: Acceptor | None = None  # pasta: where -T listeners go (the parent accepts)
        self.tcp_in = _targets(o.tcp_in) if not o.no_tcp else {}
        self.tcp_out = _targets(o.tcp_out) if not o.no_tcp else {}
        self.tin_targets = set(self.tcp_in.values())
        self.tout_targets = set(self.tcp_out.values())
        self.udp_in = _targets(o.udp_in) if not o.no_udp else {}
        self.udp_out = _targets(o.udp_out) if not o.no_udp else {}
        self.uin_targets = set(self.udp_in.values())
        self.uout_targets = set(self.udp_out.values())
        self.auto_t = o.tcp_in.mode == "auto" and not o.no_tcp
        self.auto_T = o.tcp_out.mode == "auto" and not o.no_tcp
        self.auto_u = o.udp_in.mode == "auto" and not o.no_udp
        self.auto_U = o.udp_out.mode == "auto" and not o.no_udp
        # ports bound by auto (listening port == target)
        self.t_bound: set[int] = set()
        self.T_bound: set[int] = set()
        self.u_bound: set[int] = set()
        self.U_bound: set[int] = set()
        # how the forwarded UDP sockets of each port are bound (their reply
        # sockets, OP_UDP_REPLY and OP_NS_UDP_REPLY, bind the same way): -u
        # auto on the host (the -u spec is the broker's), -U spec and auto
        self.u_local: dict[int, list[LocalBind]] = {}
        self.U_local: dict[int, list[LocalBind]] = {}
        self.host_files: dict[str, int] = {}
        self.ns_files: dict[str, int] = {}
        self.host_diag: socket.socket | None = None
        self.ns_diag: socket.socket | None = None
        self.ephemeral = EPHEMERAL_DEFAULT
        self.host_ephemeral = _ephemeral_low() if self.auto_U else EPHEMERAL_DEFAULT
        self.next_scan = 0.0
        self._open_files()

    # -- policy (the broker asks) -------------------------------------------------
    def ns_target_ok(self, port: int) -> bool:
        """May the worker reach the namespace's loopback at port (-t)?"""
        return port in self.t_bound or port in self.tin_targets

    def host_target_ok(self, port: int) -> bool:
        """May the worker reach the host's loopback at port (-T)?"""
        return port in self.T_bound or port in self.tout_targets

    def ns_udp_target_ok(self, port: int) -> bool:
        """May the worker send to the namespace's loopback at port (-u)?"""
        return port in self.u_bound or port in self.uin_targets

    def host_udp_target_ok(self, port: int) -> bool:
        """May the worker send to the host's loopback at port (-U)?"""
        return port in self.U_bound or port in self.uout_targets

    def udp_auto_bind(self, family: int, port: int, peer: bytes) -> LocalBind | None:
        """How the -u auto socket of port that peer reached is bound (None: no such forward)."""
        return pick_bind(self.u_local.get(port), family, peer) if port in self.u_bound else None

    def ns_udp_bind(self, family: int, port: int, peer: bytes) -> LocalBind | None:
        """How the -U socket (spec or auto) of port that peer reached is bound, or None."""
        if port not in self.U_bound and port not in self.udp_out:
            return None
        return pick_bind(self.U_local.get(port), family, peer)

    # -- /proc/net files ---------------------------------------------------------
    def _open_files(self) -> None:
        flags = os.O_RDONLY | os.O_CLOEXEC
        host_wanted = (["tcp", "tcp6"] if self.auto_T or self.auto_U else []) + (
            ["udp", "udp6"] if self.auto_U else [])
        if host_wanted:
            self.host_diag = _diag_socket()
            for name in host_wanted:
                try:
                    self.host_files[name] = os.open(f"/proc/net/{name}", flags)
                except OSError as e:
                    log.debug(f"auto: /proc/net/{name}: {e.strerror}")
        wanted = (["tcp", "tcp6"] if self.auto_t or self.auto_u else []) + (
            ["udp", "udp6"] if self.auto_u else [])

        def open_ns() -> tuple[dict[str, int], int]:
            out: dict[str, int] = {}
            for name in wanted:
                try:
                    out[name] = os.open(f"/proc/thread-self/net/{name}", flags)
                except OSError as e:
                    log.debug(f"auto: namespace /proc/net/{name}: {e.strerror}")
            return out, _ephemeral_low()

        if wanted:
            self.ns_files, self.ephemeral = self.ns.call(open_ns)
            self.ns_diag = self.ns.call(_diag_socket)

    def _ports(self, host: bool, proto: int, below: int = 65536) -> set[int]:
        """Ports listening (TCP) or bound unconnected (UDP) on one side.

        sock_diag first (the kernel filters by state); the /proc/net file
        of a family whose diag dump failed.
        """
        diag = self.host_diag if host else self.ns_diag
        files = self.host_files if host else self.ns_files
        tcp = proto == socket.IPPROTO_TCP
        state = sockdiag.TCP_LISTEN if tcp else sockdiag.TCP_CLOSE
        out: set[int] = set()
        for family, name in ((socket.AF_INET, "tcp" if tcp else "udp"),
                             (socket.AF_INET6, "tcp6" if tcp else "udp6")):
            got = None
            if diag is not None:
                try:
                    got = sockdiag.ports(diag, family, proto, state, below)
                except OSError as e:
                    log.debug(f"auto: sock_diag {name}: {e.strerror}")
            if got is None:
                fd = files.get(name)
                if fd is None:
                    continue
                try:
                    got = parse_proc_net(_read_all(fd), (TCP_LISTEN if tcp else UDP_UNCONNECTED,), below)
                except OSError as e:
                    log.debug(f"auto: read {name}: {e.strerror}")
                    continue
            out |= got
        return out

    # -- start-up: -T spec listeners --------------------------------------------
    def bind_ns_spec(self) -> list[tuple[socket.socket, int, int]]:
        """Listeners for the -T spec, bound in the namespace on 127.0.0.1 and ::1."""
        if not self.tcp_out:
            return []
        items = list(self.tcp_out.items())
        out = self.ns.call(lambda: _bind_loopback_listeners(items))
        if not out:
            raise SetupError("TCP forwarding from the namespace (-T)", "Failed to bind any port")
        return out

    def bind_ns_udp_spec(self) -> list[tuple[socket.socket, int, int]]:
        """UDP sockets for the -U spec, bound in the namespace on 127.0.0.1 and ::1."""
        if not self.udp_out:
            return []
        items = list(self.udp_out.items())
        out = self.ns.call(lambda: _bind_loopback_udp(items))
        if not out:
            raise SetupError("UDP forwarding from the namespace (-U)", "Failed to bind any port")
        note_binds(self.U_local, out)
        return out

    # -- auto --------------------------------------------------------------------
    def start(self, send: Callable[[bytes, list[int]], None]) -> None:
        """Remember how to reach the worker (Broker.send: never blocks) and do the first scan now."""
        self.send = send
        self.scan()

    @property
    def auto(self) -> bool:
        """Whether any direction is ``auto`` (then the parent scans every second)."""
        return self.auto_t or self.auto_T or self.auto_u or self.auto_U

    def due(self, now: float) -> bool:
        """Whether a scan is due."""
        return self.auto and now >= self.next_scan

    def scan(self, now: float | None = None) -> None:
        """Re-read the /proc/net files and bind or drop auto listeners."""
        self.next_scan = (time.monotonic() if now is None else now) + SCAN_INTERVAL
        if not self.auto:
            return
        excl_ns = self.T_bound | set(self.tcp_out)  # our own listeners inside the namespace
        excl_host = self.t_bound | set(self.tcp_in)  # ours on the host
        excl_ns_udp = self.U_bound | set(self.udp_out)  # our -U sockets inside the namespace
        excl_host_udp = self.u_bound | set(self.udp_in)  # our -u sockets on the host
        ns_tcp = self._ports(False, socket.IPPROTO_TCP) - excl_ns
        if self.auto_t:
            self._sync_host(ns_tcp, self.t_bound, ipc.LISTENER_MAGIC, ipc.DROP_TCP_MAGIC, _listen)
        if self.auto_u:
            ns_udp = self._ports(False, socket.IPPROTO_UDP, self.ephemeral)
            self._sync_host((ns_udp | {p for p in ns_tcp if p < self.ephemeral}) - excl_ns_udp,
                            self.u_bound, ipc.UDP_LISTENER_MAGIC, ipc.DROP_UDP_MAGIC, _udp_bind,
                            self.u_local)
        if self.auto_T or self.auto_U:
            host_tcp = self._ports(True, socket.IPPROTO_TCP) - excl_host
            if self.auto_T:
                self._sync_ns(host_tcp, self.T_bound, ipc.NS_LISTENER_MAGIC, ipc.DROP_NS_MAGIC,
                              _bind_loopback_listeners)
            if self.auto_U:
                eph = self.host_ephemeral
                host_udp = self._ports(True, socket.IPPROTO_UDP, eph)
                self._sync_ns((host_udp | {p for p in host_tcp if p < eph}) - excl_host_udp,
                              self.U_bound, ipc.NS_UDP_MAGIC, ipc.DROP_NS_UDP_MAGIC, _bind_loopback_udp,
                              self.U_local)

    def _binds(self) -> list[tuple[int, str, bool]]:
        if self.cfg.v6 is not None:
            return [(socket.AF_INET6, "::", self.cfg.v4 is None)]
        return [(socket.AF_INET, "0.0.0.0", True)]

    def _sync_host(self, want: set[int], bound: set[int], magic: bytes, drop: bytes,
                   bind: Callable[[int, str, int, str | None, bool], socket.socket],
                   local: dict[int, list[LocalBind]] | None = None) -> None:
        for port in sorted(bound - want):
            bound.discard(port)
            if local is not None:
                local.pop(port, None)
            self._send(ipc.pack_port_msg(drop, port), [])
            log.debug(f"auto: port {port} released ({drop.decode()})")
        for port in sorted(want - bound):
            socks = []
            for fam, addr, v6only in self._binds():
                try:
                    socks.append(bind(fam, addr, port, None, v6only))
                except OSError:
                    continue  # in use on the host: try again at the next scan
            if not socks:
                continue
            bound.add(port)
            if local is not None:
                note_binds(local, [(s, port, port) for s in socks])
            for s in socks:
                self._send(ipc.pack_port_msg(magic, port, port), [s.fileno()])
                s.close()
            log.debug(f"auto: forwarding port {port} ({magic.decode()})")

    def _sync_ns(self, want: set[int], bound: set[int], magic: bytes, drop: bytes,
                 bind: Callable[[list[tuple[int, int]]], list[tuple[socket.socket, int, int]]],
                 local: dict[int, list[LocalBind]] | None = None) -> None:
        for port in sorted(bound - want):
            bound.discard(port)
            if local is not None:
                local.pop(port, None)
            if drop == ipc.DROP_NS_MAGIC and self.acceptor is not None:
                self.acceptor.drop(port, 1)  # KIND_NS
                log.debug(f"auto: namespace port {port} released (-T)")
                continue
            self._send(ipc.pack_port_msg(drop, port), [])
            log.debug(f"auto: namespace port {port} released ({drop.decode()})")
        new = sorted(want - bound)
        if not new:
            return
        try:
            got = self.ns.call(lambda: bind([(p, p) for p in new]), SUPERVISE_WAIT, _close_all)
        except OSError as e:
            log.debug(f"auto: namespace sockets: {e.strerror}")
            return
        if local is not None:
            note_binds(local, got)
        for s, port, target in got:
            bound.add(port)
            if magic == ipc.NS_LISTENER_MAGIC and self.acceptor is not None:
                self.acceptor.add(s, port, target, 1)  # accepted by the parent (setup/acceptor.py, KIND_NS)
                log.debug(f"auto: forwarding namespace port {port} to the host (-T)")
                continue
            self._send(ipc.pack_port_msg(magic, port, target), [s.fileno()])
            s.close()
            log.debug(f"auto: forwarding namespace port {port} to the host ({magic.decode()})")

    def _send(self, msg: bytes, fds: list[int]) -> None:
        if self.send is not None:
            self.send(msg, fds)  # queued while the worker's socket is full; fds duplicated


def _close_all(got: list[tuple[socket.socket, int, int]]) -> None:
    """Discard the sockets of a scan's call that was given up on (bound again at the next scan)."""
    for s, _port, _target in got:
        s.close()


def _bind_loopback(bind: Callable[..., socket.socket], proto: str,
                   items: list[tuple[int, int]]) -> list[tuple[socket.socket, int, int]]:
    """In the calling thread's netns: bind(family, loopback, port, ...) on
    127.0.0.1 and ::1 per (port, target): -T listeners or -U sockets."""
    out: list[tuple[socket.socket, int, int]] = []
    # both loopbacks, whatever the tap carries: the splice path needs no tap
    fams = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
    for port, target in items:
        for fam, addr in fams:
            try:
                out.append((bind(fam, addr, port, None, True), port, target))
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.warn(f"Can't open enough sockets for {proto} port forwarding, stopping at port {port}")
                    return out
    return out


_bind_loopback_listeners = functools.partial(_bind_loopback, _listen, "TCP")
_bind_loopback_udp = functools.partial(_bind_loopback, _udp_bind, "UDP")
