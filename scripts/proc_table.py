# SPDX-License-Identifier: GPL-2.0-or-later
"""Read back from /proc what each process of a running pasta holds, beside C pasta.

Run as root: ``.venv/bin/python scripts/proc_table.py``. It makes a test
host (tests/netenv.py: a user and network namespace with documentation
addresses, nothing leaves it), starts passt-sep's pasta and Debian's C
pasta (when /usr/bin/pasta exists) each around ``sleep``, started by root
and by an unprivileged user (uid 65534), reads their /proc files and prints
one Markdown table: uid, capabilities and in which user namespace they
count, seccomp mode and filter count, no_new_privs, fds held and what they
point at, the root directory. docs/security.md shows its output.

Every value is read, never assumed: a file that cannot be read prints as
"unreadable" and makes the script exit 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.netenv import PASTA, HostNS, proc_children, stop_process, wait_for  # noqa: E402

C_PASTA = "/usr/bin/pasta"
UNREADABLE = "unreadable"
failures: list[str] = []


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        failures.append(f"{path}: {e.strerror}")
        return UNREADABLE


def _status(pid: int) -> dict[str, str]:
    text = _read(f"/proc/{pid}/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _fds(pid: int) -> str:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError as e:
        failures.append(f"/proc/{pid}/fd: {e.strerror}")
        return UNREADABLE
    kinds: dict[str, int] = {}
    for n in names:
        try:
            t = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        kind = t.split(":", 1)[0] if ":" in t and not t.startswith("/") else t
        if kind.startswith("/proc/") and "/net/" in kind:
            kind = "/proc/…/net/*"  # the namespace's tables, opened at set-up for `auto` scans
        if kind.startswith("/dev/pts") or kind.startswith("/dev/tty"):
            kind = "TERMINAL " + kind
        kinds[kind] = kinds.get(kind, 0) + 1
    return f"{len(names)}: " + ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(kinds.items()))


def _row(label: str, pid: int, host_userns: int) -> str:
    st = _status(pid)
    uid = st.get("Uid", UNREADABLE).split()[0] if st else UNREADABLE
    try:
        userns = os.stat(f"/proc/{pid}/ns/user").st_ino
        where = "host's" if userns == host_userns else "its own"
    except OSError as e:
        failures.append(f"/proc/{pid}/ns/user: {e.strerror}")
        where = UNREADABLE
    try:
        root = os.listdir(f"/proc/{pid}/root")
        rootdir = "empty" if not root else f"host's ({len(root)} entries)"
    except OSError as e:
        failures.append(f"/proc/{pid}/root: {e.strerror}")
        rootdir = UNREADABLE
    cap = st.get("CapEff", UNREADABLE)
    seccomp = st.get("Seccomp", UNREADABLE)
    filters = st.get("Seccomp_filters", "?")
    return (f"| {label} | {uid} | {cap} ({where} user ns) | {seccomp} ({filters} filter) | "
            f"{st.get('NoNewPrivs', UNREADABLE)} | {rootdir} | {_fds(pid)} |")


def _start(host: HostNS, argv: list[str]) -> tuple[subprocess.Popen, int]:
    p = host.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def sleeping() -> bool:
        for k in proc_children(p.pid):
            try:
                if open(f"/proc/{k}/comm").read().strip() == "sleep":
                    return True
            except OSError:
                pass
        return False

    if not wait_for(sleeping, 15):
        stop_process(p)
        raise SystemExit(f"proc_table: {argv[0]} did not start its command")
    time.sleep(0.5)  # set-up's last steps (the switch, the filter) come right after the command starts
    return p, p.pid


def main() -> int:
    """Print the table; exit 1 if anything could not be read."""
    rows = ["| process | uid (host) | CapEff | Seccomp | NoNewPrivs | root | fds |",
            "|---|---|---|---|---|---|---|"]
    with HostNS() as host:
        host_userns = os.stat(host.userns_path).st_ino
        runs = [("passt-sep", [PASTA, "--config-net", "-q", "--", "sleep", "30"])]
        if os.path.exists(C_PASTA):
            runs.append(("C pasta", [C_PASTA, "--config-net", "-q", "--", "sleep", "30"]))
        for who, prefix in (("root", []), ("uid 65534", ["setpriv", "--reuid", "65534", "--regid", "65534",
                                                          "--clear-groups"])):
            for name, argv in runs:
                if name == "C pasta" and not prefix:
                    # Debian's C pasta (2023-03) started by root switches to nobody, then
                    # fails to map itself in its user namespace and never runs the command
                    rows.append(f"| {name} (by {who}) | does not start its command here | | | | | |")
                    continue
                p, pid = _start(host, prefix + argv)
                try:
                    kids = proc_children(pid)
                    rows.append(_row(f"{name} (by {who}): parent" if name == "passt-sep" else
                                     f"{name} (by {who})", pid, host_userns))
                    for k in kids:
                        if _status(k).get("Seccomp") == "2" and name == "passt-sep":
                            rows.append(_row(f"{name} (by {who}): worker", k, host_userns))
                finally:
                    stop_process(p)
    print("\n".join(rows))
    if failures:
        print("\nproc_table: could not read: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
