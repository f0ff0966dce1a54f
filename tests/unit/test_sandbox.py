# SPDX-License-Identifier: GPL-2.0-or-later
"""Tests of the sandbox package against the real kernel (no mocks).

A child is forked, isolates itself with isolate_worker() and a tiny policy
(tests/unit/data/test_worker.policy), reports readiness over a pipe and waits;
the test reads the evidence back from /proc/CHILD, then lets the child try a
forbidden call and checks how it ended. Every wait has a deadline and a child
that outlives its test is killed by pid.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from passt_sep.record import replace
from sandbox import caps, fdpass, ns
from sandbox.isolate import IsolationError, isolate_worker
from sandbox.seccomp import (
    Condition,
    Policy,
    PolicyError,
    build_filter,
    load_policy,
    parse_policy,
)

DATA = Path(__file__).parent / "data"
POLICY = DATA / "test_worker.policy"
POLICIES = Path(__file__).resolve().parents[2] / "policies"
TIMEOUT = 10.0

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reads /proc of a non-dumpable child")


def _userns_available() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except OSError:
        return True


needs_userns = pytest.mark.skipif(not _userns_available(), reason="user namespaces disabled")


# --------------------------------------------------------------------------
# The isolated child


def _forbidden_open() -> None:
    # "/" exists in the empty root: without seccomp this would succeed.
    os.open("/", os.O_RDONLY)


def _forbidden_socket() -> None:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def _forbidden_execv() -> None:
    os.execv("/bin/true", ["true"])


def _noop() -> None:
    pass


# Sockets the child makes before isolating itself (socket() is forbidden
# after): an unconnected TCP socket, as the broker now hands over before its
# connect(), and a UDP one.
_SOCKS: dict[str, socket.socket] = {}
MSG_FASTOPEN = 0x20000000
SO_PEEK_OFF = 42
SIOCOUTQ = 0x5411
FIONREAD = 0x541B
TUNSETOFFLOAD = 0x400454D0
TCP_FASTOPEN_CONNECT = 30


def _fastopen() -> None:
    # Without the filter: connect as part of the send (ENETUNREACH in the
    # child's empty network namespace, a SYN anywhere in a real one).
    _SOCKS["tcp"].sendto(b"x", MSG_FASTOPEN, ("127.0.0.1", 9))


def _udp_sendto() -> None:
    # a datagram with a destination address: what no worker socket may do
    # (the broker connects every UDP socket it hands over)
    _SOCKS["udp"].sendto(b"x", ("127.0.0.1", 9))


def _udp_send() -> None:
    # send() on a connected socket: sendto(fd, buf, len, 0, NULL, 0)
    _SOCKS["udpc"].send(b"x")


def _ioctl(request: int) -> Callable[[], None]:
    def call() -> None:
        fcntl.ioctl(_SOCKS["tcp"].fileno(), request, b"\0" * 4)
    return call


def _setsockopt(level: int, name: int, value: int) -> Callable[[], None]:
    def call() -> None:
        _SOCKS["tcp"].setsockopt(level, name, value)
    return call


ACTIONS: dict[str, Callable[[], None]] = {
    "noop": _noop,
    "open": _forbidden_open,
    "socket": _forbidden_socket,
    "execv": _forbidden_execv,
    "fastopen": _fastopen,
    "udp_sendto": _udp_sendto,
    "udp_send": _udp_send,
    "setblocking": lambda: _SOCKS["tcp"].setblocking(False),
    "ioctl_outq": _ioctl(SIOCOUTQ),
    "ioctl_inq": _ioctl(FIONREAD),
    "ioctl_tunsetoffload": _ioctl(TUNSETOFFLOAD),
    "setsockopt_peek_off": _setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0),
    "setsockopt_linger": lambda: _SOCKS["tcp"].setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0"),
    "setsockopt_rcvbuf": _setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),
    "setsockopt_fastopen_connect": _setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1),
}


@dataclass
class Child:
    pid: int
    from_child: int  # child's reports, line by line
    to_child: int  # one byte: go
    buf: bytes = b""
    status: int | None = None

    def readline(self, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"child {self.pid}: no line within {timeout}s")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_child, 4096)
            if not chunk:
                raise EOFError(f"child {self.pid}: pipe closed, got {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def go(self) -> None:
        os.write(self.to_child, b"g")

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Exit code as os.waitstatus_to_exitcode gives it (-31 = SIGSYS)."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"child {self.pid} still running after {timeout}s")
            time.sleep(0.005)
        return os.waitstatus_to_exitcode(self.status)

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, self.status = os.waitpid(self.pid, 0)
        for fd in (self.from_child, self.to_child):
            try:
                os.close(fd)
            except OSError:
                pass


def _child_main(
    policy: str | Path | Policy,
    action: str,
    report: int,
    go: int,
    become: int | None,
    mountpoint: str | None,
    thread: bool,
) -> int:
    """Body of the forked child. Returns the exit code; never returns to pytest."""
    try:
        if become is not None:
            os.setgroups([])
            os.setresgid(become, become, become)
            os.setresuid(become, become, become)
        if thread:
            threading.Thread(target=time.sleep, args=(TIMEOUT,), daemon=True).start()
        kwargs = {} if mountpoint is None else {"mountpoint": mountpoint}
        _SOCKS["tcp"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _SOCKS["udp"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # connected before isolation, as the broker hands them over: the
        # discard port of this netns's loopback (nothing is sent until "udp_send")
        _SOCKS["udpc"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _SOCKS["udpc"].connect(("127.0.0.1", 9))
        socks = [s.fileno() for s in _SOCKS.values()]
        isolate_worker(policy, keep_fds=[report, go, *socks], **kwargs)
    except BaseException as e:  # report anything, one line
        os.write(report, f"error: {type(e).__name__}: {e}\n".encode())
        return 3
    os.write(report, b"ready\n")
    if os.read(go, 1) != b"g":
        return 4
    os.write(report, f"about to {action}\n".encode())
    try:
        ACTIONS[action]()
    except OSError as e:
        os.write(report, f"{errno.errorcode.get(e.errno or 0, e.errno)}\n".encode())
        return 0
    os.write(report, b"ok\n")
    return 0


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def _spawn(
        policy: str | Path | Policy = POLICY,
        action: str = "noop",
        become: int | None = None,
        mountpoint: str | None = None,
        thread: bool = False,
    ) -> Child:
        r_report, w_report = os.pipe()
        r_go, w_go = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 5
            try:
                os.close(r_report)
                os.close(w_go)
                code = _child_main(policy, action, w_report, r_go, become, mountpoint, thread)
            finally:
                os._exit(code)
        os.close(w_report)
        os.close(r_go)
        child = Child(pid, r_report, w_go)
        children.append(child)
        return child

    yield _spawn
    for child in children:
        child.kill()


def _isolated(spawn: Callable[..., Child], **kwargs: object) -> Child:
    child = spawn(**kwargs)
    line = child.readline()
    assert line == "ready", line
    return child


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


# --------------------------------------------------------------------------
# Evidence read back from /proc


@needs_root
@needs_userns
def test_isolated_child_evidence(spawn: Callable[..., Child]) -> None:
    child = _isolated(spawn)
    pid = child.pid
    st = _status(pid)
    assert st["Seccomp"] == "2"  # filter mode
    assert st["NoNewPrivs"] == "1"
    for key in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(st[key], 16) == 0, (key, st[key])

    # The root is an empty, read-only tmpfs, the only mount there is.
    assert os.listdir(f"/proc/{pid}/root") == []
    assert os.statvfs(f"/proc/{pid}/root").f_flag & os.ST_RDONLY
    with open(f"/proc/{pid}/mountinfo") as f:
        mounts = f.read().splitlines()
    assert len(mounts) == 1, mounts
    fields = mounts[0].split()
    assert fields[4] == "/" and "ro" in fields[5].split(",")
    assert fields[fields.index("-") + 1] == "tmpfs"

    for nsname in ("net", "user", "mnt", "ipc", "uts"):
        mine = os.readlink(f"/proc/self/ns/{nsname}")
        theirs = os.readlink(f"/proc/{pid}/ns/{nsname}")
        assert mine != theirs, nsname

    # uid/gid 0 inside the new user namespace is our own uid/gid outside.
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split() == ["0", str(os.geteuid()), "1"]
    with open(f"/proc/{pid}/setgroups") as f:
        assert f.read().strip() == "deny"

    # Positive control: the policy is enough for the child to finish cleanly.
    child.go()
    assert child.readline() == "about to noop"
    assert child.readline() == "ok"
    assert child.wait() == 0


@needs_root
@needs_userns
def test_isolation_as_unprivileged_uid(spawn: Callable[..., Child]) -> None:
    """A caller with no capabilities at all (uid 65534) can isolate itself too."""
    policy = load_policy(POLICY)  # parsed before the child drops to nobody
    child = _isolated(spawn, policy=policy, become=65534)
    st = _status(child.pid)
    assert st["Uid"].split()[0] == "65534"
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
    assert int(st["CapBnd"], 16) == 0 and int(st["CapEff"], 16) == 0
    assert os.listdir(f"/proc/{child.pid}/root") == []
    with open(f"/proc/{child.pid}/uid_map") as f:
        assert f.read().split() == ["0", "65534", "1"]
    child.go()
    child.readline()
    assert child.readline() == "ok"
    assert child.wait() == 0


# --------------------------------------------------------------------------
# Forbidden calls


@needs_userns
@pytest.mark.parametrize("action", ["open", "socket", "execv"])
def test_forbidden_call_kills_with_sigsys(spawn: Callable[..., Child], action: str) -> None:
    child = _isolated(spawn, action=action)
    child.go()
    assert child.readline() == f"about to {action}"
    assert child.wait() == -signal.SIGSYS  # killed by the filter, not an exit


@needs_userns
@pytest.mark.parametrize("action", ["open", "socket", "execv"])
def test_forbidden_call_fails_with_eperm(
    spawn: Callable[..., Child], action: str, tmp_path: Path
) -> None:
    policy = tmp_path / "errno.policy"
    policy.write_text("@default errno EPERM  # the variant under test\n" + POLICY.read_text())
    child = _isolated(spawn, policy=policy, action=action)
    child.go()
    assert child.readline() == f"about to {action}"
    # Without the filter: open("/") would succeed, execv would be ENOENT.
    assert child.readline() == "EPERM"
    assert child.wait() == 0


def _shipped(mode: str, plain: bool = False) -> Policy:
    """A shipped policy, plus read (the test child waits with os.read).

    plain: drop every argument condition (the policy as it was without them),
    to show that what the conditions forbid would otherwise go through.
    """
    p = load_policy(POLICIES / f"{mode}.policy")
    return replace(
        p, syscalls=(*p.syscalls, "read"), conditions=() if plain else p.conditions
    )


# The calls the workers make, with the arguments they make them with.
ALLOWED_WITH_ARGS = [
    "udp_send", "setblocking", "ioctl_outq", "setsockopt_peek_off", "setsockopt_linger",
]
# The same calls with arguments no worker path uses.
DENIED_BY_ARGS = [
    "fastopen", "udp_sendto", "ioctl_inq", "ioctl_tunsetoffload", "setsockopt_rcvbuf",
    "setsockopt_fastopen_connect",
]


@needs_userns
@pytest.mark.parametrize("mode", ["pasta", "passt"])
@pytest.mark.parametrize("action", ALLOWED_WITH_ARGS)
def test_shipped_policy_allows_what_workers_call(
    spawn: Callable[..., Child], mode: str, action: str
) -> None:
    child = _isolated(spawn, policy=_shipped(mode), action=action)
    child.go()
    assert child.readline() == f"about to {action}"
    # "ok", or an errno the call itself returned (ENETUNREACH: the child's
    # network namespace is empty); either way the filter let it through.
    assert child.readline() in ("ok", "ENETUNREACH")
    assert child.wait() == 0


@needs_userns
@pytest.mark.parametrize("mode", ["pasta", "passt"])
@pytest.mark.parametrize("action", DENIED_BY_ARGS)
def test_shipped_policy_kills_for_other_arguments(
    spawn: Callable[..., Child], mode: str, action: str
) -> None:
    """sendto(MSG_FASTOPEN) would connect an unconnected TCP socket anywhere:
    the broker hands over TCP sockets before their connect() relying on this
    kill (docs/security.md). sendto with a destination address would send a
    datagram past the broker's choice on any UDP socket: every UDP socket
    the worker holds is connected (or receive-only), and only send() goes."""
    child = _isolated(spawn, policy=_shipped(mode), action=action)
    child.go()
    assert child.readline() == f"about to {action}"
    assert child.wait() == -signal.SIGSYS


@needs_userns
@pytest.mark.parametrize("action", DENIED_BY_ARGS)
def test_without_conditions_those_calls_go_through(
    spawn: Callable[..., Child], action: str
) -> None:
    """The same calls under the same policy minus its conditions are not
    killed: the kills above come from the argument checks."""
    child = _isolated(spawn, policy=_shipped("pasta", plain=True), action=action)
    child.go()
    assert child.readline() == f"about to {action}"
    line = child.readline()
    assert line == "ok" or line.startswith("E"), line  # returned, with or without an errno
    assert child.wait() == 0


@needs_userns
def test_failing_step_is_reported(spawn: Callable[..., Child]) -> None:
    child = spawn(mountpoint="/nonexistent-mountpoint")
    line = child.readline()
    assert line.startswith("error: IsolationError: sandbox: mount_tmpfs: "), line
    assert "No such file or directory" in line
    assert child.wait() == 3


@needs_userns
def test_threaded_process_is_refused(spawn: Callable[..., Child]) -> None:
    """unshare(CLONE_NEWUSER) refuses a multi-threaded process; the error says why."""
    child = spawn(thread=True)
    line = child.readline()
    assert line == (
        "error: IsolationError: sandbox: unshare: Invalid argument (the process has threads)"
    ), line
    assert child.wait() == 3


def test_isolation_error_for_missing_policy(tmp_path: Path) -> None:
    # Fails at step 1, before anything about this process changes.
    with pytest.raises(IsolationError) as exc:
        isolate_worker(tmp_path / "missing.policy")
    assert exc.value.step == "policy"
    assert exc.value.errno == errno.ENOENT
    assert str(exc.value) == (
        f"sandbox: policy: {tmp_path / 'missing.policy'}: No such file or directory"
    )


def test_isolation_error_for_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text("read  # ok\nwrite\n")
    with pytest.raises(IsolationError) as exc:
        isolate_worker(bad)
    assert str(exc.value) == (
        f"sandbox: policy: {bad}:2: syscall 'write' has no reason: "
        "write 'write  # why it is needed'"
    )


def test_isolation_error_is_one_line() -> None:
    e = IsolationError("pivot_root", "Operation\nnot permitted", errno.EPERM)
    assert str(e) == "sandbox: pivot_root: Operation not permitted"


# --------------------------------------------------------------------------
# Policy parser


def _parse(text: str) -> Policy:
    return parse_policy(text, source="t.policy")


def test_parse_policy_basics() -> None:
    p = _parse(
        "# a comment\n"
        "\n"
        "read   # the pipe\n"
        "   write # indented is fine\n"
        "exit_group#no space needed\n"
    )
    assert p.syscalls == ("read", "write", "exit_group")
    assert p.default == "kill" and p.errno == 0


@pytest.mark.parametrize(
    ("line", "default", "err"),
    [
        ("@default kill", "kill", 0),
        ("@default log", "log", 0),
        ("@default errno EPERM", "errno", errno.EPERM),
        ("@default errno eacces  # comment allowed", "errno", errno.EACCES),
        ("@default errno 38", "errno", errno.ENOSYS),
    ],
)
def test_parse_default_directive(line: str, default: str, err: int) -> None:
    p = _parse(f"read  # r\n{line}\n")
    assert (p.default, p.errno) == (default, err)
    assert isinstance(p.action, int)


def test_policy_validates_itself() -> None:
    with pytest.raises(PolicyError):
        Policy(syscalls=("read",), default="errno", errno=0)
    with pytest.raises(PolicyError):
        Policy(syscalls=("read",), default="allow")


def test_policy_is_frozen() -> None:
    p = _parse("read  # r\n")
    with pytest.raises(AttributeError):
        p.default = "log"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read  # r\nwrite\n", "t.policy:2: syscall 'write' has no reason"),
        ("read  #   \n", "t.policy:1: syscall 'read' has no reason"),
        ("read  # r\nnot_a_syscall  # why\n", "t.policy:2: unknown syscall 'not_a_syscall'"),
        ("Read  # r\n", "t.policy:1: unknown syscall 'Read'"),
        ("read write  # two\n", "t.policy:1: one syscall per line, found 2 words"),
        ("read  # r\nread  # again\n", "t.policy:2: syscall 'read' listed twice (first at line 1)"),
        ("@allow read\n", "t.policy:1: unknown directive '@allow'"),
        ("@default\n", "t.policy:1: bad directive '@default'"),
        ("@default allow\n", "t.policy:1: bad directive '@default allow'"),
        ("@default errno\n", "t.policy:1: bad directive '@default errno'"),
        ("@default errno EWHAT\n", "t.policy:1: @default errno: unknown errno 'EWHAT'"),
        ("@default kill\n@default log\n", "t.policy:2: second @default (first at line 1)"),
    ],
)
def test_parse_policy_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        _parse(text)
    assert str(exc.value).startswith(message), str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_conditions() -> None:
    p = _parse(
        "read  # r\n"
        "sendto  arg3&MSG_FASTOPEN==0  # s\n"
        "setsockopt  arg1==SOL_SOCKET arg2==SO_PEEK_OFF  # peek\n"
        "setsockopt  arg1==1 arg2==0xd  # linger, in numbers\n"
        "ioctl  arg1!=21531  # anything but FIONREAD\n"
    )
    assert p.syscalls == ("read", "sendto", "setsockopt", "ioctl")
    assert p.rules("read") == []
    assert p.rules("sendto") == [(Condition(3, "==", 0, mask=0x20000000),)]
    assert p.rules("setsockopt") == [
        (Condition(1, "==", 1), Condition(2, "==", 42)),
        (Condition(1, "==", 1), Condition(2, "==", 13)),
    ]
    assert p.rules("ioctl") == [(Condition(1, "!=", 0x541B),)]
    assert str(p.rules("sendto")[0][0]) == "arg3&0x20000000==0x0"
    build_filter(p)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read arg0>1  # r\n", "t.policy:1: bad condition 'arg0>1'"),
        ("read arg0 == 1  # r\n", "t.policy:1: bad condition 'arg0'"),
        ("read arg6==1  # r\n", "t.policy:1: 'arg6==1': argument index 6 out of range"),
        ("read arg0==FOO  # r\n", "t.policy:1: unknown value 'FOO' in 'arg0==FOO'"),
        ("read arg0&1!=0  # r\n", "t.policy:1: 'arg0&1!=0': a masked condition can only test =="),
        ("read arg0&0x10==0x11  # r\n", "t.policy:1: 'arg0&0x10==0x11': arg0&0x10==0x11 can never"),
        ("read arg0==1 arg0==2  # r\n", "t.policy:1: 'read': one condition per argument"),
        ("read  # r\nread arg0==1  # c\n",
         "t.policy:2: syscall 'read' has conditions here but is allowed outright at line 1"),
        ("read arg0==1  # c\nread  # r\n",
         "t.policy:2: syscall 'read' allowed outright here but with conditions at line 1"),
        ("read arg0==1  # c\nread arg0==1  # again\n",
         "t.policy:2: syscall 'read' listed twice with the same conditions (first at line 1)"),
        ("read arg0==1\n", "t.policy:1: syscall 'read' has no reason"),
    ],
)
def test_parse_condition_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        _parse(text)
    assert str(exc.value).startswith(message), str(exc.value)


def test_policy_conditions_validated() -> None:
    with pytest.raises(PolicyError, match="not allowed"):
        Policy(syscalls=("read",), conditions=(("write", (Condition(0, "==", 1),)),))
    with pytest.raises(PolicyError, match="empty condition"):
        Policy(syscalls=("read",), conditions=(("read", ()),))


def test_load_policy_file() -> None:
    p = load_policy(POLICY)
    assert {"read", "write", "exit_group"} <= set(p.syscalls)
    assert p.default == "kill"
    assert p.source == str(POLICY)
    # Building (not loading!) the filter works in the test process.
    build_filter(p)


def test_load_policy_missing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_policy(tmp_path / "nope.policy")


def test_repository_policies_parse() -> None:
    """Every policy shipped in policies/ must parse (none yet is fine)."""
    root = Path(__file__).resolve().parents[2] / "policies"
    for path in sorted(root.glob("*.policy")):
        load_policy(path)


# --------------------------------------------------------------------------
# ns and caps primitives: errors only (success is covered by the child)


def test_ns_errors_name_the_step() -> None:
    with pytest.raises(OSError) as exc:
        ns.setns(-1, ns.CLONE_NEWNET)
    assert exc.value.errno == errno.EBADF
    assert "setns" in str(exc.value) and "CLONE_NEWNET" in str(exc.value)

    with pytest.raises(OSError) as exc:
        ns.unshare(0x1)  # not a namespace flag: EINVAL, nothing changes
    assert exc.value.errno == errno.EINVAL and "unshare" in str(exc.value)

    with pytest.raises(OSError) as exc:
        ns.umount2("/nonexistent-sandbox-test")
    assert exc.value.errno == errno.ENOENT and "umount2" in str(exc.value)

    with pytest.raises(OSError) as exc:
        ns.write_id_maps(2**22 + 7, uid_map="0 0 1", gid_map="0 0 1")
    assert exc.value.errno == errno.ENOENT and "setgroups" in str(exc.value)


def test_flag_names() -> None:
    assert ns.flag_names(ns.CLONE_NEWUSER | ns.CLONE_NEWNET) == "CLONE_NEWUSER|CLONE_NEWNET"


def test_cap_last_cap_matches_proc() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.cap_last_cap() == int(f.read())


# --------------------------------------------------------------------------
# fd passing


def _open_fds() -> set[int]:
    """Open fds, without the one listdir itself used for the listing."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.add(int(name))
    return fds


