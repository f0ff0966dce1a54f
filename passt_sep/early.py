# SPDX-License-Identifier: GPL-2.0-or-later
"""The first stage of a run: ready for the client before anything heavy loads.

A client may look the moment passt or pasta was exec'd: Debian's libvirt
9.0 starts qemu right after passt and qemu connects once, without
retrying; a program that starts ``pasta --netns PATH`` may look for the
tap in PATH at once. So, before the option table, the Config, the worker
or any other module of ours is imported, this module:

1. tells the mode from argv (``mode_of``: pasta, passt, ``passt-sep MODE``);
2. walks argv as cli does (``walk``), just far enough, and gives up,
   leaving everything to the full parse, at anything it does not know for
   sure (an unknown, ambiguous or other mode's option, ``-h``,
   ``--version``, a missing value);
3. passt: finds ``-s/--socket`` (or that there is none: the first free
   ``/tmp/passt_N.socket``; ``-F`` or ``-s`` twice: give up) and binds and
   listens on that path with passt_socket's rules (a path something
   accepts on is in use; a stale socket file is replaced; anything that is
   not a socket is left alone), using ``_socket`` and ``os`` only
   (``socket`` would load ``enum``);
4. pasta attaching to an existing namespace (``--netns PATH``, or a PID,
   with or without ``--userns``/``--netns-only``: ``tap_target``): makes
   the tap in that namespace (``early_tap``) with the name the full run
   will choose: ``-I``, else the host's template interface, read from
   /proc/net (``template_ifname``; any option that steers the template,
   ``-i -o --outbound-if4/6 -4 -6 -a -g``, without ``-I``: give up), with
   the one recipe setup/tap.py uses too (``make_tap``: flags, virtio-net
   header, offloads with the USO probe). Only a short-lived thread enters
   the namespace (setns through ``_ctypes``: ``ctypes`` costs 5 ms); the
   process stays in its own namespaces throughout. Where the full run
   would join a user namespace first (``--userns`` or a PID's, without
   CAP_SYS_ADMIN; one way, and only for a single-threaded process), a
   forked child joins it and the network namespace, makes the tap and
   passes the fd back (``tap_via_child``); the full run still joins at its
   own time. The spawned-command form (``pasta [options] [COMMAND]``) gets no early tap:
   pasta makes that namespace itself and the command runs only once the
   tap is configured, so nothing can look too early.

The full parse then checks the result: for passt (``Early.take``) the
same path, no -F, no error, and the listening socket goes to the passt
parent (setup/passt_socket.listen), otherwise the socket is closed and its
file removed; connections made meanwhile wait in the backlog until the
parent accepts, after set-up. For pasta (``EarlyTap.take``, from
setup/tap.create_and_configure) the same namespace (the nsfs inode of the
one the full run opened) and the same name, and the run goes on with that
fd (--config-net and the rest as before), otherwise the fd is closed and
the tap vanishes with it. Whatever fails in the first stage is never fatal
and never printed: the full run does it again and reports.

``boot`` is what the launcher scripts run (``passt_sep.launcher``):
started with ``python -I -S`` (no site: 10-17 ms less; the launcher puts
site-packages on sys.path itself), it runs the first stage and then the
rest. The pip console scripts (``passt_sep.main:main``) run the same first
stage, after the interpreter's ``site`` and pip's own imports.

Everything here imports only builtin modules (and, for pasta's tap,
``_ctypes``, ``fcntl`` and ``_thread``); the option names below are
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


SHORT_NAMES = {
    "d": "debug", "q": "quiet", "f": "foreground", "e": "stderr", "l": "log-file", "h": "help",
    "p": "pcap", "P": "pid", "m": "mtu", "a": "address", "n": "netmask", "M": "mac-addr",
    "g": "gateway", "i": "interface", "o": "outbound", "D": "dns", "S": "search", "4": "ipv4-only",
    "6": "ipv6-only", "H": "hostname", "s": "socket", "F": "fd", "1": "one-off", "t": "tcp-ports",
    "u": "udp-ports", "I": "ns-ifname", "T": "tcp-ns", "U": "udp-ns"}

# pasta-mode options (cli.OPTIONS)
PASTA_LONG_ARG = frozenset((
    "address", "api-socket", "dns", "dns-forward", "dns-host", "egress-allow", "egress-deny", "fqdn",
    "gateway", "hostname", "interface", "log-file", "log-size", "mac-addr", "map-guest-addr",
    "map-host-loopback", "mtu", "netmask", "netns", "ns-ifname", "ns-mac-addr", "outbound",
    "outbound-if4", "outbound-if6", "pcap", "pcap-size", "pid", "runas", "search", "tcp-ns",
    "tcp-ports", "udp-ns", "udp-ports", "userns"))
PASTA_LONG_FLAG = frozenset((
    "config-net", "debug", "dhcp-dns", "dhcp-search", "foreground", "freebind", "help",
    "host-lo-to-ns-lo", "ipv4-only", "ipv6-only", "netns-only", "no-copy-addrs", "no-copy-routes",
    "no-dhcp", "no-dhcpv6", "no-icmp", "no-map-gw", "no-ndp", "no-netns-quit", "no-ra", "no-tcp",
    "no-udp", "quiet", "stderr", "trace", "version"))
PASTA_SHORT_ARG = frozenset("DHIMPSTUagilmnoptu")
PASTA_SHORT_FLAG = frozenset("46defhq")
ALL_LONG = LONG_ARG | LONG_FLAG | PASTA_LONG_ARG | PASTA_LONG_FLAG  # getopt_long's prefixes: all of them
# without -I, these change which host interface is the template, whose name the tap takes
NAMING = frozenset(("interface", "outbound-if4", "outbound-if6", "ipv4-only", "ipv6-only",
                    "address", "gateway"))


def walk(args: list[str], long_arg: frozenset[str], long_flag: frozenset[str],
         short_arg: frozenset[str], short_flag: frozenset[str],
         give_up: frozenset[str]) -> tuple[list[tuple[str, str | None]], list[str]] | None:
    """Walk args as cli._split_argv does: ((long name, value) in order, the
    arguments after the options), or None at anything this walk cannot be
    sure of (an unknown, ambiguous or other mode's option, a missing value,
    an option in give_up); the full parse then does it all and reports."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out, args[i + 1:]
        if not a.startswith("-") or a == "-":
            return out, args[i:]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if name not in ALL_LONG:
                cands = [n for n in ALL_LONG if n.startswith(name)] if name else []
                if len(cands) != 1:
                    return None
                name = cands[0]
            if name in give_up or (name not in long_arg and name not in long_flag):
                return None
            if name in long_arg:
                if not eq:
                    i += 1
                    if i >= len(args):
                        return None
                    value = args[i]
                out.append((name, value))
            elif eq:
                return None
            else:
                out.append((name, None))
        else:
            j = 1
            while j < len(a):
                c = a[j]
                name = SHORT_NAMES.get(c, "")
                if name in give_up:
                    return None
                if c in short_arg:
                    value = a[j + 1:]
                    if not value:
                        i += 1
                        if i >= len(args):
                            return None
                        value = args[i]
                    out.append((name, value))
                    break
                if c not in short_flag:
                    return None
                out.append((name, None))
                j += 1
        i += 1
    return out, []


