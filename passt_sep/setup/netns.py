# SPDX-License-Identifier: GPL-2.0-or-later
"""Namespaces of the guest: create one around a command, or attach to one.

Parent only. Without privilege (no CAP_SYS_ADMIN), the parent first makes
a user namespace of its own in which it is root, as pasta does; the
network namespace it then creates (or joins, after joining the target's
user namespace) is owned by it, so it may enter it to create the tap.
A spawned command waits on a pipe until set-up is complete, then runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys

import prctl

from sandbox import ns

from ..errors import SetupError

CAP_SYS_ADMIN = 21
PR_SET_PDEATHSIG = 1


def has_cap_sys_admin() -> bool:
    """Whether the effective capability set holds CAP_SYS_ADMIN."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    except OSError:
        pass
    return False


def become_userns_root() -> None:
    """Make a user namespace with the caller mapped to root (single-threaded)."""
    uid, gid = os.geteuid(), os.getegid()
    # A process that changed its uid (root dropping to nobody first) is not
    # dumpable, and its /proc/self files then belong to root: its own id
    # maps could not be written. Dumpable for the three writes only.
    was_dumpable = prctl.get_dumpable()
    try:
        ns.unshare(ns.CLONE_NEWUSER)
        if not was_dumpable:
            prctl.set_dumpable(1)
        ns.write_id_maps("self", f"0 {uid} 1", f"0 {gid} 1")
    except OSError as e:
        raise SetupError("user namespace", e) from None
    finally:
        if not was_dumpable:
            prctl.set_dumpable(0)


NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type

# a FIFO or a terminal named where a namespace file belongs must not block
# the open (setns then says what it is: EINVAL, "Invalid argument")
_NS_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def join_userns(path: str) -> None:
    """Join a user namespace (single-threaded caller)."""
    try:
        fd = os.open(path, _NS_OPEN)
    except OSError as e:
        raise SetupError(f"user namespace {path}", e) from None
    try:
        if os.readlink(path) == os.readlink("/proc/self/ns/user"):
            return
        ns.setns(fd, ns.CLONE_NEWUSER)
    except OSError as e:
        raise SetupError(f"join user namespace {path}", e) from None
    finally:
        os.close(fd)


def open_netns(path: str) -> int:
    """Open a network namespace file; SetupError naming it if that fails."""
    try:
        fd = os.open(path, _NS_OPEN)
    except OSError as e:
        raise SetupError(f"network namespace {path}", e) from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = -1
    if kind != ns.CLONE_NEWNET:
        os.close(fd)
        raise SetupError(f"network namespace {path}", "not a network namespace file")
    return fd


class Spawned:
    """A command in new network, UTS and IPC namespaces, held until go()."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        ready_r, ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the command's process
            try:
                os.close(ready_r)
                os.close(self._go_w)
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
                ns.unshare(ns.CLONE_NEWNET | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC)
                os.write(ready_w, b"1")
                os.close(ready_w)
                if os.read(self._go_r, 1) != b"1":
                    os._exit(1)
                os.close(self._go_r)
                for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD,
                            signal.SIGHUP, signal.SIGQUIT):
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                os.execvp(argv[0], argv)
            except OSError as e:
                try:
                    os.write(2, f"pasta: cannot run {argv[0]}: {e.strerror}\n".encode())
                except OSError:
                    pass
                os._exit(127)
            except BaseException:  # noqa: BLE001 - never unwind into the parent's code
                os._exit(127)
        self.pid = pid
        os.close(ready_w)
        os.close(self._go_r)
        ok = os.read(ready_r, 1)
        os.close(ready_r)
        if ok != b"1":
            os.waitpid(pid, 0)
            raise SetupError("namespace for command", "could not create network namespace")
        self.netns_path = f"/proc/{pid}/ns/net"

    def go(self) -> None:
        """Let the command run."""
        try:
            os.write(self._go_w, b"1")
        finally:
            os.close(self._go_w)

    def abort(self) -> None:
        """Kill the held command (set-up failed)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def shell_argv() -> list[str]:
    """The user's shell, as pasta runs it without a command."""
    shell = os.environ.get("SHELL") or "/bin/sh"
    if not os.access(shell, os.X_OK):
        shell = "/bin/sh"
    return [shell]


def exit_status(status: int) -> int:
    """Shell-style exit code from a waitpid status."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1


def log_stderr(msg: str) -> None:
    """Write one line to stderr, ignoring a closed stderr."""
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
