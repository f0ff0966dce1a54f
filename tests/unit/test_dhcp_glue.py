# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.worker.dhcp: crafted frames in, whole frames out.

The reply frames are taken apart here with struct and an independent
checksum (a plain loop over 16-bit words), so the wrapping is checked
against RFC 768/791/8200 rather than against the code under test.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from types import SimpleNamespace

import pytest

from passt_sep.cli import Options
from passt_sep.config import V4, V6, Config
from passt_sep.proto import dhcp, dhcpv6
from passt_sep.proto.packet import Packet, parse_frame
from passt_sep.worker import dhcp as glue

OUR_MAC = bytes.fromhex("9a5500aa0001")
CLIENT_MAC = bytes.fromhex("5254000012ab")
GW4 = IPv4Address("192.0.2.1")
ADDR4 = IPv4Address("192.0.2.10")
OUR_LL = IPv6Address("fe80::1")
CLIENT_LL = IPv6Address("fe80::5054:ff:fe00:12ab")
ADDR6 = IPv6Address("2001:db8::10")
ALL_DHCP = IPv6Address("ff02::1:2")
ZERO4 = IPv4Address(0)


# -- an independent decoder ------------------------------------------------

def ones_sum(data: bytes) -> int:
    """RFC 1071 the slow, obvious way."""
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (word,) in struct.iter_unpack("!H", data):
        s += word
        s = (s & 0xFFFF) + (s >> 16)
    return s


def decode(frame: bytes) -> SimpleNamespace:
    """Split a reply frame into its fields, checking lengths and checksums."""
    dst_mac, src_mac, etype = struct.unpack_from("!6s6sH", frame)
    if etype == 0x0800:
        ip = frame[14:34]
        assert ip[0] == 0x45
        total = struct.unpack_from("!H", ip, 2)[0]
        assert total == len(frame) - 14
        assert ones_sum(ip) == 0xFFFF, "IPv4 header checksum"
        assert ip[9] == 17
        assert struct.unpack_from("!H", ip, 6)[0] & 0x4000  # DF
        src, dst, ttl = ip[12:16], ip[16:20], ip[8]
        udp = frame[34:]
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    else:
        assert etype == 0x86DD
        ip = frame[14:54]
        assert ip[0] >> 4 == 6
        assert struct.unpack_from("!H", ip, 4)[0] == len(frame) - 54
        assert ip[6] == 17
        src, dst, ttl = ip[8:24], ip[24:40], ip[7]
        udp = frame[54:]
        pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17)
    sport, dport, length, csum = struct.unpack_from("!HHHH", udp)
    assert length == len(udp)
    assert csum != 0, "checksum must be filled in"
    assert ones_sum(pseudo + udp) == 0xFFFF, "UDP checksum"
    return SimpleNamespace(dst_mac=dst_mac, src_mac=src_mac, src=src, dst=dst, ttl=ttl,
                           sport=sport, dport=dport, payload=udp[8:])


# -- crafted requests --------------------------------------------------------

def udp_frame4(payload: bytes, *, src: bytes = bytes(4), dst: bytes = b"\xff" * 4,
               sport: int = 68, dport: int = 67, udp_len: int | None = None,
               trailer: bytes = b"") -> bytes:
    """A client's frame; udp_len overrides the UDP length field."""
    n = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, n if udp_len is None else udp_len, 0) + payload
    udp += trailer
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                               src, dst))
    struct.pack_into("!H", ip, 10, 0xFFFF - ones_sum(bytes(ip)))
    return struct.pack("!6s6sH", b"\xff" * 6, CLIENT_MAC, 0x0800) + bytes(ip) + udp


def udp_frame6(payload: bytes, *, src: IPv6Address = CLIENT_LL, dst: IPv6Address = ALL_DHCP,
               udp_len: int | None = None) -> bytes:
    """A client's IPv6 frame to port 547."""
    n = 8 + len(payload)
    udp = struct.pack("!HHHH", 546, 547, n if udp_len is None else udp_len, 0) + payload
    ip = struct.pack("!IHBB16s16s", 0x60000000, len(udp), 17, 1, src.packed, dst.packed)
    return struct.pack("!6s6sH", b"\x33\x33\x00\x01\x00\x02", CLIENT_MAC, 0x86DD) + ip + udp


