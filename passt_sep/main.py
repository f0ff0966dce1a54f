# SPDX-License-Identifier: GPL-2.0-or-later
"""Program entry: the mode from the name we are called by, errors as one line.

``pasta ...`` and ``passt ...`` choose the mode from argv[0];
``passt-sep pasta ...`` and ``passt-sep passt ...`` name it explicitly;
``slirp4netns ...`` and ``passt-sep slirp4netns ...`` run the slirp4netns
front end (passt_sep.slirp4netns) on pasta's machinery;
``passt-sep ctl ...`` is the control API's client (passt_sep/ctl.py).
Every error a user can cause ends here as ``NAME: message`` on stderr and
exit status 1; no traceback reaches a user.

This module imports only ``passt_sep.early`` at load time: in passt mode
the socket listens (early.listen) before the option table or anything
else of ours is loaded; in pasta mode, attaching to an existing namespace,
the tap exists by then (early.early_tap).
"""

from __future__ import annotations

import os
import signal
import sys

from . import early as stage1
from .early import PASST, PASTA, Early, EarlyTap, mode_of

TYPE_CHECKING = False  # (typing itself costs start-up 3-5 ms; mypy knows the name)
if TYPE_CHECKING:
    from .cli import Options

_mode = mode_of

SLIRP4NETNS = "slirp4netns"


def _say(fd: int, text: str) -> None:
    """Write text to fd; a reader that went away (EPIPE: libvirt 9.0 closes
    passt's stderr at once) or a closed fd is no reason to fail."""
    data = text.encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _daemonize(drop: tuple[int, ...] = ()) -> int | None:
    """Fork: the launcher waits for a ready byte and exits; returns the daemon's fd.
    ``drop``: fds only the daemon keeps (the first stage's tap: a tap the
    daemon discards must not live on in the waiting launcher)."""
    from .errors import SETUP_SIGNALS

    r, w = os.pipe()
    pid = os.fork()
    if pid:
        for fd in drop:
            os.close(fd)
        for sig in SETUP_SIGNALS:  # the launcher: the default actions, as before
            signal.signal(sig, signal.SIG_DFL)
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


def run(mode: str, args: list[str], early: Early | EarlyTap | None = None) -> int:
    """Parse options and run; returns the exit status.

    ``early``: passt's socket, listening since the first stage; handed to
    the run if the options ask for that very socket, else removed."""
    try:
        return _run(mode, args, early)
    finally:
        if early is not None:
            early.discard()  # not taken, or the run ended: no socket file of ours is left listening


def _run(mode: str, args: list[str], early: Early | EarlyTap | None) -> int:
    from .cli import parse_args, usage, version_text
    from .errors import Interrupted, UsageError, interrupt_setup

    try:
        opts = parse_args(mode, args)
    except UsageError as e:
        _say(2, error_line(mode, e))
        return 1
    if opts.action == "help":
        _say(1, usage(mode))
        return 0
    if opts.action == "version":
        _say(1, version_text(mode))
        return 0
    # SIGTERM, SIGQUIT, SIGHUP, SIGINT from here on: clean up, exit 0 (docs/faults.md)
    interrupt_setup()
    try:
        return _setup_and_run(mode, opts, early)
    except Interrupted as e:
        _say(2, f"{mode}: {signal.Signals(e.sig).name} during set-up, exiting\n")
        if isinstance(early, Early):  # the first stage's socket: not left behind
            _unlink_quietly(early.path)
        return 0


def _setup_and_run(mode: str, opts: Options, early: Early | EarlyTap | None) -> int:
    from .errors import SetupError
    from .setup.parent import Parent

    if mode == PASST:
        from .setup.passt_run import PasstParent as Parent  # type: ignore[assignment]

        spawn = False  # no command of its own: daemonize unless -f
    else:
        spawn = opts.target_pid is None and opts.netns is None
    listen_fd = None
    if isinstance(early, Early) and mode == PASST and opts.fd is None and opts.action == "run":
        listen_fd = early.take(opts.socket_path)
    if isinstance(early, EarlyTap) and (mode != PASTA or spawn or opts.action != "run"):
        early.discard()  # the full parse wants no attached namespace: not left for the run's length
    ready_fd = None
    if not spawn and not opts.foreground:
        ready_fd = _daemonize((early.fd,) if isinstance(early, EarlyTap) and early.fd is not None else ())
    try:
        parent = Parent(opts, mode, ready_fd)
        if listen_fd is not None:
            parent.early_fd = listen_fd
            parent.early_probed = early.probed if isinstance(early, Early) else []
            if isinstance(early, Early):  # a run that never gets set up removes it (docs/faults.md)
                parent.record_file(early.path)
        if isinstance(early, EarlyTap) and early.fd is not None:
            parent.early_tap = early  # adopted by setup/tap.py if it is the tap the run wants
        status = parent.run()
    except SetupError as e:
        _say(2, error_line(mode, e))
        if listen_fd is not None and isinstance(early, Early):  # ours since the first stage: not left behind
            _unlink_quietly(early.path)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


def main(argv: list[str] | None = None, early: Early | EarlyTap | None = None) -> None:
    """Console script entry for pasta, passt and passt-sep (``early``: from
    early.boot, which listened already; else the first stage runs here)."""
    argv = list(sys.argv if argv is None else argv)
    if _slirp(argv):
        _slirp_main(argv)
    if len(argv) > 1 and argv[1] == "ctl" and "passt-sep" in os.path.basename(argv[0]):
        from .ctl import main as ctl

        sys.stdout.flush()
        sys.exit(ctl(argv[2:]))
    if early is None:
        try:
            early = stage1.listen(argv)
        except Exception:  # noqa: BLE001 - never fatal: the full run does it again and reports
            early = None
    found = _mode(argv)
    if found is None:
        _say(2, "passt-sep: call as pasta, passt or slirp4netns, "
                "or as 'passt-sep pasta|passt|slirp4netns|ctl ...'\n")
        sys.exit(1)
    mode, args = found
    try:
        status = run(mode, args, early)
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, no traceback
        _say(2, error_line(mode, f"internal error: {type(e).__name__}: {e}"))
        status = 1
    os._exit(status)


def _slirp(argv: list[str]) -> bool:
    """Whether argv asks for the slirp4netns front end."""
    name = os.path.basename(argv[0]) if argv else ""
    return "slirp4netns" in name or (len(argv) > 1 and "passt-sep" in name and argv[1] == SLIRP4NETNS)


def _slirp_main(argv: list[str]) -> None:
    """Run the slirp4netns front end and exit (one line for any error, as the modes)."""
    from .slirp4netns import main as slirp

    direct = "slirp4netns" in os.path.basename(argv[0])
    try:
        status = slirp(argv[1:] if direct else argv[2:], argv[0] if direct else SLIRP4NETNS)
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, no traceback
        _say(2, error_line(SLIRP4NETNS, f"internal error: {type(e).__name__}: {e}"))
        status = 1
    sys.stdout.flush()
    os._exit(status)


def qrap_main() -> None:
    """Console script entry for qrap (see passt_sep.qrap)."""
    from .qrap import main as qrap

    sys.exit(qrap(sys.argv[1:]))


if __name__ == "__main__":
    main()
