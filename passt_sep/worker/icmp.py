# SPDX-License-Identifier: GPL-2.0-or-later
"""ICMP/ICMPv6 echo flows through ping sockets from the broker.

Sandboxed only. One ping socket per (family, guest identifier, to the
gateway or not), asked of the broker the first time the three are seen;
echo requests that arrive before the socket are queued (a few per flow).
The kernel picks the socket's identifier, so replies get the guest's back.
Requests to the address mapped to the host's loopback (the gateway unless
--no-map-gw, or --map-host-loopback) go to the host's loopback, through a
flow of their own: the worker names that address in the request, and the
broker makes that socket for loopback only, without the
--outbound-if*/--outbound binding the others get (which would make
loopback unreachable). Replies from loopback come back from the mapped
address. Requests to --map-guest-addr go to the guest's own address on
the host, and replies from there come back from the mapped address.
Idle flows close after 60 s.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import TYPE_CHECKING

from .. import ipc
from ..log import log
from ..proto import icmp
from ..proto.packet import Packet
from .addrmap import HostAddrs

if TYPE_CHECKING:
    from .loop import Worker

FLOW_TIMEOUT = 60.0  # seconds, as passt's ICMP_ECHO_TIMEOUT
MAX_FLOWS = 1024  # per family; identifiers beyond are dropped
QUEUE_MAX = 8  # requests held while the broker makes the socket


class Flow:
    """One echo identifier of the guest, to the mapped gateway or elsewhere."""

    __slots__ = ("version", "ident", "to_gw", "sock", "queue", "last", "guest_src")

    def __init__(self, version: int, ident: int, to_gw: bool) -> None:
        self.version, self.ident, self.to_gw = version, ident, to_gw
        self.sock: socket.socket | None = None
        self.queue: list[tuple[bytes, icmp.Echo]] = []
        self.last = 0.0
        self.guest_src = b""


class PingFlows:
    """Echo flows of both families."""

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.flows: dict[tuple[int, int, bool], Flow] = {}
        self.warned = False
        self.addrs = HostAddrs(w.cfg)

    def _to_gw(self, version: int, dst: bytes) -> bool:
        """Whether dst is the address mapped to the host's loopback."""
        return dst == self.addrs.lo[version]

    def _target(self, flow: Flow, dst: bytes) -> str:
        if flow.to_gw:
            return "127.0.0.1" if flow.version == 4 else "::1"
        if dst == self.addrs.guest_map[flow.version]:
            dst = self.addrs.own[flow.version] or dst
        return str(ipaddress.ip_address(dst))

    def from_guest(self, p: Packet) -> None:
        """An ICMP message from the guest: forward echo requests."""
        if self.w.cfg.opts.no_icmp:
            return self.w.drop("icmp disabled")
        e = icmp.parse_echo(p)
        if isinstance(e, str):
            return self.w.drop(e)
        if e is None:
            return self.w.drop("icmp type not handled")
        to_gw = self._to_gw(p.version, p.dst)
        key = (p.version, e.ident, to_gw)
        flow = self.flows.get(key)
        now = self.w.now()
        if flow is None:
            if len(self.flows) >= 2 * MAX_FLOWS:
                return self.w.drop("icmp flow table full")
            flow = self.flows[key] = Flow(p.version, e.ident, to_gw)
            fam = socket.AF_INET if p.version == 4 else socket.AF_INET6
            # the gateway is named, so that the broker makes a loopback socket
            self.w.broker.request(ipc.OP_PING_SOCKET, fam,
                                  lambda fd, err, f=flow: self._got_socket(f, fd, err),
                                  addr=p.dst if to_gw else b"")
        flow.last = now
        flow.guest_src = p.src
        if flow.sock is None:
            if len(flow.queue) < QUEUE_MAX:
                flow.queue.append((p.dst, e))
            return None
        self._send(flow, p.dst, e)
        return None

    def _got_socket(self, flow: Flow, fd: int | None, err: int) -> None:
        if fd is None:
            if not self.warned:
                self.warned = True
                log.warn(f"ICMP echo: no ping socket ({os.strerror(err) if err else 'refused'}); "
                         "check net.ipv4.ping_group_range")
            self.flows.pop((flow.version, flow.ident, flow.to_gw), None)
            return
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        proto = socket.IPPROTO_ICMP if flow.version == 4 else socket.IPPROTO_ICMPV6
        flow.sock = socket.socket(fam, socket.SOCK_DGRAM, proto, fileno=fd)
        flow.sock.setblocking(False)
        self.w.add(fd, lambda ev, f=flow: self._readable(f))
        for dst, e in flow.queue:
            self._send(flow, dst, e)
        flow.queue.clear()

    def _send(self, flow: Flow, dst: bytes, e: icmp.Echo) -> None:
        assert flow.sock is not None
        try:
            flow.sock.sendto(icmp.echo_request_payload(flow.version, e),
                             (self._target(flow, dst), 0))
        except OSError as ex:
            log.debug(f"ICMP echo to {ipaddress.ip_address(dst)}: {ex.strerror}")

    def _readable(self, flow: Flow) -> None:
        sock = flow.sock
        if sock is None:
            return
        w = self.w
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65536)
            except BlockingIOError:
                return
            except OSError:
                return
            r = icmp.parse_reply(flow.version, data)
            if r is None:
                continue
            src = ipaddress.ip_address(addr[0].split("%")[0])
            addrs = self.addrs
            if src.is_loopback:
                raw = addrs.lo[flow.version]
            elif src.packed == addrs.own[flow.version] and addrs.guest_map[flow.version]:
                raw = addrs.guest_map[flow.version]
            else:
                raw = src.packed
            if raw is None:
                continue
            reply = icmp.Echo(flow.ident, r.seq, r.data)
            w.send(icmp.echo_reply_frame(flow.version, w.guest_mac, w.cfg.our_mac, raw,
                                         flow.guest_src, reply))

    def expire(self, now: float) -> None:
        """Close flows idle for longer than the timeout."""
        for key, flow in list(self.flows.items()):
            if now - flow.last > FLOW_TIMEOUT and flow.sock is not None:
                self.w.remove(flow.sock.fileno())
                flow.sock.close()
                del self.flows[key]
