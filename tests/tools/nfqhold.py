#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Reorder packets: hold every packet of an NFQUEUE for a while, then accept it.

    nfqhold.py QUEUE [QUEUE...] [--delay SECONDS] [--seconds LIMIT]

Binds the given netfilter queues (raw nfnetlink_queue, stdlib only; run it in
the network namespace whose nftables rules ``queue`` packets to them) and
gives each packet its NF_ACCEPT verdict ``--delay`` seconds after it came
(default 0.005): packets sent meanwhile overtake it, which is the reordering.
Nothing is dropped or changed (only metadata is copied to us, and GSO packets
stay whole). Prints ``READY`` once bound; on SIGTERM or after ``--seconds``
(default 600) it accepts everything still held, and prints one JSON line
``{"held": N, "max_held": M}``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO = 1, 4
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
_NLH = struct.Struct("=IHHII")
_NFG = struct.Struct("=BBH")  # family, version, res_id (big endian, packed by hand)


def _attr(kind: int, payload: bytes) -> bytes:
    a = struct.pack("=HH", 4 + len(payload), kind) + payload
    return a + bytes(-len(a) & 3)


def _msg(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = _NFG.pack(socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _NLH.pack(_NLH.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def _attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + 4 <= end:
        ln, kind = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4 : off + ln]
        off += (ln + 3) & ~3
    return out


def bind(s: socket.socket, queue: int) -> None:
    """Bind queue, copy metadata only, keep GSO packets whole, fail open."""
    flags = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN
    attrs = (_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0))
             + _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
             + _attr(NFQA_CFG_MASK, struct.pack("!I", flags))
             + _attr(NFQA_CFG_FLAGS, struct.pack("!I", flags)))
    s.send(_msg(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq=queue + 1))
    s.settimeout(5)
    reply = s.recv(65536)
    s.settimeout(None)
    ln, kind = struct.unpack_from("=IH", reply)
    if kind == NLMSG_ERROR:
        err = struct.unpack_from("=i", reply, _NLH.size)[0]
        if err:
            raise OSError(-err, f"binding queue {queue}: {os.strerror(-err)}")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("queues", type=int, nargs="+")
    p.add_argument("--delay", type=float, default=0.005)
    p.add_argument("--seconds", type=float, default=600.0)
    a = p.parse_args(argv)
    socks = []
    for q in a.queues:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((0, 0))
        bind(s, q)
        s.setblocking(False)
        socks.append((s, q))
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("READY", flush=True)
    held: list[tuple[float, int, int, int]] = []  # (release time, order, fd index, id)
    total = max_held = order = 0
    end = time.monotonic() + a.seconds
    poller = select.poll()
    for s, _ in socks:
        poller.register(s, select.POLLIN)

    def verdict(i: int, pid: int) -> None:
        s, q = socks[i]
        with_hdr = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))
        try:
            s.send(_msg(NFQNL_MSG_VERDICT, q, with_hdr))
        except OSError:
            pass  # the packet is gone (interface down): nothing to release

    while not stop and time.monotonic() < end:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, _, i, pid = heapq.heappop(held)
            verdict(i, pid)
        timeout = max(0.0, held[0][0] - now) if held else 0.2
        try:
            ready = poller.poll(int(timeout * 1000) + 1)
        except InterruptedError:
            continue
        for fd, _ in ready:
            i = next(k for k, (s, _) in enumerate(socks) if s.fileno() == fd)
            s = socks[i][0]
            for _ in range(256):
                try:
                    buf = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # ENOBUFS: the kernel dropped some (fail open accepts them)
                    break
                off = 0
                while off + _NLH.size <= len(buf):
                    ln, kind = struct.unpack_from("=IH", buf, off)
                    if ln < _NLH.size:
                        break
                    if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        at = _attrs(buf, off + _NLH.size + _NFG.size, off + ln)
                        hdr = at.get(NFQA_PACKET_HDR)
                        if hdr is not None:
                            pid = struct.unpack_from("!I", hdr)[0]
                            order += 1
                            heapq.heappush(held, (time.monotonic() + a.delay, order, i, pid))
                            total += 1
                            max_held = max(max_held, len(held))
                    off += (ln + 3) & ~3
    for _, _, i, pid in held:
        verdict(i, pid)
    print(json.dumps({"held": total, "max_held": max_held}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
