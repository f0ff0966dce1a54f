# SPDX-License-Identifier: GPL-2.0-or-later
"""``passt-sep ctl SOCKET COMMAND [JSON-ARGS]``: a client of the control API (--api-socket).

Client side only; the server is setup/api.py. Sends one request,
``{"execute": COMMAND, "arguments": JSON-ARGS}``, half-closes, reads the
reply to the end and prints it. Exit status 0 on a ``return`` reply, 1 on
an ``error`` reply (its desc on stderr), 1 with one line when the socket
cannot be reached or the reply is not JSON.
"""

from __future__ import annotations

import json
import socket
import sys

TIMEOUT = 10.0  # seconds for the whole exchange
REPLY_MAX = 16 << 20

USAGE = """Usage: passt-sep ctl SOCKET COMMAND [JSON-ARGS]

COMMAND: add_hostfwd, list_hostfwd, remove_hostfwd, list_flows, stats
  passt-sep ctl /run/api.sock add_hostfwd \\
      '{"proto": "tcp", "host_addr": "0.0.0.0", "host_port": 8080, "guest_port": 80}'
  passt-sep ctl /run/api.sock remove_hostfwd '{"id": 1}'
"""


def _fail(msg: str) -> int:
    sys.stderr.write(f"passt-sep ctl: {msg}\n")
    return 1


def request(path: str, req: bytes) -> bytes:
    """One exchange with the server at path: the raw reply (OSError if unreachable)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(path)
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        parts: list[bytes] = []
        total = 0
        while total <= REPLY_MAX:
            chunk = s.recv(65536)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    return b"".join(parts)


def main(argv: list[str]) -> int:
    """Run the client; returns the exit status."""
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) not in (2, 3):
        sys.stderr.write(USAGE)
        return 1
    path, command = argv[0], argv[1]
    req: dict[str, object] = {"execute": command}
    if len(argv) == 3:
        try:
            req["arguments"] = json.loads(argv[2])
        except ValueError as e:
            return _fail(f"JSON-ARGS: {e}")
    try:
        raw = request(path, json.dumps(req).encode())
    except OSError as e:
        return _fail(f"{path}: {e.strerror or e}")
    try:
        rep = json.loads(raw)
    except ValueError:
        return _fail(f"{path}: reply is not JSON ({len(raw)} bytes)")
    sys.stdout.write(raw.decode("utf-8", "replace") + "\n")
    if isinstance(rep, dict) and isinstance(rep.get("error"), dict):
        return _fail(str(rep["error"].get("desc", "error")))
    if isinstance(rep, dict) and "return" in rep:
        return 0
    return _fail(f"{path}: reply has neither return nor error")
