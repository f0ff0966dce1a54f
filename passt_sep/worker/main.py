# SPDX-License-Identifier: GPL-2.0-or-later
"""Entry of the worker process: isolate, receive the start message, serve.

Runs in the child the parent forked before set-up. Before the sandbox goes
up it lets go of everything of the user's: stdin, stdout and stderr become
/dev/null (in foreground pasta they were the user's terminal), its log
lines go to the parent over the log channel (``log.Log.to_channel``; the
parent writes them to stderr or the log file), and RLIMIT_FSIZE is set to
the pcap cap (0 without --pcap: the pcap file is the one host file it
may write; SIGXFSZ is ignored, so a write past it fails with EFBIG), and
RLIMIT_NOFILE, soft and hard, is set to the fd budget its tables are
sized from (worker/limits.py; its policy has no setrlimit afterwards). Then
it isolates itself, before any byte from the guest exists; waits for the
Config and its fds (tap, pcap file) on the broker socket, says it is
ready, and runs the loop. It leaves with os._exit so nothing runs after
the loop that the seccomp policy does not allow.
"""

from __future__ import annotations

import _pickle as pickle  # (_pickle, not pickle: the same functions without pickle.py and the re it imports, 2-3 ms of start-up)
import os
import resource
import signal
import socket
import sys

from sandbox.fdpass import recv_fds
from sandbox.isolate import IsolationError, isolate_worker

from .. import ipc
from ..log import log
from . import limits

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from typing import NoReturn

    from sandbox.bpf import Program


def preload() -> None:
    """Import the worker's code: in the forked child, before it switches user.

    The parent does not import the loop and the tables at all (about 70 ms
    of start-up it would spend before the socket, tap or namespace work);
    the child loads them while the parent goes on with set-up, and before
    its switch to --runas / nobody (the interpreter's files may be out of
    that user's reach) and long before its seccomp filter (no file can be
    opened afterwards).
    """
    from . import loop, stream, tap  # noqa: F401

# The policies/ folder of a source tree (editable install), else the copy a
# regular install puts under <prefix>/share/passt-sep/policies.
# (os.path, not pathlib: pathlib, fnmatch and urllib.parse cost start-up 2-4 ms)
_SOURCE_POLICIES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.realpath(__file__)))), "policies")
POLICY_DIR = (_SOURCE_POLICIES if os.path.isdir(_SOURCE_POLICIES)
              else os.path.join(sys.prefix, "share", "passt-sep", "policies"))


def policy_path(mode: str) -> str:
    """The seccomp policy file of a mode."""
    return os.path.join(POLICY_DIR, f"{mode}.policy")


def _let_go_of_the_user(log_sock: socket.socket, fsize: int) -> int:
    """stdio to /dev/null, logging to the channel, RLIMIT_FSIZE; returns the cap in force."""
    log.to_channel(log_sock.fileno())
    null = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(null, n)
    if null > 2:
        os.close(null)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY:
        fsize = min(fsize, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return fsize


def worker_main(sock: socket.socket, mode: str, policy: Program, log_sock: socket.socket,
                fsize: int, parent_pid: int = 0) -> NoReturn:
    """Become the sandboxed worker; never returns.

    ``log_sock``: the worker's end of the log channel (setup.worklog);
    ``fsize``: the most it may write to a file (the pcap cap, 0 without one);
    ``parent_pid``: the parent, whose death kills the worker (PR_SET_PDEATHSIG
    SIGKILL, set by the isolation after its last credential change; if the
    parent died before, the worker does not start).
    """
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        # the parent's set-up handlers (setup/parent.py) are not the worker's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        fsize = _let_go_of_the_user(log_sock, fsize)
        limits.apply()  # the fd budget (worker/limits.py), while setrlimit is still allowed
        isolate_worker(policy, keep_fds=[0, 1, 2, sock.fileno(), log_sock.fileno()],
                       parent_death_signal=signal.SIGKILL if parent_pid else 0, parent_pid=parent_pid)
        data, fds = recv_fds(sock, ipc.START_MAX, ipc.MAX_START_FDS)
        if not data:
            os._exit(0)  # parent gave up during set-up
        from .loop import Worker
        from .stream import StreamTap
        from .tap import Pcap, Tap

        start = pickle.loads(data)
        it = iter(fds)
        tap_fd = next(it)
        pcap_fd = next(it) if start["pcap"] else None
        log.level = start["level"]
        pcap = Pcap(pcap_fd, fsize) if pcap_fd is not None else None
        # passt: the first fd is the control socket of the client connections
        tap = StreamTap(tap_fd, pcap) if start.get("stream") else Tap(tap_fd, pcap)
        w = Worker(start["cfg"], tap, sock, start["guest_mac"])
        sock.send(b"ready")
        status = w.run()
        log.debug(w.stats())
    except IsolationError as e:
        _last_words(f"{mode}: {e}")
    except BaseException as e:  # noqa: BLE001 - the worker must not unwind
        _last_words(f"{mode}: worker: {type(e).__name__}: {e}")
    os._exit(status)


def _last_words(msg: str) -> None:
    """An error line to the parent, whatever happens (the worker must not unwind)."""
    try:
        log.err(msg)
    except BaseException:  # noqa: BLE001, S110
        pass
