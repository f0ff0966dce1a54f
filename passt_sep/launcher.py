# SPDX-License-Identifier: GPL-2.0-or-later
"""Launcher scripts for pasta, passt and passt-sep that never load site.

pip's console scripts start the interpreter with its ``site`` module (in
this venv: the editable-install finder, pathlib, importlib.util, re,
urllib.parse, ipaddress, setuptools' distutils hack: 10-17 ms) and import
``re`` before calling ``passt_sep.main:main``. The scripts this module
writes instead run::

    #!/path/to/venv/bin/python -IS
    import sys
    sys.path[:0] = ["<the directory passt_sep is in>"]
    sys.path += ["<site-packages>", ...]
    sys.prefix = sys.exec_prefix = "<the venv>"
    from passt_sep.early import boot
    boot(True)

``-S``: no ``site`` at all. What site would do for us is written into the
script when it is made (``write``): the directories it would put on
sys.path (``site.getsitepackages()``: the venv's site-packages, where
prctl and pyseccomp are) and the prefix it would set for a venv (the
policies of a regular install are under ``<prefix>/share/passt-sep``).
No ``.pth`` file is read: ours needs none (passt_sep's own directory is
put first). ``early.boot`` makes passt's socket listen first, then runs
the program. ``-I`` (isolated): PYTHON* environment variables, the user's
site directory and the script's directory are not used, which a program
started as root should not honour anyway. The path inserted is where
passt_sep was imported from when the scripts were written (the source
tree for an editable install, site-packages otherwise).

    python -m passt_sep.launcher BINDIR   (scripts/setup.sh does it)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NAMES = ("passt", "pasta", "passt-sep")
MARK = "# passt-sep launcher (passt_sep.launcher)"


def script(python: str, where: str, site_dirs: list[str] | None = None,
           prefix: str | None = None) -> str:
    """The text of one launcher (``site_dirs``, ``prefix``: what ``site`` would
    set, see the module's docstring; None: the old way, site after the first stage)."""
    lines = [f"#!{python} -IS",
             f"{MARK}: no site; listens before the rest loads; see passt_sep/early.py",
             "import sys",
             f"sys.path[:0] = [{where!r}]"]
    if site_dirs is None:
        return "\n".join([*lines, "from passt_sep.early import boot", "boot()", ""])
    lines.append(f"sys.path += {[d for d in site_dirs if d != where]!r}")
    if prefix is not None:
        lines.append(f"sys.prefix = sys.exec_prefix = {prefix!r}")
    return "\n".join([*lines, "from passt_sep.early import boot", "boot(True)", ""])


def site_paths() -> tuple[list[str], str]:
    """What ``site`` puts on sys.path in this interpreter (site-packages), and the prefix it sets."""
    import site

    return [d for d in site.getsitepackages() if os.path.isdir(d)], sys.prefix


def write(bindir: str, python: str | None = None) -> list[str]:
    """Write the launchers into bindir (replacing pip's console scripts); their paths."""
    python = python or sys.executable
    where = str(Path(__file__).resolve().parent.parent)
    site_dirs, prefix = site_paths()
    out = []
    for name in NAMES:
        path = os.path.join(bindir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(script(python, where, site_dirs, prefix))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        out.append(path)
    return out


def main() -> None:
    """``python -m passt_sep.launcher BINDIR``."""
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m passt_sep.launcher BINDIR\n")
        sys.exit(1)
    for p in write(sys.argv[1]):
        print(p)


if __name__ == "__main__":
    main()
