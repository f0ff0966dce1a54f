# SPDX-License-Identifier: GPL-2.0-or-later
"""Many datagrams per system call: recvmmsg through ctypes, UDP_SEGMENT sends.

Sandboxed only (imported by worker/udp.py and worker/udpsplice.py before
the sandbox goes up: libc is opened here at import). Python's socket
module has no ``recvmmsg``; this module owns one receive area shared by
every UDP socket of the worker (the loop is single-threaded and each
handler consumes what it received before it returns):

- ``RecvBatch.recv(fd)`` fills up to ``SLOTS`` slots of ``SLOT`` bytes
  (each a whole datagram: 65,536 bytes hold the largest UDP payload) in one
  ``recvmmsg`` and returns how many; ``lens`` holds their lengths and
  ``slot(i, n)`` a view of the i-th payload; with ``names`` also the
  sender of each (``sender(i)``: the (address, port) a ``recvfrom``
  would give).
- ``set_segment(sock, size)``: the socket's ``UDP_SEGMENT`` size, so that
  one ``send()`` of many payloads of that size (the last may be shorter)
  leaves as that many datagrams. It is a socket option and not the cmsg
  form on purpose: the worker sends with ``send()`` only, whose seccomp
  rule checks that no destination address is given; ``sendmsg`` and
  ``sendmmsg`` carry theirs in memory a filter cannot read, so they stay
  forbidden (docs/security.md).

The area is an anonymous mapping: pages are only touched (and counted in
the worker's memory) as far as datagrams fill them.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct

from ..log import log

SLOTS = 64  # datagrams per recvmmsg (iperf3 at 1,400 bytes: 46 of them fill one GSO frame)
SLOT = 65536  # bytes per slot: the largest UDP payload fits
SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h
MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS on Linux 4.18 to 6.x (128 on newer ones: 64 is safe)
MSG_DONTWAIT = socket.MSG_DONTWAIT

_IOV = struct.Struct("PN")  # iovec: base, len
_MSGHDR = struct.Struct("PI4xPNPNi4x")  # msghdr: name, namelen, iov, iovlen, control, controllen, flags
_MMSG = 64  # sizeof(struct mmsghdr) on 64-bit Linux (msghdr 56 + msg_len 4 + padding)
_NAMELEN = 28  # sockaddr_in6, the larger of the two families
_SA4 = struct.Struct("!2xH4s")
_SA6 = struct.Struct("!2xH4x16s")

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _recvmmsg = _libc.recvmmsg
    _recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    _recvmmsg.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - every glibc and musl since 2010 has it
    _recvmmsg = None

AVAILABLE = _recvmmsg is not None and struct.calcsize("P") == 8


def _addr(obj: object) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(obj))  # type: ignore[arg-type]


class RecvBatch:
    """A receive area of SLOTS datagrams for recvmmsg; see the module docstring."""

    def __init__(self, names: bool, slots: int = SLOTS) -> None:
        self.slots = slots
        self.area = mmap.mmap(-1, slots * SLOT)
        self.view = memoryview(self.area)
        self.iovs = bytearray(_IOV.size * slots)
        self.msgs = bytearray(_MMSG * slots)
        self.names = bytearray(_NAMELEN * slots) if names else None
        base, iovs = _addr(self.area), _addr(self.iovs)
        names_at = _addr(self.names) if names else 0
        for i in range(slots):
            _IOV.pack_into(self.iovs, i * _IOV.size, base + i * SLOT, SLOT)
            _MSGHDR.pack_into(self.msgs, i * _MMSG, names_at + i * _NAMELEN if names else 0,
                              _NAMELEN if names else 0, iovs + i * _IOV.size, 1, 0, 0, 0)
        self.words = memoryview(self.msgs).cast("I")  # msg_len of slot i: words[16 * i + 14]
        self._msgs_at = _addr(self.msgs)
        self._pristine = bytes(self.msgs)  # every msg_namelen at _NAMELEN again: one copy per call
        # each slot's whole area, to cut payload views from without a method call per datagram
        self.slots_views = [self.view[i * SLOT : (i + 1) * SLOT] for i in range(slots)]
        self.errno = 0

    def recv(self, fd: int) -> int:
        """Datagrams waiting on fd, up to ``slots``, in one call; 0 if none (``errno`` says why)."""
        if self.names is not None:  # the kernel wrote each namelen last time: room again
            self.msgs[:] = self._pristine
        n = _recvmmsg(fd, self._msgs_at, self.slots, MSG_DONTWAIT, None)
        if n < 0:
            self.errno = ctypes.get_errno()
            return 0
        return n

    def lengths(self, n: int) -> list[int]:
        """Bytes of datagrams 0..n-1 (one slice of the msg_len words, no loop in Python)."""
        return self.words[14 : 16 * n : 16].tolist()

    def payloads(self, i: int, j: int) -> list[memoryview]:
        """Views of the payloads of datagrams i..j-1."""
        lens = self.words[16 * i + 14 : 16 * j : 16].tolist()
        return [v[:m] for v, m in zip(self.slots_views[i:j], lens, strict=True)]

    def length(self, i: int) -> int:
        """Bytes of datagram i."""
        return self.words[16 * i + 14]

    def slot(self, i: int, n: int) -> memoryview:
        """The payload of datagram i (n bytes)."""
        return self.view[i * SLOT : i * SLOT + n]

    def same_sender(self, i: int, j: int) -> bool:
        """Whether datagrams i and j came from the same address and port (names only)."""
        names = self.names
        assert names is not None
        a, b = i * _NAMELEN, j * _NAMELEN
        return names[a : a + _NAMELEN] == names[b : b + _NAMELEN]

    def one_sender(self, n: int) -> bool:
        """Whether datagrams 0..n-1 all came from the same address and port (names only;
        one comparison at C speed instead of one per datagram)."""
        names = self.names
        assert names is not None
        return names[: _NAMELEN * n] == names[:_NAMELEN] * n

    def sender(self, i: int) -> tuple[int, bytes, int]:
        """(family, packed address, port) of datagram i (names only)."""
        names = self.names
        assert names is not None
        off = i * _NAMELEN
        fam = names[off] | names[off + 1] << 8
        if fam == socket.AF_INET:
            port, raw = _SA4.unpack_from(names, off)
        else:
            port, raw = _SA6.unpack_from(names, off)
        return fam, raw, port


class Segmenter:
    """Sends runs of equal-size payloads as one ``send()`` with UDP_SEGMENT.

    ``ok`` goes False for good at the first refusal (a kernel without
    UDP_SEGMENT, or one that rejects a run): every run then goes out one
    datagram per ``send()``, as before.
    """

    def __init__(self) -> None:
        self.ok = True
        self.runs = 0  # sends that carried more than one datagram
        self.segments = 0  # datagrams they carried

    def set_size(self, sock: socket.socket, size: int) -> bool:
        """Set sock's segment size (0: off); False when the kernel refuses."""
        try:
            sock.setsockopt(SOL_UDP, UDP_SEGMENT, size)
            return True
        except OSError as e:
            if self.ok:
                log.debug(f"udp: UDP_SEGMENT refused ({e.strerror}): one datagram per send from now on")
            self.ok = False
            return False


_shared: dict[bool, RecvBatch] = {}


def shared(names: bool) -> RecvBatch | None:
    """The worker's receive area (with or without senders), made at first use; None
    without recvmmsg (the callers then receive one datagram per call)."""
    if not AVAILABLE:
        return None
    rb = _shared.get(names)
    if rb is None:
        rb = _shared[names] = RecvBatch(names)
    return rb
