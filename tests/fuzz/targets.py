# SPDX-License-Identifier: GPL-2.0-or-later
"""The fuzz targets: one function per guest- or client-reachable entry point.

Each target takes the fuzzer's bytes and returns normally, or raises: an
exception out of the code under test, or ``Finding`` when an output breaks
its contract (a frame toward the guest with a bad length or checksum, a
parser result pointing outside its frame, a command-line error that is not
one line). ``TARGETS`` maps names to functions; ``run_target`` (atheris),
``scripts/fuzz_long.py`` and ``tests/fuzz/test_fuzz_ci.py`` use it.

Targets: worker (``Worker.on_frame`` and the loop around it, worker_harness),
packet, tcp, udp, icmp, arp, ndp, dhcp, dhcpv6, dnsname (the proto/
parsers alone), stream (the passt stream framing of worker/stream.py),
qrap (its handshake with a passt, and its argv), cli and ports (the
command line and the port-spec grammar).
"""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
from collections.abc import Callable
from contextlib import redirect_stderr
from ipaddress import IPv4Address, IPv6Address

from passt_sep import qrap
from passt_sep.cli import parse_args, usage, version_text
from passt_sep.errors import UsageError
from passt_sep.main import error_line
from passt_sep.ports import PortFwd, parse_port_spec
from passt_sep.proto import arp, dhcp, dhcpv6, icmp, ndp
from passt_sep.proto import tcp as ptcp
from passt_sep.proto import udp as pudp
from passt_sep.proto.dnsname import decode_names, encode_names
from passt_sep.proto.packet import Packet, parse_frame
from passt_sep.worker import dhcp as wdhcp
from passt_sep.worker import stream as wstream

from . import frames as F
from .worker_harness import GUEST_MAC, GW4, GW6, LL6, OUR_MAC, run_input

ADDR4 = bytes([192, 0, 2, 10])
ADDR6 = bytes.fromhex("20010db8000000000000000000000010")


def quiet_log() -> Callable[[], None]:
    """Log everything (so that building every message is fuzzed too) to nowhere; returns the undo."""
    from passt_sep.log import TRACE, log

    saved = (log.level, log.stderr_fd, log.file_fd, log.chan_fd)

    def restore() -> None:
        log.level, log.stderr_fd, log.file_fd, log.chan_fd = saved

    log.level, log.stderr_fd, log.file_fd, log.chan_fd = TRACE, None, None, None
    return restore


class Finding(AssertionError):
    """An output that breaks its contract."""


def _check(ok: bool, why: str) -> None:
    if not ok:
        raise Finding(why)


def _frame_around(data: bytes) -> bytes:
    """data[1:] as the L4 bytes of an IPv4 (data[0] even) or IPv6 frame; data[0] picks the protocol."""
    if not data:
        return b""
    k, l4 = data[0], data[1:]
    proto = [F.TCP, F.UDP, F.ICMP, F.ICMPV6][k >> 1 & 3]
    if k & 1:
        return F.frame(6, GUEST_MAC, OUR_MAC, ADDR6, GW6.packed if k & 8 else LL6.packed, proto, l4,
                       hlim=255 if k & 16 else 64)
    return F.frame(4, GUEST_MAC, OUR_MAC, ADDR4, GW4.packed, proto, l4)


def _parsed(data: bytes) -> Packet | None:
    """A frame from the input: whole (data[0] bit 7) or built around it."""
    f = data[1:] if data[:1] and data[0] & 0x80 else _frame_around(data)
    p = parse_frame(memoryview(bytearray(f)))
    return p if isinstance(p, Packet) else None


# -- proto/ ------------------------------------------------------------------------

def t_packet(data: bytes) -> None:
    p = parse_frame(memoryview(bytearray(data)))
    if isinstance(p, str):
        return
    n = len(data)
    _check(p.l3 == 14, "l3 offset")
    if p.version:
        _check(p.version in (4, 6) and len(p.src) == len(p.dst) == (4 if p.version == 4 else 16), "addresses")
        _check(p.l4 >= 34 and p.l4len >= 0 and p.l4 + p.l4len <= n, f"l4 {p.l4}+{p.l4len} in {n}")
        _check(len(p.l4bytes()) == p.l4len, "l4bytes")


