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
from dunwell.domain.records import direct_init, evolve

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


def test_evolve_with_the_same_fields_changed_again_and_in_another_order() -> None:
    # One copier per class and changed fields: a second call with other values, and the
    # same fields named in another order, still give what `replace` gives.
    case = _case()
    for changes in (
        {"status": CaseStatus.RECOVERED, "failures": 2},
        {"status": CaseStatus.CHURNED, "failures": 3},
        {"failures": 4, "status": CaseStatus.CANCELED},
    ):
        assert evolve(case, **changes) == dataclasses.replace(case, **changes)
    with pytest.raises(TypeError, match="statuz"):
        evolve(_case(), failures=2, statuz=CaseStatus.RECOVERED)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plain:
    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    seen: list[str] = dataclasses.field(default_factory=list)


@direct_init
@dataclasses.dataclass(frozen=True, slots=True)
class _Sample:
    name: str
    count: int = 1
    tags: tuple[str, ...] = ()
    seen: list[str] = dataclasses.field(default_factory=list)


def test_direct_init_builds_what_the_dataclass_init_builds() -> None:
    for args, kwargs in (
        (("a",), {}),
        (("a", 3), {"tags": ("x",)}),
        ((), {"name": "b", "seen": ["s"]}),
        (("c", 2, ("y",), ["t"]), {}),
    ):
        assert dataclasses.astuple(_Sample(*args, **kwargs)) == dataclasses.astuple(
            _Plain(*args, **kwargs)
        )
    assert _Sample("a").seen is not _Sample("a").seen  # a fresh default from the factory
    assert _Sample.__init__.__qualname__ == "_Sample.__init__"
    with pytest.raises(TypeError):
        _Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _Sample("a", nope=1)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Sample("a").count = 2  # type: ignore[misc]
    case = _case()  # a record of the core built with it: every field where it belongs
    assert RecoveryCase(**{f.name: getattr(case, f.name) for f in dataclasses.fields(case)}) == case
    attempt = Attempt("att_1", 1, "fp_1", "stripe", "pm_1", AT)
    assert (attempt.status, attempt.finished_at, attempt.sent) == (
        AttemptStatus.IN_FLIGHT,
        None,
        True,
    )


def test_direct_init_refuses_a_record_it_cannot_build_the_same_way() -> None:
    with pytest.raises(TypeError, match="Money"):
        direct_init(Money)  # checks its values in __post_init__
