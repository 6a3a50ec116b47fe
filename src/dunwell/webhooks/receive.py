"""One inbound delivery: find the endpoint, verify, translate, ingest, record.

Nothing is parsed for meaning before it is verified. Every rejection is answered 4xx and kept
in dead letters with its reason, the raw body and the headers needed to check it again (never
a secret: the shared token of a URL and any Authorization header are left out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from dunwell.bootstrap import Services
from dunwell.engine import deadletters
from dunwell.engine.event_schema import EventError, parse_event
from dunwell.store.unit_of_work import UnitOfWork
from dunwell.webhooks import adyen, apple, braintree, checkout, google, stripe
from dunwell.webhooks.base import (
    Adapter,
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
)
from dunwell.webhooks.endpoints import EndpointError, load
from dunwell.webhooks.store import WebhookDelivery

ADAPTERS: dict[str, Adapter] = {
    "stripe": stripe,
    "adyen": adyen,
    "braintree": braintree,
    "checkout": checkout,
    "apple": apple,
    "google": google,
}
# Provider notifications are a few KiB; Adyen batches and Apple's JWS stay well under this.
MAX_BODY_BYTES = 1024 * 1024
KEPT_OF_OVERSIZED = 64 * 1024
# Headers a dead letter keeps so a human can see what was presented.
_KEPT_HEADERS = ("content-type", "user-agent", "stripe-signature", "cko-signature")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def receive(
    services: Services,
    provider: str,
    endpoint_id: str,
    headers: dict[str, str],
    body: bytes,
    query: dict[str, str] | None = None,
) -> Answer:
    """`headers` lower-cased; `query` holds URL parameters (a Google push's shared token)."""
    if len(body) > MAX_BODY_BYTES:
        # Kept, but only the head: a dead letter must not become a way to fill the database.
        body = body[:KEPT_OF_OVERSIZED]
        raw = body.decode("utf-8", errors="replace")
        error = {
            "error": "too_large",
            "message": f"body over {MAX_BODY_BYTES} bytes",
            "endpoint_id": endpoint_id,
        }
        dead = deadletters.record(services.ingest, None, f"webhook:{provider}", raw, error)
        return Answer(413, {**error, "dead_letter_id": dead})
    raw = body.decode("utf-8", errors="replace")
    kept = {k: v for k, v in headers.items() if k in _KEPT_HEADERS}
    source = f"webhook:{provider}"

    def reject(tenant: str | None, status: int, code: str, reason: str) -> Answer:
        error = {"error": code, "message": reason, "endpoint_id": endpoint_id, "headers": kept}
        dead = deadletters.record(services.ingest, tenant, source, raw, error)
        return Answer(status, {"error": code, "message": reason, "dead_letter_id": dead})

    adapter = ADAPTERS.get(provider)
    try:
        endpoint = load(services.sessions, services.settings.secret_key, endpoint_id)
    except EndpointError as exc:
        return reject(None, 500, "endpoint_misconfigured", str(exc))
    if adapter is None or endpoint is None or endpoint.provider != provider:
        return reject(None, 404, "unknown_endpoint", f"no {provider} endpoint {endpoint_id}")
    now = services.clock.now()
    try:
        adapter.verify({**headers, **_query(query)}, body, endpoint, now)
    except WebhookRejected as exc:
        return reject(endpoint.tenant_id, exc.status, exc.code, exc.reason)
    early = getattr(adapter, "delivery_id", None)
    try:
        if early is not None and (seen := _seen(services, endpoint, early(body))) is not None:
            return seen
        translation = adapter.translate(body, endpoint)
        _resolve_invoices(services, endpoint.tenant_id, translation)
        parsed = [parse_event(json.dumps(e)) for e in translation.events]
    except (Untranslatable, EventError, KeyError, TypeError, ValueError) as exc:
        # Authentic but unusable (a shape the adapter does not know): a provider retry would
        # not help, so 2xx after keeping it for a human.
        reason = str(exc) if isinstance(exc, Untranslatable | EventError) else repr(exc)
        answer = reject(endpoint.tenant_id, 202, "untranslatable", reason)
        answer.body["received"] = True
        return answer
    return _process(services, endpoint, translation.delivery_id, parsed, translation.ignored, raw)


def _resolve_invoices(services: Services, tenant_id: str, translation: Translation) -> None:
    """Give store events the invoice id of the subscription's open case (see Translation)."""
    if not translation.open_case_invoice:
        return
    kept = []
    with UnitOfWork(services.sessions) as uow:
        for index, event in enumerate(translation.events):
            lookup = translation.open_case_invoice.get(index)
            if lookup is None:
                kept.append(event)
                continue
            subscription, fallback = lookup
            cases = uow.cases.open_by(tenant_id, subscription_id=subscription)
            invoice = cases[0].invoice_id if cases else fallback
            if invoice is None:
                translation.ignored.append(f"{event['id']}: no open case for {subscription}")
                continue
            event["invoice"] = {**event["invoice"], "id": invoice}
            kept.append(event)
    translation.events = kept
    translation.open_case_invoice = {}


def _seen(services: Services, endpoint: Endpoint, delivery_id: str | None) -> Answer | None:
    """The answer to a delivery already recorded: nothing is done again."""
    if delivery_id is None:
        return None
    with UnitOfWork(services.sessions) as uow:
        seen = (
            uow.session.query(WebhookDelivery)
            .filter_by(endpoint_id=endpoint.id, delivery_id=delivery_id)
            .one_or_none()
        )
        if seen is None:
            return None
        return Answer(200, _summary(delivery_id, True, seen.event_ids, [], seen.notes))


def _query(query: dict[str, str] | None) -> dict[str, str]:
    return {f"query:{k}": v for k, v in (query or {}).items()}


def _process(
    services: Services,
    endpoint: Endpoint,
    delivery_id: str,
    parsed: list[Any],
    ignored: list[str],
    raw: str,
) -> Answer:
    if (seen := _seen(services, endpoint, delivery_id)) is not None:
        return seen
    results = []
    try:
        for event, payload in parsed:
            # Each canonical id is derived from the provider's id: ingest deduplicates it,
            # so the provider's retry after a failure here redoes only what is missing.
            results.append(services.ingest(endpoint.tenant_id, event, payload))
    except Exception as exc:  # kept for inspection; 500 makes the provider deliver again
        error = {"error": "processing_failed", "message": f"{type(exc).__name__}: {exc}"}
        source = f"webhook:{endpoint.provider}"
        dead = deadletters.record(services.ingest, endpoint.tenant_id, source, raw, error)
        return Answer(500, {**error, "dead_letter_id": dead})
    event_ids = [r.event_id for r in results]
    row = WebhookDelivery(
        tenant_id=endpoint.tenant_id,
        endpoint_id=endpoint.id,
        provider=endpoint.provider,
        delivery_id=delivery_id,
        received_at=services.clock.now(),
        status="processed" if results else "acknowledged",
        event_ids=event_ids,
        notes=ignored,
        raw_body=raw,
    )
    try:
        with UnitOfWork(services.sessions) as uow:
            uow.session.add(row)
            uow.commit()
    except IntegrityError:  # the same delivery, concurrently: its events were deduplicated
        pass
    outcomes = [
        {
            "event_id": r.event_id,
            "duplicate": r.duplicate,
            "outcome": r.outcome,
            "case_ids": r.case_ids,
        }
        for r in results
    ]
    duplicate = bool(results) and all(r.duplicate for r in results)
    return Answer(200, _summary(delivery_id, duplicate, event_ids, outcomes, ignored))


def _summary(
    delivery_id: str,
    duplicate: bool,
    event_ids: list[Any],
    outcomes: list[dict[str, Any]],
    notes: list[Any],
) -> dict[str, Any]:
    return {
        "received": True,
        "delivery_id": delivery_id,
        "duplicate": duplicate,
        "event_ids": event_ids,
        "events": outcomes,
        "acknowledged": notes,
    }
