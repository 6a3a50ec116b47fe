"""A failed payment through the real ingest, core and action runner, in virtual time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dunwell.bootstrap import assign_policy, build
from dunwell.domain.events import ActionDue
from dunwell.domain.policy import AccessLevel
from dunwell.providers.base import ProviderRegistry
from dunwell.settings import Settings
from dunwell.store.tables import ActionRow, LedgerRow
from dunwell.store.unit_of_work import UnitOfWork
from factories import card_updated_body, failed_body, post, skip_until

pytestmark = pytest.mark.integration


def _case(services, case_id):
    with UnitOfWork(services.sessions) as uow:
        return uow.cases.get("acme", case_id)


def test_insufficient_funds_recovers_on_the_first_retry(services, clock, processor, access_gate):
    opened = post(services, failed_body("evt_1", clock.now(), token="pm_ok_1"))
    skip_until(services, clock, clock.now() + timedelta(days=30))
    case = _case(services, opened.case_ids[0])
    assert case.status.value == "recovered"
    assert [a.status.value for a in case.attempts] == ["succeeded"]
    assert list(processor.captured) == [case.attempts[0].id]  # the key is the attempt id
    assert [c.level for c in access_gate.changes] == [AccessLevel.GRACE, AccessLevel.FULL]


def test_a_card_that_keeps_failing_churns_with_notices_only_at_checkpoints(
    services, clock, notifier, access_gate
):
    token = "pm_decline_insufficient_funds"
    opened = post(services, failed_body("evt_1", clock.now(), token=token))
    skip_until(services, clock, clock.now() + timedelta(days=40))
    case = _case(services, opened.case_ids[0])
    assert case.status.value == "churned" and case.access is AccessLevel.SUSPENDED
    assert len(case.attempts) == 4  # the default policy's four retries for missing funds
    # Five failures, two notices: the 2nd-failure checkpoint and the 14-day final notice.
    assert [n.template for n in notifier.sent] == ["payment_failed_funds", "final_notice"]
    assert access_gate.changes[-1].level is AccessLevel.SUSPENDED


def test_the_baseline_sends_a_reminder_at_every_failure(services, clock, notifier):
    assign_policy(services, "acme", None, "baseline-fixed")
    token = "pm_decline_do_not_honor"
    opened = post(services, failed_body("evt_1", clock.now(), token=token, code="do_not_honor"))
    skip_until(services, clock, clock.now() + timedelta(days=40))
    case = _case(services, opened.case_ids[0])
    assert case.status.value == "churned"
    assert len(case.attempts) == 3
    assert len(notifier.sent) == 4  # the first failure and each of three failed retries


def test_an_expired_card_waits_for_the_customer_then_retries_the_new_card(
    services, clock, notifier
):
    opened = post(services, failed_body("evt_1", clock.now(), code="expired_card"))
    skip_until(services, clock, clock.now() + timedelta(days=2))
    case = _case(services, opened.case_ids[0])
    assert case.stage.value == "awaiting_customer" and case.attempts == ()
    assert [n.template for n in notifier.sent] == ["update_payment_method"]

    post(services, card_updated_body("evt_2", clock.now(), token="pm_ok_new"))
    case = _case(services, opened.case_ids[0])
    assert case.next_action.type.value == "retry"
    assert case.next_action.due_at <= clock.now() + timedelta(minutes=5)
    skip_until(services, clock, clock.now() + timedelta(hours=1))
    case = _case(services, opened.case_ids[0])
    assert case.status.value == "recovered"
    assert case.attempts[0].payment_method_token == "pm_ok_new"


def test_a_provider_error_is_retried_soon_and_not_counted_against_network_caps(services, clock):
    opened = post(
        services, failed_body("evt_1", clock.now(), code="do_not_honor", token="pm_error")
    )
    case = _case(services, opened.case_ids[0])
    retry = next(a for a in case.plan if a.type.value == "retry")
    skip_until(services, clock, retry.due_at)
    case = _case(services, opened.case_ids[0])
    assert case.attempts[-1].status.value == "errored"
    assert case.next_action.type.value == "retry"
    assert case.next_action.due_at - case.attempts[-1].finished_at == timedelta(minutes=5)
    with UnitOfWork(services.sessions) as uow:
        ledger = uow.session.scalars(select(LedgerRow)).all()
    assert [row.counted for row in ledger] == [True, False]  # the first decline, the error


def test_a_charge_interrupted_by_a_crash_is_rerun_once_with_the_same_key(
    services, clock, processor, database_url
):
    opened = post(services, failed_body("evt_1", clock.now(), token="pm_ok_1"))
    case = _case(services, opened.case_ids[0])
    retry = next(a for a in case.plan if a.type.value == "retry")
    clock.set(retry.due_at)
    with UnitOfWork(services.sessions) as uow:
        row = uow.session.scalars(select(ActionRow).where(ActionRow.key == retry.key)).one()
    # The worker decided the attempt and then died before charging.
    decided = services.ingest(
        "acme", ActionDue("due:crash", clock.now(), case.id, retry.key), action_id=row.id
    )
    assert len(decided.effects) == 1
    services.close()

    restarted = build(
        Settings(database_url=database_url),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
    )
    restarted.runner.run_until_idle()
    restarted.runner.run_until_idle()
    case = _case(restarted, case.id)
    assert case.status.value == "recovered"
    assert len(case.attempts) == 1
    assert list(processor.captured) == [decided.effects[0].idempotency_key]
    restarted.close()


def test_a_restart_resumes_every_schedule_on_time(services, clock, database_url, processor):
    ids = [
        post(
            services,
            failed_body(
                f"evt_{i}",
                clock.now(),
                invoice=f"in_{i}",
                customer=f"cus_{i}",
                token=f"pm_ok_{i}",
                fingerprint=f"fp_{i}",
            ),
        ).case_ids[0]
        for i in range(5)
    ]
    due = {i: next(a for a in _case(services, i).plan if a.type.value == "retry") for i in ids}
    services.close()  # the process stops for two weeks of virtual time

    restarted = build(
        Settings(database_url=database_url),
        clock=clock,
        providers=ProviderRegistry({}, fallback=processor),
    )
    skip_until(restarted, clock, clock.now() + timedelta(days=14))
    for case_id in ids:
        case = _case(restarted, case_id)
        assert case.status.value == "recovered"
        assert case.attempts[0].started_at == due[case_id].due_at  # on time, not late
    restarted.close()


def test_a_card_declined_never_retry_on_one_invoice_is_not_charged_for_another(services, clock):
    """The block lives in the per-card ledger: every case charging the card is refused."""
    first = post(
        services,
        failed_body(
            "e1",
            clock.now(),
            invoice="in_a",
            code="do_not_honor",
            token="pm_ok_a",
            fingerprint="fp_shared",
        ),
    )
    case = _case(services, first.case_ids[0])
    assert any(a.type.value == "retry" for a in case.plan)
    clock.advance(timedelta(hours=1))
    post(
        services,
        failed_body(
            "e2",
            clock.now(),
            invoice="in_b",
            code="stolen_card",
            token="pm_ok_b",
            fingerprint="fp_shared",
        ),
    )
    skip_until(services, clock, clock.now() + timedelta(days=30))
    case = _case(services, first.case_ids[0])
    assert case.attempts == ()  # its planned retries were refused, never sent
    with UnitOfWork(services.sessions) as uow:
        rules = [e.rule for e in uow.audit.for_case(case.id)]
    assert "guardrail.never_retry" in rules


def test_an_advice_code_wait_on_another_invoice_delays_this_card(services, clock):
    first = post(
        services,
        failed_body(
            "e1",
            clock.now(),
            invoice="in_a",
            code="do_not_honor",
            token="pm_ok_a",
            fingerprint="fp_mc",
            brand="mastercard",
        ),
    )
    clock.advance(timedelta(minutes=30))
    post(
        services,
        failed_body(
            "e2",
            clock.now(),
            invoice="in_b",
            code="do_not_honor",
            advice_code="28",
            token="pm_ok_b",
            fingerprint="fp_mc",
            brand="mastercard",
        ),
    )
    wait_ends = clock.now() + timedelta(days=6)
    skip_until(services, clock, clock.now() + timedelta(days=10))
    case = _case(services, first.case_ids[0])
    assert case.attempts and case.attempts[0].started_at >= wait_ends
