# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.proto.dhcp: crafted requests in, replies checked
with an independent decoder written here."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from passt_sep.proto import dhcp
from passt_sep.proto.dnsname import decode_names, encode_names

CLIENT_MAC = bytes.fromhex("5254000012ab")
OUR_MAC = bytes.fromhex("9a5500aa0001")
XID = 0x1234ABCD


def params(**kw: object) -> dhcp.DhcpParams:
    """Server parameters for a typical /24 with everything set."""
    base: dict[str, object] = dict(
        our_mac=OUR_MAC,
        addr=IPv4Address("192.0.2.10"),
        prefix_len=24,
        gateway=IPv4Address("192.0.2.1"),
        dns=(IPv4Address("198.51.100.53"), IPv4Address("198.51.100.54")),
        search=("example.com", "lab.example.com", "example.org"),
        mtu=65520,
    )
    base.update(kw)
    return dhcp.DhcpParams(**base)  # type: ignore[arg-type]


def client_msg(
    msg_type: int | None,
    options: list[tuple[int, bytes]] = (),  # type: ignore[assignment]
    *,
    op: int = 1,
    flags: int = 0,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    end: bool = True,
) -> bytes:
    """Build a client DHCP message by hand."""
    head = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, XID, 3, flags,
        IPv4Address(ciaddr).packed, bytes(4), bytes(4), IPv4Address(giaddr).packed,
        CLIENT_MAC.ljust(16, b"\0"), b"", b"",
    )
    opts = b""
    if msg_type is not None:
        opts += bytes((53, 1, msg_type))
    for code, data in options:
        opts += bytes((code, len(data))) + data
    if end:
        opts += b"\xff"
    return head + b"\x63\x82\x53\x63" + opts


# --- an independent decoder for replies --------------------------------------


def decode_reply(payload: bytes) -> tuple[dict[str, object], list[tuple[int, bytes]]]:
    """Decode a BOOTREPLY into header fields and option instances, in order.

    Straightforward and strict: asserts on anything unexpected.
    """
    assert len(payload) >= 300
    fields = struct.unpack("!BBBBIHH4s4s4s4s16s", payload[:44])
    hdr = dict(
        op=fields[0], htype=fields[1], hlen=fields[2], hops=fields[3], xid=fields[4],
        secs=fields[5], flags=fields[6], ciaddr=IPv4Address(fields[7]),
        yiaddr=IPv4Address(fields[8]), siaddr=IPv4Address(fields[9]),
        giaddr=IPv4Address(fields[10]), chaddr=fields[11],
    )
    assert payload[44:236] == bytes(192)  # sname and file unused
    assert payload[236:240] == bytes([99, 130, 83, 99])
    opts: list[tuple[int, bytes]] = []
    i = 240
    while True:
        code = payload[i]
        if code == 255:
            break
        assert code != 0, "no padding expected before the end option"
        length = payload[i + 1]
        data = payload[i + 2 : i + 2 + length]
        assert len(data) == length
        opts.append((code, data))
        i += 2 + length
    assert set(payload[i + 1 :]) <= {0}, "only padding after the end option"
    return hdr, opts


def joined(opts: list[tuple[int, bytes]]) -> dict[int, bytes]:
    """Join instances of the same option (RFC 3396)."""
    out: dict[int, bytes] = {}
    for code, data in opts:
        out[code] = out.get(code, b"") + data
    return out


def read_names(data: bytes) -> list[str]:
    """Decode RFC 1035 names with compression pointers (test's own decoder)."""
    names = []
    i = 0
    while i < len(data):
        labels = []
        j = i
        jumped = False
        while data[j] != 0:
            if data[j] >= 0xC0:
                ptr = ((data[j] & 0x3F) << 8) | data[j + 1]
                assert ptr < j
                if not jumped:
                    i = j + 2
                jumped = True
                j = ptr
                continue
            labels.append(data[j + 1 : j + 1 + data[j]].decode())
            j += 1 + data[j]
        if not jumped:
            i = j + 1
        names.append(".".join(labels))
    return names


