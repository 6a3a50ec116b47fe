"""What `decide` returns: the new case, the effects to carry out now, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dunwell.domain.case import RecoveryCase
from dunwell.domain.declines import DeclineTaxonomy, packaged_taxonomy
from dunwell.domain.events import Customer, PaymentMethod
from dunwell.domain.guardrails import NetworkLimits
from dunwell.domain.history import CustomerHistory, CustomerSignal
from dunwell.domain.ledger import AttemptLedger, LedgerEntry
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel
from dunwell.domain.records import direct_init
from dunwell.domain.routing import Routing
from dunwell.domain.scoring import RetryScorer


@direct_init
@dataclass(frozen=True, slots=True)
class Explanation:
    rule: str  # which rule fired, e.g. guardrail.network_cap, policy.lanes.retry_soon.retries[1]
    text: str
    inputs: tuple[tuple[str, str], ...] = ()


@direct_init
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


@direct_init
@dataclass(frozen=True, slots=True)
class SendNotice:
    case_id: str
    notice_id: str
    template: str
    channel: str
    customer: Customer
    amount: Money
    lane: str


@direct_init
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


@direct_init
@dataclass(frozen=True, slots=True)
class Context:
    """Facts the shell gathered for this decision, besides the case itself."""

    tenant_id: str
    ledger: AttemptLedger = AttemptLedger()
    limits: NetworkLimits = NetworkLimits()
    invoice_paid_at: datetime | None = None
    # The decline code tables; by default the packaged ones, so every caller that builds a
    # Context keeps working.
    taxonomy: DeclineTaxonomy = field(default_factory=packaged_taxonomy)
    # The tenant's provider settings and routing table (docs/providers.md).
    routing: Routing = Routing()
    # Providers whose circuit breaker is open, with the time it lets a charge through again:
    # planning sends their charges to a backup or schedules them after, never into the pause.
    paused_providers: tuple[tuple[str, datetime], ...] = ()

    def paused_until(self, provider: str, at: datetime) -> datetime | None:
        until = next((u for p, u in self.paused_providers if p == provider), None)
        return until if until is not None and at < until else None

    # The learned retry model (lanes with `align: learned`); None: cold-start rules.
    scorer: RetryScorer | None = None
    # The customer's earlier cases and recent signals, as far back as the policy's `risk`
    # rules look (loaded for failures and card updates only).
    history: CustomerHistory = CustomerHistory()


@direct_init
@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # opened | updated | closed | ignored
    case: RecoveryCase | None
    explanations: tuple[Explanation, ...]
    effects: tuple[Effect, ...] = ()
    ledger_entries: tuple[LedgerEntry, ...] = ()
    ledger_uncount: tuple[str, ...] = ()  # attempt ids that turned out technical failures
    invoice_paid: bool = False  # remember the invoice as paid (a success with no case)
    signals: tuple[CustomerSignal, ...] = ()  # for the customer's history (risk rules)
