#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Connections held at once, memory under them, and connection rate under a SYN flood.

For passt-sep's pasta and C pasta in the same run, each attached to a fresh
guest namespace inside a HostNS (tests/netenv.py: a user + network
namespace playing the host; every address here is its loopback or inside
its namespaces), with an echo server on the host's 127.0.0.1 that the guest
reaches through the gateway address:

1. PSS of each process at rest (passt-sep: parent and worker apart);
2. new connections per second (connect, one byte each way, close) for 3 s;
3. 1,000 connections opened and held, PSS; then up to --conns (10,000), PSS,
   and the fds of each process;
4. every held connection checked with 32 bytes each way (a sha256 over all
   sent and over all echoed must be equal);
5. new connections per second with all of them held;
   (the implementations inherit a hard RLIMIT_NOFILE of --nofile, 524288 by
   default as systemd gives services and user sessions; the machine's own
   may be lower and caps passt-sep's worker budget: worker/limits.py)
6. the same during a SYN flood from the guest (raw frames to the listening
   port, test_tcp_flood.py's generator), and PSS after it;
7. a bulk transfer (32 MiB, its sha256 checked by the sink) beside the held
   connections, before and during the flood, each on a connection made
   before the measurement starts: what an existing flow keeps.

One JSON line per implementation; --md prints a Markdown table.

    .venv/bin/python bench/conns.py [--conns 10000] [--impls passt-sep,pasta-c] [--md]
    .venv/bin/python bench/conns.py --impls passt-sep-passt,passt-c --md    # passt mode
    .venv/bin/python bench/conns.py --impls passt-sep@main,passt-sep,pasta-c --conns 1000  # a revision beside
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.test_tcp_flood import FLOOD  # noqa: E402
from tests.netenv import (  # noqa: E402
    GW_ADDR4,
    HOST_ADDR4,
    PASST,
    PASTA,
    PYTHON,
    TOOLS,
    GuestNS,
    HostNS,
    wait_for,
    worker_of,
)

BULK = 32 << 20
# connect to a tcp-sink, say so, wait for a line, send N bytes, read its digest: one JSON line
EXISTING = """
import hashlib, json, socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = socket.create_connection((addr, port), timeout=30)
print("CONNECTED", flush=True)
sys.stdin.readline()
data = bytes(range(256)) * (n // 256)
t0 = time.monotonic()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
reply = b""
while chunk := c.recv(4096):
    reply += chunk
f = reply.decode().split()
ok = f[:2] == [hashlib.sha256(data).hexdigest(), str(len(data))]
print(json.dumps({"ok": ok, "seconds": time.monotonic() - t0}))
"""
HOLD = str(Path(__file__).resolve().parent / "connhold.py")
COMMON = ["-f", "-q", "--config-net", "-t", "none", "-u", "none", "-T", "none", "-U", "none"]
IMPLS = {"passt-sep": [PASTA, *COMMON], "pasta-c": ["/usr/bin/pasta", "--runas", "0:0", *COMMON],
         "passt-sep-passt": [PASST, "-f", "-q", "-t", "none", "-u", "none"],
         "passt-c": ["/usr/bin/passt", "-f", "-q", "--runas", "0:0", "-t", "none", "-u", "none"]}
BRIDGE = str(TOOLS / "streambridge.py")


def start(name: str, host: HostNS, guest: GuestNS, tmp: Path) -> subprocess.Popen:
    """The implementation, attached to guest and the guest configured.

    pasta attaches to the namespace; passt listens on a UNIX socket that
    tests/tools/streambridge.py, in the guest, relays to a tap device there
    (the guest is a kernel either way; in passt mode through one more hop,
    the same for both passt implementations)."""
    cmd = IMPLS[name]
    if name not in ("passt-sep-passt", "passt-c"):
        p = host.popen(cmd + ["--netns", guest.netns_path], stderr=subprocess.PIPE, text=True)
        if not wait_for(lambda: HOST_ADDR4 in guest.run("ip -4 addr show eth0", check=False).stdout, 15):
            raise RuntimeError(f"{name}: the namespace was not configured")
        return p
    sock = tmp / f"{name}.socket"
    p = host.popen(cmd + ["-s", str(sock)], stderr=subprocess.PIPE, text=True)
    if not wait_for(sock.exists, 15):
        raise RuntimeError(f"{name}: no socket at {sock}")
    relay = guest.popen([PYTHON, BRIDGE, str(sock), "--seconds", "1800"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert relay.stdout is not None
    line = relay.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"{name}: relay: {line!r} {relay.stderr.read() if relay.stderr else ''}")
    return p


def pss_kib(pid: int) -> int:
    """Pss of one process; a process that cannot be read fails the run."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/smaps_rollup: no Pss line")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def ask(p: subprocess.Popen, cmd: str, timeout: float = 120) -> dict:
    """One command to a connhold client; its JSON answer (bounded wait)."""
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(cmd + "\n")
    p.stdin.flush()
    import select

    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        raise TimeoutError(f"connhold: no answer to {cmd!r} in {timeout} s")
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"connhold exited on {cmd!r}")
    return json.loads(line)


def measure(name: str, conns: int, flood_count: int, tmp: Path) -> dict:
    flood = tmp / "flood.py"
    flood.write_text(FLOOD)
    out: dict = {"impl": name, "case": "conns"}
    with HostNS() as host:
        srv = host.popen([PYTHON, HOLD, "server", "127.0.0.1", "0"], stdout=subprocess.PIPE, text=True)
        assert srv.stdout is not None
        port = int(srv.stdout.readline().split()[1])
        guest = host.guest()
        p = start(name, host, guest, tmp)
        guest.run(["ping", "-c1", "-W2", GW_ADDR4], check=False)   # the gateway's MAC, for the flood
        procs = {"parent": p.pid}
        if name.startswith("passt-sep"):
            procs["worker"] = worker_of(p.pid)

        def pss() -> dict[str, int]:
            return {k: pss_kib(v) for k, v in procs.items()}

        time.sleep(1.0)
        out["pss_0"] = pss()
        cl = guest.popen([PYTHON, HOLD, "client", GW_ADDR4, str(port)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
        out["rate_empty"] = ask(cl, "rate 3")
        first = min(1000, conns)
        out["open_1000"] = ask(cl, f"open {first}")
        time.sleep(0.5)
        out["pss_1000"] = pss()
        if conns > first:
            out[f"open_{conns}"] = ask(cl, f"open {conns - first}", timeout=300)
            time.sleep(0.5)
            out[f"pss_{conns}"] = pss()
        out["fds"] = {k: fds(v) for k, v in procs.items()}
        chk = ask(cl, "check", timeout=300)
        chk["sha_equal"] = chk["sha_sent"] == chk["sha_recv"]
        out["check"] = {k: chk[k] for k in ("ok", "bad", "sha_equal")}
        out["rate_held"] = ask(cl, "rate 3")
        sink = host.serve("tcp-sink", "127.0.0.1")

        def connected() -> subprocess.Popen:
            """A transfer whose connection exists before what is measured starts."""
            t = guest.popen([PYTHON, "-c", EXISTING, GW_ADDR4, str(sink.port), str(BULK)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert t.stdout is not None
            if t.stdout.readline().strip() != "CONNECTED":
                raise RuntimeError("the existing connection did not connect")
            return t

        def go(t: subprocess.Popen) -> dict:
            out, _ = t.communicate("go\n", timeout=90)
            lines = out.strip().splitlines()
            if not lines or not lines[-1].startswith("{"):  # the transfer died (timed out, reset)
                return {"ok": False, "gbit_s": 0.0}
            r = json.loads(lines[-1])
            return {"ok": r["ok"], "gbit_s": round(BULK * 8 / r["seconds"] / 1e9, 3) if r["ok"] else 0.0}

        out["bulk_held"] = go(connected())
        t = connected()
        fl = guest.popen([PYTHON, str(flood), "eth0", GW_ADDR4, HOST_ADDR4, str(port), str(flood_count)],
                         stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        out["bulk_flood"] = go(t)
        out["rate_flood"] = ask(cl, "rate 3")
        try:
            fout, _ = fl.communicate(timeout=120)
            out["flood"] = json.loads(fout.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, IndexError, ValueError) as e:
            out["flood"] = {"error": str(e)}
        out["pss_after_flood"] = pss()
        out["alive"] = p.poll() is None
    return out


def md(rows: list[dict], conns: int) -> str:
    def tot(d: dict) -> str:
        parts = "+".join(str(v) for v in d.values())
        return f"{sum(d.values())}" + (f" ({parts})" if len(d) > 1 else "")

    lines = ["| | " + " | ".join(r["impl"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for label, key in (("PSS KiB at rest", "pss_0"), ("PSS KiB, 1,000 held", "pss_1000"),
                       (f"PSS KiB, {conns:,} held", f"pss_{conns}"), ("PSS KiB after the flood",
                                                                     "pss_after_flood")):
        lines.append(f"| {label} | " + " | ".join(tot(r[key]) if key in r else "-" for r in rows) + " |")
    lines.append(f"| connections held (of {conns:,}) | "
                 + " | ".join(str(r.get(f"open_{conns}", r["open_1000"])["open"]) for r in rows) + " |")
    lines.append("| echoed, sha256 equal | " + " | ".join(
        f"{r['check']['ok']} / {'yes' if r['check']['sha_equal'] else 'NO'}" for r in rows) + " |")
    lines.append("| fds | " + " | ".join(tot(r["fds"]) for r in rows) + " |")
    for label, key in (("new conn/s, none held", "rate_empty"), (f"new conn/s, {conns:,} held", "rate_held"),
                       ("new conn/s during SYN flood", "rate_flood")):
        lines.append(f"| {label} | " + " | ".join(str(r[key]["per_s"]) for r in rows) + " |")
    for label, key in (("bulk Gbit/s beside them (sha256 ok)", "bulk_held"),
                       ("bulk Gbit/s during the flood", "bulk_flood")):
        lines.append(f"| {label} | " + " | ".join(
            f"{r[key]['gbit_s']} ({'ok' if r[key]['ok'] else 'FAILED'})" for r in rows) + " |")
    lines.append("| SYNs sent by the flood | " + " | ".join(
        str(r["flood"].get("sent", r["flood"])) for r in rows) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--flood", type=int, default=80000, help="SYNs the flood sends")
    ap.add_argument("--impls", default="passt-sep,pasta-c")
    ap.add_argument("--md", action="store_true")
    ap.add_argument("--nofile", type=int, default=524288,
                    help="hard RLIMIT_NOFILE the implementations inherit (systemd's default for "
                         "services and user sessions; raised only when we may); 0: leave it")
    a = ap.parse_args()
    import resource
    import tempfile

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if a.nofile and a.nofile > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, a.nofile))
        except (ValueError, OSError) as e:
            sys.stderr.write(f"conns: hard RLIMIT_NOFILE stays {hard}: {e}\n")
    print(json.dumps({"nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}), flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.impls.split(","):
            if name.startswith("passt-sep@"):  # a git revision's pasta (bench/compare.py)
                from bench.compare import frozen

                IMPLS[name] = [frozen(name.split("@", 1)[1]), *COMMON]
            r = measure(name, a.conns, a.flood, Path(tmp))
            rows.append(r)
            print(json.dumps(r), flush=True)
    if a.md:
        print(md(rows, a.conns))


if __name__ == "__main__":
    main()
