# SPDX-License-Identifier: GPL-2.0-or-later
"""Domain name lists in DNS wire format, shared by DHCP, DHCPv6 and NDP.

This module owns the encoding of search lists as sequences of RFC 1035
section 3.1 names (length-prefixed labels ending with a zero-length root
label), as carried by:

- DHCP option 119, Domain Search (RFC 3397): names may be compressed with
  RFC 1035 section 4.1.4 pointers whose offsets count from the start of the
  option data as a whole (all instances concatenated, RFC 3396);
- DHCPv6 option 24, Domain List (RFC 3646, RFC 8415 section 10) and the NDP
  DNSSL option (RFC 8106): the same names, but never compressed.

Rules and simplifications:

- Names are ASCII text. A single trailing dot is accepted and dropped; an
  empty name or "." is the root. Labels are 1-63 octets and a whole encoded
  name at most 255 octets (RFC 1035 section 2.3.4). Anything else is a
  configuration error and raises ValueError: these names come from our own
  configuration, never from a guest.
- Compression reuses any earlier suffix of at least one label, compared
  case-insensitively (DNS names are case-insensitive, RFC 4343). Only
  suffixes that start below offset 0x4000 can be pointed to (14-bit offsets).
- The decoder is for guest-independent checks and tests as much as for any
  caller; it is bounds-checked, accepts only pointers to an earlier offset
  (so no loop is possible) and returns None for anything malformed instead
  of raising.
"""

from __future__ import annotations

from collections.abc import Iterable

#: RFC 1035 section 2.3.4: labels are 63 octets or less.
MAX_LABEL_LEN = 63
#: RFC 1035 section 2.3.4: names are 255 octets or less on the wire.
MAX_NAME_LEN = 255
#: A compression pointer holds a 14-bit offset.
MAX_POINTER_OFFSET = 0x3FFF
#: Upper bound on pointers followed while decoding one name. Pointers must
#: go strictly backwards, so a loop is impossible anyway; this only caps
#: the work a hostile buffer can cause (a 255-octet name has at most 127
#: labels, so it can never need more jumps than that).
MAX_POINTER_JUMPS = 128


def split_name(name: str) -> tuple[str, ...]:
    """Split and validate one domain name.

    :param name: ASCII domain name, optionally with one trailing dot
    :returns: its labels, empty for the root
    :raises ValueError: on non-ASCII text, empty or over-long labels, or a
        name longer than 255 octets once encoded
    """
    try:
        name.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"domain name {name!r} is not ASCII") from exc
    if name.endswith(".") and name != ".":
        name = name[:-1]
    if name in ("", "."):
        return ()
    labels = tuple(name.split("."))
    for label in labels:
        if not label:
            raise ValueError(f"domain name {name!r} has an empty label")
        if len(label) > MAX_LABEL_LEN:
            raise ValueError(f"domain name {name!r} has a label over 63 octets")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME_LEN:
        raise ValueError(f"domain name {name!r} is longer than 255 octets")
    return labels


def encode_names(names: Iterable[str], compress: bool = False) -> bytes:
    """Encode a list of domain names back to back in DNS wire format.

    :param names: domain names, see split_name() for what is accepted
    :param compress: use RFC 1035 compression pointers (DHCP option 119);
        offsets are relative to the start of the returned bytes
    :returns: the concatenated encoded names (empty for an empty list)
    :raises ValueError: if a name is invalid
    """
    out = bytearray()
    # Lower-cased label suffix -> offset where it was written in full.
    seen: dict[tuple[str, ...], int] = {}
    for name in names:
        labels = split_name(name)
        for i in range(len(labels)):
            suffix = tuple(label.lower() for label in labels[i:])
            if compress and suffix in seen:
                out += (0xC000 | seen[suffix]).to_bytes(2, "big")
                break
            if compress and len(out) <= MAX_POINTER_OFFSET:
                seen[suffix] = len(out)
            raw = labels[i].encode("ascii")
            out.append(len(raw))
            out += raw
        else:
            out.append(0)
    return bytes(out)


def decode_names(data: bytes | memoryview, allow_compression: bool = False) -> tuple[str, ...] | None:
    """Decode domain names written back to back in DNS wire format.

    :param data: the encoded names (for option 119, all instances joined)
    :param allow_compression: accept RFC 1035 pointers, relative to data[0]
    :returns: the names without trailing dot ("" for the root), or None if
        the data is malformed (truncated, bad label type, forward or
        looping pointer, name over 255 octets, non-ASCII label)
    """
    buf = bytes(data)
    names: list[str] = []
    pos = 0
    while pos < len(buf):
        name, pos_after = _decode_one(buf, pos, allow_compression)
        if name is None:
            return None
        names.append(name)
        pos = pos_after
    return tuple(names)


def _decode_one(buf: bytes, start: int, allow_compression: bool) -> tuple[str | None, int]:
    """Decode the one name that starts at offset start.

    :param buf: whole buffer, pointer offsets are relative to its start
    :param start: offset of the first label
    :param allow_compression: whether pointers are allowed
    :returns: (name or None if malformed, offset just after the name as
        written at start, that is after its first pointer or root label)
    """
    labels: list[str] = []
    wire_len = 1
    pos = start
    end_of_name = -1
    jumps = 0
    while True:
        if pos >= len(buf):
            return None, 0
        length = buf[pos]
        if length == 0:
            if end_of_name < 0:
                end_of_name = pos + 1
            return ".".join(labels), end_of_name
        if length & 0xC0 == 0xC0:
            if not allow_compression or pos + 1 >= len(buf):
                return None, 0
            target = ((length & 0x3F) << 8) | buf[pos + 1]
            jumps += 1
            # Only strictly backwards pointers: no loop can exist then.
            if target >= pos or jumps > MAX_POINTER_JUMPS:
                return None, 0
            if end_of_name < 0:
                end_of_name = pos + 2
            pos = target
            continue
        if length & 0xC0:
            return None, 0  # 0x40 and 0x80 label types are not defined
        raw = buf[pos + 1 : pos + 1 + length]
        if len(raw) != length:
            return None, 0
        wire_len += length + 1
        if wire_len > MAX_NAME_LEN:
            return None, 0
        try:
            label = raw.decode("ascii")
        except UnicodeDecodeError:
            return None, 0
        if "." in label:
            return None, 0
        labels.append(label)
        pos += 1 + length