def socket_option(args: list[str]) -> tuple[bool, str | None]:
    """(sure, path): the -s/--socket value of passt's args, None for the default.

    ``sure`` is False when the walk met anything it cannot be sure of; the
    full parse then does it all (and reports errors)."""
    found = walk(args, LONG_ARG, LONG_FLAG, SHORT_ARG, SHORT_FLAG, GIVE_UP | {"fd"})
    if found is None:
        return False, None
    paths = [v for n, v in found[0] if n == "socket"]
    if len(paths) > 1 or paths == [""]:
        return False, None
    return True, (paths[0] if paths else None)


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


# -- pasta: the tap, made in the namespace pasta attaches to -------------------

TUNSETIFF = 0x400454CA
TUNSETVNETHDRSZ = 0x400454D8
TUNSETOFFLOAD = 0x400454D0
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
TUN_F_USO4, TUN_F_USO6 = 0x20, 0x40
VNET_HDR_LEN = 10
CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
CAP_SYS_ADMIN = 21
SIOCGIFADDR = 0x8915
RTF_UP, RTF_GATEWAY, RTF_REJECT = 0x0001, 0x0002, 0x0200
IFA_F_TENTATIVE = 0x40
IFNAMSIZ = 16
TAP_WAIT = 2.0  # seconds the first stage waits for its namespace thread (it takes well under 1 ms)


