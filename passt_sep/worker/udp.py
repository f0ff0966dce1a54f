# SPDX-License-Identifier: GPL-2.0-or-later
"""UDP translation: guest datagrams onto host sockets and back.

Sandboxed only. Two kinds of state, both bounded and both expiring after
``FLOW_TIMEOUT`` (180 s, passt's UDP_CONN_TIMEOUT) without activity:

- **Flows**, one per (family, guest source port, destination address as
  the guest wrote it, destination port). The first datagram asks the
  broker for a socket (``OP_UDP_SOCKET`` with that destination and the
  source port); the parent maps the destination (``dns_match``:53 to the
  resolver, the loopback-mapped address to the host's loopback,
  --map-guest-addr to the guest's own address on the host), checks it
  (setup/destpolicy.py), binds the guest's port when it can and
  **connects** the socket there (``setup.broker.Broker.udp_socket``).
  The worker sends with send() only (its seccomp policy kills a sendto
  with an address), and what comes back on the socket comes from that
  peer alone, so it is given to the guest as from the address and port
  the guest wrote: no translation per datagram. Datagrams that arrive
  before the socket wait in a short queue. Only guest traffic keeps a
  flow alive (as passt).
- **Port sockets**, one per (family, guest source port) with flows: the
  receive-only socket the parent binds, unconnected, on the host port the
  flows of that guest port use (``OP_UDP_PORT``, asked before the first
  flow's socket). A sender no flow is connected to lands there (a TFTP
  server answers from a new port) and reaches the guest as itself (the
  mapped addresses as below); when the guest answers, that is a new flow,
  decided by the parent like any other. The worker cannot send on it. It
  is closed once its guest port has no flow left.
- **Inbound peers** of the -u sockets the parent bound before the worker
  started. In pasta, a datagram from a host loopback sender does not go to
  the guest over the tap: worker/udpsplice.py relays it to the namespace's
  loopback (and its replies back). A datagram from a peer becomes a frame to the guest's target
  port (port + delta) from the peer's real address (loopback and the host's
  own address appear as the loopback-mapped address, the host's own as
  --map-guest-addr if given); the peer is remembered, and when the guest
  sends from the target port to that address and port, the flow opened
  for it asks for a socket bound beside the -u socket and connected to
  the real peer (``OP_UDP_REPLY``): the guest's replies go there, and the
  kernel delivers the peer's next datagrams to it too.

Frames toward the guest are built around the payload in place (received
with ``recvfrom_into`` behind room for the headers, ``proto.udp``): on the
pasta tap with a NEEDS_CSUM virtio-net header and the pseudo-header sum
only; when the tap object says ``needs_csum`` (passt's stream) with the
whole checksum computed here and a zero virtio-net header. Each socket is
drained up to ``RECV_BUDGET`` datagrams per wake-up (level-triggered, so
the rest comes at the next one), 64 per ``recvmmsg`` (worker/mmsg.py); on
the pasta tap a run of one sender and one size goes as one GSO_UDP_L4
frame (probed at the first: a tap that refuses it gets one frame per
datagram). Guest datagrams are held per flow until the loop's pass over
the tap ends (``flush``) and runs of one size leave as one ``send()`` with
UDP_SEGMENT (``flowsock.SockFlows._send_many``), or once a flow holds a
whole run; a USO frame from the tap (``Tap.seg``) is cut into its datagrams
first. A known flow's later frames skip the parse (``fast_from_guest``: the
decision is cached under the headers that do not change between its
datagrams; only the lengths are checked again). docs/udp.md, "Batching".

Not done: fragments (dropped by ``proto.packet``; the guest kernel sends a
datagram up to the MTU, 65520 by default, whole, or a UDP_SEGMENT run as
one USO frame), link-local, multicast
and broadcast destinations (refused: the worker drops multicast, broadcast,
loopback and unspecified ones itself, the parent the rest), replies from
another address or port than the one the guest wrote to (a connected
socket does not receive them; TFTP servers answer that way).
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from .. import ipc
from ..log import DEBUG, log
from ..loopback import loopback_family
from ..proto import udp as pudp
from ..proto.packet import Packet
from . import mmsg
from .addrmap import ANY6, LOOP6, HostAddrs
from .faults import FaultLimit
from .flowsock import (
    FLOW_TIMEOUT,
    RECV_BUDGET,
    RUN_BYTES,
    SEGMENTER,
    SockFlow,
    SockFlows,
    adopt,
    room,
)
from .flowsock import QUEUE_MAX as QUEUE_MAX  # re-exported (only flowsock checks it)
from .limits import UDP_FDS
from .udpsplice import KIND_HOST

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from .contract import Tables

# FLOW_TIMEOUT (here only guest activity counts), RETRY_AFTER, QUEUE_MAX and RECV_BUDGET:
# worker/flowsock.py; UDP_FDS: worker/limits.py (a flow's socket, and its port's at most)
MAX_FLOWS = max(16, min(8192, UDP_FDS // 2))  # outbound flows, both families together
MAX_PEERS = 4096  # inbound senders remembered (they hold no fd of their own)

_V4MAPPED = bytes(10) + b"\xff\xff"

VIRTIO_NET_HDR_GSO_UDP_L4 = 5  # linux/virtio_net.h (Linux 6.2)
_UDP_HDR = struct.Struct("!HHHH")
# the fast path for a guest datagram of a known flow (UdpFlows.fast_from_guest): the header
# bytes that stay the same for every datagram of a flow (all of them but the lengths, the
# IPv4 identification and the checksums) are the key, the lengths are checked per frame
_KEY4 = struct.Struct("16s4x4s2x12s")  # Ethernet, version/IHL/TOS; flags/fragment/TTL/protocol; addresses, ports
_LEN4 = struct.Struct("!H20xH")  # at 16: IPv4 total length; UDP length
_KEY6 = struct.Struct("18s2x38s")  # Ethernet, version/class/label; next header/hop limit, addresses, ports
_LEN6 = struct.Struct("!H38xH")  # at 18: IPv6 payload length; UDP length
FAST_MAX = 4096  # cached header keys (cleared when full: the next frames take the slow path)
_GSO = struct.Struct("<BHH")  # gso_type, hdr_len, gso_size: bytes 1..5 of the virtio-net header


def _show(version: int, raw: bytes) -> str:
    """Text form of a packed address (hex if it is none)."""
    try:
        return socket.inet_ntop(socket.AF_INET if version == 4 else socket.AF_INET6, raw)
    except (OSError, ValueError):
        return raw.hex()


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


def _unmapped(family: int, raw: bytes) -> tuple[int, bytes]:
    """(IP version, address) of a sender: a v4-mapped IPv6 address is IPv4."""
    if family == socket.AF_INET6 and raw[:12] != _V4MAPPED:
        return 6, raw
    return 4, raw[12:] if family == socket.AF_INET6 else raw


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


class Flow(SockFlow):
    """One (guest source port, destination) and its connected host socket (queue: payloads).

    ``peer``: set when the flow answers a sender of a -u socket (the
    socket comes from OP_UDP_REPLY instead of OP_UDP_SOCKET).
    """

    __slots__ = ("version", "gport", "dst", "dport", "guest", "peer")

    def __init__(self, version: int, gport: int, dst: bytes, dport: int, now: float,
                 peer: Peer | None = None) -> None:
        super().__init__((version, gport, dst, dport), now)
        self.version, self.gport, self.dst, self.dport = version, gport, dst, dport
        self.guest = b""  # the guest's source address, replies go there
        self.peer = peer

    def __repr__(self) -> str:
        fam = socket.AF_INET if self.version == 4 else socket.AF_INET6
        return f"<udp{self.version} {self.gport} -> {socket.inet_ntop(fam, self.dst)}:{self.dport}>"


class PortSock(SockFlow):
    """The receive-only socket of one guest source port (key: (version, port))."""

    __slots__ = ("version", "gport")

    def __init__(self, version: int, gport: int, now: float) -> None:
        super().__init__((version, gport), now)
        self.version, self.gport = version, gport

    def __repr__(self) -> str:
        return f"<udp{self.version} port {self.gport}>"


class PortSocks(SockFlows[PortSock]):
    """The port sockets of UdpFlows (which opens and closes them)."""

    def __init__(self, flows: UdpFlows, max_socks: int) -> None:
        super().__init__(flows.w, max_socks, {"flows": 0, "refused": 0, "send_errors": 0,
                                               "queue_full": 0, "evicted": 0, "full": 0})
        self.owner = flows

    def _ask(self, flow: PortSock) -> tuple[int, int, int, bytes, int]:
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        return ipc.OP_UDP_PORT, fam, flow.gport, b"", 0

    def _send_queued(self, sock: socket.socket, flow: PortSock, item: object) -> None:
        return None  # nothing is ever queued: the worker does not send on these

    def _flow_readable(self, flow: PortSock, ev: int) -> None:
        """A sender no flow of this port is connected to: to the guest, as itself."""
        sock = flow.sock
        if sock is None:
            return
        owner = self.owner
        version = flow.version
        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        hlen = pudp.header_len(version)
        area = owner.view[hlen : hlen + pudp.max_payload(version) + 1]
        for _ in range(RECV_BUDGET):
            try:
                n, addr = sock.recvfrom_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            raw = socket.inet_pton(fam, addr[0].split("%")[0])
            guest = owner.guest[version]
            src = owner._visible(version, raw)
            if src is None or guest is None:
                continue
            owner._to_guest(version, src, addr[1], guest, flow.gport, n)

    def close_unused(self, live: set[tuple[int, int]]) -> None:
        """Close the sockets of guest ports that have no flow left."""
        for ps in [ps for key, ps in self.flows.items() if key not in live]:
            self._close(ps)


class UdpFlows(SockFlows[Flow]):
    """Outbound flows and inbound peers of both families."""

    DROP_QUEUE_FULL = "udp queue full"
    DROP_SEND = "udp send failed"
    DROP_FULL = "udp table full"

    def __init__(self, w: Tables, max_flows: int | None = None, max_peers: int | None = None) -> None:
        super().__init__(w, max_flows or MAX_FLOWS, {
            "flows": 0, "to_host": 0, "to_guest": 0, "refused": 0, "send_errors": 0,
            "too_big": 0, "queue_full": 0, "evicted": 0, "full": 0, "inbound": 0,
            "gso_frames": 0, "uso_frames": 0})
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
        self.vnet_csum = not getattr(w.tap, "needs_csum", False)  # tap completes NEEDS_CSUM itself
        self.buf = bytearray(pudp.header_len(6) + 65536)
        self.view = memoryview(self.buf)
        # pasta: -u datagrams from host loopback senders take the splice path
        self.splice_loop = cfg.opts.mode == "pasta"
        self.ports = PortSocks(self, self.max_flows)
        # batching (docs/udp.md, "Batching"): recvmmsg on host sockets, runs of one size
        # toward the tap as one GSO_UDP_L4 frame, guest datagrams sent per pass in runs
        self.rb = mmsg.shared(False)
        self.rbn = mmsg.shared(True)
        self.gso = self.vnet_csum  # only the pasta tap takes virtio-net GSO frames
        self.write_parts = getattr(w.tap, "write_parts", None)  # writev (worker/tap.py)
        self.uso = hasattr(w.tap, "seg")  # the pasta tap: frames may be USO runs
        self.defer = False  # set by the loop, which then calls flush() after each tap pass
        self.out: dict[Flow, list[bytes]] = {}
        # fast_from_guest: header key -> flow whose socket is there; frames and bytes it took
        self.fast: dict[tuple[bytes, ...], Flow] = {}
        self.fast_frames = self.fast_bytes = 0
        if log.enabled(DEBUG):
            log.debug(f"udp: recvmmsg {'batches of ' + str(mmsg.SLOTS) if self.rb else 'unavailable'}, "
                      f"tap GSO_UDP_L4 frames {'to be probed' if self.gso else 'off (no virtio-net header)'}")

    # -- guest to host --------------------------------------------------------
    def fast_from_guest(self, frame: memoryview) -> bool:
        """A guest datagram of a flow that has its socket, held for ``flush``; False: not
        one (the loop's dispatch and ``from_guest`` take it, malformed or not).

        The loop calls this first for every frame from the tap. A flow's frames differ
        only in the lengths, the IPv4 identification and the checksums; the rest of the
        headers (MAC addresses, IP version and header length, TOS or traffic class and
        flow label, fragment bits, TTL, protocol, addresses, ports) is the key under
        which ``from_guest`` cached the flow once one of its frames had passed every
        check (``parse_frame``, the services' ports, the destination rules, the
        broker's socket). A frame with that key is the same decision again: only its
        lengths are checked here (anything odd goes the slow way, which drops and counts
        it). A USO frame (``Tap.seg``) always goes the slow way.
        """
        n = len(frame)
        if n < 42:  # no room for Ethernet, IPv4 and UDP headers
            return False
        if frame[12] == 8:  # ETH_P_IP
            if frame[23] != 17:
                return False
            flow = self.fast.get(_KEY4.unpack_from(frame))  # type: ignore[arg-type]
            if flow is None or flow.sock is None or (self.uso and self.w.tap.seg):
                return False
            tot, ulen = _LEN4.unpack_from(frame, 16)
            if tot + 14 > n or ulen < 8 or ulen + 20 > tot:
                return False
            payload = frame[42 : 34 + ulen].tobytes()  # (bytes() of a view: slower)
        elif frame[12] == 0x86:  # ETH_P_IPV6
            if n < 62 or frame[20] != 17:
                return False
            flow = self.fast.get(_KEY6.unpack_from(frame))  # type: ignore[arg-type]
            if flow is None or flow.sock is None or (self.uso and self.w.tap.seg):
                return False
            plen, ulen = _LEN6.unpack_from(frame, 18)
            if plen + 54 > n or ulen < 8 or ulen > plen:
                return False
            payload = frame[62 : 54 + ulen].tobytes()
        else:
            return False
        out = self.out.get(flow)
        if out is None:
            out = self.out[flow] = []
        out.append(payload)
        self.fast_frames += 1
        self.fast_bytes += n
        k = len(out)
        if k >= mmsg.MAX_SEGMENTS or (k + 1) * len(payload) > RUN_BYTES:  # a whole run: send it now
            del self.out[flow]  # (a burst of up to a pass's 256 datagrams would overrun the receiver)
            self._send_held(flow, out, self.w.now())
        return True

    def _cache(self, p: Packet, flow: Flow) -> None:
        """Remember flow under p's header key for ``fast_from_guest`` (p passed every check)."""
        fast = self.fast
        if len(fast) >= FAST_MAX:
            fast.clear()
        if p.version == 4:
            if p.l4 == 34 and p.ethertype == 0x0800:  # no IPv4 options
                fast[_KEY4.unpack_from(p.frame)] = flow  # type: ignore[index]
        elif p.l4 == 54 and p.ethertype == 0x86DD:  # no extension headers
            fast[_KEY6.unpack_from(p.frame)] = flow  # type: ignore[index]

    def from_guest(self, p: Packet) -> None:
        """One UDP datagram from the guest (the built-in services had their turn)."""
        if self.disabled:
            return self.w.drop("udp disabled")
        # pudp.parse_datagram, inlined: this runs for every datagram from the guest
        frame, l4, l4len = p.frame, p.l4, p.l4len
        if l4len < pudp.UDP_HLEN or l4 + l4len > len(frame):
            return self.w.drop("short udp")
        sport, dport, length, _csum = _UDP_HDR.unpack_from(frame, l4)
        if length < pudp.UDP_HLEN or length > l4len:
            return self.w.drop("udp length")
        if sport == 0 or dport == 0:
            return self.w.drop("udp port 0")
        version, dst, src = p.version, p.dst, p.src
        key = (version, sport, dst, dport)
        flow = self.flows.get(key)
        if flow is None:  # a flow's destination passed this check when it was made
            why = _bad_destination(version, dst)
            if why is not None:
                return self.w.drop(why)
        if version == 4 or not (src[0] == 0xFE and src[1] & 0xC0 == 0x80):
            self.guest[version] = src
        now = self.w.now()
        dlen = length - pudp.UDP_HLEN
        payload = frame[l4 + pudp.UDP_HLEN : l4 + length]
        seg = self.w.tap.seg if self.uso else 0
        if seg and dlen > seg:  # a GSO_UDP_L4 frame: a run of datagrams of seg bytes
            if dlen > seg * mmsg.MAX_SEGMENTS * 2:  # no kernel makes such a run
                return self.w.drop("udp gso segments")
            self.stats["uso_frames"] += 1
            parts = [bytes(payload[k : k + seg]) for k in range(0, dlen, seg)]
        else:
            parts = None
        if flow is None:  # a reply to a sender on a -u socket, or a new destination
            if not room(self, now):  # full of flows in use: dropped and counted before a port socket is asked
                return None
            peer = self.peers.get(key)
            if peer is None and (version, sport) not in self.ports.flows:
                self.ports._add_flow(PortSock(version, sport, now), force=True)  # asked first: its port is the flow's
            new = self._add_flow(Flow(version, sport, dst, dport, now, peer))
            if new is None:  # full of flows in use: dropped and counted
                return None
            flow = new
        flow.last = now
        flow.guest = src
        sock = flow.sock
        if sock is None:
            if self._refused(flow, now, "udp socket refused"):
                return None
            if parts is None:
                if not self._queue_full(flow):
                    flow.queue.append(bytes(payload))
                return None
            for part in parts:
                if self._queue_full(flow):
                    return None
                flow.queue.append(part)
            return None
        if self.defer or parts is not None:  # the loop flushes after its pass over the tap
            out = self.out.get(flow)
            if out is None:
                out = self.out[flow] = []
            if parts is None:
                out.append(payload.tobytes())
                if self.defer:  # the next frames of this flow: fast_from_guest (only while deferring)
                    self._cache(p, flow)
            else:
                out.extend(parts)
            if not self.defer:
                self.flush()
            return None
        try:
            self._send_one(flow, sock, payload)  # connected by the parent: no address, none allowed
            self.stats["to_host"] += 1
        except OSError as e:  # EAGAIN included: a datagram lost, as on any full queue
            self._send_error(e, flow)
        return None

    def flush(self) -> None:
        """Send what from_guest held back this pass, per flow in order (runs: ``_send_many``)."""
        out, self.out = self.out, {}
        if self.fast_frames:  # what fast_from_guest took, in the loop's counters
            w = self.w
            w.frames_in += self.fast_frames
            w.proto_frames[17] = w.proto_frames.get(17, 0) + self.fast_frames
            w.proto_bytes[17] = w.proto_bytes.get(17, 0) + self.fast_bytes
            self.fast_frames = self.fast_bytes = 0
        now = self.w.now()
        for flow, payloads in out.items():
            self._send_held(flow, payloads, now)

    def _send_held(self, flow: Flow, payloads: list[bytes], now: float) -> None:
        """Send the datagrams held for flow (in order, runs: ``_send_many``)."""
        sock = flow.sock
        if sock is None:
            return
        flow.last = now
        src = flow.guest  # the guest's address in use (from_guest's rule: not link-local)
        if flow.version == 4 or not (src[0] == 0xFE and src[1] & 0xC0 == 0x80):
            self.guest[flow.version] = src
        try:
            self.stats["to_host"] += self._send_many(flow, sock, payloads)
        except FaultLimit:
            raise
        except Exception as e:  # noqa: BLE001 - the per-flow boundary (worker/faults.py): runs
            # from the tap's handler, whose faults would end the worker
            self.w.faults.record(f"the datagrams held for {flow}", e)
            self.fault_flow(flow)

    def fault_name(self, p: Packet) -> str:
        """The flow of a guest datagram, for a fault's log line."""
        d = pudp.parse_datagram(p)
        if isinstance(d, str):
            return "udp (malformed)"
        return f"udp flow :{d.sport} -> {_show(p.version, bytes(p.dst))}:{d.dport}"

    def fault(self, p: Packet) -> None:
        """A guest datagram's handling raised (worker/faults.py): drop its flow."""
        d = pudp.parse_datagram(p)
        if isinstance(d, str):
            return
        flow = self.flows.get((p.version, d.sport, bytes(p.dst), d.dport))
        if flow is not None:
            self.fault_flow(flow)

    # -- the flow's socket (worker/flowsock.py does the rest) -------------------------
    def _ask(self, flow: Flow) -> tuple[int, int, int, bytes, int]:
        peer = flow.peer
        if peer is not None:  # bound beside the -u socket, connected to the real sender
            ib = peer.inbound
            raw = socket.inet_pton(ib.family, peer.sockaddr[0].split("%")[0])
            return ipc.OP_UDP_REPLY, ib.family, ib.port, raw, peer.sockaddr[1]
        fam = socket.AF_INET if flow.version == 4 else socket.AF_INET6
        return ipc.OP_UDP_SOCKET, fam, flow.dport, flow.dst, flow.gport

    def _send_queued(self, sock: socket.socket, flow: Flow, item: bytes) -> None:
        try:
            self._send_one(flow, sock, item)
            self.stats["to_host"] += 1
        except OSError as e:
            self._send_error(e, flow)

    # -- host to guest --------------------------------------------------------
    def _visible(self, version: int, raw: bytes) -> bytes | None:
        """The address a sender appears as to the guest (None: drop)."""
        return self.addrs.seen_as(version, raw, self.guest[version])

    def _flow_readable(self, flow: Flow, ev: int) -> None:
        """Datagrams of the flow's peer (the socket is connected): to the guest,
        from the address and port it wrote to."""
        sock = flow.sock
        if sock is None:
            return
        version = flow.version
        rb = self.rb
        if rb is not None:
            for _ in range(RECV_BUDGET // rb.slots + 1):
                n = rb.recv(flow.fd)
                if n == 0:
                    if rb.errno in (errno.EAGAIN, errno.EINTR):
                        return
                    if log.enabled(DEBUG):  # e.g. ECONNREFUSED from an ICMP error
                        log.trace(f"{flow}: {os.strerror(rb.errno)}")
                    continue
                self._to_guest_batch(version, flow.dst, flow.dport, flow.guest, flow.gport, rb, 0, n)
                if n < rb.slots:
                    return
            return
        hlen = pudp.header_len(version)
        area = self.view[hlen : hlen + pudp.max_payload(version) + 1]
        for _ in range(RECV_BUDGET):
            try:
                n = sock.recv_into(area)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. ECONNREFUSED from an ICMP error: nothing to forward
                if log.enabled(DEBUG):
                    log.trace(f"{flow}: {e.strerror}")
                continue
            self._to_guest(version, flow.dst, flow.dport, flow.guest, flow.gport, n)

    def _to_guest_batch(self, version: int, src: bytes, sport: int, dst: bytes, dport: int,
                        rb: mmsg.RecvBatch, i: int, end: int) -> None:
        """Datagrams i..end-1 of rb, all of one sender, to the guest: runs of one size
        (the last may be shorter) as one GSO_UDP_L4 frame when the tap takes them."""
        hlen = pudp.header_len(version)
        buf = self.buf
        limit = pudp.max_payload(version)
        lens = rb.lengths(end)
        gso = self.gso
        size = lens[i]
        if gso and 0 < size and lens.count(size) == end - i:  # the usual batch: one size
            step = min(mmsg.MAX_SEGMENTS, limit // size)
            while i < end:
                j = min(end, i + step)
                if j - i == 1 or not self._gso_frame(version, src, sport, dst, dport, rb, i, j, size,
                                                     size * (j - i)):
                    break  # one by one, below
                i = j
            gso = self.gso
        while i < end:
            size = lens[i]
            j, total = i + 1, size
            if gso and 0 < size:
                stop = min(end, i + mmsg.MAX_SEGMENTS)
                while j < stop:
                    m = lens[j]
                    if m > size or m == 0 or total + m > limit:
                        break
                    total += m
                    j += 1
                    if m < size:
                        break
            if j - i == 1 or not self._gso_frame(version, src, sport, dst, dport, rb, i, j, size, total):
                for k in range(i, j):
                    n = lens[k]
                    if n > limit:
                        self.stats["too_big"] += 1
                        continue
                    buf[hlen : hlen + n] = rb.slot(k, n)
                    self._to_guest(version, src, sport, dst, dport, n)
            i = j

    def _gso_frame(self, version: int, src: bytes, sport: int, dst: bytes, dport: int,
                   rb: mmsg.RecvBatch, i: int, j: int, size: int, total: int) -> bool:
        """Datagrams i..j-1 (total bytes, segments of size) as one frame; False: not sent."""
        if not dst:
            return False
        hlen = pudp.header_len(version)
        buf = self.buf
        views = rb.slots_views
        last = rb.length(j - 1)
        parts = [v[:size] for v in views[i : j - 1]]
        parts.append(views[j - 1][:last])
        length = pudp.fill_frame(buf, version, self.w.guest_mac, self.w.cfg.our_mac, src, dst,
                                 sport, dport, total, vnet=True, offload=True)
        _GSO.pack_into(buf, 1, VIRTIO_NET_HDR_GSO_UDP_L4, hlen - pudp.VNET_HDR_LEN, size)
        write_parts = self.write_parts
        if write_parts is not None:  # the headers, then the payloads where recvmmsg put them
            parts.insert(0, self.view[:hlen])
            ok = write_parts(parts)
        else:
            buf[hlen : hlen + total] = b"".join(parts)
            ok = self.w.tap.write_raw(self.view[:length])
        if not ok:
            if self.stats["gso_frames"] == 0:  # the probe: this kernel's tap does not take them
                self.gso = False
                log.debug("udp: the tap refused a GSO_UDP_L4 frame: one frame per datagram")
                return False
            return True  # a full tap: lost like any frame
        if self.stats["gso_frames"] == 0:
            log.debug("udp: GSO_UDP_L4 frames to the tap: runs of one size go as one frame")
        self.stats["gso_frames"] += 1
        self.stats["to_guest"] += j - i
        return True

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
        s = adopt(fd, f"UDP forward of port {port}", log.warn)
        if s is None:
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
            for flow in [f for f in self.flows.values() if f.peer is not None and f.peer.inbound in gone]:
                self._close(flow)
        return len(gone)

    def _inbound_readable(self, ib: Inbound, ev: int) -> None:
        rb = self.rbn
        if rb is None:
            return self._inbound_readable_one(ib)
        for _ in range(RECV_BUDGET // rb.slots + 1):
            n = rb.recv(ib.fd)
            if n == 0:
                if rb.errno in (errno.EAGAIN, errno.EINTR):
                    return None
                continue
            if self.disabled:
                pass
            elif rb.one_sender(n):  # the usual batch: one sender
                self._inbound_run(ib, rb, 0, n)
            else:
                i = 0
                while i < n:  # runs of one sender
                    j = i + 1
                    while j < n and rb.same_sender(i, j):
                        j += 1
                    self._inbound_run(ib, rb, i, j)
                    i = j
            if n < rb.slots:
                return None
        return None

    def _inbound_run(self, ib: Inbound, rb: mmsg.RecvBatch, i: int, j: int) -> None:
        """Datagrams i..j-1 of rb, from one sender on a -u socket."""
        fam, raw, port = rb.sender(i)
        host = socket.inet_ntop(fam, raw)
        addr = (host, port)
        if self.splice_loop:
            lfam = loopback_family(host)
            if lfam is not None:  # host loopback sender: to the namespace's loopback
                self.w.udpsplice.relay_many(KIND_HOST, ib.sock, ib.fd, ib.port, lfam, addr, ib.target,
                                            rb.payloads(i, j))
                return
        version, raw = _unmapped(fam, raw)
        guest = self.guest[version]
        src = self._visible(version, raw)
        if guest is None or src is None or self.addrs.gw[version] is None:
            return
        self._note_peer(version, ib, src, addr)
        self._to_guest_batch(version, src, port, guest, ib.target, rb, i, j)

    def _note_peer(self, version: int, ib: Inbound, src: bytes, addr: tuple) -> None:
        """Remember (or refresh) the -u sender at addr, seen by the guest as src,
        for the guest's replies (the oldest go first when the table is full)."""
        now = self.w.now()
        key = (version, ib.target, src, addr[1])
        peer = self.peers.get(key)
        if peer is None:
            if len(self.peers) >= self.max_peers:
                self._expire_peers(now, force=True)
            self.peers[key] = Peer(ib, addr, now)
            self.stats["inbound"] += 1
        else:
            peer.inbound, peer.sockaddr, peer.last = ib, addr, now

    def _inbound_readable_one(self, ib: Inbound) -> None:
        """Without recvmmsg: one datagram per call."""
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
                    w.udpsplice.relay(KIND_HOST, ib.sock, ib.fd, ib.port, fam, addr, ib.target,
                                      self.view[h6 : h6 + n])
                    continue
            version, raw = _unmapped(ib.family, socket.inet_pton(ib.family, addr[0].split("%")[0]))
            guest = self.guest[version]
            src = self._visible(version, raw)
            if guest is None or src is None or self.addrs.gw[version] is None:
                continue
            if n > pudp.max_payload(version):
                self.stats["too_big"] += 1
                continue
            self._note_peer(version, ib, src, addr)
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
        """Close flows and forget peers idle for longer than FLOW_TIMEOUT, and
        the port sockets of guest ports left without a flow."""
        self._expire_flows(now)
        self._expire_peers(now)
        if self.fast:  # keys of closed flows
            self.fast = {k: f for k, f in self.fast.items() if f.sock is not None}
        self.ports.close_unused({(f.version, f.gport) for f in self.flows.values() if f.peer is None})

    def summary(self) -> str:
        """Counters, one line."""
        return (f"udp: {len(self.flows)} flows, {len(self.ports.flows)} port sockets, "
                f"{len(self.peers)} inbound peers, "
                + ", ".join(f"{k} {v}" for k, v in self.stats.items())
                + f", UDP_SEGMENT sends {SEGMENTER.runs} ({SEGMENTER.segments} datagrams, both tables)")

