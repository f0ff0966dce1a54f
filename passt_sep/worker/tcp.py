# SPDX-License-Identifier: GPL-2.0-or-later
"""TCP translation: guest connections mirrored onto host kernel sockets.

Sandboxed only. There is no TCP stack here, only bookkeeping of sequence
numbers between two kernels:

- guest to host: in-order payload is written to the socket with ``send``
  and acknowledged to the guest only as far as the kernel took it; the
  window we advertise is the room left in the socket's send buffer. When
  the kernel takes only part of a segment we wait for EPOLLOUT, then send
  a window update plus three duplicate ACKs so the guest retransmits at
  once (fast retransmit) instead of after its timeout.
- host to guest: socket data is read with ``MSG_PEEK`` straight into the
  payload area of a frame buffer behind prebuilt headers and discarded
  from the socket only when the guest acknowledges it; the kernel's
  receive queue is the retransmission buffer. ``SO_PEEK_OFF`` keeps the
  peek position (older kernels: peek the in-flight part into a scratch
  buffer). Three duplicate ACKs or an ACK timeout rewind and read again.
- outbound: a guest SYN becomes an ``OP_TCP_CONNECT`` request; the parent
  validates the destination, hands the socket over and then starts its
  non-blocking connect (ipc.STATUS_PENDING). SYN-ACK goes to the guest only
  when the socket says the connect completed; failure is a RST+ACK (the
  guest reports "connection refused").
- inbound: worker/splice.py accepts on the parent's -t listeners and hands
  a peer that is not spliced to ``_inbound``; the guest gets
  a SYN from the real peer address (loopback appears as the address mapped
  to the host's loopback, the host's own address as --map-guest-addr when
  given, else as the loopback-mapped address; the gateway when neither is
  mapped).

Frames toward the guest carry a virtio-net header with NEEDS_CSUM: only
the pseudo-header sum goes into the TCP checksum (proto.tcp.Template).
Sockets are watched edge-triggered and drained on every wake-up.
"""

from __future__ import annotations

import _socket
import fcntl
import functools
import ipaddress
import os
import select
import socket
import struct

from .. import ipc
from ..log import DEBUG, log
from ..proto import tcp as ptcp
from ..proto.packet import Packet
from ..proto.tcp import ACK, FIN, PSH, RST, SEQ_MASK, SYN
from .addrmap import HostAddrs
from .limits import TCP_FDS

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from .contract import FlowLoop

# Timeouts in seconds (the loop's timer runs once a second)
SYN_TIMEOUT = 10.0  # handshake not completed: RST
ACK_TIMEOUT = 1.0  # data or FIN to the guest not acknowledged: retransmit
MAX_RETRANS = 7  # then RST
FIN_TIMEOUT = 60.0  # half-closed without progress: RST
ACT_TIMEOUT = 7200.0  # idle: RST
MAX_CONNS_CAP = 65536
WS_TO_GUEST = 8  # our window scale (passt uses at most 8: 16 MiB window)
WND_MAX = 0xFFFF << WS_TO_GUEST
WND_MIN_HANDSHAKE = 14600
DUP_ACK_THRESHOLD = 3
TEMPLATE_CACHE = 256  # address pairs whose header templates are kept (cleared when full)
SIOCOUTQ = 0x5411
SO_PEEK_OFF = 42
DISCARD_CHUNK = 1 << 20
OOO_MAX_SEGS = 1024  # out-of-order segments kept per connection
OOO_MAX_TOTAL = 32 << 20  # bytes of out-of-order guest data kept in all
# Delayed ACK (docs/tcp.md): a small segment from the guest on an
# interactive connection is acknowledged with the answer, if the answer
# comes within ACK_DELAY, else alone; then the connection stops counting as
# interactive until data goes to the guest within ACK_DELAY of a segment
# from it (as Linux's delayed-ACK "pingpong" mode).
def _ack_delay(default: float = 0.002) -> float:
    """PASST_SEP_ACK_DELAY (seconds, 0 = off): a developer's knob for A/B runs."""
    try:
        v = float(os.environ.get("PASST_SEP_ACK_DELAY", default))
    except ValueError:
        return default
    return v if 0.0 <= v <= 0.1 else default


ACK_DELAY = _ack_delay()
ACK_DELAY_MAX_OWED = 16384  # owe at most this much before acknowledging at once

# Connection states
CONNECTING = 1  # outbound: guest SYN seen, connect in progress
SYNACK_SENT = 2  # outbound: SYN-ACK to the guest, waiting for its ACK
SYN_SENT = 3  # inbound: SYN to the guest, waiting for its SYN-ACK
ESTABLISHED = 4
STATE_NAMES = {CONNECTING: "CONNECTING", SYNACK_SENT: "SYNACK_SENT", SYN_SENT: "SYN_SENT",
               ESTABLISHED: "ESTABLISHED"}

EV_DATA = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_I32 = struct.Struct("i")
_LINGER0 = struct.pack("ii", 1, 0)
_ZERO4 = bytes(4)
_CONNECTED_STATES = (1, 8)  # TCP_ESTABLISHED, TCP_CLOSE_WAIT (include/net/tcp_states.h)


_V4MAPPED = bytes(10) + b"\xff\xff"


def _peer_raw(family: int, text: str) -> bytes | None:
    """A peer address from accept() as 4 or 16 bytes (IPv4-mapped as 4)."""
    try:
        if family == socket.AF_INET:
            return socket.inet_pton(socket.AF_INET, text)
        raw = socket.inet_pton(socket.AF_INET6, text.split("%")[0])
    except OSError:
        return None
    return raw[12:] if raw[:12] == _V4MAPPED else raw


# RFC 6528 secret, drawn before the sandbox (no getrandom afterwards).
_ISN_SECRET = os.urandom(32)


