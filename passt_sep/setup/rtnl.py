# SPDX-License-Identifier: GPL-2.0-or-later
"""A small rtnetlink client: the few requests pasta's start-up makes.

Parent only. Dumps links, addresses and routes; sets a link up, its MTU
and MAC; adds addresses and routes. It exists for start-up time: importing
pyroute2 costs about 200 ms and 16 MiB here (its package imports asyncio
and every netlink family), two thirds of the 300 ms start-up budget, while
these requests need a socket and ``struct``. Every message is parsed with
bounds checks; a reply that does not parse is an error naming the request.
The socket is made in the calling thread's network namespace, so a thread
that has entered the guest's namespace configures that namespace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ..record import field, record

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x200, 0x400, 0x300
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU = 1, 3, 4
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_NODAD, IFA_F_TENTATIVE = 0x02, 0x40
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 9, 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
IFF_UP = 0x1

_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")


class NetlinkError(OSError):
    """The kernel refused a request (errno set) or a reply was malformed."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One route attribute, padded."""
    raw = _RTA.pack(_RTA.size + len(data), kind) + data
    return raw + bytes(_align(len(raw)) - len(raw))


def parse_attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    """Route attributes in buf[off:end]; the first of each kind wins."""
    out: dict[int, bytes] = {}
    while off + _RTA.size <= end:
        length, kind = _RTA.unpack_from(buf, off)
        if length < _RTA.size or off + length > end:
            break
        out.setdefault(kind & 0x3FFF, bytes(buf[off + _RTA.size : off + length]))
        off += _align(length)
    return out


@record
class Link:
    """One interface."""

    index: int
    name: str
    flags: int
    mtu: int | None
    mac: bytes | None


@record
class Addr:
    """One address of an interface."""

    family: int
    index: int
    prefixlen: int
    flags: int
    scope: int
    address: bytes


@record
class Route:
    """One route; for multipath routes, the first next hop's oif and gateway."""

    family: int
    dst_len: int
    table: int
    type: int
    dst: bytes | None
    oif: int | None
    gateway: bytes | None
    hops: list[tuple[int, bytes | None]] = field(default_factory=list)


class Rtnl:
    """An rtnetlink socket in the caller's (thread's) network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, mtype: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSG.pack(_NLMSG.size + len(body), mtype, flags, seq, 0) + body)
        out: list[tuple[int, bytes]] = []
        for _ in range(100000):  # bounded: a dump of 100k messages is enough for anyone
            data = self.sock.recv(1 << 18)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, rtype, _f, rseq, _pid = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size or off + length > len(data):
                    raise NetlinkError(errno.EBADMSG, f"{what}: malformed netlink reply")
                payload = data[off + _NLMSG.size : off + length]
                off += _align(length)
                if rseq != seq:
                    continue
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    if len(payload) < 4:
                        raise NetlinkError(errno.EBADMSG, f"{what}: malformed netlink error")
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise NetlinkError(err, f"{what}: {os.strerror(err)}")
                    return out
                out.append((rtype, payload))
        raise NetlinkError(errno.EBADMSG, f"{what}: reply did not end")

    # -- dumps --------------------------------------------------------------
    def links(self) -> list[Link]:
        """Every interface."""
        out = []
        for _t, p in self._request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                                   _IFINFO.pack(0, 0, 0, 0, 0), "list links"):
            if len(p) < _IFINFO.size:
                continue
            _fam, _type, index, flags, _ch = _IFINFO.unpack_from(p)
            a = parse_attrs(p, _IFINFO.size, len(p))
            mtu = struct.unpack("=I", a[IFLA_MTU])[0] if len(a.get(IFLA_MTU, b"")) == 4 else None
            name = a.get(IFLA_IFNAME, b"").split(b"\0")[0].decode(errors="replace")
            out.append(Link(index, name, flags, mtu, a.get(IFLA_ADDRESS)))
        return out

    def link_by_name(self, name: str) -> Link | None:
        """The interface called name, if any."""
        return next((lk for lk in self.links() if lk.name == name), None)

    def addrs(self, family: int = socket.AF_UNSPEC) -> list[Addr]:
        """Every address of a family."""
        out = []
        for _t, p in self._request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP,
                                   _IFADDR.pack(family, 0, 0, 0, 0), "list addresses"):
            if len(p) < _IFADDR.size:
                continue
            fam, plen, flags, scope, index = _IFADDR.unpack_from(p)
            a = parse_attrs(p, _IFADDR.size, len(p))
            if IFA_FLAGS in a and len(a[IFA_FLAGS]) == 4:
                flags = struct.unpack("=I", a[IFA_FLAGS])[0]
            raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
            if raw is None or len(raw) != (4 if fam == socket.AF_INET else 16):
                continue
            out.append(Addr(fam, index, plen, flags, scope, raw))
        return out

    def routes(self, family: int) -> list[Route]:
        """Every route of a family, all tables."""
        out = []
        for _t, p in self._request(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP,
                                   _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), "list routes"):
            if len(p) < _RTMSG.size:
                continue
            fam, dst_len, _s, _tos, table, _proto, _scope, rtype, _fl = _RTMSG.unpack_from(p)
            a = parse_attrs(p, _RTMSG.size, len(p))
            if RTA_TABLE in a and len(a[RTA_TABLE]) == 4:
                table = struct.unpack("=I", a[RTA_TABLE])[0]
            oif = struct.unpack("=i", a[RTA_OIF])[0] if len(a.get(RTA_OIF, b"")) == 4 else None
            r = Route(fam, dst_len, table, rtype, a.get(RTA_DST), oif, a.get(RTA_GATEWAY))
            mp = a.get(RTA_MULTIPATH, b"")
            off = 0
            while off + _RTNH.size <= len(mp):
                ln, _f, _h, ifindex = _RTNH.unpack_from(mp, off)
                if ln < _RTNH.size or off + ln > len(mp):
                    break
                ha = parse_attrs(mp, off + _RTNH.size, off + ln)
                r.hops.append((ifindex, ha.get(RTA_GATEWAY)))
                off += _align(ln)
            if r.oif is None and r.hops:
                r.oif, r.gateway = r.hops[0]
            out.append(r)
        return out

    # -- changes ------------------------------------------------------------
    def set_link(self, index: int, *, up: bool | None = None, mtu: int | None = None,
                 mac: bytes | None = None) -> None:
        """Change a link's state, MTU or MAC."""
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)
        if mtu is not None:
            body += attr(IFLA_MTU, struct.pack("=I", mtu))
        if mac is not None:
            body += attr(IFLA_ADDRESS, mac)
        self._request(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body, f"set link {index}")

    def add_addr(self, index: int, family: int, address: bytes, prefixlen: int,
                 flags: int = 0) -> None:
        """Add an address to a link."""
        body = _IFADDR.pack(family, prefixlen, flags & 0xFF, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, address) + attr(IFA_ADDRESS, address)
        if flags:
            body += attr(IFA_FLAGS, struct.pack("=I", flags))
        self._request(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                      f"add address to link {index}")

    def add_route(self, family: int, index: int, dst: bytes | None, dst_len: int,
                  gateway: bytes | None = None) -> None:
        """Add a route in the main table (scope link when there is no gateway)."""
        scope = RT_SCOPE_UNIVERSE if gateway else RT_SCOPE_LINK
        body = _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, scope,
                           RTN_UNICAST, 0)
        if dst is not None and dst_len:
            body += attr(RTA_DST, dst)
        if gateway is not None:
            body += attr(RTA_GATEWAY, gateway)
        body += attr(RTA_OIF, struct.pack("=i", index))
        self._request(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body,
                      "add route")
