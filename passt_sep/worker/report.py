# SPDX-License-Identifier: GPL-2.0-or-later
"""The worker's report for the control API (list_flows, stats), on the parent's request.

Sandboxed only. The parent sends ipc.QUERY_MAGIC with a query id; the
worker answers with one ipc.OP_REPORT record: the request header, then a
JSON payload of at most ipc.REPORT_MAX bytes (the flow list is cut to
fit, ``truncated`` says how many were left out). The parent validates its
shape and bounds (setup/api.py, ``validate_report``): anything else is a
protocol violation. Nothing here runs on the data path.
"""

from __future__ import annotations

import ipaddress
from _json import encode_basestring_ascii

from .. import ipc
from .splice import KIND_IN
from .tcp import STATE_NAMES
from .udpsplice import KIND_NS

TYPE_CHECKING = False  # (typing costs the worker's start-up 3 ms with contextlib, warnings; mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from .loop import Worker

_PROTO = {-1: "arp", 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
FIELD_MAX = 64  # characters of one flow field (the parent refuses longer)


def _ep(raw: bytes, port: int | str) -> str:
    try:
        a = ipaddress.ip_address(bytes(raw))
    except ValueError:
        return f"?:{port}"
    return f"[{a}]:{port}" if a.version == 6 else f"{a}:{port}"


def _flow(proto: str, guest: str, host: str, state: str) -> dict[str, str]:
    return {"proto": proto[:FIELD_MAX], "guest": guest[:FIELD_MAX], "host": host[:FIELD_MAX],
            "state": state[:FIELD_MAX]}


def flows(w: Worker) -> list[dict[str, str]]:
    """Every flow the worker holds: TCP (tap and spliced), UDP (tap and spliced), ICMP echo."""
    out: list[dict[str, str]] = []
    for c in list(w.tcp.conns.values()):
        g, gp, r, rp = c.key
        state = STATE_NAMES.get(c.state, "?") + (" inbound" if c.inbound else "")
        out.append(_flow("tcp", _ep(g, gp), _ep(r, rp), state))
    for s in list(w.splice.conns):  # s.port: the target, on the side the connection goes to
        state = "ESTABLISHED" if s.connected else "CONNECTING"
        if s.kind == KIND_IN:  # -t: from the host's loopback to the namespace's
            out.append(_flow("tcp-splice", f"loopback:{s.port}", "loopback", state + " inbound"))
        else:  # -T: from the namespace's loopback to the host's
            out.append(_flow("tcp-splice", "loopback", f"loopback:{s.port}", state))
    for f in list(w.udp.flows.values()):
        guest = f.guest or w.udp.guest.get(f.version) or b""
        out.append(_flow("udp", _ep(guest, f.gport), _ep(f.dst, f.dport),
                         "inbound" if f.peer is not None else "outbound"))
    for u in list(w.udpsplice.flows.values()):
        sender = f"{u.sender[0]}:{u.sender[1]}"
        if u.kind == KIND_NS:  # -U: a namespace sender to the host's loopback
            out.append(_flow("udp-splice", sender, f"loopback:{u.target}", "outbound"))
        else:  # -u: a host loopback sender to the namespace's loopback
            out.append(_flow("udp-splice", f"loopback:{u.target}", sender, "inbound"))
    for p in list(w.pings.flows.values()):
        out.append(_flow("icmp", f"id {p.ident}", _ep(p.dst, "echo"), "active"))
    return out


def stats(w: Worker) -> dict[str, dict[str, int]]:
    """Counters by group, integers only."""
    def ints(d: dict[str, Any]) -> dict[str, int]:
        return {k: v for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}

    frames = {_PROTO.get(k, f"ip_proto_{k}"): v for k, v in list(w.proto_frames.items())[:60]}
    frames["total"] = w.frames_in
    nbytes = {_PROTO.get(k, f"ip_proto_{k}"): v for k, v in list(w.proto_bytes.items())[:60]}
    nbytes["tap_moved"] = w.bytes_moved
    return {
        "frames_from_guest": ints(frames),
        "bytes_from_guest": ints(nbytes),
        "drops": ints(dict(sorted(w.drops.items())[:63])) | {"total": sum(w.drops.values())},
        "tcp": ints(w.tcp.stats) | {"open": len(w.tcp.conns)},
        "tcp_splice": ints(w.splice.stats) | {"open": len(w.splice.conns), "listeners": len(w.splice.listeners)},
        "udp": ints(w.udp.stats) | {"open": len(w.udp.flows)},
        "udp_splice": ints(w.udpsplice.stats) | {"open": len(w.udpsplice.flows)},
        "icmp": ints(w.pings.stats) | {"open": len(w.pings.flows)},
        "worker_broker": {"refused_over_quota": w.broker.refused, "lost_fds": w.broker.lost_fds},
    }


def dumps(o: object) -> str:
    """``json.dumps(o, separators=(",", ":"))`` for what a report holds (dicts
    with str keys, lists, str, int), byte for byte; the json package itself
    imports re, and the two cost the worker's start-up 2-4 ms (issue 19)."""
    if isinstance(o, str):
        return encode_basestring_ascii(o)  # type: ignore[no-any-return]
    if isinstance(o, bool) or o is None:
        return "true" if o is True else "false" if o is False else "null"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in o.items()) + "}"
    if isinstance(o, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in o) + "]"
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def build(w: Worker, qid: int) -> bytes:
    """The OP_REPORT record answering query qid, at most ipc.REPORT_MAX bytes of payload."""
    fl = flows(w)
    st = stats(w)
    total = len(fl)
    while True:
        payload = dumps({"stats": st, "flows": fl, "truncated": total - len(fl)}).encode()
        if len(payload) <= ipc.REPORT_MAX:
            return ipc.pack_report(qid, payload)
        fl = fl[: len(fl) * 3 // 4]  # about 140 bytes a flow: a few rounds at most
