# SPDX-License-Identifier: GPL-2.0-or-later
"""Seccomp allow-lists: parsing policy files and loading them as a filter.

This module owns the policy file format (documented in policies/README.md)
and the translation of a parsed Policy into a libseccomp filter through
pyseccomp. Parsing is pure and may be done anywhere; apply_policy() is the
last step of isolation and must come after every prctl call the process
will ever make. apply_to_process() is the parent's variant: no_new_privs
first, then one filter for every thread of a process that already has
threads (SECCOMP_FILTER_FLAG_TSYNC). compile_policy() is the BPF program
of a policy, compiled_file() a policy's compiled file (policies/NAME.bpf,
scripts/compile_policies.py); both kinds of loading go through
sandbox.bpf.install. The run-time path (sandbox.bpf.load_program) imports
this module, and so pyseccomp, only for a policy edited since it was
compiled.

pyseccomp locates libc and libseccomp with ctypes.util.find_library,
which runs ``ldconfig -p`` as a subprocess, twice, at import time. It is
therefore imported here, at module import, never lazily: after pivot_root
there is no ldconfig to run. And it is imported through
``_import_pyseccomp``: for those two names, find_library answers with the
soname the dynamic loader itself opens (libc.so.6, libseccomp.so.2), and
falls back to the real one only if that cannot be loaded; this saves two
fork+execs of ldconfig and the import of subprocess, shutil, tempfile and
hashlib (about 20 ms of every start, issue 19 item 3).
"""

from __future__ import annotations

import errno
import os
import re

from passt_sep.record import record

from . import bpf

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)

SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}  # what find_library would find


def _import_pyseccomp() -> Any:
    """pyseccomp, with find_library answered by dlopen for its two names (above)."""
    import ctypes
    import sys
    import types

    if "ctypes.util" in sys.modules or "pyseccomp" in sys.modules:
        import pyseccomp

        return pyseccomp
    stub = types.ModuleType("ctypes.util")

    def find_library(name: str) -> str | None:
        soname = SONAMES.get(name)
        if soname is not None:
            try:
                ctypes.CDLL(soname)
                return soname
            except OSError:
                pass
        sys.modules.pop("ctypes.util", None)  # the real one, for anything else
        import ctypes.util as real

        return real.find_library(name)

    stub.find_library = find_library  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = stub
    ctypes.util = stub
    try:
        import pyseccomp
    finally:
        if sys.modules.get("ctypes.util") is stub:
            del sys.modules["ctypes.util"]
        if getattr(ctypes, "util", None) is stub:
            del ctypes.util
    return pyseccomp


if TYPE_CHECKING:
    from typing import Any

    import pyseccomp
else:
    pyseccomp = _import_pyseccomp()

__all__ = [
    "CONSTANTS",
    "DEFAULT_ACTIONS",
    "Condition",
    "Policy",
    "PolicyError",
    "apply_policy",
    "apply_to_process",
    "build_filter",
    "compile_policy",
    "compiled_file",
    "load_policy",
    "parse_policy",
]

#: Spellings accepted after "@default".
DEFAULT_ACTIONS = ("kill", "errno", "log")

# libseccomp answers this for a name it knows on no architecture at all.
_NR_SCMP_ERROR = -1

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")

# One argument condition: arg3&MSG_FASTOPEN==0, arg1==SOL_SOCKET, arg2!=5.
_COND_RE = re.compile(
    r"arg(?P<arg>[0-9]+)(?:&(?P<mask>[A-Za-z0-9_]+))?(?P<op>==|!=)(?P<value>[A-Za-z0-9_]+)\Z"
)

