# SPDX-License-Identifier: GPL-2.0-or-later
"""Frame I/O on the pasta tap device (virtio-net header) and the pcap copy.

Sandboxed only. Reads go into one preallocated buffer with ``readv``; the
10-byte virtio-net header in front of each frame is skipped on the way in
(its NEEDS_CSUM only says a checksum is still to be filled in, nothing
for us to verify), except that a GSO_UDP_L4 frame (a namespace sender's
UDP_SEGMENT run, the tap offering USO) sets ``seg`` to its segment size
while it is dispatched (worker/udp.py splits it). Frames we write carry a zero header: their checksums
are complete. Every frame in both directions goes to the pcap file, if any.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import time
from collections.abc import Callable

from ..log import log

VNET_HDR_LEN = 10
GSO_UDP_L4 = 5  # virtio-net gso_type of a UDP segmentation offload frame
_ZERO_HDR = bytes(VNET_HDR_LEN)
READ_BUDGET = 256  # frames read per wake-up before others get a turn
PCAP_HEADER = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_PCAP_REC = struct.Struct("=IIII")


class Pcap:
    """Classic libpcap file on an fd opened by the parent, at most ``limit`` bytes.

    The worker's RLIMIT_FSIZE is the same limit (set before isolation), so
    even a worker that ignored this count could not write past it. Once a
    record does not fit, the capture stops with one warning and the fd is
    closed; nothing else changes.
    """

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self.limit = limit
        self.size = 0
        self._append([PCAP_HEADER])

    def write(self, frame: bytes | memoryview) -> None:
        """Append one frame with the current time (nothing once stopped)."""
        if self.fd < 0:
            return
        t = time.time()
        n = len(frame)
        self._append([_PCAP_REC.pack(int(t), int((t % 1) * 1e6), n, n), frame])

    def _append(self, parts: list) -> None:
        want = sum(len(p) for p in parts)
        if self.size + want > self.limit:
            self._stop(f"reached --pcap-size ({self.limit} bytes)")
            return
        try:
            done = os.writev(self.fd, parts)
        except OSError as e:
            self._stop(e.strerror or str(e))
            return
        self.size += done
        if done != want:  # the rest once more: it goes, or says why not (ENOSPC, EFBIG)
            rest = b"".join(bytes(p) for p in parts)[done:]
            try:
                n = os.write(self.fd, rest)
            except OSError as e:
                self._stop(e.strerror or str(e))
                return
            self.size += n
            if n != len(rest):
                self._stop("short write")

    def _stop(self, why: str) -> None:
        log.warn(f"pcap: {why}, capture stopped")
        try:
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1


class Tap:
    """The tap fd: frames in and out."""

    def __init__(self, fd: int, pcap: Pcap | None) -> None:
        self.fd = fd
        self.pcap = pcap
        self.buf = bytearray(VNET_HDR_LEN + 65536 + 256)
        self.view = memoryview(self.buf)
        self.errors = 0
        self.seg = 0  # the frame being handled is a UDP run of this segment size (0: not)
        self.moved = 0  # frame bytes read and written; the loop reads and clears it
        # called once the device is gone (deleted in the namespace, or the
        # namespace with it): the fd then polls EPOLLERR for ever and reads
        # EBADFD, so the loop must end instead of spinning on it
        self.on_gone: Callable[[str], None] | None = None

    def readable(self, on_frame: Callable[[memoryview], None], events: int) -> None:
        """Read and dispatch frames until the tap is empty or the budget is spent."""
        if events & (select.EPOLLERR | select.EPOLLHUP):
            self.errors += 1
            if self.on_gone is not None:
                self.on_gone("tap device gone")
                return
        fd, buf, view, buf0 = self.fd, [self.buf], self.view, self.buf
        for _ in range(READ_BUDGET):
            try:
                n = os.readv(fd, buf)
            except BlockingIOError:
                return
            except OSError as e:
                log.debug(f"tap read: {e.strerror}")
                if e.errno == errno.EBADFD and self.on_gone is not None:
                    self.on_gone("tap device gone")
                return
            if n <= VNET_HDR_LEN:
                continue
            # GSO_UDP_L4 (the tap offers USO): one UDP frame for a run of gso_size datagrams
            self.seg = buf0[4] | buf0[5] << 8 if buf0[1] == GSO_UDP_L4 else 0
            self.moved += n
            frame = view[VNET_HDR_LEN:n]
            if self.pcap is not None and self.pcap.fd >= 0:
                self.pcap.write(frame)
            on_frame(frame)

    def write_raw(self, buf: bytes | bytearray | memoryview) -> bool:
        """Write a frame that starts with its own virtio-net header (offloads)."""
        if self.pcap is not None and self.pcap.fd >= 0:
            self.pcap.write(buf[VNET_HDR_LEN:])
        self.moved += len(buf)
        try:
            os.write(self.fd, buf)
            return True
        except OSError as e:
            self.errors += 1
            log.debug(f"tap write: {e.strerror}")
            return False

    def write_parts(self, parts: list) -> bool:
        """``write_raw`` of the frame parts make together, in one ``writev`` (the
        kernel gathers them: no copy in Python)."""
        if self.pcap is not None and self.pcap.fd >= 0:
            self.pcap.write(b"".join(parts)[VNET_HDR_LEN:])
        try:
            self.moved += os.writev(self.fd, parts)
            return True
        except OSError as e:
            self.errors += 1
            log.debug(f"tap write: {e.strerror}")
            return False

    def write(self, frame: bytes) -> None:
        """Write one complete frame."""
        self.moved += len(frame)
        if self.pcap is not None and self.pcap.fd >= 0:
            self.pcap.write(frame)
        try:
            os.writev(self.fd, [_ZERO_HDR, frame])
        except OSError as e:
            self.errors += 1
            log.debug(f"tap write: {e.strerror}")
