# SPDX-License-Identifier: GPL-2.0-or-later
"""The first stage of a run: passt's socket listens before anything heavy loads.

A client may connect the moment passt was exec'd: Debian's libvirt 9.0
starts qemu right after passt and qemu connects once, without retrying.
So, before the option table, the Config, the worker or any other module
of ours is imported, this module:

1. tells the mode from argv (``mode_of``: pasta, passt, ``passt-sep MODE``);
2. in passt mode, walks argv just far enough to find ``-s/--socket`` (or
   that there is none: the first free ``/tmp/passt_N.socket``), and gives
   up, leaving everything to the full parse, at anything it does not know
   for sure (an unknown or ambiguous option, ``-F``, ``-h``, ``--version``,
   ``-s`` twice);
3. binds and listens on that path with passt_socket's rules (a path
   something accepts on is in use; a stale socket file is replaced;
   anything that is not a socket is left alone), using ``_socket`` and
   ``os`` only (``socket`` would load ``enum``).

The full parse then checks the result (``Early.take``): the same path, no
-F, no error, and the listening socket goes to the passt parent
(setup/passt_socket.listen); otherwise the socket is closed and its file
removed. Connections made meanwhile wait in the backlog until the parent
accepts, after set-up.

``boot`` is what the launcher scripts run (``passt_sep.launcher``):
started with ``python -I -S`` (no site: 10-17 ms less; the launcher puts
site-packages on sys.path itself), it listens first and then runs the
rest. The pip console scripts (``passt_sep.main:main``) run the same first
stage, after the interpreter's ``site`` and pip's own imports.

Everything here imports only builtin modules; the option names below are
checked against cli.OPTIONS by tests/unit/test_early.py.
"""

from __future__ import annotations

import _socket
import os
import sys

PASST, PASTA = "passt", "pasta"
SOCKET_DIR = "/tmp"
SOCKET_MAX = 99  # /tmp/passt_1.socket .. /tmp/passt_99.socket, as passt
BACKLOG = 4
S_IFMT, S_IFSOCK = 0o170000, 0o140000
ENOENT, ECONNREFUSED = 2, 111

# passt-mode options (cli.OPTIONS): long names with and without a value, short letters
LONG_ARG = frozenset((
    "log-file", "log-size", "runas", "pcap", "pcap-size", "pid", "mtu", "address", "netmask",
    "mac-addr", "gateway", "interface", "outbound", "outbound-if4", "outbound-if6", "dns", "search",
    "dns-forward", "map-host-loopback", "map-guest-addr", "socket", "fd", "tcp-ports", "udp-ports",
    "egress-deny", "egress-allow", "api-socket", "dns-host", "fqdn", "hostname"))
LONG_FLAG = frozenset((
    "debug", "trace", "quiet", "foreground", "stderr", "help", "version", "no-dhcp-dns",
    "no-dhcp-search", "ipv4-only", "ipv6-only", "no-tcp", "no-udp", "no-icmp", "no-dhcp", "no-ndp",
    "no-dhcpv6", "no-ra", "no-map-gw", "one-off", "freebind"))
SHORT_ARG = frozenset("lpPmanMgioDSsFtuH")
SHORT_FLAG = frozenset("dqfeh461")
GIVE_UP = frozenset(("fd", "help", "version"))  # the full parse handles these alone


def mode_of(argv: list[str]) -> tuple[str, list[str]] | None:
    """(mode, the arguments after the program name), or None if the name says neither."""
    name = os.path.basename(argv[0]) if argv else ""
    if "pasta" in name:
        return PASTA, argv[1:]
    if "passt" in name and "passt-sep" not in name:
        return PASST, argv[1:]
    if len(argv) > 1 and argv[1] in (PASST, PASTA):
        return argv[1], argv[2:]
    return None


