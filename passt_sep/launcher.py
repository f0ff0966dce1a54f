# SPDX-License-Identifier: GPL-2.0-or-later
"""Launcher scripts for pasta, passt and passt-sep that answer before site loads.

pip's console scripts start the interpreter with its ``site`` module (in
this venv: the editable-install finder, pathlib, importlib.util: about
10 ms) and import ``re`` before calling ``passt_sep.main:main``. The
scripts this module writes instead run::

    #!/path/to/venv/bin/python -IS
    import sys
    sys.path.insert(0, "<the directory passt_sep is in>")
    from passt_sep.early import boot
    boot()

``-S``: no ``site`` at start-up; ``early.boot`` makes passt's socket
listen first and then calls ``site.main()`` itself, which sets up the venv
(sys.prefix, site-packages, .pth files) exactly as at start-up.
``-I`` (isolated): PYTHON* environment variables, the user's site
directory and the script's directory are not used, which a program
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


def script(python: str, where: str) -> str:
    """The text of one launcher."""
    return (f"#!{python} -IS\n"
            f"{MARK}: listens before site and the rest load; see passt_sep/early.py\n"
            "import sys\n"
            f"sys.path.insert(0, {where!r})\n"
            "from passt_sep.early import boot\n"
            "boot()\n")


def write(bindir: str, python: str | None = None) -> list[str]:
    """Write the launchers into bindir (replacing pip's console scripts); their paths."""
    python = python or sys.executable
    where = str(Path(__file__).resolve().parent.parent)
    out = []
    for name in NAMES:
        path = os.path.join(bindir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(script(python, where))
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
