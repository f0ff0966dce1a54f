# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCPv6 server for the one guest: client messages in, replies out.

This module owns the payload of UDP datagrams to port 547: it parses client
messages (RFC 8415 sections 8 and 21) and builds the ADVERTISE or REPLY
that gives the guest its single address (a /128 in an IA_NA, lifetimes
infinite), resolvers (RFC 3646 option 23) and search list (option 24). It
does no I/O and keeps no state; the worker checks the multicast
destination, wraps the reply and sends it to the client's source address.

RFC 8415 rules implemented (section 16 validation, section 18.3 replies),
and where we simplify:

- A Client Identifier is required, except in INFORMATION-REQUEST, and is
  echoed. Messages with two Client or two Server Identifiers are discarded.
- SOLICIT must not carry a Server Identifier; it gets an ADVERTISE with
  Preference 255 (so the client asks at once, 18.2.1), or a REPLY with
  Rapid Commit (option 14) if the client asked for it (RFC 8415 18.3.1).
- REQUEST, RENEW, RELEASE and DECLINE must carry our Server Identifier;
  REBIND and CONFIRM must carry none; INFORMATION-REQUEST may carry ours
  and no IA option at all. Failing any of these: no reply.
- IA_NA: the first IA_NA gets our address, T1 = T2 = infinite, IAADDR
  lifetimes infinite; any further IA_NA gets status NoAddrsAvail, because
  one address cannot sit in two IAs. In REQUEST, an IA_NA naming an
  address outside our /64 gets status NotOnLink instead (18.3.2). In
  RENEW/REBIND, addresses the client holds that are not ours come back
  with zero lifetimes (18.3.4/18.3.5). IA_TA and IA_PD are not served
  and are ignored; when a SOLICIT or REQUEST has no IA_NA at all, the
  reply carries a top-level NoAddrsAvail status (and the other options).
  Only the first MAX_IA_NA IA_NAs are answered, and at most
  MAX_STALE_ADDRESSES stale addresses per IA_NA, so that a reply stays
  about as small as the request.
- CONFIRM: Success if every address in its IA_NAs is on our /64, else
  NotOnLink; a CONFIRM with no address at all gets no reply (18.3.3).
- RELEASE and DECLINE: the lease is fixed, so a REPLY with status Success.
- Options 23 and 24 are sent, when non-empty, in every reply that carries
  configuration, whether or not the client listed them in its Option
  Request option (as passt does). Names in 24 are never compressed. So is
  option 39 (client FQDN, RFC 4704) with --fqdn: flags 0, or O when the
  client's own option 39 set S.
- Relay messages (RELAY-FORW) and unknown types are not answered.
- Option parsing is bounds-checked and recursive only into the options
  that encapsulate others (IA_NA, IA_TA, IAADDR, IA_PD, IAPREFIX), at most
  MAX_NESTING levels deep; anything malformed drops the whole message.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address, IPv6Network

from passt_sep.proto.dnsname import encode_names

from ..record import field, record

# Message types (RFC 8415 section 7.3).
SOLICIT = 1
ADVERTISE = 2
REQUEST = 3
CONFIRM = 4
RENEW = 5
REBIND = 6
REPLY = 7
RELEASE = 8
DECLINE = 9
RECONFIGURE = 10
INFORMATION_REQUEST = 11
RELAY_FORW = 12
RELAY_REPL = 13

# Option codes (RFC 8415 section 21, RFC 3646).
OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IA_TA = 4
OPT_IAADDR = 5
OPT_ORO = 6
OPT_PREFERENCE = 7
OPT_ELAPSED_TIME = 8
OPT_STATUS_CODE = 13
OPT_RAPID_COMMIT = 14
OPT_DNS_SERVERS = 23
OPT_DOMAIN_LIST = 24
OPT_IA_PD = 25
OPT_CLIENT_FQDN = 39
OPT_IAPREFIX = 26

# Status codes (RFC 8415 section 21.13).
STATUS_SUCCESS = 0
STATUS_UNSPEC_FAIL = 1
STATUS_NO_ADDRS_AVAIL = 2
STATUS_NO_BINDING = 3
STATUS_NOT_ON_LINK = 4
STATUS_USE_MULTICAST = 5

