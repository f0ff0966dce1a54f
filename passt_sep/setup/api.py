# SPDX-License-Identifier: GPL-2.0-or-later
"""The runtime control API (--api-socket): slirp4netns's JSON API, served by the parent.

Parent only; the worker never sees the socket nor a client. The socket is
a UNIX stream socket bound during set-up (before the switch to --runas and
before the parent's seccomp filter), mode 0600, owned by the user the
parent runs as; it is removed at exit. The supervision loop
(Parent.supervise) serves it, non-blocking: one JSON request per
connection, one reply, then the connection is closed, as slirp4netns does.

Requests and replies are slirp4netns's (its api.c), byte for byte where
clients parse them (rootlesskit's slirp4netns port driver, podman 4.x):

- ``{"execute": "add_hostfwd", "arguments": {"proto": "tcp"|"udp",
  "host_addr": "0.0.0.0", "host_port": N, "guest_addr": "10.0.2.100",
  "guest_port": M}}`` -> ``{"return":{"id":K}}``
- ``{"execute": "list_hostfwd"}`` -> ``{"return":{"entries":[{"id":..,
  "proto":..,"host_addr":..,"host_port":..,"guest_addr":..,"guest_port":..}]},
  "entries":[...]}`` (the shape slirp4netns documents, and the one its
  1.2.0 code writes, without the "return" level: the same list twice)
- ``{"execute": "remove_hostfwd", "arguments": {"id": K}}`` -> ``{"return":{}}``
- errors: ``{"error":{"desc":"bad request: ..."}}`` with slirp4netns's texts.

passt-sep's own: ``list_flows`` and ``stats``, answered from a report the
worker sends on request (ipc.QUERY_MAGIC, ipc.OP_REPORT), which the
broker bounds and validates (``validate_report``), plus the parent's own
broker counters.

A forward made here is a -t/-u forward like any other: the parent binds
the host socket (with the privileges it has left), hands it to the worker
as a port announcement with guest_port as target, and records it in the
tables the broker checks the splice paths against (``PortTables``);
remove_hostfwd sends the drop, the worker closes the socket and the port
is free again.

Hostile clients: a request is at most MAX_REQUEST bytes (past that:
"too large message" and the connection is closed), a client has
CLIENT_TIMEOUT seconds from connect to a complete request, at most
MAX_CLIENTS are connected at once (more are closed at accept), and replies
are sent non-blocking (a client that does not read loses its reply).
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import stat
import time
from collections.abc import Callable

from .. import ipc
from ..errors import SetupError
from ..log import log
from .autofwd import _targets
from .listeners import _listen, _udp_bind, note_binds

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from ..config import Config
    from .broker import Broker

MAX_REQUEST = 64 << 10  # bytes of one request
CLIENT_TIMEOUT = 2.0  # seconds from connect to a complete request (and to the worker's answer)
MAX_CLIENTS = 8  # connected at once; more are closed at accept
# parses of a request still coming, per connection: then only the
# half-close or the deadline ends it (a client trickling bytes cannot make
# the loop re-parse up to 64 KiB on every one of them)
PARSE_TRIES = 4
# add_hostfwd of a port remove_hostfwd dropped a moment ago: the worker may
# not have closed it yet (the drop is a message), so a bind that finds it
# in use is tried again every RETRY_STEP for RETRY_WINDOW after the drop,
# from the loop (the client waits, nothing blocks)
RETRY_WINDOW = 0.5
RETRY_STEP = 0.005
_WORKER = ("list_flows", "stats")  # requests answered from the worker's report
QUERY_TIMEOUT = 1.0  # seconds the worker has to answer a report query
SUN_PATH_MAX = 108

Watch = Callable[[int, Callable[[int], int | None]], None]
Unwatch = Callable[[int], None]

_E = "bad request: "


def _err(desc: str) -> bytes:
    return json.dumps({"error": {"desc": desc}}, separators=(",", ":")).encode()


def _ok(ret: dict[str, Any]) -> bytes:
    return json.dumps({"return": ret}, separators=(",", ":")).encode()


def _num(v: object) -> int:
    """A JSON number as parson's json_object_dotget_number and a C cast read it: 0 if not one."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0
    if isinstance(v, float) and not math.isfinite(v):
        return 0
    return int(v)


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


