"""What the shell knows about a customer beyond the case at hand: earlier recovery cases of
the same tenant and recent payment signals (declines, card updates, disputes).

The shell loads only what the policy's `risk` rules look at (their lookbacks), from indexed
queries; the rules themselves are in `dunwell.domain.risk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dunwell.domain.records import direct_init


class SignalKind(StrEnum):
    DECLINE = "decline"
    FRAUD_DECLINE = "fraud_decline"  # a decline classified fraud_suspected
    CARD_UPDATE = "card_update"
    DISPUTE = "dispute"


DECLINES = frozenset({SignalKind.DECLINE, SignalKind.FRAUD_DECLINE})
FRAUD = frozenset({SignalKind.FRAUD_DECLINE, SignalKind.DISPUTE})


@direct_init
@dataclass(frozen=True, slots=True)
class CustomerSignal:
    """One payment fact about a customer, kept per tenant for the card-testing rules."""

    kind: SignalKind
    at: datetime
    credential_key: str  # the card (fingerprint, else token) it concerns
    case_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class PastCase:
    """An earlier recovery case of the same customer and how it ended."""

    case_id: str
    opened_at: datetime
    outcome: str  # one of dunwell.domain.policy.PAST_CASE_OUTCOMES


def past_outcome(status: str, recovered_by: str | None) -> str:
    """A stored case's status as the chronic rule names it. A case recovered before dunwell
    recorded how counts as recovered by retry: the reading that caps no one by mistake when
    `ignore: [recovered_by_retry]` is set."""
    if status == "recovered":
        return "recovered_by_customer" if recovered_by == "customer" else "recovered_by_retry"
    return status


@direct_init
@dataclass(frozen=True, slots=True)
class CustomerHistory:
    past_cases: tuple[PastCase, ...] = ()
    signals: tuple[CustomerSignal, ...] = ()
