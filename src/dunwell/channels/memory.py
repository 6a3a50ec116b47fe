"""In-memory channel adapters: they keep what they were given. Used by tests and the
simulator; they deliver nothing to anyone.
"""

from __future__ import annotations

from dunwell.channels.base import Delivery
from dunwell.domain.decision import ChangeAccess, Escalate, SendNotice


class MemoryNotifier:
    def __init__(self, fail_templates: frozenset[str] = frozenset()) -> None:
        self.sent: list[SendNotice] = []
        self.fail_templates = fail_templates

    def send(self, notice: SendNotice) -> Delivery:
        if notice.template in self.fail_templates:
            return Delivery(False, f"template {notice.template} refused")
        self.sent.append(notice)
        return Delivery(True)


class MemoryAccessGate:
    def __init__(self) -> None:
        self.changes: list[ChangeAccess] = []
        self.escalations: list[Escalate] = []

    def change_access(self, change: ChangeAccess) -> None:
        self.changes.append(change)

    def escalate(self, escalation: Escalate) -> None:
        self.escalations.append(escalation)
