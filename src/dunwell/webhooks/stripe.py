"""Stripe: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX...]`, HMAC-SHA256 over `t.body`.

Checked here against the documented scheme rather than through the SDK: the SDK accepts a
timestamp far in the future, dunwell does not (300 s either way, Stripe's default tolerance).
Several `v1` values appear while a secret is being rolled; any one matching is enough.

Cases come from the invoice events: they carry the subscription and the amount owed. Since
API version 2025-03-31 an invoice no longer names its charge or PaymentIntent, so the decline
code, network code and advice code are not in `invoice.payment_failed`; they are taken from
the invoice when an older API version expanded them there, otherwise fetched with the SDK
(the invoice's payments -> PaymentIntent -> `last_payment_error`) when the endpoint has a
`config.api_key` (a restricted key with read access to invoices and payment intents); if that
is not configured or fails, the case opens with the code unknown and the delivery says why.
`payment_intent.payment_failed` / `charge.failed` carry the codes but no
subscription, so they are recorded, not turned into a second failure of the same attempt.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dunwell.webhooks.base import (
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
    decline,
    drop_none,
    from_epoch,
    load_json,
)

TOLERANCE_SECONDS = 300
FETCH_TIMEOUT_SECONDS = 5
PROVIDER = "stripe"


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    header = headers.get("stripe-signature")
    if not header:
        raise WebhookRejected("missing_signature", "no Stripe-Signature header", 401)
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookRejected(
                    "malformed_signature", "Stripe-Signature t is not an integer", 400
                ) from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected("malformed_signature", "Stripe-Signature needs t= and v1=", 400)
    expected = hmac.new(
        endpoint.secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookRejected("bad_signature", "no v1 signature matches the payload", 401)
    # Only after the signature holds does its timestamp mean anything.
    skew = now.timestamp() - timestamp
    if skew > TOLERANCE_SECONDS:
        raise WebhookRejected(
            "stale_timestamp", f"signed {int(skew)} s ago (tolerance {TOLERANCE_SECONDS} s)"
        )
    if skew < -TOLERANCE_SECONDS:
        raise WebhookRejected(
            "future_timestamp", f"signed {int(-skew)} s in the future (tolerance 300 s)"
        )


def _id(value: Any) -> str | None:
    """A Stripe reference is an id string, or the object itself when expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def _subscription_id(invoice: dict[str, Any]) -> str | None:
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    return _id(details.get("subscription")) or _id(invoice.get("subscription"))


def _decline_from_intent(intent: dict[str, Any]) -> dict[str, Any] | None:
    error = intent.get("last_payment_error") or {}
    if not error:
        return None
    return decline(
        PROVIDER,
        error.get("decline_code") or error.get("code"),
        error.get("network_decline_code"),
        error.get("network_advice_code") or error.get("advice_code"),
        error.get("message"),
    )


def _decline_from_charge(charge: dict[str, Any]) -> dict[str, Any]:
    outcome = charge.get("outcome") or {}
    return decline(
        PROVIDER,
        outcome.get("reason") or charge.get("failure_code"),
        outcome.get("network_decline_code"),
        outcome.get("network_advice_code") or outcome.get("advice_code"),
        charge.get("failure_message") or outcome.get("seller_message"),
    )


def _card(obj: dict[str, Any]) -> dict[str, Any]:
    """The card facts of a PaymentMethod, or of a Charge's payment_method_details."""
    card = obj.get("card") or {}
    return {"brand": card.get("brand"), "fingerprint": card.get("fingerprint")}


def _invoice_decline(invoice: dict[str, Any]) -> dict[str, Any]:
    intent, charge = invoice.get("payment_intent"), invoice.get("charge")
    if isinstance(intent, dict) and (found := _decline_from_intent(intent)):
        return found
    if isinstance(charge, dict):
        return _decline_from_charge(charge)
    return decline(
        PROVIDER,
        None,
        message="decline details are not on the invoice (Stripe API 2025-03-31 and later)",
    )


class FetchFailed(Exception):
    pass


def _client(endpoint: Endpoint) -> Any:
    import stripe as sdk  # the official SDK, not this module

    base = endpoint.config.get("api_base")
    return sdk.StripeClient(
        str(endpoint.config["api_key"]),
        base_addresses={"api": str(base)} if base else None,
        max_network_retries=1,
        # The provider is waiting for our answer: a slow API must not hold the delivery.
        http_client=sdk.new_default_http_client(timeout=FETCH_TIMEOUT_SECONDS),
    )


