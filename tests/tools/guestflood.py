#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Floods a guest sends toward pasta, as frames or through its own sockets.

    guestflood.py KIND IF COUNT [ARG]      prints one JSON line when done

KIND:
    arp        COUNT ARP requests for random addresses in 192.0.2.0/24 (raw frames)
    ns         COUNT IPv6 neighbour solicitations for random 2001:db8:: targets (raw frames)
    dhcp       COUNT DHCPDISCOVERs from random client MACs (raw frames, broadcast)
    icmp       COUNT echo requests to ARG (the gateway address), random identifiers
    udp-ports  COUNT datagrams to ARG (the gateway address), each to another port
    udp-dests  COUNT datagrams to random 2001:db8:1::/64 addresses, port 9 (the test
               makes that prefix local to its gateway namespace)
    slowread   ARG=HOST:PORT: COUNT connections that never read, 4 KiB receive
               buffers (a zero window), held 3 s

Every target is the gateway address pasta maps to the host's loopback, or
an address of the test's documentation prefixes (they exist only inside the
test's namespaces). Every loop is bounded by COUNT and by 30 s.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import struct
import sys
import time

DEADLINE = 30.0


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _raw(ifname: str, proto: int) -> tuple[socket.socket, bytes]:
    r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    r.bind((ifname, 0))
    return r, r.getsockname()[4][:6]


def _send(r: socket.socket, frame: bytes) -> bool:
    for _ in range(1000):
        try:
            r.send(frame)
            return True
        except BlockingIOError:
            time.sleep(0.001)
    return False


def arp(ifname: str, count: int, rnd: random.Random) -> int:
    r, mac = _raw(ifname, 0x0806)
    me = socket.inet_aton("192.0.2.10")
    sent = 0
    end = time.monotonic() + DEADLINE
    for _ in range(count):
        if time.monotonic() > end:
            break
        target = socket.inet_aton(f"192.0.2.{rnd.randrange(1, 255)}")
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, me, b"\0" * 6, target)
        sent += _send(r, b"\xff" * 6 + mac + b"\x08\x06" + body)
    return sent


def ns(ifname: str, count: int, rnd: random.Random) -> int:
    r, mac = _raw(ifname, 0x86DD)
    src = ipaddress.IPv6Address("fe80::1:2:3:4").packed
    sent = 0
    end = time.monotonic() + DEADLINE
    for _ in range(count):
        if time.monotonic() > end:
            break
        target = ipaddress.IPv6Address(f"2001:db8::{rnd.randrange(1, 0xFFFF):x}").packed
        dst = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + target[13:]
        icmp = bytearray(struct.pack("!BBHI16s", 135, 0, 0, 0, target) + b"\x01\x01" + mac)
        pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
        icmp[2:4] = struct.pack("!H", _csum(pseudo + bytes(icmp)))
        ip6 = struct.pack("!IHBB16s16s", 0x60000000, len(icmp), 58, 255, src, dst)
        dmac = b"\x33\x33" + dst[12:]
        sent += _send(r, dmac + mac + b"\x86\xdd" + ip6 + bytes(icmp))
    return sent


def dhcp(ifname: str, count: int, rnd: random.Random) -> int:
    r, mac = _raw(ifname, 0x0800)
    sent = 0
    end = time.monotonic() + DEADLINE
    for _ in range(count):
        if time.monotonic() > end:
            break
        chaddr = bytes([0x02] + [rnd.randrange(256) for _ in range(5)])
        bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, rnd.getrandbits(32), 0, 0x8000,
                            b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr.ljust(16, b"\0"),
                            b"\0" * 64, b"\0" * 128)
        opts = b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\xff"
        payload = bootp + opts
        udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                                   b"\0" * 4, b"\xff" * 4))
        ip[10:12] = struct.pack("!H", _csum(bytes(ip)))
        sent += _send(r, b"\xff" * 6 + mac + b"\x08\x00" + bytes(ip) + udp)
    return sent


def icmp(count: int, target: str, rnd: random.Random) -> int:
    fam = socket.AF_INET6 if ":" in target else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    s = socket.socket(fam, socket.SOCK_RAW, proto)
    s.setblocking(False)
    typ = 128 if fam == socket.AF_INET6 else 8
    sent = 0
    end = time.monotonic() + DEADLINE
    for i in range(count):
        if time.monotonic() > end:
            break
        pkt = bytearray(struct.pack("!BBHHH", typ, 0, 0, rnd.randrange(65536), i & 0xFFFF) + b"flood")
        if fam == socket.AF_INET:
            pkt[2:4] = struct.pack("!H", _csum(bytes(pkt)))
        try:
            s.sendto(bytes(pkt), (target, 0))
            sent += 1
        except (BlockingIOError, OSError):
            time.sleep(0.001)
    return sent


def udp(count: int, target: str | None, rnd: random.Random) -> int:
    fam = socket.AF_INET6 if target is None or ":" in target else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setblocking(False)
    sent = 0
    end = time.monotonic() + DEADLINE
    for _ in range(count):
        if time.monotonic() > end:
            break
        if target is None:
            dest = (f"2001:db8:1::{rnd.randrange(0x100, 0xFFFF):x}:{rnd.randrange(1, 0xFFFF):x}", 9)
        else:
            dest = (target, rnd.randrange(1024, 65536))
        try:
            s.sendto(b"flood", dest)
            sent += 1
        except BlockingIOError:
            time.sleep(0.0005)
        except OSError:
            pass
    return sent


def slowread(count: int, target: str) -> int:
    addr, _, port = target.rpartition(":")
    held = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        try:
            s.connect((addr, int(port)))
            held.append(s)
        except OSError:
            s.close()
    time.sleep(3.0)
    for s in held:
        s.close()
    return len(held)


def main() -> None:
    kind, ifname, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    rnd = random.Random(count)
    t0 = time.monotonic()
    if kind == "arp":
        n = arp(ifname, count, rnd)
    elif kind == "ns":
        n = ns(ifname, count, rnd)
    elif kind == "dhcp":
        n = dhcp(ifname, count, rnd)
    elif kind == "icmp":
        n = icmp(count, arg, rnd)
    elif kind == "udp-ports":
        n = udp(count, arg, rnd)
    elif kind == "udp-dests":
        n = udp(count, None, rnd)
    elif kind == "slowread":
        n = slowread(count, arg)
    else:
        raise SystemExit(f"guestflood: unknown kind {kind!r}")
    print(json.dumps({"kind": kind, "sent": n, "seconds": round(time.monotonic() - t0, 2)}), flush=True)


if __name__ == "__main__":
    main()
