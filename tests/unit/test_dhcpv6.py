# SPDX-License-Identifier: GPL-2.0-or-later
"""Unit tests for passt_sep.proto.dhcpv6: crafted client messages in,
replies decoded with a small decoder written here."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from passt_sep.proto import dhcpv6 as d6
from passt_sep.proto.dnsname import encode_names

OUR_MAC = bytes.fromhex("9a5500aa0001")
CLIENT_DUID = bytes.fromhex("00030001525400aabbcc")
XID = b"\x12\x34\x56"
ADDR = IPv6Address("2001:db8:1:2::abcd")
PARAMS = d6.Dhcpv6Params(
    our_mac=OUR_MAC,
    addr=ADDR,
    dns=(IPv6Address("2001:db8::53"),),
    search=("example.com", "lab.example.com"),
)
SERVER_DUID = PARAMS.server_duid


def opt(code: int, data: bytes = b"") -> bytes:
    """Encode one DHCPv6 option."""
    return struct.pack("!HH", code, len(data)) + data


def iaaddr(addr: str, pref: int = 0, valid: int = 0) -> bytes:
    """Encode an IAADDR option."""
    return opt(5, IPv6Address(addr).packed + struct.pack("!II", pref, valid))


def ia_na(iaid: int = 0xABCD, inner: bytes = b"") -> bytes:
    """Encode an IA_NA option with zero T1/T2."""
    return opt(3, struct.pack("!III", iaid, 0, 0) + inner)


def client(msg_type: int, *options: bytes, client_id: bool = True) -> bytes:
    """Build a client message, with our test Client Identifier first."""
    head = bytes((msg_type,)) + XID
    if client_id:
        head += opt(1, CLIENT_DUID)
    return head + b"".join(options)


def decode(payload: bytes) -> tuple[int, bytes, list[tuple[int, bytes]]]:
    """Decode a reply: (type, xid, top-level options in order)."""
    opts = []
    i = 4
    while i < len(payload):
        code, length = struct.unpack_from("!HH", payload, i)
        data = payload[i + 4 : i + 4 + length]
        assert len(data) == length
        opts.append((code, data))
        i += 4 + length
    return payload[0], payload[1:4], opts


def sub(data: bytes) -> list[tuple[int, bytes]]:
    """Decode a run of options (inside a container)."""
    return decode(b"\0\0\0\0" + data)[2]


def first(opts: list[tuple[int, bytes]], code: int) -> bytes:
    """Data of the first option with this code."""
    return next(data for c, data in opts if c == code)


def exchange(msg: bytes, params: d6.Dhcpv6Params = PARAMS) -> bytes | None:
    """Parse and answer one client message."""
    parsed = d6.parse_message(msg)
    assert parsed is not None
    return d6.build_reply(parsed, params)


def status(opts: list[tuple[int, bytes]]) -> int:
    """Status code carried in these options."""
    return struct.unpack("!H", first(opts, 13)[:2])[0]


def check_ia_with_our_address(ia: bytes, iaid: int = 0xABCD) -> None:
    """An IA_NA carrying our address as /128 with infinite times."""
    assert struct.unpack("!III", ia[:12]) == (iaid, 0xFFFFFFFF, 0xFFFFFFFF)
    inner = sub(ia[12:])
    assert [c for c, _ in inner] == [5]
    addr = inner[0][1]
    assert IPv6Address(addr[:16]) == ADDR
    assert struct.unpack("!II", addr[16:24]) == (0xFFFFFFFF, 0xFFFFFFFF)


def test_solicit_gets_advertise() -> None:
    reply = exchange(client(d6.SOLICIT, opt(8, b"\0\0"), ia_na(), opt(6, b"\x00\x17\x00\x18")))
    msg_type, xid, opts = decode(reply)
    assert (msg_type, xid) == (d6.ADVERTISE, XID)
    assert first(opts, 1) == CLIENT_DUID
    assert first(opts, 2) == SERVER_DUID == d6.make_duid_ll(OUR_MAC)
    assert first(opts, 7) == b"\xff"
    assert 14 not in {c for c, _ in opts}
    check_ia_with_our_address(first(opts, 3))


def test_solicit_with_rapid_commit_gets_reply() -> None:
    msg_type, _, opts = decode(exchange(client(d6.SOLICIT, ia_na(), opt(14))))
    assert msg_type == d6.REPLY
    assert first(opts, 14) == b""
    check_ia_with_our_address(first(opts, 3))


def test_solicit_with_server_id_or_without_client_id_ignored() -> None:
    assert exchange(client(d6.SOLICIT, ia_na(), opt(2, SERVER_DUID))) is None
    assert exchange(client(d6.SOLICIT, ia_na(), client_id=False)) is None


def test_request_with_our_server_id_gets_reply() -> None:
    msg_type, xid, opts = decode(exchange(client(d6.REQUEST, opt(2, SERVER_DUID), ia_na(7))))
    assert (msg_type, xid) == (d6.REPLY, XID)
    check_ia_with_our_address(first(opts, 3), iaid=7)
    assert first(opts, 23) == IPv6Address("2001:db8::53").packed


@pytest.mark.parametrize("server", [None, bytes.fromhex("000300010011223344ff")])
def test_request_without_our_server_id_ignored(server: bytes | None) -> None:
    extra = opt(2, server) if server else b""
    assert exchange(client(d6.REQUEST, extra, ia_na())) is None


def test_request_for_off_link_address_gets_not_on_link() -> None:
    reply = exchange(client(d6.REQUEST, opt(2, SERVER_DUID), ia_na(inner=iaaddr("2001:db8:9::1"))))
    ia = first(decode(reply)[2], 3)
    assert status(sub(ia[12:])) == d6.STATUS_NOT_ON_LINK
    assert 5 not in {c for c, _ in sub(ia[12:])}


def test_renew_and_rebind() -> None:
    renew = exchange(client(d6.RENEW, opt(2, SERVER_DUID), ia_na(inner=iaaddr(str(ADDR)))))
    check_ia_with_our_address(first(decode(renew)[2], 3))
    assert exchange(client(d6.RENEW, ia_na())) is None
    rebind = exchange(client(d6.REBIND, ia_na(inner=iaaddr("2001:db8:1:2::99", 5, 5))))
    ia = first(decode(rebind)[2], 3)
    inner = sub(ia[12:])
    assert [IPv6Address(d[:16]) for c, d in inner] == [ADDR, IPv6Address("2001:db8:1:2::99")]
    assert struct.unpack("!II", inner[1][1][16:]) == (0, 0)  # stale address withdrawn
    assert exchange(client(d6.REBIND, opt(2, SERVER_DUID), ia_na())) is None


def test_second_ia_na_gets_no_addrs_avail() -> None:
    opts = decode(exchange(client(d6.SOLICIT, ia_na(1), ia_na(2))))[2]
    ias = [d for c, d in opts if c == 3]
    check_ia_with_our_address(ias[0], iaid=1)
    assert struct.unpack("!I", ias[1][:4]) == (2,)
    assert status(sub(ias[1][12:])) == d6.STATUS_NO_ADDRS_AVAIL


def test_solicit_without_ia_na_gets_no_addrs_avail() -> None:
    opts = decode(exchange(client(d6.SOLICIT)))[2]
    assert status(opts) == d6.STATUS_NO_ADDRS_AVAIL
    assert 23 in {c for c, _ in opts}


@pytest.mark.parametrize(
    ("addr", "code"),
    [(str(ADDR), d6.STATUS_SUCCESS), ("2001:db8:1:2::77", d6.STATUS_SUCCESS),
     ("2001:db8:1:3::1", d6.STATUS_NOT_ON_LINK)],
)
def test_confirm(addr: str, code: int) -> None:
    msg_type, _, opts = decode(exchange(client(d6.CONFIRM, ia_na(inner=iaaddr(addr)))))
    assert msg_type == d6.REPLY
    assert status(opts) == code
    assert first(opts, 2) == SERVER_DUID and first(opts, 1) == CLIENT_DUID
    assert 3 not in {c for c, _ in opts}


def test_confirm_without_addresses_or_with_server_id_ignored() -> None:
    assert exchange(client(d6.CONFIRM, ia_na())) is None
    assert exchange(client(d6.CONFIRM, opt(2, SERVER_DUID), ia_na(inner=iaaddr(str(ADDR))))) is None


def test_information_request() -> None:
    msg_type, _, opts = decode(exchange(client(d6.INFORMATION_REQUEST, client_id=False)))
    assert msg_type == d6.REPLY
    assert [c for c, _ in opts] == [2, 23, 24]
    msg_type, _, opts = decode(exchange(client(d6.INFORMATION_REQUEST, opt(2, SERVER_DUID))))
    assert [c for c, _ in opts] == [2, 1, 23, 24]
    assert exchange(client(d6.INFORMATION_REQUEST, ia_na())) is None
    assert exchange(client(d6.INFORMATION_REQUEST, opt(2, b"\0\3\0\1abcdef"))) is None


def test_dns_and_domain_list_encoding() -> None:
    params = d6.Dhcpv6Params(
        our_mac=OUR_MAC, addr=ADDR,
        dns=(IPv6Address("2001:db8::53"), IPv6Address("fd00::1")),
        search=("example.com", "lab.example.com."),
    )
    opts = decode(exchange(client(d6.INFORMATION_REQUEST), params))[2]
    assert first(opts, 23) == IPv6Address("2001:db8::53").packed + IPv6Address("fd00::1").packed
    assert first(opts, 24) == b"\x07example\x03com\x00\x03lab\x07example\x03com\x00"
    assert first(opts, 24) == encode_names(("example.com", "lab.example.com"))


def test_empty_dns_and_search_omitted() -> None:
    params = d6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR)
    opts = decode(exchange(client(d6.SOLICIT, ia_na()), params))[2]
    assert {c for c, _ in opts} == {1, 2, 3, 7}


@pytest.mark.parametrize("msg_type", [d6.RELEASE, d6.DECLINE])
def test_release_and_decline_get_success(msg_type: int) -> None:
    opts = decode(exchange(client(msg_type, opt(2, SERVER_DUID), ia_na())))[2]
    assert status(opts) == d6.STATUS_SUCCESS


@pytest.mark.parametrize("msg_type", [d6.ADVERTISE, d6.REPLY, d6.RECONFIGURE, d6.RELAY_FORW, 0, 200])
def test_unknown_and_server_types_ignored(msg_type: int) -> None:
    assert exchange(client(msg_type, opt(2, SERVER_DUID), ia_na())) is None


def test_duid_llt() -> None:
    duid = d6.make_duid_llt(OUR_MAC, 0x12345678)
    assert duid == b"\x00\x01\x00\x01\x12\x34\x56\x78" + OUR_MAC
    params = d6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR, server_duid=duid)
    assert first(decode(exchange(client(d6.SOLICIT, ia_na()), params))[2], 2) == duid


def test_parse_message_fields() -> None:
    m = d6.parse_message(client(d6.REQUEST, opt(2, SERVER_DUID), opt(14), opt(6, b"\0\x17\0\x18"),
                                ia_na(9, opt(5, ADDR.packed + bytes(8) + opt(13, b"\0\0")))))
    assert m is not None
    assert (m.msg_type, m.xid, m.client_id, m.server_id) == (d6.REQUEST, XID, CLIENT_DUID, SERVER_DUID)
    assert m.rapid_commit and m.has_ia and m.oro == (23, 24)
    assert m.ia_na == (d6.IaNa(9, 0, 0, (ADDR,)),)  # T1 = T2 = 0 from ia_na()
    ia = next(o for o in m.options if o.code == 3)
    assert [c.code for c in ia.children] == [5]
    assert [c.code for c in ia.children[0].children] == [13]


@pytest.mark.parametrize(
    "msg",
    [
        b"",
        b"\x01\x00\x00",
        client(d6.SOLICIT) + b"\x00",
        client(d6.SOLICIT) + b"\x00\x03\x00\x10" + bytes(8),
        client(d6.SOLICIT, opt(3, bytes(11))),  # IA_NA shorter than fixed part
        client(d6.SOLICIT, opt(3, bytes(12) + b"\x00\x05\x00\x02xx")),  # short IAADDR
        client(d6.SOLICIT, opt(3, bytes(12) + b"\x00\x05\x00\x30" + bytes(24))),
        client(d6.SOLICIT, opt(1, CLIENT_DUID)),  # two client ids
        client(d6.SOLICIT, opt(2, b"\0\1"), opt(2, b"\0\1")),
        client(d6.SOLICIT, client_id=False) + opt(1, b"\x01"),
        client(d6.SOLICIT, client_id=False) + opt(1, bytes(131)),
        client(d6.SOLICIT, opt(6, b"\0\x17\0")),
        # IA_NA > IAADDR > IA_NA > ...: deeper than MAX_NESTING
        client(d6.SOLICIT, ia_na(inner=opt(5, bytes(24) + ia_na(inner=iaaddr("::1"))))),
    ],
)
def test_malformed_messages_rejected(msg: bytes) -> None:
    assert d6.parse_message(msg) is None


def test_bad_params_rejected() -> None:
    with pytest.raises(ValueError):
        d6.Dhcpv6Params(our_mac=b"\0", addr=ADDR)
    with pytest.raises(ValueError):
        d6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR, search=("a..b",))
    with pytest.raises(ValueError):
        d6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR, server_duid=bytes(131))


def test_fqdn_option_39_flags_follow_the_client() -> None:
    """--fqdn: option 39 in replies with configuration; O set when the client set S."""
    p = d6.Dhcpv6Params(our_mac=OUR_MAC, addr=ADDR, fqdn="box.example.org")
    name = b"\x03box\x07example\x03org\x00"
    _, _, opts = decode(exchange(client(d6.SOLICIT, ia_na()), p))
    assert first(opts, 39) == b"\x00" + name
    _, _, opts = decode(exchange(client(d6.SOLICIT, ia_na(), opt(39, b"\x01")), p))
    assert first(opts, 39) == b"\x02" + name
    _, _, opts = decode(exchange(client(d6.INFORMATION_REQUEST), p))
    assert first(opts, 39) == b"\x00" + name
    _, _, opts = decode(exchange(client(d6.SOLICIT, ia_na())))
    assert 39 not in {c for c, _ in opts}
