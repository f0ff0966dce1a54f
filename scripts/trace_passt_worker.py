#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Which system calls the passt worker makes: how policies/passt.policy is derived.

Runs ``passt -f --one-off`` under ``strace -f`` inside a HostNS, boots the
test guest of tests/vm against it with the workload of the VM tests
(DHCP, ping of the gateway and a far host, a 50 MiB HTTP download from the
host's loopback, an 8 MiB download from the guest through a -t forward) and, after qemu powers off (the client goes away, passt
exits), counts every system call the worker made after it loaded its
seccomp filter. Compare the list with policies/passt.policy:

    .venv/bin/python scripts/trace_passt_worker.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.strace_count import report  # noqa: E402
from tests.integration.test_passt_mode import (  # noqa: E402
    GUEST_SCRIPT,
    INBOUND_CLIENT,
    INBOUND_DONE_PORT,
    INBOUND_PORT,
)
from tests.netenv import PASST, PYTHON, HostNS, _readline, wait_for  # noqa: E402
from tests.vm import harness  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="passt-trace-") as d, HostNS() as host:
        work = Path(d)
        os.chmod(work, 0o755)
        (work / "blob").write_bytes(os.urandom(50 << 20))
        srv = host.popen([PYTHON, "-u", "-c", textwrap.dedent(f"""\
            import functools, http.server
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={d!r})
            s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
            print("READY", s.server_address[1], flush=True)
            s.serve_forever()
            """)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        port = int(_readline(srv, 10).split()[1])
        sock, out = work / "passt.socket", work / "strace.txt"
        p = host.popen(["strace", "-f", "-qq", "-o", str(out), PASST, "-f", "-q", "-1",
                        "-s", str(sock), "-t", f"{INBOUND_PORT},{INBOUND_DONE_PORT}"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for(sock.exists, 30):
            sys.exit("trace_passt_worker: passt did not come up")
        boot = harness.Boot(work, GUEST_SCRIPT.replace("HTTP_PORT", str(port)))

        def host_side() -> None:  # the inbound (-t) part of the workload
            if wait_for(lambda: "INBOUND-READY" in boot.text(), 200, 0.2):
                host.run([PYTHON, "-c", INBOUND_CLIENT], timeout=90, check=False)

        t = threading.Thread(target=host_side, daemon=True)
        t.start()
        boot.run(host.popen, str(sock), timeout=300)
        t.join(100)
        p.wait(30)
        text = out.read_text()
        if os.environ.get("KEEP_TRACE"):
            Path(os.environ["KEEP_TRACE"]).write_text(text)
        steps = boot.steps()
    print("guest steps:", {k: v.rc for k, v in steps.items()})
    report(text, "trace_passt_worker")


if __name__ == "__main__":
    main()
