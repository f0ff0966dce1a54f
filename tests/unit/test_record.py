# SPDX-License-Identifier: GPL-2.0-or-later
"""passt_sep.record: the record classes that replace dataclasses, and what start-up loads.

The records must behave as the dataclasses they replace did (the Config,
the option table, DHCP parameters ...), and the processes must not load
the modules they were written to avoid: checked in a fresh interpreter,
started as the launcher starts it (python -I -S).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from passt_sep.record import FrozenInstanceError, field, record, replace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@record(frozen=True)
class Point:
    """A frozen record."""

    x: int
    y: int = 2
    tags: tuple[str, ...] = ()


@record
class Bag:
    """A mutable record with a factory and a __post_init__."""

    name: str
    items: list[int] = field(default_factory=list)
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size")
        self.size = self.size or len(self.items)


@record(frozen=True)
class Point3(Point):
    """Fields of a record base class come first."""

    z: int = 3


def test_init_positional_keyword_and_defaults() -> None:
    assert (Point(1).x, Point(1).y, Point(1).tags) == (1, 2, ())
    p = Point(1, tags=("a",), y=5)
    assert (p.x, p.y, p.tags) == (1, 5, ("a",))
    assert Point3(1, 2, (), 4).z == 4 and Point3(1).z == 3


@pytest.mark.parametrize("make", [
    lambda: Point(),  # missing x
    lambda: Point(1, 2, (), 4),  # too many
    lambda: Point(1, x=2),  # twice
    lambda: Point(1, w=2),  # unknown
])
def test_bad_arguments_are_type_errors(make) -> None:
    with pytest.raises(TypeError):
        make()


def test_factory_is_called_per_instance_and_post_init_runs() -> None:
    a, b = Bag("a"), Bag("b")
    a.items.append(1)
    assert b.items == [] and a.items is not b.items
    assert Bag("c", [1, 2, 3]).size == 3
    with pytest.raises(ValueError):
        Bag("d", size=-1)
    assert Bag.size == 0  # field(default=...) stays a class attribute, as in dataclasses
    assert not hasattr(Bag, "items")  # a factory field does not


def test_frozen_refuses_assignment_and_hashes_by_value() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p == Point(1) and hash(p) == hash(Point(1)) and p != Point(2)
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_mutable_record_is_unhashable_and_eq_is_per_class() -> None:
    with pytest.raises(TypeError):
        hash(Bag("a"))
    assert Bag("a") == Bag("a") and Bag("a") != Bag("b")
    assert Point(1) != Point3(1)  # same fields, another class: not equal
    assert Point(1).__eq__(1) is NotImplemented


def test_repr_names_every_field_in_order() -> None:
    assert repr(Point(1, tags=("t",))) == "Point(x=1, y=2, tags=('t',))"
    assert repr(Point3(1)) == "Point3(x=1, y=2, tags=(), z=3)"


def test_replace_goes_through_init() -> None:
    p = Point3(1, z=9)
    q = replace(p, y=7)
    assert (q.x, q.y, q.z) == (1, 7, 9) and type(q) is Point3 and p.y == 2
    with pytest.raises(TypeError):
        replace(p, w=1)
    with pytest.raises(ValueError):  # __post_init__ runs again
        replace(Bag("a"), size=-1)


def test_pickle_round_trip_keeps_frozen_records_frozen() -> None:
    p = pickle.loads(pickle.dumps(Point3(1, tags=("a",))))
    assert p == Point3(1, tags=("a",))
    with pytest.raises(FrozenInstanceError):
        p.z = 1  # type: ignore[misc]


def test_non_default_after_default_is_refused() -> None:
    with pytest.raises(TypeError):
        @record
        class Bad:
            a: int = 1
            b: int


def test_start_up_loads_none_of_what_records_replace() -> None:
    """The parent's imports up to the fork, the worker's preload and the
    parent's late imports, in a fresh interpreter: no dataclasses, inspect,
    ast, pathlib; the parent's share without json or queue either."""
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = f"""
import sys
sys.path[:0] = [{ROOT!r}]
sys.path += {site!r}
import passt_sep.early, passt_sep.main, passt_sep.cli, passt_sep.setup.parent
from passt_sep.worker.main import policy_path
from sandbox.seccomp import load_policy
load_policy(policy_path("pasta"))
from passt_sep.setup import parentfilter, parent
parentfilter.prepare("pasta")
import passt_sep.config, passt_sep.setup.hostaddr
parent.import_the_rest("pasta")
import passt_sep.setup.acceptor
parent_mods = set(sys.modules)
from passt_sep.worker.main import preload
preload()
print(" ".join(sorted(parent_mods)))
print(" ".join(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    parent_mods, all_mods = set(out[0].split()), set(out[1].split())
    assert "passt_sep.setup.parent" in parent_mods and "passt_sep.worker.loop" in all_mods
    assert not {"dataclasses", "inspect", "ast", "pathlib", "site"} & all_mods
    assert not {"json", "queue", "passt_sep.setup.api", "passt_sep.worker.stream"} & parent_mods


def test_worker_code_loads_no_setup_module() -> None:
    """The worker's code, loaded alone, brings no passt_sep.setup module
    (netlink, socket pools, the broker are the parent's; docs/architecture.md,
    "Module map": config.py and loopback.py serve both from below)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from passt_sep.worker.main import preload\n"
            "preload()\n"
            "print(sorted(m for m in sys.modules if m.startswith('passt_sep.setup')))\n")
    out = subprocess.run([sys.executable, "-I", "-c", code, ROOT], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]", out
