# SPDX-License-Identifier: GPL-2.0-or-later
"""The sandboxed worker: one epoll loop between the guest and host sockets.

Sandboxed only. It holds the tap fd, the broker socket and the sockets the
broker handed it, nothing else; it cannot open files or make sockets. Each
wake-up drains every ready fd before waiting again. Frames from the guest
go through ``proto.packet.parse_frame`` (a datagram of a UDP flow whose
headers were already checked and decided is taken first by worker/udp.py's
``fast_from_guest``, which checks only its lengths); a malformed one is
dropped and counted by reason, and the loop goes on. Replies are whole frames written
to the tap with a zeroed virtio-net header (their checksums are complete).

Module map: ``tap`` (frame I/O and pcap), ``icmp`` (ping flows), this file
(dispatch, broker requests, timers).
"""

from __future__ import annotations

import collections
import errno
import functools
import os
import select
import socket
import time
from collections.abc import Callable

from sandbox.fdpass import FdPassError, recv_fds

from .. import ipc
from ..config import Config
from ..log import DEBUG, log
from ..proto import arp, ndp
from ..proto.dnsname import encode_names
from ..proto.packet import (
    ETH_P_ARP,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
    parse_frame,
)
from . import dhcp as dhcp_glue
from . import report
from .busypoll import BusyPoll
from .faults import EXIT_FAULTS, FaultLimit, Faults
from .icmp import PingFlows
from .splice import Splicer
from .tap import Tap
from .tcp import TcpFlows
from .udp import UdpFlows
from .udpsplice import UdpSplicer

TIMER_INTERVAL = 1.0  # seconds between housekeeping passes, as passt
RA_INTERVAL = 60.0  # unsolicited router advertisements (RFC 4861 allows 4-1800 s)
EPOLL_EVENTS = 64
BULK_BYTES = 8192  # bytes per wake-up (tap frames, splice) above which the loop does not poll
_monotonic = time.monotonic


