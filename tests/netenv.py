# SPDX-License-Identifier: GPL-2.0-or-later
"""Network namespaces for the integration tests: a host to play with.

Nothing here touches the machine's own interfaces, routes or sysctls. Every
test network lives in namespaces this module creates:

    HostNS      a new user + network namespace that plays "the host": lo, and
                eth0 (veth, MTU 1500) with 192.0.2.10/24, 2001:db8::10/64,
                default routes via 192.0.2.1 and 2001:db8::1.
    GatewayNS   (HostNS(gateway=True), the default) the far end of eth0, in a
                network namespace of its own: 192.0.2.1 and 2001:db8::1 (the
                default router) plus 192.0.2.2 and 2001:db8::2 ("a far host").
    GuestNS     an empty network namespace inside HostNS's user namespace,
                held by a process without capabilities, for
                ``pasta --netns /proc/PID/ns/net`` (the way podman uses pasta).

HostNS's user namespace maps every id to itself (we run as root), so root in
there is root again, with capabilities over these namespaces only; the mount
namespace stays the machine's. Commands are run in a namespace with
``nsenter -t PID -U -n``: root in the namespace's user namespace, in its
network namespace.

Every process started here gets PR_SET_PDEATHSIG (SIGKILL): it dies with the
thread that started it. On exit, the processes started through ``popen`` get
SIGTERM (then SIGKILL), and then every process left in HostNS's user namespace
or in one nested in it is killed by pid: they can only be ours.

Example::

    with HostNS() as host:
        srv = host.serve("tcp-sink", "127.0.0.1")
        host.run(["ip", "-br", "addr"])
        guest = host.guest()
        pasta = host.popen([PASTA, "-f", "--config-net", "--netns", guest.netns_path])
        assert wait_for(lambda: "192.0.2.10" in guest.run("ip -4 addr", check=False).stdout, 10)
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tests" / "tools"
NETSERVE = str(TOOLS / "netserve.py")
PYTHON = sys.executable
PASTA = str(REPO / ".venv" / "bin" / "pasta")
PASST = str(REPO / ".venv" / "bin" / "passt")

# The addressing of HostNS and its gateway (TEST-NET-1 and the documentation
# prefix: never routed anywhere, and here they never leave our namespaces).
HOST_IF = "eth0"
PEER_IF = "gw0"
MTU = 1500
HOST_ADDR4, HOST_ADDR6 = "192.0.2.10", "2001:db8::10"
GW_ADDR4, GW_ADDR6 = "192.0.2.1", "2001:db8::1"
FAR_ADDR4, FAR_ADDR6 = "192.0.2.2", "2001:db8::2"
PREFIX4, PREFIX6 = 24, 64

CmdArg = Sequence[str] | str
NsId = tuple[int, int]

_PR_SET_PDEATHSIG = 1
_NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2), <linux/nsfs.h>
_libc = ctypes.CDLL(None, use_errno=True)


class NetenvError(RuntimeError):
    """The test network could not be set up."""


class CommandError(subprocess.CalledProcessError):
    """A command run in a namespace failed; the message carries its output."""

    def __str__(self) -> str:
        return (f"{super().__str__()}\n--- stdout:\n{self.stdout or ''}"
                f"--- stderr:\n{self.stderr or ''}")


def proc_children(pid: int) -> list[int]:
    """The children of every thread of pid (/proc/PID/task/*/children)."""
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(x) for x in f.read().split()]
    return kids


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def worker_of(pasta_pid: int, timeout: float = 5.0) -> int:
    """The sandboxed worker (seccomp filter mode) among pasta's or passt's children.

    Waits (bounded) for it: the namespace may be configured, or passt's
    socket listen, before the worker has loaded its code and isolated
    itself."""
    end = time.monotonic() + timeout
    while True:
        for kid in proc_children(pasta_pid):
            try:
                if proc_status(kid).get("Seccomp") == "2":
                    return kid
            except OSError:
                continue
        if time.monotonic() > end:
            raise AssertionError("no sandboxed worker among pasta's children")
        time.sleep(0.01)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds (gone ones count 0)."""
    t = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return t / os.sysconf("SC_CLK_TCK")


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Call ``pred`` until it returns something true or ``timeout`` seconds pass.

    Exceptions from ``pred`` count as false. Returns whether it came true.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if pred():
                return True
        except Exception:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _pdeathsig_preexec(extra: Callable[[], None] | None = None) -> Callable[[], None]:
    """A preexec_fn: die with the starting thread (and if it is gone already)."""
    parent = os.getpid()

    def fn() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(127)
        if extra is not None:
            extra()

    return fn


def spawn(argv: Sequence[str], **kw: Any) -> subprocess.Popen:
    """``subprocess.Popen`` with PR_SET_PDEATHSIG = SIGKILL (not tracked)."""
    kw["preexec_fn"] = _pdeathsig_preexec(kw.get("preexec_fn"))
    return subprocess.Popen(list(argv), **kw)


def _argv(cmd: CmdArg) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


def ns_id(path: str) -> NsId:
    """(device, inode) of a namespace file such as /proc/PID/ns/net."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _alive(pid: int) -> bool:
    """Whether pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def stop_process(p: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reap; close its pipes."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(grace)
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


def _userns_within(pid: int, root: NsId, depth: int = 32) -> bool:
    """Whether process pid's user namespace is ``root`` or nested in it."""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        for _ in range(depth):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == root:
                return True
            try:
                parent = fcntl.ioctl(fd, _NS_GET_PARENT)
            except OSError:  # reached the initial namespace (or left our view)
                return False
            os.close(fd)
            fd = parent
        return False
    finally:
        os.close(fd)


def _readline(p: subprocess.Popen, timeout: float) -> str:
    """Read one line from p's binary stdout pipe, waiting at most ``timeout``."""
    assert p.stdout is not None
    fd = p.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no line from {p.args!r} within {timeout}s (got {buf!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            raise EOFError(f"{p.args!r} exited ({p.poll()}) before a line (got {buf!r})")
        buf += chunk
    return buf.decode()


@dataclass
class Server:
    """A netserve.py server process (see tests/tools/netserve.py)."""

    proc: subprocess.Popen
    kind: str
    addr: str
    port: int

    def stop(self) -> None:
        """Stop the server (it is stopped with its namespace anyway)."""
        stop_process(self.proc)


class Namespace:
    """A holder process and the namespaces it keeps alive.

    Subclasses start the holder in ``start``. ``run`` and ``popen`` execute
    commands as root of the holder's user namespace in its network namespace.
    """

    kind = "namespace"

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder: subprocess.Popen | None = None
        self._procs: list[subprocess.Popen] = []

    # -- identity --------------------------------------------------------

    @property
    def pid(self) -> int:
        """Pid of the holder process (in the initial pid namespace)."""
        if self._holder is None:
            raise NetenvError(f"{self.name}: not started")
        return self._holder.pid

    @property
    def netns_path(self) -> str:
        """``/proc/PID/ns/net`` of the holder."""
        return f"/proc/{self.pid}/ns/net"

    @property
    def userns_path(self) -> str:
        """``/proc/PID/ns/user`` of the holder."""
        return f"/proc/{self.pid}/ns/user"

    @property
    def netns_id(self) -> NsId:
        """(device, inode) of the network namespace."""
        return ns_id(self.netns_path)

    @property
    def userns_id(self) -> NsId:
        """(device, inode) of the user namespace."""
        return ns_id(self.userns_path)

    def __repr__(self) -> str:
        pid = self._holder.pid if self._holder is not None else None
        return f"<{type(self).__name__} {self.name} pid={pid}>"

    # -- running commands -------------------------------------------------

    def wrap(self, cmd: CmdArg) -> list[str]:
        """The argv that runs ``cmd`` (argv, or a string for ``sh -c``) in here."""
        return ["nsenter", "-t", str(self.pid), "-U", "-n", "--"] + _argv(cmd)

    def run(self, cmd: CmdArg, timeout: float = 30, check: bool = True,
            input: str | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` here, capture stdout/stderr as text, bounded by ``timeout``.

        A string is run by ``sh -c``. Raises CommandError if ``check`` and the
        exit status is not 0, subprocess.TimeoutExpired after killing it on
        timeout.
        """
        argv = self.wrap(cmd)
        p = spawn(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                out, err = p.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a child of it holds the pipes
                out, err = "", ""
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        finally:
            stop_process(p, grace=0.5)
        r = subprocess.CompletedProcess(argv, p.returncode, out, err)
        if check and r.returncode != 0:
            raise CommandError(r.returncode, argv, out, err)
        return r

    def popen(self, cmd: CmdArg, **kw: Any) -> subprocess.Popen:
        """Start ``cmd`` here (``subprocess.Popen`` keywords); stopped on exit."""
        p = spawn(self.wrap(cmd), **kw)
        self._procs.append(p)
        return p

    def configure(self, commands: Sequence[str]) -> None:
        """Run each command line (split with shlex, no shell) here, in order.

        Typically ``ip ...`` or ``sysctl -qw ...``; the first failure raises
        NetenvError naming the command and its stderr.
        """
        for line in commands:
            argv = shlex.split(line)
            if not argv:
                continue
            r = self.run(argv, timeout=10, check=False)
            if r.returncode != 0:
                raise NetenvError(f"{self.name}: `{line}` failed ({r.returncode}): "
                                  f"{r.stderr.strip() or r.stdout.strip()}")

    def serve(self, kind: str, addr: str = "127.0.0.1", port: int = 0,
              timeout: float = 10) -> Server:
        """Start a tests/tools/netserve.py server here and wait until it listens.

        ``kind``: "tcp-echo", "tcp-sink" (answers "<sha256> <bytes> <peer>" at EOF) or
        "udp-echo". Port 0 lets the kernel choose; the result has the port.
        """
        p = self.popen([PYTHON, NETSERVE, kind, addr, str(port)], stdout=subprocess.PIPE)
        try:
            line = _readline(p, timeout)
        except (TimeoutError, EOFError) as e:
            stop_process(p)
            raise NetenvError(f"{self.name}: {kind} server on {addr}:{port}: {e}") from None
        tag, _, num = line.strip().partition(" ")
        if tag != "READY":
            stop_process(p)
            raise NetenvError(f"{self.name}: {kind} server said {line!r}")
        return Server(p, kind, addr, int(num))

    def client(self, mode: str, addr: str, port: int, *args: str,
               timeout: float = 30) -> dict[str, Any]:
        """Run a netserve.py client here and return its JSON result.

        ``mode``: "tcp-send" (to a tcp-sink), "tcp-echo-check", "udp-echo-check";
        ``args`` such as "--bytes", "1000000". The result's "ok" tells success.
        """
        r = self.run([PYTHON, NETSERVE, mode, addr, str(port), *args],
                     timeout=timeout, check=False)
        try:
            res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            res = {"ok": False, "error": f"exit {r.returncode}: {r.stderr.strip()}"}
        return res

    # -- life cycle --------------------------------------------------------

    def _start_holder(self, argv: Sequence[str], ready: Callable[[], bool]) -> None:
        """Start the holder and wait (bounded) until ``ready()``."""
        self._holder = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)

        def check() -> bool:
            if self._holder is not None and self._holder.poll() is not None:
                return True
            return ready()

        ok = wait_for(check, 10, 0.002)
        assert self._holder is not None
        if self._holder.poll() is not None or not ok:
            err = ""
            if self._holder.poll() is not None and self._holder.stderr is not None:
                err = self._holder.stderr.read().decode(errors="replace").strip()
            raise NetenvError(f"{self.name}: holder {list(argv)} did not come up "
                              f"(exit {self._holder.poll()}): {err}")

    def stop_processes(self) -> None:
        """Stop the processes started with ``popen``, newest first."""
        while self._procs:
            stop_process(self._procs.pop())

    def _reap_holder(self) -> None:
        if self._holder is not None:
            stop_process(self._holder, grace=2)

    def close(self) -> None:
        """Stop the started processes, then the holder."""
        self.stop_processes()
        self._reap_holder()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _ChildNS(Namespace):
    """A network namespace inside HostNS's user namespace."""

    _drop_caps = False

    def __init__(self, host: HostNS, name: str) -> None:
        super().__init__(name)
        self.host = host

    def start(self) -> Self:
        """Start the holder: ``unshare --net`` run in HostNS's user namespace."""
        if self._holder is not None:
            return self
        mine = ns_id("/proc/self/ns/net")
        host_user = self.host.userns_id
        caps = ["setpriv", "--bounding-set", "-all", "--"] if self._drop_caps else []
        argv = (["nsenter", "-t", str(self.host.pid), "-U", "--", "unshare", "--net", "--"]
                + caps + ["sleep", "infinity"])

        def ready() -> bool:
            return (ns_id(self.netns_path) != mine
                    and ns_id(self.userns_path) == host_user)

        self._start_holder(argv, ready)
        return self

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


class GatewayNS(_ChildNS):
    """The far end of HostNS's eth0: the default router and a far host."""

    def default_commands(self) -> list[str]:
        """Addresses on gw0 (moved here by HostNS), all nodad."""
        return [
            "ip link set lo up",
            f"sysctl -qw net.ipv6.conf.{PEER_IF}.accept_dad=0",
            f"ip link set {PEER_IF} mtu {self.host.mtu}",
            f"ip addr add {GW_ADDR4}/{PREFIX4} dev {PEER_IF}",
            f"ip addr add {FAR_ADDR4}/{PREFIX4} dev {PEER_IF}",
            f"ip -6 addr add {GW_ADDR6}/{PREFIX6} dev {PEER_IF} nodad",
            f"ip -6 addr add {FAR_ADDR6}/{PREFIX6} dev {PEER_IF} nodad",
            f"ip link set {PEER_IF} up",
        ]


class GuestNS(_ChildNS):
    """An empty network namespace for ``pasta --netns PATH``.

    Held by ``unshare --net setpriv --bounding-set -all sleep``: a holder
    without capabilities, because Linux lets a process (pasta, after it drops
    its capabilities) open /proc/PID/ns/net only if the target's permitted
    capabilities are a subset of its own. ``lo`` is left down, as in a new
    namespace. Usable as a context manager or through ``HostNS.guest()``.
    """

    _drop_caps = True

    def __init__(self, host: HostNS, name: str | None = None) -> None:
        super().__init__(host, name or f"guest{len(host.guests)}")
        host.guests.append(self)


class HostNS(Namespace):
    """A user + network namespace that plays the host; see the module doc.

    ``gateway``: put the far end of eth0 into a GatewayNS (``self.gw``) that
    answers on 192.0.2.1/.2 and 2001:db8::1/::2; without it, the peer stays
    up in here, without addresses (eth0 has carrier, nothing answers).
    ``mtu``: of eth0 and its peer. ``extra``: command lines run in HostNS
    (``configure``) after the default set-up.
    """

    def __init__(self, gateway: bool = True, *, mtu: int = MTU,
                 extra: Sequence[str] = (), name: str = "host") -> None:
        super().__init__(name)
        self.gateway = gateway
        self.mtu = mtu
        self.extra = list(extra)
        self.gw: GatewayNS | None = None
        self.guests: list[GuestNS] = []

    def default_commands(self) -> list[str]:
        """The default set-up of HostNS, as ``configure`` command lines."""
        full = os.geteuid() == 0
        cmds = [
            "ip link set lo up",
            # ICMP echo sockets for everybody (pasta's ping without privileges)
            f"sysctl -qw 'net.ipv4.ping_group_range={'0 2147483647' if full else '0 0'}'",
            "sysctl -qw net.ipv6.conf.default.accept_dad=0",
            f"ip link add {HOST_IF} mtu {self.mtu} type veth peer name {PEER_IF} mtu {self.mtu}",
            f"sysctl -qw net.ipv6.conf.{HOST_IF}.accept_dad=0",
        ]
        if self.gw is not None:
            cmds.append(f"ip link set {PEER_IF} netns {self.gw.pid}")
        else:
            cmds += [f"ip link set {PEER_IF} addrgenmode none", f"ip link set {PEER_IF} up"]
        return cmds + [
            f"ip addr add {HOST_ADDR4}/{PREFIX4} dev {HOST_IF}",
            f"ip -6 addr add {HOST_ADDR6}/{PREFIX6} dev {HOST_IF} nodad",
            f"ip link set {HOST_IF} up",
            f"ip route add default via {GW_ADDR4}",
            f"ip -6 route add default via {GW_ADDR6}",
        ]

    def start(self) -> Self:
        """Create the namespaces and configure them (idempotent)."""
        if self._holder is not None:
            return self
        mine = ns_id("/proc/self/ns/user")
        self._start_holder(["unshare", "--user", "--net", "--", "sleep", "infinity"],
                           lambda: ns_id(self.userns_path) != mine)
        self._write_id_maps()
        if self.gateway:
            self.gw = GatewayNS(self, "gateway").start()
        self.configure(self.default_commands())
        if self.gw is not None:
            self.gw.configure(self.gw.default_commands())
        self.configure(self.extra)
        if not wait_for(self._has_carrier, 5):
            raise NetenvError(f"{self.name}: {HOST_IF} has no carrier")
        return self

    def _write_id_maps(self) -> None:
        """Identity-map all ids as root; only our own (as 0) otherwise."""
        base = f"/proc/{self.pid}"
        if os.geteuid() == 0:
            maps = {"uid_map": "0 0 4294967295", "gid_map": "0 0 4294967295"}
        else:
            with open(f"{base}/setgroups", "w") as f:
                f.write("deny")
            maps = {"uid_map": f"0 {os.geteuid()} 1", "gid_map": f"0 {os.getegid()} 1"}
        for name, line in maps.items():
            with open(f"{base}/{name}", "w") as f:
                f.write(line)

    def _has_carrier(self) -> bool:
        out = self.run(["ip", "-o", "link", "show", HOST_IF], timeout=5).stdout
        return "LOWER_UP" in out and "NO-CARRIER" not in out

    def guest(self, name: str | None = None) -> GuestNS:
        """A started GuestNS, closed with this HostNS."""
        return GuestNS(self, name).start()

    def pasta(self, guest: GuestNS, *args: str, v6: bool = False, quiet: bool = True,
              **popen_kw: Any) -> subprocess.Popen:
        """``pasta -f -q --config-net ARGS --netns`` attached to guest, once eth0
        there has the host's IPv4 address (and its IPv6 one with ``v6``).
        ``quiet=False`` leaves out -q (for -d); ``popen_kw`` (stdout, stderr,
        env...) go to Popen."""
        kw: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
        kw.update(popen_kw)
        p = self.popen([PASTA, "-f", *(["-q"] if quiet else []), "--config-net", *args,
                        "--netns", guest.netns_path], **kw)

        def configured() -> bool:
            if v6 and HOST_ADDR6 not in guest.run("ip -6 addr show eth0", check=False).stdout:
                return False
            return HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout

        if not wait_for(configured, 15):
            raise NetenvError("guest not configured")
        return p

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop everything started in here, then every process left in our user ns."""
        for ns in [*reversed(self.guests), self.gw]:
            if ns is not None:
                ns.stop_processes()
        self.stop_processes()
        if self._holder is not None and self._holder.poll() is None:
            self._sweep()
        for ns in [*reversed(self.guests), self.gw]:
            if ns is not None:
                ns._reap_holder()
        self._reap_holder()

    def _sweep(self) -> None:
        """SIGKILL, by pid, each process in our user namespace or one below it."""
        try:
            root = self.userns_id
        except OSError:
            return
        me = os.getpid()
        victims = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me and _userns_within(int(entry), root):
                victims.append(int(entry))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Our own children are reaped by _reap_holder; others by their parents.
        wait_for(lambda: not any(_alive(p) for p in victims), 5)
