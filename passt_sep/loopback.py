# SPDX-License-Identifier: GPL-2.0-or-later
"""Which peers are on a loopback: one rule for both processes.

Owns ``loopback_family``. The parent's acceptor (setup/acceptor.py) uses it
for the peers of the -t loopback twins, the worker for the peers it
splices (worker/splice.py) and the -u senders it relays to the
namespace's loopback (worker/udp.py, through worker/udpsplice.py). It lives below both, so the
worker loads no set-up module for it (it used to be in setup/sockpool.py).
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6


def loopback_family(host: str) -> int | None:
    """The family to splice a peer with or relay a sender with (AF_INET or
    AF_INET6), or None if ``host`` (text, as the kernel reports a peer,
    possibly with a ``%scope``) is not a loopback address. A v4-mapped
    127/8 peer of a dual-stack socket is an IPv4 peer."""
    host = host.split("%")[0]
    if host.startswith("127."):
        return AF_INET
    if host == "::1":
        return AF_INET6
    if host.startswith("::ffff:127."):
        return AF_INET
    return None
