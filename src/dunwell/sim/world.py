"""The built-in world: customers, their issuers and the payment provider, in virtual time.

It plays both ports the action runner talks to: the `PaymentProvider` (each customer's
issuer answers from the hidden profile, see `issuer`) and the `Notifier` (a notice may make
the customer act later: update the card, authenticate, or cancel). What customers do on
their own (the first failure, paying by other means) waits in a queue of canonical events
the harness ingests. Answers are pure functions of (seed, customer, time), so every policy
faces the same world.
"""

from __future__ import annotations

import heapq
from dataclasses import replace
from datetime import datetime, timedelta

from dunwell.channels.base import Delivery
from dunwell.domain.decision import Charge, SendNotice
from dunwell.domain.events import (
    Customer,
    CustomerAuthenticated,
    DeclineReport,
    ExternalEvent,
    PaymentFailed,
    PaymentMethodUpdated,
    PaymentSucceeded,
    Subscription,
    SubscriptionCanceled,
)
from dunwell.domain.money import Money
from dunwell.engine.clock import VirtualClock
from dunwell.providers.base import ChargeResult, ProviderError
from dunwell.sim.issuer import CustomerState, answer, card, charge_rng, invoice
from dunwell.sim.log import Entry, Kind, Outcome
from dunwell.sim.population import CURRENCY, DEFAULT_START, Cause, Profile, generate

PROVIDER_ERROR_RATE = 0.02  # the provider times out now and then: a technical retry
# A notice that says what to do nudges twice as hard as a bare "your payment failed".
SPECIFIC_TEMPLATES = ("update_payment_method", "authenticate_payment")