#: Names a condition may use instead of a number (x86_64 Linux values).
#: Kept to what the shipped policies need, so that a reader can check each.
CONSTANTS: dict[str, int] = {
    "MSG_FASTOPEN": 0x20000000,  # sendto: connect as part of the send (TCP Fast Open)
    "SOL_SOCKET": 1,
    "SO_LINGER": 13,
    "SO_RCVLOWAT": 18,
    "SO_PEEK_OFF": 42,
    "SOL_UDP": 17,
    "UDP_SEGMENT": 103,  # setsockopt: the size a send() is cut into (UDP GSO)
    "FIONBIO": 0x5421,  # ioctl: set or clear O_NONBLOCK
    "SIOCOUTQ": 0x5411,  # ioctl: bytes not yet acknowledged by the peer (TIOCOUTQ)
    # the parent's policies
    "AF_INET": 2,
    "AF_INET6": 10,
    "SO_REUSEADDR": 2,
    "SO_PEERCRED": 17,
    "SO_BINDTODEVICE": 25,
    "IPPROTO_IPV6": 41,
    "IPV6_V6ONLY": 26,
    "SIGKILL": 9,
    "SIGTERM": 15,
}

_U64 = (1 << 64) - 1


class PolicyError(ValueError):
    """A policy file that cannot be used. str() is "FILE:LINE: what is wrong"."""


@record(frozen=True)
class Condition:
    """A test on one syscall argument, as libseccomp compares it (64 bits).

    arg: the argument's index, 0 to 5.
    op: "==" or "!=".
    value: what the argument (masked, when mask is given) is compared with.
    mask: None for a plain comparison; else the argument is ANDed with it
        first, and op must be "==" (libseccomp's SCMP_CMP_MASKED_EQ).
    """

    arg: int
    op: str
    value: int
    mask: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.arg <= 5:
            raise PolicyError(f"argument index {self.arg} out of range (arg0 to arg5)")
        if self.op not in ("==", "!="):
            raise PolicyError(f"unknown comparison {self.op!r} (== or !=)")
        if self.mask is not None and self.op != "==":
            raise PolicyError("a masked condition can only test ==")
        for v in (self.value, self.mask if self.mask is not None else 0):
            if not 0 <= v <= _U64:
                raise PolicyError(f"value {v:#x} does not fit in 64 bits")
        if self.mask is not None and self.value & ~self.mask:
            raise PolicyError(
                f"arg{self.arg}&{self.mask:#x}=={self.value:#x} can never be true"
            )

    def arg_object(self) -> pyseccomp.Arg:
        """The pyseccomp form of this condition."""
        if self.mask is not None:
            return pyseccomp.Arg(self.arg, pyseccomp.MASKED_EQ, self.mask, self.value)
        op = pyseccomp.EQ if self.op == "==" else pyseccomp.NE
        return pyseccomp.Arg(self.arg, op, self.value)

    def __str__(self) -> str:
        mask = "" if self.mask is None else f"&{self.mask:#x}"
        return f"arg{self.arg}{mask}{self.op}{self.value:#x}"


@record(frozen=True)
class Policy:
    """A parsed allow-list.

    syscalls: the allowed syscall names, in file order, each once.
    conditions: for syscalls allowed only with certain arguments, the name
        and one tuple of Conditions per allowing line: the call is allowed
        when all conditions of at least one line hold. A name in syscalls
        that has no entry here is allowed with any arguments.
    default: what happens to every other syscall: "kill" (the whole process
        dies by SIGSYS), "errno" (the call fails with the errno below) or
        "log" (allowed, and logged by the kernel as audit type 1326).
    errno: the errno returned under default "errno", else 0.
    source: where the policy came from, for messages.
    kill: syscalls that kill the whole process (SIGSYS) whatever the
        default action says (``@kill NAME`` lines): the calls only an
        attacker would make, under a policy whose default is a gentler
        errno. Never also in syscalls.
    """

    syscalls: tuple[str, ...]
    default: str = "kill"
    errno: int = 0
    source: str = "<policy>"
    conditions: tuple[tuple[str, tuple[Condition, ...]], ...] = ()
    kill: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.default not in DEFAULT_ACTIONS:
            raise PolicyError(f"{self.source}: unknown default action {self.default!r}")
        if self.default == "errno" and not 0 < self.errno < 4096:
            # ERRNO(0) would make every unlisted syscall "succeed".
            raise PolicyError(f"{self.source}: @default errno needs an errno from 1 to 4095")
        if not isinstance(self.syscalls, tuple):
            raise PolicyError(f"{self.source}: syscalls must be a tuple of names")
        for name, conds in self.conditions:
            if name not in self.syscalls:
                raise PolicyError(f"{self.source}: conditions for {name!r}, which is not allowed")
            if not conds:
                raise PolicyError(f"{self.source}: empty condition list for {name!r}")
        both = sorted(set(self.kill) & set(self.syscalls))
        if both:
            raise PolicyError(f"{self.source}: {', '.join(both)} both allowed and killed")

    def rules(self, name: str) -> list[tuple[Condition, ...]]:
        """The condition lines for one syscall; [] when it is allowed outright."""
        return [conds for n, conds in self.conditions if n == name]

    @property
    def action(self) -> int:
        """The seccomp return value for syscalls not in the list."""
        if self.default == "kill":
            return int(pyseccomp.KILL_PROCESS)
        if self.default == "errno":
            return int(pyseccomp.ERRNO(self.errno))
        return int(pyseccomp.LOG)


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
    named = getattr(errno, word.upper(), None)
    if isinstance(named, int) and word.upper().startswith("E"):
        return named
    return None


