"""What every provider adapter shares: the rejection, the translation, money and time helpers.

An adapter is two functions. `verify(headers, body, endpoint, now)` raises `WebhookRejected`
unless the delivery is authentic and fresh; nothing is parsed for meaning before it passes.
`translate(body, endpoint)` turns a verified delivery into canonical event dicts in exactly the
`POST /v1/events` format, so they take the same `parse_event` -> ingest path and deduplicate by
their ids, which are derived from the provider's own event id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol


class WebhookRejected(Exception):
    """An unverified delivery: answered 4xx, kept in dead letters, never processed."""

    def __init__(self, code: str, reason: str, status: int = 400) -> None:
        self.code = code
        self.reason = reason
        self.status = status
        super().__init__(f"{code}: {reason}")


class Untranslatable(Exception):
    """Authentic, but missing what a canonical event needs (e.g. no currency)."""


@dataclass(frozen=True)
class Endpoint:
    """A configured endpoint with its secret in clear, only in memory while verifying."""

    id: str
    tenant_id: str
    provider: str
    account: str | None
    secret: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Translation:
    """The canonical events a delivery means, and what was acknowledged without an event."""

    delivery_id: str  # the provider's id for this delivery: the dedup key of the record
    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why something was not turned into one
    # The app stores name no invoice, only the subscription: event index -> (subscription id,
    # invoice id to use when it has no open case, or None to drop the event then). Resolved
    # against the tenant's open cases before ingest.
    open_case_invoice: dict[int, tuple[str, str | None]] = field(default_factory=dict)


class Adapter(Protocol):
    def verify(
        self, headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime
    ) -> None: ...

    def translate(self, body: bytes, endpoint: Endpoint) -> Translation: ...


# ISO 4217 exponents that are not 2. Providers that send decimal strings (Braintree) or
# thousandths (Apple) need them to reach integer minor units exactly.
_EXPONENT = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def decimal_to_minor(amount: str, currency: str) -> int:
    """'49.99' USD -> 4999. Refuses a value with more precision than the currency has."""
    try:
        value = Decimal(amount.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise Untranslatable(f"amount {amount!r} is not a decimal") from exc
    minor = value.scaleb(exponent(currency))
    if minor != minor.to_integral_value():
        raise Untranslatable(f"amount {amount} has more decimals than {currency} allows")
    return int(minor)


def milli_to_minor(milli: int, currency: str) -> int:
    """Apple's prices are in thousandths of the unit: 9990 USD -> 999 cents, exactly."""
    scale = 10 ** (3 - exponent(currency)) if exponent(currency) <= 3 else None
    if scale is None:
        return milli * 10 ** (exponent(currency) - 3)
    whole, rest = divmod(milli, scale)
    if rest:
        raise Untranslatable(f"price {milli} thousandths is not a whole {currency} minor unit")
    return whole


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_epoch(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def from_epoch_ms(millis: int) -> str:
    return iso(datetime.fromtimestamp(millis / 1000, UTC))


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Untranslatable(f"not JSON: {exc}") from exc


def drop_none(value: dict[str, Any]) -> dict[str, Any]:
    """Canonical optional fields are left out rather than sent as null."""
    return {k: v for k, v in value.items() if v is not None}


def decline(
    provider: str,
    provider_code: str | None,
    network_code: str | None = None,
    advice_code: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    return {
        "provider": provider,
        "provider_code": provider_code or None,
        "network_code": network_code or None,
        "advice_code": advice_code or None,
        "message": message or None,
    }
