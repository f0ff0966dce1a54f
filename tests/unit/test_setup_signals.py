# SPDX-License-Identifier: GPL-2.0-or-later
"""errors.signals_held: a set-up signal waits until a file is made and recorded.

Each case runs in a child interpreter, so the handlers it installs never
touch the test process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import os, signal, sys
sys.path[:0] = [{root!r}]
from passt_sep.errors import Interrupted, interrupt_setup, signals_held
interrupt_setup()
made = []
try:
    if {held}:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            made.append("file")
    else:
        os.kill(os.getpid(), signal.SIGTERM)
        made.append("file")
    print("not interrupted", made)
except Interrupted as e:
    print(signal.Signals(e.sig).name, made)
"""


def _child(held: bool) -> str:
    r = subprocess.run([sys.executable, "-I", "-c", CHILD.format(root=str(ROOT), held=held)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_signal_waits_for_the_block() -> None:
    """Held: the step finishes, then Interrupted comes (as SIGTERM), before the next line."""
    assert _child(True) == "SIGTERM ['file']"


def test_without_hold_the_step_is_cut() -> None:
    """The window this closes: unheld, the signal lands between making and recording."""
    assert _child(False) == "SIGTERM []"


def test_mask_restored() -> None:
    """After the block no set-up signal stays blocked."""
    code = (f"import signal, sys; sys.path[:0] = [{str(ROOT)!r}]\n"
            "from passt_sep.errors import SETUP_SIGNALS, signals_held\n"
            "with signals_held():\n"
            "    inside = signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
            "after = signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
            "print(all(s in inside for s in SETUP_SIGNALS), any(s in after for s in SETUP_SIGNALS))\n")
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "True False", r.stderr


def test_passt_socket_bound_and_recorded_in_one_step(tmp_path: Path) -> None:
    """passt_socket.listen records the path it bound (record=) with the set-up
    signals held across the bind and the record, and only there: a SIGTERM
    sent from inside the record call comes after it, with the file recorded."""
    code = f"""
import os, signal, sys
sys.path[:0] = [{str(ROOT)!r}]
from passt_sep.errors import Interrupted, interrupt_setup
from passt_sep.setup import passt_socket
interrupt_setup()
files = []
def record(path):
    os.kill(os.getpid(), signal.SIGTERM)  # held: delivered once the step is over
    files.append(path)
try:
    s, path = passt_socket.listen({str(tmp_path / "s")!r}, record=record)
    print("not interrupted")
except Interrupted as e:
    print(signal.Signals(e.sig).name, files, os.path.exists(files[0]) if files else None)
"""
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"SIGTERM [{str(tmp_path / 's')!r}] True", r.stdout + r.stderr