class Conn:
    """One guest connection and its socket."""

    __slots__ = (
        "key", "version", "sock", "fd", "tmpl", "state", "inbound",
        "seq_to_tap", "seq_max", "seq_ack_from_tap", "seq_from_tap", "seq_ack_to_tap",
        "isn", "wnd_from_tap", "ws_from_tap", "ws_to_tap", "mss", "wnd_to_tap",
        "dup_acks", "retrans", "last_progress", "last_activity", "created",
        "sock_eof", "fin_sent", "fin_ever", "fin_acked", "tap_fin", "out_blocked",
        "partial", "peek_off", "epoll_out", "closed", "ack_due", "ooo", "ooo_bytes",
        "recover", "interactive", "more", "ev_data", "sndbuf", "rdhup", "shut_due",
    )

    def __init__(self, key: tuple[bytes, int, bytes, int], version: int, tmpl: ptcp.Template | None,
                 now: float) -> None:
        self.key = key
        self.version = version
        self.sock: socket.socket | None = None
        self.fd = -1
        self.tmpl: ptcp.Template = tmpl  # type: ignore[assignment]  # None only until _prepare
        self.state = 0
        self.inbound = False
        self.seq_to_tap = self.seq_max = self.seq_ack_from_tap = 0
        self.seq_from_tap = self.seq_ack_to_tap = 0
        self.isn = 0
        self.wnd_from_tap = 0
        self.ws_from_tap = 0
        self.ws_to_tap = 0
        self.mss = ptcp.MSS_DEFAULT
        self.wnd_to_tap = WND_MIN_HANDSHAKE
        self.dup_acks = self.retrans = 0
        self.recover = 0  # seq_max at the last rewind (RFC 6582's "recover")
        self.last_progress = self.last_activity = self.created = now
        self.sock_eof = self.fin_sent = self.fin_ever = self.fin_acked = self.tap_fin = False
        self.out_blocked = self.partial = False
        self.peek_off = True
        self.epoll_out = False
        self.closed = False
        self.ack_due = False
        self.shut_due = False  # the guest's FIN is taken: shutdown(SHUT_WR) at the flush
        self.interactive = True  # small segments get a delayed ACK (ACK_DELAY)
        # the socket may hold data not yet sent to the guest: set by EPOLLIN
        # (edge-triggered) and by a rewind, cleared when a peek comes up short
        self.more = True
        self.rdhup = False  # the peer has shut down its side: the data ends with EOF
        self.ev_data = False  # registered for EV_DATA already
        self.sndbuf = 0  # SO_SNDBUF as last read (see _update_wnd)
        # out-of-order guest data, by sequence number: (payload, FIN)
        self.ooo: dict[int, tuple[bytes, bool]] = {}
        self.ooo_bytes = 0

    def __repr__(self) -> str:
        g, gp, r, rp = self.key
        return (f"<tcp {_addr(g)}:{gp} <-> {_addr(r)}:{rp} {STATE_NAMES.get(self.state, '?')}"
                f"{' in' if self.inbound else ''}>")


