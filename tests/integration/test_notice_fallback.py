"""A notice whose channel cannot reach the customer (a hard bounce) goes by the policy's
fallback channel, once; a failure that may pass, or a send cut by a crash, does not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dunwell.channels.base import Delivery
from dunwell.domain.decision import SendNotice
from dunwell.store.unit_of_work import UnitOfWork
from factories import failed_body, post, skip_until

pytestmark = pytest.mark.integration


class BouncingNotifier:
    """A mailbox that does not exist: email bounces for good, other channels deliver."""

    def __init__(self, *, permanent: bool = True, bounce: frozenset[str] = frozenset({"email"})):
        self.permanent, self.bounce = permanent, bounce
        self.tried: list[SendNotice] = []

    def send(self, notice: SendNotice) -> Delivery:
        self.tried.append(notice)
        if notice.channel in self.bounce:
            return Delivery(False, "550 no such mailbox", undeliverable=self.permanent)
        return Delivery(True)


def _notices(services, case_id):
    with UnitOfWork(services.sessions) as uow:
        return uow.cases.get("acme", case_id).notices


def test_a_bounced_email_goes_again_by_sms_and_later_emails_go_by_sms(services, clock):
    bouncing = BouncingNotifier()
    services.runner.notifier = bouncing
    case_id = post(services, failed_body("e1", clock.now(), code="expired_card")).case_ids[0]
    services.runner.run_until_idle()

    sent = [(n.template, n.channel) for n in bouncing.tried]
    assert sent == [("update_payment_method", "email"), ("update_payment_method", "sms")]
    email, sms = _notices(services, case_id)
    assert (email.status, sms.status) == ("undeliverable", "sent")
    assert sms.key == f"{email.key}:fallback"

    # The policy's later email checkpoint (final_notice at 14 days) goes by SMS directly: the
    # address bounced in this case already. The SMS reminder at 4 days is unchanged.
    skip_until(services, clock, clock.now() + timedelta(days=15))
    later = [(n.template, n.channel) for n in bouncing.tried[2:]]
    assert later == [("update_payment_method_reminder", "sms"), ("final_notice", "sms")]
    assert all(n.status == "sent" for n in _notices(services, case_id)[2:])


def test_an_sms_fallback_that_bounces_too_is_not_passed_on_again(services, clock):
    bouncing = BouncingNotifier(bounce=frozenset({"email", "sms"}))
    services.runner.notifier = bouncing
    case_id = post(services, failed_body("e1", clock.now(), code="expired_card")).case_ids[0]
    services.runner.run_until_idle()
    assert [n.channel for n in bouncing.tried] == ["email", "sms"]
    assert [n.status for n in _notices(services, case_id)] == ["undeliverable", "undeliverable"]


def test_a_failure_that_may_pass_is_not_sent_by_another_channel(services, clock):
    bouncing = BouncingNotifier(permanent=False)
    services.runner.notifier = bouncing
    case_id = post(services, failed_body("e1", clock.now(), code="expired_card")).case_ids[0]
    services.runner.run_until_idle()
    assert [n.channel for n in bouncing.tried] == ["email"]
    [notice] = _notices(services, case_id)
    assert notice.status == "failed"