def make_tap(name: str) -> tuple[int, str, bool]:
    """Create (or attach to) the tap ``name`` in the calling thread's netns:
    (fd, the kernel's name for it, whether UDP segmentation offload took).

    The one recipe for the first stage and setup/tap.py: IFF_TAP | IFF_NO_PI
    | IFF_VNET_HDR, a 10-byte virtio-net header, checksum and TSO offloads,
    and USO where the kernel has it (Linux 6.2: TUNSETOFFLOAD with the USO
    bits is EINVAL before). The fd is O_NONBLOCK and O_CLOEXEC. OSError if
    anything fails, and then nothing is left open."""
    import fcntl

    raw = os.fsencode(name)
    if not 0 < len(raw) < IFNAMSIZ:
        raise OSError(22, f"invalid interface name {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
        ifr = fcntl.ioctl(fd, TUNSETIFF, raw.ljust(IFNAMSIZ, b"\0") + flags.to_bytes(2, sys.byteorder)
                          + bytes(22))
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, VNET_HDR_LEN.to_bytes(4, sys.byteorder))
        base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6)
            uso = True
        except OSError:  # EINVAL before 6.2: the namespace's kernel splits such runs itself
            fcntl.ioctl(fd, TUNSETOFFLOAD, base)
            uso = False
    except BaseException:
        os.close(fd)
        raise
    return fd, os.fsdecode(ifr[:IFNAMSIZ].split(b"\0", 1)[0]), uso


def tap_target(args: list[str]) -> tuple[str, str | None, bool, str | None] | None:
    """pasta's args, if they attach to an existing namespace: (netns path,
    user namespace path or None, --netns-only, the -I name or None for the
    template's); None for the spawned-command form and wherever unsure."""
    found = walk(args, PASTA_LONG_ARG, PASTA_LONG_FLAG, PASTA_SHORT_ARG, PASTA_SHORT_FLAG, GIVE_UP)
    if found is None:
        return None
    opts, rest = found
    names = {n for n, _ in opts}
    netns = userns = None
    for n, v in opts:  # the last one wins, as in cli
        if n == "netns":
            netns = v
        elif n == "userns":
            userns = v
    ifnames = [v or "" for n, v in opts if n == "ns-ifname"]
    netns_only = "netns-only" in names
    if len(ifnames) > 1 or (netns_only and userns is not None) or netns == "" or userns == "":
        return None
    if netns is not None:
        if rest:
            return None  # an error the full parse reports
        path = netns if "/" in netns else f"/run/netns/{netns}"
    elif len(rest) == 1 and rest[0].isascii() and rest[0].isdigit():
        pid = int(rest[0])
        path = f"/proc/{pid}/ns/net"
        userns = userns or f"/proc/{pid}/ns/user"
    else:
        return None  # a command: the full run makes its namespace, and the command waits for the tap
    if ifnames:
        name = ifnames[0]
        if not 0 < len(name) < IFNAMSIZ or "/" in name or "%" in name or name.strip() != name:
            return None
        return path, userns, netns_only, name
    if names & NAMING:
        return None
    return path, userns, netns_only, None


def _has_v4_addr(dev: str) -> bool:
    """Whether dev has an IPv4 address (SIOCGIFADDR; EADDRNOTAVAIL if none)."""
    import fcntl

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        fcntl.ioctl(s.fileno(), SIOCGIFADDR, os.fsencode(dev).ljust(40, b"\0"))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _read_lines(path: str) -> list[list[str]]:
    with open(path, "rb") as f:
        return [ln.split() for ln in f.read().decode("ascii", "replace").splitlines()]