def _established(sock: socket.socket) -> bool:
    """Whether a TCP socket's connect has completed (and not failed): its
    state, the first byte of TCP_INFO, is ESTABLISHED, or CLOSE_WAIT once
    the peer has also sent its FIN. Closed (before connect(), or refused)
    and SYN_SENT are not."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] in _CONNECTED_STATES
    except OSError:
        return False


def _addr(raw: bytes) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return raw.hex()


def _unacked(c: Conn) -> bool:
    """Whether c has data or a FIN toward the guest that the guest has not acknowledged."""
    return ptcp.seq_diff(c.seq_to_tap, c.seq_ack_from_tap) > 0 or (c.fin_sent and not c.fin_acked)


class TcpFlows:
    """The connection table and both directions of the data path."""

    def __init__(self, w: FlowLoop, max_conns: int | None = None) -> None:
        self.w = w
        cfg = w.cfg
        self.conns: dict[tuple[bytes, int, bytes, int], Conn] = {}
        self.by_fd: dict[int, Conn] = {}
        self.max_conns = max_conns or max(16, min(MAX_CONNS_CAP, TCP_FDS))  # its share of the fd budget
        self.pending: list[Conn] = []
        # half-closes and closes left for the end of the batch (see flush)
        self.ending: list[Conn] = []
        # connections owing the guest an ACK, by deadline (insertion order
        # is deadline order: the delay is constant)
        self.delayed: dict[Conn, float] = {}
        self.sndbuf0 = 0  # SO_SNDBUF of a new socket, read once
        # the parent set SO_PEEK_OFF on every socket we get (listeners, connects)
        self.peek_preset = cfg.tcp_peek_off
        # header templates by (remote, guest, guest MAC), ports zero: a
        # connection's own comes from one with with_ports()
        self.templates: dict[tuple[bytes, bytes, bytes], ptcp.Template] = {}
        self.isn = ptcp.IsnGenerator(_ISN_SECRET)
        self.addrs = HostAddrs(cfg)  # how loopback peers and the host's own address appear
        self.guest4 = cfg.v4.addr.packed if cfg.v4 else None
        self.guest6 = cfg.v6.addr.packed if cfg.v6 else None
        mtu = cfg.mtu or 65520
        self.mss4 = min(mtu - 40, 0xFFFF - 40)
        self.mss6 = min(mtu - 60, 0xFFFF - 60)
        self.obuf = bytearray(ptcp.VNET_HDR_LEN + 14 + 40 + 60 + 65536)
        self.oview = memoryview(self.obuf)
        self.max_payload = len(self.obuf) - (ptcp.VNET_HDR_LEN + 14 + 40 + 20)
        self.scratch = bytearray(DISCARD_CHUNK)
        self.sview = memoryview(self.scratch)
        self.stats = {"accepted": 0, "connected": 0, "refused": 0, "rst_out": 0, "full": 0,
                      "retrans": 0, "partial": 0, "ooo_kept": 0, "ooo_dropped": 0, "dup_segs": 0,
                      "acks_delayed": 0, "acks_piggybacked": 0}
        self.ooo_total = 0
        self.disabled = cfg.opts.no_tcp
        # pasta's tap takes NEEDS_CSUM and GSO frames; passt's stream socket
        # (needs_csum) gets complete checksums and MSS-sized segments
        self.offload = not getattr(w.tap, "needs_csum", False)

    # -- frames to the guest --------------------------------------------------
    def _write(self, n: int) -> bool:
        return self.w.tap.write_raw(self.oview[:n])

    def _ctl(self, c: Conn, flags: int, seq: int | None = None, opts: bytes = b"") -> None:
        """A segment without payload (ACK, SYN, FIN, RST) on connection c."""
        if seq is None:
            seq = (c.seq_to_tap + (1 if c.fin_sent else 0)) & SEQ_MASK
        win = c.wnd_to_tap
        if not flags & SYN:
            win >>= c.ws_to_tap
        n = c.tmpl.fill(self.obuf, seq, c.seq_from_tap if flags & ACK else 0, flags,
                        min(win, 0xFFFF), 0, opts)
        if flags & ACK:
            c.seq_ack_to_tap = c.seq_from_tap
            if c in self.delayed:
                del self.delayed[c]
        self._write(n)

    def _rst_reply(self, p: Packet, seg: ptcp.Segment) -> None:
        """RST answering a segment that belongs to no connection."""
        if seg.flags & RST:
            return
        seq, ack, flags = ptcp.rst_for(seg)
        t = ptcp.Template(p.version, self.w.guest_mac, self.w.cfg.our_mac, p.dst, p.src,
                          seg.dport, seg.sport, offload=self.offload)
        n = t.fill(self.obuf, seq, ack, flags, 0, 0)
        self.stats["rst_out"] += 1
        self._write(n)

    def _template(self, version: int, remote: bytes, guest: bytes, rport: int, gport: int) -> ptcp.Template:
        """Headers of the frames from remote:rport to guest:gport."""
        mac = self.w.guest_mac
        k = (remote, guest, mac)
        base = self.templates.get(k)
        if base is None:
            if len(self.templates) >= TEMPLATE_CACHE:
                self.templates.clear()
            base = self.templates[k] = ptcp.Template(version, mac, self.w.cfg.our_mac, remote, guest,
                                                     0, 0, offload=self.offload)
        return base.with_ports(rport, gport)

    def _prepare(self, c: Conn) -> None:
        """The header template and initial sequence number of c."""
        guest, gport, remote, rport = c.key
        c.tmpl = self._template(c.version, remote, guest, rport, gport)
        c.isn = self.isn.isn(remote, rport, guest, gport)

    def _new_conn(self, version: int, guest: bytes, gport: int, remote: bytes, rport: int) -> Conn:
        key = (guest, gport, remote, rport)
        c = Conn(key, version, None, self.w.now())
        self._prepare(c)
        self.conns[key] = c
        return c

    # -- frames from the guest -------------------------------------------------
    def from_guest(self, p: Packet) -> None:
        """One TCP segment from the guest."""
        seg = ptcp.parse_segment(p)
        if isinstance(seg, str):
            return self.w.drop(seg)
        c = self.conns.get((p.src, seg.sport, p.dst, seg.dport))
        if c is None:
            if self.disabled:
                return self.w.drop("tcp disabled")
            flags = seg.flags
            if flags & (SYN | ACK | RST | FIN) == SYN:
                return self._guest_syn(p, seg)
            return self._rst_reply(p, seg)
        c.last_activity = self.w.now()
        if c.state == ESTABLISHED:
            return self._established(c, p, seg)
        return self._handshake(c, p, seg)

    def _guest_syn(self, p: Packet, seg: ptcp.Segment) -> None:
        if p.dst[0] >= 224 if p.version == 4 else p.dst[0] == 0xFF:
            return self.w.drop("tcp syn to multicast")
        if len(self.conns) >= self.max_conns:
            self.stats["full"] += 1
            return self._rst_reply(p, seg)
        key = (p.src, seg.sport, p.dst, seg.dport)
        c = Conn(key, p.version, None, self.w.now())
        c.state = CONNECTING
        c.seq_from_tap = (seg.seq + 1) & SEQ_MASK
        c.wnd_from_tap = seg.win  # never scaled in a SYN
        c.more = False  # watched from the start: EPOLLIN says when the peer has sent
        self.conns[key] = c
        # ask first: the parent connects while the rest is set up here
        self.w.broker.request(ipc.OP_TCP_CONNECT, socket.AF_INET if p.version == 4 else socket.AF_INET6,
                              functools.partial(self._connected_fd, c), port=seg.dport, addr=p.dst,
                              reset=functools.partial(self.fault_conn, c))
        if c.tmpl is None:  # (a refusal that came back at once prepared it)
            self._prepare(c)
        mss, ws = ptcp.parse_options(p.frame, p.l4 + ptcp.TCP_HLEN, seg.off)
        c.mss = min(mss or ptcp.MSS_DEFAULT, ptcp.GSO_MAX[c.version])
        if ws is not None:
            c.ws_from_tap, c.ws_to_tap = ws, WS_TO_GUEST
        # inbound connections go to the address the guest last connected from
        # (passt's addr_seen): a SLAAC-only guest has not the host's address
        if p.version == 4:
            self.guest4 = bytes(p.src)
        elif not (p.src[0] == 0xFE and p.src[1] & 0xC0 == 0x80):
            self.guest6 = bytes(p.src)

    def _connected_fd(self, c: Conn, fd: int | None, err: int) -> None:
        """The broker's answer to OP_TCP_CONNECT."""
        if c.closed:
            if fd is not None:
                os.close(fd)
            return
        if c.tmpl is None:
            self._prepare(c)
        if fd is None:
            if c.state != CONNECTING:
                return  # (a late failure can only follow STATUS_PENDING, before any event)
            log.debug(f"{c}: connect: {os.strerror(err) if err else 'refused'}")
            self.stats["refused"] += 1
            self._ctl(c, RST | ACK, seq=0)
            return self._close(c)
        connected = err == ipc.STATUS_CONNECTED  # loopback: no need to wait for EPOLLOUT
        if connected:
            c.state = SYNACK_SENT
            self._send_synack(c)  # first: the guest's kernel waits for it, not for the rest
        try:
            # the C type: the broker's sockets are non-blocking, and what the
            # Python subclass adds (makefile) is not needed here
            c.sock = _socket.socket(socket.AF_INET if c.version == 4 else socket.AF_INET6,  # type: ignore[assignment]
                                    socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0, fd)
        except OSError as e:
            os.close(fd)
            log.debug(f"{c}: the broker's socket: {e.strerror}")
            if connected:
                return self._reset(c)
            self._ctl(c, RST | ACK, seq=0)  # as a refused connect
            return self._close(c)
        c.fd = fd
        self.by_fd[fd] = c
        if not connected and _established(c.sock):
            # the parent's connect() finished while the reply was on its
            # way (loopback: within the call): the SYN-ACK goes now, not
            # after the next epoll_wait and whatever else it brings
            connected = True
            c.state = SYNACK_SENT
            self._send_synack(c)
        if connected:
            self.w.add(fd, functools.partial(self._sock_event, c), EV_DATA, reset=functools.partial(self.fault_conn, c))
            c.ev_data = True
        else:
            self.w.add(fd, functools.partial(self._sock_event, c), select.EPOLLOUT | select.EPOLLET,
                       reset=functools.partial(self.fault_conn, c))

    def _handshake(self, c: Conn, p: Packet, seg: ptcp.Segment) -> None:
        flags = seg.flags
        if flags & RST:
            if c.state == SYN_SENT and not (flags & ACK and seg.ack == (c.isn + 1) & SEQ_MASK):
                return None
            return self._close(c, reset_peer=True)
        if c.state == CONNECTING:
            return None  # a retransmitted SYN: the connect is still under way
        if c.state == SYNACK_SENT:
            if flags & SYN:
                if not flags & ACK and seg.seq == (c.seq_from_tap - 1) & SEQ_MASK:
                    self._send_synack(c)
                    return None
                return self._reset(c)
            if flags & ACK and seg.ack == (c.isn + 1) & SEQ_MASK:
                c.wnd_from_tap = seg.win << c.ws_from_tap
                self._establish(c)
                return self._established(c, p, seg)
            return self._reset(c)
        if c.state == SYN_SENT:  # inbound: we sent the SYN
            if flags & (SYN | ACK) == SYN | ACK and seg.ack == (c.isn + 1) & SEQ_MASK:
                mss, ws = ptcp.parse_options(p.frame, p.l4 + ptcp.TCP_HLEN, seg.off)
                c.mss = min(mss or ptcp.MSS_DEFAULT, ptcp.GSO_MAX[c.version])
                if ws is not None:
                    c.ws_from_tap, c.ws_to_tap = ws, WS_TO_GUEST
                else:
                    c.ws_from_tap = c.ws_to_tap = 0
                c.wnd_from_tap = seg.win
                c.seq_from_tap = (seg.seq + 1) & SEQ_MASK
                self._establish(c)
                self._send_data(c)  # what the peer already sent carries the ACK
                if not c.closed and c.seq_ack_to_tap != c.seq_from_tap:
                    self._ctl(c, ACK)
                return None
            return self._reset(c)
        return None

    def _establish(self, c: Conn) -> None:
        c.state = ESTABLISHED
        c.seq_to_tap = c.seq_max = c.seq_ack_from_tap = (c.isn + 1) & SEQ_MASK
        c.recover = c.isn
        c.retrans = 0  # SYN or SYN-ACK retransmissions counted here
        c.last_progress = self.w.now()
        if c.sock is not None:
            if not self.peek_preset:
                try:
                    c.sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
                except OSError:
                    c.peek_off = False
            if not c.ev_data:
                self.w.ep.modify(c.fd, EV_DATA)
                c.ev_data = True
            # nothing is queued on a new socket: its window is 3/4 of the
            # send buffer every new socket starts with (read once)
            if not self.sndbuf0:
                try:
                    self.sndbuf0 = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                except OSError:
                    self.sndbuf0 = 16384
            c.sndbuf = self.sndbuf0
            c.wnd_to_tap = min(self.sndbuf0 * 3 >> 2, WND_MAX if c.ws_to_tap else 0xFFFF)
        self.stats["accepted" if c.inbound else "connected"] += 1

    def _send_synack(self, c: Conn) -> None:
        mss = self.mss4 if c.version == 4 else self.mss6
        c.wnd_to_tap = 0xFFFF
        c.last_progress = self.w.now()
        self._ctl(c, SYN | ACK, seq=c.isn,
                  opts=ptcp.syn_options(mss, c.ws_to_tap if c.ws_from_tap or c.ws_to_tap else None))

    def _established(self, c: Conn, p: Packet, seg: ptcp.Segment) -> None:
        flags = seg.flags
        if flags & RST:
            d = ptcp.seq_diff(seg.seq, c.seq_from_tap)
            if 0 <= d <= max(c.wnd_to_tap, 1):
                self._close(c, reset_peer=True)
            return None
        if flags & SYN:
            if c.inbound and flags & ACK and seg.seq == (c.seq_from_tap - 1) & SEQ_MASK:
                self._ctl(c, ACK)  # our ACK of its SYN-ACK was lost: again
                return None
            return self._reset(c)
        if flags & ACK:
            self._guest_ack(c, seg)
            if c.closed:
                return None
        dlen = seg.dlen
        if not dlen and not flags & FIN:
            if ptcp.seq_diff(seg.seq, c.seq_from_tap) < 0:
                self._queue_ack(c)  # keepalive or zero window probe: answer it
            return None
        if dlen or flags & FIN:
            d = ptcp.seq_diff(seg.seq, c.seq_from_tap)
            if d > 0:  # a hole before this segment: keep it, ask again
                if dlen and not c.tap_fin:
                    self._ooo_keep(c, seg.seq, d, p.frame[seg.off : seg.off + dlen], bool(flags & FIN))
                self._ctl(c, ACK)
                return None
            skip = -d
            if c.tap_fin or skip > dlen or (skip == dlen and not flags & FIN):
                self.stats["dup_segs"] += 1
                self._queue_ack(c)  # all of it seen before: acknowledge again
                return None
            taken = 0
            if dlen > skip:
                want = dlen - skip
                try:
                    taken = c.sock.send(p.frame[seg.off + skip : seg.off + dlen]) if c.sock else 0
                except BlockingIOError:
                    taken = 0
                except OSError as e:
                    log.debug(f"{c}: send: {e.strerror}")
                    return self._reset(c)
                c.seq_from_tap = (c.seq_from_tap + taken) & SEQ_MASK
                if taken < want:
                    self.stats["partial"] += 1
                    c.partial = True
                    self._want_out(c, True)
                    self._update_wnd(c)
                    self._ctl(c, ACK)
                    return None
            if flags & FIN:
                self._tap_fin(c)
            elif c.ooo and not self._ooo_drain(c):
                if c.closed:
                    return None
                self._want_out(c, True)
                self._update_wnd(c)
                self._ctl(c, ACK)
                return None
            if c.tap_fin and c.fin_acked:
                self._end(c)
            elif (ACK_DELAY and c.interactive and dlen < c.mss and not c.ooo
                  and (c.seq_from_tap - c.seq_ack_to_tap) & SEQ_MASK < ACK_DELAY_MAX_OWED):
                self._delay_ack(c)
            else:
                self._queue_ack(c)
        return None

    def _tap_fin(self, c: Conn) -> None:
        """The guest's FIN is next in sequence: half-close the socket."""
        if c.sock is None:
            return
        c.shut_due = True
        self.ending.append(c)
        c.tap_fin = True
        c.seq_from_tap = (c.seq_from_tap + 1) & SEQ_MASK
        c.last_progress = self.w.now()
        self._ooo_clear(c)

    def _ooo_keep(self, c: Conn, seq: int, ahead: int, data: memoryview | bytes, fin: bool) -> None:
        """Keep a segment that came after a hole (as a receiving stack would).

        Only inside the window we advertised, at most OOO_MAX_SEGS per
        connection and OOO_MAX_TOTAL bytes in all; otherwise it is dropped
        and the guest sends it again.
        """
        n = len(data)
        old = c.ooo.get(seq)
        if old is not None and len(old[0]) >= n:
            return
        if (ahead + n > max(c.wnd_to_tap, c.mss) or len(c.ooo) >= OOO_MAX_SEGS
                or self.ooo_total + n > OOO_MAX_TOTAL):
            self.stats["ooo_dropped"] += 1
            return
        if old is not None:
            self.ooo_total -= len(old[0])
            c.ooo_bytes -= len(old[0])
        c.ooo[seq] = (bytes(data), fin)
        c.ooo_bytes += n
        self.ooo_total += n
        self.stats["ooo_kept"] += 1

    def _ooo_clear(self, c: Conn) -> None:
        self.ooo_total -= c.ooo_bytes
        c.ooo_bytes = 0
        c.ooo.clear()

    def _ooo_drain(self, c: Conn) -> bool:
        """Send kept segments that the stream has reached; False if the socket is full."""
        sock = c.sock
        if sock is None:
            return True
        base = c.seq_from_tap
        for seq in sorted(c.ooo, key=lambda s: ptcp.seq_diff(s, base)):
            d = ptcp.seq_diff(seq, c.seq_from_tap)
            if d > 0:
                break  # another hole
            data, fin = c.ooo.pop(seq)
            c.ooo_bytes -= len(data)
            self.ooo_total -= len(data)
            skip = -d
            if skip > len(data) or (skip == len(data) and not fin):
                continue  # all of it arrived again meanwhile
            if skip < len(data):
                want = len(data) - skip
                try:
                    taken = sock.send(data[skip:])
                except BlockingIOError:
                    taken = 0
                except OSError as e:
                    log.debug(f"{c}: send: {e.strerror}")
                    self._reset(c)
                    return False
                c.seq_from_tap = (c.seq_from_tap + taken) & SEQ_MASK
                if taken < want:  # keep the rest for EPOLLOUT
                    rest = data[skip + taken :]
                    c.ooo[c.seq_from_tap] = (rest, fin)
                    c.ooo_bytes += len(rest)
                    self.ooo_total += len(rest)
                    return False
            if fin:
                self._tap_fin(c)
                break
        return True

    def _queue_ack(self, c: Conn) -> None:
        if not c.ack_due:
            c.ack_due = True
            self.pending.append(c)

    def _delay_ack(self, c: Conn) -> None:
        """Owe the guest an ACK for up to ACK_DELAY: an answer may carry it."""
        if c not in self.delayed:
            self.delayed[c] = self.w.now() + ACK_DELAY
            self.stats["acks_delayed"] += 1

    def delayed_due(self) -> float:
        """When the first delayed ACK falls due (call only while self.delayed)."""
        return next(iter(self.delayed.values()))

    def flush_delayed(self, now: float) -> None:
        """Send the delayed ACKs whose deadline passed and no answer carried."""
        delayed = self.delayed
        while delayed:
            c, due = next(iter(delayed.items()))
            if due > now:
                return
            del delayed[c]
            if c.closed:
                continue
            if c.seq_ack_to_tap != c.seq_from_tap:
                c.interactive = False  # no answer in time: acknowledge at once for now
                self._update_wnd(c)
                self._ctl(c, ACK)

    def _guest_ack(self, c: Conn, seg: ptcp.Segment) -> None:
        ack = seg.ack
        una = c.seq_ack_from_tap
        wnd = seg.win << c.ws_from_tap
        acked = ptcp.seq_diff(ack, una)
        sent = ptcp.seq_diff(c.seq_max, una)
        if c.fin_ever and ack == (c.seq_max + 1) & SEQ_MASK:
            c.fin_acked = True
            acked -= 1
        if 0 < acked <= sent:
            self._discard(c, acked)
            c.seq_ack_from_tap = una = ack if not c.fin_acked else c.seq_max
            if ptcp.seq_diff(c.seq_to_tap, una) < 0:
                c.seq_to_tap = una
            c.dup_acks = 0
            c.retrans = 0
            c.last_progress = self.w.now()
        elif acked == 0 and not seg.dlen and not seg.flags & FIN and wnd == c.wnd_from_tap \
                and ptcp.seq_diff(c.seq_to_tap, una) > 0:
            c.dup_acks += 1
            # not again while the guest only acknowledges up to what the last
            # rewind sent twice (its duplicates bring duplicate ACKs, RFC 6582)
            if c.dup_acks == DUP_ACK_THRESHOLD and ptcp.seq_diff(una, c.recover) > 0:
                self._rewind(c)
        elif acked == 0 and c.fin_acked:
            c.last_progress = self.w.now()
        c.wnd_from_tap = wnd
        if c.fin_acked and c.tap_fin:
            return self._end(c)
        if c.more and not c.fin_sent:
            self._send_data(c)

    def _discard(self, c: Conn, n: int) -> None:
        """Drop n acknowledged bytes from the socket's receive queue."""
        sock = c.sock
        if sock is None:
            return
        while n > 0:
            k = min(n, DISCARD_CHUNK)
            try:
                got = sock.recv_into(self.sview, k, socket.MSG_TRUNC)
            except OSError:
                return
            if got <= 0:
                return
            n -= got

    def _rewind(self, c: Conn) -> None:
        """Send again from the guest's last acknowledgement."""
        self.stats["retrans"] += 1
        c.seq_to_tap = c.seq_ack_from_tap
        c.recover = c.seq_max
        c.fin_sent = False
        c.more = True
        if c.peek_off and c.sock is not None:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
            except OSError:
                pass
        self._send_data(c)

    # -- socket to guest ------------------------------------------------------
    def _send_data(self, c: Conn) -> None:
        """Peek socket data into frames while the guest's window has room."""
        sock = c.sock
        if sock is None or c.state != ESTABLISHED or c.fin_sent:
            return
        tmpl = c.tmpl
        hlen = tmpl.hlen
        obuf, oview = self.obuf, self.oview
        mss = c.mss
        # with offloads, one frame carries up to 64 KiB as a GSO super-segment
        limit = ptcp.GSO_MAX[c.version] if tmpl.offload else mss
        peek = socket.MSG_PEEK
        write = self.w.tap.write_raw
        if not c.interactive and self.w.now() - c.last_activity < ACK_DELAY:
            c.interactive = True  # answering what the guest just sent: delay ACKs again
        for _ in range(4096):
            inflight = (c.seq_to_tap - c.seq_ack_from_tap) & SEQ_MASK
            room = c.wnd_from_tap - inflight
            if room <= 0:
                return
            size = limit if limit < room else room
            try:
                if c.peek_off:
                    n = sock.recv_into(oview[hlen : hlen + size], size, peek)
                else:
                    n = self._peek_skip(c, inflight, oview[hlen : hlen + size], size)
            except BlockingIOError:
                c.more = False
                return
            except OSError as e:
                log.debug(f"{c}: receive: {e.strerror}")
                return self._reset(c)
            if n == 0:
                c.sock_eof = True
                if ptcp.seq_diff(c.seq_to_tap, c.seq_max) < 0:
                    return  # rewound past data we no longer see: wait for ACKs
                self._update_wnd(c)
                self._ctl(c, FIN | ACK)
                c.fin_sent = c.fin_ever = True
                c.last_progress = self.w.now() if inflight == 0 else c.last_progress
                return
            if inflight == 0:
                c.last_progress = self.w.now()
            win = c.wnd_to_tap >> c.ws_to_tap
            total = tmpl.fill(obuf, c.seq_to_tap, c.seq_from_tap, ACK | PSH if n < size else ACK,
                              win if win < 0xFFFF else 0xFFFF, n, gso_size=mss if n > mss else 0)
            if c.seq_ack_to_tap != c.seq_from_tap:
                self.stats["acks_piggybacked"] += 1  # this answer carries an ACK we owed
                c.seq_ack_to_tap = c.seq_from_tap
                if c in self.delayed:
                    del self.delayed[c]
            if not write(oview[:total]):
                # the tap refused the frame (passt: no client connected; a tap
                # write error): the peek moved SO_PEEK_OFF past bytes the guest
                # never got; put it back where seq_to_tap is, or the next send
                # would carry later bytes under this sequence number
                if c.peek_off:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, inflight)
                    except OSError:  # cannot be put back: better no stream than a wrong one
                        return self._reset(c)
                return
            c.seq_to_tap = seq = (c.seq_to_tap + n) & SEQ_MASK
            if ptcp.seq_diff(seq, c.seq_max) > 0:
                c.seq_max = seq
            if n < size:
                if c.rdhup:
                    continue  # all there is has come: the next peek finds the EOF
                c.more = False  # drained: the next EPOLLIN edge says when there is more
                return

    def _peek_skip(self, c: Conn, skip: int, view: memoryview, size: int) -> int:
        """Peek past skip in-flight bytes without SO_PEEK_OFF (older kernels)."""
        assert c.sock is not None
        if skip > len(self.scratch):
            raise BlockingIOError
        n = c.sock.recvmsg_into([self.sview[:skip], view[:size]], 0, socket.MSG_PEEK)[0]
        if n == 0:
            return 0
        if n <= skip:
            raise BlockingIOError
        return n - skip

    def _sock_event(self, c: Conn, ev: int) -> None:
        if c.closed:
            return
        if c.state == CONNECTING:
            return self._connect_done(c, ev)
        if ev & select.EPOLLERR:
            err = 0
            if c.sock is not None:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            log.debug(f"{c}: socket error {os.strerror(err) if err else '?'}")
            return self._reset(c)
        if ev & select.EPOLLOUT and c.out_blocked:
            self._want_out(c, False)
            if c.ooo and c.state == ESTABLISHED and not self._ooo_drain(c):
                if c.closed:
                    return None
                self._want_out(c, True)
            self._update_wnd(c)
            self._ctl(c, ACK)
            if c.partial:  # the guest has data in flight we did not take
                c.partial = False
                for _ in range(DUP_ACK_THRESHOLD):
                    self._ctl(c, ACK)
        if ev & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP):
            c.more = True
            if ev & (select.EPOLLRDHUP | select.EPOLLHUP):
                c.rdhup = True
            if c.state == ESTABLISHED:
                self._send_data(c)

    def _connect_done(self, c: Conn, ev: int) -> None:
        # EPOLLOUT alone means established (a failed connect sets EPOLLERR),
        # so SO_ERROR is read only for an error or a hang-up
        if ev & (select.EPOLLERR | select.EPOLLHUP):
            assert c.sock is not None
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not err and not ev & select.EPOLLERR:
                # closed without an error: the parent has not called connect()
                # yet (ipc.STATUS_PENDING); the handshake's end is the next edge
                return
            log.debug(f"{c}: connect: {os.strerror(err) if err else 'hang-up'}")
            self.stats["refused"] += 1
            self._ctl(c, RST | ACK, seq=0)
            return self._close(c)
        c.state = SYNACK_SENT
        self._send_synack(c)

    def _want_out(self, c: Conn, on: bool) -> None:
        c.out_blocked = on
        if c.fd >= 0 and c.epoll_out != on:
            c.epoll_out = on
            try:
                self.w.ep.modify(c.fd, EV_DATA | (select.EPOLLOUT if on else 0))
            except OSError:
                pass

    def _update_wnd(self, c: Conn) -> None:
        """Window for the guest: the room left in the socket's send buffer."""
        sock = c.sock
        if sock is None or c.tap_fin:
            c.wnd_to_tap = WND_MIN_HANDSHAKE if c.state != ESTABLISHED else c.wnd_to_tap
            return
        try:
            outq = _I32.unpack(fcntl.ioctl(c.fd, SIOCOUTQ, _ZERO4))[0]
            # the kernel grows the buffer as the connection speeds up; that
            # matters once it is half full, and only then is it read again
            if outq * 2 > c.sndbuf:
                c.sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        except OSError:
            return
        wnd = (c.sndbuf * 3 >> 2) - outq
        if wnd < c.mss:
            self._want_out(c, True)
            wnd = max(wnd, 0)
        c.wnd_to_tap = wnd if wnd < WND_MAX else WND_MAX
        if not c.ws_to_tap and c.wnd_to_tap > 0xFFFF:
            c.wnd_to_tap = 0xFFFF

    def flush(self) -> None:
        """The end of a batch: ACKs that data from the guest made due, then
        the half-closes and closes that waited (once per batch).

        Ending a connection (the socket's shutdown or close, the ACK of the
        guest's last FIN) waits for the end of the batch because it is
        nobody's latency: when the guest's FIN of one connection and the
        SYN-ACK of the next arrive together, the next one's data goes out
        first (a connection a second, back to back, is the common case).
        """
        pending, self.pending = self.pending, []
        for c in pending:
            c.ack_due = False
            if c.closed:
                continue
            self._update_wnd(c)
            self._ctl(c, ACK)
        ending, self.ending = self.ending, []
        for c in ending:
            sock = c.sock
            if sock is None:
                continue  # reset meanwhile
            if c.shut_due:
                c.shut_due = False
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if c.closed:  # _end: the guest's FIN acknowledged if still owed, then the socket goes
                if c.seq_ack_to_tap != c.seq_from_tap:
                    self._ctl(c, ACK)
                self._release(c)

    def _end(self, c: Conn) -> None:
        """Both directions are over: the 4-tuple is free at once, the socket
        and the last ACK wait for the flush (events and timers that reach c
        meanwhile are ignored: it is closed)."""
        if self._forget(c):
            self.ending.append(c)

    # -- inbound ----------------------------------------------------------------
    def _inbound(self, fd: int, family: int, peer: tuple, target: int) -> None:
        """A connection accepted on a -t listener (fd, of that family) for the tap path."""
        try:  # the C type, as in _connected_fd; made non-blocking below
            # (typed as the subclass it stands in for, as c.sock is)
            cs: socket.socket = _socket.socket(family, socket.SOCK_STREAM, 0, fd)  # type: ignore[assignment]
        except OSError as e:
            log.debug(f"accepted connection: {e.strerror}")
            os.close(fd)
            return
        if self.disabled or len(self.conns) >= self.max_conns:
            self.stats["full"] += 1
            return self._abort_sock(cs)
        raw = _peer_raw(family, peer[0])
        if raw is None:
            return self._abort_sock(cs)
        version = 4 if len(raw) == 4 else 6
        guest = self.guest4 if version == 4 else self.guest6
        gw = self.addrs.gw[version]
        if guest is None or gw is None:
            return self._abort_sock(cs)
        raw = self.addrs.seen_as(version, raw, guest) or gw
        key = (guest, target, raw, peer[1])
        if key in self.conns:
            return self._abort_sock(cs)
        cs.setblocking(False)
        c = self._new_conn(version, guest, target, raw, peer[1])
        c.inbound = True
        c.state = SYN_SENT
        c.sock = cs
        c.fd = cs.fileno()
        self.by_fd[c.fd] = c
        self.w.add(c.fd, functools.partial(self._sock_event, c), EV_DATA, reset=functools.partial(self.fault_conn, c))
        c.ev_data = True
        mss = self.mss4 if version == 4 else self.mss6
        c.wnd_to_tap = 0xFFFF
        c.ws_to_tap = WS_TO_GUEST
        self._ctl(c, SYN, seq=c.isn, opts=ptcp.syn_options(mss, WS_TO_GUEST))

    @staticmethod
    def _abort_sock(s: socket.socket) -> None:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
        except OSError:
            pass
        s.close()

    # -- faults (worker/faults.py) ---------------------------------------------
    def fault_name(self, p: Packet) -> str:
        """The connection of a guest segment, for a fault's log line."""
        seg = ptcp.parse_segment(p)
        if isinstance(seg, str):
            return "tcp (malformed)"
        return f"tcp connection {_addr(bytes(p.src))}:{seg.sport} -> {_addr(bytes(p.dst))}:{seg.dport}"

    def fault(self, p: Packet) -> None:
        """A guest segment's handling raised: reset its connection, or answer it with RST."""
        seg = ptcp.parse_segment(p)
        if isinstance(seg, str):
            return
        c = self.conns.get((p.src, seg.sport, p.dst, seg.dport))
        if c is None:
            return self._rst_reply(p, seg)
        return self.fault_conn(c)

    def fault_conn(self, c: Conn) -> None:
        """A handler of c raised: RST to the guest, the host socket closed with RST."""
        self.stats["faults"] = self.stats.get("faults", 0) + 1
        if not c.closed:
            if c.state == CONNECTING and c.tmpl is not None:  # the guest's SYN, refused
                self._ctl(c, RST | ACK, seq=0)
                self.stats["rst_out"] += 1
                return self._close(c, reset_peer=True)
            return self._reset(c)
        if c.sock is not None:  # closed half-way: the socket goes too
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
            except OSError:
                pass
            self._release(c)
        return None

    # -- ends -----------------------------------------------------------------
    def _reset(self, c: Conn) -> None:
        """RST to the guest and to the peer; forget the connection."""
        if c.state == ESTABLISHED:
            self._ctl(c, RST | ACK)
        elif c.state == SYNACK_SENT:  # the guest expects the sequence after our SYN
            self._ctl(c, RST | ACK, seq=(c.isn + 1) & SEQ_MASK)
        elif c.state == SYN_SENT:
            self._ctl(c, RST, seq=(c.isn + 1) & SEQ_MASK)
        self.stats["rst_out"] += 1
        self._close(c, reset_peer=True)

    def _forget(self, c: Conn) -> bool:
        """Mark c closed and take it out of the table; False if it was already."""
        if c.closed:
            return False
        c.closed = True
        self.conns.pop(c.key, None)
        if c.ooo:
            self._ooo_clear(c)
        return True

    def _close(self, c: Conn, reset_peer: bool = False) -> None:
        if not self._forget(c):
            return
        if c.sock is not None:
            if reset_peer:
                try:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
                except OSError:
                    pass
            self._release(c)

    def _release(self, c: Conn) -> None:
        """Stop watching c's socket and close it."""
        sock = c.sock
        if sock is not None:
            self.by_fd.pop(c.fd, None)
            self.w.remove(c.fd)
            sock.close()
            c.sock = None
            c.fd = -1

    def link_up(self, now: float) -> None:
        """The guest's link is back (passt: a client connected again, as qemu's
        ``reconnect=`` does): what went toward the guest meanwhile was lost, so
        every connection sends again now instead of after its backed-off timer,
        and asks the guest for its own unacknowledged data (a window update
        and three duplicate ACKs, as after a partial write)."""
        for c in list(self.conns.values()):
            if c.closed:
                continue
            if c.state == SYNACK_SENT:
                c.retrans = 0
                c.last_progress = now
                self._send_synack(c)
                continue
            if c.state != ESTABLISHED:
                continue
            c.retrans = 0
            c.last_progress = now
            unacked = _unacked(c)
            if unacked:
                self._rewind(c)
            else:  # a rewind while the link was down left nothing in flight
                c.more = True
                self._send_data(c)
            if c.closed:
                continue
            self._update_wnd(c)
            for _ in range(1 + DUP_ACK_THRESHOLD):
                self._ctl(c, ACK)

    def timer(self, now: float) -> None:
        """Handshake, retransmission, half-close and idle timeouts."""
        for c in list(self.conns.values()):
            if c.closed:
                continue
            if c.state != ESTABLISHED:
                if now - c.created > SYN_TIMEOUT:
                    log.debug(f"{c}: handshake timeout")
                    self._reset(c)
                elif c.state == SYN_SENT and now - c.created > 1.0 * (1 + c.retrans) * 2:
                    c.retrans += 1
                    mss = self.mss4 if c.version == 4 else self.mss6
                    self._ctl(c, SYN, seq=c.isn, opts=ptcp.syn_options(mss, WS_TO_GUEST))
                elif c.state == SYNACK_SENT and now - c.last_progress >= 1 << min(c.retrans, 2):
                    # the guest's ACK may be lost, and a client that waits for
                    # the server to speak first sends nothing else
                    c.retrans += 1
                    self._send_synack(c)
                continue
            unacked = _unacked(c)
            if unacked and now - c.last_progress > ACK_TIMEOUT * (1 << min(c.retrans, 3)):
                c.retrans += 1
                if c.retrans > MAX_RETRANS:
                    log.debug(f"{c}: no ACK from guest, reset")
                    self._reset(c)
                    continue
                c.last_progress = now
                self._rewind(c)
            elif not unacked and c.wnd_from_tap == 0 and not c.fin_sent:
                # zero window probe: an old sequence number makes the guest answer
                self._ctl(c, ACK, seq=(c.seq_to_tap - 1) & SEQ_MASK)
            elif not unacked and c.more and not c.fin_sent and c.sock is not None:
                # nothing in flight, yet data may wait in the socket: a frame the
                # tap refused (passt's client gone) left it there, and a full
                # socket buffer brings no new EPOLLIN edge
                self._send_data(c)
                if c.closed:
                    continue
            if (c.tap_fin or c.fin_ever) and now - c.last_activity > FIN_TIMEOUT:
                log.debug(f"{c}: half-closed timeout")
                self._reset(c)
            elif now - c.last_activity > ACT_TIMEOUT:
                log.debug(f"{c}: idle timeout")
                self._reset(c)
        if log.enabled(DEBUG) and self.conns:
            log.trace(f"tcp: {len(self.conns)} connections, {self.stats}")

    def summary(self) -> str:
        """Counters for the worker's final statistics."""
        return f"tcp: {len(self.conns)} open, {self.stats}"
