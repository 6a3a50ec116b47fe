"""The canonical event wire format (JSON), validated with Pydantic, turned into domain events.

The HTTP API, dead-letter replay and the CLI all parse through `parse_event`, so a body is
judged the same way wherever it comes from. Errors name the field: `invoice.amount`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from dunwell.domain import events as ev
from dunwell.domain.money import Money

Text = Annotated[str, Field(min_length=1, max_length=255)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerIn(_Model):
    id: Text
    email: str | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    timezone: str | None = None
    locale: str | None = None
    segment: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


class SubscriptionIn(_Model):
    id: Text
    plan: str | None = None
    storefront: str | None = None


class InvoiceIn(_Model):
    id: Text
    amount: Annotated[int, Field(strict=True, ge=0, description="minor units, e.g. cents")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class PaymentMethodIn(_Model):
    token: Text
    brand: str | None = None
    fingerprint: str | None = None
    # network_token | vaulted: other providers of the tenant's routing table can charge it.
    kind: Literal["network_token", "vaulted"] | None = None

    def to_domain(self) -> ev.PaymentMethod:
        return ev.PaymentMethod(self.token, self.brand, self.fingerprint, self.kind)

    @field_validator("token")
    @classmethod
    def _not_a_card_number(cls, value: str) -> str:
        digits = value.replace(" ", "").replace("-", "")
        if digits.isdigit() and 12 <= len(digits) <= 19:
            # dunwell never stores a PAN: only a provider's token for it.
            raise ValueError("looks like a card number; send the provider's token instead")
        return value


class PaymentIn(_Model):
    provider: Text
    payment_method: PaymentMethodIn


def _code_text(value: Any) -> Any:
    # Adyen's refusalReasonCode and Braintree's processor codes are numbers in some payloads.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Code = Annotated[str, BeforeValidator(_code_text)]


class DeclineIn(_Model):
    # whose code table provider_code is in, when not payment.provider's (e.g. a gateway)
    provider: str | None = None
    provider_code: Code | None = None
    network_code: Code | None = None
    advice_code: Code | None = None
    message: str | None = None
    provider: str | None = None  # whose code vocabulary provider_code is in


class _EventIn(_Model):
    id: Text
    occurred_at: datetime

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone offset, e.g. 2026-11-22T10:00:00Z")
        return value


class PaymentFailedIn(_EventIn):
    type: Literal["payment.failed"]
    customer: CustomerIn
    subscription: SubscriptionIn
    invoice: InvoiceIn
    payment: PaymentIn
    decline: DeclineIn = DeclineIn()

    def to_domain(self) -> ev.PaymentFailed:
        c, s, pm = self.customer, self.subscription, self.payment.payment_method
        return ev.PaymentFailed(
            id=self.id,
            occurred_at=self.occurred_at,
            customer=ev.Customer(c.id, c.email, c.country, c.timezone, c.locale, c.segment),
            subscription=ev.Subscription(s.id, s.plan, s.storefront),
            invoice_id=self.invoice.id,
            amount=Money(self.invoice.amount, self.invoice.currency),
            provider=self.payment.provider,
            payment_method=pm.to_domain(),
            decline=ev.DeclineReport(
                self.decline.provider_code,
                self.decline.network_code,
                self.decline.advice_code,
                self.decline.message,
                self.decline.provider or self.payment.provider,
            ),
        )


class InvoiceRefIn(_Model):
    id: Text
    amount: Annotated[int, Field(strict=True, ge=0)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None


class PaymentSucceededIn(_EventIn):
    type: Literal["payment.succeeded"]
    invoice: InvoiceRefIn
    customer: CustomerIn | None = None
    payment: PaymentIn | None = None

    def to_domain(self) -> ev.PaymentSucceeded:
        amount = None
        if self.invoice.amount is not None and self.invoice.currency is not None:
            amount = Money(self.invoice.amount, self.invoice.currency)
        return ev.PaymentSucceeded(
            id=self.id,
            occurred_at=self.occurred_at,
            invoice_id=self.invoice.id,
            amount=amount,
            provider=self.payment.provider if self.payment else None,
            customer_id=self.customer.id if self.customer else None,
        )


class CustomerRefIn(_Model):
    id: Text


class ProviderRefIn(_Model):
    provider: Text


class PaymentMethodUpdatedIn(_EventIn):
    type: Literal["payment_method.updated"]
    customer: CustomerRefIn
    payment_method: PaymentMethodIn

    def to_domain(self) -> ev.PaymentMethodUpdated:
        pm = self.payment_method
        return ev.PaymentMethodUpdated(
            self.id,
            self.occurred_at,
            self.customer.id,
            pm.to_domain(),
        )


class CustomerAuthenticatedIn(_EventIn):
    type: Literal["customer.authenticated"]
    customer: CustomerRefIn
    invoice: CustomerRefIn | None = None

    def to_domain(self) -> ev.CustomerAuthenticated:
        return ev.CustomerAuthenticated(
            self.id, self.occurred_at, self.customer.id, self.invoice.id if self.invoice else None
        )


class SubscriptionCanceledIn(_EventIn):
    type: Literal["subscription.canceled"]
    subscription: CustomerRefIn
    customer: CustomerRefIn | None = None

    def to_domain(self) -> ev.SubscriptionCanceled:
        return ev.SubscriptionCanceled(
            self.id,
            self.occurred_at,
            self.subscription.id,
            self.customer.id if self.customer else None,
        )


class DisputeOpenedIn(_EventIn):
    type: Literal["dispute.opened"]
    invoice: CustomerRefIn
    customer: CustomerRefIn | None = None
    reason: str | None = None

    def to_domain(self) -> ev.DisputeOpened:
        return ev.DisputeOpened(
            self.id,
            self.occurred_at,
            self.invoice.id,
            self.customer.id if self.customer else None,
            self.reason,
        )


class ProviderRetriesExhaustedIn(_EventIn):
    type: Literal["payment.retries_exhausted"]
    invoice: CustomerRefIn
    payment: ProviderRefIn
    customer: CustomerRefIn | None = None

    def to_domain(self) -> ev.ProviderRetriesExhausted:
        return ev.ProviderRetriesExhausted(
            self.id,
            self.occurred_at,
            self.invoice.id,
            self.payment.provider,
            self.customer.id if self.customer else None,
        )


CanonicalEventIn = Annotated[
    PaymentFailedIn
    | PaymentSucceededIn
    | PaymentMethodUpdatedIn
    | CustomerAuthenticatedIn
    | SubscriptionCanceledIn
    | DisputeOpenedIn
    | ProviderRetriesExhaustedIn,
    Field(discriminator="type"),
]
EVENT_TYPES = (
    "payment.failed",
    "payment.succeeded",
    "payment_method.updated",
    "customer.authenticated",
    "subscription.canceled",
    "dispute.opened",
    "payment.retries_exhausted",
)
_ADAPTER: TypeAdapter[Any] = TypeAdapter(CanonicalEventIn)


class EventError(ValueError):
    """A body that is not a valid canonical event; `problems` name each field."""

    def __init__(self, code: str, problems: list[dict[str, str]]) -> None:
        self.code = code
        self.problems = problems
        super().__init__(f"{code}: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems))


def parse_event(body: bytes | str) -> tuple[ev.ExternalEvent, dict[str, Any]]:
    """Parse and validate; returns the domain event and the JSON payload to keep."""
    import json

    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(
            "malformed_json", [{"field": "(body)", "message": f"not JSON: {exc}"}]
        ) from exc
    if not isinstance(payload, dict):
        raise EventError(
            "invalid_event", [{"field": "(body)", "message": "expected a JSON object"}]
        )
    kind = payload.get("type")
    if kind not in EVENT_TYPES:
        message = f"unknown event type {kind!r}; known: {', '.join(EVENT_TYPES)}"
        raise EventError("unknown_event_type", [{"field": "type", "message": message}])
    try:
        model = _ADAPTER.validate_python(payload)
    except ValidationError as exc:
        problems = [
            {
                "field": ".".join(str(p) for p in err["loc"][1:]) or "(body)",
                "message": err["msg"],
            }
            for err in exc.errors(include_url=False)
        ]
        raise EventError("invalid_event", problems) from exc
    return model.to_domain(), payload
