"""Paydays: when a customer's money comes back, in their own country's business calendar.

Hidden from the engine. A nominal payday that is not a business day (a weekend or a public
holiday of the customer's country, from the `holidays` package) moves to the business day
before, the common payroll practice; funds show at `FUNDS_ARRIVE_HOUR` local time, since
direct deposits post overnight. See docs/simulation.md for the sources.
"""

from __future__ import annotations

import calendar
import random
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

FUNDS_ARRIVE_HOUR = 6  # local time on payday


class PaySchedule(StrEnum):
    WEEKLY = "weekly"  # every Friday
    BIWEEKLY = "biweekly"  # every other Friday
    SEMIMONTHLY = "semimonthly"  # the 15th and the last day of the month
    MONTHLY_FIRST = "monthly_first"  # the 1st
    MONTHLY_LAST_BUSINESS_DAY = "monthly_last_business_day"
    MONTHLY_25TH = "monthly_25th"  # common in Japan
    MONTHLY_5TH_BUSINESS_DAY = "monthly_5th_business_day"  # Brazil's legal deadline
    IRREGULAR = "irregular"  # gig and freelance income: payouts every few days


@lru_cache(maxsize=4096)
def public_holidays(country: str, year: int) -> frozenset[date]:
    try:
        return frozenset(holidays.country_holidays(country, years=year))
    except NotImplementedError:  # a country the package does not know: weekends only
        return frozenset()


def is_business_day(day: date, country: str) -> bool:
    return day.weekday() < 5 and day not in public_holidays(country, day.year)


def previous_business_day(day: date, country: str) -> date:
    while not is_business_day(day, country):
        day -= timedelta(days=1)
    return day


def _months(start: date, end: date) -> list[tuple[int, int]]:
    months, year, month = [], start.year, start.month
    while (year, month) <= (end.year, end.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _last_day(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _nth_business_day(year: int, month: int, n: int, country: str) -> date:
    day, seen = date(year, month, 1), 0
    while True:
        if is_business_day(day, country):
            seen += 1
            if seen == n:
                return day
        day += timedelta(days=1)


def nominal_paydays(
    schedule: PaySchedule, start: date, end: date, country: str, anchor: int, rng: random.Random
) -> list[date]:
    """Paydays by the schedule's rule, before the business-day adjustment, in [start, end].

    `anchor` picks the biweekly parity; `rng` (the customer's own) draws irregular payouts.
    """
    days: list[date] = []
    if schedule in (PaySchedule.WEEKLY, PaySchedule.BIWEEKLY):
        friday = start + timedelta(days=(4 - start.weekday()) % 7)
        while friday <= end:
            week = friday.isocalendar().week
            if schedule is PaySchedule.WEEKLY or week % 2 == anchor % 2:
                days.append(friday)
            friday += timedelta(days=7)
        return days
    if schedule is PaySchedule.IRREGULAR:
        day = start + timedelta(days=rng.randrange(0, 6))
        while day <= end:
            days.append(day)
            day += timedelta(days=rng.randrange(3, 13))
        return days
    for year, month in _months(start, end):
        if schedule is PaySchedule.SEMIMONTHLY:
            days += [date(year, month, 15), _last_day(year, month)]
        elif schedule is PaySchedule.MONTHLY_FIRST:
            days.append(date(year, month, 1))
        elif schedule is PaySchedule.MONTHLY_LAST_BUSINESS_DAY:
            days.append(_last_day(year, month))  # the adjustment finds the business day
        elif schedule is PaySchedule.MONTHLY_25TH:
            days.append(date(year, month, 25))
        elif schedule is PaySchedule.MONTHLY_5TH_BUSINESS_DAY:
            days.append(_nth_business_day(year, month, 5, country))
    return [d for d in days if start <= d <= end]


def paydays(
    schedule: PaySchedule,
    start: date,
    end: date,
    country: str,
    zone: ZoneInfo,
    anchor: int,
    rng: random.Random,
) -> tuple[datetime, ...]:
    """When the money is there: each payday moved to a business day, at the arrival hour."""
    moved = {
        previous_business_day(d, country)
        for d in nominal_paydays(schedule, start, end, country, anchor, rng)
    }
    return tuple(
        datetime.combine(d, time(FUNDS_ARRIVE_HOUR), zone).astimezone(ZoneInfo("UTC"))
        for d in sorted(moved)
    )
