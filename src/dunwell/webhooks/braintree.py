"""Braintree: a form POST with `bt_signature` and `bt_payload` (base64 XML).

`bt_signature` is `PUBLIC_KEY|HEX[&PUBLIC_KEY|HEX...]`; HEX is HMAC-SHA1 over the payload
exactly as posted, keyed with SHA-1 of the private key (the SDK's documented algorithm). The
endpoint's secret is `PUBLIC_KEY:PRIVATE_KEY`.

Braintree signs no delivery time, and the notification's own timestamp can be a day old on
a retry; replays are caught by the event ids. The XML is parsed only after the signature holds.

A subscription names no invoice: the billing period (`billing-period-start-date`, else the
`current-billing-cycle`) identifies what is owed, so a failure and the later success of the
same period land on the same case.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from dunwell.webhooks.base import (
    Endpoint,
    Translation,
    Untranslatable,
    WebhookRejected,
    decimal_to_minor,
    decline,
    drop_none,
)

PROVIDER = "braintree"
_BRANDS = {"visa": "visa", "mastercard": "mastercard", "american express": "amex"}


def _form(body: bytes) -> tuple[str, bytes]:
    try:
        form = parse_qs(body.decode("ascii"), strict_parsing=False)
    except UnicodeDecodeError:
        raise WebhookRejected("malformed_body", "not a form post", 400) from None
    signature, payload = form.get("bt_signature", [""])[0], form.get("bt_payload", [""])[0]
    if not payload:
        raise WebhookRejected("malformed_body", "no bt_payload", 400)
    if not signature:
        raise WebhookRejected("missing_signature", "no bt_signature", 401)
    return signature, payload.encode("ascii")


def _keys(endpoint: Endpoint) -> tuple[str, str]:
    public, sep, private = endpoint.secret.partition(":")
    if not sep or not public or not private:
        raise WebhookRejected(
            "endpoint_misconfigured", "secret must be PUBLIC_KEY:PRIVATE_KEY", 500
        )
    return public, private


def verify(headers: Mapping[str, str], body: bytes, endpoint: Endpoint, now: datetime) -> None:
    signature, payload = _form(body)
    public, private = _keys(endpoint)
    if re.search(rb"[^A-Za-z0-9+=/\n]", payload):
        raise WebhookRejected("malformed_body", "bt_payload is not base64", 400)
    given = [p.split("|", 1)[1] for p in signature.split("&") if p.startswith(public + "|")]
    if not given:
        raise WebhookRejected("bad_signature", "no signature for this public key", 401)
    key = hashlib.sha1(private.encode()).digest()
    # Form decoding may drop the payload's trailing newline; the SDK accepts both forms too.
    expected = [
        hmac.new(key, candidate, hashlib.sha1).hexdigest()
        for candidate in (payload, payload + b"\n")
    ]
    if not any(hmac.compare_digest(e, g) for e in expected for g in given):
        raise WebhookRejected("bad_signature", "bt_signature does not match bt_payload", 401)


def _text(node: ElementTree.Element | None, path: str) -> str | None:
    found = node.find(path) if node is not None else None
    if found is None or found.get("nil") == "true":
        return None
    value = (found.text or "").strip()
    return value or None


def _notification(body: bytes) -> ElementTree.Element:
    _, payload = _form(body)
    try:
        return ElementTree.fromstring(base64.decodebytes(payload))
    except (ElementTree.ParseError, binascii.Error) as exc:
        raise Untranslatable(f"bt_payload is not XML: {exc}") from exc


def translate(body: bytes, endpoint: Endpoint) -> Translation:
    root = _notification(body)
    kind, timestamp = _text(root, "kind"), _text(root, "timestamp")
    subject = root.find("subject")
    if not kind or not timestamp or subject is None:
        raise Untranslatable("notification without kind, timestamp or subject")
    subscription = subject.find("subscription")
    object_id = _text(subscription, "id") or _text(subject, "dispute/id") or ""
    delivery = f"{kind}:{object_id}:{timestamp}"
    out = Translation(delivery_id=delivery)
    head = {"id": f"braintree:{delivery}", "occurred_at": timestamp}
    if kind in ("subscription_charged_unsuccessfully", "subscription_charged_successfully"):
        if subscription is None:
            raise Untranslatable(f"{kind} without a subscription")
        event = _charge(head, kind, subscription, endpoint)
        out.events.append(event)
    elif kind == "dispute_opened":
        dispute = subject.find("dispute")
        order = _text(dispute, "transaction/order-id")
        if order:
            out.events.append(
                {
                    **head,
                    "type": "dispute.opened",
                    "invoice": {"id": order},
                    **({"reason": r} if (r := _text(dispute, "reason")) else {}),
                }
            )
        else:
            out.ignored.append(
                f"dispute_opened on transaction {_text(dispute, 'transaction/id')}: the "
                "transaction has no order-id naming the invoice"
            )
    elif kind == "subscription_went_past_due":
        out.ignored.append(f"{kind} {object_id}: recorded; the failed charge itself opens the case")
    else:
        out.ignored.append(f"{kind}: not an event dunwell acts on")
    return out


def _invoice_id(subscription: ElementTree.Element, txn: ElementTree.Element | None) -> str:
    sub_id = _text(subscription, "id")
    if period := _text(subscription, "billing-period-start-date"):
        return f"{sub_id}:{period}"
    if cycle := _text(subscription, "current-billing-cycle"):
        return f"{sub_id}:cycle-{cycle}"
    return f"{sub_id}:txn-{_text(txn, 'id')}"


def _charge(
    head: dict[str, Any], kind: str, subscription: ElementTree.Element, endpoint: Endpoint
) -> dict[str, Any]:
    txn = subscription.find("transactions/transaction")  # the most recent comes first
    currency = _text(txn, "currency-iso-code") or endpoint.config.get("currency")
    amount = _text(txn, "amount") or _text(subscription, "price")
    if not currency or not amount:
        raise Untranslatable(
            f"{kind}: no amount or currency (set the endpoint's config currency for merchant "
            "accounts whose notifications omit it)"
        )
    invoice = {
        "id": _invoice_id(subscription, txn),
        "amount": decimal_to_minor(amount, currency),
        "currency": currency.upper(),
    }
    sub_id = _text(subscription, "id")
    customer = _text(txn, "customer/id") or sub_id
    if kind == "subscription_charged_successfully":
        return {
            **head,
            "type": "payment.succeeded",
            "invoice": invoice,
            "customer": {"id": customer},
        }
    card_type = (_text(txn, "credit-card/card-type") or "").lower()
    return {
        **head,
        "type": "payment.failed",
        "customer": drop_none({"id": customer, "email": _text(txn, "customer/email")}),
        "subscription": drop_none(
            {
                "id": sub_id,
                "plan": _text(subscription, "plan-id"),
                "storefront": endpoint.config.get("storefront"),
            }
        ),
        "invoice": invoice,
        "payment": {
            "provider": PROVIDER,
            "payment_method": drop_none(
                {
                    "token": _text(subscription, "payment-method-token")
                    or _text(txn, "credit-card/token")
                    or f"{sub_id}:default",
                    "brand": _BRANDS.get(card_type, card_type or None),
                    "fingerprint": _text(txn, "credit-card/unique-number-identifier"),
                }
            ),
        },
        "decline": decline(
            PROVIDER,
            _text(txn, "processor-response-code")
            or _text(txn, "gateway-rejection-reason")
            or _text(txn, "status"),
            _text(txn, "network-response-code"),
            _text(txn, "merchant-advice-code"),
            _text(txn, "processor-response-text") or _text(txn, "additional-processor-response"),
        ),
    }
