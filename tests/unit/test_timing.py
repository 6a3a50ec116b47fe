"""Cold-start timing rules: likely paydays, the customer's local hours, and retry placement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dunwell.domain.case import ActionType
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context
from dunwell.domain.events import (
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.domain.policy import Align, LanePolicy, Timing
from dunwell.domain.timing import (
    customer_zone,
    into_local_hours,
    last_business_day,
    likely_paydays,
    next_retry_at,
)
from dunwell.policies import load_policies

pytestmark = pytest.mark.unit

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
HOURS = (8, 20)
DEFAULT = load_policies()["default"]


def lane_policy(*retries: timedelta, align: Align) -> LanePolicy:
    return LanePolicy(
        retries=retries,
        max_attempts=len(retries),
        align=align,
        notices=(),
        access=(),
        end_after=timedelta(days=30),
        end_outcome=DEFAULT.lane(Lane.RETRY_SOON).end_outcome,
    )


# --- paydays ----------------------------------------------------------------------------------


def test_likely_paydays_are_the_1st_the_15th_and_the_last_business_day() -> None:
    # May 2025 ends on a Saturday: its last business day is Friday the 30th.
    assert likely_paydays(date(2025, 5, 1), date(2025, 6, 2)) == [
        date(2025, 5, 1),
        date(2025, 5, 15),
        date(2025, 5, 30),
        date(2025, 6, 1),
    ]


def test_likely_paydays_cross_the_year_and_respect_both_bounds() -> None:
    assert likely_paydays(date(2024, 12, 16), date(2025, 1, 15)) == [
        date(2024, 12, 31),
        date(2025, 1, 1),
        date(2025, 1, 15),
    ]
    assert likely_paydays(date(2025, 3, 2), date(2025, 3, 14)) == []
    assert likely_paydays(date(2025, 3, 15), date(2025, 3, 15)) == [date(2025, 3, 15)]


def test_japan_adds_the_25th_or_the_business_day_before() -> None:
    # 25 May 2025 is a Sunday: Japanese employers pay on Friday the 23rd.
    assert likely_paydays(date(2025, 5, 16), date(2025, 5, 29), "JP") == [date(2025, 5, 23)]
    assert likely_paydays(date(2025, 6, 16), date(2025, 6, 29), "jp") == [date(2025, 6, 25)]
    assert likely_paydays(date(2025, 5, 16), date(2025, 5, 29), "US") == []
    assert likely_paydays(date(2025, 5, 16), date(2025, 5, 29)) == []


def test_brazil_adds_the_fifth_business_day_skipping_public_holidays() -> None:
    # May 2025: Thursday the 1st is Labour Day, so the 5th business day is Thursday the 8th.
    assert likely_paydays(date(2025, 5, 2), date(2025, 5, 14), "BR") == [date(2025, 5, 8)]
    # June 2025: Monday the 2nd .. Friday the 6th.
    assert likely_paydays(date(2025, 6, 2), date(2025, 6, 14), "BR") == [date(2025, 6, 6)]


def test_the_last_business_day_skips_the_weekend() -> None:
    assert last_business_day(2025, 8) == date(2025, 8, 29)  # the 31st is a Sunday
    assert last_business_day(2025, 2) == date(2025, 2, 28)  # a Friday
    assert last_business_day(2024, 2) == date(2024, 2, 29)  # leap year, a Thursday


@settings(max_examples=25, deadline=None, database=None)
@given(st.dates(date(2000, 1, 1), date(2100, 1, 1)), st.integers(0, 70))
def test_likely_paydays_are_sorted_unique_and_inside_the_range(start: date, days: int) -> None:
    end = start + timedelta(days=days)
    found = likely_paydays(start, end)
    assert found == sorted(set(found))
    assert all(start <= d <= end for d in found)
    assert all(d.day in (1, 15) or d == last_business_day(d.year, d.month) for d in found)
    if days >= 16:  # no 16-day stretch is without a 1st or a 15th
        assert found


# --- local hours ------------------------------------------------------------------------------


def test_into_local_hours_keeps_a_time_inside_the_customers_hours() -> None:
    at = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York
    assert into_local_hours(at, NEW_YORK, HOURS) == at


def test_into_local_hours_moves_an_early_time_to_the_start_of_the_same_local_day() -> None:
    at = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)  # 05:00 in New York
    assert into_local_hours(at, NEW_YORK, HOURS) == datetime(2025, 3, 4, 13, 0, tzinfo=UTC)


def test_into_local_hours_moves_a_late_time_to_the_next_local_morning_across_dates() -> None:
    # 03:00 UTC on the 4th is still 22:00 on the 3rd in New York: next morning is the 4th.
    at = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
    assert into_local_hours(at, NEW_YORK, HOURS) == datetime(2025, 3, 4, 13, 0, tzinfo=UTC)
    # 12:00 UTC is 21:00 in Tokyo: the next Tokyo morning is 23:00 UTC the same UTC day.
    at = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    assert into_local_hours(at, TOKYO, HOURS) == datetime(2025, 3, 4, 23, 0, tzinfo=UTC)


def test_into_local_hours_follows_the_clock_change() -> None:
    # New York springs forward on 9 March 2025: 08:00 local is 12:00 UTC, not 13:00.
    at = datetime(2025, 3, 9, 3, 0, tzinfo=UTC)  # 22:00 on the 8th, still EST
    assert into_local_hours(at, NEW_YORK, HOURS) == datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


def test_the_end_hour_itself_is_outside_local_hours() -> None:
    at = datetime(2025, 3, 4, 20, 0, tzinfo=TOKYO)
    assert into_local_hours(at, TOKYO, HOURS) == datetime(2025, 3, 5, 8, 0, tzinfo=TOKYO)


@settings(max_examples=30, deadline=None, database=None)
@given(
    st.datetimes(datetime(2024, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(["America/New_York", "Asia/Tokyo", "Asia/Kolkata", "Pacific/Auckland", "UTC"]),
    st.tuples(st.integers(0, 12), st.integers(13, 24)),
)
def test_into_local_hours_never_goes_back_and_lands_inside_the_hours(
    at: datetime, zone_name: str, hours: tuple[int, int]
) -> None:
    zone = ZoneInfo(zone_name)
    moved = into_local_hours(at, zone, hours)
    assert moved >= at
    assert moved - at <= timedelta(hours=25)
    assert hours[0] <= moved.astimezone(zone).hour < hours[1]


def test_an_unknown_or_missing_timezone_falls_back_to_utc() -> None:
    assert customer_zone(None).key == "UTC"
    assert customer_zone("Mars/Olympus_Mons").key == "UTC"
    assert customer_zone("../etc/passwd").key == "UTC"
    assert customer_zone("Europe/Berlin").key == "Europe/Berlin"


# --- retry placement --------------------------------------------------------------------------


def test_a_payday_aligned_retry_moves_forward_to_a_payday_within_the_window() -> None:
    opened = datetime(2025, 5, 12, 12, 0, tzinfo=UTC)  # +2d is the 14th; the 15th is a payday
    timed = next_retry_at(
        opened,
        0,
        lane_policy(timedelta(days=2), align=Align.PAYDAY),
        Timing(),
        "America/New_York",
        "retry_after_funds",
    )
    assert timed is not None
    assert timed.due_at == datetime(2025, 5, 15, 8, 0, tzinfo=NEW_YORK)
    assert timed.rule == "policy.lanes.retry_after_funds.retries[0] + timing.payday"
    assert "likely payday 2025-05-15" in timed.reason


def test_a_payday_aligned_retry_in_japan_moves_to_the_25th() -> None:
    opened = datetime(2025, 6, 21, 3, 0, tzinfo=UTC)  # +2d is Monday the 23rd in Tokyo
    timed = next_retry_at(
        opened,
        0,
        lane_policy(timedelta(days=2), align=Align.PAYDAY),
        Timing(),
        "Asia/Tokyo",
        "retry_after_funds",
        country="JP",
    )
    assert timed is not None
    assert timed.due_at == datetime(2025, 6, 25, 8, 0, tzinfo=TOKYO)
    assert "likely payday 2025-06-25" in timed.reason


def test_a_payday_aligned_retry_with_no_payday_in_the_window_keeps_its_offset() -> None:
    opened = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # +2d is the 6th; next payday the 15th
    timed = next_retry_at(
        opened,
        0,
        lane_policy(timedelta(days=2), align=Align.PAYDAY),
        Timing(),
        "America/New_York",
        "retry_after_funds",
    )
    assert timed is not None
    assert timed.due_at == opened + timedelta(days=2)
    assert "payday" not in timed.rule


def test_an_unaligned_retry_keeps_its_offset_even_at_night() -> None:
    opened = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
    timed = next_retry_at(
        opened, 0, lane_policy(timedelta(hours=1), align=Align.NONE), Timing(), None, "x"
    )
    assert timed is not None
    assert timed.due_at == opened + timedelta(hours=1)


def test_no_retry_is_timed_beyond_the_offsets_or_max_attempts() -> None:
    policy = lane_policy(timedelta(hours=1), timedelta(hours=2), align=Align.NONE)
    opened = datetime(2025, 3, 4, tzinfo=UTC)
    assert next_retry_at(opened, 2, policy, Timing(), None, "x") is None
    capped = LanePolicy(
        policy.retries, 1, policy.align, (), (), policy.end_after, policy.end_outcome
    )
    assert next_retry_at(opened, 1, capped, Timing(), None, "x") is None


def test_decide_plans_a_retry_after_funds_retry_on_a_payday_in_the_customers_morning() -> None:
    opened = datetime(2025, 5, 12, 14, 0, tzinfo=UTC)
    event = PaymentFailed(
        "evt_1",
        opened,
        Customer("cus_1", timezone="America/New_York"),
        Subscription("sub_1"),
        "in_1",
        Money(1000, "USD"),
        "stripe",
        PaymentMethod("pm_1", "visa", "fp_1"),
        DeclineReport("insufficient_funds"),
    )
    case = decide(None, event, DEFAULT, opened, Context("t")).case
    assert case is not None
    [retry] = [a for a in case.plan if a.type is ActionType.RETRY]
    payday = date(2025, 5, 15)
    assert retry.due_at.astimezone(NEW_YORK).date() == payday
    assert retry.due_at.astimezone(NEW_YORK).hour == DEFAULT.timing.local_hours[0]
    assert retry.due_at - (opened + timedelta(days=2)) <= DEFAULT.timing.payday_window
    assert "timing.payday" in retry.rule


def test_next_retry_at_remembers_answers_without_mixing_them_up() -> None:
    ladder = lane_policy(timedelta(days=2), timedelta(days=5), align=Align.PAYDAY)
    same = lane_policy(timedelta(days=2), timedelta(days=5), align=Align.PAYDAY)  # equal, not it
    later = lane_policy(timedelta(days=3), timedelta(days=5), align=Align.PAYDAY)
    opened = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    timing = DEFAULT.timing
    first = next_retry_at(opened, 0, ladder, timing, "Europe/Berlin", "lane", "DE")
    assert first is not None
    assert next_retry_at(opened, 0, ladder, timing, "Europe/Berlin", "lane", "DE") is first
    assert next_retry_at(opened, 0, same, timing, "Europe/Berlin", "lane", "DE") == first
    assert next_retry_at(opened, 0, later, timing, "Europe/Berlin", "lane", "DE") != first
    assert next_retry_at(opened, 1, ladder, timing, "Europe/Berlin", "lane", "DE") != first
    assert next_retry_at(opened, 2, ladder, timing, "Europe/Berlin", "lane", "DE") is None
    # The same instant in another zone: the answer keeps the zone it was asked in.
    none = lane_policy(timedelta(hours=6), align=Align.NONE)
    in_utc = next_retry_at(opened, 0, none, timing, None, "lane")
    in_tokyo = next_retry_at(opened.astimezone(TOKYO), 0, none, timing, None, "lane")
    assert in_utc is not None and in_tokyo is not None
    assert in_utc.due_at == in_tokyo.due_at and in_tokyo.due_at.tzinfo is TOKYO
