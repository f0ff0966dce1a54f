# SPDX-License-Identifier: GPL-2.0-or-later
"""--egress-deny and --egress-allow end to end, with a real pasta.

Everything runs in a HostNS: servers on its loopback (where the guest's
gateway address leads) and on the far host (192.0.2.2 / 2001:db8::2, in
the gateway namespace); the guest is the namespace pasta creates around a
shell script, which reports what it could reach. A refused TCP connect must
be refused (RST) quickly, not time out; a refused echo gets no reply; the
refusal shows once in pasta's log whatever the number of attempts.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.netenv import FAR_ADDR4, FAR_ADDR6, GW_ADDR4, GW_ADDR6, PASTA, PYTHON, HostNS

pytestmark = pytest.mark.integration

# In the guest: connect to ADDR PORT (N times), print "tcp ADDR PORT ok|refused|timeout|error SECONDS"
CONNECT = """
import socket, sys, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    t = time.monotonic()
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((addr, port))
        what = "ok"
    except (ConnectionRefusedError, ConnectionResetError):
        what = "refused"
    except TimeoutError:
        what = "timeout"
    except OSError as e:
        what = f"error:{e.errno}"
    s.close()
    print(f"tcp {addr} {port} {what} {time.monotonic() - t:.2f}", flush=True)
"""


def _tcp(addr: str, port: int, n: int = 1) -> str:
    return f"{PYTHON} -c '{CONNECT}' {addr} {port} {n}; "


def _ping(addr: str) -> str:
    six = "-6 " if ":" in addr else ""
    return f"ping {six}-c1 -W2 {addr} >/dev/null 2>&1 && echo ping {addr} ok || echo ping {addr} none; "


def _pasta(host: HostNS, args: list[str], script: str) -> subprocess.CompletedProcess:
    """pasta (not quiet: its log lines are checked) around script; --runas 0:
    the script runs the test's interpreter, under root's 0700 home."""
    return host.run([PASTA, "--config-net", "--runas", "0", *args, "--", "sh", "-c", script],
                    timeout=90, check=False)


def _results(out: str) -> dict[tuple[str, ...], tuple[str, float]]:
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["tcp"] and len(parts) == 5:
            res[("tcp", parts[1], parts[2])] = (parts[3], float(parts[4]))
        elif parts[:1] == ["ping"] and len(parts) == 3:
            res[("ping", parts[1])] = (parts[2], 0.0)
    return res


def test_deny_loopback_closes_the_mapped_gateway(host: HostNS) -> None:
    """--egress-deny 127.0.0.0/8 and ::1: a TCP connect to the gateway (which
    leads to a server on the host's loopback) is refused at once, its ping
    gets no reply; the far host still answers both. Without the rules the
    same gateway connect and ping work (the control)."""
    lo = host.serve("tcp-sink", "127.0.0.1")
    assert host.gw is not None
    far = host.gw.serve("tcp-sink", FAR_ADDR4)
    script = (_tcp(GW_ADDR4, lo.port, 3) + _tcp(FAR_ADDR4, far.port) + _ping(GW_ADDR4) + _ping(GW_ADDR6)
              + _ping(FAR_ADDR4) + _ping(FAR_ADDR6))
    r = _pasta(host, ["--egress-deny", "127.0.0.0/8", "--egress-deny", "::1"], script)
    res = _results(r.stdout)
    assert res[("tcp", GW_ADDR4, str(lo.port))][0] == "refused", r.stdout + r.stderr
    assert res[("tcp", GW_ADDR4, str(lo.port))][1] < 2.0, r.stdout  # a RST, not a timeout
    assert res[("tcp", FAR_ADDR4, str(far.port))][0] == "ok", r.stdout + r.stderr
    assert res[("ping", GW_ADDR4)][0] == "none" and res[("ping", GW_ADDR6)][0] == "none", r.stdout
    assert res[("ping", FAR_ADDR4)][0] == "ok" and res[("ping", FAR_ADDR6)][0] == "ok", r.stdout
    # each refused destination logged once (three connects, one line), and named
    lines = [ln for ln in r.stderr.splitlines() if "egress: refused" in ln]
    assert lines.count(f"egress: refused TCP to 127.0.0.1:{lo.port}: --egress-deny 127.0.0.0/8") == 1, r.stderr
    assert "egress: refused ICMP echo to 127.0.0.1: --egress-deny 127.0.0.0/8" in lines, r.stderr
    assert "egress: refused ICMP echo to [::1]: --egress-deny ::1" in lines, r.stderr
    control = _pasta(host, ["-q"], _tcp(GW_ADDR4, lo.port) + _ping(GW_ADDR4) + _ping(GW_ADDR6))
    res = _results(control.stdout)
    assert res[("tcp", GW_ADDR4, str(lo.port))][0] == "ok", control.stdout + control.stderr
    assert res[("ping", GW_ADDR4)][0] == "ok" and res[("ping", GW_ADDR6)][0] == "ok", control.stdout


def test_allow_one_port_refuses_the_rest(host: HostNS) -> None:
    """--egress-allow 127.0.0.1:PORT: the gateway's PORT gets through, another
    port of the same address is refused at once, and so is every echo (a rule
    with ports covers TCP and UDP only) and every other host."""
    ok = host.serve("tcp-sink", "127.0.0.1")
    other = host.serve("tcp-sink", "127.0.0.1")
    assert host.gw is not None
    far = host.gw.serve("tcp-sink", FAR_ADDR4)
    script = (_tcp(GW_ADDR4, ok.port) + _tcp(GW_ADDR4, other.port) + _tcp(FAR_ADDR4, far.port)
              + _ping(GW_ADDR4) + _ping(FAR_ADDR4))
    r = _pasta(host, ["-q", "--egress-allow", f"127.0.0.1:{ok.port}"], script)
    res = _results(r.stdout)
    assert res[("tcp", GW_ADDR4, str(ok.port))][0] == "ok", r.stdout + r.stderr
    got, took = res[("tcp", GW_ADDR4, str(other.port))]
    assert got == "refused" and took < 2.0, r.stdout + r.stderr
    assert res[("tcp", FAR_ADDR4, str(far.port))][0] == "refused", r.stdout
    assert res[("ping", GW_ADDR4)][0] == "none" and res[("ping", FAR_ADDR4)][0] == "none", r.stdout


def test_bad_spec_exits_1_before_anything_starts(host: HostNS) -> None:
    r = host.run([PASTA, "--config-net", "--egress-allow", "[2001:db8::1", "--", "true"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["pasta: Invalid --egress-allow rule '[2001:db8::1': missing ']'"]
