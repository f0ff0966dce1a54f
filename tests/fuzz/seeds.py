# SPDX-License-Identifier: GPL-2.0-or-later
"""The seed corpus: hand-made inputs that reach deep state, one set per target.

``python -m tests.fuzz.seeds`` (re)writes tests/fuzz/corpus/<target>/seed-*;
the files are checked in. The worker seeds are programs for
``worker_harness`` (one step byte, then the step's own bytes): TCP
handshakes followed by data both ways, out-of-order segments, FIN and RST
from either side; DHCP, DHCPv6, NDP, ARP, ping and UDP exchanges.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from . import frames as F
from .worker_harness import GUEST_LL, GUEST_MAC, GW4, GW6, LL6, OUR_MAC

CORPUS = Path(__file__).parent / "corpus"

# worker program steps (worker_harness.STEPS)
RAW, TCP, UDP, DHCP, DHCPV6, ICMP, ARP, NDP, ANSWER, INBOUND, HOST, UDP_PEER, LOOP, TICK = (
    0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
SYN, ACK, PSH_ACK, FIN_ACK, RST = 0, 1, 2, 3, 4  # indexes into TCP_FLAGS


def tcp(conn: int = 0, v6: bool = False, flags: int = ACK, seq_d: int = 4, ack_d: int = 4,
        payload: bytes = b"", syn_opts: bool = False, isn: int = 1000, win: int = 65535) -> bytes:
    k = conn | (4 if v6 else 0)
    b = bytes([TCP, k]) + struct.pack("!I", isn) + bytes([flags, seq_d | ack_d << 4])
    b += struct.pack("!H", win)
    if syn_opts:
        b += bytes([1]) + struct.pack("!H", 1460 - 536) + bytes([7])
    else:
        b += bytes([0])
    return b + bytes([len(payload)]) + payload + bytes([0])


def answer(how: int = 1) -> bytes:
    return bytes([ANSWER, 0, how])


def host_send(data: bytes, times: int = 1, srv: int = 0) -> bytes:
    return bytes([HOST, srv, 0, len(data)]) + data + bytes([times - 1])


def host(what: int, srv: int = 0) -> bytes:
    return bytes([HOST, srv, what])


def worker_seeds() -> list[bytes]:
    out = []
    for v6 in (False, True):
        for mode in (0, 1, 2):  # pasta, passt, pasta without offload
            hs = tcp(flags=SYN, v6=v6, syn_opts=True) + answer(1) + bytes([LOOP])
            hs += tcp(flags=ACK, v6=v6)
            data = hs + tcp(flags=PSH_ACK, v6=v6, payload=b"hello world") + bytes([LOOP])
            data += host_send(b"x" * 200, 40) + bytes([LOOP]) + tcp(flags=ACK, v6=v6) + bytes([LOOP])
            out.append(bytes([mode]) + data + tcp(flags=FIN_ACK, v6=v6) + host(1) + bytes([LOOP]) + tcp(flags=ACK, v6=v6))
            out.append(bytes([mode]) + data + host(2) + bytes([LOOP, TICK, 3]))
            out.append(bytes([mode]) + hs + tcp(flags=PSH_ACK, v6=v6, payload=b"later", seq_d=9)
                       + tcp(flags=PSH_ACK, v6=v6, payload=b"first") + bytes([LOOP]) + tcp(flags=RST, v6=v6))
            out.append(bytes([mode]) + tcp(flags=SYN, v6=v6) + answer(2) + bytes([LOOP]) + tcp(flags=ACK, v6=v6)
                       + bytes([TICK, 4, TICK, 6]))
            out.append(bytes([mode]) + tcp(flags=SYN, v6=v6) + answer(0) + tcp(flags=ACK, v6=v6))
            out.append(bytes([mode]) + tcp(flags=SYN, v6=v6) + answer(3) + bytes([LOOP]) + tcp(flags=SYN, v6=v6)
                       + answer(4) + bytes([LOOP, TICK, 2, TICK, 3]))
            out.append(bytes([mode]) + hs + host_send(b"y" * 250, 250) + bytes([LOOP, LOOP, TICK, 1, TICK, 2])
                       + tcp(flags=ACK, v6=v6, ack_d=5) + tcp(flags=ACK, v6=v6, ack_d=5) + bytes([LOOP]))
        # inbound: the host connects to a forwarded port, the guest answers our SYN
        for mode in (0, 1):
            syn_ack = bytes([TCP, 4 if v6 else 0]) + struct.pack("!I", 5000) + bytes([6, 0x44]) \
                + struct.pack("!H", 65535) + bytes([1]) + struct.pack("!H", 1460 - 536) + bytes([7, 0, 0])
            out.append(bytes([mode, INBOUND, 1 if v6 else 0, LOOP]) + syn_ack + bytes([LOOP])
                       + host_send(b"z" * 100, 3) + bytes([LOOP])
                       + tcp(flags=PSH_ACK, v6=v6, payload=b"answer", isn=0) + bytes([LOOP])
                       + host(1) + bytes([LOOP]) + tcp(flags=FIN_ACK, v6=v6, isn=0) + bytes([LOOP, TICK, 3]))
        # UDP, DNS, DHCP, ping, ARP, NDP
        ver = 1 if v6 else 0
        out.append(bytes([0, UDP, ver | 0x08, 0, 0x00, 0x00, 53, 0, 12]) + b"dns query..." + bytes([0])
                   + answer(1) + bytes([LOOP, UDP_PEER, 5]) + b"reply" + bytes([LOOP, TICK, 5]))
        out.append(bytes([1, ICMP, ver, 0, 0, 1, 0, 1, 4]) + b"ping" + bytes([0]) + answer(1) + bytes([LOOP, TICK, 4]))
    out.append(bytes([0, DHCP, 1, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 3, 55, 1, 3, 1]))
    out.append(bytes([0, DHCP, 3, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 6, 50, 4]) + GW4.packed[:3] + bytes([10, 1]))
    out.append(bytes([0, DHCPV6, 1, 0, 0, 1, 0, 0]))
    out.append(bytes([0, DHCPV6, 11, 0, 0, 1, 4, 0, 6, 0, 0, 0]))
    out.append(bytes([0, ARP, 7, ARP, 0, 9, ARP, 1]))
    out.append(bytes([0, NDP, 2 | 32 | 64, 0, 0, NDP, 1 | 32 | 64, 0, 0, 0, 0, 0, NDP, 2 | 8 | 64 | 128, 0]))
    f = F.frame(4, GUEST_MAC, OUR_MAC, bytes([192, 0, 2, 10]), GW4.packed, F.ICMP,
                F.icmp_msg(4, b"", b"", 8, 0, b"\0\1\0\1abcd"))
    out.append(bytes([0, RAW]) + struct.pack("!H", len(f)) + f)
    f = F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, GW6.packed, 0, bytes([58, 0]) + bytes(6)
                + F.icmp_msg(6, GUEST_LL, GW6.packed, 128, 0, b"\0\1\0\1"))
    out.append(bytes([1, RAW]) + struct.pack("!H", len(f)) + f)
    return out


def frame_seeds() -> list[bytes]:
    """Whole frames of every protocol (packet, tcp, udp, icmp, arp, ndp targets)."""
    g4, a4 = GW4.packed, bytes([192, 0, 2, 10])
    g6 = GW6.packed
    out = [
        F.frame(4, GUEST_MAC, OUR_MAC, a4, g4, F.TCP, F.tcp_seg(4, a4, g4, 40000, 80, 1, 0, 2, 65535,
                                                                 b"\x02\x04\x05\xb4\x01\x03\x03\x07")),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, g6, F.TCP, F.tcp_seg(6, GUEST_LL, g6, 40000, 80, 1, 5, 0x18,
                                                                      512, b"", b"data")),
        F.frame(4, GUEST_MAC, OUR_MAC, a4, g4, F.UDP, F.udp_dgram(4, a4, g4, 5353, 53, b"q" * 12)),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, g6, F.UDP, F.udp_dgram(6, GUEST_LL, g6, 546, 547, b"\x01abc")),
        F.frame(4, GUEST_MAC, OUR_MAC, a4, g4, F.ICMP, F.icmp_msg(4, a4, g4, 8, 0, b"\0\1\0\1ping")),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, g6, F.ICMPV6, F.icmp_msg(6, GUEST_LL, g6, 128, 0, b"\0\1\0\1")),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, bytes.fromhex("ff020000000000000000000000000002"), F.ICMPV6,
                F.icmp_msg(6, GUEST_LL, bytes.fromhex("ff020000000000000000000000000002"), 133, 0,
                           bytes(4) + b"\x01\x01" + GUEST_MAC), hlim=255),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, LL6.packed, F.ICMPV6,
                F.icmp_msg(6, GUEST_LL, LL6.packed, 135, 0, bytes(4) + LL6.packed + b"\x01\x01" + GUEST_MAC),
                hlim=255),
        F.arp_request(GUEST_MAC, a4, g4),
        F.frame(6, GUEST_MAC, OUR_MAC, GUEST_LL, g6, 0, bytes([6, 0]) + bytes(6)
                + F.tcp_seg(6, GUEST_LL, g6, 1, 2, 3, 4, 2, 5)),
    ]
    return out


def whole_frame_seeds() -> list[bytes]:
    """Frames behind the flag byte of targets._parsed: 0x80 whole frame, else L4 bytes only."""
    out = [b"\x80" + f for f in frame_seeds()]
    a4, g4 = bytes([192, 0, 2, 10]), GW4.packed
    out.append(b"\x00" + F.tcp_seg(4, a4, g4, 1, 2, 3, 4, 0x12, 5, b"\x02\x04\x05\xb4\x03\x03\x0e\x00"))
    out.append(b"\x02" + F.udp_dgram(4, a4, g4, 68, 67, b"x" * 20))
    out.append(b"\x04" + F.icmp_msg(4, a4, g4, 8, 0, b"\0\1\0\2echo"))
    out.append(b"\x1f" + bytes([135, 0, 0, 0]) + bytes(4) + LL6.packed + b"\x01\x01" + GUEST_MAC)
    out.append(b"\x3f" + bytes([133, 0, 0, 0]) + bytes(4) + b"\x01\x01" + GUEST_MAC)
    return out


def stream_seeds() -> list[bytes]:
    """Input of the stream target: a chunking byte, then the stream."""
    fr = frame_seeds()
    s = b"".join(struct.pack("!I", len(f)) + f for f in fr)
    return [b"\x00" + s, b"\x07" + s, b"\x03" + struct.pack("!I", 0) + struct.pack("!I", 13) + bytes(13) + s,
            b"\x05" + struct.pack("!I", 70000) + s, b"\x01" + struct.pack("!I", 1 << 30)]


def cli_seeds() -> list[bytes]:
    args = [
        ["pasta", "-t", "8080", "-u", "53", "--config-net"],
        ["pasta", "-t", "127.0.0.1/22-80:8022-8080", "-T", "auto", "-a", "192.0.2.5", "-n", "24"],
        ["passt", "-s", "/tmp/x.sock", "-1", "-f", "--mtu", "1500", "-M", "02:00:00:00:00:01"],
        ["passt", "-t", "all", "-u", "~53", "--dns-forward", "192.0.2.53", "-D", "none", "-S", "a.b,c.d"],
        ["pasta", "--ipv4-only", "--no-dhcp", "--runas", "0", "--pcap", "/dev/null", "--", "true"],
        ["pasta", "-g", "2001:db8::1", "-a", "2001:db8::5", "--map-host-loopback", "none", "--egress-deny",
         "192.0.2.0/24"],
        ["passt", "--help"], ["pasta", "--version"], ["pasta", "-t", "[::1]:80"],
    ]
    return [(b"\x01" if argv[0] == "pasta" else b"\x00") + b"\0".join(a.encode() for a in argv[1:])
            for argv in args]


def port_seeds() -> list[bytes]:
    specs = ["22", "22-80", "22-80:8022-8080", "127.0.0.1/22", "::1/80", "~22-24,80", "auto", "all",
             "none", "eth0/22", "192.0.2.1%eth0/22-23:33-34", "1-65535", "~1-100"]
    return [bytes([i % 4]) + s.encode() for i, s in enumerate(specs)]


def qrap_seeds() -> list[bytes]:
    arp = F.arp_request(OUR_MAC, GW4.packed, bytes([169, 254, 1, 1]), op=2)
    return [b"\x00" + struct.pack("!I", len(arp)) + arp, b"\x01", b"\x02" + struct.pack("!I", 9999) + b"abc",
            b"\x03\x00\x00", b"\x04" + b"3\0true", b"\x04" + b"2\0qemu", b"\x04--socket\0/x\0" + b"9"]


def dhcp_seeds() -> list[bytes]:
    base = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 7, 0, 0, bytes(4), bytes(4), bytes(4), bytes(4),
                       GUEST_MAC, b"", b"") + b"\x63\x82\x53\x63"
    return [bytes([0]) + base + bytes([53, 1, 1, 55, 4, 1, 3, 6, 15, 255]),
            bytes([1]) + base + bytes([53, 1, 3, 50, 4, 192, 0, 2, 10, 54, 4, 192, 0, 2, 1, 255]),
            bytes([2]) + base + bytes([53, 1, 8, 61, 7, 1]) + GUEST_MAC + bytes([255])]


def dhcpv6_seeds() -> list[bytes]:
    cid = struct.pack("!HH", 1, 10) + b"\x00\x03\x00\x01" + GUEST_MAC
    ia = struct.pack("!HHIII", 3, 12, 1, 0, 0)
    return [bytes([0, 1, 0, 0, 1]) + cid + ia, bytes([1, 11, 1, 2, 3]) + cid + struct.pack("!HH", 6, 4) + b"\x00\x17\x00\x18",
            bytes([0, 3, 0, 0, 9]) + cid + ia + struct.pack("!HH", 2, 10) + b"\x00\x03\x00\x01" + OUR_MAC]


def dnsname_seeds() -> list[bytes]:
    return [b"\x00\x07example\x03org\x00", b"\x01\x07example\x03org\x00\x01b\xc0\x00", b"\x01\xc0\x00"]


SEEDS = {
    "worker": worker_seeds, "packet": frame_seeds, "tcp": whole_frame_seeds, "udp": whole_frame_seeds,
    "icmp": whole_frame_seeds, "arp": lambda: [f[14:] for f in frame_seeds()], "ndp": whole_frame_seeds, "dhcp": dhcp_seeds,
    "dhcpv6": dhcpv6_seeds, "dnsname": dnsname_seeds, "stream": stream_seeds, "qrap": qrap_seeds,
    "cli": cli_seeds, "ports": port_seeds,
}


def write_all() -> None:
    for name, fn in SEEDS.items():
        d = CORPUS / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        for data in fn():
            (d / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


if __name__ == "__main__":
    write_all()
