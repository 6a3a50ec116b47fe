"""What `decide` returns: the new case, the effects to carry out now, and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dunwell.domain.case import RecoveryCase
from dunwell.domain.events import Customer, PaymentMethod
from dunwell.domain.guardrails import NetworkLimits
from dunwell.domain.ledger import AttemptLedger, LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel


@dataclass(frozen=True, slots=True)
class Explanation:
    rule: str  # which rule fired, e.g. guardrail.network_cap, policy.lanes.retry_soon.retries[1]
    text: str
    inputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Charge:
    case_id: str
    attempt_id: str
    idempotency_key: str
    amount: Money
    provider: str
    payment_method: PaymentMethod
    customer_id: str
    invoice_id: str


@dataclass(frozen=True, slots=True)
class SendNotice:
    case_id: str
    notice_id: str
    template: str
    channel: str
    customer: Customer
    amount: Money
    lane: str


@dataclass(frozen=True, slots=True)
class ChangeAccess:
    case_id: str
    customer_id: str
    subscription_id: str
    level: AccessLevel


@dataclass(frozen=True, slots=True)
class Escalate:
    case_id: str
    reason: str


Effect = Charge | SendNotice | ChangeAccess | Escalate


@dataclass(frozen=True, slots=True)
class Context:
    """Facts the shell gathered for this decision, besides the case itself."""

    tenant_id: str
    ledger: AttemptLedger = AttemptLedger()
    limits: NetworkLimits = NetworkLimits()
    invoice_paid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # opened | updated | closed | ignored
    case: RecoveryCase | None
    explanations: tuple[Explanation, ...]
    effects: tuple[Effect, ...] = ()
    ledger_entries: tuple[LedgerEntry, ...] = ()
    ledger_uncount: tuple[str, ...] = ()  # attempt ids that turned out technical failures
    invoice_paid: bool = False  # remember the invoice as paid (a success with no case)
