"""The engine's ports, played by a world: the only doors between dunwell and a world.

`WorldProvider` turns a `Charge` into a `ChargeRequest` and the world's `ChargeOutcome` back
into what a provider adapter returns; `WorldNotifier` does the same for notices. Both write
what they saw into the harness's own `Recorder`, which keeps the record the violations check
and the report read: what reached the card networks, what customers did, and when. Nothing
here reads a world's hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dunwell.channels.base import Delivery
from dunwell.domain.decision import Charge, SendNotice
from dunwell.domain.events import (
    ExternalEvent,
    PaymentFailed,
    PaymentSucceeded,
    SubscriptionCanceled,
)
from dunwell.engine.clock import VirtualClock
from dunwell.providers.base import ChargeResult, ProviderError
from dunwell.sim.log import Entry, Kind, Outcome
from dunwell.sim.protocol import ChargeRequest, ChargeStatus, NoticeRequest, World


@dataclass
class Recorder:
    """What the harness itself saw of the world, in the order it saw it."""

    log: list[Entry] = field(default_factory=list)
    notices: list[tuple[datetime, str, str]] = field(default_factory=list)  # at, customer, tmpl
    caused: int = 0  # events the world said notices would cause
    failures: int = 0  # initial failures seen: the cases the engine should have

    def event(self, event: ExternalEvent) -> None:
        """An event the world emitted, before the engine ingests it."""
        at = event.occurred_at
        if isinstance(event, PaymentFailed) and event.attempt_id is None:
            self.failures += 1
            pm, d = event.payment_method, event.decline
            self.log.append(
                Entry(
                    at,
                    Kind.INITIAL_FAILURE,
                    event.customer.id,
                    pm.credential_key,
                    pm.brand,
                    outcome=Outcome.DECLINED,
                    code=d.provider_code,
                    advice=d.advice_code,
                    network_code=d.network_code,
                    invoice_id=event.invoice_id,
                )
            )
        elif isinstance(event, PaymentSucceeded) and event.attempt_id is None:
            customer = event.customer_id or ""
            self.log.append(Entry(at, Kind.PAID_OUT_OF_BAND, customer, invoice_id=event.invoice_id))
        elif isinstance(event, SubscriptionCanceled):
            self.log.append(Entry(at, Kind.CANCELED, event.customer_id or ""))


class WorldProvider:
    """The `PaymentProvider` port: every charge goes to the world at the clock's time."""

    name = "sim"

    def __init__(self, world: World, clock: VirtualClock, recorder: Recorder) -> None:
        self.world, self.clock, self.recorder = world, clock, recorder

    def charge(self, charge: Charge) -> ChargeResult:
        now = self.clock.now()
        request = ChargeRequest(
            attempt_id=charge.attempt_id,
            idempotency_key=charge.idempotency_key,
            customer_id=charge.customer_id,
            invoice_id=charge.invoice_id,
            amount=charge.amount,
            provider=charge.provider,
            payment_method=charge.payment_method,
        )
        outcome = self.world.charge(request, now)
        pm, d = charge.payment_method, outcome.decline
        entry = Entry(
            now,
            Kind.CHARGE,
            charge.customer_id,
            pm.credential_key,
            pm.brand,
            charge.attempt_id,
            Outcome(outcome.status.value),
            code=d.provider_code if d else None,
            advice=d.advice_code if d else None,
            network_code=d.network_code if d else None,
            invoice_id=charge.invoice_id,
            provider=charge.provider,
        )
        self.recorder.log.append(entry)
        if outcome.status is ChargeStatus.ERROR:
            raise ProviderError(outcome.detail or "provider failure")
        if outcome.status is ChargeStatus.APPROVED:
            return ChargeResult(True, provider_reference=outcome.reference)
        return ChargeResult(False, outcome.decline)


class WorldNotifier:
    """The `Notifier` port: a notice reaches the customer through the world."""

    def __init__(self, world: World, clock: VirtualClock, recorder: Recorder) -> None:
        self.world, self.clock, self.recorder = world, clock, recorder

    def send(self, notice: SendNotice) -> Delivery:
        now = self.clock.now()
        request = NoticeRequest(
            notice_id=notice.notice_id,
            customer_id=notice.customer.id,
            template=notice.template,
            channel=notice.channel,
            lane=notice.lane,
            amount=notice.amount,
        )
        self.recorder.notices.append((now, notice.customer.id, notice.template))
        outcome = self.world.deliver(request, now)
        self.recorder.caused += len(outcome.later)
        # A world answers for the customer's address: what it does not deliver never arrives.
        return Delivery(outcome.delivered, outcome.detail, undeliverable=not outcome.delivered)