def t_tcp(data: bytes) -> None:
    p = _parsed(data)
    if p is None or not p.version:
        return
    seg = ptcp.parse_segment(p)
    if isinstance(seg, str):
        return
    _check(20 <= seg.hlen and seg.off == p.l4 + seg.hlen and seg.dlen >= 0, "segment header")
    _check(seg.off + seg.dlen == p.l4 + p.l4len <= len(p.frame), "segment payload bounds")
    mss, ws = ptcp.parse_options(p.frame, p.l4 + ptcp.TCP_HLEN, seg.off)
    _check(mss is None or 0 <= mss <= 0xFFFF, f"mss {mss}")
    _check(ws is None or 0 <= ws <= 14, f"window scale {ws}")
    ptcp.rst_for(seg)
    # a RST toward the guest from the template, as the worker builds it
    t = ptcp.Template(p.version, GUEST_MAC, OUR_MAC, bytes(p.dst), bytes(p.src), seg.dport, seg.sport)
    buf = bytearray(ptcp.VNET_HDR_LEN + 14 + 60 + 60)
    seq, ack, flags = ptcp.rst_for(seg)
    n = t.fill(buf, seq, ack, flags, 0, 0, b"")
    F.check_to_guest(buf[:n], True, OUR_MAC)


def t_udp(data: bytes) -> None:
    p = _parsed(data)
    if p is None or not p.version:
        return
    d = pudp.parse_datagram(p)
    if not isinstance(d, str):
        _check(d.off == p.l4 + 8 and d.dlen >= 0 and d.off + d.dlen <= p.l4 + p.l4len, "datagram bounds")
    u = wdhcp.udp_payload(p)
    if not isinstance(u, str):
        _check(len(u[1]) <= p.l4len - 8, "udp payload bounds")


def t_icmp(data: bytes) -> None:
    p = _parsed(data)
    if p is not None and p.version:
        e = icmp.parse_echo(p)
        if isinstance(e, icmp.Echo):
            _check(len(e.data) == p.l4len - 8, "echo data")
            for v in (4, 6):
                icmp.echo_request_payload(v, e)
            f = icmp.echo_reply_frame(p.version, GUEST_MAC, OUR_MAC, bytes(p.dst), bytes(p.src), e)
            F.check_to_guest(f, False, OUR_MAC)
    for v in (4, 6):
        icmp.parse_reply(v, data)  # what a ping socket hands back


def t_arp(data: bytes) -> None:
    f = F.arp_request(GUEST_MAC, ADDR4, GW4.packed)[:14] + data
    p = parse_frame(memoryview(bytearray(f)))
    if isinstance(p, str):
        return
    for guest in (ADDR4, None):
        r = arp.arp_reply(p, OUR_MAC, guest)
        if isinstance(r, bytes):
            F.check_to_guest(r, False, OUR_MAC)


_RA = [ndp.RaParams(our_mac=OUR_MAC, our_ll=LL6.packed, prefix=ADDR6, mtu=65520,
                    dns=(GW6.packed,), search=encode_names(["example.org", "a.b"])),
       ndp.RaParams(our_mac=OUR_MAC, our_ll=LL6.packed, prefix=ADDR6, mtu=0, managed=False)]


def t_ndp(data: bytes) -> None:
    if data[:1] and not data[0] & 0x80:
        data = bytes([data[0] | 0x19]) + data[1:]  # ICMPv6 over IPv6, hop limit 255
    p = _parsed(data)
    if p is None or p.version != 6 or p.proto != F.ICMPV6:
        return
    k = data[0] if data else 0
    r = ndp.handle(p, _RA[k >> 5 & 1], ADDR6 if k & 0x40 else None, bool(k & 0x20))
    if isinstance(r, bytes):
        F.check_to_guest(r, False, OUR_MAC)


_DHCP = [dhcp.DhcpParams(our_mac=OUR_MAC, addr=IPv4Address("192.0.2.10"), prefix_len=24,
                         gateway=IPv4Address("192.0.2.1"), dns=(IPv4Address("192.0.2.53"),),
                         search=("example.com", "a.example.com"), mtu=1500),
         dhcp.DhcpParams(our_mac=OUR_MAC, addr=IPv4Address("192.0.2.10"), prefix_len=32,
                         gateway=IPv4Address("198.51.100.1"))]


def t_dhcp(data: bytes) -> None:
    if not data:
        return
    req = dhcp.parse_request(data[1:])
    if req is None:
        return
    params = _DHCP[data[0] & 1]
    out = dhcp.build_reply(req, params)
    if out is None:
        return
    reply, _broadcast = out
    _check(len(reply) >= 240 and reply[0] == 2 and reply[236:240] == b"\x63\x82\x53\x63", "bootp reply")
    _check(len(reply) <= 65535 - 28, "reply size")
    dst = dhcp.unicast_destination(req, params)
    F.check_to_guest(wdhcp.udp4_frame(GUEST_MAC, OUR_MAC, params.gateway.packed, dst.packed, 67, 68, reply),
                     False, OUR_MAC)


