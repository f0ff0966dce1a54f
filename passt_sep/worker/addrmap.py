# SPDX-License-Identifier: GPL-2.0-or-later
"""The host-side addresses the guest cannot see as they are.

Sandboxed only. Owns, per family and as bytes, the addresses that the
address mappings of the Config name (``host_lo``: leads to the host's
loopback, the gateway unless --no-map-gw, or --map-host-loopback;
``guest_map``: --map-guest-addr, leads to the guest's own address on the
host) and the one rule for a host-side peer: as what it appears to the
guest. worker/tcp.py, udp.py and icmp.py read them from here.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

LOOP6 = bytes(15) + b"\x01"
ANY4, ANY6 = bytes(4), bytes(16)


def is_loopback(version: int, raw: bytes) -> bool:
    """127.0.0.0/8 or ::1."""
    return raw[0] == 127 if version == 4 else raw == LOOP6


class HostAddrs:
    """Per family (4, 6): loopback-mapped, --map-guest-addr, configured and gateway addresses."""

    def __init__(self, cfg: Any) -> None:
        self.lo: dict[int, bytes | None] = {4: None, 6: None}
        self.guest_map: dict[int, bytes | None] = {4: None, 6: None}
        self.own: dict[int, bytes | None] = {4: None, 6: None}  # the guest's (the host's own unless -a)
        self.gw: dict[int, bytes | None] = {4: None, 6: None}
        for version, fa in ((4, cfg.v4), (6, cfg.v6)):
            if fa is not None:
                self.lo[version] = fa.host_lo.packed if fa.host_lo is not None else None
                self.guest_map[version] = fa.guest_map.packed if fa.guest_map is not None else None
                self.own[version] = fa.addr.packed
                self.gw[version] = fa.gw.packed

    def seen_as(self, version: int, raw: bytes, guest: bytes | None = None) -> bytes | None:
        """The address a host-side peer at raw appears as to the guest.

        The configured address, and the one the guest last used
        (``guest``), appear as --map-guest-addr if given, else as the
        loopback-mapped address; loopback and the unspecified address as
        the loopback-mapped one; anyone else as themselves. A peer that no
        mapping covers (``--no-map-gw`` and nothing given instead) appears
        as the gateway, the address our frames come from, as in passt
        (``fwd_nat_from_host`` falls back to ``our_tap_addr``); None only
        without a gateway of that family.
        """
        if raw == self.own[version] or raw == guest:
            return self.guest_map[version] or self.lo[version] or self.gw[version]
        if is_loopback(version, raw) or raw == (ANY4 if version == 4 else ANY6):
            return self.lo[version] or self.gw[version]
        return raw
