"""The basic built-in world: a few causes of failure and simple customers, fast to run.

It answers charges as each customer's issuer would from the hidden profile (see `issuer`),
and notices as the customer would: a notice may make them act later (update the card,
authenticate, or cancel). The first failure and payments made by other means wait on its
own timeline. Answers are pure functions of (seed, customer, time), so every policy faces
the same world. `worlds.realistic` is the richer one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

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
from dunwell.sim.issuer import CustomerState, answer, card, charge_rng, invoice
from dunwell.sim.population import CURRENCY, DEFAULT_START, Cause, Profile, generate
from dunwell.sim.protocol import (
    ChargeOutcome,
    ChargeRequest,
    NoticeOutcome,
    NoticeRequest,
    OracleBound,
    Timeline,
)

PROVIDER_ERROR_RATE = 0.02  # the provider times out now and then: a technical retry
# A notice that says what to do nudges twice as hard as a bare "your payment failed".
SPECIFIC_TEMPLATES = ("update_payment_method", "authenticate_payment")
ORACLE_WINDOW_DAYS = 21


class BuiltinWorld:
    # The oracle reads only the customers as drawn (and the outage windows of the seed), not
    # the run: the harness may ask a fresh world for it once (protocol, `fixed_oracle`).
    fixed_oracle = True

    def __init__(
        self, customers: int, days: int, seed: int, start: datetime = DEFAULT_START
    ) -> None:
        self.seed = seed
        self.start = start
        self.horizon = start + timedelta(days=days)
        self.profiles = {p.id: p for p in generate(customers, days, seed, start)}
        self._state = {cid: CustomerState() for cid in self.profiles}
        self._answers: dict[str, ChargeOutcome] = {}  # by idempotency key, as a provider keeps
        self._timeline = Timeline()
        for p in self.profiles.values():
            self._timeline.add(p.id, self._first_failure(p))
            if p.pays_out_of_band_at is not None:
                paid = PaymentSucceeded(
                    f"sim-oob-{p.id}", p.pays_out_of_band_at, invoice(p.id), customer_id=p.id
                )
                self._timeline.add(p.id, paid)

    # --- the customers' own events -----------------------------------------------------------

    def next_event_at(self) -> datetime | None:
        return self._timeline.next_at()

    def events_due(self, at: datetime) -> list[ExternalEvent]:
        return self._timeline.pop_due(at, self._happens)

    def _happens(self, cid: str, event: ExternalEvent) -> bool:
        """Apply an event as it happens; a paid or gone customer does nothing more."""
        state = self._state[cid]
        if isinstance(event, PaymentFailed):
            return True
        if state.paid or state.canceled:
            return False
        if isinstance(event, PaymentSucceeded):
            state.paid = True
        elif isinstance(event, SubscriptionCanceled):
            state.canceled = True
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
            provider="sim",
            payment_method=card(p, 1),
            decline=DeclineReport(p.code, None, p.advice, "simulated decline"),
        )

    # --- charges -----------------------------------------------------------------------------

    def charge(self, request: ChargeRequest, at: datetime) -> ChargeOutcome:
        p = self.profiles.get(request.customer_id)
        if p is None:
            return ChargeOutcome.error(f"unknown customer {request.customer_id!r}")
        known = self._answers.get(request.idempotency_key)
        if known is not None:  # a provider answers one idempotency key once
            return known
        rng = charge_rng(self.seed, p.id, at)
        if rng.random() < PROVIDER_ERROR_RATE:
            return ChargeOutcome.error("simulated provider timeout")
        state = self._state[p.id]
        state.charges += 1
        result = answer(p, state, request.payment_method, at, rng.random())
        state.paid = state.paid or result.approved
        if result.approved or result.decline is None:
            outcome = ChargeOutcome.approved(result.provider_reference)
        else:
            d = result.decline
            outcome = ChargeOutcome.declined(d.provider_code or "", d.advice_code, d.network_code)
        self._answers[request.idempotency_key] = outcome
        return outcome

    # --- notices -----------------------------------------------------------------------------

    def deliver(self, notice: NoticeRequest, at: datetime) -> NoticeOutcome:
        cid = notice.customer_id
        p, state = self.profiles.get(cid), self._state.get(cid)
        if p is None or state is None:
            return NoticeOutcome(False, detail=f"unknown customer {cid!r}")
        state.notices += 1
        state.nudges += 2 if notice.template.startswith(SPECIFIC_TEMPLATES) else 1
        if state.paid or state.canceled:
            return NoticeOutcome(True, detail="delivered")
        later: list[ExternalEvent] = []
        if p.fix_after_nudges is not None and not state.fix_scheduled:
            if state.nudges >= p.fix_after_nudges:
                state.fix_scheduled = True
                later.append(self._fix(p, at + p.fix_delay))
        if p.cancel_after_notices is not None and not state.cancel_scheduled:
            if state.notices >= p.cancel_after_notices:
                state.cancel_scheduled = True
                when = at + p.cancel_delay
                later.append(SubscriptionCanceled(f"sim-cancel-{cid}", when, f"sub_{cid}", cid))
        for event in later:
            self._timeline.add(cid, event)
        return NoticeOutcome(True, tuple(later), "delivered")

    def _fix(self, p: Profile, at: datetime) -> ExternalEvent:
        if p.cause is Cause.SCA:
            return CustomerAuthenticated(f"sim-auth-{p.id}", at, p.id, invoice(p.id))
        return PaymentMethodUpdated(f"sim-card-{p.id}", at, p.id, card(p, 2))

    # --- the report's upper bound ------------------------------------------------------------

    def oracle(self) -> OracleBound:
        """A generous bound from the profiles: every case whose hidden truth lets some charge
        succeed within the window (a payday, a willing issuer, a customer who would fix the
        card) counts, whatever the draws."""
        recoverable = [p for p in self.profiles.values() if self._recoverable(p)]
        return OracleBound(
            cases=len(self.profiles),
            recoverable=len(recoverable),
            recoverable_minor=sum(p.amount_minor for p in recoverable),
            failed_minor=sum(p.amount_minor for p in self.profiles.values()),
            window_days=ORACLE_WINDOW_DAYS,
        )

    def _recoverable(self, p: Profile) -> bool:
        if p.pays_out_of_band_at is not None and p.pays_out_of_band_at <= self.horizon:
            return True  # pays by other means: the case ends recovered under any policy
        end = min(p.first_failure_at + timedelta(days=ORACLE_WINDOW_DAYS), self.horizon)
        if p.cause is Cause.FUNDS:
            return p.payday is not None and p.payday < end
        if p.cause is Cause.SOFT:
            return p.approval > 0 and p.first_failure_at < end
        if p.cause in (Cause.CARD, Cause.NEVER, Cause.SCA):
            return p.fix_after_nudges is not None and p.first_failure_at + p.fix_delay < end
        return False  # FRAUD
