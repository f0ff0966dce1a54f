# SPDX-License-Identifier: GPL-2.0-or-later
"""Plain record classes without ``dataclasses``: ``record``, ``field``, ``replace``.

What start-up owes to the standard ``dataclasses``: importing it loads
``inspect`` (and with it ``ast``, ``dis``, ``opcode``, ``tokenize``,
``linecache``: 8-16 ms here), and each decorated class has five or six
methods written as source text and compiled (``exec``): about 1 ms per
class of ten fields, for the two dozen classes the parent and the worker
load before they can answer. These are the option table, the Config, the
host's addressing, DHCP parameters and the like: made a few times per run
or per DHCP message, never per packet (the per-packet classes,
proto.packet.Packet and proto.icmp.Echo, are written out by hand).

``record`` gives a class what ``dataclass`` gave these, with methods
written once, here, that read the class's field list:

- ``__init__`` with positional and keyword arguments in field order,
  defaults (a class attribute, or ``field(default=...)``), factories
  (``field(default_factory=...)``), and ``__post_init__`` if defined;
- ``__repr__`` and ``__eq__`` over the fields (same class only);
- ``frozen=True``: assignment and deletion raise ``FrozenInstanceError``
  (an AttributeError, as dataclasses'), and ``__hash__`` hashes the
  fields; without it the class is unhashable, as a dataclass with eq;
- instances keep their fields in ``__dict__``, so pickle and copy work as
  for any plain class (the Config goes to the worker pickled).

Fields are the class's own annotations in order (after those of a record
base class); an annotation naming ``ClassVar`` is not a field. Type
checkers see the standard ``dataclasses`` (the names are aliased under
``TYPE_CHECKING``), so constructor calls are checked as before.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs 3-6 ms to import; mypy knows the name

__all__ = ["FrozenInstanceError", "field", "record", "replace"]

if TYPE_CHECKING:
    from dataclasses import FrozenInstanceError, field, replace
    from dataclasses import dataclass as record
else:
    _MISSING = object()

    class FrozenInstanceError(AttributeError):
        """Assignment to a field of a frozen record."""

    class _Field:
        """A field's default or default factory (``field``)."""

        __slots__ = ("default", "default_factory")

        def __init__(self, default: object, default_factory: object) -> None:
            self.default = default
            self.default_factory = default_factory

    def field(*, default: object = _MISSING, default_factory: object = _MISSING) -> object:
        """A field with a default value or a default factory."""
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("cannot specify both default and default_factory")
        return _Field(default, default_factory)

    def replace(obj: object, **changes: object) -> object:
        """A copy of a record with some fields changed (through ``__init__``)."""
        cls = type(obj)
        names = cls.__record_fields__
        for k in changes:
            if k not in names:
                raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {k!r}")
        kw = {n: getattr(obj, n) for n in names if n not in changes}
        kw.update(changes)
        return cls(**kw)

    def _init_for(cls: type, names: tuple[str, ...], defaults: dict[str, object],
                  factories: dict[str, object]) -> object:
        n = len(names)
        qual = cls.__qualname__

        def __init__(self: object, *args: object, **kw: object) -> None:
            if len(args) > n:
                raise TypeError(f"{qual}.__init__() takes {n} positional arguments "
                                f"but {len(args)} were given")
            d = self.__dict__
            if kw:
                for k in kw:
                    if k not in defaults and k not in factories and k not in names:
                        raise TypeError(f"{qual}.__init__() got an unexpected keyword argument {k!r}")
                for name in names[:len(args)]:
                    if name in kw:
                        raise TypeError(f"{qual}.__init__() got multiple values for argument {name!r}")
            d.update(zip(names, args, strict=False))
            for name in names[len(args):]:
                if name in kw:
                    d[name] = kw[name]
                elif name in defaults:
                    d[name] = defaults[name]
                elif name in factories:
                    d[name] = factories[name]()
                else:
                    raise TypeError(f"{qual}.__init__() missing required argument: {name!r}")
            post = getattr(self, "__post_init__", None)
            if post is not None:
                post()

        __init__.__qualname__ = f"{qual}.__init__"
        return __init__

    def _process(cls: type, frozen: bool) -> type:
        names: list[str] = []
        defaults: dict[str, object] = {}
        factories: dict[str, object] = {}
        for base in reversed(cls.__mro__[1:]):
            if "__record_fields__" in base.__dict__:
                for name in base.__record_fields__:
                    if name not in names:
                        names.append(name)
                defaults.update(base.__record_defaults__)
                factories.update(base.__record_factories__)
        for name, ann in cls.__dict__.get("__annotations__", {}).items():
            if "ClassVar" in str(ann):
                continue
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, _Field):
                if value.default_factory is not _MISSING:
                    factories[name] = value.default_factory
                    defaults.pop(name, None)
                    delattr(cls, name)
                else:
                    value = value.default
                    if value is _MISSING:
                        delattr(cls, name)
                    else:
                        setattr(cls, name, value)
            if not isinstance(value, _Field) and value is not _MISSING:
                defaults[name] = value
                factories.pop(name, None)
            if name not in names:
                names.append(name)
        seen_default = False
        for name in names:
            if name in defaults or name in factories:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        fields = tuple(names)
        cls.__record_fields__ = fields
        cls.__record_defaults__ = defaults
        cls.__record_factories__ = factories
        cls.__match_args__ = fields
        if "__init__" not in cls.__dict__:
            cls.__init__ = _init_for(cls, fields, defaults, factories)
        if "__repr__" not in cls.__dict__:
            def __repr__(self: object) -> str:
                inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in fields)
                return f"{type(self).__qualname__}({inner})"

            cls.__repr__ = __repr__
        if "__eq__" not in cls.__dict__:
            def __eq__(self: object, other: object) -> bool:
                if other.__class__ is not self.__class__:
                    return NotImplemented
                return all(getattr(self, n) == getattr(other, n) for n in fields)

            cls.__eq__ = __eq__
        if frozen:
            def __setattr__(self: object, name: str, value: object) -> None:
                if type(self) is cls or name in fields:
                    raise FrozenInstanceError(f"cannot assign to field {name!r}")
                object.__setattr__(self, name, value)

            def __delattr__(self: object, name: str) -> None:
                if type(self) is cls or name in fields:
                    raise FrozenInstanceError(f"cannot delete field {name!r}")
                object.__delattr__(self, name)

            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
            if cls.__dict__.get("__hash__") is None:
                def __hash__(self: object) -> int:
                    return hash(tuple(getattr(self, n) for n in fields))

                cls.__hash__ = __hash__
        elif "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            cls.__hash__ = None
        return cls

    def record(cls: type | None = None, /, *, frozen: bool = False) -> object:
        """Make cls a record (see the module's docstring); ``@record`` or ``@record(frozen=True)``."""
        if cls is None:
            return lambda c: _process(c, frozen)
        return _process(cls, frozen)