class BuiltinWorld:
    name = "sim"  # the provider name of every failure it reports

    def __init__(
        self,
        customers: int,
        days: int,
        seed: int,
        start: datetime = DEFAULT_START,
        clock: VirtualClock | None = None,
    ) -> None:
        self.seed = seed
        self.start = start
        self.horizon = start + timedelta(days=days)
        self.clock = clock or VirtualClock(start)
        self.profiles = {p.id: p for p in generate(customers, days, seed, start)}
        self.log: list[Entry] = []
        self.notices: list[tuple[datetime, str, str]] = []  # (at, customer id, template)
        self._state = {cid: CustomerState() for cid in self.profiles}
        self._answers: dict[str, ChargeResult] = {}  # by idempotency key, as a provider keeps
        self._queue: list[tuple[datetime, int, str, ExternalEvent]] = []
        self._seq = 0  # ties in time keep their insertion order: deterministic
        for p in self.profiles.values():
            self._schedule(p.id, self._first_failure(p))
            if p.pays_out_of_band_at is not None:
                paid = PaymentSucceeded(
                    f"sim-oob-{p.id}", p.pays_out_of_band_at, invoice(p.id), customer_id=p.id
                )
                self._schedule(p.id, paid)

    # --- the customers' own events -----------------------------------------------------------

    def next_event_at(self) -> datetime | None:
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: datetime) -> list[ExternalEvent]:
        """The events due by `now`, in time order; moot ones (a paid customer's) are dropped."""
        due: list[ExternalEvent] = []
        while self._queue and self._queue[0][0] <= now:
            _, _, cid, event = heapq.heappop(self._queue)
            if self._emit(cid, event):
                due.append(event)
        return due

    def _schedule(self, cid: str, event: ExternalEvent) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (event.occurred_at, self._seq, cid, event))

    def _emit(self, cid: str, event: ExternalEvent) -> bool:
        state, at = self._state[cid], event.occurred_at
        if isinstance(event, PaymentFailed):
            pm, decline = event.payment_method, event.decline
            self.log.append(
                Entry(
                    at,
                    Kind.INITIAL_FAILURE,
                    cid,
                    pm.credential_key,
                    pm.brand,
                    outcome=Outcome.DECLINED,
                    code=decline.provider_code,
                    advice=decline.advice_code,
                )
            )
            return True
        if state.paid or state.canceled:
            return False  # someone who paid or left does nothing more
        if isinstance(event, PaymentSucceeded):
            state.paid = True
            self.log.append(Entry(at, Kind.PAID_OUT_OF_BAND, cid))
        elif isinstance(event, SubscriptionCanceled):
            state.canceled = True
            self.log.append(Entry(at, Kind.CANCELED, cid))
        elif isinstance(event, PaymentMethodUpdated):
            state.card += 1
        elif isinstance(event, CustomerAuthenticated):
            state.authenticated = True
        return True

    def _first_failure(self, p: Profile) -> PaymentFailed:
        return PaymentFailed(
            id=f"sim-fail-{p.id}",
            occurred_at=p.first_failure_at,
            customer=Customer(p.id, f"{p.id}@example.test", p.country, p.timezone),
            subscription=Subscription(f"sub_{p.id}", plan=f"plan_{p.amount_minor}"),
            invoice_id=invoice(p.id),
            amount=Money(p.amount_minor, CURRENCY),
            provider=self.name,
            payment_method=card(p, 1),
            decline=DeclineReport(p.code, None, p.advice, "simulated decline"),
        )

    # --- the PaymentProvider port ------------------------------------------------------------

    def charge(self, charge: Charge) -> ChargeResult:
        now = self.clock.now()
        p = self.profiles.get(charge.customer_id)
        if p is None:
            raise ProviderError(f"unknown customer {charge.customer_id!r}")
        pm = charge.payment_method
        entry = Entry(now, Kind.CHARGE, p.id, pm.credential_key, pm.brand, charge.attempt_id)
        known = self._answers.get(charge.idempotency_key)
        if known is not None:  # a provider answers one idempotency key once
            self.log.append(_with(entry, known))
            return known
        rng = charge_rng(self.seed, p.id, now)
        if rng.random() < PROVIDER_ERROR_RATE:
            self.log.append(replace(entry, outcome=Outcome.ERROR))
            raise ProviderError("simulated provider timeout")
        state = self._state[p.id]
        state.charges += 1
        result = answer(p, state, pm, now, rng.random())
        state.paid = state.paid or result.approved
        self._answers[charge.idempotency_key] = result
        self.log.append(_with(entry, result))
        return result

    # --- the Notifier port -------------------------------------------------------------------

    def send(self, notice: SendNotice) -> Delivery:
        now, cid = self.clock.now(), notice.customer.id
        self.notices.append((now, cid, notice.template))
        p, state = self.profiles.get(cid), self._state.get(cid)
        if p is None or state is None:
            return Delivery(False, f"unknown customer {cid!r}")
        state.notices += 1
        state.nudges += 2 if notice.template.startswith(SPECIFIC_TEMPLATES) else 1
        if state.paid or state.canceled:
            return Delivery(True, "delivered")
        if p.fix_after_nudges is not None and not state.fix_scheduled:
            if state.nudges >= p.fix_after_nudges:
                state.fix_scheduled = True
                self._schedule(cid, self._fix(p, now + p.fix_delay))
        if p.cancel_after_notices is not None and not state.cancel_scheduled:
            if state.notices >= p.cancel_after_notices:
                state.cancel_scheduled = True
                at = now + p.cancel_delay
                cancel = SubscriptionCanceled(f"sim-cancel-{cid}", at, f"sub_{cid}", cid)
                self._schedule(cid, cancel)
        return Delivery(True, "delivered")

    def _fix(self, p: Profile, at: datetime) -> ExternalEvent:
        if p.cause is Cause.SCA:
            return CustomerAuthenticated(f"sim-auth-{p.id}", at, p.id, invoice(p.id))
        return PaymentMethodUpdated(f"sim-card-{p.id}", at, p.id, card(p, 2))


def _with(entry: Entry, result: ChargeResult) -> Entry:
    if result.approved or result.decline is None:
        return replace(entry, outcome=Outcome.APPROVED)
    d = result.decline
    return replace(entry, outcome=Outcome.DECLINED, code=d.provider_code, advice=d.advice_code)
