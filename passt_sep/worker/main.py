# SPDX-License-Identifier: GPL-2.0-or-later
"""Entry of the worker process: isolate, receive the start message, serve.

Runs in the child the parent forked before set-up. The sandbox goes up
first, before any byte from the guest exists; then the worker waits for
the Config and its fds (tap, log file, pcap file) on the broker socket,
says it is ready, and runs the loop. It leaves with os._exit so nothing
runs after the loop that the seccomp policy does not allow.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
from pathlib import Path
from typing import NoReturn

from sandbox.fdpass import recv_fds
from sandbox.isolate import IsolationError, isolate_worker
from sandbox.seccomp import Policy

from .. import ipc
from ..log import log
from .loop import Worker
from .stream import StreamTap
from .tap import Pcap, Tap

# The policies/ folder of a source tree (editable install), else the copy a
# regular install puts under <prefix>/share/passt-sep/policies.
_SOURCE_POLICIES = Path(__file__).resolve().parent.parent.parent / "policies"
POLICY_DIR = (_SOURCE_POLICIES if _SOURCE_POLICIES.is_dir()
              else Path(sys.prefix) / "share" / "passt-sep" / "policies")


def policy_path(mode: str) -> Path:
    """The seccomp policy file of a mode."""
    return POLICY_DIR / f"{mode}.policy"


def worker_main(sock: socket.socket, mode: str, policy: Policy) -> NoReturn:
    """Become the sandboxed worker; never returns."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        isolate_worker(policy, keep_fds=[0, 1, 2, sock.fileno()])
        data, fds = recv_fds(sock, ipc.START_MAX, ipc.MAX_START_FDS)
        if not data:
            os._exit(0)  # parent gave up during set-up
        start = pickle.loads(data)
        it = iter(fds)
        tap_fd = next(it)
        log_fd = next(it) if start["log_file"] else None
        pcap_fd = next(it) if start["pcap"] else None
        log.configure(mode, start["level"], start["stderr_fd"], log_fd, start["stamp"])
        pcap = Pcap(pcap_fd) if pcap_fd is not None else None
        # passt: the first fd is the control socket of the client connections
        tap = StreamTap(tap_fd, pcap) if start.get("stream") else Tap(tap_fd, pcap)
        w = Worker(start["cfg"], tap, sock, start["guest_mac"])
        sock.send(b"ready")
        status = w.run()
        log.debug(w.stats())
    except IsolationError as e:
        os.write(2, f"{mode}: {e}\n".encode())
    except BaseException as e:  # noqa: BLE001 - the worker must not unwind
        try:
            os.write(2, f"{mode}: worker: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    os._exit(status)
