"""The clock every decision takes `now` from: the wall clock, or virtual time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that moves only when told: the simulator and the tests skip days in microseconds."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("time does not go backwards")
        self._now += delta

    def set(self, at: datetime) -> None:
        if at < self._now:
            raise ValueError(f"time does not go backwards ({at} < {self._now})")
        self._now = at
