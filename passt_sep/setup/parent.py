# SPDX-License-Identifier: GPL-2.0-or-later
"""The privileged parent: set-up in order, then broker and supervisor.

Parent only. Order of a pasta run:

1. fork the worker first, while the process is single-threaded and small
   (it isolates itself at once, in parallel with the rest of set-up);
2. open the PID, log and pcap files, read host addressing, build the
   Config, print the summary, bind the host's forwarded ports (root may
   bind low ones); then, started by root, switch to --runas / nobody
   (setup/privs.py) and, around a command or without CAP_SYS_ADMIN, make
   or join a user namespace;
3. (attached as root, the switch comes at the end of set-up; then each
   thread keeps only the capabilities it needs, and supervision starts
   under the parent's own seccomp filter);
4. create the guest's namespace around the command, or open the target;
5. create and configure the tap inside it;
6. send the worker its start message (Config, tap and pcap fds) and
   wait for it to say it is ready (the worker logs through the parent:
   ``setup.worklog``);
7. let the command run (or tell the launcher we are ready, if daemonized);
8. serve broker requests and supervise: exit with the command's status,
   exit 0 when a --netns target disappears or on SIGTERM, exit 1 with a
   one-line reason when the worker dies.
"""

from __future__ import annotations

import _pickle as pickle  # (_pickle, not pickle: the same functions without pickle.py and the re it imports, 2-3 ms of start-up)
import ctypes
import gc
import os
import select
import signal
import socket
import time

import prctl

from sandbox.bpf import load_program
from sandbox.caps import keep_only_capabilities
from sandbox.fdpass import send_fds

from .. import ipc
from .. import log as logmod
from ..cli import Options
from ..errors import (
    SETUP_SIGNALS,
    Interrupted,
    ProtocolViolation,
    SetupError,
    check_interrupted,
    interrupt_setup,
    signals_held,
)
from ..log import log, trim_file
from . import netns, parentfilter
from .privs import drop_to, target_ids
from .worklog import WorkerLog, channel

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable

    from ..config import Config
    from ..early import EarlyTap
    from .acceptor import Acceptor
    from .api import ApiServer
    from .autofwd import Forwarder
    from .listeners import LocalBind

CAP_NET_BIND_SERVICE = 10
WORKER_READY_TIMEOUT = 10.0  # seconds the worker may take to isolate itself
# seconds the worker has to leave once the broker socket is closed (the real
# one takes milliseconds), before SIGKILL: short enough that a worker which
# ignores the close cannot hold the parent's exit past a second after SIGTERM
WORKER_STOP_GRACE = 0.5
LOG_TRIM_INTERVAL = 0.25  # seconds between --log-size checks (an fstat) while busy
SIG_NAMES = {signal.SIGSYS: "SIGSYS (seccomp policy violation)", signal.SIGKILL: "SIGKILL",
             signal.SIGSEGV: "SIGSEGV", signal.SIGTERM: "SIGTERM", signal.SIGABRT: "SIGABRT"}