@pytest.fixture
def seqpacket() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield a, b
    a.close()
    b.close()


def test_fdpass_roundtrip(seqpacket: tuple[socket.socket, socket.socket]) -> None:
    a, b = seqpacket
    r, w = os.pipe()
    try:
        assert fdpass.send_fds(a, b"hello", [w]) == 5
        data, fds = fdpass.recv_fds(b, 64, 2)
        assert data == b"hello" and len(fds) == 1
        assert os.get_inheritable(fds[0]) is False  # received close-on-exec
        os.write(fds[0], b"x")
        assert os.read(r, 1) == b"x"
        os.close(fds[0])

        fdpass.send_fds(a, b"nofds", [])
        assert fdpass.recv_fds(b, 64, 2) == (b"nofds", [])
    finally:
        os.close(r)
        os.close(w)


def test_fdpass_ctrunc_closes_and_raises(seqpacket: tuple[socket.socket, socket.socket]) -> None:
    a, b = seqpacket
    r, w = os.pipe()
    try:
        before = _open_fds()
        fdpass.send_fds(a, b"m", [r, w, r, w])
        with pytest.raises(fdpass.FdPassError) as exc:
            fdpass.recv_fds(b, 64, 1)
        assert exc.value.errno == errno.EMSGSIZE
        assert "truncated" in str(exc.value)
        assert _open_fds() == before  # nothing leaked
    finally:
        os.close(r)
        os.close(w)


