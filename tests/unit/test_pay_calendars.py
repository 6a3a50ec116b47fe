"""Pay calendars: their paydays, and what a case's declines say about the customer's one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dunwell.domain.pay_calendars import calendar_paydays, open_calendars, pay_evidence
from dunwell.domain.scoring import retry_features

pytestmark = pytest.mark.unit

ALL = (
    "weekly",
    "biweekly_a",
    "biweekly_b",
    "semimonthly",
    "monthly_1st",
    "monthly_last_business_day",
)


def test_paydays_on_a_day_off_are_paid_the_business_day_before() -> None:
    june = (date(2025, 5, 25), date(2025, 7, 10))
    # Sunday 1 June is paid on Friday 30 May; 1 July is a Tuesday.
    assert calendar_paydays("monthly_1st", *june, "US") == (date(2025, 5, 30), date(2025, 7, 1))
    # Friday 4 July is Independence Day in the US, not in Germany.
    us = calendar_paydays("weekly", *june, "US")
    assert date(2025, 7, 3) in us and date(2025, 7, 4) not in us
    assert date(2025, 7, 4) in calendar_paydays("weekly", *june, "DE")
    assert calendar_paydays("semimonthly", date(2025, 6, 1), date(2025, 6, 30), "US") == (
        date(2025, 6, 13),  # the 15th is a Sunday
        date(2025, 6, 30),
    )
    a = calendar_paydays("biweekly_a", *june, "DE")
    b = calendar_paydays("biweekly_b", *june, "DE")
    assert sorted(a + b) == list(calendar_paydays("weekly", *june, "DE"))
    assert all((y - x).days == 14 for x, y in zip(a, a[1:], strict=False))


def test_a_countrys_own_calendar_is_one_of_the_calendars_there() -> None:
    assert open_calendars(date(2025, 6, 2), (), "JP") == (*ALL, "country")
    assert open_calendars(date(2025, 6, 2), (), "US") == ALL
    assert calendar_paydays("country", date(2025, 6, 1), date(2025, 6, 30), "JP") == (
        date(2025, 6, 25),
    )


def test_a_decline_on_a_payday_or_the_day_after_closes_the_calendars_that_paid_then() -> None:
    failed = date(2025, 5, 26)  # a Monday
    # Saturday 31 May, the day after Friday 30 May: a Friday, the last business day, and
    # the 1st's payday moved back from Sunday. Only the other biweekly phase is left.
    left = open_calendars(failed, (date(2025, 5, 31),), "US")
    assert len(left) == 1 and left[0].startswith("biweekly")
    assert date(2025, 5, 30) not in calendar_paydays(left[0], failed, date(2025, 6, 10), "US")
    # Two days after: the money could have been spent already, nothing is closed.
    assert open_calendars(failed, (date(2025, 6, 1),), "US") == ALL
    # A payday before the failure says nothing about the short money after it.
    assert open_calendars(date(2025, 5, 30), (date(2025, 5, 31),), "US") == ALL


def test_evidence_is_the_share_of_open_calendars_that_paid_since_the_last_try() -> None:
    failed, declined = date(2025, 5, 26), (date(2025, 5, 31),)
    # The other biweekly phase pays on Friday 6 June.
    assert pay_evidence(failed, declined, date(2025, 5, 31), date(2025, 6, 5), "US") == (
        1,
        0.0,
        -1,
    )
    assert pay_evidence(failed, declined, date(2025, 5, 31), date(2025, 6, 9), "US") == (
        1,
        1.0,
        3,
    )
    # Before any decline: six calendars; by Tuesday 3 June all but one biweekly phase paid
    # (on Friday 30 May), four days before.
    assert pay_evidence(failed, (), failed, date(2025, 6, 3), "US") == (6, 0.833, 4)


def test_the_retry_features_carry_the_cases_declines() -> None:
    def features(declined: list[datetime]) -> tuple[int, float, int]:
        f = retry_features(
            lane="retry_after_funds",
            code="insufficient_funds",
            amount_minor=1,
            attempt_number=len(declined) + 1,
            failed_at=datetime(2025, 5, 26, 14, tzinfo=UTC),
            at=datetime(2025, 6, 14, 14, tzinfo=UTC),
            timezone="America/New_York",
            brand=None,
            country="US",
            segment=None,
            last_try_at=declined[-1] if declined else None,
            declined_at=declined,
        )
        return f.pay_calendars_open, f.open_calendars_paid_share, f.days_since_open_payday

    assert features([]) == (6, 1.0, 1)
    # 31 May 14:00 UTC is 10:00 in New York, the day after Friday's paydays.
    # The biweekly phase left paid on 6 June.
    assert features([datetime(2025, 5, 31, 14, tzinfo=UTC)]) == (1, 1.0, 8)
    # A decline after the charge being scored is not known yet.
    assert features([datetime(2025, 6, 20, tzinfo=UTC)])[0] == 6
