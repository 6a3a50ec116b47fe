"""A custom world, as docs/simulation.md shows it: everyone is short of money until payday.

Loaded by the tests the way a user loads their own: `dunwell simulate --world
custom_world:make` with this folder on PYTHONPATH.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from dunwell.domain.events import (
    Customer,
    DeclineReport,
    ExternalEvent,
    PaymentFailed,
    PaymentMethod,
    Subscription,
)
from dunwell.domain.money import Money
from dunwell.sim.protocol import (
    ChargeOutcome,
    ChargeRequest,
    NoticeOutcome,
    NoticeRequest,
    OracleBound,
    Timeline,
)

PRICE = Money(1500, "EUR")


class PaydayWorld:
    """Each customer's renewal fails for lack of funds; from their payday on, charges pass."""

    def __init__(self, seed: int, customers: int, days: int, start: datetime) -> None:
        self.start, self.horizon = start, start + timedelta(days=days)
        rng = random.Random(seed)
        self.timeline = Timeline()
        self.payday: dict[str, datetime] = {}  # hidden: dunwell never sees this
        for i in range(customers):
            cid = f"c{i}"
            failed_at = start + timedelta(hours=rng.randrange(24))
            self.payday[cid] = failed_at + timedelta(days=rng.randrange(1, days))
            self.timeline.add(cid, self._failure(cid, failed_at))

    def _failure(self, cid: str, at: datetime) -> PaymentFailed:
        return PaymentFailed(
            id=f"fail-{cid}",
            occurred_at=at,
            customer=Customer(cid, timezone="Europe/Paris"),
            subscription=Subscription(f"sub-{cid}"),
            invoice_id=f"inv-{cid}",
            amount=PRICE,
            provider="sim",
            payment_method=PaymentMethod(f"pm-{cid}", "visa", f"fp-{cid}"),
            decline=DeclineReport("insufficient_funds", "51"),
        )

    def next_event_at(self) -> datetime | None:
        return self.timeline.next_at()

    def events_due(self, at: datetime) -> list[ExternalEvent]:
        return self.timeline.pop_due(at, lambda cid, event: True)

    def charge(self, request: ChargeRequest, at: datetime) -> ChargeOutcome:
        if at >= self.payday[request.customer_id]:
            return ChargeOutcome.approved()
        return ChargeOutcome.declined("insufficient_funds", network_code="51")

    def deliver(self, notice: NoticeRequest, at: datetime) -> NoticeOutcome:
        return NoticeOutcome(delivered=True)  # read, and nothing more: money is what's missing

    def oracle(self) -> OracleBound:
        paid = [cid for cid, day in self.payday.items() if day < self.horizon]
        return OracleBound(
            cases=len(self.payday),
            recoverable=len(paid),
            recoverable_minor=len(paid) * PRICE.amount_minor,
            failed_minor=len(self.payday) * PRICE.amount_minor,
            window_days=(self.horizon - self.start).days,
        )


def make(*, seed: int, customers: int, days: int, start: datetime) -> PaydayWorld:
    """The factory `--world custom_world:make` calls."""
    return PaydayWorld(seed, customers, days, start)


def not_a_world(*, seed: int, customers: int, days: int, start: datetime) -> object:
    return object()  # for the test of a factory that returns something else