class HostFwd:
    """One forward made through the API."""

    __slots__ = ("guest_port", "host_addr", "host_port", "id", "proto")

    def __init__(self, fid: int, proto: str, host_addr: str, host_port: int, guest_port: int) -> None:
        self.id = fid
        self.proto = proto
        self.host_addr = host_addr
        self.host_port = host_port
        self.guest_port = guest_port


class PortTables:
    """What the rest of the parent must know of the API's forwards.

    pasta: the Forwarder's -t/-u tables (the splice paths check a loopback
    target against them, auto excludes our own host listeners); both
    modes: the broker's -u bindings (the reply sockets of a UDP sender bind
    alike), and the ports forwarded from the start, which the API cannot
    take (a drop is per port).
    """

    def __init__(self, cfg: Config, broker: Broker) -> None:
        o = cfg.opts
        self.broker = broker
        self.fwd = broker.fwd
        self.static_tcp = set(_targets(o.tcp_in)) if not o.no_tcp else set()
        self.static_udp = set(_targets(o.udp_in)) if not o.no_udp else set()

    def busy(self, proto: str, port: int) -> bool:
        """Whether port is forwarded already by the options or by auto."""
        fwd = self.fwd
        if proto == "tcp":
            return port in self.static_tcp or (fwd is not None and port in fwd.t_bound)
        return port in self.static_udp or (fwd is not None and port in fwd.u_bound)

    def add(self, proto: str, port: int, target: int, s: socket.socket) -> None:
        """Record a new forward (before its socket goes to the worker)."""
        fwd = self.fwd
        if proto == "udp":
            note_binds(self.broker.udp_local, [(s, port, target)])
        if fwd is None:
            return
        if proto == "tcp":
            fwd.tcp_in[port] = target
            fwd.tin_targets = set(fwd.tcp_in.values())
        else:
            fwd.udp_in[port] = target
            fwd.uin_targets = set(fwd.udp_in.values())

    def remove(self, proto: str, port: int) -> None:
        """Forget a forward (its drop goes to the worker)."""
        fwd = self.fwd
        if proto == "udp":
            self.broker.udp_local.pop(port, None)
        if fwd is None:
            return
        if proto == "tcp":
            fwd.tcp_in.pop(port, None)
            fwd.tin_targets = set(fwd.tcp_in.values())
        else:
            fwd.udp_in.pop(port, None)
            fwd.uin_targets = set(fwd.udp_in.values())


class _Client:
    __slots__ = ("args", "buf", "deadline", "retry_at", "sock", "tries", "waiting")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.tries = 0  # parses of an incomplete request so far (PARSE_TRIES)
        self.deadline = deadline
        self.waiting = ""  # "list_flows" or "stats": waits for the worker's report; "add_hostfwd": a retry
        self.args: dict[str, Any] = {}  # add_hostfwd's arguments, while it waits to retry
        self.retry_at = 0.0


def bind_api_socket(path: str, ids: tuple[int, int] | None) -> socket.socket:
    """Set-up: the listening socket at path, mode 0600, owned by the user we will run as.

    A socket file left at path (a previous run) is replaced, as slirp4netns
    does; any other file there is an error.
    """
    if len(os.fsencode(path)) >= SUN_PATH_MAX:
        raise SetupError(f"API socket {path}", f"path too long (>= {SUN_PATH_MAX} bytes)")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise SetupError(f"API socket {path}", e) from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise SetupError(f"API socket {path}", "File exists")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
            if probe.connect_ex(path) == 0:  # someone serves it: not a stale file
                raise SetupError(f"API socket {path}", "Address already in use")
        try:
            os.unlink(path)
        except OSError as e:
            raise SetupError(f"API socket {path}", e) from None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(path)
        os.chmod(path, 0o600)
        if ids is not None:
            os.chown(path, ids[0], ids[1])
        s.listen(MAX_CLIENTS)
    except OSError as e:
        s.close()
        raise SetupError(f"API socket {path}", e) from None
    finally:
        os.umask(old)
    return s


