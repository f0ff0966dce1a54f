# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's fd budget and its split between the tables.

Owns BUDGET, the number of fds the worker may hold at once, and the share
of it each table may use. Computed when the parent loads the worker's code
(before the fork; the sandboxed worker may not call getrlimit or
setrlimit): BUDGET is the parent's hard RLIMIT_NOFILE (the parent raises
its own soft limit to it before the fork), at most FD_BUDGET_MAX. The
worker child sets its RLIMIT_NOFILE, soft and hard, to BUDGET before it
isolates itself (``apply``; its seccomp policy has no setrlimit or
prlimit64 afterwards), so the kernel enforces the budget whatever the
worker's code does, and the tables size themselves from their shares, so
that no table can take the fds of another: a guest that opens UDP flows
up to their limit still leaves the TCP table its own fds.

The split (docs/architecture.md, "The fd budget"), of BUDGET - RESERVE:

============  =====  =============================================
table         share  what one entry holds
============  =====  =============================================
TCP (tap)     17/32  one socket (worker/tcp.py)
TCP splice    5/32   two sockets and a pipe pair: 6 (worker/splice.py)
UDP flows     4/32   a connected socket, and at most one port socket
                     per flow (worker/udp.py: half the share each)
UDP splice    1/32   two sockets (worker/udpsplice.py)
ICMP echo     1/32   one socket (worker/icmp.py, per family half)
listeners     4/32   -t, -u, -T, -U sockets announced (auto included)
============  =====  =============================================

TCP through the tap gets more than half: it is what guests hold most of
at once, and at a 20,000 budget (a common hard limit) its share still
holds 10,000 connections (bench/conns.py).

RESERVE is the rest: stdio (/dev/null), tap, broker and log sockets, pcap,
epoll, and the fds a table briefly holds beyond its entries (the reply of
a request in flight: ipc.QUOTAS has at most 120 in flight, each entry
counted once made). An fd that cannot be received for want of room (a
reply or announcement past the budget) arrives truncated; the worker's
broker client completes that request with EMFILE (worker/loop.py).
"""

from __future__ import annotations

FD_BUDGET_MAX = 131072  # passt's FLOW_MAX is 128k flows; beyond this the tables' caps apply anyway
RESERVE = 192  # fixed fds and a window of in-flight replies (ipc.QUOTAS: 120)
SHARES_OF = 32
SHARES = {"tcp": 17, "splice": 5, "udp": 4, "udp_splice": 1, "icmp": 1, "listeners": 4}


def _hard_nofile() -> int:
    try:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return FD_BUDGET_MAX if hard == resource.RLIM_INFINITY else hard
    except (ImportError, OSError, ValueError):
        return 1024


BUDGET = min(FD_BUDGET_MAX, _hard_nofile())  # (a tiny one: the tables' floors apply)
_AVAIL = max(0, BUDGET - RESERVE)
assert sum(SHARES.values()) == SHARES_OF
TCP_FDS = _AVAIL * SHARES["tcp"] // SHARES_OF
SPLICE_FDS = _AVAIL * SHARES["splice"] // SHARES_OF
UDP_FDS = _AVAIL * SHARES["udp"] // SHARES_OF
UDP_SPLICE_FDS = _AVAIL * SHARES["udp_splice"] // SHARES_OF
ICMP_FDS = _AVAIL * SHARES["icmp"] // SHARES_OF
LISTENER_FDS = _AVAIL * SHARES["listeners"] // SHARES_OF


def apply() -> int:
    """In the worker child, before isolation: RLIMIT_NOFILE soft and hard to BUDGET.

    Lowering the hard limit is allowed to anyone and cannot be undone
    without CAP_SYS_RESOURCE, which the worker never has. Returns BUDGET;
    raises OSError if the limit cannot be set (the worker must not run
    without its budget).
    """
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (BUDGET, BUDGET))
    return BUDGET