def test_fdpass_extra_fds_closed(seqpacket: tuple[socket.socket, socket.socket]) -> None:
    """CMSG_SPACE padding fits two fds where one was asked for: the extra is closed."""
    a, b = seqpacket
    r, w = os.pipe()
    try:
        before = _open_fds()
        fdpass.send_fds(a, b"m", [r, w])
        data, fds = fdpass.recv_fds(b, 64, 1)
        assert data == b"m" and len(fds) == 1
        assert _open_fds() == before | {fds[0]}
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_fdpass_message_truncated(seqpacket: tuple[socket.socket, socket.socket]) -> None:
    a, b = seqpacket
    r, w = os.pipe()
    try:
        before = _open_fds()
        fdpass.send_fds(a, b"x" * 100, [r])
        with pytest.raises(fdpass.FdPassError):
            fdpass.recv_fds(b, 10, 1)
        assert _open_fds() == before
    finally:
        os.close(r)
        os.close(w)


def test_fdpass_raw_scm_rights_interop(seqpacket: tuple[socket.socket, socket.socket]) -> None:
    """recv_fds understands what the standard library's send_fds sends, and back."""
    a, b = seqpacket
    r, w = os.pipe()
    try:
        socket.send_fds(a, [b"std"], [r])
        data, fds = fdpass.recv_fds(b, 16, 1)
        assert data == b"std" and len(fds) == 1
        os.close(fds[0])
        fdpass.send_fds(b, b"ours", [w])
        data2, fds2, _, _ = socket.recv_fds(a, 16, 1)
        assert data2 == b"ours" and len(fds2) == 1
        os.close(fds2[0])
        assert array.array("i").itemsize == 4
    finally:
        os.close(r)
        os.close(w)
