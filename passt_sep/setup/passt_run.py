# SPDX-License-Identifier: GPL-2.0-or-later
"""One run of passt (qemu over a UNIX stream socket): set-up and supervision.

Parent only. passt creates no namespace and no tap: the guest is whatever
connects to the UNIX socket. Order of a run:

1. fork the worker first (``Parent.run``); here its child side first drops
   to the target user (below), then isolates itself as in pasta mode;
2. read host addressing, build the Config, print the summary;
3. listen on the socket (``setup.passt_socket``; usually it listens
   since the first stage, ``passt_sep.early``, before any of this was
   loaded; or take the -F fd), bind the -t listeners;
4. send the worker its start message: the Config and, instead of a tap,
   one end of a private control socketpair (``worker.stream``); then the
   listeners, one per message, as in pasta mode; wait until it is ready;
5. write the PID file, drop to the target user, print the qemu hint, and
   tell the launcher we are ready (it exits 0; libvirt then reads the PID
   file and starts qemu, which connects at once);
6. supervise: accept a client and hand it to the worker over the control
   socket (the parent keeps the listening socket; the worker never holds it
   and cannot accept on it); close any further client at once while one is
   connected; when the worker reports the client gone, exit 0 with
   --one-off (or -F), else wait for the next client. SIGTERM exits 0; a
   dead worker exits 1 with the reason.

Dropping privileges. As root in the initial user namespace, passt runs as
``nobody`` unless --runas says otherwise; so do we, in both processes. The
parent drops (setgroups([]), setgid, setuid) after everything that may need
root is done: the socket is bound, the PID file written, low ports bound.
What the broker does afterwards needs no privilege: ping sockets (allowed
by net.ipv4.ping_group_range, as for passt), outbound TCP sockets,
SO_BINDTODEVICE (unprivileged since Linux 5.7). The worker drops before it
isolates itself, so the uid it is mapped to outside its user namespace is
the target user's, never root's.
"""

from __future__ import annotations

import _pickle as pickle  # (_pickle, not pickle: the same functions without pickle.py and the re it imports, 2-3 ms of start-up)
import os
import socket
import struct
from collections.abc import Callable

from sandbox.fdpass import send_fds

from .. import ipc
from ..errors import SetupError
from ..log import log
from ..worker.stream import CLIENT, GONE
from . import passt_socket
from .parent import Parent, _open_pcap, _write_pid, import_the_rest
from .privs import drop_to


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", raw)[0] or None
    except OSError:
        return None


class PasstParent(Parent):
    """One run of passt."""

    def __init__(self, opts, prog, ready_fd=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(opts, prog, ready_fd)
        self.listener: socket.socket | None = None
        self.path = ""
        self.ctl: socket.socket | None = None
        self.client_on = False
        self.one_off = False  # --one-off, or -F: the run ends with the first client

    def _run(self, level: int, stderr_fd: int | None, log_fd: int | None) -> int:
        o = self.opts
        cfg = self.configure()
        first: socket.socket | None = None
        if o.fd is not None:
            first = passt_socket.inherited(o.fd)
        else:
            # (the first stage's socket is recorded by main; one bound here is
            # recorded in the same step as its bind, passt_socket._bind_recorded)
            self.listener, self.path = passt_socket.listen(o.socket_path, self.early_fd,
                                                           self.early_probed, self.record_file)
            self.early_fd = None
        listeners, udp_listeners = self.bind_host_ports(cfg)
        self.bind_api(cfg)
        pcap_fd = _open_pcap(o.pcap)
        pid_fd = self.open_pid_file()

        self.ctl, wctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [wctl.fileno()] + ([pcap_fd] if pcap_fd is not None else [])
        start = {"cfg": cfg, "guest_mac": None, "level": level, "pcap": pcap_fd is not None,
                 "stream": True}
        try:
            send_fds(self.sock, pickle.dumps(start), fds)
            for lsock, port, target in listeners:
                send_fds(self.sock, ipc.pack_listener(port, target), [lsock.fileno()])
                lsock.close()
            for usock, port, target in udp_listeners:
                send_fds(self.sock, ipc.pack_udp_listener(port, target), [usock.fileno()])
                usock.close()
        except OSError as e:
            raise SetupError("start worker", self._worker_death() or e) from None
        wctl.close()
        if pcap_fd is not None:
            os.close(pcap_fd)
        self._wait_ready()
        self.ctl.setblocking(False)

        self.start_broker(cfg)
        _write_pid(pid_fd, o.pid_file, os.getpid())
        import_the_rest(o.mode)
        drop_to(self.ids)
        self.keep_needed_caps()
        if first is not None:
            self._hand_over(first)
        else:
            for line in passt_socket.qemu_hint(self.path).split("\n"):
                log.info(line)
        self.release_launcher()
        self.one_off = o.one_off or first is not None
        self.setup_files.clear()
        return self.supervise()

    def _hand_over(self, conn: socket.socket) -> None:
        """Give the connected client to the worker; we keep no copy."""
        assert self.ctl is not None
        try:
            send_fds(self.ctl, CLIENT, [conn.fileno()])
            self.client_on = True
        except OSError as e:
            log.err(f"handing the client to the worker: {e.strerror}")
        finally:
            conn.close()

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(16):
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warn(f"accept: {e.strerror}")
                return
            pid = _peer_pid(conn)
            who = f" from PID {pid}" if pid else ""
            if self.client_on:
                log.info(f"another client connected{who}, closing it: one client at a time")
                conn.close()
                continue
            log.info(f"accepted connection{who}")
            self._hand_over(conn)

    # -- what passt adds to the supervision loop (Parent.supervise) ----------
    def watch_mode(self, watch: Callable[[int, Callable[[int], int | None]], None],
                   unwatch: Callable[[int], None]) -> None:
        """passt: the worker's control messages (client gone) and the socket qemu connects to."""
        assert self.ctl is not None
        ctl = self.ctl
        watch(ctl.fileno(), lambda _ev: self._ctl_message(unwatch))
        if self.listener is not None:
            def accept(_ev: int) -> None:
                self._accept()

            watch(self.listener.fileno(), accept)

    def _ctl_message(self, unwatch: Callable[[int], None]) -> int | None:
        """The worker says the client is gone: exit 0 with --one-off (or -F), else wait for the next."""
        assert self.ctl is not None
        try:
            data = self.ctl.recv(16)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if data == GONE:
            self.client_on = False
            if self.one_off:
                log.info("Client closed connection, exiting")
                return 0
            log.info("Client connection closed")
        elif not data:
            unwatch(self.ctl.fileno())
        return None

    def poll_timeout(self) -> float:
        return 1.0

    def tick(self, now: float, quiet: bool) -> int | None:
        return None

    def end_mode(self) -> None:
        pass
