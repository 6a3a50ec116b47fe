"""A notice interrupted by a crash is never sent a second time when its action re-runs."""

from __future__ import annotations

import pytest

from dunwell.channels.base import Delivery
from dunwell.domain.decision import SendNotice
from dunwell.engine.effects_codec import effect_to_dict
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post

pytestmark = pytest.mark.integration


class CrashingNotifier:
    """Takes the message, then the process 'dies' before the outcome is recorded."""

    def __init__(self) -> None:
        self.sent: list[SendNotice] = []

    def send(self, notice: SendNotice) -> Delivery:
        self.sent.append(notice)
        raise SystemExit("killed while sending")


def test_a_notice_interrupted_mid_send_is_not_sent_again(services, clock, notifier):
    case_id = post(services, failed_body("e1", clock.now(), code="expired_card")).case_ids[0]
    crashing = CrashingNotifier()
    services.runner.notifier = crashing
    with pytest.raises(SystemExit):
        services.runner.run_until_idle()
    assert len(crashing.sent) == 1
    interrupted = crashing.sent[0]

    # The process comes back: the running row is carried out again, with a working channel.
    services.runner.notifier = notifier
    services.runner.run_until_idle()

    assert [n.notice_id for n in notifier.sent if n.notice_id == interrupted.notice_id] == []
    # Nor by the policy's fallback channel: the customer may have it already.
    assert [n for n in notifier.sent if n.template == interrupted.template] == []
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", case_id)
        rows = uow.actions.for_case(case_id)
    notice = next(n for n in case.notices if n.id == interrupted.notice_id)
    assert notice.status == "failed"
    assert not [r for r in rows if r.status == "running"]


def test_notices_not_interrupted_go_out_once_each(services, clock, notifier):
    post(services, failed_body("e1", clock.now(), code="expired_card"))
    services.runner.run_until_idle()
    services.runner.run_until_idle()
    ids = [n.notice_id for n in notifier.sent]
    assert ids and len(ids) == len(set(ids))


def test_every_outcome_of_an_outbox_row_is_recorded(services, clock, notifier):
    case_id = post(services, failed_body("e1", clock.now(), code="expired_card")).case_ids[0]
    services.runner.run_until_idle()
    with UnitOfWork(services.sessions) as uow:
        case = uow.cases.get("acme", case_id)
    # No decision emits two messages in one row today; the runner must not depend on it.
    two = [
        SendNotice(case_id, f"ntc_extra_{n}", "payment_failed", "email", case.customer,
                   case.amount, case.lane.value)
        for n in (1, 2)
    ]  # fmt: skip
    with UnitOfWork(services.sessions) as uow:
        uow.actions.add_effects("acme", case_id, "effect:two", [effect_to_dict(e) for e in two],
                                clock.now())  # fmt: skip
        uow.commit()
        [row] = [r for r in uow.actions.for_case(case_id) if r.key == "effect:two"]
        row_id = row.id

    assert services.runner.finish([row_id]) == 1

    assert [n.notice_id for n in notifier.sent][-2:] == ["ntc_extra_1", "ntc_extra_2"]
    with UnitOfWork(services.sessions) as uow:
        recorded = [uow.events.find("acme", f"delivered:{n.notice_id}") for n in two]
        [row] = [r for r in uow.actions.for_case(case_id) if r.key == "effect:two"]
    assert all(event is not None for event in recorded)  # the first one too
    assert row.status == "done"