_DHCPV6 = dhcpv6.Dhcpv6Params(our_mac=OUR_MAC, addr=IPv6Address("2001:db8::10"),
                              dns=(IPv6Address("2001:db8::53"),), search=("example.com",))


def t_dhcpv6(data: bytes) -> None:
    if not data:
        return
    msg = dhcpv6.parse_message(data[1:])
    if msg is None:
        return
    reply = dhcpv6.build_reply(msg, _DHCPV6)
    if reply is None:
        return
    _check(len(reply) >= 4, "dhcpv6 reply")
    F.check_to_guest(wdhcp.udp6_frame(GUEST_MAC, OUR_MAC, LL6.packed, bytes.fromhex("fe80" + "00" * 13 + "01"),
                                      547, 546, reply), False, OUR_MAC)


def t_dnsname(data: bytes) -> None:
    if not data:
        return
    names = decode_names(data[1:], allow_compression=bool(data[0] & 1))
    if names is None:
        return
    for n in names:
        _check(len(n) <= 255, "name length")


# -- worker/stream.py ----------------------------------------------------------------

class _StreamRig:
    """A StreamTap on one end of a socketpair, made once per process; attach() per input."""

    def __init__(self) -> None:
        self.ctl, self.ctl_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.tap = wstream.StreamTap(os.dup(self.ctl.fileno()), None)


_rig: _StreamRig | None = None


