"""`evolve(record, **changes)`: `dataclasses.replace` for the decision core's frozen records.

A decision copies the case several times (every event replans it), and `dataclasses.replace`
pays for its generality on each copy: it walks the fields, builds keyword arguments and runs
the frozen `__init__`, which sets every field through `object.__setattr__`. The case has
over thirty fields; `replace` was the largest single cost of a simulation. For a frozen,
slotted dataclass without `__post_init__` (the case, attempts, notices, ledger entries, the
decision context), `__init__` only stores the values, so copying the slots and overwriting
the changed ones gives an equal object, a few times faster. Anything else goes through
`dataclasses.replace` itself.

Like `replace`, a name that is not a field is a TypeError, and the original is not touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

R = TypeVar("R")

_Copier = Callable[[Any, dict[str, Any]], Any]
_COPIERS: dict[type, _Copier] = {}  # per class; a class's fields never change


def evolve(record: R, /, **changes: Any) -> R:
    """A copy of `record` with `changes`, equal to `dataclasses.replace(record, **changes)`."""
    copier = _COPIERS.get(type(record))
    if copier is None:
        copier = _COPIERS[type(record)] = _copier_for(type(record))
    new: R = copier(record, changes)
    return new


def _copier_for(cls: type) -> _Copier:
    fields = dataclasses.fields(cls)
    plain = (
        "__slots__" in cls.__dict__
        and not hasattr(cls, "__post_init__")
        and all(f.init for f in fields)
        and bool(fields)
    )
    if not plain:
        return _by_replace
    names = tuple(f.name for f in fields)
    # The slots' descriptors store a value without the frozen class's `__setattr__` guard,
    # as the generated `__init__` does with `object.__setattr__`.
    setters = {name: cls.__dict__[name].__set__ for name in names}
    in_order = tuple(setters.values())
    read_all = attrgetter(*names) if len(names) > 1 else _one(names[0])
    new_instance = object.__new__

    def copy(record: Any, changes: dict[str, Any]) -> Any:
        new: Any = new_instance(cls)
        for set_field, value in zip(in_order, read_all(record), strict=True):
            set_field(new, value)
        for name, value in changes.items():
            set_changed = setters.get(name)
            if set_changed is None:
                raise TypeError(f"{cls.__name__} has no field {name!r}")
            set_changed(new, value)
        return new

    return copy


def _by_replace(record: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(record, **changes)


def _one(name: str) -> Callable[[Any], tuple[Any]]:
    read = attrgetter(name)
    return lambda record: (read(record),)
