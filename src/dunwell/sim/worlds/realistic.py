"""The realistic built-in world: paydays, holidays, local time, outages, people.

What each behaviour assumes, and the public figures behind it, is in docs/simulation.md.
The world plays the customers' banks, the payment provider and the customers themselves:

- an issuer answers a charge from the customer's hidden truth (`_issuer`): money back after a
  payday (`calendars`), an issuer that approves some attempts (less at night and on weekends
  and public holidays, in the customer's own timezone), a hiccup that clears within hours, an
  expired or lost card that only a new card fixes, an SCA decline only authentication fixes;
- the provider and single issuers go down for hours (`outages`);
- a customer ignores, reads, acts on, or complains about each notice (`deliver`); an account
  updater replaces some expired cards on its own.

Every random draw comes from a stream keyed by (seed, customer, what, when): the answer to a
charge for customer c at time t never depends on other customers, so every policy faces the
same world. Issuer answers are fixed per (customer, card, hour): the `oracle` can then find
exactly whether some charge in the window would have been approved.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

from dunwell.domain.events import (
    Customer as EventCustomer,
)
from dunwell.domain.events import (
    CustomerAuthenticated,
    DeclineReport,
    ExternalEvent,
    PaymentFailed,
    PaymentMethod,
    PaymentMethodUpdated,
    PaymentSucceeded,
    Subscription,
    SubscriptionCanceled,
)
from dunwell.domain.money import Money
from dunwell.domain.routing import Route, Routing
from dunwell.sim.population import DEFAULT_START
from dunwell.sim.protocol import (
    ChargeOutcome,
    ChargeRequest,
    ChargeStatus,
    NoticeOutcome,
    NoticeRequest,
    OracleBound,
    Timeline,
)
from dunwell.sim.worlds.calendars import public_holidays
from dunwell.sim.worlds.customers import Customer, draw
from dunwell.sim.worlds.outages import Outages
from dunwell.sim.worlds.variants import REALISTIC, Cause, Engagement, RealisticParams

HOUR = timedelta(hours=1)
FIXED_APPROVAL = 0.93  # a new card or a completed authentication usually works
FUNDS_APPROVAL = 0.9  # right after a payday
LEFTOVER_APPROVAL = 0.08  # once the pay is spent again
TEMPORARY_APPROVAL = 0.9  # once the hiccup is over
PROVIDER_ERROR_RATE = 0.01  # timeouts outside outages
NOTICE_FATIGUE = 5  # nobody acts on a sixth message
OTHER_CARD = 0.3  # a customer short of money who acts may switch to another card
AWAKE = (8, 22)  # people act on messages in their waking hours
ORACLE_WINDOW_DAYS = 21
# The chance one notice makes a customer act: (clear about what to do, generic).
ACT_CHANCE = {
    Engagement.IGNORE: (0.0, 0.0),
    Engagement.READ: (0.25, 0.12),
    Engagement.ACT: (0.85, 0.55),
    Engagement.COMPLAIN: (0.1, 0.05),
}
NEEDS_NEW_CARD = frozenset({Cause.EXPIRED, Cause.LOST})
MAY_SWITCH_CARD = frozenset({Cause.FUNDS, Cause.ISSUER, Cause.TEMPORARY})


@dataclass
class _State:
    """What has happened to one customer so far in this run."""

    card: int = 1  # 1: the card that failed; 2: the new one
    authenticated: bool = False
    paid: bool = False
    gone: bool = False  # canceled the subscription
    charges: int = 0  # charges that reached the issuer
    notices: int = 0
    issuer_closed: bool = False
    fix_scheduled: bool = False
    cancel_scheduled: bool = False


def _roll(seed: int, customer_id: str, what: str, key: object) -> float:
    """A uniform draw in [0, 1) fixed by its key: a hash, stable across processes (unlike
    `hash()`), and much cheaper than seeding a `random.Random` for one number."""
    text = f"dunwell-realistic:{seed}:{customer_id}:{what}:{key}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2**64


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def card(c: Customer, number: int, kind: str | None = None) -> PaymentMethod:
    """The customer's `number`th card: a new card is a new credential (fingerprint)."""
    return PaymentMethod(f"pm_{c.id}_{number}", c.brand, f"fp_{c.id}_{number}", kind)


