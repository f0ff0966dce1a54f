# SPDX-License-Identifier: GPL-2.0-or-later
"""The manual pages (man/*.1, written by scripts/gen_man.py) cannot drift.

- the committed pages are what the generator writes from the option table;
- passt.1 and pasta.1 each document exactly the options of their mode in
  ``passt_sep.cli.OPTIONS`` (long and short spellings), and every option
  either page mentions anywhere exists in that mode;
- passt-sep-slirp4netns.1 documents exactly the slirp4netns front end's
  options (``passt_sep.slirp4netns``, or, while that module is not merged,
  slirp4netns 1.2.0's option list below);
- man and groff render every page without a single warning (and the check
  does catch a broken page);
- ``pip install`` puts the pages in share/man/man1.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from passt_sep.cli import OPTIONS, PASST, PASTA

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
PAGES = ("passt.1", "pasta.1", "qrap.1", "passt-sep-slirp4netns.1")

# slirp4netns 1.2.0's getopt_long table (slirp4netns --help, its man page);
# used only while passt_sep/slirp4netns.py (branch slirp) is not merged
SLIRP4NETNS_OPTIONS = {
    "configure": "c", "exit-fd": "e", "ready-fd": "r", "mtu": "m", "cidr": None,
    "disable-host-loopback": None, "no-host-loopback": None, "netns-type": None,
    "userns-path": None, "api-socket": "a", "enable-ipv6": "6", "enable-sandbox": None,
    "create-sandbox": None, "enable-seccomp": None, "help": "h", "version": "v",
    "outbound-addr": None, "outbound-addr6": None, "disable-dns": None,
    "macaddress": None, "target-type": None,
}


def _gen():
    spec = importlib.util.spec_from_file_location("gen_man", ROOT / "scripts" / "gen_man.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _entries(page: str) -> tuple[set[str], set[str]]:
    """(long, short) option names of the page's .TP entries."""
    lines = (MAN / page).read_text().splitlines()
    longs, shorts = set(), set()
    for i, line in enumerate(lines[:-1]):
        if line == ".TP":
            head = lines[i + 1]
            longs |= set(re.findall(r"\\fB\\-\\-((?:[a-z0-9]|\\-)+)", head))
            shorts |= set(re.findall(r"\\fB\\-([A-Za-z0-9])\\fR", head))
    return {x.replace("\\-", "-") for x in longs}, shorts


def _mentioned(page: str) -> set[str]:
    """Every --long option named anywhere in the page."""
    text = (MAN / page).read_text()
    return {m.replace("\\-", "-")
            for m in re.findall(r"\\-\\-([a-z0-9]+(?:\\-[a-z0-9]+)*)", text)}


def _slirp_table() -> dict[str, str | None]:
    try:
        from passt_sep import slirp4netns  # type: ignore[attr-defined]
    except ImportError:
        return SLIRP4NETNS_OPTIONS
    return {name: short for name, (short, _arg) in slirp4netns._LONG.items()}


def test_committed_pages_are_what_the_generator_writes():
    gen = _gen()
    for name, make in gen.PAGES.items():
        assert (MAN / name).read_text() == make(), f"man/{name} is stale: run scripts/gen_man.py"
    assert set(gen.PAGES) == set(PAGES)


@pytest.mark.parametrize("mode", [PASST, PASTA])
def test_each_page_documents_exactly_its_modes_options(mode):
    longs, shorts = _entries(f"{mode}.1")
    want = {o.long for o in OPTIONS if mode in o.modes}
    assert longs == want, (f"in {mode}.1 but not in cli.OPTIONS: {sorted(longs - want)}; "
                           f"in cli.OPTIONS but not in {mode}.1: {sorted(want - longs)}")
    assert shorts == {o.short for o in OPTIONS if mode in o.modes and o.short}
    # nothing else's options: no page names an option its mode lacks
    qemu = {"device", "netdev"}  # not ours: in EXAMPLES, single-dash anyway
    assert _mentioned(f"{mode}.1") - want - qemu == set()


def test_mode_specific_options_stay_on_their_page():
    passt_longs, _ = _entries("passt.1")
    pasta_longs, _ = _entries("pasta.1")
    assert {"socket", "fd", "one-off", "no-dhcp-dns"} <= passt_longs - pasta_longs
    assert {"netns", "config-net", "host-lo-to-ns-lo", "no-copy-routes", "tcp-ns"} <= \
        pasta_longs - passt_longs


def test_slirp4netns_page_documents_exactly_the_front_ends_options():
    table = _slirp_table()
    longs, shorts = _entries("passt-sep-slirp4netns.1")
    assert longs == set(table), (sorted(longs - set(table)), sorted(set(table) - longs))
    assert shorts == {s for s in table.values() if s}
    assert _mentioned("passt-sep-slirp4netns.1") <= set(table)


def test_qrap_page_names_its_one_option():
    longs, _ = _entries("qrap.1")
    assert longs == {"socket"}
    from passt_sep.qrap import USAGE
    assert "--socket PATH" in USAGE


def _render_warnings(path: Path) -> list[str]:
    assert shutil.which("man") and shutil.which("groff"), \
        "man-db and groff-base are needed (scripts/setup.sh installs them)"
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    m = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                       text=True, timeout=60, env=env)
    g = subprocess.run(["groff", "-man", "-ww", "-z", str(path)], capture_output=True,
                       text=True, timeout=60)
    assert m.returncode == 0 and g.returncode == 0, m.stderr + g.stderr
    assert len(m.stdout.splitlines()) > 20, "man rendered almost nothing"
    return [line for line in (m.stderr + g.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings(page):
    assert _render_warnings(MAN / page) == []


def test_the_render_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.1"
    bad.write_text((MAN / "qrap.1").read_text() + ".XY nonsense\n\\fQbroken\n.in -99\n")
    assert _render_warnings(bad) != []


def test_pip_install_puts_the_pages_in_share_man_man1(tmp_path):
    """The wheel pip builds from a copy of the tree carries every page to
    share/man/man1 (what ``pip install`` unpacks into PREFIX/share/man/man1).
    Built with the running venv's setuptools and wheel (test extras), no
    build isolation and no index, so no network; building installs nothing."""
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".pytest_cache", ".ruff_cache", ".cache",
        "__pycache__", "results"))
    out = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "--no-index", "--disable-pip-version-check", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("passt_sep-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        for page in PAGES:
            (member,) = [n for n in names if n.endswith(f".data/data/share/man/man1/{page}")]
            assert z.read(member).decode() == (MAN / page).read_text()
        assert any(n.endswith("entry_points.txt") and b"pasta" in z.read(n) for n in names)

