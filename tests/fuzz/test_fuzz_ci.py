# SPDX-License-Identifier: GPL-2.0-or-later
"""The bounded fuzz run of CI: every target, under 3 minutes in all.

Three passes per target (tests/fuzz/targets.py):

- the checked-in corpus (tests/fuzz/corpus/<target>/: the seeds and every
  input that once crashed) is replayed in-process;
- a few hundred deterministic mutations of it (bit flips, byte
  overwrites, cuts and splices; random.Random seeded with the target's
  name) are run in-process, so this much fuzzing happens even where
  atheris is not installed;
- atheris (coverage-guided libFuzzer) runs the target for a fixed wall
  time (``BUDGET``) in a subprocess, from the corpus; new inputs go to a
  temporary directory, never into the checked-in corpus. A crash fails the
  test with the input (hex) and libFuzzer's report.

Any exception out of a target, or a frame toward the guest that fails the
checker, fails the test. The long run is scripts/fuzz_long.py.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .targets import TARGETS, quiet_log

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
#: wall seconds of atheris per target: 13 targets x 5 s + the worker's 15 s,
#: plus about 2 s of start-up each (importing instrumented code): under
#: 2 minutes on an idle machine (docs/fuzzing.md)
BUDGET = dict.fromkeys(TARGETS, 5)
BUDGET["worker"] = 15
MUTATIONS = 300  # in-process mutated inputs per target
MUTATION_SECONDS = 2.0  # ... or this long, whichever comes first


@pytest.fixture
def silent() -> Iterator[None]:
    restore = quiet_log()
    yield
    restore()


def _corpus(target: str) -> list[Path]:
    files = sorted((CORPUS / target).iterdir())
    assert files, f"no corpus for {target}"
    return files


@pytest.mark.parametrize("target", list(TARGETS))
def test_corpus_replays_clean(target: str, silent: None) -> None:
    fn = TARGETS[target]
    for f in _corpus(target):
        try:
            fn(f.read_bytes())
        except Exception as e:
            raise AssertionError(f"{target}: {f.name}: {type(e).__name__}: {e}") from e


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four random edits of data (other: a second input to splice from)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if k == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif k == 1 and b:
            i = rng.randrange(len(b))
            b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif k == 2:
            del b[pos:]
        elif k == 3:
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif k == 4:
            del b[pos : pos + rng.randint(1, 16)]
        else:
            b[pos:] = other[rng.randrange(len(other) + 1):]
    return bytes(b)


@pytest.mark.parametrize("target", list(TARGETS))
def test_mutated_corpus(target: str, silent: None) -> None:
    fn = TARGETS[target]
    seeds = [f.read_bytes() for f in _corpus(target)]
    rng = random.Random(target)
    end = time.monotonic() + MUTATION_SECONDS
    for _ in range(MUTATIONS):
        if time.monotonic() > end:
            break
        data = mutate(rng, rng.choice(seeds), rng.choice(seeds))
        try:
            fn(data)
        except Exception as e:
            raise AssertionError(f"{target}: input {data.hex()}: {type(e).__name__}: {e}") from e


@pytest.mark.parametrize("target", list(TARGETS))
def test_atheris_bounded(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is not installed (x86_64 CPython wheels only)")
    work = tmp_path / "corpus"
    work.mkdir()
    cmd = [sys.executable, "-m", "tests.fuzz.run_target", target, f"-max_total_time={BUDGET[target]}",
           "-seed=1", f"-artifact_prefix={tmp_path}/", "-timeout=20", "-rss_limit_mb=3072",
           "-max_len=4096", str(work), str(CORPUS / target)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=BUDGET[target] + 120, check=False)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    crashes = [f for f in tmp_path.iterdir() if f.name.startswith(("crash-", "timeout-", "oom-"))]
    detail = "".join(f"\n{f.name}: {f.read_bytes()[:2000].hex()}" for f in crashes)
    assert p.returncode == 0 and not crashes, f"{target}: exit {p.returncode}{detail}\n{out[-4000:]}"
    assert "Done" in out, out[-2000:]
