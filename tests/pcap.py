# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading the pcap files pasta writes (--pcap), for tests that must show
what did or did not cross the tap."""

from __future__ import annotations

import struct
from pathlib import Path


def ports_in_pcap(path: Path, proto: int) -> set[int]:
    """Every port (source or destination) of the proto (6 TCP, 17 UDP) frames in a pcap file."""
    data = path.read_bytes()
    ports: set[int] = set()
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14:
            continue
        etype = struct.unpack_from("!H", frame, 12)[0]
        if etype == 0x0800 and len(frame) >= 34 and frame[23] == proto:
            l4 = 14 + (frame[14] & 15) * 4
        elif etype == 0x86DD and len(frame) >= 54 and frame[20] == proto:
            l4 = 54
        else:
            continue
        if len(frame) >= l4 + 4:
            ports.update(struct.unpack_from("!HH", frame, l4))
    return ports
