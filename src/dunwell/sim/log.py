"""What the world saw, as the card networks and the customer would tell it.

The harness appends one entry per initial failure a world reported, per charge dunwell sent,
and per payment or cancellation a customer made on their own (see `adapters.Recorder`). The
violations check reads only this log, never the engine's database, so a guardrail bug in the
engine cannot hide itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dunwell.domain.records import direct_init


class Kind(StrEnum):
    INITIAL_FAILURE = "initial_failure"  # the decline that opened the case (not dunwell's)
    CHARGE = "charge"  # a charge dunwell sent
    PAID_OUT_OF_BAND = "paid_out_of_band"  # the customer paid some other way
    CANCELED = "canceled"  # the customer canceled the subscription


class Outcome(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    ERROR = "error"  # the provider failed before the network saw the charge


@direct_init
@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    kind: Kind
    customer_id: str
    credential: str | None = None  # the card's fingerprint (or token): what networks count
    brand: str | None = None
    attempt_id: str | None = None
    outcome: Outcome | None = None
    code: str | None = None  # decline code
    advice: str | None = None  # Mastercard merchant advice code
    network_code: str | None = None  # e.g. a Visa response code
    invoice_id: str | None = None  # what a capture pays; the customer's id stands in when unknown
    provider: str | None = None  # which provider a charge went to

    @property
    def reached_network(self) -> bool:
        """An attempt the card networks count: a charge answered, or the initial failure."""
        if self.kind is Kind.INITIAL_FAILURE:
            return True
        return self.kind is Kind.CHARGE and self.outcome is not Outcome.ERROR
