# SPDX-License-Identifier: GPL-2.0-or-later
"""bench/compare.py: tabulating a results file and drawing its plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    ("pasta-c", "tcp_in_tap", "Gbit/s", 10.0), ("passt-sep", "tcp_in_tap", "Gbit/s", 15.0),
    ("loopback", "tcp_direct", "Gbit/s", 40.0), ("pasta-c", "startup", "ms", 25.0),
    ("passt-sep", "startup", "ms", 100.0), ("slirp4netns", "tcp_in_tap", "Gbit/s", 5.0),
]


def test_from_file_tabulates_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps({"impl": i, "case": c, "unit": u, "n": 1, "median": m}) + "\n"
                           for i, c, u, m in ROWS))
    out = tmp_path / "p.png"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--from", str(src),
                        "--plot", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("tcp_in_tap"))
    assert "1.50" in line and "3.00" in line      # ours/pasta-c, ours/slirp4netns
    start = next(x for x in r.stdout.splitlines() if x.startswith("startup"))
    assert "4.00" in start
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_refuses_without_reference(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"impl": "passt-sep", "case": "tcp_in_tap", "unit": "Gbit/s",
                               "n": 1, "median": 1.0}) + "\n")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--from", str(src),
                        "--plot", str(tmp_path / "p.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "nothing to plot" in r.stderr
    assert "Traceback" not in r.stderr
