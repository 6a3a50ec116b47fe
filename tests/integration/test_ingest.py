"""Ingest on the real unit of work, on SQLite and PostgreSQL: dedup, ordering, atomicity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from dunwell.engine.ingest import UnknownPolicy
from dunwell.store.tables import ActionRow, AuditEntry, CaseRow, EventRow, PolicyAssignment
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post, succeeded_body

pytestmark = pytest.mark.integration


def _count(services, table) -> int:
    with UnitOfWork(services.sessions) as uow:
        return uow.session.scalar(select(func.count()).select_from(table))


def test_a_failed_payment_opens_a_case_with_its_actions_and_audit(services, clock):
    result = post(services, failed_body("evt_1", clock.now()))
    assert result.outcome == "opened" and not result.duplicate
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", result.case_ids[0])
        actions = uow.actions.for_case(case.id)
        audit = uow.audit.for_case(case.id)
    assert case.lane.value == "retry_after_funds"
    scheduled = [a for a in actions if a.status == "scheduled"]
    assert {a.key for a in scheduled} == {p.key for p in case.plan}
    # The grace step, due at once, came with the decision: its access change is in the outbox.
    [outbox] = [a for a in actions if a.status != "scheduled"]
    assert (outbox.key, outbox.status) == ("effect:evt_1", "running")
    assert [(e["kind"], e["level"]) for e in outbox.effects] == [("access", "grace")]
    retry = next(a for a in actions if a.type == "retry")
    assert retry.due_at > clock.now()
    assert "retry 1 of" in retry.reason
    kinds = [e.kind for e in audit]
    assert kinds[0] == "event" and "decision" in kinds and "action" in kinds


def test_the_same_event_twice_has_one_effect(services, clock):
    first = post(services, failed_body("evt_1", clock.now()))
    audit_before = _count(services, AuditEntry)
    second = post(services, failed_body("evt_1", clock.now()))
    assert second.duplicate and second.case_ids == first.case_ids
    assert _count(services, AuditEntry) == audit_before
    assert _count(services, CaseRow) == 1
    assert _count(services, EventRow) == 1


def test_a_success_before_its_failure_opens_no_case(services, clock):
    post(services, succeeded_body("evt_paid", clock.now()))
    late = post(services, failed_body("evt_failed", clock.now() - timedelta(hours=1)))
    assert late.outcome == "ignored" and late.case_ids == []
    assert _count(services, CaseRow) == 0


def test_a_failure_for_a_recovered_invoice_leaves_it_recovered(services, clock):
    opened = post(services, failed_body("evt_1", clock.now()))
    post(services, succeeded_body("evt_2", clock.now() + timedelta(hours=1)))
    clock.advance(timedelta(hours=2))
    again = post(services, failed_body("evt_3", clock.now(), code="expired_card"))
    assert again.outcome == "ignored"
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", opened.case_ids[0])
        scheduled = [a for a in uow.actions.for_case(case.id) if a.status == "scheduled"]
    assert case.status.value == "recovered" and case.plan == () and scheduled == []


def test_state_actions_and_audit_commit_together_or_not_at_all(services, clock):
    with UnitOfWork(services.sessions) as uow:
        uow.session.add(PolicyAssignment(tenant_id="acme", storefront="broken", policy_name="nope"))
        uow.commit()
    with pytest.raises(UnknownPolicy):
        post(services, failed_body("evt_1", clock.now(), storefront="broken"))
    for table in (EventRow, CaseRow, ActionRow, AuditEntry):
        assert _count(services, table) == 0, table.__tablename__
    # Nothing was half-done, so the same event can be processed once the policy exists.
    with UnitOfWork(services.sessions) as uow:
        row = uow.session.scalars(
            select(PolicyAssignment).where(PolicyAssignment.storefront == "broken")
        ).one()
        row.policy_name = "baseline-fixed"
        uow.commit()
    assert (
        post(services, failed_body("evt_1", clock.now(), storefront="broken")).outcome == "opened"
    )


def test_each_storefront_runs_its_assigned_policy(services, clock):
    from dunwell.bootstrap import assign_policy

    assign_policy(services, "acme", "app", "baseline-fixed")
    web = post(services, failed_body("e1", clock.now(), invoice="in_web", storefront="web"))
    app = post(services, failed_body("e2", clock.now(), invoice="in_app", storefront="app"))
    with UnitOfWork(services.sessions) as uow:
        assert uow.cases.get("acme", web.case_ids[0]).policy_name == "default"
        assert uow.cases.get("acme", app.case_ids[0]).policy_name == "baseline-fixed"


def test_the_audit_trail_refuses_updates_and_deletes(services, clock):
    post(services, failed_body("evt_1", clock.now()))
    for statement in ("UPDATE audit_entries SET text = 'rewritten'", "DELETE FROM audit_entries"):
        with UnitOfWork(services.sessions) as uow:
            with pytest.raises(DBAPIError, match="immutable"):
                uow.session.execute(text(statement))
                uow.commit()


def test_cases_are_private_to_their_tenant(services, clock):
    from dunwell.bootstrap import ensure_tenant

    ensure_tenant(services, "other", "Other", "other-key-0123456789", policy="default")
    mine = post(services, failed_body("evt_1", clock.now()))
    post(services, failed_body("evt_1", clock.now()), tenant="other")  # same ids, other tenant
    with UnitOfWork(services.sessions) as uow:
        assert uow.cases.get("other", mine.case_ids[0]) is None
        assert len(uow.cases.list("acme")) == 1 and len(uow.cases.list("other")) == 1