def bootrequest(msg_type: int, *, flags: int = 0, ciaddr: IPv4Address = ZERO4,
                giaddr: IPv4Address = ZERO4, extra: bytes = b"") -> bytes:
    """A BOOTREQUEST with option 53 and anything in extra."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0xC0FFEE, 0, flags,
                       ciaddr.packed, bytes(4), bytes(4), giaddr.packed,
                       CLIENT_MAC.ljust(16, b"\0"), b"", b"")
    return head + dhcp.MAGIC_COOKIE + bytes((53, 1, msg_type)) + extra + b"\xff"


def dhcpv6_msg(msg_type: int, *options: bytes) -> bytes:
    """A client message with a Client Identifier and the given options."""
    duid = struct.pack("!HH", 3, 1) + CLIENT_MAC
    return bytes((msg_type,)) + b"\x12\x34\x56" + struct.pack("!HH", 1, len(duid)) + duid + \
        b"".join(options)


def ia_na(iaid: int = 7) -> bytes:
    """An empty IA_NA option."""
    return struct.pack("!HHIII", 3, 12, iaid, 0, 0)


def parsed(frame: bytes) -> Packet:
    p = parse_frame(memoryview(frame))
    assert isinstance(p, Packet), p
    return p


def params4(**kw: object) -> dhcp.DhcpParams:
    base: dict[str, object] = dict(our_mac=OUR_MAC, addr=ADDR4, prefix_len=24, gateway=GW4,
                                   dns=(IPv4Address("192.0.2.53"),), search=("example.org",),
                                   mtu=65520)
    base.update(kw)
    return dhcp.DhcpParams(**base)  # type: ignore[arg-type]


def params6() -> dhcpv6.Dhcpv6Params:
    return dhcpv6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR6, dns=(IPv6Address("2001:db8::53"),))


# -- DHCP ----------------------------------------------------------------------

def test_offer_unicast_to_yiaddr_and_chaddr() -> None:
    frame = glue.dhcp_frame(parsed(udp_frame4(bootrequest(dhcp.DHCPDISCOVER))), params4())
    assert isinstance(frame, bytes)
    r = decode(frame)
    assert (r.dst_mac, r.src_mac) == (CLIENT_MAC, OUR_MAC)
    assert (r.src, r.dst) == (GW4.packed, ADDR4.packed)
    assert (r.sport, r.dport) == (67, 68)
    req = r.payload
    assert req[0] == dhcp.BOOTREPLY and req[16:20] == ADDR4.packed
    assert bytes((53, 1, dhcp.DHCPOFFER)) in req[240:243]


def test_broadcast_flag_gets_broadcast() -> None:
    frame = glue.dhcp_frame(
        parsed(udp_frame4(bootrequest(dhcp.DHCPDISCOVER, flags=dhcp.FLAG_BROADCAST))), params4())
    assert isinstance(frame, bytes)
    r = decode(frame)
    assert r.dst_mac == b"\xff" * 6 and r.dst == b"\xff" * 4
    assert r.src == GW4.packed


def test_nak_is_broadcast() -> None:
    opt50 = bytes((50, 4)) + IPv4Address("198.51.100.7").packed
    frame = glue.dhcp_frame(parsed(udp_frame4(bootrequest(dhcp.DHCPREQUEST, extra=opt50))),
                            params4())
    assert isinstance(frame, bytes)
    r = decode(frame)
    assert r.dst_mac == b"\xff" * 6 and r.dst == b"\xff" * 4
    assert bytes((53, 1, dhcp.DHCPNAK)) in r.payload


def test_inform_goes_to_ciaddr() -> None:
    ciaddr = IPv4Address("192.0.2.77")
    frame = glue.dhcp_frame(parsed(udp_frame4(bootrequest(dhcp.DHCPINFORM, ciaddr=ciaddr),
                                              src=ciaddr.packed, dst=GW4.packed)), params4())
    assert isinstance(frame, bytes)
    r = decode(frame)
    assert r.dst == ciaddr.packed and r.dst_mac == CLIENT_MAC


def test_release_gets_nothing() -> None:
    assert glue.dhcp_frame(parsed(udp_frame4(bootrequest(dhcp.DHCPRELEASE))), params4()) is None


def test_relayed_request_dropped() -> None:
    req = bootrequest(dhcp.DHCPDISCOVER, giaddr=IPv4Address("198.51.100.1"))
    assert glue.dhcp_frame(parsed(udp_frame4(req)), params4()) == "dhcp relayed"


def test_malformed_dropped() -> None:
    assert glue.dhcp_frame(parsed(udp_frame4(b"\x01" * 100)), params4()) == "dhcp malformed"


@pytest.mark.parametrize("udp_len", [0, 7])
def test_udp_length_too_short(udp_len: int) -> None:
    frame = parsed(udp_frame4(bootrequest(dhcp.DHCPDISCOVER), udp_len=udp_len))
    assert glue.dhcp_frame(frame, params4()) == "udp length"


def test_udp_length_past_ip_payload() -> None:
    payload = bootrequest(dhcp.DHCPDISCOVER)
    frame = parsed(udp_frame4(payload, udp_len=8 + len(payload) + 1))
    assert glue.dhcp_frame(frame, params4()) == "udp length"


def test_udp_length_shorter_than_ip_payload_wins() -> None:
    """Bytes after the UDP length (inside the IP datagram) are not the payload."""
    payload = bootrequest(dhcp.DHCPDISCOVER)
    p = parsed(udp_frame4(payload, trailer=b"\x35\x01\x07" * 4))
    found = glue.udp_payload(p)
    assert not isinstance(found, str)
    assert found == (68, memoryview(payload)) and bytes(found[1]) == payload


def test_short_udp_header() -> None:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 24, 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
    frame = struct.pack("!6s6sH", b"\xff" * 6, CLIENT_MAC, 0x0800) + ip + b"\0\x44\0\x43"
    assert glue.dhcp_frame(parsed(frame), params4()) == "short udp"


def test_udp_checksum_zero_sent_as_ffff() -> None:
    """RFC 768: a computed checksum of 0 goes out as all ones."""
    filler = 0xFFFF - (67 + 68 + 10)  # makes the sum 0xFFFF, the checksum 0
    out = glue.udp_datagram(67, 68, struct.pack("!H", filler), 0)
    assert struct.unpack_from("!H", out, 6)[0] == 0xFFFF
    out = glue.udp_datagram(67, 68, struct.pack("!H", filler - 1), 0)
    assert struct.unpack_from("!H", out, 6)[0] == 1


# -- DHCPv6 --------------------------------------------------------------------

def test_advertise_from_our_link_local_to_client() -> None:
    msg = dhcpv6_msg(dhcpv6.SOLICIT, ia_na())
    frame = glue.dhcpv6_frame(parsed(udp_frame6(msg)), params6(), OUR_LL.packed)
    assert isinstance(frame, bytes)
    r = decode(frame)
    assert (r.dst_mac, r.src_mac) == (CLIENT_MAC, OUR_MAC)
    assert (r.src, r.dst) == (OUR_LL.packed, CLIENT_LL.packed)
    assert (r.sport, r.dport) == (547, 546)
    assert r.ttl == 255
    assert r.payload[0] == dhcpv6.ADVERTISE and r.payload[1:4] == b"\x12\x34\x56"
    assert ADDR6.packed in r.payload


def test_dhcpv6_unicast_destination_dropped() -> None:
    msg = dhcpv6_msg(dhcpv6.SOLICIT, ia_na())
    frame = parsed(udp_frame6(msg, dst=OUR_LL))
    assert glue.dhcpv6_frame(frame, params6(), OUR_LL.packed) == "dhcpv6 not multicast"


@pytest.mark.parametrize("src", [IPv6Address("::"), IPv6Address("ff02::1")])
def test_dhcpv6_bad_source_dropped(src: IPv6Address) -> None:
    frame = parsed(udp_frame6(dhcpv6_msg(dhcpv6.SOLICIT, ia_na()), src=src))
    assert glue.dhcpv6_frame(frame, params6(), OUR_LL.packed) == "dhcpv6 source"


def test_dhcpv6_malformed_and_unanswered() -> None:
    bad = parsed(udp_frame6(b"\x01\x00"))
    assert glue.dhcpv6_frame(bad, params6(), OUR_LL.packed) == "dhcpv6 malformed"
    no_client_id = parsed(udp_frame6(b"\x01\x12\x34\x56" + ia_na()))
    assert glue.dhcpv6_frame(no_client_id, params6(), OUR_LL.packed) is None


def test_dhcpv6_udp_length_checked() -> None:
    msg = dhcpv6_msg(dhcpv6.SOLICIT, ia_na())
    frame = parsed(udp_frame6(msg, udp_len=len(msg) + 9))
    assert glue.dhcpv6_frame(frame, params6(), OUR_LL.packed) == "udp length"


# -- configuration and the loop's services ----------------------------------------

def config(mode: str = "pasta", mtu: int = 65520, search: tuple[str, ...] = ("example.org",),
           **opts: object) -> Config:
    o = Options(mode=mode, mtu=mtu, **opts)  # type: ignore[arg-type]
    v4 = V4(addr=ADDR4, prefix=24, gw=GW4, dns=(IPv4Address("192.0.2.53"),), dns_match=None,
            dns_host=None, ifname="eth0", host_lo=GW4 if o.map_gw else None, guest_map=None)
    gw6 = IPv6Address("2001:db8::1")
    v6 = V6(addr=ADDR6, prefix=64, gw=gw6, our_ll=OUR_LL, dns=(IPv6Address("2001:db8::53"),),
            dns_match=None, dns_host=None, ifname="eth0", host_lo=gw6 if o.map_gw else None, guest_map=None)
    return Config(opts=o, mode=mode, v4=v4, v6=v6, our_mac=OUR_MAC, mtu=mtu, ns_ifname="eth0",
                  search=search)


def test_params_follow_dhcp_dns_and_search() -> None:
    on = config(dhcp_dns=True, dhcp_search=True)
    p4, p6 = glue.dhcp_params(on), glue.dhcpv6_params(on)
    assert p4 is not None and p6 is not None
    assert p4.dns == (IPv4Address("192.0.2.53"),) and p4.search == ("example.org",)
    assert p6.dns == (IPv6Address("2001:db8::53"),) and p6.search == ("example.org",)
    assert p4.mtu == 65520 and p4.gateway == GW4 and p4.prefix_len == 24
    off = config(dhcp_dns=False, dhcp_search=False)
    p4, p6 = glue.dhcp_params(off), glue.dhcpv6_params(off)
    assert p4 is not None and p6 is not None
    assert p4.dns == () and p4.search == () and p6.dns == () and p6.search == ()


def test_params_mtu_and_bad_search_names() -> None:
    cfg = config(mtu=0, search=("ex\u00e4mple.org", "a" * 64 + ".org", "ok.example"))
    p4 = glue.dhcp_params(cfg)
    assert p4 is not None and p4.mtu is None and p4.search == ("ok.example",)
    assert glue.dhcp_params(config(mtu=67)).mtu is None  # type: ignore[union-attr]


def fake_worker(cfg: Config) -> tuple[SimpleNamespace, list[bytes], list[str]]:
    sent: list[bytes] = []
    dropped: list[str] = []
    return SimpleNamespace(cfg=cfg, send=sent.append, drop=dropped.append), sent, dropped


@pytest.mark.parametrize(("opts", "keys"), [
    ({}, {"udp4:67", "udp6:547"}),
    ({"no_dhcp": True}, {"udp6:547"}),
    ({"no_dhcpv6": True}, {"udp4:67"}),
    ({"no_dhcp": True, "no_dhcpv6": True}, set()),
])
def test_services_respect_no_dhcp(opts: dict[str, object], keys: set[str]) -> None:
    w, _, _ = fake_worker(config(**opts))
    assert set(glue.services(w)) == keys  # type: ignore[arg-type]


def test_services_send_and_drop() -> None:
    w, sent, dropped = fake_worker(config())
    svc: dict[str, Callable[[Packet], None]] = glue.services(w)  # type: ignore[arg-type]
    svc["udp4:67"](parsed(udp_frame4(bootrequest(dhcp.DHCPDISCOVER))))
    svc["udp4:67"](parsed(udp_frame4(bootrequest(dhcp.DHCPRELEASE))))
    svc["udp4:67"](parsed(udp_frame4(b"junk")))
    svc["udp6:547"](parsed(udp_frame6(dhcpv6_msg(dhcpv6.SOLICIT, ia_na()))))
    assert len(sent) == 2 and dropped == ["dhcp malformed"]
    assert decode(sent[0]).dst == ADDR4.packed
    assert decode(sent[1]).src == OUR_LL.packed
