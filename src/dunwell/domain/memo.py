"""`IdentityMemo`: remembered answers of a pure function of frozen policy values.

Every replan of a case asks the planner the same questions (the next retry's time, a lane's
notice checkpoints and texts) until something changes. The answers depend on the policy's
rows, which are frozen and live as long as the policy; hashing them on every call would cost
more than the answer. So the key holds their identity (`id`), and each entry keeps the rows
themselves: no other object can take their ids while the entry is here, and a hit is one
whose kept rows are the ones asked about. Bounded: emptied when full.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._entries: dict[Hashable, tuple[tuple[object, ...], V]] = {}
        self._limit = limit

    def get(self, key: Hashable, kept: tuple[object, ...], compute: Callable[[], V]) -> V:
        """The answer for `key`, computed once. `key` must include `id(o)` for every `o` in
        `kept`, the objects the answer is read from."""
        found = self._entries.get(key)
        # Tuple comparison tries identity first: a hit costs no field-by-field equality.
        if found is not None and found[0] == kept:
            return found[1]
        answer = compute()
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (kept, answer)
        return answer

    def __len__(self) -> int:
        return len(self._entries)
