# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP translation: guest datagrams onto host sockets and back.

Sandboxed only. Two kinds of state, both bounded and both expiring after
``FLOW_TIMEOUT`` (180 s, passt's UDP_CONN_TIMEOUT) without activity:

- **Outbound flows**, one per (family, guest source port). The first
  datagram asks the broker for a UDP socket of the host (``OP_UDP_SOCKET``;
  the parent binds it to the guest's port when it can, see
  ``setup.broker.Broker.udp_socket``); datagrams that arrive before the
  socket wait in a short queue. Destinations are translated on the way out:
  ``dns_match``:53 goes to ``dns_host``:53 (--dns-forward, or a resolver
  advertised as the loopback-mapped address: a loopback one, or one that
  is that address itself), the address mapped to the host's
  loopback (the gateway unless --no-map-gw, or --map-host-loopback) goes
  to the host's loopback, --map-guest-addr to the guest's own address on
  the host, anything else as addressed. Each flow remembers the
  translations it made, so replies come back from the address the guest
  wrote to; other loopback senders appear as the loopback-mapped address,
  the host's own address (which the guest shares) as --map-guest-addr if
  given (else as the loopback-mapped one), everyone else as themselves.
  Only guest traffic keeps a flow alive (as passt).
- **Inbound peers** of the -u sockets the parent bound before the worker
  started. In pasta, a datagram from a host loopback sender does not go to
  the guest over the tap: worker/udpsplice.py relays it to the namespace's
  loopback (and its replies back). A datagram from a peer becomes a frame to the guest's target
  port (port + delta) from the peer's real address (loopback and the host's
  own address appear as above); the peer is remembered, and what the
  guest sends back from the target port to that address goes out through
  the same -u socket to the real peer.

