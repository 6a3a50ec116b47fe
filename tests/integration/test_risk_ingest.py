"""The risk rules through ingest, on SQLite and PostgreSQL: the shell reads the customer's
earlier cases and signals from the database, and records each new signal for later cases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from dunwell.domain.decision import Escalate
from dunwell.store.tables import CaseRow, CustomerSignalRow
from dunwell.store.unit_of_work import UnitOfWork
from factories import card_updated_body, failed_body, post, succeeded_body

pytestmark = pytest.mark.integration


def canceled_body(event_id: str, at: datetime, customer: str = "cus_1") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "subscription.canceled",
        "occurred_at": at.isoformat(),
        "subscription": {"id": f"sub_{customer}"},
    }


def _scheduled(services, case_id: str) -> list[str]:
    with UnitOfWork(services.sessions) as uow:
        return [a.key for a in uow.actions.for_case(case_id) if a.status == "scheduled"]


def _decisions(services, case_id: str) -> dict[str, Any]:
    with UnitOfWork(services.sessions) as uow:
        return {e.rule: e for e in uow.audit.for_case(case_id) if e.kind == "decision"}


def test_a_customers_fourth_failed_renewal_in_half_a_year_gets_one_retry(services, clock):
    # Two renewals that ended canceled, one the customer fixed with a new card.
    for n in (1, 2):
        post(services, failed_body(f"evt_f{n}", clock.now(), invoice=f"in_{n}"))
        clock.advance(timedelta(days=30))
        post(services, canceled_body(f"evt_c{n}", clock.now()))
    post(services, failed_body("evt_f3", clock.now(), invoice="in_3"))
    clock.advance(timedelta(hours=2))
    post(services, card_updated_body("evt_u3", clock.now()))
    post(services, succeeded_body("evt_p3", clock.now(), invoice="in_3"))
    with UnitOfWork(services.sessions) as uow:
        recovered_by = uow.session.scalar(
            select(CaseRow.recovered_by).where(CaseRow.invoice_id == "in_3")
        )
    assert recovered_by == "customer"

    clock.advance(timedelta(days=30))
    fourth = post(services, failed_body("evt_f4", clock.now(), invoice="in_4"))
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", fourth.case_ids[0])
    assert case.retry_cap == 1
    chronic = _decisions(services, case.id)["risk.chronic"]
    assert chronic.text.startswith(
        "customer had 3 failed renewals in 180d (2 canceled, 1 recovered by customer)"
    )
    assert chronic.data["inputs"]["earlier_cases"] == "3"
    keys = _scheduled(services, case.id)
    assert "retry:1" in keys and "notice:entered:update_payment_method" in keys

    # Another customer's first failure keeps the whole ladder.
    other = post(services, failed_body("evt_o1", clock.now(), invoice="in_o", customer="cus_2"))
    with UnitOfWork(services.sessions) as uow:
        assert uow.cases.get("acme", other.case_ids[0]).retry_cap is None


def test_a_third_card_declined_within_a_day_stops_charges_and_escalates(services, clock):
    for n, fingerprint in enumerate(("fp_a", "fp_b"), start=1):
        post(
            services,
            failed_body(f"evt_{n}", clock.now(), invoice=f"in_{n}", fingerprint=fingerprint),
        )
        clock.advance(timedelta(hours=2))
    third = post(services, failed_body("evt_3", clock.now(), invoice="in_3", fingerprint="fp_c"))
    [escalate] = [e for e in third.effects if isinstance(e, Escalate)]
    assert escalate.reason.startswith("3 different cards of this customer were declined within 1d")
    case_id = third.case_ids[0]
    assert not any(key.startswith("retry:") for key in _scheduled(services, case_id))
    fired = _decisions(services, case_id)["risk.card_testing.cards_declined"]
    assert fired.data["inputs"]["credentials"] == "fp_a,fp_b,fp_c"
    with UnitOfWork(services.sessions) as uow:
        kinds = uow.session.scalars(
            select(CustomerSignalRow.kind).where(CustomerSignalRow.customer_id == "cus_1")
        ).all()
    assert sorted(kinds) == ["decline", "decline", "decline"]


def test_a_fraud_decline_last_month_stops_charges_on_a_new_case(services, clock):
    post(services, failed_body("evt_1", clock.now(), invoice="in_1", code="fraudulent"))
    clock.advance(timedelta(days=30))
    second = post(services, failed_body("evt_2", clock.now(), invoice="in_2", fingerprint="fp_9"))
    case_id = second.case_ids[0]
    assert "risk.card_testing.prior_fraud" in _decisions(services, case_id)
    assert not any(key.startswith("retry:") for key in _scheduled(services, case_id))
    assert any(isinstance(e, Escalate) for e in second.effects)