#: Options that hold other options, and the length of the fixed part that
#: precedes them: IA_NA (IAID, T1, T2), IA_TA (IAID), IAADDR (address,
#: preferred and valid lifetimes), IA_PD (as IA_NA), IAPREFIX (lifetimes,
#: prefix length, prefix).
CONTAINERS: dict[int, int] = {
    OPT_IA_NA: 12,
    OPT_IA_TA: 4,
    OPT_IAADDR: 24,
    OPT_IA_PD: 12,
    OPT_IAPREFIX: 25,
}
#: The deepest legal nesting is IA_NA > IAADDR > Status Code (three levels,
#: top level included); anything deeper is malformed.
MAX_NESTING = 3
#: RFC 8415 11.1: a DUID is a 2-octet type and at most 128 octets more.
MIN_DUID_LEN = 2
MAX_DUID_LEN = 130
INFINITY = 0xFFFFFFFF
#: Prefix length on which CONFIRM and REQUEST addresses count as on link.
ON_LINK_PREFIX_LEN = 64
#: IA_NAs answered per message, and addresses per IA_NA given back with
#: zero lifetimes. The guest gets one address whatever it asks; these only
#: keep a reply from outgrowing the request (a 16-octet IA_NA would
#: otherwise earn a 40-octet answer) or a 16-bit option length.
MAX_IA_NA = 16
MAX_STALE_ADDRESSES = 8

DUID_LLT = 1
DUID_LL = 3
HWTYPE_ETHERNET = 1

_OPT_HDR = struct.Struct("!HH")


def make_duid_ll(mac: bytes) -> bytes:
    """Build a DUID-LL from an Ethernet MAC address (RFC 8415 11.4).

    :param mac: 6-octet MAC address
    :returns: the DUID
    """
    return struct.pack("!HH", DUID_LL, HWTYPE_ETHERNET) + bytes(mac)


def make_duid_llt(mac: bytes, time: int) -> bytes:
    """Build a DUID-LLT from a MAC address and a time (RFC 8415 11.2).

    :param mac: 6-octet MAC address
    :param time: seconds since 2000-01-01 00:00 UTC, modulo 2^32
    :returns: the DUID
    """
    return struct.pack("!HHI", DUID_LLT, HWTYPE_ETHERNET, time & 0xFFFFFFFF) + bytes(mac)


@record(frozen=True)
class Dhcpv6Params:
    """What the DHCPv6 server hands out; fixed for the whole run.

    our_mac: our MAC address (6 octets).
    addr: the global address assigned to the guest (as a /128).
    dns: resolvers for option 23; empty means not sent.
    search: search domains for option 24; empty means not sent.
    server_duid: our DUID; empty (the default) means make_duid_ll(our_mac).
    fqdn: the Client FQDN option 39 (--fqdn, RFC 4704) in every reply that
        carries 23/24; empty means not sent.
    """

    our_mac: bytes
    addr: IPv6Address
    dns: tuple[IPv6Address, ...] = ()
    search: tuple[str, ...] = ()
    server_duid: bytes = field(default=b"")
    fqdn: str = ""

    def __post_init__(self) -> None:
        """Fill in the default DUID and reject values unfit for the wire.

        :raises ValueError: on a bad MAC or DUID length, a bad search
            domain, or resolvers or domains over one option's 65535 octets
        """
        if len(self.our_mac) != 6:
            raise ValueError("our_mac must be 6 octets")
        if not self.server_duid:
            object.__setattr__(self, "server_duid", make_duid_ll(self.our_mac))
        if not MIN_DUID_LEN <= len(self.server_duid) <= MAX_DUID_LEN:
            raise ValueError("server_duid must be 2-130 octets")
        # encode_names() raises ValueError on a bad name.
        encode_names((self.fqdn,))
        if len(encode_names(self.search)) > 0xFFFF or len(self.dns) * 16 > 0xFFFF:
            raise ValueError("dns or search list too long for one option")

    @property
    def prefix(self) -> IPv6Network:
        """The /64 our assigned address lies on."""
        return IPv6Network((self.addr, ON_LINK_PREFIX_LEN), strict=False)


@record(frozen=True)
class Dhcpv6Option:
    """One option: code, raw data, and for containers the options inside."""

    code: int
    data: bytes
    children: tuple[Dhcpv6Option, ...] = ()


@record(frozen=True)
class IaNa:
    """An IA_NA from a client: IAID, T1, T2 and the addresses it names."""

    iaid: int
    t1: int
    t2: int
    addresses: tuple[IPv6Address, ...] = ()


@record(frozen=True)
class Dhcpv6Message:
    """A parsed client message.

    msg_type and xid (3 octets) come from the header; options is the full
    option tree in message order; the rest are shortcuts into it.
    """

    msg_type: int
    xid: bytes
    options: tuple[Dhcpv6Option, ...]
    client_id: bytes | None = None
    server_id: bytes | None = None
    rapid_commit: bool = False
    ia_na: tuple[IaNa, ...] = ()
    has_ia: bool = False
    oro: tuple[int, ...] = ()