def socket_option(args: list[str]) -> tuple[bool, str | None]:
    """(sure, path): the -s/--socket value of passt's args, None for the default.

    ``sure`` is False when the walk met anything it cannot be sure of; the
    full parse then does it all (and reports errors)."""
    path: str | None = None
    seen = 0
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--" or not a.startswith("-") or a == "-":
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name not in LONG_ARG and name not in LONG_FLAG:
                cands = [n for n in (*LONG_ARG, *LONG_FLAG) if n.startswith(name)] if name else []
                if len(cands) != 1:
                    return False, None
                name = cands[0]
            if name in GIVE_UP:
                return False, None
            if name in LONG_ARG:
                if not eq:
                    i += 1
                    if i >= len(args):
                        return False, None
                    value = args[i]
                if name == "socket":
                    path, seen = value, seen + 1
            elif eq:
                return False, None
        else:
            j = 1
            while j < len(a):
                c = a[j]
                if c in "Fh":
                    return False, None
                if c in SHORT_ARG:
                    value = a[j + 1:]
                    if not value:
                        i += 1
                        if i >= len(args):
                            return False, None
                        value = args[i]
                    if c == "s":
                        path, seen = value, seen + 1
                    break
                if c not in SHORT_FLAG:
                    return False, None
                j += 1
        i += 1
    if seen > 1 or path == "":
        return False, None
    return True, path


def default_path(n: int) -> str:
    """The n-th default socket path."""
    return f"{SOCKET_DIR}/passt_{n}.socket"


def in_use(path: str) -> bool:
    """Whether a process accepts connections on path (a connect succeeds).

    The one rule for the first stage and setup/passt_socket.py."""
    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
        return True
    except OSError as e:
        # ENOENT: nothing there; ECONNREFUSED: a stale socket file. A full
        # backlog (EAGAIN) or a path we may not use counts as taken.
        return e.errno not in (ENOENT, ECONNREFUSED)
    finally:
        probe.close()


def _bind(path: str) -> _socket.socket | None:
    """Replace a stale socket file, bind and listen; None if path is not ours to take."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    else:
        if st.st_mode & S_IFMT != S_IFSOCK:
            return None  # the full run reports it
        try:
            os.unlink(path)
        except OSError:
            return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        s.bind(path)
        s.listen(BACKLOG)
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s


class Early:
    """A socket that listens since the first stage, and how it came to be."""

    def __init__(self, sock: _socket.socket, path: str, explicit: bool, probed: list[str]) -> None:
        self.sock: _socket.socket | None = sock
        self.path = path
        self.explicit = explicit  # -s given (else the first free default path)
        self.probed = probed  # default paths looked at, for the log ("Probing path ...")

    def take(self, socket_path: str | None) -> int | None:
        """The listening fd, if the full parse wants what we made; None otherwise
        (and then nothing of ours is left: the socket closed, its file gone)."""
        if self.sock is None:
            return None
        if (socket_path == self.path) if self.explicit else socket_path is None:
            fd = self.sock.detach()
            self.sock = None
            return fd
        self.discard()
        return None

    def discard(self) -> None:
        """Close the socket and remove its file (the run does not go on with it)."""
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        try:
            os.unlink(self.path)
        except OSError:
            pass


def listen(argv: list[str]) -> Early | None:
    """Stage 1: in passt mode, the socket listening; None where the full run does it."""
    found = mode_of(argv)
    if found is None or found[0] != PASST:
        return None
    sure, path = socket_option(found[1])
    if not sure:
        return None
    if path is not None:
        if in_use(path):
            return None  # the full run says "in use"
        s = _bind(path)
        return Early(s, path, True, []) if s is not None else None
    probed = []
    for n in range(1, SOCKET_MAX + 1):
        p = default_path(n)
        probed.append(p)
        if in_use(p):
            continue
        s = _bind(p)
        if s is not None:
            return Early(s, p, False, probed)
    return None


def boot(site_done: bool = False) -> None:
    """The launcher's entry (python -I -S): listen, then the whole program.

    ``site_done``: the launcher put site-packages on sys.path itself
    (passt_sep/launcher.py), so ``site`` never runs; False (launchers
    written before that): ``site.main()`` after the first stage."""
    argv = list(sys.argv)
    try:
        early = listen(argv)
    except Exception:  # noqa: BLE001 - never fatal: the full run does it again and reports
        early = None
    if sys.flags.no_site and not site_done:
        import site

        site.main()
    from .main import main

    main(argv, early)
