# SPDX-License-Identifier: GPL-2.0-or-later
"""The complete isolation sequence for an already-forked worker process.

This module owns the order of the steps (namespaces, empty root,
capabilities, process attributes, seccomp) and the single error type that
reports which step failed. The primitives live in sandbox.ns, sandbox.caps
and sandbox.seccomp; docs/security.md explains what each step prevents.
"""

from __future__ import annotations

import errno
import os

import prctl

from sandbox import caps, ns
from sandbox.bpf import Program, install, load_program

TYPE_CHECKING = False  # (typing costs start-up; mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from sandbox.seccomp import Policy

__all__ = ["ISOLATE_FLAGS", "IsolationError", "isolate_worker"]

#: Namespaces the worker leaves behind. No CLONE_NEWPID: it only affects
#: children, and the worker never forks.
ISOLATE_FLAGS = (
    ns.CLONE_NEWUSER | ns.CLONE_NEWNET | ns.CLONE_NEWNS | ns.CLONE_NEWIPC | ns.CLONE_NEWUTS
)

#: Where the empty root is mounted before pivot_root. It must exist in the
#: old root; it need not be empty (the tmpfs covers it) and nothing is ever
#: written there. passt uses /tmp as well.
DEFAULT_MOUNTPOINT = "/tmp"

# The new root: read-only from its creation, no devices, no executables, no
# setuid, room for its own directory and nothing else.
_TMPFS_FLAGS = ns.MS_RDONLY | ns.MS_NODEV | ns.MS_NOEXEC | ns.MS_NOSUID
_TMPFS_DATA = "size=4k,nr_inodes=2,mode=0555"


class IsolationError(Exception):
    """Isolation failed. str() is one line: "sandbox: STEP: REASON".

    step: the step that failed (e.g. "unshare", "pivot_root", "seccomp").
    reason: why, usually the strerror of the failing call.
    errno: the errno if the failure came from a syscall, else None.
    """

    def __init__(self, step: str, reason: str, errno: int | None = None) -> None:
        self.step = step
        self.reason = " ".join(reason.splitlines()).strip()
        self.errno = errno
        super().__init__(f"sandbox: {step}: {self.reason}")


