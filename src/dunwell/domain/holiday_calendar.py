"""Public holidays and business days per country, from the `holidays` package (pure data).

A country's calendar for a year is built once and cached: planning asks for it on every
replan. An unknown or missing country has no holidays and a Saturday-Sunday weekend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from functools import lru_cache
from types import MappingProxyType

import holidays

_SATURDAY_SUNDAY = frozenset({5, 6})


@lru_cache(maxsize=1024)
def _calendar(country: str, year: int) -> tuple[Mapping[date, str], frozenset[int]]:
    try:
        found = holidays.country_holidays(country, years=year)
    except NotImplementedError:  # a country the package does not know
        return MappingProxyType({}), _SATURDAY_SUNDAY
    days = {day: name for day, name in found.items() if day.year == year}
    return MappingProxyType(days), frozenset(found.weekend) or _SATURDAY_SUNDAY


def holiday_name(country: str | None, day: date) -> str | None:
    """The public holiday `day` is in `country` (ISO 3166 alpha-2), or None."""
    if not country:
        return None
    days, _ = _calendar(country.upper(), day.year)
    return days.get(day)


def is_business_day(country: str | None, day: date) -> bool:
    if not country:
        return day.weekday() not in _SATURDAY_SUNDAY
    _, weekend = _calendar(country.upper(), day.year)
    return day.weekday() not in weekend and holiday_name(country, day) is None


def next_business_day(country: str | None, day: date) -> date:
    """The first day after `day` that is neither a weekend day nor a public holiday."""
    day += timedelta(days=1)
    while not is_business_day(country, day):
        day += timedelta(days=1)
    return day
