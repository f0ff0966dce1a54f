# SPDX-License-Identifier: GPL-2.0-or-later
"""Seccomp allow-lists: parsing policy files and loading them as a filter.

This module owns the policy file format (documented in policies/README.md)
and the translation of a parsed Policy into a libseccomp filter through
pyseccomp. Parsing is pure and may be done anywhere; apply_policy() is the
last step of isolation and must come after every prctl call the process
will ever make.

pyseccomp locates libseccomp with ctypes.util.find_library, which runs
ldconfig as a subprocess at import time. It is therefore imported here, at
module import, never lazily: after pivot_root there is no ldconfig to run.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path

import pyseccomp

__all__ = [
    "DEFAULT_ACTIONS",
    "Policy",
    "PolicyError",
    "apply_policy",
    "build_filter",
    "load_policy",
    "parse_policy",
]

#: Spellings accepted after "@default".
DEFAULT_ACTIONS = ("kill", "errno", "log")

# libseccomp answers this for a name it knows on no architecture at all.
_NR_SCMP_ERROR = -1

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")

# Loaded filters are kept alive: releasing one frees libseccomp memory, and
# free() may make syscalls (munmap) that the policy does not allow.
_loaded: list[pyseccomp.SyscallFilter] = []


class PolicyError(ValueError):
    """A policy file that cannot be used. str() is "FILE:LINE: what is wrong"."""


@dataclass(frozen=True)
class Policy:
    """A parsed allow-list.

    syscalls: the allowed syscall names, in file order.
    default: what happens to every other syscall: "kill" (the whole process
        dies by SIGSYS), "errno" (the call fails with the errno below) or
        "log" (allowed, and logged by the kernel as audit type 1326).
    errno: the errno returned under default "errno", else 0.
    source: where the policy came from, for messages.
    """

    syscalls: tuple[str, ...]
    default: str = "kill"
    errno: int = 0
    source: str = "<policy>"

    def __post_init__(self) -> None:
        if self.default not in DEFAULT_ACTIONS:
            raise PolicyError(f"{self.source}: unknown default action {self.default!r}")
        if self.default == "errno" and not 0 < self.errno < 4096:
            # ERRNO(0) would make every unlisted syscall "succeed".
            raise PolicyError(f"{self.source}: @default errno needs an errno from 1 to 4095")
        if not isinstance(self.syscalls, tuple):
            raise PolicyError(f"{self.source}: syscalls must be a tuple of names")

    @property
    def action(self) -> int:
        """The seccomp return value for syscalls not in the list."""
        if self.default == "kill":
            return pyseccomp.KILL_PROCESS
        if self.default == "errno":
            return pyseccomp.ERRNO(self.errno)
        return pyseccomp.LOG


def syscall_number(name: str) -> int:
    """Number of a syscall on the native architecture.

    Negative when libseccomp knows the name only for other architectures (a
    "pseudo syscall", e.g. socketcall on x86_64), -1 when it knows it nowhere.
    """
    return int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))


def _parse_errno(word: str) -> int | None:
    if word.isdigit():
        value = int(word)
        return value if 0 < value < 4096 else None
    value = getattr(errno, word.upper(), None)
    if isinstance(value, int) and word.upper().startswith("E"):
        return value
    return None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse the text of a policy file; see policies/README.md for the format."""
    syscalls: list[str] = []
    seen: dict[str, int] = {}
    default = "kill"
    err_value = 0
    default_line = 0

    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}:{lineno}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        body, hash_, reason = line.partition("#")
        body = body.strip()
        reason = reason.strip()
        words = body.split()

        if body.startswith("@"):
            if words[0] != "@default":
                raise PolicyError(
                    f"{where}: unknown directive {words[0]!r} (only @default is known)"
                )
            if default_line:
                raise PolicyError(f"{where}: second @default (first at line {default_line})")
            args = words[1:]
            if args == ["kill"] or args == ["log"]:
                default = args[0]
            elif len(args) == 2 and args[0] == "errno":
                value = _parse_errno(args[1])
                if value is None:
                    raise PolicyError(f"{where}: @default errno: unknown errno {args[1]!r}")
                default, err_value = "errno", value
            else:
                raise PolicyError(
                    f"{where}: bad directive {body!r}: expected "
                    "'@default kill', '@default log' or '@default errno NAME'"
                )
            default_line = lineno
            continue

        if len(words) != 1:
            raise PolicyError(f"{where}: one syscall per line, found {len(words)} words: {body!r}")
        name = words[0]
        if not hash_ or not reason:
            raise PolicyError(
                f"{where}: syscall {name!r} has no reason: write '{name}  # why it is needed'"
            )
        if not _NAME_RE.match(name) or syscall_number(name) == _NR_SCMP_ERROR:
            raise PolicyError(f"{where}: unknown syscall {name!r}")
        if name in seen:
            raise PolicyError(
                f"{where}: syscall {name!r} listed twice (first at line {seen[name]})"
            )
        seen[name] = lineno
        syscalls.append(name)

    return Policy(syscalls=tuple(syscalls), default=default, errno=err_value, source=source)


def load_policy(path: str | Path) -> Policy:
    """Read and parse a policy file. Raises PolicyError (a ValueError) or OSError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{p}: not UTF-8 text: {e}") from None
    return parse_policy(text, source=str(p))


def build_filter(policy: Policy) -> pyseccomp.SyscallFilter:
    """Build (not load) the filter: native architecture only, the policy's
    default action for unlisted syscalls, the process killed for any other
    architecture (e.g. i386 syscalls through int 0x80 on x86_64)."""
    flt = pyseccomp.SyscallFilter(policy.action)
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    # libseccomp sets no_new_privs itself by default when loading; keep it so.
    flt.set_attr(pyseccomp.Attr.CTL_NNP, 1)
    for name in policy.syscalls:
        nr = syscall_number(name)
        if nr < 0:
            # Known to libseccomp, but not a syscall of this architecture
            # (a policy written for several): nothing to allow here.
            continue
        flt.add_rule(pyseccomp.ALLOW, nr)
    return flt


def apply_policy(policy: Policy) -> None:
    """Build the filter and load it into the calling thread (irrevocably).

    Call it last: after it, any syscall outside the list, prctl included,
    takes the policy's default action.
    """
    flt = build_filter(policy)
    try:
        flt.load()
    except OSError as e:
        raise OSError(e.errno, f"seccomp_load: {e.strerror}") from None
    _loaded.append(flt)
