# SPDX-License-Identifier: GPL-2.0-or-later
"""What a flow table may ask of the worker's loop: the contract, for type checkers.

``worker/loop.py``'s Worker owns the epoll loop, the tap, the broker client
and the tables. The tables (tcp.py, udp.py, icmp.py, splice.py,
udpsplice.py, flowsock.py) and the DHCP responders (dhcp.py) hold a
reference to it and use only what ``FlowLoop`` names: watch an fd (with
the reset that ends its flow if its handler raises) and stop watching it,
change the events of an fd they watch, count a dropped frame, send a
frame, ask the broker, record a fault, read the clock and the Config.
``Tables`` adds the other tables, for the two that hand flows across
(splice.py to the TCP and UDP tables, udp.py to the UDP splice path).

Naming the contract here, instead of importing Worker for annotations,
breaks the circle loop -> tables -> loop and says what a table does not
touch: the handler registry, the loop's counters and timers, and (outside
``Tables``) the other tables. worker/report.py reads the whole Worker on
purpose (it reports its state) and keeps Worker.

Never imported at run time: its users import it under TYPE_CHECKING
(``typing`` would cost the worker's start-up 3 ms).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Protocol

from ..config import Config
from .faults import Faults
from .loop import BrokerClient
from .tap import Tap
from .tcp import TcpFlows
from .udp import UdpFlows
from .udpsplice import UdpSplicer


class FlowLoop(Protocol):
    """The loop as a flow table sees it."""

    cfg: Config
    tap: Tap
    broker: BrokerClient
    guest_mac: bytes
    faults: Faults
    ep: select.epoll  # only ``modify`` on fds the table itself added

    def add(self, fd: int, handler: Callable[[int], None], events: int = ...,
            reset: Callable[[], None] | None = None) -> None: ...

    def remove(self, fd: int) -> None: ...

    def drop(self, reason: str) -> None: ...

    def send(self, frame: bytes) -> None: ...

    def now(self) -> float: ...


class Tables(FlowLoop, Protocol):
    """The loop, with the tables a flow may be handed across to."""

    tcp: TcpFlows
    udp: UdpFlows
    udpsplice: UdpSplicer