class BrokerClient:
    """The worker's side of the broker socket: asynchronous fd requests.

    Every op keeps to its quota (ipc.QUOTAS: in flight, per second); the
    parent kills a worker that does not. What a quota holds back waits in
    that op's own backlog (at most ``per_second`` requests), so a flood of
    one kind (guest SYNs, UDP flows) never delays another; past that the
    request is refused at once with EAGAIN.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        self.pending: dict[int, tuple[int, Callable[[int | None, int], None]]] = {}  # seq -> (op, cb)
        n = ipc.OP_MAX + 1
        self.inflight = [0] * n
        self.sent = [0] * n  # in the current window
        self.window = 0  # int(time.monotonic()), as the parent counts
        q = ipc.QUOTAS
        self.max_inflight = [q[op].inflight if op in q else 0 for op in range(n)]
        self.per_second = [q[op].per_second if op in q else 0 for op in range(n)]
        self.backlog: dict[int, collections.deque[tuple]] = {op: collections.deque() for op in q}
        self.waiting = 0  # requests in the backlogs
        self.refused = 0  # refused with EAGAIN: the backlog was full
        self.lost_fds = 0  # replies whose fd did not arrive (MSG_CTRUNC: out of fds)
        # the last STATUS_PENDING reply's seq and callback: a failure of its
        # connect() can only come next (ipc.py), so one is all there is to keep
        self.late: tuple[int, Callable[[int | None, int], None]] | None = None
        # every port message (ipc.PORT_MAGICS: listener announcements and
        # drops, -t and -u included) when set
        self.on_port_msg: Callable[[tuple[bytes, int, int], list[int]], None] | None = None
        # the worker's fault guard for a flow's reply callback (worker/faults.py)
        self.on_fault: Callable[[Exception, Callable[[], None]], None] | None = None
        # a connection the parent accepted on a forwarded listener (ipc.ACCEPT), when set
        self.on_accept: Callable[[bytes, list[int]], None] | None = None
        # the control API's report (worker/report.py) for a query id, when set
        self.on_query: Callable[[int], bytes] | None = None

    def request(self, op: int, family: int, cb: Callable[[int | None, int], None],
                port: int = 0, addr: bytes = b"", arg: int = 0,
                reset: Callable[[], None] | None = None) -> None:
        """Ask for an fd; cb(fd or None, status) runs when the reply comes.

        status: 0, a positive errno (no fd), ipc.STATUS_CONNECTED (a
        connect that has already completed) or ipc.STATUS_PENDING (a TCP
        connect the parent starts after the reply; should connect() fail,
        cb runs once more, with None and the errno). EMFILE: the reply's
        fd was lost (the worker is out of fds); EAGAIN: over the op's quota
        with its backlog full.

        Also the in-flight bound keeps a burst (1,000 guest SYNs) from
        filling both directions of the socket pair.

        ``reset``: the request is a flow's, and reset() ends that flow should
        cb raise (worker/faults.py, through ``on_fault``).
        """
        if reset is not None and self.on_fault is not None:
            cb = self._guarded(cb, reset)
        now = int(_monotonic())
        if now != self.window:
            self._new_window(now)
        if (self.inflight[op] >= self.max_inflight[op] or self.sent[op] >= self.per_second[op]
                or self.backlog[op]):
            bl = self.backlog[op]
            if len(bl) >= self.per_second[op]:
                self.refused += 1
                if self.refused == 1 or log.enabled(DEBUG):
                    log.warn(f"broker: {ipc.OP_NAMES[op]} requests over quota, refusing (EAGAIN)")
                cb(None, errno.EAGAIN)
                return
            bl.append((op, family, cb, port, addr, arg))
            self.waiting += 1
            return
        self._send(op, family, cb, port, addr, arg)

    def _guarded(self, cb: Callable[[int | None, int], None],
                 reset: Callable[[], None]) -> Callable[[int | None, int], None]:
        """cb behind the per-flow fault guard: an exception resets the flow."""
        on_fault = self.on_fault
        assert on_fault is not None

        def guarded(fd: int | None, status: int) -> None:
            try:
                cb(fd, status)
            except FaultLimit:
                raise
            except Exception as e:  # noqa: BLE001 - the per-flow boundary (worker/faults.py)
                on_fault(e, reset)

        return guarded

    def _send(self, op: int, family: int, cb: Callable[[int | None, int], None],
              port: int, addr: bytes, arg: int) -> None:
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        self.pending[seq] = (op, cb)
        self.inflight[op] += 1
        self.sent[op] += 1
        try:
            self.sock.send(ipc.pack_request(seq, op, family, port, addr, arg))
        except OSError as e:
            del self.pending[seq]
            self.inflight[op] -= 1
            cb(None, e.errno or 0)

    def _new_window(self, now: int) -> None:
        self.window = now
        self.sent = [0] * len(self.sent)

    def pump(self) -> None:
        """Send what the backlogs hold, as far as the quotas allow."""
        now = int(_monotonic())
        if now != self.window:
            self._new_window(now)
        for op, bl in self.backlog.items():
            while bl and self.inflight[op] < self.max_inflight[op] and self.sent[op] < self.per_second[op]:
                self.waiting -= 1
                self._send(*bl.popleft())

    def readable(self, one: bool = False) -> bool:
        """Handle every reply waiting (``one``: the first only); False when the parent has gone.

        The loop passes ``one``: the socket is watched level-triggered, so
        epoll reports it again while anything waits, and the common case (a
        message per wake-up: a reply, a connection the parent accepted)
        spares the recvmsg that would find the socket empty (2-5 µs with
        its exception, on every new connection of three of the crr paths).
        """
        try:
            return self._readable(one)
        finally:
            if self.waiting:
                self.pump()

    def _complete(self, seq: int) -> Callable[[int | None, int], None] | None:
        """The callback of request seq, its in-flight slot freed; None if none is pending."""
        entry = self.pending.pop(seq, None)
        if entry is None:
            return None
        op, cb = entry
        self.inflight[op] -= 1
        return cb

    def _lost_fd(self, data: bytes) -> None:
        """A message arrived without its fd (MSG_CTRUNC): complete its request with EMFILE."""
        self.lost_fds += 1
        if self.lost_fds == 1:
            log.warn("broker: a reply's fd was lost (out of fds?); its flow is dropped")
        reply = ipc.unpack_reply(data)
        if reply is None:
            return  # a port announcement: that listener is not served
        cb = self._complete(reply[0])
        if cb is not None:
            cb(None, errno.EMFILE)

    def _readable(self, one: bool = False) -> bool:
        first = True
        while first or not one:
            first = False
            try:
                data, fds = recv_fds(self.sock, 64, 2, socket.MSG_DONTWAIT)  # 2: a splice pair
            except BlockingIOError:
                return True
            except FdPassError as e:  # out of fds: the data is whole, its fd is lost
                self._lost_fd(e.data)
                continue
            except OSError:
                return False
            if not data:
                for fd in fds:
                    os.close(fd)
                return False
            if data[:4] == ipc.QUERY_MAGIC:
                self._query(data, fds)
                continue
            if data[:4] == ipc.ACCEPT_MAGIC and self.on_accept is not None:
                self.on_accept(data, fds)  # a connection the parent accepted (setup/acceptor.py)
                continue
            pmsg = ipc.unpack_port_msg(data) if self.on_port_msg is not None else None
            if pmsg is not None and self.on_port_msg is not None:
                self.on_port_msg(pmsg, fds)
                continue
            reply = ipc.unpack_reply(data)
            if reply is None:
                for fd in fds:
                    os.close(fd)
                continue
            seq, status = reply
            cb = self._complete(seq)
            late, self.late = self.late, None
            if cb is None and late is not None and late[0] == seq and status > 0 and not fds:
                cb = late[1]  # the connect() after a STATUS_PENDING reply failed
            fd = fds[0] if fds and status <= 0 else None  # 0, STATUS_CONNECTED or STATUS_PENDING
            if fd is not None and status == ipc.STATUS_PENDING and cb is not None:
                self.late = (seq, cb)
            for extra in fds[1:] if fd is not None else fds:
                os.close(extra)
            if cb is None:
                if fd is not None:
                    os.close(fd)
                continue
            cb(fd, status)
        return True


    def _query(self, data: bytes, fds: list[int]) -> None:
        """The parent asks for a report (control API): one OP_REPORT record.

        A blocking send: the parent reads its end in every pass of its loop
        and never waits for the worker, so the send completes; a report
        lost here would leave the parent's query unanswered for good.
        """
        for fd in fds:
            os.close(fd)
        qid = ipc.unpack_query(data)
        if qid is None or self.on_query is None:
            return
        try:
            self.sock.send(self.on_query(qid))
        except OSError as e:  # the parent is gone
            log.debug(f"broker: report not sent: {e.strerror}")


class Worker:
    """State of the translation loop."""

    def __init__(self, cfg: Config, tap: Tap, broker_sock: socket.socket, guest_mac: bytes | None):
        self.cfg = cfg
        self.tap = tap
        self.broker = BrokerClient(broker_sock)
        self.ep = select.epoll()
        self.waiter = BusyPoll(self.ep.poll)
        self.handlers: dict[int, Callable[[int], None]] = {}
        # per-flow fds: what resets the flow when its handler raises (worker/faults.py)
        self.resets: dict[int, Callable[[], None]] = {}
        self.faults = Faults()
        self.core: set[int] = set()  # fds of no flow whose faults end the worker (run)
        self.drops: dict[str, int] = {}
        self.drops_logged = 0
        self.frames_in = 0
        self.proto_frames: dict[int, int] = {}  # frames from the guest by IP protocol (-1: not IP)
        self.proto_bytes: dict[int, int] = {}  # their bytes
        self.bytes_moved = 0  # frame bytes read from and written to the tap (or the stream)
        self.running = True
        self.guest_mac = guest_mac or b"\xff" * 6
        self.guest4 = cfg.v4.addr.packed if cfg.v4 else None
        self.guest6 = cfg.v6.addr.packed if cfg.v6 else None
        self.pings = PingFlows(self)
        self.tcp = TcpFlows(self)
        self.udpsplice = UdpSplicer(self)  # pasta: UDP between the loopbacks (-U, -u)
        self.udp = UdpFlows(self)
        self.splice = Splicer(self)  # owns the forwarded ports; splices in pasta
        self.broker.on_port_msg = self.splice.port_msg
        self.broker.on_fault = self._reply_fault
        self.broker.on_accept = self.splice.accepted
        self.broker.on_query = functools.partial(report.build, self)
        o = cfg.opts
        self.ra_on = cfg.v6 is not None and not o.no_ndp and not o.no_ra
        self.ra_params = None
        if cfg.v6 is not None:
            dns = tuple(d.packed for d in cfg.v6.dns) if o.dhcp_dns else ()
            self.ra_params = ndp.RaParams(
                our_mac=cfg.our_mac, our_ll=cfg.v6.our_ll.packed, prefix=cfg.v6.addr.packed,
                mtu=cfg.mtu, dns=dns,
                search=encode_names(dhcp_glue.usable_search(cfg.search)) if dns else b"")
        self.services = self._load_services()
        self.next_ra = time.monotonic() + 1.0

    def _load_services(self) -> dict[str, object]:
        """DHCP and DHCPv6 responders (see worker/dhcp.py)."""
        return dhcp_glue.services(self)

    now = staticmethod(time.monotonic)

    # -- fd registry --------------------------------------------------------
    def add(self, fd: int, handler: Callable[[int], None], events: int = select.EPOLLIN,
            reset: Callable[[], None] | None = None) -> None:
        """Watch fd; handler(events) runs when it is ready.

        ``reset``: fd belongs to one flow, and reset() ends that flow should
        handler raise (worker/faults.py). Without it (listeners, the tap, the
        broker socket) an exception from handler is counted as a fault and
        nothing is reset; for the tap and the broker socket it ends the worker.
        """
        self.handlers[fd] = handler
        if reset is not None:
            self.resets[fd] = reset
        self.ep.register(fd, events)

    def remove(self, fd: int) -> None:
        """Stop watching fd (the caller closes it)."""
        self.resets.pop(fd, None)
        if self.handlers.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError:
                pass

    # -- guest side ---------------------------------------------------------
    def drop(self, reason: str) -> None:
        """Count a frame we could not use."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if log.enabled(DEBUG):
            log.trace(f"dropped frame: {reason}")

    def send(self, frame: bytes) -> None:
        """One frame to the guest."""
        self.tap.write(frame)

    def on_frame(self, frame: memoryview) -> None:
        """Dispatch one frame from the guest; a fault resets the frame's flow (worker/faults.py)."""
        try:
            if not self.udp.fast_from_guest(frame):  # a datagram of a known UDP flow, or not
                self.dispatch(frame)
        except FaultLimit:
            raise
        except Exception as e:  # noqa: BLE001 - the per-flow boundary: see worker/faults.py
            self._frame_fault(frame, e)

    def _frame_fault(self, frame: memoryview, exc: Exception) -> None:
        """A guest frame's handler raised: count, log, reset its flow (TCP, UDP, ICMP)."""
        p = None
        try:
            p = parse_frame(frame)
        except Exception:  # noqa: BLE001 - the parser itself failed: no flow to reset
            pass
        table = None
        if isinstance(p, Packet) and p.version in (4, 6):
            if p.proto == IPPROTO_TCP:
                table = self.tcp
            elif p.proto == IPPROTO_UDP:
                table = self.udp
            elif p.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
                table = self.pings
        where = "a guest frame" if table is None else f"a guest frame of {table.fault_name(p)}"
        self.faults.record(where, exc)
        if table is not None:
            try:
                table.fault(p)
            except FaultLimit:
                raise
            except Exception as e:  # noqa: BLE001
                self.faults.reset_failed += 1
                self.faults.record(f"the reset of {where}", e)

    def _fd_fault(self, fd: int, exc: Exception) -> None:
        """The handler of a host fd raised: count, log, reset the flow it belongs to.

        The tap and the broker socket belong to no flow: their faults end
        the worker (re-raised), as before.
        """
        if fd in self.core:
            raise exc
        reset = self.resets.get(fd)
        self.faults.record(f"the handler of fd {fd}" + ("" if reset is not None else " (no flow)"), exc)
        if reset is None:
            return
        try:
            reset()
        except FaultLimit:
            raise
        except Exception as e:  # noqa: BLE001
            self.faults.reset_failed += 1
            self.remove(fd)  # at least stop its events; the fd stays with its flow
            self.faults.record(f"the reset of fd {fd}'s flow", e)

    def _reply_fault(self, exc: Exception, reset: Callable[[], None]) -> None:
        """A flow's broker reply callback raised: count, log, reset the flow."""
        self.faults.record("a broker reply of a flow", exc)
        try:
            reset()
        except FaultLimit:
            raise
        except Exception as e:  # noqa: BLE001
            self.faults.reset_failed += 1
            self.faults.record("the reset of a flow after its broker reply", e)

    def dispatch(self, frame: memoryview) -> None:
        """Dispatch one frame from the guest (unguarded: on_frame is the guard)."""
        self.frames_in += 1
        p = parse_frame(frame)
        if isinstance(p, str):
            self.drop(p)
            return
        k = p.proto if p.version else -1
        pf = self.proto_frames
        pf[k] = pf.get(k, 0) + 1
        pb = self.proto_bytes
        pb[k] = pb.get(k, 0) + len(frame)
        if p.src_mac[0] & 1:
            self.drop("source mac multicast")
            return
        if self.guest_mac != p.src_mac:
            self.guest_mac = p.src_mac
        if p.version == 4:
            if self.cfg.v4 is None:
                return self.drop("ipv4 disabled")
            if p.proto == IPPROTO_TCP:
                return self.tcp.from_guest(p)
            if p.proto == IPPROTO_ICMP:
                return self.pings.from_guest(p)
            if p.proto == IPPROTO_UDP:
                return self.on_udp(p)
            return self.drop(f"protocol {p.proto} not handled")
        if p.version == 6:
            if self.cfg.v6 is None:
                return self.drop("ipv6 disabled")
            if p.proto == IPPROTO_TCP:
                return self.tcp.from_guest(p)
            if p.proto == IPPROTO_ICMPV6:
                return self.on_icmpv6(p)
            if p.proto == IPPROTO_UDP:
                return self.on_udp(p)
            return self.drop(f"protocol {p.proto} not handled")
        if p.ethertype == ETH_P_ARP:
            if self.cfg.v4 is None:
                return None
            r = arp.arp_reply(p, self.cfg.our_mac, self.guest4)
            if isinstance(r, str):
                return self.drop(r)
            if r is not None:
                self.send(r)
        return None

    def on_icmpv6(self, p: Packet) -> None:
        """NDP or echo from the guest."""
        if p.l4len < 4:
            return self.drop("short icmpv6")
        typ = p.frame[p.l4]
        if 133 <= typ <= 137:
            if self.cfg.opts.no_ndp or self.ra_params is None:
                return None
            r = ndp.handle(p, self.ra_params, self.guest6, self.ra_on)
            if isinstance(r, str):
                return self.drop(r)
            if r is not None:
                self.send(r)
            return None
        return self.pings.from_guest(p)

    def on_udp(self, p: Packet) -> None:
        """UDP from the guest: the built-in services, then worker/udp.py."""
        if p.l4len < 8:
            return self.drop("short udp")
        dport = int.from_bytes(p.frame[p.l4 + 2 : p.l4 + 4], "big")
        handler = self.services.get(f"udp{p.version}:{dport}")
        if handler is not None:
            handler(p)  # type: ignore[operator]
            return None
        return self.udp.from_guest(p)

    # -- loop ---------------------------------------------------------------
    def timer(self, now: float) -> None:
        """Housekeeping once a second."""
        self.pings.expire(now)
        self.tcp.timer(now)
        self.udp.timer(now)
        self.splice.timer(now)
        self.udpsplice.timer(now)
        total = sum(self.drops.values())
        if total != self.drops_logged:
            self.drops_logged = total
            log.debug(self.drop_summary())
        if self.ra_on and now >= self.next_ra and self.ra_params is not None:
            self.next_ra = now + RA_INTERVAL
            self.send(ndp.router_advert(self.ra_params, ndp.ALL_NODES, ndp.ALL_NODES_MAC))

    def run(self) -> int:
        """Serve until the parent goes away; return the exit status.

        EXIT_FAULTS when too many flow handlers raised (worker/faults.py).
        """
        try:
            return self._run()
        except FaultLimit as e:
            log.err(f"too many faults in flow handlers: {e}; worker exiting (fail closed)")
            return EXIT_FAULTS

    def _run(self) -> int:
        if hasattr(self.tap, "on_gone"):  # pasta's tap (passt's stream reports its client itself)
            self.tap.on_gone = self._tap_gone
        if hasattr(self.tap, "on_attach"):  # passt: a client connecting again
            self.tap.on_attach = self._link_up
        self.add(self.tap.fd, self._tap_event)
        self.udp.defer = True  # guest datagrams go out after each pass over the tap, in runs
        self.add(self.broker.sock.fileno(), self._broker_event)
        self.core = {self.tap.fd, self.broker.sock.fileno()}
        next_timer = time.monotonic() + TIMER_INTERVAL
        wait = self.waiter.wait
        tap = self.tap
        handlers = self.handlers
        tcp = self.tcp
        delayed = tcp.delayed
        splice = self.splice
        lowat = splice.lowat
        broker = self.broker
        while self.running:
            due = next_timer
            if delayed:
                due = min(due, tcp.delayed_due())
            if lowat:
                due = min(due, splice.lowat_due)
            if broker.waiting:  # a backlog held back by a per-second quota: the next window
                due = min(due, broker.window + 1.0)
            timeout = max(0.0, due - time.monotonic())
            # a wake-up that moved bulk data sleeps at once: polling would
            # take the CPU from the processes at both ends of the transfer
            self.bytes_moved += tap.moved
            bulk = tap.moved + splice.moved > BULK_BYTES
            tap.moved = splice.moved = 0
            for fd, ev in wait(timeout, EPOLL_EVENTS, bulk):
                h = handlers.get(fd)
                if h is not None:
                    try:
                        h(ev)
                    except FaultLimit:
                        raise
                    except Exception as e:  # noqa: BLE001 - the per-flow boundary (worker/faults.py)
                        self._fd_fault(fd, e)
            if tcp.pending or tcp.ending:
                tcp.flush()
            now = time.monotonic()
            if delayed:
                tcp.flush_delayed(now)
            if lowat and now >= splice.lowat_due:
                splice.check_lowat(now)
            if broker.waiting:
                broker.pump()
            if now >= next_timer:
                next_timer = now + TIMER_INTERVAL
                self.timer(now)
        return 0

    def _tap_event(self, ev: int) -> None:
        """Frames from the guest, then the UDP datagrams they held for their sockets."""
        self.tap.readable(self.on_frame, ev)
        udp = self.udp
        if udp.out or udp.fast_frames:
            udp.flush()

    def _link_up(self) -> None:
        """passt's client connected again: TCP resends at once (tcp.link_up)."""
        log.debug("client connected again: connections resend what was in flight")
        self.tcp.link_up(self.now())

    def _tap_gone(self, why: str) -> None:
        """The guest's side is gone for good: end the loop (the parent then ends the run)."""
        if self.running:
            log.err(f"{why}, exiting")
        self.running = False

    def _broker_event(self, ev: int) -> None:
        if not self.broker.readable(one=True) or ev & (select.EPOLLHUP | select.EPOLLERR):
            log.debug("parent went away, worker exiting")
            self.running = False

    def drop_summary(self) -> str:
        """Dropped frames, in total and by reason."""
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(self.drops.items()))
        return f"malformed or unhandled frames dropped: {sum(self.drops.values())} ({detail})"

    def stats(self) -> str:
        """One line of counters."""
        return (f"frames from guest: {self.frames_in}, {self.drop_summary()}, {self.udp.summary()}, "
                f"{self.tcp.summary()}, {self.splice.summary()}, {self.udpsplice.summary()}, "
                f"broker requests refused over quota: {self.broker.refused}, "
                f"replies whose fd was lost: {self.broker.lost_fds}, {self.faults.summary()}, "
                f"{self.waiter.summary()}")


TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms; mypy knows the name)
if TYPE_CHECKING:
    from .contract import Tables

    def _keeps_the_contract(w: Worker) -> Tables:
        """For mypy: the Worker is what every table is typed against (worker/contract.py)."""
        return w
