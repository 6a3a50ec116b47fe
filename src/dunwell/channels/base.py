"""The `Notifier` and `AccessGate` ports the action runner delivers through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dunwell.domain.decision import ChangeAccess, Escalate, SendNotice
from dunwell.domain.records import direct_init


@direct_init
@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    detail: str | None = None
    # A permanent failure for this address (a hard bounce): worth another channel, not a
    # second try on this one.
    undeliverable: bool = False


class Notifier(Protocol):
    def send(self, notice: SendNotice) -> Delivery: ...


class AccessGate(Protocol):
    """Where entitlement changes go (the subscriber's app), and escalations to humans."""

    def change_access(self, change: ChangeAccess) -> None: ...

    def escalate(self, escalation: Escalate) -> None: ...
