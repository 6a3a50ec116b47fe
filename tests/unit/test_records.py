"""`evolve`: the decision core's copy of a frozen record, equal to `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from dunwell.domain.case import Attempt, AttemptStatus, CaseStatus, DeclineInfo, RecoveryCase
from dunwell.domain.events import Customer, PaymentMethod, Subscription
from dunwell.domain.lanes import Lane
from dunwell.domain.ledger import LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.records import evolve

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _case() -> RecoveryCase:
    decline = DeclineInfo(
        "stripe", "card_declined", "51", None, None, Lane.RETRY_AFTER_FUNDS, "r", True
    )
    return RecoveryCase(
        id="case_1",
        tenant_id="t",
        invoice_id="in_1",
        customer=Customer("cus_1", country="DE", timezone="Europe/Berlin"),
        subscription=Subscription("sub_1"),
        amount=Money(1999, "EUR"),
        payment_method=PaymentMethod("pm_1", "visa", "fp_1"),
        policy_name="default",
        opened_at=AT,
        decline=decline,
        blocked_credentials=frozenset({"fp_0"}),
    )


def test_evolve_gives_what_replace_gives_and_leaves_the_original_alone() -> None:
    case = _case()
    attempt = Attempt("att_1", 1, "fp_1", "stripe", "pm_1", AT)
    changes = dict(
        status=CaseStatus.RECOVERED, closed_at=AT + timedelta(days=2), attempts=(attempt,)
    )
    copy = evolve(case, **changes)
    assert copy == dataclasses.replace(case, **changes)
    assert type(copy) is RecoveryCase
    assert copy.status is CaseStatus.RECOVERED and copy.attempts == (attempt,)
    assert copy.blocked_credentials is case.blocked_credentials  # unchanged fields shared
    assert case.status is CaseStatus.OPEN and case.closed_at is None and case.attempts == ()
    assert hash(copy) == hash(dataclasses.replace(case, **changes))


def test_evolve_without_changes_is_an_equal_copy_and_still_frozen() -> None:
    entry = LedgerEntry("fp_1", AT, "att_1")
    copy = evolve(entry)
    assert copy == entry and copy is not entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.counted = False  # type: ignore[misc]
    assert evolve(entry, counted=False).counted is False
    attempt = Attempt("att_1", 1, "fp_1", "stripe", "pm_1", AT)
    assert evolve(attempt, status=AttemptStatus.FAILED) == dataclasses.replace(
        attempt, status=AttemptStatus.FAILED
    )


def test_evolve_refuses_a_name_that_is_not_a_field() -> None:
    with pytest.raises(TypeError, match="statuz"):
        evolve(_case(), statuz=CaseStatus.RECOVERED)


def test_a_record_that_checks_its_values_is_copied_through_replace() -> None:
    # Money checks its values in __post_init__: a copy must check them too.
    price = Money(1999, "EUR")
    assert evolve(price, amount_minor=500) == Money(500, "EUR")
    with pytest.raises(ValueError):
        evolve(price, currency="euro")
