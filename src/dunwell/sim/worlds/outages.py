"""Hours when the payment provider or one issuer is down: the same for every policy.

Windows are drawn from the seed alone (never from what customers do), so the answer to a
charge at time t does not depend on any other customer's charges.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from datetime import datetime, timedelta
from functools import cached_property


def _windows(
    rng: random.Random,
    start: datetime,
    days: int,
    per_30d: float,
    minutes: tuple[int, int] = (60, 6 * 60),
) -> list[tuple[datetime, datetime]]:
    found: list[tuple[datetime, datetime]] = []
    for day in range(days):
        if rng.random() < per_30d / 30:
            begins = start + timedelta(days=day, minutes=rng.randrange(24 * 60))
            found.append((begins, begins + timedelta(minutes=rng.randrange(*minutes))))
    return found


class Outages:
    def __init__(
        self,
        seed: int,
        start: datetime,
        days: int,
        provider_per_30d: float,
        issuer_per_30d: float,
        provider_minutes: tuple[int, int] = (60, 6 * 60),  # how long a provider outage lasts
    ) -> None:
        self.seed, self.start, self.days = seed, start, days
        self.provider_minutes = provider_minutes
        self.provider_per_30d, self.issuer_per_30d = provider_per_30d, issuer_per_30d
        self._issuers: dict[tuple[str, int], list[tuple[datetime, datetime]]] = {}

    @cached_property
    def provider(self) -> list[tuple[datetime, datetime]]:
        rng = random.Random(f"dunwell-realistic:{self.seed}:provider-outages")
        return _windows(rng, self.start, self.days, self.provider_per_30d, self.provider_minutes)

    def issuer(self, country: str, issuer: int) -> list[tuple[datetime, datetime]]:
        key = (country, issuer)
        if key not in self._issuers:
            rng = random.Random(f"dunwell-realistic:{self.seed}:issuer-outages:{country}:{issuer}")
            self._issuers[key] = _windows(rng, self.start, self.days, self.issuer_per_30d)
        return self._issuers[key]

    def provider_down(self, at: datetime) -> bool:
        return _inside(self.provider, at)

    def issuer_down(self, country: str, issuer: int, at: datetime) -> bool:
        return _inside(self.issuer(country, issuer), at)


def _inside(windows: list[tuple[datetime, datetime]], at: datetime) -> bool:
    i = bisect_right(windows, at, key=lambda w: w[0]) - 1  # the last one begun by `at`
    return i >= 0 and windows[i][0] <= at < windows[i][1]