def fetch_invoice_of_intent(intent_id: str, endpoint: Endpoint) -> str | None:
    """The invoice a PaymentIntent paid (disputes name only the charge and the intent)."""
    import stripe as sdk

    params = {"payment": {"type": "payment_intent", "payment_intent": intent_id}}
    try:
        payments = _client(endpoint).v1.invoice_payments.list(params=params)
    except sdk.StripeError as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc.user_message or exc}") from exc
    for payment in payments.data:
        if invoice := _id(payment.to_dict().get("invoice")):
            return invoice
    return None


def fetch_intent(invoice: dict[str, Any], endpoint: Endpoint) -> dict[str, Any] | None:
    """The PaymentIntent of the invoice's latest payment, through the Stripe API."""
    import stripe as sdk

    client = _client(endpoint)
    try:
        intent_id = _id(invoice.get("payment_intent"))
        if intent_id is None:
            payments = client.v1.invoice_payments.list(params={"invoice": invoice["id"]})
            for payment in payments.data:  # newest first
                ref = (payment.to_dict().get("payment") or {}).get("payment_intent")
                if (intent_id := _id(ref)) is not None:
                    break
        if intent_id is None:
            return None
        return client.v1.payment_intents.retrieve(intent_id).to_dict()
    except sdk.StripeError as exc:
        raise FetchFailed(f"{type(exc).__name__}: {exc.user_message or exc}") from exc


def _enrich(event: dict[str, Any], invoice: dict[str, Any], endpoint: Endpoint) -> str | None:
    """Fill in the decline facts (and the card) from the API; returns a note if it could not."""
    if event["decline"]["provider_code"] or not endpoint.config.get("api_key"):
        return None
    try:
        intent = fetch_intent(invoice, endpoint)
    except FetchFailed as exc:
        return f"decline details could not be fetched: {exc}"
    facts = _decline_from_intent(intent or {})
    if facts is None:
        return "the invoice's PaymentIntent has no last_payment_error"
    event["decline"] = facts
    method = (intent or {}).get("last_payment_error", {}).get("payment_method")
    if isinstance(method, dict) and method.get("id"):
        event["payment"]["payment_method"] = {"token": method["id"], **drop_none(_card(method))}
    return None


def _invoice_failed(event: dict[str, Any], endpoint: Endpoint, action_required: bool) -> Any:
    inv = event["data"]["object"]
    customer, subscription = _id(inv.get("customer")), _subscription_id(inv)
    if not customer or not subscription:
        return None
    method = inv.get("default_payment_method")
    pm: dict[str, Any] = {"token": _id(method) or f"{customer}:default"}
    if isinstance(method, dict):
        pm.update(drop_none(_card(method)))
    facts = (
        decline(PROVIDER, "authentication_required", message="the payment needs 3-D Secure")
        if action_required
        else _invoice_decline(inv)
    )
    address = inv.get("customer_address") or {}
    return {
        "id": f"stripe:{event['id']}",
        "type": "payment.failed",
        "occurred_at": from_epoch(event["created"]),
        "customer": drop_none(
            {"id": customer, "email": inv.get("customer_email"), "country": address.get("country")}
        ),
        "subscription": drop_none(
            {"id": subscription, "storefront": endpoint.config.get("storefront")}
        ),
        "invoice": {
            "id": inv["id"],
            "amount": int(inv.get("amount_remaining", inv.get("amount_due", 0))),
            "currency": str(inv["currency"]).upper(),
        },
        "payment": {"provider": PROVIDER, "payment_method": pm},
        "decline": facts,
    }


def _invoice_paid(event: dict[str, Any]) -> dict[str, Any]:
    inv = event["data"]["object"]
    body: dict[str, Any] = {
        "id": f"stripe:{event['id']}",
        "type": "payment.succeeded",
        "occurred_at": from_epoch(event["created"]),
        "invoice": {
            "id": inv["id"],
            "amount": int(inv.get("amount_paid", 0)),
            "currency": str(inv["currency"]).upper(),
        },
    }
    if customer := _id(inv.get("customer")):
        body["customer"] = {"id": customer}
    return body


def _retries_exhausted(event: dict[str, Any], invoice: Any, customer: str | None) -> Any:
    if not invoice:
        return f"{event['type']}: no invoice id"
    return {
        "id": f"stripe:{event['id']}",
        "type": "payment.retries_exhausted",
        "occurred_at": from_epoch(event["created"]),
        "invoice": {"id": str(invoice)},
        "payment": {"provider": "stripe"},
        **({"customer": {"id": customer}} if customer else {}),
    }


def _method_updated(event: dict[str, Any], customer: str | None, method: Any) -> Any:
    token = _id(method)
    if not customer or not token:
        return None
    pm: dict[str, Any] = {"token": token}
    if isinstance(method, dict):
        pm.update(drop_none(_card(method)))
    return {
        "id": f"stripe:{event['id']}",
        "type": "payment_method.updated",
        "occurred_at": from_epoch(event["created"]),
        "customer": {"id": customer},
        "payment_method": pm,
    }


