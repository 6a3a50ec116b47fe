"""The built-in population: who fails, why, and the hidden truth of how each one recovers.

Every customer is drawn from a private `random.Random` derived from the seed and the
customer's index, never from the global generator: the same seed gives the same people, and
customer 7 stays customer 7 whatever the population size. The engine never sees a profile;
it only sees what the world reports (declines, notices answered, cards updated).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)  # a fixed Monday: runs are reproducible
CURRENCY = "USD"

# (IANA zone, country): notices and retries land in the customer's local hours.
ZONES = (
    ("America/New_York", "US"),
    ("America/Los_Angeles", "US"),
    ("America/Sao_Paulo", "BR"),
    ("Europe/London", "GB"),
    ("Europe/Berlin", "DE"),
    ("Asia/Tokyo", "JP"),
    ("Australia/Sydney", "AU"),
)
# Monthly plan prices in cents, cheap plans most common; all below the default policy's
# escalation threshold, so no case is handed to a human.
PRICES = (999, 1499, 2900, 4900, 9900, 19900, 49900)
PRICE_WEIGHTS = (25, 20, 20, 15, 10, 7, 3)


class Cause(StrEnum):
    """The hidden cause behind the first decline: what would actually fix it."""

    FUNDS = "funds"  # money returns on payday
    SOFT = "soft"  # the issuer approves some attempts and not others
    CARD = "card"  # the card is dead: only a new card helps
    SCA = "sca"  # the issuer wants the customer to authenticate
    NEVER = "never"  # the issuer said never (stolen card, do not try again)
    FRAUD = "fraud"  # the issuer suspects fraud


# (share in percent, cause, decline codes): the mix of first failures.
MIX = (
    (42, Cause.FUNDS, ("insufficient_funds",)),
    (20, Cause.SOFT, ("do_not_honor", "generic_decline")),
    (15, Cause.CARD, ("expired_card",)),
    (8, Cause.SCA, ("authentication_required",)),
    (7, Cause.SOFT, ("processing_error", "try_again_later")),
    (5, Cause.NEVER, ("do_not_try_again", "stolen_card")),
    (3, Cause.FRAUD, ("fraudulent",)),
)


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    first_failure_at: datetime
    amount_minor: int
    brand: str
    timezone: str
    country: str
    cause: Cause
    code: str  # the decline code of the first failure (and of later declines, mostly)
    advice: str | None  # a Mastercard merchant advice code on this card's declines
    payday: datetime | None  # FUNDS: from then on, charges succeed with PAYDAY_APPROVAL
    approval: float  # SOFT: probability that one charge is approved
    closes_at_charge: int | None  # SOFT: the issuer says "never" at this charge number
    fix_after_nudges: int | None  # CARD/NEVER/SCA: acts after this many nudges (None: never)
    fix_delay: timedelta  # how long after that notice the customer acts
    cancel_after_notices: int | None  # cancels the subscription after this many notices
    cancel_delay: timedelta
    pays_out_of_band_at: datetime | None  # pays by other means (bank transfer) at this time


def generate(customers: int, days: int, seed: int, start: datetime) -> list[Profile]:
    return [_profile(i, days, seed, start) for i in range(customers)]


def _profile(index: int, days: int, seed: int, start: datetime) -> Profile:
    # A string seed is hashed with SHA-512 by `random`: stable across processes and runs.
    rng = random.Random(f"dunwell-sim:{seed}:{index}")
    # First failures spread over the first half of the horizon, so every case has time to
    # play out; whole minutes keep the logs readable.
    first = start + timedelta(minutes=rng.randrange(max(1, days * 24 * 60 // 2)))
    amount = rng.choices(PRICES, PRICE_WEIGHTS)[0]
    brand = rng.choices(("visa", "mastercard", "amex"), (55, 35, 10))[0]
    timezone, country = rng.choice(ZONES)
    cause, codes = _pick_mix(rng.randrange(100))
    code = rng.choice(codes)
    advice = _advice(rng, cause, brand)

    payday = None
    if cause is Cause.FUNDS and rng.random() < 0.8:  # the rest stay broke for the whole run
        payday = first + timedelta(hours=rng.randrange(12, 20 * 24))
    approval = 0.0
    closes_at = None
    if cause is Cause.SOFT:
        hopeless = rng.random() < 0.2  # an issuer that keeps saying no
        temporary = code in ("processing_error", "try_again_later")
        approval = 0.03 if hopeless else rng.uniform(0.5, 0.9 if temporary else 0.6)
        if rng.random() < 0.1:
            closes_at = rng.randrange(1, 4)  # the issuer closes the account meanwhile
    fix_after = None
    if cause in (Cause.CARD, Cause.NEVER, Cause.SCA):
        willing = {Cause.CARD: 0.65, Cause.NEVER: 0.35, Cause.SCA: 0.6}[cause]
        if rng.random() < willing:
            fix_after = rng.randrange(1, 5)
    fix_delay = timedelta(minutes=rng.randrange(10, 3 * 24 * 60))
    cancel_after = rng.randrange(2, 5) if rng.random() < 0.15 else None
    cancel_delay = timedelta(minutes=rng.randrange(30, 24 * 60))
    pays_oob = None
    if cause is not Cause.FRAUD and rng.random() < 0.04:
        pays_oob = first + timedelta(hours=rng.randrange(24, 20 * 24))
    return Profile(
        id=f"cus_{index:05d}",
        first_failure_at=first,
        amount_minor=amount,
        brand=brand,
        timezone=timezone,
        country=country,
        cause=cause,
        code=code,
        advice=advice,
        payday=payday,
        approval=approval,
        closes_at_charge=closes_at,
        fix_after_nudges=fix_after,
        fix_delay=fix_delay,
        cancel_after_notices=cancel_after,
        cancel_delay=cancel_delay,
        pays_out_of_band_at=pays_oob,
    )


def _pick_mix(roll: int) -> tuple[Cause, tuple[str, ...]]:
    for share, cause, codes in MIX:
        if roll < share:
            return cause, codes
        roll -= share
    raise AssertionError("the shares of MIX add up to 100")


def _advice(rng: random.Random, cause: Cause, brand: str) -> str | None:
    """Mastercard merchant advice codes: only Mastercard sends them."""
    if brand != "mastercard":
        return None
    roll = rng.random()
    if cause is Cause.NEVER:
        return "03" if roll < 0.5 else ("21" if roll < 0.6 else None)
    if cause in (Cause.SOFT, Cause.FUNDS):
        if roll < 0.15:
            return "24"  # retry after 1 hour
        if roll < 0.3:
            return "25"  # after 24 hours
        if roll < 0.4:
            return "27"  # after 4 days
    return None
