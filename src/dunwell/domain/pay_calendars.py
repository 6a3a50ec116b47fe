"""Common pay calendars, and which of them a case's own declines leave possible (pure).

Money that was short comes back on the customer's payday and is there for a few days. A
charge declined on one of a calendar's paydays or the day after therefore says that
calendar is probably not the customer's: the next retry should aim at the paydays of the
calendars still open, not at the one just tried. The calendars are the usual ones
(general knowledge, not a statistic): every Friday, every other Friday (two phases, since
the customer's is unknown), the 15th and the last business day, the 1st, the last business
day, and the country's own where `timing.COUNTRY_PAYDAYS` knows one. A payday that falls on
a day off is paid the business day before, as employers do.

The model sees three numbers from this (`domain.scoring`): how many calendars the declines
leave open, the share of those that paid since the last try, and the days since the newest
such payday. It learns how much they are worth; nothing here decides a retry by itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache

from dunwell.domain.holiday_calendar import is_business_day
from dunwell.domain.timing import COUNTRY_PAYDAYS, last_business_day

# A decline this many days after a payday (0: the payday itself) counts against the
# calendar: the world's and the literature's money-short customers spend a pay within days.
EVIDENCE_DAYS = 1
_FRIDAY = 4


def _fridays(start: date, end: date, phase: int | None) -> list[date]:
    day = start + timedelta(days=(_FRIDAY - start.weekday()) % 7)
    out = []
    while day <= end:
        if phase is None or (day.toordinal() // 7) % 2 == phase:
            out.append(day)
        day += timedelta(days=7)
    return out


def _monthly(start: date, end: date, pick: Callable[[int, int], list[date]]) -> list[date]:
    out: list[date] = []
    year, month = start.year, start.month
    while date(year, month, 1) <= end:
        out.extend(pick(year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def calendar_names(country: str) -> tuple[str, ...]:
    base = (
        "weekly",
        "biweekly_a",
        "biweekly_b",
        "semimonthly",
        "monthly_1st",
        "monthly_last_business_day",
    )
    return (*base, "country") if country in COUNTRY_PAYDAYS else base


@lru_cache(maxsize=4096)
def calendar_paydays(name: str, start: date, end: date, country: str) -> tuple[date, ...]:
    """The calendar's paydays in [start, end], each moved to the business day before when
    it is not one (weekends and the country's public holidays)."""
    # A payday just after `end` may move back into it (Sunday the 1st is paid on Friday).
    end, until = end + timedelta(days=7), end
    if name == "weekly":
        nominal = _fridays(start, end, None)
    elif name in ("biweekly_a", "biweekly_b"):
        nominal = _fridays(start, end, 0 if name == "biweekly_a" else 1)
    elif name == "semimonthly":
        nominal = _monthly(start, end, lambda y, m: [date(y, m, 15), last_business_day(y, m)])
    elif name == "monthly_1st":
        nominal = _monthly(start, end, lambda y, m: [date(y, m, 1)])
    elif name == "monthly_last_business_day":
        nominal = _monthly(start, end, lambda y, m: [last_business_day(y, m)])
    elif name == "country":
        own = COUNTRY_PAYDAYS[country]
        nominal = _monthly(start, end, lambda y, m: [own(country, y, m)])
    else:
        raise ValueError(f"unknown pay calendar {name!r}")
    moved = set()
    for day in nominal:
        while not is_business_day(country or None, day):
            day -= timedelta(days=1)
        moved.add(day)
    return tuple(sorted(d for d in moved if start <= d <= until))


@lru_cache(maxsize=16384)
def open_calendars(failed: date, declined: tuple[date, ...], country: str) -> tuple[str, ...]:
    """The calendars no decline since the failure speaks against: a calendar is out once a
    charge was declined on one of its paydays after the failure, or `EVIDENCE_DAYS` after."""
    if not declined:
        return calendar_names(country)
    first, last = failed + timedelta(days=1), max(declined)
    out = []
    for name in calendar_names(country):
        days = calendar_paydays(name, first, last, country)
        if not any(0 <= (d - p).days <= EVIDENCE_DAYS for d in declined for p in days):
            out.append(name)
    return tuple(out)


@lru_cache(maxsize=65536)
def pay_evidence(
    failed: date, declined: tuple[date, ...], last: date, day: date, country: str
) -> tuple[int, float, int]:
    """(calendars open, the share of them with a payday in (last, day], the days since the
    newest such payday or -1) for a charge on local `day` whose last try was on `last`."""
    still = open_calendars(failed, declined, country)
    if not still or day <= last:
        return len(still), 0.0, -1
    newest: date | None = None
    paid = 0
    for name in still:
        days = calendar_paydays(name, last + timedelta(days=1), day, country)
        if days:
            paid += 1
            newest = days[-1] if newest is None else max(newest, days[-1])
    since = -1 if newest is None else (day - newest).days
    return len(still), round(paid / len(still), 3), since