def invoice(c: Customer) -> str:
    return f"inv_{c.id}_1"  # one failed invoice per customer


class RealisticWorld:
    # The oracle reads only the customers as drawn (and the outage windows of the seed), not
    # the run: the harness may ask a fresh world for it once (protocol, `fixed_oracle`).
    fixed_oracle = True

    def __init__(
        self,
        customers: int,
        days: int,
        seed: int,
        start: datetime = DEFAULT_START,
        params: RealisticParams = REALISTIC,
    ) -> None:
        self.seed, self.params = seed, params
        self.start = start
        self.horizon = start + timedelta(days=days)
        memo: dict[tuple[object, ...], tuple[datetime, ...]] = {}  # paydays, per world
        self.customers = {
            c.id: c for c in (draw(i, days, seed, start, params, memo) for i in range(customers))
        }
        self.outages = Outages(
            seed,
            start,
            days,
            params.provider_outages_per_30d,
            params.issuer_outages_per_30d,
            params.provider_outage_minutes,
        )
        self._state = {cid: _State() for cid in self.customers}
        self._answers: dict[str, ChargeOutcome] = {}  # by idempotency key, as a provider keeps
        self._timeline = Timeline()
        for c in self.customers.values():
            self._timeline.add(c.id, self._first_failure(c))
            if c.updater_at is not None:
                updated = PaymentMethodUpdated(
                    f"sim-updater-{c.id}", c.updater_at, c.id, self._card(c, 2)
                )
                self._timeline.add(c.id, updated)
            if c.pays_elsewhere_at is not None:
                paid = PaymentSucceeded(
                    f"sim-oob-{c.id}", c.pays_elsewhere_at, invoice(c), customer_id=c.id
                )
                self._timeline.add(c.id, paid)
            if c.cancels_at is not None:
                self._timeline.add(c.id, self._cancel(c, c.cancels_at, "left"))

    def _speaks(self, report: DeclineReport) -> DeclineReport:
        # Every provider of the world answers in Stripe's codes; named so, since the engine
        # would otherwise read them in the vocabulary of a `psp_a` it has no table for.
        if self.params.providers == ("sim",):
            return report  # "sim" is an alias of Stripe's table already
        return replace(report, provider="stripe")

    def _card(self, c: Customer, number: int) -> PaymentMethod:
        return card(c, number, self.params.card_kind)

    @property
    def routing(self) -> Routing | None:
        """The tenant's routing table, for the harness to give the engine: every provider of
        the world can charge its cards (None with one provider: nothing to route)."""
        if len(self.params.providers) < 2:
            return None
        return Routing(routes=tuple(Route(p) for p in self.params.providers))

    # --- events ------------------------------------------------------------------------------

    def next_event_at(self) -> datetime | None:
        return self._timeline.next_at()

    def events_due(self, at: datetime) -> list[ExternalEvent]:
        return self._timeline.pop_due(at, self._happens)

    def _happens(self, cid: str, event: ExternalEvent) -> bool:
        state = self._state[cid]
        if isinstance(event, PaymentFailed):
            return True
        if state.paid or state.gone:
            return False  # someone who paid or left does nothing more
        if isinstance(event, PaymentSucceeded):
            state.paid = True
        elif isinstance(event, SubscriptionCanceled):
            state.gone = True
        elif isinstance(event, PaymentMethodUpdated):
            if state.card == 2:
                return False  # the updater and the customer brought the same new card
            state.card = 2
        elif isinstance(event, CustomerAuthenticated):
            state.authenticated = True
        return True

    def _first_failure(self, c: Customer) -> PaymentFailed:
        return PaymentFailed(
            id=f"sim-fail-{c.id}",
            occurred_at=c.first_failure_at,
            customer=EventCustomer(c.id, f"{c.id}@example.test", c.country, c.timezone),
            subscription=Subscription(f"sub_{c.id}", plan=f"plan_{c.amount_minor}"),
            invoice_id=invoice(c),
            amount=Money(c.amount_minor, self.params.currency),
            provider=self.params.providers[0],
            payment_method=self._card(c, 1),
            decline=self._speaks(
                DeclineReport(c.code, c.network_code, c.advice, "simulated decline")
            ),
        )

    def _cancel(self, c: Customer, at: datetime, why: str) -> SubscriptionCanceled:
        return SubscriptionCanceled(f"sim-cancel-{why}-{c.id}", at, f"sub_{c.id}", c.id)

    # --- charges -----------------------------------------------------------------------------

    def charge(self, request: ChargeRequest, at: datetime) -> ChargeOutcome:
        c = self.customers.get(request.customer_id)
        if c is None:
            return ChargeOutcome.error(f"unknown customer {request.customer_id!r}")
        known = self._answers.get(request.idempotency_key)
        if known is not None:  # a provider answers one idempotency key once
            return known
        if request.provider not in self.params.providers:
            return ChargeOutcome.error(f"no account at provider {request.provider!r}")
        if request.provider == self.params.providers[0] and self.outages.provider_down(at):
            return ChargeOutcome.error("simulated provider outage")
        if _roll(self.seed, c.id, "provider", at.isoformat()) < PROVIDER_ERROR_RATE:
            return ChargeOutcome.error("simulated provider timeout")
        state = self._state[c.id]
        state.charges += 1
        number = _card_number(c, request.payment_method)
        if c.cause is Cause.ISSUER and number == 1 and state.charges == c.closes_at_charge:
            state.issuer_closed = True  # the issuer closed the account meanwhile
        outcome = self._issuer(c, number, state.card, state.authenticated, state.issuer_closed, at)
        if outcome.decline is not None:
            outcome = replace(outcome, decline=self._speaks(outcome.decline))
        state.paid = state.paid or outcome.status is ChargeStatus.APPROVED
        self._answers[request.idempotency_key] = outcome
        return outcome

    def _issuer(
        self,
        c: Customer,
        number: int | None,
        current: int,
        authenticated: bool,
        closed: bool,
        at: datetime,
    ) -> ChargeOutcome:
        """The issuer's answer; every time rule reads the start of the hour, so one customer's
        card gets one answer per hour (what makes the oracle exact)."""
        t = _hour(at)
        if number is None or number > current:
            return ChargeOutcome.declined("incorrect_number")  # not a card of this customer
        if self.outages.issuer_down(c.country, c.issuer, t):
            return ChargeOutcome.declined("issuer_not_available", network_code=_visa(c, "91"))
        roll = _roll(self.seed, c.id, "issuer", t.isoformat())
        if number == 2:
            if roll < FIXED_APPROVAL:
                return ChargeOutcome.approved()
            return ChargeOutcome.declined("generic_decline", network_code=_visa(c, "05"))
        if t == _hour(c.first_failure_at):
            return self._decline(c)  # within the hour of the failure, the answer stands
        if c.cause is Cause.ISSUER and closed:
            advice = "03" if c.brand == "mastercard" else None
            return ChargeOutcome.declined("do_not_try_again", advice, _visa(c, "R0"))
        if roll < _old_card_chance(c, authenticated, t):
            return ChargeOutcome.approved()
        return self._decline(c)

    def _decline(self, c: Customer) -> ChargeOutcome:
        """The old card's decline, as the first failure said."""
        return ChargeOutcome.declined(c.code, c.advice, c.network_code)

    # --- notices -----------------------------------------------------------------------------

    def deliver(self, notice: NoticeRequest, at: datetime) -> NoticeOutcome:
        c, state = self.customers.get(notice.customer_id), self._state.get(notice.customer_id)
        if c is None or state is None:
            return NoticeOutcome(False, detail=f"unknown customer {notice.customer_id!r}")
        if notice.channel == "email" and c.bad_email:
            return NoticeOutcome(False, detail="bounced: mailbox does not exist")
        state.notices += 1
        k = state.notices
        if state.paid or state.gone or k > NOTICE_FATIGUE:
            return NoticeOutcome(True, detail="delivered")
        later: list[ExternalEvent] = []
        complains = c.engagement is Engagement.COMPLAIN and k >= c.complain_at_notice
        if complains and not state.cancel_scheduled:
            state.cancel_scheduled = True
            later.append(self._cancel(c, at + c.reaction_delay / 4, "complaint"))
        elif not state.fix_scheduled and _acts(self.seed, c, k, notice.template):
            state.fix_scheduled = True
            later.append(self._fix(c, _awake(c, at + c.reaction_delay)))
        for event in later:
            self._timeline.add(c.id, event)
        return NoticeOutcome(True, tuple(later), "delivered")

    def _fix(self, c: Customer, at: datetime) -> ExternalEvent:
        if c.cause is Cause.SCA:
            return CustomerAuthenticated(f"sim-auth-{c.id}", at, c.id, invoice(c))
        return PaymentMethodUpdated(f"sim-card-{c.id}", at, c.id, self._card(c, 2))

    # --- the report's upper bound ------------------------------------------------------------

    def oracle(self) -> OracleBound:
        """Cases some single charge in the window would have recovered: every hour from the
        failure to 21 days later (or the horizon, or the customer paying elsewhere or leaving),
        on the old card, and on the new card or after authentication from the earliest time a
        customer would have acted (every clear notice sent at the failure). Network caps and
        provider errors are ignored, so no policy can recover more. A customer who pays by
        other means within the run counts too: their case ends recovered whatever the policy."""
        found = [c for c in self.customers.values() if self._recoverable(c)]
        return OracleBound(
            cases=len(self.customers),
            recoverable=len(found),
            recoverable_minor=sum(c.amount_minor for c in found),
            failed_minor=sum(c.amount_minor for c in self.customers.values()),
            window_days=ORACLE_WINDOW_DAYS,
        )

    def within_reach(self, customer_id: str, charges: int) -> float:
        """Hidden truth, for reports only: the chance that the best policy knowing this
        customer's hidden parameters, but not the dice, recovers the case with at most
        `charges` charges on each card (Visa allows 15 reattempts in 30 days), within the
        oracle's window. It charges the card that failed at its `charges` hours with the best
        chance of the window (fewer when the issuer closes the account at a charge), and the
        new card, or the old one once authenticated, from the earliest moment a clear
        message would have made the customer act (as the oracle assumes). Outage hours are
        left out; a customer who pays by other means counts 1, as in the oracle.

        The oracle asks whether some hour's draw would have approved: for an issuer that
        approves one charge in fifty, one of the window's 500 hours nearly always does, which
        no policy within the networks' caps can expect. This asks what a policy can expect."""
        c = self.customers[customer_id]
        if c.pays_elsewhere_at is not None and c.pays_elsewhere_at <= self.horizon:
            if c.cancels_at is None or c.pays_elsewhere_at < c.cancels_at:
                return 1.0
        ends = [c.first_failure_at + timedelta(days=ORACLE_WINDOW_DAYS), self.horizon]
        ends += [t for t in (c.pays_elsewhere_at, c.cancels_at) if t is not None]
        end = min(ends)
        fixed_at = self._earliest_fix(c)
        old: list[float] = []
        new_hours = 0  # hours the new card (or authentication) could be charged in
        t = _hour(c.first_failure_at) + HOUR  # the failure's own hour always declines
        while t < end:
            if not self.outages.issuer_down(c.country, c.issuer, t):
                fixed = fixed_at is not None and fixed_at < t + HOUR
                if fixed and c.cause is not Cause.SCA:
                    new_hours += 1
                old.append(_old_card_chance(c, fixed, t))
            t += HOUR
        on_old = charges
        if c.cause is Cause.ISSUER and c.closes_at_charge is not None:
            on_old = min(charges, c.closes_at_charge - 1)  # its charges after that decline
        fails = math.prod(1.0 - p for p in heapq.nlargest(on_old, old))
        fails *= (1.0 - FIXED_APPROVAL) ** min(charges, new_hours)
        return 1.0 - fails

    def recoverable(self, customer_id: str) -> bool:
        """The oracle's verdict on one customer (hidden truth: for tests and reports only)."""
        return self._recoverable(self.customers[customer_id])

    def complained(self, customer_id: str) -> bool:
        """Whether the messages made this customer cancel (hidden truth: for reports only)."""
        return self._state[customer_id].cancel_scheduled

    def _recoverable(self, c: Customer) -> bool:
        if c.pays_elsewhere_at is not None and c.pays_elsewhere_at <= self.horizon:
            if c.cancels_at is None or c.pays_elsewhere_at < c.cancels_at:
                return True  # pays by bank transfer: the case ends recovered under any policy
        ends = [c.first_failure_at + timedelta(days=ORACLE_WINDOW_DAYS), self.horizon]
        ends += [t for t in (c.pays_elsewhere_at, c.cancels_at) if t is not None]
        end = min(ends)
        fixed_at = self._earliest_fix(c)
        # The first hour an approval is possible at all: no need to try the hours before.
        firsts = [] if fixed_at is None else [_hour(fixed_at)]
        if c.cause is Cause.FUNDS and not c.broke:
            firsts += [_hour(p) for p in c.paydays if p > c.first_failure_at][:1]
        elif c.cause is Cause.ISSUER:
            firsts.append(_hour(c.first_failure_at))
        elif c.cause is Cause.TEMPORARY:
            firsts.append(_hour(c.clears_at))
        if not firsts:
            return False  # the old card can never work, and nothing replaces it
        t = max(min(firsts), _hour(c.first_failure_at))
        while t < end:
            fixed = fixed_at is not None and fixed_at < t + HOUR
            if self._issuer(c, 1, 1, fixed, False, t).status is ChargeStatus.APPROVED:
                return True
            if fixed and c.cause is not Cause.SCA:
                if self._issuer(c, 2, 2, False, False, t).status is ChargeStatus.APPROVED:
                    return True
            t += HOUR
        return False

    def _earliest_fix(self, c: Customer) -> datetime | None:
        times = [c.updater_at] if c.updater_at is not None else []
        for k in range(1, NOTICE_FATIGUE + 1):
            if c.engagement is Engagement.COMPLAIN and k >= c.complain_at_notice:
                break
            template = "authenticate_payment" if c.cause is Cause.SCA else "update_payment_method"
            if _acts(self.seed, c, k, template):
                times.append(_awake(c, c.first_failure_at + c.reaction_delay))
                break
        return min(times) if times else None