def template_ifname() -> str | None:
    """The host's template interface, as setup/hostaddr and config choose it
    when no option steers them, from /proc; None unless sure.

    IPv4 first: the one default route of the main table (/proc/net/route),
    up, with a gateway, on an interface with an IPv4 address. Only if there
    is no IPv4 default route at all, IPv6's: the one default route that is
    not a reject route (/proc/net/ipv6_route), with a gateway, on an
    interface with a global address that is not tentative. Two default
    routes of a family, or one the full run would not take: not sure."""
    v4 = [w for w in _read_lines("/proc/net/route")[1:]
          if len(w) >= 8 and int(w[1], 16) == 0 and int(w[7], 16) == 0]
    if len(v4) > 1:
        return None
    if v4:
        dev, flags = v4[0][0], int(v4[0][3], 16)
        if dev == "*" or flags & (RTF_UP | RTF_GATEWAY | RTF_REJECT) != RTF_UP | RTF_GATEWAY:
            return None
        return dev if _has_v4_addr(dev) else None
    v6 = [w for w in _read_lines("/proc/net/ipv6_route")
          if len(w) >= 10 and w[0] == "0" * 32 and w[1] == "00" and not int(w[8], 16) & RTF_REJECT]
    if len(v6) != 1 or v6[0][3] != "00":
        return None
    dev, flags = v6[0][9], int(v6[0][8], 16)
    if flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY:
        return None
    for w in _read_lines("/proc/net/if_inet6"):
        if len(w) >= 6 and w[5] == dev and int(w[3], 16) == 0 and not int(w[4], 16) & IFA_F_TENTATIVE:
            return dev
    return None


def cap_sys_admin() -> bool:
    """Whether the effective capability set holds CAP_SYS_ADMIN (as setup/netns)."""
    with open("/proc/self/status", "rb") as f:
        for line in f.read().splitlines():
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return False


def _setns_fn():  # noqa: ANN202 - a ctypes function object
    """setns(2) from libc through _ctypes alone (Python 3.11 has no os.setns;
    ``ctypes`` itself costs about 5 ms to import, _ctypes about 0.5)."""
    import _ctypes

    class Int(_ctypes._SimpleCData):
        _type_ = "i"

    class Fn(_ctypes.CFuncPtr):
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = Int

    class Libc:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)

    fn = Fn(("setns", Libc()))
    fn.argtypes = (Int, Int)
    return fn


def tap_in_netns(nsfd: int, name: str) -> tuple[int, str, bool] | None:
    """make_tap(name) in a thread that entered the network namespace nsfd;
    None if that failed. The thread owns nsfd (closes it). Only that thread
    ever changes namespace: the process stays exactly where it was, and a
    namespace that our own user namespace does not own (podman's rootless
    set-up: pasta runs in podman's user namespace, in the host's network
    namespace) costs no way back."""
    import _thread

    setns = _setns_fn()
    done = _thread.allocate_lock()
    mutex = _thread.allocate_lock()
    done.acquire()
    box: list[tuple[int, str, bool]] = []
    abandoned = [False]

    def body() -> None:
        try:
            made = make_tap(name) if setns(nsfd, CLONE_NEWNET) == 0 else None
        except BaseException:  # noqa: BLE001 - never printed: the full run does it again
            made = None
        try:
            os.close(nsfd)
        except OSError:
            pass
        with mutex:
            if made is not None and abandoned[0]:
                os.close(made[0])
            elif made is not None:
                box.append(made)
        done.release()

    _thread.start_new_thread(body, ())
    if not done.acquire(timeout=TAP_WAIT):
        with mutex:
            abandoned[0] = True
            if box:
                os.close(box.pop()[0])
        return None
    return box[0] if box else None


