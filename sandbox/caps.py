# SPDX-License-Identifier: GPL-2.0-or-later
"""Capabilities and process attributes: dropping every capability, securebits,
no_new_privs and dumpability.

This module owns the prctl(2)/capset(2) side of the sandbox. The prctl
attributes go through python-prctl; the bounding set, ambient set and the
three capability sets go through libc directly (ctypes), because they must
cover every capability the running kernel knows, including ones newer than
the python-prctl build. Every function raises OSError naming the step.
"""

from __future__ import annotations

import ctypes
import errno
import os

import prctl

CAP_SETPCAP = 8  # <linux/capability.h>

# prctl(2) options, <linux/prctl.h>.
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# securebits, <linux/securebits.h>.
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS = 1 << 4
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7

#: What drop_all_capabilities() locks in: uid 0 confers nothing, setuid does
#: not touch capabilities, keep_caps stays off, ambient capabilities cannot be
#: raised; every bit locked so that it cannot be undone.
SECUREBITS_LOCKDOWN = (
    SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_NO_SETUID_FIXUP
    | SECBIT_NO_SETUID_FIXUP_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_LAST_CAP_PATH = "/proc/sys/kernel/cap_last_cap"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CapDataV3 = _CapData * 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.restype = ctypes.c_int
_libc.capget.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_libc.capget.restype = ctypes.c_int
_libc.capset.argtypes = (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))
_libc.capset.restype = ctypes.c_int


def _prctl(step: str, option: int, arg2: int = 0, arg3: int = 0) -> int:
    ret = _libc.prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(arg2),
        ctypes.c_ulong(arg3),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    if ret < 0:
        err = ctypes.get_errno() or errno.EIO
        raise OSError(err, f"{step}: {os.strerror(err)}")
    return int(ret)


def cap_last_cap() -> int:
    """Highest capability number the running kernel knows.

    Read from /proc when it is there; otherwise (after pivot_root into an
    empty root) found by probing the bounding set, which answers EINVAL past
    the last capability.
    """
    try:
        with open(_CAP_LAST_CAP_PATH, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        pass
    cap = 0
    while True:
        try:
            _prctl("capbset_read", PR_CAPBSET_READ, cap + 1)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return cap
            raise
        cap += 1


def get_capabilities() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataV3()
    if _libc.capget(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno() or errno.EIO
        raise OSError(err, f"capget: {os.strerror(err)}")
    eff = data[0].effective | (data[1].effective << 32)
    prm = data[0].permitted | (data[1].permitted << 32)
    inh = data[0].inheritable | (data[1].inheritable << 32)
    return eff, prm, inh


def bounding_set(last_cap: int | None = None) -> int:
    """The bounding set of the calling thread as a bit mask."""
    last = cap_last_cap() if last_cap is None else last_cap
    mask = 0
    for cap in range(last + 1):
        if _prctl(f"capbset_read({cap})", PR_CAPBSET_READ, cap):
            mask |= 1 << cap
    return mask


def set_securebits(bits: int = SECUREBITS_LOCKDOWN) -> bool:
    """Set (OR in) securebits. Needs CAP_SETPCAP; returns False if it is missing.

    Bits already locked by someone else are left as they are.
    """
    current = _prctl("get_securebits", PR_GET_SECUREBITS)
    wanted = current | bits
    if wanted == current:
        return True
    try:
        _prctl(f"set_securebits({wanted:#x})", PR_SET_SECUREBITS, wanted)
    except OSError as e:
        if e.errno == errno.EPERM:
            return False
        raise
    return True


def _drop_bounding(last: int, keep: int = 0) -> None:
    """Drop from the bounding set every capability up to ``last`` not in ``keep``."""
    for cap in range(last + 1):
        if not keep >> cap & 1 and _prctl(f"capbset_read({cap})", PR_CAPBSET_READ, cap):
            _prctl(f"capbset_drop({cap})", PR_CAPBSET_DROP, cap)


def _clear_ambient() -> None:
    try:
        _prctl("cap_ambient_clear_all", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:
        # Kernels before 4.3 have no ambient set: nothing to clear.
        if e.errno != errno.EINVAL:
            raise


def _set_and_check(mask: int) -> None:
    """capset(2): effective and permitted ``mask``, inheritable 0; read back:
    OSError if anything outside ``mask`` (or anything inheritable) stays."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataV3()
    data[0].effective = data[0].permitted = mask & 0xFFFFFFFF
    data[1].effective = data[1].permitted = mask >> 32
    if _libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno() or errno.EIO
        raise OSError(err, f"capset({mask:#x}, {mask:#x}, 0): {os.strerror(err)}")
    eff, prm, inh = get_capabilities()
    if (eff | prm) & ~mask or inh:
        raise OSError(
            errno.EPERM,
            f"capset: capabilities remain (eff {eff:#x} prm {prm:#x} inh {inh:#x})",
        )


def drop_all_capabilities(last_cap: int | None = None) -> None:
    """Drop every capability for good.

    In this order: lock the securebits (while CAP_SETPCAP is still there),
    empty the bounding set (every capability up to cap_last_cap), clear the
    ambient set, then set effective, permitted and inheritable to zero with
    capset(2), and read them back. Raises OSError if anything stays.
    """
    last = cap_last_cap() if last_cap is None else last_cap
    set_securebits(SECUREBITS_LOCKDOWN)
    _drop_bounding(last)
    _clear_ambient()
    _set_and_check(0)
    bset = bounding_set(last)
    if bset:
        raise OSError(errno.EPERM, f"capbset_drop: bounding set not empty ({bset:#x})")


def keep_only_capabilities(keep: int, last_cap: int | None = None) -> None:
    """Keep only the capabilities in the bit mask ``keep``, in the calling thread.

    Capabilities are per thread: a process with threads calls this in each.
    The bounding set loses every other capability (while CAP_SETPCAP is
    still effective; without it nothing is held that it could give back),
    the ambient set is cleared, then effective and permitted become
    ``keep`` (as far as permitted held it) and inheritable zero; read back.
    Raises OSError if anything else stays.
    """
    last = cap_last_cap() if last_cap is None else last_cap
    eff, _prm, _inh = get_capabilities()
    if eff >> CAP_SETPCAP & 1:
        _drop_bounding(last, keep)
    _clear_ambient()
    _eff, prm, _inh = get_capabilities()
    _set_and_check(prm & keep)


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: execve can never grant privileges again (setuid, file caps)."""
    try:
        prctl.set_no_new_privs(1)
    except OSError as e:
        raise OSError(e.errno, f"set_no_new_privs: {os.strerror(e.errno or errno.EIO)}") from None


def set_not_dumpable() -> None:
    """PR_SET_DUMPABLE 0: no core dumps, no ptrace attach by same-uid processes,
    /proc/PID files owned by root."""
    try:
        prctl.set_dumpable(0)
    except OSError as e:
        raise OSError(e.errno, f"set_dumpable(0): {os.strerror(e.errno or errno.EIO)}") from None
