"""Log-only delivery: writes each notice, access change and escalation as a structured log
line. It sends nothing to anyone; real channels (email, SMS, push) are separate adapters.
"""

from __future__ import annotations

import structlog

from dunwell.channels.base import Delivery
from dunwell.domain.decision import ChangeAccess, Escalate, SendNotice

log = structlog.get_logger("dunwell.channels")


class LogNotifier:
    def send(self, notice: SendNotice) -> Delivery:
        # Only ids and the template: no personal data beyond the customer id in logs.
        log.info(
            "notice.logged",
            case_id=notice.case_id,
            notice_id=notice.notice_id,
            template=notice.template,
            channel=notice.channel,
            customer_id=notice.customer.id,
        )
        return Delivery(True, "logged only: no channel adapter configured")


class LogAccessGate:
    def change_access(self, change: ChangeAccess) -> None:
        log.info(
            "access.changed",
            case_id=change.case_id,
            customer_id=change.customer_id,
            subscription_id=change.subscription_id,
            level=change.level.value,
        )

    def escalate(self, escalation: Escalate) -> None:
        log.info("case.escalated", case_id=escalation.case_id, reason=escalation.reason)
