"""Training rows from the deployment's own database: the attempts dunwell itself made.

A merchant who has run dunwell for a while needs no export: every case keeps its charge
attempts (time, outcome, decline code, card), and the event log keeps the failure each case
opened with. One row per attempt that reached the networks on the card that first failed, the
same rows `history_from_sim` builds from a simulation and `dunwell history import` reads
from a file, so one trainer serves all three. Attempts on a new card (after the customer
updated it) are left out: the rules retry those at once, whatever the model says.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from dunwell.domain.case import AttemptStatus, RecoveryCase
from dunwell.domain.declines import classify_decline
from dunwell.domain.events import DeclineReport
from dunwell.scoring.history import HistoryRow, case_end
from dunwell.store.unit_of_work import UnitOfWork

_OUTCOMES = {AttemptStatus.SUCCEEDED: "approved", AttemptStatus.FAILED: "declined"}


def history_from_store(
    sessions: sessionmaker[Session], tenant_id: str, since: datetime, until: datetime
) -> list[HistoryRow]:
    """Every finished attempt of the tenant's cases opened in [since, until)."""
    rows: list[HistoryRow] = []
    with UnitOfWork(sessions) as uow:
        openings = uow.events.failures_of_cases(tenant_id, since)
        for case in uow.cases.opened_between(tenant_id, since, until):
            rows.extend(_case_rows(case, openings.get(case.id)))
    return rows


def _case_rows(case: RecoveryCase, opening: dict[str, Any] | None) -> Iterator[HistoryRow]:
    method = ((opening or {}).get("payment") or {}).get("payment_method") or {}
    first_card = method.get("fingerprint") or method.get("token")
    brand = method.get("brand") or case.payment_method.brand
    decline = (opening or {}).get("decline") or {}
    code: str | None = decline.get("provider_code")
    provider = decline.get("provider") or case.decline.code_provider or case.decline.provider
    attempts = sorted(
        (a for a in case.attempts if a.status in _OUTCOMES), key=lambda a: a.started_at
    )
    if first_card is None and attempts:
        first_card = attempts[0].credential_key  # an event log pruned: the first charged card
    ending, closed_at = case_end(case)
    number = 0
    for attempt in attempts:
        number += 1
        if attempt.credential_key == first_card:
            report = DeclineReport(code, provider=provider)
            yield HistoryRow(
                case_id=case.id,
                first_failed_at=case.opened_at,
                attempted_at=attempt.started_at,
                attempt_number=number,
                outcome=_OUTCOMES[attempt.status],
                amount_minor=case.amount.amount_minor,
                currency=case.amount.currency,
                decline_code=code or "",
                lane=classify_decline(report, brand).lane.value,
                provider=provider or "",
                card_brand=brand or "",
                country=case.customer.country or "",
                timezone=case.customer.timezone or "",
                segment=case.customer.segment or "",
                case_outcome=ending,
                case_closed_at=closed_at,
            )
        if attempt.status is AttemptStatus.FAILED and attempt.provider_code:
            code = attempt.provider_code