def _fail(step: str, e: BaseException) -> IsolationError:
    if isinstance(e, OSError):
        msg = e.strerror or str(e)
        # ns/caps messages read "call(args): strerror"; drop the repeated call.
        head, sep, tail = msg.partition(": ")
        if sep and head.split("(", 1)[0] == step:
            msg = tail
        if e.filename is not None:
            msg = f"{os.fsdecode(e.filename)}: {msg}"
        return IsolationError(step, msg, e.errno)
    return IsolationError(step, str(e))


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def _close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd above 2 that is not in keep."""
    keep_set = sorted({fd for fd in keep if fd > 2})
    low = 3
    for fd in keep_set:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, 1 << 20)


def _write_own_id_maps(uid: int, gid: int) -> None:
    """Map 0 inside to uid/gid outside, for the calling process.

    A process that changed its uid (root dropping to an unprivileged user
    before forking, say) is not dumpable, and then its /proc/self files
    belong to the initial namespace's root, whom the new user namespace
    cannot act for: writing the maps fails with EACCES. Dumpability is
    restored just for the three writes, and taken away again at once
    (isolate_worker ends non-dumpable in any case).
    """
    was_dumpable = prctl.get_dumpable()
    if not was_dumpable:
        prctl.set_dumpable(1)
    try:
        ns.write_id_maps("self", uid_map=f"0 {uid} 1", gid_map=f"0 {gid} 1")
    finally:
        if not was_dumpable:
            prctl.set_dumpable(0)


def isolate_worker(
    policy_path: str | os.PathLike[str] | Policy | Program,
    *,
    keep_fds: Iterable[int] | None = None,
    mountpoint: str = DEFAULT_MOUNTPOINT,
    parent_death_signal: int = 0,
    parent_pid: int = 0,
) -> None:
    """Isolate the calling (freshly forked, single-threaded) process for good.

    Sequence:
      1. the seccomp filter's program: a Program as given, a Policy compiled
         now, a path read (sandbox.bpf.load_program: its compiled file when
         current, else parsed and compiled), all while the file system is there;
      2. if keep_fds is given, close every fd except 0, 1, 2 and those;
      3. unshare user, network, mount, IPC and UTS namespaces; map uid and
         gid 0 inside to the caller's effective uid/gid outside (the only
         mapping an unprivileged process may write for itself, and one that
         works for root as well); setgroups is denied;
      4. make every mount private (nothing propagates back to the host);
      5. mount an empty, read-only tmpfs on mountpoint, chdir into it,
         pivot_root(".", "."), detach the old root, remount the new root
         read-only, chdir("/");
      6. drop every capability (bounding, ambient, inheritable, permitted,
         effective) and lock the securebits;
      7. no_new_privs, not dumpable; with parent_death_signal, PR_SET_PDEATHSIG
         (set here, after every credential change, which would clear it), and
         if parent_pid is no longer the parent (it died before), fail;
      8. load the seccomp filter: from here on only the listed syscalls work.

    Raises IsolationError naming the step. A failure leaves the process
    half-isolated: the caller must exit, never carry on.
    """
    # 1. The policy, while the file system is still there.
    if isinstance(policy_path, Program):
        program = policy_path
    else:
        try:
            if isinstance(policy_path, (str, os.PathLike)):
                program = load_program(os.fspath(policy_path))
            else:
                from sandbox.seccomp import compile_policy

                program = Program(compile_policy(policy_path), policy_path.source, False)
        except (OSError, ValueError) as e:
            raise _fail("policy", e) from e

    # 2. Descriptors not handed over on purpose.
    if keep_fds is not None:
        try:
            _close_fds_except(keep_fds)
        except OSError as e:
            raise _fail("close_fds", e) from e

    # Everything that needs /proc or the old root is read now.
    uid = os.geteuid()
    gid = os.getegid()
    try:
        last_cap = caps.cap_last_cap()
    except OSError as e:
        raise _fail("cap_last_cap", e) from e

    # 3. Namespaces. The process now has every capability, but only in the
    # new user namespace; in the parent one it has none.
    try:
        ns.unshare(ISOLATE_FLAGS)
    except OSError as e:
        err = _fail("unshare", e)
        if e.errno == errno.EINVAL and _thread_count() > 1:
            err = IsolationError("unshare", f"{err.reason} (the process has threads)", e.errno)
        raise err from e
    try:
        _write_own_id_maps(uid, gid)
    except OSError as e:
        raise _fail("id_maps", e) from e

    # 4.-5. The empty root.
    try:
        ns.mount(None, "/", None, ns.MS_REC | ns.MS_PRIVATE)
    except OSError as e:
        raise _fail("make_private", e) from e
    try:
        ns.mount("tmpfs", mountpoint, "tmpfs", _TMPFS_FLAGS, _TMPFS_DATA)
    except OSError as e:
        raise _fail("mount_tmpfs", e) from e
    try:
        os.chdir(mountpoint)
    except OSError as e:
        raise _fail("chdir", e) from e
    try:
        ns.pivot_root(".", ".")
    except OSError as e:
        raise _fail("pivot_root", e) from e
    try:
        ns.umount2(".", ns.MNT_DETACH)
    except OSError as e:
        raise _fail("umount2", e) from e
    try:
        ns.mount(None, "/", None, ns.MS_REMOUNT | ns.MS_BIND | _TMPFS_FLAGS)
    except OSError as e:
        raise _fail("remount_ro", e) from e
    try:
        os.chdir("/")
    except OSError as e:
        raise _fail("chdir", e) from e

    # 6.-7. Capabilities and process attributes, all before seccomp: after it
    # even a prctl get call would take the policy's default action.
    try:
        caps.drop_all_capabilities(last_cap)
    except OSError as e:
        raise _fail("drop_capabilities", e) from e
    try:
        caps.set_no_new_privs()
        caps.set_not_dumpable()
        if parent_death_signal:
            prctl.set_pdeathsig(parent_death_signal)
    except OSError as e:
        raise _fail("prctl", e) from e
    if parent_pid and os.getppid() != parent_pid:
        raise IsolationError("parent_death", "the parent has gone")

    # 8. Seccomp, last.
    try:
        install(program)
    except OSError as e:
        raise _fail("seccomp", e) from e
