"""How one customer's card issuer answers a charge, from the customer's hidden profile.

Pure functions of the profile, what has happened to the customer so far, and a random
generator seeded from (seed, customer, time): the same charge at the same virtual time gets
the same answer under every policy, so policies are compared on one world.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime

from dunwell.domain.events import DeclineReport, PaymentMethod
from dunwell.providers.base import ChargeResult
from dunwell.sim.population import Cause, Profile

PAYDAY_APPROVAL = 0.85  # money is back, but not always enough
FIXED_APPROVAL = 0.92  # a new card or a completed authentication usually works


@dataclass
class CustomerState:
    """What has happened to one customer so far in this run."""

    card: int = 1  # the customer's current card: 1 is the one that failed first
    authenticated: bool = False
    paid: bool = False
    canceled: bool = False
    issuer_closed: bool = False  # the issuer has said "never" to this card
    charges: int = 0  # charges that reached the issuer
    notices: int = 0
    nudges: int = 0  # notices weighed by how clearly they say what to do
    fix_scheduled: bool = False
    cancel_scheduled: bool = False


def charge_rng(seed: int, customer_id: str, at: datetime) -> random.Random:
    # hashlib, not hash(): str hashes change per process, and two runs must agree.
    key = f"dunwell-sim:{seed}:{customer_id}:{at.isoformat()}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def answer(
    p: Profile, state: CustomerState, pm: PaymentMethod, now: datetime, roll: float
) -> ChargeResult:
    """The issuer's answer to one charge; `roll` is this charge's uniform draw in [0, 1)."""
    if pm.credential_key != card(p, state.card).credential_key:
        return decline(p.code, p.advice)  # an old card answers as it always did
    if state.card > 1:
        return approve() if roll < FIXED_APPROVAL else decline("generic_decline")
    if p.cause is Cause.FUNDS:
        funded = p.payday is not None and now >= p.payday
        return approve() if funded and roll < PAYDAY_APPROVAL else decline(p.code, p.advice)
    if p.cause is Cause.SOFT:
        if state.issuer_closed or state.charges == p.closes_at_charge:
            state.issuer_closed = True  # the account was closed meanwhile: never again
            return decline("do_not_try_again", "03" if p.brand == "mastercard" else None)
        return approve() if roll < p.approval else decline(p.code, p.advice)
    if p.cause is Cause.SCA and state.authenticated:
        return approve() if roll < FIXED_APPROVAL else decline(p.code)
    return decline(p.code, p.advice)  # CARD, NEVER, FRAUD, and SCA not yet authenticated


def card(p: Profile, number: int) -> PaymentMethod:
    """The customer's `number`th card: a new card is a new credential (fingerprint)."""
    return PaymentMethod(f"pm_{p.id}_{number}", p.brand, f"fp_{p.id}_{number}")


def invoice(customer_id: str) -> str:
    return f"inv_{customer_id}_1"  # one failed invoice per customer


def approve() -> ChargeResult:
    return ChargeResult(True, provider_reference="sim_approved")


def decline(code: str, advice: str | None = None) -> ChargeResult:
    return ChargeResult(False, DeclineReport(code, None, advice, "simulated decline"))