def _number(word: str) -> int | None:
    if word in CONSTANTS:
        return CONSTANTS[word]
    try:
        return int(word, 0)
    except ValueError:
        return None


def _parse_condition(word: str, where: str) -> Condition:
    m = _COND_RE.match(word)
    if m is None:
        raise PolicyError(
            f"{where}: bad condition {word!r}: expected argN==VALUE, argN!=VALUE "
            "or argN&MASK==VALUE (no spaces inside)"
        )
    parts = {}
    for key in ("value", "mask"):
        text = m.group(key)
        if text is None:
            continue
        number = _number(text)
        if number is None:
            raise PolicyError(
                f"{where}: unknown value {text!r} in {word!r} "
                f"(a number, or one of: {', '.join(sorted(CONSTANTS))})"
            )
        parts[key] = number
    try:
        return Condition(int(m.group("arg")), m.group("op"), parts["value"], parts.get("mask"))
    except PolicyError as e:
        raise PolicyError(f"{where}: {word!r}: {e}") from None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse the text of a policy file; see policies/README.md for the format."""
    seen: dict[str, int] = {}  # name -> its first line, in file order
    # (name, conditions) -> its line; a name here has no unconditional line
    cond_lines: dict[tuple[str, tuple[Condition, ...]], int] = {}
    conditional: set[str] = set()
    default = "kill"
    err_value = 0
    default_line = 0
    killed: dict[str, int] = {}  # @kill name -> its line

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
            if words[0] == "@kill":
                _parse_kill(words, reason, where, killed, seen, lineno)
                continue
            if words[0] != "@default":
                raise PolicyError(
                    f"{where}: unknown directive {words[0]!r} (@default or @kill)"
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

        name = words[0]
        if len(words) > 1 and not words[1].startswith("arg"):
            raise PolicyError(
                f"{where}: one syscall per line, found {len(words)} words: {body!r} "
                "(conditions start with argN)"
            )
        if not hash_ or not reason:
            raise PolicyError(
                f"{where}: syscall {name!r} has no reason: write '{name}  # why it is needed'"
            )
        if not _NAME_RE.match(name) or syscall_number(name) == _NR_SCMP_ERROR:
            raise PolicyError(f"{where}: unknown syscall {name!r}")
        conds = tuple(_parse_condition(w, where) for w in words[1:])
        indexes = [c.arg for c in conds]
        if len(set(indexes)) != len(indexes):
            raise PolicyError(
                f"{where}: {name!r}: one condition per argument on a line "
                "(write a second line for an alternative)"
            )
        if name in killed:
            raise PolicyError(
                f"{where}: syscall {name!r} is killed by @kill at line {killed[name]}"
            )
        first = seen.setdefault(name, lineno)
        if not conds:
            if name in conditional:
                raise PolicyError(
                    f"{where}: syscall {name!r} allowed outright here but with conditions "
                    f"at line {first}"
                )
            if first != lineno:
                raise PolicyError(f"{where}: syscall {name!r} listed twice (first at line {first})")
            continue
        if first != lineno and name not in conditional:
            raise PolicyError(
                f"{where}: syscall {name!r} has conditions here but is allowed "
                f"outright at line {first}"
            )
        if (name, conds) in cond_lines:
            raise PolicyError(
                f"{where}: syscall {name!r} listed twice with the same conditions "
                f"(first at line {cond_lines[name, conds]})"
            )
        conditional.add(name)
        cond_lines[name, conds] = lineno

    return Policy(
        syscalls=tuple(seen),
        default=default,
        errno=err_value,
        source=source,
        conditions=tuple(cond_lines),
        kill=tuple(killed),
    )


def _parse_kill(words: list[str], reason: str, where: str, killed: dict[str, int],
                seen: dict[str, int], lineno: int) -> None:
    """One ``@kill NAME  # reason`` line, into killed."""
    if len(words) != 2:
        raise PolicyError(f"{where}: expected '@kill NAME  # reason', found {' '.join(words)!r}")
    name = words[1]
    if not reason:
        raise PolicyError(f"{where}: @kill {name} has no reason: write '@kill {name}  # why'")
    if not _NAME_RE.match(name) or syscall_number(name) == _NR_SCMP_ERROR:
        raise PolicyError(f"{where}: unknown syscall {name!r}")
    if name in killed:
        raise PolicyError(f"{where}: @kill {name} twice (first at line {killed[name]})")
    if name in seen:
        raise PolicyError(f"{where}: syscall {name!r} is allowed at line {seen[name]}, "
                          "it cannot also be killed")
    killed[name] = lineno


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and parse a policy file. Raises PolicyError (a ValueError) or OSError."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise PolicyError(f"{p}: not UTF-8 text: {e}") from None
    return parse_policy(text, source=p)


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
        rules = policy.rules(name)
        if not rules:
            flt.add_rule(pyseccomp.ALLOW, nr)
        for conds in rules:
            flt.add_rule(pyseccomp.ALLOW, nr, *(c.arg_object() for c in conds))
    if policy.action != pyseccomp.KILL_PROCESS:  # (libseccomp refuses a rule equal to the default)
        for name in policy.kill:
            nr = syscall_number(name)
            if nr >= 0:
                flt.add_rule(pyseccomp.KILL_PROCESS, nr)
    return flt


