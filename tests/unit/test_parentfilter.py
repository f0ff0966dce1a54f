# SPDX-License-Identifier: GPL-2.0-or-later
"""The parent's seccomp filter (passt_sep/setup/parentfilter.py), for real.

A forked child starts a thread (as the parent has its namespace thread),
loads the shipped parent policy with parentfilter.apply() exactly as
supervise() does, and then tries one thing. What the parent does during
supervision works (a TCP socket connected to a loopback listener, an fd
sent with SCM_RIGHTS, epoll, signals, waiting for a child); what it never
does after set-up is refused: execve, ptrace, mount, unshare, setns kill
the child with SIGSYS (the policy's @kill lines), openat and sockets of
other families fail with EPERM (its default), in the other thread too
(TSYNC). /proc is read back while the child waits: Seccomp 2 and
NoNewPrivs 1 on every thread.
"""

from __future__ import annotations

import array
import ctypes
import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from passt_sep.errors import SetupError
from passt_sep.setup import parentfilter
from sandbox import ns
from sandbox.seccomp import PolicyError, load_policy, parse_policy

MODES = ("pasta", "passt")
LIBC = ctypes.CDLL(None, use_errno=True)
PTRACE_TRACEME = 0


def _raise_errno(rc: int) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# -- what the child tries once filtered; each returns normally or raises OSError --
def _tcp_connect(listener: socket.socket) -> Callable[[], None]:
    addr = listener.getsockname()

    def fn() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        rc = s.connect_ex(addr)
        assert rc in (0, errno.EINPROGRESS), rc
        s.close()
    return fn


def _sendmsg_fd(a: socket.socket) -> Callable[[], None]:
    """As the broker replies: a new socket, sent with SCM_RIGHTS, closed."""
    def fn() -> None:
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [u.fileno()]))])
        u.close()
    return fn


def _epoll() -> None:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    os.write(w, b"1")
    assert ep.poll(1.0)
    ep.close()


def _signals() -> None:
    signal.signal(signal.SIGTERM, lambda *_: None)
    time.sleep(0.01)


def _open() -> None:
    os.open("/etc/hostname", os.O_RDONLY)


def _unix_socket() -> None:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def _ptrace() -> None:
    _raise_errno(LIBC.ptrace(PTRACE_TRACEME, 0, None, None))


def _execve() -> None:
    os.execv("/bin/true", ["true"])


def _mount() -> None:
    ns.mount("tmpfs", "/tmp", "tmpfs", 0, "")


def _unshare() -> None:
    ns.unshare(ns.CLONE_NEWNET)


def _setns_fd(fd: int) -> Callable[[], None]:
    return lambda: ns.setns(fd, ns.CLONE_NEWNET)


def _run_child(mode: str, action: Callable[[], None], uid: int | None = None,
               check_proc: Callable[[int], None] | None = None) -> int:
    """Fork; the child starts a thread (pasta: the parent has its namespace
    thread; passt's parent has one thread and no futex in its policy), drops to uid if given, applies the
    parent filter, reports, waits for go, runs action; returns its wait status.

    The child exits 0 if action returned, with the errno if it raised OSError,
    with 100 if the filter could not be loaded, 101 on any other exception.
    """
    rep_r, rep_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 101
        try:
            os.close(rep_r)
            os.close(go_w)
            q: list[int] = []
            t = threading.Thread(target=lambda: q.append(os.read(go_r, 1)[0]), daemon=True)
            if mode == "pasta":
                t.start()  # a second thread, waiting in read, as the namespace thread waits
            if uid is not None:
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
            try:
                parentfilter.apply(mode)
            except SetupError as e:
                os.write(rep_w, f"E{e}".encode())
                os._exit(100)
            os.write(rep_w, b"R")
            if mode == "pasta":
                t.join(30)  # the thread reads "go", filtered too
            else:
                os.read(go_r, 1)
            try:
                action()
                code = 0
            except OSError as e:
                code = e.errno or 102
        finally:
            os._exit(code)
    os.close(rep_w)
    os.close(go_r)
    try:
        ready = os.read(rep_r, 256)
        assert ready == b"R", ready
        if check_proc is not None:
            check_proc(pid)
        os.write(go_w, b"g")
        for _ in range(1000):  # bounded: 10 s
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the filtered child did not finish")
    finally:
        os.close(rep_r)
        os.close(go_w)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s
    s.close()


