# SPDX-License-Identifier: GPL-2.0-or-later
"""Seccomp programs compiled ahead of time (sandbox/bpf.py), for real.

Every shipped policy's compiled file (policies/NAME.bpf) is what
libseccomp makes of the policy text on this machine now, byte for byte,
so it cannot drift from the policy or the libseccomp in use; a stale,
foreign or broken compiled file is never loaded (the policy is compiled
at that moment instead); the fast path imports no pyseccomp; a program
loaded from a compiled file kills a forbidden call in a forked child and
lets an allowed one through; a program the kernel refuses is an OSError
with one line, and through parentfilter a one-line SetupError.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from passt_sep.errors import SetupError
from passt_sep.setup import parentfilter
from sandbox import bpf
from sandbox.seccomp import compile_policy, compiled_file, load_policy

REPO = Path(__file__).resolve().parents[2]
POLICIES = sorted((REPO / "policies").glob("*.policy"))


def test_every_policy_has_a_compiled_file() -> None:
    assert {p.stem for p in POLICIES} == {"pasta", "passt", "pasta-parent", "passt-parent"}
    for p in POLICIES:
        assert Path(bpf.compiled_path(str(p))).is_file(), p


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.stem)
def test_compiled_file_is_current(policy: Path) -> None:
    """Regenerated now from the text with this libseccomp: the same bytes."""
    data = Path(bpf.compiled_path(str(policy))).read_bytes()
    assert data == compiled_file(str(policy)), \
        f"{policy.name}: compiled file stale, run scripts/compile_policies.py"
    machine, text, code = bpf.parse_compiled(data)
    assert machine == os.uname().machine and text == policy.read_bytes()
    assert code == compile_policy(load_policy(policy))


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.stem)
def test_load_program_uses_the_compiled_file(policy: Path) -> None:
    prog = bpf.load_program(str(policy))
    assert prog.compiled and prog.code == compile_policy(load_policy(policy)) and len(prog) > 10


def _copy(tmp_path: Path, compiled: bytes | None) -> str:
    src = REPO / "policies" / "pasta.policy"
    dst = tmp_path / "pasta.policy"
    shutil.copy(src, dst)
    if compiled is not None:
        (tmp_path / "pasta.bpf").write_bytes(compiled)
    return str(dst)


def test_stale_foreign_or_broken_compiled_file_is_not_loaded(tmp_path: Path) -> None:
    good = (REPO / "policies" / "pasta.bpf").read_bytes()
    path = _copy(tmp_path, good)
    assert bpf.load_program(path).compiled
    fresh = compile_policy(load_policy(path))
    # the policy edited since: compiled now, from the new text
    with open(path, "a") as f:
        f.write("getpid  # added after the compiled file was made\n")
    prog = bpf.load_program(path)
    assert not prog.compiled and prog.code == compile_policy(load_policy(path)) != fresh
    # another architecture's, a damaged one, none at all
    path = _copy(tmp_path, good.replace(b" x86_64 ", b" s390x? ", 1).replace(b"s390x?", b"s390xx"))
    assert not bpf.load_program(path).compiled
    for damaged in (good[:40], b"", b"junk\n12\n", good.replace(b"\n4138\n", b"\n99999\n", 1)):
        path = _copy(tmp_path, damaged)
        prog = bpf.load_program(path)
        assert not prog.compiled and prog.code == fresh
    os.unlink(tmp_path / "pasta.bpf")
    assert bpf.load_program(path).code == fresh


def test_bad_policy_is_still_an_error_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text("read\n")
    with pytest.raises(ValueError, match=r"bad.policy:1: .*no reason"):
        bpf.load_program(str(bad))
    with pytest.raises(OSError):
        bpf.load_program(str(tmp_path / "missing.policy"))


def test_fast_path_imports_no_pyseccomp() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from sandbox.bpf import load_program\n"
            "p = load_program(sys.argv[2]); assert p.compiled\n"
            "print(sorted(m for m in sys.modules if 'seccomp' in m or m == 'typing'))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(REPO),
                          str(REPO / "policies" / "pasta-parent.policy")],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]", out


def _child(fn: object) -> int:
    """Run fn in a forked child; its wait status."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()  # type: ignore[operator]
            os._exit(0)
        except OSError as e:
            os.write(2, f"{e}\n".encode())
            os._exit(10 + (e.errno or 0) % 100)
        except BaseException:  # noqa: BLE001
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("tsync", [False, True])
def test_compiled_program_filters_for_real(tsync: bool) -> None:
    """pasta's worker program from its compiled file: getpid kills (SIGSYS),
    and without the filter the same child exits 0; Seccomp 2 read back."""
    prog = bpf.load_program(str(REPO / "policies" / "pasta.policy"))
    assert prog.compiled

    def filtered() -> None:
        bpf.install(prog, tsync=tsync)
        os.getpid()  # not in pasta.policy: SIGSYS

    status = _child(filtered)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status
    assert _child(os.getpid) == 0

    def mode_is_filter() -> None:
        with open("/proc/self/status") as f:
            lines = dict(line.split(":", 1) for line in f if ":" in line)
        if lines["Seccomp"].strip() != "0":
            os._exit(4)
        bpf.install(bpf.load_program(str(REPO / "policies" / "pasta-parent.policy")), tsync=tsync)
        fd = os.open("/proc/self/status", os.O_RDONLY)  # EPERM under the parent's policy
        os.close(fd)

    status = _child(mode_is_filter)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 10 + errno.EPERM, status


def test_refused_program_is_one_line_oserror() -> None:
    # one instruction, an invalid opcode: the kernel refuses it (EINVAL)
    bad = bpf.Program(b"\xff\xff\x00\x00\x00\x00\x00\x00", "bad", False)

    def load() -> None:
        bpf.install(bad, tsync=True)

    assert os.WEXITSTATUS(_child(load)) == 10 + errno.EINVAL
    with pytest.raises(ValueError):
        bpf.Program(b"\x00" * 7, "short", False)


def test_refused_program_is_one_line_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parentfilter, "_cache",
                        {"pasta": bpf.Program(b"\xff\xff\x00\x00\x00\x00\x00\x00", "bad", False)})

    def apply() -> None:
        try:
            parentfilter.apply("pasta")
        except SetupError as e:
            msg = str(e)
            os._exit(20 if msg.startswith("parent seccomp filter: ") and "\n" not in msg
                     and "Invalid argument" in msg else 21)

    assert os.WEXITSTATUS(_child(apply)) == 20
