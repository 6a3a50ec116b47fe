"""Canonical event bodies for tests, as a user would post them (JSON-able dicts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

API_KEY = "test-api-key-0123456789"


def failed_body(
    event_id: str,
    at: datetime,
    *,
    invoice: str = "in_1",
    customer: str = "cus_1",
    code: str | None = "insufficient_funds",
    token: str = "pm_ok_1",
    brand: str = "visa",
    fingerprint: str | None = "fp_1",
    amount: int = 1999,
    currency: str = "EUR",
    advice_code: str | None = None,
    network_code: str | None = None,
    segment: str | None = "consumer",
    timezone: str = "Europe/Berlin",
    storefront: str | None = "web",
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "payment.failed",
        "occurred_at": at.isoformat(),
        "customer": {
            "id": customer,
            "email": f"{customer}@example.com",
            "country": "DE",
            "timezone": timezone,
            "locale": "de-DE",
            "segment": segment,
        },
        "subscription": {"id": f"sub_{customer}", "plan": "pro", "storefront": storefront},
        "invoice": {"id": invoice, "amount": amount, "currency": currency},
        "payment": {
            "provider": "stripe",
            "payment_method": {"token": token, "brand": brand, "fingerprint": fingerprint},
        },
        "decline": {
            "provider_code": code,
            "network_code": network_code,
            "advice_code": advice_code,
            "message": "declined",
        },
    }


def succeeded_body(event_id: str, at: datetime, *, invoice: str = "in_1") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "payment.succeeded",
        "occurred_at": at.isoformat(),
        "invoice": {"id": invoice, "amount": 1999, "currency": "EUR"},
    }


def card_updated_body(
    event_id: str, at: datetime, *, customer: str = "cus_1", token: str = "pm_ok_new"
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "payment_method.updated",
        "occurred_at": at.isoformat(),
        "customer": {"id": customer},
        "payment_method": {"token": token, "brand": "visa", "fingerprint": f"fp_{token}"},
    }


def post(services: Any, body: dict[str, Any], tenant: str = "acme") -> Any:
    """Ingest a body exactly as the API does: parse, validate, then ingest."""
    import json

    from dunwell.engine.event_schema import parse_event

    event, payload = parse_event(json.dumps(body))
    return services.ingest(tenant, event, payload)


def skip_until(services: Any, clock: Any, until: datetime) -> int:
    """Advance virtual time from due action to due action, running each, up to `until`."""
    from dunwell.store.unit_of_work import UnitOfWork

    done = services.runner.run_until_idle()
    while True:
        with UnitOfWork(services.sessions) as uow:
            due_at = uow.actions.next_due_at()
        if due_at is None or due_at > until:
            break
        if due_at > clock.now():
            clock.set(due_at)
        done += services.runner.run_until_idle()
    if until > clock.now():
        clock.set(until)
    return done
