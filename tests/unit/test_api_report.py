# SPDX-License-Identifier: GPL-2.0-or-later
"""The control API's pure parts: the worker report's validation, slirp4netns's
argument reading, the ipc framing of queries and reports."""

from __future__ import annotations

import json

import pytest

from passt_sep import ipc
from passt_sep.setup.api import _num, validate_report

GOOD = {"stats": {"tcp": {"open": 1, "accepted": 3}}, "flows": [
    {"proto": "tcp", "guest": "10.0.2.100:80", "host": "10.0.2.2:4000", "state": "ESTABLISHED"}],
    "truncated": 0}


def test_a_good_report_passes() -> None:
    assert validate_report(json.dumps(GOOD).encode()) == GOOD


@pytest.mark.parametrize("bad", [
    b"not json",
    b"[" * 100000,  # the decoder's recursion limit: refused, not a crash
    b"[]",
    json.dumps({"stats": {}, "flows": []}).encode(),  # a key missing
    json.dumps(GOOD | {"extra": 1}).encode(),
    json.dumps(GOOD | {"truncated": -1}).encode(),
    json.dumps(GOOD | {"truncated": True}).encode(),
    json.dumps(GOOD | {"stats": {"tcp": {"open": -1}}}).encode(),
    json.dumps(GOOD | {"stats": {"tcp": {"open": 1.5}}}).encode(),
    json.dumps(GOOD | {"stats": {"tcp": {"open": "1"}}}).encode(),
    json.dumps(GOOD | {"stats": {"tcp": {f"k{i}": 0 for i in range(65)}}}).encode(),
    json.dumps(GOOD | {"stats": {f"g{i}": {} for i in range(33)}}).encode(),
    json.dumps(GOOD | {"stats": {"x" * 33: {}}}).encode(),
    json.dumps(GOOD | {"flows": [{"proto": "tcp"}]}).encode(),
    json.dumps(GOOD | {"flows": [dict(GOOD["flows"][0], state="x" * 65)]}).encode(),
    json.dumps(GOOD | {"flows": [dict(GOOD["flows"][0], state=1)]}).encode(),
    json.dumps(GOOD | {"flows": {}}).encode(),
])
def test_a_bad_report_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        validate_report(bad)


def test_numbers_read_as_slirp4netns_reads_them() -> None:
    assert _num(8080) == 8080
    assert _num(80.9) == 80  # a C cast
    for v in (None, "80", True, [80], float("inf"), float("nan")):
        assert _num(v) == 0


def test_query_and_report_framing() -> None:
    q = ipc.pack_query(513)
    assert ipc.unpack_query(q) == 513 and ipc.unpack_port_msg(q) is None  # not a port message
    rec = ipc.pack_report(513, b"{}")
    req, payload = ipc.unpack_report(rec)  # type: ignore[misc]
    assert req.op == ipc.OP_REPORT and req.port == 513 and payload == b"{}"
    assert ipc.unpack_report(rec[: ipc.REQ.size]) is None  # no payload
    assert ipc.unpack_report(ipc.pack_report(1, b"x" * (ipc.REPORT_MAX + 1))) is None
    assert ipc.unpack_report(ipc.pack_request(0, ipc.OP_TCP_CONNECT, 2) + b"{}") is None
    assert ipc.RECV_MAX == ipc.REQ.size + ipc.REPORT_MAX


def test_worker_report_encoder_is_json_dumps() -> None:
    """worker/report.dumps (no json package in the worker) writes exactly what
    json.dumps with compact separators writes, for everything a report holds."""
    from passt_sep.worker.report import dumps

    samples = [GOOD, {}, [], {"a": []}, {"k": {"x": 0, "y": 2**63, "z": -5}},
               {"s": "quote \" backslash \\ tab \t nl \n nul \x00 del \x7f é ü 😀 \u2028"},
               {"flows": [{"proto": "tcp", "guest": "[2001:db8::2]:443", "state": "ESTABLISHED"}] * 3,
                "truncated": 0, "b": True, "f": False, "n": None}]
    for s in samples:
        assert dumps(s) == json.dumps(s, separators=(",", ":")), s
    with pytest.raises(TypeError):
        dumps({"x": 1.5})
