"""The realistic world's customers: who fails, why, and the hidden truth of what fixes it.

Each customer is drawn from their own `random.Random`, seeded from (seed, index): the same
seed gives the same people, and customer 7 stays customer 7 whatever the population size.
Nothing here is shown to the engine.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from itertools import accumulate
from typing import TypeVar
from zoneinfo import ZoneInfo

from dunwell.sim.worlds.calendars import PaySchedule, paydays
from dunwell.sim.worlds.variants import Cause, Engagement, RealisticParams

# Monthly plan prices in minor units, cheap plans most common; all below the default
# policy's escalation threshold, so no case is handed to a human.
PRICES = (999, 1499, 2900, 4900, 9900, 19900, 49900)
PRICE_WEIGHTS = (25, 20, 20, 15, 10, 7, 3)
T = TypeVar("T")
ISSUERS_PER_COUNTRY = 6  # banks a country's cards come from; each can go down on its own
HOPELESS_APPROVAL = 0.02  # an issuer that keeps saying no: the chance of one charge

# (cause, brand) -> (decline code, network code, Mastercard advice code) choices.
CODES: dict[Cause, tuple[str, ...]] = {
    Cause.FUNDS: ("insufficient_funds", "insufficient_funds", "card_velocity_exceeded"),
    Cause.ISSUER: ("do_not_honor", "generic_decline"),
    Cause.TEMPORARY: ("processing_error", "try_again_later", "issuer_not_available"),
    Cause.EXPIRED: ("expired_card",),
    Cause.SCA: ("authentication_required",),
    Cause.LOST: ("lost_card", "stolen_card", "do_not_try_again"),
    Cause.FRAUD: ("fraudulent",),
}
VISA_NETWORK = {  # Visa response codes as a processor passes them on
    "insufficient_funds": "51",
    "card_velocity_exceeded": "61",
    "do_not_honor": "05",
    "generic_decline": "05",
    "expired_card": "54",
    "lost_card": "41",
    "stolen_card": "43",
    "do_not_try_again": "R0",
    "fraudulent": "59",
    "authentication_required": "1A",
}


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    index: int
    first_failure_at: datetime
    amount_minor: int
    brand: str
    timezone: str
    country: str
    issuer: int
    cause: Cause
    code: str
    network_code: str | None
    advice: str | None
    # FUNDS: when money arrives, and for how long it lasts after a payday.
    schedule: PaySchedule
    paydays: tuple[datetime, ...]  # only for FUNDS customers
    spend_days: int
    broke: bool  # lost the income: no payday brings the money back within the run
    # ISSUER: the chance one charge goes through (before time-of-day effects); and the
    # charge number at which the issuer closes the account (None: never).
    approval: float
    closes_at_charge: int | None
    clears_at: datetime  # TEMPORARY: the hiccup is over
    updater_at: datetime | None  # EXPIRED: the account updater delivers the new card
    engagement: Engagement
    complain_at_notice: int  # COMPLAIN: cancels at this notice
    reaction_delay: timedelta  # from reading a message to acting on it
    bad_email: bool  # emails bounce
    pays_elsewhere_at: datetime | None  # pays by bank transfer, out of band
    cancels_at: datetime | None  # leaves on their own, whatever dunwell does

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)


@cache
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo keeps only a few zones strongly cached; a dozen would be reloaded from disk.
    return ZoneInfo(name)


def draw(
    index: int,
    days: int,
    seed: int,
    start: datetime,
    params: RealisticParams,
    memo: dict[tuple[object, ...], tuple[datetime, ...]] | None = None,
) -> Customer:
    rng = random.Random(f"dunwell-realistic:{seed}:{index}")  # str seeds are process-stable
    horizon = start + timedelta(days=days)
    # Renewals fall over the first half of the run, so every case has time to play out.
    first = start + timedelta(minutes=rng.randrange(max(1, days * 24 * 60 // 2)))
    amount = _choice(rng, PRICES, PRICE_WEIGHTS)
    brand = _pick(rng, params.brands)
    zones = params.zones
    timezone, country, _ = _draw(rng, zones, _zone_weights(zones))
    cause = _pick(rng, params.causes)
    if cause is Cause.SCA and country not in params.sca_countries:
        cause = Cause.ISSUER  # no SCA mandate there: an unexplained issuer decline instead
    code = rng.choice(CODES[cause])
    network = VISA_NETWORK.get(code) if brand == "visa" else None
    advice = _advice(rng, cause, brand)
    schedule = _schedule(rng, country, params)
    anchor = rng.randrange(2)
    pays: tuple[datetime, ...] = ()
    if cause is Cause.FUNDS:  # only money problems wait for paydays: skip the others' work
        window = ((first - timedelta(days=40)).date(), (horizon + timedelta(days=2)).date())
        # A fixed schedule's paydays are the same for everyone with the same window, country
        # and zone (and biweekly parity): computed once per world when a memo is given.
        parity = anchor % 2 if schedule is PaySchedule.BIWEEKLY else 0
        key = (schedule, *window, country, timezone, parity)
        found = None if memo is None or schedule is PaySchedule.IRREGULAR else memo.get(key)
        if found is None:
            found = paydays(
                schedule,
                *window,
                country,
                _zone(timezone),
                anchor,
                random.Random(f"dunwell-realistic:{seed}:{index}:pay"),
            )
            if memo is not None and schedule is not PaySchedule.IRREGULAR:
                memo[key] = found
        pays = found
    hopeless = rng.random() < 0.2  # an issuer that keeps saying no
    updater = None
    if cause is Cause.EXPIRED and rng.random() < params.account_updater_share:
        updater = first + timedelta(hours=rng.uniform(6, 5 * 24))  # batch update cycles
    engagement = _pick(rng, params.engagement)
    return Customer(
        id=f"cus_{index:06d}",
        index=index,
        first_failure_at=first,
        amount_minor=amount,
        brand=brand,
        timezone=timezone,
        country=country,
        issuer=rng.randrange(ISSUERS_PER_COUNTRY),
        cause=cause,
        code=code,
        network_code=network,
        advice=advice,
        schedule=schedule,
        paydays=pays,
        spend_days=rng.randrange(1, 8),
        broke=rng.random() < 0.15,
        approval=HOPELESS_APPROVAL if hopeless else rng.uniform(0.15, 0.55),
        closes_at_charge=rng.randrange(2, 5) if rng.random() < 0.08 else None,
        clears_at=first + timedelta(minutes=rng.randrange(30, 36 * 60)),
        updater_at=updater,
        engagement=engagement,
        complain_at_notice=rng.randrange(2, 5),
        reaction_delay=timedelta(minutes=rng.randrange(10, 48 * 60)),
        bad_email=rng.random() < 0.03,
        pays_elsewhere_at=_maybe_later(rng, first, 0.03),
        cancels_at=_maybe_later(rng, first, 0.03),
    )


def _pick(rng: random.Random, weighted: tuple[tuple[T, int], ...]) -> T:
    values, cumulative = _cumulative(weighted)
    return _draw(rng, values, cumulative)


def _choice(rng: random.Random, values: tuple[T, ...], weights: tuple[int, ...]) -> T:
    return _draw(rng, values, _accumulated(weights))


def _draw(rng: random.Random, values: tuple[T, ...], cumulative: tuple[int, ...]) -> T:
    # `rng.choices(values, weights)[0]` step for step (one random(), the same bisect), without
    # re-adding the weights for every customer: the same draws, several times faster.
    return values[bisect(cumulative, rng.random() * (cumulative[-1] + 0.0), 0, len(values) - 1)]


@cache
def _cumulative(weighted: tuple[tuple[T, int], ...]) -> tuple[tuple[T, ...], tuple[int, ...]]:
    return tuple(v for v, _ in weighted), _accumulated(tuple(w for _, w in weighted))


@cache
def _zone_weights(zones: tuple[tuple[str, str, int], ...]) -> tuple[int, ...]:
    return _accumulated(tuple(w for _, _, w in zones))


@cache
def _accumulated(weights: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(accumulate(weights))


def _schedule(rng: random.Random, country: str, params: RealisticParams) -> PaySchedule:
    if rng.random() < params.gig_share:
        return PaySchedule.IRREGULAR
    return _pick(rng, params.pay.get(country) or params.pay["*"])


def _maybe_later(rng: random.Random, first: datetime, share: float) -> datetime | None:
    roll, hours = rng.random(), rng.uniform(24, 20 * 24)
    return first + timedelta(hours=hours) if roll < share else None


def _advice(rng: random.Random, cause: Cause, brand: str) -> str | None:
    """Mastercard merchant advice codes: only Mastercard sends them."""
    if brand != "mastercard":
        return None
    roll = rng.random()
    if cause is Cause.LOST:
        return "03" if roll < 0.6 else None
    if cause is Cause.EXPIRED:
        return "01" if roll < 0.3 else None  # new account information available
    if cause in (Cause.ISSUER, Cause.FUNDS, Cause.TEMPORARY):
        if roll < 0.1:
            return "24"  # retry after 1 hour
        if roll < 0.2:
            return "25"  # after 24 hours
    return None
