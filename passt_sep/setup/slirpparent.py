# SPDX-License-Identifier: GPL-2.0-or-later
"""pasta's Parent with slirp4netns's start-up protocol (the slirp4netns front end).

Parent only. Owns what slirp4netns adds to an attach run: the ready fd
(``-r FD``: "1" written, then closed, once set-up is done) and the exit fd
(``-e FD``: any event on it ends the run with status 0). The command line
and addressing are passt_sep/slirp4netns.py's; everything else is pasta's.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from ..cli import Options
from ..errors import SetupError
from ..log import log
from .parent import Parent


class SlirpParent(Parent):
    """pasta's Parent in attach mode, with slirp4netns's ready and exit fds."""

    def __init__(self, opts: Options, prog: str, ready_fd: int | None, exit_fd: int | None) -> None:
        super().__init__(opts, prog, None)
        self.slirp_ready_fd = ready_fd
        self.exit_fd = exit_fd

    def release_launcher(self) -> None:
        """Set-up is done: "1" on the ready fd, which is then closed (as slirp4netns)."""
        super().release_launcher()
        fd, self.slirp_ready_fd = self.slirp_ready_fd, None
        if fd is None:
            return
        try:
            os.write(fd, b"1")
        except OSError as e:
            if e.errno != errno.EPIPE:  # a reader that went away is its own business
                raise SetupError(f"ready-fd {fd}", e) from None
        finally:
            os.close(fd)

    def watch_mode(self, watch: Callable[[int, Callable[[int], int | None]], None],
                   unwatch: Callable[[int], None]) -> None:
        """pasta's, and the exit fd: any event on it (data, its writer gone) ends the run."""
        super().watch_mode(watch, unwatch)
        if self.exit_fd is not None:
            try:
                watch(self.exit_fd, self._exit_fd_event)
            except OSError as e:  # a file epoll cannot watch: it never signals, as in slirp4netns
                log.warn(f"exit-fd {self.exit_fd}: {e.strerror}, not watched")

    def _exit_fd_event(self, _ev: int) -> int:
        log.info("exitfd event")
        self.end_mode()
        return 0
