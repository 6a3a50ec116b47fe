"""The simulator's in-memory store: what a unit of work does not commit is undone, as a
rolled-back transaction; due rows come out by due time then id, once each, as the SQL query
gives them. (That whole simulations give the SQLite path's JSON is in test_simulate.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError

from dunwell.domain.case import RecoveryCase
from dunwell.domain.decide import decide
from dunwell.domain.decision import Context
from dunwell.domain.events import (
    Customer,
    DeclineReport,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.ledger import LedgerEntry
from dunwell.domain.money import Money
from dunwell.policies import load_policies
from dunwell.store.memory import MemoryStore

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _opened() -> RecoveryCase:
    event = PaymentFailed(
        "evt_1",
        NOW,
        Customer("cus_1"),
        Subscription("sub_1"),
        "in_1",
        Money(4900, "USD"),
        "stripe",
        PaymentMethod("pm_1", "visa", "fp_1"),
        DeclineReport("insufficient_funds", None, None),
    )
    case = decide(None, event, load_policies()["default"], NOW, Context("t")).case
    assert case is not None and len(case.plan) >= 2
    return case


def _write(store: MemoryStore, case: RecoveryCase, *, commit: bool) -> None:
    with store.unit() as uow:
        uow.cases.save(case, NOW)
        uow.actions.sync(case, NOW, opened_here=True)
        uow.ledger.add("t", case.id, LedgerEntry("fp_1", NOW))
        uow.events.add("t", "evt_1", "payment.failed", NOW, NOW, {}, [case.id], "opened")
        if commit:
            uow.commit()


def test_a_unit_of_work_not_committed_leaves_nothing_behind() -> None:
    store, case = MemoryStore(), _opened()
    _write(store, case, commit=False)
    with store.unit() as uow:
        assert uow.cases.get("t", case.id) is None
        assert uow.cases.by_invoice("t", "in_1") is None
        assert uow.actions.next_due_at() is None
        assert uow.ledger.load("t", {"fp_1"}, NOW).entries == ()
        assert uow.events.find("t", "evt_1") is None
    _write(store, case, commit=True)  # the same writes again: nothing left over conflicts
    with store.unit() as uow:
        assert uow.cases.get("t", case.id) == case
        assert len(uow.actions.due(END_OF_TIME, 100)) == len(case.plan)
        assert len(uow.ledger.load("t", {"fp_1"}, NOW).entries) == 1
        assert uow.events.find("t", "evt_1") is not None


def test_due_rows_come_by_time_then_id_and_a_moved_row_once() -> None:
    store, case = MemoryStore(), _opened()
    _write(store, case, commit=True)
    last = max(case.plan, key=lambda p: (p.due_at, p.key))
    # The plan's last action moved before all the others.
    moved = replace(
        case, plan=tuple(replace(p, due_at=NOW) if p.key == last.key else p for p in case.plan)
    )
    with store.unit() as uow:
        assert uow.cases.get("t", case.id) is not None  # read at its version, as ingest does
        uow.cases.save(moved, NOW)
        changes = uow.actions.sync(moved, NOW)
        uow.commit()
    assert [change for change, _ in changes] == ["rescheduled"]
    with store.unit() as uow:
        rows = uow.actions.due(END_OF_TIME, 100)
        assert [r.key for r in uow.actions.due(NOW, 100)] == [
            r.key for r in rows if r.due_at <= NOW
        ]
    assert [r.due_at for r in rows if r.key == last.key] == [NOW]  # at its new time, once
    assert sorted(r.key for r in rows) == sorted(p.key for p in case.plan)  # each key once
    assert [(r.due_at, r.id) for r in rows] == sorted((r.due_at, r.id) for r in rows)


def _ingest_a_failure(store: MemoryStore) -> None:
    from dunwell.engine.clock import VirtualClock
    from dunwell.engine.ingest import Ingest, PolicyBook

    event = PaymentFailed(
        "evt_1",
        NOW,
        Customer("cus_1"),
        Subscription("sub_1"),
        "in_1",
        Money(4900, "USD"),
        "stripe",
        PaymentMethod("pm_1", "visa", "fp_1"),
        DeclineReport("insufficient_funds", None, None),
    )
    ingest = Ingest(store.unit, PolicyBook(load_policies()), VirtualClock(NOW))
    assert ingest("t", event).outcome == "opened"


def test_the_audit_trail_is_kept_only_when_asked_for() -> None:
    kept = MemoryStore(keep_audit=True)
    _ingest_a_failure(kept)
    kinds = [entry["kind"] for entry in kept.audit]
    assert kinds[0] == "event" and {"decision", "action"} <= set(kinds)
    assert all(entry["event_id"] == "evt_1" for entry in kept.audit)
    dropped = MemoryStore()
    _ingest_a_failure(dropped)
    assert dropped.audit == [] and len(dropped.cases) == 1


def test_next_due_at_is_the_earliest_row_still_scheduled() -> None:
    store, case = MemoryStore(), _opened()
    _write(store, case, commit=True)
    times = sorted(p.due_at for p in case.plan)
    with store.unit() as uow:
        assert uow.actions.next_due_at() == times[0]
        first = uow.actions.due(END_OF_TIME, 1)[0]
        assert uow.actions.settle(first.id, "done", NOW, was="scheduled")
        assert uow.actions.next_due_at() == times[1]  # the settled row's entry is stale
        uow.rollback()
    with store.unit() as uow:
        assert uow.actions.next_due_at() == times[0]  # undone: scheduled again


def test_the_ledger_reads_by_time_then_id_whatever_order_entries_come_in() -> None:
    store = MemoryStore()
    earlier, later = NOW.replace(hour=9), NOW.replace(hour=12)
    with store.unit() as uow:
        uow.ledger.add("t", "case_1", LedgerEntry("fp_1", later, "att_2"))
        uow.ledger.add("t", "case_1", LedgerEntry("fp_1", NOW, "att_3"))
        uow.commit()
    with store.unit() as uow:  # an event reporting an earlier time, then undone
        uow.ledger.add("t", "case_1", LedgerEntry("fp_1", earlier, "att_x"))
        assert [e.attempt_id for e in uow.ledger.load("t", {"fp_1"}, NOW).entries] == [
            "att_x",
            "att_2",
            "att_3",
        ]
    with store.unit() as uow:
        uow.ledger.add("t", "case_1", LedgerEntry("fp_1", earlier, "att_1"))
        uow.ledger.add("t", "case_1", LedgerEntry("fp_1", later, "att_2b"))
        uow.commit()
    with store.unit() as uow:
        loaded = [e.attempt_id for e in uow.ledger.load("t", {"fp_1"}, NOW).entries]
    assert loaded == ["att_1", "att_2", "att_2b", "att_3"]  # one time: in the order written


def test_a_unit_handed_out_again_starts_with_nothing_read() -> None:
    store, case = MemoryStore(), _opened()
    _write(store, case, commit=True)
    with store.unit() as first:
        assert first.cases.get("t", case.id) == case
        first.cases.save(replace(case, failures=2), NOW)
        first.commit()
    with store.unit() as again:
        assert again is first  # reused once its block ended
        assert not again.cases.opened_here(case.id)
        with pytest.raises(IntegrityError):  # not read in this unit: saving it is an insert
            again.cases.save(replace(case, failures=3), NOW)
        with store.unit() as inner:  # a unit in use is never handed out twice
            assert inner is not again
    with store.unit() as uow:
        stored = uow.cases.get("t", case.id)
        assert stored is not None and stored.failures == 2