def _open_log(opts: Options, prog: str) -> int | None:
    if not opts.log_file:
        return None
    try:
        # every write appends, the worker's too, wherever the parent's trimming is
        fd = os.open(opts.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise SetupError(f"log file {opts.log_file}", e) from None
    try:
        os.write(fd, f"{prog} passt-sep: {os.path.realpath('/proc/self/exe')} ({os.getpid()})\n".encode())
    except OSError as e:  # a full disk: the run goes on without its log lines, said once
        log.file_errors += 1
        try:
            os.write(2, f"{prog}: WARNING: log file: {e.strerror}, lines are lost\n".encode())
        except OSError:
            pass
    return fd


def _open_for_trim(path: str | None, fd: int) -> int | None:
    """A second fd on the log file, for log.trim_file (pwrite ignores the
    offset on an O_APPEND fd); None, and no trimming, if it cannot be opened."""
    try:
        tfd = os.open(path or "", os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        log.warn(f"log file {path}: {e.strerror}, --log-size not enforced")
        return None
    if os.fstat(tfd).st_ino != os.fstat(fd).st_ino:  # replaced in between: not ours to cut
        os.close(tfd)
        return None
    return tfd


def _open_pcap(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise SetupError(f"pcap file {path}", e) from None


def _open_pid(path: str | None) -> int | None:
    """The PID file, opened (and emptied) before the switch to --runas, written later."""
    if not path:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise SetupError(f"PID file {path}", e) from None


def _write_pid(fd: int | None, path: str | None, pid: int) -> None:
    """Write our PID into the file opened by _open_pid, and close it."""
    if fd is None:
        return
    try:
        os.write(fd, f"{pid}\n".encode())
    except OSError as e:
        raise SetupError(f"PID file {path}", e) from None
    finally:
        os.close(fd)


def _detach_stdio() -> None:
    """Point stdin, stdout and stderr at /dev/null (a daemon keeps no terminal)."""
    fd = os.open(os.devnull, os.O_RDWR)
    for n in (0, 1, 2):
        os.dup2(fd, n)
    if fd > 2:
        os.close(fd)


def _raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (TCP connections need fds)."""
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


def import_the_rest(mode: str, spawn: bool = False) -> None:
    """Import now whatever the rest of the run imports.

    After the switch to --runas the interpreter's own files may be out of
    reach (a Python installed under /root, mode 0700), and after the
    parent's seccomp filter nothing can be opened at all: a late import
    there is an error in the middle of a run. Called before the switch.
    """
    import threading  # noqa: F401 - the namespace thread's

    if spawn:  # the command's child runs os.execvp, whose get_exec_path imports warnings
        import warnings  # noqa: F401 - (pyseccomp's typing used to load it for us)

    # not here: setup/api.py (json), which bind_api imported if --api-socket asks for
    # it (without, the broker's report path refuses before it needs api), and
    # worker.stream, which passt's set-up (passt_run) imports itself
    from . import broker, sockdiag, sockpool  # noqa: F401
    if mode == "pasta":
        from . import autofwd, tap  # noqa: F401


def describe_status(status: int) -> str:
    """Why a process ended, in words."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by signal {SIG_NAMES.get(sig, str(sig))}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended (status {status})"


class Parent:
    """One run of pasta: set-up, then supervision."""

    api: ApiServer | None = None  # --api-socket (setup/api.py)
    rbuf = bytearray(ipc.RECV_MAX + 1)  # the worker's messages (_serve_broker); one parent per process

    def __init__(self, opts: Options, prog: str, ready_fd: int | None = None) -> None:
        self.opts = opts
        self.prog = prog
        self.ready_fd = ready_fd  # daemon mode: the launcher waits on it
        self.worker_pid = 0
        self.spawned: netns.Spawned | None = None
        self.netns_fd = -1
        self.tap_fd = -1
        self.fwd: Forwarder | None = None
        self.acceptor: Acceptor | None = None  # pasta: -T and loopback -t listeners (setup/acceptor.py)
        self.twins: list[tuple[socket.socket, int, int]] = []  # -t's loopback twins, until the acceptor has them
        self.next_trim = 0.0  # --log-size: when the log file is checked next
        self.trim_fd: int | None = None  # the parent's read-write fd on the log file
        self.watch_path: str | None = None  # pasta --netns PATH: exit when it is deleted
        self.target_pidfd = -1  # pasta PID, --netns /proc/PID/ns/net: exit when PID does
        self.netns_watch: _NetnsWatch | None = None
        self.netns_event = False
        self.next_watch = 0.0
        self.ids = target_ids(opts.runas)  # who we run as after set-up (None: as we are)
        self.worklog: WorkerLog | None = None  # the worker's log lines (fork_worker)
        self.udp_local: dict[int, list[LocalBind]] = {}  # how the host's -u sockets are bound
        # files set-up made that a run which never got set up must not leave
        # (PID file, passt's socket); forgotten when supervision starts
        self.setup_files: list[str] = []
        self.early_fd: int | None = None  # passt: the socket listening since passt_sep.early
        self.early_probed: list[str] = []
        self.early_tap: EarlyTap | None = None  # pasta: the tap made since passt_sep.early

    # -- steps --------------------------------------------------------------
    def fork_worker(self) -> None:
        """Step 1: the worker, isolated before anything else happens."""
        from ..worker.main import policy_path, preload, worker_main

        try:
            policy = load_program(policy_path(self.opts.mode))
        except (OSError, ValueError) as e:
            raise SetupError("seccomp policy", e) from None
        self.sock, wsock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        logr, logw = channel()
        me = os.getpid()
        # everything loaded so far into the permanent generation: no collection
        # in either process walks (and so writes, and so copies) the pages the
        # fork left shared (less PSS; docs/performance.md, "Start-up")
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            for sig in SETUP_SIGNALS:  # set-up's Interrupted is the parent's, not ours
                signal.signal(sig, signal.SIG_DFL)
            self.sock.close()
            logr.close()
            try:
                preload()  # the worker's code, still as the user we were started as
            except BaseException as e:  # noqa: BLE001 - the child must not unwind into the parent's code
                os.write(2, f"{self.prog}: worker: {type(e).__name__}: {e}\n".encode())
                os._exit(1)
            if self.ready_fd is not None:  # daemon: let go of the launcher's stdio
                _detach_stdio()
            self.in_worker_child()
            worker_main(wsock, self.opts.mode, policy, logw,
                        self.opts.pcap_size if self.opts.pcap else 0, parent_pid=me)
        wsock.close()
        logw.close()
        self.worklog = WorkerLog(logr)
        self.worker_pid = pid
        # the parent's own policy, read now (a bad one fails the run before any set-up
        # step), applied in supervise(); after the fork, so the worker starts sooner
        parentfilter.prepare(self.opts.mode)

    def in_worker_child(self) -> None:
        """In the forked worker, before it isolates itself: run as the target user
        (--runas, else nobody when root), so that the uid its user namespace
        maps to is never root's."""
        try:
            drop_to(self.ids)
        except SetupError as e:
            os.write(2, f"{self.prog}: worker: {e}\n".encode())
            os._exit(1)

    def run(self) -> int:
        """Do the whole run; return the exit status."""
        o = self.opts
        level = logmod.TRACE if o.trace else logmod.DEBUG if o.debug else logmod.INFO
        if o.quiet:
            level = logmod.ERROR
        log_fd = _open_log(o, self.prog)
        if log_fd is not None:  # --log-size: the parent's own fd to move lines with (no O_APPEND)
            self.trim_fd = _open_for_trim(o.log_file, log_fd)
        stderr_fd = 2 if (log_fd is None or o.stderr) else None
        log.configure(self.prog, level, stderr_fd, log_fd, o.debug)
        _raise_nofile()  # before the fork: the worker sizes its TCP table from it
        # SIGTERM, SIGQUIT, SIGHUP, SIGINT during set-up: unwind, clean up,
        # exit 0, as supervision does (and as passt does for SIGTERM/SIGQUIT)
        interrupt_setup()  # (main.run did already, before the imports; again for direct callers)
        # past RLIMIT_FSIZE a write to the log file fails (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.fork_worker()
        try:
            check_interrupted()
            return self._run(level, stderr_fd, log_fd)
        except Interrupted as e:
            log.info(f"{signal.Signals(e.sig).name} during set-up, exiting")
            return 0
        finally:
            if self.api is not None:
                self.api.close()
            self._stop_worker()
            if self.worklog is not None:  # the worker's last lines
                self.worklog.drain()
            if self.spawned is not None and self.spawned.pid:
                self.spawned.abort()
            for path in self.setup_files:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def record_file(self, path: str) -> None:
        """A file set-up made: removed if the run never gets set up."""
        if path not in self.setup_files:
            self.setup_files.append(path)

    def open_pid_file(self) -> int | None:
        """The PID file, opened and recorded for set-up's clean-up in one step
        (a signal in between would leave it behind)."""
        path = self.opts.pid_file
        with signals_held():
            fd = _open_pid(path)
            if fd is not None and path:
                self.record_file(path)
        return fd

    def _run(self, level: int, stderr_fd: int | None, log_fd: int | None) -> int:
        o = self.opts
        cfg = self.configure()
        # What needs root is done while we still are: the files are opened
        # (O_NOFOLLOW), the host's forwarded ports bound (low ones too)
        pid_fd = self.open_pid_file()
        pcap_fd = _open_pcap(o.pcap)
        listeners, udp_listeners = self.bind_host_ports(cfg)
        self.bind_api(cfg)
        import_the_rest(o.mode, spawn=o.netns is None and o.target_pid is None)

        privileged = netns.has_cap_sys_admin()
        attach = o.netns is not None or o.target_pid is not None
        if attach:
            netns_path = o.netns or f"/proc/{o.target_pid}/ns/net"
            userns = o.userns or (f"/proc/{o.target_pid}/ns/user" if o.target_pid else None)
            if userns and not o.netns_only and not privileged:
                netns.join_userns(userns)
            # as root: the namespace is entered while privileged, the switch comes at the end
        elif self.ids is not None:
            # as root, like pasta: the switch first, then a user namespace of our
            # own, which owns the namespace made for the command
            drop_to(self.ids)
            # dumpable again until set-up is done: the id maps, and the command
            # forked below, whose /proc/PID/ns/net we open, are ours to touch
            prctl.set_dumpable(1)
            netns.become_userns_root()
        elif not privileged:
            netns.become_userns_root()

        if attach:
            # a process's namespace (PID, /proc/PID/ns/net): the run ends with that
            # process, as pasta's; its pidfd first, so it is the one whose netns we open
            self.target_pidfd = _target_pidfd(netns_path) if not o.no_netns_quit else -1
            self.netns_fd = netns.open_netns(netns_path)
        else:
            self.spawned = netns.Spawned(list(o.command) or netns.shell_argv())
            self.netns_fd = netns.open_netns(self.spawned.netns_path)

        from .tap import create_and_configure

        early_tap, self.early_tap = self.early_tap, None  # adopted or closed in there
        self.tap_fd, tap_name, ns_mac = create_and_configure(cfg, self.netns_fd, early_tap)
        from .autofwd import Forwarder, NsThread

        # a thread stays inside the namespace for the splice path, -T and auto;
        # it opens the namespace's /proc/net files before anything else happens there
        self.fwd = Forwarder(cfg, NsThread(self.netns_fd))
        os.close(self.netns_fd)  # the tap and the thread keep the namespace; don't pin its file
        self.netns_fd = -1
        log.debug(f"tap device {tap_name} ready, namespace side MAC "
                  f"{':'.join(f'{b:02x}' for b in ns_mac)}")
        ns_listeners = self.fwd.bind_ns_spec()  # -T, inside the namespace
        ns_udp = self.fwd.bind_ns_udp_spec()  # -U, inside the namespace

        fds = [self.tap_fd] + ([pcap_fd] if pcap_fd is not None else [])
        start = {"cfg": cfg, "guest_mac": ns_mac, "level": level, "pcap": pcap_fd is not None}
        try:
            send_fds(self.sock, pickle.dumps(start), fds)
        except OSError as e:
            raise SetupError("start worker", self._worker_death() or e) from None
        try:
            for lsock, port, target in listeners:  # after the start message, one per message
                send_fds(self.sock, ipc.pack_listener(port, target), [lsock.fileno()])
                lsock.close()
            for usock, port, target in udp_listeners:
                send_fds(self.sock, ipc.pack_udp_listener(port, target), [usock.fileno()])
                usock.close()
            for nsock, port, target in ns_udp:
                send_fds(self.sock, ipc.pack_port_msg(ipc.NS_UDP_MAGIC, port, target),
                         [nsock.fileno()])
                nsock.close()
        except OSError as e:
            raise SetupError("start worker", self._worker_death() or e) from None
        os.close(self.tap_fd)
        if pcap_fd is not None:
            os.close(pcap_fd)
        self._wait_ready()

        self.start_broker(cfg)
        self.broker.fwd = self.fwd
        from .acceptor import KIND_NS, KIND_T, Acceptor

        # -T listeners and the loopback twins of -t ones stay here: the parent
        # accepts, connects the other side of a spliced connection, hands the worker both
        self.acceptor = Acceptor(self.broker, splice=self.opts.mode == "pasta")
        for lsock, port, target in self.twins:
            self.acceptor.add(lsock, port, target, KIND_T)
        self.twins = []
        for nsock, port, target in ns_listeners:
            self.acceptor.add(nsock, port, target, KIND_NS)
        self.fwd.acceptor = self.acceptor
        self.fwd.start(self.broker.send)  # first auto scan: forwards in place before the command runs
        if attach:
            drop_to(self.ids)  # as root: set-up is over (for a spawned command, the switch came first)
        self.keep_needed_caps()
        if self.ids is not None:
            prctl.set_dumpable(0)  # nobody else running as the target user may ptrace us
        if self.spawned is not None:
            self.spawned.go()
            _write_pid(pid_fd, o.pid_file, os.getpid())
        else:
            _write_pid(pid_fd, o.pid_file, os.getpid())
            self.release_launcher()
        self.setup_files.clear()
        return self.supervise(netns_path if attach else None)

    # -- what both modes' set-up shares -------------------------------------------
    def configure(self) -> Config:
        """Host addressing, the frozen Config and its summary in the log."""
        o = self.opts
        if self.ids is not None and o.runas is None:
            log.warn("Don't run as root. Changing to nobody...")
        from ..config import build_config
        from .hostaddr import read_host

        cfg = build_config(o, read_host(o.ifname, o.outbound_if4, o.outbound_if6))
        for line in cfg.summary():
            for part in line.split("\n"):
                log.info(part)
        return cfg

    def bind_host_ports(self, cfg: Config) -> tuple[list[tuple[socket.socket, int, int]],
                                                     list[tuple[socket.socket, int, int]]]:
        """The host's -t listeners and -u sockets (as root: low ports too), and
        how the -u ones are bound, kept for the broker (their senders' reply
        sockets bind alike)."""
        from .listeners import (
            bind_tcp_listeners,
            bind_udp_listeners,
            loopback_twins,
            note_binds,
            plan_room,
        )

        tcp_cap, udp_cap = plan_room(cfg)  # the worker's share for listeners (worker/limits.py)
        # as the worker's Splicer.enabled; not for -t all (every free port: no twins for them)
        splice = self.opts.mode == "pasta" and cfg.opts.tcp_in.mode == "spec"
        listeners = bind_tcp_listeners(cfg, tcp_cap, twins=splice)
        # pasta: the parent accepts what comes to the loopback (setup/acceptor.py)
        self.twins = loopback_twins(listeners) if splice else []
        udp_listeners = bind_udp_listeners(cfg, udp_cap)
        note_binds(self.udp_local, udp_listeners)
        return listeners, udp_listeners

    def bind_api(self, cfg: Config) -> None:
        """--api-socket: bind it now, while privileged, owned by who we will run as."""
        if not self.opts.api_socket:
            return
        from .api import ApiServer, bind_api_socket

        path = self.opts.api_socket
        self.api = ApiServer(path, bind_api_socket(path, self.ids), cfg)

    def start_broker(self, cfg: Config) -> None:
        """The broker, once the worker is ready; it knows how the -u sockets are bound."""
        from .broker import Broker

        self.broker = Broker(cfg, self.sock)
        self.broker.udp_local = self.udp_local

    def keep_needed_caps(self) -> None:
        """Set-up is over: keep only the capabilities the run still needs.

        Whatever the parent holds now, it holds in a user namespace of its
        own (or podman's), never in the initial one. The main thread needs
        none of it any more; the namespace thread keeps CAP_NET_BIND_SERVICE
        to bind low ports inside the guest's namespace (`auto` -T and -U).
        Capabilities are per thread: each drops its own.
        """
        try:
            keep_only_capabilities(0)
            if self.fwd is not None:
                self.fwd.ns.call(lambda: keep_only_capabilities(1 << CAP_NET_BIND_SERVICE))
        except OSError as e:
            raise SetupError("dropping capabilities", e) from None

    def release_launcher(self) -> None:
        """Daemon: tell the launcher set-up is done, and let go of its stdio."""
        if self.ready_fd is not None:
            os.write(self.ready_fd, b"0")
            os.close(self.ready_fd)
            self.ready_fd = None
            _detach_stdio()
            log.stderr_fd = None

    def _wait_ready(self) -> None:
        log.debug("waiting for the worker")
        self.sock.settimeout(WORKER_READY_TIMEOUT)
        try:
            msg = self.sock.recv(16)
        except OSError:
            msg = b""
        self.sock.settimeout(None)
        if self.worklog is not None:  # what it said during set-up, before the parent's next lines
            self.worklog.drain()
        if msg != b"ready":
            why = self._worker_death() or "no answer"
            raise SetupError("start worker", why)
        log.debug("worker ready")

    def _worker_death(self, block: bool = False) -> str | None:
        """If the worker has ended, reap it and say how."""
        if not self.worker_pid:
            return None
        deadline = time.monotonic() + (1.0 if not block else 5.0)
        while True:
            pid, status = os.waitpid(self.worker_pid, os.WNOHANG)
            if pid:
                self.worker_pid = 0
                if self.worklog is not None:  # its last words before ours
                    self.worklog.drain()
                return f"worker {describe_status(status)}"
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def _stop_worker(self) -> None:
        if not self.worker_pid:
            return
        try:
            self.sock.close()  # the worker leaves its loop when the socket closes
        except OSError:
            pass
        _reap_or_kill(self.worker_pid, WORKER_STOP_GRACE)
        self.worker_pid = 0

    # -- supervision --------------------------------------------------------
    def trim_log(self, now: float) -> None:
        """--log-size: cut the log file back if it grew past the limit (a few times a second)."""
        if self.trim_fd is not None and now >= self.next_trim:
            self.next_trim = now + LOG_TRIM_INTERVAL
            trim_file(self.trim_fd, self.opts.log_size)

    def _serve_broker(self, unwatch: Callable[[int], object]) -> None:
        """Answer one request; ``unwatch`` the socket once the worker closed it."""
        try:
            # a request is ipc.REQ.size bytes, a report (control API) up to ipc.RECV_MAX
            n = self.sock.recv_into(self.rbuf)
            data = self.rbuf[:n]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.broker.handle(data)
        else:
            self.broker.end_of_stream(self.worker_pid)  # a zero-length record from a live worker: violation
            unwatch(self.sock.fileno())

    def supervise(self, watch_path: str | None = None) -> int:
        """Serve the broker and supervise until something ends the run.

        One loop for both modes: the worker, the broker socket, signals, the
        worker's log lines and --log-size are the same; what differs is
        what each mode adds (``watch_mode``), does between polls (``tick``)
        and does on the way out (``end_mode``). pasta's: the spawned
        command, the netns file, auto scans; passt's (PasstParent): the
        qemu socket and the worker's control messages.
        """
        check_interrupted()  # a set-up signal whose exception was lost (os.fork's hooks)
        parentfilter.apply(self.opts.mode)  # from here on: policies/<mode>-parent.policy
        self.watch_path = watch_path
        # epoll itself, not selectors: the broker's requests come once per new
        # connection and wait for this loop (a few µs less each)
        ep = select.epoll()
        try:
            return self._supervise(ep)
        except ProtocolViolation as e:
            return self.violation(e)
        finally:
            ep.close()

    def violation(self, e: ProtocolViolation) -> int:
        """The worker broke the protocol: log it, kill it, end the run with 1."""
        log.err(f"worker protocol violation: {e}, exiting")
        if self.worker_pid:
            try:
                os.kill(self.worker_pid, signal.SIGKILL)
                os.waitpid(self.worker_pid, 0)
            except OSError:
                pass
            self.worker_pid = 0
        self.end_mode()
        return 1

    def _supervise(self, ep: select.epoll) -> int:
        handlers: dict[int, Callable[[int], int | None]] = {}

        def watch(fd: int, handler: Callable[[int], int | None]) -> None:
            handlers[fd] = handler
            ep.register(fd, select.EPOLLIN)

        def unwatch(fd: int) -> None:
            if handlers.pop(fd, None) is not None:
                ep.unregister(fd)

        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        got: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, lambda s, _f: got.append(s))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

        def woken(_ev: int) -> None:
            try:
                os.read(wake_r, 64)
            except OSError:
                pass

        def broker(ev: int) -> None:
            if ev & select.EPOLLOUT:
                self.broker.flush()
            if ev & ~select.EPOLLOUT:
                self._serve_broker(unwatch)

        watch(os.pidfd_open(self.worker_pid), self._worker_ended)
        watch(self.sock.fileno(), broker)
        watch(wake_r, woken)
        worklog = self.worklog
        if worklog is not None:
            def log_lines(_ev: int) -> None:
                worklog.on_readable(unwatch)

            watch(worklog.fd, log_lines)
        self.watch_mode(watch, unwatch)
        api = self.api
        if api is not None:
            api.start(self.broker, watch, unwatch)
        out_watched = False  # EPOLLOUT on the broker socket while messages queue
        while True:
            timeout = self.poll_timeout()
            due = api.next_due() if api is not None else None
            if due is not None:
                timeout = max(0.0, min(timeout, due - time.monotonic()))
            try:
                events = ep.poll(timeout)
            except InterruptedError:
                events = []
            for fd, ev in events:
                handler = handlers.get(fd)
                rc = handler(ev) if handler is not None else None
                if rc is not None:
                    return rc
            if got:
                self.end_mode()
                return 0
            now = time.monotonic()
            rc = self.tick(now, quiet=not events)
            if rc is not None:
                return rc
            if api is not None and api.clients:
                api.expire(now)
            if bool(self.broker.queue) != out_watched and self.sock.fileno() in handlers:
                out_watched = not out_watched
                ep.modify(self.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if out_watched else 0))
            self.trim_log(now)

    def _worker_ended(self, _ev: int) -> int:
        _pid, status = os.waitpid(self.worker_pid, 0)
        self.worker_pid = 0
        if self.worklog is not None:
            self.worklog.drain()  # its last words before ours
        log.err(f"worker {describe_status(status)}, exiting")
        self.end_mode()
        return 1

    # -- what pasta adds to the loop (PasstParent has its own) ----------------
    def watch_mode(self, watch: Callable[[int, Callable[[int], int | None]], None],
                   unwatch: Callable[[int], None]) -> None:
        """pasta: the spawned command (its end is the run's), the netns file."""
        if self.spawned is not None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command gets it
            watch(os.pidfd_open(self.spawned.pid), self._command_ended)
        path = self.watch_path
        self.netns_watch = _NetnsWatch(path, self.target_pidfd) if path and not self.opts.no_netns_quit else None
        self.netns_event = False
        self.next_watch = 0.0
        if self.netns_watch is not None and self.netns_watch.fd >= 0:
            watch(self.netns_watch.fd, self._netns_changed)
        if self.acceptor is not None:
            self.acceptor.start(watch, unwatch)

    def _command_ended(self, _ev: int) -> int:
        assert self.spawned is not None
        _pid, status = os.waitpid(self.spawned.pid, 0)
        self.spawned.pid = 0
        return netns.exit_status(status)

    def _netns_changed(self, _ev: int) -> None:
        self.netns_event = True
        if self.netns_watch is not None:
            self.netns_watch.fired()

    def poll_timeout(self) -> float:
        """Until the next auto scan, a second at most."""
        fwd = self.fwd
        if fwd is not None and fwd.auto:
            return max(0.0, min(1.0, fwd.next_scan - time.monotonic()))
        return 1.0

    def tick(self, now: float, quiet: bool) -> int | None:
        """Between polls: auto scans, and whether the netns file is gone (0: exit)."""
        fwd = self.fwd
        if fwd is not None and fwd.due(now):
            fwd.scan(now)
        if self.acceptor is not None and self.acceptor.paused:
            self.acceptor.tick()
        # the netns file: on an inotify event or a quiet second, and at
        # least once a second (not on every broker request: two calls each)
        watch = self.netns_watch
        if watch is not None and (self.netns_event or quiet or now >= self.next_watch):
            self.netns_event = False
            self.next_watch = now + 1.0
            if watch.gone():
                log.info(f"Namespace {watch.path} is gone, exiting")
                return 0
        return None

    def end_mode(self) -> None:
        """The run ends (a signal, the worker): end the spawned command too."""
        if self.spawned is not None:
            _terminate(self.spawned)


def _terminate(sp: netns.Spawned) -> None:
    """End the spawned command: SIGTERM, then SIGKILL after a second."""
    if not sp.pid:
        return
    try:
        os.kill(sp.pid, signal.SIGTERM)
    except OSError:
        return
    _reap_or_kill(sp.pid)
    sp.pid = 0


def _reap_or_kill(pid: int, grace: float = 1.0) -> None:
    """Reap a child that was asked to end; SIGKILL it if it takes longer than grace."""
    for _ in range(int(grace / 0.01)):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _target_pidfd(path: str) -> int:
    """A pidfd of the process whose namespace path names (``/proc/PID/ns/net``),
    -1 for any other path. A PID that is gone already is left to open_netns,
    which says so."""
    parts = path.split("/")
    if len(parts) != 5 or parts[:2] != ["", "proc"] or parts[3:] != ["ns", "net"] or not parts[2].isdigit():
        return -1
    try:
        return os.pidfd_open(int(parts[2]))
    except (OSError, OverflowError, ValueError):
        return -1


class _NetnsWatch:
    """Notice that the target namespace is gone: a filesystem-bound netns file
    deleted (inotify, else polling), or the process of ``/proc/PID/ns/net``
    ended (its pidfd, opened at set-up: ``pidfd``). Upstream pasta does both
    (the process's case with a timer); a namespace path under /proc that is not
    a process's own (``/proc/self/...``) is not watched."""

    IN_DELETE, IN_DELETE_SELF, IN_NONBLOCK = 0x200, 0x400, 0x800

    def __init__(self, path: str, pidfd: int = -1) -> None:
        self.path = path
        self.fd = pidfd
        self.of_process = pidfd >= 0  # fd is the pidfd of the namespace's process
        self.exited = False
        if path.startswith("/proc/"):
            return  # a process's namespace: its pidfd or nothing
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(self.IN_NONBLOCK | os.O_CLOEXEC)
        if fd >= 0:
            d = os.path.dirname(path) or "."
            if libc.inotify_add_watch(fd, d.encode(), self.IN_DELETE | self.IN_DELETE_SELF) < 0:
                os.close(fd)
                fd = -1
        self.fd = fd

    def fired(self) -> None:
        """The loop saw fd readable: for a pidfd, its process has exited."""
        if self.of_process:
            self.exited = True

    def gone(self) -> bool:
        """Whether the namespace file has disappeared, or its process ended."""
        if self.path.startswith("/proc/"):
            return self.exited
        if self.fd >= 0:
            try:
                os.read(self.fd, 4096)
            except OSError:
                pass
        return not os.path.exists(self.path)
