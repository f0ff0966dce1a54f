# SPDX-License-Identifier: GPL-2.0-or-later
"""DHCP server for the one guest: BOOTP/DHCP payloads in, replies out.

This module owns the payload of UDP datagrams to port 67: it parses a
client's BOOTREQUEST (RFC 2131 section 2, RFC 2132 options) and builds the
BOOTREPLY that hands the guest its single, fixed, infinite lease. It does no
I/O and keeps no state; the worker wraps the reply in UDP/IP/Ethernet and
picks the destination from the returned broadcast flag (see build_reply()).

RFC rules implemented, and where we simplify:

- RFC 2131 3.1/3.2/4.3: DISCOVER -> OFFER, REQUEST -> ACK, INFORM -> ACK
  with no 'yiaddr' and no lease time (RFC 2131 3.4, table 3). RELEASE and
  DECLINE need no answer: the lease is fixed, so there is nothing to free.
- NAK (an addition to passt, which never sends one): a REQUEST for an
  address other than ours gets a DHCPNAK when its server identifier is ours
  or absent (SELECTING with our id, INIT-REBOOT, RENEWING, REBINDING), so a
  guest that remembers an old lease from another network restarts at INIT at
  once instead of timing out. A REQUEST naming another server's identifier
  is for that server: no reply (RFC 2131 4.3.2).
- Options in replies (RFC 2132): 53, 54 (server id = gateway), 51 (lease,
  not in INFORM replies), 1, 3, 6 (if any resolver), 119 (domain search,
  RFC 3397, compressed, if any), 26 (interface MTU, if set), 61 (client
  identifier echoed, RFC 6842) and 121 (RFC 3442 classless static routes)
  only when the gateway lies outside the assigned subnet: a /32 route to
  the gateway with next hop 0.0.0.0, then the default route via the gateway;
  12 (host name, -H) and 81 (client FQDN, --fqdn: flags E, RCODEs 255,
  the name in wire format, RFC 4702) when given.
  Option 3 is sent as well for clients without RFC 3442 support. NAKs carry
  only 53, 54 and 61 (RFC 2131 table 3).
- Ordering: option 53 first (as ISC dhcpd and dnsmasq do, for simple
  clients), then the options the client listed in option 55 in that order,
  then the rest. The options area ends with option 255 and is padded so the
  BOOTP message is at least 300 octets (RFC 1542 2.1, RFC 951).
- Options longer than 255 octets are split into several instances of the
  same code (RFC 3396); option 119 pointers count from the start of the
  joined data, as RFC 3397 requires.
- Requests: instances of the same option are joined before use (RFC 3396).
  Option overload (52) is not honoured: 'sname' and 'file' are never read.
  The maximum message size (57) is not enforced; replies with short search
  lists stay well below the 548-octet minimum every client accepts.
- Only Ethernet hardware addresses (htype 1, hlen 6) are served.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network

from passt_sep.proto.dnsname import encode_names

from ..record import record

# Fixed BOOTP header (RFC 2131 figure 1): op, htype, hlen, hops, xid, secs,
# flags, ciaddr, yiaddr, siaddr, giaddr, chaddr[16], sname[64], file[128].
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = _HEADER.size  # 236
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 3, 99.130.83.99
OPTIONS_OFFSET = HEADER_LEN + len(MAGIC_COOKIE)  # 240
#: RFC 1542 2.1: a BOOTP message is at least 300 octets long, so
#: the options area (with the cookie) takes at least 64 octets.
MIN_MESSAGE_LEN = 300

BOOTREQUEST = 1
BOOTREPLY = 2
HTYPE_ETHERNET = 1
HLEN_ETHERNET = 6
FLAG_BROADCAST = 0x8000  # RFC 2131 2, figure 2

# Message types, option 53 (RFC 2132 9.6).
DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7
DHCPINFORM = 8

# Option codes (RFC 2132, RFC 3397, RFC 3442).
OPT_PAD = 0
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_MTU = 26
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAM_REQUEST_LIST = 55
OPT_CLIENT_ID = 61
OPT_CLIENT_FQDN = 81
FQDN_FLAG_E = 0x04  # option 81: the name is in DNS wire format (RFC 4702)
OPT_DOMAIN_SEARCH = 119
OPT_CLASSLESS_ROUTES = 121
OPT_END = 255

#: Longest client identifier we accept, and echo (RFC 6842). RFC 2132 9.14
#: gives no maximum beyond the option's own 255 octets; a longer one (joined
#: from several instances) would only let a client inflate our replies.
MAX_CLIENT_ID_LEN = 255
#: RFC 2132 5.1: the interface MTU option's minimum legal value.
MIN_MTU = 68
INFINITE_LEASE = 0xFFFFFFFF
_ZERO = IPv4Address(0)


@record(frozen=True)
class DhcpParams:
    """What the DHCP server hands out; fixed for the whole run.

    our_mac: our MAC address (6 octets), for the worker's Ethernet header.
    addr: the address assigned to the guest.
    prefix_len: prefix length of the assigned subnet (0-32).
    gateway: router, also our server identifier.
    dns: resolvers for option 6; empty means option 6 is not sent.
    search: search domains for option 119; empty means not sent.
    mtu: value for option 26; None means not sent.
    lease_time: option 51, in seconds; 0xFFFFFFFF is infinite.
    hostname: option 12 (-H); empty means not sent.
    fqdn: option 81 (--fqdn), flags E, RCODEs 255, wire-format name;
        empty means not sent.
    """

    our_mac: bytes
    addr: IPv4Address
    prefix_len: int
    gateway: IPv4Address
    dns: tuple[IPv4Address, ...] = ()
    search: tuple[str, ...] = ()
    mtu: int | None = None
    lease_time: int = INFINITE_LEASE
    hostname: str = ""
    fqdn: str = ""

    def __post_init__(self) -> None:
        """Reject values that cannot be put on the wire.

        :raises ValueError: on a bad MAC length, prefix length, MTU, lease
            time or search domain
        """
        if len(self.our_mac) != 6:
            raise ValueError("our_mac must be 6 octets")
        if not 0 <= self.prefix_len <= 32:
            raise ValueError("prefix_len must be within 0-32")
        if self.mtu is not None and not MIN_MTU <= self.mtu <= 0xFFFF:
            raise ValueError("mtu must be within 68-65535")
        if not 0 <= self.lease_time <= 0xFFFFFFFF:
            raise ValueError("lease_time must fit in 32 bits")
        encode_names(self.search)  # raises ValueError on a bad name
        encode_names((self.fqdn,))
        if not self.hostname.isascii() or len(self.hostname) > 255:
            raise ValueError("hostname must be ASCII, at most 255 octets")

    @property
    def network(self) -> IPv4Network:
        """The subnet of the assigned address."""
        return IPv4Network((self.addr, self.prefix_len), strict=False)

    @property
    def gateway_on_link(self) -> bool:
        """Whether the gateway lies inside the assigned subnet."""
        return self.gateway in self.network


@record(frozen=True)
class DhcpRequest:
    """A parsed BOOTREQUEST: the fields a reply needs.

    xid, secs, flags, hops, ciaddr, giaddr and chaddr (6 octets) are the
    BOOTP header fields; msg_type is option 53, requested_ip option 50,
    server_id option 54, param_request_list option 55 (in client order,
    possibly with repeats), client_id option 61 (raw).
    """

    xid: int
    secs: int
    flags: int
    hops: int
    ciaddr: IPv4Address
    giaddr: IPv4Address
    chaddr: bytes
    msg_type: int
    requested_ip: IPv4Address | None = None
    server_id: IPv4Address | None = None
    param_request_list: tuple[int, ...] = ()
    client_id: bytes | None = None

    @property
    def broadcast(self) -> bool:
        """Whether the client set the BROADCAST flag (RFC 2131 4.1)."""
        return bool(self.flags & FLAG_BROADCAST)


def _parse_options(payload: bytes) -> dict[int, bytes] | None:
    """Walk the options area after the magic cookie.

    Instances of the same code are joined (RFC 3396). A missing end option
    is tolerated when the data simply runs out on an option boundary.

    :param payload: the whole DHCP message
    :returns: code -> joined data, or None if an option runs past the end
    """
    opts: dict[int, bytes] = {}
    pos = OPTIONS_OFFSET
    end = len(payload)
    while pos < end:
        code = payload[pos]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            pos += 1
            continue
        if pos + 2 > end:
            return None
        length = payload[pos + 1]
        if pos + 2 + length > end:
            return None
        opts[code] = opts.get(code, b"") + payload[pos + 2 : pos + 2 + length]
        pos += 2 + length
    return opts


def _address_option(opts: dict[int, bytes], code: int) -> tuple[bool, IPv4Address | None]:
    """Read an option that holds exactly one IPv4 address.

    :param opts: parsed options
    :param code: the option code
    :returns: (valid, address or None if absent); valid is False when the
        option is present with a length other than 4
    """
    data = opts.get(code)
    if data is None:
        return True, None
    if len(data) != 4:
        return False, None
    return True, IPv4Address(data)


def parse_request(payload: bytes | memoryview) -> DhcpRequest | None:
    """Parse the UDP payload of a datagram a client sent to port 67.

    :param payload: the UDP payload
    :returns: the request, or None if it is not a well-formed DHCP
        BOOTREQUEST from an Ethernet client (truncated header, wrong magic
        cookie, option past the end, option 53 missing or not one octet,
        options 50/54 not four octets, option 61 over MAX_CLIENT_ID_LEN
        octets). Never raises.
    """
    data = bytes(payload)
    if len(data) < OPTIONS_OFFSET or data[HEADER_LEN:OPTIONS_OFFSET] != MAGIC_COOKIE:
        return None
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, _yiaddr, _siaddr, giaddr, chaddr,
     _sname, _file) = _HEADER.unpack_from(data)
    if op != BOOTREQUEST or htype != HTYPE_ETHERNET or hlen != HLEN_ETHERNET:
        return None
    opts = _parse_options(data)
    if opts is None:
        return None
    msg_type = opts.get(OPT_MSG_TYPE)
    if msg_type is None or len(msg_type) != 1:
        return None
    ok_req, requested_ip = _address_option(opts, OPT_REQUESTED_IP)
    ok_sid, server_id = _address_option(opts, OPT_SERVER_ID)
    if not (ok_req and ok_sid):
        return None
    client_id = opts.get(OPT_CLIENT_ID)
    if client_id is not None and len(client_id) > MAX_CLIENT_ID_LEN:
        return None
    return DhcpRequest(
        xid=xid,
        secs=secs,
        flags=flags,
        hops=hops,
        ciaddr=IPv4Address(ciaddr),
        giaddr=IPv4Address(giaddr),
        chaddr=chaddr[:HLEN_ETHERNET],
        msg_type=msg_type[0],
        requested_ip=requested_ip,
        server_id=server_id,
        param_request_list=tuple(opts.get(OPT_PARAM_REQUEST_LIST, b"")),
        client_id=client_id,
    )


def _encode_option(code: int, data: bytes) -> bytes:
    """Encode one option, split into 255-octet instances if needed (RFC 3396).

    :param code: option code
    :param data: option data (may be empty)
    :returns: the encoded instance(s)
    """
    if not data:
        return bytes((code, 0))
    out = bytearray()
    for start in range(0, len(data), 255):
        chunk = data[start : start + 255]
        out += bytes((code, len(chunk))) + chunk
    return bytes(out)


def classless_routes(params: DhcpParams) -> bytes:
    """Encode option 121 data for an off-link gateway (RFC 3442).

    :param params: server parameters
    :returns: a /32 route to the gateway with next hop 0.0.0.0 (on link),
        then the default route via the gateway
    """
    gw = params.gateway.packed
    return bytes((32,)) + gw + _ZERO.packed + bytes((0,)) + gw


def _reply_options(req: DhcpRequest, params: DhcpParams, reply_type: int) -> dict[int, bytes]:
    """Collect the option data for a reply, in default order.

    :param req: the parsed request
    :param params: server parameters
    :param reply_type: DHCPOFFER, DHCPACK or DHCPNAK
    :returns: code -> data, insertion order being the default order
    """
    opts: dict[int, bytes] = {
        OPT_MSG_TYPE: bytes((reply_type,)),
        OPT_SERVER_ID: params.gateway.packed,
    }
    if reply_type != DHCPNAK:
        if req.msg_type != DHCPINFORM:
            opts[OPT_LEASE_TIME] = params.lease_time.to_bytes(4, "big")
        opts[OPT_SUBNET_MASK] = params.network.netmask.packed
        opts[OPT_ROUTER] = params.gateway.packed
        if params.dns:
            opts[OPT_DNS] = b"".join(a.packed for a in params.dns)
        search = encode_names(params.search, compress=True)
        if search:
            opts[OPT_DOMAIN_SEARCH] = search
        if params.mtu is not None:
            opts[OPT_MTU] = params.mtu.to_bytes(2, "big")
        if not params.gateway_on_link:
            opts[OPT_CLASSLESS_ROUTES] = classless_routes(params)
        if params.hostname:
            opts[OPT_HOSTNAME] = params.hostname.encode("ascii")
        if params.fqdn:
            opts[OPT_CLIENT_FQDN] = bytes((FQDN_FLAG_E, 255, 255)) + encode_names((params.fqdn,))
    if req.client_id is not None:
        opts[OPT_CLIENT_ID] = req.client_id
    return opts


def _order_options(opts: dict[int, bytes], prl: tuple[int, ...]) -> list[int]:
    """Order option codes: 53, then those in option 55 in order, then the rest.

    :param opts: code -> data, in default order
    :param prl: the client's parameter request list
    :returns: option codes, each once
    """
    order = [OPT_MSG_TYPE]
    for code in (*prl, *opts):
        if code in opts and code not in order:
            order.append(code)
    return order


def _reply_type(req: DhcpRequest, params: DhcpParams) -> int | None:
    """Decide which message, if any, answers a request.

    :param req: the parsed request
    :param params: server parameters
    :returns: DHCPOFFER, DHCPACK, DHCPNAK or None for no reply
    """
    if req.msg_type == DHCPDISCOVER:
        return DHCPOFFER
    if req.msg_type == DHCPINFORM:
        return DHCPACK
    if req.msg_type != DHCPREQUEST:
        return None  # RELEASE, DECLINE, and server-to-client types
    if req.server_id is not None and req.server_id != params.gateway:
        return None  # the client chose another server (RFC 2131 4.3.2)
    wanted = req.requested_ip
    if wanted is None and req.ciaddr != _ZERO:
        wanted = req.ciaddr
    if wanted is None or wanted == params.addr:
        return DHCPACK
    return DHCPNAK


def build_reply(req: DhcpRequest, params: DhcpParams) -> tuple[bytes, bool] | None:
    """Build the reply to a parsed request.

    DISCOVER -> OFFER; REQUEST -> ACK if the address it asks for (option 50,
    else 'ciaddr') is ours or it asks for none, NAK if it asks for another
    address with our server identifier or none, nothing if it names another
    server; INFORM -> ACK without 'yiaddr' and lease time; RELEASE, DECLINE
    and anything else -> None. See the module docstring for the options.

    :param req: the parsed request
    :param params: server parameters
    :returns: (UDP payload, broadcast) or None. broadcast follows RFC 2131
        4.1: True for a NAK, or when 'ciaddr' is zero and the client set
        the BROADCAST flag; the worker then sends to 255.255.255.255 and
        ff:ff:ff:ff:ff:ff. Otherwise it unicasts to the client's MAC at
        unicast_destination(). Port 68 either way.
    """
    reply_type = _reply_type(req, params)
    if reply_type is None:
        return None
    if reply_type == DHCPNAK or req.msg_type == DHCPINFORM:
        yiaddr = _ZERO
    else:
        yiaddr = params.addr
    ciaddr = req.ciaddr if reply_type == DHCPACK else _ZERO
    header = _HEADER.pack(
        BOOTREPLY, HTYPE_ETHERNET, HLEN_ETHERNET, 0, req.xid, 0, req.flags,
        ciaddr.packed, yiaddr.packed, _ZERO.packed, req.giaddr.packed,
        req.chaddr.ljust(16, b"\0"), b"", b"",
    )
    opts = _reply_options(req, params, reply_type)
    body = bytearray(header + MAGIC_COOKIE)
    for code in _order_options(opts, req.param_request_list):
        body += _encode_option(code, opts[code])
    body.append(OPT_END)
    if len(body) < MIN_MESSAGE_LEN:
        body += bytes(MIN_MESSAGE_LEN - len(body))
    broadcast = reply_type == DHCPNAK or (req.ciaddr == _ZERO and req.broadcast)
    return bytes(body), broadcast


def unicast_destination(req: DhcpRequest, params: DhcpParams) -> IPv4Address:
    """IPv4 destination of a reply that is not broadcast (RFC 2131 4.1).

    :param req: the parsed request
    :param params: server parameters
    :returns: 'ciaddr' if the client filled it in, else the assigned address
    """
    return req.ciaddr if req.ciaddr != _ZERO else params.addr
