"""Concurrent deliveries: racing writers end in one case and one effect per event id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dunwell.store.tables import CaseRow, EventRow
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post

pytestmark = pytest.mark.integration


def _count(services, table) -> int:
    with UnitOfWork(services.sessions) as uow:
        return uow.session.scalar(select(func.count()).select_from(table))


def test_the_same_event_delivered_eight_times_at_once_has_one_effect(services, clock):
    body = failed_body("evt_race", clock.now())
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post(services, body), range(8)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({tuple(r.case_ids) for r in results}) == 1
    assert _count(services, CaseRow) == 1 and _count(services, EventRow) == 1


def test_different_failures_for_one_new_invoice_racing_open_one_case(services, clock):
    bodies = [
        failed_body(f"evt_{i}", clock.now() + timedelta(seconds=i), code="do_not_honor")
        for i in range(6)
    ]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda b: post(services, b), bodies))
    assert all(not r.duplicate for r in results)
    assert sum(r.outcome == "opened" for r in results) == 1
    assert _count(services, CaseRow) == 1 and _count(services, EventRow) == 6
