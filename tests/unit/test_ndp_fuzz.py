# SPDX-License-Identifier: GPL-2.0-or-later
"""Property tests of the NDP path: malformed ICMPv6/NDP frames never raise.

Frames go through ``proto.packet.parse_frame`` and, when they parse as
ICMPv6 of an NDP type, through ``proto.ndp.handle``, as the worker's loop
does. Inputs are valid neighbour and router solicitations (and the other
ICMPv6 types) with random options, then broken: truncated, option lengths
past the end, zero-length options, huge payload lengths and extension
header chains, random bytes over any field. Nothing may raise, and any
reply must parse back as a well-formed IPv6/ICMPv6 frame with a correct
checksum and sane NDP options.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from passt_sep.proto import ndp
from passt_sep.proto.checksum import checksum, pseudo_v6
from passt_sep.proto.dnsname import encode_names
from passt_sep.proto.packet import (
    ETH_HLEN,
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    Packet,
    eth_header,
    ipv6_header,
    parse_frame,
)

FUZZ = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

OUR_MAC = b"\x02\x11\x22\x33\x44\x55"
GUEST_MAC = b"\x02\xaa\xbb\xcc\xdd\xee"
OUR_LL = bytes.fromhex("fe800000000000000000000000000001")
GUEST_LL = bytes.fromhex("fe8000000000000000aabbfffeccddee")
GUEST = bytes.fromhex("20010db8000000000000000000000010")
PARAMS = [
    ndp.RaParams(our_mac=OUR_MAC, our_ll=OUR_LL, prefix=GUEST, mtu=65520,
                 dns=(bytes.fromhex("20010db8000000000000000000000053"),),
                 search=encode_names(["example.org", "b.example"])),
    ndp.RaParams(our_mac=OUR_MAC, our_ll=OUR_LL, prefix=GUEST, mtu=0, managed=False),
]

_ndp_option = st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40))
#: (kind, position, bytes): 0 truncate, 1 overwrite, 2 insert, 3 delete.
_mutation = st.tuples(st.integers(0, 3), st.integers(0, 200), st.binary(min_size=1, max_size=8))


def icmpv6(src: bytes, dst: bytes, body: bytes, hlim: int = 255, good_sum: bool = True,
           ext: bytes = b"", plen: int | None = None) -> bytes:
    """A whole frame; ext: extension headers (first next-header 0) before ICMPv6."""
    b = bytearray(body)
    if good_sum and len(b) >= 4:
        struct.pack_into("!H", b, 2, 0)
        struct.pack_into("!H", b, 2, checksum(b, pseudo_v6(src, dst, IPPROTO_ICMPV6, len(b))))
    nh = 0 if ext else IPPROTO_ICMPV6
    length = len(ext) + len(b) if plen is None else plen
    return (eth_header(b"\x33\x33\xff\x00\x00\x01", GUEST_MAC, ETH_P_IPV6)
            + ipv6_header(src, dst, nh, length & 0xFFFF, hlim) + ext + bytes(b))


def ndp_body(typ: int, target: bytes, options: list[tuple[int, int, bytes]]) -> bytes:
    """An NDP message; options given as (type, length in 8-byte units, data) verbatim."""
    if typ == ndp.RS:
        head = struct.pack("!BBHI", typ, 0, 0, 0)
    else:
        head = struct.pack("!BBHI16s", typ, 0, 0, 0, target)
    return head + b"".join(bytes([t, n]) + d for t, n, d in options)


def mutate(data: bytes, mutations: list[tuple[int, int, bytes]]) -> bytes:
    """Apply mutations, positions modulo the length (so every byte is reachable)."""
    buf = bytearray(data)
    for kind, where, chunk in mutations:
        pos = where % (len(buf) + 1)
        if kind == 0:
            del buf[pos:]
        elif kind == 1:
            buf[pos : pos + len(chunk)] = chunk
        elif kind == 2:
            buf[pos:pos] = chunk
        else:
            del buf[pos : pos + len(chunk)]
    return bytes(buf)


def check_reply(reply: bytes) -> None:
    """A reply must be a well-formed ICMPv6 NDP frame from us."""
    p = parse_frame(memoryview(reply))
    assert isinstance(p, Packet), p
    assert p.version == 6 and p.proto == IPPROTO_ICMPV6 and p.ttl == 255
    assert p.l4 + p.l4len == len(reply) == ETH_HLEN + 40 + p.l4len
    assert p.src_mac == OUR_MAC
    body = bytes(p.frame[p.l4 : p.l4 + p.l4len])
    assert checksum(body, pseudo_v6(p.src, p.dst, IPPROTO_ICMPV6, len(body))) == 0
    typ = body[0]
    assert typ in (ndp.NA, ndp.RA) and body[1] == 0
    assert typ == ndp.RA or p.dst[0] != 0xFF  # an NA answers a unicast solicitor
    assert p.src[0] != 0xFF and p.src != bytes(16)
    off = 24 if typ == ndp.NA else 16
    assert len(body) >= off
    while off < len(body):  # options tile the rest exactly, none of length 0
        assert off + 2 <= len(body) and body[off + 1] > 0
        off += 8 * body[off + 1]
    assert off == len(body)


def run(frame: bytes, params: ndp.RaParams, guest: bytes | None, ra: bool) -> None:
    """The worker's path for one frame; never raises, replies well formed."""
    p = parse_frame(memoryview(frame))
    if isinstance(p, str):
        return
    if p.version != 6 or p.proto != IPPROTO_ICMPV6 or p.l4len < 1:
        return
    if not 133 <= p.frame[p.l4] <= 137:
        return
    r = ndp.handle(p, params, guest, ra)
    if isinstance(r, bytes):
        check_reply(r)
    else:
        assert r is None or isinstance(r, str)


