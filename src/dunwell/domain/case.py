"""The recovery case: one failed obligation (an invoice) from first failure to its end.

While open, a case is in a stage (`retrying`, `awaiting_customer`, `escalated`); it ends
`recovered`, `churned`, `canceled`, `written_off` or `disputed`. Attempts (charges) and
notices (messages) are separate records: a notice goes out at policy checkpoints only.
`plan` is the set of future actions the policy wants; the shell mirrors it into action rows.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dunwell.domain.events import Customer, PaymentMethod, Subscription
from dunwell.domain.lanes import Lane
from dunwell.domain.money import Money
from dunwell.domain.policy import AccessLevel
from dunwell.domain.records import direct_init


class CaseStatus(StrEnum):
    OPEN = "open"
    RECOVERED = "recovered"
    CHURNED = "churned"
    CANCELED = "canceled"
    WRITTEN_OFF = "written_off"
    DISPUTED = "disputed"


class Stage(StrEnum):
    RETRYING = "retrying"
    AWAITING_CUSTOMER = "awaiting_customer"
    ESCALATED = "escalated"


class AttemptStatus(StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERRORED = "errored"  # provider failure: outcome known to be "not charged"


class ActionType(StrEnum):
    RETRY = "retry"
    NOTICE = "notice"
    ACCESS = "access"
    END = "end"


@direct_init
@dataclass(frozen=True, slots=True)
class DeclineInfo:
    provider: str
    provider_code: str | None
    network_code: str | None
    advice_code: str | None
    message: str | None
    lane: Lane
    rule: str
    retry_allowed: bool
    # Added with the code tables; defaults keep cases stored before them readable.
    network_category: str | None = None
    known: bool = True
    code_provider: str | None = None  # whose code table was read (decline.provider)
    source_file: str | None = None  # the table row that decided the lane
    source_line: int | None = None
    source_code: str | None = None
    source_description: str | None = None
    source_url: str | None = None


@direct_init
@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    number: int  # 1-based count of charge attempts dunwell made for this case
    credential_key: str
    provider: str
    payment_method_token: str
    started_at: datetime
    status: AttemptStatus = AttemptStatus.IN_FLIGHT
    finished_at: datetime | None = None
    provider_code: str | None = None
    # A request under this id may have reached `provider`: after an unknown outcome only that
    # provider may be asked again. True by default, the safe reading of attempts stored
    # before the field; a new attempt starts False until an errored send says otherwise.
    sent: bool = True

    @property
    def idempotency_key(self) -> str:
        # The attempt id itself: a re-run after a crash sends the same key, so the provider
        # answers it once.
        return self.id


@direct_init
@dataclass(frozen=True, slots=True)
class Notice:
    id: str
    key: str  # the checkpoint it fulfils: fired once per case
    template: str
    channel: str
    created_at: datetime
    status: str = "sending"  # sending | sent | failed | undeliverable (a hard bounce)
    delivered_at: datetime | None = None


@direct_init
@dataclass(frozen=True, slots=True)
class PlannedAction:
    key: str  # stable within the case: retry:N, notice:..., access:LEVEL, end
    type: ActionType
    due_at: datetime
    rule: str
    reason: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str:
        return dict(self.params)[name]


@dataclass(frozen=True, slots=True)
class RecoveryCase:
    id: str
    tenant_id: str
    invoice_id: str
    customer: Customer
    subscription: Subscription
    amount: Money
    payment_method: PaymentMethod
    policy_name: str
    opened_at: datetime
    decline: DeclineInfo
    status: CaseStatus = CaseStatus.OPEN
    stage: Stage | None = Stage.RETRYING
    access: AccessLevel = AccessLevel.FULL
    failures: int = 1  # failed charges seen, the one that opened the case included
    last_failure_at: datetime | None = None
    not_before: datetime | None = None  # a network advice code's delay
    escalated: bool = False
    technical_retries: int = 0  # since the last real outcome
    customer_fixed_at: datetime | None = None  # new card or authentication: retry at once
    blocked_credentials: frozenset[str] = frozenset()
    attempts: tuple[Attempt, ...] = ()
    notices: tuple[Notice, ...] = ()
    plan: tuple[PlannedAction, ...] = ()
    closed_at: datetime | None = None
    recovered_amount: Money | None = None
    # The provider that retries this invoice itself (its retries were on when the case
    # opened); dunwell plans no charge until it gives up (`provider_gave_up_at`).
    provider_retrying: str | None = None
    provider_gave_up_at: datetime | None = None
    # Risk (policy `risk`): a chronic failer's cap on the retry ladder, fixed when the case
    # opens; a card-testing or fraud signal's reason, which stops every charge for good.
    retry_cap: int | None = None
    risk_hold: str | None = None
    # The customer updated the payment method or authenticated at some point; with
    # `recovered_by` (retry | customer) it tells later cases how this one was recovered.
    customer_acted: bool = False
    recovered_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status is CaseStatus.OPEN

    @property
    def lane(self) -> Lane:
        return self.decline.lane

    @property
    def attempts_made(self) -> int:
        """Charges that reached the network: errored ones (provider failures) do not count."""
        return sum(1 for a in self.attempts if a.status is not AttemptStatus.ERRORED)

    @property
    def in_flight(self) -> Attempt | None:
        return next((a for a in self.attempts if a.status is AttemptStatus.IN_FLIGHT), None)

    @property
    def next_action(self) -> PlannedAction | None:
        return min(self.plan, key=lambda a: (a.due_at, a.key), default=None)

    @property
    def provider_retries_on(self) -> bool:
        return self.provider_retrying is not None and self.provider_gave_up_at is None

    def planned(self, key: str) -> PlannedAction | None:
        return next((a for a in self.plan if a.key == key), None)


_IDS = uuid.UUID("5d0c8f1e-64f4-4c55-9d5b-0a4a9e1f7c21")
_IDS_BYTES = _IDS.bytes


def case_id_for(tenant_id: str, invoice_id: str) -> str:
    """Deterministic: one case per tenant and invoice, the same id on every replay."""
    return "case_" + _uuid5_hex24(f"{tenant_id}\x1f{invoice_id}")


def child_id(prefix: str, case_id: str, n: int) -> str:
    return f"{prefix}_" + _uuid5_hex24(f"{case_id}\x1f{prefix}\x1f{n}")


def _uuid5_hex24(name: str) -> str:
    """`uuid.uuid5(_IDS, name).hex[:24]`, without building the UUID (an attempt and a notice
    get an id each): the name-based SHA-1 digest with the version (5) and variant bits set,
    as `uuid5` sets them, in its first twelve bytes."""
    digest = bytearray(hashlib.sha1(_IDS_BYTES + name.encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest[:12].hex()
