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

`direct_init` does the same for construction: the `__init__` of a frozen dataclass sets
every field through `object.__setattr__` (the frozen class's own `__setattr__` refuses), a
generic lookup per field; the records built on every event (planned actions, explanations,
the decision and its context) get one that stores through the slots' descriptors instead,
with the same parameters and defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")
C = TypeVar("C", bound=type)

_Copier = Callable[[Any, dict[str, Any]], Any]
# Per class and names of the changed fields, in the order given: a call site always changes
# the same fields, so there are a few dozen. A class's fields never change.
_COPIERS: dict[tuple[type, tuple[str, ...]], _Copier] = {}


def evolve(record: R, /, **changes: Any) -> R:
    """A copy of `record` with `changes`, equal to `dataclasses.replace(record, **changes)`."""
    key = (type(record), tuple(changes))
    copier = _COPIERS.get(key)
    if copier is None:
        copier = _COPIERS[key] = _copier_for(*key)
    new: R = copier(record, changes)
    return new


def _copier_for(cls: type, changed: tuple[str, ...]) -> _Copier:
    fields = dataclasses.fields(cls)
    plain = (
        "__slots__" in cls.__dict__
        and not hasattr(cls, "__post_init__")
        and all(f.init for f in fields)
        and bool(fields)
    )
    if not plain:
        return _by_replace
    names = {f.name for f in fields}
    for name in changed:
        if name not in names:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
    # One line per field, as `dataclasses` writes `__init__`, each value from the record or
    # from the changes: straight-line code, no loop over the fields or the changes. The
    # slots' descriptors store a value without the frozen class's `__setattr__` guard, as the
    # generated `__init__` does with `object.__setattr__`.
    scope: dict[str, Any] = {"new_instance": object.__new__, "cls": cls}
    lines = ["def copy(record, changes):", "    new = new_instance(cls)"]
    for i, f in enumerate(fields):
        scope[f"set_{i}"] = cls.__dict__[f.name].__set__
        value = f"changes[{f.name!r}]" if f.name in changed else f"record.{f.name}"
        lines.append(f"    set_{i}(new, {value})")
    lines.append("    return new")
    exec("\n".join(lines) + "\n", scope)  # noqa: S102 - built here from the class's fields
    copy: _Copier = scope["copy"]
    return copy


def _by_replace(record: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(record, **changes)


def direct_init(cls: C) -> C:
    """Give a frozen, slotted dataclass (no `__post_init__`, every field in `__init__`, none
    keyword-only) an `__init__` that stores the fields through the slots' descriptors, with
    the generated one's parameters, defaults and default factories: an equal object, built
    in about 60% of the time. Applied above `@dataclass(frozen=True, slots=True)`."""
    fields = dataclasses.fields(cls)
    if (
        "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or not all(f.init and not f.kw_only for f in fields)
    ):
        raise TypeError(f"direct_init: {cls.__name__} is not a plain frozen, slotted dataclass")
    no_default = dataclasses.MISSING
    scope: dict[str, Any] = {"no_default": no_default}
    params, lines = ["self"], []
    for i, f in enumerate(fields):
        scope[f"set_{i}"] = cls.__dict__[f.name].__set__
        if f.default is not no_default:
            scope[f"default_{i}"] = f.default
            params.append(f"{f.name}=default_{i}")
        elif f.default_factory is not no_default:
            scope[f"factory_{i}"] = f.default_factory
            params.append(f"{f.name}=no_default")
            lines.append(f"    if {f.name} is no_default:\n        {f.name} = factory_{i}()")
        else:
            params.append(f.name)
        lines.append(f"    set_{i}(self, {f.name})")
    source = f"def __init__({', '.join(params)}):\n" + "\n".join(lines or ["    pass"]) + "\n"
    exec(source, scope)  # noqa: S102 - the source is built here from the class's fields
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses `cls.__init__ = ...`
    return cls
