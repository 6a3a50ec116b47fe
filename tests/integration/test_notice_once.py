"""A notice interrupted by a crash is never sent a second time when its action re-runs."""

from __future__ import annotations

import pytest

from dunwell.channels.base import Delivery
from dunwell.domain.decision import SendNotice
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
