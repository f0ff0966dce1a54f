# SPDX-License-Identifier: GPL-2.0-or-later
"""Frame I/O on passt's UNIX stream socket (qemu ``-netdev stream``).

Sandboxed only. This is the passt-mode counterpart of ``tap.Tap``: the
worker loop sees the same ``fd`` / ``readable(on_frame, events)`` /
``write(frame)`` / ``write_raw(buf)`` interface.

Wire format: each Ethernet frame is preceded by its length as a 4-byte
big-endian integer; there is no virtio-net header, so every frame toward
the guest must carry complete checksums (``needs_csum`` is True here).

Who holds what. The parent listens on the socket and accepts; the worker
never sees the listening socket (and its seccomp policy has no accept for
it). The parent hands each accepted connection over a private
``SOCK_SEQPACKET`` control socket (``CLIENT`` message, the fd attached over
SCM_RIGHTS) and the worker answers ``GONE`` when that connection ends. The
worker's view of both sockets is a small epoll set of its own: ``fd`` is
that epoll instance, so the main loop watches one fd whatever the client
of the moment is.

Reading. Frames are parsed out of one preallocated buffer: partial frames
wait for the next read, many frames in one read are all dispatched, and
the parser never loses its place in the stream:

- a length below 14 (shorter than an Ethernet header, including 0) or
  above ``MAX_FRAME`` (65535, as passt) drops that frame; its bytes are
  consumed (skipped across as many reads as needed), so the next length
  is read where the peer put it;
- a length above ``SKIP_MAX`` (16 MiB) is not something any qemu sends: the
  stream is taken to be corrupt (there is no marker to resynchronise on),
  and the connection is closed, as if the client had gone away. A client
  with ``reconnect=`` simply connects again; with --one-off passt exits.

Writing. Non-blocking ``writev`` of length + frame. If the kernel takes only
part of it, the rest waits in an output buffer flushed on EPOLLOUT, and
later frames queue behind it (the stream must never interleave); when that
buffer would pass ``OUT_MAX`` whole frames are dropped instead (TCP toward
the guest retransmits, as after any loss).
"""

from __future__ import annotations

import os
import select
import socket
import struct
from collections.abc import Callable

from sandbox.fdpass import FdPassError, recv_fds

from ..log import log
from ..proto.checksum import csum_partial
from .tap import VNET_HDR_LEN, Pcap

CLIENT = b"PSTC"  # parent to worker: the connected client, its fd attached
GONE = b"PSTG"  # worker to parent: the client connection has ended
ETH_HLEN = 14
MAX_FRAME = 65535  # longest frame accepted in either direction
SKIP_MAX = 16 << 20  # longer "lengths" mean a corrupt stream: close it
RBUF_SIZE = 256 << 10  # read buffer; must hold at least 4 + MAX_FRAME
OUT_MAX = 4 << 20  # bytes queued toward a slow client before frames are dropped
READ_BUDGET = 64  # reads per wake-up before other fds get a turn
_LEN = struct.Struct("!I")
_VNET = struct.Struct("<BBHHHH")
_VNET_NEEDS_CSUM = 1


