"""Canonical events: past-tense facts every inbound adapter is normalised into.

External events come from providers or the API. Internal events are what the engine itself
observes: an action falling due, the outcome of a charge it made, a notice it delivered.
All of them go through the same `decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dunwell.domain.money import Money
from dunwell.domain.records import direct_init


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    email: str | None = None
    country: str | None = None
    timezone: str | None = None
    locale: str | None = None
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    plan: str | None = None
    storefront: str | None = None


@direct_init
@dataclass(frozen=True, slots=True)
class PaymentMethod:
    token: str
    brand: str | None = None
    fingerprint: str | None = None
    # network_token | vaulted: other providers of the routing table can charge it too;
    # None: a provider's own token, chargeable only by that provider.
    kind: str | None = None

    @property
    def credential_key(self) -> str:
        """What the card networks count attempts against: the card, not the token."""
        return self.fingerprint or self.token


@direct_init
@dataclass(frozen=True, slots=True)
class DeclineReport:
    """A decline as the provider reported it, before classification."""

    provider_code: str | None = None
    network_code: str | None = None
    advice_code: str | None = None
    message: str | None = None
    provider: str | None = None  # whose code table provider_code is in; default: the event's


@direct_init
@dataclass(frozen=True, slots=True)
class PaymentFailed:
    id: str
    occurred_at: datetime
    customer: Customer
    subscription: Subscription
    invoice_id: str
    amount: Money
    provider: str
    payment_method: PaymentMethod
    decline: DeclineReport
    attempt_id: str | None = None  # set when this is the outcome of dunwell's own attempt
    type: str = "payment.failed"


@dataclass(frozen=True, slots=True)
class PaymentSucceeded:
    id: str
    occurred_at: datetime
    invoice_id: str
    amount: Money | None = None
    provider: str | None = None
    customer_id: str | None = None
    attempt_id: str | None = None
    type: str = "payment.succeeded"


@dataclass(frozen=True, slots=True)
class PaymentMethodUpdated:
    id: str
    occurred_at: datetime
    customer_id: str
    payment_method: PaymentMethod
    type: str = "payment_method.updated"


@dataclass(frozen=True, slots=True)
class CustomerAuthenticated:
    id: str
    occurred_at: datetime
    customer_id: str
    invoice_id: str | None = None
    type: str = "customer.authenticated"


@dataclass(frozen=True, slots=True)
class SubscriptionCanceled:
    id: str
    occurred_at: datetime
    subscription_id: str
    customer_id: str | None = None
    type: str = "subscription.canceled"


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    id: str
    occurred_at: datetime
    invoice_id: str
    customer_id: str | None = None
    reason: str | None = None
    type: str = "dispute.opened"


@dataclass(frozen=True, slots=True)
class ProviderRetriesExhausted:
    """The provider that retries by itself gave up on the invoice (Stripe marked it
    uncollectible or the subscription unpaid, Adyen's Auto Rescue ended unsuccessfully)."""

    id: str
    occurred_at: datetime
    invoice_id: str
    provider: str
    customer_id: str | None = None
    type: str = "payment.retries_exhausted"


ExternalEvent = (
    PaymentFailed
    | PaymentSucceeded
    | PaymentMethodUpdated
    | CustomerAuthenticated
    | SubscriptionCanceled
    | DisputeOpened
    | ProviderRetriesExhausted
)


@direct_init
@dataclass(frozen=True, slots=True)
class ActionDue:
    """The engine's clock reached a planned action of a case."""

    id: str
    occurred_at: datetime
    case_id: str
    action_key: str
    type: str = "action.due"


@dataclass(frozen=True, slots=True)
class AttemptErrored:
    """The provider itself failed (timeout, 5xx): a technical failure, not a decline."""

    id: str
    occurred_at: datetime
    case_id: str
    attempt_id: str
    message: str
    # False: the request never left (an open circuit), so nothing can have been charged and
    # the attempt may go to another provider. True: only this provider can tell.
    sent: bool = True
    type: str = "attempt.errored"


@direct_init
@dataclass(frozen=True, slots=True)
class NoticeDelivered:
    id: str
    occurred_at: datetime
    case_id: str
    notice_id: str
    ok: bool = True
    detail: str | None = None
    # The channel said this address can never receive it (a hard bounce, no such number):
    # the policy's fallback channel may take over. Not set for a failure that may pass.
    undeliverable: bool = False
    type: str = "notice.delivered"


InternalEvent = ActionDue | AttemptErrored | NoticeDelivered
Event = ExternalEvent | InternalEvent