def routes_121(data: bytes) -> list[tuple[str, str]]:
    """Decode RFC 3442 classless static routes into (prefix, router)."""
    routes = []
    i = 0
    while i < len(data):
        width = data[i]
        n = (width + 7) // 8
        dest = data[i + 1 : i + 1 + n].ljust(4, b"\0")
        router = data[i + 1 + n : i + 5 + n]
        routes.append((f"{IPv4Address(dest)}/{width}", str(IPv4Address(router))))
        i += 5 + n
    return routes


def exchange(msg: bytes, p: dhcp.DhcpParams | None = None):
    """Parse and answer one client message."""
    req = dhcp.parse_request(msg)
    assert req is not None
    return dhcp.build_reply(req, p or params())


# --- tests -------------------------------------------------------------------


def test_discover_gets_offer_with_all_configuration() -> None:
    reply, broadcast = exchange(client_msg(dhcp.DHCPDISCOVER))
    hdr, opts = decode_reply(reply)
    o = joined(opts)
    assert hdr["op"] == 2 and hdr["xid"] == XID
    assert hdr["chaddr"] == CLIENT_MAC.ljust(16, b"\0")
    assert hdr["yiaddr"] == IPv4Address("192.0.2.10")
    assert hdr["ciaddr"] == IPv4Address(0)
    assert o[53] == bytes([dhcp.DHCPOFFER])
    assert o[54] == IPv4Address("192.0.2.1").packed
    assert o[51] == b"\xff\xff\xff\xff"
    assert o[1] == IPv4Address("255.255.255.0").packed
    assert o[3] == IPv4Address("192.0.2.1").packed
    assert o[6] == IPv4Address("198.51.100.53").packed + IPv4Address("198.51.100.54").packed
    assert struct.unpack("!H", o[26]) == (65520,)
    assert read_names(o[119]) == ["example.com", "lab.example.com", "example.org"]
    assert 121 not in o and 15 not in o
    assert broadcast is False


def test_offer_search_list_is_compressed() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER))
    data = joined(decode_reply(reply)[1])[119]
    assert data == encode_names(("example.com", "lab.example.com", "example.org"), compress=True)
    assert len(data) < len(encode_names(("example.com", "lab.example.com", "example.org")))
    assert b"\xc0\x00" in data


def test_long_search_list_is_split_across_instances() -> None:
    search = tuple(f"{'x' * 60}{i}.example{i}.net" for i in range(10))
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER), params(search=search))
    _, opts = decode_reply(reply)
    parts = [data for code, data in opts if code == 119]
    assert len(parts) >= 2 and all(len(p) == 255 for p in parts[:-1])
    assert read_names(b"".join(parts)) == list(search)
    assert decode_names(b"".join(parts), allow_compression=True) == search


def test_request_gets_ack() -> None:
    msg = client_msg(dhcp.DHCPREQUEST, [(50, IPv4Address("192.0.2.10").packed),
                                        (54, IPv4Address("192.0.2.1").packed)])
    reply, broadcast = exchange(msg)
    hdr, opts = decode_reply(reply)
    assert joined(opts)[53] == bytes([dhcp.DHCPACK])
    assert hdr["yiaddr"] == IPv4Address("192.0.2.10")
    assert not broadcast


def test_request_without_address_gets_ack() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPREQUEST))
    assert joined(decode_reply(reply)[1])[53] == bytes([dhcp.DHCPACK])


def test_renewing_request_with_our_ciaddr_gets_ack_unicast() -> None:
    reply, broadcast = exchange(client_msg(dhcp.DHCPREQUEST, ciaddr="192.0.2.10",
                                           flags=dhcp.FLAG_BROADCAST))
    hdr, opts = decode_reply(reply)
    assert joined(opts)[53] == bytes([dhcp.DHCPACK])
    assert hdr["ciaddr"] == IPv4Address("192.0.2.10")
    assert broadcast is False  # ciaddr set: unicast to it (RFC 2131 4.1)