class ApiServer:
    """The API socket's clients, the forwards made through it, the pending report query."""

    def __init__(self, path: str, sock: socket.socket, cfg: Config) -> None:
        self.path = path
        self.sock = sock
        self.cfg = cfg
        st = os.fstat(sock.fileno())
        self.ident = os.stat(path).st_ino, st.st_ino
        self.clients: dict[int, _Client] = {}
        self.fwds: dict[int, HostFwd] = {}
        self.dropped: dict[tuple[str, int], float] = {}  # (proto, port) -> when remove_hostfwd dropped it
        self.next_id = 1
        self.broker: Broker | None = None
        self.tables: PortTables | None = None
        self.watch: Watch | None = None
        self.unwatch: Unwatch | None = None
        self.guest4 = str(cfg.v4.addr) if cfg.v4 is not None else ""
        # the worker's report: one query the API waits for at a time (its
        # id), at most ipc.QUOTAS[OP_REPORT].per_second a second; an answer
        # that comes after QUERY_TIMEOUT serves whoever waits then
        self.qid = 0
        self.q_open = False
        self.q_deadline = 0.0
        self.q_window = 0
        self.q_sent = 0
        self.refused_clients = 0
        self.requests = 0
        self.add_retries = 0  # add_hostfwd binds tried again (a port just dropped, not yet closed)

    # -- wiring -------------------------------------------------------------
    def start(self, broker: Broker, watch: Watch, unwatch: Unwatch) -> None:
        """Supervision begins: serve the socket from the loop."""
        self.broker = broker
        self.tables = PortTables(self.cfg, broker)
        broker.on_report = self.on_report
        self.watch = watch
        self.unwatch = unwatch
        watch(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """End of the run: drop the clients, remove the socket file if it is still ours."""
        for c in list(self.clients.values()):
            self._drop(c)
        try:
            if os.stat(self.path).st_ino == self.ident[0]:
                os.unlink(self.path)
        except OSError as e:
            log.debug(f"API socket {self.path}: {e.strerror}")
        self.sock.close()

    def next_due(self) -> float | None:
        """When expire() has something to do (None: nothing pending)."""
        if not self.clients:
            return None
        due = min(min(c.deadline, c.retry_at) if c.waiting == "add_hostfwd" else c.deadline
                  for c in self.clients.values())
        return min(due, self.q_deadline) if self.q_open else due

    def expire(self, now: float) -> None:
        """Close the clients past their time; answer those the worker left waiting."""
        if not self.clients:
            return
        if self.q_open and now >= self.q_deadline:
            self.q_open = False
            for c in [c for c in self.clients.values() if c.waiting in _WORKER]:
                self._reply(c, _err("worker did not answer"))
        for c in [c for c in self.clients.values() if c.waiting == "add_hostfwd" and now >= c.retry_at]:
            self._add(c, now)
        for c in [c for c in self.clients.values() if now >= c.deadline]:
            if c.buf and not c.waiting:
                self._handle(c, bytes(c.buf))  # what came (e.g. without a half-close) is the request
            else:
                self._drop(c)

    # -- connections --------------------------------------------------------
    def _accept(self, _ev: int) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug(f"API socket: accept: {e.strerror}")
                return
            if len(self.clients) >= MAX_CLIENTS:
                self.refused_clients += 1
                conn.close()
                continue
            c = _Client(conn, time.monotonic() + CLIENT_TIMEOUT)
            self.clients[conn.fileno()] = c
            assert self.watch is not None
            self.watch(conn.fileno(), lambda ev, c=c: self._readable(c))  # type: ignore[misc]

    def _readable(self, c: _Client) -> None:
        try:
            # the socket stays blocking (no fcntl/ioctl in the filter): every call says MSG_DONTWAIT
            data = c.sock.recv(MAX_REQUEST + 1 - len(c.buf), socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._drop(c)
            return
        if c.waiting:  # a request was taken: anything more (or the close) changes nothing
            if not data:
                self._stop_watching(c)
            return
        if data:
            c.buf += data
            if len(c.buf) > MAX_REQUEST:
                log.debug(f"API socket: request over {MAX_REQUEST} bytes")
                self._reply(c, _err(_E + "too large message"))
                return
            if c.tries >= PARSE_TRIES or not c.buf.rstrip().endswith(b"}"):
                return  # not an object's end: more, the half-close or the deadline
            c.tries += 1
            try:
                json.loads(c.buf)
            except (ValueError, RecursionError):
                return  # not complete yet: more, the half-close or the deadline
            except Exception:  # noqa: BLE001 - whatever the decoder trips on: wait for the rest
                return
        self._handle(c, bytes(c.buf))

    def _stop_watching(self, c: _Client) -> None:
        if self.unwatch is not None:
            self.unwatch(c.sock.fileno())

    def _drop(self, c: _Client) -> None:
        fd = c.sock.fileno()
        if self.clients.pop(fd, None) is None:
            return
        self._stop_watching(c)
        c.sock.close()

    def _reply(self, c: _Client, msg: bytes) -> None:
        """Send the reply (non-blocking: what does not fit is lost) and close, as slirp4netns."""
        try:
            c.sock.send(msg, socket.MSG_DONTWAIT)
        except OSError as e:
            log.debug(f"API socket: reply: {e.strerror}")
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._drop(c)

    # -- requests -----------------------------------------------------------
    def _handle(self, c: _Client, raw: bytes) -> None:
        self.requests += 1
        try:
            req = json.loads(raw)
        except (ValueError, RecursionError):
            self._reply(c, _err(_E + "cannot parse JSON"))
            return
        except Exception:  # noqa: BLE001 - the decoder's own limits: a parse error all the same
            self._reply(c, _err(_E + "cannot parse JSON"))
            return
        if not isinstance(req, dict):
            self._reply(c, _err(_E + "json_object() failed"))
            return
        execute = req.get("execute")
        if not isinstance(execute, str):
            self._reply(c, _err(_E + "no execute found"))
            return
        args = req.get("arguments")
        if not isinstance(args, dict):
            args = {}
        log.debug(f"API socket: {execute}")
        if execute == "add_hostfwd":
            c.args = args
            self._add(c, time.monotonic())
        elif execute == "list_hostfwd":
            self._reply(c, self.list_hostfwd())
        elif execute == "remove_hostfwd":
            self._reply(c, self.remove_hostfwd(args))
        elif execute in ("list_flows", "stats"):
            self._ask_worker(c, execute)
        else:
            self._reply(c, _err(_E + "unknown execute"))

    def _add(self, c: _Client, now: float) -> None:
        """add_hostfwd for client c: answered, or (a port just dropped, still held) tried again."""
        reply = self.add_hostfwd(c.args, now)
        if reply is None:
            self.add_retries += 1
            c.waiting = "add_hostfwd"
            c.retry_at = now + RETRY_STEP
            c.deadline = max(c.deadline, now + RETRY_WINDOW + 0.1)  # the retries end first
            return
        self._reply(c, reply)

    def add_hostfwd(self, args: dict[str, Any], now: float = 0.0) -> bytes | None:
        """Bind host_addr:host_port, hand it to the worker with guest_port as target.

        None: the port is in use, but remove_hostfwd dropped it less than
        RETRY_WINDOW ago (the worker has not closed it yet): try again.
        """
        e = _E + "add_hostfwd: "
        proto = _str(args.get("proto"))
        if proto not in ("tcp", "udp"):
            return _err(e + "bad arguments.proto")
        host_addr = _str(args.get("host_addr")) or "0.0.0.0"
        try:
            host_addr = socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host_addr))
        except OSError:
            return _err(e + "bad arguments.host_addr")
        host_port = _num(args.get("host_port"))
        if not 0 < host_port < 65536:
            return _err(e + "bad arguments.host_port")
        guest_addr = _str(args.get("guest_addr")) or self.guest4
        if self.cfg.v4 is None:  # -6: no IPv4 guest to forward to
            return _err(e + "slirp_add_hostfwd failed")
        try:
            guest_ok = socket.inet_pton(socket.AF_INET, guest_addr) == socket.inet_pton(socket.AF_INET, self.guest4)
        except OSError:
            guest_ok = False
        if not guest_ok:
            return _err(e + "bad arguments.guest_addr")
        guest_port = _num(args.get("guest_port"))
        if not 0 < guest_port < 65536:
            return _err(e + "bad arguments.guest_port")
        failed = _err(e + "slirp_add_hostfwd failed")
        o = self.cfg.opts
        tables = self.tables
        if tables is None or self.broker is None or self.cfg.v4 is None:
            return failed
        if (o.no_tcp if proto == "tcp" else o.no_udp):
            log.info(f"API: add_hostfwd {proto} {host_addr}:{host_port}: {proto.upper()} is disabled")
            return failed
        if tables.busy(proto, host_port) or any(f.proto == proto and f.host_port == host_port
                                                for f in self.fwds.values()):
            log.info(f"API: add_hostfwd {proto} port {host_port}: already forwarded")
            return failed
        bind = _listen if proto == "tcp" else _udp_bind
        try:
            s = bind(socket.AF_INET, host_addr, host_port, None, True)
        except OSError as ex:
            dropped = self.dropped.get((proto, host_port))
            if ex.errno == errno.EADDRINUSE and dropped is not None and now - dropped < RETRY_WINDOW:
                return None
            log.info(f"API: add_hostfwd {proto} {host_addr}:{host_port}: {ex.strerror}")
            return failed
        self.dropped.pop((proto, host_port), None)
        fid = self.next_id
        self.next_id += 1
        try:
            tables.add(proto, host_port, guest_port, s)
            magic = ipc.LISTENER_MAGIC if proto == "tcp" else ipc.UDP_LISTENER_MAGIC
            self.broker.send(ipc.pack_port_msg(magic, host_port, guest_port), [s.fileno()])
        finally:
            s.close()  # the worker's copy is the only one: its close frees the port
        self.fwds[fid] = HostFwd(fid, proto, host_addr, host_port, guest_port)
        log.info(f"API: forwarding {proto} {host_addr}:{host_port} to guest port {guest_port} (id {fid})")
        return _ok({"id": fid})

    def list_hostfwd(self) -> bytes:
        """The API's forwards, in the order they were made.

        Both shapes: ``return.entries`` as slirp4netns's man page and test
        script read it, and ``entries`` at the top as its code (1.2.0)
        writes it; a client of either finds its list.
        """
        entries = [{"id": f.id, "proto": f.proto, "host_addr": f.host_addr, "host_port": f.host_port,
                    "guest_addr": self.guest4, "guest_port": f.guest_port} for f in self.fwds.values()]
        return json.dumps({"return": {"entries": entries}, "entries": entries}, separators=(",", ":")).encode()

    def remove_hostfwd(self, args: dict[str, Any]) -> bytes:
        """Drop one forward: the worker closes its socket, the port is free again."""
        f = self.fwds.pop(_num(args.get("id")), None)
        if f is None:
            return _err(_E + "remove_hostfwd: bad arguments.id")
        assert self.tables is not None and self.broker is not None
        self.tables.remove(f.proto, f.host_port)
        drop = ipc.DROP_TCP_MAGIC if f.proto == "tcp" else ipc.DROP_UDP_MAGIC
        self.broker.send(ipc.pack_port_msg(drop, f.host_port), [])
        now = time.monotonic()
        for k in [k for k, t in self.dropped.items() if now - t >= RETRY_WINDOW]:
            del self.dropped[k]  # bounded: only the last RETRY_WINDOW's drops stay
        self.dropped[(f.proto, f.host_port)] = now
        log.info(f"API: forward {f.id} ({f.proto} port {f.host_port}) removed")
        return _ok({})

    # -- the worker's report --------------------------------------------------
    def _ask_worker(self, c: _Client, what: str) -> None:
        c.waiting = what
        c.deadline = time.monotonic() + CLIENT_TIMEOUT
        if self.q_open:
            return  # the answer on its way serves this client too
        now = time.monotonic()
        window = int(now)
        if window != self.q_window:
            self.q_window, self.q_sent = window, 0
        assert self.broker is not None
        quota = ipc.QUOTAS[ipc.OP_REPORT]
        if len(self.broker.reports_expected) >= quota.inflight:  # the worker has not answered for a while
            self._reply(c, _err("worker did not answer"))
            return
        if self.q_sent >= quota.per_second:
            self._reply(c, _err("busy: too many requests, try again"))
            return
        self.q_sent += 1
        self.qid = (self.qid % 0xFFFF) + 1
        self.q_open = True
        self.q_deadline = now + QUERY_TIMEOUT
        self.broker.expect_report(self.qid)
        self.broker.send(ipc.pack_query(self.qid), [])

    def on_report(self, report: dict[str, Any]) -> None:
        """The worker's answer (already validated by the broker): reply to who waits."""
        self.q_open = False
        assert self.broker is not None
        parent = self.broker.counters()
        parent["api_clients_refused"] = self.refused_clients
        parent["api_add_retries"] = self.add_retries
        for c in [c for c in self.clients.values() if c.waiting in _WORKER]:
            if c.waiting == "stats":
                out = dict(report["stats"])
                out["parent"] = parent
                self._reply(c, _ok(out))
            else:
                self._reply(c, _ok({"flows": report["flows"], "truncated": report["truncated"]}))