class StreamTap:
    """The current client of the passt socket, behind a Tap-like interface."""

    needs_csum = True  # no virtio-net header: checksums must be complete

    def __init__(self, ctl_fd: int, pcap: Pcap | None) -> None:
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=ctl_fd)
        self.ctl.setblocking(False)
        self.pcap = pcap
        self.ep = select.epoll()
        self.fd = self.ep.fileno()
        self.ep.register(self.ctl.fileno(), select.EPOLLIN)
        self.client = -1
        self.rbuf = bytearray(RBUF_SIZE)
        self.rview = memoryview(self.rbuf)
        self.have = 0  # bytes of rbuf holding unparsed stream data
        self.skip = 0  # bytes of a dropped frame still to be consumed
        self.out = bytearray()  # bytes waiting for the client to accept them
        self.errors = 0
        self.moved = 0  # frame bytes read and written; the loop reads and clears it
        self.on_attach: Callable[[], None] | None = None  # the loop's: a client (again)
        self.stats = {"sessions": 0, "frames_in": 0, "frames_out": 0, "short": 0,
                      "oversized": 0, "corrupt": 0, "out_dropped": 0, "gso_dropped": 0}

    # -- events -------------------------------------------------------------
    def readable(self, on_frame: Callable[[memoryview], None], events: int) -> None:
        """Handle whatever is ready in our epoll set: control messages, frames."""
        for fd, ev in self.ep.poll(0, 8):
            if fd == self.ctl.fileno():
                self._control()
            elif fd == self.client:
                if ev & select.EPOLLOUT:
                    self._flush()
                if fd == self.client and ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self._read(on_frame)

    def _control(self) -> None:
        while True:
            try:
                data, fds = recv_fds(self.ctl, 16, 1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except (FdPassError, OSError):
                self.errors += 1
                return
            if not data:  # the parent has gone; the broker socket ends the loop
                for fd in fds:
                    os.close(fd)
                self.ep.unregister(self.ctl.fileno())
                return
            if data != CLIENT or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                continue
            self.attach(fds[0])

    def attach(self, fd: int) -> None:
        """Make fd the client connection (replacing any previous one)."""
        if self.client >= 0:
            self._close(notify=False)
        os.set_blocking(fd, False)
        self.client = fd
        self.have = self.skip = 0
        self.out.clear()
        self.stats["sessions"] += 1
        self.ep.register(fd, select.EPOLLIN)
        if self.on_attach is not None and self.stats["sessions"] > 1:
            self.on_attach()

    def _close(self, notify: bool = True, why: str = "") -> None:
        """Forget the client connection; tell the parent it has gone."""
        if self.client < 0:
            return
        if why:
            log.debug(f"client connection: {why}")
        try:
            self.ep.unregister(self.client)
        except OSError:
            pass
        os.close(self.client)
        self.client = -1
        self.have = self.skip = 0
        self.out.clear()
        if notify:
            try:
                self.ctl.send(GONE)
            except OSError:
                pass

    # -- guest to us ----------------------------------------------------------
    def _read(self, on_frame: Callable[[memoryview], None]) -> None:
        fd = self.client
        view = self.rview
        for _ in range(READ_BUDGET):
            try:
                n = os.readv(fd, [view[self.have:]])
            except BlockingIOError:
                return
            except OSError as e:
                return self._close(why=e.strerror or "read error")
            if n == 0:
                return self._close(why="closed by the client")
            self.have += n
            self.moved += n
            if not self._parse(on_frame) or self.client != fd:
                return

    def _parse(self, on_frame: Callable[[memoryview], None]) -> bool:
        """Dispatch every complete frame in the buffer; False if the client went away."""
        fd, view, end, pos = self.client, self.rview, self.have, 0
        stats = self.stats
        while True:
            if self.skip:
                k = min(self.skip, end - pos)
                pos += k
                self.skip -= k
                if self.skip:
                    break
            if end - pos < 4:
                break
            (length,) = _LEN.unpack_from(view, pos)
            if length > MAX_FRAME:
                if length > SKIP_MAX:
                    stats["corrupt"] += 1
                    self._close(why=f"frame length {length}: stream corrupt")
                    return False
                stats["oversized"] += 1
                pos += 4
                self.skip = length
                continue
            if end - pos - 4 < length:
                break
            start = pos + 4
            pos = start + length
            if length < ETH_HLEN:
                stats["short"] += 1
                continue
            frame = view[start:pos]
            stats["frames_in"] += 1
            if self.pcap is not None and self.pcap.fd >= 0:
                self.pcap.write(frame)
            on_frame(frame)
            if self.client != fd:  # a reply failed and ended the connection
                return False
        rest = end - pos
        if pos and rest:
            self.rbuf[:rest] = bytes(view[pos:end])
        self.have = rest
        return True

    # -- us to guest ----------------------------------------------------------
    def write(self, frame: bytes | bytearray | memoryview) -> None:
        """Send one complete frame (checksums already complete) to the client."""
        n = len(frame)
        self.moved += n
        if self.client < 0 or not ETH_HLEN <= n <= MAX_FRAME:
            self.stats["out_dropped"] += 1
            return
        if self.pcap is not None and self.pcap.fd >= 0:
            self.pcap.write(frame)
        hdr = _LEN.pack(n)
        if self.out:
            if len(self.out) + 4 + n > OUT_MAX:
                self.stats["out_dropped"] += 1
                return
            self.out += hdr
            self.out += frame
            self.stats["frames_out"] += 1
            return
        try:
            sent = os.writev(self.client, [hdr, frame])
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self.errors += 1
            return self._close(why=e.strerror or "write error")
        self.stats["frames_out"] += 1
        if sent < 4 + n:
            if sent < 4:
                self.out += hdr[sent:]
                self.out += frame
            else:
                self.out += frame[sent - 4:]
            self.ep.modify(self.client, select.EPOLLIN | select.EPOLLOUT)

    def write_raw(self, buf: bytes | bytearray | memoryview) -> bool:
        """A frame behind a virtio-net header (as written to the pasta tap).

        The header is consumed here: a NEEDS_CSUM checksum is completed
        (the field holds the pseudo-header sum; the sum over everything
        from csum_start is folded in), then the bare frame is written.
        Segmentation (GSO) is not done: such a frame is dropped and counted.
        """
        if len(buf) < VNET_HDR_LEN + ETH_HLEN:
            return False
        self.moved += len(buf)
        flags, gso, _hl, _gs, cstart, coff = _VNET.unpack_from(buf, 0)
        if gso:
            self.stats["gso_dropped"] += 1
            return False
        frame = buf[VNET_HDR_LEN:]
        if flags & _VNET_NEEDS_CSUM:
            at = cstart + coff
            if at + 2 > len(frame):
                return False
            frame = bytearray(frame)
            c = (~csum_partial(memoryview(frame)[cstart:])) & 0xFFFF
            if c == 0 and coff == 6:  # UDP: zero means "no checksum", send 0xFFFF
                c = 0xFFFF
            struct.pack_into("!H", frame, at, c)
        if self.client < 0:
            self.stats["out_dropped"] += 1
            return False
        self.write(frame)
        return self.client >= 0

    def _flush(self) -> None:
        if self.client < 0:
            return
        try:
            sent = os.write(self.client, self.out)
        except BlockingIOError:
            return
        except OSError as e:
            self.errors += 1
            return self._close(why=e.strerror or "write error")
        del self.out[:sent]
        if not self.out:
            self.ep.modify(self.client, select.EPOLLIN)

    def summary(self) -> str:
        """Counters, one line."""
        return "stream: " + ", ".join(f"{k} {v}" for k, v in self.stats.items())
