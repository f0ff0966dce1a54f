# SPDX-License-Identifier: GPL-2.0-or-later
"""Who the parent and the worker run as after set-up: --runas, or nobody.

Parent only. Started as root in the initial user namespace, passt and
pasta switch to ``nobody`` (or the --runas user) and so does passt-sep, in
both modes and in both processes:

- the worker drops first thing after the fork, before it isolates itself,
  so the uid it is mapped to outside its own user namespace is the target
  user's, never root's;
- the parent drops once whatever needs root is done: the host's forwarded
  ports are bound (low ports included), the log, pcap and PID files are
  open; in pasta, either before the guest's namespace exists (a spawned
  command: the parent then makes a user namespace of its own, as pasta
  does, and owns the namespace it creates, so the capabilities it still
  needs there live in that namespace only), or at the end of set-up
  (attaching to a namespace owned by the initial user namespace: the
  namespace thread entered it while still privileged, and keeps working
  without any capability).

Started by anyone else (rootless podman), nothing changes.
"""

from __future__ import annotations

import os
import pwd

from ..errors import SetupError

INIT_UID_MAP = "0 0 4294967295"
NOBODY = 65534  # the usual id of nobody, where the user database has no such name


def in_init_userns() -> bool:
    """Whether we are in the initial user namespace (its uid map is the identity)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == INIT_UID_MAP.split()
    except OSError:
        return True


def target_ids(runas: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (uid, gid) to run as after set-up, or None to stay as we are."""
    if runas is not None:
        return runas
    if os.geteuid() != 0 or not in_init_userns():
        return None
    try:
        pw = pwd.getpwnam("nobody")
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        return NOBODY, NOBODY


def drop_to(ids: tuple[int, int] | None) -> None:
    """setgroups([]), setresgid, setresuid (every thread); a no-op for None or our own ids.

    From root to another uid the kernel clears the permitted and effective
    capability sets as well: nothing is kept in this user namespace.
    """
    if ids is None:
        return
    uid, gid = ids
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) == (uid, uid, gid, gid) and (
            os.geteuid() != 0 or not os.getgroups()):
        return
    try:
        if os.geteuid() == 0:
            os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise SetupError(f"Can't set UID/GID to {uid}:{gid}", e) from None