@pytest.mark.parametrize("server_id", [None, "192.0.2.1"])
def test_request_for_wrong_address_gets_nak(server_id: str | None) -> None:
    opts = [(50, IPv4Address("10.9.9.9").packed)]
    if server_id:
        opts.append((54, IPv4Address(server_id).packed))
    reply, broadcast = exchange(client_msg(dhcp.DHCPREQUEST, opts + [(61, b"\x01" + CLIENT_MAC)]))
    hdr, o = decode_reply(reply)
    assert joined(o)[53] == bytes([dhcp.DHCPNAK])
    assert hdr["yiaddr"] == IPv4Address(0)
    assert {code for code, _ in o} == {53, 54, 61}
    assert broadcast is True


def test_renewing_request_with_wrong_ciaddr_gets_nak() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPREQUEST, ciaddr="10.0.0.5"))
    assert joined(decode_reply(reply)[1])[53] == bytes([dhcp.DHCPNAK])


def test_request_for_another_server_is_ignored() -> None:
    msg = client_msg(dhcp.DHCPREQUEST, [(50, IPv4Address("10.9.9.9").packed),
                                        (54, IPv4Address("10.9.9.1").packed)])
    assert exchange(msg) is None


def test_broadcast_flag_respected() -> None:
    _, broadcast = exchange(client_msg(dhcp.DHCPDISCOVER, flags=dhcp.FLAG_BROADCAST))
    assert broadcast is True
    reply, broadcast = exchange(client_msg(dhcp.DHCPDISCOVER))
    assert broadcast is False
    req = dhcp.parse_request(client_msg(dhcp.DHCPDISCOVER))
    assert req is not None and dhcp.unicast_destination(req, params()) == IPv4Address("192.0.2.10")
    assert decode_reply(reply)[0]["flags"] == 0
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER, flags=dhcp.FLAG_BROADCAST))
    assert decode_reply(reply)[0]["flags"] == dhcp.FLAG_BROADCAST


def test_classless_routes_only_for_off_link_gateway() -> None:
    p = params(addr=IPv4Address("192.0.2.10"), prefix_len=32)
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER), p)
    o = joined(decode_reply(reply)[1])
    assert o[1] == IPv4Address("255.255.255.255").packed
    assert routes_121(o[121]) == [("192.0.2.1/32", "0.0.0.0"), ("0.0.0.0/0", "192.0.2.1")]
    assert o[3] == IPv4Address("192.0.2.1").packed

    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER))  # /24, gateway on link
    assert 121 not in joined(decode_reply(reply)[1])


def test_parameter_request_list_orders_options() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER, [(55, bytes([119, 6, 3, 1, 200, 6]))]))
    codes = [code for code, _ in decode_reply(reply)[1]]
    assert codes[:5] == [53, 119, 6, 3, 1]
    assert sorted(codes[5:]) == sorted([54, 51, 26])
    assert len(codes) == len(set(codes))


def test_empty_dns_search_and_mtu_omit_options() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER), params(dns=(), search=(), mtu=None))
    codes = {code for code, _ in decode_reply(reply)[1]}
    assert codes == {53, 54, 51, 1, 3}


def test_reply_padded_to_bootp_minimum() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER), params(dns=(), search=(), mtu=None))
    assert len(reply) == 300


def test_inform_gets_ack_without_address_or_lease() -> None:
    reply, broadcast = exchange(client_msg(dhcp.DHCPINFORM, ciaddr="192.0.2.77"))
    hdr, opts = decode_reply(reply)
    o = joined(opts)
    assert o[53] == bytes([dhcp.DHCPACK])
    assert hdr["yiaddr"] == IPv4Address(0)
    assert hdr["ciaddr"] == IPv4Address("192.0.2.77")
    assert 51 not in o and 6 in o and 119 in o
    assert broadcast is False


@pytest.mark.parametrize("msg_type", [dhcp.DHCPRELEASE, dhcp.DHCPDECLINE, dhcp.DHCPOFFER, 99])
def test_release_decline_and_others_get_no_reply(msg_type: int) -> None:
    assert exchange(client_msg(msg_type)) is None


