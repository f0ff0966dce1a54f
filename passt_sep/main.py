# SPDX-License-Identifier: GPL-2.0-or-later
"""Program entry: the mode from the name we are called by, errors as one line.

``pasta ...`` and ``passt ...`` choose the mode from argv[0];
``passt-sep pasta ...`` and ``passt-sep passt ...`` name it explicitly.
Every error a user can cause ends here as ``NAME: message`` on stderr and
exit status 1; no traceback reaches a user.
"""

from __future__ import annotations

import os
import sys

from .cli import PASST, PASTA, parse_args, usage, version_text
from .errors import SetupError, UsageError


def _mode(argv: list[str]) -> tuple[str, list[str]] | None:
    name = os.path.basename(argv[0]) if argv else ""
    if "pasta" in name:
        return PASTA, argv[1:]
    if "passt" in name and "passt-sep" not in name:
        return PASST, argv[1:]
    if len(argv) > 1 and argv[1] in (PASST, PASTA):
        return argv[1], argv[2:]
    return None


def _daemonize() -> int | None:
    """Fork: the launcher waits for a ready byte and exits; returns the daemon's fd."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        ok = os.read(r, 1)
        os._exit(0 if ok == b"0" else 1)
    os.close(r)
    os.setsid()
    return w


def error_line(mode: str, msg: object) -> str:
    """The one line a failed run prints: what the user typed is quoted in
    messages, so a control character in it (a newline, an escape sequence)
    is shown escaped, never passed to the terminal or split into lines."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(msg))
    return f"{mode}: {text}\n"


def run(mode: str, args: list[str]) -> int:
    """Parse options and run; returns the exit status."""
    try:
        opts = parse_args(mode, args)
    except UsageError as e:
        sys.stderr.write(error_line(mode, e))
        return 1
    if opts.action == "help":
        sys.stdout.write(usage(mode))
        return 0
    if opts.action == "version":
        sys.stdout.write(version_text(mode))
        return 0
    from .setup.parent import Parent

    if mode == PASST:
        from .setup.passt_run import PasstParent as Parent  # type: ignore[assignment]

        spawn = False  # no command of its own: daemonize unless -f
    else:
        spawn = opts.target_pid is None and opts.netns is None
    ready_fd = None
    if not spawn and not opts.foreground:
        ready_fd = _daemonize()
    try:
        status = Parent(opts, mode, ready_fd).run()
    except SetupError as e:
        sys.stderr.write(error_line(mode, e))
        return 1
    except KeyboardInterrupt:
        return 130
    return status


def main(argv: list[str] | None = None) -> None:
    """Console script entry for pasta, passt and passt-sep."""
    argv = list(sys.argv if argv is None else argv)
    found = _mode(argv)
    if found is None:
        sys.stderr.write("passt-sep: call as pasta or passt, or as 'passt-sep pasta|passt ...'\n")
        sys.exit(1)
    mode, args = found
    try:
        status = run(mode, args)
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, no traceback
        sys.stderr.write(error_line(mode, f"internal error: {type(e).__name__}: {e}"))
        status = 1
    sys.stdout.flush()
    os._exit(status)


def qrap_main() -> None:
    """Console script entry for qrap (see passt_sep.qrap)."""
    from .qrap import main as qrap

    sys.exit(qrap(sys.argv[1:]))


if __name__ == "__main__":
    main()