Frames toward the guest are built around the payload in place (received
with ``recvfrom_into`` behind room for the headers, ``proto.udp``): on the
pasta tap with a NEEDS_CSUM virtio-net header and the pseudo-header sum
only; when the tap object says ``needs_csum`` (passt's stream) with the
whole checksum computed here and a zero virtio-net header. Each socket is
drained up to ``RECV_BUDGET`` datagrams per wake-up (level-triggered, so
the rest comes at the next one).

Not done: fragments (dropped by ``proto.packet``; the guest kernel sends a
datagram up to the MTU, 65520 by default, whole: the tap offers no UDP
segmentation offload, so no UFO/USO frames arrive), IPv6 link-local
destinations other than the gateway (sendto without a scope fails and the
datagram is counted as dropped), multicast and broadcast (dropped).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from .. import ipc
from ..log import DEBUG, log
from ..proto import udp as pudp
from ..proto.packet import Packet
from .addrmap import ANY6, LOOP6, HostAddrs
from .flowsock import FLOW_TIMEOUT, RECV_BUDGET, SockFlow, SockFlows
from .flowsock import QUEUE_MAX as QUEUE_MAX  # re-exported (only flowsock checks it)
from .limits import NOFILE
from .udpsplice import KIND_HOST, loopback_family

if TYPE_CHECKING:
    from .loop import Worker

# FLOW_TIMEOUT (here only guest activity counts), RETRY_AFTER, QUEUE_MAX and RECV_BUDGET:
# worker/flowsock.py; NOFILE: worker/limits.py
REV_MAX = 64  # translated destinations remembered per flow
MAX_FLOWS = max(16, min(8192, NOFILE // 4))  # outbound flows, both families together
MAX_PEERS = 4096  # inbound senders remembered (they hold no fd of their own)

_LOOP4 = socket.inet_pton(socket.AF_INET, "127.0.0.1")
_V4MAPPED = bytes(10) + b"\xff\xff"


def _bad_destination(version: int, raw: bytes) -> str | None:
    """Why a guest may not send to raw, or None."""
    if version == 4:
        if raw[0] >= 224:
            return "udp to multicast or broadcast"
        if raw[0] == 127 or raw == bytes(4):
            return "udp to loopback or unspecified"
        return None
    if raw[0] == 0xFF:
        return "udp to multicast"
    if raw == LOOP6 or raw == ANY6:
        return "udp to loopback or unspecified"
    return None


class Flow(SockFlow):
    """One source port of the guest and its host socket (queue: (payload, target) pairs)."""

    __slots__ = ("version", "gport", "guest", "rev")

    def __init__(self, version: int, gport: int, now: float) -> None:
        super().__init__((version, gport), now)
        self.version, self.gport = version, gport
        self.guest = b""  # the guest's source address, replies go there
        # (host address, port) the flow sent to -> address the guest wrote
        self.rev: dict[tuple[bytes, int], bytes] = {}

    def __repr__(self) -> str:
        return f"<udp{self.version} guest port {self.gport}>"


class Inbound:
    """One -u socket bound by the parent."""

    __slots__ = ("sock", "fd", "port", "target", "family")

    def __init__(self, sock: socket.socket, port: int, target: int) -> None:
        self.sock, self.fd, self.port, self.target = sock, sock.fileno(), port, target
        self.family = sock.family


class Peer:
    """A sender seen on a -u socket: where the guest's replies go."""

    __slots__ = ("inbound", "sockaddr", "last")

    def __init__(self, inbound: Inbound, sockaddr: tuple, now: float) -> None:
        self.inbound, self.sockaddr, self.last = inbound, sockaddr, now


class UdpFlows(SockFlows[Flow]):
    """Outbound flows and inbound peers of both families."""

    DROP_QUEUE_FULL = "udp queue full"
    DROP_SEND = "udp send failed"

    def __init__(self, w: Worker, max_flows: int | None = None, max_peers: int | None = None) -> None:
        super().__init__(w, max_flows or MAX_FLOWS, {
            "flows": 0, "to_host": 0, "to_guest": 0, "refused": 0, "send_errors": 0,
            "too_big": 0, "queue_full": 0, "evicted": 0, "inbound": 0})
        cfg = w.cfg
        self.disabled = cfg.opts.no_udp
        self.max_peers = max_peers or MAX_PEERS
        self.inbound: dict[int, Inbound] = {}
        # (version, guest port, address as the guest sees it, peer port) -> Peer
        self.peers: dict[tuple[int, int, bytes, int], Peer] = {}
        self.addrs = HostAddrs(cfg)
        # the guest's address (also the host's own): last one seen in use
        self.guest = {4: cfg.v4.addr.packed if cfg.v4 else None,
                      6: cfg.v6.addr.packed if cfg.v6 else None}
        self.dns: dict[int, tuple[bytes, tuple[str, int]] | None] = {4: None, 6: None}
        for v, fam in ((cfg.v4, socket.AF_INET), (cfg.v6, socket.AF_INET6)):
            if v is not None and v.dns_match is not None and v.dns_host is not None:
                self.dns[4 if fam == socket.AF_INET else 6] = (v.dns_match.packed, (str(v.dns_host), 53))
        self.vnet_csum = not getattr(w.tap, "needs_csum", False)  # tap completes NEEDS_CSUM itself
        self.buf = bytearray(pudp.header_len(6) + 65536)
        self.view = memoryview(self.buf)
        # pasta: -u datagrams from host loopback senders take the splice path
        self.splice_loop = cfg.opts.mode == "pasta"

    # -- guest to host --------------------------------------------------------
    def from_guest(self, p: Packet) -> None:
        """One UDP datagram from the guest (the built-in services had their turn)."""
        if self.disabled:
            return self.w.drop("udp disabled")
        d = pudp.parse_datagram(p)
        if isinstance(d, str):
            return self.w.drop(d)
        if d.sport == 0 or d.dport == 0:
            return self.w.drop("udp port 0")
        version, dst = p.version, p.dst
        why = _bad_destination(version, dst)
        if why is not None:
            return self.w.drop(why)
        if version == 4 or not (p.src[0] == 0xFE and p.src[1] & 0xC0 == 0x80):
            self.guest[version] = p.src
        now = self.w.now()
        payload = p.frame[d.off : d.off + d.dlen]
        peer = self.peers.get((version, d.sport, dst, d.dport))
        if peer is not None:  # a reply to a sender on a -u socket
            peer.last = now
            return self._sendto(peer.inbound.sock, payload, peer.sockaddr)
        key = (version, d.sport)
        flow = self.flows.get(key)
        if flow is None:
            flow = self._add_flow(Flow(version, d.sport, now))
        flow.last = now
        flow.guest = p.src
        target = self._target(flow, dst, d.dport)
        if flow.sock is None:
            if self._refused(flow, now, "udp socket refused"):
                return None
            if self._queue_full(flow):
                return None
            flow.queue.append((bytes(payload), target))
            return None
        return self._sendto(flow.sock, payload, target)

    def _target(self, flow: Flow, dst: bytes, dport: int) -> tuple:
        """Where a datagram to dst:dport goes on the host; remember translations."""
        version = flow.version
        dns = self.dns[version]
        host: bytes | None = None
        if dns is not None and dport == 53 and dst == dns[0]:
            sa = dns[1]
            fam = socket.AF_INET if version == 4 else socket.AF_INET6
            host = socket.inet_pton(fam, sa[0])
            port = 53
        elif dst == self.addrs.lo[version]:
            host = _LOOP4 if version == 4 else LOOP6
            sa = ("127.0.0.1" if version == 4 else "::1", dport)
            port = dport
        elif dst == self.addrs.guest_map[version] and (own := self.addrs.own[version]) is not None:
            host = own
            sa = (socket.inet_ntop(socket.AF_INET if version == 4 else socket.AF_INET6, host), dport)
            port = dport
        else:
            fam = socket.AF_INET if version == 4 else socket.AF_INET6
            return (socket.inet_ntop(fam, dst), dport)
        rev = flow.rev
        if rev.get((host, port)) != dst:
            if len(rev) >= REV_MAX:
                rev.clear()
            rev[(host, port)] = dst
        return sa

    def _sendto(self, sock: socket.socket, payload: bytes | memoryview, target: tuple) -> None:
        try:
            sock.sendto(payload, target)
            self.stats["to_host"] += 1
        except OSError as e:  # EAGAIN included: a datagram lost, as on any full queue
            self._send_error(e, "udp", target)

    # -- the flow's socket (worker/flowsock.py does the rest) -------------------------
    def _ask(self, flow: Flow) -> tuple[int, int, int]:
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        return ipc.OP_UDP_SOCKET, fam, flow.gport

    def _wrap(self, flow: Flow, fd: int) -> socket.socket:
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        return socket.socket(fam, socket.SOCK_DGRAM, 0, fileno=fd)

    def _send_queued(self, sock: socket.socket, flow: Flow, item: tuple[bytes, tuple]) -> None:
        self._sendto(sock, item[0], item[1])

    # -- host to guest --------------------------------------------------------
    def _visible(self, version: int, raw: bytes) -> bytes | None:
        """The address a sender appears as to the guest (None: drop)."""
        return self.addrs.seen_as(version, raw, self.guest[version])

    def _flow_readable(self, flow: Flow, ev: int) -> None:
        sock = flow.sock
        if sock is None:
            return
        version = flow.version
        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        hlen = pudp.header_len(version)
        area = self.view[hlen : hlen + pudp.max_payload(version) + 1]
        for _ in range(RECV_BUDGET):
            try:
                n, addr = sock.recvfrom_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. ECONNREFUSED from an ICMP error: nothing to forward
                if log.enabled(DEBUG):
                    log.trace(f"{flow}: {e.strerror}")
                continue
            raw = socket.inet_pton(fam, addr[0].split("%")[0])
            src = flow.rev.get((raw, addr[1]))
            if src is None:
                src = self._visible(version, raw)
                if src is None:
                    continue
            self._to_guest(version, src, addr[1], flow.guest, flow.gport, n)

    def _to_guest(self, version: int, src: bytes, sport: int, dst: bytes, dport: int, n: int) -> None:
        if n > pudp.max_payload(version) or not dst:
            self.stats["too_big"] += 1
            return
        vnet = self.vnet_csum
        length = pudp.fill_frame(self.buf, version, self.w.guest_mac, self.w.cfg.our_mac, src, dst,
                                 sport, dport, n, vnet=True, offload=vnet)
        self.stats["to_guest"] += 1
        self.w.tap.write_raw(self.view[:length])

    # -- inbound (-u) ---------------------------------------------------------
    def add_listener(self, fd: int, port: int, target: int) -> None:
        """A UDP socket bound by the parent for a -u forward."""
        try:
            s = socket.socket(fileno=fd)
            s.setblocking(False)
        except OSError as e:
            log.warn(f"UDP forward of port {port}: {e.strerror}")
            os.close(fd)
            return
        ib = Inbound(s, port, target)
        self.inbound[fd] = ib
        self.w.add(fd, lambda ev, ib=ib: self._inbound_readable(ib, ev))

    def remove_listener(self, port: int) -> int:
        """Close the -u sockets of port (auto: gone from the namespace); how many."""
        gone = [ib for ib in self.inbound.values() if ib.port == port]
        for ib in gone:
            del self.inbound[ib.fd]
            if self.splice_loop:
                self.w.udpsplice.forget_socket(ib.fd)
            self.w.remove(ib.fd)
            ib.sock.close()
        if gone:
            for key in [k for k, peer in self.peers.items() if peer.inbound in gone]:
                del self.peers[key]
        return len(gone)

    def _inbound_readable(self, ib: Inbound, ev: int) -> None:
        w = self.w
        for _ in range(RECV_BUDGET):
            # the payload lands behind IPv6-sized headers; IPv4 frames start 20 bytes later
            h6 = pudp.header_len(6)
            try:
                n, addr = ib.sock.recvfrom_into(self.view[h6 : h6 + pudp.MAX_PAYLOAD4 + 1])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if self.disabled:
                continue
            if self.splice_loop:
                fam = loopback_family(addr[0])
                if fam is not None:  # host loopback sender: to the namespace's loopback
                    if n > pudp.MAX_PAYLOAD4:  # cut by the receive area: not relayed
                        self.stats["too_big"] += 1
                        continue
                    w.udpsplice.relay(KIND_HOST, ib.sock, ib.fd, fam, addr, ib.target,
                                      self.view[h6 : h6 + n])
                    continue
            if ib.family == socket.AF_INET6:
                raw = socket.inet_pton(socket.AF_INET6, addr[0].split("%")[0])
                if raw[:12] == _V4MAPPED:
                    version, raw = 4, raw[12:]
                else:
                    version = 6
            else:
                version, raw = 4, socket.inet_pton(socket.AF_INET, addr[0])
            guest = self.guest[version]
            src = self._visible(version, raw)
            if guest is None or src is None or self.addrs.gw[version] is None:
                continue
            if n > pudp.max_payload(version):
                self.stats["too_big"] += 1
                continue
            now = w.now()
            key = (version, ib.target, src, addr[1])
            peer = self.peers.get(key)
            if peer is None:
                if len(self.peers) >= self.max_peers:
                    self._expire_peers(now, force=True)
                peer = self.peers[key] = Peer(ib, addr, now)
                self.stats["inbound"] += 1
            else:
                peer.inbound, peer.sockaddr, peer.last = ib, addr, now
            if version == 4:  # move the payload next to IPv4-sized headers
                h4 = pudp.header_len(4)
                self.buf[h4 : h4 + n] = self.view[h6 : h6 + n]
            self._to_guest(version, src, addr[1], guest, ib.target, n)

    # -- life cycle -----------------------------------------------------------
    def _expire_peers(self, now: float, force: bool = False) -> None:
        for key, peer in list(self.peers.items()):
            if now - peer.last > FLOW_TIMEOUT:
                del self.peers[key]
        if force and len(self.peers) >= self.max_peers:
            oldest = min(self.peers, key=lambda k: self.peers[k].last)
            del self.peers[oldest]

    def timer(self, now: float) -> None:
        """Close flows and forget peers idle for longer than FLOW_TIMEOUT."""
        self._expire_flows(now)
        self._expire_peers(now)

    def summary(self) -> str:
        """Counters, one line."""
        return (f"udp: {len(self.flows)} flows, {len(self.peers)} inbound peers, "
                + ", ".join(f"{k} {v}" for k, v in self.stats.items()))