def validate_report(payload: bytes) -> dict[str, Any]:
    """The worker's report, checked: its shape, every value bounded. Raises ValueError.

    ``{"stats": {name: {counter: int}}, "flows": [{"proto": str, "guest":
    str, "host": str, "state": str}], "truncated": int}``: two levels of
    names with non-negative integers, flows of four short strings.
    """
    try:
        rep = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"report is not JSON ({e})") from None
    if not isinstance(rep, dict) or set(rep) != {"stats", "flows", "truncated"}:
        raise ValueError("report: wrong keys")
    stats, flows, trunc = rep["stats"], rep["flows"], rep["truncated"]
    if not isinstance(stats, dict) or len(stats) > 32:
        raise ValueError("report: stats")
    for k, v in stats.items():
        if len(k) > 32 or not isinstance(v, dict) or len(v) > 64:
            raise ValueError("report: stats group")
        for k2, n in v.items():
            if len(k2) > 64 or not _count(n):
                raise ValueError("report: stats counter")
    if not isinstance(flows, list) or not _count(trunc):
        raise ValueError("report: flows")
    for f in flows:
        if not isinstance(f, dict) or set(f) != {"proto", "guest", "host", "state"}:
            raise ValueError("report: flow keys")
        if not all(isinstance(x, str) and len(x) <= 64 for x in f.values()):
            raise ValueError("report: flow fields")
    return rep


def _count(n: object) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n < (1 << 63)