def _parse_options(data: bytes, depth: int) -> tuple[Dhcpv6Option, ...] | None:
    """Parse a run of options, recursing into containers.

    :param data: the option bytes, exactly filled by whole options
    :param depth: nesting level of this run, 1 for the top level
    :returns: the options, or None if one runs past the end, a container is
        shorter than its fixed part, or nesting exceeds MAX_NESTING
    """
    if depth > MAX_NESTING:
        return None
    options: list[Dhcpv6Option] = []
    pos = 0
    while pos < len(data):
        if pos + _OPT_HDR.size > len(data):
            return None
        code, length = _OPT_HDR.unpack_from(data, pos)
        pos += _OPT_HDR.size
        if pos + length > len(data):
            return None
        body = data[pos : pos + length]
        pos += length
        children: tuple[Dhcpv6Option, ...] = ()
        fixed = CONTAINERS.get(code)
        if fixed is not None:
            if length < fixed:
                return None
            if length > fixed:
                parsed = _parse_options(body[fixed:], depth + 1)
                if parsed is None:
                    return None
                children = parsed
        options.append(Dhcpv6Option(code, body, children))
    return tuple(options)


def _ia_na(opt: Dhcpv6Option) -> IaNa:
    """Read an IA_NA option already checked by _parse_options().

    :param opt: the IA_NA option
    :returns: its IAID, T1, T2 and the addresses of its IAADDR options
    """
    iaid, t1, t2 = struct.unpack_from("!III", opt.data)
    addrs = tuple(IPv6Address(c.data[:16]) for c in opt.children if c.code == OPT_IAADDR)
    return IaNa(iaid, t1, t2, addrs)


def parse_message(payload: bytes | memoryview) -> Dhcpv6Message | None:
    """Parse the UDP payload of a datagram a client sent to port 547.

    :param payload: the UDP payload
    :returns: the message, or None if it is malformed: shorter than the
        4-octet header, an option past the end or badly nested, two Client
        or Server Identifiers, a DUID of a bad length, an odd-length Option
        Request option. Relay messages are parsed like any other; the
        caller or build_reply() decides. Never raises.
    """
    data = bytes(payload)
    if len(data) < 4:
        return None
    options = _parse_options(data[4:], 1)
    if options is None:
        return None
    client_ids = [o.data for o in options if o.code == OPT_CLIENTID]
    server_ids = [o.data for o in options if o.code == OPT_SERVERID]
    if len(client_ids) > 1 or len(server_ids) > 1:
        return None
    for duid in client_ids + server_ids:
        if not MIN_DUID_LEN <= len(duid) <= MAX_DUID_LEN:
            return None
    oro = b"".join(o.data for o in options if o.code == OPT_ORO)
    if len(oro) % 2:
        return None
    return Dhcpv6Message(
        msg_type=data[0],
        xid=data[1:4],
        options=options,
        client_id=client_ids[0] if client_ids else None,
        server_id=server_ids[0] if server_ids else None,
        rapid_commit=any(o.code == OPT_RAPID_COMMIT for o in options),
        ia_na=tuple(_ia_na(o) for o in options if o.code == OPT_IA_NA),
        has_ia=any(o.code in (OPT_IA_NA, OPT_IA_TA, OPT_IA_PD) for o in options),
        oro=tuple(struct.unpack(f"!{len(oro) // 2}H", oro)),
    )


def _option(code: int, data: bytes = b"") -> bytes:
    """Encode one option.

    :param code: option code
    :param data: option data, at most 65535 octets
    :returns: the encoded option
    """
    return _OPT_HDR.pack(code, len(data)) + data


def _status(code: int, message: str = "") -> bytes:
    """Encode a Status Code option (RFC 8415 21.13).

    :param code: status code
    :param message: UTF-8 text for humans
    :returns: the encoded option
    """
    return _option(OPT_STATUS_CODE, struct.pack("!H", code) + message.encode())


def _iaaddr(addr: IPv6Address, lifetime: int) -> bytes:
    """Encode an IAADDR option with equal preferred and valid lifetimes.

    :param addr: the address
    :param lifetime: both lifetimes, in seconds
    :returns: the encoded option
    """
    return _option(OPT_IAADDR, addr.packed + struct.pack("!II", lifetime, lifetime))


def _ia_na_option(iaid: int, inner: bytes) -> bytes:
    """Encode an IA_NA option with infinite T1 and T2.

    :param iaid: the client's IAID, echoed
    :param inner: encoded options inside it
    :returns: the encoded option
    """
    return _option(OPT_IA_NA, struct.pack("!III", iaid, INFINITY, INFINITY) + inner)


def _on_link(addr: IPv6Address, params: Dhcpv6Params) -> bool:
    """Whether an address lies on our /64.

    :param addr: an address from the client
    :param params: server parameters
    :returns: True if on link
    """
    return addr in params.prefix


