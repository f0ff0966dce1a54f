# SPDX-License-Identifier: GPL-2.0-or-later
"""setup/listeners.plan_room: how many -t/-u sockets a run may bind (issue 20, item 2)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from passt_sep.cli import parse_args
from passt_sep.errors import SetupError
from passt_sep.setup.listeners import plan_room


def cfg(mode: str, args: list[str]) -> SimpleNamespace:
    return SimpleNamespace(opts=parse_args(mode, args), v4=True, v6=True)  # dual stack: 1 socket a port


@pytest.mark.parametrize("mode,args,caps", [
    ("passt", ["-t", "all", "-u", "all"], (500, 500)),           # the listeners' share, halved
    ("passt", ["-t", "1-300", "-u", "all"], (None, 700)),        # lists first, all takes the rest
    ("passt", ["-t", "1-3000"], (None, None)),                   # a list may pass the share
    ("passt", ["-t", "22,80", "-u", "53"], (None, None)),
    ("passt", ["-t", "%eth0/all", "-u", "53"], (999, None)),
    ("pasta", ["-T", "1-100", "-t", "%eth0/all", "--", "true"], (800, None)),  # -T: 2 a port
])
def test_caps(mode, args, caps):
    assert plan_room(cfg(mode, args), 1000, 4000) == caps


@pytest.mark.parametrize("mode,args,msg", [
    ("passt", ["-t", "1-5000"], "-t 1-5000: Can't open enough sockets for port specifier: "
                                "5000 wanted, room for 4000 under RLIMIT_NOFILE"),
    ("pasta", ["-T", "1-2001", "--", "true"], "-T 1-2001: Can't open enough sockets"),
    ("passt", ["-t", "1-1000", "-u", "all"], "-u all: Can't open enough sockets for port specifier: no room"),
])
def test_refusals_name_the_option_and_the_limit(mode, args, msg):
    with pytest.raises(SetupError) as e:
        plan_room(cfg(mode, args), 1000, 4000)
    assert str(e.value).startswith(msg), str(e.value)