def _model(stream: bytes) -> tuple[list[bytes], bool]:
    """What the framing must deliver: frames of 14..65535 bytes; a length
    over 16 MiB closes the connection (True); shorter bad lengths skip."""
    out, pos = [], 0
    while len(stream) - pos >= 4:
        (n,) = struct.unpack_from("!I", stream, pos)
        if n > wstream.SKIP_MAX:
            return out, True
        if len(stream) - pos - 4 < n:
            break
        if wstream.ETH_HLEN <= n <= wstream.MAX_FRAME:
            out.append(stream[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out, False


def t_stream(data: bytes) -> None:
    global _rig
    if not data:
        return
    if _rig is None:
        _rig = _StreamRig()
    tap = _rig.tap
    k, stream = data[0], data[1:]
    # long skips are cheap to write as zeros: a declared length past the
    # data is padded (bit 2), so oversized frames are crossed for real
    if k & 4 and len(stream) >= 4:
        (n,) = struct.unpack_from("!I", stream, 0)
        if wstream.MAX_FRAME < n <= 4 * wstream.MAX_FRAME:
            stream = stream[:4] + bytes(n) + stream[4:]
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    got: list[bytes] = []
    try:
        tap.attach(ours.detach())
        chunk = [1, 3, 7, 64, 1500, 65536, 300000, 1 << 30][k & 7] if k & 0x80 == 0 else 1 + (k & 0x7F)
        peer.setblocking(False)
        for i in range(0, len(stream), chunk):
            if tap.client < 0:  # closed (a corrupt length): the rest is not read
                break
            peer.sendall(stream[i : i + chunk])
            for _ in range(64):
                tap.readable(lambda f: got.append(bytes(f)), 1)
                if tap.client < 0 or not _pending(peer):
                    break
        for _ in range(8):
            if tap.client < 0:
                break
            tap.readable(lambda f: got.append(bytes(f)), 1)
        want, closed = _model(stream)
        _check(got == want[: len(got)] and (closed or len(got) == len(want)),
               f"frames delivered {len(got)}, expected {len(want)}")
        _check((tap.client < 0) == closed, f"closed {tap.client < 0}, expected {closed}")
        if tap.client >= 0 and got:  # the way back: each frame echoed, length prefixed
            for f in got[:4]:
                tap.write(f)
            raw = b""
            peer.setblocking(True)
            peer.settimeout(1)
            want_back = b"".join(struct.pack("!I", len(f)) + f for f in got[:4])
            while len(raw) < len(want_back):
                tap.readable(lambda f: None, 4)
                raw += peer.recv(1 << 20)
            _check(raw == want_back, "frames written back")
    finally:
        if tap.client >= 0:
            tap._close(notify=False)
        peer.close()
        try:
            while True:
                _rig.ctl_peer.recv(16, socket.MSG_DONTWAIT)
        except OSError:
            pass


def _pending(s: socket.socket) -> bool:
    """Whether bytes we sent are still unread (SIOCOUTQ on a unix stream socket)."""
    import fcntl
    import termios

    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0] > 0


# -- qrap ------------------------------------------------------------------------------

_qrap_dir: str | None = None


def t_qrap(data: bytes) -> None:
    """data[0] 0-3: the handshake against a fake passt that answers data[1:]
    and closes (or closes at once, or accepts nothing); 4+: main() with
    argv from data[1:] split at NUL, no socket reached, exec refused."""
    global _qrap_dir
    if not data:
        return
    if data[0] % 8 >= 4:
        return _qrap_main(data[1:])
    if _qrap_dir is None:
        import tempfile

        _qrap_dir = tempfile.mkdtemp(prefix="qrapfuzz")
    path = os.path.join(_qrap_dir, "s")
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    how = data[0] % 4

    def serve() -> None:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c:
            if how != 1:
                c.recv(4096)
                c.sendall(data[1:])
            if how == 3:
                c.shutdown(socket.SHUT_WR)
                c.settimeout(0.5)
                try:
                    c.recv(1)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        s = qrap.connect(path, timeout=0.2)
        _check(s is None or isinstance(s, socket.socket), "connect result")
        if s is not None:
            s.close()
    finally:
        srv.close()
        t.join(2)


def _qrap_main(raw: bytes) -> None:
    argv = [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")][:8]
    real_connect, real_exec = qrap.connect, os.execvp

    def no_exec(*_a: object) -> None:
        raise Finding("qrap reached exec without a passt")

    err = io.StringIO()
    qrap.connect = lambda p, timeout=0.0: None  # type: ignore[assignment]
    os.execvp = no_exec  # type: ignore[assignment]
    try:
        with redirect_stderr(err):
            rc = qrap.main(argv)
    finally:
        qrap.connect, os.execvp = real_connect, real_exec  # type: ignore[method-assign]
    _check(rc == 1, f"qrap exit {rc}")
    _one_line(err.getvalue(), "qrap")


# -- the command line ----------------------------------------------------------------

def _one_line(text: str, who: str) -> None:
    lines = text.rstrip("\n").split("\n") if text else []
    _check(bool(text) and text.endswith("\n"), f"{who}: no message: {text!r}")
    if not text.startswith("Usage:"):
        _check(len(lines) == 1, f"{who}: not one line: {text!r}")


def t_cli(data: bytes) -> None:
    """argv from data split at NUL: exit 0 (help, version, a run) or 1 with one line."""
    if not data:
        return
    mode = "pasta" if data[0] & 1 else "passt"
    argv = [a.decode("utf-8", "surrogateescape") for a in data[1:].split(b"\0")] if len(data) > 1 else []
    err = io.StringIO()
    try:
        with redirect_stderr(err):
            try:
                o = parse_args(mode, argv)
            except UsageError as e:
                msg = error_line(mode, e)  # as passt_sep.main.run prints it
                _one_line(msg, "cli")
                _check("Traceback" not in msg, "traceback in message")
                return
    except SystemExit as e:
        _check(e.code in (0, 1, None), f"exit {e.code!r}")
        if e.code == 1:
            _one_line(err.getvalue(), "cli")
        return
    if o.action == "help":
        usage(mode)
    elif o.action == "version":
        version_text(mode)


_PORT_OPTS = ["-t", "-u", "-T", "-U"]


def t_ports(data: bytes) -> None:
    if not data:
        return
    k = data[0]
    specs = data[1:].split(b"\0")[:4]
    fwd = PortFwd()
    opt = _PORT_OPTS[k & 3]
    for raw in specs:
        spec = raw.decode("utf-8", "surrogateescape")
        try:
            fwd = parse_port_spec(opt, spec, fwd, allow_auto=bool(k & 4), allow_all=bool(k & 8),
                                  allow_prefix=bool(k & 16))
        except UsageError as e:
            _one_line(error_line("pasta", e), "ports")
            return
    for r in fwd.ranges:
        # port 0 parses, as in C passt (its parse_port_range takes it too)
        _check(0 <= r.first <= r.last <= 65535 and 0 <= r.target <= r.target + r.last - r.first <= 65535,
               f"range {r}")


def t_worker(data: bytes) -> None:
    run_input(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "worker": t_worker, "packet": t_packet, "tcp": t_tcp, "udp": t_udp, "icmp": t_icmp, "arp": t_arp,
    "ndp": t_ndp, "dhcp": t_dhcp, "dhcpv6": t_dhcpv6, "dnsname": t_dnsname, "stream": t_stream,
    "qrap": t_qrap, "cli": t_cli, "ports": t_ports,
}