def _ia_options(msg: Dhcpv6Message, params: Dhcpv6Params) -> bytes:
    """Encode the IA_NA answers for SOLICIT, REQUEST, RENEW and REBIND.

    :param msg: the client message
    :param params: server parameters
    :returns: encoded options: one IA_NA per client IA_NA, or a top-level
        NoAddrsAvail status if the client sent none
    """
    if not msg.ia_na:
        return _status(STATUS_NO_ADDRS_AVAIL, "only IA_NA is served")
    out = bytearray()
    for index, ia in enumerate(msg.ia_na[:MAX_IA_NA]):
        if index > 0:
            inner = _status(STATUS_NO_ADDRS_AVAIL, "one address per client")
        elif msg.msg_type == REQUEST and not all(_on_link(a, params) for a in ia.addresses):
            inner = _status(STATUS_NOT_ON_LINK, "address not on link")
        else:
            inner = _iaaddr(params.addr, INFINITY)
            if msg.msg_type in (RENEW, REBIND):
                stale = [a for a in dict.fromkeys(ia.addresses) if a != params.addr]
                for addr in stale[:MAX_STALE_ADDRESSES]:
                    inner += _iaaddr(addr, 0)
        out += _ia_na_option(ia.iaid, inner)
    return bytes(out)


def _config_options(params: Dhcpv6Params, msg: Dhcpv6Message | None = None) -> bytes:
    """Encode options 23, 24 and 39 when there is something to put in them.

    Option 39's flags: O (the server overrode the client) when the client
    asked with S to update the AAAA record itself, as passt sets it;
    otherwise none.

    :param params: server parameters
    :param msg: the client's message (its option 39, if any)
    :returns: the encoded options, possibly empty
    """
    out = b""
    if params.dns:
        out += _option(OPT_DNS_SERVERS, b"".join(a.packed for a in params.dns))
    names = encode_names(params.search)
    if names:
        out += _option(OPT_DOMAIN_LIST, names)
    if params.fqdn:
        asked = [o.data for o in (msg.options if msg else ()) if o.code == OPT_CLIENT_FQDN]
        flags = 0x02 if asked and asked[0][:1] and asked[0][0] & 0x01 else 0x00
        out += _option(OPT_CLIENT_FQDN, bytes((flags,)) + encode_names((params.fqdn,)))
    return out


def _valid(msg: Dhcpv6Message, params: Dhcpv6Params) -> bool:
    """Apply the RFC 8415 section 16 checks on identifiers and IAs.

    :param msg: the client message
    :param params: server parameters
    :returns: True if the message deserves an answer from us
    """
    ours = msg.server_id == params.server_duid
    if msg.msg_type == INFORMATION_REQUEST:
        return not msg.has_ia and (msg.server_id is None or ours)
    if msg.client_id is None:
        return False
    if msg.msg_type in (SOLICIT, CONFIRM, REBIND):
        return msg.server_id is None
    if msg.msg_type in (REQUEST, RENEW, RELEASE, DECLINE):
        return ours
    return False


def build_reply(msg: Dhcpv6Message, params: Dhcpv6Params) -> bytes | None:
    """Build the reply to a parsed client message.

    SOLICIT -> ADVERTISE (REPLY with Rapid Commit if the client asked);
    REQUEST, RENEW, REBIND -> REPLY with the IA_NA answers; CONFIRM -> REPLY
    with status Success or NotOnLink; INFORMATION-REQUEST -> REPLY with
    options 23/24 and no IA; RELEASE, DECLINE -> REPLY with status Success.
    See the module docstring for the validation rules.

    :param msg: the parsed message
    :param params: server parameters
    :returns: the UDP payload of the reply, or None if none is due
    """
    if not _valid(msg, params):
        return None
    reply_type = REPLY
    body = bytearray()
    if msg.msg_type in (SOLICIT, REQUEST, RENEW, REBIND):
        if msg.msg_type == SOLICIT:
            if msg.rapid_commit:
                body += _option(OPT_RAPID_COMMIT)
            else:
                reply_type = ADVERTISE
                body += _option(OPT_PREFERENCE, b"\xff")
        body += _ia_options(msg, params)
        body += _config_options(params, msg)
    elif msg.msg_type == CONFIRM:
        addrs = [a for ia in msg.ia_na for a in ia.addresses]
        if not addrs:
            return None
        if all(_on_link(a, params) for a in addrs):
            body += _status(STATUS_SUCCESS, "all addresses on link")
        else:
            body += _status(STATUS_NOT_ON_LINK, "address not on link")
    elif msg.msg_type == INFORMATION_REQUEST:
        body += _config_options(params, msg)
    else:  # RELEASE, DECLINE
        body += _status(STATUS_SUCCESS, "")
    head = bytes((reply_type,)) + msg.xid + _option(OPT_SERVERID, params.server_duid)
    if msg.client_id is not None:
        head += _option(OPT_CLIENTID, msg.client_id)
    return head + bytes(body)
