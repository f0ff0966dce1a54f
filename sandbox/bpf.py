# SPDX-License-Identifier: GPL-2.0-or-later
"""Seccomp filters compiled ahead of time, and the one call that loads one.

This module owns the compiled form of a policy (``policies/NAME.bpf``
beside ``policies/NAME.policy``) and loading a BPF program with the
``seccomp`` system call. It imports no pyseccomp (pyseccomp, the
``typing`` it imports and libseccomp compiling the filter cost every start
4-8 ms in each process, issue 19 item 3): at run time a policy whose
compiled file is current is loaded from that file as it is; only a policy
edited since it was compiled (or compiled for another architecture) is
parsed and compiled again through ``sandbox.seccomp`` (pyseccomp), the
same way, at that moment.

A compiled file is::

    passt-sep seccomp bpf 1 ARCH libseccomp VERSION\\n
    LENGTH\\n
    <the policy text it was compiled from: LENGTH bytes>
    <the BPF program: struct sock_filter[], 8 bytes each>

It is current when ARCH is this machine's and the text equals the policy
file's, byte for byte (no hash needed: the text is short). The program is
what libseccomp's ``seccomp_export_bpf`` writes for the filter
``sandbox.seccomp.build_filter`` builds, i.e. exactly what libseccomp
would load; ``scripts/compile_policies.py`` writes the files, and
tests/unit/test_bpf.py compiles every shipped policy again and compares,
so a checked-in program cannot drift from its policy or from the
libseccomp in use.

Loading does what libseccomp's ``seccomp_load`` does for our filters:
``PR_SET_NO_NEW_PRIVS`` (set already for the worker, by its isolation),
then ``seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`` with flags 0, or
for the parent ``SECCOMP_FILTER_FLAG_TSYNC`` (with ``TSYNC_ESRCH`` where
the kernel has it, as libseccomp 2.5 asks), so that every thread takes the
filter or none does.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MAGIC", "Program", "compiled_path", "install", "load_program", "parse_compiled"]

MAGIC = b"passt-sep seccomp bpf 1"
INSN_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
MAX_INSNS = 4096  # BPF_MAXINSNS

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
ESRCH, EINVAL, ENOSYS = 3, 22, 38
#: the seccomp system call's number, per architecture (os.uname().machine)
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
# programs handed to the kernel are kept: nothing of theirs is freed after the filter
_loaded: list[object] = []


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """A BPF program for one policy: ``code`` (sock_filter instructions),
    ``source`` (the policy file, for messages), ``compiled`` (True when it
    came from a current compiled file, False when compiled just now)."""

    __slots__ = ("code", "compiled", "source")

    def __init__(self, code: bytes, source: str, compiled: bool) -> None:
        if not code or len(code) % INSN_SIZE or len(code) // INSN_SIZE > MAX_INSNS:
            raise ValueError(f"{source}: not a BPF program ({len(code)} bytes)")
        self.code = code
        self.source = source
        self.compiled = compiled

    def __len__(self) -> int:
        return len(self.code) // INSN_SIZE

    def __repr__(self) -> str:
        return f"Program({self.source!r}, {len(self)} instructions, compiled={self.compiled})"


def arch() -> str:
    """This machine's architecture, as a compiled file names it."""
    return os.uname().machine


def compiled_path(policy_path: str) -> str:
    """Where the compiled form of a policy file is: NAME.bpf beside NAME.policy."""
    base = policy_path[:-len(".policy")] if policy_path.endswith(".policy") else policy_path
    return base + ".bpf"


def header(machine: str, version: str) -> bytes:
    """A compiled file's first line."""
    return MAGIC + f" {machine} libseccomp {version}\n".encode()


def parse_compiled(data: bytes) -> tuple[str, bytes, bytes]:
    """(architecture, policy text, program) of a compiled file; ValueError if it is none."""
    first, nl, rest = data.partition(b"\n")
    words = first.split()
    if not nl or not first.startswith(MAGIC + b" ") or len(words) != 7:
        raise ValueError("not a compiled policy")
    size, nl, rest = rest.partition(b"\n")
    if not nl or not size.isdigit() or int(size) > len(rest):
        raise ValueError("compiled policy: bad length")
    n = int(size)
    return words[4].decode(), rest[:n], rest[n:]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_program(policy_path: str) -> Program:
    """The BPF program of a policy file: from its compiled file when that is
    current (no pyseccomp), else parsed and compiled now (``sandbox.seccomp``).

    Raises OSError (the policy file cannot be read) or ValueError
    (sandbox.seccomp.PolicyError: the policy is wrong), as
    sandbox.seccomp.load_policy does.
    """
    path = os.fspath(policy_path)
    text = _read(path)
    try:
        machine, source, code = parse_compiled(_read(compiled_path(path)))
        if machine == arch() and source == text and machine in SYS_SECCOMP:
            return Program(code, path, True)
    except (OSError, ValueError):
        pass  # none, unreadable or stale: compiled now, as before
    from .seccomp import compile_policy, parse_policy

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        from .seccomp import PolicyError

        raise PolicyError(f"{path}: not UTF-8 text: {e}") from None
    return Program(compile_policy(parse_policy(decoded, source=path)), path, False)


def _seccomp(flags: int, prog: _SockFprog) -> int:
    nr = SYS_SECCOMP.get(arch())
    if nr is None:
        raise OSError(ENOSYS, f"seccomp: no system call number known for {arch()}")
    ctypes.set_errno(0)
    r = _libc.syscall(nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
    if r < 0:
        return -ctypes.get_errno()
    return int(r)


def install(program: Program, tsync: bool = False) -> None:
    """Load the program into the calling thread, or with tsync into every
    thread of the process at once (irrevocably). no_new_privs first (an
    unprivileged process may load a filter only with it). Raises OSError
    naming the step (``seccomp_load: ...``, as the libseccomp path said)."""
    step = f"seccomp_load{' (all threads)' if tsync else ''}"
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{step}: no_new_privs: {os.strerror(e)}")
    buf = ctypes.create_string_buffer(program.code, len(program.code))
    prog = _SockFprog(len(program), ctypes.addressof(buf))
    _loaded.append((buf, prog))
    if not tsync:
        r = _seccomp(0, prog)
    else:
        r = _seccomp(SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH, prog)
        if r == -EINVAL:  # a kernel before 5.7: no TSYNC_ESRCH; a failing thread's id comes back
            r = _seccomp(SECCOMP_FILTER_FLAG_TSYNC, prog)
        if r > 0:
            raise OSError(ESRCH, f"{step}: thread {r} cannot take the filter")
    if r < 0:
        raise OSError(-r, f"{step}: {os.strerror(-r)}")
