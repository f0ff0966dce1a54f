# SPDX-License-Identifier: GPL-2.0-or-later
"""Passing file descriptors over a UNIX socket (SCM_RIGHTS).

This module owns the two wrappers the parent and the worker use to hand each
other descriptors. Receiving is strict: descriptors are received
close-on-exec, any beyond the number asked for are closed, and a message
whose data or control part was truncated is refused after closing every
descriptor that did arrive, so that no descriptor can leak on an error path.
"""

from __future__ import annotations

import array
import errno
import os
import socket
import struct

__all__ = ["FdPassError", "recv_fds", "send_fds"]

_INT_SIZE = array.array("i").itemsize
# plain ints: OR-ing socket's enum flags costs more than the recvmsg itself
_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_CTRUNC = int(socket.MSG_CTRUNC)
_TRUNC = int(socket.MSG_TRUNC)
_CSPACE = {n: socket.CMSG_SPACE(n * _INT_SIZE) for n in range(1, 17)}
_SOL_SOCKET, _SCM_RIGHTS = int(socket.SOL_SOCKET), int(socket.SCM_RIGHTS)
_INT = struct.Struct("i")


class FdPassError(OSError):
    """A received message was malformed (truncated); its fds are closed.

    ``data``: the bytes of the message that did arrive (on MSG_CTRUNC the
    data is whole, only its fds are lost: the receiver can still tell
    which message it was).
    """

    data: bytes = b""


def send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> int:
    """Send data with fds attached as one message; returns bytes sent.

    data must not be empty (a receiver cannot tell an empty message with fds
    from end of stream on a stream socket, and SCM_RIGHTS needs a byte to
    ride on).
    """
    if not data:
        raise ValueError("send_fds: data must not be empty")
    if not fds:
        return sock.sendmsg([data])
    if len(fds) == 1:  # the broker's every reply: one int packed, not an array built
        return sock.sendmsg([data], [(_SOL_SOCKET, _SCM_RIGHTS, _INT.pack(fds[0]))])
    return sock.sendmsg([data], [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds))])


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def recv_fds(
    sock: socket.socket, bufsize: int, maxfds: int, flags: int = 0
) -> tuple[bytes, list[int]]:
    """Receive one message and at most maxfds fds: returns (data, fds).

    Received fds are close-on-exec. Extra fds beyond maxfds (the kernel may
    fit more into the padded control buffer) are closed and dropped. If the
    control data was truncated (MSG_CTRUNC: the sender attached more fds than
    fit) or, on a datagram/seqpacket socket, the data was (MSG_TRUNC), every
    fd that arrived is closed and FdPassError (an OSError) is raised.
    An empty data with no fds means end of stream / peer closed. flags are
    passed to recvmsg (e.g. MSG_DONTWAIT; socket.recv_fds of Python 3.11
    ignores its flags argument, hence this function).
    """
    if maxfds < 0:
        raise ValueError("recv_fds: maxfds must be >= 0")
    ancbufsize = (_CSPACE.get(maxfds) or socket.CMSG_SPACE(maxfds * _INT_SIZE)) if maxfds else 0
    data, ancdata, rflags, _addr = sock.recvmsg(bufsize, ancbufsize, _CLOEXEC | int(flags))

    fds: list[int] = []
    for level, ctype, cdata in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            usable = len(cdata) - (len(cdata) % _INT_SIZE)
            arr = array.array("i")
            arr.frombytes(cdata[:usable])
            fds.extend(arr)

    if rflags & _CTRUNC:
        _close_all(fds)
        err = FdPassError(
            errno.EMSGSIZE,
            f"recv_fds: control data truncated (more than {maxfds} fds sent, or out of fds); "
            f"closed {len(fds)} received fds",
        )
        err.data = data
        raise err
    if rflags & _TRUNC:
        _close_all(fds)
        raise FdPassError(
            errno.EMSGSIZE,
            f"recv_fds: message longer than {bufsize} bytes; closed {len(fds)} received fds",
        )
    if len(fds) > maxfds:
        _close_all(fds[maxfds:])
        del fds[maxfds:]
    return data, fds