def test_client_identifier_echoed() -> None:
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER, [(61, b"\x01" + CLIENT_MAC)]))
    assert joined(decode_reply(reply)[1])[61] == b"\x01" + CLIENT_MAC


def test_parse_request_fields() -> None:
    req = dhcp.parse_request(client_msg(
        dhcp.DHCPREQUEST,
        [(50, bytes([192, 0, 2, 10])), (54, bytes([192, 0, 2, 1])), (55, b"\x01\x03"),
         (55, b"\x06")],
        flags=0x8000, giaddr="203.0.113.1"))
    assert req is not None
    assert (req.xid, req.secs, req.msg_type) == (XID, 3, dhcp.DHCPREQUEST)
    assert req.chaddr == CLIENT_MAC and req.broadcast
    assert req.requested_ip == IPv4Address("192.0.2.10")
    assert req.server_id == IPv4Address("192.0.2.1")
    assert req.param_request_list == (1, 3, 6)  # instances joined (RFC 3396)
    assert req.giaddr == IPv4Address("203.0.113.1")


def test_parse_tolerates_missing_end_and_padding() -> None:
    msg = client_msg(dhcp.DHCPDISCOVER, end=False)
    assert dhcp.parse_request(msg) is not None
    assert dhcp.parse_request(msg + b"\0\0\0\xff" + b"junk") is not None


@pytest.mark.parametrize(
    "msg",
    [
        b"",
        client_msg(dhcp.DHCPDISCOVER)[:239],
        client_msg(dhcp.DHCPDISCOVER)[:236] + b"\x63\x82\x53\x64\xff",
        client_msg(None),
        client_msg(dhcp.DHCPDISCOVER, op=2),
        client_msg(dhcp.DHCPDISCOVER, end=False) + b"\x0c\x05abc",
        client_msg(dhcp.DHCPDISCOVER, end=False) + b"\x0c",
        client_msg(dhcp.DHCPDISCOVER, [(50, b"\x01\x02\x03")]),
        client_msg(dhcp.DHCPDISCOVER, [(54, b"\x01\x02\x03\x04\x05")]),
        client_msg(dhcp.DHCPDISCOVER, [(53, b"\x03")]),  # 53 joined: two octets
        client_msg(dhcp.DHCPDISCOVER, [(61, b"x" * 200), (61, b"y" * 200)]),
        client_msg(dhcp.DHCPDISCOVER)[:1] + b"\x06" + client_msg(dhcp.DHCPDISCOVER)[2:],
        client_msg(dhcp.DHCPDISCOVER)[:2] + b"\x10" + client_msg(dhcp.DHCPDISCOVER)[3:],
    ],
)
def test_malformed_requests_rejected(msg: bytes) -> None:
    assert dhcp.parse_request(msg) is None


def test_parse_accepts_memoryview() -> None:
    assert dhcp.parse_request(memoryview(client_msg(dhcp.DHCPDISCOVER))) is not None


@pytest.mark.parametrize(
    "kw",
    [dict(our_mac=b"\0" * 5), dict(prefix_len=33), dict(mtu=67), dict(mtu=70000),
     dict(search=("a..b",)), dict(search=("x" * 64 + ".com",)), dict(lease_time=-1)],
)
def test_bad_params_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        params(**kw)


def test_hostname_and_fqdn_options_12_and_81() -> None:
    """-H and --fqdn: option 12 as text, option 81 with flags E and RCODEs 255."""
    reply, _ = exchange(client_msg(dhcp.DHCPDISCOVER),
                        params(hostname="box", fqdn="box.example.org"))
    o = joined(decode_reply(reply)[1])
    assert o[12] == b"box"
    assert o[81][:3] == b"\x04\xff\xff"
    assert o[81][3:] == b"\x03box\x07example\x03org\x00"
    plain, _ = exchange(client_msg(dhcp.DHCPDISCOVER))
    assert not {12, 81} & set(joined(decode_reply(plain)[1]))
