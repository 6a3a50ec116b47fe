"""When the next retry should happen, by the policy's offsets and simple explainable rules.

Cold-start rules only (the learned model comes later): retry offsets count from the case's
opening; `payday` moves a retry forward to a likely payday (the 1st, the 15th, the last
business day of the month, and the customer's country's own usual payday where it has one:
`COUNTRY_PAYDAYS`) when one falls within the policy's window; every aligned retry
lands inside the customer's local contact hours; with `timing.holidays`, one that would land
on a public holiday of the customer's country moves to the next business day's first hour.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dunwell.domain.durations import format_duration
from dunwell.domain.holiday_calendar import holiday_name, is_business_day, next_business_day
from dunwell.domain.memo import IdentityMemo
from dunwell.domain.policy import Align, LanePolicy, Timing
from dunwell.domain.records import direct_init

UTC = ZoneInfo("UTC")


@direct_init
@dataclass(frozen=True, slots=True)
class RetryTime:
    due_at: datetime
    rule: str
    reason: str


def customer_zone(name: str | None) -> ZoneInfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def last_business_day(year: int, month: int) -> date:
    day = date(year, month, calendar.monthrange(year, month)[1])
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _25th_or_business_day_before(country: str, year: int, month: int) -> date:
    day = date(year, month, 25)
    while not is_business_day(country, day):
        day -= timedelta(days=1)
    return day


def _fifth_business_day(country: str, year: int, month: int) -> date:
    day, found = date(year, month, 1), 0
    while True:
        if is_business_day(country, day):
            found += 1
            if found == 5:
                return day
        day += timedelta(days=1)


# Where most employers pay on another day than the 1st, the 15th or the last business day
# (docs/scoring.md): in Japan on the 25th, earlier when it is not a business day; in Brazil
# by the 5th business day, the legal deadline for monthly wages (CLT, art. 459, para. 1).
COUNTRY_PAYDAYS = {
    "JP": _25th_or_business_day_before,
    "BR": _fifth_business_day,
}


def likely_paydays(start: date, end: date, country: str | None = None) -> list[date]:
    """Likely paydays in [start, end]: the 1st, the 15th, the last business day, and the
    country's own usual payday where `COUNTRY_PAYDAYS` knows one."""
    where = (country or "").upper()
    own = COUNTRY_PAYDAYS.get(where)
    days: set[date] = set()
    year, month = start.year, start.month
    while date(year, month, 1) <= end:
        days |= {date(year, month, 1), date(year, month, 15), last_business_day(year, month)}
        if own is not None:
            days.add(own(where, year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted(d for d in days if start <= d <= end)


def into_local_hours(at: datetime, zone: ZoneInfo, hours: tuple[int, int]) -> datetime:
    local = at.astimezone(zone)
    start, end = hours
    if local.hour < start:
        local = datetime.combine(local.date(), time(start), zone)
    elif local.hour >= end:
        local = datetime.combine(local.date() + timedelta(days=1), time(start), zone)
    return local.astimezone(UTC)


# `next_retry_at` is pure, and every replan of a case asks it again until the next attempt.
# The opening time's zone and fold are part of the key: equal times in other zones give
# answers in other zones.
_RETRY_TIMES: IdentityMemo[RetryTime | None] = IdentityMemo(65536)


def next_retry_at(
    opened_at: datetime,
    attempts_made: int,
    lane_policy: LanePolicy,
    timing: Timing,
    timezone: str | None,
    lane_name: str,
    country: str | None = None,
) -> RetryTime | None:
    """The policy's time for retry number `attempts_made + 1`, or None when none is left."""
    key = (
        opened_at,
        opened_at.tzinfo,
        opened_at.fold,
        attempts_made,
        id(lane_policy),
        id(timing),
        timezone,
        lane_name,
        country,
    )
    return _RETRY_TIMES.get(
        key,
        (lane_policy, timing),
        lambda: _next_retry_at(
            opened_at, attempts_made, lane_policy, timing, timezone, lane_name, country
        ),
    )


def _next_retry_at(
    opened_at: datetime,
    attempts_made: int,
    lane_policy: LanePolicy,
    timing: Timing,
    timezone: str | None,
    lane_name: str,
    country: str | None,
) -> RetryTime | None:
    n = attempts_made
    if n >= lane_policy.max_attempts or n >= len(lane_policy.retries):
        return None
    offset = lane_policy.retries[n]
    due = opened_at + offset
    zone = customer_zone(timezone)
    reason = (
        f"retry {n + 1} of {min(lane_policy.max_attempts, len(lane_policy.retries))} "
        f"for lane {lane_name}: {format_duration(offset)} after the first failure"
    )
    rule = f"policy.lanes.{lane_name}.retries[{n}]"
    if lane_policy.align is Align.NONE:
        return RetryTime(due, rule, reason)
    if lane_policy.align in (Align.PAYDAY, Align.LEARNED):  # learned: cold start
        local_day = due.astimezone(zone).date()
        paydays = likely_paydays(local_day, local_day + timing.payday_window, country)
        if paydays:
            payday = paydays[0]
            if payday != local_day:
                due = datetime.combine(payday, time(timing.local_hours[0]), zone).astimezone(UTC)
            reason += f", on the likely payday {payday.isoformat()} (customer funds return)"
            rule += " + timing.payday"
    aligned = into_local_hours(due, zone, timing.local_hours)
    local = aligned.astimezone(zone)
    holiday = holiday_name(country, local.date()) if timing.holidays else None
    if holiday is not None:
        # Shifted, not skipped: the retry keeps its place in the ladder.
        landed = local.date()
        day = next_business_day(country, landed)
        aligned = datetime.combine(day, time(timing.local_hours[0]), zone).astimezone(UTC)
        local = aligned.astimezone(zone)
        reason += (
            f", moved from {landed.isoformat()} ({holiday}, a public "
            f"holiday in {country}) to the next business day {day.isoformat()}"
        )
        rule += " + timing.holidays"
    reason += (
        f", at {local:%H:%M} {zone.key} (customer's local hours "
        f"{timing.local_hours[0]:02d}-{timing.local_hours[1]:02d})"
    )
    return RetryTime(aligned, rule, reason)