def delivery_id(body: bytes) -> str | None:
    """Known before translating, so a redelivery is answered without calling the API again."""
    event = load_json(body)
    return str(event["id"]) if isinstance(event, dict) and "id" in event else None


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    event = load_json(body)
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise Untranslatable("not a Stripe event object")
    kind, obj = event["type"], event.get("data", {}).get("object", {})
    out = Translation(delivery_id=event["id"])
    try:
        canonical = _canonical(event, kind, obj, endpoint)
    except (KeyError, TypeError, ValueError) as exc:
        raise Untranslatable(f"{kind}: missing or malformed {exc}") from exc
    if isinstance(canonical, dict):
        if kind == "invoice.payment_failed" and (note := _enrich(canonical, obj, endpoint)):
            out.ignored.append(note)
        out.events.append(canonical)
    else:
        out.ignored.append(canonical)
    return out


def _canonical(event: dict[str, Any], kind: str, obj: dict[str, Any], endpoint: Endpoint) -> Any:
    if kind in ("invoice.payment_failed", "invoice.payment_action_required"):
        failed = _invoice_failed(event, endpoint, kind == "invoice.payment_action_required")
        return failed or f"{kind}: invoice without a customer or subscription"
    if kind in ("invoice.paid", "invoice.payment_succeeded"):
        return _invoice_paid(event)
    if kind in ("payment_intent.payment_failed", "charge.failed"):
        facts = _decline_from_intent(obj) if kind.startswith("payment_intent") else None
        facts = facts or _decline_from_charge(obj)
        return (
            f"{kind}: recorded (decline {facts['provider_code']}, network "
            f"{facts['network_code']}, advice {facts['advice_code']}); the case comes from "
            "invoice.payment_failed, which names the subscription"
        )
    if kind == "payment_intent.succeeded":
        return f"{kind}: recorded; recovery is taken from invoice.paid"
    if kind == "invoice.marked_uncollectible":
        # Smart Retries ended and the account's setting marks the invoice uncollectible.
        return _retries_exhausted(event, obj.get("id"), _id(obj.get("customer")))
    if kind == "customer.subscription.updated" and obj.get("status") == "unpaid":
        # Smart Retries ended and the setting leaves the subscription unpaid: its latest
        # invoice is the one the retries were for.
        invoice = _id(obj.get("latest_invoice"))
        if not invoice:
            return f"{kind}: status unpaid without a latest_invoice"
        return _retries_exhausted(event, invoice, _id(obj.get("customer")))
    if kind in ("customer.subscription.updated", "customer.subscription.deleted"):
        status = obj.get("status")
        if status == "canceled" or kind.endswith("deleted"):
            return {
                "id": f"stripe:{event['id']}",
                "type": "subscription.canceled",
                "occurred_at": from_epoch(event["created"]),
                "subscription": {"id": obj["id"]},
                **({"customer": {"id": c}} if (c := _id(obj.get("customer"))) else {}),
            }
        return f"{kind}: status {status}; the invoice events carry the failure"
    if kind == "payment_method.attached":
        return _method_updated(event, _id(obj.get("customer")), obj) or (
            f"{kind}: no customer on the payment method"
        )
    if kind == "customer.updated":
        previous = (event.get("data", {}).get("previous_attributes") or {}).get("invoice_settings")
        new = (obj.get("invoice_settings") or {}).get("default_payment_method")
        if previous is not None and new and _id(previous.get("default_payment_method")) != _id(new):
            return _method_updated(event, obj.get("id"), new)
        return f"{kind}: the default payment method did not change"
    if kind == "charge.dispute.created":
        invoice = obj.get("invoice") or (obj.get("metadata") or {}).get("invoice")
        intent = _id(obj.get("payment_intent"))
        note = "no config.api_key to look it up"
        if not invoice and intent and endpoint.config.get("api_key"):
            try:
                invoice = fetch_invoice_of_intent(intent, endpoint)
                note = "the API knows no invoice for its payment intent"
            except FetchFailed as exc:
                note = f"the lookup failed: {exc}"
        if not invoice:
            return (
                f"{kind}: dispute {obj.get('id')} on charge {_id(obj.get('charge'))} names no "
                f"invoice; {note}"
            )
        return {
            "id": f"stripe:{event['id']}",
            "type": "dispute.opened",
            "occurred_at": from_epoch(event["created"]),
            "invoice": {"id": _id(invoice)},
            "reason": obj.get("reason"),
        }
    return f"{kind}: not an event dunwell acts on"
