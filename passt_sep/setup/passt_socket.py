# SPDX-License-Identifier: GPL-2.0-or-later
"""The UNIX domain socket a passt-mode run listens on (parent only).

``-s/--socket PATH`` names it; without it the first free path of
``/tmp/passt_1.socket`` .. ``/tmp/passt_99.socket`` is taken. A path is
"in use" when something accepts connections on it (a probing connect
succeeds): with an explicit -s that is an error, while probing it is
skipped. A socket file nobody listens on (ECONNREFUSED) is stale and is
unlinked. Anything at the path that is not a socket is left alone: an
error, never an unlink.

In passt mode the socket usually listens since the first stage
(``passt_sep.early``, before the rest of the program loads); ``listen``
then takes it as it is.

``-F/--fd`` takes an inherited, already connected stream socket instead.

The parent keeps the listening socket (the worker never holds it) and
accepts; see ``setup.passt_run``.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable

from ..early import SOCKET_MAX, default_path, in_use
from ..errors import SetupError, signals_held
from ..log import log

BACKLOG = 4


class SocketInUse(SetupError):
    """Something already accepts connections on the path."""

    def __init__(self, path: str) -> None:
        Exception.__init__(self, f"Socket path {path} already in use")
        self.step = "socket"


def _bind(path: str) -> socket.socket:
    """Unlink a stale socket file at path, bind and listen (non-blocking)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SetupError(f"socket path {path}", "exists and is not a socket")
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.bind(path)
        s.listen(BACKLOG)
    except OSError:
        s.close()
        raise
    s.setblocking(False)
    return s


def _bind_recorded(path: str, record: Callable[[str], None] | None) -> socket.socket:
    """_bind, and record(path) for set-up's clean-up in the same step: the
    set-up signals wait across both (a signal between them would leave the
    socket file behind), and only across both, not across the probing."""
    with signals_held():
        s = _bind(path)
        if record is not None:
            record(path)
    return s


def listen(path: str | None, early_fd: int | None = None,
           probed: list[str] | None = None,
           record: Callable[[str], None] | None = None) -> tuple[socket.socket, str]:
    """The listening socket and its path; SetupError if none can be had.

    ``early_fd``: the socket passt_sep.early made for this very path before
    the rest of the program loaded (``probed``: the default paths it looked
    at); it is taken as it is, and the log says what it did."""
    if early_fd is not None:
        s = socket.socket(fileno=early_fd)
        s.setblocking(False)
        for p in probed or []:
            log.info(f"Probing path {p}")
        bound = s.getsockname()
        log.info(f"UNIX domain socket bound at {bound}")
        return s, bound
    if path is not None:
        if in_use(path):
            raise SocketInUse(path)
        try:
            s = _bind_recorded(path, record)
        except OSError as e:
            raise SetupError(f"UNIX socket {path}", e) from None
        log.info(f"UNIX domain socket bound at {path}")
        return s, path
    last: OSError | None = None
    for n in range(1, SOCKET_MAX + 1):
        p = default_path(n)
        log.info(f"Probing path {p}")
        if in_use(p):
            continue
        try:
            s = _bind_recorded(p, record)
        except (OSError, SetupError) as e:
            last = e if isinstance(e, OSError) else OSError(errno.EEXIST, str(e))
            continue
        log.info(f"UNIX domain socket bound at {p}")
        return s, p
    raise SetupError("UNIX socket", last or "no free path in /tmp/passt_1..99.socket")


def inherited(fd: int) -> socket.socket:
    """The connected stream socket passed as -F/--fd."""
    try:
        s = socket.socket(fileno=fd)
    except OSError as e:
        raise SetupError(f"--fd {fd}", e) from None
    if s.type != socket.SOCK_STREAM:
        s.detach()
        raise SetupError(f"--fd {fd}", "not a stream socket")
    try:
        s.getpeername()
    except OSError as e:
        s.detach()
        raise SetupError(f"--fd {fd}", e) from None
    os.set_inheritable(fd, False)
    return s


def qemu_hint(path: str) -> str:
    """How to start qemu against this socket, as passt prints it."""
    return ("You can now start qemu (>= 7.2, with commit 13c6be96618c):\n"
            "    kvm ... -device virtio-net-pci,netdev=s -netdev stream,id=s,server=off,"
            f"addr.type=unix,addr.path={path}\n"
            "or qrap, for earlier qemu versions:\n"
            "    ./qrap 5 kvm ... -net socket,fd=5 -net nic,model=virtio")