def compile_policy(policy: Policy) -> bytes:
    """The BPF program libseccomp makes of the policy's filter (build_filter),
    as seccomp_export_bpf writes it: what seccomp_load would hand the kernel."""
    flt = build_filter(policy)
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb", closefd=False) as wf:  # (export_bpf wants an object with fileno)
            flt.export_bpf(wf)
        os.close(w)
        w = -1
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    return b"".join(chunks)


def libseccomp_version() -> str:
    """The version of the libseccomp pyseccomp loaded, "2.5.4"."""
    import ctypes

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    fn = pyseccomp._libseccomp.seccomp_version  # noqa: SLF001 - pyseccomp does not wrap it
    fn.restype = ctypes.POINTER(_Version)
    v = fn().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def compiled_file(policy_path: str) -> bytes:
    """The compiled file (sandbox/bpf.py) of a policy file, made now."""
    with open(policy_path, "rb") as f:
        text = f.read()
    code = compile_policy(parse_policy(text.decode("utf-8"), source=policy_path))
    return bpf.header(bpf.arch(), libseccomp_version()) + f"{len(text)}\n".encode() + text + code


def apply_policy(policy: Policy) -> None:
    """Build the filter and load it into the calling thread (irrevocably).

    Call it last: after it, any syscall outside the list, prctl included,
    takes the policy's default action.
    """
    bpf.install(bpf.Program(compile_policy(policy), policy.source, False))


def apply_to_process(policy: Policy, tsync: bool = True) -> None:
    """Load the filter into every thread of the calling process (irrevocably).

    For the parent, which has threads by the time it is filtered (the
    namespace thread): no_new_privs is set first, on the calling thread
    (an unprivileged process may load a filter only with it; the kernel
    then requires it of every thread it synchronizes, and the thread
    calling with TSYNC carries it over), then the filter is loaded with
    SECCOMP_FILTER_FLAG_TSYNC, so that the kernel installs it on all the
    threads at once or on none (the call fails if one thread cannot take
    it). With tsync=False only the calling thread is filtered, as
    apply_policy() does. Raises OSError naming the step.
    """
    bpf.install(bpf.Program(compile_policy(policy), policy.source, False), tsync=tsync)
