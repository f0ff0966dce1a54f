# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP/ICMPv6 echo flows through ping sockets from the broker.

Sandboxed only. One ping socket per (family, guest identifier,
destination), asked of the broker the first time the three are seen, with
the destination as the guest wrote it: the parent decides where that is on
the host (the address mapped to the host's loopback, the gateway unless
--no-map-gw, or --map-host-loopback, leads to 127.0.0.1 / ::1 on a socket
bound to lo; --map-guest-addr to the guest's own address on the host;
--egress-deny/--egress-allow may refuse it) and hands over a socket
connected there. Echo requests go out with send(), never with an address;
echo requests that arrive before the socket are queued (a few per flow).
The kernel picks the socket's identifier, so replies get the guest's back,
and they come back from the destination the guest pinged. A reply whose
source is not the flow's destination on the host (a ping socket is matched
by identifier, not by peer) is dropped.

A refused destination (the broker's EACCES, or any other failure): the
queued echoes are dropped and counted, and so is every echo of that flow
for RETRY_AFTER seconds; the next one after that asks again. Flows idle
for longer than FLOW_TIMEOUT close. When the table is full, flows without
a socket or idle for EVICT_IDLE make room, the longest idle first and up to
an eighth of the table in one pass (one sort per eighth, not a scan per
echo); when every flow has its socket and was used in the last EVICT_IDLE
seconds, the new flow's echo is dropped (DROP_FULL, counted as ``full``)
and room is looked for again a second later at the earliest. So a guest
pinging ever new identifiers or destinations cannot push out the flows it
is using, nor make each of its frames cost a walk of the table (the UDP
tables do the same, worker/flowsock.py).
"""

from __future__ import annotations

import errno
import os
import socket

from .. import ipc
from ..log import log
from ..proto import icmp
from ..proto.packet import Packet
from .addrmap import HostAddrs
from .flowsock import room
from .limits import ICMP_FDS

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from .contract import FlowLoop

FLOW_TIMEOUT = 60.0  # seconds, as passt's ICMP_ECHO_TIMEOUT
MAX_FLOWS = max(16, min(1024, ICMP_FDS // 2))  # per family (the table holds twice this, a socket each)
QUEUE_MAX = 8  # requests held while the broker makes the socket
RETRY_AFTER = 1.0  # seconds before asking the broker again after a refusal
LOOP4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
LOOP6 = socket.inet_pton(socket.AF_INET6, "::1")

DROP_REFUSED = "icmp destination refused"
DROP_BUSY = "icmp socket requests over quota"  # EAGAIN from the broker client (ipc.QUOTAS)
DROP_QUEUE = "icmp queue full"
DROP_STRANGER = "icmp reply from another source"
DROP_FULL = "icmp table full"


class Flow:
    """One echo identifier of the guest to one destination."""

    __slots__ = ("version", "ident", "dst", "peer", "sock", "queue", "last", "guest_src", "failed",
                 "why")

    def __init__(self, version: int, ident: int, dst: bytes, peer: bytes) -> None:
        self.version, self.ident, self.dst = version, ident, dst
        self.peer = peer  # where replies come from on the host
        self.sock: socket.socket | None = None
        self.queue: list[icmp.Echo] = []
        self.last = 0.0
        self.guest_src = b""
        self.failed = 0.0  # when the broker refused; asked again after RETRY_AFTER
        self.why = DROP_REFUSED  # the drop reason while failed


class PingFlows:
    """Echo flows of both families."""

    DROP_FULL = DROP_FULL  # (flowsock.room drops with it)

    def __init__(self, w: FlowLoop) -> None:
        self.w = w
        self.flows: dict[tuple[int, int, bytes], Flow] = {}
        self.addrs = HostAddrs(w.cfg)
        self.stats = {"flows": 0, "refused": 0, "send_errors": 0, "evicted": 0, "full": 0}
        self.max_flows = 2 * MAX_FLOWS  # both families
        self.room_after = 0.0  # a full table of flows in use: when to look for room again

    def _peer(self, version: int, dst: bytes) -> bytes:
        """The host-side address replies to dst come from (as the broker maps it)."""
        if dst == self.addrs.lo[version]:
            return LOOP4 if version == 4 else LOOP6
        if dst == self.addrs.guest_map[version]:
            return self.addrs.own[version] or dst
        return dst

    def from_guest(self, p: Packet) -> None:
        """An ICMP message from the guest: forward echo requests."""
        if self.w.cfg.opts.no_icmp:
            return self.w.drop("icmp disabled")
        e = icmp.parse_echo(p)
        if isinstance(e, str):
            return self.w.drop(e)
        if e is None:
            return self.w.drop("icmp type not handled")
        dst = bytes(p.dst)
        key = (p.version, e.ident, dst)
        flow = self.flows.get(key)
        now = self.w.now()
        if flow is None:
            if not room(self, now):  # full of flows in use: dropped and counted
                return None
            flow = self.flows[key] = Flow(p.version, e.ident, dst, self._peer(p.version, dst))
            self.stats["flows"] += 1
            self._request(flow)
        elif flow.failed:
            if now - flow.failed < RETRY_AFTER:
                flow.last = now
                return self.w.drop(flow.why)
            self._request(flow)
        flow.last = now
        flow.guest_src = bytes(p.src)
        if flow.sock is None:
            if flow.failed:  # (a refusal that came back at once)
                self.w.drop(flow.why)
            elif len(flow.queue) < QUEUE_MAX:
                flow.queue.append(e)
            else:
                self.w.drop(DROP_QUEUE)
            return None
        self._send(flow, e)
        return None

    def _request(self, flow: Flow) -> None:
        flow.failed = 0.0
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        self.w.broker.request(ipc.OP_PING_SOCKET, fam,
                              lambda fd, err, f=flow: self._got_socket(f, fd, err), addr=flow.dst,
                              reset=lambda f=flow: self.fault_flow(f))

    def _got_socket(self, flow: Flow, fd: int | None, err: int) -> None:
        if self.flows.get((flow.version, flow.ident, flow.dst)) is not flow:  # expired or evicted meanwhile
            if fd is not None:
                os.close(fd)
            return
        if fd is None:
            self.stats["refused"] += 1
            flow.failed = self.w.now() or 1e-9
            flow.why = DROP_BUSY if err == errno.EAGAIN else DROP_REFUSED
            log.debug(f"ICMP echo to {self._show(flow)}: "
                      f"{'refused' if err in (0, errno.EACCES) else os.strerror(err)}")
            for _ in flow.queue:
                self.w.drop(flow.why)
            flow.queue.clear()
            return
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        proto = socket.IPPROTO_ICMP if flow.version == 4 else socket.IPPROTO_ICMPV6
        flow.sock = socket.socket(fam, socket.SOCK_DGRAM, proto, fileno=fd)
        flow.sock.setblocking(False)
        self.w.add(fd, lambda ev, f=flow: self._readable(f), reset=lambda f=flow: self.fault_flow(f))
        for e in flow.queue:
            self._send(flow, e)
        flow.queue.clear()

    def _show(self, flow: Flow) -> str:
        return socket.inet_ntop(socket.AF_INET if flow.version == 4 else socket.AF_INET6, flow.dst)

    def _send(self, flow: Flow, e: icmp.Echo) -> None:
        assert flow.sock is not None
        try:
            flow.sock.send(icmp.echo_request_payload(flow.version, e))  # connected: no address
        except OSError as ex:
            self.stats["send_errors"] += 1
            log.debug(f"ICMP echo to {self._show(flow)}: {ex.strerror}")

    def _readable(self, flow: Flow) -> None:
        sock = flow.sock
        if sock is None:
            return
        w = self.w
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65536)
            except OSError:  # BlockingIOError included
                return
            r = icmp.parse_reply(flow.version, data)
            if r is None:
                continue
            try:
                src = socket.inet_pton(fam, addr[0].split("%")[0])
            except (OSError, ValueError):
                src = b""
            if src != flow.peer:
                w.drop(DROP_STRANGER)
                continue
            reply = icmp.Echo(flow.ident, r.seq, r.data)
            w.send(icmp.echo_reply_frame(flow.version, w.guest_mac, w.cfg.our_mac, flow.dst,
                                         flow.guest_src, reply))

    def fault_name(self, p: Packet) -> str:
        """The flow of a guest echo request, for a fault's log line."""
        return f"icmp flow to {socket.inet_ntop(socket.AF_INET if p.version == 4 else socket.AF_INET6, p.dst)}"

    def fault(self, p: Packet) -> None:
        """A guest frame's handling raised (worker/faults.py): drop its flow."""
        e = icmp.parse_echo(p)
        if isinstance(e, icmp.Echo):
            flow = self.flows.get((p.version, e.ident, bytes(p.dst)))
            if flow is not None:
                self.fault_flow(flow)

    def fault_flow(self, flow: Flow) -> None:
        """A handler of flow raised: drop the flow and its socket."""
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        self._close(flow)

    def _close(self, flow: Flow) -> None:
        self.flows.pop((flow.version, flow.ident, flow.dst), None)
        if flow.sock is not None:
            self.w.remove(flow.sock.fileno())
            flow.sock.close()
            flow.sock = None

    def expire(self, now: float) -> None:
        """Close flows idle for longer than the timeout (refused ones and
        those still waiting for the broker too: a late socket is closed)."""
        for flow in list(self.flows.values()):
            if now - flow.last > FLOW_TIMEOUT:
                self._close(flow)
