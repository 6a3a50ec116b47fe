"""Checkout.com: `Cko-Signature` is the hex HMAC-SHA256 of the raw body, keyed with the
webhook's secret key (the documented algorithm). Checkout signs no delivery time; replays are
caught by the event id (`evt_...`).

`payment_declined` opens or updates the case of the payment's `reference` (your invoice id);
`payment_captured` (and `payment_approved` for auth-and-capture flows) recovers it. The
response code is Checkout's own five-digit code; `200NN`/`300NN`-style codes are not decoded
into ISO network codes here, the raw code is passed as `provider_code`.
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
    load_json,
)

PROVIDER = "checkout"


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    given = headers.get("cko-signature")
    if not given:
        raise WebhookRejected("missing_signature", "no Cko-Signature header", 401)
    expected = hmac.new(endpoint.secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise WebhookRejected("bad_signature", "Cko-Signature does not match the body", 401)


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    event = load_json(body)
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise Untranslatable("not a Checkout.com event")
    out = Translation(delivery_id=event["id"])
    try:
        result = _canonical(event, endpoint)
    except (KeyError, TypeError, ValueError) as exc:
        raise Untranslatable(f"{event['type']}: missing or malformed {exc}") from exc
    if isinstance(result, dict):
        out.events.append(result)
    else:
        out.ignored.append(result)
    return out


def _canonical(event: dict[str, Any], endpoint: Endpoint) -> dict[str, Any] | str:
    kind, data = event["type"], event.get("data") or {}
    head = {"id": f"checkout:{event['id']}", "occurred_at": event["created_on"]}
    reference = data.get("reference")
    invoice = (
        {"id": reference, "amount": int(data["amount"]), "currency": data["currency"]}
        if reference
        else None
    )
    if kind in ("payment_captured", "payment_approved") and invoice:
        customer = (data.get("customer") or {}).get("id")
        return {
            **head,
            "type": "payment.succeeded",
            "invoice": invoice,
            **({"customer": {"id": customer}} if customer else {}),
        }
    if kind == "payment_declined":
        customer = (data.get("customer") or {}).get("id")
        metadata = data.get("metadata") or {}
        if not invoice or not customer:
            return f"{kind} {data.get('id')}: needs a reference (invoice) and a customer id"
        source = data.get("source") or {}
        scheme = str(source.get("scheme") or "").lower() or None
        return {
            **head,
            "type": "payment.failed",
            "customer": drop_none(
                {"id": customer, "email": (data.get("customer") or {}).get("email")}
            ),
            "subscription": drop_none(
                {
                    "id": metadata.get("subscription_id") or customer,
                    "storefront": endpoint.config.get("storefront"),
                }
            ),
            "invoice": invoice,
            "payment": {
                "provider": PROVIDER,
                "payment_method": drop_none(
                    {
                        "token": source.get("id") or f"{customer}:default",
                        "brand": scheme,
                        "fingerprint": source.get("fingerprint"),
                    }
                ),
            },
            "decline": decline(
                PROVIDER,
                data.get("response_code"),
                None,
                (data.get("processing") or {}).get("merchant_advice_code"),
                data.get("response_summary"),
            ),
        }
    return f"{kind}: not an event dunwell acts on"