_src = st.sampled_from([GUEST_LL, GUEST, bytes(16), b"\xff\x02" + bytes(13) + b"\x01"])
_dst = st.sampled_from([bytes.fromhex("ff0200000000000000000001ff000001"), ndp.ALL_NODES,
                        OUR_LL, bytes.fromhex("ff020000000000000000000000000002")])
_target = st.sampled_from([GUEST, OUR_LL, bytes.fromhex("20010db8000000000000000000000001"),
                           b"\xff\x02" + bytes(14), bytes(16)])


@FUZZ
@given(typ=st.sampled_from([ndp.RS, ndp.RA, ndp.NS, ndp.NA, 137]), src=_src, dst=_dst,
       target=_target, options=st.lists(_ndp_option, max_size=6),
       hlim=st.sampled_from([255, 255, 64, 0]), good_sum=st.booleans(),
       mutations=st.lists(_mutation, max_size=4), params=st.sampled_from(PARAMS),
       guest=st.sampled_from([GUEST, None]), ra=st.booleans())
def test_mutated_ndp_frames(typ: int, src: bytes, dst: bytes, target: bytes,
                            options: list[tuple[int, int, bytes]], hlim: int, good_sum: bool,
                            mutations: list[tuple[int, int, bytes]], params: ndp.RaParams,
                            guest: bytes | None, ra: bool) -> None:
    frame = icmpv6(src, dst, ndp_body(typ, target, options), hlim, good_sum)
    run(frame, params, guest, ra)
    run(mutate(frame, mutations), params, guest, ra)


@FUZZ
@given(typ=st.sampled_from([ndp.RS, ndp.NS]), cut=st.integers(0, 200),
       plen=st.one_of(st.none(), st.integers(0, 0xFFFF)),
       opt_len=st.integers(0, 255), count=st.integers(0, 64), params=st.sampled_from(PARAMS))
def test_truncated_and_lying_lengths(typ: int, cut: int, plen: int | None, opt_len: int,
                                     count: int, params: ndp.RaParams) -> None:
    """Option lengths past the end, zero-length options, payload length lies, cuts."""
    options = [(1, opt_len, GUEST_MAC)] * count
    frame = icmpv6(GUEST_LL, ndp.ALL_NODES, ndp_body(typ, GUEST, options), plen=plen)
    run(frame, params, GUEST, True)
    run(frame[: ETH_HLEN + cut], params, GUEST, True)


@FUZZ
@given(chain=st.lists(st.tuples(st.sampled_from([0, 43, 60, 51, 44, 58]), st.integers(0, 255),
                                 st.binary(max_size=16)), min_size=1, max_size=12),
       typ=st.sampled_from([ndp.RS, ndp.NS]), params=st.sampled_from(PARAMS))
def test_extension_header_chains(chain: list[tuple[int, int, bytes]], typ: int,
                                 params: ndp.RaParams) -> None:
    """Hop-by-hop/routing/AH/fragment headers of any length before the NDP message."""
    ext = bytearray()
    for i, (_nh, hl, data) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else IPPROTO_ICMPV6
        ext += bytes([nxt, hl]) + data
    frame = icmpv6(GUEST_LL, ndp.ALL_NODES, ndp_body(typ, GUEST, []), ext=bytes(ext))
    # the first next-header field in the IPv6 header is 0 (hop-by-hop): vary it too
    for first in (0, chain[0][0]):
        f = bytearray(frame)
        f[ETH_HLEN + 6] = first
        run(bytes(f), params, GUEST, True)


@FUZZ
@given(data=st.binary(max_size=200), params=st.sampled_from(PARAMS))
def test_random_bytes_after_the_ipv6_header(data: bytes, params: ndp.RaParams) -> None:
    frame = (eth_header(ndp.ALL_NODES_MAC, GUEST_MAC, ETH_P_IPV6)
             + ipv6_header(GUEST_LL, ndp.ALL_NODES, IPPROTO_ICMPV6, len(data), 255) + data)
    run(frame, params, GUEST, True)


def test_valid_solicitations_are_answered() -> None:
    """The generators above do reach the answering paths."""
    for typ in (ndp.RS, ndp.NS):
        body = ndp_body(typ, OUR_LL, [(1, 1, GUEST_MAC)])
        frame = icmpv6(GUEST_LL, ndp.ALL_NODES, body)
        p = parse_frame(memoryview(frame))
        assert isinstance(p, Packet)
        r = ndp.handle(p, PARAMS[0], GUEST, True)
        assert isinstance(r, bytes)
        check_reply(r)