@pytest.mark.parametrize("mode", MODES)
def test_supervision_calls_work(mode: str, listener: socket.socket) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        for action in (_tcp_connect(listener), _sendmsg_fd(a), _epoll, _signals):
            status = _run_child(mode, action)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (action, status)
        b.setblocking(False)
        msg, anc, _f, _a = b.recvmsg(16, socket.CMSG_SPACE(4))
        assert msg == b"x" and anc and anc[0][1] == socket.SCM_RIGHTS  # the fd came through
        os.close(array.array("i", anc[0][2])[0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", [_ptrace, _execve, _mount, _unshare],
                         ids=["ptrace", "execve", "mount", "unshare"])
def test_dangerous_calls_kill_with_sigsys(mode: str, action: Callable[[], None]) -> None:
    status = _run_child(mode, action)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status


@pytest.mark.parametrize("mode", MODES)
def test_setns_kills_with_sigsys(mode: str) -> None:
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)  # opened before the filter
    try:
        status = _run_child(mode, _setns_fd(fd))
    finally:
        os.close(fd)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("action", [_open, _unix_socket], ids=["openat", "unix-socket"])
def test_other_calls_fail_with_eperm(mode: str, action: Callable[[], None]) -> None:
    status = _run_child(mode, action)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == errno.EPERM, status


def test_the_controls_do_what_the_filter_stops(listener: socket.socket) -> None:
    """Without the filter, the same child code opens, makes a UNIX socket and
    unshares (as root): the refusals above are the filter's."""
    for action in (_open, _unix_socket, _unshare):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                action()
                code = 0
            except OSError as e:
                code = e.errno or 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (action, status)


@pytest.mark.parametrize("mode", MODES)
def test_every_thread_filtered_and_nnp_unprivileged(mode: str) -> None:
    """Dropped to nobody first (as the parent will be): the filter still loads
    (no_new_privs is set first), on both threads (TSYNC), read back from /proc."""
    seen: dict[str, dict[str, str]] = {}

    def check(pid: int) -> None:
        for tid in os.listdir(f"/proc/{pid}/task"):
            fields = dict(line.split(":", 1) for line in
                          Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines())
            seen[tid] = {k: fields[k].strip() for k in ("Seccomp", "NoNewPrivs", "Uid")}

    status = _run_child(mode, _epoll, uid=65534, check_proc=check)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert len(seen) == (2 if mode == "pasta" else 1), seen
    for tid, f in seen.items():
        assert f["Seccomp"] == "2" and f["NoNewPrivs"] == "1", (tid, f)
        assert f["Uid"].split()[0] == "65534"


@pytest.mark.parametrize("mode", MODES)
def test_policy_refuses_what_the_issue_names(mode: str) -> None:
    """Whatever else changes in the file: these are never allowed, and the
    ones only an attacker would make are killed even under an errno default."""
    p = load_policy(parentfilter.policy_path(mode))
    assert p.default == "errno" and p.errno == errno.EPERM
    for name in ("open", "openat", "openat2", "creat", "execve", "execveat", "ptrace", "mount",
                 "umount2", "pivot_root", "unshare", "setns", "init_module", "bpf",
                 "process_vm_writev", "ioctl", "prctl", "seccomp", "clone", "clone3", "fork"):
        assert name not in p.syscalls, name
    for name in ("execve", "execveat", "ptrace", "mount", "umount2", "pivot_root", "unshare",
                 "setns", "init_module", "finit_module", "bpf", "process_vm_writev", "pidfd_getfd"):
        assert name in p.kill, name


def test_bad_policy_is_one_line_setup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pasta-parent.policy").write_text("read\n")
    monkeypatch.setattr(parentfilter, "POLICY_DIR", tmp_path)
    monkeypatch.setattr(parentfilter, "_cache", {})
    with pytest.raises(SetupError) as e:
        parentfilter.prepare("pasta")
    assert str(e.value).startswith("parent seccomp policy: ") and "\n" not in str(e.value)
    assert "no reason" in str(e.value)


@pytest.mark.parametrize("text,error", [
    ("@kill execve\n", "has no reason"),
    ("@kill execve  # x\n@kill execve  # y\n", "twice"),
    ("read  # x\n@kill read  # y\n", "cannot also be killed"),
    ("@kill read  # y\nread  # x\n", "is killed by @kill"),
    ("@kill nosuchcall  # y\n", "unknown syscall"),
    ("@kill execve ptrace  # y\n", "expected '@kill NAME"),
])
def test_kill_directive_errors(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(text, "t.policy")
    assert error in str(e.value) and str(e.value).startswith("t.policy:")


def test_kill_directive_parses() -> None:
    p = parse_policy("@default errno EPERM\nread  # r\n@kill execve  # e\n", "t.policy")
    assert p.syscalls == ("read",) and p.kill == ("execve",) and p.default == "errno"