def _card_number(c: Customer, pm: PaymentMethod) -> int | None:
    for number in (1, 2):
        if pm.credential_key == card(c, number).credential_key:
            return number
    return None


def _visa(c: Customer, code: str) -> str | None:
    return code if c.brand == "visa" else None


def _old_card_chance(c: Customer, authenticated: bool, t: datetime) -> float:
    """The chance a charge on the card that failed passes at hour `t` (after the failure's
    own hour, the issuer up and the account open): EXPIRED, LOST, FRAUD and SCA not yet
    authenticated never pass."""
    cause = c.cause
    if cause is Cause.FUNDS:
        return _funds_chance(c, t)
    if cause is Cause.ISSUER:
        return min(0.95, c.approval * _local_factor(c, t))
    if cause is Cause.TEMPORARY:
        return TEMPORARY_APPROVAL if t >= _hour(c.clears_at) else 0.0
    if cause is Cause.SCA and authenticated:
        return FIXED_APPROVAL
    return 0.0


def _funds_chance(c: Customer, t: datetime) -> float:
    """Money is there for `spend_days` after a payday that came after the failure."""
    if c.broke:
        return 0.0
    last = None
    for payday in c.paydays:
        if c.first_failure_at < payday <= t:
            last = payday
    if last is None:
        return 0.0
    return FUNDS_APPROVAL if t - last < timedelta(days=c.spend_days) else LEFTOVER_APPROVAL


