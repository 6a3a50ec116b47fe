"""`--world` specs: `builtin:NAME` for a built-in world, `MODULE:FACTORY` for anyone's own.

A factory is called as `factory(seed=..., customers=..., days=..., start=...)` (see
`protocol.WorldFactory`). A bad spec fails before any run with a message that says what to fix.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dunwell.sim.protocol import World, WorldFactory

DEFAULT_WORLD = "builtin:basic"


class WorldSpecError(ValueError):
    """The `--world` spec names nothing usable."""


def _basic(*, seed: int, customers: int, days: int, start: datetime) -> World:
    from dunwell.sim.worlds.basic import BuiltinWorld

    return BuiltinWorld(customers, days, seed, start)


def _realistic(variant: str) -> WorldFactory:
    def factory(*, seed: int, customers: int, days: int, start: datetime) -> World:
        from dunwell.sim.worlds.realistic import RealisticWorld
        from dunwell.sim.worlds.variants import VARIANTS

        return RealisticWorld(customers, days, seed, start, VARIANTS[variant])

    return factory


def builtin_worlds() -> dict[str, WorldFactory]:
    from dunwell.sim.worlds.variants import VARIANTS

    worlds: dict[str, WorldFactory] = {"basic": _basic}
    worlds.update({name: _realistic(name) for name in VARIANTS})
    return worlds


def load_world_factory(spec: str) -> WorldFactory:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise WorldSpecError(
            f"--world {spec!r}: expected MODULE:FACTORY (e.g. my_worlds:make) or builtin:NAME"
        )
    if module_name == "builtin":
        worlds = builtin_worlds()
        if attribute not in worlds:
            names = ", ".join(f"builtin:{n}" for n in worlds)
            raise WorldSpecError(f"--world {spec!r}: no such built-in world (there are {names})")
        return worlds[attribute]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorldSpecError(
            f"--world {spec!r}: cannot import module {module_name!r} ({exc}); "
            "is its folder on PYTHONPATH?"
        ) from exc
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise WorldSpecError(f"--world {spec!r}: module {module_name!r} has no {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise WorldSpecError(f"--world {spec!r}: {attribute!r} is not callable")
    return _checked(spec, factory)


def _checked(spec: str, factory: Callable[..., Any]) -> WorldFactory:
    """Wrap a user's factory so a wrong signature or result is reported as the spec's fault."""

    def build(*, seed: int, customers: int, days: int, start: datetime) -> World:
        try:
            world = factory(seed=seed, customers=customers, days=days, start=start)
        except TypeError as exc:
            raise WorldSpecError(
                f"--world {spec!r}: the factory must accept keyword arguments seed, customers, "
                f"days, start ({exc})"
            ) from exc
        missing = [
            name
            for name in ("start", "horizon", "next_event_at", "events_due", "charge", "deliver")
            + ("oracle",)
            if not hasattr(world, name)
        ]
        if missing:
            raise WorldSpecError(
                f"--world {spec!r}: the factory returned {type(world).__name__}, which lacks "
                f"{', '.join(missing)} of the World protocol (see docs/simulation.md)"
            )
        return world  # type: ignore[no-any-return]

    return build