def tap_via_child(userns: str, netns: str, name: str) -> tuple[int, str, bool, tuple[int, int]] | None:
    """make_tap(name) in a forked child that joins the user namespace userns,
    then the network namespace netns, as the full run does without
    CAP_SYS_ADMIN (setup/netns.join_userns: one way, so not in this
    process); the child passes the fd back (SCM_RIGHTS, received CLOEXEC)
    with the name, the USO flag and the namespace's (st_dev, st_ino), and
    exits. None if anything failed."""
    setns = _setns_fn()
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
    except OSError:
        a.close()
        b.close()
        raise
    if pid == 0:  # the child: never returns, never prints
        status = 1
        try:
            a.close()
            ufd = os.open(userns, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            if setns(ufd, CLONE_NEWUSER) == 0:
                nfd = os.open(netns, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
                if setns(nfd, CLONE_NEWNET) == 0:
                    fd, real, uso = make_tap(name)
                    st = os.fstat(nfd)
                    b.sendmsg([f"{real}\0{int(uso)}\0{st.st_dev}\0{st.st_ino}".encode()],
                              [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
                    status = 0
        except BaseException:  # noqa: BLE001, S110 - the full run does it again and reports
            pass
        os._exit(status)
    b.close()
    fd = -1
    answered = False
    try:
        a.settimeout(TAP_WAIT)
        msg, anc, _flags, _addr = a.recvmsg(256, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
        answered = True  # a reply, or EOF: the child is ending
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
                fd = int.from_bytes(data[:4], sys.byteorder)
        if fd < 0:
            return None
        real, uso, dev, ino = msg.decode().split("\0")
        made = fd, real, uso == "1", (int(dev), int(ino))
        fd = -1
        return made
    except (OSError, ValueError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
        a.close()
        try:  # our child, reaped here: the run never sees it
            if not answered:
                os.kill(pid, 9)
            os.waitpid(pid, 0)
        except OSError:
            pass


class EarlyTap:
    """pasta's tap, made since the first stage in the namespace pasta attaches to."""

    def __init__(self, fd: int, name: str, netns: tuple[int, int], uso: bool) -> None:
        self.fd: int | None = fd
        self.name = name
        self.netns = netns  # (st_dev, st_ino) of the namespace it is in
        self.uso = uso

    def take(self, netns_fd: int, name: str) -> int | None:
        """The tap fd, if it is the full run's: in the namespace netns_fd
        refers to, with the name the full run chose; None otherwise (and then
        ours is closed: the tap vanishes with its last fd)."""
        if self.fd is None:
            return None
        try:
            st = os.fstat(netns_fd)
        except OSError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == self.netns and name == self.name:
            fd, self.fd = self.fd, None
            return fd
        self.discard()
        return None

    def discard(self) -> None:
        """Close the fd (the run does not go on with it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def early_tap(args: list[str]) -> EarlyTap | None:
    """Stage 1 in pasta mode: the tap, if pasta attaches to an existing
    namespace (``--netns PATH`` or a PID) and the first stage is sure of
    the namespace and the name; None otherwise (the full run makes it).

    Where the full run joins a user namespace first (``--userns``, a PID's,
    without CAP_SYS_ADMIN), a forked child does it (``tap_via_child``): for
    this process joining would be one way, and too early."""
    target = tap_target(args)
    if target is None:
        return None
    netns_path, userns, netns_only, name = target
    if name is None:
        name = template_ifname()
        if name is None:
            return None
    if userns and not netns_only and not cap_sys_admin():
        if os.readlink(userns) != os.readlink("/proc/self/ns/user"):
            made4 = tap_via_child(userns, netns_path, name)
            if made4 is None:
                return None
            fd, real, uso, where = made4
            if real != name:
                os.close(fd)
                return None
            return EarlyTap(fd, name, where, uso)
    # O_NONBLOCK: a FIFO at the path must not hang us; O_NOCTTY: nor a tty become
    # our terminal (setns refuses either)
    nsfd = os.open(netns_path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(nsfd)
    except OSError:
        os.close(nsfd)
        raise
    made = tap_in_netns(nsfd, name)
    if made is None:
        return None
    fd, real, uso = made
    if real != name:
        os.close(fd)
        return None
    return EarlyTap(fd, name, (st.st_dev, st.st_ino), uso)


def listen(argv: list[str]) -> Early | EarlyTap | None:
    """Stage 1: passt's socket listening, or pasta's tap made in the namespace
    it attaches to; None where the full run does it."""
    found = mode_of(argv)
    if found is None:
        return None
    if found[0] == PASTA:
        return early_tap(found[1])
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