def _local_factor(c: Customer, t: datetime) -> float:
    """Issuers approve less at night and on days off, in the customer's own time."""
    local = t.astimezone(c.zone)
    hour = local.hour
    factor = 0.7 if hour < 6 else 0.9 if hour < 9 else 1.15 if hour < 18 else 1.0
    if local.weekday() >= 5 or local.date() in public_holidays(c.country, local.year):
        factor *= 0.85
    return factor


def _acts(seed: int, c: Customer, k: int, template: str) -> bool:
    """Whether notice number `k` makes the customer fix what they can fix."""
    if c.cause is Cause.FRAUD:
        return False
    wanted = "authenticate" if c.cause is Cause.SCA else "update_payment_method"
    clear, generic = ACT_CHANCE[c.engagement]
    chance = clear if template.startswith(wanted) else generic
    if c.cause in MAY_SWITCH_CARD:
        chance *= OTHER_CARD
    return _roll(seed, c.id, "notice", k) < chance


def _awake(c: Customer, at: datetime) -> datetime:
    """The first moment from `at` in the customer's waking hours."""
    local = at.astimezone(c.zone)
    first, last = AWAKE
    if local.hour < first:
        local = datetime.combine(local.date(), time(first), c.zone)
    elif local.hour >= last:
        local = datetime.combine(local.date() + timedelta(days=1), time(first), c.zone)
    return local.astimezone(at.tzinfo)
