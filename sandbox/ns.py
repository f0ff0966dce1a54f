# SPDX-License-Identifier: GPL-2.0-or-later
"""Namespace and mount primitives: unshare, setns, mount, umount2, pivot_root.

This module owns the thin ctypes layer over the libc calls that Python 3.11
does not expose (os.unshare/os.setns arrived in 3.12), plus writing the id
maps of a new user namespace. Every function raises OSError carrying the
errno and a message that names the step that failed; nothing here knows about
networking or about the order in which the steps are combined (see
sandbox.isolate for that).
"""

from __future__ import annotations

import ctypes
import errno
import os

# Namespace flags, <linux/sched.h>.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags, <linux/mount.h>.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000

# umount2 flags.
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

# pivot_root has no libc wrapper; its number differs between architectures.
_PIVOT_ROOT_NR = {
    "x86_64": 155,
    "amd64": 155,
    "aarch64": 41,
    "arm64": 41,
}

_MACHINE = os.uname().machine  # as platform.machine(), without importing platform

_NS_NAMES = (
    (CLONE_NEWUSER, "CLONE_NEWUSER"),
    (CLONE_NEWNET, "CLONE_NEWNET"),
    (CLONE_NEWNS, "CLONE_NEWNS"),
    (CLONE_NEWIPC, "CLONE_NEWIPC"),
    (CLONE_NEWUTS, "CLONE_NEWUTS"),
    (CLONE_NEWPID, "CLONE_NEWPID"),
)

_libc = ctypes.CDLL(None, use_errno=True)

_libc.unshare.argtypes = (ctypes.c_int,)
_libc.unshare.restype = ctypes.c_int
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
)
_libc.mount.restype = ctypes.c_int
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.umount2.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long


def _raise(step: str) -> None:
    """Raise OSError for the errno the last libc call left behind."""
    err = ctypes.get_errno() or errno.EIO
    raise OSError(err, f"{step}: {os.strerror(err)}")


def _enc(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return os.fsencode(value)


def flag_names(flags: int) -> str:
    """Spell namespace flags the way a reader of the log expects them."""
    names = [name for bit, name in _NS_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _NS_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread into new namespaces."""
    if _libc.unshare(flags) != 0:
        _raise(f"unshare({flag_names(flags)})")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace that fd (from /proc/PID/ns/*) refers to."""
    if _libc.setns(fd, nstype) != 0:
        _raise(f"setns(fd {fd}, {flag_names(nstype)})")


def mount(
    source: str | bytes | None,
    target: str | bytes,
    fstype: str | bytes | None = None,
    flags: int = 0,
    data: str | bytes | None = None,
) -> None:
    """mount(2). Pass None for arguments the kernel ignores (remounts, propagation)."""
    data_b = _enc(data)
    data_p = ctypes.c_char_p(data_b) if data_b is not None else None
    if _libc.mount(_enc(source), _enc(target), _enc(fstype), flags, data_p) != 0:
        what = os.fsdecode(fstype) if fstype else "flags " + hex(flags)
        _raise(f"mount({what} on {os.fsdecode(target)})")


def umount2(target: str | bytes, flags: int = 0) -> None:
    """umount2(2)."""
    if _libc.umount2(_enc(target), flags) != 0:
        _raise(f"umount2({os.fsdecode(target)})")


def pivot_root(new_root: str | bytes, put_old: str | bytes) -> None:
    """pivot_root(2) through syscall(2); pivot_root(".", ".") is the usual idiom."""
    nr = _PIVOT_ROOT_NR.get(_MACHINE)
    if nr is None:
        raise OSError(errno.ENOSYS, f"pivot_root: syscall number unknown on {_MACHINE}")
    new_b = _enc(new_root)
    old_b = _enc(put_old)
    if _libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(new_b), ctypes.c_char_p(old_b)) != 0:
        _raise(f"pivot_root({os.fsdecode(new_root)}, {os.fsdecode(put_old)})")


def _write_proc(path: str, text: str, step: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"{step}: open {path}: {e.strerror}") from None
    data = text.encode()
    try:
        written = os.write(fd, data)
    except OSError as e:
        raise OSError(e.errno, f"{step}: write {path}: {e.strerror}") from None
    finally:
        os.close(fd)
    # A map must be written in one write(2); a short write is an error.
    if written != len(data):
        raise OSError(errno.EIO, f"{step}: short write to {path}")


def write_id_maps(
    pid: int | str = "self",
    uid_map: str | None = None,
    gid_map: str | None = None,
) -> None:
    """Write setgroups=deny, uid_map and gid_map of a process in a new user namespace.

    uid_map/gid_map are in the kernel's format, "inside outside count" per line,
    e.g. "0 1000 1". setgroups is denied first: an unprivileged writer must do it
    before gid_map is accepted, and the sandbox never needs setgroups(2) anyway.
    """
    if uid_map is None or gid_map is None:
        raise TypeError("write_id_maps() needs both uid_map and gid_map")
    base = f"/proc/{pid}"
    try:
        _write_proc(f"{base}/setgroups", "deny", "setgroups")
    except OSError as e:
        # Kernels before 3.19 have no setgroups file; nothing to deny there.
        # (ENOENT for a process that does not exist is still an error.)
        if e.errno != errno.ENOENT or not os.path.exists(base):
            raise
    _write_proc(f"{base}/uid_map", _map_text(uid_map), "uid_map")
    _write_proc(f"{base}/gid_map", _map_text(gid_map), "gid_map")


def _map_text(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
